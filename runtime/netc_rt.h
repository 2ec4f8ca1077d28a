/* netc_rt.h: the runtime library that netc-generated trainers link against.
 *
 * Conventions, everywhere:
 * - Activations are NHWC: x[((n * H + h) * W + w) * C + c], float32.
 * - Conv weights are (C_out, K, K, C_in) (PyTorch's (C_out, C_in, K, K)
 *   with C_in moved last); dense weights are (out, in) as in PyTorch.
 * - Every op is a _forward / _backward pair with one argument order:
 *   outputs, saved state, scratch, inputs, weights, then sizes, then flags.
 * - `acc` flags: 0 writes the result (=), 1 adds it (+=). A gradient used
 *   twice (a residual input) or a shared weight's later use passes 1.
 * - In place: y may equal x in relu_forward and add_forward; dx may equal
 *   dy in relu_backward, batchnorm_backward and grad_add (with acc = 0).
 * - Non-GEMM loops are parallel with OpenMP; GEMMs call cblas_sgemm.
 *   rt_set_threads() sets both.
 * Each op also has a naive reference (rt_ref_*, reference.c), used by the
 * tests only. */
#ifndef NETC_RT_H
#define NETC_RT_H

#include <stdint.h>

void rt_set_threads(int n);
int rt_threads(void);

/* Convolution over the whole batch: im2col into `cols` (N*OH*OW rows of
 * K*K*C), then one sgemm. cols may be NULL for a 1x1, stride-1, pad-0
 * convolution, which multiplies x directly. b may be NULL (no bias). */
void conv_forward(float *y, float *cols, const float *x, const float *w,
                  const float *b, int N, int H, int W, int C, int OC, int K,
                  int stride, int pad, int OH, int OW);
/* dx may be NULL (no input gradient: the first layer). dw always, db if
 * non-NULL. cols as in conv_forward (scratch, clobbered). */
void conv_backward(float *dx, float *dw, float *db, float *cols,
                   const float *dy, const float *x, const float *w, int N,
                   int H, int W, int C, int OC, int K, int stride, int pad,
                   int OH, int OW, int acc_dx, int acc_dw);

/* Batch normalization over M = N*H*W rows of C channels. Training: batch
 * statistics (biased variance to normalize), saves mean and invstd, and
 * updates the running statistics with momentum (unbiased variance, as
 * PyTorch). Evaluation (training = 0): uses the running statistics; mean
 * and invstd may be NULL. */
void batchnorm_forward(float *y, float *mean, float *invstd, float *run_mean,
                       float *run_var, const float *x, const float *gamma,
                       const float *beta, int M, int C, float momentum,
                       float eps, int training);
/* relu(batchnorm(x)) from the mean and invstd a training forward saved:
 * the very values that forward computed (for the backward pass, which
 * does not keep them). */
void batchnorm_relu_recompute(float *y, const float *x, const float *mean,
                              const float *invstd, const float *gamma,
                              const float *beta, int M, int C);
void batchnorm_backward(float *dx, float *dgamma, float *dbeta,
                        const float *dy, const float *x, const float *mean,
                        const float *invstd, const float *gamma, int M, int C,
                        int acc_dx, int acc_dw);

void relu_forward(float *y, const float *x, int64_t n);
/* dx = dy where y > 0, else 0. */
void relu_backward(float *dx, const float *dy, const float *y, int64_t n,
                   int acc);

void add_forward(float *y, const float *a, const float *b, int64_t n);
/* y = a + b: two gradient contributions. */
void grad_add(float *y, const float *a, const float *b, int64_t n);

/* Max pooling; padding never wins (it is -infinity, as PyTorch).
 * argmax holds, per output, the flat input index h * W + w it came from. */
void maxpool_forward(float *y, int32_t *argmax, const float *x, int N, int H,
                     int W, int C, int K, int stride, int pad, int OH, int OW);
void maxpool_backward(float *dx, const float *dy, const int32_t *argmax,
                      int N, int H, int W, int C, int OH, int OW, int acc);

/* Average pooling counting padding (PyTorch's count_include_pad=True). */
void avgpool_forward(float *y, const float *x, int N, int H, int W, int C,
                     int K, int stride, int pad, int OH, int OW);
void avgpool_backward(float *dx, const float *dy, int N, int H, int W, int C,
                      int K, int stride, int pad, int OH, int OW, int acc);

/* Mean over H*W = HW positions: (N, HW, C) -> (N, C). */
void global_avgpool_forward(float *y, const float *x, int N, int HW, int C);
void global_avgpool_backward(float *dx, const float *dy, int N, int HW,
                             int C, int acc);

/* y (N, OUT) = x (N, IN) w^T + b. b may be NULL; dx may be NULL. */
void dense_forward(float *y, const float *x, const float *w, const float *b,
                   int N, int IN, int OUT);
void dense_backward(float *dx, float *dw, float *db, const float *dy,
                    const float *x, const float *w, int N, int IN, int OUT,
                    int acc_dx, int acc_dw);

/* Softmax cross-entropy, mean over the batch. Writes the probabilities
 * (N, C) and returns the loss. A label outside 0..C-1 is a caller bug. */
float softmax_xent_forward(float *probs, const float *logits,
                           const int32_t *labels, int N, int C);
/* dlogits = (probs - onehot(labels)) / N. */
void softmax_xent_backward(float *dlogits, const float *probs,
                           const int32_t *labels, int N, int C, int acc);

/* ---- naive references (reference.c): the same signatures, obviously
 * correct loops, no BLAS, no threads. For the tests. ---- */
void rt_ref_conv_forward(float *y, const float *x, const float *w,
                         const float *b, int N, int H, int W, int C, int OC,
                         int K, int stride, int pad, int OH, int OW);
void rt_ref_conv_backward(float *dx, float *dw, float *db, const float *dy,
                          const float *x, const float *w, int N, int H, int W,
                          int C, int OC, int K, int stride, int pad, int OH,
                          int OW);
void rt_ref_batchnorm_forward(float *y, float *mean, float *invstd,
                              const float *x, const float *gamma,
                              const float *beta, int M, int C, float eps);
void rt_ref_maxpool_forward(float *y, const float *x, int N, int H, int W,
                            int C, int K, int stride, int pad, int OH, int OW);
void rt_ref_avgpool_forward(float *y, const float *x, int N, int H, int W,
                            int C, int K, int stride, int pad, int OH, int OW);
void rt_ref_dense_forward(float *y, const float *x, const float *w,
                          const float *b, int N, int IN, int OUT);

#endif
