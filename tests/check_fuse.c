/* check_fuse.c: relus folded into their neighbours (compiler/fuse.c).
 * The fused kernels give the very bits of the two calls they replace, on
 * odd sizes, in place and adding; the pass folds what it may and nothing
 * else, and leaves a graph that verifies; a fused trainer trains to the
 * same bits as one built with --no-fuse. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_train.h"
#include "kernel_fixtures.h"

/* ---- the kernels: bit for bit the two calls ----------------------------- */

/* Values around 0 with exact zeros among them, so that the relu's mask
 * cuts every channel somewhere. (The add test puts in a NaN too: the
 * relu lets it through, fused or not.) */
static float *signed_values(int64_t n) {
  float *v = randv(n);
  for (int64_t i = 0; i < n; i++)
    v[i] = i % 11 == 0 ? 0.0f : v[i] - 0.5f;
  return v;
}

static void expect_same_bits(const char *what, const float *a,
                             const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], sizeof(float)))
      ck_abort_msg("%s[%lld]: fused %.9g, unfused %.9g", what, (long long)i,
                   a[i], b[i]);
}

enum { M = 3 * 7 * 5, C = 13 }; /* rows of a 3x7x5 batch, odd channels */

START_TEST(test_batchnorm_relu_forward) {
  seed(4100);
  float *x = signed_values(M * C), *gamma = randv(C), *beta = signed_values(C);
  for (int training = 0; training < 2; training++) {
    const BnShape s = {M, C};
    float *y1 = alloc_f(M * C), *y2 = alloc_f(M * C);
    float m1[C], i1[C], m2[C], i2[C], rm1[C], rv1[C], rm2[C], rv2[C];
    for (int c = 0; c < C; c++)
      rm1[c] = rm2[c] = 0.1f * (float)c, rv1[c] = rv2[c] = 1.0f + (float)c;
    void *w1 = bn_work(C), *w2 = bn_work(C);
    batchnorm_forward(y1, m1, i1, w1, rm1, rv1, x, gamma, beta, &s, 0.1f,
                      1e-5f, training);
    EltShape e = {M * C};
    relu_forward(y1, y1, &e); /* in place, as the plan had it */
    batchnorm_relu_forward(y2, m2, i2, w2, rm2, rv2, x, gamma, beta, &s, 0.1f,
                           1e-5f, training);
    expect_same_bits("y", y2, y1, M * C);
    expect_same_bits("mean", m2, m1, C);
    expect_same_bits("invstd", i2, i1, C);
    expect_same_bits("running mean", rm2, rm1, C);
    expect_same_bits("running var", rv2, rv1, C);
    free(y1), free(y2), free(w1), free(w2);
  }
  free(x), free(gamma), free(beta);
}
END_TEST

START_TEST(test_add_relu_forward) {
  seed(4200);
  int64_t n = 1001;
  float *a = signed_values(n), *b = signed_values(n);
  a[5] = NAN;
  float *y1 = alloc_f(n), *y2 = copyv(a, n);
  EltShape e = {n};
  add_forward(y1, a, b, &e);
  relu_forward(y1, y1, &e);
  add_relu_forward(y2, y2, b, &e); /* in place over a */
  expect_same_bits("relu(a + b)", y2, y1, n);
  ck_assert(isnan(y2[5]));
  free(a), free(b), free(y1), free(y2);
}
END_TEST

/* relu_backward into a fresh dZ, then batchnorm_backward of dZ, against
 * batchnorm_relu_backward of dY and the relu's output; for dX written,
 * added to, in place over dY, and absent (dgamma and dbeta only). */
START_TEST(test_batchnorm_relu_backward) {
  seed(4300);
  const BnShape s = {M, C};
  EltShape e = {M * C};
  float *x = signed_values(M * C), *gamma = randv(C), *beta = signed_values(C);
  float *y = alloc_f(M * C), mean[C], invstd[C];
  void *w = bn_work(C);
  batchnorm_relu_forward(y, mean, invstd, w, NULL, NULL, x, gamma, beta, &s,
                         0.1f, 1e-5f, 1);
  float *dy = signed_values(M * C), *dz = alloc_f(M * C);
  relu_backward(dz, dy, y, &e, 0);
  for (int mode = 0; mode < 4; mode++) { /* write, add, in place, no dX */
    float *dx1 = mode == 3 ? NULL : signed_values(M * C);
    float *dx2 = mode == 2 ? copyv(dy, M * C) : dx1 ? copyv(dx1, M * C) : NULL;
    float g1[C], b1[C], g2[C], b2[C];
    for (int c = 0; c < C; c++)
      g1[c] = g2[c] = 0.5f, b1[c] = b2[c] = -0.25f; /* what adding adds to */
    int acc = mode == 1;
    void *w1 = bn_work(C), *w2 = bn_work(C);
    batchnorm_backward(dx1, g1, b1, w1, dz, x, mean, invstd, gamma, &s, acc,
                       acc);
    batchnorm_relu_backward(dx2, g2, b2, w2, mode == 2 ? dx2 : dy, x, mean,
                            invstd, y, gamma, &s, acc, acc);
    if (dx1)
      expect_same_bits("dx", dx2, dx1, M * C);
    expect_same_bits("dgamma", g2, g1, C);
    expect_same_bits("dbeta", b2, b1, C);
    free(dx1), free(dx2), free(w1), free(w2);
  }
  free(x), free(gamma), free(beta), free(y), free(dy), free(dz), free(w);
}
END_TEST

/* ---- the pass ----------------------------------------------------------- */

static void compile_fused(Compiled *c, const char *body, int *folded) {
  compile_in_network(c, "fuse.net", body, NULL);
  *folded = fuse_relus(&c->graph);
  ck_assert_int_eq(graph_verify(&c->graph, stderr), 0);
}

static int count(const Graph *g, OpKind op, Fuse f) {
  int k = 0;
  for (int i = 0; i < g->nnodes; i++)
    k += g->nodes[i].op == op && g->nodes[i].fuse == f;
  return k;
}

/* A basic block: both relus fold forward (after its batchnorm, after its
 * add); backward only the first, since the add hands the second's
 * gradient to two readers. Every folded relu's output is its
 * neighbour's storage, and the step moves fewer bytes. */
START_TEST(test_basic_block_folds) {
  Compiled c;
  int folded;
  compile_fused(&c,
                "  x = conv(input, 8, k=3, pad=1) -> batchnorm -> relu\n"
                "  x = basic(x, 8)",
                &folded);
  const Graph *g = &c.graph;
  ck_assert_int_eq(count(g, OP_BATCHNORM, FUSE_RELU), 2);
  ck_assert_int_eq(count(g, OP_ADD, FUSE_RELU), 1);
  ck_assert_int_eq(count(g, OP_RELU, FUSE_FOLDED), 3);
  ck_assert_int_eq(count(g, OP_RELU, FUSE_NONE), 0);
  ck_assert_int_eq(count(g, OP_RELU_BWD, FUSE_FOLDED), 2);
  ck_assert_int_eq(count(g, OP_RELU_BWD, FUSE_NONE), 1);
  ck_assert_int_eq(count(g, OP_BATCHNORM_BWD, FUSE_RELU), 2);
  ck_assert_int_eq(folded, 5);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->fuse != FUSE_FOLDED)
      continue;
    ck_assert_int_eq(node_traffic(g, i).read + node_traffic(g, i).written, 0);
    if (n->op == OP_RELU) /* its output is its input's storage */
      ck_assert_int_eq(g->tensors[n->out].view_of, n->in[0]);
  }
  for (int i = g->nforward; i < g->nnodes; i++) { /* dY and the relu's y */
    const Node *n = &g->nodes[i];
    if (n->op == OP_BATCHNORM_BWD && n->fuse == FUSE_RELU) {
      ck_assert_int_eq(n->nin, 5);
      ck_assert_int_eq(g->tensors[n->in[0]].kind, TK_GRAD);
      ck_assert_int_eq(g->tensors[n->in[4]].kind, TK_ACT);
    }
  }
  compiled_free(&c);
}
END_TEST

/* What may not fold: a batchnorm's output that something besides the
 * relu reads, a relu after a conv (no fused kernel), a relu whose output
 * gradient gets two contributions. */
START_TEST(test_what_does_not_fold) {
  Compiled c;
  int folded;
  compile_fused(&c,
                "  a = conv(input, 8, k=3, pad=1) -> batchnorm\n"
                "  b = relu(a)\n"
                "  x = add(a, b)\n"
                "  x = conv(x, 8, k=3, pad=1) -> relu",
                &folded);
  const Graph *g = &c.graph;
  ck_assert_int_eq(folded, 0);
  ck_assert_int_eq(count(g, OP_RELU, FUSE_NONE), 2);
  ck_assert_int_eq(count(g, OP_RELU_BWD, FUSE_NONE), 2);
  compiled_free(&c);
}
END_TEST

/* ResNet-50: every relu folds forward; the bytes a step moves drop by
 * what the folded relus read from input 0 and wrote (a folded
 * relu_backward's other input, y, the fused batchnorm_backward reads). */
START_TEST(test_resnet50_traffic) {
  Compiled c;
  compile_path(&c, "models/resnet50.net");
  ck_assert_int_eq(c.rc, 0);
  Traffic before = step_traffic(&c.graph);
  int relus = count(&c.graph, OP_RELU, FUSE_NONE);
  int64_t saved = 0;
  int folded = fuse_relus(&c.graph);
  for (int i = 0; i < c.graph.nnodes; i++)
    if (c.graph.nodes[i].fuse == FUSE_FOLDED) {
      const Node *n = &c.graph.nodes[i];
      saved +=
          tensor_bytes(&c.graph, n->in[0]) + tensor_bytes(&c.graph, n->out);
    }
  ck_assert_int_eq(graph_verify(&c.graph, stderr), 0);
  Traffic after = step_traffic(&c.graph);
  ck_assert_int_eq(relus, 49);
  ck_assert_int_eq(count(&c.graph, OP_RELU, FUSE_FOLDED), relus);
  ck_assert_int_gt(folded, relus);
  ck_assert_int_eq((before.read + before.written) - (after.read + after.written),
                   saved);
  compiled_free(&c);
}
END_TEST

/* ---- a trainer: the same bits fused and unfused ------------------------- */

/* tiny10 (a stem, a basic block: every kind of fold) for one epoch, built
 * with and without --no-fuse: the same losses, accuracies and final
 * state. And the fused one does call the fused kernels. */
START_TEST(test_trainer_same_bits) {
  setup();
  build_with("tests/train/tiny10.net", 64, "build/testdata/tiny10-nofuse",
             "tiny10", "--no-fuse");
  /* The stem's and the block's first relu fold both ways, the block's
   * last (after its add) forward only. */
  static const struct {
    const char *fn;
    int fused, unfused;
  } calls[] = {{"batchnorm_relu_forward(", 2, 0},
               {"batchnorm_relu_backward(", 2, 0},
               {"add_relu_forward(", 1, 0},
               {"relu_forward(", 0, 3},
               {"relu_backward(", 1, 3}};
  int st;
  for (int k = 0; k < 5; k++)
    for (int fused = 0; fused < 2; fused++) {
      char *out = sh(&st, "grep -c '  %s' build/testdata/%s/tiny10.c",
                     calls[k].fn, fused ? "tiny10" : "tiny10-nofuse");
      int want = fused ? calls[k].fused : calls[k].unfused;
      ck_assert_msg(atoi(out) == want, "%d calls of %s in the %s trainer, "
                    "not %d", atoi(out), calls[k].fn,
                    fused ? "fused" : "unfused", want);
      free(out);
    }
  const char *run[2] = {"build/testdata/fuse-on", "build/testdata/fuse-off"};
  const char *bin[2] = {tiny, "build/testdata/tiny10-nofuse/tiny10"};
  char *hash[2], *csv[2];
  for (int k = 0; k < 2; k++) {
    MUST("rm -rf %s && %s train --data %s --epochs 1 --threads 2 --out %s "
         "--no-plots >/dev/null 2>&1", run[k], bin[k], data, run[k]);
    hash[k] = sh(&st, "%s inspect %s/last.ckpt | sed 's/.*state_hash=//'",
                 bin[k], run[k]);
    ck_assert_int_eq(st, 0);
    csv[k] = sh(&st, "cut -d, -f1-7 %s/metrics.csv", run[k]);
    ck_assert_int_eq(st, 0);
  }
  ck_assert_str_eq(csv[0], csv[1]);
  ck_assert_str_eq(hash[0], hash[1]);
  for (int k = 0; k < 2; k++)
    free(hash[k]), free(csv[k]);
}
END_TEST

Suite *suite_fuse(void) {
  Suite *s = suite_create("fuse");
  TCase *tc = tcase_create("kernels");
  tcase_add_test(tc, test_batchnorm_relu_forward);
  tcase_add_test(tc, test_add_relu_forward);
  tcase_add_test(tc, test_batchnorm_relu_backward);
  suite_add_tcase(s, tc);
  tc = tcase_create("pass");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_basic_block_folds);
  tcase_add_test(tc, test_what_does_not_fold);
  tcase_add_test(tc, test_resnet50_traffic);
  suite_add_tcase(s, tc);
  tc = tcase_create("trainer");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_trainer_same_bits);
  suite_add_tcase(s, tc);
  return s;
}
