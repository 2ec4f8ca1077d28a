/* check_runtime.c: the runtime kernels (runtime/kernels/) against their
 * naive references (runtime/kernels/reference.c) and against central
 * finite differences, for every convolution algorithm on each ISA this CPU
 * runs. The kernels' contracts are in check_contracts.c; the fixtures both
 * use in kernel_fixtures.c. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_fixtures.h"

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

/* Against the double-precision formula, out to where exp(-x) overflows
 * float (x = -100: the naive 1 / (1 + expf(100)) is 0 only by luck) and
 * to where the result rounds to 1. */
START_TEST(test_sigmoid_forward) {
  float x[] = {-100.0f, -30.0f, -5.0f, -1e-3f, -0.0f, 0.0f, 0.5f, 3.0f,
               17.0f, 100.0f};
  enum { N = sizeof x / sizeof x[0] };
  float y[N], want[N];
  const EltShape s = {N};
  sigmoid_forward(y, x, &s);
  rt_ref_sigmoid_forward(want, x, &s);
  expect_close("sigmoid y", y, want, N, 1e-30, 4e-7);
  ck_assert_float_eq(y[4], 0.5f);
  ck_assert_float_eq(y[N - 1], 1.0f);
  ck_assert(y[0] > 0.0f && y[0] < 1e-40f); /* e^-100, a denormal */
}
END_TEST

/* Each channel of each image times its factor: exactly the float product.
 * 300 channels: two of scale_backward_s's channel blocks. */
START_TEST(test_scale_forward) {
  seed(1450);
  enum { N = 2, HW = 5, C = 300 };
  float *x = randv(N * HW * C), *f = randv(N * C), *y = alloc_f(N * HW * C);
  scale_forward(y, x, f, &(GapShape){N, HW, C});
  for (int n = 0; n < N; n++)
    for (int p = 0; p < HW; p++)
      for (int c = 0; c < C; c++) {
        int64_t i = ((int64_t)n * HW + p) * C + c;
        ck_assert_float_eq(y[i], x[i] * f[n * C + c]);
      }
  free(x), free(f), free(y);
}
END_TEST

/* Dropout: the share of zeros is p (within 4 standard deviations of a
 * binomial count), the rest is x / (1 - p) exactly; another key or salt
 * gives another mask; evaluation and p = 0 copy x; one thread or two give
 * the same bits; the backward op zeroes where the forward op did. */
START_TEST(test_dropout) {
  seed(1470);
  enum { N = 20000 };
  float *x = randv(N), *y = alloc_f(N), *y2 = alloc_f(N), *g = alloc_f(N);
  for (int i = 0; i < N; i++)
    x[i] += 0.5f; /* no exact zeros in x */
  const float ps[] = {0.1f, 0.5f, 0.9f};
  for (int k = 0; k < 3; k++) {
    DropShape s = {N, ps[k], rt_dropout_salt("stage1.dropout1")};
    uint64_t key = rt_step_key(1, 7, 0, 0);
    dropout_forward(y, x, &s, key, 1);
    int zeros = 0;
    float scale = 1.0f / (1.0f - s.p);
    for (int i = 0; i < N; i++) {
      if (y[i] == 0.0f)
        zeros++;
      else
        ck_assert_float_eq(y[i], x[i] * scale);
    }
    double want = N * (double)s.p, sd = sqrt(want * (1 - s.p));
    ck_assert_msg(fabs(zeros - want) < 4 * sd, "p=%g: %d zeros of %d",
                  (double)s.p, zeros, N);
    int threads = rt_threads();
    rt_set_threads(threads == 1 ? 2 : 1);
    dropout_forward(y2, x, &s, key, 1);
    rt_set_threads(threads);
    ck_assert_int_eq(memcmp(y, y2, sizeof(float) * N), 0);
    dropout_backward(g, x, &s, key, 0); /* dy = x: g is y again */
    ck_assert_int_eq(memcmp(g, y, sizeof(float) * N), 0);
    dropout_forward(y2, x, &s, rt_step_key(1, 8, 0, 0), 1);
    ck_assert_int_ne(memcmp(y, y2, sizeof(float) * N), 0);
    DropShape other = s;
    other.salt = rt_dropout_salt("stage1.dropout2");
    dropout_forward(y2, x, &other, key, 1);
    ck_assert_int_ne(memcmp(y, y2, sizeof(float) * N), 0);
    dropout_forward(y2, x, &s, key, 0); /* evaluation */
    ck_assert_int_eq(memcmp(y2, x, sizeof(float) * N), 0);
    float *acc = filled(N, 1.0f);
    dropout_backward(acc, x, &s, key, 1);
    expect_plus_one("dropout dx (add)", acc, g, N);
    free(acc);
  }
  DropShape none = {N, 0.0f, 7};
  dropout_forward(y, x, &none, 3, 1);
  ck_assert_int_eq(memcmp(y, x, sizeof(float) * N), 0);
  dropout_backward(g, x, &none, 3, 0);
  ck_assert_int_eq(memcmp(g, x, sizeof(float) * N), 0);
  free(x), free(y), free(y2), free(g);
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

/* An elementwise op's fixture: x, its output y, the loss's weights r. */
typedef struct {
  EltShape s;
  float *x, *y, *r;
} Elt;

static double relu_loss(void *ctx) {
  Elt *r = ctx;
  relu_forward(r->y, r->x, &r->s);
  return dot(r->y, r->r, r->s.n);
}

static double sigmoid_loss(void *ctx) {
  Elt *r = ctx;
  sigmoid_forward(r->y, r->x, &r->s);
  return dot(r->y, r->r, r->s.n);
}

/* Over [-4, 4], where the slope is not negligible; also adding. */
START_TEST(test_sigmoid_grad) {
  seed(1400);
  Elt s = {.s = {41}};
  int64_t n = s.s.n;
  s.x = randv(n);
  for (int64_t i = 0; i < n; i++)
    s.x[i] = 4.0f * s.x[i];
  s.y = alloc_f(n);
  s.r = randv(n);
  float *dx = filled(n, NAN);
  sigmoid_forward(s.y, s.x, &s.s);
  sigmoid_backward(dx, s.r, s.y, &s.s, 0);
  expect_fd("x", s.x, dx, n, sigmoid_loss, &s);
  float *acc = filled(n, 1.0f);
  sigmoid_forward(s.y, s.x, &s.s); /* the loss left y of a perturbed x */
  sigmoid_backward(acc, s.r, s.y, &s.s, 1);
  expect_plus_one("sigmoid dx (add)", acc, dx, n);
  free(acc), free(dx), free(s.x), free(s.y), free(s.r);
}
END_TEST

typedef struct {
  GapShape s;
  float *x, *f, *y, *r;
} Scale;

static double scale_loss(void *ctx) {
  Scale *q = ctx;
  scale_forward(q->y, q->x, q->f, &q->s);
  return dot(q->y, q->r, (int64_t)q->s.N * q->s.HW * q->s.C);
}

/* Both gradients, on 300 channels (two blocks of the s sum); also adding. */
START_TEST(test_scale_grad) {
  seed(1460);
  Scale q = {.s = {2, 3, 300}};
  int64_t nx = 2 * 3 * 300, nf = 2 * 300;
  q.x = randv(nx), q.f = randv(nf), q.y = alloc_f(nx), q.r = randv(nx);
  float *dx = filled(nx, NAN), *df = filled(nf, NAN);
  scale_backward(dx, q.r, q.f, &q.s, 0);
  scale_backward_s(df, q.r, q.x, &q.s, 0);
  expect_fd("x", q.x, dx, nx, scale_loss, &q);
  expect_fd("s", q.f, df, nf, scale_loss, &q);
  float *ax = filled(nx, 1.0f), *af = filled(nf, 1.0f);
  scale_backward(ax, q.r, q.f, &q.s, 1);
  scale_backward_s(af, q.r, q.x, &q.s, 1);
  expect_plus_one("scale dx (add)", ax, dx, nx);
  expect_plus_one("scale ds (add)", af, df, nf);
  free(ax), free(af), free(dx), free(df);
  free(q.x), free(q.f), free(q.y), free(q.r);
}
END_TEST

/* Inputs stay at least 0.05 from the kink at 0. */
START_TEST(test_relu_grad) {
  seed(1300);
  Elt s = {.s = {37}};
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
  tcase_add_test(tc, test_sigmoid_forward);
  tcase_add_test(tc, test_scale_forward);
  tcase_add_test(tc, test_dropout);
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
  tcase_add_test(tc, test_sigmoid_grad);
  tcase_add_test(tc, test_scale_grad);
  suite_add_tcase(s, tc);
  return s;
}
