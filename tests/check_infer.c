/* check_infer.c: elaboration and shape inference: the zoo's exact parameter
 * counts, block expansion, shortcuts, weight sharing, layer names. */
#include <stdlib.h>
#include <string.h>

#include "check_netc.h"

/* Parameter counts of the same architectures built in PyTorch
 * (torchvision's resnetNN(num_classes=200)). */
static const struct {
  const char *path;
  int64_t params;
  int64_t classes;
} zoo[] = {
    {"models/resnet18.net", 11279112, 200},
    {"models/resnet34.net", 21387272, 200},
    {"models/resnet50.net", 23917832, 200},
    {"models/resnet101.net", 42909960, 200},
    {"models/resnet152.net", 58553608, 200},
    {"models/resnet18-s1.net", 11271432, 200},
    {"models/wide_resnet50_2.net", 67244040, 200}, /* torchvision's too */
    {"models/resnext50_32x4d.net", 23389704, 200},
    {"models/resnext101_32x8d.net", 87152136, 200},
    /* tests/reference/modules.py's PAPER_NETWORKS at 200 classes */
    {"models/se_resnet50.net", 26448824, 200},
    {"models/preact_resnet18.net", 11277448, 200},
    {"models/resnet50d.net", 23937064, 200},
    /* 25,869,804 in PyTorch minus 5,578,240 registered-but-unused
     * projection parameters (see the comment in the model). */
    {"models/seed_resnet.net", 20291564, 100},
};

START_TEST(test_zoo_param_counts) {
  Compiled c;
  compile_path(&c, zoo[_i].path);
  if (c.rc)
    ck_abort_msg("%s: %s", zoo[_i].path, c.messages);
  ck_assert_int_eq(graph_param_count(&c.graph), zoo[_i].params);
  ck_assert_int_eq(c.graph.classes, zoo[_i].classes);
  ck_assert_int_eq(c.diag.warnings, 0);
  ck_assert_int_eq(graph_verify(&c.graph, stderr), 0);
  compiled_free(&c);
}
END_TEST

START_TEST(test_resnet50_shapes) {
  Compiled c;
  compile_path(&c, "models/resnet50.net");
  ck_assert_int_eq(c.rc, 0);
  Graph *g = &c.graph;
  struct {
    const char *path;
    Shape s;
  } want[] = {
      {"imagenet_stem1.conv1", {64, 32, 32}},
      {"imagenet_stem1.maxpool1", {64, 16, 16}},
      {"stage1.bottleneck1.add1", {256, 16, 16}},
      {"stage2.bottleneck1.conv2", {128, 8, 8}}, /* stride on the 3x3 */
      {"stage2.bottleneck1.conv1", {128, 16, 16}},
      {"stage4.bottleneck3.relu3", {2048, 2, 2}},
      {"classifier1.dense1", {200, 1, 1}},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    int n = find_node(g, want[i].path);
    ck_assert_msg(n >= 0, "no layer %s", want[i].path);
    Shape s = g->tensors[g->nodes[n].out].shape;
    ck_assert_msg(s.c == want[i].s.c && s.h == want[i].s.h &&
                      s.w == want[i].s.w,
                  "%s is %lldx%lldx%lld", want[i].path, (long long)s.c,
                  (long long)s.h, (long long)s.w);
  }
  /* Projections exactly at stage starts: 4 in ResNet-50. */
  int proj = 0;
  for (int i = 0; i < g->nforward; i++)
    if (strstr(g->nodes[i].path, "shortcut1.conv1"))
      proj++;
  ck_assert_int_eq(proj, 4);
  ck_assert_int_ge(find_node(g, "stage1.bottleneck1.shortcut1.conv1"), 0);
  ck_assert_int_lt(find_node(g, "stage1.bottleneck2.shortcut1.conv1"), 0);
  compiled_free(&c);
}
END_TEST

START_TEST(test_resnet18_has_no_stage1_projection) {
  Compiled c;
  compile_path(&c, "models/resnet18.net");
  ck_assert_int_eq(c.rc, 0);
  ck_assert_int_lt(find_node(&c.graph, "stage1.basic1.shortcut1.conv1"), 0);
  ck_assert_int_ge(find_node(&c.graph, "stage2.basic1.shortcut1.conv1"), 0);
  int w = find_weight(&c.graph, "stage2.basic1.shortcut1.conv1.weight");
  ck_assert_int_ge(w, 0);
  ck_assert_int_eq(c.graph.weights[w].count, 128 * 64);
  compiled_free(&c);
}
END_TEST

START_TEST(test_shared_block_weights) {
  Compiled c;
  compile_path(&c, "models/seed_resnet.net");
  ck_assert_int_eq(c.rc, 0);
  Graph *g = &c.graph;
  /* Stage 3 applies its shared block 5 times: one weight, 5 uses. */
  int w = find_weight(g, "seed_stage3.again.conv2.weight");
  ck_assert_int_ge(w, 0);
  ck_assert_int_eq(g->weights[w].uses, 5);
  int a = find_node(g, "seed_stage3.again.conv2");
  int b = find_node(g, "seed_stage3.again@5.conv2");
  ck_assert_int_ge(a, 0);
  ck_assert_int_ge(b, 0);
  ck_assert_int_eq(g->nodes[a].weight[0], g->nodes[b].weight[0]);
  ck_assert_int_lt(find_node(g, "seed_stage3.again@6.conv2"), 0);
  ck_assert_int_eq(g->weights[find_weight(g, "seed_stage1.again.conv1.weight")]
                       .uses, 2);
  /* Shapes: 64 -> 58 (7x7, no pad) -> 56 (3x3/1 pool) -> 28 ... -> 4. */
  ck_assert_int_eq(g->tensors[g->nodes[find_node(g, "conv1")].out].shape.h,
                   58);
  ck_assert_int_eq(
      g->tensors[g->nodes[find_node(g, "maxpool1")].out].shape.h, 56);
  ck_assert_int_eq(
      g->tensors[g->nodes[find_node(g, "seed_stage4.again.add1")].out]
          .shape.h, 4);
  ck_assert_int_eq(
      g->tensors[g->nodes[find_node(g, "avgpool1")].out].shape.h, 1);
  compiled_free(&c);
}
END_TEST

START_TEST(test_nested_sharing_composes) {
  /* A shared block inside a shared block: the inner weights are shared
   * across the outer applications too. */
  Compiled c;
  compile_text(&c, "nested.net",
               "block inner(x) { return conv(x, x.c, k=3, pad=1) }\n"
               "block outer(x) {\n"
               "  shared i = inner()\n"
               "  return i(i(x))\n"
               "}\n"
               "network n(input = 4x6x6, classes = 4) {\n"
               "  shared o = outer()\n"
               "  x = o(o(input))\n"
               "  return global_avgpool(x) -> flatten -> "
               "softmax_cross_entropy\n"
               "}\n");
  if (c.rc)
    ck_abort_msg("%s", c.messages);
  ck_assert_int_eq(c.graph.nweights, 2); /* one conv weight and bias */
  ck_assert_int_eq(c.graph.weights[0].uses, 4);
  ck_assert_int_eq(graph_param_count(&c.graph), 4 * 4 * 9 + 4);
  compiled_free(&c);
}
END_TEST

START_TEST(test_unused_value_warns) {
  Compiled c;
  compile_text(&c, "unused.net",
               "network n(input = 4x6x6, classes = 4) {\n"
               "  y = relu(input)\n"
               "  return global_avgpool(input) -> flatten -> "
               "softmax_cross_entropy\n"
               "}\n");
  ck_assert_int_eq(c.rc, 0);
  ck_assert_int_eq(c.diag.warnings, 1);
  ck_assert_ptr_nonnull(strstr(c.messages, "unused.net:2:7: warning: the "
                                           "result of 'relu' (relu1) is "
                                           "never used"));
  compiled_free(&c);
}
END_TEST

START_TEST(test_add_mismatch_notes) {
  Compiled c;
  compile_text(&c, "mismatch.net",
               "network n(input = 4x8x8, classes = 4) {\n"
               "  a = conv(input, 8, k=3, pad=1)\n"
               "  b = conv(input, 8, k=3, stride=2, pad=1)\n"
               "  x = add(a, b)\n"
               "  return global_avgpool(x) -> flatten -> dense(classes) -> "
               "softmax_cross_entropy\n"
               "}\n");
  ck_assert_int_eq(c.rc, 1);
  ck_assert_ptr_nonnull(strstr(c.messages, "mismatch.net:4:7: error: add "
                                           "needs equal shapes, got 8x8x8 "
                                           "and 8x4x4"));
  ck_assert_ptr_nonnull(strstr(c.messages, "mismatch.net:2:7: note: 'a' is "
                                           "8x8x8, defined here"));
  ck_assert_ptr_nonnull(strstr(c.messages, "mismatch.net:3:7: note: 'b' is "
                                           "8x4x4, defined here"));
  compiled_free(&c);
}
END_TEST

START_TEST(test_defaults_use_earlier_params) {
  Compiled c;
  compile_path(&c, "tests/golden/small.net");
  ck_assert_int_eq(c.rc, 0);
  /* widen(x, 16, stride=2) has pre = out / 2 = 8 channels in its 1x1. */
  int n = find_node(&c.graph, "widen1.conv1");
  ck_assert_int_eq(c.graph.tensors[c.graph.nodes[n].out].shape.c, 8);
  ck_assert_int_ge(find_node(&c.graph, "widen1.shortcut1.conv1"), 0);
  ck_assert_int_eq(graph_param_count(&c.graph), 4530);
  compiled_free(&c);
}
END_TEST

START_TEST(test_overflow_is_an_error) {
  Compiled c;
  compile_text(&c, "huge.net",
               "network n(input = 16777216x16777216x16777216, classes = 4) "
               "{\n  x = relu(input)\n"
               "  return global_avgpool(x) -> flatten -> "
               "softmax_cross_entropy\n}\n");
  ck_assert_int_eq(c.rc, 1);
  ck_assert_ptr_nonnull(strstr(c.messages, "more than 2^31 elements"));
  compiled_free(&c);
  compile_text(&c, "bigw.net",
               "network n(input = 3x4x4, classes = 4) {\n"
               "  x = global_avgpool(input) -> flatten -> dense(16777216) "
               "-> dense(16777216)\n"
               "  return softmax_cross_entropy(x)\n}\n");
  ck_assert_int_eq(c.rc, 1);
  ck_assert_ptr_nonnull(strstr(c.messages, "the weight of 'dense' has more "
                                           "than 2^31 elements"));
  compiled_free(&c);
}
END_TEST

START_TEST(test_names_are_unique) {
  /* A block whose name ends in a digit, a shared instance named like a
   * generated name, and a shared statement run twice: all names differ. */
  Compiled c;
  compile_text(&c, "names.net",
               "block b1(x) { return conv(x, 4, k=1) }\n"
               "block b(x) { return conv(x, 4, k=1) }\n"
               "network n(input = 4x4x4, classes = 4) {\n"
               "  x = input\n"
               "  repeat 11 { x = b(x) }\n"
               "  x = b1(x)\n"
               "  shared b2 = b()\n"
               "  x = b2(x)\n"
               "  repeat 2 {\n"
               "    shared u = b()\n"
               "    x = u(x)\n"
               "  }\n"
               "  return global_avgpool(x) -> flatten -> softmax_cross_entropy\n"
               "}\n");
  if (c.rc)
    ck_abort_msg("%s", c.messages);
  Graph *g = &c.graph;
  for (int i = 0; i < g->nweights; i++)
    for (int j = i + 1; j < g->nweights; j++)
      ck_assert_str_ne(g->weights[i].name, g->weights[j].name);
  for (int i = 0; i < g->nforward; i++)
    for (int j = i + 1; j < g->nforward; j++)
      ck_assert_str_ne(g->nodes[i].path, g->nodes[j].path);
  ck_assert_int_ge(find_node(g, "b11.conv1"), 0);
  ck_assert_int_ge(find_node(g, "b1_1.conv1"), 0);
  ck_assert_int_ge(find_node(g, "b2_2.conv1"), 0); /* shared b2 */
  ck_assert_int_ge(find_node(g, "u.conv1"), 0);
  ck_assert_int_ge(find_node(g, "u_2.conv1"), 0);
  compiled_free(&c);
}
END_TEST

Suite *suite_infer(void) {
  Suite *s = suite_create("infer");
  TCase *tc = tcase_create("infer");
  tcase_set_timeout(tc, 30);
  tcase_add_loop_test(tc, test_zoo_param_counts, 0, sizeof zoo / sizeof zoo[0]);
  tcase_add_test(tc, test_resnet50_shapes);
  tcase_add_test(tc, test_resnet18_has_no_stage1_projection);
  tcase_add_test(tc, test_shared_block_weights);
  tcase_add_test(tc, test_nested_sharing_composes);
  tcase_add_test(tc, test_unused_value_warns);
  tcase_add_test(tc, test_add_mismatch_notes);
  tcase_add_test(tc, test_defaults_use_earlier_params);
  tcase_add_test(tc, test_overflow_is_an_error);
  tcase_add_test(tc, test_names_are_unique);
  suite_add_tcase(s, tc);
  return s;
}
