/* netc_rt.h: the runtime library that netc-generated trainers link against.
 *
 * Conventions, everywhere:
 * - Activations are NHWC: x[((n * H + h) * W + w) * C + c], float32. (Dumps
 *   print a tensor's shape as NxCxHxW, PyTorch's order; the memory order
 *   is NHWC.)
 * - Conv weights are (C_out, K, K, C_in) (PyTorch's (C_out, C_in, K, K)
 *   with C_in moved last); dense weights are (out, in) as in PyTorch.
 * - Every op is a _forward / _backward pair with one argument order:
 *   outputs, saved state, scratch, inputs, weights, then the layer's shape
 *   (one const descriptor struct per layer, which generated code names
 *   after the layer), then flags.
 * - Accumulate flags are NETC_WRITE (=) or NETC_ADD (+=). A gradient used
 *   twice (a residual input) or a shared weight's later use passes NETC_ADD.
 * - In place: y may equal x in relu_forward and add_forward (and
 *   add_relu_forward); dx may equal dy in relu_backward,
 *   batchnorm_backward, batchnorm_relu_backward and grad_add (with
 *   NETC_WRITE).
 * - A relu folded into the op before it (compiler/fuse.c), as in
 *   batchnorm_relu_forward, gives the same bits as the two calls.
 * - No kernel allocates memory: scratch and workspaces are arguments, and
 *   the compiler's plan places them (BATCHNORM_WORK_BYTES says how much).
 * - Non-GEMM loops are parallel with OpenMP; GEMMs call cblas_sgemm.
 *   rt_set_threads() sets both. Our loops give the same bits for every
 *   thread count (sums run over fixed chunks or whole channels, never
 *   per-thread partials); OpenBLAS's GEMMs do not: their last bits change
 *   with the thread count (measured), so conv and dense outputs may too.
 * Each op also has a naive reference (rt_ref_*, reference.c), used by the
 * tests only. */
#ifndef NETC_RT_H
#define NETC_RT_H

#include <stdint.h>

void rt_set_threads(int n);
int rt_threads(void);

/* Accumulate flags. */
enum { NETC_WRITE = 0, NETC_ADD = 1 };

/* ---- layer shapes: one const struct per layer in generated code -------- */

/* How a convolution pass is computed: the compiler chooses per layer and
 * per pass (compiler/algo.c) and writes it into the layer's ConvShape.
 * CONV_GEMM, im2col plus one OpenBLAS sgemm, is the reference and the
 * fallback; CONV_DIRECT is netc's own register-blocked kernel
 * (conv_direct.c), which never multiplies a padding tap; CONV_WINOGRAD is
 * F(2x2, 3x3) and CONV_WINOGRAD4 F(4x4, 3x3) (conv_winograd.c), for 3x3
 * stride-1 layers only: asked of any other layer, they are GEMM. */
enum {
  CONV_GEMM = 0, CONV_DIRECT = 1, CONV_WINOGRAD = 2, CONV_WINOGRAD4 = 3,
  CONV_ALGO_COUNT
};
/* The three passes of a convolution, each with its own algorithm. */
enum { CONV_PASS_FWD, CONV_PASS_DX, CONV_PASS_DW, CONV_PASSES };

/* A convolution: N images of H x W x C in, OH x OW x OC out. */
typedef struct {
  int N, H, W, C;   /* input */
  int OC, K, stride, pad;
  int OH, OW;       /* output */
  int algo;         /* the forward pass's CONV_* (0: GEMM) */
  int algo_dx;      /* the input gradient's */
  int algo_dw;      /* the weight gradient's */
  int groups;       /* > 1: C and OC in `groups` groups, each output group
                       reading its input group alone (ResNeXt); 0 or 1:
                       one */
} ConvShape;

/* A pooling window over N images of H x W x C. */
typedef struct {
  int N, H, W, C;
  int K, stride, pad;
  int OH, OW;
} PoolShape;

/* Batch normalization over M = N*H*W rows of C channels. */
typedef struct {
  int64_t M;
  int C;
} BnShape;

/* y (N, OUT) = x (N, IN) w^T + b. */
typedef struct {
  int N, IN, OUT;
} DenseShape;

/* The mean over HW = H*W positions: (N, HW, C) -> (N, C). */
typedef struct {
  int N, HW, C;
} GapShape;

/* Softmax cross-entropy over N rows of C classes. */
typedef struct {
  int N, C;
} XentShape;

/* An elementwise op over n floats. */
typedef struct {
  int64_t n;
} EltShape;

/* Dropout over n floats: zero with probability p; salt tells its layers
 * apart (rt_dropout_salt of the layer's name). */
typedef struct {
  int64_t n;
  float p;
  uint32_t salt;
} DropShape;

/* Batchnorm's workspace: per-chunk partial sums (BN_CHUNKS chunks of rows,
 * fewer if M < BN_CHUNKS, 2 x C doubles each; a fixed chunk count, so the
 * sums, and so the results, are the same for every thread count) and
 * 4 x C floats of per-channel factors. The compiler sizes the plan's
 * workspace with this. All three batchnorm kernels take one; it holds
 * nothing between calls, so layers may share it. */
enum { BN_CHUNKS = 16 };
#define BATCHNORM_WORK_BYTES(C)                                              \
  ((int64_t)BN_CHUNKS * 2 * (C) * 8 + (int64_t)4 * (C) * 4)

/* The instruction sets netc's own kernels are built for. A trainer runs
 * the one it was compiled for (netc build: the build machine's, or AVX2
 * with --portable); rt_set_isa() refuses one this CPU lacks. */
enum { RT_ISA_AVX2 = 0, RT_ISA_AVX512 = 1, RT_ISA_COUNT };
/* Inline: the compiler asks it too, for its default target. */
static inline int rt_cpu_has_isa(int isa) {
  __builtin_cpu_init();
  switch (isa) {
  case RT_ISA_AVX2:
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  case RT_ISA_AVX512:
#ifdef NETC_EMU512 /* make test-emu512: the _avx512 tiles emulated on AVX2 */
    return rt_cpu_has_isa(RT_ISA_AVX2);
#endif
    return __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq");
  }
  return 0;
}
/* 0, or -1 (and nothing changes) if this CPU lacks `isa`. */
int rt_set_isa(int isa);
int rt_isa(void);
const char *rt_isa_name(int isa);           /* "avx2", "avx512" */
/* What bench and info print: "avx2-fma-direct-6x16" (ISA, algorithm,
 * register tile in pixels x channels). */
const char *rt_conv_kernel_name(void);

/* The bytes of a 4-byte element count rounded up to whole cache lines. */
#define RT_LINE_FLOATS(n) (((int64_t)(n) + 15) / 16 * 16)
/* CONV_GEMM runs over the batch in chunks of this many images, so that
 * its im2col columns stay near 8 MiB instead of growing with the batch
 * (a 7x7 stem at batch 64 would take 38 MB); the chunks are as even as
 * the batch allows. */
static inline int conv_gemm_chunk(const ConvShape *s) {
  int64_t per = (int64_t)s->OH * s->OW * s->K * s->K * s->C * 4;
  int64_t chunks = per > 0 ? (per * s->N + (8 << 20) - 1) / (8 << 20) : 1;
  chunks = chunks < 1 ? 1 : chunks > s->N ? s->N : chunks;
  return (int)((s->N + chunks - 1) / chunks);
}

/* The workspace a convolution pass takes, in floats (the compiler's plan
 * places it; conv_forward and conv_backward use nothing else). The
 * backward pass's is the larger of its dW's and its dX's:
 * - CONV_GEMM: the im2col columns of one chunk of conv_gemm_chunk()
 *   images, OH*OW rows of K*K*C each, or none for a 1x1, stride-1, pad-0
 *   convolution (it multiplies x directly);
 * - CONV_DIRECT forward: the weights repacked in blocks of 32 output
 *   channels, (OC/32, K, K, C, 32), then the class tables (5 ints per
 *   output row and column);
 * - CONV_DIRECT dX: the class tables of dX (5 ints per input row and
 *   column), then the weights repacked for dX in blocks of 32 input
 *   channels, (C/32, K, K, OC, 32); CONV_DIRECT dW: none, PW_SLOTS
 *   slots of packed runs for a pointwise layer (conv_pw_slot), or GEMM's
 *   columns where it runs as a GEMM over rows (conv_direct_dw_by_rows);
 * - CONV_WINOGRAD, CONV_WINOGRAD4: the (m + 2)^2 transformed weight
 *   matrices (C x OC), then the transformed tiles of the threads' blocks
 *   (forward, dX) or of one chunk of conv_wino_chunk() images (dW). */
/* ---- Winograd F(m x m, 3x3), m = 2 (CONV_WINOGRAD) or 4 (CONV_WINOGRAD4):
 * tiles of (m + 2)^2 inputs give m x m outputs with (m + 2)^2 products. */
static inline int conv_wino_fits(const ConvShape *s) {
  return s->K == 3 && s->stride == 1 && s->pad <= 2;
}
static inline int conv_is_wino(int algo) {
  return algo == CONV_WINOGRAD || algo == CONV_WINOGRAD4;
}
static inline int conv_wino_m(int algo) {
  return algo == CONV_WINOGRAD4 ? 4 : 2;
}
/* Tiles per image, and the (m + 2)^2 transformed matrices of each. */
static inline int64_t conv_wino_tiles(const ConvShape *s, int m) {
  return (int64_t)((s->OH + m - 1) / m) * ((s->OW + m - 1) / m);
}
static inline int conv_wino_points(int m) { return (m + 2) * (m + 2); }

/* The algorithm pass `pass` really runs: Winograd falls back to GEMM
 * where it does not fit, and always on a grouped layer; so does a grouped
 * layer's CONV_DIRECT dX unless it is a forward of dY (stride 1, pad at
 * most K - 1). */
static inline int conv_algo_of(const ConvShape *s, int pass) {
  int a = pass == CONV_PASS_FWD ? s->algo
          : pass == CONV_PASS_DX ? s->algo_dx
                                 : s->algo_dw;
  if (s->groups > 1 && (conv_is_wino(a) ||
                        (a == CONV_DIRECT && pass == CONV_PASS_DX &&
                         (s->stride != 1 || s->pad > s->K - 1))))
    return CONV_GEMM;
  return conv_is_wino(a) && !conv_wino_fits(s) ? CONV_GEMM : a;
}

/* CONV_DIRECT on a grouped layer (isa/conv_grouped.c): a register of
 * `lanes` output channels reads the input channels of every group it
 * spans, a window of conv_group_cw of them (the widest register's). */
static inline int conv_group_cw(const ConvShape *s, int lanes) {
  int Cg = s->C / s->groups, OCg = s->OC / s->groups, cw = 0;
  for (int o = 0; o < s->OC; o += lanes) {
    int last = o + lanes < s->OC ? o + lanes - 1 : s->OC - 1;
    int w = (last / OCg - o / OCg + 1) * Cg;
    cw = w > cw ? w : cw;
  }
  return cw;
}
/* Its workspace, for either ISA (8 or 16 lanes): the windows' starts
 * (ints, a line-rounded OC + 2), then the packed weights or dW's sums,
 * (OC rounded up to 32, K, K, cw). */
static inline int64_t conv_group_floats(const ConvShape *s) {
  int a = conv_group_cw(s, 8), b = conv_group_cw(s, 16);
  return RT_LINE_FLOATS(s->OC + 2) +
         ((int64_t)s->OC + 31) / 32 * 32 * s->K * s->K * (a > b ? a : b);
}

/* dX of a stride-1 convolution as a convolution of dY: the kernel flipped
 * and transposed, padded K-1-pad. */
static inline ConvShape conv_wino_transposed(const ConvShape *s) {
  ConvShape t = {.N = s->N, .H = s->OH, .W = s->OW, .C = s->OC, .OC = s->C,
                 .K = s->K, .stride = 1, .pad = s->K - 1 - s->pad,
                 .OH = s->H, .OW = s->W};
  return t;
}

/* dW's images per chunk: the transformed tiles of input and output,
 * (m + 2)^2 x tiles x (C + OC) floats, stay near 8 MiB; chunks as even as
 * can be. */
static inline int conv_wino_chunk(const ConvShape *s, int m) {
  int64_t per = conv_wino_points(m) * conv_wino_tiles(s, m) * (s->C + s->OC);
  int64_t nb = per > 0 ? ((int64_t)2 << 20) / per : s->N;
  nb = nb < 1 ? 1 : nb > s->N ? s->N : nb;
  int64_t chunks = (s->N + nb - 1) / nb;
  return (int)((s->N + chunks - 1) / chunks);
}

/* The forward pass (and dX) runs blocks of tiles, one per thread, each in
 * a slot of the workspace sized for L2: at most WINO_SLOTS threads.
 * F(4x4)'s tiles have 36 points against 16, so its blocks hold fewer
 * tiles (the slot stays about the same size). */
enum { WINO_SLOTS = 4, WINO_VL = 32 };
static inline int conv_wino_block(const ConvShape *s, int m) {
  int ch = s->C + s->OC;
  /* multiples of 12 and 6 rows: the tiles' PIX on AVX-512 and AVX2 */
  if (m == 4)
    return ch <= 256 ? 24 : 12;
  return ch <= 256 ? 60 : ch <= 512 ? 36 : 24;
}
static inline int64_t conv_wino_slot(const ConvShape *s, int m) {
  return RT_LINE_FLOATS((int64_t)conv_wino_points(m) * conv_wino_block(s, m) *
                        (s->C + s->OC));
}

/* Transformed weights (packed for netc's GEMM tiles in blocks of up to
 * WINO_VL output channels, zero past OC), two rows of max(C, OC) floats (zeros for taps past
 * the edge; a sink for outputs past it, so that the transforms run
 * without branches), then the forward pass's slots or dW's chunk of
 * transformed tiles. */
static inline int64_t conv_wino_floats(const ConvShape *s, int dw, int m) {
  int64_t tiles = dw ? (int64_t)conv_wino_points(m) * conv_wino_chunk(s, m) *
                           conv_wino_tiles(s, m) * (s->C + s->OC)
                     : WINO_SLOTS * conv_wino_slot(s, m);
  return (int64_t)conv_wino_points(m) * s->C *
             ((s->OC + WINO_VL - 1) / WINO_VL * WINO_VL) +
         2 * RT_LINE_FLOATS(s->C > s->OC ? s->C : s->OC) + tiles;
}

static inline int64_t conv_gemm_cols(const ConvShape *s) {
  if (s->K == 1 && s->stride == 1 && s->pad == 0)
    return 0;
  return (int64_t)conv_gemm_chunk(s) * s->OH * s->OW * s->K * s->K * s->C;
}

/* A pointwise layer: 1x1, no padding, any stride. */
static inline int conv_is_pw(const ConvShape *s) {
  return s->K == 1 && s->pad == 0;
}

/* CONV_DIRECT's dW of a layer with under 16 input channels, an RGB stem:
 * vectors over the output channels, each thread reading the input rows it
 * needs, zero-padded, from a stack buffer of DW_SMALL_C_FLOATS (the taps
 * of a kernel row are then one run of K x C floats, with no im2col); the
 * sums gather in the workspace as (K, K, C, OC rounded up to 64) and are
 * transposed into dW at the end. */
enum { DW_SMALL_C_FLOATS = 8192, DW_SMALL_C_SLACK = 16 };
static inline int conv_direct_dw_small_c(const ConvShape *s) {
  return s->C < 16 && !conv_is_pw(s) &&
         (int64_t)s->K * (s->W + 2 * s->pad) * s->C + DW_SMALL_C_SLACK <=
             DW_SMALL_C_FLOATS;
}
/* Output rows per chunk of that kernel: about 64 output pixels, as many
 * as the stack buffer's padded input rows allow. */
static inline int conv_dw_small_c_rows(const ConvShape *s) {
  int ch = s->OW >= 64 ? 1 : (64 + s->OW - 1) / s->OW;
  ch = ch > s->OH ? s->OH : ch;
  while (ch > 1 && (int64_t)((ch - 1) * s->stride + s->K) *
                           (s->W + 2 * s->pad) * s->C +
                           DW_SMALL_C_SLACK > DW_SMALL_C_FLOATS)
    ch--;
  return ch;
}

/* CONV_DIRECT's pointwise layers (1x1, pad 0, any stride) run as GEMMs
 * over the output pixels. Their dW packs runs of conv_pw_run() pixels of
 * X and dY into a slot of the workspace per thread (at most PW_SLOTS
 * threads): about PW_RUN_FLOATS floats, so that a run's panels stay in
 * L2 while the thread's tiles of dW walk them. The run depends on the
 * shape only, so dW's sums do not depend on the thread count. */
enum { PW_SLOTS = 4, PW_RUN_FLOATS = 1 << 16 };
/* Floats per pixel of a slot: X's channels in blocks of up to 32 (the
 * widest ISA's VL), dY's in tiles of up to 12 (its OCT), rounded up to
 * 32 again. */
static inline int64_t conv_pw_pixel_floats(const ConvShape *s) {
  return ((int64_t)s->C + 31) / 32 * 32 + ((int64_t)s->OC + 11 + 31) / 32 * 32;
}
static inline int conv_pw_run(const ConvShape *s) {
  int64_t r = PW_RUN_FLOATS / conv_pw_pixel_floats(s);
  r = r < 16 ? 16 : r > 256 ? 256 : r;
  return (int)(r / 8 * 8);
}
/* A slot holds one run, or all M pixels if there are fewer. */
static inline int64_t conv_pw_slot(const ConvShape *s) {
  int64_t m = (int64_t)s->N * s->OH * s->OW, r = conv_pw_run(s);
  return RT_LINE_FLOATS((m < r ? m : r) * conv_pw_pixel_floats(s));
}

/* CONV_DIRECT's dW as one GEMM over the rows of im2col's columns, in
 * netc's tiles: for a layer with under 16 input channels too wide for
 * the kernel above. */
static inline int conv_direct_dw_by_rows(const ConvShape *s) {
  return !conv_is_pw(s) && s->C < 16 && !conv_direct_dw_small_c(s);
}

static inline int64_t conv_work_floats(const ConvShape *s, int backward) {
  if (!backward) {
    switch (conv_algo_of(s, CONV_PASS_FWD)) {
    case CONV_DIRECT:
      if (s->groups > 1)
        return RT_LINE_FLOATS(5 * (s->OH + s->OW)) + conv_group_floats(s);
      return RT_LINE_FLOATS(5 * (s->OH + s->OW)) +
             ((int64_t)s->OC + 31) / 32 * 32 * s->K * s->K * s->C;
    case CONV_WINOGRAD:
    case CONV_WINOGRAD4:
      return conv_wino_floats(s, 0, conv_wino_m(s->algo));
    default: return conv_gemm_cols(s);
    }
  }
  /* dW runs first, then dX, in the same workspace. */
  ConvShape t = conv_wino_transposed(s);
  int a = conv_algo_of(s, CONV_PASS_DX);
  t.groups = s->groups;
  int64_t dx = a == CONV_DIRECT && s->groups > 1
                   ? RT_LINE_FLOATS(5 * (s->H + s->W)) + conv_group_floats(&t)
               : a == CONV_DIRECT
                   ? RT_LINE_FLOATS(5 * (s->H + s->W)) +
                         ((int64_t)s->C + 31) / 32 * 32 * s->K * s->K * s->OC
               : conv_is_wino(a) ? conv_wino_floats(&t, 0, conv_wino_m(a))
                                 : conv_gemm_cols(s);
  a = conv_algo_of(s, CONV_PASS_DW);
  int64_t dw = a == CONV_DIRECT && s->groups > 1 ? conv_group_floats(s)
               : a == CONV_DIRECT
                   ? (conv_is_pw(s) ? PW_SLOTS * conv_pw_slot(s)
                      : conv_direct_dw_small_c(s)
                          ? (int64_t)s->K * s->K * s->C * ((s->OC + 63) / 64 * 64)
                      : conv_direct_dw_by_rows(s) ? conv_gemm_cols(s) : 0)
               : conv_is_wino(a) ? conv_wino_floats(s, 1, conv_wino_m(a))
                                 : conv_gemm_cols(s);
  return dx > dw ? dx : dw;
}

/* ---- kernels ------------------------------------------------------------ */

/* Convolution over the whole batch, by s->algo. `work` is the pass's
 * workspace (conv_work_floats(s, 0) floats, 64-byte aligned; NULL when
 * that is 0), clobbered. b may be NULL (no bias). */
void conv_forward(float *y, float *work, const float *x, const float *w,
                  const float *b, const ConvShape *s);
/* dW by s->algo_dw, then dX by s->algo_dx. dx may be NULL (no input gradient: the first layer).
 * dw always, db if non-NULL. work: conv_work_floats(s, 1) floats. */
void conv_backward(float *dx, float *dw, float *db, float *work,
                   const float *dy, const float *x, const float *w,
                   const ConvShape *s, int acc_dx, int acc_dw);

/* Synchronized batchnorm (train --sync-bn on several processes): a
 * training batchnorm takes its statistics over every process's rows. The
 * hook gathers n doubles from each process, in rank order, and returns
 * the procs x n of them (storage of the hook's, valid until the next
 * call); every process calls it at the same batchnorms in the same order.
 * NULL (the default): each process's own rows. */
typedef const double *(*RtBnGather)(const double *mine, int n);
void rt_set_bn_sync(RtBnGather gather, int procs);

/* Batch normalization. Training (training = 1): batch statistics (biased
 * variance to normalize), saves mean and invstd, and updates the running
 * statistics with momentum (unbiased variance, as PyTorch). Evaluation
 * (training = 0): uses the running statistics; mean and invstd may be
 * NULL. work: BATCHNORM_WORK_BYTES(C) bytes, 64-byte aligned. */
void batchnorm_forward(float *y, float *mean, float *invstd, void *work,
                       float *run_mean, float *run_var, const float *x,
                       const float *gamma, const float *beta,
                       const BnShape *s, float momentum, float eps,
                       int training);
/* relu(batchnorm(x)) in one pass, as batchnorm_forward then relu_forward
 * (the same arguments and bits). */
void batchnorm_relu_forward(float *y, float *mean, float *invstd, void *work,
                            float *run_mean, float *run_var, const float *x,
                            const float *gamma, const float *beta,
                            const BnShape *s, float momentum, float eps,
                            int training);
/* relu(batchnorm(x)) from the mean and invstd a training forward saved:
 * the very values that forward computed (for the backward pass, which
 * does not keep them). work as in batchnorm_forward. */
void batchnorm_relu_recompute(float *y, void *work, const float *x,
                              const float *mean, const float *invstd,
                              const float *gamma, const float *beta,
                              const BnShape *s);
/* dx may be NULL (dgamma and dbeta only); work as in batchnorm_forward. */
void batchnorm_backward(float *dx, float *dgamma, float *dbeta, void *work,
                        const float *dy, const float *x, const float *mean,
                        const float *invstd, const float *gamma,
                        const BnShape *s, int acc_dx, int acc_dw);
/* relu_backward (dy where y > 0, y the relu's output) then
 * batchnorm_backward, without writing the masked gradient: the same bits
 * as the two calls. */
void batchnorm_relu_backward(float *dx, float *dgamma, float *dbeta,
                             void *work, const float *dy, const float *x,
                             const float *mean, const float *invstd,
                             const float *y, const float *gamma,
                             const BnShape *s, int acc_dx, int acc_dw);

void relu_forward(float *y, const float *x, const EltShape *s);
/* dx = dy where y > 0, else 0. */
void relu_backward(float *dx, const float *dy, const float *y,
                   const EltShape *s, int acc);

/* y = 1 / (1 + exp(-x)), computed as exp(x) / (1 + exp(x)) for x < 0 so
 * that no exp overflows. */
void sigmoid_forward(float *y, const float *x, const EltShape *s);
/* dx = dy * y * (1 - y), y the forward's output. */
void sigmoid_backward(float *dx, const float *dy, const float *y,
                      const EltShape *s, int acc);

/* Squeeze-excitation's scale: y[n, p, c] = x[n, p, c] * s[n, c], s one
 * factor per channel of each image (N x C). */
void scale_forward(float *y, const float *x, const float *sc,
                   const GapShape *s);
/* dx = dy * s. */
void scale_backward(float *dx, const float *dy, const float *sc,
                    const GapShape *s, int acc);
/* ds[n, c] = the sum over the image's pixels p of dy[n, p, c] * x[n, p, c],
 * in double, in pixel order: the same for any thread count. */
void scale_backward_s(float *ds, const float *dy, const float *x,
                      const GapShape *s, int acc);

/* Inverted dropout, as nn.Dropout(p): in training, y = x / (1 - p) where
 * the step's mask keeps element e, else 0; in evaluation y = x. The mask
 * is a hash of (key, salt, e), so the backward pass recomputes it and no
 * thread count changes it; key is the step's (rt_step_key). */
void dropout_forward(float *y, const float *x, const DropShape *s,
                     uint64_t key, int training);
/* dx = dy / (1 - p) where the mask of the same key kept, else 0. */
void dropout_backward(float *dx, const float *dy, const DropShape *s,
                      uint64_t key, int acc);

/* ---- dropout's random numbers: pure functions of their arguments, so
 * that --resume and any thread count give the same masks, and so that
 * tests/reference/torch_ref.py computes the same ones ------------------ */

static inline uint64_t rt_splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
/* The key of one training forward: the run's seed, the global step, the
 * process's rank and the micro-batch (train --accumulate). */
static inline uint64_t rt_step_key(uint64_t seed, uint64_t step,
                                   uint64_t rank, uint64_t micro) {
  uint64_t k = rt_splitmix64(seed);
  k = rt_splitmix64(k ^ step);
  k = rt_splitmix64(k ^ rank);
  return rt_splitmix64(k ^ micro);
}
/* FNV-1a of a layer's name. */
static inline uint32_t rt_dropout_salt(const char *name) {
  uint32_t h = 2166136261u;
  for (; *name; name++)
    h = (h ^ (unsigned char)*name) * 16777619u;
  return h;
}
static inline uint32_t rt_mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  return h ^ (h >> 16);
}
/* Element e is kept when the top 24 bits of its hash, a uniform number
 * in [0, 2^24), are at least p * 2^24: with probability 1 - p. The layer
 * key is rt_splitmix64(step key ^ salt). */
static inline uint32_t rt_dropout_threshold(float p) {
  return (uint32_t)((double)p * 16777216.0 + 0.5);
}
static inline int rt_dropout_kept(uint64_t layer_key, int64_t e,
                                  uint32_t threshold) {
  uint32_t lo = (uint32_t)e, hi = (uint32_t)((uint64_t)e >> 32);
  uint32_t h = rt_mix32(lo ^ (uint32_t)layer_key);
  h = rt_mix32(h ^ (hi + (uint32_t)(layer_key >> 32)));
  return (h >> 8) >= threshold;
}

void add_forward(float *y, const float *a, const float *b, const EltShape *s);
/* relu(a + b) in one pass. */
void add_relu_forward(float *y, const float *a, const float *b,
                      const EltShape *s);
/* y = a + b: two gradient contributions. */
void grad_add(float *y, const float *a, const float *b, const EltShape *s);

/* Max pooling; padding never wins (it is -infinity, as PyTorch).
 * argmax holds, per output, the flat input index h * W + w it came from. */
void maxpool_forward(float *y, int32_t *argmax, const float *x,
                     const PoolShape *s);
void maxpool_backward(float *dx, const float *dy, const int32_t *argmax,
                      const PoolShape *s, int acc);

/* Average pooling counting padding (PyTorch's count_include_pad=True). */
void avgpool_forward(float *y, const float *x, const PoolShape *s);
void avgpool_backward(float *dx, const float *dy, const PoolShape *s,
                      int acc);

void global_avgpool_forward(float *y, const float *x, const GapShape *s);
void global_avgpool_backward(float *dx, const float *dy, const GapShape *s,
                             int acc);

/* b may be NULL; dx may be NULL. */
void dense_forward(float *y, const float *x, const float *w, const float *b,
                   const DenseShape *s);
void dense_backward(float *dx, float *dw, float *db, const float *dy,
                    const float *x, const float *w, const DenseShape *s,
                    int acc_dx, int acc_dw);

/* Softmax cross-entropy, mean over the batch, against targets smoothed
 * by `smoothing` ((1 - e) onehot + e / C; 0: the labels). Writes the
 * probabilities (N, C) and returns the loss. A label outside 0..C-1 is a
 * caller bug. */
float softmax_xent_forward(float *probs, const float *logits,
                           const int32_t *labels, const XentShape *s,
                           float smoothing);
/* dlogits = (probs - target) * scale / N, the target as above. scale is the batch's
 * share of the loss: 1, or 1 / (processes x accumulated micro-batches),
 * so that gradients summed over those are the global batch's mean. */
void softmax_xent_backward(float *dlogits, const float *probs,
                           const int32_t *labels, const XentShape *s,
                           int acc, float scale, float smoothing);

/* ---- naive references (reference.c): obviously correct loops, no BLAS,
 * no threads. For the tests. ---- */
void rt_ref_conv_forward(float *y, const float *x, const float *w,
                         const float *b, const ConvShape *s);
void rt_ref_conv_backward(float *dx, float *dw, float *db, const float *dy,
                          const float *x, const float *w, const ConvShape *s);
void rt_ref_batchnorm_forward(float *y, float *mean, float *invstd,
                              const float *x, const float *gamma,
                              const float *beta, const BnShape *s, float eps);
void rt_ref_maxpool_forward(float *y, const float *x, const PoolShape *s);
void rt_ref_avgpool_forward(float *y, const float *x, const PoolShape *s);
void rt_ref_dense_forward(float *y, const float *x, const float *w,
                          const float *b, const DenseShape *s);
void rt_ref_sigmoid_forward(float *y, const float *x, const EltShape *s);

#endif
