/* kernels.c: the runtime's fast kernels (the contract is netc_rt.h).
 * GEMM-shaped work (conv via im2col, dense) is one cblas_sgemm each;
 * everything else is a plain loop parallelized with OpenMP. NHWC
 * everywhere, so a channel is the fastest-moving index. No kernel
 * allocates: per-channel temporaries live on the stack (bounded blocks)
 * or in the caller's workspace (batchnorm's `work`). */
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "conv_direct.h"
#include "netc_rt.h"

void rt_set_threads(int n) {
  if (n < 1)
    n = 1;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int rt_threads(void) { return omp_get_max_threads(); }

/* The block of channels [*c0, *c1) this thread owns inside a parallel
 * region. Reductions split channels, not rows: every channel is summed
 * over its rows in order by one thread, so there are no races, no false
 * sharing of accumulators, and the sums do not depend on the thread
 * count. */
static void own_channels(int C, int *c0, int *c1) {
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
static void column_sums(float *db, const float *a, int64_t M, int C,
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
static void add_bias(float *y, const float *b, int64_t M, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++)
    for (int c = 0; c < C; c++)
      y[m * C + c] += b[c];
}

/* The in-bounds taps [*k0, *k1) of a window of K taps whose first tap is
 * at `start` on an axis of length `len`; [0, 0) if it misses entirely
 * (possible when pad >= K), so callers may index with both. */
static void clip_window(int start, int K, int len, int *k0, int *k1) {
  *k0 = start < 0 ? -start : 0;
  *k1 = start + K > len ? len - start : K;
  if (*k1 <= *k0)
    *k0 = *k1 = 0;
}

/* ---- convolution -------------------------------------------------------- */

/* A 1x1, stride-1, pad-0 convolution is a plain GEMM on x: im2col would
 * only copy x, so it is skipped whether or not cols is given. */
static int conv_is_pointwise(const ConvShape *s) {
  return s->K == 1 && s->stride == 1 && s->pad == 0;
}

/* cols row r = (n*OH + oh)*OW + ow holds the K*K*C inputs under output
 * (n, oh, ow), ordered (kh, kw, c), zero where the window is padding.
 * In NHWC the in-bounds taps of one kernel row are one contiguous run. */
static void im2col(float *cols, const float *x, const ConvShape *s) {
  int H = s->H, W = s->W, C = s->C, K = s->K, OH = s->OH, OW = s->OW;
  int64_t M = (int64_t)s->N * OH * OW, KC = (int64_t)K * C;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < M; r++) {
    int ow = (int)(r % OW), oh = (int)(r / OW % OH), n = (int)(r / OW / OH);
    int h0 = oh * s->stride - s->pad, w0 = ow * s->stride - s->pad, kw0, kw1;
    clip_window(w0, K, W, &kw0, &kw1);
    float *row = cols + r * KC * K;
    for (int kh = 0; kh < K; kh++, row += KC) {
      int ih = h0 + kh;
      if (ih < 0 || ih >= H) {
        memset(row, 0, (size_t)KC * sizeof *row);
        continue;
      }
      const float *src = x + (((int64_t)n * H + ih) * W + w0 + kw0) * C;
      size_t f = sizeof *row;
      memset(row, 0, (size_t)kw0 * C * f);
      memcpy(row + (int64_t)kw0 * C, src, (size_t)(kw1 - kw0) * C * f);
      memset(row + (int64_t)kw1 * C, 0, (size_t)(K - kw1) * C * f);
    }
  }
}

/* The adjoint of im2col: scatter-adds every cols row back into dx (after
 * zeroing it unless acc). Windows of one image overlap, different images
 * never do, so the parallel loop is over images. */
static void col2im(float *dx, const float *cols, const ConvShape *s,
                   int acc) {
  int H = s->H, W = s->W, C = s->C, K = s->K, OH = s->OH, OW = s->OW;
  int64_t KC = (int64_t)K * C, img = (int64_t)H * W * C;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < s->N; n++) {
    float *dxn = dx + n * img;
    if (!acc)
      memset(dxn, 0, (size_t)img * sizeof *dxn);
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++) {
        int h0 = oh * s->stride - s->pad, w0 = ow * s->stride - s->pad;
        int kw0, kw1;
        clip_window(w0, K, W, &kw0, &kw1);
        const float *row = cols + (((int64_t)n * OH + oh) * OW + ow) * KC * K;
        for (int kh = 0; kh < K; kh++) {
          int ih = h0 + kh;
          if (ih < 0 || ih >= H)
            continue;
          float *dst = dxn + ((int64_t)ih * W + w0 + kw0) * C;
          const float *src = row + kh * KC + (int64_t)kw0 * C;
          for (int64_t i = 0; i < (int64_t)(kw1 - kw0) * C; i++)
            dst[i] += src[i];
        }
      }
  }
}

/* CONV_GEMM: per chunk of conv_gemm_chunk() images, im2col into `cols`
 * (OH*OW rows of K*K*C per image), then one sgemm. */
static void gemm_forward(float *y, float *cols, const float *x,
                         const float *w, const float *b, const ConvShape *s) {
  int KKC = s->K * s->K * s->C, pointwise = conv_is_pointwise(s);
  int nb = pointwise ? s->N : conv_gemm_chunk(s);
  int64_t xi = (int64_t)s->H * s->W * s->C, yi = (int64_t)s->OH * s->OW * s->OC;
  for (int n0 = 0; n0 < s->N; n0 += nb) {
    ConvShape c = *s;
    c.N = s->N - n0 < nb ? s->N - n0 : nb;
    int M = c.N * s->OH * s->OW;
    const float *a = x + n0 * xi;
    if (!pointwise) {
      assert(cols && "cols may be NULL only for a 1x1/s1/p0 convolution");
      im2col(cols, a, &c);
      a = cols;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, s->OC, KKC,
                1.0f, a, KKC, w, KKC, 0.0f, y + n0 * yi, s->OC);
  }
  if (b)
    add_bias(y, b, (int64_t)s->N * s->OH * s->OW, s->OC);
}

/* Per chunk: dW (+)= dY^T cols. */
/* tiles: the products in netc's tiles (CONV_DIRECT's dW by rows), else in
 * OpenBLAS. */
static void gemm_bwd_weights(float *dw, float *cols, const float *dy,
                             const float *x, const ConvShape *s, int acc,
                             int tiles) {
  int KKC = s->K * s->K * s->C, OC = s->OC, pointwise = conv_is_pointwise(s);
  int nb = pointwise ? s->N : conv_gemm_chunk(s);
  int64_t xi = (int64_t)s->H * s->W * s->C, yi = (int64_t)s->OH * s->OW * OC;
  for (int n0 = 0; n0 < s->N; n0 += nb) {
    ConvShape c = *s;
    c.N = s->N - n0 < nb ? s->N - n0 : nb;
    int M = c.N * s->OH * s->OW;
    const float *a = x + n0 * xi, *d = dy + n0 * yi;
    if (!pointwise) {
      assert(cols && "cols may be NULL only for a 1x1/s1/p0 convolution");
      im2col(cols, a, &c);
      a = cols;
    }
    float beta = n0 > 0 || acc ? 1.0f : 0.0f;
    /* dw (OC, KKC) (+)= dy^T (OC, M) * cols (M, KKC) */
    if (tiles)
      conv_tiles_dw_rows(dw, d, a, M, OC, KKC, beta != 0);
    else
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, KKC, M, 1.0f,
                  d, OC, a, KKC, beta, dw, KKC);
  }
}

/* Per chunk: dcols = dY W, then col2im into dX (1x1/s1/p0: dX = dY W). */
static void gemm_bwd_data(float *dx, float *cols, const float *dy,
                          const float *w, const ConvShape *s, int acc) {
  int KKC = s->K * s->K * s->C, OC = s->OC, pointwise = conv_is_pointwise(s);
  int nb = pointwise ? s->N : conv_gemm_chunk(s);
  int64_t xi = (int64_t)s->H * s->W * s->C, yi = (int64_t)s->OH * s->OW * OC;
  for (int n0 = 0; n0 < s->N; n0 += nb) {
    ConvShape c = *s;
    c.N = s->N - n0 < nb ? s->N - n0 : nb;
    int M = c.N * s->OH * s->OW;
    const float *d = dy + n0 * yi;
    float *dxc = dx + n0 * xi;
    if (pointwise) { /* dx (M, C) = dy (M, OC) * w (OC, C) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, s->C, OC,
                  1.0f, d, OC, w, s->C, acc ? 1.0f : 0.0f, dxc, s->C);
      continue;
    }
    assert(cols && "cols may be NULL only for a 1x1/s1/p0 convolution");
    /* dcols (M, KKC) = dy (M, OC) * w (OC, KKC) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, KKC, OC, 1.0f,
                d, OC, w, KKC, 0.0f, cols, KKC);
    col2im(dxc, cols, &c, acc);
  }
}

void conv_forward(float *y, float *work, const float *x, const float *w,
                  const float *b, const ConvShape *s) {
  switch (conv_algo_of(s, CONV_PASS_FWD)) {
  case CONV_DIRECT: conv_direct_forward(y, work, x, w, b, s); break;
  case CONV_WINOGRAD:
  case CONV_WINOGRAD4: conv_winograd_forward(y, work, x, w, b, s); break;
  default: gemm_forward(y, work, x, w, b, s);
  }
}

void conv_backward(float *dx, float *dw, float *db, float *work,
                   const float *dy, const float *x, const float *w,
                   const ConvShape *s, int acc_dx, int acc_dw) {
  /* dW first: a GEMM dW's columns and a dX's workspace share `work`. */
  switch (conv_algo_of(s, CONV_PASS_DW)) {
  case CONV_DIRECT:
    if (conv_direct_dw_by_rows(s))
      gemm_bwd_weights(dw, work, dy, x, s, acc_dw, 1);
    else
      conv_direct_bwd_weights(dw, dy, x, s, acc_dw);
    break;
  case CONV_WINOGRAD:
  case CONV_WINOGRAD4:
    conv_winograd_bwd_weights(dw, work, dy, x, s, acc_dw);
    break;
  default: gemm_bwd_weights(dw, work, dy, x, s, acc_dw, 0);
  }
  if (dx) {
    switch (conv_algo_of(s, CONV_PASS_DX)) {
    case CONV_DIRECT: conv_direct_bwd_data(dx, work, dy, w, s, acc_dx); break;
    case CONV_WINOGRAD:
    case CONV_WINOGRAD4:
      conv_winograd_bwd_data(dx, work, dy, w, s, acc_dx);
      break;
    default: gemm_bwd_data(dx, work, dy, w, s, acc_dx);
    }
  }
  if (db)
    column_sums(db, dy, (int64_t)s->N * s->OH * s->OW, s->OC, acc_dw);
}

/* ---- batch normalization ------------------------------------------------ */

/* The workspace (BATCHNORM_WORK_BYTES(C), netc_rt.h): BN_CHUNKS slices of
 * 2*C doubles (per-chunk partial sums), then 4*C floats (per-channel
 * factors). A slice is 16*C bytes, so with 64-byte aligned work the
 * float part is 64-byte aligned, and so is every slice when C % 4 == 0:
 * chunks summed by different threads then never share a cache line. */
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
                          const float *mean, const float *invstd,
                          int64_t m0, int64_t m1, int C, int what) {
  double *p2 = p1 + C;
  memset(p1, 0, 2 * (size_t)C * sizeof *p1);
  for (int64_t m = m0; m < m1; m++) {
    const float *ar = a + m * C, *br = b ? b + m * C : NULL;
    if (what == 0) {
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
 *   1: s1 = sum(b), s2 = sum(b * (a - mean) * invstd)   (a = x, b = dy). */
static const double *bn_sums(void *work, const float *a, const float *b,
                             const float *mean, const float *invstd,
                             int64_t M, int C, int what) {
  double *part = bn_partials(work);
  int64_t C2 = 2 * (int64_t)C;
  int nch = bn_chunks(M);
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int k = 0; k < nch; k++)
      bn_chunk_sums(part + k * C2, a, b, mean, invstd, M * k / nch,
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

/* y = x * scale + shift, rows in parallel. */
static void bn_apply(float *y, const float *x, const float *scale,
                     const float *shift, int64_t M, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++) {
    float *yr = y + m * C;
    const float *xr = x + m * C;
#pragma omp simd
    for (int c = 0; c < C; c++)
      yr[c] = xr[c] * scale[c] + shift[c];
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
                    const BnShape *s, float eps) {
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
  bn_apply(y, x, scale, shift, s->M, C);
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

void batchnorm_forward(float *y, float *mean, float *invstd, void *work,
                       float *run_mean, float *run_var, const float *x,
                       const float *gamma, const float *beta,
                       const BnShape *s, float momentum, float eps,
                       int training) {
  if (!training) {
    bn_eval(y, mean, invstd, work, run_mean, run_var, x, gamma, beta, s, eps);
    return;
  }
  int64_t M = s->M;
  int C = s->C;
  const double *sum = bn_sums(work, x, NULL, NULL, NULL, M, C, 0);
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
  bn_apply(y, x, scale, shift, M, C);
}

void batchnorm_relu_recompute(float *y, void *work, const float *x,
                              const float *mean, const float *invstd,
                              const float *gamma, const float *beta,
                              const BnShape *s) {
  float *scale = bn_factors(work, s->C), *shift = scale + s->C;
  bn_scale_shift(scale, shift, mean, invstd, gamma, beta, s->C);
  bn_apply(y, x, scale, shift, s->M, s->C); /* the very code of forward */
  relu_forward(y, y, &(EltShape){s->M * s->C});
}

/* dx = a*dy + b*x + k per channel; each element reads only its own dy,
 * so dx == dy is safe. */
static void bn_backward_apply(float *dx, const float *dy, const float *x,
                              const float *a, const float *b, const float *k,
                              int64_t M, int C, int acc) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++) {
    float *dr = dx + m * C;
    const float *gr = dy + m * C, *xr = x + m * C;
    if (acc) {
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

void batchnorm_backward(float *dx, float *dgamma, float *dbeta, void *work,
                        const float *dy, const float *x, const float *mean,
                        const float *invstd, const float *gamma,
                        const BnShape *s, int acc_dx, int acc_dw) {
  int64_t M = s->M;
  int C = s->C;
  const double *sum = bn_sums(work, x, dy, mean, invstd, M, C, 1);
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
    bn_backward_apply(dx, dy, x, a, b, k, M, C, acc_dx);
}

/* ---- elementwise -------------------------------------------------------- */

/* `simd`: GCC's cost model declines these loops, and the scalar version
 * branches on the sign of every element: half mispredicted, 8x slower
 * (measured in the ResNet-18 profile). */
void relu_forward(float *y, const float *x, const EltShape *s) {
  int64_t n = s->n;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] < 0.0f ? 0.0f : x[i]; /* lets a NaN through, as PyTorch */
}

void relu_backward(float *dx, const float *dy, const float *y,
                   const EltShape *s, int acc) {
  int64_t n = s->n;
  if (acc) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
      dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
  } else {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
      dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
  }
}

void add_forward(float *y, const float *a, const float *b, const EltShape *s) {
  int64_t n = s->n;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++)
    y[i] = a[i] + b[i];
}

void grad_add(float *y, const float *a, const float *b, const EltShape *s) {
  add_forward(y, a, b, s);
}

/* ---- pooling ------------------------------------------------------------ */

void maxpool_forward(float *y, int32_t *argmax, const float *x,
                     const PoolShape *s) {
  int H = s->H, W = s->W, C = s->C, K = s->K, OH = s->OH, OW = s->OW;
  int64_t rows = (int64_t)s->N * OH * OW;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int ow = (int)(r % OW), oh = (int)(r / OW % OH), n = (int)(r / OW / OH);
    int h0 = oh * s->stride - s->pad, w0 = ow * s->stride - s->pad;
    int kh0, kh1, kw0, kw1;
    clip_window(h0, K, H, &kh0, &kh1);
    clip_window(w0, K, W, &kw0, &kw1);
    float *yo = y + r * C;
    int32_t *ao = argmax + r * C;
    for (int c = 0; c < C; c++) {
      yo[c] = -INFINITY; /* padding never wins */
      ao[c] = -1;
    }
    for (int kh = kh0; kh < kh1; kh++)
      for (int kw = kw0; kw < kw1; kw++) {
        int32_t idx = (h0 + kh) * W + w0 + kw;
        const float *xp = x + ((int64_t)n * H * W + idx) * C;
        for (int c = 0; c < C; c++)
          if (xp[c] > yo[c] || isnan(xp[c])) { /* first max wins ties */
            yo[c] = xp[c];
            ao[c] = idx;
          }
      }
  }
}

void maxpool_backward(float *dx, const float *dy, const int32_t *argmax,
                      const PoolShape *s, int acc) {
  int C = s->C;
  int64_t img = (int64_t)s->H * s->W * C, out = (int64_t)s->OH * s->OW * C;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < s->N; n++) { /* images never share dx: race-free */
    float *dxn = dx + n * img;
    if (!acc)
      memset(dxn, 0, (size_t)img * sizeof *dxn);
    for (int64_t i = n * out; i < (n + 1) * out; i++)
      if (argmax[i] >= 0)
        dxn[(int64_t)argmax[i] * C + i % C] += dy[i];
  }
}

void avgpool_forward(float *y, const float *x, const PoolShape *s) {
  int H = s->H, W = s->W, C = s->C, K = s->K, OH = s->OH, OW = s->OW;
  int64_t rows = (int64_t)s->N * OH * OW;
  float inv = 1.0f / (float)(K * K); /* padding counts in the divisor */
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int ow = (int)(r % OW), oh = (int)(r / OW % OH), n = (int)(r / OW / OH);
    int h0 = oh * s->stride - s->pad, w0 = ow * s->stride - s->pad;
    int kh0, kh1, kw0, kw1;
    clip_window(h0, K, H, &kh0, &kh1);
    clip_window(w0, K, W, &kw0, &kw1);
    float *yo = y + r * C;
    memset(yo, 0, (size_t)C * sizeof *yo);
    for (int kh = kh0; kh < kh1; kh++)
      for (int kw = kw0; kw < kw1; kw++) {
        const float *xp = x + (((int64_t)n * H + h0 + kh) * W + w0 + kw) * C;
        for (int c = 0; c < C; c++)
          yo[c] += xp[c];
      }
    for (int c = 0; c < C; c++)
      yo[c] *= inv;
  }
}

void avgpool_backward(float *dx, const float *dy, const PoolShape *s,
                      int acc) {
  int H = s->H, W = s->W, C = s->C, K = s->K, OH = s->OH, OW = s->OW;
  int64_t img = (int64_t)H * W * C;
  float inv = 1.0f / (float)(K * K);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < s->N; n++) { /* windows overlap within an image only */
    float *dxn = dx + n * img;
    if (!acc)
      memset(dxn, 0, (size_t)img * sizeof *dxn);
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++) {
        int h0 = oh * s->stride - s->pad, w0 = ow * s->stride - s->pad;
        int kh0, kh1, kw0, kw1;
        clip_window(h0, K, H, &kh0, &kh1);
        clip_window(w0, K, W, &kw0, &kw1);
        const float *g = dy + (((int64_t)n * OH + oh) * OW + ow) * C;
        for (int kh = kh0; kh < kh1; kh++)
          for (int kw = kw0; kw < kw1; kw++) {
            float *d = dxn + ((int64_t)(h0 + kh) * W + w0 + kw) * C;
            for (int c = 0; c < C; c++)
              d[c] += g[c] * inv;
          }
      }
  }
}

void global_avgpool_forward(float *y, const float *x, const GapShape *s) {
  int64_t HW = s->HW;
  int C = s->C;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < s->N; n++)
    for (int c = 0; c < C; c++) {
      double sum = 0;
      for (int64_t i = 0; i < HW; i++)
        sum += x[((int64_t)n * HW + i) * C + c];
      y[(int64_t)n * C + c] = (float)(sum / HW);
    }
}

void global_avgpool_backward(float *dx, const float *dy, const GapShape *s,
                             int acc) {
  int64_t HW = s->HW, rows = (int64_t)s->N * HW;
  int C = s->C;
  float inv = 1.0f / (float)HW;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const float *g = dy + r / HW * C;
    for (int c = 0; c < C; c++)
      dx[r * C + c] = (acc ? dx[r * C + c] : 0.0f) + g[c] * inv;
  }
}

/* ---- dense -------------------------------------------------------------- */

void dense_forward(float *y, const float *x, const float *w, const float *b,
                   const DenseShape *s) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->N, s->OUT, s->IN,
              1.0f, x, s->IN, w, s->IN, 0.0f, y, s->OUT);
  if (b)
    add_bias(y, b, s->N, s->OUT);
}

void dense_backward(float *dx, float *dw, float *db, const float *dy,
                    const float *x, const float *w, const DenseShape *s,
                    int acc_dx, int acc_dw) {
  int N = s->N, IN = s->IN, OUT = s->OUT;
  if (dx) /* dx (N, IN) = dy (N, OUT) * w (OUT, IN) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IN, OUT, 1.0f,
                dy, OUT, w, IN, acc_dx ? 1.0f : 0.0f, dx, IN);
  /* dw (OUT, IN) = dy^T (OUT, N) * x (N, IN) */
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, N, 1.0f, dy,
              OUT, x, IN, acc_dw ? 1.0f : 0.0f, dw, IN);
  if (db)
    column_sums(db, dy, N, OUT, acc_dw);
}

/* ---- softmax cross-entropy ---------------------------------------------- */

/* One row: probabilities into p, returns -log p[label] computed as
 * log(sum exp(l - max)) - (l[label] - max), which cannot overflow and
 * stays finite even where p[label] underflows to 0. With label smoothing
 * eps the target is (1 - eps) onehot + eps / C, as PyTorch's
 * cross_entropy(label_smoothing=eps): the loss adds eps times the mean
 * over classes of -log p[c], with the label's weight 1 - eps. */
static double softmax_row(float *p, const float *l, int label, int C,
                          float eps) {
  float mx = l[0];
  for (int c = 1; c < C; c++)
    if (l[c] > mx)
      mx = l[c];
  double sum = 0;
  for (int c = 0; c < C; c++) {
    p[c] = expf(l[c] - mx);
    sum += p[c];
  }
  float inv = (float)(1.0 / sum);
  for (int c = 0; c < C; c++)
    p[c] *= inv;
  double nll = log(sum) - ((double)l[label] - mx);
  if (eps == 0)
    return nll;
  double all = 0; /* sum over c of -log p[c] */
  for (int c = 0; c < C; c++)
    all += log(sum) - ((double)l[c] - mx);
  return (1.0 - eps) * nll + eps * all / C;
}

/* Row chunks of the loss sum: fixed, like batchnorm's, so the loss is the
 * same bits for every thread count (an OpenMP reduction would add the
 * threads' partial sums, which depend on the split). */
enum { XENT_CHUNKS = 16 };

float softmax_xent_forward(float *probs, const float *logits,
                           const int32_t *labels, const XentShape *s,
                           float smoothing) {
  int N = s->N, C = s->C, nch = N < XENT_CHUNKS ? N : XENT_CHUNKS;
  double part[XENT_CHUNKS], total = 0;
#pragma omp parallel for schedule(static)
  for (int k = 0; k < nch; k++) {
    double t = 0;
    for (int n = N * k / nch; n < N * (k + 1) / nch; n++)
      t += softmax_row(probs + (int64_t)n * C, logits + (int64_t)n * C,
                       labels[n], C, smoothing);
    part[k] = t;
  }
  for (int k = 0; k < nch; k++)
    total += part[k];
  return N > 0 ? (float)(total / N) : 0.0f;
}

void softmax_xent_backward(float *dlogits, const float *probs,
                           const int32_t *labels, const XentShape *s,
                           int acc, float scale, float smoothing) {
  int N = s->N, C = s->C;
  float inv = scale / (float)N; /* scale = 1/2^k: exactly (1/N) / 2^k */
  float on = 1.0f - smoothing + smoothing / (float)C, off = smoothing / (float)C;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++) {
      int64_t i = (int64_t)n * C + c;
      float g = (probs[i] - (c == labels[n] ? on : off)) * inv;
      dlogits[i] = acc ? dlogits[i] + g : g;
    }
}
