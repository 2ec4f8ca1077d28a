/* loops.h: the loops that several kernel files share (conv.c, kernels.c),
 * inline: no kernel file calls another's for them. */
#ifndef NETC_LOOPS_H
#define NETC_LOOPS_H

#include <omp.h>
#include <stdint.h>

/* The block of channels [*c0, *c1) this thread owns inside a parallel
 * region. Reductions split channels, not rows: every channel is summed
 * over its rows in order by one thread, so there are no races, no false
 * sharing of accumulators, and the sums do not depend on the thread
 * count. */
static inline void own_channels(int C, int *c0, int *c1) {
  int t = omp_get_thread_num(), nt = omp_get_num_threads();
  *c0 = (int)((int64_t)C * t / nt);
  *c1 = (int)((int64_t)C * (t + 1) / nt);
}

/* Channels per stack block of column_sums' double accumulators: 512
 * bytes of stack, whatever C is. */
enum { SUM_BLOCK = 64 };

/* db[c] (= or +=) the sum over M rows of a[m*C + c]: a bias gradient.
 * Each thread walks its channels in blocks of SUM_BLOCK, summing every
 * channel over all rows in order into a double on the stack. */
static inline void column_sums(float *db, const float *a, int64_t M, int C,
                        int acc) {
#pragma omp parallel
  {
    int c0, c1;
    own_channels(C, &c0, &c1);
    for (int b0 = c0; b0 < c1; b0 += SUM_BLOCK) {
      int nb = c1 - b0 < SUM_BLOCK ? c1 - b0 : SUM_BLOCK;
      double s[SUM_BLOCK] = {0};
      for (int64_t m = 0; m < M; m++) {
        const float *row = a + m * C + b0;
        for (int j = 0; j < nb; j++)
          s[j] += row[j];
      }
      for (int j = 0; j < nb; j++)
        db[b0 + j] = acc ? (float)(db[b0 + j] + s[j]) : (float)s[j];
    }
  }
}

/* y[m*C + c] += b[c] over M rows. */
static inline void add_bias(float *y, const float *b, int64_t M, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++)
    for (int c = 0; c < C; c++)
      y[m * C + c] += b[c];
}

/* The in-bounds taps [*k0, *k1) of a window of K taps whose first tap is
 * at `start` on an axis of length `len`; [0, 0) if it misses entirely
 * (possible when pad >= K), so callers may index with both. */
static inline void clip_window(int start, int K, int len, int *k0, int *k1) {
  *k0 = start < 0 ? -start : 0;
  *k1 = start + K > len ? len - start : K;
  if (*k1 <= *k0)
    *k0 = *k1 = 0;
}

#endif
