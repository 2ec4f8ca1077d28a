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
 * - In place: y may equal x in relu_forward and add_forward; dx may equal
 *   dy in relu_backward, batchnorm_backward and grad_add (with NETC_WRITE).
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

/* A convolution: N images of H x W x C in, OH x OW x OC out. */
typedef struct {
  int N, H, W, C;   /* input */
  int OC, K, stride, pad;
  int OH, OW;       /* output */
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

/* Batchnorm's workspace: per-chunk partial sums (BN_CHUNKS chunks of rows,
 * fewer if M < BN_CHUNKS, 2 x C doubles each; a fixed chunk count, so the
 * sums, and so the results, are the same for every thread count) and
 * 4 x C floats of per-channel factors. The compiler sizes the plan's
 * workspace with this. All three batchnorm kernels take one; it holds
 * nothing between calls, so layers may share it. */
enum { BN_CHUNKS = 16 };
#define BATCHNORM_WORK_BYTES(C)                                              \
  ((int64_t)BN_CHUNKS * 2 * (C) * 8 + (int64_t)4 * (C) * 4)

/* ---- kernels ------------------------------------------------------------ */

/* Convolution over the whole batch: im2col into `cols` (N*OH*OW rows of
 * K*K*C), then one sgemm. cols may be NULL for a 1x1, stride-1, pad-0
 * convolution, which multiplies x directly. b may be NULL (no bias). */
void conv_forward(float *y, float *cols, const float *x, const float *w,
                  const float *b, const ConvShape *s);
/* dx may be NULL (no input gradient: the first layer). dw always, db if
 * non-NULL. cols as in conv_forward (scratch, clobbered). */
void conv_backward(float *dx, float *dw, float *db, float *cols,
                   const float *dy, const float *x, const float *w,
                   const ConvShape *s, int acc_dx, int acc_dw);

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

void relu_forward(float *y, const float *x, const EltShape *s);
/* dx = dy where y > 0, else 0. */
void relu_backward(float *dx, const float *dy, const float *y,
                   const EltShape *s, int acc);

void add_forward(float *y, const float *a, const float *b, const EltShape *s);
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

/* Softmax cross-entropy, mean over the batch. Writes the probabilities
 * (N, C) and returns the loss. A label outside 0..C-1 is a caller bug. */
float softmax_xent_forward(float *probs, const float *logits,
                           const int32_t *labels, const XentShape *s);
/* dlogits = (probs - onehot(labels)) / N. */
void softmax_xent_backward(float *dlogits, const float *probs,
                           const int32_t *labels, const XentShape *s,
                           int acc);

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

#endif
