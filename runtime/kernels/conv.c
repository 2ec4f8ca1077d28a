/* conv.c: the convolution's entry points (conv_forward, conv_backward in
 * netc_rt.h), which dispatch each pass to its algorithm: CONV_GEMM here
 * (im2col + one cblas_sgemm; a 1x1 stride-1 layer is a plain GEMM),
 * CONV_DIRECT (conv_direct.c) and Winograd (conv_winograd.c); a grouped
 * convolution, GEMM per group here. */
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

/* cols row r = (n*OH + oh)*OW + ow holds the K*K*cg inputs of channels
 * c0 .. c0+cg-1 under output (n, oh, ow), ordered (kh, kw, c), zero where
 * the window is padding. In NHWC, with every channel (cg = C), the
 * in-bounds taps of one kernel row are one contiguous run; a group's
 * channels are a run per tap. */
static void im2col(float *cols, const float *x, const ConvShape *s, int c0,
                   int cg) {
  int H = s->H, W = s->W, C = s->C, K = s->K, OH = s->OH, OW = s->OW;
  int64_t M = (int64_t)s->N * OH * OW, KC = (int64_t)K * cg;
  size_t f = sizeof *cols;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < M; r++) {
    int ow = (int)(r % OW), oh = (int)(r / OW % OH), n = (int)(r / OW / OH);
    int h0 = oh * s->stride - s->pad, w0 = ow * s->stride - s->pad, kw0, kw1;
    clip_window(w0, K, W, &kw0, &kw1);
    float *row = cols + r * KC * K;
    for (int kh = 0; kh < K; kh++, row += KC) {
      int ih = h0 + kh;
      if (ih < 0 || ih >= H) {
        memset(row, 0, (size_t)KC * f);
        continue;
      }
      const float *src = x + (((int64_t)n * H + ih) * W + w0 + kw0) * C + c0;
      memset(row, 0, (size_t)kw0 * cg * f);
      if (cg == C)
        memcpy(row + (int64_t)kw0 * C, src, (size_t)(kw1 - kw0) * C * f);
      else
        for (int kw = kw0; kw < kw1; kw++)
          memcpy(row + (int64_t)kw * cg, src + (int64_t)(kw - kw0) * C,
                 (size_t)cg * f);
      memset(row + (int64_t)kw1 * cg, 0, (size_t)(K - kw1) * cg * f);
    }
  }
}

/* The adjoint of im2col: scatter-adds every cols row back into channels
 * c0 .. c0+cg-1 of dx (after zeroing them unless acc). Windows of one
 * image overlap, different images never do, so the parallel loop is over
 * images. */
static void col2im(float *dx, const float *cols, const ConvShape *s,
                   int acc, int c0, int cg) {
  int H = s->H, W = s->W, C = s->C, K = s->K, OH = s->OH, OW = s->OW;
  int64_t KC = (int64_t)K * cg, img = (int64_t)H * W * C;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < s->N; n++) {
    float *dxn = dx + n * img;
    if (!acc && cg == C)
      memset(dxn, 0, (size_t)img * sizeof *dxn);
    else if (!acc)
      for (int64_t p = 0; p < (int64_t)H * W; p++)
        memset(dxn + p * C + c0, 0, (size_t)cg * sizeof *dxn);
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
          float *dst = dxn + ((int64_t)ih * W + w0 + kw0) * C + c0;
          const float *src = row + kh * KC + (int64_t)kw0 * cg;
          if (cg == C) {
            for (int64_t i = 0; i < (int64_t)(kw1 - kw0) * C; i++)
              dst[i] += src[i];
            continue;
          }
          for (int kw = kw0; kw < kw1; kw++, dst += C, src += cg)
            for (int i = 0; i < cg; i++)
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
      im2col(cols, a, &c, 0, s->C);
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
      im2col(cols, a, &c, 0, s->C);
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
    col2im(dxc, cols, &c, acc, 0, s->C);
  }
}

/* ---- grouped convolutions (ResNeXt): GEMM per group ------------------ */

/* Group g reads input channels g*Cg .. and writes output channels g*OCg ..
 * with the weights' rows g*OCg .. (OHWI: each row K*K*Cg floats, so a
 * group's weights are one block). Per chunk of images and per group: its
 * im2col (a strided view of x when 1x1/s1/p0), one sgemm with the output's
 * row stride OC. */
typedef struct {
  int G, Cg, OCg, KKCg, pointwise, nb;
  int64_t xi, yi;
} Groups;

static Groups groups_of(const ConvShape *s) {
  Groups q = {.G = s->groups, .Cg = s->C / s->groups,
              .OCg = s->OC / s->groups, .pointwise = conv_is_pointwise(s)};
  q.KKCg = s->K * s->K * q.Cg;
  q.nb = q.pointwise ? s->N : conv_gemm_chunk(s);
  q.xi = (int64_t)s->H * s->W * s->C;
  q.yi = (int64_t)s->OH * s->OW * s->OC;
  return q;
}

/* Group g's input rows for chunk c: x itself (1x1/s1/p0), else cols. */
static const float *group_rows(float *cols, const float *x, const ConvShape *c,
                               const Groups *q, int g, int *ld) {
  if (q->pointwise) {
    *ld = c->C;
    return x + (int64_t)g * q->Cg;
  }
  assert(cols && "cols may be NULL only for a 1x1/s1/p0 convolution");
  im2col(cols, x, c, g * q->Cg, q->Cg);
  *ld = q->KKCg;
  return cols;
}

static void grouped_forward(float *y, float *cols, const float *x,
                            const float *w, const float *b,
                            const ConvShape *s) {
  Groups q = groups_of(s);
  for (int n0 = 0; n0 < s->N; n0 += q.nb) {
    ConvShape c = *s;
    c.N = s->N - n0 < q.nb ? s->N - n0 : q.nb;
    int M = c.N * s->OH * s->OW, ld;
    for (int g = 0; g < q.G; g++) {
      const float *a = group_rows(cols, x + n0 * q.xi, &c, &q, g, &ld);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, q.OCg, q.KKCg,
                  1.0f, a, ld, w + (int64_t)g * q.OCg * q.KKCg, q.KKCg, 0.0f,
                  y + n0 * q.yi + (int64_t)g * q.OCg, s->OC);
    }
  }
  if (b)
    add_bias(y, b, (int64_t)s->N * s->OH * s->OW, s->OC);
}

/* dW_g (OCg, KKCg) (+)= dY_g^T rows_g, over the chunks. */
static void grouped_bwd_weights(float *dw, float *cols, const float *dy,
                                const float *x, const ConvShape *s, int acc) {
  Groups q = groups_of(s);
  for (int n0 = 0; n0 < s->N; n0 += q.nb) {
    ConvShape c = *s;
    c.N = s->N - n0 < q.nb ? s->N - n0 : q.nb;
    int M = c.N * s->OH * s->OW, ld;
    float beta = n0 > 0 || acc ? 1.0f : 0.0f;
    for (int g = 0; g < q.G; g++) {
      const float *a = group_rows(cols, x + n0 * q.xi, &c, &q, g, &ld);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, q.OCg, q.KKCg, M,
                  1.0f, dy + n0 * q.yi + (int64_t)g * q.OCg, s->OC, a, ld,
                  beta, dw + (int64_t)g * q.OCg * q.KKCg, q.KKCg);
    }
  }
}

/* dcols_g = dY_g W_g, then col2im into group g's channels of dX
 * (1x1/s1/p0: dX_g = dY_g W_g, written in place with dX's row stride). */
static void grouped_bwd_data(float *dx, float *cols, const float *dy,
                             const float *w, const ConvShape *s, int acc) {
  Groups q = groups_of(s);
  for (int n0 = 0; n0 < s->N; n0 += q.nb) {
    ConvShape c = *s;
    c.N = s->N - n0 < q.nb ? s->N - n0 : q.nb;
    int M = c.N * s->OH * s->OW;
    float *dxc = dx + n0 * q.xi;
    for (int g = 0; g < q.G; g++) {
      const float *d = dy + n0 * q.yi + (int64_t)g * q.OCg;
      const float *wg = w + (int64_t)g * q.OCg * q.KKCg;
      if (q.pointwise) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, q.Cg, q.OCg,
                    1.0f, d, s->OC, wg, q.Cg, acc ? 1.0f : 0.0f,
                    dxc + (int64_t)g * q.Cg, s->C);
        continue;
      }
      assert(cols && "cols may be NULL only for a 1x1/s1/p0 convolution");
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, q.KKCg, q.OCg,
                  1.0f, d, s->OC, wg, q.KKCg, 0.0f, cols, q.KKCg);
      col2im(dxc, cols, &c, acc, g * q.Cg, q.Cg);
    }
  }
}

/* A grouped layer runs CONV_DIRECT (conv_direct.c knows groups) or GEMM
 * per group; conv_algo_of never gives it Winograd. */
void conv_forward(float *y, float *work, const float *x, const float *w,
                  const float *b, const ConvShape *s) {
  switch (conv_algo_of(s, CONV_PASS_FWD)) {
  case CONV_DIRECT: conv_direct_forward(y, work, x, w, b, s); break;
  case CONV_WINOGRAD:
  case CONV_WINOGRAD4: conv_winograd_forward(y, work, x, w, b, s); break;
  default:
    if (s->groups > 1)
      grouped_forward(y, work, x, w, b, s);
    else
      gemm_forward(y, work, x, w, b, s);
  }
}

void conv_backward(float *dx, float *dw, float *db, float *work,
                   const float *dy, const float *x, const float *w,
                   const ConvShape *s, int acc_dx, int acc_dw) {
  /* dW first: a GEMM dW's columns and a dX's workspace share `work`. */
  switch (conv_algo_of(s, CONV_PASS_DW)) {
  case CONV_DIRECT:
    if (s->groups <= 1 && conv_direct_dw_by_rows(s))
      gemm_bwd_weights(dw, work, dy, x, s, acc_dw, 1);
    else
      conv_direct_bwd_weights(dw, work, dy, x, s, acc_dw);
    break;
  case CONV_WINOGRAD:
  case CONV_WINOGRAD4:
    conv_winograd_bwd_weights(dw, work, dy, x, s, acc_dw);
    break;
  default:
    if (s->groups > 1)
      grouped_bwd_weights(dw, work, dy, x, s, acc_dw);
    else
      gemm_bwd_weights(dw, work, dy, x, s, acc_dw, 0);
  }
  if (dx) {
    switch (conv_algo_of(s, CONV_PASS_DX)) {
    case CONV_DIRECT: conv_direct_bwd_data(dx, work, dy, w, s, acc_dx); break;
    case CONV_WINOGRAD:
    case CONV_WINOGRAD4:
      conv_winograd_bwd_data(dx, work, dy, w, s, acc_dx);
      break;
    default:
      if (s->groups > 1)
        grouped_bwd_data(dx, work, dy, w, s, acc_dx);
      else
        gemm_bwd_data(dx, work, dy, w, s, acc_dx);
    }
  }
  if (db)
    column_sums(db, dy, (int64_t)s->N * s->OH * s->OW, s->OC, acc_dw);
}
