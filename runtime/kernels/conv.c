/* conv.c: the convolution's entry points (conv_forward, conv_backward in
 * netc_rt.h), which dispatch each pass to its algorithm: CONV_GEMM here
 * (im2col + one cblas_sgemm; a 1x1 stride-1 layer is a plain GEMM),
 * CONV_DIRECT (conv_direct.c) and Winograd (conv_winograd.c). */
#include <assert.h>
#include <cblas.h>
#include <stdint.h>
#include <string.h>

#include "kernels/conv_direct.h"
#include "kernels/loops.h"
#include "kernels/netc_rt.h"

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
      conv_direct_bwd_weights(dw, work, dy, x, s, acc_dw);
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
