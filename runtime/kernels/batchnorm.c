/* batchnorm.c: batch normalization, forward (training: batch statistics;
 * evaluation: running ones), the recompute of a relu over it, and its
 * backward (netc_rt.h), each also with the relu folded in (fuse.c). Sums
 * are in double, per channel, over fixed row chunks, so they do not depend
 * on the thread count; the workspace is the caller's
 * (BATCHNORM_WORK_BYTES). */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/netc_rt.h"

/* The workspace (BATCHNORM_WORK_BYTES(C), netc_rt.h): BN_CHUNKS slices of
 * 2*C doubles (per-chunk partial sums), then 4*C floats (per-channel
 * factors). A slice is 16*C bytes, so with 64-byte aligned work the
 * float part is 64-byte aligned, and so is every slice when C % 4 == 0:
 * chunks summed by different threads then never share a cache line. */
/* g where y > 0, else +0: relu_backward's rule, as a bit mask (GCC
 * vectorizes this where it keeps a branch for `y > 0 ? g : 0` in a loop
 * that also widens to double). The same bits, a NaN g masked out too. */
static inline float relu_masked(float y, float g) {
  uint32_t b;
  memcpy(&b, &g, sizeof b);
  b &= -(uint32_t)(y > 0.0f);
  memcpy(&g, &b, sizeof g);
  return g;
}

static double *bn_partials(void *work) {
  assert(work && (uintptr_t)work % 64 == 0 && "batchnorm work: 64-aligned");
  return work;
}

static float *bn_factors(void *work, int C) {
  return (float *)(bn_partials(work) + (int64_t)BN_CHUNKS * 2 * C);
}

/* The number of row chunks: BN_CHUNKS, or one per row when there are
 * fewer rows (never zero, so chunk 0 always holds the total). */
static int bn_chunks(int64_t M) {
  return M >= BN_CHUNKS ? BN_CHUNKS : M > 1 ? (int)M : 1;
}

/* One chunk's sums over rows [m0, m1), in order, into p1 and p2 = p1 + C
 * (see bn_sums for `what`). Whole rows: contiguous channels, so the
 * channel loop vectorizes; each lane is its own channel, so vectorizing
 * reorders no sum. */
static void bn_chunk_sums(double *p1, const float *a, const float *b,
                          const float *mask, const float *mean,
                          const float *invstd, int64_t m0, int64_t m1, int C,
                          int what) {
  double *p2 = p1 + C;
  memset(p1, 0, 2 * (size_t)C * sizeof *p1);
  for (int64_t m = m0; m < m1; m++) {
    const float *ar = a + m * C, *br = b ? b + m * C : NULL;
    const float *yr = mask ? mask + m * C : NULL;
    if (yr) { /* what == 1, b masked by relu_backward's rule */
#pragma omp simd
      for (int c = 0; c < C; c++) {
        double g = relu_masked(yr[c], br[c]);
        p1[c] += g;
        p2[c] += g * ((ar[c] - mean[c]) * invstd[c]);
      }
    } else if (what == 0) {
#pragma omp simd
      for (int c = 0; c < C; c++) {
        double d = (double)ar[c] - a[c];
        p1[c] += d;
        p2[c] += d * d;
      }
    } else {
#pragma omp simd
      for (int c = 0; c < C; c++) {
        double g = br[c];
        p1[c] += g;
        p2[c] += g * ((ar[c] - mean[c]) * invstd[c]);
      }
    }
  }
}

/* Per-channel sums over M rows of C channels; returns s1 (C doubles)
 * followed by s2 (C doubles), in work's first slice. The rows are split
 * into bn_chunks(M) fixed chunks, each summed in order into its own slice
 * of work; threads share out whole chunks; then the slices are added in
 * chunk order. Nothing depends on which thread summed what, so the sums,
 * and every batchnorm result, are the same bits for every thread count.
 * `what` picks the sums:
 *   0: s1 = sum(a - k), s2 = sum((a - k)^2), with k = a's first row (a
 *      shift that keeps the one-pass variance free of cancellation);
 *   1: s1 = sum(b), s2 = sum(b * (a - mean) * invstd)   (a = x, b = dy),
 *      with b taken only where mask > 0 when there is a mask. */
static const double *bn_sums(void *work, const float *a, const float *b,
                             const float *mask, const float *mean,
                             const float *invstd, int64_t M, int C,
                             int what) {
  double *part = bn_partials(work);
  int64_t C2 = 2 * (int64_t)C;
  int nch = bn_chunks(M);
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int k = 0; k < nch; k++)
      bn_chunk_sums(part + k * C2, a, b, mask, mean, invstd, M * k / nch,
                    M * (k + 1) / nch, C, what);
    /* (the implicit barrier: every chunk is summed) */
#pragma omp for schedule(static)
    for (int c = 0; c < C; c++)
      for (int k = 1; k < nch; k++) {
        part[c] += part[k * C2 + c];
        part[C + c] += part[k * C2 + C + c];
      }
  }
  return part;
}

/* y = x * scale + shift, rows in parallel; with relu, then max(0, y) in
 * the same pass (relu_forward's rule: a NaN goes through), the same bits
 * as the two passes. */
static void bn_apply(float *y, const float *x, const float *scale,
                     const float *shift, int64_t M, int C, int relu) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++) {
    float *yr = y + m * C;
    const float *xr = x + m * C;
    if (relu) {
#pragma omp simd
      for (int c = 0; c < C; c++) {
        float v = xr[c] * scale[c] + shift[c];
        yr[c] = v < 0.0f ? 0.0f : v;
      }
    } else {
#pragma omp simd
      for (int c = 0; c < C; c++)
        yr[c] = xr[c] * scale[c] + shift[c];
    }
  }
}

/* y = x * scale + shift normalizes; computed in float from the float mean
 * and invstd that training saves, so that batchnorm_relu_recompute gets
 * the forward pass's values bit for bit. */
static void bn_scale_shift(float *scale, float *shift, const float *mean,
                           const float *invstd, const float *gamma,
                           const float *beta, int C) {
  for (int c = 0; c < C; c++) {
    scale[c] = invstd[c] * gamma[c];
    shift[c] = beta[c] - mean[c] * scale[c];
  }
}

/* Evaluation: the running statistics; mean/invstd are saved if given. */
static void bn_eval(float *y, float *mean, float *invstd, void *work,
                    const float *run_mean, const float *run_var,
                    const float *x, const float *gamma, const float *beta,
                    const BnShape *s, float eps, int relu) {
  int C = s->C;
  float *scale = bn_factors(work, C), *shift = scale + C;
  for (int c = 0; c < C; c++) {
    float is = (float)(1.0 / sqrt((double)run_var[c] + eps));
    scale[c] = is * gamma[c];
    shift[c] = beta[c] - run_mean[c] * scale[c];
    if (mean)
      mean[c] = run_mean[c];
    if (invstd)
      invstd[c] = is;
  }
  bn_apply(y, x, scale, shift, s->M, C, relu);
}

static RtBnGather bn_gather;
static int bn_procs = 1;

void rt_set_bn_sync(RtBnGather gather, int procs) {
  bn_gather = procs > 1 ? gather : NULL;
  bn_procs = procs > 1 ? procs : 1;
}

/* The mean and variance over every process's rows: each sends its row
 * count and, per channel, its shift k (its first row) and its shifted sums
 * S1 = sum(x - k), S2 = sum((x - k)^2); all combine them in rank order,
 * M2 = sum over r of S2_r - 2 (mu - k_r) S1_r + M_r (mu - k_r)^2 (the
 * shifted sums moved to the global mean, exact in algebra). The same
 * bits on every process. Returns the global row count. */
static double bn_sync_stats(const double *sum, const float *x, int64_t M,
                            int C, double *mine, double *mu, double *var) {
  mine[0] = (double)M;
  for (int c = 0; c < C; c++) {
    mine[1 + 3 * c] = x[c];
    mine[2 + 3 * c] = sum[c];
    mine[3 + 3 * c] = sum[C + c];
  }
  int n = 1 + 3 * C;
  const double *all = bn_gather(mine, n);
  double rows = 0;
  for (int r = 0; r < bn_procs; r++)
    rows += all[r * n];
  for (int c = 0; c < C; c++) {
    double t = 0, m2 = 0;
    for (int r = 0; r < bn_procs; r++) {
      const double *q = all + r * n;
      t += q[0] * q[1 + 3 * c] + q[2 + 3 * c];
    }
    mu[c] = t / rows;
    for (int r = 0; r < bn_procs; r++) {
      const double *q = all + r * n;
      double dk = mu[c] - q[1 + 3 * c];
      m2 += q[3 + 3 * c] - 2 * dk * q[2 + 3 * c] + q[0] * dk * dk;
    }
    var[c] = m2 / rows;
  }
  return rows;
}

/* batchnorm_forward, and with relu its relu in the same pass. */
static void bn_forward(float *y, float *mean, float *invstd, void *work,
                       float *run_mean, float *run_var, const float *x,
                       const float *gamma, const float *beta,
                       const BnShape *s, float momentum, float eps,
                       int training, int relu) {
  if (!training) {
    bn_eval(y, mean, invstd, work, run_mean, run_var, x, gamma, beta, s, eps,
            relu);
    return;
  }
  int64_t M = s->M;
  int C = s->C;
  const double *sum = bn_sums(work, x, NULL, NULL, NULL, NULL, M, C, 0);
  float *scale = bn_factors(work, C), *shift = scale + C;
  float *mu_f = shift + C, *is_f = mu_f + C;
  /* Synchronized: the global statistics, in the free part of the
   * partial-sum slices (chunk 0 holds the totals). */
  double *g_mu = bn_partials(work) + 2 * (int64_t)C, *g_var = g_mu + C;
  double rows = bn_gather ? bn_sync_stats(sum, x, M, C, g_var + C, g_mu, g_var)
                          : (double)M;
  /* Unbiased variance for the running estimate, as PyTorch. */
  double unbias = rows > 1 ? rows / (rows - 1) : 1.0;
  for (int c = 0; c < C; c++) {
    double d = sum[c] / M, mu = x[c] + d, var = sum[C + c] / M - d * d;
    if (bn_gather)
      mu = g_mu[c], var = g_var[c];
    var = var > 0 ? var : 0;
    double is = 1.0 / sqrt(var + eps);
    mu_f[c] = (float)mu;
    is_f[c] = (float)is;
    if (mean)
      mean[c] = mu_f[c];
    if (invstd)
      invstd[c] = is_f[c];
    if (run_mean) {
      run_mean[c] = (float)((1 - momentum) * run_mean[c] + momentum * mu);
      run_var[c] = (float)((1 - momentum) * run_var[c] +
                           momentum * var * unbias);
    }
  }
  bn_scale_shift(scale, shift, mu_f, is_f, gamma, beta, C);
  bn_apply(y, x, scale, shift, M, C, relu);
}

void batchnorm_forward(float *y, float *mean, float *invstd, void *work,
                       float *run_mean, float *run_var, const float *x,
                       const float *gamma, const float *beta,
                       const BnShape *s, float momentum, float eps,
                       int training) {
  bn_forward(y, mean, invstd, work, run_mean, run_var, x, gamma, beta, s,
             momentum, eps, training, 0);
}

void batchnorm_relu_forward(float *y, float *mean, float *invstd, void *work,
                            float *run_mean, float *run_var, const float *x,
                            const float *gamma, const float *beta,
                            const BnShape *s, float momentum, float eps,
                            int training) {
  bn_forward(y, mean, invstd, work, run_mean, run_var, x, gamma, beta, s,
             momentum, eps, training, 1);
}

void batchnorm_relu_recompute(float *y, void *work, const float *x,
                              const float *mean, const float *invstd,
                              const float *gamma, const float *beta,
                              const BnShape *s) {
  float *scale = bn_factors(work, s->C), *shift = scale + s->C;
  bn_scale_shift(scale, shift, mean, invstd, gamma, beta, s->C);
  bn_apply(y, x, scale, shift, s->M, s->C, 1); /* forward's very code */
}

/* dx = a*dy + b*x + k per channel, dy taken only where mask > 0 when
 * there is a mask; each element reads only its own dy, so dx == dy is
 * safe. */
static void bn_backward_apply(float *dx, const float *dy, const float *mask,
                              const float *x, const float *a, const float *b,
                              const float *k, int64_t M, int C, int acc) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++) {
    float *dr = dx + m * C;
    const float *gr = dy + m * C, *xr = x + m * C;
    const float *yr = mask ? mask + m * C : NULL;
    if (yr && acc) {
#pragma omp simd
      for (int c = 0; c < C; c++)
        dr[c] += a[c] * relu_masked(yr[c], gr[c]) + b[c] * xr[c] + k[c];
    } else if (yr) {
#pragma omp simd
      for (int c = 0; c < C; c++)
        dr[c] = a[c] * relu_masked(yr[c], gr[c]) + b[c] * xr[c] + k[c];
    } else if (acc) {
#pragma omp simd
      for (int c = 0; c < C; c++)
        dr[c] += a[c] * gr[c] + b[c] * xr[c] + k[c];
    } else {
#pragma omp simd
      for (int c = 0; c < C; c++)
        dr[c] = a[c] * gr[c] + b[c] * xr[c] + k[c];
    }
  }
}

/* batchnorm_backward, of dy masked by y > 0 when there is a y. */
static void bn_backward(float *dx, float *dgamma, float *dbeta, void *work,
                        const float *dy, const float *x, const float *mean,
                        const float *invstd, const float *y,
                        const float *gamma, const BnShape *s, int acc_dx,
                        int acc_dw) {
  int64_t M = s->M;
  int C = s->C;
  const double *sum = bn_sums(work, x, dy, y, mean, invstd, M, C, 1);
  float *a = bn_factors(work, C), *b = a + C, *k = b + C;
  for (int c = 0; c < C; c++) { /* this process's share of the weights' */
    dgamma[c] = (float)(acc_dw ? dgamma[c] + sum[C + c] : sum[C + c]);
    dbeta[c] = (float)(acc_dw ? dbeta[c] + sum[c] : sum[c]);
  }
  double rows = (double)M;
  if (bn_gather) { /* dX's means are over every process's rows */
    double *mine = bn_partials(work) + 2 * (int64_t)C, *tot = mine + 2 * C + 1;
    memcpy(mine, sum, sizeof(double) * 2 * (size_t)C);
    mine[2 * C] = (double)M;
    const double *all = bn_gather(mine, 2 * C + 1);
    for (int i = 0; i <= 2 * C; i++) {
      tot[i] = 0;
      for (int r = 0; r < bn_procs; r++)
        tot[i] += all[r * (2 * C + 1) + i];
    }
    sum = tot, rows = tot[2 * C];
  }
  for (int c = 0; c < C; c++) {
    /* dx = gamma*invstd * (dy - mean(dy) - xhat*mean(dy*xhat))
     *    = a*dy + b*x + k, per channel. */
    double gi = (double)gamma[c] * invstd[c];
    double mdy = sum[c] / rows, mdx = sum[C + c] / rows;
    a[c] = (float)gi;
    b[c] = (float)(-gi * mdx * invstd[c]);
    k[c] = (float)(gi * (-mdy + mdx * invstd[c] * mean[c]));
  }
  if (dx)
    bn_backward_apply(dx, dy, y, x, a, b, k, M, C, acc_dx);
}

void batchnorm_backward(float *dx, float *dgamma, float *dbeta, void *work,
                        const float *dy, const float *x, const float *mean,
                        const float *invstd, const float *gamma,
                        const BnShape *s, int acc_dx, int acc_dw) {
  bn_backward(dx, dgamma, dbeta, work, dy, x, mean, invstd, NULL, gamma, s,
              acc_dx, acc_dw);
}

void batchnorm_relu_backward(float *dx, float *dgamma, float *dbeta,
                             void *work, const float *dy, const float *x,
                             const float *mean, const float *invstd,
                             const float *y, const float *gamma,
                             const BnShape *s, int acc_dx, int acc_dw) {
  bn_backward(dx, dgamma, dbeta, work, dy, x, mean, invstd, y, gamma, s,
              acc_dx, acc_dw);
}
