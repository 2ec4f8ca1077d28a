/* check_train.c: the trainer on real data: a small network learns 10
 * classes of TinyImageNet (5,000 training, 500 validation images) well
 * above chance in a few epochs; an interrupted and resumed run gives the
 * same losses as an uninterrupted one; eval and predict print what they
 * promise. The subset is extracted from ../shared once into build/. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "check_netc.h"

static char *sh(int *status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *sh(int *status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *cmd = NULL;
  ck_assert_int_ge(vasprintf(&cmd, fmt, ap), 0);
  va_end(ap);
  char *out = run_command(cmd, status);
  free(cmd);
  return out;
}

#define MUST(...)                                                             \
  do {                                                                        \
    int st_;                                                                  \
    char *o_ = sh(&st_, __VA_ARGS__);                                         \
    if (st_ != 0)                                                             \
      ck_abort_msg("exit %d:\n%s", st_, o_);                                  \
    free(o_);                                                                 \
  } while (0)

static const char *data = "build/testdata/sub10";
static const char *trainer = "build/testdata/small10/small10";

/* The subset and the trainer, made once per build directory. */
static void setup(void) {
  MUST("sh tests/train/subset.sh %s 10 >/dev/null", data);
  MUST("%s build -b 64 -o build/testdata/small10 tests/train/small10.net "
       ">/dev/null", netc_path());
}

/* The value of column `col` (0-based) in the last row of a metrics.csv. */
static double last_metric(const char *csv, int col, int *rows) {
  char *text = read_file(csv, NULL);
  ck_assert_ptr_nonnull(text);
  *rows = 0;
  char *last = NULL;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
    if (line[0] >= '0' && line[0] <= '9')
      last = line, (*rows)++;
  ck_assert_ptr_nonnull(last);
  char *p = last;
  for (int i = 0; i < col; i++)
    p = strchr(p, ',') + 1;
  double v = atof(p);
  free(text);
  return v;
}

START_TEST(test_learns_ten_classes) {
  setup();
  const char *run = "build/testdata/run-learn";
  MUST("rm -rf %s && %s train --data %s --epochs 5 --threads 2 --out %s "
       "--lr 0.1 --warmup-epochs 1 > %s.log 2>&1",
       run, trainer, data, run, run);
  char csv[256];
  snprintf(csv, sizeof csv, "%s/metrics.csv", run);
  char *text = read_file(csv, NULL);
  ck_assert_ptr_nonnull(text);
  ck_assert(!strncmp(text, "epoch,train_loss,train_top1,val_loss,val_top1,"
                           "val_top5,lr,images_per_s,seconds\n", 74));
  free(text);
  int rows;
  double top1 = last_metric(csv, 4, &rows);
  ck_assert_int_eq(rows, 5);
  fprintf(stderr, "small10 on 10 classes: validation top-1 %.2f%% after 5 "
                  "epochs (chance 10%%)\n", top1);
  ck_assert_double_ge(top1, 30.0);
  /* eval counts all 500 validation images once, in its last line. */
  int st;
  char *out = sh(&st, "%s eval --data %s --checkpoint %s/best.ckpt", trainer,
                 data, run);
  ck_assert_int_eq(st, 0);
  ck_assert_ptr_nonnull(strstr(out, " images=500\n"));
  ck_assert_ptr_nonnull(strstr(out, "top1="));
  free(out);
  out = sh(&st, "%s predict --checkpoint %s/best.ckpt %s/val/images/$(ls "
                "%s/val/images | head -n 1)", trainer, run, data, data);
  ck_assert_int_eq(st, 0);
  ck_assert_ptr_nonnull(strstr(out, "  5. "));
  free(out);
}
END_TEST

/* Columns that must match exactly: the losses, accuracies and the lr. */
static char *loss_columns(const char *csv) {
  int st;
  return sh(&st, "cut -d, -f1-7 %s", csv);
}

START_TEST(test_resume_gives_the_same_losses) {
  setup();
  const char *a = "build/testdata/run-straight", *b = "build/testdata/run-resumed";
  MUST("rm -rf %s %s", a, b);
  MUST("%s train --data %s --epochs 2 --threads 2 --out %s --no-plots "
       ">/dev/null 2>&1", trainer, data, a);
  /* Stop in the middle of epoch 2 (78 steps per epoch), then resume. */
  MUST("%s train --data %s --epochs 2 --threads 2 --out %s --no-plots "
       "--max-steps 100 >/dev/null 2>&1", trainer, data, b);
  MUST("%s train --data %s --epochs 2 --threads 2 --out %s --no-plots "
       "--resume >/dev/null 2>&1", trainer, data, b);
  char ca[256], cb[256];
  snprintf(ca, sizeof ca, "%s/metrics.csv", a);
  snprintf(cb, sizeof cb, "%s/metrics.csv", b);
  char *x = loss_columns(ca), *y = loss_columns(cb);
  ck_assert_str_eq(x, y);
  int rows;
  last_metric(cb, 1, &rows);
  ck_assert_int_eq(rows, 2);
  free(x);
  free(y);
}
END_TEST

Suite *suite_train(void) {
  Suite *s = suite_create("train");
  TCase *tc = tcase_create("train");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_learns_ten_classes);
  tcase_add_test(tc, test_resume_gives_the_same_losses);
  suite_add_tcase(s, tc);
  return s;
}
