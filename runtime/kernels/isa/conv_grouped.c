/* conv_grouped.c: grouped convolutions (ResNeXt's 3x3 layers, 32 groups
 * of 4 to 64 channels) in netc's tiles, forward and dW; dX of a stride-1
 * one is the forward of dY (conv_direct.c).
 *
 * A register of LANES output channels reads a window of cw consecutive
 * input channels, the same for all of its lanes: its groups' channels
 * (start[r] .. start[r] + cw, conv_direct.c's group_windows), with the
 * weights packed as (registers, K, K, cw, LANES), zero where a lane's
 * group does not own a channel. A register inside one group (OCg a
 * multiple of LANES) multiplies no zero; with OCg = 4 on AVX2 a register
 * spans two groups and half its products are zeros (four on AVX-512).
 * Against one GEMM per group (N = 4 columns, K = 36), that is still the
 * faster road.
 *
 * Deterministic as conv_tiles.c: each output is one task's sum in a
 * fixed order, whatever the thread count. */
#include <omp.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/conv_direct.h"
#include "kernels/isa/simd.h"

/* ---- forward ------------------------------------------------------------ */

/* PIX output pixels x one block, registers lo and hi of which read the
 * windows at s0 and s1 (the same when `shared`: one broadcast for both).
 * w0, w1: the two registers' packed weights. */
INLINE void grouped_tile(float *const *yb, int np, const float *const *xb,
                         const float *w0, const float *w1, int s0, int s1,
                         int cw, DimClass rh, DimClass rw,
                         const ConvShape *s, const float *bias, int noc,
                         int acc, const int shared) {
  B a[PIX];
  for (int i = 0; i < PIX; i++)
    a[i] = bzero();
  const int64_t xrow = (int64_t)s->W * s->C, tapw = (int64_t)cw * LANES;
  for (int jh = 0; jh < rh.ntaps; jh++)
    for (int jw = 0; jw < rw.ntaps; jw++) {
      const int64_t tap = (int64_t)(rh.first + jh) * s->K + rw.first + jw;
      const float *wl = w0 + tap * tapw, *wh = w1 + tap * tapw;
      const float *xl[PIX], *xh[PIX];
      for (int i = 0; i < PIX; i++) {
        xl[i] = xb[i] + jh * xrow + (int64_t)jw * s->C + s0;
        xh[i] = xb[i] + jh * xrow + (int64_t)jw * s->C + s1;
      }
      for (int j = 0; j < cw; j++) {
        V lo = vloada(wl + j * LANES), hi = vloada(wh + j * LANES);
        for (int i = 0; i < PIX; i++) {
          V xv = vset1(xl[i][j]);
          a[i].lo = vfma(xv, lo, a[i].lo);
          a[i].hi = vfma(shared ? xv : vset1(xh[i][j]), hi, a[i].hi);
        }
      }
    }
  B bv = bias ? bload(bias, noc) : bzero();
  for (int i = 0; i < np; i++) {
    B v = badd(a[i], bv);
    bstore(yb[i], acc ? badd(v, bload(yb[i], noc)) : v, noc);
  }
}

void ISA(conv_grouped_forward)(float *y, const float *x, const float *wp,
                               const float *b, const ConvShape *s,
                               const ConvClasses *cc, const int *start,
                               int cw, int acc) {
  const int nob = (s->OC + VL - 1) / VL;
  const int64_t regw = (int64_t)s->K * s->K * cw * LANES; /* per register */
  /* Blocks in chunks whose weights stay in L2 while a pixel tile walks
   * them, as conv_tiles_forward does. */
  const int64_t blk_bytes = 2 * regw * 4;
  const int cpb = (int)(blk_bytes >= FWD_CHUNK_BYTES ? 1
                        : min64(nob, FWD_CHUNK_BYTES / blk_bytes));
#pragma omp parallel
  for (int ch = 0; ch < cc->ncls[0]; ch++)
    for (int cwi = 0; cwi < cc->ncls[1]; cwi++) {
      const DimClass rh = cc->cls[0][ch], rw = cc->cls[1][cwi];
      const int64_t npix = (int64_t)s->N * rh.count * rw.count;
      const int64_t nblk = (npix + PIX - 1) / PIX;
#pragma omp for schedule(static) nowait
      for (int64_t t = 0; t < nob * nblk; t++) {
        int64_t chunk = t / (cpb * nblk), rem = t - chunk * cpb * nblk;
        int width = (int)min64(cpb, nob - chunk * cpb);
        int ob = (int)(chunk * cpb + rem % width);
        int64_t q0 = rem / width * PIX;
        int np = (int)min64(PIX, npix - q0);
        const float *xb[PIX];
        float *yb[PIX];
        fwd_pixels(xb, yb, x, y + ob * VL, s, cc, rh, rw, q0, np);
        int noc = (int)min64(VL, s->OC - (int64_t)ob * VL);
        int s0 = start[2 * ob], s1 = start[2 * ob + 1];
        const float *w0 = wp + 2 * ob * regw, *w1 = w0 + regw;
        const float *bb = b ? b + ob * VL : NULL;
        if (s0 == s1)
          grouped_tile(yb, np, xb, w0, w1, s0, s1, cw, rh, rw, s, bb, noc,
                       acc, 1);
        else
          grouped_tile(yb, np, xb, w0, w1, s0, s1, cw, rh, rw, s, bb, noc,
                       acc, 0);
      }
    }
}

/* ---- gradient of the weights -------------------------------------------- */

/* GJ rows of one register's dW at one tap: GJ accumulators, each a
 * register of output channels. LANES of them (8 of the 16 ymm, 16 of the
 * 32 zmm): windows are multiples of LANES wide in ResNeXt's layers, and
 * 12 rows against a window of 8 wasted a third of the products. */
enum { GJ = LANES };

/* a[j] += dY(pixel)[LANES channels] x X(pixel at the tap)[c0 + j] over
 * the output pixels of images [n0, n1) that tap (kh, kw) touches; nv
 * lanes of dY are real (the rest of a last register are not loaded). */
INLINE void grouped_dw_tap(V *a, const float *dy, const float *x,
                           const ConvShape *s, int kh, int kw, int c0,
                           int oc0, int n0, int n1, int nv, const int *dj,
                           const int full) {
  int oh0, oh1, ow0, ow1;
  tap_span(kh, s->H, s->OH, s->stride, s->pad, &oh0, &oh1);
  tap_span(kw, s->W, s->OW, s->stride, s->pad, &ow0, &ow1);
  /* Along an output row, or across the images at one pixel when rows are
   * shorter than the chunk has images (4x4 and 2x2 maps). */
  const int64_t ximg = (int64_t)s->H * s->W * s->C;
  const int64_t dimg = (int64_t)s->OH * s->OW * s->OC;
  const int across = ow1 - ow0 < n1 - n0;
  const int64_t xstep = across ? ximg : (int64_t)s->stride * s->C;
  const int64_t dstep = across ? dimg : s->OC;
  const int len = across ? n1 - n0 : ow1 - ow0;
  for (int n = n0; n < (across ? n0 + 1 : n1); n++)
    for (int oh = oh0; oh < oh1; oh++)
      for (int ow = ow0; ow < (across ? ow1 : ow0 + 1); ow++) {
        int ih = oh * s->stride - s->pad + kh;
        int iw = ow * s->stride - s->pad + kw;
        const float *xr =
            x + (((int64_t)n * s->H + ih) * s->W + iw) * s->C + c0;
        const float *dr =
            dy + (((int64_t)n * s->OH + oh) * s->OW + ow) * s->OC + oc0;
        for (int l = 0; l < len; l++, xr += xstep, dr += dstep) {
          V dv = full ? vload(dr) : vload_n(dr, nv);
          for (int j = 0; j < GJ; j++)
            a[j] = vfma(vset1(xr[full ? j : dj[j]]), dv, a[j]);
        }
      }
}

void ISA(conv_grouped_bwd_weights)(float *dwt, const float *dy,
                                   const float *x, const ConvShape *s,
                                   const int *start, int cw) {
  const int nreg = (s->OC + LANES - 1) / LANES, njc = (cw + GJ - 1) / GJ;
  const int taps = s->K * s->K;
  /* Images per chunk: about 128 output pixels, whose lines stay in L1
   * while the task walks every tap over them; each chunk's sum is added
   * to the total, as conv_tiles_bwd_weights does. */
  int64_t pix = (int64_t)s->OH * s->OW;
  int per = (int)(128 / (pix > 0 ? pix : 1));
  per = per < 1 ? 1 : per;
  /* A task owns GJ rows of one register's window at every tap. */
#pragma omp parallel for schedule(static)
  for (int t = 0; t < nreg * njc; t++) {
    const int r = t / njc, j0 = t % njc * GJ;
    const int nj = (int)min64(GJ, cw - j0);
    const int nv = (int)min64(LANES, s->OC - (int64_t)r * LANES);
    const int full = nj == GJ && nv == LANES;
    int dj[GJ]; /* past nj: repeat the last row, never stored */
    for (int j = 0; j < GJ; j++)
      dj[j] = j < nj ? j : nj - 1;
    for (int n0 = 0; n0 < s->N; n0 += per) {
      const int n1 = n0 + per < s->N ? n0 + per : s->N;
      for (int tap = 0; tap < taps; tap++) {
        V a[GJ];
        for (int j = 0; j < GJ; j++)
          a[j] = vzero();
        const int kh = tap / s->K, kw = tap % s->K, c0 = start[r] + j0;
        if (full)
          grouped_dw_tap(a, dy, x, s, kh, kw, c0, r * LANES, n0, n1, nv, dj,
                         1);
        else
          grouped_dw_tap(a, dy, x, s, kh, kw, c0, r * LANES, n0, n1, nv, dj,
                         0);
        float *d = dwt + (((int64_t)r * taps + tap) * cw + j0) * LANES;
        for (int j = 0; j < nj; j++)
          vstore(d + j * LANES,
                 n0 > 0 ? vadd(a[j], vload(d + j * LANES)) : a[j]);
      }
    }
  }
}
