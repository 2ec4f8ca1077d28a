/* step.h: one training step, the only one: train, bench, step and compare
 * all train through train_step; and what the commands that train share. */
#ifndef NETC_STEP_H
#define NETC_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "model/netc_model.h"

typedef enum {
  STEP_OK,
  STEP_BAD_LOSS,     /* the loss is NaN or infinite */
  STEP_BAD_GRADIENT, /* a parameter's gradient held a NaN or an infinity */
} StepStatus;

typedef struct {
  StepStatus status;
  float loss;      /* the batch's mean loss */
  int64_t correct; /* images of the batch whose top-1 class is the label */
  int param;       /* STEP_BAD_GRADIENT: that parameter (table index); or -1 */
} StepResult;

/* One training step on the batch in s's arena (images and labels):
 *   o->lr = lr; forward (training: batch statistics); the loss checked;
 *   optim_begin(o); backward, which updates each parameter with o as soon
 *   as its gradient is final (netc_update -> the optimizer).
 * The updates run inside the backward pass, so a step is not atomic. When
 * it returns:
 * - STEP_OK: every parameter the loss depends on has been updated once.
 * - STEP_BAD_LOSS: no parameter and no optimizer state has been updated
 *   (backward did not run, and o->step was not counted). Like every
 *   training forward, this one has folded the batch into the batchnorm
 *   running statistics.
 * - STEP_BAD_GRADIENT: the step is half done. The parameters whose
 *   gradients became final earlier in the backward pass have been updated
 *   (with their optimizer state); of the bad one (result.param), the
 *   finite gradient elements were applied and the non-finite ones were
 *   not; no parameter after it in the backward pass has been updated.
 * After a failure the state is neither the one before the step nor the
 * one after it: do not save it. (train stops without saving: its last
 * checkpoint, written before this step, stays intact.) */
StepResult train_step(NetcState *s, NetcOptimizer *o, float lr);

/* "the loss is NaN", "the gradient of conv1.weight is not finite": what a
 * failed step's result says, into buf. */
const char *step_failure(const StepResult *r, char *buf, size_t n);

/* Scores rows 0..n-1 of the probabilities a forward pass left in the arena
 * against labels y: adds their summed cross-entropy to *loss and their
 * top-1 and top-5 hits to *top1 and *top5 (either may be NULL). */
void score_batch(const NetcState *s, int n, const int32_t *y, double *loss,
                 int64_t *top1, int64_t *top5);

/* The model's state and (o not NULL, o->kind set) o's state, as
 * netc_state_new and optim_init make them; NULL after saying that memory
 * ran out. */
NetcState *trainer_state_new(NetcOptimizer *o);

/* The SGD of `step` and `bench`, which have no recipe of their own. */
NetcOptimizer default_sgd(void);

/* Normal images and uniform labels into the arena, from `seed`. */
void random_batch(NetcState *s, uint64_t seed);

#endif
