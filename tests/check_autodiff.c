/* check_autodiff.c: the structure of the backward pass: which ops each
 * forward op gets, what they read, that the image gets no gradient, that a
 * tensor used twice and a shared weight each get one gradient, and that
 * each weight is updated once, after its gradient is final. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "check_netc.h"
#include "kernels/netc_rt.h"

/* The backward node of the forward node at `path`, or -1. */
static int backward_of(const Graph *g, const char *path) {
  int f = find_node(g, path);
  for (int i = g->nforward; i < g->nnodes; i++)
    if (g->nodes[i].fwd == f && g->nodes[i].op != OP_GRAD_ADD &&
        g->nodes[i].op != OP_BN_RELU_RECOMPUTE)
      return i;
  return -1;
}

START_TEST(test_each_op_gets_its_backward) {
  Compiled c;
  compile_in_network(&c, "ops.net",
               "  x = conv(input, 4, k=3, pad=1) -> batchnorm -> relu\n"
               "  x = maxpool(x, k=3, stride=2, pad=1)\n"
               "  x = avgpool(x, k=2, stride=1)", NULL);
  const Graph *g = &c.graph;
  static const struct {
    const char *path;
    OpKind op;
  } want[] = {{"conv1", OP_CONV_BWD},       {"batchnorm1", OP_BATCHNORM_BWD},
              {"relu1", OP_RELU_BWD},       {"maxpool1", OP_MAXPOOL_BWD},
              {"avgpool1", OP_AVGPOOL_BWD}, {"global_avgpool1",
                                             OP_GLOBAL_AVGPOOL_BWD},
              {"dense1", OP_DENSE_BWD},
              {"softmax_cross_entropy1", OP_SOFTMAX_XENT_BWD}};
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
    int b = backward_of(g, want[k].path);
    ck_assert_msg(b >= 0, "no backward for %s", want[k].path);
    ck_assert_int_eq(g->nodes[b].op, want[k].op);
    /* The gradient it writes has the shape of the forward input. */
    const Node *f = &g->nodes[g->nodes[b].fwd];
    if (g->nodes[b].out >= 0) {
      Shape a = g->tensors[g->nodes[b].out].shape;
      Shape e = g->tensors[f->in[0]].shape;
      ck_assert(a.c == e.c && a.h == e.h && a.w == e.w);
    }
  }
  /* Backward ops run in reverse order of their forward ops. */
  ck_assert_int_lt(backward_of(g, "relu1"), backward_of(g, "batchnorm1"));
  ck_assert_int_eq(graph_verify(g, stderr), 0);
  compiled_free(&c);
}
END_TEST

static int count_backward(const Graph *g, int f, OpKind op) {
  int k = 0;
  for (int i = g->nforward; i < g->nnodes; i++)
    k += g->nodes[i].fwd == f && g->nodes[i].op == op;
  return k;
}

/* scale(x, s) gets a backward op per input: dX = dY * s and ds from dY
 * and X, each writing its input's gradient. On the image, only ds's. */
START_TEST(test_scale_gets_two_backward_ops) {
  Compiled c;
  compile_in_network(&c, "scale.net",
               "  x = conv(input, 4, k=3, pad=1) -> batchnorm\n"
               "  s = global_avgpool(x) -> flatten -> dense(4) -> sigmoid\n"
               "  x = scale(x, s) -> relu\n"
               "  t = global_avgpool(input) -> flatten -> dense(3)\n"
               "  u = global_avgpool(scale(input, t)) -> flatten -> dense(4)\n"
               "  x = add(global_avgpool(x), u)\n",
               NULL);
  const Graph *g = &c.graph;
  int sc = find_node(g, "scale1"), sc2 = find_node(g, "scale2");
  ck_assert_int_eq(count_backward(g, sc, OP_SCALE_BWD), 1);
  ck_assert_int_eq(count_backward(g, sc, OP_SCALE_BWD_S), 1);
  for (int i = g->nforward; i < g->nnodes; i++) {
    const Node *b = &g->nodes[i];
    if (b->fwd != sc || (b->op != OP_SCALE_BWD && b->op != OP_SCALE_BWD_S))
      continue;
    int x = g->nodes[sc].in[b->op == OP_SCALE_BWD ? 0 : 1];
    ck_assert_int_ge(b->out, 0);
    ck_assert_int_eq(g->tensors[b->out].grad_of, x);
    ck_assert_int_eq(b->in[1], g->nodes[sc].in[b->op == OP_SCALE_BWD ? 1 : 0]);
  }
  ck_assert_int_eq(count_backward(g, sc2, OP_SCALE_BWD), 0); /* the image */
  ck_assert_int_eq(count_backward(g, sc2, OP_SCALE_BWD_S), 1);
  ck_assert_int_eq(graph_verify(g, stderr), 0);
  compiled_free(&c);
}
END_TEST

START_TEST(test_saves_only_what_backward_needs) {
  Compiled c;
  compile_in_network(&c, "saved.net",
               "  x = conv(input, 4, k=3, pad=1) -> batchnorm -> relu\n"
               "  x = maxpool(x, k=2)", NULL);
  const Graph *g = &c.graph;
  int relu = find_node(g, "relu1"), rb = backward_of(g, "relu1");
  int bn = find_node(g, "batchnorm1");
  /* relu backward reads its output (the sign), not its input; over a
   * batchnorm, that output is not kept but recomputed just before, from
   * the batchnorm's input and statistics. */
  int again = g->nodes[rb].in[1], rc = g->tensors[again].producer;
  ck_assert_int_ne(again, g->nodes[relu].out);
  ck_assert_int_eq(g->nodes[rc].op, OP_BN_RELU_RECOMPUTE);
  ck_assert_int_eq(rc, rb - 1);
  ck_assert_int_eq(g->nodes[rc].fwd, bn);
  ck_assert_int_eq(g->nodes[rc].in[0], g->nodes[bn].in[0]);
  ck_assert_int_eq(g->nodes[rc].in[1], g->nodes[bn].extra[0]);
  ck_assert_int_eq(g->nodes[rc].in[2], g->nodes[bn].extra[1]);
  for (int i = g->nforward; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i].nin; j++)
      ck_assert_int_ne(g->nodes[i].in[j], g->nodes[relu].out);
  for (int j = 0; j < g->nodes[rb].nin; j++)
    ck_assert_int_ne(g->nodes[rb].in[j], g->nodes[relu].in[0]);
  /* maxpool backward reads argmax, saved by the forward op, and not x. */
  int mp = find_node(g, "maxpool1"), mb = backward_of(g, "maxpool1");
  ck_assert_int_eq(g->nodes[mp].nextra, 1);
  int argmax = g->nodes[mp].extra[0];
  ck_assert(g->tensors[argmax].kind == TK_SAVED && g->tensors[argmax].is_int);
  ck_assert_int_eq(g->nodes[mb].in[1], argmax);
  ck_assert_int_eq(g->nodes[mb].nin, 2);
  /* batchnorm saves its batch mean and inverse std, per channel, and has
   * a workspace (scratch, live for the op only) for its kernel. */
  ck_assert_int_eq(g->nodes[bn].nextra, 3);
  ck_assert(!g->tensors[g->nodes[bn].extra[0]].batched);
  ck_assert_int_eq(g->tensors[g->nodes[bn].extra[0]].shape.c, 4);
  ck_assert(g->tensors[g->nodes[bn].extra[1]].kind == TK_SAVED);
  int work = g->nodes[bn].extra[2];
  ck_assert(g->tensors[work].kind == TK_SCRATCH && !g->tensors[work].batched);
  ck_assert_int_eq(tensor_bytes(g, work), BATCHNORM_WORK_BYTES(4));
  compiled_free(&c);
}
END_TEST

START_TEST(test_no_gradient_for_the_image) {
  Compiled c;
  compile_path(&c, "models/resnet18.net");
  ck_assert_int_eq(c.rc, 0);
  const Graph *g = &c.graph;
  for (int t = 0; t < g->ntensors; t++)
    ck_assert_int_ne(g->tensors[t].grad_of, g->input);
  int b = backward_of(g, "imagenet_stem1.conv1");
  ck_assert_int_ge(b, 0);
  ck_assert_int_eq(g->nodes[b].out, -1); /* dW only */
  compiled_free(&c);
}
END_TEST

/* Every weight's gradient is written by exactly one backward op and added
 * to by the others (one per extra use). */
static void check_one_gradient_per_weight(const Graph *g) {
  for (int w = 0; w < g->nweights; w++) {
    int writes = 0, adds = 0;
    for (int i = g->nforward; i < g->nnodes; i++)
      for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++)
        if (g->nodes[i].weight[j] == w && g->nodes[i].op != OP_UPDATE)
          *(g->nodes[i].wgrad_accumulate[j] ? &adds : &writes) += 1;
    ck_assert_msg(writes == 1, "%s written %d times", g->weights[w].name,
                  writes);
    ck_assert_int_eq(adds, g->weights[w].uses - 1);
  }
}

START_TEST(test_shared_weights_one_gradient) {
  Compiled c;
  compile_path(&c, "models/seed_resnet.net");
  ck_assert_int_eq(c.rc, 0);
  check_one_gradient_per_weight(&c.graph);
  int w = find_weight(&c.graph, "seed_stage3.again.conv2.weight");
  ck_assert_int_eq(c.graph.weights[w].uses, 5);
  compiled_free(&c);
  compile_path(&c, "models/resnet50.net");
  check_one_gradient_per_weight(&c.graph);
  compiled_free(&c);
}
END_TEST

/* Every weight has one update, after the last backward op that writes
 * its gradient, and nothing uses the weight after it; its gradient lives
 * in the arena from its first writer to that update. */
static void check_updates(const Graph *g) {
  Plan p;
  plan_memory(g, &p);
  for (int w = 0; w < g->nweights; w++) {
    int grad = g->weights[w].grad, update = -1, last_writer = -1;
    ck_assert_int_ge(grad, 0);
    ck_assert_int_eq(g->tensors[grad].kind, TK_WGRAD);
    for (int i = g->nforward; i < g->nnodes; i++) {
      const Node *n = &g->nodes[i];
      if (n->op == OP_UPDATE && n->weight[0] == w) {
        ck_assert_msg(update < 0, "%s updated twice", g->weights[w].name);
        update = i;
        ck_assert_int_eq(n->in[0], grad);
        continue;
      }
      for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++)
        if (n->weight[j] == w) {
          ck_assert_msg(update < 0, "%s used after its update",
                        g->weights[w].name);
          ck_assert_int_eq(n->wgrad[j], grad);
          last_writer = i;
        }
    }
    ck_assert_msg(update > last_writer && last_writer >= 0,
                  "%s: update at %d, last writer %d", g->weights[w].name,
                  update, last_writer);
    ck_assert_int_eq(p.first[grad], g->tensors[grad].producer);
    ck_assert_int_eq(p.last[grad], update);
  }
  /* Gradients are not persistent: weights and momentum are. */
  ck_assert_int_lt(p.persistent_bytes, 3 * p.param_bytes);
  ck_assert_int_ge(p.persistent_bytes, 2 * p.param_bytes);
}

START_TEST(test_each_weight_updated_once_after_its_last_use) {
  static const char *const models[] = {"models/seed_resnet.net",
                                       "models/resnet18.net",
                                       "models/resnet50.net"};
  for (int k = 0; k < 3; k++) {
    Compiled c;
    compile_path(&c, models[k]);
    ck_assert_int_eq(c.rc, 0);
    check_updates(&c.graph);
    compiled_free(&c);
  }
}
END_TEST

START_TEST(test_tensor_used_twice_accumulates) {
  /* x feeds a block and the identity shortcut: its gradient is the add's
   * output gradient, to which the block's first conv adds in place once
   * nothing reads that buffer any more. */
  Compiled c;
  compile_in_network(&c, "twice.net",
               "  x = conv(input, 4, k=1)\n"
               "  y = conv(x, 4, k=3, pad=1) -> conv(4, k=1)\n"
               "  x = add(y, x)", NULL);
  const Graph *g = &c.graph;
  int add = find_node(g, "add1"), conv2 = find_node(g, "conv2");
  int b = backward_of(g, "conv2");
  int x = g->nodes[conv2].in[0];
  ck_assert(g->nodes[b].accumulate);
  ck_assert_int_eq(g->tensors[g->nodes[b].out].grad_of,
                   g->nodes[add].out); /* the buffer is the add's gradient */
  int grads_of_x = 0;
  for (int t = 0; t < g->ntensors; t++)
    grads_of_x += g->tensors[t].grad_of == x;
  ck_assert_int_eq(grads_of_x, 0); /* no buffer of its own */
  compiled_free(&c);
  /* When the conv's own output gradient is that buffer, adding into it
   * while reading it would be wrong: a fresh buffer and a grad_add. */
  compile_in_network(&c, "direct.net",
               "  x = conv(input, 4, k=1)\n"
               "  x = add(conv(x, 4, k=3, pad=1), x)", NULL);
  g = &c.graph;
  b = backward_of(g, "conv2");
  ck_assert(!g->nodes[b].accumulate);
  ck_assert_int_eq(g->nodes[b + 1].op, OP_GRAD_ADD);
  ck_assert_int_eq(g->nodes[b + 1].in[1], g->nodes[b].out);
  compiled_free(&c);
  /* add(x, x): the two contributions are summed by one grad_add. */
  compile_in_network(&c, "self.net",
               "  x = conv(input, 4, k=1)\n"
               "  x = add(x, x)", NULL);
  g = &c.graph;
  int adds = 0;
  for (int i = g->nforward; i < g->nnodes; i++)
    adds += g->nodes[i].op == OP_GRAD_ADD;
  ck_assert_int_eq(adds, 1);
  ck_assert_int_eq(graph_verify(g, stderr), 0);
  compiled_free(&c);
}
END_TEST

START_TEST(test_flatten_is_a_view) {
  Compiled c;
  compile_in_network(&c, "flat.net", "  x = conv(input, 4, k=9)", NULL);
  const Graph *g = &c.graph;
  int f = find_node(g, "flatten1");
  ck_assert_int_eq(g->tensors[g->nodes[f].out].view_of, g->nodes[f].in[0]);
  ck_assert_int_lt(backward_of(g, "flatten1"), 0); /* nothing to compute */
  compiled_free(&c);
}
END_TEST

Suite *suite_autodiff(void) {
  Suite *s = suite_create("autodiff");
  TCase *tc = tcase_create("autodiff");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_each_op_gets_its_backward);
  tcase_add_test(tc, test_scale_gets_two_backward_ops);
  tcase_add_test(tc, test_saves_only_what_backward_needs);
  tcase_add_test(tc, test_no_gradient_for_the_image);
  tcase_add_test(tc, test_shared_weights_one_gradient);
  tcase_add_test(tc, test_each_weight_updated_once_after_its_last_use);
  tcase_add_test(tc, test_tensor_used_twice_accumulates);
  tcase_add_test(tc, test_flatten_is_a_view);
  suite_add_tcase(s, tc);
  return s;
}
