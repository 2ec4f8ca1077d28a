/* bench.c: how fast the trainer is. `bench`: training steps (train_step,
 * the default SGD) on one random batch, timed in windows after a warm-up,
 * against OpenBLAS's own sgemm peak, with a per-op profile on request;
 * tests/bench/run.sh reads its line. `bench-loader`: the data pipeline
 * alone, without and with its prefetch thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "data/data.h"
#include "kernels/netc_rt.h"
#include "model/profile.h"
#include "trainer/comm.h"
#include "trainer/commands.h"
#include "trainer/options.h"
#include "trainer/step.h"
#include "util/util.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The peak resident memory, from the kernel's own count. */
static long peak_rss_mib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmHWM:", 6))
      kb = strtol(line + 6, NULL, 10);
  if (f)
    fclose(f);
  return kb / 1024;
}

/* The practical peak: OpenBLAS sgemm on a large square problem. */
static double sgemm_peak(void) {
  int n = 2048;
  float *a = xcalloc((size_t)n * n, sizeof(float));
  float *b = xcalloc((size_t)n * n, sizeof(float));
  float *c = xcalloc((size_t)n * n, sizeof(float));
  for (int i = 0; i < n * n; i++)
    a[i] = b[i] = (float)(i % 7) * 0.1f;
  double best = 0;
  for (int r = 0; r < 4; r++) {
    double t0 = now_seconds();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a,
                n, b, n, 0.0f, c, n);
    double g = 2.0 * n * n * (double)n / (now_seconds() - t0) / 1e9;
    best = g > best ? g : best;
  }
  free(a), free(b), free(c);
  return best;
}

typedef struct {
  long steps, warmup, windows, threads;
  int profile;
  long done;                  /* steps taken */
  float first_loss, last_loss;
} Bench;

/* n training steps; -1 after a message if one fails. */
static int steps(NetcState *s, NetcOptimizer *o, long n, Bench *b) {
  for (long i = 0; i < n; i++) {
    s->step_key = rt_step_key(0, (uint64_t)(b->done + i), 0, 0);
    StepResult r = train_step(s, o, o->lr);
    if (r.status != STEP_OK) {
      char why[512];
      fprintf(stderr, "%s: bench: %s at step %ld\n", netc_model.name,
              step_failure(&r, why, sizeof why), b->done + 1);
      return -1;
    }
    if (b->done++ == 0)
      b->first_loss = r.loss;
    b->last_loss = r.loss;
  }
  return 0;
}

/* The median images/s of b->windows windows of b->steps steps (of every
 * process: under mpirun each process steps on its own batch, and the
 * images are the global batch's). */
static int measure(NetcState *s, NetcOptimizer *o, Bench *b, double *ips) {
  if (steps(s, o, b->warmup, b))
    return -1;
  double *w = xcalloc((size_t)b->windows, sizeof(double));
  s->comm_seconds = 0;
  for (long i = 0; i < b->windows; i++) {
    double t0 = now_seconds();
    if (steps(s, o, b->steps, b)) {
      free(w);
      return -1;
    }
    w[i] = (double)b->steps * netc_model.batch * comm_size() /
           (now_seconds() - t0);
  }
  qsort(w, (size_t)b->windows, sizeof(double), cmp_double);
  *ips = w[b->windows / 2];
  free(w);
  return 0;
}

static void print_bench(const NetcState *s, const Bench *b, double ips) {
  const NetcModel *m = &netc_model;
  int procs = comm_size();
  double gflops = ips / m->batch * m->flops_per_step / 1e9;
  long rss = peak_rss_mib(); /* before the sgemm probe allocates */
  if (comm_rank() > 0)
    return;
  double peak = sgemm_peak();
  printf("netc model=%s batch=%d threads=%d steps_per_s=%.3f img_per_s=%.2f "
         "gflops=%.2f sgemm_peak_gflops=%.2f peak_frac=%.3f "
         "mb_per_step=%.1f mem_gb_per_s=%.2f rss_mib=%ld "
         "blas_kernel=%s conv_kernel=%s conv_algos=%s first_loss=%.6f "
         "last_loss=%.6f",
         m->name, m->batch, rt_threads(), ips / m->batch / procs, ips, gflops,
         peak, gflops / peak, m->bytes_per_step / 1e6,
         ips / m->batch * m->bytes_per_step / 1e9, rss, openblas_get_corename(),
         rt_conv_kernel_name(), m->conv_algos, b->first_loss, b->last_loss);
  if (procs > 1 || m->nbuckets)
    printf(" procs=%d buckets=%d comm_wait_ms_per_step=%.2f", procs,
           m->nbuckets,
           1e3 * s->comm_seconds / (double)(b->windows * b->steps));
  putchar('\n');
}

static int parse_bench(int argc, char **argv, Bench *b) {
  *b = (Bench){.steps = 5, .warmup = 2, .windows = 3};
  const Option options[] = {
      {"--steps", "N", "steps per timed window (default 5)",
       .whole = &b->steps, .min = 1, .max = OPTIONS_NO_MAX},
      {"--warmup", "W", "untimed steps first (default 2)", .whole = &b->warmup,
       .min = 0, .max = OPTIONS_NO_MAX},
      {"--windows", "K", "timed windows; the median counts (default 3)",
       .whole = &b->windows, .min = 1, .max = 1000000},
      threads_option(&b->threads),
      {"--profile", NULL, "then N more steps with a per-op profile",
       .flag = &b->profile},
      {NULL}};
  const CommandSpec c = {
      .name = "bench", .options = options,
      .about = "Training throughput on one random batch (the default SGD): "
               "one line of\nimages/s, GFLOP/s against OpenBLAS's sgemm peak, "
               "peak memory, and the\nfirst and last loss."};
  return parse_command(&c, argc, argv, NULL);
}

static int run_bench(NetcState *s, NetcOptimizer *o, Bench *b) {
  double ips;
  netc_init_params(s, 1);
  random_batch(s, 2 + (uint64_t)comm_rank()); /* each process its batch */
  if (netc_state_accumulate(s, 1, comm_size()) || measure(s, o, b, &ips))
    return 1;
  print_bench(s, b, ips);
  if (!b->profile)
    return 0;
  if (netc_profile_enable(s, NETC_PROFILE_TIME)) {
    fprintf(stderr, "%s: out of memory for the profile\n", netc_model.name);
    return 1;
  }
  if (steps(s, o, b->steps, b))
    return 1;
  if (comm_rank() == 0)
    print_profile(s, (int)b->steps);
  return 0;
}

int cmd_bench(int argc, char **argv) {
  Bench b;
  int rc = parse_bench(argc, argv, &b);
  if (rc != OPTIONS_RUN)
    return rc;
  if (b.threads > 0)
    rt_set_threads((int)b.threads);
  NetcOptimizer o = default_sgd();
  NetcState *s = trainer_state_new(&o);
  rc = s ? run_bench(s, &o, &b) : 1;
  optim_free(&o);
  netc_state_free(s);
  return rc;
}

/* ---- bench-loader: how fast the data pipeline alone is ---------------- */

static void time_loader(const Dataset *d, const char *dir, long batches,
                        int prefetch, float *x, int32_t *y) {
  LoaderOptions lo = {.batch = netc_model.batch, .train = 1, .pad = 4,
                      .seed = 1, .prefetch = prefetch};
  Loader *l = loader_new(d, &lo);
  loader_seek(l, 0, 0);
  double t0 = now_seconds();
  long n = 0;
  for (long b = 0; b < batches; b++)
    n += loader_next(l, x, y);
  double dt = now_seconds() - t0;
  printf("loader data=%s batch=%d augment=crop+flip prefetch=%d "
         "images=%ld img_per_s=%.0f\n",
         dir, netc_model.batch, prefetch, n, (double)n / dt);
  loader_free(l);
}

int cmd_bench_loader(int argc, char **argv) {
  const char *dir = NULL;
  long batches = 400;
  const Option options[] = {
      {"--data", "DIR", "TinyImageNet-200 (release or ImageFolder layout)",
       .text = &dir, .required = 1},
      {"--batches", "N", "batches per measurement (default 400)",
       .whole = &batches, .min = 1, .max = OPTIONS_NO_MAX},
      {NULL}};
  const CommandSpec c = {
      .name = "bench-loader", .options = options,
      .about = "Images/s of the data pipeline alone (decode cache, crop, "
               "flip, normalize),\nwithout and with its prefetch thread."};
  int rc = parse_command(&c, argc, argv, NULL);
  if (rc != OPTIONS_RUN)
    return rc;
  DataOptions o = {.h = netc_model.in_h, .w = netc_model.in_w};
  Dataset d;
  if (dataset_open(&d, dir, "train", &o))
    return 1;
  size_t img = (size_t)netc_model.in_h * netc_model.in_w * 3;
  float *x = xmalloc(sizeof(float) * img * (size_t)netc_model.batch);
  int32_t *y = xmalloc(sizeof(int32_t) * (size_t)netc_model.batch);
  for (int prefetch = 0; prefetch < 2; prefetch++)
    time_loader(&d, dir, batches, prefetch, x, y);
  free(x), free(y);
  dataset_close(&d);
  return 0;
}
