/* tune_main.c: netc-tune, the per-layer measurement behind `netc build
 * --tune` and `make bench-algos`. It reads convolution shapes, one per
 * line,
 *     name N H W C OC K stride pad
 * times every algorithm of every pass on each (random data, the arena's
 * 64-byte alignment, the threads of --threads), and prints one line per
 * shape and pass:
 *     name pass gemm_ms direct_ms winograd_ms winograd4_ms best
 * (the Winograd times -1 where they do not apply: 3x3 stride 1 only).
 * Each time is the fastest of --rounds rounds after one warm-up, the
 * algorithms interleaved within a round, so that a noisy neighbour hurts
 * both alike. With --error it prints, instead of times, each algorithm's
 * float32 error against a float64 reference computed here:
 *     name pass gemm_err direct_err winograd_err winograd4_err
 * as max |got - ref| / max |ref| over the pass's output. With --budget S
 * it starts no shape that would end after S seconds by the speed of the
 * shapes before it, and prints '# skipped name' for it instead. With
 * --machine it prints only the key of netc's tuning cache (compiler/
 * tune.c): what makes a time measured here hold for another run. Exit
 * status 1 with a message on a malformed line. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "kernels/netc_rt.h"
#include "model/netc_model.h"
#include "util/util.h"

/* n random floats, 64-byte aligned as in the arena; NULL for none. */
static float *randoms(int64_t n, uint64_t *seed) {
  if (n <= 0)
    return NULL;
  float *p = netc_alloc((n * 4 + 63) / 64 * 64);
  if (!p) {
    fprintf(stderr, "netc-tune: out of memory for %lld floats\n",
            (long long)n);
    exit(1);
  }
  for (int64_t i = 0; i < n; i++) {
    *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
    p[i] = (float)((*seed >> 40) * (1.0 / (1 << 24))) - 0.5f;
  }
  return p;
}

static const char *const pass_names[CONV_PASSES] = {"fwd", "dx", "dw"};

/* One run of pass `pass` with every pass set to `algo`. */
static double run(int pass, int algo, ConvShape s, float **buf,
                  float *work[CONV_PASSES]) {
  s.algo = s.algo_dx = s.algo_dw = algo;
  double t = now_seconds();
  if (pass == CONV_PASS_FWD)
    conv_forward(buf[2], work[0], buf[0], buf[1], NULL, &s);
  else if (pass == CONV_PASS_DW)
    conv_backward(NULL, buf[4], NULL, work[1], buf[3], buf[0], buf[1], &s, 0,
                  0);
  else /* dX alone is not a call: time dW + dX, less dW below */
    conv_backward(buf[5], buf[4], NULL, work[1], buf[3], buf[0], buf[1], &s,
                  0, 0);
  return now_seconds() - t;
}

/* The three passes in float64 from the same float32 operands: y, dx, dw. */
static void reference(double *y, double *dx, double *dw, const float *x,
                      const float *w, const float *dy, const ConvShape *s) {
  int64_t ny = (int64_t)s->N * s->OH * s->OW * s->OC;
  int64_t nx = (int64_t)s->N * s->H * s->W * s->C;
  memset(dx, 0, (size_t)nx * sizeof *dx);
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < ny; o++) { /* y, and dw's sums by output channel */
    int oc = (int)(o % s->OC), ow = (int)(o / s->OC % s->OW);
    int oh = (int)(o / s->OC / s->OW % s->OH), n = (int)(o / s->OC / s->OW / s->OH);
    double acc = 0;
    for (int kh = 0; kh < s->K; kh++)
      for (int kw = 0; kw < s->K; kw++) {
        int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
        if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W)
          continue;
        const float *xp = x + (((int64_t)n * s->H + ih) * s->W + iw) * s->C;
        const float *wp = w + (((int64_t)oc * s->K + kh) * s->K + kw) * s->C;
        for (int c = 0; c < s->C; c++)
          acc += (double)xp[c] * wp[c];
      }
    y[o] = acc;
  }
  int64_t nw = (int64_t)s->OC * s->K * s->K * s->C;
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < nw; e++) {
    int c = (int)(e % s->C), kw = (int)(e / s->C % s->K);
    int kh = (int)(e / s->C / s->K % s->K), oc = (int)(e / s->C / s->K / s->K);
    double acc = 0;
    for (int n = 0; n < s->N; n++)
      for (int oh = 0; oh < s->OH; oh++)
        for (int ow = 0; ow < s->OW; ow++) {
          int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
          if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W)
            continue;
          acc += (double)dy[(((int64_t)n * s->OH + oh) * s->OW + ow) * s->OC + oc] *
                 x[(((int64_t)n * s->H + ih) * s->W + iw) * s->C + c];
        }
    dw[e] = acc;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < nx; i++) {
    int c = (int)(i % s->C), iw = (int)(i / s->C % s->W);
    int ih = (int)(i / s->C / s->W % s->H), n = (int)(i / s->C / s->W / s->H);
    double acc = 0;
    for (int kh = 0; kh < s->K; kh++)
      for (int kw = 0; kw < s->K; kw++) {
        int th = ih + s->pad - kh, tw = iw + s->pad - kw;
        if (th < 0 || tw < 0 || th % s->stride || tw % s->stride)
          continue;
        int oh = th / s->stride, ow = tw / s->stride;
        if (oh >= s->OH || ow >= s->OW)
          continue;
        const float *d = dy + (((int64_t)n * s->OH + oh) * s->OW + ow) * s->OC;
        for (int oc = 0; oc < s->OC; oc++)
          acc += (double)d[oc] * w[(((int64_t)oc * s->K + kh) * s->K + kw) * s->C + c];
      }
    dx[i] = acc;
  }
}

static double rel_error(const float *got, const double *ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs(got[i] - ref[i]), r = fabs(ref[i]);
    num = d > num ? d : num;
    den = r > den ? r : den;
  }
  return den > 0 ? num / den : num;
}

static void errors(const char *name, ConvShape s) {
  int64_t nx = (int64_t)s.N * s.H * s.W * s.C;
  int64_t nw = (int64_t)s.OC * s.K * s.K * s.C;
  int64_t ny = (int64_t)s.N * s.OH * s.OW * s.OC;
  uint64_t seed = 2;
  float *x = randoms(nx, &seed), *w = randoms(nw, &seed);
  float *dy = randoms(ny, &seed), *y = randoms(ny, &seed);
  float *dx = randoms(nx, &seed), *dw = randoms(nw, &seed);
  double *ry = malloc((size_t)ny * 8), *rx = malloc((size_t)nx * 8);
  double *rw = malloc((size_t)nw * 8);
  if (!ry || !rx || !rw) {
    fprintf(stderr, "netc-tune: out of memory for the float64 reference\n");
    exit(1);
  }
  reference(ry, rx, rw, x, w, dy, &s);
  double err[CONV_PASSES][CONV_ALGO_COUNT];
  int nalgo = conv_wino_fits(&s) ? CONV_ALGO_COUNT : CONV_WINOGRAD;
  for (int a = 0; a < nalgo; a++) {
    ConvShape t = s;
    t.algo = t.algo_dx = t.algo_dw = a;
    float *wf = randoms(conv_work_floats(&t, 0), &seed);
    float *wb = randoms(conv_work_floats(&t, 1), &seed);
    conv_forward(y, wf, x, w, NULL, &t);
    conv_backward(dx, dw, NULL, wb, dy, x, w, &t, 0, 0);
    err[CONV_PASS_FWD][a] = rel_error(y, ry, ny);
    err[CONV_PASS_DX][a] = rel_error(dx, rx, nx);
    err[CONV_PASS_DW][a] = rel_error(dw, rw, nw);
    free(wf), free(wb);
  }
  for (int p = 0; p < CONV_PASSES; p++) {
    printf("%s %s", name, pass_names[p]);
    for (int a = 0; a < CONV_ALGO_COUNT; a++)
      if (a < nalgo)
        printf(" %.2e", err[p][a]);
      else
        printf(" -");
    printf("\n");
  }
  fflush(stdout);
  free(x), free(w), free(dy), free(y), free(dx), free(dw);
  free(ry), free(rx), free(rw);
}

/* The kernels' sources, hashed by the Makefile: a change to them makes
 * the cache's old times another machine's. */
#ifndef NETC_KERNELS_HASH
#define NETC_KERNELS_HASH "unknown"
#endif

/* The value of the first "KEY : value" line of /proc/cpuinfo, or "?". */
static void cpuinfo(const char *key, char *out, size_t size) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  char buf[512];
  snprintf(out, size, "?");
  while (f && fgets(buf, sizeof buf, f)) {
    char *colon = strchr(buf, ':');
    size_t n = strcspn(buf, "\t:");
    if (colon && n == strlen(key) && !strncmp(buf, key, n)) {
      char *v = colon + 1 + strspn(colon + 1, " \t");
      v[strcspn(v, "\n")] = 0;
      snprintf(out, size, "%s", v);
      break;
    }
  }
  if (f)
    fclose(f);
}

/* cpu0's caches from sysfs as "l1d=32K l2=1024K l3=32768K". */
static void caches(char *out, size_t size) {
  size_t len = 0;
  out[0] = 0;
  for (int i = 0; i < 8; i++) {
    char path[128], level[16] = "", type[32] = "", sz[32] = "";
    const char *field[] = {"level", "type", "size"};
    char *val[] = {level, type, sz};
    for (int k = 0; k < 3; k++) {
      snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s",
               i, field[k]);
      FILE *f = fopen(path, "r");
      if (f && fgets(val[k], 32, f))
        val[k][strcspn(val[k], "\n")] = 0;
      if (f)
        fclose(f);
    }
    if (!level[0] || !strcmp(type, "Instruction"))
      continue;
    len += (size_t)snprintf(out + len, len < size ? size - len : 0, "%sl%s%s=%s",
                            len ? " " : "", level, !strcmp(type, "Data") ? "d" : "",
                            sz);
  }
  if (!out[0])
    snprintf(out, size, "caches=?");
}

/* One line that names what the times depend on: the CPU (its name and
 * family/model/stepping, which name alone does not tell on the virtual
 * machines that say "AMD EPYC"), its caches, the tile ISA and kernel,
 * the threads, OpenBLAS's kernel and netc's kernel sources. */
static void machine_key(void) {
  char name[128], family[16], model[16], stepping[16], cache[160];
  cpuinfo("model name", name, sizeof name);
  cpuinfo("cpu family", family, sizeof family);
  cpuinfo("model", model, sizeof model);
  cpuinfo("stepping", stepping, sizeof stepping);
  caches(cache, sizeof cache);
  printf("cpu=%s cpuid=%s/%s/%s %s isa=%s conv_kernel=%s threads=%d "
         "blas=%s kernels=%s\n",
         name, family, model, stepping, cache, rt_isa_name(rt_isa()),
         rt_conv_kernel_name(), rt_threads(), openblas_get_corename(),
         NETC_KERNELS_HASH);
}

/* Multiply-adds of the three passes, the unit of the budget's estimate. */
static double shape_work(const ConvShape *s) {
  int nalgo = conv_wino_fits(s) ? CONV_ALGO_COUNT : CONV_WINOGRAD;
  return (double)s->N * s->OH * s->OW * s->OC * s->C * s->K * s->K * nalgo;
}

static void tune(const char *name, ConvShape s, int rounds) {
  int64_t nx = (int64_t)s.N * s.H * s.W * s.C;
  int64_t nw = (int64_t)s.OC * s.K * s.K * s.C;
  int64_t ny = (int64_t)s.N * s.OH * s.OW * s.OC;
  uint64_t seed = 1;
  /* x, w, y, dy, dw, dx */
  float *buf[6] = {randoms(nx, &seed), randoms(nw, &seed),
                   randoms(ny, &seed), randoms(ny, &seed),
                   randoms(nw, &seed), randoms(nx, &seed)};
  float *work[CONV_ALGO_COUNT][2];
  for (int a = 0; a < CONV_ALGO_COUNT; a++) {
    ConvShape t = s;
    t.algo = t.algo_dx = t.algo_dw = a;
    for (int b = 0; b < 2; b++)
      work[a][b] = randoms(conv_work_floats(&t, b), &seed);
  }
  double best[CONV_PASSES][CONV_ALGO_COUNT];
  int nalgo = conv_wino_fits(&s) ? CONV_ALGO_COUNT : CONV_WINOGRAD;
  for (int r = 0; r <= rounds; r++) /* round 0 warms up */
    for (int pass = 0; pass < CONV_PASSES; pass++)
      for (int a = 0; a < nalgo; a++) {
        double t = run(pass, a, s, buf, work[a]);
        if (pass == CONV_PASS_DX)
          t -= run(CONV_PASS_DW, a, s, buf, work[a]);
        if (r == 1 || (r > 1 && t < best[pass][a]))
          best[pass][a] = t;
      }
  static const char *const algo_names[CONV_ALGO_COUNT] = {
      [CONV_GEMM] = "gemm", [CONV_DIRECT] = "direct",
      [CONV_WINOGRAD] = "winograd", [CONV_WINOGRAD4] = "winograd4"};
  for (int pass = 0; pass < CONV_PASSES; pass++) {
    int win = CONV_GEMM;
    for (int a = 1; a < nalgo; a++)
      win = best[pass][a] < best[pass][win] ? a : win;
    printf("%s %s", name, pass_names[pass]);
    for (int a = 0; a < CONV_ALGO_COUNT; a++)
      printf(" %.3f", a < nalgo ? best[pass][a] * 1e3 : -1.0);
    printf(" %s\n", algo_names[win]);
  }
  fflush(stdout);
  for (int i = 0; i < 6; i++)
    free(buf[i]);
  for (int a = 0; a < CONV_ALGO_COUNT; a++)
    free(work[a][0]), free(work[a][1]);
}

int main(int argc, char **argv) {
  int threads = 0, rounds = 3, error = 0, machine = 0;
  double budget = 0; /* seconds; 0: none */
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--error"))
      error = 1;
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--budget") && i + 1 < argc)
      budget = atof(argv[++i]);
    else if (!strcmp(argv[i], "--machine"))
      machine = 1;
    else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
      const char *want = argv[++i];
      int isa = !strcmp(want, "avx2") ? RT_ISA_AVX2
                : !strcmp(want, "avx512") ? RT_ISA_AVX512 : -1;
      if (rt_set_isa(isa) != 0) {
        fprintf(stderr, "netc-tune: cannot run the %s kernels here (avx2 or "
                        "avx512, and this CPU must have it)\n", want);
        return 1;
      }
    }
    else {
      fprintf(stderr, "usage: netc-tune [--threads T] [--rounds R] [--isa I] "
                      "[--budget SECONDS] [--error | --machine] "
                      "< shapes\n"
                      "  shapes: lines 'name N H W C OC K stride pad'\n");
      return 2;
    }
  }
  if (threads > 0)
    rt_set_threads(threads);
  rounds = rounds < 1 ? 1 : rounds;
  if (machine) {
    machine_key();
    return 0;
  }
  printf("# netc-tune: isa=%s conv_kernel=%s threads=%d rounds=%d\n",
         rt_isa_name(rt_isa()), rt_conv_kernel_name(), rt_threads(), rounds);
  char line[512], name[256];
  double start = now_seconds(), done = 0; /* work measured so far */
  for (int ln = 1; fgets(line, sizeof line, stdin); ln++) {
    ConvShape s = {0};
    if (line[0] == '#' || line[0] == '\n')
      continue;
    if (sscanf(line, "%255s %d %d %d %d %d %d %d %d", name, &s.N, &s.H, &s.W,
               &s.C, &s.OC, &s.K, &s.stride, &s.pad) != 9 ||
        s.N < 1 || s.H < 1 || s.W < 1 || s.C < 1 || s.OC < 1 || s.K < 1 ||
        s.stride < 1 || s.pad < 0 || s.H + 2 * s.pad < s.K ||
        s.W + 2 * s.pad < s.K) {
      fprintf(stderr, "netc-tune: <stdin>:%d: expected 'name N H W C OC K "
                      "stride pad' of a valid convolution\n", ln);
      return 1;
    }
    s.OH = (s.H + 2 * s.pad - s.K) / s.stride + 1;
    s.OW = (s.W + 2 * s.pad - s.K) / s.stride + 1;
    double work = shape_work(&s), spent = now_seconds() - start;
    if (budget > 0 && !error &&
        (spent >= budget ||
         (done > 0 && spent + work * spent / done > budget))) {
      printf("# skipped %s: over the budget of %g s\n", name, budget);
      fflush(stdout);
      continue;
    }
    if (error)
      errors(name, s);
    else
      tune(name, s, rounds);
    done += work;
  }
  return 0;
}
