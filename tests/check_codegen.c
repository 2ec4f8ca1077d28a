/* check_codegen.c: generated trainers, end to end: they compile warning
 * free with gcc and clang, the same input gives the same bytes, a step on
 * random data runs, and one training step of each compared network matches
 * PyTorch (tests/reference/torch_ref.py) tensor by tensor. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "check_netc.h"
#include "util/util.h" /* xprintf */

/* Runs a shell command; fails the test with its output unless it exits 0.
 * Returns the output (malloc'ed). */
static char *must(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *must(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *cmd = NULL;
  ck_assert_int_ge(vasprintf(&cmd, fmt, ap), 0);
  va_end(ap);
  int status;
  char *out = run_command(cmd, &status);
  if (status != 0) { /* check refuses a message of over 4 kB */
    fprintf(stderr, "%s\n", out);
    ck_abort_msg("exit %d: %s (its output is above)", status, cmd);
  }
  free(cmd);
  return out;
}

/* The PyTorch comparisons. (ResNet-18 against a reference rebuilt from its
 * graph is not here: the torchvision case compares the same build against
 * an independent module, and the graph rebuild is proved on the others.)
 * The seed network and ResNet-18 are compared
 * with a float64 reference: PyTorch's own float32 gradients are off by up
 * to 1e-2 on the seed network and 1.3e-1 on ResNet-18 at batch 8 (ReLU
 * inputs within rounding of zero: no seed of 30 avoids them on its 2x2
 * maps), so a float32 reference pins one summation order, not the truth;
 * see docs/testing.md. */
static const struct {
  const char *net, *stem;
  int batch;
  const char *ref_args;
  const char *tag;   /* the test's directory under the temp dir, or NULL */
  const char *build; /* netc build's extra options */
} compared[] = {
    {"tests/golden/small.net", "small", 8, "", NULL, ""},
    {"tests/reference/flat.net", "flat", 8, "", NULL, ""},
    /* train --label-smoothing: as cross_entropy(label_smoothing=0.1) */
    {"tests/golden/small.net", "small", 8, "--label-smoothing 0.1",
     "smoothing", ""},
    /* The seed network with direct convolutions: with the cost model's
     * Winograd F(4x4,3x3) on its 3x3 layers, its float32 gradients differ
     * from float64 by up to 2.3e-2 where PyTorch's float32 differs by
     * 5e-3 (the ReLU before each shared block's add, applied 2-5 times,
     * amplifies the transform's rounding); Winograd's own error is tested
     * per kernel (check_runtime, docs/kernels.md). */
    {"models/seed_resnet.net", "seed_resnet", 2, "--float64 --tries 3 --lr 0.01",
     NULL, "--conv direct"},
    /* The same against networks written independently of netc's graph
     * (tests/reference/modules.py): torchvision's own ResNets, and the
     * original project's module. The seed is the largest ReLU margin of
     * the first few (torch_ref's --tries rule): at batch 2 every seed has
     * a ReLU input within 1e-7 of zero, and the first one's flips. */
    {"models/resnet18.net", "resnet18", 8, "--float64 --module torchvision",
     "torchvision", ""},
    /* ResNet-50 at batch 4 with direct convolutions too: with its Winograd
     * layers, stage 4's gradients differ from float64 by up to 5.2e-1 where
     * PyTorch's float32 differs by 1.7e-1 (2x2 maps, 16 values per
     * batchnorm); direct: within 3x PyTorch float32's own error. That
     * error is estimated from perturbed float32 runs: with torch_ref's 4,
     * on an AVX-512 EPYC its estimate on stage3.bottleneck6.conv3.weight
     * was 1.3e-2 where netc's was 5.1e-2; 16 runs estimate 5.1e-2 (13 s
     * more), so the bound is PyTorch's spread, not one lucky draw. */
    {"models/resnet50.net", "resnet50", 4,
     "--float64 --module torchvision --perturbations 16", "torchvision",
     "--conv direct"},
    {"models/seed_resnet.net", "seed_resnet", 2,
     "--float64 --tries 3 --lr 0.01 --module original", "original",
     "--conv direct"},
    /* grouped convolutions: torchvision's ResNeXt-50 */
    {"models/resnext50_32x4d.net", "resnext50_32x4d", 4,
     "--float64 --module torchvision", "torchvision", ""},
    /* The zoo's networks from papers, against modules written from those
     * papers (modules.py: SE, pre-activation, ResNet-D), direct
     * convolutions as ResNet-50 above. */
    /* --perturbations 16 as ResNet-50: on an AVX-512 EPYC, 4 estimated
     * PyTorch float32's own error on stage4.se_bottleneck2.batchnorm1.bias
     * below 1e-3 where 16 find 6.66e-2, and netc's is 6.66e-2. */
    {"models/se_resnet50.net", "se_resnet50", 4,
     "--float64 --module paper --perturbations 16", "paper", "--conv direct"},
    {"models/preact_resnet18.net", "preact_resnet18", 4,
     "--float64 --module paper", "paper", "--conv direct"},
    {"models/resnet50d.net", "resnet50d", 4, "--float64 --module paper",
     "paper", "--conv direct"},
};

START_TEST(test_matches_pytorch) {
  const char *root = temp_dir();
  const char *net = compared[_i].net, *stem = compared[_i].stem;
  char dir[512];
  snprintf(dir, sizeof dir, "%s%s%s", root, compared[_i].tag ? "/" : "",
           compared[_i].tag ? compared[_i].tag : "");
  int b = compared[_i].batch;
  free(must("mkdir -p %s && %s build --no-tune %s -b %d -o %s/%s %s", dir, netc_path(),
            compared[_i].build, b, dir, stem, net));
  free(must("%s dump graph --json -b %d %s > %s/%s.json", netc_path(), b, net,
            dir, stem));
  free(must("/usr/bin/python3 tests/reference/torch_ref.py %s %s/%s.json "
            "%s/%s.ref", compared[_i].ref_args, dir, stem, dir, stem));
  char *out = must("%s/%s/%s compare %s/%s.ref", dir, stem, stem, dir, stem);
  fprintf(stderr, "%s%s%s", compared[_i].tag ? compared[_i].tag : "",
          compared[_i].tag ? ": " : "",
          strstr(out, "logits and loss") ? strstr(out, "logits and loss") : out);
  char want[128];
  snprintf(want, sizeof want, "compare %s: ok", stem);
  ck_assert_ptr_nonnull(strstr(out, want));
  free(out);
}
END_TEST

START_TEST(test_generated_code_is_clean_and_deterministic) {
  const char *dir = temp_dir();
  free(must("%s build --no-tune --no-compile -o %s/g1 models/resnet50.net", netc_path(),
            dir));
  free(must("%s build --no-tune --no-compile -o %s/g2 models/resnet50.net", netc_path(),
            dir));
  free(must("cmp %s/g1/resnet50.c %s/g2/resnet50.c && cmp %s/g1/resnet50.h "
            "%s/g2/resnet50.h", dir, dir, dir, dir));
  /* Both compilers, every warning an error. */
  free(must("gcc -std=c11 -Wall -Wextra -Werror -fsyntax-only "
            "-Iruntime/kernels -Iruntime/model -I%s/g1 %s/g1/resnet50.c",
            dir, dir));
  free(must("clang -std=c11 -Wall -Wextra -Werror -fsyntax-only "
            "-Iruntime/kernels -Iruntime/model -I%s/g1 %s/g1/resnet50.c",
            dir, dir));
  /* Reads like hand-written code: a banner, the plan, commented calls. */
  char *path = NULL;
  ck_assert_int_ge(asprintf(&path, "%s/g1/resnet50.c", dir), 0);
  char *c = read_file(path, NULL);
  ck_assert_ptr_nonnull(strstr(c, "Generated by netc " NETC_VERSION
                                  " from models/resnet50.net"));
  ck_assert_ptr_nonnull(strstr(c, "/* Memory plan: one arena of "));
  ck_assert_ptr_nonnull(strstr(c, "#define T_stage2_bottleneck1_conv2 "));
  /* Shapes as the dumps print them (NxCxHxW), sizes in a named struct. */
  ck_assert_ptr_nonnull(strstr(
      c, "/* models/blocks.net:28:9 stage2.bottleneck1.conv2: conv -> "
         "64x128x8x8 */\n  conv_forward(F(T_stage2_bottleneck1_conv2), "));
  ck_assert_ptr_nonnull(strstr(
      c, "static const ConvShape L_stage2_bottleneck1_conv2 = {.N = 64, "
         ".H = 16, .W = 16, .C = 128, .OC = 128,\n"
         "                                                     .K = 3, "
         ".stride = 2, .pad = 1, .OH = 8,"));
  /* Residual semantics are named flags, never bare integers. */
  ck_assert_ptr_nonnull(strstr(c, "NETC_ADD"));
  ck_assert_ptr_null(strstr(c, ", 0);\n"));
  ck_assert_ptr_null(strstr(c, ", 1);\n"));
  /* No line longer than 100 columns, in either file. */
  for (int f = 0; f < 2; f++) {
    char *h = NULL;
    ck_assert_int_ge(asprintf(&h, "%s/g1/resnet50.%s", dir, f ? "h" : "c"),
                     0);
    char *text = read_file(h, NULL), *line = text;
    int no = 1;
    for (char *nl; (nl = strchr(line, '\n')); line = nl + 1, no++)
      ck_assert_msg(nl - line <= 100, "%s:%d is %d columns", h, no,
                    (int)(nl - line));
    free(text);
    free(h);
  }
  free(c);
  free(path);
}
END_TEST

/* The generated C of tests/golden/small.net is pinned: a change to it is a
 * change to tests/golden/small.{c,h}.golden (make golden), reviewed. */
START_TEST(test_generated_code_golden) {
  const char *dir = temp_dir();
  free(must("%s build --no-tune --portable --no-compile -b 8 -o %s/gold "
            "tests/golden/small.net",
            netc_path(), dir));
  static const char *const ext[] = {"c", "h"};
  for (int i = 0; i < 2; i++) {
    char *got_path = NULL, *want_path = NULL;
    ck_assert_int_ge(asprintf(&got_path, "%s/gold/small.%s", dir, ext[i]), 0);
    ck_assert_int_ge(
        asprintf(&want_path, "tests/golden/small.%s.golden", ext[i]), 0);
    char *got = read_file(got_path, NULL), *want = read_file(want_path, NULL);
    ck_assert_msg(want != NULL, "missing %s (make golden)", want_path);
    ck_assert_msg(got && !strcmp(got, want), "%s differs from %s", got_path,
                  want_path);
    free(got), free(want), free(got_path), free(want_path);
  }
}
END_TEST

/* netc build --tune times small.net's conv shapes (netc-tune) and writes
 * a tuning file; building with a file is deterministic and follows it:
 * a hand-written file that says gemm, gemm, direct for every shape gives
 * exactly those passes, twice the same C, and a malformed line is an error
 * naming the file and the line. */
START_TEST(test_tuning_file) {
  const char *dir = temp_dir();
  free(must("%s build --tune --threads 1 --no-compile -b 2 -o %s/tuned "
            "tests/golden/small.net", netc_path(), dir));
  char *path = NULL;
  ck_assert_int_ge(asprintf(&path, "%s/tuned/small.tune", dir), 0);
  char *tune = read_file(path, NULL);
  ck_assert_ptr_nonnull(tune);
  ck_assert_ptr_nonnull(strstr(tune, "\n# machine: cpu="));
  ck_assert_ptr_nonnull(strstr(tune, "\nconv 2 "));
  free(tune);
  /* Every shape of the network, whatever the measurement: from its check. */
  char *shapes = must("%s build --tune --threads 1 --no-compile -b 2 -o "
                      "%s/tuned tests/golden/small.net 2>&1 >/dev/null | "
                      "sed -n 's/^netc: timing \\([0-9]*\\) conv.*/\\1/p'",
                      netc_path(), dir);
  int n = atoi(shapes);
  ck_assert_int_gt(n, 0);
  free(shapes);
  char *lines = must("grep -c '^conv ' %s", path);
  ck_assert_int_eq(atoi(lines), n);
  free(lines);
  /* A file of our own: the same choice for every shape of the tuned one. */
  free(must("sed 's/^\\(conv\\( [0-9]*\\)\\{8\\}\\) "
            "[a-z0-9]* [a-z0-9]* [a-z0-9]*/\\1 "
            "gemm gemm direct/' %s > %s/mine.tune", path, dir));
  for (int k = 0; k < 2; k++)
    free(must("%s build --tuning %s/mine.tune --no-compile -b 2 -o %s/m%d "
              "tests/golden/small.net", netc_path(), dir, dir, k));
  free(must("cmp %s/m0/small.c %s/m1/small.c", dir, dir));
  char *check = must("%s check --tuning %s/mine.tune -b 2 "
                     "tests/golden/small.net", netc_path(), dir);
  ck_assert_ptr_nonnull(strstr(check, "fwd=gemm dx=gemm dw=direct"));
  ck_assert_ptr_null(strstr(check, "fwd=direct"));
  free(check);
  free(must("printf 'conv 2 8 8 3 16 3 1 1 gemm fast gemm\\n' > %s/bad.tune",
            dir));
  int status;
  char *cmd = NULL;
  ck_assert_int_ge(asprintf(&cmd, "%s check --tuning %s/bad.tune "
                                  "tests/golden/small.net 2>&1",
                            netc_path(), dir), 0);
  char *out = run_command(cmd, &status);
  ck_assert_int_eq(status, 1);
  ck_assert_ptr_nonnull(strstr(out, "bad.tune:1: unknown algorithm 'fast'"));
  free(out), free(cmd), free(path);
}
END_TEST

/* netc build's per-machine tuning cache (compiler/tune.c), in a cache
 * directory of its own: the first build times every shape and keeps them,
 * the second times none; DIR/NET.tune pins the same C; --tune-seconds 0
 * times nothing and gives the cost model's C; a corrupt cache and another
 * machine's get a note, are timed again and replaced. */
START_TEST(test_tuning_cache) {
  const char *tmp = temp_dir();
  const char *net = "tests/golden/small.net";
  char *env = xprintf("XDG_CACHE_HOME=%s/tc-xdg", tmp);
  char *cache = xprintf("%s/tc-xdg/netc/conv-*.tune", tmp);
  free(must("rm -rf %s/tc-xdg", tmp));
  char *first = must("%s %s build --threads 1 --no-compile -b 2 -o %s/tc1 %s "
                     "2>&1", env, netc_path(), tmp, net);
  int n = 0;
  const char *t = strstr(first, "netc: timing ");
  ck_assert_msg(t && sscanf(t, "netc: timing %d convolution shapes", &n) == 1,
                "%s", first);
  ck_assert_int_gt(n, 1);
  char *lines = must("grep -c '^conv ' %s", cache);
  ck_assert_int_eq(atoi(lines), n);
  free(lines);
  lines = must("grep -c '^# machine: cpu=.* threads=1 ' %s", cache);
  ck_assert_int_eq(atoi(lines), 1);
  free(lines);
  char *second = must("%s %s build --threads 1 --no-compile -b 2 -o %s/tc2 %s "
                      "2>&1", env, netc_path(), tmp, net);
  ck_assert_msg(!strstr(second, "netc: timing") &&
                    strstr(second, "has all"), "%s", second);
  free(must("cmp %s/tc1/small.c %s/tc2/small.c && cmp %s/tc1/small.tune "
            "%s/tc2/small.tune", tmp, tmp, tmp, tmp));
  /* NET.tune pins the build: the same C from it, no timing. */
  free(must("%s build --tuning %s/tc1/small.tune --no-compile -b 2 -o %s/tc3 "
            "%s 2>/dev/null && cmp %s/tc1/small.c %s/tc3/small.c",
            netc_path(), tmp, tmp, net, tmp, tmp));
  /* Another thread count is another machine key: a cache file of its own. */
  free(must("%s %s build --threads 2 --tune-seconds 0 --no-compile -b 2 -o "
            "%s/tc4 %s 2>&1 | grep -q 'lacks %d of %d'", env, netc_path(),
            tmp, net, n, n));
  free(must("%s %s build --no-tune --no-compile -b 2 -o %s/tc5 %s >/dev/null "
            "2>&1 && cmp %s/tc4/small.c %s/tc5/small.c", env, netc_path(), tmp,
            net, tmp, tmp));
  lines = must("grep -c \"the cost model's (not measured)\" %s/tc4/small.tune",
               tmp);
  ck_assert_int_eq(atoi(lines), n);
  free(lines);
  /* A corrupt cache, then another machine's: a note, timed again. */
  static const char *const spoil[] = {
      "echo 'conv 2 8 garbage' >> %s",
      "sed -i 's/^# machine: cpu=/# machine: cpu=Another /' %s"};
  static const char *const said[] = {": expected 'conv N H W C OC K",
                                     "is not this machine's"};
  char *file = must("ls %s", cache); /* one file: dash globs no redirection */
  file[strcspn(file, "\n")] = 0;
  for (int k = 0; k < 2; k++) {
    free(must(spoil[k], file));
    char *out = must("%s %s build --threads 1 --no-compile -b 2 -o %s/tc6 %s "
                     "2>&1", env, netc_path(), tmp, net);
    ck_assert_msg(strstr(out, "netc: note: ") && strstr(out, said[k]) &&
                      strstr(out, "measured again and replaced") &&
                      strstr(out, "netc: timing "),
                  "%s", out);
    free(out);
    out = must("%s %s build --threads 1 --no-compile -b 2 -o %s/tc6 %s 2>&1",
               env, netc_path(), tmp, net);
    ck_assert_msg(strstr(out, "has all") && !strstr(out, "note"), "%s", out);
    free(out);
  }
  free(first), free(second), free(cache), free(env), free(file);
}
END_TEST

/* netc-tune --budget starts no shape that its speed so far says would
 * end past the budget: a tiny shape is timed, a huge one after it is not.
 * (The huge one's estimate is thousands of times the budget: this does
 * not depend on the machine's speed.) */
START_TEST(test_tune_budget) {
  char *out = must("printf 'a 1 8 8 8 8 3 1 1\\nb 64 56 56 256 256 3 1 1\\n"
                   "c 1 4 4 4 4 1 1 0\\n' | $(dirname %s)/netc-tune "
                   "--threads 1 --budget 1", netc_path());
  ck_assert_msg(strstr(out, "\na fwd ") && strstr(out, "\n# skipped b: over "
                                                        "the budget of 1 s") &&
                    !strstr(out, "\nb fwd") && strstr(out, "\nc dw "),
                "%s", out);
  free(out);
}
END_TEST

/* A trainer allocates exactly the bytes the plan says: the arena and the
 * persistent block, with SGD's state and with Adam's. */
START_TEST(test_trainer_allocates_the_plan) {
  const char *dir = temp_dir();
  free(must("%s build --no-tune -b 8 -o %s/alloc tests/golden/small.net", netc_path(),
            dir));
  char *plan = must("%s dump plan -b 8 tests/golden/small.net", netc_path());
  const char *line = strstr(plan, "# a trainer allocates the arena and the "
                                  "persistent block: ");
  ck_assert_ptr_nonnull(line);
  long long want[2];
  ck_assert_int_eq(sscanf(strchr(line, ':') + 2,
                          "%lld bytes with SGD, %lld with Adam", &want[0],
                          &want[1]), 2);
  static const char *const opt[] = {"sgd", "adam"};
  for (int i = 0; i < 2; i++) {
    char *out = must("%s/alloc/small info --optimizer %s", dir, opt[i]);
    const char *t = strstr(out, " total=");
    ck_assert_msg(t != NULL, "no total in:\n%s", out);
    ck_assert_msg(atoll(t + 7) == want[i], "%s: the trainer allocates %lld "
                  "bytes, the plan says %lld", opt[i], atoll(t + 7), want[i]);
    free(out);
  }
  ck_assert_int_gt(want[1], want[0]); /* Adam keeps two moments */
  free(plan);
}
END_TEST

/* netc build --debug: -O0 -g3, and gdb shows a layer's shape struct and
 * its tensors' offsets by name, and reads a tensor through them. */
START_TEST(test_debug_build_in_gdb) {
  const char *dir = temp_dir();
  free(must("%s build --no-tune --debug -b 2 -o %s/dbg tests/golden/small.net",
            netc_path(), dir));
  char *out = must(
      "gdb -nx -batch -ex 'break forward' -ex 'run step --steps 1' "
      "-ex 'next 3' -ex 'print L_conv1' -ex 'print T_conv1' "
      "-ex 'print F(T_input)[0] == ((float *)s->arena)[T_input / 4]' "
      "--args %s/dbg/small 2>&1", dir);
  ck_assert_msg(strstr(out, "N = 2, H = 16, W = 16, C = 3, OC = 8, K = 3"),
                "gdb did not show L_conv1:\n%s", out);
  ck_assert_msg(strstr(out, "= 1\n"), "gdb could not read F(T_input):\n%s",
                out);
  free(out);
}
END_TEST

START_TEST(test_resnet50_step_on_random_data) {
  const char *dir = temp_dir();
  free(must("%s build --no-tune -b 64 -o %s/r50 models/resnet50.net", netc_path(),
            dir));
  char *out = must("%s/r50/resnet50 step --steps 1", dir);
  ck_assert_ptr_nonnull(strstr(out, "step 1 loss "));
  double loss = atof(strstr(out, "step 1 loss ") + 12);
  /* Random labels over 200 classes: about log(200) = 5.3 at the start. */
  ck_assert_double_gt(loss, 4.0);
  ck_assert_double_lt(loss, 8.0);
  free(out);
}
END_TEST

Suite *suite_codegen(void) {
  Suite *s = suite_create("codegen");
  TCase *tc = tcase_create("codegen");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_generated_code_is_clean_and_deterministic);
  tcase_add_test(tc, test_generated_code_golden);
  tcase_add_test(tc, test_tuning_file);
  tcase_add_test(tc, test_tuning_cache);
  tcase_add_test(tc, test_tune_budget);
  tcase_add_test(tc, test_debug_build_in_gdb);
  tcase_add_test(tc, test_trainer_allocates_the_plan);
  tcase_add_loop_test(tc, test_matches_pytorch, 0,
                      sizeof compared / sizeof compared[0]);
  tcase_add_test(tc, test_resnet50_step_on_random_data);
  suite_add_tcase(s, tc);
  return s;
}
