/* check_cli.c: the netc command line: usage, exit codes, the summary's
 * totals line, golden dumps, and write errors (every command to a full
 * disk, /dev/full, exits 1 naming the file; -o and build leave earlier
 * outputs alone when they fail). */
#include <stdlib.h>
#include <string.h>

#include "check_netc.h"
#include "util/util.h" /* xprintf */

static char *netc(const char *args, int *status) {
  char *cmd = NULL;
  ck_assert_int_ge(asprintf(&cmd, "%s %s", netc_path(), args), 0);
  char *out = run_command(cmd, status);
  free(cmd);
  return out;
}

static const struct {
  const char *args;
  int status;
  const char *needle;
} usage_cases[] = {
    {"--help", 0, "usage: netc <command> [options] FILE.net"},
    {"-h", 0, "dump shapes FILE.net"},
    {"--version", 0, "netc " NETC_VERSION},
    {"", 2, "netc: missing command"},
    {"frobnicate x.net", 2, "netc: unknown command 'frobnicate'"},
    {"check", 2, "netc: missing FILE.net"},
    {"check --fast models/resnet18.net", 2, "unknown option '--fast'"},
    {"check a.net b.net", 2, "unexpected argument 'b.net'"},
    {"dump", 2, "dump needs a kind"},
    {"dump graphs models/resnet18.net", 2, "unknown dump kind 'graphs'"},
    {"dump plan -b 0 models/resnet18.net", 2, "batch size must be 1..65536"},
    {"dump plan -b x models/resnet18.net", 2, "batch size must be 1..65536"},
    {"dump plan -b", 2, "-b needs a number"},
    {"dump shapes --json models/resnet18.net", 2, "--json goes with dump plan"},
    {"check --no-compile models/resnet18.net", 2, "--no-compile goes with build"},
    {"dump plan -o /nonexistent/dir/p.txt models/resnet18.net", 1,
     "cannot write '/nonexistent/dir/p.txt'"},
    {"dump plan --portable -b 8 tests/golden/small.net", 0,
     "naive_bytes=2255424 lower_bound_bytes=517120 planned_bytes=517120"},
    /* Unfused, every relu and its gradient have buffers of their own. */
    {"dump plan --portable --no-fuse -b 8 tests/golden/small.net", 0,
     "naive_bytes=2558528 lower_bound_bytes=517120 planned_bytes=517120"},
    {"dump ast --no-fuse models/resnet18.net", 2,
     "--no-fuse does not go with dump ast"},
    {"check --conv fast models/resnet18.net", 2,
     "unknown convolution algorithm 'fast'"},
    {"check --conv direct,gemm models/resnet18.net", 2,
     "FWD,DX,DW of those"},
    {"check --conv models/resnet18.net", 2, "unknown convolution algorithm"},
    {"check --portable models/resnet18.net", 0, "dw=gemm"},
    {"check --conv direct,gemm,direct models/resnet18.net", 0,
     "fwd=direct dx=gemm dw=direct"},
    /* Tuning: the options that only a build's timing takes. */
    {"check --no-tune models/resnet18.net", 2, "--no-tune, --tune-seconds"},
    {"build --tune --no-tune models/resnet18.net", 2, "give one of them"},
    {"build --tune --tune-seconds 5 models/resnet18.net", 2,
     "does not go with --tune-seconds"},
    {"build --tune-seconds -1 models/resnet18.net", 2,
     "--tune-seconds needs seconds, 0..86400, not '-1'"},
    {"build --tune-seconds 9x models/resnet18.net", 2,
     "--tune-seconds needs seconds"},
    {"build --no-tune --threads 2 models/resnet18.net", 2,
     "do not go with --no-tune, --tuning or --conv"},
    {"build --conv gemm --tune-seconds 9 models/resnet18.net", 2,
     "do not go with --no-tune, --tuning or --conv"},
    {"check /nonexistent.net", 1, "cannot open '/nonexistent.net'"},
    {"check models", 1, "cannot read 'models'"},
    {"check tests/errors/add_shape_mismatch.net", 1, "1 error"},
    /* -D: the network's arguments from the command line. */
    {"check -D classes=10 models/resnet18.net", 0,
     "network=resnet18 input=3x64x64 classes=10 layers=70 params=11181642"},
    {"check -Dinput=3x32x32 -D classes=10 models/resnet18.net", 0,
     "input=3x32x32 classes=10"},
    {"check -D clases=10 models/resnet18.net", 1,
     "models/resnet18.net:5:9: error: -D clases: network 'resnet18' has no "
     "parameter 'clases' (did you mean 'classes'? its parameters: input, "
     "classes)"},
    {"check -D classes=ten models/resnet18.net", 1,
     "models/resnet18.net:5:9: error: -D classes=ten: 'ten' is not a value"},
    {"check -D classes=3x3 models/resnet18.net", 1,
     "note: the value comes from the command line: -D classes=3x3"},
    {"check -D input=3x64 models/resnet18.net", 1,
     "models/resnet18.net:5:18: error: 'input' must be a shape CxHxW"},
    {"check -D classes=0 models/resnet18.net", 1, "must be at least 1"},
    {"check -D classes models/resnet18.net", 2, "-D needs NAME=VALUE"},
    {"check -D models/resnet18.net", 2, "-D needs NAME=VALUE"},
    {"check -D classes=1 -D classes=2 models/resnet18.net", 2,
     "-D classes is given twice"},
    {"dump ast -D classes=7 models/resnet18.net", 0, "classes = 7)"},
};

START_TEST(test_usage_and_status) {
  int status;
  char *out = netc(usage_cases[_i].args, &status);
  ck_assert_msg(status == usage_cases[_i].status, "netc %s: status %d\n%s",
                usage_cases[_i].args, status, out);
  if (!strstr(out, usage_cases[_i].needle))
    ck_abort_msg("netc %s: no '%s' in:\n%s", usage_cases[_i].args,
                 usage_cases[_i].needle, out);
  free(out);
}
END_TEST

START_TEST(test_check_totals_line) {
  int status;
  char *out = netc("check models/resnet50.net", &status);
  ck_assert_int_eq(status, 0);
  char *last = strrchr(out, '\n');
  ck_assert_ptr_nonnull(last);
  *last = 0;
  last = strrchr(out, '\n') + 1;
  ck_assert_str_eq(last, "network=resnet50 input=3x64x64 classes=200 "
                         "layers=176 params=23917832 weights=161 "
                         "mflops=671.31");
  ck_assert_ptr_nonnull(strstr(out, "layer "));
  ck_assert_ptr_nonnull(strstr(out, "stage4.bottleneck3.conv3 "));
  free(out);
}
END_TEST

static void golden(const char *args, const char *path) {
  int status;
  char *out = netc(args, &status);
  ck_assert_int_eq(status, 0);
  char *want = read_file(path, NULL);
  ck_assert_msg(want != NULL, "missing %s (make golden)", path);
  ck_assert_msg(!strcmp(out, want), "netc %s differs from %s", args, path);
  free(want);
  free(out);
}

START_TEST(test_golden_dumps) {
  golden("dump shapes tests/golden/small.net", "tests/golden/small.shapes");
  golden("dump ast tests/golden/small.net", "tests/golden/small.ast");
  golden("dump shapes models/resnet18.net", "tests/golden/resnet18.shapes");
  golden("check --portable tests/golden/small.net", "tests/golden/small.check");
  golden("dump graph --portable tests/golden/small.net", "tests/golden/small.graph");
  golden("dump plan --portable tests/golden/small.net", "tests/golden/small.plan");
  golden("dump graph --portable models/resnet18.net", "tests/golden/resnet18.graph");
  golden("dump plan --portable models/resnet18.net", "tests/golden/resnet18.plan");
}
END_TEST

START_TEST(test_deterministic) {
  int s1, s2;
  char *a = netc("dump shapes models/resnet152.net", &s1);
  char *b = netc("dump shapes models/resnet152.net", &s2);
  ck_assert_int_eq(s1, 0);
  ck_assert_int_eq(s2, 0);
  ck_assert_str_eq(a, b);
  free(a);
  free(b);
}
END_TEST

START_TEST(test_examples_check) {
  char *cmd = NULL;
  ck_assert_int_ge(asprintf(&cmd, "for f in examples/*.net; do %s check $f "
                                  ">/dev/null || exit 1; done",
                            netc_path()), 0);
  int status;
  char *out = run_command(cmd, &status);
  ck_assert_msg(status == 0, "%s", out);
  free(out);
  free(cmd);
}
END_TEST

/* The JSON plan, checked by an independent script (tests/plan_check.py). */
START_TEST(test_json_plan_checks_independently) {
  static const char *const nets[] = {"models/resnet18.net",
                                     "models/resnet50.net",
                                     "models/seed_resnet.net",
                                     "tests/golden/small.net"};
  for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
    char *cmd = NULL;
    ck_assert_int_ge(asprintf(&cmd, "%s dump plan --json %s | python3 "
                                    "tests/plan_check.py",
                              netc_path(), nets[i]), 0);
    int status;
    char *out = run_command(cmd, &status);
    ck_assert_msg(status == 0 && strstr(out, " 0 problems"), "%s: %s",
                  nets[i], out);
    free(out);
    free(cmd);
  }
}
END_TEST

START_TEST(test_pictures) {
  int status;
  char *out = netc("dump memory -o /dev/stdout tests/golden/small.net",
                   &status);
  ck_assert_int_eq(status, 0);
  ck_assert_ptr_nonnull(strstr(out, "<svg xmlns="));
  ck_assert_ptr_nonnull(strstr(out, "</svg>"));
  ck_assert_ptr_nonnull(strstr(out, "<title>conv1: "));
  free(out);
  out = netc("dump dot tests/golden/small.net", &status);
  ck_assert_int_eq(status, 0);
  ck_assert_ptr_nonnull(strstr(out, "digraph \"small\" {"));
  ck_assert_ptr_nonnull(strstr(out, "subgraph \"cluster_f_"));
  ck_assert_ptr_nonnull(strstr(out, "label=\"64x8x16x16\""));
  /* Balanced braces: clusters open and close. */
  int depth = 0;
  for (char *p = out; *p; p++)
    depth += (*p == '{') - (*p == '}');
  ck_assert_int_eq(depth, 0);
  free(out);
}
END_TEST

/* A closed pipe ends netc quietly with status 1, as it ends standard tools
 * (netc ignores SIGPIPE and sees EPIPE); any other write error, such as a
 * full disk, is reported. Each case's whole output, stderr included, is
 * `want`. */
static const struct {
  const char *cmd; /* %1$s: netc */
  const char *want;
} pipe_cases[] = {
    /* The reader is gone before netc writes. */
    {"(sleep 0.5; %1$s check models/resnet18.net; echo \"exit $?\" >&2) | "
     "true", "exit 1\n"},
    /* The reader goes while netc writes (far more than a pipe holds). */
    {"(%1$s dump graph models/resnet152.net; echo \"exit $?\" >&2) | "
     "head -c 1 >/dev/null", "exit 1\n"},
    /* Whenever head goes: no message either way. */
    {"{ %1$s check models/resnet18.net | head -n 1 >/dev/null; } 2>&1", ""},
    {"%1$s check models/resnet18.net >/dev/full; echo \"exit $?\"",
     "netc: cannot write to standard output: No space left on device\n"
     "exit 1\n"},
};

START_TEST(test_closed_pipe) {
  char *cmd = NULL;
  ck_assert_int_ge(asprintf(&cmd, pipe_cases[_i].cmd, netc_path()), 0);
  int st;
  char *out = run_command(cmd, &st);
  ck_assert_msg(!strcmp(out, pipe_cases[_i].want), "%s:\n%s", cmd, out);
  free(out);
  free(cmd);
}
END_TEST

/* Every command that prints, to a full disk: on stdout and with -o. */
static const char *const write_commands[] = {
    "check", "dump ast", "dump shapes", "dump graph", "dump graph --json",
    "dump plan", "dump plan --json", "dump dot", "dump memory",
};

START_TEST(test_full_disk) {
  char *args = NULL;
  int st;
  ck_assert_int_ge(asprintf(&args, "%s tests/golden/small.net >/dev/full",
                            write_commands[_i]), 0);
  char *out = netc(args, &st);
  ck_assert_msg(st == 1 && !strcmp(out, "netc: cannot write to standard "
                "output: No space left on device\n"), "%s: %d\n%s", args,
                st, out);
  free(out);
  free(args);
  ck_assert_int_ge(asprintf(&args, "%s -o /dev/full tests/golden/small.net",
                            write_commands[_i]), 0);
  out = netc(args, &st);
  ck_assert_msg(st == 1 && !strcmp(out, "netc: cannot write '/dev/full': "
                "No space left on device\n"), "%s: %d\n%s", args, st, out);
  free(out);
  free(args);
}
END_TEST

/* -o FILE is written whole or not at all: a failed run leaves the FILE of
 * an earlier one, and no temporary file beside it. */
START_TEST(test_output_kept_on_failure) {
  char *dir = xprintf("%s/cli-keep", temp_dir());
  char *file = xprintf("%s/plan.txt", dir);
  char *cmd = xprintf("mkdir -p %s && printf 'earlier\\n' > %s", dir, file);
  int st;
  free(run_command(cmd, &st));
  ck_assert_int_eq(st, 0);
  char *args = xprintf("dump plan -o %s tests/errors/unknown_op_typo.net", file);
  free(netc(args, &st));
  ck_assert_int_eq(st, 1);
  size_t len;
  char *text = read_file(file, &len);
  ck_assert_str_eq(text, "earlier\n");
  free(text);
  free(cmd);
  cmd = xprintf("ls -A %s", dir);
  char *ls = run_command(cmd, &st);
  ck_assert_str_eq(ls, "plan.txt\n");
  free(ls);
  free(args);
  /* ... and a run that works replaces it. */
  args = xprintf("dump plan -o %s tests/golden/small.net", file);
  free(netc(args, &st));
  ck_assert_int_eq(st, 0);
  text = read_file(file, &len);
  ck_assert_ptr_nonnull(strstr(text, "planned_bytes="));
  free(text);
  free(args);
  free(cmd);
  free(file);
  free(dir);
}
END_TEST

/* netc build whose .c, .h or tuning file cannot be written: exit 1 naming
 * that file, and nothing else written (not the other file of the pair). */
START_TEST(test_build_full_disk) {
  static const char *const bad[] = {"small.c", "small.h", "small.tune"};
  char *dir = xprintf("%s/cli-build-full-%d", temp_dir(), _i);
  char *cmd = xprintf("mkdir -p %s && ln -sf /dev/full %s/%s", dir, dir,
                      bad[_i]);
  int st;
  free(run_command(cmd, &st));
  ck_assert_int_eq(st, 0);
  char *args = xprintf("build --no-compile %s -o %s tests/golden/small.net",
                       _i == 2 ? "" : "--no-tune", dir);
  char *out = netc(args, &st);
  char *want = xprintf("netc: cannot write '%s/%s': No space left on "
                       "device\n", dir, bad[_i]);
  ck_assert_int_eq(st, 1);
  ck_assert_msg(strstr(out, want), "%s:\n%s", args, out);
  free(cmd);
  cmd = xprintf("ls -A %s", dir);
  char *ls = run_command(cmd, &st);
  char *only = xprintf("%s\n", bad[_i]);
  ck_assert_msg(!strcmp(ls, only), "%s also wrote: %s", args, ls);
  free(only);
  free(ls);
  free(want);
  free(out);
  free(args);
  free(cmd);
  free(dir);
}
END_TEST

Suite *suite_cli(void) {
  Suite *s = suite_create("cli");
  TCase *tc = tcase_create("cli");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, test_usage_and_status, 0,
                      sizeof usage_cases / sizeof usage_cases[0]);
  tcase_add_test(tc, test_check_totals_line);
  tcase_add_test(tc, test_golden_dumps);
  tcase_add_test(tc, test_deterministic);
  tcase_add_test(tc, test_examples_check);
  tcase_add_test(tc, test_json_plan_checks_independently);
  tcase_add_test(tc, test_pictures);
  tcase_add_loop_test(tc, test_closed_pipe, 0,
                      sizeof pipe_cases / sizeof pipe_cases[0]);
  tcase_add_loop_test(tc, test_full_disk, 0,
                      sizeof write_commands / sizeof write_commands[0]);
  tcase_add_test(tc, test_output_kept_on_failure);
  tcase_add_loop_test(tc, test_build_full_disk, 0, 3);
  suite_add_tcase(s, tc);
  return s;
}
