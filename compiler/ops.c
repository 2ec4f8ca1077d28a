/* ops.c: the operation table. One row per op holds everything netc knows
 * about it: its name, inputs and attributes, its shape rule, the weights it
 * creates and their layout, its FLOPs, what it saves for its backward op
 * and which op that is, which inputs it may overwrite, and the kernel call
 * it becomes. Passes read the row (through op_info and the functions
 * below); none of them has a list of ops of its own.
 *
 * The table is a const initializer: nothing is built at run time. */
#include <stdlib.h>
#include <string.h>

#include "netc.h"
#include "kernels/netc_rt.h" /* BATCHNORM_WORK_BYTES: the kernel's workspace */

/* ---- shape rules --------------------------------------------------------- */

/* Output size of a sliding window, or -1 if the window does not fit. */
static int64_t window(int64_t in, int64_t k, int64_t stride, int64_t pad) {
  if (in + 2 * pad < k)
    return -1;
  return (in + 2 * pad - k) / stride + 1;
}

static bool check_window(Pool *p, const int64_t *a, const char *op,
                         bool pool_pad, const char **why) {
  int64_t k = a[0], stride = a[1], pad = a[2];
  if (k < 1 || stride < 1 || pad < 0) {
    *why = pool_printf(p, "%s needs k >= 1, stride >= 1 and pad >= 0 "
                          "(got k=%lld, stride=%lld, pad=%lld)",
                       op, (long long)k, (long long)stride, (long long)pad);
    return false;
  }
  if (pool_pad && pad > k / 2) {
    *why = pool_printf(p, "%s padding %lld is more than half the kernel "
                          "size %lld", op, (long long)pad, (long long)k);
    return false;
  }
  return true;
}

static bool spatial(Pool *p, const Shape *in, const int64_t *win, Shape *out,
                    const char *op, const char **why) {
  int64_t k = win[0], pad = win[2];
  out->h = window(in->h, k, win[1], pad);
  out->w = window(in->w, k, win[1], pad);
  if (out->h < 1 || out->w < 1) {
    *why = pool_printf(p, "%s window %lldx%lld (pad %lld) does not fit "
                          "the %lldx%lld input",
                       op, (long long)k, (long long)k, (long long)pad,
                       (long long)in->h, (long long)in->w);
    return false;
  }
  return true;
}

static bool infer_conv(const Shape *in, const int64_t *a, Shape *out,
                       Pool *p, const char **why) {
  const int64_t win[3] = {a[CONV_K], a[CONV_STRIDE], a[CONV_PAD]};
  if (a[CONV_OUT] < 1) {
    *why = pool_printf(p, "conv needs out >= 1 (got %lld)",
                       (long long)a[CONV_OUT]);
    return false;
  }
  int64_t G = a[CONV_GROUPS];
  if (G < 1 || in->c % G || a[CONV_OUT] % G) {
    /* "groups=": reported at that argument (infer_ops.c) */
    *why = pool_printf(p, "groups=%lld must divide both the input's %lld "
                          "channels and out=%lld",
                       (long long)G, (long long)in->c,
                       (long long)a[CONV_OUT]);
    return false;
  }
  out->c = a[CONV_OUT];
  return check_window(p, win, "conv", false, why) &&
         spatial(p, in, win, out, "conv", why);
}

static bool infer_maxpool(const Shape *in, const int64_t *a, Shape *out,
                          Pool *p, const char **why) {
  return check_window(p, a, "maxpool", true, why) &&
         spatial(p, in, a, out, "maxpool", why);
}

static bool infer_avgpool(const Shape *in, const int64_t *a, Shape *out,
                          Pool *p, const char **why) {
  return check_window(p, a, "avgpool", true, why) &&
         spatial(p, in, a, out, "avgpool", why);
}

static bool infer_add(const Shape *in, const int64_t *a, Shape *out, Pool *p,
                      const char **why) {
  (void)a, (void)out;
  if (in[0].c != in[1].c || in[0].h != in[1].h || in[0].w != in[1].w) {
    *why = pool_printf(p, "add needs equal shapes, got %s and %s",
                       shape_str(p, in[0]), shape_str(p, in[1]));
    return false;
  }
  return true;
}

static bool infer_scale(const Shape *in, const int64_t *a, Shape *out,
                        Pool *p, const char **why) {
  (void)a, (void)out;
  if (in[1].c != in[0].c || in[1].h != 1 || in[1].w != 1) {
    *why = pool_printf(p, "scale needs s of %lldx1x1 (one factor per channel "
                          "of x, which is %s), got %s",
                       (long long)in[0].c, shape_str(p, in[0]),
                       shape_str(p, in[1]));
    return false;
  }
  return true;
}

static bool infer_dropout(const Shape *in, const int64_t *a, Shape *out,
                          Pool *p, const char **why) {
  (void)in, (void)out;
  double r = attr_real(a[0]);
  if (!(r >= 0 && r < 1)) { /* "p=": reported at that argument */
    *why = pool_printf(p, "p=%g must be in [0, 1): the probability of "
                          "zeroing an element", r);
    return false;
  }
  return true;
}

static bool infer_global_avgpool(const Shape *in, const int64_t *a,
                                 Shape *out, Pool *p, const char **why) {
  (void)in, (void)a, (void)p, (void)why;
  out->h = out->w = 1;
  return true;
}

static bool infer_flatten(const Shape *in, const int64_t *a, Shape *out,
                          Pool *p, const char **why) {
  (void)a, (void)p, (void)why;
  *out = (Shape){shape_elems(in[0]), 1, 1};
  return true;
}

static bool infer_dense(const Shape *in, const int64_t *a, Shape *out,
                        Pool *p, const char **why) {
  if (in[0].h != 1 || in[0].w != 1) {
    *why = pool_printf(p, "dense needs a flat input (C x 1 x 1), got %s; "
                          "use flatten or global_avgpool first",
                       shape_str(p, in[0]));
    return false;
  }
  if (a[DENSE_OUT] < 1) {
    *why = pool_printf(p, "dense needs out >= 1 (got %lld)",
                       (long long)a[DENSE_OUT]);
    return false;
  }
  *out = (Shape){a[DENSE_OUT], 1, 1};
  return true;
}

static bool infer_softmax_xent(const Shape *in, const int64_t *a, Shape *out,
                               Pool *p, const char **why) {
  (void)a;
  if (in[0].h != 1 || in[0].w != 1) {
    *why = pool_printf(p, "softmax_cross_entropy needs flat logits "
                          "(classes x 1 x 1), got %s",
                       shape_str(p, in[0]));
    return false;
  }
  *out = (Shape){1, 1, 1};
  return true;
}

/* ---- weights --------------------------------------------------------------- */

static int conv_weights(const Shape *in, const int64_t *a,
                        WeightShape w[MAX_WEIGHTS_PER_NODE]) {
  w[0] = (WeightShape){"weight",
                       {a[CONV_OUT], in->c / a[CONV_GROUPS], a[CONV_K],
                        a[CONV_K]},
                       4};
  w[1] = (WeightShape){"bias", {a[CONV_OUT]}, 1};
  return a[CONV_BIAS] ? 2 : 1;
}

static int batchnorm_weights(const Shape *in, const int64_t *a,
                             WeightShape w[MAX_WEIGHTS_PER_NODE]) {
  (void)a;
  w[0] = (WeightShape){"weight", {in->c}, 1};
  w[1] = (WeightShape){"bias", {in->c}, 1};
  return 2;
}

static int dense_weights(const Shape *in, const int64_t *a,
                         WeightShape w[MAX_WEIGHTS_PER_NODE]) {
  w[0] = (WeightShape){"weight", {a[DENSE_OUT], in->c}, 2};
  w[1] = (WeightShape){"bias", {a[DENSE_OUT]}, 1};
  return a[DENSE_BIAS] ? 2 : 1;
}

/* The fans of PyTorch's initializations: conv (C_in*K*K, C_out*K*K), dense
 * (in, out). */
static void conv_fans(const Shape *in, const int64_t *a, int64_t *fan_in,
                      int64_t *fan_out) {
  *fan_in = in->c / a[CONV_GROUPS] * a[CONV_K] * a[CONV_K];
  *fan_out = a[CONV_OUT] * a[CONV_K] * a[CONV_K];
}

static void dense_fans(const Shape *in, const int64_t *a, int64_t *fan_in,
                       int64_t *fan_out) {
  *fan_in = in->c;
  *fan_out = a[DENSE_OUT];
}

static void channel_fans(const Shape *in, const int64_t *a, int64_t *fan_in,
                         int64_t *fan_out) {
  (void)a;
  *fan_in = 1;
  *fan_out = in->c;
}

/* ---- FLOPs: a multiply-add counts 2, a comparison or an addition 1 ------- */

static double out_elems(const Shape *out) {
  return (double)shape_elems(*out);
}

static double conv_flops(const Shape *in, const Shape *out, const int64_t *a) {
  return out_elems(out) * (2.0 * (double)(in->c / a[CONV_GROUPS] * a[CONV_K] *
                                           a[CONV_K]) +
                           (a[CONV_BIAS] ? 1 : 0));
}

static double dense_flops(const Shape *in, const Shape *out,
                          const int64_t *a) {
  return out_elems(out) * (2.0 * (double)in->c + (a[DENSE_BIAS] ? 1 : 0));
}

static double scale_shift_flops(const Shape *in, const Shape *out,
                                const int64_t *a) {
  (void)in, (void)a;
  return 2 * out_elems(out);
}

static double elementwise_flops(const Shape *in, const Shape *out,
                                const int64_t *a) {
  (void)in, (void)a;
  return out_elems(out);
}

static double window_flops(const Shape *in, const Shape *out,
                           const int64_t *a) {
  (void)in;
  return out_elems(out) * (double)(a[POOL_K] * a[POOL_K]);
}

static double mean_flops(const Shape *in, const Shape *out, const int64_t *a) {
  (void)out, (void)a;
  return (double)shape_elems(in[0]);
}

static double softmax_flops(const Shape *in, const Shape *out,
                            const int64_t *a) {
  (void)out, (void)a;
  return 4 * (double)shape_elems(in[0]); /* max, exp, sum, log-sum */
}

/* ---- the table ------------------------------------------------------------ */

#define REQUIRED(n) {.name = n, .required = true, .def_from = -1}
#define INT(n, d) {.name = n, .def = d, .def_from = -1}
#define BOOL(n, d) {.name = n, .is_bool = true, .def = d, .def_from = -1}
#define REAL(n, d) {.name = n, .is_real = true, .rdef = d, .def_from = -1}
#define SAME_AS(n, i) {.name = n, .def_from = i}
#define ARGS(...) {__VA_ARGS__, KA_END}
/* Extra tensors: saved for the backward op, or scratch for this op. */
#define SAVED(sfx, sh) {.suffix = sfx, .shape = sh}
#define SAVED_INT(sfx, sh) {.suffix = sfx, .shape = sh, .is_int = true}
#define SCRATCH(sfx, sh) {.suffix = sfx, .shape = sh, .scratch = true}
#define CONV_WORK(sfx, bwd)                                                  \
  {.suffix = sfx, .shape = XS_CONV_WORK, .scratch = true, .if_work = true,   \
   .backward = bwd}

static const OpInfo table[OP_COUNT] = {
    [OP_CONV] = {
        .name = "conv", .doc = "2-D convolution", .ninputs = 1, .user = true,
        .params = {REQUIRED("out"), REQUIRED("k"), INT("stride", 1),
                   INT("pad", 0), BOOL("bias", 1), INT("groups", 1)},
        .nparams = 6, .backward = OP_CONV_BWD, .infer = infer_conv,
        .weights = conv_weights, .layout = {WL_OHWI, WL_VECTOR},
        .init = {"NP_CONV_WEIGHT", "NP_CONV_BIAS"}, .fans = conv_fans,
        .flops = conv_flops,
        .extras = {CONV_WORK("work", false)},
        .nextras = 1, .shape = SK_CONV,
        .kernel = {"conv_forward", NULL,
                   ARGS(KA_OUT, KA_EXTRA0, KA_IN0, KA_W0, KA_W1, KA_SHAPE)}},
    [OP_BATCHNORM] = {
        .name = "batchnorm", .doc = "batch normalization, per channel",
        .ninputs = 1, .user = true, .backward = OP_BATCHNORM_BWD,
        .weights = batchnorm_weights, .layout = {WL_VECTOR, WL_VECTOR},
        .init = {"NP_BN_WEIGHT", "NP_BN_BIAS"}, .fans = channel_fans,
        .flops = scale_shift_flops,
        .extras = {SAVED("mean", XS_CHANNEL), SAVED("invstd", XS_CHANNEL),
                   SCRATCH("work", XS_BN_WORK)},
        .nextras = 3, .shape = SK_BN,
        .kernel = {"batchnorm_forward", NULL,
                   ARGS(KA_OUT, KA_EXTRA0, KA_EXTRA1, KA_EXTRA2, KA_RUN_MEAN,
                        KA_RUN_VAR, KA_IN0, KA_W0, KA_W1, KA_SHAPE,
                        KA_BN_MODE)},
        .fused_name = "batchnorm_relu", .fused_inputs = 1,
        .fused_kernel = {"batchnorm_relu_forward", NULL,
                         ARGS(KA_OUT, KA_EXTRA0, KA_EXTRA1, KA_EXTRA2,
                              KA_RUN_MEAN, KA_RUN_VAR, KA_IN0, KA_W0, KA_W1,
                              KA_SHAPE, KA_BN_MODE)}},
    [OP_RELU] = {
        .name = "relu", .doc = "max(x, 0)", .ninputs = 1, .user = true,
        .backward = OP_RELU_BWD, .flops = elementwise_flops, .inplace = 1,
        .shape = SK_ELT, .onnx = "Relu",
        .kernel = {"relu_forward", NULL, ARGS(KA_OUT, KA_IN0, KA_SHAPE)}},
    [OP_SIGMOID] = {
        .name = "sigmoid", .doc = "1 / (1 + exp(-x))", .ninputs = 1,
        .user = true, .backward = OP_SIGMOID_BWD, .flops = elementwise_flops,
        .inplace = 1, .shape = SK_ELT, .onnx = "Sigmoid",
        .kernel = {"sigmoid_forward", NULL, ARGS(KA_OUT, KA_IN0, KA_SHAPE)}},
    [OP_ADD] = {
        .name = "add", .doc = "elementwise sum of two equal shapes",
        .ninputs = 2, .user = true, .backward = OP_PASS, .infer = infer_add,
        .flops = elementwise_flops, .inplace = 3, .shape = SK_ELT,
        .onnx = "Add",
        .kernel = {"add_forward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_IN1, KA_SHAPE)},
        .fused_name = "add_relu", .fused_inputs = 2,
        .fused_kernel = {"add_relu_forward", NULL,
                         ARGS(KA_OUT, KA_IN0, KA_IN1, KA_SHAPE)}},
    [OP_SCALE] = {
        .name = "scale", .doc = "x times s, one factor per channel and image",
        .ninputs = 2, .user = true, .backward = OP_SCALE_BWD,
        .backward1 = OP_SCALE_BWD_S, .infer = infer_scale,
        .flops = elementwise_flops, .inplace = 1, .shape = SK_GAP,
        .onnx = "Mul", /* s is N x C x 1 x 1: ONNX broadcasts it */
        .kernel = {"scale_forward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_IN1, KA_SHAPE)}},
    [OP_DROPOUT] = {
        .name = "dropout",
        .doc = "in training, zero with probability p, the rest times "
               "1/(1-p); the identity in evaluation",
        .ninputs = 1, .user = true, .params = {REAL("p", 0.5)},
        .nparams = 1, .backward = OP_DROPOUT_BWD, .infer = infer_dropout,
        .flops = elementwise_flops, .inplace = 1, .shape = SK_DROP,
        .onnx = "Identity", /* exported for inference */
        .kernel = {"dropout_forward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_SHAPE, KA_STEP_KEY,
                        KA_TRAINING)}},
    [OP_MAXPOOL] = {
        .name = "maxpool", .doc = "max pooling", .ninputs = 1, .user = true,
        .params = {REQUIRED("k"), SAME_AS("stride", POOL_K), INT("pad", 0)},
        .nparams = 3, .backward = OP_MAXPOOL_BWD, .infer = infer_maxpool,
        .flops = window_flops,
        .extras = {SAVED_INT("argmax", XS_OUTPUT)}, .nextras = 1,
        .shape = SK_POOL,
        .kernel = {"maxpool_forward", NULL,
                   ARGS(KA_OUT, KA_EXTRA0, KA_IN0, KA_SHAPE)}},
    [OP_AVGPOOL] = {
        .name = "avgpool", .doc = "average pooling (padding counted)",
        .ninputs = 1, .user = true,
        .params = {REQUIRED("k"), SAME_AS("stride", POOL_K), INT("pad", 0)},
        .nparams = 3, .backward = OP_AVGPOOL_BWD, .infer = infer_avgpool,
        .flops = window_flops, .shape = SK_POOL,
        .kernel = {"avgpool_forward", NULL, ARGS(KA_OUT, KA_IN0, KA_SHAPE)}},
    [OP_GLOBAL_AVGPOOL] = {
        .name = "global_avgpool", .doc = "mean over height and width",
        .ninputs = 1, .user = true, .backward = OP_GLOBAL_AVGPOOL_BWD,
        .infer = infer_global_avgpool, .flops = mean_flops, .shape = SK_GAP,
        .kernel = {"global_avgpool_forward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_SHAPE)}},
    [OP_DENSE] = {
        .name = "dense", .doc = "fully connected layer", .ninputs = 1,
        .user = true, .params = {REQUIRED("out"), BOOL("bias", 1)},
        .nparams = 2, .backward = OP_DENSE_BWD, .infer = infer_dense,
        .weights = dense_weights, .layout = {WL_OUT_IN, WL_VECTOR},
        .init = {"NP_DENSE_WEIGHT", "NP_DENSE_BIAS"}, .fans = dense_fans,
        .flops = dense_flops, .shape = SK_DENSE,
        .kernel = {"dense_forward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_W0, KA_W1, KA_SHAPE)}},
    [OP_FLATTEN] = {
        .name = "flatten", .doc = "C x H x W -> (C*H*W) x 1 x 1",
        .ninputs = 1, .user = true, .backward = OP_PASS,
        .infer = infer_flatten, .view = true},
    [OP_SOFTMAX_XENT] = {
        .name = "softmax_cross_entropy",
        .doc = "softmax cross-entropy loss, mean over the batch",
        .ninputs = 1, .takes_labels = true, .user = true,
        .backward = OP_SOFTMAX_XENT_BWD, .infer = infer_softmax_xent,
        .flops = softmax_flops, .extras = {SAVED("probs", XS_INPUT)},
        .nextras = 1, .loss = true, .shape = SK_XENT,
        .kernel = {"softmax_xent_forward", "s->loss",
                   ARGS(KA_EXTRA0, KA_IN0, KA_IN1, KA_SHAPE, KA_SMOOTHING)}},

    /* The ops autodiff.c makes. Each writes the gradient of its forward
     * op's input 0 (or nothing: out = -1) and the gradients of its
     * forward op's weights; `bwd_in` is what it reads. */
    [OP_CONV_BWD] = {
        .name = "conv_backward", .doc = "dX, dW, db from dY, X, W",
        .ninputs = 2, .backward = OP_NONE, .bwd_flops = BF_GEMMS,
        .bwd_in = {BI_DY, BI_X_KEPT}, .nbwd_in = 2,
        .extras = {CONV_WORK("dwork", true)},
        .nextras = 1, .shape = SK_CONV,
        .kernel = {"conv_backward", NULL,
                   ARGS(KA_OUT, KA_WGRAD0, KA_WGRAD1, KA_EXTRA0, KA_IN0,
                        KA_IN1, KA_W0, KA_SHAPE, KA_ACC, KA_ACC_W)}},
    [OP_BATCHNORM_BWD] = {
        .name = "batchnorm_backward",
        .doc = "dX, dgamma, dbeta from dY, X, mean, invstd", .ninputs = 4,
        .backward = OP_NONE, .bwd_flops = BF_FORWARD,
        .bwd_in = {BI_DY, BI_X, BI_SAVED0, BI_SAVED1}, .nbwd_in = 4,
        .extras = {SCRATCH("dwork", XS_BN_WORK)}, .nextras = 1,
        .inplace = 1, .shape = SK_BN,
        .kernel = {"batchnorm_backward", NULL,
                   ARGS(KA_OUT, KA_WGRAD0, KA_WGRAD1, KA_EXTRA0, KA_IN0,
                        KA_IN1, KA_IN2, KA_IN3, KA_W0, KA_SHAPE, KA_ACC,
                        KA_ACC_W)},
        /* dY is the relu's output gradient, input 4 the relu's output */
        .fused_name = "batchnorm_relu_backward", .fused_inputs = 5,
        .fused_kernel = {"batchnorm_relu_backward", NULL,
                         ARGS(KA_OUT, KA_WGRAD0, KA_WGRAD1, KA_EXTRA0, KA_IN0,
                              KA_IN1, KA_IN2, KA_IN3, KA_IN4, KA_W0, KA_SHAPE,
                              KA_ACC, KA_ACC_W)}},
    [OP_RELU_BWD] = {
        .name = "relu_backward", .doc = "dX = dY where Y > 0", .ninputs = 2,
        .backward = OP_NONE, .bwd_flops = BF_FORWARD,
        .bwd_in = {BI_DY, BI_Y_KEPT}, .nbwd_in = 2, .inplace = 1,
        .shape = SK_ELT,
        .kernel = {"relu_backward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_IN1, KA_SHAPE, KA_ACC)}},
    [OP_SIGMOID_BWD] = {
        .name = "sigmoid_backward", .doc = "dX = dY * y * (1 - y)",
        .ninputs = 2, .backward = OP_NONE, .bwd_flops = BF_FORWARD,
        .bwd_in = {BI_DY, BI_Y_KEPT}, .nbwd_in = 2, .inplace = 1,
        .shape = SK_ELT,
        .kernel = {"sigmoid_backward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_IN1, KA_SHAPE, KA_ACC)}},
    [OP_SCALE_BWD] = {
        .name = "scale_backward", .doc = "dX = dY * s", .ninputs = 2,
        .backward = OP_NONE, .bwd_flops = BF_FORWARD,
        .bwd_in = {BI_DY, BI_X1}, .nbwd_in = 2, .inplace = 1, .shape = SK_GAP,
        .kernel = {"scale_backward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_IN1, KA_SHAPE, KA_ACC)}},
    [OP_SCALE_BWD_S] = {
        .name = "scale_backward_s", .doc = "ds = sum over H, W of dY * X",
        .ninputs = 2, .backward = OP_NONE, .bwd_flops = BF_FORWARD,
        .bwd_in = {BI_DY, BI_X_KEPT}, .nbwd_in = 2, .shape = SK_GAP,
        .kernel = {"scale_backward_s", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_IN1, KA_SHAPE, KA_ACC)}},
    [OP_DROPOUT_BWD] = {
        .name = "dropout_backward",
        .doc = "dX = dY / (1-p) where the step's mask kept, else 0 (the mask "
               "is recomputed, not kept)",
        .ninputs = 1, .backward = OP_NONE, .bwd_flops = BF_FORWARD,
        .bwd_in = {BI_DY}, .nbwd_in = 1, .inplace = 1, .shape = SK_DROP,
        .kernel = {"dropout_backward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_SHAPE, KA_STEP_KEY, KA_ACC)}},
    [OP_MAXPOOL_BWD] = {
        .name = "maxpool_backward", .doc = "dX from dY, argmax",
        .ninputs = 2, .backward = OP_NONE, .bwd_flops = BF_FORWARD,
        .bwd_in = {BI_DY, BI_SAVED0}, .nbwd_in = 2, .shape = SK_POOL,
        .kernel = {"maxpool_backward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_IN1, KA_SHAPE, KA_ACC)}},
    [OP_AVGPOOL_BWD] = {
        .name = "avgpool_backward", .doc = "dX from dY", .ninputs = 1,
        .backward = OP_NONE, .bwd_flops = BF_FORWARD, .bwd_in = {BI_DY},
        .nbwd_in = 1, .shape = SK_POOL,
        .kernel = {"avgpool_backward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_SHAPE, KA_ACC)}},
    [OP_GLOBAL_AVGPOOL_BWD] = {
        .name = "global_avgpool_backward", .doc = "dX = dY / (H*W) everywhere",
        .ninputs = 1, .backward = OP_NONE, .bwd_flops = BF_FORWARD,
        .bwd_in = {BI_DY}, .nbwd_in = 1, .shape = SK_GAP,
        .kernel = {"global_avgpool_backward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_SHAPE, KA_ACC)}},
    [OP_DENSE_BWD] = {
        .name = "dense_backward", .doc = "dX, dW, db from dY, X, W",
        .ninputs = 2, .backward = OP_NONE, .bwd_flops = BF_GEMMS,
        .bwd_in = {BI_DY, BI_X_KEPT}, .nbwd_in = 2, .shape = SK_DENSE,
        .kernel = {"dense_backward", NULL,
                   ARGS(KA_OUT, KA_WGRAD0, KA_WGRAD1, KA_IN0, KA_IN1, KA_W0,
                        KA_SHAPE, KA_ACC, KA_ACC_W)}},
    [OP_SOFTMAX_XENT_BWD] = {
        .name = "softmax_cross_entropy_backward",
        .doc = "dlogits = (probabilities - onehot(labels)) / batch",
        .ninputs = 2, .backward = OP_NONE, .bwd_flops = BF_FORWARD,
        .bwd_in = {BI_SAVED0, BI_LABELS}, .nbwd_in = 2, .shape = SK_XENT,
        .kernel = {"softmax_xent_backward", NULL,
                   ARGS(KA_OUT, KA_IN0, KA_IN1, KA_SHAPE, KA_ACC,
                        KA_LOSS_SCALE, KA_SMOOTHING)}},
    [OP_GRAD_ADD] = {
        .name = "grad_add", .doc = "the sum of two gradient contributions",
        .ninputs = 2, .backward = OP_NONE, .bwd_flops = BF_NONE,
        .inplace = 3, .shape = SK_ELT, .own_shape = true,
        .kernel = {"grad_add", NULL, ARGS(KA_OUT, KA_IN0, KA_IN1, KA_SHAPE)}},
    [OP_BN_RELU_RECOMPUTE] = {
        .name = "batchnorm_relu_recompute",
        .doc = "relu(batchnorm(X)) again, from X, mean and invstd, for the "
               "backward pass (its forward value is not kept)",
        .ninputs = 3, .backward = OP_NONE, .bwd_flops = BF_FORWARD,
        .bwd_in = {BI_X, BI_SAVED0, BI_SAVED1}, .nbwd_in = 3,
        .extras = {SCRATCH("rwork", XS_BN_WORK)}, .nextras = 1,
        .shape = SK_BN,
        .kernel = {"batchnorm_relu_recompute", NULL,
                   ARGS(KA_OUT, KA_EXTRA0, KA_IN0, KA_IN1, KA_IN2, KA_W0,
                        KA_W1, KA_SHAPE)}},
    [OP_UPDATE] = {
        .name = "update",
        .doc = "the optimizer's step on one weight, as soon as its gradient "
               "is final",
        .ninputs = 1, .backward = OP_NONE, .bwd_flops = BF_NONE,
        .kernel = {"netc_update", NULL, ARGS(KA_STATE, KA_PARAM, KA_IN0)}},
    [OP_ALLREDUCE] = {
        .name = "allreduce",
        .doc = "starts summing a bucket of weight gradients over the "
               "processes (build --mpi), as soon as the last is final",
        .ninputs = 1, .backward = OP_NONE, .bwd_flops = BF_NONE,
        .kernel = {"netc_bucket_start", NULL,
                   ARGS(KA_STATE, KA_BUCKET, KA_IN0)}},
    [OP_ALLREDUCE_WAIT] = {
        .name = "allreduce_wait",
        .doc = "waits for a bucket's sum; its weights' updates follow",
        .ninputs = 1, .backward = OP_NONE, .bwd_flops = BF_NONE,
        .kernel = {"netc_bucket_wait", NULL,
                   ARGS(KA_STATE, KA_BUCKET, KA_IN0)}},
};

/* ---- lookups ---------------------------------------------------------------- */

const OpInfo *op_info(OpKind k) {
  if ((int)k < 0 || k >= OP_COUNT || !table[k].name)
    op_unhandled("op_info", k);
  return &table[k];
}

int op_graph_inputs(OpKind k) {
  return op_info(k)->ninputs + op_info(k)->takes_labels;
}

const char *node_op_name(const Node *n) {
  const OpInfo *op = op_info(n->op);
  return n->fuse == FUSE_RELU ? op->fused_name : op->name;
}

const KernelCall *node_kernel(const Node *n) {
  const OpInfo *op = op_info(n->op);
  return n->fuse == FUSE_RELU ? &op->fused_kernel : &op->kernel;
}

int node_ninputs(const Node *n) {
  return n->fuse == FUSE_RELU ? op_info(n->op)->fused_inputs
                              : op_graph_inputs(n->op);
}

OpKind op_backward_of(OpKind k, int j) {
  OpKind b = op_info(k)->backward1;
  return j == 1 && (int)b >= OP_USER_COUNT ? b : OP_NONE;
}

int op_lookup(const char *name) {
  for (int i = 0; i < OP_USER_COUNT; i++)
    if (!strcmp(table[i].name, name))
      return i;
  return -1;
}

_Noreturn void op_unhandled(const char *what, OpKind k) {
  const char *name = (int)k >= 0 && k < OP_COUNT && table[k].name
                         ? table[k].name
                         : "(out of range)";
  fprintf(stderr, "netc: internal error: %s does not handle op %d (%s)\n",
          what, (int)k, name);
  exit(1);
}

bool op_infer(OpKind k, const Shape *in, const int64_t *a, Shape *out,
              Pool *p, const char **why) {
  *out = in[0];
  const OpInfo *op = op_info(k);
  return op->infer ? op->infer(in, a, out, p, why) : true;
}

int op_weights(OpKind k, const Shape *in, const int64_t *a,
               WeightShape w[MAX_WEIGHTS_PER_NODE]) {
  const OpInfo *op = op_info(k);
  return op->weights ? op->weights(in, a, w) : 0;
}

double op_flops(OpKind k, const Shape *in, const Shape *out,
                const int64_t *a) {
  const OpInfo *op = op_info(k);
  return op->flops ? op->flops(in, out, a) : 0;
}

Shape op_extra_shape(const ExtraSpec *e, Shape in, Shape out, const Node *f,
                     int64_t batch, bool *batched) {
  *batched = true;
  switch (e->shape) {
  case XS_CHANNEL:
    *batched = false;
    return (Shape){in.c, 1, 1};
  case XS_OUTPUT: return out;
  case XS_INPUT: return in;
  case XS_CONV_WORK: {
    /* Unbatched: the direct kernel's tables and packed weights, and
     * GEMM's columns of one chunk of images, do not grow with the batch
     * (past a few images). */
    ConvShape s = {.N = (int)batch, .H = (int)in.h, .W = (int)in.w, .C = (int)in.c,
                   .OC = (int)out.c, .K = (int)f->attr[CONV_K],
                   .stride = (int)f->attr[CONV_STRIDE],
                   .pad = (int)f->attr[CONV_PAD], .OH = (int)out.h,
                   .OW = (int)out.w, .algo = f->algo[CONV_PASS_FWD],
                   .algo_dx = f->algo[CONV_PASS_DX],
                   .algo_dw = f->algo[CONV_PASS_DW],
                   .groups = (int)f->attr[CONV_GROUPS]};
    *batched = false;
    return (Shape){conv_work_floats(&s, e->backward), 1, 1};
  }
  case XS_BN_WORK:
    *batched = false;
    return (Shape){BATCHNORM_WORK_BYTES(in.c) / 4, 1, 1};
  }
  fprintf(stderr, "netc: internal error: extra shape %d unknown\n",
          (int)e->shape);
  exit(1);
}
