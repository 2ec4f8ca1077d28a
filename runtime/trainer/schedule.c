/* schedule.c: the learning rate over the steps, and a time budget's plan
 * (schedule.h). */
#include "trainer/schedule.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>

float schedule_lr(int kind, double peak, double warm, double total,
                  int64_t step) {
  double t = (double)step;
  if (t < warm)
    return (float)(peak * (t + 1) / warm);
  if (kind == SCHED_CONSTANT)
    return (float)peak;
  double frac = (t - warm) / (total - warm > 1 ? total - warm : 1);
  frac = frac < 1 ? frac : 1;
  if (kind == SCHED_STEP) /* x0.1 at half and three quarters */
    return (float)(peak * (frac < 0.5 ? 1 : frac < 0.75 ? 0.1 : 0.01));
  if (kind == SCHED_LINEAR)
    return (float)(peak * (1 - frac));
  return (float)(0.5 * peak * (1 + cos(M_PI * frac)));
}

double budget_warmup(double epochs, int64_t steps_per_epoch, int64_t total) {
  double asked = epochs * (double)steps_per_epoch;
  double cap = 0.1 * (double)total;
  return asked < cap ? asked : cap;
}

double parse_duration(const char *text) {
  const char *p = text;
  double seconds = 0;
  int parts = 0;
  while (*p) {
    /* strtod would take "inf", "nan" and hexadecimal: digits only */
    if (!isdigit((unsigned char)*p) && *p != '.')
      return -1;
    char *end;
    double v = strtod(p, &end);
    if (end == p || !isfinite(v))
      return -1;
    double unit = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600
                  : *end == 'd' ? 86400 : 0;
    if (unit == 0) /* no unit, or an unknown one */
      return -1;
    seconds += v * unit;
    p = end + 1;
    parts++;
  }
  return parts ? seconds : -1;
}

/* Epoch ends in steps (from, to]: one after each whole epoch, and one
 * after the last step when it ends an epoch part-way. */
static int64_t epoch_ends(int64_t from, int64_t to, int64_t per) {
  if (to <= from)
    return 0;
  int64_t n = to / per - from / per;
  return n + (to % per != 0);
}

int64_t budget_plan(const BudgetClock *c) {
  double left = c->budget - c->elapsed - c->final_seconds;
  double s = c->step_seconds > 1e-9 ? c->step_seconds : 1e-9;
  if (left <= 0)
    return c->global_step;
  /* The most steps whose time and epoch ends fit in what is left: the
   * time needed grows with the steps, so a bisection finds it. */
  int64_t lo = 0, hi = (int64_t)(left / s) + 1; /* fits, does not */
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    int64_t ends = epoch_ends(c->global_step, c->global_step + mid,
                              c->steps_per_epoch);
    if ((double)mid * s + (double)ends * c->epoch_end_seconds <= left)
      lo = mid;
    else
      hi = mid;
  }
  int64_t more = lo;
  return c->global_step + more;
}
