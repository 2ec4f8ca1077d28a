/* check_train.c: the trainer on real data: a small network learns 10
 * classes of TinyImageNet (5,000 training, 500 validation images) well
 * above chance in a few epochs; an interrupted and resumed run gives the
 * same losses as an uninterrupted one; eval and predict print what they
 * promise; faults (kills, a full disk, bad checkpoints, NaNs, signals, a
 * closed log) end a run without losing what it saved; one run per run
 * directory. The subset is extracted from ../shared once into build/. */
#include <stdlib.h>
#include <string.h>

#include "check_train.h"

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

/* Dropout's masks come from (seed, step, element): a run stopped and
 * resumed draws the same ones as a run straight through, and so gives the
 * same losses; the masks change the losses (against p = 0). */
START_TEST(test_dropout_resumes_exactly) {
  setup();
  const char *dir = "build/testdata/drop10", *t = "build/testdata/drop10/drop10";
  build_with("tests/train/drop10.net", 64, dir, "drop10", "");
  const char *a = "build/testdata/run-drop-straight";
  const char *b = "build/testdata/run-drop-resumed";
  MUST("rm -rf %s %s", a, b);
  MUST("%s train --data %s --epochs 2 --threads 2 --out %s --no-plots "
       ">/dev/null 2>&1", t, data, a);
  MUST("%s train --data %s --epochs 2 --threads 2 --out %s --no-plots "
       "--max-steps 100 >/dev/null 2>&1", t, data, b);
  MUST("%s train --data %s --epochs 2 --threads 2 --out %s --no-plots "
       "--resume >/dev/null 2>&1", t, data, b);
  char ca[256], cb[256];
  snprintf(ca, sizeof ca, "%s/metrics.csv", a);
  snprintf(cb, sizeof cb, "%s/metrics.csv", b);
  char *x = loss_columns(ca), *y = loss_columns(cb);
  ck_assert_str_eq(x, y);
  free(y);
  /* The same network without dropout's zeros trains otherwise. */
  const char *c = "build/testdata/run-drop-none";
  /* (two levels below the root, so that its import finds models/) */
  MUST("mkdir -p build/dropnone && sed 's/dropout([^)]*)/dropout(0)/g' "
       "tests/train/drop10.net > build/dropnone/none.net");
  build_with("build/dropnone/none.net", 64, "build/testdata/drop10-none",
             "drop10", "");
  MUST("rm -rf %s && build/testdata/drop10-none/drop10 train --data %s "
       "--epochs 2 --threads 2 --out %s --no-plots >/dev/null 2>&1", c, data,
       c);
  char cc[256];
  snprintf(cc, sizeof cc, "%s/metrics.csv", c);
  y = loss_columns(cc);
  ck_assert_str_ne(x, y);
  free(x);
  free(y);
}
END_TEST

/* One trainer per run directory: a second one exits 1 at once, names
 * the holder and changes nothing; a SIGKILLed holder leaves no lock;
 * eval, export and predict read complete checkpoints of a run in
 * progress (tests/train/run_dir_lock.sh says how). */
START_TEST(test_one_trainer_per_run_dir) {
  setup();
  int st;
  char *out = sh(&st, "sh tests/train/run_dir_lock.sh %s %s "
                      "build/testdata/lock", tiny, data);
  fprintf(stderr, "%s", out);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "run_dir_lock: ok second_trainer_refused=2 "
                       "resumed_after_sigkill=1 ");
  free(out);
}
END_TEST

/* SIGKILL at 20 random moments, some inside checkpoint writes; every
 * resume from the newest valid checkpoint; the end state as if never
 * killed (tests/train/kill_resume.sh says how). */
START_TEST(test_kill_and_resume) {
  setup();
  int st;
  char *out = sh(&st, "sh tests/train/kill_resume.sh %s %s "
                      "build/testdata/kill 20", tiny, data);
  fprintf(stderr, "%s", out);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "kill_resume: ok kills=20 ");
  ck_assert_ptr_null(strstr(out, "during_checkpoint_write=0 "));
  free(out);
}
END_TEST

START_TEST(test_full_disk) {
  setup();
  int st;
  char *out = sh(&st, "sh tests/train/full_disk.sh %s %s build/testdata/full",
                 tiny, data);
  fprintf(stderr, "%s", out);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "full_disk: ok");
  free(out);
}
END_TEST

/* A resume or an eval from a checkpoint the trainer cannot use must say
 * why and touch nothing: not the checkpoint, not the metrics. */
static void refused(const char *cmd, const char *run, const char *why) {
  MUST("cp %s/last.ckpt %s/keep.ckpt && cp %s/metrics.csv %s/keep.csv", run,
       run, run, run);
  int st;
  char *out = sh(&st, "%s", cmd);
  ck_assert_msg(st == 1, "exit %d, not 1:\n%s", st, out);
  assert_contains(out, why);
  free(out);
  MUST("cmp %s/last.ckpt %s/keep.ckpt && cmp %s/metrics.csv %s/keep.csv", run,
       run, run, run);
}

START_TEST(test_foreign_checkpoints_refused) {
  setup();
  const char *run = "build/testdata/run-foreign";
  MUST("rm -rf %s && %s train --data %s --epochs 1 --threads 2 --out %s "
       "--no-plots >/dev/null 2>&1", run, tiny, data, run);
  build("tests/train/tiny10.net", 32, "build/testdata/tiny10-b32", "tiny10");
  char cmd[1024], why[512];
  /* Another model. */
  snprintf(cmd, sizeof cmd, "%s train --data %s --out %s --resume --no-plots",
           trainer, data, run);
  snprintf(why, sizeof why, "netc: %s/last.ckpt holds model 'tiny10' at batch "
           "64; this trainer is 'small10' at batch 64", run);
  refused(cmd, run, why);
  /* Another global batch: 32 images per step, not 64. */
  snprintf(cmd, sizeof cmd, "build/testdata/tiny10-b32/tiny10 train --data %s "
           "--out %s --resume --no-plots", data, run);
  snprintf(why, sizeof why, "last.ckpt was trained at 64 images per step; "
           "this run has 32 (batch 32 x processes x --accumulate): a run "
           "resumes only at the global batch that wrote it");
  refused(cmd, run, why);
  /* ... which a batch-32 trainer reaches with two micro-batches a step;
   * and eval takes the parameters at any batch size. */
  MUST("rm -rf %s-b32 && cp -r %s %s-b32 && build/testdata/tiny10-b32/tiny10 "
       "train --data %s "
       "--out %s-b32 --resume --accumulate 2 --epochs 2 --no-plots "
       ">/dev/null 2>&1 && build/testdata/tiny10-b32/tiny10 eval --data %s "
       "--checkpoint %s/last.ckpt | grep -q ' images=500$'",
       run, run, run, data, run, data, run);
  /* A future format version (the field after the magic). */
  MUST("cp %s/last.ckpt %s/good.ckpt && printf '\\005' | dd of=%s/last.ckpt "
       "bs=1 seek=8 conv=notrunc 2>/dev/null", run, run, run);
  snprintf(cmd, sizeof cmd, "%s train --data %s --out %s --resume --no-plots",
           tiny, data, run);
  snprintf(why, sizeof why, "%s/last.ckpt is checkpoint format version 5; "
           "this trainer reads version 4", run);
  refused(cmd, run, why);
  /* Version 1: the same layout, but checksums by a hash this netc no longer
   * has; refused by its version, for resume and eval alike. */
  MUST("printf '\\001' | dd of=%s/last.ckpt bs=1 seek=8 conv=notrunc "
       "2>/dev/null", run);
  snprintf(why, sizeof why, "netc: %s/last.ckpt is checkpoint format version "
           "1, written by an older netc; this trainer reads version 4 only",
           run);
  refused(cmd, run, why);
  snprintf(cmd, sizeof cmd, "%s eval --data %s --checkpoint %s/last.ckpt",
           tiny, data, run);
  refused(cmd, run, why);
  snprintf(cmd, sizeof cmd, "%s train --data %s --out %s --resume --no-plots",
           tiny, data, run);
  /* One flipped byte in the parameters; a truncated file. */
  MUST("cp %s/good.ckpt %s/last.ckpt && printf 'x' | dd of=%s/last.ckpt "
       "bs=1 seek=30000 conv=notrunc 2>/dev/null", run, run, run);
  snprintf(why, sizeof why, "%s/last.ckpt is corrupt (checksum mismatch); "
           "not loaded", run);
  refused(cmd, run, why);
  MUST("head -c 20000 %s/good.ckpt > %s/last.ckpt", run, run);
  snprintf(why, sizeof why, "%s/last.ckpt is truncated; not loaded", run);
  refused(cmd, run, why);
  /* And the good one still resumes (to the end: nothing left to do). */
  MUST("cp %s/good.ckpt %s/last.ckpt && %s inspect %s/last.ckpt >/dev/null",
       run, run, tiny, run);
}
END_TEST

/* A learning rate of 1e30 blows the second step up: training stops before
 * the update, names the op, and the checkpoint of step 1 stays good. */
START_TEST(test_nonfinite_loss_names_the_op) {
  setup();
  const char *run = "build/testdata/run-nan";
  int st;
  char *out = sh(&st, "rm -rf %s && %s train --data %s --epochs 1 --threads 2 "
                      "--out %s --no-plots --lr 1e30 --warmup-epochs 0 "
                      "--schedule constant --checkpoint-steps 1",
                 run, trainer, data, run);
  ck_assert_msg(st == 1, "exit %d, not 1:\n%s", st, out);
  assert_contains(out, "netc: the loss is NaN at epoch 1 step 2: training "
                       "stopped; the last checkpoint");
  assert_contains(out, "netc: the first NaN or Inf was written by conv "
                       "(forward pass) of layer 'basic1.conv1', defined at "
                       "models/blocks.net:15:9");
  free(out);
  out = sh(&st, "%s inspect %s/last.ckpt", trainer, run);
  ck_assert_int_eq(st, 0);
  assert_contains(out, " global_step=1 ");
  free(out);
}
END_TEST

/* netc build -D: the stock ResNet-18 built for 10 classes trains on the
 * 10-class subset; a trainer built for other classes refuses it and says
 * how to rebuild. */
START_TEST(test_defines_rebuild_for_the_data) {
  setup();
  build_with("models/resnet18.net", 8, "build/testdata/r18-c10", "resnet18",
             "-D classes=10");
  int st;
  char *out = sh(&st, "build/testdata/r18-c10/resnet18 info");
  ck_assert_int_eq(st, 0);
  assert_contains(out, "classes=10");
  free(out);
  MUST("rm -rf build/testdata/run-r18c10 && build/testdata/r18-c10/resnet18 "
       "train --data %s --epochs 1 --max-steps 2 --threads 2 --no-plots "
       "--out build/testdata/run-r18c10 >/dev/null 2>&1", data);
  build_with("tests/train/tiny10.net", 8, "build/testdata/tiny7", "tiny10",
             "-D classes=7");
  out = sh(&st, "build/testdata/tiny7/tiny10 train --data %s --epochs 1 "
                "--out build/testdata/run-tiny7", data);
  ck_assert_int_eq(st, 1);
  assert_contains(out, "has 10 classes; model 'tiny10' has 7: rebuild it for "
                       "this data with 'netc build -D classes=10 -b 8 "
                       "tests/train/tiny10.net' (make train: CLASSES=10)");
  free(out);
}
END_TEST

/* The recipe's knobs: --label-smoothing and --no-augment change the
 * steps, and a resumed run keeps them from its checkpoint without being
 * told again. */
START_TEST(test_recipe_knobs) {
  setup();
  const char *base = "build/testdata/run-knobs";
  const char *common = "--data build/testdata/sub10 --epochs 1 --threads 2 "
                       "--no-plots --log-every 1 --checkpoint-steps 2";
  char *out[4];
  const char *flags[4] = {"", "--label-smoothing 0.3", "--no-augment",
                          "--label-smoothing 0.3 --no-augment"};
  for (int k = 0; k < 4; k++) {
    int st;
    out[k] = sh(&st, "rm -rf %s%d && %s train %s %s --max-steps 4 --out %s%d "
                     "2>/dev/null | grep '^step '", base, k, tiny, common,
                flags[k], base, k);
    ck_assert_msg(st == 0, "%s", out[k]);
    assert_contains(out[k], "step 4 loss ");
  }
  for (int k = 1; k < 4; k++)
    ck_assert_str_ne(out[k], out[0]);
  ck_assert_str_ne(out[1], out[2]);
  int st;
  char *resumed = sh(&st, "rm -rf %s-r && %s train %s %s --max-steps 2 "
                          "--out %s-r >/dev/null 2>&1 && %s train %s --resume "
                          "--max-steps 4 --out %s-r 2>/dev/null | grep "
                          "'^step '", base, tiny, common, flags[3], base, tiny,
                     common, base);
  ck_assert_int_eq(st, 0);
  /* steps 3 and 4 of the uninterrupted run */
  ck_assert_ptr_nonnull(strstr(out[3], "step 3 loss "));
  ck_assert_str_eq(resumed, strstr(out[3], "step 3 loss "));
  free(resumed);
  for (int k = 0; k < 4; k++)
    free(out[k]);
}
END_TEST

/* Training whose log (stdout) is a closed pipe stops as on Ctrl-C: the step
 * finishes, a checkpoint is written, status 1, no message about the pipe. */
START_TEST(test_train_to_closed_pipe) {
  setup();
  const char *run = "build/testdata/run-pipe";
  int st;
  char *out = sh(&st, "rm -rf %s && mkdir -p %s && (sleep 0.5; %s train "
                      "--data %s --epochs 1 --threads 2 --out %s --no-plots "
                      "--log-every 1 2>%s.err; echo \"exit $?\" >&2) | true",
                 run, run, tiny, data, run, run);
  ck_assert_str_eq(out, "exit 1\n");
  free(out);
  out = sh(&st, "cat %s.err", run);
  assert_contains(out, "netc: the output was closed at epoch 1 step 1; "
                       "checkpoint ");
  ck_assert_ptr_null(strstr(out, "Broken pipe"));
  ck_assert_ptr_null(strstr(out, "writing the output"));
  free(out);
  out = sh(&st, "%s inspect %s/last.ckpt", tiny, run);
  ck_assert_int_eq(st, 0);
  assert_contains(out, " global_step=1 ");
  free(out);
}
END_TEST

/* SIGTERM and SIGINT: the step finishes, a checkpoint is written, the
 * status is 1 (the run did not finish), never a death by signal. */
START_TEST(test_polite_signals) {
  setup();
  const char *sig[] = {"TERM", "INT"}, *said[] = {"terminated", "interrupted"};
  for (int k = 0; k < 2; k++) {
    const char *run = "build/testdata/run-signal";
    int st;
    char *out = sh(&st, "rm -rf %s; %s train --data %s --epochs 30 --threads 2 "
                        "--out %s --no-plots & pid=$!; sleep 1.5; "
                        "kill -%s $pid; wait $pid",
                   run, tiny, data, run, sig[k]);
    ck_assert_msg(st == 1, "SIG%s: status %d\n%s", sig[k], st, out);
    char want[64];
    snprintf(want, sizeof want, "netc: %s at epoch ", said[k]);
    assert_contains(out, want);
    free(out);
    MUST("%s inspect %s/last.ckpt >/dev/null", tiny, run);
  }
}
END_TEST

/* Memcheck over one training step of the small network on real data (at
 * batch 4: the same code, a tenth of the time): loader, forward, backward,
 * update, checkpoint. */
START_TEST(test_valgrind_one_step) {
#ifdef __SANITIZE_ADDRESS__
  /* Valgrind cannot run AddressSanitizer's binaries; the plain make test
   * runs this test. */
  fprintf(stderr, "valgrind: not under AddressSanitizer (make test runs it)\n");
  return;
#endif
  setup();
  /* --portable: valgrind 3.19 runs no AVX-512, and a native build on an
   * AVX-512 machine would refuse to start under it. */
  build_with("tests/train/small10.net", 4, "build/testdata/small10-b4",
             "small10", "--portable");
  int st;
  char *out = sh(&st, "rm -rf build/testdata/run-vg && valgrind -q "
                      "--error-exitcode=99 --leak-check=full "
                      "--errors-for-leak-kinds=definite "
                      "build/testdata/small10-b4/small10 train --data %s "
                      "--epochs 1 --max-steps 1 --threads 1 --no-plots "
                      "--out build/testdata/run-vg", data);
  ck_assert_msg(st == 0, "valgrind: status %d\n%s", st, out);
  ck_assert_ptr_null(strstr(out, "=="));  /* no valgrind report at all */
  assert_contains(out, "netc: stopped at epoch 1 step 1");
  free(out);
}
END_TEST

Suite *suite_train(void) {
  Suite *s = suite_create("train");
  TCase *tc = tcase_create("train");
  tcase_set_timeout(tc, 600);
  tcase_add_test_unsanitized(tc, test_learns_ten_classes);
  tcase_add_test_unsanitized(tc, test_resume_gives_the_same_losses);
  tcase_add_test(tc, test_kill_and_resume);
  tcase_add_test_unsanitized(tc, test_dropout_resumes_exactly);
  tcase_add_test(tc, test_one_trainer_per_run_dir);
  tcase_add_test(tc, test_full_disk);
  tcase_add_test(tc, test_foreign_checkpoints_refused);
  tcase_add_test(tc, test_nonfinite_loss_names_the_op);
  tcase_add_test(tc, test_polite_signals);
  tcase_add_test(tc, test_valgrind_one_step);
  tcase_add_test(tc, test_train_to_closed_pipe);
  tcase_add_test(tc, test_defines_rebuild_for_the_data);
  tcase_add_test(tc, test_recipe_knobs);
  suite_add_tcase(s, tc);
  return s;
}
