/* saver.h: checkpoints written in the background (saver.c). The run's
 * state is copied (tens of milliseconds), then a thread writes the copy
 * with checkpoint_write's atomic rename while the steps go on. One write
 * is in flight at a time: the next waits for it. */
#ifndef NETC_SAVER_H
#define NETC_SAVER_H

#include <pthread.h>
#include <stdatomic.h>

#include "formats/checkpoint.h"

typedef struct {
  CheckpointImage img;
  const char *paths[2]; /* written in this order, from the one copy */
  int npaths;
  pthread_t thread;
  int running;          /* a thread was started and not yet joined */
  atomic_int done;      /* that thread has finished */
  int rc;               /* 0, or -1: a write failed (and said so) */
  double write_seconds; /* the writer's time, summed over writes */
} Saver;

/* Waits for the write in flight, then copies the state and starts writing
 * it to each of paths (one or two: best.ckpt and last.ckpt hold the same
 * state). -1 when the write in flight failed or memory ran out (said):
 * nothing new is written and the run must stop. */
int saver_start(Saver *sv, const NetcState *s, const NetcOptimizer *o,
                const RunState *r, const ClassList *c,
                const char *const *paths, int npaths);
/* Waits for the write in flight; 0, or -1 when any write failed. */
int saver_wait(Saver *sv);
/* 1 when a write has failed, without waiting for one in flight. */
int saver_failed(Saver *sv);
/* Waits, then frees the copy. */
void saver_free(Saver *sv);

#endif
