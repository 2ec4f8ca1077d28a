/* check_contracts.c: the contracts of netc_rt.h, for every kernel: acc
 * flags (1 adds, 0 overwrites), in-place calls, batchnorm running
 * statistics, results independent of the thread count, and that no kernel
 * allocates (an allocation counter linked in with the linker's --wrap). */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_fixtures.h"

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
  ConvCase cc = {{4, 13, 11, 8, 16, 3, 1, 1, 0, 0, 0, 0, 0, 0}, 0};
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
    /* pointwise GEMMs over pixels (dW split along OC; along C in four
     * runs of pixels; stride 2), and an RGB stem's dW */
    {"direct avx2", 1, 40, 1},      {"direct avx2", 1, 600, 1},
    {"direct avx2", 2, 40, 1},      {"direct avx512", 1, 600, 1},
    {"direct avx512", 2, 3, 7},
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
                  ksize / 2, 0, 0, 0, 0, 0, 0}, 0};
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

Suite *suite_contracts(void) {
  Suite *s = suite_create("contracts");
  TCase *tc = tcase_create("contracts");
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
