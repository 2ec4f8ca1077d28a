/* eval.h: a model on a split of the data, for `train` (each epoch's
 * validation) and `eval` (eval.c). */
#ifndef NETC_EVAL_H
#define NETC_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "data/data.h"
#include "formats/checkpoint.h"
#include "model/netc_model.h"

typedef struct {
  double loss, top1, top5; /* mean loss, percent */
  int64_t images;
} EvalResult;

/* The split's mean loss, top-1 and top-5 with s's parameters and running
 * statistics (inference mode). On several processes each evaluates its
 * slice and the sums are added: every process gets the whole split's
 * figures. */
EvalResult evaluate(NetcState *s, const Dataset *val);

/* Opens DIR's train and val splits (either may be NULL) for this model's
 * input size; -1 after a message, which says how to rebuild the model
 * when the class count differs. */
int open_data(const char *dir, int resize, Dataset *train, Dataset *val);

/* The data set's classes as a checkpoint keeps them (classes_free). */
ClassList classes_of(const Dataset *d);

#endif
