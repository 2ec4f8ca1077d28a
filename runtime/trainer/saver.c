/* saver.c: checkpoints written in the background (saver.h). The writer
 * thread only reads its own copy and writes files, so the steps that run
 * meanwhile are the same as without it; a failed write is said by
 * checkpoint_save at once and reported to the run at its next check. */
#include <stdio.h>

#include "trainer/saver.h"
#include "util/util.h"

static void *write_all(void *arg) {
  Saver *sv = arg;
  double t0 = now_seconds();
  for (int i = 0; i < sv->npaths && sv->rc == 0; i++)
    sv->rc = checkpoint_write(sv->paths[i], &sv->img);
  sv->write_seconds += now_seconds() - t0;
  atomic_store(&sv->done, 1);
  return NULL;
}

int saver_wait(Saver *sv) {
  if (sv->running) {
    pthread_join(sv->thread, NULL);
    sv->running = 0;
  }
  return sv->rc;
}

int saver_failed(Saver *sv) {
  if (sv->running && atomic_load(&sv->done))
    saver_wait(sv);
  return sv->rc != 0;
}

int saver_start(Saver *sv, const NetcState *s, const NetcOptimizer *o,
                const RunState *r, const ClassList *c,
                const char *const *paths, int npaths) {
  if (saver_wait(sv))
    return -1;
  if (checkpoint_copy(&sv->img, s, o, r, c)) {
    fprintf(stderr, "netc: out of memory copying the checkpoint for %s\n",
            paths[0]);
    return sv->rc = -1;
  }
  sv->npaths = npaths < 2 ? npaths : 2;
  for (int i = 0; i < sv->npaths; i++)
    sv->paths[i] = paths[i];
  atomic_store(&sv->done, 0);
  if (pthread_create(&sv->thread, NULL, write_all, sv) != 0) {
    write_all(sv); /* no thread: write it here */
    return sv->rc;
  }
  sv->running = 1;
  return 0;
}

void saver_free(Saver *sv) {
  saver_wait(sv);
  checkpoint_image_free(&sv->img);
}
