/* ops.c: the operation table (OP_LIST in netc.h) made into data, and the
 * per-op rules every pass shares: output shape, weight shapes, FLOPs.
 * Passes dispatch on OpKind through these functions, never on op names. */
#include <stdlib.h>
#include <string.h>

#include "netc.h"

static OpInfo table[OP_COUNT];
static const char *names[OP_COUNT];
static bool ready;

/* Turns a spec such as "k stride=k pad=0 bias=true" into OpParams. */
static void parse_spec(OpInfo *op, const char *spec) {
  static char store[OP_COUNT * 64];
  static size_t used;
  size_t n = strlen(spec) + 1;
  char *s = memcpy(store + used, spec, n);
  used += n;
  for (char *tok = strtok(s, " "); tok; tok = strtok(NULL, " ")) {
    OpParam *p = &op->params[op->nparams++];
    char *eq = strchr(tok, '=');
    p->name = tok;
    p->def_from = -1;
    p->required = !eq;
    if (!eq)
      continue;
    *eq = 0;
    const char *v = eq + 1;
    if (!strcmp(v, "true") || !strcmp(v, "false")) {
      p->is_bool = true;
      p->def = !strcmp(v, "true");
    } else if (v[0] >= '0' && v[0] <= '9') {
      p->def = strtoll(v, NULL, 10);
    } else {
      for (int i = 0; i < op->nparams - 1; i++)
        if (!strcmp(op->params[i].name, v))
          p->def_from = i;
    }
  }
}

static void init_table(void) {
  if (ready)
    return;
  int k = 0;
#define X(e, n, ni, spec, bwd, summary)                                       \
  table[k] = (OpInfo){.name = n, .ninputs = ni, .doc = summary,               \
                      .user = k < OP_USER_COUNT, .backward = OP_##bwd};        \
  parse_spec(&table[k], spec);                                                \
  names[k] = n;                                                               \
  k++;
  OP_LIST(X)
  INTERNAL_OP_LIST(X)
#undef X
  ready = true;
}

const OpInfo *op_info(OpKind k) {
  init_table();
  return &table[k];
}

int op_graph_inputs(OpKind k) {
  return op_info(k)->ninputs + (k == OP_SOFTMAX_XENT);
}

int op_lookup(const char *name) {
  init_table();
  for (int i = 0; i < OP_USER_COUNT; i++)
    if (!strcmp(names[i], name))
      return i;
  return -1;
}

const char *const *op_names(void) {
  init_table();
  return names;
}

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

static bool spatial(Pool *p, const Shape *in, int64_t k, int64_t stride,
                    int64_t pad, Shape *out, const char *op,
                    const char **why) {
  out->h = window(in->h, k, stride, pad);
  out->w = window(in->w, k, stride, pad);
  if (out->h < 1 || out->w < 1) {
    *why = pool_printf(p, "%s window %lldx%lld (pad %lld) does not fit "
                          "the %lldx%lld input",
                       op, (long long)k, (long long)k, (long long)pad,
                       (long long)in->h, (long long)in->w);
    return false;
  }
  return true;
}

bool op_infer(OpKind k, const Shape *in, const int64_t *a, Shape *out,
              Pool *p, const char **why) {
  *out = in[0];
  switch (k) {
  case OP_CONV: {
    int64_t win[3] = {a[CONV_K], a[CONV_STRIDE], a[CONV_PAD]};
    if (a[CONV_OUT] < 1) {
      *why = pool_printf(p, "conv needs out >= 1 (got %lld)",
                         (long long)a[CONV_OUT]);
      return false;
    }
    out->c = a[CONV_OUT];
    return check_window(p, win, "conv", false, why) &&
           spatial(p, in, win[0], win[1], win[2], out, "conv", why);
  }
  case OP_MAXPOOL:
  case OP_AVGPOOL: {
    const char *name = k == OP_MAXPOOL ? "maxpool" : "avgpool";
    return check_window(p, a, name, true, why) &&
           spatial(p, in, a[0], a[1], a[2], out, name, why);
  }
  case OP_ADD:
    if (in[0].c != in[1].c || in[0].h != in[1].h || in[0].w != in[1].w) {
      *why = pool_printf(p, "add needs equal shapes, got %s and %s",
                         shape_str(p, in[0]), shape_str(p, in[1]));
      return false;
    }
    return true;
  case OP_GLOBAL_AVGPOOL:
    out->h = out->w = 1;
    return true;
  case OP_FLATTEN:
    *out = (Shape){shape_elems(in[0]), 1, 1};
    return true;
  case OP_DENSE:
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
  case OP_SOFTMAX_XENT:
    if (in[0].h != 1 || in[0].w != 1) {
      *why = pool_printf(p, "softmax_cross_entropy needs flat logits "
                            "(classes x 1 x 1), got %s",
                         shape_str(p, in[0]));
      return false;
    }
    *out = (Shape){1, 1, 1};
    return true;
  default: /* batchnorm, relu; backward ops are shaped by autodiff.c */
    return true;
  }
}

int op_weights(OpKind k, const Shape *in, const int64_t *a,
               WeightShape w[MAX_WEIGHTS_PER_NODE]) {
  switch (k) {
  case OP_CONV:
    w[0] = (WeightShape){"weight", {a[CONV_OUT], in->c, a[CONV_K], a[CONV_K]},
                         4};
    w[1] = (WeightShape){"bias", {a[CONV_OUT]}, 1};
    return a[CONV_BIAS] ? 2 : 1;
  case OP_BATCHNORM:
    w[0] = (WeightShape){"weight", {in->c}, 1};
    w[1] = (WeightShape){"bias", {in->c}, 1};
    return 2;
  case OP_DENSE:
    w[0] = (WeightShape){"weight", {a[DENSE_OUT], in->c}, 2};
    w[1] = (WeightShape){"bias", {a[DENSE_OUT]}, 1};
    return a[DENSE_BIAS] ? 2 : 1;
  default:
    return 0;
  }
}

/* Forward FLOPs for one image: a multiply-add counts 2, a comparison or an
 * addition 1 (docs/language.md lists the rule for each op). */
double op_flops(OpKind k, const Shape *in, const Shape *out,
                const int64_t *a) {
  double o = (double)shape_elems(*out), i = (double)shape_elems(in[0]);
  switch (k) {
  case OP_CONV:
    return o * (2.0 * (double)(in->c * a[CONV_K] * a[CONV_K]) +
                (a[CONV_BIAS] ? 1 : 0));
  case OP_DENSE:
    return o * (2.0 * (double)in->c + (a[DENSE_BIAS] ? 1 : 0));
  case OP_BATCHNORM:
    return 2 * o; /* scale and shift */
  case OP_RELU:
  case OP_ADD:
    return o;
  case OP_MAXPOOL:
  case OP_AVGPOOL:
    return o * (double)(a[0] * a[0]);
  case OP_GLOBAL_AVGPOOL:
    return i;
  case OP_SOFTMAX_XENT:
    return 4 * i; /* max, exp, sum, log-sum */
  default:
    return 0;
  }
}
