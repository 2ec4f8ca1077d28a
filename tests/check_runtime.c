/* check_runtime.c: the runtime kernels (runtime/kernels.c) against their
 * naive references (runtime/reference.c) and against central finite
 * differences, plus the contracts of netc_rt.h: acc flags, in-place
 * calls, batchnorm running statistics, and thread-count independence. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_netc.h"
#include "netc_rt.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state;

/* A fixed seed per test: every run sees the same numbers. */
static void seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ULL + 1; }

/* Uniform in [-1, 1) (xorshift64*). */
static float frand(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  uint64_t r = rng_state * 0x2545F4914F6CDD1DULL;
  return (float)((double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *alloc_f(int64_t n) {
  float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
  ck_assert_ptr_nonnull(p);
  return p;
}

static float *randv(int64_t n) {
  float *p = alloc_f(n);
  for (int64_t i = 0; i < n; i++)
    p[i] = frand();
  return p;
}

/* NaN by default: an acc = 0 kernel must overwrite every element. */
static float *filled(int64_t n, float v) {
  float *p = alloc_f(n);
  for (int64_t i = 0; i < n; i++)
    p[i] = v;
  return p;
}

static float *copyv(const float *a, int64_t n) {
  float *p = alloc_f(n);
  memcpy(p, a, (size_t)n * sizeof *p);
  return p;
}

/* Every a[i] within atol + rtol * |b[i]| of b[i]; names the first miss. */
static void expect_close(const char *what, const float *a, const float *b,
                         int64_t n, double atol, double rtol) {
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    ck_assert_msg(d <= atol + rtol * fabs(b[i]), "%s[%lld]: %.9g vs %.9g",
                  what, (long long)i, a[i], b[i]);
  }
}

/* A kernel run with acc = 1 on a buffer of ones gives 1 + its acc = 0
 * result. */
static void expect_plus_one(const char *what, const float *acc1,
                            const float *acc0, int64_t n) {
  float *want = alloc_f(n);
  for (int64_t i = 0; i < n; i++)
    want[i] = 1.0f + acc0[i];
  expect_close(what, acc1, want, n, 1e-6, 1e-6);
  free(want);
}

/* sum(y .* r) in double: the scalar whose gradient the tests check. */
static double dot(const float *y, const float *r, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += (double)y[i] * r[i];
  return s;
}

/* Compares the analytic gradient g of loss() with respect to p against
 * central differences, on every element. The step is taken as the float
 * difference actually applied, so the division is exact. */
static void expect_fd(const char *what, float *p, const float *g, int64_t n,
                      double (*loss)(void *), void *ctx) {
  const float h = 1e-2f;
  for (int64_t i = 0; i < n; i++) {
    float keep = p[i], hi = keep + h, lo = keep - h;
    p[i] = hi;
    double lp = loss(ctx);
    p[i] = lo;
    double lm = loss(ctx);
    p[i] = keep;
    double num = (lp - lm) / ((double)hi - lo);
    ck_assert_msg(fabs(g[i] - num) <= 1e-3 + 1e-2 * fabs(num),
                  "d%s[%lld]: analytic %.7g, numeric %.7g", what,
                  (long long)i, g[i], num);
  }
}

/* ---- convolution fixtures ----------------------------------------------- */

typedef struct {
  int N, H, W, C, OC, K, stride, pad, null_cols;
} ConvShape;

/* Odd sizes: strides that drop edges, pad >= K/2, 1x1 both ways. */
static const ConvShape conv_shapes[] = {
    {2, 7, 5, 3, 4, 3, 2, 1, 0}, {1, 9, 9, 5, 6, 1, 1, 0, 1},
    {3, 6, 7, 2, 5, 5, 3, 2, 0}, {2, 4, 4, 3, 2, 1, 2, 0, 0},
    {1, 5, 5, 4, 3, 7, 1, 3, 0}, {2, 3, 5, 4, 3, 1, 1, 0, 0},
};
#define NCONV ((int)(sizeof conv_shapes / sizeof conv_shapes[0]))

typedef struct {
  ConvShape s;
  int OH, OW;
  int64_t nx, nw, ny;
  float *x, *w, *b, *cols, *y, *r; /* r: the weights of L = sum(y .* r) */
} Conv;

static Conv conv_make(const ConvShape *s) {
  Conv c = {.s = *s};
  c.OH = (s->H + 2 * s->pad - s->K) / s->stride + 1;
  c.OW = (s->W + 2 * s->pad - s->K) / s->stride + 1;
  c.nx = (int64_t)s->N * s->H * s->W * s->C;
  c.nw = (int64_t)s->OC * s->K * s->K * s->C;
  c.ny = (int64_t)s->N * c.OH * c.OW * s->OC;
  c.x = randv(c.nx);
  c.w = randv(c.nw);
  c.b = randv(s->OC);
  /* NaN scratch: im2col must write every element, padding included. */
  c.cols = s->null_cols
               ? NULL
               : filled((int64_t)s->N * c.OH * c.OW * s->K * s->K * s->C, NAN);
  c.y = alloc_f(c.ny);
  c.r = randv(c.ny);
  return c;
}

static void conv_free(Conv *c) {
  free(c->x);
  free(c->w);
  free(c->b);
  free(c->cols);
  free(c->y);
  free(c->r);
}

static void conv_fwd(Conv *c, float *y, const float *b) {
  const ConvShape *s = &c->s;
  conv_forward(y, c->cols, c->x, c->w, b, s->N, s->H, s->W, s->C, s->OC, s->K,
               s->stride, s->pad, c->OH, c->OW);
}

static void conv_bwd(Conv *c, float *dx, float *dw, float *db, int acc_dx,
                     int acc_dw) {
  const ConvShape *s = &c->s;
  conv_backward(dx, dw, db, c->cols, c->r, c->x, c->w, s->N, s->H, s->W, s->C,
                s->OC, s->K, s->stride, s->pad, c->OH, c->OW, acc_dx, acc_dw);
}

static double conv_loss(void *ctx) {
  Conv *c = ctx;
  conv_fwd(c, c->y, c->b);
  return dot(c->y, c->r, c->ny);
}

/* ---- pooling fixtures --------------------------------------------------- */

typedef struct {
  int K, stride, pad;
} PoolShape;

static const PoolShape pool_shapes[] = {{3, 2, 1}, {2, 2, 0}, {3, 1, 1},
                                        {3, 3, 0}};
#define NPOOL ((int)(sizeof pool_shapes / sizeof pool_shapes[0]))

typedef struct {
  int N, H, W, C, K, stride, pad, OH, OW, avg;
  int64_t nx, ny;
  float *x, *y, *r;
  int32_t *argmax;
} Pooling;

/* x holds distinct values at least 0.05 apart, so no window has a tie and
 * no finite-difference step (1e-2) changes a max. */
static Pooling pooling_make(const PoolShape *ps, int avg) {
  Pooling p = {.N = 2, .H = 7, .W = 5, .C = 3, .K = ps->K,
               .stride = ps->stride, .pad = ps->pad, .avg = avg};
  p.OH = (p.H + 2 * p.pad - p.K) / p.stride + 1;
  p.OW = (p.W + 2 * p.pad - p.K) / p.stride + 1;
  p.nx = (int64_t)p.N * p.H * p.W * p.C;
  p.ny = (int64_t)p.N * p.OH * p.OW * p.C;
  p.x = alloc_f(p.nx);
  for (int64_t i = 0; i < p.nx; i++)
    p.x[i] = 0.05f * (float)(i - p.nx / 2);
  for (int64_t i = p.nx - 1; i > 0; i--) { /* shuffle */
    int64_t j = (int64_t)((frand() + 1.0f) * 0.5f * (float)(i + 1)) % (i + 1);
    float t = p.x[i];
    p.x[i] = p.x[j];
    p.x[j] = t;
  }
  p.y = alloc_f(p.ny);
  p.r = randv(p.ny);
  p.argmax = malloc((size_t)p.ny * sizeof *p.argmax);
  return p;
}

static void pooling_free(Pooling *p) {
  free(p->x);
  free(p->y);
  free(p->r);
  free(p->argmax);
}

static void pooling_fwd(Pooling *p, float *y) {
  if (p->avg)
    avgpool_forward(y, p->x, p->N, p->H, p->W, p->C, p->K, p->stride, p->pad,
                    p->OH, p->OW);
  else
    maxpool_forward(y, p->argmax, p->x, p->N, p->H, p->W, p->C, p->K,
                    p->stride, p->pad, p->OH, p->OW);
}

/* Needs a pooling_fwd first for maxpool's argmax. */
static void pooling_bwd(Pooling *p, float *dx, int acc) {
  if (p->avg)
    avgpool_backward(dx, p->r, p->N, p->H, p->W, p->C, p->K, p->stride,
                     p->pad, p->OH, p->OW, acc);
  else
    maxpool_backward(dx, p->r, p->argmax, p->N, p->H, p->W, p->C, p->OH,
                     p->OW, acc);
}

static double pooling_loss(void *ctx) {
  Pooling *p = ctx;
  pooling_fwd(p, p->y);
  return dot(p->y, p->r, p->ny);
}

/* ---- (a) forward kernels against the references ------------------------- */

START_TEST(test_conv_forward) {
  seed(100 + (uint64_t)_i);
  Conv c = conv_make(&conv_shapes[_i]);
  const ConvShape *s = &c.s;
  float *want = alloc_f(c.ny);
  for (int bias = 0; bias < 2; bias++) {
    const float *b = bias ? c.b : NULL;
    conv_fwd(&c, c.y, b);
    rt_ref_conv_forward(want, c.x, c.w, b, s->N, s->H, s->W, s->C, s->OC,
                        s->K, s->stride, s->pad, c.OH, c.OW);
    expect_close("conv y", c.y, want, c.ny, 1e-5, 1e-5);
  }
  free(want);
  conv_free(&c);
}
END_TEST

START_TEST(test_pool_forward) {
  seed(200 + (uint64_t)_i);
  for (int avg = 0; avg < 2; avg++) {
    Pooling p = pooling_make(&pool_shapes[_i], avg);
    for (int64_t i = 0; i < p.nx; i++)
      p.x[i] = frand(); /* plain random values: ties don't matter here */
    float *want = alloc_f(p.ny);
    pooling_fwd(&p, p.y);
    if (avg)
      rt_ref_avgpool_forward(want, p.x, p.N, p.H, p.W, p.C, p.K, p.stride,
                             p.pad, p.OH, p.OW);
    else
      rt_ref_maxpool_forward(want, p.x, p.N, p.H, p.W, p.C, p.K, p.stride,
                             p.pad, p.OH, p.OW);
    expect_close(avg ? "avgpool y" : "maxpool y", p.y, want, p.ny, 1e-6,
                 1e-5);
    for (int64_t i = 0; !avg && i < p.ny; i++) { /* argmax points at y */
      int64_t n = i / ((int64_t)p.OH * p.OW * p.C), c = i % p.C;
      ck_assert_int_ge(p.argmax[i], 0);
      ck_assert_int_lt(p.argmax[i], p.H * p.W);
      ck_assert_float_eq(p.x[(n * p.H * p.W + p.argmax[i]) * p.C + c], p.y[i]);
    }
    free(want);
    pooling_free(&p);
  }
}
END_TEST

/* Padding: -infinity for max (all-negative inputs stay negative), zero
 * but counted for average (a corner 3x3 window over ones is 4/9). Ties
 * go to the first tap in (kh, kw) order, as in PyTorch. */
START_TEST(test_pool_padding) {
  float x[3 * 3], y[3 * 3];
  int32_t am[3 * 3];
  for (int i = 0; i < 9; i++)
    x[i] = -1.0f - (float)i;
  maxpool_forward(y, am, x, 1, 3, 3, 1, 3, 1, 1, 3, 3);
  ck_assert_float_eq(y[0], -1.0f);
  ck_assert_int_eq(am[0], 0);
  ck_assert_float_eq(y[8], -5.0f);
  ck_assert_int_eq(am[8], 4);
  for (int i = 0; i < 9; i++)
    x[i] = 1.0f;
  avgpool_forward(y, x, 1, 3, 3, 1, 3, 1, 1, 3, 3);
  ck_assert_float_eq_tol(y[0], 4.0f / 9.0f, 1e-7f);
  ck_assert_float_eq_tol(y[1], 6.0f / 9.0f, 1e-7f);
  ck_assert_float_eq_tol(y[4], 1.0f, 1e-7f);
  maxpool_forward(y, am, x, 1, 3, 3, 1, 3, 1, 1, 3, 3); /* ties: first */
  ck_assert_int_eq(am[0], 0);
  ck_assert_int_eq(am[4], 0);
  ck_assert_int_eq(am[8], 4);
}
END_TEST

START_TEST(test_dense_forward) {
  seed(300);
  enum { N = 3, IN = 7, OUT = 5 };
  float *x = randv(N * IN), *w = randv(OUT * IN), *b = randv(OUT);
  float y[N * OUT], want[N * OUT];
  for (int bias = 0; bias < 2; bias++) {
    dense_forward(y, x, w, bias ? b : NULL, N, IN, OUT);
    rt_ref_dense_forward(want, x, w, bias ? b : NULL, N, IN, OUT);
    expect_close("dense y", y, want, N * OUT, 1e-6, 1e-5);
  }
  free(x);
  free(w);
  free(b);
}
END_TEST

START_TEST(test_batchnorm_forward) {
  seed(400);
  enum { M = 2 * 5 * 3, C = 5 };
  float *x = randv(M * C), *gamma = randv(C), *beta = randv(C);
  for (int i = 0; i < M * C; i++)
    x[i] = 3.0f * x[i] + (float)(i % C); /* a different mean per channel */
  float y[M * C], mean[C], invstd[C], ym[M * C], mm[C], im[C];
  batchnorm_forward(y, mean, invstd, NULL, NULL, x, gamma, beta, M, C, 0.1f,
                    1e-5f, 1);
  rt_ref_batchnorm_forward(ym, mm, im, x, gamma, beta, M, C, 1e-5f);
  expect_close("bn y", y, ym, M * C, 1e-5, 1e-5);
  expect_close("bn mean", mean, mm, C, 1e-6, 1e-5);
  expect_close("bn invstd", invstd, im, C, 1e-6, 1e-5);
  free(x);
  free(gamma);
  free(beta);
}
END_TEST

START_TEST(test_global_avgpool_forward) {
  seed(500);
  enum { N = 3, HW = 7, C = 5 };
  float *x = randv(N * HW * C), y[N * C], want[N * C];
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (int i = 0; i < HW; i++)
        s += x[(n * HW + i) * C + c];
      want[n * C + c] = (float)(s / HW);
    }
  global_avgpool_forward(y, x, N, HW, C);
  expect_close("gap y", y, want, N * C, 1e-6, 1e-5);
  free(x);
}
END_TEST

/* Against a double-precision softmax; large logits must not overflow. */
START_TEST(test_softmax_forward) {
  seed(600);
  enum { N = 4, C = 7 };
  float *l = randv(N * C), p[N * C], want[N * C];
  int32_t labels[N] = {0, 6, 3, 2};
  for (int i = 0; i < N * C; i++)
    l[i] *= (i < C) ? 1000.0f : 4.0f; /* row 0: exp would overflow */
  double loss = 0;
  for (int n = 0; n < N; n++) {
    double mx = l[n * C], s = 0;
    for (int c = 1; c < C; c++)
      mx = fmax(mx, l[n * C + c]);
    for (int c = 0; c < C; c++)
      s += exp(l[n * C + c] - mx);
    for (int c = 0; c < C; c++)
      want[n * C + c] = (float)(exp(l[n * C + c] - mx) / s);
    loss += log(s) - (l[n * C + labels[n]] - mx);
  }
  float got = softmax_xent_forward(p, l, labels, N, C);
  ck_assert(isfinite(got));
  ck_assert_double_eq_tol(got, loss / N, 1e-5 * (1 + loss / N));
  expect_close("probs", p, want, N * C, 1e-7, 1e-5);
  free(l);
}
END_TEST

START_TEST(test_elementwise_forward) {
  float x[] = {-2.0f, -0.0f, 0.0f, 0.5f, 3.0f, -1e-30f};
  float b[] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f}, y[6];
  relu_forward(y, x, 6);
  float want[] = {0.0f, 0.0f, 0.0f, 0.5f, 3.0f, 0.0f};
  expect_close("relu y", y, want, 6, 0, 0);
  add_forward(y, x, b, 6);
  for (int i = 0; i < 6; i++)
    ck_assert_float_eq(y[i], x[i] + b[i]);
  grad_add(y, b, b, 6);
  for (int i = 0; i < 6; i++)
    ck_assert_float_eq(y[i], 2 * b[i]);
}
END_TEST

/* ---- (b) backward kernels against finite differences -------------------- */

/* Also against rt_ref_conv_backward, which shares no code with it. */
START_TEST(test_conv_grad) {
  seed(700 + (uint64_t)_i);
  Conv c = conv_make(&conv_shapes[_i]);
  const ConvShape *s = &c.s;
  float *dx = filled(c.nx, NAN), *dw = filled(c.nw, NAN);
  float *db = filled(s->OC, NAN);
  conv_bwd(&c, dx, dw, db, 0, 0);
  float *rx = alloc_f(c.nx), *rw = alloc_f(c.nw), *rb = alloc_f(s->OC);
  rt_ref_conv_backward(rx, rw, rb, c.r, c.x, c.w, s->N, s->H, s->W, s->C,
                       s->OC, s->K, s->stride, s->pad, c.OH, c.OW);
  expect_close("conv dx vs ref", dx, rx, c.nx, 1e-5, 1e-5);
  expect_close("conv dw vs ref", dw, rw, c.nw, 1e-5, 1e-5);
  expect_close("conv db vs ref", db, rb, s->OC, 1e-5, 1e-5);
  expect_fd("x", c.x, dx, c.nx, conv_loss, &c);
  expect_fd("w", c.w, dw, c.nw, conv_loss, &c);
  expect_fd("b", c.b, db, s->OC, conv_loss, &c);
  /* No input gradient (the first layer): dw and db alone, same values. */
  float *dw2 = filled(c.nw, NAN);
  conv_bwd(&c, NULL, dw2, NULL, 0, 0);
  expect_close("conv dw (dx NULL)", dw2, dw, c.nw, 0, 1e-6);
  free(dw2);
  free(rx), free(rw), free(rb);
  free(dx), free(dw), free(db);
  conv_free(&c);
}
END_TEST

typedef struct {
  int M, C;
  float *x, *gamma, *beta, *y, *mean, *invstd, *r;
} BN;

static BN bn_make(int M, int C) {
  BN b = {.M = M, .C = C};
  b.x = randv((int64_t)M * C);
  for (int64_t i = 0; i < (int64_t)M * C; i++)
    b.x[i] = 2.0f * b.x[i] + 0.5f * (float)(i % C);
  b.gamma = randv(C);
  for (int c = 0; c < C; c++)
    b.gamma[c] += 1.5f; /* away from zero */
  b.beta = randv(C);
  b.y = alloc_f((int64_t)M * C);
  b.mean = alloc_f(C);
  b.invstd = alloc_f(C);
  b.r = randv((int64_t)M * C);
  return b;
}

static void bn_free(BN *b) {
  free(b->x), free(b->gamma), free(b->beta), free(b->y);
  free(b->mean), free(b->invstd), free(b->r);
}

/* Training mode, no running statistics. */
static void bn_fwd(BN *b) {
  batchnorm_forward(b->y, b->mean, b->invstd, NULL, NULL, b->x, b->gamma,
                    b->beta, b->M, b->C, 0.1f, 1e-5f, 1);
}

static double bn_loss(void *ctx) {
  BN *b = ctx;
  bn_fwd(b);
  return dot(b->y, b->r, (int64_t)b->M * b->C);
}

START_TEST(test_batchnorm_grad) {
  seed(800);
  BN b = bn_make(2 * 3 * 5, 4);
  int64_t n = (int64_t)b.M * b.C;
  float *dx = filled(n, NAN), dg[4], dbt[4];
  bn_fwd(&b);
  batchnorm_backward(dx, dg, dbt, b.r, b.x, b.mean, b.invstd, b.gamma, b.M,
                     b.C, 0, 0);
  expect_fd("x", b.x, dx, n, bn_loss, &b);
  expect_fd("gamma", b.gamma, dg, b.C, bn_loss, &b);
  expect_fd("beta", b.beta, dbt, b.C, bn_loss, &b);
  free(dx);
  bn_free(&b);
}
END_TEST

START_TEST(test_pool_grad) {
  seed(900 + (uint64_t)_i);
  for (int avg = 0; avg < 2; avg++) {
    Pooling p = pooling_make(&pool_shapes[_i], avg);
    float *dx = filled(p.nx, NAN);
    pooling_fwd(&p, p.y);
    pooling_bwd(&p, dx, 0);
    expect_fd(avg ? "x (avgpool)" : "x (maxpool)", p.x, dx, p.nx, pooling_loss,
              &p);
    free(dx);
    pooling_free(&p);
  }
}
END_TEST

typedef struct {
  int N, HW, C;
  float *x, *y, *r;
} GAP;

static double gap_loss(void *ctx) {
  GAP *g = ctx;
  global_avgpool_forward(g->y, g->x, g->N, g->HW, g->C);
  return dot(g->y, g->r, (int64_t)g->N * g->C);
}

START_TEST(test_global_avgpool_grad) {
  seed(1000);
  GAP g = {.N = 2, .HW = 7, .C = 3};
  g.x = randv(2 * 7 * 3);
  g.y = alloc_f(2 * 3);
  g.r = randv(2 * 3);
  float *dx = filled(2 * 7 * 3, NAN);
  global_avgpool_backward(dx, g.r, g.N, g.HW, g.C, 0);
  expect_fd("x", g.x, dx, 2 * 7 * 3, gap_loss, &g);
  free(dx), free(g.x), free(g.y), free(g.r);
}
END_TEST

typedef struct {
  int N, IN, OUT;
  float *x, *w, *b, *y, *r;
} Dense;

static Dense dense_make(void) {
  Dense d = {.N = 3, .IN = 7, .OUT = 5};
  d.x = randv(3 * 7);
  d.w = randv(5 * 7);
  d.b = randv(5);
  d.y = alloc_f(3 * 5);
  d.r = randv(3 * 5);
  return d;
}

static void dense_free(Dense *d) {
  free(d->x), free(d->w), free(d->b), free(d->y), free(d->r);
}

static double dense_loss(void *ctx) {
  Dense *d = ctx;
  dense_forward(d->y, d->x, d->w, d->b, d->N, d->IN, d->OUT);
  return dot(d->y, d->r, (int64_t)d->N * d->OUT);
}

START_TEST(test_dense_grad) {
  seed(1100);
  Dense d = dense_make();
  float *dx = filled(3 * 7, NAN), *dw = filled(5 * 7, NAN);
  float *db = filled(5, NAN);
  dense_backward(dx, dw, db, d.r, d.x, d.w, d.N, d.IN, d.OUT, 0, 0);
  expect_fd("x", d.x, dx, 3 * 7, dense_loss, &d);
  expect_fd("w", d.w, dw, 5 * 7, dense_loss, &d);
  expect_fd("b", d.b, db, 5, dense_loss, &d);
  free(dx), free(dw), free(db);
  dense_free(&d);
}
END_TEST

typedef struct {
  int N, C;
  float *logits, *probs;
  const int32_t *labels;
} Xent;

static double xent_loss(void *ctx) {
  Xent *s = ctx;
  return softmax_xent_forward(s->probs, s->logits, s->labels, s->N, s->C);
}

START_TEST(test_softmax_xent_grad) {
  seed(1200);
  static const int32_t labels[4] = {2, 0, 4, 4};
  Xent s = {.N = 4, .C = 5, .labels = labels};
  s.logits = randv(4 * 5);
  for (int i = 0; i < 4 * 5; i++)
    s.logits[i] *= 3.0f;
  s.probs = alloc_f(4 * 5);
  float *dl = filled(4 * 5, NAN);
  xent_loss(&s);
  softmax_xent_backward(dl, s.probs, labels, s.N, s.C, 0);
  expect_fd("logits", s.logits, dl, 4 * 5, xent_loss, &s);
  free(dl), free(s.logits), free(s.probs);
}
END_TEST

typedef struct {
  int64_t n;
  float *x, *y, *r;
} Relu;

static double relu_loss(void *ctx) {
  Relu *s = ctx;
  relu_forward(s->y, s->x, s->n);
  return dot(s->y, s->r, s->n);
}

/* Inputs stay at least 0.05 from the kink at 0. */
START_TEST(test_relu_grad) {
  seed(1300);
  Relu s = {.n = 37};
  s.x = randv(s.n);
  for (int64_t i = 0; i < s.n; i++)
    if (fabsf(s.x[i]) < 0.05f)
      s.x[i] = s.x[i] < 0 ? -0.5f : 0.5f;
  s.y = alloc_f(s.n);
  s.r = randv(s.n);
  float *dx = filled(s.n, NAN);
  relu_forward(s.y, s.x, s.n);
  relu_backward(dx, s.r, s.y, s.n, 0);
  expect_fd("x", s.x, dx, s.n, relu_loss, &s);
  free(dx), free(s.x), free(s.y), free(s.r);
}
END_TEST

/* ---- (c) acc flags: 1 adds, 0 overwrites -------------------------------- */

/* Both flags independently, on the im2col path and on the direct 1x1. */
START_TEST(test_acc_conv) {
  seed(1400 + (uint64_t)_i);
  Conv c = conv_make(&conv_shapes[_i]);
  int64_t noc = c.s.OC;
  float *dx0 = filled(c.nx, NAN), *dw0 = filled(c.nw, NAN);
  float *db0 = filled(noc, NAN);
  conv_bwd(&c, dx0, dw0, db0, 0, 0);
  for (int flags = 1; flags < 4; flags++) {
    int acc_dx = flags & 1, acc_dw = flags >> 1;
    float *dx = filled(c.nx, acc_dx ? 1.0f : NAN);
    float *dw = filled(c.nw, acc_dw ? 1.0f : NAN);
    float *db = filled(noc, acc_dw ? 1.0f : NAN);
    conv_bwd(&c, dx, dw, db, acc_dx, acc_dw);
    if (acc_dx)
      expect_plus_one("conv dx", dx, dx0, c.nx);
    else
      expect_close("conv dx", dx, dx0, c.nx, 0, 1e-6);
    if (acc_dw) {
      expect_plus_one("conv dw", dw, dw0, c.nw);
      expect_plus_one("conv db", db, db0, noc);
    } else {
      expect_close("conv dw", dw, dw0, c.nw, 0, 1e-6);
      expect_close("conv db", db, db0, noc, 0, 1e-6);
    }
    free(dx), free(dw), free(db);
  }
  free(dx0), free(dw0), free(db0);
  conv_free(&c);
}
END_TEST

START_TEST(test_acc_dense) {
  seed(1500);
  Dense d = dense_make();
  float *dx0 = filled(3 * 7, NAN), *dw0 = filled(5 * 7, NAN);
  float *db0 = filled(5, NAN);
  float *dx = filled(3 * 7, 1), *dw = filled(5 * 7, 1), *db = filled(5, 1);
  dense_backward(dx0, dw0, db0, d.r, d.x, d.w, d.N, d.IN, d.OUT, 0, 0);
  dense_backward(dx, dw, db, d.r, d.x, d.w, d.N, d.IN, d.OUT, 1, 1);
  expect_plus_one("dense dx", dx, dx0, 3 * 7);
  expect_plus_one("dense dw", dw, dw0, 5 * 7);
  expect_plus_one("dense db", db, db0, 5);
  /* acc_dw alone leaves dx overwritten. */
  float *dx2 = filled(3 * 7, NAN);
  dense_backward(dx2, dw, db, d.r, d.x, d.w, d.N, d.IN, d.OUT, 0, 1);
  expect_close("dense dx", dx2, dx0, 3 * 7, 0, 1e-6);
  free(dx0), free(dw0), free(db0), free(dx), free(dw), free(db), free(dx2);
  dense_free(&d);
}
END_TEST

START_TEST(test_acc_pool) {
  seed(1600);
  for (int avg = 0; avg < 2; avg++) {
    Pooling p = pooling_make(&pool_shapes[0], avg);
    float *dx0 = filled(p.nx, NAN), *dx1 = filled(p.nx, 1);
    pooling_fwd(&p, p.y);
    pooling_bwd(&p, dx0, 0);
    pooling_bwd(&p, dx1, 1);
    expect_plus_one(avg ? "avgpool dx" : "maxpool dx", dx1, dx0, p.nx);
    free(dx0), free(dx1);
    pooling_free(&p);
  }
  float *dy = randv(2 * 3), *g0 = filled(2 * 7 * 3, NAN);
  float *g1 = filled(2 * 7 * 3, 1);
  global_avgpool_backward(g0, dy, 2, 7, 3, 0);
  global_avgpool_backward(g1, dy, 2, 7, 3, 1);
  expect_plus_one("global_avgpool dx", g1, g0, 2 * 7 * 3);
  free(dy), free(g0), free(g1);
}
END_TEST

START_TEST(test_acc_batchnorm) {
  seed(1700);
  BN b = bn_make(15, 3);
  int64_t n = 15 * 3;
  float *dx0 = filled(n, NAN), dg0[3], db0[3];
  float *dx1 = filled(n, 1), dg1[3] = {1, 1, 1}, db1[3] = {1, 1, 1};
  bn_fwd(&b);
  batchnorm_backward(dx0, dg0, db0, b.r, b.x, b.mean, b.invstd, b.gamma, 15,
                     3, 0, 0);
  batchnorm_backward(dx1, dg1, db1, b.r, b.x, b.mean, b.invstd, b.gamma, 15,
                     3, 1, 1);
  expect_plus_one("bn dx", dx1, dx0, n);
  expect_plus_one("bn dgamma", dg1, dg0, 3);
  expect_plus_one("bn dbeta", db1, db0, 3);
  free(dx0), free(dx1);
  bn_free(&b);
}
END_TEST

START_TEST(test_acc_elementwise) {
  seed(1800);
  enum { N = 4, C = 5 };
  float *y = randv(N * C), *dy = randv(N * C);
  float *g0 = filled(N * C, NAN), *g1 = filled(N * C, 1);
  relu_backward(g0, dy, y, N * C, 0);
  relu_backward(g1, dy, y, N * C, 1);
  expect_plus_one("relu dx", g1, g0, N * C);
  static const int32_t labels[N] = {1, 4, 0, 0};
  float *probs = alloc_f(N * C), *g2 = filled(N * C, NAN);
  float *g3 = filled(N * C, 1);
  softmax_xent_forward(probs, y, labels, N, C);
  softmax_xent_backward(g2, probs, labels, N, C, 0);
  softmax_xent_backward(g3, probs, labels, N, C, 1);
  expect_plus_one("softmax dlogits", g3, g2, N * C);
  free(y), free(dy), free(g0), free(g1), free(probs), free(g2), free(g3);
}
END_TEST

/* ---- (d) in place ------------------------------------------------------- */

START_TEST(test_in_place) {
  seed(1900);
  enum { N = 41 };
  float *x = randv(N), *a = randv(N), *b = randv(N), *out = alloc_f(N);
  float *io = copyv(x, N);
  relu_forward(out, x, N);
  relu_forward(io, io, N);
  expect_close("relu y in place", io, out, N, 0, 0);
  float *y = copyv(out, N);
  relu_backward(out, a, y, N, 0);
  memcpy(io, a, sizeof(float) * N);
  relu_backward(io, io, y, N, 0);
  expect_close("relu dx in place", io, out, N, 0, 0);
  grad_add(out, a, b, N);
  memcpy(io, a, sizeof(float) * N);
  grad_add(io, io, b, N);
  expect_close("grad_add in place", io, out, N, 0, 0);
  add_forward(out, a, b, N);
  memcpy(io, a, sizeof(float) * N);
  add_forward(io, io, b, N);
  expect_close("add in place", io, out, N, 0, 0);
  free(x), free(a), free(b), free(out), free(io), free(y);
}
END_TEST

/* The backward pass's copy of relu(batchnorm(x)) is the forward's, bit for
 * bit (netc keeps one of the two, not both). */
START_TEST(test_batchnorm_relu_recompute) {
  seed(2300);
  BN b = bn_make(37, 19);
  bn_fwd(&b);
  relu_forward(b.y, b.y, 37 * 19);
  float *again = filled(37 * 19, NAN);
  batchnorm_relu_recompute(again, b.x, b.mean, b.invstd, b.gamma, b.beta, 37,
                           19);
  ck_assert_int_eq(memcmp(again, b.y, sizeof(float) * 37 * 19), 0);
  int zeros = 0;
  for (int i = 0; i < 37 * 19; i++)
    zeros += again[i] == 0.0f;
  ck_assert_int_gt(zeros, 0); /* the relu did cut something */
  free(again);
  bn_free(&b);
}
END_TEST

START_TEST(test_batchnorm_in_place) {
  seed(2000);
  BN b = bn_make(21, 5);
  int64_t n = 21 * 5;
  float *dx = alloc_f(n), *io = copyv(b.r, n), dg[5], dbt[5], dg2[5], db2[5];
  bn_fwd(&b);
  batchnorm_backward(dx, dg, dbt, b.r, b.x, b.mean, b.invstd, b.gamma, 21, 5,
                     0, 0);
  batchnorm_backward(io, dg2, db2, io, b.x, b.mean, b.invstd, b.gamma, 21, 5,
                     0, 0);
  expect_close("bn dx in place", io, dx, n, 0, 1e-6);
  expect_close("bn dgamma in place", dg2, dg, 5, 0, 1e-6);
  expect_close("bn dbeta in place", db2, dbt, 5, 0, 1e-6);
  free(dx), free(io);
  bn_free(&b);
}
END_TEST

/* ---- (e) batchnorm running statistics ----------------------------------- */

START_TEST(test_batchnorm_running_stats) {
  seed(2100);
  enum { M = 18, C = 3 };
  BN b = bn_make(M, C);
  float rm[C] = {0, 0, 0}, rv[C] = {1, 1, 1};
  batchnorm_forward(b.y, b.mean, b.invstd, rm, rv, b.x, b.gamma, b.beta, M, C,
                    0.1f, 1e-5f, 1);
  for (int c = 0; c < C; c++) {
    double s = 0, v = 0;
    for (int m = 0; m < M; m++)
      s += b.x[m * C + c];
    for (int m = 0; m < M; m++)
      v += (b.x[m * C + c] - s / M) * (b.x[m * C + c] - s / M);
    ck_assert_double_eq_tol(rm[c], 0.1 * s / M, 1e-6);
    ck_assert_double_eq_tol(rv[c], 0.9 + 0.1 * v / (M - 1), 1e-6);
  }
  /* Evaluation: the running statistics, which it leaves alone. */
  float y[M * C], rm2[C], rv2[C];
  memcpy(rm2, rm, sizeof rm), memcpy(rv2, rv, sizeof rv);
  batchnorm_forward(y, NULL, NULL, rm, rv, b.x, b.gamma, b.beta, M, C, 0.1f,
                    1e-5f, 0);
  for (int i = 0; i < M * C; i++) {
    int c = i % C;
    double want =
        (b.x[i] - rm[c]) / sqrt(rv[c] + 1e-5) * b.gamma[c] + b.beta[c];
    ck_assert_double_eq_tol(y[i], want, 1e-5 * (1 + fabs(want)));
  }
  expect_close("run_mean after eval", rm, rm2, C, 0, 0);
  expect_close("run_var after eval", rv, rv2, C, 0, 0);
  bn_free(&b);
}
END_TEST

/* ---- (f) thread count --------------------------------------------------- */

/* Conv forward and backward with n threads, into fresh buffers. */
static void conv_all(Conv *c, int n, float **out) {
  rt_set_threads(n);
  ck_assert_int_eq(rt_threads(), n);
  out[0] = alloc_f(c->ny);
  out[1] = alloc_f(c->nx);
  out[2] = alloc_f(c->nw);
  out[3] = alloc_f(c->s.OC);
  conv_fwd(c, out[0], c->b);
  conv_bwd(c, out[1], out[2], out[3], 0, 0);
}

/* Big enough that OpenBLAS really splits its GEMMs. */
START_TEST(test_threads_agree) {
  seed(2200);
  ConvShape s = {4, 13, 11, 8, 16, 3, 1, 1, 0};
  Conv c = conv_make(&s);
  int before = rt_threads();
  float *one[4], *two[4];
  conv_all(&c, 1, one);
  conv_all(&c, 2, two);
  rt_set_threads(before);
  int64_t n[4] = {c.ny, c.nx, c.nw, s.OC};
  const char *what[4] = {"y", "dx", "dw", "db"};
  for (int k = 0; k < 4; k++) {
    double big = 0;
    for (int64_t i = 0; i < n[k]; i++)
      big = fmax(big, fabs(one[k][i]));
    expect_close(what[k], two[k], one[k], n[k], 1e-6 * big, 1e-6);
    free(one[k]), free(two[k]);
  }
  conv_free(&c);
}
END_TEST

Suite *suite_runtime(void) {
  Suite *s = suite_create("runtime");
  TCase *tc = tcase_create("forward");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_conv_forward, 0, NCONV);
  tcase_add_loop_test(tc, test_pool_forward, 0, NPOOL);
  tcase_add_test(tc, test_pool_padding);
  tcase_add_test(tc, test_dense_forward);
  tcase_add_test(tc, test_batchnorm_forward);
  tcase_add_test(tc, test_global_avgpool_forward);
  tcase_add_test(tc, test_softmax_forward);
  tcase_add_test(tc, test_elementwise_forward);
  suite_add_tcase(s, tc);
  tc = tcase_create("gradients");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_conv_grad, 0, NCONV);
  tcase_add_test(tc, test_batchnorm_grad);
  tcase_add_loop_test(tc, test_pool_grad, 0, NPOOL);
  tcase_add_test(tc, test_global_avgpool_grad);
  tcase_add_test(tc, test_dense_grad);
  tcase_add_test(tc, test_softmax_xent_grad);
  tcase_add_test(tc, test_relu_grad);
  suite_add_tcase(s, tc);
  tc = tcase_create("contracts");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_acc_conv, 0, NCONV);
  tcase_add_test(tc, test_acc_dense);
  tcase_add_test(tc, test_acc_pool);
  tcase_add_test(tc, test_acc_batchnorm);
  tcase_add_test(tc, test_acc_elementwise);
  tcase_add_test(tc, test_in_place);
  tcase_add_test(tc, test_batchnorm_in_place);
  tcase_add_test(tc, test_batchnorm_relu_recompute);
  tcase_add_test(tc, test_batchnorm_running_stats);
  tcase_add_test(tc, test_threads_agree);
  suite_add_tcase(s, tc);
  return s;
}
