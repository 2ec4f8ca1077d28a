/* schedule.h: the learning rate over a run's steps, and the plan of a run
 * that trains for a time budget (train --time-budget, docs/training.md).
 *
 * A budgeted run does not know its step count in advance: it measures
 * its speed and lays the warm-up and the decay to zero over the steps
 * that fit in the time left, counting each epoch's evaluation and
 * checkpoint, and re-plans as it goes (budget_plan). Everything here is
 * arithmetic on numbers the trainer measured, so that tests can check it
 * without a clock. */
#ifndef NETC_SCHEDULE_H
#define NETC_SCHEDULE_H

#include <stdint.h>

/* The decay after the warm-up (train --schedule). LINEAR is Li et al.'s
 * (ICLR 2020) choice under a budget: straight to zero at the last step. */
enum { SCHED_COSINE, SCHED_STEP, SCHED_CONSTANT, SCHED_LINEAR };

/* The learning rate at step (0-based) of a run of `total` steps whose
 * first `warm` steps warm up linearly to `peak`: the same values as
 * PyTorch's LinearLR then CosineAnnealingLR (or MultiStepLR at a half and
 * three quarters, x0.1 each, or LinearLR to 0) stepped once per step. */
float schedule_lr(int kind, double peak, double warm, double total,
                  int64_t step);

/* The warm-up of a budgeted run: `epochs` of warm-up as asked, but at most
 * a tenth of the planned steps, so that a short budget still decays. */
double budget_warmup(double epochs, int64_t steps_per_epoch, int64_t total);

/* Parses a duration of train --time-budget: a number and a unit, s, m, h
 * or d, possibly several ("2h", "90m", "1h30m", "1.5h", "45s"). Returns
 * its seconds, or -1 when the text is not one (a bare number, "5x",
 * nothing). */
double parse_duration(const char *text);

/* What a budgeted run knows when it re-plans. Every time is wall-clock
 * seconds of the run, over all of its processes' lives (a resume counts
 * the time spent before it). */
typedef struct {
  double budget;         /* the whole run's */
  double elapsed;        /* spent so far */
  double step_seconds;   /* one training step, as measured */
  double epoch_end_seconds; /* one evaluation and its checkpoint */
  double final_seconds;  /* after the last step: waiting for the last write */
  int64_t global_step;   /* steps done */
  int64_t steps_per_epoch;
} BudgetClock;

/* The run's total step count that ends it at its budget: the steps done,
 * and as many more as fit in the time left with an epoch end (evaluation
 * and checkpoint) after every steps_per_epoch-th step and after the last
 * one. At least global_step + 1 (a run takes one more step after it
 * re-planned), so a budget already spent ends the run at the next step. */
int64_t budget_plan(const BudgetClock *c);

#endif
