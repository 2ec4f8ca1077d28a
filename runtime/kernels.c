/* kernels.c: the runtime's fast kernels (the contract is netc_rt.h).
 * GEMM-shaped work (conv via im2col, dense) is one cblas_sgemm each;
 * everything else is a plain loop parallelized with OpenMP. NHWC
 * everywhere, so a channel is the fastest-moving index. */
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netc_rt.h"

void rt_set_threads(int n) {
  if (n < 1)
    n = 1;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int rt_threads(void) { return omp_get_max_threads(); }

/* Zeroed scratch of n elements (per-channel sums and scales); a kernel
 * has no way to report failure, so running out of memory aborts. */
static void *xcalloc(int64_t n, size_t size) {
  void *p = calloc((size_t)(n > 0 ? n : 1), size);
  if (!p) {
    fprintf(stderr, "netc runtime: out of memory\n");
    abort();
  }
  return p;
}

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

/* db[c] (= or +=) the sum over M rows of a[m*C + c]: a bias gradient. */
static void column_sums(float *db, const float *a, int64_t M, int C,
                        int acc) {
#pragma omp parallel
  {
    int c0, c1;
    own_channels(C, &c0, &c1);
    double *s = xcalloc(c1 - c0, sizeof *s);
    for (int64_t m = 0; m < M; m++)
      for (int c = c0; c < c1; c++)
        s[c - c0] += a[m * C + c];
    for (int c = c0; c < c1; c++)
      db[c] = acc ? (float)(db[c] + s[c - c0]) : (float)s[c - c0];
    free(s);
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
static int conv_is_direct(int K, int stride, int pad) {
  return K == 1 && stride == 1 && pad == 0;
}

/* cols row r = (n*OH + oh)*OW + ow holds the K*K*C inputs under output
 * (n, oh, ow), ordered (kh, kw, c), zero where the window is padding.
 * In NHWC the in-bounds taps of one kernel row are one contiguous run. */
static void im2col(float *cols, const float *x, int N, int H, int W, int C,
                   int K, int stride, int pad, int OH, int OW) {
  int64_t M = (int64_t)N * OH * OW, KC = (int64_t)K * C;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < M; r++) {
    int ow = (int)(r % OW), oh = (int)(r / OW % OH), n = (int)(r / OW / OH);
    int h0 = oh * stride - pad, w0 = ow * stride - pad, kw0, kw1;
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
static void col2im(float *dx, const float *cols, int N, int H, int W, int C,
                   int K, int stride, int pad, int OH, int OW, int acc) {
  int64_t KC = (int64_t)K * C, img = (int64_t)H * W * C;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    float *dxn = dx + n * img;
    if (!acc)
      memset(dxn, 0, (size_t)img * sizeof *dxn);
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++) {
        int h0 = oh * stride - pad, w0 = ow * stride - pad, kw0, kw1;
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

void conv_forward(float *y, float *cols, const float *x, const float *w,
                  const float *b, int N, int H, int W, int C, int OC, int K,
                  int stride, int pad, int OH, int OW) {
  int M = N * OH * OW, KKC = K * K * C;
  const float *a = x;
  if (!conv_is_direct(K, stride, pad)) {
    assert(cols && "cols may be NULL only for a 1x1/s1/p0 convolution");
    im2col(cols, x, N, H, W, C, K, stride, pad, OH, OW);
    a = cols;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, OC, KKC, 1.0f, a,
              KKC, w, KKC, 0.0f, y, OC);
  if (b)
    add_bias(y, b, M, OC);
}

void conv_backward(float *dx, float *dw, float *db, float *cols,
                   const float *dy, const float *x, const float *w, int N,
                   int H, int W, int C, int OC, int K, int stride, int pad,
                   int OH, int OW, int acc_dx, int acc_dw) {
  int M = N * OH * OW, KKC = K * K * C, direct = conv_is_direct(K, stride, pad);
  const float *a = x;
  if (!direct) {
    assert(cols && "cols may be NULL only for a 1x1/s1/p0 convolution");
    im2col(cols, x, N, H, W, C, K, stride, pad, OH, OW);
    a = cols;
  }
  /* dw (OC, KKC) = dy^T (OC, M) * cols (M, KKC) */
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, KKC, M, 1.0f, dy,
              OC, a, KKC, acc_dw ? 1.0f : 0.0f, dw, KKC);
  if (db)
    column_sums(db, dy, M, OC, acc_dw);
  if (!dx)
    return;
  if (direct) { /* dx (M, C) = dy (M, OC) * w (OC, C) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, C, OC, 1.0f,
                dy, OC, w, C, acc_dx ? 1.0f : 0.0f, dx, C);
    return;
  }
  /* dcols (M, KKC) = dy (M, OC) * w (OC, KKC), in cols now dw is done. */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, KKC, OC, 1.0f, dy,
              OC, w, KKC, 0.0f, cols, KKC);
  col2im(dx, cols, N, H, W, C, K, stride, pad, OH, OW, acc_dx);
}

/* ---- batch normalization ------------------------------------------------ */

/* Per-channel sums over M rows of C channels, split by rows: each thread
 * reads whole rows (contiguous channels, vectorized) into its own double
 * partials, which are then added in thread order, so a given thread count
 * always gives the same bits. `what` picks the sums:
 *   0: s1 = sum(a - k), s2 = sum((a - k)^2), with k = a's first row (a
 *      shift that keeps the one-pass variance free of cancellation);
 *   1: s1 = sum(b), s2 = sum(b * (a - mean) * invstd)   (a = x, b = dy). */
static void bn_sums(double *s1, double *s2, const float *a, const float *b,
                    const float *mean, const float *invstd, int64_t M, int C,
                    int what) {
  int nt = omp_get_max_threads();
  double *part = xcalloc((int64_t)nt * 2 * C, sizeof *part);
#pragma omp parallel
  {
    int t = omp_get_thread_num(), n = omp_get_num_threads();
    double *p1 = part + (int64_t)t * 2 * C, *p2 = p1 + C;
    for (int64_t m = M * t / n; m < M * (t + 1) / n; m++) {
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
  for (int t = 0; t < nt; t++)
    for (int c = 0; c < C; c++) {
      s1[c] += part[(int64_t)t * 2 * C + c];
      s2[c] += part[(int64_t)t * 2 * C + C + c];
    }
  free(part);
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
static void bn_eval(float *y, float *mean, float *invstd,
                    const float *run_mean, const float *run_var,
                    const float *x, const float *gamma, const float *beta,
                    int M, int C, float eps) {
  float *scale = xcalloc(2 * (int64_t)C, sizeof *scale), *shift = scale + C;
  for (int c = 0; c < C; c++) {
    float is = (float)(1.0 / sqrt((double)run_var[c] + eps));
    scale[c] = is * gamma[c];
    shift[c] = beta[c] - run_mean[c] * scale[c];
    if (mean)
      mean[c] = run_mean[c];
    if (invstd)
      invstd[c] = is;
  }
  bn_apply(y, x, scale, shift, M, C);
  free(scale);
}

void batchnorm_forward(float *y, float *mean, float *invstd, float *run_mean,
                       float *run_var, const float *x, const float *gamma,
                       const float *beta, int M, int C, float momentum,
                       float eps, int training) {
  if (!training) {
    bn_eval(y, mean, invstd, run_mean, run_var, x, gamma, beta, M, C, eps);
    return;
  }
  double *s = xcalloc(2 * (int64_t)C, sizeof *s);
  float *scale = xcalloc(4 * (int64_t)C, sizeof *scale), *shift = scale + C;
  float *mu_f = shift + C, *is_f = mu_f + C;
  bn_sums(s, s + C, x, NULL, NULL, NULL, M, C, 0);
  /* Unbiased variance for the running estimate, as PyTorch. */
  double unbias = M > 1 ? (double)M / (M - 1) : 1.0;
  for (int c = 0; c < C; c++) {
    double d = s[c] / M, mu = x[c] + d, var = s[C + c] / M - d * d;
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
  free(s);
  free(scale);
}

void batchnorm_relu_recompute(float *y, const float *x, const float *mean,
                              const float *invstd, const float *gamma,
                              const float *beta, int M, int C) {
  float *scale = xcalloc(2 * (int64_t)C, sizeof *scale), *shift = scale + C;
  bn_scale_shift(scale, shift, mean, invstd, gamma, beta, C);
  bn_apply(y, x, scale, shift, M, C); /* the very code of the forward pass */
  relu_forward(y, y, (int64_t)M * C);
  free(scale);
}

void batchnorm_backward(float *dx, float *dgamma, float *dbeta,
                        const float *dy, const float *x, const float *mean,
                        const float *invstd, const float *gamma, int M, int C,
                        int acc_dx, int acc_dw) {
  double *s = xcalloc(2 * (int64_t)C, sizeof *s);
  float *a = xcalloc(3 * (int64_t)C, sizeof *a), *b = a + C, *k = b + C;
  bn_sums(s, s + C, x, dy, mean, invstd, M, C, 1);
  for (int c = 0; c < C; c++) {
    dgamma[c] = (float)(acc_dw ? dgamma[c] + s[C + c] : s[C + c]);
    dbeta[c] = (float)(acc_dw ? dbeta[c] + s[c] : s[c]);
    /* dx = gamma*invstd * (dy - mean(dy) - xhat*mean(dy*xhat))
     *    = a*dy + b*x + k, per channel. */
    double gi = (double)gamma[c] * invstd[c];
    double mdy = s[c] / M, mdx = s[C + c] / M;
    a[c] = (float)gi;
    b[c] = (float)(-gi * mdx * invstd[c]);
    k[c] = (float)(gi * (-mdy + mdx * invstd[c] * mean[c]));
  }
  /* Each element reads only its own dy after the sums: dx == dy is safe. */
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
      float *dr = dx + (int64_t)m * C;
      const float *gr = dy + (int64_t)m * C, *xr = x + (int64_t)m * C;
      if (acc_dx) {
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
  free(s);
  free(a);
}

/* ---- elementwise -------------------------------------------------------- */

/* `simd`: GCC's cost model declines these loops, and the scalar version
 * branches on the sign of every element: half mispredicted, 8x slower
 * (measured in the ResNet-18 profile). */
void relu_forward(float *y, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] < 0.0f ? 0.0f : x[i]; /* lets a NaN through, as PyTorch */
}

void relu_backward(float *dx, const float *dy, const float *y, int64_t n,
                   int acc) {
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

void add_forward(float *y, const float *a, const float *b, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++)
    y[i] = a[i] + b[i];
}

void grad_add(float *y, const float *a, const float *b, int64_t n) {
  add_forward(y, a, b, n);
}

/* ---- pooling ------------------------------------------------------------ */

void maxpool_forward(float *y, int32_t *argmax, const float *x, int N, int H,
                     int W, int C, int K, int stride, int pad, int OH,
                     int OW) {
  int64_t rows = (int64_t)N * OH * OW;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int ow = (int)(r % OW), oh = (int)(r / OW % OH), n = (int)(r / OW / OH);
    int h0 = oh * stride - pad, w0 = ow * stride - pad, kh0, kh1, kw0, kw1;
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
                      int N, int H, int W, int C, int OH, int OW, int acc) {
  int64_t img = (int64_t)H * W * C, out = (int64_t)OH * OW * C;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) { /* images never share dx: race-free */
    float *dxn = dx + n * img;
    if (!acc)
      memset(dxn, 0, (size_t)img * sizeof *dxn);
    for (int64_t i = n * out; i < (n + 1) * out; i++)
      if (argmax[i] >= 0)
        dxn[(int64_t)argmax[i] * C + i % C] += dy[i];
  }
}

void avgpool_forward(float *y, const float *x, int N, int H, int W, int C,
                     int K, int stride, int pad, int OH, int OW) {
  int64_t rows = (int64_t)N * OH * OW;
  float inv = 1.0f / (float)(K * K); /* padding counts in the divisor */
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int ow = (int)(r % OW), oh = (int)(r / OW % OH), n = (int)(r / OW / OH);
    int h0 = oh * stride - pad, w0 = ow * stride - pad, kh0, kh1, kw0, kw1;
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

void avgpool_backward(float *dx, const float *dy, int N, int H, int W, int C,
                      int K, int stride, int pad, int OH, int OW, int acc) {
  int64_t img = (int64_t)H * W * C;
  float inv = 1.0f / (float)(K * K);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) { /* windows overlap within an image only */
    float *dxn = dx + n * img;
    if (!acc)
      memset(dxn, 0, (size_t)img * sizeof *dxn);
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++) {
        int h0 = oh * stride - pad, w0 = ow * stride - pad, kh0, kh1, kw0, kw1;
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

void global_avgpool_forward(float *y, const float *x, int N, int HW, int C) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (int64_t i = 0; i < HW; i++)
        s += x[((int64_t)n * HW + i) * C + c];
      y[(int64_t)n * C + c] = (float)(s / HW);
    }
}

void global_avgpool_backward(float *dx, const float *dy, int N, int HW,
                             int C, int acc) {
  int64_t rows = (int64_t)N * HW;
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
                   int N, int IN, int OUT) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OUT, IN, 1.0f, x,
              IN, w, IN, 0.0f, y, OUT);
  if (b)
    add_bias(y, b, N, OUT);
}

void dense_backward(float *dx, float *dw, float *db, const float *dy,
                    const float *x, const float *w, int N, int IN, int OUT,
                    int acc_dx, int acc_dw) {
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
 * stays finite even where p[label] underflows to 0. */
static double softmax_row(float *p, const float *l, int label, int C) {
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
  return log(sum) - ((double)l[label] - mx);
}

float softmax_xent_forward(float *probs, const float *logits,
                           const int32_t *labels, int N, int C) {
  double total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (int n = 0; n < N; n++)
    total += softmax_row(probs + (int64_t)n * C, logits + (int64_t)n * C,
                         labels[n], C);
  return N > 0 ? (float)(total / N) : 0.0f;
}

void softmax_xent_backward(float *dlogits, const float *probs,
                           const int32_t *labels, int N, int C, int acc) {
  float inv = 1.0f / (float)N;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++) {
      int64_t i = (int64_t)n * C + c;
      float g = (probs[i] - (c == labels[n] ? 1.0f : 0.0f)) * inv;
      dlogits[i] = acc ? dlogits[i] + g : g;
    }
}
