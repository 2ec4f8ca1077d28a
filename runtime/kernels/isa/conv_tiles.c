/* conv_tiles.c: the arithmetic of netc's direct convolution (see
 * conv_direct.h for the idea), in register tiles.
 *
 * This file is compiled twice (Makefile), once per ISA, over simd.h's
 * vectors; a channel block is VL = 2 x LANES floats, two registers. The
 * tiles are sized to the register file:
 * PIX pixels x one block of accumulators is 12 of the 16 ymm registers,
 * or 24 of the 32 zmm. (GCC's generic 64-byte vectors were tried first:
 * on AVX2 it kept them in memory, 4x slower than sgemm.)
 *
 * Every pass is deterministic: each output element is one thread's sum in
 * a fixed order, whatever the thread count. */
#include <omp.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/conv_direct.h"
#include "kernels/isa/simd.h"

/* ---- forward ------------------------------------------------------------ */

/* a[i] += sum over l < L of xr[i][l] * w[l]: PIX rows against a packed
 * block of VL columns (L x VL floats, 64-byte aligned). The inner loop of
 * the forward tiles and of the small GEMMs below. */
INLINE void run_dot(B *a, const float *const *xr, const float *w,
                    int64_t L) {
  for (int64_t l = 0; l < L; l++) {
    B wv = {vloada(w + l * VL), vloada(w + l * VL + LANES)};
    for (int i = 0; i < PIX; i++)
      a[i] = bfma(a[i], vset1(xr[i][l]), wv);
  }
}

/* PIX output pixels x VL output channels. xb[i]: pixel i's input at its
 * first tap; the taps of one kernel row are contiguous in NHWC and in
 * the packing, so a row is one run of ntaps * C multiply-adds. */
INLINE void fwd_tile(float *const *yb, int np, const float *const *xb,
                     const float *wblk, DimClass rh, DimClass rw,
                     const ConvShape *s, const float *bias, int noc,
                     int acc) {
  B a[PIX];
  for (int i = 0; i < PIX; i++)
    a[i] = bzero();
  const int64_t L = (int64_t)rw.ntaps * s->C, xrow = (int64_t)s->W * s->C;
  for (int j = 0; j < rh.ntaps; j++) {
    const float *wr =
        wblk + ((int64_t)(rh.first + j) * s->K + rw.first) * s->C * VL;
    const float *xr[PIX];
    for (int i = 0; i < PIX; i++)
      xr[i] = xb[i] + j * xrow;
    run_dot(a, xr, wr, L);
  }
  B bv = bias ? bload(bias, noc) : bzero();
  for (int i = 0; i < np; i++) {
    B v = badd(a[i], bv);
    bstore(yb[i], acc ? badd(v, bload(yb[i], noc)) : v, noc);
  }
}

void ISA(conv_tiles_forward)(float *y, const float *x, const float *wp,
                             const float *b, const ConvShape *s,
                             const ConvClasses *cc, int acc) {
  const int nocb = (s->OC + VL - 1) / VL;
  /* The output-channel blocks go in chunks whose packed weights fit in
   * FWD_CHUNK_BYTES (L2, with room for the pixels); within a chunk the
   * tasks walk the pixels, each pixel tile through all of the chunk's
   * blocks while its input rows are in L1. So the input is read once per
   * chunk, not once per block: a pointwise layer with small weights (64
   * to 256 channels) read its input 8 times, and ran 25-40% slower. */
  const int64_t blk_bytes = (int64_t)s->K * s->K * s->C * VL * 4;
  const int cpb = (int)(blk_bytes >= FWD_CHUNK_BYTES ? 1
                        : min64(nocb, FWD_CHUNK_BYTES / blk_bytes));
#pragma omp parallel
  for (int ch = 0; ch < cc->ncls[0]; ch++)
    for (int cw = 0; cw < cc->ncls[1]; cw++) {
      const DimClass rh = cc->cls[0][ch], rw = cc->cls[1][cw];
      const int64_t npix = (int64_t)s->N * rh.count * rw.count;
      const int64_t nblk = (npix + PIX - 1) / PIX;
#pragma omp for schedule(static) nowait
      for (int64_t t = 0; t < nocb * nblk; t++) {
        int64_t chunk = t / (cpb * nblk), rem = t - chunk * cpb * nblk;
        int width = (int)min64(cpb, nocb - chunk * cpb); /* its blocks */
        int ocb = (int)(chunk * cpb + rem % width);
        int64_t q0 = rem / width * PIX;
        int np = (int)min64(PIX, npix - q0);
        const float *xb[PIX];
        float *yb[PIX];
        fwd_pixels(xb, yb, x, y + ocb * VL, s, cc, rh, rw, q0, np);
        int noc = (int)min64(VL, s->OC - (int64_t)ocb * VL);
        const float *wblk = wp + (int64_t)ocb * s->K * s->K * s->C * VL;
        const float *bb = b ? b + ocb * VL : NULL;
        fwd_tile(yb, np, xb, wblk, rh, rw, s, bb, noc, acc);
      }
    }
}

/* ---- pointwise: 1x1, no padding, any stride ------------------------------ */

/* Output pixel m of a pointwise layer reads input pixel (n, oh * stride,
 * ow * stride): its row of C floats. A cursor over m, so that a tile's
 * rows cost no division. */
typedef struct {
  const float *p; /* the input row of the current pixel */
  int ow, oh;
} PwRow;

INLINE PwRow pw_row_at(const float *x, const ConvShape *s, int64_t m) {
  int64_t plane = (int64_t)s->OH * s->OW, r = m % plane;
  int oh = (int)(r / s->OW), ow = (int)(r % s->OW);
  return (PwRow){x + (((m / plane) * s->H + (int64_t)oh * s->stride) * s->W +
                      (int64_t)ow * s->stride) * s->C, ow, oh};
}

INLINE PwRow pw_row_next(PwRow r, const ConvShape *s) {
  if (s->stride == 1) { /* then OH = H and OW = W: rows are consecutive */
    r.p += s->C;
    return r;
  }
  const int64_t step = (int64_t)s->stride * s->C;
  if (++r.ow < s->OW) {
    r.p += step;
    return r;
  }
  r.ow = 0; /* the next output row: skip stride - 1 input rows */
  r.p += step * (1 - s->OW) + (int64_t)s->W * step;
  if (++r.oh == s->OH) { /* the next image */
    r.oh = 0;
    r.p += ((int64_t)s->H - (int64_t)s->OH * s->stride) * s->W * s->C;
  }
  return r;
}

/* y (M x OC) = or += (acc) X's rows (M x C) times the packed weights
 * (OC/VL, C, VL), + b: a GEMM over the M = N x OH x OW output pixels.
 * Each thread takes one contiguous range of pixel tiles, so the threads
 * write disjoint rows, and walks it once per chunk of output-channel
 * blocks whose weights fit in FWD_CHUNK_BYTES (L2); a tile's PIX input
 * rows stay in L1 through the chunk's blocks. The class tables of the
 * general forward cost a division per pixel and per block, which a 1x1
 * layer with 64 channels pays against 64 multiply-adds (ResNet-50's
 * first layers ran at 42-46% of the FMA peak). */
void ISA(conv_tiles_pointwise)(float *y, const float *x, const float *wp,
                               const float *b, const ConvShape *s, int acc) {
  const int64_t M = (int64_t)s->N * s->OH * s->OW;
  const int64_t ntile = (M + PIX - 1) / PIX, C = s->C, OC = s->OC;
  const int nocb = (s->OC + VL - 1) / VL;
  const int64_t blk_bytes = C * VL * 4;
  const int cpb = (int)(blk_bytes >= FWD_CHUNK_BYTES ? 1
                        : min64(nocb, FWD_CHUNK_BYTES / blk_bytes));
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), me = omp_get_thread_num();
    const int64_t t0 = ntile * me / nt, t1 = ntile * (me + 1) / nt;
    for (int c0 = 0; t0 < t1 && c0 < nocb; c0 += cpb) {
      const int c1 = (int)min64(nocb, c0 + cpb);
      PwRow r = pw_row_at(x, s, t0 * PIX);
      for (int64_t t = t0; t < t1; t++) {
        const int np = (int)min64(PIX, M - t * PIX);
        const float *xr[PIX];
        for (int i = 0; i < PIX; i++) { /* past np: repeat the last */
          xr[i] = r.p;
          if (i + 1 < np)
            r = pw_row_next(r, s);
        }
        if (t + 1 < t1)
          r = pw_row_next(r, s);
        float *yt = y + t * PIX * OC;
        for (int ocb = c0; ocb < c1; ocb++) {
          B a[PIX];
          for (int i = 0; i < PIX; i++)
            a[i] = bzero();
          run_dot(a, xr, wp + (int64_t)ocb * C * VL, C);
          const int noc = (int)min64(VL, OC - (int64_t)ocb * VL);
          const B bv = b ? bload(b + ocb * VL, noc) : bzero();
          for (int i = 0; i < np; i++) {
            float *yp = yt + i * OC + ocb * VL;
            B v = badd(a[i], bv);
            bstore(yp, acc ? badd(v, bload(yp, noc)) : v, noc);
          }
        }
      }
    }
  }
}

/* The lines of [p, p + bytes) into L2. */
INLINE void prefetch_span(const void *p, int64_t bytes) {
  for (int64_t off = 0; off < bytes; off += 64)
    _mm_prefetch((const char *)p + off, _MM_HINT_T1);
}

/* dW (OC x C) = or += (acc) dY^T X over the M output pixels of a
 * pointwise layer. The pixels go in runs of conv_pw_run(s); each thread
 * owns a contiguous range of OCT x VL tiles of dW, split along the wider
 * of OC and C so that the threads share the narrower operand's reads,
 * and for each run packs what its tiles need into its slot: X's rows as
 * (C/VL, run, VL) panels and dY's as (OC/OCT, run, OCT), zero past C and
 * OC. A tile then walks two contiguous panels, and each element of dW is
 * the sum of the runs in order, each run's sum added to the total: the
 * same bits on any thread count. (Walking dY and X in place, a tile's
 * 6 channels of dY took a line of a 1 KiB row per pixel: 35% of the FMA
 * peak on ResNet-50's 64 -> 256 layer.) */
void ISA(conv_tiles_pointwise_dw)(float *dw, float *work, const float *dy,
                                  const float *x, const ConvShape *s,
                                  int acc) {
  const int64_t M = (int64_t)s->N * s->OH * s->OW, C = s->C, OC = s->OC;
  /* the slot holds min(run, M) pixels (conv_pw_slot): one run if M is less */
  const int R = (int)min64(conv_pw_run(s), M), ncb = (s->C + VL - 1) / VL;
  const int noct = (s->OC + OCT - 1) / OCT, split_oc = s->OC >= s->C;
  const int64_t tiles = (int64_t)noct * ncb, slot = conv_pw_slot(s);
  const int threads = rt_threads() < PW_SLOTS ? rt_threads() : PW_SLOTS;
#pragma omp parallel num_threads(threads)
  {
    const int nt = omp_get_num_threads(), me = omp_get_thread_num();
    const int64_t T0 = tiles * me / nt, T1 = tiles * (me + 1) / nt;
    /* the tile T's (output-channel tile, channel block) */
#define PW_OT(T) (int)(split_oc ? (T) / ncb : (T) % noct)
#define PW_CB(T) (int)(split_oc ? (T) % ncb : (T) / noct)
    int ot0 = 0, ot1 = noct, cb0 = 0, cb1 = ncb; /* what the range needs */
    if (T0 < T1 && split_oc)
      ot0 = PW_OT(T0), ot1 = PW_OT(T1 - 1) + 1;
    else if (T0 < T1)
      cb0 = PW_CB(T0), cb1 = PW_CB(T1 - 1) + 1;
    /* X's panels (cb1 - cb0, R, VL); dY's rows (R, wd): channels from
     * ot0 * OCT on, a straight copy (scalar tiles of 6 took a quarter of
     * the time) that a tile reads OCT floats per row of. */
    const int64_t wd = ((int64_t)(ot1 - ot0) * OCT + VL - 1) / VL * VL;
    const int64_t dreal = min64(wd, OC - (int64_t)ot0 * OCT);
    float *xp = work + me * slot;
    float *dp = xp + (int64_t)(cb1 - cb0) * R * VL;
    PwRow r = pw_row_at(x, s, 0);
    for (int64_t m0 = 0; T0 < T1 && m0 < M; m0 += R) {
      const int n = (int)min64(R, M - m0);
      for (int j = 0; j < n; j++) {
        for (int cb = cb0; cb < cb1; cb++) {
          float *dst = xp + ((int64_t)(cb - cb0) * R + j) * VL;
          const int nc = (int)min64(VL, C - (int64_t)cb * VL);
          bstore(dst, bload(r.p + cb * VL, nc), VL); /* zero past nc */
        }
        if (m0 + j + 1 < M)
          r = pw_row_next(r, s);
        const float *d = dy + (m0 + j) * OC + (int64_t)ot0 * OCT;
        for (int64_t c = 0; c < wd; c += VL)
          bstore(dp + j * wd + c, bload(d + c, (int)min64(VL, dreal - c > 0 ? dreal - c : 0)), VL);
      }
      const int load = m0 > 0 || acc;
      /* While the tiles compute, the next run's rows are fetched into L2,
       * a share per tile: packing waited on memory for a third of the
       * time when it alone read them. */
      const int nnext = (int)min64(R, M - m0 - n > 0 ? M - m0 - n : 0);
      PwRow pr = r;
      int q = 0;
      for (int64_t T = T0; T < T1; T++) {
        for (int q1 = (int)(nnext * (T - T0 + 1) / (T1 - T0)); q < q1; q++) {
          prefetch_span(dy + (m0 + n + q) * OC + (int64_t)ot0 * OCT,
                        dreal * 4);
          prefetch_span(pr.p + cb0 * VL,
                        min64((int64_t)(cb1 - cb0) * VL, C - cb0 * VL) * 4);
          if (m0 + n + q + 1 < M)
            pr = pw_row_next(pr, s);
        }
        const int ot = PW_OT(T), cb = PW_CB(T);
        const float *xv = xp + (int64_t)(cb - cb0) * R * VL;
        const float *dv = dp + (int64_t)(ot - ot0) * OCT;
        B a[OCT];
        for (int i = 0; i < OCT; i++)
          a[i] = bzero();
        for (int j = 0; j < n; j++) {
          B v = {vloada(xv + j * VL), vloada(xv + j * VL + LANES)};
          for (int i = 0; i < OCT; i++)
            a[i] = bfma(a[i], vset1(dv[j * wd + i]), v);
        }
        const int noc = (int)min64(OCT, OC - (int64_t)ot * OCT);
        const int nc = (int)min64(VL, C - (int64_t)cb * VL);
        for (int i = 0; i < noc; i++) {
          float *p = dw + ((int64_t)ot * OCT + i) * C + cb * VL;
          bstore(p, load ? badd(a[i], bload(p, nc)) : a[i], nc);
        }
      }
    }
#undef PW_OT
#undef PW_CB
  }
}

/* ---- gradient of the input ---------------------------------------------- */

/* PIX input pixels x VL input channels: dX at (ih, iw) sums dY over the
 * taps kh = first + j * stride (output row oh0 - j) and every output
 * channel. wblk: this channel block's packed weights, (K, K, OC, VL).
 * dyb[i]: pixel i's dY at its first tap. */
INLINE void bwd_data_tile(float *const *dxb, int np, const float *const *dyb,
                          const float *wblk, DimClass rh, DimClass rw,
                          const ConvShape *s, int nc, int acc) {
  B a[PIX];
  for (int i = 0; i < PIX; i++)
    a[i] = bzero();
  for (int jh = 0; jh < rh.ntaps; jh++)
    for (int jw = 0; jw < rw.ntaps; jw++) {
      int kh = rh.first + jh * s->stride, kw = rw.first + jw * s->stride;
      const float *wt = wblk + ((int64_t)kh * s->K + kw) * s->OC * VL;
      int64_t off = -((int64_t)jh * s->OW + jw) * s->OC;
      const float *dr[PIX];
      for (int i = 0; i < PIX; i++)
        dr[i] = dyb[i] + off;
      for (int oc = 0; oc < s->OC; oc++) {
        B wv = {vloada(wt + oc * VL), vloada(wt + oc * VL + LANES)};
        for (int i = 0; i < PIX; i++)
          a[i] = bfma(a[i], vset1(dr[i][oc]), wv);
      }
    }
  for (int i = 0; i < np; i++)
    bstore(dxb[i], acc ? badd(a[i], bload(dxb[i], nc)) : a[i], nc);
}

void ISA(conv_tiles_bwd_data)(float *dx, const float *dy, const float *wq,
                              const ConvShape *s, const ConvClasses *cc,
                              int acc) {
  const int ncb = (s->C + VL - 1) / VL;
#pragma omp parallel
  for (int ch = 0; ch < cc->ncls[0]; ch++)
    for (int cw = 0; cw < cc->ncls[1]; cw++) {
      const DimClass rh = cc->cls[0][ch], rw = cc->cls[1][cw];
      const int64_t npix = (int64_t)s->N * rh.count * rw.count;
      const int64_t nblk = (npix + PIX - 1) / PIX;
      const int empty = rh.ntaps == 0 || rw.ntaps == 0;
#pragma omp for schedule(static) nowait
      for (int64_t t = 0; t < ncb * nblk; t++) {
        int cb = (int)(t / nblk);
        int64_t q0 = t % nblk * PIX;
        int np = (int)min64(PIX, npix - q0);
        const float *dyb[PIX];
        float *dxb[PIX];
        Pixel p = class_pixel(cc, rh, rw, q0);
        for (int i = 0; i < PIX; i++) { /* past np: repeat the last */
          if (i > 0 && i < np)
            p = next_pixel(cc, rh, rw, p);
          int oh = (p.row + s->pad - rh.first) / s->stride;
          int ow = (p.col + s->pad - rw.first) / s->stride;
          dyb[i] = empty ? dy
                         : dy + (((int64_t)p.n * s->OH + oh) * s->OW + ow) *
                                    s->OC;
          dxb[i] = dx + (((int64_t)p.n * s->H + p.row) * s->W + p.col) *
                            s->C + cb * VL;
        }
        int nc = (int)min64(VL, s->C - (int64_t)cb * VL);
        const float *wblk = wq + (int64_t)cb * s->K * s->K * s->OC * VL;
        bwd_data_tile(dxb, np, dyb, wblk, rh, rw, s, nc, acc);
      }
    }
}

/* ---- gradient of the weights -------------------------------------------- */

/* a[i] += sum over j < len of dr[i'] * xr[0..nc), the rows stepping by
 * dstep and xstep: OCT x VL sums of products, the inner loop of the dW
 * tiles below and of the small GEMM's a^T b. Past nc the lanes are zero;
 * i' = di[i] (rows past the tile repeat its last) unless the tile is
 * full. */
INLINE void run_outer(B *a, const float *dr, int64_t dstep, const float *xr,
                      int64_t xstep, int64_t len, const int *di, int nc,
                      const int full) {
  for (int64_t j = 0; j < len; j++, xr += xstep, dr += dstep) {
    B xv = bload(xr, full ? VL : nc);
    for (int i = 0; i < OCT; i++)
      a[i] = bfma(a[i], vset1(dr[full ? i : di[i]]), xv);
  }
}

/* OCT output channels x VL input channels of dW at tap (kh, kw), summed
 * over images [n0, n1) and the output pixels that tap really touches. */
INLINE void bwd_weights_tile(float *dwt, const float *dy, const float *x,
                             const ConvShape *s, int kh, int kw, int oc0,
                             int c0, int n0, int n1, int load, int noc,
                             int nc, const int full) {
  B a[OCT];
  int64_t row = (int64_t)s->K * s->K * s->C; /* dW's stride per oc */
  for (int i = 0; i < OCT; i++)
    a[i] = bzero();
  int oh0, oh1, ow0, ow1;
  tap_span(kh, s->H, s->OH, s->stride, s->pad, &oh0, &oh1);
  tap_span(kw, s->W, s->OW, s->stride, s->pad, &ow0, &ow1);
  int di[OCT]; /* past noc: repeat the last channel, never stored */
  for (int i = 0; i < OCT; i++)
    di[i] = full || i < noc ? i : noc - 1;
  /* The innermost loop runs along an output row, or, when rows are
   * shorter than the chunk has images (4x4 and 2x2 maps), across the
   * images at one pixel: either way a long loop of constant strides. */
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
        run_outer(a, dr, dstep, xr, xstep, len, di, nc, full);
      }
  /* The chunk's sum is added to what came before, not summed on top of
   * it: a long chain of additions onto one growing total loses bits. */
  for (int i = 0; i < noc; i++)
    bstore(dwt + i * row, load ? badd(a[i], bload(dwt + i * row, nc)) : a[i],
           nc);
}

void ISA(conv_tiles_bwd_weights)(float *dw, const float *dy, const float *x,
                                 const ConvShape *s, int acc) {
  const int taps = s->K * s->K, noct = (s->OC + OCT - 1) / OCT;
  const int ncb = (s->C + VL - 1) / VL;
  /* Images per chunk: about 128 output pixels, whose lines of X and dY
   * (one each per pixel for a tile: 16 KiB) stay in L1 while the tile
   * walks all K*K taps over them. */
  int64_t pix = (int64_t)s->OH * s->OW;
  int per = (int)(128 / (pix > 0 ? pix : 1));
  per = per < 1 ? 1 : per;
  /* A task owns one tile of channels at every tap, so no two threads
   * write the same dW, and each element is summed chunk after chunk in
   * the same order whatever the thread count. */
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < (int64_t)noct * ncb; t++) {
    int oc0 = (int)(t / ncb) * OCT, c0 = (int)(t % ncb) * VL;
    int noc = (int)min64(OCT, s->OC - oc0), nc = (int)min64(VL, s->C - c0);
    int full = noc == OCT && nc == VL;
    for (int n0 = 0; n0 < s->N; n0 += per) {
      int n1 = n0 + per < s->N ? n0 + per : s->N;
      int load = n0 > 0 || acc;
      for (int tap = 0; tap < taps; tap++) {
        int kh = tap / s->K, kw = tap % s->K;
        float *dwt =
            dw + (((int64_t)oc0 * s->K + kh) * s->K + kw) * s->C + c0;
        if (full)
          bwd_weights_tile(dwt, dy, x, s, kh, kw, oc0, c0, n0, n1, load,
                           noc, nc, 1);
        else
          bwd_weights_tile(dwt, dy, x, s, kh, kw, oc0, c0, n0, n1, load,
                           noc, nc, 0);
      }
    }
  }
}

/* ---- gradient of the weights, few input channels (an RGB stem) ---------- */

/* The per-tap tile above runs on channel vectors that are mostly empty
 * when C is 3, and im2col (conv_tiles_dw_rows) writes and reads K x K
 * times the input. Here the vectors run over the output channels
 * instead: for one kernel row kh, the K x C taps of a window are one run
 * of floats in a zero-padded input row, so a tile of SC_ROWS of them x
 * SC_NB blocks of output channels is SC_ROWS broadcasts against SC_NB
 * loads of dY per pixel. AVX-512: 7 x 2 blocks (64 channels) in 28 of
 * the 32 zmm registers, the broadcasts from memory (a stem's 21 taps of a
 * kernel row are 3 groups of 7: 6.7 ms on ResNet-50's stem at batch 64,
 * where 6 rows gave 8.7); AVX2: 6 x 1 block (16) in 12 of the 16 ymm (7
 * rows spill: 11.7 ms against 7.5-8.8). */
#if TILES512
enum { SC_ROWS = 7, SC_NB = 2 };
#else
enum { SC_ROWS = 6, SC_NB = 1 };
#endif

/* dwt's rows (row r: tap r of kernel row kh's run, OCp floats) += the
 * products over output rows [0, noh) of the chunk. prow: the padded
 * input row of the chunk's first output row at kh, plus the group's
 * first tap; dyr: dY at the chunk's first pixel and the block's first
 * channel. nr rows and noc channels are real; the rest are computed on
 * whatever the buffer holds there and never stored. */
INLINE void small_c_tile(float *dwt, int64_t OCp, const float *prow,
                         int64_t rowstep, const float *dyr, int noh,
                         const ConvShape *s, int nr, int noc, int load,
                         const int full) {
  B a[SC_ROWS][SC_NB];
  for (int r = 0; r < SC_ROWS; r++)
    for (int b = 0; b < SC_NB; b++)
      a[r][b] = bzero();
  const int64_t xstep = (int64_t)s->stride * s->C;
  for (int oh = 0; oh < noh; oh++) {
    const float *xp = prow + oh * rowstep;
    const float *d = dyr + (int64_t)oh * s->OW * s->OC;
    for (int ow = 0; ow < s->OW; ow++, xp += xstep, d += s->OC) {
      B dv[SC_NB];
      for (int b = 0; b < SC_NB; b++)
        dv[b] = bload(d + b * VL, full ? VL : (int)min64(VL, noc - b * VL > 0 ? noc - b * VL : 0));
      for (int r = 0; r < SC_ROWS; r++) {
        V x1 = vset1(xp[r]);
        for (int b = 0; b < SC_NB; b++)
          a[r][b] = bfma(a[r][b], x1, dv[b]);
      }
    }
  }
  /* The chunk's sum is added to the total, not summed on top of it: one
   * chain over the whole batch lost bits (2.9e-6 against float64 on the
   * stem at batch 64, 1.1e-4 apart after 12 steps of 2 x 32 against
   * 1 x 64 in the --sync-bn test, where other kernels give 2e-7). */
  for (int r = 0; r < nr; r++)
    for (int b = 0; b < SC_NB; b++) {
      float *p = dwt + r * OCp + b * VL;
      bstore(p, load ? badd(a[r][b], bload(p, VL)) : a[r][b], VL);
    }
}

void ISA(conv_tiles_bwd_weights_small_c)(float *dw, float *dwt,
                                         const float *dy, const float *x,
                                         const ConvShape *s, int acc) {
  const int KC = s->K * s->C, ngroups = (KC + SC_ROWS - 1) / SC_ROWS;
  const int ocw = SC_NB * VL, nob = (s->OC + ocw - 1) / ocw;
  const int64_t OCp = ((int64_t)s->OC + 63) / 64 * 64;
  const int tasks = s->K * ngroups * nob, ch = conv_dw_small_c_rows(s);
  const int64_t rowf = (int64_t)(s->W + 2 * s->pad) * s->C;
  /* Each task owns its tile of dwt and sums it chunk after chunk in the
   * same order on any thread count: deterministic. A thread takes a
   * contiguous range of the tasks and walks every chunk, so it reads dY
   * once, each chunk while it is in L1. */
#pragma omp parallel
  {
    float buf[DW_SMALL_C_FLOATS] __attribute__((aligned(64)));
    const int nt = omp_get_num_threads(), me = omp_get_thread_num();
    const int t0 = (int)((int64_t)tasks * me / nt);
    const int t1 = (int)((int64_t)tasks * (me + 1) / nt);
    for (int n = 0; t0 < t1 && n < s->N; n++)
      for (int oh0 = 0; oh0 < s->OH; oh0 += ch) {
        const int noh = (int)min64(ch, s->OH - oh0);
        const int nrows = (noh - 1) * s->stride + s->K;
        const int ih0 = oh0 * s->stride - s->pad;
        for (int r = 0; r < nrows; r++) { /* the rows, zero-padded */
          float *dst = buf + r * rowf;
          int ih = ih0 + r;
          /* (string.h's bzero would clash with the B above) */
          const size_t edge = (size_t)s->pad * s->C, wc = (size_t)s->W * s->C;
          __builtin_memset(dst, 0, edge * sizeof *dst);
          __builtin_memset(dst + edge + wc, 0, edge * sizeof *dst);
          if (ih >= 0 && ih < s->H)
            __builtin_memcpy(dst + edge, x + ((int64_t)n * s->H + ih) * wc,
                   wc * sizeof *dst);
          else
            __builtin_memset(dst + edge, 0, wc * sizeof *dst);
        }
        /* a last group's rows past K x C read up to SC_ROWS floats past
         * the last row: zeros, computed and never stored */
        __builtin_memset(buf + nrows * rowf, 0, DW_SMALL_C_SLACK * sizeof *buf);
        const int load = n > 0 || oh0 > 0;
        const float *dyc = dy + ((int64_t)n * s->OH + oh0) * s->OW * s->OC;
        for (int t = t0; t < t1; t++) {
          int kh = t / (ngroups * nob), g = t / nob % ngroups, ob = t % nob;
          int nr = (int)min64(SC_ROWS, KC - g * SC_ROWS);
          int noc = (int)min64(ocw, s->OC - ob * ocw);
          float *dt = dwt + ((int64_t)kh * KC + g * SC_ROWS) * OCp + ob * ocw;
          const float *prow = buf + kh * rowf + g * SC_ROWS;
          if (noc == ocw)
            small_c_tile(dt, OCp, prow, s->stride * rowf, dyc + ob * ocw, noh,
                         s, nr, noc, load, 1);
          else
            small_c_tile(dt, OCp, prow, s->stride * rowf, dyc + ob * ocw, noh,
                         s, nr, noc, load, 0);
        }
      }
  }
  /* dW (OC, K, K, C) from dwt (K, K, C, OCp): the transpose, and acc. */
  const int64_t kkc = (int64_t)s->K * KC;
#pragma omp parallel for schedule(static)
  for (int oc = 0; oc < s->OC; oc++)
    for (int64_t j = 0; j < kkc; j++)
      dw[oc * kkc + j] = (acc ? dw[oc * kkc + j] : 0) + dwt[j * OCp + oc];
}

/* ---- small GEMMs: Winograd's products (conv_winograd.c) ----------------- */

void ISA(conv_tiles_gemm)(float *y, int64_t ldy, const float *x, int64_t ldx,
                          const float *wp, int M, int N, int K) {
  const int nb = (N + VL - 1) / VL;
  for (int b = 0; b < nb; b++) {
    const float *w = wp + (int64_t)b * K * VL;
    const int nn = (int)min64(VL, N - (int64_t)b * VL);
    for (int r0 = 0; r0 < M; r0 += PIX) {
      const int np = (int)min64(PIX, M - r0);
      const float *xr[PIX];
      B a[PIX];
      for (int i = 0; i < PIX; i++) { /* past np: repeat the last row */
        xr[i] = x + (int64_t)(r0 + (i < np ? i : np - 1)) * ldx;
        a[i] = bzero();
      }
      run_dot(a, xr, w, K);
      for (int i = 0; i < np; i++)
        bstore(y + (int64_t)(r0 + i) * ldy + b * VL, a[i], nn);
    }
  }
}

/* One OCT x VL tile of d += a^T b over rows [t0, t1). */
INLINE void gemm_tn_tile(float *d, int64_t ldd, const float *a, int64_t lda,
                         const float *b, int64_t ldb, int t0, int t1,
                         int load, int nr, int nc, const int full) {
  B s[OCT];
  int di[OCT]; /* past nr: repeat the last row, never stored */
  for (int i = 0; i < OCT; i++) {
    s[i] = bzero();
    di[i] = full || i < nr ? i : nr - 1;
  }
  run_outer(s, a + (int64_t)t0 * lda, lda, b + (int64_t)t0 * ldb, ldb,
            t1 - t0, di, nc, full);
  for (int i = 0; i < nr; i++) /* the run's sum, added to the earlier */
    bstore(d + i * ldd, load ? badd(s[i], bload(d + i * ldd, nc)) : s[i], nc);
}

void ISA(conv_tiles_gemm_tn)(float *d, int64_t ldd, const float *a,
                             int64_t lda, const float *b, int64_t ldb, int T,
                             int rows, int cols, int acc) {
  /* Rows of a and b in runs of 256, whose slices stay in L2 while every
   * tile of d walks them; each run's sums are added into d. */
  enum { RUN = 256 };
  const int runs = T > 0 ? (T + RUN - 1) / RUN : 1; /* T = 0: d = 0 */
  for (int run = 0; run < runs; run++) {
    int t0 = run * RUN, t1 = t0 + RUN < T ? t0 + RUN : T;
    int load = t0 > 0 || acc;
    for (int r0 = 0; r0 < rows; r0 += OCT)
      for (int c0 = 0; c0 < cols; c0 += VL) {
        int nr = (int)min64(OCT, rows - r0), nc = (int)min64(VL, cols - c0);
        float *dt = d + (int64_t)r0 * ldd + c0;
        if (nr == OCT && nc == VL)
          gemm_tn_tile(dt, ldd, a + r0, lda, b + c0, ldb, t0, t1, load, nr,
                       nc, 1);
        else
          gemm_tn_tile(dt, ldd, a + r0, lda, b + c0, ldb, t0, t1, load, nr,
                       nc, 0);
      }
  }
}
