/* checkpoint.h: where a training run is (RunState), the class list, and
 * the checkpoints that hold them (checkpoint.c), for any netc model. */
#ifndef NETC_CHECKPOINT_H
#define NETC_CHECKPOINT_H

#include <stdint.h>

#include "model/netc_model.h"

/* CKPT_VERSION 2: checksums by util.h's hash_bytes, and the plan's byte
 * layout of the parameter, statistics and optimizer regions (1: an older
 * hash and float counts). */
enum { CKPT_VERSION = 4, MAX_CLASS_NAME = 80 };

/* Where a run is: everything beyond the tensors that a resume needs to
 * continue exactly as if it had never stopped. */
typedef struct {
  int32_t epoch;          /* the epoch in progress (0-based) */
  int32_t step;           /* batches of it done */
  int32_t epochs;         /* the run's length */
  int32_t completed;      /* epochs finished (and evaluated) */
  int64_t global_step;    /* batches since the start */
  uint64_t seed;          /* data order and augmentation derive from it */
  double best_top1;       /* best validation top-1 so far, percent */
  double loss_sum;        /* this epoch's running train loss sum */
  int64_t correct, seen;  /* this epoch's running train accuracy */
  double seconds;         /* training time spent in this epoch so far */
  /* The recipe, so that a resume cannot silently change it. */
  int32_t optimizer, schedule, nesterov, bn_decay;
  float lr, momentum, weight_decay, warmup_epochs;
  int32_t steps_per_epoch; /* global steps */
  /* Images per global step: batch x processes x accumulated micro-batches
   * (0 in checkpoints of netc before data parallelism: the batch). A run
   * resumes only at the global batch that wrote it, on any process
   * count. */
  int32_t global_batch;
  /* The loss's target smoothing (--label-smoothing) and whether the
   * training images go unaugmented (--no-augment); version 3. */
  float label_smoothing;
  int32_t no_augment;
  /* A run for a time budget (train --time-budget; version 4): its
   * seconds (0: a run of `epochs`), the wall time it had spent when this
   * state was saved, and the steps it planned then. */
  double budget_seconds, spent_seconds;
  int64_t total_steps;
} RunState;

typedef struct {
  const char *path;
  int nclasses;
  char (*class_ids)[MAX_CLASS_NAME];
  char (*class_names)[MAX_CLASS_NAME];
} ClassList;

/* Writes the checkpoint atomically: a temporary file in the same
 * directory, fsync, rename over `path`, fsync of the directory. A crash at
 * any moment leaves either the old file or the new one. Returns 0, or -1
 * with a message (the old checkpoint is intact). */
int checkpoint_save(const char *path, const NetcState *s,
                    const NetcOptimizer *o, const RunState *r,
                    const ClassList *c);
/* A checkpoint's contents copied out of a run, so that it can be written
 * while the run goes on (trainer/saver.c): the tensors in one buffer,
 * which a later copy reuses. */
typedef struct {
  NetcState s;      /* model, params and bn_stats; nothing else is used */
  NetcOptimizer o;  /* kind, m1 and m2 */
  RunState r;
  ClassList c;
  unsigned char *buf;
  size_t cap;
} CheckpointImage;

/* Copies what checkpoint_save would write into img (zeroed before its
 * first use). 0, or -1 when out of memory (img keeps its old contents). */
int checkpoint_copy(CheckpointImage *img, const NetcState *s,
                    const NetcOptimizer *o, const RunState *r,
                    const ClassList *c);
/* checkpoint_save of an image. */
int checkpoint_write(const char *path, const CheckpointImage *img);
void checkpoint_image_free(CheckpointImage *img);

/* Reads and verifies (magic, version, model, checksum) a checkpoint into
 * s, o and r (o and r may be NULL: eval and predict, which take the
 * parameters of any batch size). With r, r->global_batch on entry is the
 * resuming run's images per step (0: any), and the checkpoint's must be
 * the same. Class lists are allocated. Returns 0, or -1 with a message
 * naming the file. */
int checkpoint_load(const char *path, NetcState *s, NetcOptimizer *o,
                    RunState *r, ClassList *c);

/* A hash of everything a step changes: parameters, running statistics and
 * optimizer state. Two runs that trained the same are equal in it. */
uint64_t checkpoint_state_hash(const NetcState *s, const NetcOptimizer *o);

/* Frees a class list's names. */
void classes_free(ClassList *c);

#endif
