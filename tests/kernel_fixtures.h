/* kernel_fixtures.h: the helpers and fixtures of the kernel suites
 * (check_runtime.c, check_contracts.c), defined in kernel_fixtures.c. */
#ifndef KERNEL_FIXTURES_H
#define KERNEL_FIXTURES_H

#include <stdint.h>

#include "check_netc.h"
#include "kernels/netc_rt.h"
#include "util/util.h"

/* ---- helpers ------------------------------------------------------------ */

/* A fixed seed per test: every run sees the same numbers. */
void seed(uint64_t s);
/* Uniform in [-1, 1) (xorshift64*). */
float frand(void);
/* 64-byte aligned, as the plan places every tensor (the direct conv's
 * packed weights rely on it). */
float *alloc_f(int64_t n);
float *randv(int64_t n);
/* NaN by default: an acc = 0 kernel must overwrite every element. */
float *filled(int64_t n, float v);
float *copyv(const float *a, int64_t n);
/* A batchnorm workspace: BATCHNORM_WORK_BYTES(C), 64-byte aligned as
 * netc_rt.h asks, every byte 0xff (a NaN as float and as double): the
 * kernels must write whatever they read. */
void *bn_work(int C);

/* Every a[i] within atol + rtol * |b[i]| of b[i]; names the first miss. */
void expect_close(const char *what, const float *a, const float *b,
                  int64_t n, double atol, double rtol);
double max_abs(const float *a, int64_t n);
/* A kernel run with acc = 1 on a buffer of ones gives 1 + its acc = 0
 * result, to float rounding at the tensor's scale. */
void expect_plus_one(const char *what, const float *acc1, const float *acc0,
                     int64_t n);
/* Every a[i] within tol * max(1, max |b|) of b[i]: a convolution's float
 * error grows with its terms, not with each output's value. */
void expect_close_scaled(const char *what, const float *a, const float *b,
                         int64_t n, double tol);
/* sum(y .* r) in double: the scalar whose gradient the tests check. */
double dot(const float *y, const float *r, int64_t n);

/* The analytic gradient g of loss() with respect to p against central
 * differences of step fd_step (kernel_fixtures.c says which elements). */
extern float fd_step;
void expect_fd(const char *what, float *p, const float *g, int64_t n,
               double (*loss)(void *), void *ctx);

/* ---- convolution fixtures ----------------------------------------------- */

/* A test convolution: N, H, W, C, OC, K, stride, pad (conv_make fills in
 * OH and OW), and whether cols is NULL (allowed for 1x1/s1/p0 GEMM only). */
typedef struct {
  ConvShape s;
  int null_cols;
} ConvCase;
enum { NCONV = 23 }; /* the rows of conv_cases: keep it with the table */
extern const ConvCase conv_cases[NCONV];

/* Every way a convolution can run: im2col + sgemm, then netc's direct
 * kernels for each instruction set. The loop tests run case x variant for
 * the variants this CPU can run (conv_variants(), set up in the suite). */
typedef struct {
  int algo[CONV_PASSES], isa; /* forward, dX, dW */
  const char *name;
} ConvVariant;
enum { G = CONV_GEMM, D = CONV_DIRECT, WI = CONV_WINOGRAD, W4 = CONV_WINOGRAD4 };
extern const ConvVariant variants[];
/* How many leading entries of variants[] this CPU runs. */
int conv_variants(void);
/* The error allowed against the float64 reference, of the largest output. */
double conv_tolerance(const ConvShape *s);

typedef struct {
  ConvShape s;
  int64_t nx, nw, ny;
  float *x, *w, *b, *work, *y, *r; /* r: the weights of L = sum(y .* r) */
  const char *variant;
} Conv;

Conv conv_make(const ConvCase *cc, int variant);
/* Case i of the loop tests: conv_cases[i / nvariants] computed the way
 * of variants[i % nvariants]. */
Conv conv_make_case(int i);
void conv_free(Conv *c);
void conv_fwd(Conv *c, float *y, const float *b);
void conv_bwd(Conv *c, float *dx, float *dw, float *db, int acc_dx,
              int acc_dw);
double conv_loss(void *ctx);

/* ---- pooling fixtures --------------------------------------------------- */

/* The pooling tests' windows (on 2 x 7 x 5 x 3 inputs). */
typedef struct {
  int K, stride, pad;
} Window;
enum { NPOOL = 4 }; /* the rows of pool_windows */
extern const Window pool_windows[NPOOL];

typedef struct {
  PoolShape s;
  int avg;
  int64_t nx, ny;
  float *x, *y, *r;
  int32_t *argmax;
} Pooling;

/* x holds distinct values at least 0.05 apart, so no window has a tie and
 * no finite-difference step (1e-2) changes a max. */
Pooling pooling_make(const Window *win, int avg);
void pooling_free(Pooling *p);
void pooling_fwd(Pooling *p, float *y);
/* Needs a pooling_fwd first for maxpool's argmax. */
void pooling_bwd(Pooling *p, float *dx, int acc);
double pooling_loss(void *ctx);

/* ---- batchnorm and dense fixtures --------------------------------------- */

typedef struct {
  BnShape s;
  float *x, *gamma, *beta, *y, *mean, *invstd, *r;
  void *work;
} BN;

BN bn_make(int M, int C);
void bn_free(BN *b);
/* Training mode, no running statistics. */
void bn_fwd(BN *b);
/* dy = r into dx (NULL: dgamma and dbeta only). */
void bn_bwd(BN *b, float *dx, float *dg, float *dbeta, int acc_dx,
            int acc_dw);
double bn_loss(void *ctx);

typedef struct {
  DenseShape s;
  float *x, *w, *b, *y, *r;
} Dense;

Dense dense_make(void);
void dense_free(Dense *d);
double dense_loss(void *ctx);

#endif
