/* conv_direct.c: netc's own convolution, CONV_DIRECT (the idea is in
 * conv_direct.h): the class tables, the weight packing, and the choice of
 * the instruction set whose tiles (isa/conv_tiles.c) do the arithmetic. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/conv_direct.h"
#include "kernels/netc_rt.h"

int conv_tiles_vl(void) {
  return rt_isa() == RT_ISA_AVX512 ? AVX512_VL : AVX2_VL;
}

void conv_tiles_gemm(float *y, int64_t ldy, const float *x, int64_t ldx,
                     const float *wp, int M, int N, int K) {
  if (rt_isa() == RT_ISA_AVX512)
    conv_tiles_gemm_avx512(y, ldy, x, ldx, wp, M, N, K);
  else
    conv_tiles_gemm_avx2(y, ldy, x, ldx, wp, M, N, K);
}

void conv_tiles_gemm_tn(float *d, int64_t ldd, const float *a, int64_t lda,
                        const float *b, int64_t ldb, int T, int rows,
                        int cols, int acc) {
  if (rt_isa() == RT_ISA_AVX512)
    conv_tiles_gemm_tn_avx512(d, ldd, a, lda, b, ldb, T, rows, cols, acc);
  else
    conv_tiles_gemm_tn_avx2(d, ldd, a, lda, b, ldb, T, rows, cols, acc);
}

/* ---- class tables ------------------------------------------------------- */

/* The taps of one axis that position o sees. Forward (bwd = 0): output
 * position o reads input o*stride - pad + k for k in [first, first +
 * ntaps). dX (bwd = 1): input position o gets the taps k = first + j *
 * stride whose output position (o + pad - k) / stride exists. */
static DimClass axis_taps(int o, int in, int out, int K, int stride,
                          int pad, int bwd) {
  DimClass c = {0, 0, 0, 0};
  if (!bwd) {
    int start = o * stride - pad, lo = start < 0 ? -start : 0;
    int hi = start + K > in ? in - start : K;
    if (hi > lo)
      c.first = lo, c.ntaps = hi - lo;
    return c;
  }
  for (int k = 0; k < K; k++) {
    int d = o + pad - k;
    if (d < 0 || d % stride || d / stride >= out)
      continue;
    if (c.ntaps++ == 0)
      c.first = k;
  }
  return c;
}

/* Groups the positions 0..P-1 of one axis by their taps into pos[] and
 * cls[] (at most P classes); returns the number of classes. */
static int axis_classes(int *pos, DimClass *cls, int P, int in, int out,
                        int K, int stride, int pad, int bwd) {
  int n = 0;
  for (int o = 0; o < P; o++) {
    DimClass t = axis_taps(o, in, out, K, stride, pad, bwd);
    int k = 0;
    while (k < n && (cls[k].first != t.first || cls[k].ntaps != t.ntaps))
      k++;
    if (k == n)
      cls[n++] = t;
    cls[k].count++;
  }
  for (int k = 0, start = 0; k < n; k++) {
    cls[k].start = start;
    start += cls[k].count;
    cls[k].count = 0; /* a cursor while filling pos */
  }
  for (int o = 0; o < P; o++) {
    DimClass t = axis_taps(o, in, out, K, stride, pad, bwd);
    int k = 0;
    while (cls[k].first != t.first || cls[k].ntaps != t.ntaps)
      k++;
    pos[cls[k].start + cls[k].count++] = o;
  }
  return n;
}

/* The tables in `work`: pos of rows and columns, then their classes
 * (5 ints per position, conv_work_floats). */
static void build_classes(ConvClasses *cc, void *work, const ConvShape *s,
                          int bwd) {
  int ph = bwd ? s->H : s->OH, pw = bwd ? s->W : s->OW;
  int *pos = work;
  DimClass *cls = (DimClass *)(pos + ph + pw);
  cc->pos[0] = pos, cc->pos[1] = pos + ph;
  cc->cls[0] = cls, cc->cls[1] = cls + ph;
  cc->ncls[0] = axis_classes(pos, cls, ph, s->H, s->OH, s->K, s->stride,
                             s->pad, bwd);
  cc->ncls[1] = axis_classes(pos + ph, cls + ph, pw, s->W, s->OW, s->K,
                             s->stride, s->pad, bwd);
}

/* ---- weights ------------------------------------------------------------ */

/* (OC, K, K, C) -> (OC/vl, K, K, C, vl): vl output channels side by side,
 * so that the forward tile loads them as one vector per (tap, channel). */
static void pack_forward(float *wp, const float *w, const ConvShape *s,
                         int vl) {
  int nocb = (s->OC + vl - 1) / vl;
  int64_t kkc = (int64_t)s->K * s->K * s->C;
#pragma omp parallel for schedule(static)
  for (int ocb = 0; ocb < nocb; ocb++) {
    float *dst = wp + ocb * kkc * vl;
    for (int64_t e = 0; e < kkc; e++)
      for (int j = 0; j < vl; j++) {
        int oc = ocb * vl + j;
        dst[e * vl + j] = oc < s->OC ? w[oc * kkc + e] : 0.0f;
      }
  }
}

/* (OC, K, K, C) -> (C/vl, K, K, OC, vl): for dX, vl input channels side
 * by side, and the output channels a tile sums over in a row. (Read in
 * place, w[oc] is K*K*C floats from w[oc+1]: a new page every step, and
 * dX ran at half sgemm's speed.) With `flip`, the taps reversed too: the
 * weights of the transposed convolution that gives dX of a stride-1 one,
 * which the forward tiles then run. */
static void pack_bwd_data(float *wq, const float *w, const ConvShape *s,
                          int vl, int flip) {
  int ncb = (s->C + vl - 1) / vl, taps = s->K * s->K;
  int64_t kkc = (int64_t)taps * s->C;
#pragma omp parallel for schedule(static)
  for (int cb = 0; cb < ncb; cb++)
    for (int t = 0; t < taps; t++)
      for (int oc = 0; oc < s->OC; oc++) {
        float *dst = wq + (((int64_t)cb * taps + t) * s->OC + oc) * vl;
        const float *src =
            w + oc * kkc + (int64_t)(flip ? taps - 1 - t : t) * s->C;
        for (int j = 0; j < vl; j++) {
          int c = cb * vl + j;
          dst[j] = c < s->C ? src[c] : 0.0f;
        }
      }
}

/* ---- grouped layers (isa/conv_grouped.c) -------------------------------- */

/* The windows of s's registers of `lanes` output channels: each starts at
 * its first group's channels, moved left at the right edge so that all
 * are cw wide; a last block's missing register repeats the one before.
 * Returns cw. */
static int group_windows(int *start, const ConvShape *s, int lanes) {
  int cw = conv_group_cw(s, lanes), Cg = s->C / s->groups;
  int OCg = s->OC / s->groups, nreg = (s->OC + lanes - 1) / lanes;
  for (int r = 0; r < 2 * ((nreg + 1) / 2); r++) {
    int st = (r < nreg ? r : nreg - 1) * lanes / OCg * Cg;
    start[r] = st + cw > s->C ? s->C - cw : st;
  }
  return cw;
}

/* s's weights (OC, K, K, C/G) packed for conv_grouped_forward over t:
 * t = s, or (flip) the transposed convolution whose forward is dX of a
 * stride-1 s (conv_wino_transposed, with s's groups), taps reversed. A
 * lane (t's output channel o) takes t's input channel i where o's group
 * owns it, else zero. */
static void pack_grouped(float *wp, const int *start, int cw, const float *w,
                         const ConvShape *s, const ConvShape *t, int lanes,
                         int flip) {
  const int taps = s->K * s->K, Cg = s->C / s->groups;
  const int og = t->OC / t->groups, ig = t->C / t->groups;
  const int nreg = 2 * ((t->OC + 2 * lanes - 1) / (2 * lanes));
#pragma omp parallel for schedule(static)
  for (int r = 0; r < nreg; r++)
    for (int tap = 0; tap < taps; tap++)
      for (int j = 0; j < cw; j++)
        for (int l = 0; l < lanes; l++) {
          int o = r * lanes + l, i = start[r] + j;
          float v = 0.0f;
          if (o < t->OC && i / ig == o / og) {
            int64_t oc = flip ? i : o, c = (flip ? o : i) % Cg;
            v = w[(oc * taps + (flip ? taps - 1 - tap : tap)) * Cg + c];
          }
          wp[(((int64_t)r * taps + tap) * cw + j) * lanes + l] = v;
        }
}

/* y = or += (acc) grouped conv t of x (+ b), w packed from s's weights;
 * work: t's class tables, then conv_group_floats(t). */
static void grouped_forward_tiles(float *y, float *work, const float *x,
                                  const float *w, const float *b,
                                  const ConvShape *s, const ConvShape *t,
                                  int flip, int acc) {
  ConvClasses cc;
  build_classes(&cc, work, t, 0);
  int *start = (int *)(work + RT_LINE_FLOATS(5 * (t->OH + t->OW)));
  float *wp = (float *)start + RT_LINE_FLOATS(t->OC + 2);
  const int lanes = conv_tiles_vl() / 2;
  const int cw = group_windows(start, t, lanes);
  pack_grouped(wp, start, cw, w, s, t, lanes, flip);
  if (rt_isa() == RT_ISA_AVX512)
    conv_grouped_forward_avx512(y, x, wp, b, t, &cc, start, cw, acc);
  else
    conv_grouped_forward_avx2(y, x, wp, b, t, &cc, start, cw, acc);
}

/* dW (+)= from the sums in dwt (registers, K, K, cw, lanes): output
 * channel oc's channel c of its group is at its window's g * Cg + c. */
static void grouped_bwd_weights(float *dw, float *work, const float *dy,
                                const float *x, const ConvShape *s,
                                int acc) {
  int *start = (int *)work;
  float *dwt = work + RT_LINE_FLOATS(s->OC + 2);
  const int lanes = conv_tiles_vl() / 2, taps = s->K * s->K;
  const int cw = group_windows(start, s, lanes), Cg = s->C / s->groups;
  const int OCg = s->OC / s->groups;
  if (rt_isa() == RT_ISA_AVX512)
    conv_grouped_bwd_weights_avx512(dwt, dy, x, s, start, cw);
  else
    conv_grouped_bwd_weights_avx2(dwt, dy, x, s, start, cw);
#pragma omp parallel for schedule(static)
  for (int oc = 0; oc < s->OC; oc++) {
    const int r = oc / lanes, j0 = oc / OCg * Cg - start[r];
    for (int tap = 0; tap < taps; tap++)
      for (int c = 0; c < Cg; c++) {
        float v = dwt[(((int64_t)r * taps + tap) * cw + j0 + c) * lanes +
                      oc % lanes];
        float *d = dw + ((int64_t)oc * taps + tap) * Cg + c;
        *d = acc ? *d + v : v;
      }
  }
}

/* ---- the passes --------------------------------------------------------- */

/* y = or += conv(x) + b by the tiles, wp packed for them (pack_forward). */
static void forward_tiles(float *y, const float *x, const float *wp,
                          const float *b, const ConvShape *s,
                          const ConvClasses *cc, int acc) {
  int avx512 = rt_isa() == RT_ISA_AVX512;
  if (conv_is_pw(s) && avx512)
    conv_tiles_pointwise_avx512(y, x, wp, b, s, acc);
  else if (conv_is_pw(s))
    conv_tiles_pointwise_avx2(y, x, wp, b, s, acc);
  else if (avx512)
    conv_tiles_forward_avx512(y, x, wp, b, s, cc, acc);
  else
    conv_tiles_forward_avx2(y, x, wp, b, s, cc, acc);
}

void conv_direct_forward(float *y, float *work, const float *x,
                         const float *w, const float *b, const ConvShape *s) {
  assert(work && (uintptr_t)work % 64 == 0 && "conv work: 64-byte aligned");
  if (s->groups > 1) {
    grouped_forward_tiles(y, work, x, w, b, s, s, 0, 0);
    return;
  }
  ConvClasses cc;
  if (!conv_is_pw(s))
    build_classes(&cc, work, s, 0);
  float *wp = work + RT_LINE_FLOATS(5 * (s->OH + s->OW));
  pack_forward(wp, w, s, conv_tiles_vl());
  forward_tiles(y, x, wp, b, s, &cc, 0);
}

void conv_tiles_dw_rows(float *dw, const float *dy, const float *rows,
                        int64_t M, int OC, int KKC, int acc) {
  /* A task owns a block of dW (output channels x columns); each element
   * is summed in pixel order, whatever the thread count. */
  enum { ROWS = 24, COLS = 128, RUN = 1 << 30 };
  int nr = (OC + ROWS - 1) / ROWS, nc = (KKC + COLS - 1) / COLS;
#pragma omp parallel for schedule(static)
  for (int task = 0; task < nr * nc; task++) {
    int r0 = task / nc * ROWS, c0 = task % nc * COLS;
    int nrow = OC - r0 < ROWS ? OC - r0 : ROWS;
    int ncol = KKC - c0 < COLS ? KKC - c0 : COLS;
    for (int64_t t0 = 0; t0 < M; t0 += RUN) { /* M >= 1 */
      int T = (int)(M - t0 < RUN ? M - t0 : RUN);
      conv_tiles_gemm_tn(dw + (int64_t)r0 * KKC + c0, KKC,
                         dy + t0 * OC + r0, OC, rows + t0 * KKC + c0, KKC, T,
                         nrow, ncol, acc || t0 > 0);
    }
  }
}

void conv_direct_bwd_weights(float *dw, float *work, const float *dy,
                             const float *x, const ConvShape *s, int acc) {
  if (s->groups > 1) {
    assert(work && (uintptr_t)work % 64 == 0 && "conv work: 64-byte aligned");
    grouped_bwd_weights(dw, work, dy, x, s, acc);
  } else if (conv_is_pw(s)) {
    assert(work && (uintptr_t)work % 64 == 0 && "conv work: 64-byte aligned");
    if (rt_isa() == RT_ISA_AVX512)
      conv_tiles_pointwise_dw_avx512(dw, work, dy, x, s, acc);
    else
      conv_tiles_pointwise_dw_avx2(dw, work, dy, x, s, acc);
  } else if (conv_direct_dw_small_c(s)) {
    assert(work && (uintptr_t)work % 64 == 0 && "conv work: 64-byte aligned");
    if (rt_isa() == RT_ISA_AVX512)
      conv_tiles_bwd_weights_small_c_avx512(dw, work, dy, x, s, acc);
    else
      conv_tiles_bwd_weights_small_c_avx2(dw, work, dy, x, s, acc);
  } else if (rt_isa() == RT_ISA_AVX512)
    conv_tiles_bwd_weights_avx512(dw, dy, x, s, acc);
  else
    conv_tiles_bwd_weights_avx2(dw, dy, x, s, acc);
}

void conv_direct_bwd_data(float *dx, float *work, const float *dy,
                          const float *w, const ConvShape *s, int acc) {
  int avx512 = rt_isa() == RT_ISA_AVX512;
  assert(work && (uintptr_t)work % 64 == 0 && "conv work: 64-byte aligned");
  ConvClasses cc;
  float *wq = work + RT_LINE_FLOATS(5 * (s->H + s->W));
  if (s->stride == 1 && s->pad <= s->K - 1) {
    /* dX of a stride-1 convolution is a stride-1 convolution of dY with
     * the kernel flipped and transposed, padded K-1-pad: the forward tiles
     * then run it, kernel rows in one run each. (The same tables and
     * packing fit in the workspace: H+W positions, C x OC weights.) */
    ConvShape t = conv_wino_transposed(s);
    if (s->groups > 1) { /* conv_algo_of sends no other grouped dX here */
      t.groups = s->groups;
      grouped_forward_tiles(dx, work, dy, w, NULL, s, &t, 1, acc);
      return;
    }
    if (!conv_is_pw(&t))
      build_classes(&cc, work, &t, 0);
    pack_bwd_data(wq, w, s, conv_tiles_vl(), 1);
    forward_tiles(dx, dy, wq, NULL, &t, &cc, acc);
    return;
  }
  build_classes(&cc, work, s, 1);
  pack_bwd_data(wq, w, s, conv_tiles_vl(), 0);
  if (avx512)
    conv_tiles_bwd_data_avx512(dx, dy, wq, s, &cc, acc);
  else
    conv_tiles_bwd_data_avx2(dx, dy, wq, s, &cc, acc);
}
