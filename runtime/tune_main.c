/* tune_main.c: netc-tune, the per-layer measurement behind `netc build
 * --tune` and `make bench-algos`. It reads convolution shapes, one per
 * line,
 *     name N H W C OC K stride pad
 * times every algorithm of every pass on each (random data, the arena's
 * 64-byte alignment, the threads of --threads), and prints one line per
 * shape and pass:
 *     name pass gemm_ms direct_ms best
 * Each time is the fastest of --rounds rounds after one warm-up, the
 * algorithms interleaved within a round, so that a noisy neighbour hurts
 * both alike. Exit status 1 with a message on a malformed line. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netc_model.h"
#include "netc_rt.h"
#include "util.h"

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
  for (int r = 0; r <= rounds; r++) /* round 0 warms up */
    for (int pass = 0; pass < CONV_PASSES; pass++)
      for (int a = 0; a < CONV_ALGO_COUNT; a++) {
        double t = run(pass, a, s, buf, work[a]);
        if (pass == CONV_PASS_DX)
          t -= run(CONV_PASS_DW, a, s, buf, work[a]);
        if (r == 1 || (r > 1 && t < best[pass][a]))
          best[pass][a] = t;
      }
  for (int pass = 0; pass < CONV_PASSES; pass++) {
    int win = best[pass][CONV_DIRECT] < best[pass][CONV_GEMM] ? CONV_DIRECT
                                                              : CONV_GEMM;
    printf("%s %s %.3f %.3f %s\n", name, pass_names[pass],
           best[pass][CONV_GEMM] * 1e3, best[pass][CONV_DIRECT] * 1e3,
           win == CONV_DIRECT ? "direct" : "gemm");
  }
  fflush(stdout);
  for (int i = 0; i < 6; i++)
    free(buf[i]);
  for (int a = 0; a < CONV_ALGO_COUNT; a++)
    free(work[a][0]), free(work[a][1]);
}

int main(int argc, char **argv) {
  int threads = 0, rounds = 3;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: netc-tune [--threads T] [--rounds R] < shapes\n"
                      "  shapes: lines 'name N H W C OC K stride pad'\n");
      return 2;
    }
  }
  if (threads > 0)
    rt_set_threads(threads);
  rounds = rounds < 1 ? 1 : rounds;
  printf("# netc-tune: isa=%s conv_kernel=%s threads=%d rounds=%d\n",
         rt_isa_name(rt_isa()), rt_conv_kernel_name(), rt_threads(), rounds);
  char line[512], name[256];
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
    tune(name, s, rounds);
  }
  return 0;
}
