/* check_recipe.c: the training recipe beyond the optimizer: the learning
 * rate schedules against their PyTorch definitions, a time budget's
 * durations and plan (runtime/trainer/schedule.c), and a budgeted run on
 * the 10-class subset that ends on time with the learning rate at zero,
 * straight and after a kill and --resume. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_train.h"
#include "trainer/schedule.h"

/* PyTorch's LinearLR(start_factor=1/warm, total_iters=warm) chained with
 * CosineAnnealingLR(T_max=total-warm) (or LinearLR(1, 0, total-warm)),
 * stepped once per step, in closed form. */
static double torch_lr(int kind, double peak, int warm, int total, int t) {
  if (t < warm)
    return peak * (t + 1) / warm;
  double k = t - warm, n = total - warm;
  if (kind == SCHED_LINEAR)
    return peak * (1 - k / n);
  return peak * 0.5 * (1 + cos(M_PI * k / n));
}

START_TEST(test_schedules) {
  const int warm = 10, total = 110;
  for (int kind = 0; kind < 2; kind++) {
    int k = kind ? SCHED_LINEAR : SCHED_COSINE;
    for (int t = 0; t < total; t++)
      ck_assert_double_eq_tol(schedule_lr(k, 0.1, warm, total, t),
                              torch_lr(k, 0.1, warm, total, t), 1e-7);
    /* the last step's rate is the last before zero */
    ck_assert_double_le(schedule_lr(k, 0.1, warm, total, total - 1),
                        0.1 / (total - warm) + 1e-9);
    ck_assert_double_eq(schedule_lr(k, 0.1, warm, total, total), 0);
  }
  ck_assert_double_eq_tol(schedule_lr(SCHED_STEP, 0.1, 0, 100, 49), 0.1,
                          1e-7);
  ck_assert_double_eq_tol(schedule_lr(SCHED_STEP, 0.1, 0, 100, 50), 0.01,
                          1e-7);
  ck_assert_double_eq_tol(schedule_lr(SCHED_STEP, 0.1, 0, 100, 75), 0.001,
                          1e-7);
  ck_assert_double_eq_tol(schedule_lr(SCHED_CONSTANT, 0.1, 5, 100, 99), 0.1,
                          1e-7);
  /* A budget's warm-up is the epochs asked, at most a tenth of the run. */
  ck_assert_double_eq(budget_warmup(1, 78, 10000), 78);
  ck_assert_double_eq(budget_warmup(1, 78, 500), 50);
}
END_TEST

START_TEST(test_durations) {
  static const struct {
    const char *text;
    double seconds;
  } cases[] = {{"2h", 7200},  {"90m", 5400}, {"1h30m", 5400},
               {"1.5h", 5400}, {"45s", 45},  {"1d", 86400},
               {"0m", 0},     {"2h0m30s", 7230},
               /* not durations */
               {"", -1}, {"0", -1}, {"90", -1}, {"5x", -1}, {"h", -1},
               {"-1h", -1}, {"1h ", -1}, {" 1h", -1}, {"inf", -1},
               {"nanh", -1}, {"1hm", -1}, {"2h30", -1}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    ck_assert_msg(parse_duration(cases[i].text) == cases[i].seconds,
                  "'%s': %g, not %g", cases[i].text,
                  parse_duration(cases[i].text), cases[i].seconds);
}
END_TEST

/* The time a plan needs after global_step: its steps and epoch ends. */
static double plan_time(const BudgetClock *c, int64_t total) {
  int64_t ends = 0;
  for (int64_t t = c->global_step + 1; t <= total; t++)
    ends += t % c->steps_per_epoch == 0 || t == total;
  return (double)(total - c->global_step) * c->step_seconds +
         (double)ends * c->epoch_end_seconds;
}

START_TEST(test_budget_plan) {
  BudgetClock c = {.budget = 600, .elapsed = 50, .step_seconds = 0.25,
                   .epoch_end_seconds = 7, .final_seconds = 3,
                   .global_step = 130, .steps_per_epoch = 100};
  for (int k = 0; k < 40; k++) {
    int64_t total = budget_plan(&c);
    double left = c.budget - c.elapsed - c.final_seconds;
    /* It fits, and one more step would not. */
    ck_assert_msg(plan_time(&c, total) <= left + 1e-9, "case %d", k);
    ck_assert_msg(plan_time(&c, total + 1) > left, "case %d", k);
    c.elapsed += 13.3, c.global_step += 37, c.epoch_end_seconds += 0.9;
    c.step_seconds *= 1.03;
  }
  /* Spent: the run ends where it is. */
  c.elapsed = c.budget;
  ck_assert_int_eq(budget_plan(&c), c.global_step);
  c.elapsed = c.budget - c.final_seconds - 5; /* not even an epoch end */
  ck_assert_int_eq(budget_plan(&c), c.global_step);
}
END_TEST

/* A budgeted run's wall time in seconds, from its commands' timestamps:
 * each command prints `date +%s.%N` before and after. */
static double wall(const char *out, int pairs) {
  double sum = 0;
  const char *p = out;
  for (int i = 0; i < pairs; i++) {
    const char *a = strstr(p, "T0 "), *b = a ? strstr(a, "T1 ") : NULL;
    ck_assert_msg(a && b, "no timestamps in:\n%s", out);
    sum += atof(b + 3) - atof(a + 3);
    p = b + 3;
  }
  return sum;
}

/* The last metrics row's learning rate, against the peak 0.05. */
static void assert_ends_at_zero(const char *run) {
  char csv[256];
  snprintf(csv, sizeof csv, "%s/metrics.csv", run);
  int rows;
  double lr = last_metric(csv, 6, &rows);
  ck_assert_int_ge(rows, 3);
  ck_assert_msg(lr < 0.05 * 1e-3, "the last epoch's lr is %g", lr);
}

START_TEST(test_budget_ends_on_time) {
  setup();
  const char *run = "build/testdata/run-budget";
  const double budget = 20;
  int st;
  char *out = sh(&st, "rm -rf %s; echo T0 $(date +%%s.%%N); %s train --data "
                      "%s --time-budget 20s --threads 2 --out %s --no-plots "
                      "2>&1; echo T1 $(date +%%s.%%N)", run, tiny, data, run);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "netc: time budget 20 s, 0 s spent: ");
  assert_contains(out, "netc: time budget 20 s: the run took ");
  double t = wall(out, 1);
  fprintf(stderr, "a budget of 20 s took %.2f s\n", t);
  ck_assert_msg(fabs(t - budget) <= 0.05 * budget, "%.2f s:\n%s", t, out);
  assert_ends_at_zero(run);
  free(out);
}
END_TEST

/* Killed (SIGTERM: a checkpoint) 8 s in, resumed after a pause: the two
 * processes' times add up to the budget, which the checkpoint kept. */
START_TEST(test_budget_survives_resume) {
  setup();
  const char *run = "build/testdata/run-budget-r";
  const double budget = 20;
  int st;
  char *out = sh(&st, "rm -rf %s; echo T0 $(date +%%s.%%N); %s train --data "
                      "%s --time-budget 20s --threads 2 --out %s --no-plots "
                      ">/dev/null 2>&1 & pid=$!; sleep 8; kill -TERM $pid; "
                      "wait $pid; echo killed $?; echo T1 $(date +%%s.%%N); "
                      "sleep 1; echo T0 $(date +%%s.%%N); %s train --data %s "
                      "--threads 2 --out %s --no-plots --resume 2>&1; "
                      "echo T1 $(date +%%s.%%N)",
                 run, tiny, data, run, tiny, data, run);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "killed 1\n");
  assert_contains(out, "netc: resuming ");
  assert_contains(out, "netc: time budget 20 s, ");
  double t = wall(out, 2);
  fprintf(stderr, "a budget of 20 s, killed and resumed, took %.2f s\n", t);
  ck_assert_msg(fabs(t - budget) <= 0.05 * budget, "%.2f s:\n%s", t, out);
  assert_ends_at_zero(run);
  free(out);
  /* --epochs does not apply to a budgeted run. */
  out = sh(&st, "%s train --data %s --threads 2 --out %s --no-plots "
                "--resume --epochs 40 2>&1", tiny, data, run);
  ck_assert_int_eq(st, 1);
  assert_contains(out, "trains for a time budget: give --time-budget to "
                       "change it, not --epochs");
  free(out);
}
END_TEST

/* A float32 file of n values (n: their count). */
static float *floats(const char *path, size_t *n) {
  size_t len;
  float *f = (float *)read_file(path, &len);
  ck_assert_msg(f != NULL, "cannot read %s", path);
  *n = len / sizeof(float);
  return f;
}

/* eval --tta flip against its definition: the inputs it dumps are the
 * images, and its logits the mean of the images' (plain eval) and of their
 * mirrors' (--mirror, whose dumped inputs are the images mirrored). */
START_TEST(test_eval_tta_flip) {
  setup();
  const char *run = "build/testdata/run-tta";
  MUST("rm -rf %s && %s train --data %s --epochs 1 --threads 2 --out %s "
       "--no-plots >/dev/null 2>&1", run, tiny, data, run);
  const char *kind[3] = {"", "--mirror", "--tta flip"};
  float *in[3], *lg[3];
  size_t nin[3], nlg[3];
  for (int k = 0; k < 3; k++) {
    MUST("%s eval --data %s --checkpoint %s/last.ckpt --limit 70 %s "
         "--inputs %s/in%d.f32 --logits %s/lg%d.f32 >/dev/null", tiny, data,
         run, kind[k], run, k, run, k);
    char path[256];
    snprintf(path, sizeof path, "%s/in%d.f32", run, k);
    in[k] = floats(path, &nin[k]);
    snprintf(path, sizeof path, "%s/lg%d.f32", run, k);
    lg[k] = floats(path, &nlg[k]);
  }
  const size_t img = 3 * 64 * 64;
  ck_assert_uint_eq(nin[0], 70 * img);
  ck_assert_uint_eq(nlg[0], 70 * 10);
  for (size_t i = 0; i < nin[0]; i++) {
    size_t w = i % 64, row = i - w; /* NCHW: mirrored along w */
    ck_assert_float_eq(in[1][row + 63 - w], in[0][i]);
    ck_assert_float_eq(in[2][i], in[0][i]);
  }
  double most = 0;
  for (size_t i = 0; i < nlg[0]; i++) {
    double want = 0.5 * ((double)lg[0][i] + lg[1][i]);
    ck_assert_double_eq_tol(lg[2][i], want, 1e-5 * (1 + fabs(want)));
    most = fmax(most, fabs(lg[1][i] - lg[0][i]));
  }
  ck_assert_double_gt(most, 1e-3); /* a mirror is another image */
  for (int k = 0; k < 3; k++)
    free(in[k]), free(lg[k]);
  int st;
  char *out = sh(&st, "%s eval --data %s --checkpoint %s/last.ckpt --tta "
                      "flip", tiny, data, run);
  ck_assert_int_eq(st, 0);
  assert_contains(out, " images=500\n");
  free(out);
  out = sh(&st, "%s eval --data %s --checkpoint %s/last.ckpt --tta twice "
                "2>&1", tiny, data, run);
  ck_assert_int_eq(st, 2);
  assert_contains(out, "--tta is none or flip, not 'twice'");
  free(out);
}
END_TEST

Suite *suite_recipe(void) {
  Suite *s = suite_create("recipe");
  TCase *tc = tcase_create("recipe");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_schedules);
  tcase_add_test(tc, test_durations);
  tcase_add_test(tc, test_budget_plan);
  tcase_add_test(tc, test_eval_tta_flip);
  /* Timed against the clock: not under the sanitizers' slower steps. */
  tcase_add_test_unsanitized(tc, test_budget_ends_on_time);
  tcase_add_test_unsanitized(tc, test_budget_survives_resume);
  suite_add_tcase(s, tc);
  return s;
}
