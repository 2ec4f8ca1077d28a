/* simd.h: what the kernels of runtime/kernels/isa/ share. Each file
 * there is compiled twice (Makefile): with -march=x86-64-v3 into _avx2
 * functions and with -march=x86-64-v4 into _avx512 ones. Code is written
 * once over a native vector V (__m256 or __m512, LANES floats) through
 * the few operations below; a channel block B is VL = 2 x LANES floats,
 * two registers; PIX and OCT are conv_direct.h's register tiles for the
 * ISA. Then the walk over a convolution's pixels by class (conv_direct.h).
 * Included once, by a .c file of isa/. */
#ifndef NETC_ISA_SIMD_H
#define NETC_ISA_SIMD_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels/conv_direct.h"

#define INLINE static inline __attribute__((always_inline))

/* NETC_EMU512_TILES (make test-emu512, on a CPU without AVX-512): the
 * _avx512 functions with AVX-512's geometry (12 x 32 tiles, 32-float
 * blocks), each 16-float vector emulated by two ymm, so that their
 * packing, edges and thread splits are tested where they cannot run. */
#if defined(__AVX512F__) || defined(NETC_EMU512_TILES)
#define TILES512 1
#endif

#if TILES512
#define VL AVX512_VL
#define PIX AVX512_PIX
#define OCT AVX512_OCT
#define ISA(name) name##_avx512
enum { LANES = 16 };
#if defined(__AVX512F__)
typedef __m512 V;
#define vzero() _mm512_setzero_ps()
#define vset1(x) _mm512_set1_ps(x)
#define vload(p) _mm512_loadu_ps(p)
#define vloada(p) _mm512_load_ps(p)
#define vstore(p, v) _mm512_storeu_ps(p, v)
#define vadd(a, b) _mm512_add_ps(a, b)
#define vfma(a, b, c) _mm512_fmadd_ps(a, b, c)
/* n in [0, LANES]: the first n lanes; the others are not touched. */
INLINE V vload_n(const float *p, int n) {
  return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
}
INLINE void vstore_n(float *p, V v, int n) {
  _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), v);
}
#else /* emulated: the same lanes, the same FMAs, in two halves */
typedef struct {
  __m256 l, h;
} V;
INLINE __m256i lane_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
INLINE V vzero(void) { return (V){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
INLINE V vset1(float x) { return (V){_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
INLINE V vload(const float *p) {
  return (V){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
}
/* vloada's contract (64-byte alignment) is checked, as AVX-512's
 * aligned load would fault. */
INLINE V vloada(const float *p) {
  if ((uintptr_t)p % 64)
    __builtin_trap();
  return (V){_mm256_load_ps(p), _mm256_load_ps(p + 8)};
}
INLINE void vstore(float *p, V v) {
  _mm256_storeu_ps(p, v.l);
  _mm256_storeu_ps(p + 8, v.h);
}
INLINE V vadd(V a, V b) {
  return (V){_mm256_add_ps(a.l, b.l), _mm256_add_ps(a.h, b.h)};
}
INLINE V vfma(V a, V b, V c) {
  return (V){_mm256_fmadd_ps(a.l, b.l, c.l), _mm256_fmadd_ps(a.h, b.h, c.h)};
}
INLINE V vload_n(const float *p, int n) {
  int nh = n > 8 ? n - 8 : 0;
  return (V){_mm256_maskload_ps(p, lane_mask(n > 8 ? 8 : n)),
             _mm256_maskload_ps(p + 8, lane_mask(nh))};
}
INLINE void vstore_n(float *p, V v, int n) {
  int nh = n > 8 ? n - 8 : 0;
  _mm256_maskstore_ps(p, lane_mask(n > 8 ? 8 : n), v.l);
  _mm256_maskstore_ps(p + 8, lane_mask(nh), v.h);
}
#endif
#else
#define VL AVX2_VL
#define PIX AVX2_PIX
#define OCT AVX2_OCT
#define ISA(name) name##_avx2
enum { LANES = 8 };
typedef __m256 V;
#define vzero() _mm256_setzero_ps()
#define vset1(x) _mm256_set1_ps(x)
#define vload(p) _mm256_loadu_ps(p)
#define vloada(p) _mm256_load_ps(p)
#define vstore(p, v) _mm256_storeu_ps(p, v)
#define vadd(a, b) _mm256_add_ps(a, b)
#define vfma(a, b, c) _mm256_fmadd_ps(a, b, c)
INLINE __m256i lane_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
INLINE V vload_n(const float *p, int n) {
  return _mm256_maskload_ps(p, lane_mask(n));
}
INLINE void vstore_n(float *p, V v, int n) {
  _mm256_maskstore_ps(p, lane_mask(n), v);
}
#endif

/* A channel block: VL floats in two registers. */
typedef struct {
  V lo, hi;
} B;

INLINE B bzero(void) { return (B){vzero(), vzero()}; }
INLINE int lanes(int n, int half) {
  n -= half * LANES;
  return n < 0 ? 0 : n > LANES ? LANES : n;
}
/* The first n <= VL floats of a block (all VL when n == VL). */
INLINE B bload(const float *p, int n) {
  if (n == VL)
    return (B){vload(p), vload(p + LANES)};
  return (B){vload_n(p, lanes(n, 0)), vload_n(p + LANES, lanes(n, 1))};
}
INLINE void bstore(float *p, B v, int n) {
  if (n == VL) {
    vstore(p, v.lo);
    vstore(p + LANES, v.hi);
    return;
  }
  vstore_n(p, v.lo, lanes(n, 0));
  vstore_n(p + LANES, v.hi, lanes(n, 1));
}
INLINE B badd(B a, B b) { return (B){vadd(a.lo, b.lo), vadd(a.hi, b.hi)}; }
/* a + s * w */
INLINE B bfma(B a, V s, B w) {
  return (B){vfma(s, w.lo, a.lo), vfma(s, w.hi, a.hi)};
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Packed forward weights a thread keeps in cache (see conv_tiles_forward):
 * half of Zen 3's 512 KiB L2. */
enum { FWD_CHUNK_BYTES = 256 << 10 };

/* ---- walking a convolution's pixels ----------------------------------- */

/* Pixel q of the class pair (rh, rw) over the batch: its image, output
 * row and column; ir and ic are its row and column within the class. */
typedef struct {
  int n, row, col, ir, ic;
} Pixel;

INLINE Pixel class_pixel(const ConvClasses *cc, DimClass rh, DimClass rw,
                         int64_t q) {
  int64_t plane = (int64_t)rh.count * rw.count;
  int64_t r = q % plane;
  int ir = (int)(r / rw.count), ic = (int)(r % rw.count);
  return (Pixel){(int)(q / plane), cc->pos[0][rh.start + ir],
                 cc->pos[1][rw.start + ic], ir, ic};
}

/* The pixel after p, without class_pixel's divisions: two 64-bit
 * divisions per pixel cost more than the arithmetic of a tile of a
 * pointwise conv with 64 channels (the 1x1 layers of ResNet-50 ran at a
 * third of PyTorch's speed). */
INLINE Pixel next_pixel(const ConvClasses *cc, DimClass rh, DimClass rw,
                        Pixel p) {
  if (++p.ic == rw.count) {
    p.ic = 0;
    if (++p.ir == rh.count)
      p.ir = 0, p.n++;
    p.row = cc->pos[0][rh.start + p.ir];
  }
  p.col = cc->pos[1][rw.start + p.ic];
  return p;
}

/* The forward tile at pixel q0 of the class pair (rh, rw), np real
 * pixels: xb[i], pixel i's input at its first tap (x itself when the
 * class has no taps), and yb[i], its output in y; past np the last
 * repeats. */
INLINE void fwd_pixels(const float **xb, float **yb, const float *x,
                       float *y, const ConvShape *s, const ConvClasses *cc,
                       DimClass rh, DimClass rw, int64_t q0, int np) {
  const int empty = rh.ntaps == 0 || rw.ntaps == 0;
  Pixel p = class_pixel(cc, rh, rw, q0);
  for (int i = 0; i < PIX; i++) {
    if (i > 0 && i < np)
      p = next_pixel(cc, rh, rw, p);
    int ih = p.row * s->stride - s->pad + rh.first;
    int iw = p.col * s->stride - s->pad + rw.first;
    xb[i] = empty ? x : x + (((int64_t)p.n * s->H + ih) * s->W + iw) * s->C;
    yb[i] = y + (((int64_t)p.n * s->OH + p.row) * s->OW + p.col) * s->OC;
  }
}

/* The output rows (or columns) [*lo, *hi) whose window has tap k inside
 * an input axis of length len: exactly the pixels that tap multiplies. */
INLINE void tap_span(int k, int len, int out, int stride, int pad, int *lo,
                     int *hi) {
  int first = pad - k, last = len - 1 + pad - k; /* oh * stride in range */
  *lo = first > 0 ? (first + stride - 1) / stride : 0;
  *hi = last < 0 ? 0 : last / stride + 1;
  if (*hi > out)
    *hi = out;
  if (*hi < *lo)
    *hi = *lo;
}

#endif
