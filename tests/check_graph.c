/* check_graph.c: the graph verifier accepts every model and catches each
 * kind of broken graph; the traffic model counts as by hand. */
#include <stdlib.h>
#include <string.h>

#include "check_netc.h"

static int verify_quiet(const Graph *g) {
  char *buf = NULL;
  size_t len;
  FILE *out = open_memstream(&buf, &len);
  int bad = graph_verify(g, out);
  fclose(out);
  free(buf);
  return bad;
}

START_TEST(test_verifier_accepts_small) {
  Compiled c;
  compile_path(&c, "tests/golden/small.net");
  ck_assert_int_eq(c.rc, 0);
  ck_assert_int_eq(verify_quiet(&c.graph), 0);
  compiled_free(&c);
}
END_TEST

/* The first update node. */
static int update_node(const Graph *g) {
  for (int i = g->nforward; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_UPDATE)
      return i;
  ck_abort_msg("no update node");
  return -1;
}

/* Each case breaks one invariant of a good graph. */
static void break_graph(Graph *g, int how) {
  int add = -1;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_ADD)
      add = i;
  switch (how) {
  case 0: g->nodes[3].in[0] = g->ntensors + 5; break;     /* id range */
  case 1: g->nodes[2].in[0] = g->nodes[5].out; break;     /* order */
  case 2: g->nodes[4].out = g->nodes[3].out; break;       /* 2 producers */
  case 3: g->tensors[g->nodes[0].out].shape.c += 1; break; /* shape */
  case 4: g->nodes[0].weight[0] = g->nweights; break;     /* weight id */
  case 5: g->nodes[add].in[1] = g->input; break;          /* add shapes */
  case 6: g->loss = g->nodes[0].out; break;               /* loss op */
  case 7: g->nodes[0].weight[0] = g->nodes[1].weight[0]; break; /* w shape */
  case 8: g->nodes[1].nin = 2; break;                     /* arity */
  case 9: g->nodes[update_node(g)].in[0] = g->nodes[0].out; break;
  case 10: /* a weight's gradient no longer written by its first writer */
    g->nodes[g->tensors[g->weights[0].grad].producer].wgrad[0] = -1;
    break;
  case 11: { /* the first update names a weight used after it */
    int u = update_node(g);
    g->nodes[u].weight[0] = 0;
    g->nodes[u].in[0] = g->weights[0].grad;
    break;
  }
  }
}

START_TEST(test_verifier_catches) {
  Compiled c;
  compile_path(&c, "tests/golden/small.net");
  ck_assert_int_eq(c.rc, 0);
  break_graph(&c.graph, _i);
  ck_assert_int_gt(verify_quiet(&c.graph), 0);
  compiled_free(&c);
}
END_TEST

/* traffic.c's model on a net small enough to count by hand (batch 64,
 * 4-byte floats): each op reads its operands once and writes its output
 * once; a view moves nothing; an update moves its gradient, parameter and
 * momentum. */
START_TEST(test_traffic_by_hand) {
  Compiled c;
  compile_text(&c, "traffic.net",
               "network t(input = 2x4x4, classes = 5) {\n"
               "  x = conv(input, 3, k=1, bias=false) -> relu\n"
               "  return flatten(x) -> dense(classes, bias=false)"
               " -> softmax_cross_entropy\n}\n");
  ck_assert_msg(c.rc == 0, "%s", c.messages);
  const Graph *g = &c.graph;
  int64_t in = 64 * 2 * 16 * 4, act = 64 * 3 * 16 * 4, w = 3 * 2 * 4;
  Traffic t = node_traffic(g, find_node(g, "conv1"));
  ck_assert_int_eq(t.read, in + w);
  ck_assert_int_eq(t.written, act);
  t = node_traffic(g, find_node(g, "relu1"));
  ck_assert_int_eq(t.read, act);
  ck_assert_int_eq(t.written, act);
  t = node_traffic(g, find_node(g, "flatten1"));
  ck_assert_int_eq(t.read + t.written, 0);
  Traffic sum = {0, 0};
  int updates = 0;
  for (int i = 0; i < g->nnodes; i++) {
    Traffic o = node_traffic(g, i);
    sum.read += o.read, sum.written += o.written;
    const Node *n = &g->nodes[i];
    if (n->op == OP_UPDATE && !strcmp(g->weights[n->weight[0]].name,
                                      "conv1.weight")) {
      ck_assert_int_eq(o.read, 3 * w); /* gradient, parameter, momentum */
      ck_assert_int_eq(o.written, 2 * w);
      updates++;
    }
  }
  ck_assert_int_eq(updates, 1);
  t = step_traffic(g);
  ck_assert_int_eq(t.read, sum.read);
  ck_assert_int_eq(t.written, sum.written);
  compiled_free(&c);
}
END_TEST

Suite *suite_graph(void) {
  Suite *s = suite_create("graph");
  TCase *tc = tcase_create("graph");
  tcase_add_test(tc, test_verifier_accepts_small);
  tcase_add_test(tc, test_traffic_by_hand);
  tcase_add_loop_test(tc, test_verifier_catches, 0, 12);
  suite_add_tcase(s, tc);
  return s;
}
