/* check_ops.c: the op table and its shape, weight and FLOP rules. */
#include <string.h>

#include "check_netc.h"

START_TEST(test_table_lookup) {
  for (int k = 0; k < OP_USER_COUNT; k++) {
    ck_assert_int_eq(op_lookup(op_info(k)->name), k);
    ck_assert(op_info(k)->user);
    ck_assert(op_info(k)->backward != OP_NONE);
  }
  for (int k = OP_USER_COUNT; k < OP_COUNT; k++) { /* internal: not users' */
    ck_assert_int_eq(op_lookup(op_info(k)->name), -1);
    ck_assert(!op_info(k)->user);
  }
  ck_assert_int_eq(op_info(OP_CONV)->backward, OP_CONV_BWD);
  ck_assert_int_eq(op_info(OP_ADD)->backward, OP_PASS);
  ck_assert_int_eq(op_lookup("conv2d"), -1);
  const OpInfo *conv = op_info(OP_CONV);
  ck_assert_int_eq(conv->ninputs, 1);
  ck_assert_int_eq(conv->nparams, 6);
  ck_assert_int_eq(conv->params[CONV_GROUPS].def, 1);
  ck_assert_str_eq(conv->params[CONV_K].name, "k");
  ck_assert(conv->params[CONV_OUT].required);
  ck_assert(!conv->params[CONV_STRIDE].required);
  ck_assert_int_eq(conv->params[CONV_STRIDE].def, 1);
  ck_assert(conv->params[CONV_BIAS].is_bool);
  ck_assert_int_eq(conv->params[CONV_BIAS].def, 1);
  const OpInfo *mp = op_info(OP_MAXPOOL);
  ck_assert_int_eq(mp->params[POOL_STRIDE].def_from, POOL_K);
  ck_assert_int_eq(op_info(OP_ADD)->ninputs, 2);
}
END_TEST

static Shape infer1(OpKind k, Shape in, const int64_t *a, bool *ok) {
  Pool p = {0};
  Shape out = {0};
  const char *why = NULL;
  Shape ins[2] = {in, in};
  *ok = op_infer(k, ins, a, &out, &p, &why);
  pool_free(&p);
  return out;
}

/* Output sizes as PyTorch computes them: floor((H + 2p - k) / s) + 1. */
static const struct {
  int64_t h, k, s, p, want;
} conv_cases[] = {
    {64, 7, 2, 3, 32}, {64, 3, 1, 1, 64}, {7, 1, 2, 0, 4}, {64, 7, 1, 0, 58},
    {5, 3, 2, 1, 3},   {4, 3, 3, 0, 1},   {9, 4, 3, 2, 4}, {1, 1, 1, 0, 1},
};

START_TEST(test_conv_output_size) {
  int64_t a[6] = {16, conv_cases[_i].k, conv_cases[_i].s, conv_cases[_i].p,
                  0, 1};
  bool ok;
  Shape out = infer1(OP_CONV, (Shape){3, conv_cases[_i].h, conv_cases[_i].h},
                     a, &ok);
  ck_assert(ok);
  ck_assert_int_eq(out.c, 16);
  ck_assert_int_eq(out.h, conv_cases[_i].want);
  ck_assert_int_eq(out.w, conv_cases[_i].want);
}
END_TEST

START_TEST(test_window_errors) {
  bool ok;
  int64_t big[6] = {8, 9, 1, 0, 0, 1};
  infer1(OP_CONV, (Shape){3, 8, 8}, big, &ok);
  ck_assert(!ok); /* window larger than the input */
  int64_t zero_stride[6] = {8, 3, 0, 0, 0, 1};
  infer1(OP_CONV, (Shape){3, 8, 8}, zero_stride, &ok);
  ck_assert(!ok);
  int64_t pool_pad[3] = {3, 1, 2}; /* pad > k/2, as PyTorch refuses */
  infer1(OP_MAXPOOL, (Shape){3, 8, 8}, pool_pad, &ok);
  ck_assert(!ok);
  int64_t pool_ok[3] = {3, 2, 1};
  Shape o = infer1(OP_AVGPOOL, (Shape){3, 8, 8}, pool_ok, &ok);
  ck_assert(ok);
  ck_assert_int_eq(o.h, 4);
}
END_TEST

START_TEST(test_flat_ops) {
  bool ok;
  Shape o = infer1(OP_FLATTEN, (Shape){16, 2, 3}, NULL, &ok);
  ck_assert(ok && o.c == 96 && o.h == 1 && o.w == 1);
  o = infer1(OP_GLOBAL_AVGPOOL, (Shape){16, 5, 7}, NULL, &ok);
  ck_assert(ok && o.c == 16 && o.h == 1 && o.w == 1);
  int64_t d[2] = {10, 1};
  infer1(OP_DENSE, (Shape){16, 2, 2}, d, &ok);
  ck_assert(!ok); /* dense needs a flat input */
  o = infer1(OP_DENSE, (Shape){16, 1, 1}, d, &ok);
  ck_assert(ok && o.c == 10);
  o = infer1(OP_SOFTMAX_XENT, (Shape){10, 1, 1}, NULL, &ok);
  ck_assert(ok && o.c == 1);
  o = infer1(OP_SIGMOID, (Shape){16, 5, 7}, NULL, &ok); /* on any shape */
  ck_assert(ok && o.c == 16 && o.h == 5 && o.w == 7);
  o = infer1(OP_SIGMOID, (Shape){10, 1, 1}, NULL, &ok);
  ck_assert(ok && o.c == 10 && o.h == 1 && o.w == 1);
  ck_assert_int_eq(op_info(OP_SIGMOID)->backward, OP_SIGMOID_BWD);
}
END_TEST

START_TEST(test_add_needs_equal_shapes) {
  Pool p = {0};
  Shape in[2] = {{8, 4, 4}, {8, 4, 5}}, out;
  const char *why = NULL;
  ck_assert(!op_infer(OP_ADD, in, NULL, &out, &p, &why));
  ck_assert_str_eq(why, "add needs equal shapes, got 8x4x4 and 8x4x5");
  in[1].w = 4;
  ck_assert(op_infer(OP_ADD, in, NULL, &out, &p, &why));
  pool_free(&p);
}
END_TEST

/* conv groups=G: C and out divisible by G; the weight is (out, C/G, k, k)
 * and the FLOPs 1/G of the ungrouped layer's. */
START_TEST(test_conv_groups) {
  Pool p = {0};
  Shape in = {64, 8, 8}, out;
  int64_t a[6] = {128, 3, 1, 1, 0, 32};
  const char *why = NULL;
  ck_assert(op_infer(OP_CONV, &in, a, &out, &p, &why));
  ck_assert(out.c == 128 && out.h == 8 && out.w == 8);
  WeightShape w[MAX_WEIGHTS_PER_NODE];
  ck_assert_int_eq(op_weights(OP_CONV, &in, a, w), 1);
  ck_assert(w[0].dims[0] == 128 && w[0].dims[1] == 2 && w[0].dims[2] == 3);
  int64_t one[6] = {128, 3, 1, 1, 0, 1};
  ck_assert_double_eq(op_flops(OP_CONV, &in, &out, one),
                      32 * op_flops(OP_CONV, &in, &out, a));
  int64_t fi, fo;
  op_info(OP_CONV)->fans(&in, a, &fi, &fo);
  ck_assert(fi == 2 * 9 && fo == 128 * 9); /* as PyTorch's, from the dims */
  a[5] = 3; /* divides neither */
  ck_assert(!op_infer(OP_CONV, &in, a, &out, &p, &why));
  ck_assert_str_eq(why, "groups=3 must divide both the input's 64 channels "
                        "and out=128");
  a[5] = 64, a[0] = 96; /* divides C, not out */
  ck_assert(!op_infer(OP_CONV, &in, a, &out, &p, &why));
  pool_free(&p);
}
END_TEST

/* scale(x, s): s is one factor per channel, C x 1 x 1; the output is x's
 * shape; each input has a backward op of its own. */
START_TEST(test_scale_needs_channel_factors) {
  Pool p = {0};
  Shape in[2] = {{8, 4, 5}, {8, 1, 1}}, out;
  const char *why = NULL;
  ck_assert(op_infer(OP_SCALE, in, NULL, &out, &p, &why));
  ck_assert(out.c == 8 && out.h == 4 && out.w == 5);
  in[1] = (Shape){4, 1, 1};
  ck_assert(!op_infer(OP_SCALE, in, NULL, &out, &p, &why));
  ck_assert_str_eq(why, "scale needs s of 8x1x1 (one factor per channel of "
                        "x, which is 8x4x5), got 4x1x1");
  in[1] = (Shape){8, 4, 5}; /* not a broadcast of any shape */
  ck_assert(!op_infer(OP_SCALE, in, NULL, &out, &p, &why));
  ck_assert_int_eq(op_info(OP_SCALE)->backward, OP_SCALE_BWD);
  ck_assert_int_eq(op_backward_of(OP_SCALE, 1), OP_SCALE_BWD_S);
  ck_assert_int_eq(op_backward_of(OP_ADD, 1), OP_NONE);
  ck_assert_int_eq(op_backward_of(OP_SCALE, 0), OP_NONE);
  pool_free(&p);
}
END_TEST

START_TEST(test_weights) {
  WeightShape w[MAX_WEIGHTS_PER_NODE];
  int64_t conv[6] = {64, 7, 2, 3, 0, 1};
  Shape in = {3, 64, 64};
  ck_assert_int_eq(op_weights(OP_CONV, &in, conv, w), 1);
  ck_assert_int_eq(w[0].ndims, 4);
  int64_t want[4] = {64, 3, 7, 7};
  ck_assert_mem_eq(w[0].dims, want, sizeof want);
  conv[CONV_BIAS] = 1;
  ck_assert_int_eq(op_weights(OP_CONV, &in, conv, w), 2);
  ck_assert_str_eq(w[1].suffix, "bias");
  ck_assert_int_eq(op_weights(OP_BATCHNORM, &in, NULL, w), 2);
  ck_assert_int_eq(w[0].dims[0], 3);
  Shape flat = {512, 1, 1};
  int64_t dense[2] = {200, 1};
  ck_assert_int_eq(op_weights(OP_DENSE, &flat, dense, w), 2);
  ck_assert_int_eq(w[0].dims[0], 200);
  ck_assert_int_eq(w[0].dims[1], 512);
  ck_assert_int_eq(op_weights(OP_RELU, &in, NULL, w), 0);
}
END_TEST

START_TEST(test_flops) {
  Shape in = {3, 64, 64}, out = {64, 32, 32};
  int64_t conv[6] = {64, 7, 2, 3, 0, 1};
  /* 2 * C_in * K * K per output element. */
  ck_assert_double_eq(op_flops(OP_CONV, &in, &out, conv),
                      2.0 * 3 * 49 * 64 * 32 * 32);
  Shape f = {512, 1, 1}, o = {200, 1, 1};
  int64_t dense[2] = {200, 1};
  ck_assert_double_eq(op_flops(OP_DENSE, &f, &o, dense),
                      200.0 * (2 * 512 + 1));
  ck_assert_double_eq(op_flops(OP_RELU, &out, &out, NULL), 64.0 * 32 * 32);
}
END_TEST

/* Every row is complete and consistent with the rows it names: what the
 * passes rely on instead of lists of their own. */
START_TEST(test_every_row_is_complete) {
  for (int k = 0; k < OP_COUNT; k++) {
    const OpInfo *op = op_info((OpKind)k);
    ck_assert_msg(op->name && op->doc, "op %d has no row", k);
    ck_assert_int_eq(op->user, k < OP_USER_COUNT);
    for (int j = 0; j < MAX_OP_PARAMS; j++)
      ck_assert_msg((op->params[j].name != NULL) == (j < op->nparams),
                    "%s: nparams is %d", op->name, op->nparams);
    ck_assert_msg(op->view || op->kernel.fn, "%s calls no kernel", op->name);
    int nargs = 0, shape_arg = 0;
    while (nargs < MAX_KERNEL_ARGS && op->kernel.args[nargs] != KA_END)
      shape_arg |= op->kernel.args[nargs++] == KA_SHAPE;
    ck_assert_msg(nargs < MAX_KERNEL_ARGS, "%s: args not ended", op->name);
    ck_assert_msg(shape_arg == (op->shape != SK_NONE),
                  "%s: a shape struct without a SHAPE argument", op->name);
    if (op->weights)
      for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++)
        ck_assert_msg(op->init[j] != NULL, "%s: weight %d has no init",
                      op->name, j);
    if (k < OP_USER_COUNT && op->backward != OP_PASS) {
      /* A backward op takes its forward op's shape struct. */
      const OpInfo *b = op_info(op->backward);
      ck_assert(!b->user && b->backward == OP_NONE);
      ck_assert_msg(b->shape == op->shape, "%s and %s take other shapes",
                    op->name, b->name);
      ck_assert_int_eq(b->nbwd_in, b->ninputs);
    }
  }
}
END_TEST

/* An op a switch was not written for stops netc with a message. */
START_TEST(test_unknown_op_is_an_internal_error) {
  op_info(OP_COUNT);
}
END_TEST

Suite *suite_ops(void) {
  Suite *s = suite_create("ops");
  TCase *tc = tcase_create("ops");
  tcase_add_test(tc, test_table_lookup);
  tcase_add_test(tc, test_every_row_is_complete);
  tcase_add_exit_test(tc, test_unknown_op_is_an_internal_error, 1);
  tcase_add_loop_test(tc, test_conv_output_size, 0,
                      sizeof conv_cases / sizeof conv_cases[0]);
  tcase_add_test(tc, test_window_errors);
  tcase_add_test(tc, test_flat_ops);
  tcase_add_test(tc, test_add_needs_equal_shapes);
  tcase_add_test(tc, test_scale_needs_channel_factors);
  tcase_add_test(tc, test_conv_groups);
  tcase_add_test(tc, test_weights);
  tcase_add_test(tc, test_flops);
  suite_add_tcase(s, tc);
  return s;
}
