/* kernels.c: the runtime's other kernels (the contract is netc_rt.h):
 * elementwise, pooling, dense (one cblas_sgemm each way) and the softmax
 * cross-entropy; the convolution is in conv.c, batchnorm in batchnorm.c.
 * NHWC everywhere, so a channel is the fastest-moving index. No kernel
 * allocates: per-channel temporaries live on the stack (bounded blocks)
 * or in the caller's workspace. */
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels/loops.h"
#include "kernels/netc_rt.h"

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

void sigmoid_forward(float *y, const float *x, const EltShape *s) {
  int64_t n = s->n;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    if (v >= 0.0f) {
      y[i] = 1.0f / (1.0f + expf(-v));
    } else {
      float e = expf(v); /* in (0, 1): no overflow for any v */
      y[i] = e / (1.0f + e);
    }
  }
}

void sigmoid_backward(float *dx, const float *dy, const float *y,
                      const EltShape *s, int acc) {
  int64_t n = s->n;
  if (acc) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
      dx[i] += dy[i] * (y[i] * (1.0f - y[i]));
  } else {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
      dx[i] = dy[i] * (y[i] * (1.0f - y[i]));
  }
}

void scale_forward(float *y, const float *x, const float *sc,
                   const GapShape *s) {
  int64_t HW = s->HW, rows = (int64_t)s->N * HW;
  int C = s->C;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const float *f = sc + r / HW * C;
#pragma omp simd
    for (int c = 0; c < C; c++)
      y[r * C + c] = x[r * C + c] * f[c];
  }
}

void scale_backward(float *dx, const float *dy, const float *sc,
                    const GapShape *s, int acc) {
  int64_t HW = s->HW, rows = (int64_t)s->N * HW;
  int C = s->C;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const float *f = sc + r / HW * C;
    if (acc) {
#pragma omp simd
      for (int c = 0; c < C; c++)
        dx[r * C + c] += dy[r * C + c] * f[c];
    } else {
#pragma omp simd
      for (int c = 0; c < C; c++)
        dx[r * C + c] = dy[r * C + c] * f[c];
    }
  }
}

/* Channels in blocks of SCALE_BLOCK, so each pixel's row is read in
 * contiguous runs and the sums stay on the stack. */
enum { SCALE_BLOCK = 256 };

void scale_backward_s(float *ds, const float *dy, const float *x,
                      const GapShape *s, int acc) {
  int64_t HW = s->HW;
  int C = s->C, nb = (C + SCALE_BLOCK - 1) / SCALE_BLOCK;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < s->N; n++)
    for (int b = 0; b < nb; b++) {
      int c0 = b * SCALE_BLOCK, len = C - c0 < SCALE_BLOCK ? C - c0
                                                           : SCALE_BLOCK;
      double sum[SCALE_BLOCK] = {0};
      for (int64_t p = 0; p < HW; p++) {
        int64_t at = ((int64_t)n * HW + p) * C + c0;
#pragma omp simd
        for (int c = 0; c < len; c++)
          sum[c] += (double)dy[at + c] * x[at + c];
      }
      float *out = ds + (int64_t)n * C + c0;
      for (int c = 0; c < len; c++)
        out[c] = (acc ? out[c] : 0.0f) + (float)sum[c];
    }
}

void dropout_forward(float *y, const float *x, const DropShape *s,
                     uint64_t key, int training) {
  int64_t n = s->n;
  if (!training || s->p == 0.0f) {
    if (y != x)
      memcpy(y, x, (size_t)n * sizeof *y);
    return;
  }
  uint64_t k = rt_splitmix64(key ^ s->salt);
  uint32_t t = rt_dropout_threshold(s->p);
  float scale = 1.0f / (1.0f - s->p);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++)
    y[i] = rt_dropout_kept(k, i, t) ? x[i] * scale : 0.0f;
}

void dropout_backward(float *dx, const float *dy, const DropShape *s,
                      uint64_t key, int acc) {
  int64_t n = s->n;
  uint64_t k = rt_splitmix64(key ^ s->salt);
  uint32_t t = rt_dropout_threshold(s->p);
  float scale = 1.0f / (1.0f - s->p);
  if (s->p == 0.0f) /* every element kept, times 1 */
    t = 0, scale = 1.0f;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float g = rt_dropout_kept(k, i, t) ? dy[i] * scale : 0.0f;
    dx[i] = acc ? dx[i] + g : g;
  }
}

void add_forward(float *y, const float *a, const float *b, const EltShape *s) {
  int64_t n = s->n;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++)
    y[i] = a[i] + b[i];
}

void add_relu_forward(float *y, const float *a, const float *b,
                      const EltShape *s) {
  int64_t n = s->n;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float v = a[i] + b[i];
    y[i] = v < 0.0f ? 0.0f : v; /* relu_forward's rule */
  }
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
        /* First max wins ties; a NaN wins (as in PyTorch). Without
         * branches, so that it runs in vectors: the branch on random data
         * mispredicted, 6.5 ms for ResNet-50's stem pool at batch 64. */
        for (int c = 0; c < C; c++) {
          float v = xp[c];
          int take = (v > yo[c]) | (v != v);
          yo[c] = take ? v : yo[c];
          ao[c] = take ? idx : ao[c];
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
