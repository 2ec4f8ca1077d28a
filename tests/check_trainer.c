/* check_trainer.c: the trainer's command line: exit statuses, a malformed
 * number for every command, --help of every command, the loss falling
 * under step and bench, closed pipes and a full standard output. */
#include <stdlib.h>
#include <string.h>

#include "check_train.h"

/* Exit status: 0 success, 1 bad input or a failed run, 2 bad usage. */
static const struct {
  const char *args;
  int status;
  const char *needle;
} status_cases[] = {
    {"", 2, "usage: tiny10 <command>"},
    {"bogus", 2, "unknown command 'bogus'"},
    {"train", 2, "--data DIR is required"},
    {"train --data build/testdata/sub10 --epochs x", 2, "not 'x'"},
    {"train --data build/testdata/sub10 --optimizer lamb", 2, "not 'lamb'"},
    {"train --data build/testdata/sub10 --time-budget 0", 2,
     "--time-budget needs a duration such as 2h, 90m or 1h30m, not '0'"},
    {"train --data build/testdata/sub10 --time-budget 5x", 2,
     "--time-budget needs a duration such as 2h, 90m or 1h30m, not '5x'"},
    {"train --data build/testdata/sub10 --time-budget 0s", 2,
     "--time-budget must be more than 0 and at most 30 days, not '0s'"},
    {"train --data build/testdata/sub10 --time-budget 31d", 2,
     "--time-budget must be more than 0 and at most 30 days, not '31d'"},
    {"train --data build/testdata/sub10 --time-budget 1h --epochs 3", 2,
     "--time-budget and --epochs both say how long to train: give one"},
    {"step --steps x", 2, "tiny10: --steps needs a whole number >= 1, not 'x'"},
    {"step --frobnicate 1", 2, "tiny10: unknown option '--frobnicate'"},
    {"eval --data build/testdata/sub10", 2,
     "eval needs --checkpoint FILE or --init FILE.safetensors"},
    {"eval --data build/testdata/sub10 --checkpoint a.ckpt --init "
     "w.safetensors", 2, "(one of them)"},
    {"predict x.jpg", 2, "--checkpoint FILE is required"},
    {"inspect", 2, "usage: tiny10 inspect [options] FILE.ckpt"},
    {"train --data /nonexistent --out build/testdata/run-x", 1,
     "cannot open data directory /nonexistent"},
    {"eval --data build/testdata/sub10 --checkpoint /nonexistent", 1,
     "cannot open checkpoint /nonexistent"},
    {"inspect tests/train/tiny10.net", 1, "is not a netc checkpoint"},
    {"info", 0, "model=tiny10 "},
    {"info extra", 2, "unexpected argument 'extra'"},
    {"predict --checkpoint x.ckpt", 2, "predict needs IMAGE..."},
    {"compare", 2, "compare needs REF.bin"},
    {"export --checkpoint c.ckpt -o m.onnx --names torchvision", 2,
     "--names goes with FILE.safetensors"},
    {"export --checkpoint c.ckpt -o w.safetensors --fold-bn", 2,
     "--fold-bn goes with FILE.onnx"},
    {"export --checkpoint c.ckpt -o w.bin", 2, "'w.bin' is neither"},
    {"step --steps 1 --threads 1", 0, "step 1 loss "},
};

START_TEST(test_exit_status) {
  setup();
  int st;
  char *out = sh(&st, "%s %s", tiny, status_cases[_i].args);
  ck_assert_msg(st == status_cases[_i].status, "tiny10 %s: status %d\n%s",
                status_cases[_i].args, st, out);
  assert_contains(out, status_cases[_i].needle);
  free(out);
}
END_TEST

/* A malformed number, for every trainer command: status 2 and a message
 * that names the option and the value. (info, inspect and compare take no
 * numbers: an option they do not have is refused the same way.) */
static const struct {
  const char *args, *message;
} malformed[] = {
    {"train --data D --epochs 5x",
     "--epochs needs a whole number from 1 to 1000000, not '5x'"},
    {"train --data D --epochs 2.5",
     "--epochs needs a whole number from 1 to 1000000, not '2.5'"},
    {"train --data D --lr 1e39",
     "--lr needs a number from 0 to 3.40282e+38, not '1e39'"},
    {"train --data D --lr=-0.1",
     "--lr needs a number from 0 to 3.40282e+38, not '-0.1'"},
    {"train --data D --momentum nan",
     "--momentum needs a number from 0 to 3.40282e+38, not 'nan'"},
    {"train --data D --warmup-epochs inf",
     "--warmup-epochs needs a number from 0 to 3.40282e+38, not 'inf'"},
    {"train --data D --weight-decay 1e-5x",
     "--weight-decay needs a number from 0 to 3.40282e+38, not '1e-5x'"},
    {"train --data D --seed ' 5'", "--seed needs a whole number >= 0, not ' 5'"},
    {"train --data D --threads 2000",
     "--threads needs a whole number from 0 to 1024, not '2000'"},
    {"train --data D --checkpoint-minutes ''",
     "--checkpoint-minutes needs a number >= 0, not ''"},
    {"train --data D --checkpoint-steps -1",
     "--checkpoint-steps needs a whole number >= 0, not '-1'"},
    {"train --data D --log-every 99999999999999999999",
     "--log-every needs a whole number >= 0, not '99999999999999999999'"},
    {"train --data D --max-steps 0x10",
     "--max-steps needs a whole number >= 0, not '0x10'"},
    {"eval --data D --checkpoint C --threads 2x",
     "--threads needs a whole number from 0 to 1024, not '2x'"},
    {"predict --checkpoint C --threads=-1 image.jpg",
     "--threads needs a whole number from 0 to 1024, not '-1'"},
    {"bench --steps 0", "--steps needs a whole number >= 1, not '0'"},
    {"bench --warmup 1.5", "--warmup needs a whole number >= 0, not '1.5'"},
    {"bench --windows 3k",
     "--windows needs a whole number from 1 to 1000000, not '3k'"},
    {"bench --threads", "--threads needs a whole number from 0 to 1024"},
    {"bench-loader --data D --batches 3y",
     "--batches needs a whole number >= 1, not '3y'"},
    {"step --steps 5x", "--steps needs a whole number >= 1, not '5x'"},
    {"step --seed 1e3", "--seed needs a whole number >= 0, not '1e3'"},
    {"info --threads 2", "unknown option '--threads'"},
    {"info --optimizer nadam",
     "--optimizer is sgd, adam or adamw, not 'nadam'"},
    {"inspect --threads 2 C", "unknown option '--threads'"},
    {"compare --steps 2 R", "unknown option '--steps'"},
};

START_TEST(test_malformed_numbers) {
  setup();
  int st;
  char *out = sh(&st, "%s %s", tiny, malformed[_i].args);
  ck_assert_msg(st == 2, "tiny10 %s: status %d\n%s", malformed[_i].args, st,
                out);
  char want[256], cmd[32];
  snprintf(want, sizeof want, "tiny10: %s\n", malformed[_i].message);
  ck_assert_msg(!strncmp(out, want, strlen(want)),
                "tiny10 %s: expected first line \"%s\" in:\n%s",
                malformed[_i].args, want, out);
  sscanf(malformed[_i].args, "%31s", cmd);
  snprintf(want, sizeof want, "Try 'tiny10 %s --help'.", cmd);
  assert_contains(out, want);
  free(out);
}
END_TEST

/* --help for every command: status 0, its usage, and its options. */
static const struct {
  const char *command, *usage, *option;
} helps[] = {
    {"train", "usage: tiny10 train --data DIR [options]", "  --log-every N "},
    {"eval", "usage: tiny10 eval --data DIR [options]", "  --init FILE "},
    {"predict", "usage: tiny10 predict --checkpoint FILE [options] IMAGE...",
     "  --resize "},
    {"bench", "usage: tiny10 bench [options]", "  --profile "},
    {"bench-loader", "usage: tiny10 bench-loader --data DIR [options]",
     "  --batches N "},
    {"step", "usage: tiny10 step [options]", "  --seed S "},
    {"inspect", "usage: tiny10 inspect [options] FILE.ckpt", "  -h, --help "},
    {"info", "usage: tiny10 info", "  -h, --help "},
    {"compare", "usage: tiny10 compare [options] REF.bin", "  --verbose "},
};

START_TEST(test_help) {
  setup();
  int st;
  char *out = sh(&st, "%s %s --help", tiny, helps[_i].command);
  ck_assert_msg(st == 0, "%s --help: status %d\n%s", helps[_i].command, st,
                out);
  ck_assert_msg(!strncmp(out, helps[_i].usage, strlen(helps[_i].usage)),
                "%s --help:\n%s", helps[_i].command, out);
  assert_contains(out, helps[_i].option);
  free(out);
}
END_TEST

/* The losses `step --steps N` prints, into loss[]; returns how many. */
static int step_losses(const char *out, double *loss, int max) {
  int n = 0;
  for (const char *p = strstr(out, "step "); p && n < max;
       p = strstr(p + 1, "\nstep ")) {
    int at;
    ck_assert_int_eq(sscanf(p + (*p == '\n'), "step %d loss %lf", &at,
                            &loss[n]), 2);
    ck_assert_int_eq(at, n + 1);
    n++;
  }
  return n;
}

/* step and bench train with train_step: on their one random batch the loss
 * falls from the first step to the last. */
START_TEST(test_step_and_bench_train) {
  setup();
  int st;
  char *out = sh(&st, "%s step --steps 4 --threads 2", tiny);
  ck_assert_msg(st == 0, "status %d\n%s", st, out);
  double loss[8];
  ck_assert_int_eq(step_losses(out, loss, 8), 4);
  ck_assert_msg(loss[3] < loss[0], "step: loss %f -> %f", loss[0], loss[3]);
  free(out);
  out = sh(&st, "%s bench --steps 2 --warmup 1 --windows 1 --threads 2", tiny);
  ck_assert_msg(st == 0, "status %d\n%s", st, out);
  assert_contains(out, "netc model=tiny10 batch=64 threads=2 ");
  const char *first = strstr(out, " first_loss="), *last = strstr(out,
                                                                  " last_loss=");
  ck_assert_ptr_nonnull(first);
  ck_assert_ptr_nonnull(last);
  /* The same batch, seed and step: bench's first loss is step's. */
  ck_assert_double_eq_tol(atof(first + 12), loss[0], 1e-6);
  ck_assert_msg(atof(last + 11) < atof(first + 12), "bench: %s", out);
  ck_assert_double_gt(atof(strstr(out, " img_per_s=") + 11), 0);
  free(out);
}
END_TEST

/* A closed pipe ends the trainer quietly with status 1, as it ends
 * standard tools; another write error (a full disk) is reported. The whole
 * output of each case, stderr included, is `want`. */
static const struct {
  const char *cmd; /* %1$s: the trainer */
  const char *want;
} pipe_cases[] = {
    /* The reader is gone before the trainer writes. */
    {"(sleep 0.5; %1$s info; echo \"exit $?\" >&2) | true", "exit 1\n"},
    /* Whenever head goes: no message either way. */
    {"{ %1$s info | head -c 10 >/dev/null; } 2>&1", ""},
    {"{ %1$s train --help | head -n 1 >/dev/null; } 2>&1", ""},
    {"%1$s info >/dev/full; echo \"exit $?\"",
     "tiny10: writing the output: No space left on device\nexit 1\n"},
};

START_TEST(test_closed_pipe) {
  setup();
  int st;
  char *out = sh(&st, pipe_cases[_i].cmd, tiny);
  ck_assert_msg(!strcmp(out, pipe_cases[_i].want), "%s:\n%s",
                pipe_cases[_i].cmd, out);
  free(out);
}
END_TEST

Suite *suite_trainer(void) {
  Suite *s = suite_create("trainer");
  TCase *cli = tcase_create("cli");
  tcase_set_timeout(cli, 300);
  tcase_add_loop_test(cli, test_exit_status, 0,
                      sizeof status_cases / sizeof status_cases[0]);
  tcase_add_loop_test(cli, test_malformed_numbers, 0,
                      sizeof malformed / sizeof malformed[0]);
  tcase_add_loop_test(cli, test_help, 0, sizeof helps / sizeof helps[0]);
  tcase_add_test(cli, test_step_and_bench_train);
  tcase_add_loop_test(cli, test_closed_pipe, 0,
                      sizeof pipe_cases / sizeof pipe_cases[0]);
  suite_add_tcase(s, cli);
  return s;
}
