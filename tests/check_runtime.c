/* check_runtime.c: the runtime kernels (runtime/kernels.c) against their
 * naive references (runtime/reference.c) and against central finite
 * differences, plus the contracts of netc_rt.h: acc flags, in-place
 * calls, batchnorm running statistics, thread-count independence, and
 * that no kernel allocates (an allocation counter linked in with the
 * linker's --wrap). */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_netc.h"
#include "kernels/netc_rt.h"
#include "util/util.h"

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

/* 64-byte aligned, as the plan places every tensor (the direct conv's
 * packed weights rely on it). */
static float *alloc_f(int64_t n) {
  size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) / 64 * 64;
  float *p = aligned_alloc(64, bytes);
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

/* A batchnorm workspace: BATCHNORM_WORK_BYTES(C), 64-byte aligned as
 * netc_rt.h asks (aligned_alloc wants a multiple of the alignment). All
 * bytes 0xff, a NaN as float and as double: the kernels must write
 * whatever they read. */
static void *bn_work(int C) {
  size_t n = (size_t)(BATCHNORM_WORK_BYTES(C) + 63) / 64 * 64;
  void *p = aligned_alloc(64, n);
  ck_assert_ptr_nonnull(p);
  memset(p, 0xff, n);
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

static double max_abs(const float *a, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++)
    m = fmax(m, fabs(a[i]));
  return m;
}

/* A kernel run with acc = 1 on a buffer of ones gives 1 + its acc = 0
 * result, to float rounding at the tensor's scale: a kernel may add its
 * partial sums into the buffer one by one, each rounded at that scale. */
static void expect_plus_one(const char *what, const float *acc1,
                            const float *acc0, int64_t n) {
  float *want = alloc_f(n);
  for (int64_t i = 0; i < n; i++)
    want[i] = 1.0f + acc0[i];
  expect_close(what, acc1, want, n, 2e-6 * (1 + max_abs(acc0, n)), 1e-6);
  free(want);
}

/* Every a[i] within tol * max(1, max |b|) of b[i]: a convolution's float
 * error grows with its terms, not with each output's value. */
static void expect_close_scaled(const char *what, const float *a,
                                const float *b, int64_t n, double tol) {
  expect_close(what, a, b, n, tol * fmax(1, max_abs(b, n)), 0);
}

/* sum(y .* r) in double: the scalar whose gradient the tests check. */
static double dot(const float *y, const float *r, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += (double)y[i] * r[i];
  return s;
}

/* Compares the analytic gradient g of loss() with respect to p against
 * central differences, on every element of a small tensor and on 400
 * spread over a big one (every (n/400)-th, and the last). The step is
 * taken as the float difference actually applied, so the division is
 * exact. */
/* The finite differences' step. */
static float fd_step = 1e-2f;

static void fd_one(const char *what, float *p, const float *g, int64_t i,
                   double (*loss)(void *), void *ctx) {
  const float h = fd_step;
  float keep = p[i], hi = keep + h, lo = keep - h;
  p[i] = hi;
  double lp = loss(ctx);
  p[i] = lo;
  double lm = loss(ctx);
  p[i] = keep;
  double num = (lp - lm) / ((double)hi - lo);
  ck_assert_msg(fabs(g[i] - num) <= 1e-3 + 1e-2 * fabs(num),
                "d%s[%lld]: analytic %.7g, numeric %.7g", what, (long long)i,
                g[i], num);
}

static void expect_fd(const char *what, float *p, const float *g, int64_t n,
                      double (*loss)(void *), void *ctx) {
  int64_t step = n > 400 ? n / 400 : 1;
  for (int64_t i = 0; i < n; i += step)
    fd_one(what, p, g, i, loss, ctx);
  if ((n - 1) % step)
    fd_one(what, p, g, n - 1, loss, ctx);
}

/* ---- convolution fixtures ----------------------------------------------- */

/* A test convolution: N, H, W, C, OC, K, stride, pad (conv_make fills in
 * OH and OW), and whether cols is NULL (allowed for 1x1/s1/p0 GEMM only). */
typedef struct {
  ConvShape s;
  int null_cols;
} ConvCase;

/* Odd sizes: strides that drop edges, pad >= K/2, 1x1 both ways; then
 * the maps the residual stages end on (2x2, 1x1, 4x4) with channel counts
 * that fill one register block and spill into the next; pad 3 on a 3x3,
 * whose corner windows see no input at all; batch 1. */
static const ConvCase conv_cases[] = {
    {{2, 7, 5, 3, 4, 3, 2, 1, 0, 0, 0, 0, 0}, 0},
    {{1, 9, 9, 5, 6, 1, 1, 0, 0, 0, 0, 0, 0}, 1},
    {{3, 6, 7, 2, 5, 5, 3, 2, 0, 0, 0, 0, 0}, 0},
    {{2, 4, 4, 3, 2, 1, 2, 0, 0, 0, 0, 0, 0}, 0},
    {{1, 5, 5, 4, 3, 7, 1, 3, 0, 0, 0, 0, 0}, 0},
    {{2, 3, 5, 4, 3, 1, 1, 0, 0, 0, 0, 0, 0}, 0},
    {{3, 2, 2, 17, 33, 3, 1, 1, 0, 0, 0, 0, 0}, 0},
    {{2, 1, 1, 20, 7, 3, 1, 1, 0, 0, 0, 0, 0}, 0},
    {{2, 4, 4, 40, 35, 3, 2, 1, 0, 0, 0, 0, 0}, 0},
    {{1, 4, 4, 33, 18, 3, 1, 3, 0, 0, 0, 0, 0}, 0},
    {{1, 2, 2, 16, 32, 1, 1, 0, 0, 0, 0, 0, 0}, 0},
    /* 3x3 stride 1 (Winograd's): pad 0 and 2, odd outputs (edge tiles) */
    {{2, 5, 7, 5, 6, 3, 1, 0, 0, 0, 0, 0, 0}, 0},
    {{1, 5, 6, 16, 17, 3, 1, 2, 0, 0, 0, 0, 0}, 0},
    /* several F(4x4) tiles per image, ragged at the edge; channels over
     * one register block on both ISAs, and a partial last block */
    {{2, 9, 10, 40, 70, 3, 1, 1, 0, 0, 0, 0, 0}, 0},
};
#define NCONV ((int)(sizeof conv_cases / sizeof conv_cases[0]))

/* Every way a convolution can run: im2col + sgemm, then netc's direct
 * kernels for each instruction set. The loop tests run case x variant for
 * the variants this CPU can run (conv_variants(), set up in the suite). */
typedef struct {
  int algo[CONV_PASSES], isa; /* forward, dX, dW */
  const char *name;
} ConvVariant;
enum { G = CONV_GEMM, D = CONV_DIRECT, WI = CONV_WINOGRAD, W4 = CONV_WINOGRAD4 };
/* Winograd runs the 3x3 stride-1 cases; on the others it is GEMM. Its
 * products run in netc's tiles, so it is tested on each ISA. The AVX-512
 * variants come last: a CPU without it runs the leading ones. */
static const ConvVariant variants[] = {
    {{G, G, G}, RT_ISA_AVX2, "gemm"},
    {{D, D, D}, RT_ISA_AVX2, "direct avx2"},
    {{WI, WI, WI}, RT_ISA_AVX2, "winograd avx2"},
    {{W4, W4, W4}, RT_ISA_AVX2, "winograd4 avx2"},
    /* mixed: a backward workspace must hold what each of its passes needs */
    {{D, G, D}, RT_ISA_AVX2, "direct, gemm dX, direct dW"},
    {{G, D, WI}, RT_ISA_AVX2, "gemm, direct dX, winograd dW"},
    {{W4, WI, D}, RT_ISA_AVX2, "winograd4, winograd dX, direct dW"},
    {{D, D, D}, RT_ISA_AVX512, "direct avx512"},
    {{WI, WI, WI}, RT_ISA_AVX512, "winograd avx512"},
    {{W4, W4, W4}, RT_ISA_AVX512, "winograd4 avx512"},
};
static int nvariants; /* the leading entries of variants[] this CPU runs */

static int conv_variants(void) {
  if (!nvariants) {
    int all = (int)(sizeof variants / sizeof variants[0]);
    while (nvariants < all && rt_cpu_has_isa(variants[nvariants].isa))
      nvariants++;
    if (nvariants < all)
      fprintf(stderr, "note: this CPU has no AVX-512: the avx512 kernels "
                      "are not tested here\n");
  }
  return nvariants;
}

/* The error allowed against the float64 reference, of the largest
 * output. F(4x4, 3x3) is the least accurate algorithm: its transforms
 * scale by up to 8 and 1/24 (docs/kernels.md measures up to 1.6e-5 on
 * ResNet layers). */
static double conv_tolerance(const ConvShape *s) {
  for (int p = 0; p < CONV_PASSES; p++)
    if (conv_algo_of(s, p) == CONV_WINOGRAD4)
      return 6e-5;
  return 1e-5;
}

typedef struct {
  ConvShape s;
  int64_t nx, nw, ny;
  float *x, *w, *b, *work, *y, *r; /* r: the weights of L = sum(y .* r) */
  const char *variant;
} Conv;

/* Case i of the loop tests: conv_cases[i / nvariants] computed the way
 * of variants[i % nvariants]. */
static Conv conv_make(const ConvCase *cc, int variant) {
  const ConvVariant *v = &variants[variant];
  Conv c = {.s = cc->s, .variant = v->name};
  ConvShape *s = &c.s;
  s->OH = (s->H + 2 * s->pad - s->K) / s->stride + 1;
  s->OW = (s->W + 2 * s->pad - s->K) / s->stride + 1;
  s->algo = v->algo[CONV_PASS_FWD];
  s->algo_dx = v->algo[CONV_PASS_DX];
  s->algo_dw = v->algo[CONV_PASS_DW];
  ck_assert_msg(rt_set_isa(v->isa) == 0, "cannot run %s", v->name);
  c.nx = (int64_t)s->N * s->H * s->W * s->C;
  c.nw = (int64_t)s->OC * s->K * s->K * s->C;
  c.ny = (int64_t)s->N * s->OH * s->OW * s->OC;
  c.x = randv(c.nx);
  c.w = randv(c.nw);
  c.b = randv(s->OC);
  /* NaN workspace: every kernel must write what it reads, im2col the
   * padding included. */
  int64_t nwork = conv_work_floats(s, 0) > conv_work_floats(s, 1)
                      ? conv_work_floats(s, 0)
                      : conv_work_floats(s, 1);
  c.work = nwork == 0 && cc->null_cols ? NULL : filled(nwork, NAN);
  c.y = alloc_f(c.ny);
  c.r = randv(c.ny);
  return c;
}

static Conv conv_make_case(int i) {
  int nv = conv_variants();
  return conv_make(&conv_cases[i / nv], i % nv);
}

static void conv_free(Conv *c) {
  free(c->x);
  free(c->w);
  free(c->b);
  free(c->work);
  free(c->y);
  free(c->r);
}

static void conv_fwd(Conv *c, float *y, const float *b) {
  conv_forward(y, c->work, c->x, c->w, b, &c->s);
}

static void conv_bwd(Conv *c, float *dx, float *dw, float *db, int acc_dx,
                     int acc_dw) {
  conv_backward(dx, dw, db, c->work, c->r, c->x, c->w, &c->s, acc_dx,
                acc_dw);
}

static double conv_loss(void *ctx) {
  Conv *c = ctx;
  conv_fwd(c, c->y, c->b);
  return dot(c->y, c->r, c->ny);
}

/* ---- pooling fixtures --------------------------------------------------- */

/* The pooling tests' windows (on 2 x 7 x 5 x 3 inputs). */
typedef struct {
  int K, stride, pad;
} Window;

static const Window pool_windows[] = {{3, 2, 1}, {2, 2, 0}, {3, 1, 1},
                                      {3, 3, 0}};
#define NPOOL ((int)(sizeof pool_windows / sizeof pool_windows[0]))

typedef struct {
  PoolShape s;
  int avg;
  int64_t nx, ny;
  float *x, *y, *r;
  int32_t *argmax;
} Pooling;

/* x holds distinct values at least 0.05 apart, so no window has a tie and
 * no finite-difference step (1e-2) changes a max. */
static Pooling pooling_make(const Window *win, int avg) {
  Pooling p = {.s = {.N = 2, .H = 7, .W = 5, .C = 3, .K = win->K,
                     .stride = win->stride, .pad = win->pad},
               .avg = avg};
  PoolShape *s = &p.s;
  s->OH = (s->H + 2 * s->pad - s->K) / s->stride + 1;
  s->OW = (s->W + 2 * s->pad - s->K) / s->stride + 1;
  p.nx = (int64_t)s->N * s->H * s->W * s->C;
  p.ny = (int64_t)s->N * s->OH * s->OW * s->C;
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
    avgpool_forward(y, p->x, &p->s);
  else
    maxpool_forward(y, p->argmax, p->x, &p->s);
}

/* Needs a pooling_fwd first for maxpool's argmax. */
static void pooling_bwd(Pooling *p, float *dx, int acc) {
  if (p->avg)
    avgpool_backward(dx, p->r, &p->s, acc);
  else
    maxpool_backward(dx, p->r, p->argmax, &p->s, acc);
}

static double pooling_loss(void *ctx) {
  Pooling *p = ctx;
  pooling_fwd(p, p->y);
  return dot(p->y, p->r, p->ny);
}

/* ---- (a) forward kernels against the references ------------------------- */

START_TEST(test_conv_forward) {
  seed(100 + (uint64_t)_i);
  Conv c = conv_make_case(_i);
  float *want = alloc_f(c.ny);
  for (int bias = 0; bias < 2; bias++) {
    const float *b = bias ? c.b : NULL;
    conv_fwd(&c, c.y, b);
    rt_ref_conv_forward(want, c.x, c.w, b, &c.s);
    expect_close_scaled(c.variant, c.y, want, c.ny, conv_tolerance(&c.s));
  }
  free(want);
  conv_free(&c);
}
END_TEST

START_TEST(test_pool_forward) {
  seed(200 + (uint64_t)_i);
  for (int avg = 0; avg < 2; avg++) {
    Pooling p = pooling_make(&pool_windows[_i], avg);
    const PoolShape *s = &p.s;
    for (int64_t i = 0; i < p.nx; i++)
      p.x[i] = frand(); /* plain random values: ties don't matter here */
    float *want = alloc_f(p.ny);
    pooling_fwd(&p, p.y);
    if (avg)
      rt_ref_avgpool_forward(want, p.x, s);
    else
      rt_ref_maxpool_forward(want, p.x, s);
    expect_close(avg ? "avgpool y" : "maxpool y", p.y, want, p.ny, 1e-6,
                 1e-5);
    for (int64_t i = 0; !avg && i < p.ny; i++) { /* argmax points at y */
      int64_t n = i / ((int64_t)s->OH * s->OW * s->C), c = i % s->C;
      ck_assert_int_ge(p.argmax[i], 0);
      ck_assert_int_lt(p.argmax[i], s->H * s->W);
      ck_assert_float_eq(p.x[(n * s->H * s->W + p.argmax[i]) * s->C + c],
                         p.y[i]);
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
  const PoolShape s = {.N = 1, .H = 3, .W = 3, .C = 1, .K = 3, .stride = 1,
                       .pad = 1, .OH = 3, .OW = 3};
  for (int i = 0; i < 9; i++)
    x[i] = -1.0f - (float)i;
  maxpool_forward(y, am, x, &s);
  ck_assert_float_eq(y[0], -1.0f);
  ck_assert_int_eq(am[0], 0);
  ck_assert_float_eq(y[8], -5.0f);
  ck_assert_int_eq(am[8], 4);
  for (int i = 0; i < 9; i++)
    x[i] = 1.0f;
  avgpool_forward(y, x, &s);
  ck_assert_float_eq_tol(y[0], 4.0f / 9.0f, 1e-7f);
  ck_assert_float_eq_tol(y[1], 6.0f / 9.0f, 1e-7f);
  ck_assert_float_eq_tol(y[4], 1.0f, 1e-7f);
  maxpool_forward(y, am, x, &s); /* ties: first */
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
  const DenseShape s = {N, IN, OUT};
  for (int bias = 0; bias < 2; bias++) {
    dense_forward(y, x, w, bias ? b : NULL, &s);
    rt_ref_dense_forward(want, x, w, bias ? b : NULL, &s);
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
  const BnShape s = {M, C};
  void *work = bn_work(C);
  batchnorm_forward(y, mean, invstd, work, NULL, NULL, x, gamma, beta, &s,
                    0.1f, 1e-5f, 1);
  rt_ref_batchnorm_forward(ym, mm, im, x, gamma, beta, &s, 1e-5f);
  expect_close("bn y", y, ym, M * C, 1e-5, 1e-5);
  expect_close("bn mean", mean, mm, C, 1e-6, 1e-5);
  expect_close("bn invstd", invstd, im, C, 1e-6, 1e-5);
  free(work);
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
  global_avgpool_forward(y, x, &(GapShape){N, HW, C});
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
  float got = softmax_xent_forward(p, l, labels, &(XentShape){N, C}, 0.0f);
  ck_assert(isfinite(got));
  ck_assert_double_eq_tol(got, loss / N, 1e-5 * (1 + loss / N));
  expect_close("probs", p, want, N * C, 1e-7, 1e-5);
  free(l);
}
END_TEST

START_TEST(test_elementwise_forward) {
  float x[] = {-2.0f, -0.0f, 0.0f, 0.5f, 3.0f, -1e-30f};
  float b[] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f}, y[6];
  const EltShape s = {6};
  relu_forward(y, x, &s);
  float want[] = {0.0f, 0.0f, 0.0f, 0.5f, 3.0f, 0.0f};
  expect_close("relu y", y, want, 6, 0, 0);
  add_forward(y, x, b, &s);
  for (int i = 0; i < 6; i++)
    ck_assert_float_eq(y[i], x[i] + b[i]);
  grad_add(y, b, b, &s);
  for (int i = 0; i < 6; i++)
    ck_assert_float_eq(y[i], 2 * b[i]);
}
END_TEST

/* ---- (b) backward kernels against finite differences -------------------- */

/* Also against rt_ref_conv_backward, which shares no code with it. */
START_TEST(test_conv_grad) {
  seed(700 + (uint64_t)_i);
  Conv c = conv_make_case(_i);
  const ConvShape *s = &c.s;
  float *dx = filled(c.nx, NAN), *dw = filled(c.nw, NAN);
  float *db = filled(s->OC, NAN);
  conv_bwd(&c, dx, dw, db, 0, 0);
  float *rx = alloc_f(c.nx), *rw = alloc_f(c.nw), *rb = alloc_f(s->OC);
  rt_ref_conv_backward(rx, rw, rb, c.r, c.x, c.w, s);
  expect_close_scaled("conv dx vs ref", dx, rx, c.nx, conv_tolerance(s));
  expect_close_scaled("conv dw vs ref", dw, rw, c.nw, conv_tolerance(s));
  expect_close_scaled("conv db vs ref", db, rb, s->OC, conv_tolerance(s));
  /* The loss is linear in x, in w and in b: a long step has no truncation
   * error, and it divides the forward pass's own rounding noise. */
  fd_step = 0.5f;
  expect_fd("x", c.x, dx, c.nx, conv_loss, &c);
  expect_fd("w", c.w, dw, c.nw, conv_loss, &c);
  expect_fd("b", c.b, db, s->OC, conv_loss, &c);
  fd_step = 1e-2f;
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
  BnShape s;
  float *x, *gamma, *beta, *y, *mean, *invstd, *r;
  void *work;
} BN;

static BN bn_make(int M, int C) {
  BN b = {.s = {M, C}};
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
  b.work = bn_work(C);
  return b;
}

static void bn_free(BN *b) {
  free(b->x), free(b->gamma), free(b->beta), free(b->y);
  free(b->mean), free(b->invstd), free(b->r), free(b->work);
}

/* Training mode, no running statistics. */
static void bn_fwd(BN *b) {
  batchnorm_forward(b->y, b->mean, b->invstd, b->work, NULL, NULL, b->x,
                    b->gamma, b->beta, &b->s, 0.1f, 1e-5f, 1);
}

/* dy = r into dx (NULL: dgamma and dbeta only). */
static void bn_bwd(BN *b, float *dx, float *dg, float *dbeta, int acc_dx,
                   int acc_dw) {
  batchnorm_backward(dx, dg, dbeta, b->work, b->r, b->x, b->mean, b->invstd,
                     b->gamma, &b->s, acc_dx, acc_dw);
}

static double bn_loss(void *ctx) {
  BN *b = ctx;
  bn_fwd(b);
  return dot(b->y, b->r, b->s.M * b->s.C);
}

START_TEST(test_batchnorm_grad) {
  seed(800);
  BN b = bn_make(2 * 3 * 5, 4);
  int64_t n = b.s.M * b.s.C;
  float *dx = filled(n, NAN), dg[4], dbt[4];
  bn_fwd(&b);
  bn_bwd(&b, dx, dg, dbt, 0, 0);
  expect_fd("x", b.x, dx, n, bn_loss, &b);
  expect_fd("gamma", b.gamma, dg, b.s.C, bn_loss, &b);
  expect_fd("beta", b.beta, dbt, b.s.C, bn_loss, &b);
  /* No input gradient: the same dgamma and dbeta. */
  float dg2[4], dbt2[4];
  bn_bwd(&b, NULL, dg2, dbt2, 0, 0);
  expect_close("bn dgamma (dx NULL)", dg2, dg, b.s.C, 0, 0);
  expect_close("bn dbeta (dx NULL)", dbt2, dbt, b.s.C, 0, 0);
  free(dx);
  bn_free(&b);
}
END_TEST

START_TEST(test_pool_grad) {
  seed(900 + (uint64_t)_i);
  for (int avg = 0; avg < 2; avg++) {
    Pooling p = pooling_make(&pool_windows[_i], avg);
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
  GapShape s;
  float *x, *y, *r;
} GAP;

static double gap_loss(void *ctx) {
  GAP *g = ctx;
  global_avgpool_forward(g->y, g->x, &g->s);
  return dot(g->y, g->r, (int64_t)g->s.N * g->s.C);
}

START_TEST(test_global_avgpool_grad) {
  seed(1000);
  GAP g = {.s = {2, 7, 3}};
  g.x = randv(2 * 7 * 3);
  g.y = alloc_f(2 * 3);
  g.r = randv(2 * 3);
  float *dx = filled(2 * 7 * 3, NAN);
  global_avgpool_backward(dx, g.r, &g.s, 0);
  expect_fd("x", g.x, dx, 2 * 7 * 3, gap_loss, &g);
  free(dx), free(g.x), free(g.y), free(g.r);
}
END_TEST

typedef struct {
  DenseShape s;
  float *x, *w, *b, *y, *r;
} Dense;

static Dense dense_make(void) {
  Dense d = {.s = {3, 7, 5}};
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
  dense_forward(d->y, d->x, d->w, d->b, &d->s);
  return dot(d->y, d->r, (int64_t)d->s.N * d->s.OUT);
}

START_TEST(test_dense_grad) {
  seed(1100);
  Dense d = dense_make();
  float *dx = filled(3 * 7, NAN), *dw = filled(5 * 7, NAN);
  float *db = filled(5, NAN);
  dense_backward(dx, dw, db, d.r, d.x, d.w, &d.s, 0, 0);
  expect_fd("x", d.x, dx, 3 * 7, dense_loss, &d);
  expect_fd("w", d.w, dw, 5 * 7, dense_loss, &d);
  expect_fd("b", d.b, db, 5, dense_loss, &d);
  free(dx), free(dw), free(db);
  dense_free(&d);
}
END_TEST

typedef struct {
  XentShape s;
  float *logits, *probs;
  const int32_t *labels;
  float smoothing;
} Xent;

static double xent_loss(void *ctx) {
  Xent *x = ctx;
  return softmax_xent_forward(x->probs, x->logits, x->labels, &x->s,
                              x->smoothing);
}

/* Without and with label smoothing (train --label-smoothing). */
static const float xent_smoothing[] = {0.0f, 0.1f, 0.9f};

START_TEST(test_softmax_xent_grad) {
  seed(1200);
  static const int32_t labels[4] = {2, 0, 4, 4};
  Xent s = {.s = {4, 5}, .labels = labels, .smoothing = xent_smoothing[_i]};
  s.logits = randv(4 * 5);
  for (int i = 0; i < 4 * 5; i++)
    s.logits[i] *= 3.0f;
  s.probs = alloc_f(4 * 5);
  float *dl = filled(4 * 5, NAN);
  xent_loss(&s);
  softmax_xent_backward(dl, s.probs, labels, &s.s, 0, 1.0f, s.smoothing);
  expect_fd("logits", s.logits, dl, 4 * 5, xent_loss, &s);
  free(dl), free(s.logits), free(s.probs);
}
END_TEST

typedef struct {
  EltShape s;
  float *x, *y, *r;
} Relu;

static double relu_loss(void *ctx) {
  Relu *r = ctx;
  relu_forward(r->y, r->x, &r->s);
  return dot(r->y, r->r, r->s.n);
}

/* Inputs stay at least 0.05 from the kink at 0. */
START_TEST(test_relu_grad) {
  seed(1300);
  Relu s = {.s = {37}};
  int64_t n = s.s.n;
  s.x = randv(n);
  for (int64_t i = 0; i < n; i++)
    if (fabsf(s.x[i]) < 0.05f)
      s.x[i] = s.x[i] < 0 ? -0.5f : 0.5f;
  s.y = alloc_f(n);
  s.r = randv(n);
  float *dx = filled(n, NAN);
  relu_forward(s.y, s.x, &s.s);
  relu_backward(dx, s.r, s.y, &s.s, 0);
  expect_fd("x", s.x, dx, n, relu_loss, &s);
  free(dx), free(s.x), free(s.y), free(s.r);
}
END_TEST

/* ---- (c) acc flags: 1 adds, 0 overwrites -------------------------------- */

/* Both flags independently, on the im2col path and on the direct 1x1. */
START_TEST(test_acc_conv) {
  seed(1400 + (uint64_t)_i);
  Conv c = conv_make_case(_i);
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
  dense_backward(dx0, dw0, db0, d.r, d.x, d.w, &d.s, 0, 0);
  dense_backward(dx, dw, db, d.r, d.x, d.w, &d.s, 1, 1);
  expect_plus_one("dense dx", dx, dx0, 3 * 7);
  expect_plus_one("dense dw", dw, dw0, 5 * 7);
  expect_plus_one("dense db", db, db0, 5);
  /* acc_dw alone leaves dx overwritten. */
  float *dx2 = filled(3 * 7, NAN);
  dense_backward(dx2, dw, db, d.r, d.x, d.w, &d.s, 0, 1);
  expect_close("dense dx", dx2, dx0, 3 * 7, 0, 1e-6);
  free(dx0), free(dw0), free(db0), free(dx), free(dw), free(db), free(dx2);
  dense_free(&d);
}
END_TEST

START_TEST(test_acc_pool) {
  seed(1600);
  for (int avg = 0; avg < 2; avg++) {
    Pooling p = pooling_make(&pool_windows[0], avg);
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
  const GapShape gs = {2, 7, 3};
  global_avgpool_backward(g0, dy, &gs, 0);
  global_avgpool_backward(g1, dy, &gs, 1);
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
  bn_bwd(&b, dx0, dg0, db0, 0, 0);
  bn_bwd(&b, dx1, dg1, db1, 1, 1);
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
  const EltShape es = {N * C};
  relu_backward(g0, dy, y, &es, NETC_WRITE);
  relu_backward(g1, dy, y, &es, NETC_ADD);
  expect_plus_one("relu dx", g1, g0, N * C);
  static const int32_t labels[N] = {1, 4, 0, 0};
  float *probs = alloc_f(N * C), *g2 = filled(N * C, NAN);
  float *g3 = filled(N * C, 1);
  const XentShape xs = {N, C};
  softmax_xent_forward(probs, y, labels, &xs, 0.0f);
  softmax_xent_backward(g2, probs, labels, &xs, NETC_WRITE, 1.0f, 0.0f);
  softmax_xent_backward(g3, probs, labels, &xs, NETC_ADD, 1.0f, 0.0f);
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
  const EltShape s = {N};
  relu_forward(out, x, &s);
  relu_forward(io, io, &s);
  expect_close("relu y in place", io, out, N, 0, 0);
  float *y = copyv(out, N);
  relu_backward(out, a, y, &s, 0);
  memcpy(io, a, sizeof(float) * N);
  relu_backward(io, io, y, &s, 0);
  expect_close("relu dx in place", io, out, N, 0, 0);
  grad_add(out, a, b, &s);
  memcpy(io, a, sizeof(float) * N);
  grad_add(io, io, b, &s);
  expect_close("grad_add in place", io, out, N, 0, 0);
  add_forward(out, a, b, &s);
  memcpy(io, a, sizeof(float) * N);
  add_forward(io, io, b, &s);
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
  relu_forward(b.y, b.y, &(EltShape){37 * 19});
  float *again = filled(37 * 19, NAN);
  batchnorm_relu_recompute(again, b.work, b.x, b.mean, b.invstd, b.gamma,
                           b.beta, &b.s);
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
  bn_bwd(&b, dx, dg, dbt, 0, 0);
  batchnorm_backward(io, dg2, db2, b.work, io, b.x, b.mean, b.invstd, b.gamma,
                     &b.s, 0, 0);
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
  batchnorm_forward(b.y, b.mean, b.invstd, b.work, rm, rv, b.x, b.gamma,
                    b.beta, &b.s, 0.1f, 1e-5f, 1);
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
  batchnorm_forward(y, NULL, NULL, b.work, rm, rv, b.x, b.gamma, b.beta, &b.s,
                    0.1f, 1e-5f, 0);
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

/* Big enough that OpenBLAS really splits its GEMMs. Their outputs (y, dx,
 * dw) change in the last bits with the thread count (OpenBLAS's
 * business), so they get a rounding-level tolerance; db is our column
 * sum, the same bits for 1, 2 and 3 threads. */
START_TEST(test_threads_agree) {
  seed(2200);
  ConvCase cc = {{4, 13, 11, 8, 16, 3, 1, 1, 0, 0, 0, 0, 0}, 0};
  Conv c = conv_make(&cc, 0);
  int before = rt_threads();
  float *one[4], *more[4];
  conv_all(&c, 1, one);
  int64_t n[4] = {c.ny, c.nx, c.nw, c.s.OC};
  const char *what[4] = {"y", "dx", "dw", "db"};
  for (int threads = 2; threads <= 3; threads++) {
    conv_all(&c, threads, more);
    for (int k = 0; k < 3; k++) {
      double big = 0;
      for (int64_t i = 0; i < n[k]; i++)
        big = fmax(big, fabs(one[k][i]));
      expect_close(what[k], more[k], one[k], n[k], 1e-6 * big, 1e-6);
    }
    ck_assert_msg(!memcmp(more[3], one[3], (size_t)n[3] * sizeof(float)),
                  "conv db: %d threads differ from 1", threads);
    for (int k = 0; k < 4; k++)
      free(more[k]);
  }
  rt_set_threads(before);
  for (int k = 0; k < 4; k++)
    free(one[k]);
  conv_free(&c);
}
END_TEST

/* netc's own kernels (direct, and Winograd with its products in netc's
 * tiles) sum every output in one fixed order: the same bits for 1, 2 and
 * 3 threads, in all three passes, at stride 1 and 2. */
static const struct {
  const char *variant;
  int stride, C, K; /* pad K / 2 */
} bits_cases[] = {
    {"direct avx2", 1, 24, 3},      {"direct avx2", 2, 24, 3},
    {"direct avx512", 2, 24, 3},    {"winograd avx2", 1, 24, 3},
    {"winograd4 avx2", 1, 24, 3},   {"winograd avx512", 1, 24, 3},
    {"winograd4 avx512", 1, 24, 3},
    /* dW as a GEMM over rows: a pointwise layer, an RGB stem */
    {"direct avx2", 1, 40, 1},      {"direct avx512", 2, 3, 7},
};

START_TEST(test_own_kernels_threads_bits) {
  seed(2300 + (uint64_t)_i);
  int v = 0;
  while (v < conv_variants() && strcmp(variants[v].name, bits_cases[_i].variant))
    v++;
  if (v == conv_variants()) {
    fprintf(stderr, "note: %s does not run here\n", bits_cases[_i].variant);
    return;
  }
  int ksize = bits_cases[_i].K;
  ConvCase cc = {{5, 9, 7, bits_cases[_i].C, 40, ksize, bits_cases[_i].stride,
                  ksize / 2, 0, 0, 0, 0, 0}, 0};
  Conv c = conv_make(&cc, v);
  int before = rt_threads();
  float *one[4], *more[4];
  conv_all(&c, 1, one);
  int64_t n[4] = {c.ny, c.nx, c.nw, c.s.OC};
  const char *what[4] = {"y", "dx", "dw", "db"};
  for (int threads = 2; threads <= 3; threads++) {
    conv_all(&c, threads, more);
    for (int k = 0; k < 4; k++) {
      ck_assert_msg(!memcmp(more[k], one[k], (size_t)n[k] * sizeof(float)),
                    "%s %s: %d threads differ from 1", c.variant, what[k],
                    threads);
      free(more[k]);
    }
  }
  rt_set_threads(before);
  for (int k = 0; k < 4; k++)
    free(one[k]);
  conv_free(&c);
}
END_TEST

/* Batchnorm shapes for the thread-count test: M below BN_CHUNKS (one
 * chunk per row), and M a multiple of neither BN_CHUNKS nor 2 nor 3. */
static const BnShape bn_thread_shapes[] = {{7, 19}, {13, 8}, {37, 19},
                                           {1001, 6}};
#define NBNTHREADS ((int)(sizeof bn_thread_shapes / sizeof bn_thread_shapes[0]))

/* Sums whose float results depend on how the rows are grouped: in the even
 * channels of a (x or dy), random rows start a pair +H, -H (H = 1e17 is
 * exact in any order, but swallows the small values in double). A small
 * value followed by a pair vanishes in one running sum, yet survives if a
 * partial sum ends right after it. So a thread-dependent split of the
 * rows shows in the mean, dbeta and the rest. */
static void order_sensitive(float *a, int64_t M, int C) {
  const float H = 1e17f;
  for (int c = 0; c < C; c += 2)
    for (int64_t m = 1; m < M; m++)
      if (m + 1 < M && frand() > 0.0f) {
        a[m * C + c] = H;
        a[++m * C + c] = -H;
      }
}

/* x's mean of channel c, summed (as batchnorm does, shifted by row 0) in
 * one run over the rows or in two runs split at row `split`. */
static float split_mean(const float *x, int64_t M, int C, int c,
                        int64_t split) {
  double s1 = 0, s2 = 0;
  for (int64_t m = 0; m < M; m++)
    *(m < split ? &s1 : &s2) += (double)x[m * C + c] - x[c];
  return (float)(x[c] + (s1 + s2) / (double)M);
}

enum { BN_OUTS = 10 };

/* Every batchnorm kernel with n threads, into fresh buffers: training
 * forward (running statistics from 0 and 1), evaluation forward with
 * them, the relu recompute, the backward pass. */
static void bn_all(BN *b, int n, float **out) {
  rt_set_threads(n);
  ck_assert_int_eq(rt_threads(), n);
  int64_t MC = b->s.M * b->s.C, C = b->s.C;
  int64_t len[BN_OUTS] = {MC, C, C, C, C, MC, MC, MC, C, C};
  for (int k = 0; k < BN_OUTS; k++)
    out[k] = filled(len[k], NAN);
  for (int c = 0; c < C; c++)
    out[3][c] = 0.0f, out[4][c] = 1.0f;
  batchnorm_forward(out[0], out[1], out[2], b->work, out[3], out[4], b->x,
                    b->gamma, b->beta, &b->s, 0.1f, 1e-5f, 1);
  batchnorm_forward(out[5], NULL, NULL, b->work, out[3], out[4], b->x,
                    b->gamma, b->beta, &b->s, 0.1f, 1e-5f, 0);
  batchnorm_relu_recompute(out[6], b->work, b->x, out[1], out[2], b->gamma,
                           b->beta, &b->s);
  batchnorm_backward(out[7], out[8], out[9], b->work, b->r, b->x, out[1],
                     out[2], b->gamma, &b->s, 0, 0);
}

/* Bit for bit the same with 1, 2 and 3 threads (netc_rt.h: the fixed row
 * chunks). */
START_TEST(test_batchnorm_threads) {
  seed(2400 + (uint64_t)_i);
  const BnShape *s = &bn_thread_shapes[_i];
  BN b = bn_make((int)s->M, s->C);
  order_sensitive(b.x, s->M, s->C);
  order_sensitive(b.r, s->M, s->C);
  /* The data does its job: some channel's mean changes when its rows are
   * summed in two runs split where 2 or 3 threads would split them,
   * instead of in one. */
  int sensitive = 0;
  int64_t splits[3] = {s->M / 2, s->M / 3, 2 * s->M / 3};
  for (int c = 0; c < s->C; c++)
    for (int k = 0; k < 3; k++)
      sensitive += split_mean(b.x, s->M, s->C, c, splits[k]) !=
                   split_mean(b.x, s->M, s->C, c, s->M);
  ck_assert_int_gt(sensitive, 0);
  static const char *what[BN_OUTS] = {
      "y",        "mean",      "invstd", "run_mean", "run_var",
      "eval y",   "recompute", "dx",     "dgamma",   "dbeta"};
  int64_t MC = s->M * s->C;
  int64_t len[BN_OUTS] = {MC, s->C, s->C, s->C, s->C, MC, MC, MC, s->C, s->C};
  int before = rt_threads();
  float *one[BN_OUTS], *more[BN_OUTS];
  bn_all(&b, 1, one);
  for (int k = 0; k < BN_OUTS; k++)
    for (int64_t i = 0; i < len[k]; i++)
      ck_assert_msg(isfinite(one[k][i]), "%s[%lld] = %g", what[k],
                    (long long)i, one[k][i]);
  for (int n = 2; n <= 3; n++) {
    bn_all(&b, n, more);
    for (int k = 0; k < BN_OUTS; k++) {
      ck_assert_msg(!memcmp(more[k], one[k], (size_t)len[k] * sizeof(float)),
                    "batchnorm %s: %d threads differ from 1", what[k], n);
      free(more[k]);
    }
  }
  rt_set_threads(before);
  for (int k = 0; k < BN_OUTS; k++)
    free(one[k]);
  bn_free(&b);
}
END_TEST

/* ---- (g) no kernel allocates -------------------------------------------- */

/* The check runner is linked with -Wl,--wrap=malloc (and calloc, realloc,
 * posix_memalign, aligned_alloc: the Makefile's WRAP_ALLOC), so every
 * call of these from our own objects (the tests, libnetc.a, libnetcrt.a,
 * the static libcheck) comes here first; the wrappers count while
 * `counting` is set, then pass on to the real one (ASan's, in a sanitized
 * build). Calls made inside shared libraries are not seen: libc's own
 * (strdup, asprintf), libgomp's, OpenBLAS's. So this checks what our
 * code asks for, which is what the no-allocation contract is about. */
static atomic_int counting, allocations;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
int __wrap_posix_memalign(void **p, size_t align, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);

static void count_allocation(void) {
  if (atomic_load(&counting))
    atomic_fetch_add(&allocations, 1);
}

void *__wrap_malloc(size_t n) {
  count_allocation();
  return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size) {
  count_allocation();
  return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n) {
  count_allocation();
  return __real_realloc(p, n);
}

int __wrap_posix_memalign(void **p, size_t align, size_t n) {
  count_allocation();
  return __real_posix_memalign(p, align, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n) {
  count_allocation();
  return __real_aligned_alloc(align, n);
}

static void start_counting(void) {
  atomic_store(&allocations, 0);
  atomic_store(&counting, 1);
}

static int stop_counting(void) {
  atomic_store(&counting, 0);
  return atomic_load(&allocations);
}

/* The counter sees all five, from this file and from libnetcrt.a (util.c's
 * xmalloc): without the wrap flags this fails, so a zero below means
 * something. */
START_TEST(test_alloc_counter) {
  void *volatile p[6]; /* volatile: no call may be optimized away */
  void *q = NULL;
  start_counting();
  p[0] = malloc(8);
  p[1] = calloc(2, 8);
  p[2] = realloc(NULL, 8);
  int rc = posix_memalign(&q, 64, 64);
  p[3] = q;
  p[4] = aligned_alloc(64, 64);
  p[5] = xmalloc(8);
  int got = stop_counting();
  ck_assert_int_eq(rc, 0);
  for (int i = 0; i < 6; i++)
    free(p[i]);
  ck_assert_int_eq(got, 6);
}
END_TEST

/* One of every kernel's operands, made before counting starts. */
typedef struct {
  Conv conv, conv1; /* 3x3 through cols; 1x1 with cols NULL */
  Conv dconv, dconv2; /* the direct kernels: stride 1, stride 2 */
  float *dcdx[2], *dcdw[2];
  BN bn;
  Pooling maxp, avgp;
  Dense dense;
  float *cdx, *cdw, *cdb, *c1dx, *c1dw, *c1db, *bdx, *bdg, *bdb, *rm, *rv;
  float *mdx, *adx, *ddx, *ddw, *ddb, *gx, *gy, *gdx, *probs, *dl, *ey;
  float *edx;
  int32_t labels[3];
} Operands;

static Operands operands_make(void) {
  Operands o = {.conv = conv_make(&conv_cases[0], 0),
                .conv1 = conv_make(&conv_cases[1], 0),
                .dconv = conv_make(&conv_cases[6], 1),
                .dconv2 = conv_make(&conv_cases[8], 1),
                .bn = bn_make(37, 5),
                .maxp = pooling_make(&pool_windows[0], 0),
                .avgp = pooling_make(&pool_windows[0], 1),
                .dense = dense_make(),
                .labels = {4, 0, 2}};
  o.cdx = alloc_f(o.conv.nx), o.cdw = alloc_f(o.conv.nw);
  o.cdb = alloc_f(o.conv.s.OC);
  for (int k = 0; k < 2; k++) {
    Conv *c = k ? &o.dconv2 : &o.dconv;
    o.dcdx[k] = filled(c->nx, 0.0f), o.dcdw[k] = alloc_f(c->nw);
  }
  o.c1dx = alloc_f(o.conv1.nx), o.c1dw = alloc_f(o.conv1.nw);
  o.c1db = alloc_f(o.conv1.s.OC);
  o.bdx = alloc_f(37 * 5), o.bdg = alloc_f(5), o.bdb = alloc_f(5);
  o.rm = filled(5, 0.0f), o.rv = filled(5, 1.0f);
  o.mdx = alloc_f(o.maxp.nx), o.adx = alloc_f(o.avgp.nx);
  o.ddx = alloc_f(3 * 7), o.ddw = alloc_f(5 * 7), o.ddb = alloc_f(5);
  o.gx = randv(3 * 7 * 5), o.gy = alloc_f(3 * 5), o.gdx = alloc_f(3 * 7 * 5);
  o.probs = alloc_f(3 * 5), o.dl = alloc_f(3 * 5);
  o.ey = alloc_f(3 * 5), o.edx = alloc_f(3 * 5);
  return o;
}

static void operands_free(Operands *o) {
  conv_free(&o->conv), conv_free(&o->conv1), bn_free(&o->bn);
  conv_free(&o->dconv), conv_free(&o->dconv2);
  for (int k = 0; k < 2; k++)
    free(o->dcdx[k]), free(o->dcdw[k]);
  pooling_free(&o->maxp), pooling_free(&o->avgp), dense_free(&o->dense);
  float *f[] = {o->cdx, o->cdw, o->cdb, o->c1dx, o->c1dw, o->c1db,
                o->bdx, o->bdg, o->bdb, o->rm,   o->rv,   o->mdx,
                o->adx, o->ddx, o->ddw, o->ddb,  o->gx,   o->gy,
                o->gdx, o->probs, o->dl, o->ey, o->edx};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    free(f[i]);
}

/* Every kernel once (and every path that sums: biases, batchnorm). */
static void every_kernel(Operands *o) {
  BN *b = &o->bn;
  Dense *d = &o->dense;
  conv_fwd(&o->conv, o->conv.y, o->conv.b);
  conv_bwd(&o->conv, o->cdx, o->cdw, o->cdb, NETC_WRITE, NETC_WRITE);
  conv_fwd(&o->conv1, o->conv1.y, o->conv1.b);
  conv_bwd(&o->conv1, o->c1dx, o->c1dw, o->c1db, NETC_ADD, NETC_ADD);
  for (int k = 0; k < 2; k++) {
    Conv *c = k ? &o->dconv2 : &o->dconv;
    conv_fwd(c, c->y, c->b);
    conv_bwd(c, o->dcdx[k], o->dcdw[k], NULL, NETC_ADD, NETC_WRITE);
  }
  batchnorm_forward(b->y, b->mean, b->invstd, b->work, o->rm, o->rv, b->x,
                    b->gamma, b->beta, &b->s, 0.1f, 1e-5f, 1);
  batchnorm_forward(b->y, NULL, NULL, b->work, o->rm, o->rv, b->x, b->gamma,
                    b->beta, &b->s, 0.1f, 1e-5f, 0);
  batchnorm_relu_recompute(b->y, b->work, b->x, b->mean, b->invstd,
                           b->gamma, b->beta, &b->s);
  bn_bwd(b, o->bdx, o->bdg, o->bdb, NETC_WRITE, NETC_WRITE);
  pooling_fwd(&o->maxp, o->maxp.y);
  pooling_bwd(&o->maxp, o->mdx, NETC_WRITE);
  pooling_fwd(&o->avgp, o->avgp.y);
  pooling_bwd(&o->avgp, o->adx, NETC_ADD);
  dense_forward(d->y, d->x, d->w, d->b, &d->s);
  dense_backward(o->ddx, o->ddw, o->ddb, d->r, d->x, d->w, &d->s, NETC_WRITE,
                 NETC_WRITE);
  const GapShape gs = {3, 7, 5};
  global_avgpool_forward(o->gy, o->gx, &gs);
  global_avgpool_backward(o->gdx, o->gy, &gs, NETC_WRITE);
  const XentShape xs = {3, 5};
  softmax_xent_forward(o->probs, d->y, o->labels, &xs, 0.0f);
  softmax_xent_backward(o->dl, o->probs, o->labels, &xs, NETC_WRITE,
                        1.0f, 0.0f);
  const EltShape es = {3 * 5};
  relu_forward(o->ey, d->y, &es);
  relu_backward(o->edx, o->dl, o->ey, &es, NETC_WRITE);
  add_forward(o->ey, o->ey, d->y, &es);
  grad_add(o->edx, o->edx, o->dl, &es);
}

/* The contract of netc_rt.h: scratch and workspaces are arguments, so a
 * training step allocates nothing in the kernels. With 1 and 3 threads. */
START_TEST(test_kernels_do_not_allocate) {
  seed(2500);
  Operands o = operands_make();
  int before = rt_threads();
  for (int threads = 1; threads <= 3; threads += 2) {
    rt_set_threads(threads);
    start_counting();
    every_kernel(&o);
    int got = stop_counting();
    ck_assert_msg(got == 0, "%d allocations with %d threads", got, threads);
  }
  rt_set_threads(before);
  operands_free(&o);
}
END_TEST

Suite *suite_runtime(void) {
  Suite *s = suite_create("runtime");
  TCase *tc = tcase_create("forward");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_conv_forward, 0, NCONV * conv_variants());
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
  tcase_add_loop_test(tc, test_conv_grad, 0, NCONV * conv_variants());
  tcase_add_test(tc, test_batchnorm_grad);
  tcase_add_loop_test(tc, test_pool_grad, 0, NPOOL);
  tcase_add_test(tc, test_global_avgpool_grad);
  tcase_add_test(tc, test_dense_grad);
  tcase_add_loop_test(tc, test_softmax_xent_grad, 0,
                      sizeof xent_smoothing / sizeof xent_smoothing[0]);
  tcase_add_test(tc, test_relu_grad);
  suite_add_tcase(s, tc);
  tc = tcase_create("contracts");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_acc_conv, 0, NCONV * conv_variants());
  tcase_add_test(tc, test_acc_dense);
  tcase_add_test(tc, test_acc_pool);
  tcase_add_test(tc, test_acc_batchnorm);
  tcase_add_test(tc, test_acc_elementwise);
  tcase_add_test(tc, test_in_place);
  tcase_add_test(tc, test_batchnorm_in_place);
  tcase_add_test(tc, test_batchnorm_relu_recompute);
  tcase_add_test(tc, test_batchnorm_running_stats);
  tcase_add_test(tc, test_threads_agree);
  tcase_add_loop_test(tc, test_own_kernels_threads_bits, 0,
                      sizeof bits_cases / sizeof bits_cases[0]);
  tcase_add_loop_test(tc, test_batchnorm_threads, 0, NBNTHREADS);
  tcase_add_test(tc, test_alloc_counter);
  tcase_add_test(tc, test_kernels_do_not_allocate);
  suite_add_tcase(s, tc);
  return s;
}
