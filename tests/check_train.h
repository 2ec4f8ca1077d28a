/* check_train.h: the helpers of the suites that run trainers
 * (check_train.c, check_export.c, check_mpi.c, check_trainer.c), in
 * trainer_util.c. */
#ifndef CHECK_TRAIN_H
#define CHECK_TRAIN_H

#include "check_netc.h"

/* Runs a formatted shell command; its output (malloc'ed) and status. */
char *sh(int *status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The command must exit 0; else the test fails with its output. */
#define MUST(...)                                                             \
  do {                                                                        \
    int st_;                                                                  \
    char *o_ = sh(&st_, __VA_ARGS__);                                         \
    if (st_ != 0)                                                             \
      ck_abort_msg("exit %d:\n%s", st_, o_);                                  \
    free(o_);                                                                 \
  } while (0)

/* The 10-class subset of TinyImageNet and the two trainers built on it. */
extern const char *data;    /* build/testdata/sub10 */
extern const char *trainer; /* small10 at batch 64 */
extern const char *tiny;    /* tiny10 at batch 64 */

/* Builds NET at BATCH into DIR/NAME with netc build FLAGS, unless the
 * trainer is newer than netc, the runtime and NET. */
void build_with(const char *net, int batch, const char *dir,
                const char *name, const char *flags);
void build(const char *net, int batch, const char *dir, const char *name);
/* The subset and both trainers, made when missing or out of date. */
void setup(void);
/* The value of column `col` (0-based) in the last row of a metrics.csv;
 * *rows: how many epoch rows it has. */
double last_metric(const char *csv, int col, int *rows);

#endif
