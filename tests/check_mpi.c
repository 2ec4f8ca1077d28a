/* check_mpi.c: data-parallel training (netc build --mpi) under mpirun:
 * 2 processes take the steps of 1 with accumulation, --sync-bn those of
 * the global batch, kills resume, mismatched processes are refused; and
 * a trainer built without --mpi refuses to run under a launcher. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_train.h"

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

/* A trainer built without --mpi under mpirun -np 2 would be two
 * independent runs in one directory: each process exits 1 before it
 * touches anything (the run directory is never made), rank 0 saying to
 * rebuild with --mpi. Under -np 1 it runs. */
START_TEST(test_mpi_launcher_without_mpi) {
  setup();
  const char *run = "build/testdata/run-no-mpi";
  int st;
  MUST("rm -rf %s", run);
  char *out = sh(&st, MPIRUN "%s train --data %s --epochs 1 --out %s 2>&1",
                 tiny, data, run);
  ck_assert_msg(st != 0, "%s", out);
  assert_contains(out, "netc: this trainer was built without --mpi, but an "
                       "MPI launcher started several copies of it "
                       "(OMPI_COMM_WORLD_SIZE=2)");
  assert_contains(out, "rebuild it with 'netc build --mpi'");
  /* once, from the first process */
  const char *first = strstr(out, "built without --mpi");
  ck_assert_ptr_null(strstr(first + 1, "built without --mpi"));
  ck_assert_int_ne(access(run, F_OK), 0);
  free(out);
  out = sh(&st, MPIRUN "%s info 2>&1", tiny);
  ck_assert_msg(st != 0, "%s", out);
  assert_contains(out, "built without --mpi");
  free(out);
  out = sh(&st, "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                "ASAN_OPTIONS=detect_leaks=0 timeout 120 mpirun -np 1 %s info "
                "2>&1", tiny);
  ck_assert_msg(st == 0, "%s", out);
  free(out);
}
END_TEST

Suite *suite_mpi(void) {
  Suite *s = suite_create("mpi");
  TCase *mpi = tcase_create("mpi");
  tcase_set_timeout(mpi, 600);
  tcase_add_test(mpi, test_mpi_equivalence);
  tcase_add_test(mpi, test_mpi_sync_bn);
  tcase_add_test(mpi, test_mpi_kill_and_resume);
  tcase_add_test(mpi, test_mpi_plan_mismatch);
  tcase_add_test(mpi, test_mpi_other_commands_refused);
  tcase_add_test(mpi, test_mpi_resume_without_checkpoint);
  tcase_add_test(mpi, test_mpi_launcher_without_mpi);
  suite_add_tcase(s, mpi);
  return s;
}
