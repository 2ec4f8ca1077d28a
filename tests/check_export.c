/* check_export.c: models that leave netc and weights that come in: a
 * checkpoint as safetensors in torchvision's names loads into
 * torchvision's ResNets, as ONNX it runs in ONNX Runtime, both giving
 * netc's logits; bad inputs to export and --init are refused by name. */
#include <stdlib.h>
#include <string.h>

#include "check_train.h"

/* export: weights in torchvision's names load into torchvision's own
 * ResNet with strict=True and give netc's logits on real validation
 * images (tests/export/torchvision_check.py); weights in netc's names
 * come back in with step --init and give the exporting checkpoint's
 * losses exactly; PyTorch's own weights come in with eval --init.
 * ResNet-18 and ResNet-50 (a basic and a bottleneck network) take every
 * step; the other three, which differ from them only in how many blocks a
 * stage has, the name mapping alone (strict load, logits on 8 images):
 * the whole round trip of all five took 168 s of a 14-minute suite. */
static const struct {
  const char *net;
  int full;
} exported[] = {{"resnet18", 1}, {"resnet50", 1}, {"resnet34", 0},
                {"resnet101", 0}, {"resnet152", 0},
                {"wide_resnet50_2", 1},  /* bottleneck's base_width 128 */
                {"resnext50_32x4d", 1},  /* groups=32 */
                {"resnext101_32x8d", 0}};

START_TEST(test_export_torchvision) {
  setup();
  const char *net = exported[_i].net;
  int full = exported[_i].full;
  char dir[256], model[256], run[256];
  snprintf(dir, sizeof dir, "build/testdata/%s-c10", net);
  snprintf(model, sizeof model, "models/%s.net", net);
  snprintf(run, sizeof run, "build/testdata/run-export-%s", net);
  build_with(model, 8, dir, net, "-D classes=10");
  int images = full ? 40 : 8;
  MUST("rm -rf %s && %s/%s train --data %s --epochs 1 --max-steps %d "
       "--threads 2 --no-plots --out %s >/dev/null 2>&1", run, dir, net, data,
       full ? 3 : 1, run);
  MUST("%s/%s export --checkpoint %s/last.ckpt --names torchvision -o "
       "%s/tv.safetensors && %s/%s eval --data %s --checkpoint %s/last.ckpt "
       "--limit %d --inputs %s/in.f32 --logits %s/z.f32", dir, net, run, run,
       dir, net, data, run, images, run, run);
  int st;
  char *out = sh(&st, "/usr/bin/python3 tests/export/torchvision_check.py %s "
                      "10 %s/tv.safetensors %s/in.f32 %s/z.f32", net, run, run,
                 run);
  fprintf(stderr, "%s", out);
  ck_assert_msg(st == 0, "%s", out);
  char agree[64];
  snprintf(agree, sizeof agree, "top1_agree=%d/%d", images, images);
  assert_contains(out, agree);
  free(out);
  if (!full)
    return;
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
  int bn_after_conv; /* every batchnorm follows a conv: --fold-bn folds all */
} onnx_models[] = {
    {"tests/train/small10.net", "small10", 1},
    /* sigmoid on maps and vectors, a squeeze-excitation gate (Mul) */
    {"tests/train/gate10.net", "gate10", 1},
    {"models/resnet18.net", "resnet18", 1},
    {"models/seed_resnet.net", "seed_resnet", 1},
    {"models/se_resnet50.net", "se_resnet50", 1},
    {"models/preact_resnet18.net", "preact_resnet18", 0},
    {"models/resnet50d.net", "resnet50d", 1}, /* AveragePool shortcuts */
    {"models/resnext50_32x4d.net", "resnext50_32x4d", 1}, /* Conv group */
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
  /* --fold-bn: the same predictions, and no BatchNormalization left where
   * every batchnorm follows a conv (pre-activation's follow adds). */
  out = sh(&st, "%s/%s export --checkpoint %s/last.ckpt --fold-bn -o "
                "%s/folded.onnx >/dev/null && /usr/bin/python3 "
                "tests/export/onnx_check.py %s/folded.onnx 10 && "
                "NODE_PATH=build/npm/node_modules node tests/export/onnx_run.js "
                "%s/folded.onnx 10 %s/in.f32 %s/z.f32", dir, name, run, run,
           run, run, run, run);
  fprintf(stderr, "%s --fold-bn: %s", name, out);
  ck_assert_msg(st == 0, "%s", out);
  assert_contains(out, "top1_agree=200/200");
  if (onnx_models[_i].bn_after_conv)
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

Suite *suite_export(void) {
  Suite *s = suite_create("export");
  TCase *tc = tcase_create("export");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, test_export_torchvision, 0,
                      sizeof exported / sizeof exported[0]);
  tcase_add_test(tc, test_export_bad_inputs);
  tcase_add_loop_test(tc, test_export_onnx, 0,
                      sizeof onnx_models / sizeof onnx_models[0]);
  suite_add_tcase(s, tc);
  return s;
}
