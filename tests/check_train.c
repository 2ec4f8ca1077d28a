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
static const char *tiny = "build/testdata/tiny10/tiny10";

/* Builds a trainer unless it is newer than netc, the runtime and its
 * source. NETC_TEST_CONV, if set, is its --conv: the sanitized suite sets
 * gemm (Makefile), because AddressSanitizer instruments netc's own kernels
 * but not OpenBLAS, and with them five sanitized epochs take over the
 * test's 10 minutes; check_runtime and check_codegen run those kernels
 * under the sanitizers. */
static void build_with(const char *net, int batch, const char *dir,
                       const char *name, const char *flags) {
  const char *conv = getenv("NETC_TEST_CONV");
  MUST("t=%s/%s; d=$(dirname %s); for f in %s $d/libnetcrt.a $d/trainer.o "
       "%s; do [ \"$t\" -nt \"$f\" ] || { %s build %s%s %s -b %d -o %s %s "
       ">/dev/null; exit $?; }; done", dir, name, netc_path(), netc_path(),
       net, netc_path(), conv ? "--conv " : "", conv ? conv : "", flags,
       batch, dir, net);
}

static void build(const char *net, int batch, const char *dir,
                  const char *name) {
  build_with(net, batch, dir, name, "");
}

/* The subset and the trainers, made once per build directory. */
static void setup(void) {
  MUST("sh tests/train/subset.sh %s 10 >/dev/null", data);
  build("tests/train/small10.net", 64, "build/testdata/small10", "small10");
  build("tests/train/tiny10.net", 64, "build/testdata/tiny10", "tiny10");
}

static void assert_contains(const char *text, const char *want) {
  if (!strstr(text, want))
    ck_abort_msg("expected \"%s\" in:\n%s", want, text);
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
  MUST("cp %s/last.ckpt %s/good.ckpt && printf '\\004' | dd of=%s/last.ckpt "
       "bs=1 seek=8 conv=notrunc 2>/dev/null", run, run, run);
  snprintf(cmd, sizeof cmd, "%s train --data %s --out %s --resume --no-plots",
           tiny, data, run);
  snprintf(why, sizeof why, "%s/last.ckpt is checkpoint format version 4; "
           "this trainer reads version 3", run);
  refused(cmd, run, why);
  /* Version 1: the same layout, but checksums by a hash this netc no longer
   * has; refused by its version, for resume and eval alike. */
  MUST("printf '\\001' | dd of=%s/last.ckpt bs=1 seek=8 conv=notrunc "
       "2>/dev/null", run);
  snprintf(why, sizeof why, "netc: %s/last.ckpt is checkpoint format version "
           "1, written by an older netc; this trainer reads version 3 only",
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

/* export: weights in torchvision's names load into torchvision's own
 * ResNet with strict=True and give netc's logits on real validation
 * images (tests/export/torchvision_check.py); weights in netc's names
 * come back in with step --init and give the exporting checkpoint's
 * losses exactly. */
static const char *const exported[] = {"resnet18", "resnet34", "resnet50",
                                       "resnet101", "resnet152"};

START_TEST(test_export_torchvision) {
  setup();
  const char *net = exported[_i];
  char dir[256], model[256], run[256];
  snprintf(dir, sizeof dir, "build/testdata/%s-c10", net);
  snprintf(model, sizeof model, "models/%s.net", net);
  snprintf(run, sizeof run, "build/testdata/run-export-%s", net);
  build_with(model, 8, dir, net, "-D classes=10");
  MUST("rm -rf %s && %s/%s train --data %s --epochs 1 --max-steps 3 "
       "--threads 2 --no-plots --out %s >/dev/null 2>&1", run, dir, net, data,
       run);
  MUST("%s/%s export --checkpoint %s/last.ckpt --names torchvision -o "
       "%s/tv.safetensors && %s/%s eval --data %s --checkpoint %s/last.ckpt "
       "--limit 40 --inputs %s/in.f32 --logits %s/z.f32", dir, net, run, run,
       dir, net, data, run, run, run);
  int st;
  char *out = sh(&st, "/usr/bin/python3 tests/export/torchvision_check.py %s "
                      "10 %s/tv.safetensors %s/in.f32 %s/z.f32", net, run, run,
                 run);
  fprintf(stderr, "%s", out);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "top1_agree=40/40");
  free(out);
  /* Back in, in either naming: the same first steps as the checkpoint. */
  MUST("%s/%s export --checkpoint %s/last.ckpt -o %s/netc.safetensors", dir,
       net, run, run);
  char *want = sh(&st, "%s/%s step --steps 2 --checkpoint %s/last.ckpt", dir,
                  net, run);
  ck_assert_int_eq(st, 0);
  assert_contains(want, "step 2 loss ");
  for (int k = 0; k < 2; k++) {
    out = sh(&st, "%s/%s step --steps 2 --init %s/%s.safetensors", dir, net,
             run, k ? "netc" : "tv");
    ck_assert_int_eq(st, 0);
    ck_assert_str_eq(out, want);
    free(out);
  }
  /* ... which a fresh initialization does not give. */
  out = sh(&st, "%s/%s step --steps 2", dir, net);
  ck_assert_str_ne(out, want);
  free(out);
  free(want);
  /* Weights PyTorch made (its own initialization, random batchnorm
   * statistics, its own safetensors writer) come in: `eval --init` gives
   * torchvision's eval-mode logits on the same images. */
  out = sh(&st, "/usr/bin/python3 tests/export/torchvision_write.py %s 10 "
                "%s/pt.safetensors %s/in.f32 %s/pt.f32 && %s/%s eval --data %s "
                "--init %s/pt.safetensors --limit 40 --logits %s/zpt.f32 && "
                "/usr/bin/python3 tests/export/logits_compare.py 10 %s/pt.f32 "
                "%s/zpt.f32", net, run, run, run, dir, net, data, run, run, run,
           run);
  fprintf(stderr, "%s from PyTorch: %s", net, out);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "top1_agree=40/40");
  free(out);
}
END_TEST

/* export -o model.onnx: the model passes onnx.checker with full checking,
 * and ONNX Runtime (onnxruntime-node) gives netc's eval logits on real
 * validation images: the same top-1 for each, within 1e-4 relative. */
static const struct {
  const char *net, *name;
} onnx_models[] = {
    {"tests/train/small10.net", "small10"},
    {"models/resnet18.net", "resnet18"},
    {"models/seed_resnet.net", "seed_resnet"},
};

START_TEST(test_export_onnx) {
  setup();
  MUST("sh tests/export/setup.sh build/npm");
  const char *net = onnx_models[_i].net, *name = onnx_models[_i].name;
  char dir[256], run[256];
  snprintf(dir, sizeof dir, "build/testdata/onnx-%s", name);
  snprintf(run, sizeof run, "build/testdata/run-onnx-%s", name);
  build_with(net, 8, dir, name, "-D classes=10");
  MUST("rm -rf %s && %s/%s train --data %s --epochs 1 --max-steps 3 "
       "--threads 2 --no-plots --out %s >/dev/null 2>&1 && %s/%s export "
       "--checkpoint %s/last.ckpt -o %s/model.onnx && %s/%s eval --data %s "
       "--checkpoint %s/last.ckpt --limit 200 --inputs %s/in.f32 --logits "
       "%s/z.f32", run, dir, name, data, run, dir, name, run, run, dir, name,
       data, run, run, run);
  int st;
  char *out = sh(&st, "/usr/bin/python3 tests/export/onnx_check.py "
                      "%s/model.onnx 10 && NODE_PATH=build/npm/node_modules "
                      "node tests/export/onnx_run.js %s/model.onnx 10 "
                      "%s/in.f32 %s/z.f32", run, run, run, run);
  fprintf(stderr, "%s: %s", name, out);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "top1_agree=200/200");
  free(out);
  /* --fold-bn: no BatchNormalization left (every batchnorm here follows a
   * conv), the same predictions. */
  out = sh(&st, "%s/%s export --checkpoint %s/last.ckpt --fold-bn -o "
                "%s/folded.onnx >/dev/null && /usr/bin/python3 "
                "tests/export/onnx_check.py %s/folded.onnx 10 && "
                "NODE_PATH=build/npm/node_modules node tests/export/onnx_run.js "
                "%s/folded.onnx 10 %s/in.f32 %s/z.f32", dir, name, run, run,
           run, run, run, run);
  fprintf(stderr, "%s --fold-bn: %s", name, out);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "top1_agree=200/200");
  ck_assert_msg(!strstr(out, "BatchNormalization"), "%s", out);
  free(out);
  if (strcmp(name, "seed_resnet"))
    return;
  /* The seed network's weights in the original module, written apart
   * from netc (tests/reference/modules.py): its unused projections keep
   * their initial values, everything else comes from netc. */
  out = sh(&st, "%s/%s export --checkpoint %s/last.ckpt -o %s/w.safetensors "
                ">/dev/null && /usr/bin/python3 tests/export/original_check.py "
                "10 %s/w.safetensors %s/in.f32 %s/z.f32", dir, name, run, run,
           run, run, run);
  fprintf(stderr, "%s", out);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "top1_agree=200/200");
  free(out);
}
END_TEST

/* Bad weights files: a clear error naming the file or the tensor, exit 1,
 * and nothing overwritten. */
START_TEST(test_export_bad_inputs) {
  setup();
  const char *run = "build/testdata/run-export-bad";
  MUST("rm -rf %s && %s train --data %s --epochs 1 --max-steps 2 --threads 2 "
       "--no-plots --out %s >/dev/null 2>&1 && %s export --checkpoint "
       "%s/last.ckpt -o %s/w.safetensors", run, tiny, data, run, tiny, run,
       run);
  build_with("tests/train/tiny10.net", 8, "build/testdata/tiny7", "tiny10",
             "-D classes=7");
  MUST("head -c 3000 %s/w.safetensors > %s/short.safetensors && "
       "printf 'keep' > %s/keep.safetensors", run, run, run);
  const char *tiny7 = "build/testdata/tiny7/tiny10";
  /* Each command: the trainer, then the run directory wherever %s is. */
  const struct {
    const char *trainer, *cmd, *why;
  } bad[] = {
      {tiny, "%s step --init %s/short.safetensors",
       "lies past the end of the file"},
      {tiny, "%s step --init tests/train/tiny10.net",
       "tests/train/tiny10.net is not a safetensors file"},
      {tiny, "%s step --init %s/missing.safetensors", "cannot open"},
      {tiny, "%s eval --data build/testdata/sub10 --init "
       "%s/short.safetensors", "lies past the end of the file"},
      {tiny7, "%s step --init %s/w.safetensors",
       "tensor classifier1.dense1.weight has shape [10, 16]; model 'tiny10' "
       "needs [7, 16]"},
      {tiny, "%s train --data build/testdata/sub10 --out %s/again --init "
       "%s/short.safetensors", "lies past the end of the file"},
      {tiny, "%s export --checkpoint %s/last.ckpt --names torchvision -o "
       "%s/keep.safetensors", "tensor conv1.weight has no torchvision name"},
      {tiny, "%s export --checkpoint %s/missing.ckpt -o %s/keep.safetensors",
       "cannot open checkpoint"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, bad[i].cmd, bad[i].trainer, run, run);
    int st;
    char *out = sh(&st, "%s", cmd);
    ck_assert_msg(st == 1, "%s: status %d\n%s", cmd, st, out);
    assert_contains(out, bad[i].why);
    free(out);
  }
  char *kept = read_file("build/testdata/run-export-bad/keep.safetensors",
                         NULL);
  ck_assert_str_eq(kept, "keep");
  free(kept);
  /* A file that is JSON-headed but not safetensors' JSON. */
  MUST("printf '\\010\\000\\000\\000\\000\\000\\000\\000{\"a\": 1}' > "
       "%s/json.safetensors", run);
  int st;
  char *out = sh(&st, "%s step --init %s/json.safetensors", tiny, run);
  ck_assert_int_eq(st, 1);
  assert_contains(out, "is not a safetensors file");
  free(out);
}
END_TEST

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

/* ---- data-parallel training (netc build --mpi) ------------------------ */

/* mpirun as the tests run it: as root in CI (which Open MPI refuses
 * unless told), two ranks on two cores, unbound (each rank's OpenMP
 * threads may run anywhere), and under the sanitizers without the leak
 * report, which would count Open MPI's own allocations at exit. */
#define MPIRUN                                                                \
  "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "                \
  "ASAN_OPTIONS=detect_leaks=0 timeout 300 mpirun -np 2 --bind-to none "

static const char *mpi_tiny = "build/testdata/tiny10-mpi/tiny10";
/* The run the MPI equivalence tests repeat on 1 and 2 processes. */
static const char *mpi_common = "--data build/testdata/sub10 --epochs 1 "
                                "--max-steps 12 --threads 1 --no-plots "
                                "--warmup-epochs 0";

static void setup_mpi(void) {
  setup();
  build_with("tests/train/tiny10.net", 32, "build/testdata/tiny10-mpi",
             "tiny10", "--mpi --bucket-kib 8");
}

/* The largest relative difference `inspect --against` prints. */
static double params_rel_diff(const char *a, const char *b) {
  int st;
  char *out = sh(&st, "ASAN_OPTIONS=detect_leaks=0 %s inspect %s --against "
                      "%s", mpi_tiny, a, b);
  ck_assert_msg(st == 0, "%s", out);
  const char *p = strstr(out, "max_rel_diff=");
  ck_assert_ptr_nonnull(p);
  double d = atof(p + strlen("max_rel_diff="));
  free(out);
  return d;
}

/* 2 processes x batch 32 take the steps of 1 process x batch 32 with two
 * micro-batches a step: the same images, the same per-micro-batch
 * batchnorm statistics, the same gradient sums (g0 + g1 either way). So
 * the parameters agree to the last bit; the tolerance (1e-6 relative)
 * leaves room for an MPI whose reduction order differs. The negative
 * control, 1 process x batch 64, normalizes over all 64 images and must
 * differ clearly. */
START_TEST(test_mpi_equivalence) {
  setup_mpi();
  const char *r = "build/testdata/mpi-eq";
  const char *common = mpi_common;
  int st;
  char *out = sh(&st, "rm -rf %s && mkdir -p %s && " MPIRUN "%s train %s "
                      "--out %s/two --check-replicas 2>&1", r, r, mpi_tiny,
                 common, r);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "netc: 2 processes x 1 thread; 64 images per step = "
                       "batch 32 per process x 2 processes x 1 micro-batch");
  assert_contains(out, "netc: the parameters were identical on all 2 "
                       "processes after each of 12 steps");
  free(out);
  MUST("ASAN_OPTIONS=detect_leaks=0 %s train %s --out %s/acc --accumulate 2 "
       ">/dev/null 2>&1", mpi_tiny, common, r);
  MUST("%s train %s --out %s/b64 >/dev/null 2>&1", tiny, common, r);
  char a[256], b[256], c[256];
  snprintf(a, sizeof a, "%s/two/last.ckpt", r);
  snprintf(b, sizeof b, "%s/acc/last.ckpt", r);
  snprintf(c, sizeof c, "%s/b64/last.ckpt", r);
  double same = params_rel_diff(a, b), control = params_rel_diff(a, c);
  fprintf(stderr, "mpi: 2 x 32 against 1 x 32 x accumulate 2: max relative "
                  "parameter difference %.3e after 12 steps; against 1 x 64 "
                  "(negative control): %.3e\n", same, control);
  ck_assert_double_le(same, 1e-6);
  ck_assert_double_ge(control, 1e-2);
  /* Over TCP (loopback) instead of shared memory: the same sums. */
  MUST(MPIRUN "--mca btl tcp,self %s train %s --out %s/tcp >/dev/null 2>&1",
       mpi_tiny, common, r);
  snprintf(b, sizeof b, "%s/tcp/last.ckpt", r);
  ck_assert_double_eq(params_rel_diff(a, b), 0);
}
END_TEST

/* --sync-bn: 2 processes x 32 normalize over all 64 images, as 1 x 64
 * does. The sums go in another order (each process's rows, then across
 * processes), so the runs agree to float noise, not to the bit: measured
 * 1.8e-7 (max over tensors of max |a - b| / max |a|) after 12 steps,
 * against 0.16 for ghost batches (the negative control above). The
 * tolerance, 1e-5, is 50 times the noise and 10^4 below the signal. */
START_TEST(test_mpi_sync_bn) {
  setup_mpi();
  const char *r = "build/testdata/mpi-sync";
  const char *common = mpi_common;
  int st;
  char *out = sh(&st, "rm -rf %s && mkdir -p %s && " MPIRUN "%s train %s "
                      "--sync-bn --check-replicas --out %s/sync 2>&1", r, r,
                 mpi_tiny, common, r);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "batchnorm over the global batch (--sync-bn)");
  free(out);
  MUST("%s train %s --out %s/b64 >/dev/null 2>&1", tiny, common, r);
  char a[256], b[256];
  snprintf(a, sizeof a, "%s/sync/last.ckpt", r);
  snprintf(b, sizeof b, "%s/b64/last.ckpt", r);
  double d = params_rel_diff(a, b);
  fprintf(stderr, "mpi: 2 x 32 with --sync-bn against 1 x 64: max relative "
                  "parameter difference %.3e after 12 steps\n", d);
  ck_assert_double_le(d, 1e-5);
}
END_TEST

/* A rank killed: the job ends non-zero within 60 s; resumed, on 2
 * processes or on 1, it ends with the parameters of an uninterrupted run
 * (tests/train/mpi_faults.sh). */
START_TEST(test_mpi_kill_and_resume) {
  setup_mpi();
  int st;
  char *out = sh(&st, "ASAN_OPTIONS=detect_leaks=0 sh tests/train/"
                      "mpi_faults.sh %s build/testdata/sub10 "
                      "build/testdata/mpi-faults 3 40", mpi_tiny);
  fprintf(stderr, "%s", out);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "mpi_faults: ok ");
  free(out);
}
END_TEST

/* Two trainers of different plans in one job: a message, not a hang. */
START_TEST(test_mpi_plan_mismatch) {
  setup_mpi();
  build_with("tests/train/tiny10.net", 32, "build/testdata/tiny10-mpi16",
             "tiny10", "--mpi --bucket-kib 16");
  int st;
  char *out = sh(&st, "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                      "ASAN_OPTIONS=detect_leaks=0 timeout 120 mpirun "
                      "--bind-to none -np 1 %s train --data build/testdata/"
                      "sub10 --out build/testdata/mpi-mismatch --no-plots : "
                      "-np 1 build/testdata/tiny10-mpi16/tiny10 train --data "
                      "build/testdata/sub10 --out build/testdata/mpi-mismatch "
                      "--no-plots 2>&1", mpi_tiny);
  ck_assert_msg(st != 0 && st != 124, "exit %d:\n%s", st, out);
  assert_contains(out, "netc: the processes of this run differ in their "
                       "trainer (plan hash ");
  free(out);
}
END_TEST

/* A scheduler restarts a job with its command line: --resume before the
 * first checkpoint starts the run, and says so. */
START_TEST(test_mpi_resume_without_checkpoint) {
  setup_mpi();
  int st;
  char *out = sh(&st, "rm -rf build/testdata/mpi-fresh && " MPIRUN "%s train "
                      "--data build/testdata/sub10 --out build/testdata/"
                      "mpi-fresh --resume --max-steps 2 --threads 1 "
                      "--no-plots 2>&1", mpi_tiny);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "netc: no checkpoint build/testdata/mpi-fresh/"
                       "last.ckpt yet: starting a new run");
  free(out);
  out = sh(&st, "ASAN_OPTIONS=detect_leaks=0 %s inspect build/testdata/"
                "mpi-fresh/last.ckpt", mpi_tiny);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, " global_step=2 ");
  free(out);
}
END_TEST

/* Only train and bench run on several processes. */
START_TEST(test_mpi_other_commands_refused) {
  setup_mpi();
  int st;
  char *out = sh(&st, MPIRUN "%s step 2>&1", mpi_tiny);
  ck_assert_msg(st != 0, "%s", out);
  assert_contains(out, "tiny10: only 'train' and 'bench' run on several "
                       "processes; run 'step' without mpirun");
  free(out);
}
END_TEST

Suite *suite_train(void) {
  Suite *s = suite_create("train");
  TCase *tc = tcase_create("train");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_learns_ten_classes);
  tcase_add_test(tc, test_resume_gives_the_same_losses);
  tcase_add_test(tc, test_kill_and_resume);
  tcase_add_test(tc, test_full_disk);
  tcase_add_test(tc, test_foreign_checkpoints_refused);
  tcase_add_test(tc, test_nonfinite_loss_names_the_op);
  tcase_add_test(tc, test_polite_signals);
  tcase_add_test(tc, test_valgrind_one_step);
  tcase_add_test(tc, test_train_to_closed_pipe);
  tcase_add_test(tc, test_defines_rebuild_for_the_data);
  tcase_add_loop_test(tc, test_export_torchvision, 0,
                      sizeof exported / sizeof exported[0]);
  tcase_add_test(tc, test_export_bad_inputs);
  tcase_add_loop_test(tc, test_export_onnx, 0,
                      sizeof onnx_models / sizeof onnx_models[0]);
  tcase_add_test(tc, test_recipe_knobs);
  suite_add_tcase(s, tc);
  TCase *mpi = tcase_create("mpi");
  tcase_set_timeout(mpi, 600);
  tcase_add_test(mpi, test_mpi_equivalence);
  tcase_add_test(mpi, test_mpi_sync_bn);
  tcase_add_test(mpi, test_mpi_kill_and_resume);
  tcase_add_test(mpi, test_mpi_plan_mismatch);
  tcase_add_test(mpi, test_mpi_other_commands_refused);
  tcase_add_test(mpi, test_mpi_resume_without_checkpoint);
  suite_add_tcase(s, mpi);
  /* The command line: quick, apart from the runs above. */
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
