/* fma_peak.c: `make bench-peak`, this CPU's float32 multiply-add peak:
 * each thread runs 12 independent chains of vector FMAs (enough to hide
 * their latency on two FMA ports), on the widest vectors it was compiled
 * for (-march=native: 16 lanes with AVX-512, 8 with AVX2). The figure
 * that docs/kernels.md divides by for "fraction of peak": what netc's
 * tiles and any other kernel can reach at most. Prints
 *   fma_peak threads=T lanes=L gflops=G */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>

#if defined(__AVX512F__)
typedef __m512 V;
enum { LANES = 16 };
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define SUM _mm512_reduce_add_ps
#else
typedef __m256 V;
enum { LANES = 8 };
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
static float SUM(V v) {
  float f[8], s = 0;
  _mm256_storeu_ps(f, v);
  for (int i = 0; i < 8; i++)
    s += f[i];
  return s;
}
#endif

enum { CHAINS = 12 };

int main(void) {
  const long rounds = 20000000;
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = omp_get_wtime();
    float sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
      V a[CHAINS];
      for (int i = 0; i < CHAINS; i++)
        a[i] = SET1(1e-3f * (float)i);
      V b = SET1(0.999f), c = SET1(1e-6f);
      for (long k = 0; k < rounds; k++)
        for (int i = 0; i < CHAINS; i++)
          a[i] = FMA(a[i], b, c);
      for (int i = 0; i < CHAINS; i++)
        sink += SUM(a[i]);
    }
    double t = omp_get_wtime() - t0;
    double g = (double)omp_get_max_threads() * rounds * CHAINS * LANES * 2 /
               t / 1e9;
    best = g > best ? g : best;
    if (sink == 12345.0f) /* keeps the chains alive */
      puts("");
  }
  printf("fma_peak threads=%d lanes=%d gflops=%.1f\n", omp_get_max_threads(),
         LANES, best);
  return 0;
}
