/* conv_direct.h: the pieces of netc's own convolution (CONV_DIRECT)
 * shared by conv_direct.c, which prepares a call, and runtime/kernels/isa/
 * conv_tiles.c, which is compiled once per instruction set (RT_ISA_*)
 * and does the arithmetic. Not part of the runtime's interface.
 *
 * The idea: an output pixel's window meets the padding on some taps. All
 * pixels of one row of the output see the same kernel rows, all pixels of
 * one column the same kernel columns. So each axis is split into classes
 * of positions that see the same taps, and a (row class, column class)
 * pair is a set of pixels, over the whole batch, that all use the same
 * taps: they are computed together, in register tiles, over exactly the
 * taps that exist. No padding tap is multiplied and no pixel is handled
 * alone, even on a 2x2 map where every pixel is a corner. */
#ifndef NETC_CONV_DIRECT_H
#define NETC_CONV_DIRECT_H

#include "kernels/netc_rt.h"

/* A class of positions of one axis: the taps first, first + step, ...
 * (ntaps of them; step 1 for the forward pass, the stride for dX), and
 * its positions pos[start .. start + count). */
typedef struct {
  int first, ntaps, start, count;
} DimClass;

/* Rows (axis 0) and columns (axis 1), each a list of positions grouped
 * by class. The tables live in the pass's workspace. */
typedef struct {
  const int *pos[2];
  const DimClass *cls[2];
  int ncls[2];
} ConvClasses;

/* The forward pass, y = or += (acc) conv(x) + b. wp: the weights packed
 * as (OC/VL, K, K, C, VL), VL output channels per block, zero past OC. */
void conv_tiles_forward_avx2(float *y, const float *x, const float *wp,
                             const float *b, const ConvShape *s,
                             const ConvClasses *cc, int acc);
void conv_tiles_forward_avx512(float *y, const float *x, const float *wp,
                               const float *b, const ConvShape *s,
                               const ConvClasses *cc, int acc);
/* The forward pass of a pointwise layer (1x1, pad 0, any stride; dX of
 * a stride-1 one too): a GEMM over the output pixels, no class tables;
 * wp as above. */
void conv_tiles_pointwise_avx2(float *y, const float *x, const float *wp,
                               const float *b, const ConvShape *s, int acc);
void conv_tiles_pointwise_avx512(float *y, const float *x, const float *wp,
                                 const float *b, const ConvShape *s, int acc);
/* dX from dY. wq: the weights packed as (C/VL, K, K, OC, VL), zero past
 * C (conv_direct.c's pack_bwd_data). */
void conv_tiles_bwd_data_avx2(float *dx, const float *dy, const float *wq,
                              const ConvShape *s, const ConvClasses *cc,
                              int acc);
void conv_tiles_bwd_data_avx512(float *dx, const float *dy, const float *wq,
                                const ConvShape *s, const ConvClasses *cc,
                                int acc);
/* dW, (OC, K, K, C), from dY and X. */
void conv_tiles_bwd_weights_avx2(float *dw, const float *dy, const float *x,
                                 const ConvShape *s, int acc);
void conv_tiles_bwd_weights_avx512(float *dw, const float *dy,
                                   const float *x, const ConvShape *s,
                                   int acc);

/* dW (OC, C) of a pointwise layer: work holds PW_SLOTS slots of
 * conv_pw_slot(s) floats, 64-byte aligned. */
void conv_tiles_pointwise_dw_avx2(float *dw, float *work, const float *dy,
                                  const float *x, const ConvShape *s,
                                  int acc);
void conv_tiles_pointwise_dw_avx512(float *dw, float *work, const float *dy,
                                    const float *x, const ConvShape *s,
                                    int acc);

/* dW of a layer with few input channels (netc_rt.h's
 * conv_direct_dw_small_c): dwt, (K, K, C, OC rounded up to 64), 64-byte
 * aligned, holds the sums. */
void conv_tiles_bwd_weights_small_c_avx2(float *dw, float *dwt,
                                         const float *dy, const float *x,
                                         const ConvShape *s, int acc);
void conv_tiles_bwd_weights_small_c_avx512(float *dw, float *dwt,
                                           const float *dy, const float *x,
                                           const ConvShape *s, int acc);

/* A grouped layer (isa/conv_grouped.c): register r of LANES output
 * channels reads input channels start[r] .. start[r] + cw; the forward's
 * wp is packed (registers, K, K, cw, LANES), zero where a lane's group
 * does not own a channel, the registers of whole VL blocks (a missing
 * last one zero). dW's sums go to dwt in that layout. */
void conv_grouped_forward_avx2(float *y, const float *x, const float *wp,
                               const float *b, const ConvShape *s,
                               const ConvClasses *cc, const int *start,
                               int cw, int acc);
void conv_grouped_forward_avx512(float *y, const float *x, const float *wp,
                                 const float *b, const ConvShape *s,
                                 const ConvClasses *cc, const int *start,
                                 int cw, int acc);
void conv_grouped_bwd_weights_avx2(float *dwt, const float *dy,
                                   const float *x, const ConvShape *s,
                                   const int *start, int cw);
void conv_grouped_bwd_weights_avx512(float *dwt, const float *dy,
                                     const float *x, const ConvShape *s,
                                     const int *start, int cw);

/* The CONV_DIRECT passes conv_forward and conv_backward call (the bias
 * gradient is theirs); work as conv_work_floats says. */
void conv_direct_forward(float *y, float *work, const float *x,
                         const float *w, const float *b, const ConvShape *s);
void conv_direct_bwd_weights(float *dw, float *work, const float *dy,
                             const float *x, const ConvShape *s, int acc);
void conv_direct_bwd_data(float *dx, float *work, const float *dy,
                          const float *w, const ConvShape *s, int acc);

/* CONV_WINOGRAD's passes (conv_winograd.c); work as conv_work_floats. */
void conv_winograd_forward(float *y, float *work, const float *x,
                           const float *w, const float *b,
                           const ConvShape *s);
void conv_winograd_bwd_data(float *dx, float *work, const float *dy,
                            const float *w, const ConvShape *s, int acc);
void conv_winograd_bwd_weights(float *dw, float *work, const float *dy,
                               const float *x, const ConvShape *s, int acc);

/* Small GEMMs in the same tiles, one thread each (Winograd's products).
 * y (M x N, row stride ldy) = x (M x K, row stride ldx) times the packed
 * wp: (N/VL, K, VL), zero past N, 64-byte aligned. */
void conv_tiles_gemm_avx2(float *y, int64_t ldy, const float *x, int64_t ldx,
                          const float *wp, int M, int N, int K);
void conv_tiles_gemm_avx512(float *y, int64_t ldy, const float *x,
                            int64_t ldx, const float *wp, int M, int N,
                            int K);
/* d (rows x cols, row stride ldd) = or += (acc) a^T b summed over T: a is
 * (T x rows), row stride lda; b is (T x cols), row stride ldb. Each
 * element is summed in the order of t. */
void conv_tiles_gemm_tn_avx2(float *d, int64_t ldd, const float *a,
                             int64_t lda, const float *b, int64_t ldb, int T,
                             int rows, int cols, int acc);
void conv_tiles_gemm_tn_avx512(float *d, int64_t ldd, const float *a,
                               int64_t lda, const float *b, int64_t ldb,
                               int T, int rows, int cols, int acc);
/* dW (OC x KKC) = or += (acc) dY^T (OC x M) rows (M x KKC), in the GEMM
 * tiles, all threads: CONV_DIRECT's dW of a pointwise layer (rows = X)
 * or of one with under 16 input channels (rows = im2col's columns, where
 * the per-tap tile would run on mostly empty channel vectors). */
void conv_tiles_dw_rows(float *dw, const float *dy, const float *rows,
                        int64_t M, int OC, int KKC, int acc);

/* The vector block of the ISA in use (the packing's VL), and the two
 * GEMMs by it. */
int conv_tiles_vl(void);
void conv_tiles_gemm(float *y, int64_t ldy, const float *x, int64_t ldx,
                     const float *wp, int M, int N, int K);
void conv_tiles_gemm_tn(float *d, int64_t ldd, const float *a, int64_t lda,
                        const float *b, int64_t ldb, int T, int rows,
                        int cols, int acc);

/* Floats per vector block (the packing's VL) and tile sizes, per ISA. */
enum {
  AVX2_VL = 16, AVX2_PIX = 6, AVX2_OCT = 6,
  AVX512_VL = 32, AVX512_PIX = 12, AVX512_OCT = 12,
};

#endif
