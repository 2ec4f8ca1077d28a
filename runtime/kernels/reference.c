/* reference.c: naive references of the runtime kernels, for the tests
 * only. Plain loops straight from the definitions, in NHWC, with double
 * accumulators; no BLAS, no threads, no cleverness. */
#include <math.h>
#include <stdlib.h>

#include "kernels/netc_rt.h"

/* Flat NHWC index of (n, h, w, c). */
static int64_t at(int n, int h, int w, int c, int H, int W, int C) {
  return (((int64_t)n * H + h) * W + w) * C + c;
}

/* Conv weight index of (oc, kh, kw, c): layout (OC, K, K, C). */
static int64_t wat(int oc, int kh, int kw, int c, int K, int C) {
  return (((int64_t)oc * K + kh) * K + kw) * C + c;
}

/* Output channel oc of a convolution in G groups reads the Cg = C / G
 * input channels from c0 = its group's first (all of them when G <= 1). */
static void group_of(const ConvShape *s, int oc, int *c0, int *Cg) {
  int G = s->groups > 1 ? s->groups : 1;
  *Cg = s->C / G;
  *c0 = oc / (s->OC / G) * *Cg;
}

static int inside(int h, int w, int H, int W) {
  return h >= 0 && h < H && w >= 0 && w < W;
}

void rt_ref_conv_forward(float *y, const float *x, const float *w,
                         const float *b, const ConvShape *s) {
  int N = s->N, H = s->H, W = s->W, C = s->C, OC = s->OC, K = s->K;
  int stride = s->stride, pad = s->pad, OH = s->OH, OW = s->OW;
  for (int n = 0; n < N; n++)
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++)
        for (int oc = 0; oc < OC; oc++) {
          double sum = b ? b[oc] : 0.0;
          int c0, Cg;
          group_of(s, oc, &c0, &Cg);
          for (int kh = 0; kh < K; kh++)
            for (int kw = 0; kw < K; kw++) {
              int ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
              if (!inside(ih, iw, H, W))
                continue;
              for (int c = 0; c < Cg; c++)
                sum += (double)x[at(n, ih, iw, c0 + c, H, W, C)] *
                       w[wat(oc, kh, kw, c, K, Cg)];
            }
          y[at(n, oh, ow, oc, OH, OW, OC)] = (float)sum;
        }
}

/* Every (output, tap) pair contributes dy * w to dx and dy * x to dw:
 * scatter both into double buffers, then round once. */
void rt_ref_conv_backward(float *dx, float *dw, float *db, const float *dy,
                          const float *x, const float *w,
                          const ConvShape *s) {
  int N = s->N, H = s->H, W = s->W, C = s->C, OC = s->OC, K = s->K;
  int stride = s->stride, pad = s->pad, OH = s->OH, OW = s->OW;
  int G = s->groups > 1 ? s->groups : 1;
  int64_t nx = (int64_t)N * H * W * C, nw = (int64_t)OC * K * K * (C / G);
  double *gx = calloc((size_t)nx + 1, sizeof *gx);
  double *gw = calloc((size_t)nw + 1, sizeof *gw);
  double *gb = calloc((size_t)OC + 1, sizeof *gb);
  for (int n = 0; n < N; n++)
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++)
        for (int oc = 0; oc < OC; oc++) {
          double g = dy[at(n, oh, ow, oc, OH, OW, OC)];
          gb[oc] += g;
          int c0, Cg;
          group_of(s, oc, &c0, &Cg);
          for (int kh = 0; kh < K; kh++)
            for (int kw = 0; kw < K; kw++) {
              int ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
              if (!inside(ih, iw, H, W))
                continue;
              for (int c = 0; c < Cg; c++) {
                int64_t i = at(n, ih, iw, c0 + c, H, W, C);
                int64_t j = wat(oc, kh, kw, c, K, Cg);
                gx[i] += g * w[j];
                gw[j] += g * x[i];
              }
            }
        }
  for (int64_t i = 0; dx && i < nx; i++)
    dx[i] = (float)gx[i];
  for (int64_t j = 0; j < nw; j++)
    dw[j] = (float)gw[j];
  for (int oc = 0; db && oc < OC; oc++)
    db[oc] = (float)gb[oc];
  free(gx);
  free(gw);
  free(gb);
}

/* Training-mode batch norm: batch mean, biased variance. mean and invstd
 * may be NULL. */
void rt_ref_batchnorm_forward(float *y, float *mean, float *invstd,
                              const float *x, const float *gamma,
                              const float *beta, const BnShape *s, float eps) {
  int64_t M = s->M;
  int C = s->C;
  for (int c = 0; c < C; c++) {
    double sum = 0, v = 0;
    for (int64_t m = 0; m < M; m++)
      sum += x[m * C + c];
    double mu = sum / M;
    for (int64_t m = 0; m < M; m++) {
      double d = x[m * C + c] - mu;
      v += d * d;
    }
    double is = 1.0 / sqrt(v / M + eps);
    for (int64_t m = 0; m < M; m++) {
      int64_t i = m * C + c;
      y[i] = (float)((x[i] - mu) * is * gamma[c] + beta[c]);
    }
    if (mean)
      mean[c] = (float)mu;
    if (invstd)
      invstd[c] = (float)is;
  }
}

/* Padding is -infinity: only in-bounds taps compete. */
void rt_ref_maxpool_forward(float *y, const float *x, const PoolShape *s) {
  int N = s->N, H = s->H, W = s->W, C = s->C, K = s->K;
  int stride = s->stride, pad = s->pad, OH = s->OH, OW = s->OW;
  for (int n = 0; n < N; n++)
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++)
        for (int c = 0; c < C; c++) {
          float best = -INFINITY;
          for (int kh = 0; kh < K; kh++)
            for (int kw = 0; kw < K; kw++) {
              int ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
              if (inside(ih, iw, H, W) && x[at(n, ih, iw, c, H, W, C)] > best)
                best = x[at(n, ih, iw, c, H, W, C)];
            }
          y[at(n, oh, ow, c, OH, OW, C)] = best;
        }
}

/* Padding is zero and counts in the divisor: always K*K. */
void rt_ref_avgpool_forward(float *y, const float *x, const PoolShape *s) {
  int N = s->N, H = s->H, W = s->W, C = s->C, K = s->K;
  int stride = s->stride, pad = s->pad, OH = s->OH, OW = s->OW;
  for (int n = 0; n < N; n++)
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++)
        for (int c = 0; c < C; c++) {
          double sum = 0;
          for (int kh = 0; kh < K; kh++)
            for (int kw = 0; kw < K; kw++) {
              int ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
              if (inside(ih, iw, H, W))
                sum += x[at(n, ih, iw, c, H, W, C)];
            }
          y[at(n, oh, ow, c, OH, OW, C)] = (float)(sum / (K * K));
        }
}

void rt_ref_dense_forward(float *y, const float *x, const float *w,
                          const float *b, const DenseShape *s) {
  int N = s->N, IN = s->IN, OUT = s->OUT;
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OUT; o++) {
      double sum = b ? b[o] : 0.0;
      for (int i = 0; i < IN; i++)
        sum += (double)x[(int64_t)n * IN + i] * w[(int64_t)o * IN + i];
      y[(int64_t)n * OUT + o] = (float)sum;
    }
}

/* In double, as written: 1 / (1 + e^-x). */
void rt_ref_sigmoid_forward(float *y, const float *x, const EltShape *s) {
  for (int64_t i = 0; i < s->n; i++)
    y[i] = (float)(1.0 / (1.0 + exp(-(double)x[i])));
}
