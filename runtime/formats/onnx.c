/* onnx.c: the inference graph and its trained weights as an ONNX model
 * (`export -o model.onnx`, onnx.h).
 *
 * The messages are protobuf-c's, generated at build time from the
 * onnx.proto that Debian's python3-onnx ships (Makefile). The graph is
 * the model's layer table (NetcLayer, netc_model.h) op by op, in NCHW as
 * ONNX tools expect: netc's NHWC activations never show, because every
 * weight is written in PyTorch's layout (export.c's to_torch_layout), and
 * batchnorm is BatchNormalization in inference mode with the running
 * statistics, or with --fold-bn folded into the convolution before it.
 * Opset 17 and IR version 8: what Debian's onnx 1.12 checks,
 * and what current ONNX Runtime runs. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data.h"
#include "formats/onnx.h"
#include "formats/torch_layout.h"
#include "onnx.pb-c.h"
#include "util/util.h"

enum { OPSET = 17, IR_VERSION = 8 };

/* Everything one export allocates, freed at once. */
typedef struct {
  void **p;
  int n, cap;
} Bag;

static void *bag(Bag *b, size_t size) {
  if (b->n == b->cap)
    b->p = xrealloc(b->p, sizeof(void *) * (size_t)(b->cap = b->cap * 2 + 64));
  return b->p[b->n++] = xcalloc(1, size);
}

static char *bag_str(Bag *b, const char *s) {
  char *c = bag(b, strlen(s) + 1);
  memcpy(c, s, strlen(s));
  return c;
}

static void bag_free(Bag *b) {
  for (int i = 0; i < b->n; i++)
    free(b->p[i]);
  free(b->p);
}

/* A growing array of message pointers. */
typedef struct {
  void **v;
  size_t n, cap;
} List;

static void push(List *l, void *x) {
  if (l->n == l->cap)
    l->v = xrealloc(l->v, sizeof(void *) * (l->cap = l->cap * 2 + 16));
  l->v[l->n++] = x;
}

typedef struct {
  Bag b;
  List nodes, inits, meta;
  const NetcState *s;
  /* per parameter: written as an initializer (bit 0), its running mean
   * (bit 1) and variance (bit 2): a shared block's weights once */
  unsigned char *written;
  /* --fold-bn: the (conv weight, batchnorm weight) pairs folded so far
   * and the base name of their folded tensors, so that a shared block's
   * folded weights are written once too */
  int fold;
  int nfolds, *fold_conv, *fold_bn;
  const char **fold_name;
} Writer;

static Onnx__AttributeProto *attr_ints(Writer *w, const char *name,
                                       const int64_t *v, size_t n) {
  Onnx__AttributeProto *a = bag(&w->b, sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = bag_str(&w->b, name);
  a->has_type = 1;
  a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
  a->n_ints = n;
  a->ints = bag(&w->b, sizeof(int64_t) * n);
  memcpy(a->ints, v, sizeof(int64_t) * n);
  return a;
}

static Onnx__AttributeProto *attr_int(Writer *w, const char *name,
                                      int64_t v) {
  Onnx__AttributeProto *a = bag(&w->b, sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = bag_str(&w->b, name);
  a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
  a->has_i = 1, a->i = v;
  return a;
}

static Onnx__AttributeProto *attr_float(Writer *w, const char *name,
                                        float v) {
  Onnx__AttributeProto *a = bag(&w->b, sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = bag_str(&w->b, name);
  a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
  a->has_f = 1, a->f = v;
  return a;
}

/* A node: op_type, its name, up to 5 inputs (NULL ends them), one output,
 * up to 4 attributes (NULL ends them). */
static Onnx__NodeProto *node(Writer *w, const char *op, const char *name,
                             const char *const *in, const char *out,
                             Onnx__AttributeProto *const *attrs) {
  Onnx__NodeProto *n = bag(&w->b, sizeof *n);
  onnx__node_proto__init(n);
  n->op_type = bag_str(&w->b, op);
  n->name = bag_str(&w->b, name);
  n->input = bag(&w->b, sizeof(char *) * 5);
  for (; in[n->n_input]; n->n_input++)
    n->input[n->n_input] = bag_str(&w->b, in[n->n_input]);
  n->n_output = 1;
  n->output = bag(&w->b, sizeof(char *));
  n->output[0] = bag_str(&w->b, out);
  n->attribute = bag(&w->b, sizeof(void *) * 4);
  for (; attrs && attrs[n->n_attribute]; n->n_attribute++)
    n->attribute[n->n_attribute] = attrs[n->n_attribute];
  push(&w->nodes, n);
  return n;
}

/* A float initializer of `count` values named `name`. */
static void init(Writer *w, const char *name, const int64_t *dims, int ndims,
                 const float *v, int64_t count) {
  Onnx__TensorProto *t = bag(&w->b, sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = bag_str(&w->b, name);
  t->has_data_type = 1, t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  t->n_dims = (size_t)ndims;
  t->dims = bag(&w->b, sizeof(int64_t) * 4);
  memcpy(t->dims, dims, sizeof(int64_t) * (size_t)ndims);
  t->has_raw_data = 1;
  t->raw_data.len = sizeof(float) * (size_t)count;
  t->raw_data.data = bag(&w->b, t->raw_data.len + 1);
  memcpy(t->raw_data.data, v, t->raw_data.len); /* little-endian, as ONNX */
  push(&w->inits, t);
}

/* A 1-D int64 initializer (Unsqueeze's axes). */
static void init_i64(Writer *w, const char *name, const int64_t *v, int n) {
  Onnx__TensorProto *t = bag(&w->b, sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = bag_str(&w->b, name);
  t->has_data_type = 1, t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
  t->n_dims = 1;
  t->dims = bag(&w->b, sizeof(int64_t));
  t->dims[0] = n;
  t->has_raw_data = 1;
  t->raw_data.len = sizeof(int64_t) * (size_t)n;
  t->raw_data.data = bag(&w->b, t->raw_data.len + 1);
  memcpy(t->raw_data.data, v, t->raw_data.len);
  push(&w->inits, t);
}

/* Parameter p as an initializer, in PyTorch's layout. */
static const char *param_init(Writer *w, int p) {
  const NetcModel *m = w->s->model;
  const NetcParam *q = &m->params[p];
  if (w->written[p] & 1)
    return q->name;
  w->written[p] |= 1;
  float *t = xmalloc(sizeof(float) * (size_t)q->count);
  to_torch_layout(m, p, netc_param(w->s, p), t);
  int64_t dims[4];
  int nd = torch_dims(m, p, dims);
  init(w, q->name, dims, nd, t, q->count);
  free(t);
  return q->name;
}

/* Batchnorm weight p's running statistic `which` (0 mean, 1 variance). */
static const char *stat_init(Writer *w, int p, int which) {
  const NetcParam *q = &w->s->model->params[p];
  size_t len = strlen(q->name);
  size_t base = len > 7 && !strcmp(q->name + len - 7, ".weight") ? len - 7
                                                                 : len;
  char *name = bag(&w->b, base + 32);
  snprintf(name, base + 32, "%.*s.%s", (int)base, q->name,
           which ? "running_var" : "running_mean");
  if (w->written[p] & (2 << which))
    return name;
  w->written[p] |= (unsigned char)(2 << which);
  int64_t dims[1] = {q->count};
  init(w, name, dims, 1, netc_bn_stat(w->s, p, which), q->count);
  return name;
}

/* A name "<base>.<what>" that lives as long as the writer. */
static const char *bag_name(Writer *w, const char *base, const char *what) {
  size_t n = strlen(base) + strlen(what) + 2;
  char *c = bag(&w->b, n);
  snprintf(c, n, "%s.%s", base, what);
  return c;
}

/* Conv layer l's weights with batchnorm layer b folded in, as the
 * initializers "<conv layer>.folded_weight" and ".folded_bias":
 * scale = gamma / sqrt(running_var + eps) per output channel, W' = W scale,
 * b' = (b - running_mean) scale + beta, in double. Sets in[1] and in[2]. */
static void folded_init(Writer *w, const NetcLayer *l, const NetcLayer *b,
                        const char **in) {
  const NetcModel *m = w->s->model;
  int cp = l->param[0], bp = b->param[0];
  for (int k = 0; k < w->nfolds; k++)
    if (w->fold_conv[k] == cp && w->fold_bn[k] == bp) {
      in[1] = bag_name(w, w->fold_name[k], "folded_weight");
      in[2] = bag_name(w, w->fold_name[k], "folded_bias");
      return;
    }
  int k = w->nfolds++;
  w->fold_conv = xrealloc(w->fold_conv, sizeof(int) * (size_t)w->nfolds);
  w->fold_bn = xrealloc(w->fold_bn, sizeof(int) * (size_t)w->nfolds);
  w->fold_name = xrealloc(w->fold_name, sizeof(char *) * (size_t)w->nfolds);
  w->fold_conv[k] = cp, w->fold_bn[k] = bp, w->fold_name[k] = l->layer;
  in[1] = bag_name(w, l->layer, "folded_weight");
  in[2] = bag_name(w, l->layer, "folded_bias");

  const NetcParam *q = &m->params[cp];
  int64_t dims[4];
  int nd = torch_dims(m, cp, dims);
  int64_t out_c = dims[0], per = q->count / out_c;
  float *wt = xmalloc(sizeof(float) * (size_t)q->count);
  float *bias = xmalloc(sizeof(float) * (size_t)out_c);
  to_torch_layout(m, cp, netc_param(w->s, cp), wt);
  const float *gamma = netc_param(w->s, bp);
  const float *beta = netc_param(w->s, b->param[1]);
  const float *mean = netc_bn_stat(w->s, bp, 0);
  const float *var = netc_bn_stat(w->s, bp, 1);
  const float *cb = l->param[1] >= 0 ? netc_param(w->s, l->param[1]) : NULL;
  for (int64_t o = 0; o < out_c; o++) {
    double scale = gamma[o] / sqrt((double)var[o] + w->s->bn_eps);
    for (int64_t j = 0; j < per; j++)
      wt[o * per + j] = (float)(wt[o * per + j] * scale);
    bias[o] = (float)(((cb ? cb[o] : 0.0) - mean[o]) * scale + beta[o]);
  }
  init(w, in[1], dims, nd, wt, q->count);
  init(w, in[2], dims, 1, bias, out_c);
  free(wt);
  free(bias);
}

static Onnx__ValueInfoProto *value_info(Writer *w, const char *name,
                                        const int64_t *dims, int ndims) {
  Onnx__TensorShapeProto *sh = bag(&w->b, sizeof *sh);
  onnx__tensor_shape_proto__init(sh);
  sh->n_dim = (size_t)ndims;
  sh->dim = bag(&w->b, sizeof(void *) * (size_t)ndims);
  for (int k = 0; k < ndims; k++) {
    Onnx__TensorShapeProto__Dimension *d = bag(&w->b, sizeof *d);
    onnx__tensor_shape_proto__dimension__init(d);
    if (k == 0) { /* the batch: any size */
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d->dim_param = bag_str(&w->b, "N");
    } else {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = dims[k];
    }
    sh->dim[k] = d;
  }
  Onnx__TypeProto__Tensor *tt = bag(&w->b, sizeof *tt);
  onnx__type_proto__tensor__init(tt);
  tt->has_elem_type = 1;
  tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  tt->shape = sh;
  Onnx__TypeProto *type = bag(&w->b, sizeof *type);
  onnx__type_proto__init(type);
  type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  type->tensor_type = tt;
  Onnx__ValueInfoProto *v = bag(&w->b, sizeof *v);
  onnx__value_info_proto__init(v);
  v->name = bag_str(&w->b, name);
  v->type = type;
  return v;
}

static void meta(Writer *w, const char *key, const char *value) {
  Onnx__StringStringEntryProto *e = bag(&w->b, sizeof *e);
  onnx__string_string_entry_proto__init(e);
  e->key = bag_str(&w->b, key);
  e->value = bag_str(&w->b, value);
  push(&w->meta, e);
}

/* A JSON list of the class ids or names (which = 1). */
static char *class_list(const ClassList *c, int which) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fputc('[', f);
  for (int k = 0; k < c->nclasses; k++) {
    fputs(k ? ",\"" : "\"", f);
    for (const char *p = which ? c->class_names[k] : c->class_ids[k]; *p; p++)
      if (*p == '"' || *p == '\\')
        fprintf(f, "\\%c", *p);
      else if ((unsigned char)*p >= 0x20)
        fputc(*p, f);
    fputc('"', f);
  }
  fputc(']', f);
  fclose(f);
  return text;
}

/* The layers as ONNX nodes; 0, or -1 with a message for a layer ONNX's
 * NCHW ops cannot take as netc built it. */
static int graph_nodes(Writer *w, const char **value, int *rank,
                       Bag *names) {
  const NetcModel *m = w->s->model;
  /* How many layers read each value: a conv folds with the batchnorm
   * after it only when nothing else reads the conv's output. */
  int *readers = xcalloc((size_t)m->nlayers + 1, sizeof *readers);
  for (int i = 0; i < m->nlayers; i++)
    for (int k = 0; k < m->layers[i].nin; k++)
      readers[m->layers[i].in[k]]++;
  readers[m->logits_value]++;
  for (int i = 0; i < m->nlayers; i++) {
    const NetcLayer *l = &m->layers[i];
    const int64_t *a = l->attr;
    const char *out = value[i + 1];
    const char *x = value[l->in[0]];
    int r = rank[l->in[0]];
    rank[i + 1] = r;
    if (!strcmp(l->op, "dense")) {
      if (r == 4) { /* Gemm takes a matrix */
        char *flat = bag(names, strlen(l->layer) + 16);
        sprintf(flat, "%s.flatten", l->layer);
        node(w, "Flatten", flat, (const char *[]){x, NULL}, flat,
             (Onnx__AttributeProto *[]){attr_int(w, "axis", 1), NULL});
        x = flat;
      }
      const char *in[] = {x, param_init(w, l->param[0]),
                          l->param[1] >= 0 ? param_init(w, l->param[1]) : NULL,
                          NULL};
      node(w, "Gemm", l->layer, in, out,
           (Onnx__AttributeProto *[]){attr_int(w, "transB", 1), NULL});
      rank[i + 1] = 2;
      continue;
    }
    if (r != 4 && !l->onnx && strcmp(l->op, "flatten") &&
        strcmp(l->op, "batchnorm")) {
      fprintf(stderr, "netc: cannot export layer %s: a %s after a flatten "
                      "or dense layer has no ONNX counterpart here\n",
              l->layer, l->op);
      free(readers);
      return -1;
    }
    if (!strcmp(l->op, "conv")) {
      int64_t k[2] = {a[1], a[1]}, st[2] = {a[2], a[2]};
      int64_t pads[4] = {a[3], a[3], a[3], a[3]};
      const NetcLayer *b = i + 1 < m->nlayers ? l + 1 : NULL;
      const char *in[4] = {x, NULL, NULL, NULL};
      if (w->fold && b && !strcmp(b->op, "batchnorm") && b->in[0] == i + 1 &&
          readers[i + 1] == 1) {
        folded_init(w, l, b, in);
        out = value[i + 2];
        i++; /* the batchnorm is in the conv */
      } else {
        in[1] = param_init(w, l->param[0]);
        in[2] = l->param[1] >= 0 ? param_init(w, l->param[1]) : NULL;
      }
      node(w, "Conv", l->layer, in, out,
           (Onnx__AttributeProto *[]){attr_ints(w, "kernel_shape", k, 2),
                                      attr_ints(w, "strides", st, 2),
                                      attr_ints(w, "pads", pads, 4),
                                      attr_int(w, "group",
                                               a[5] > 1 ? a[5] : 1),
                                      NULL});
    } else if (!strcmp(l->op, "batchnorm")) {
      const char *in[] = {x, param_init(w, l->param[0]),
                          param_init(w, l->param[1]),
                          stat_init(w, l->param[0], 0),
                          stat_init(w, l->param[0], 1), NULL};
      node(w, "BatchNormalization", l->layer, in, out,
           (Onnx__AttributeProto *[]){attr_float(w, "epsilon", w->s->bn_eps),
                                      NULL});
    } else if (l->onnx) {
      const char *b = l->nin > 1 ? value[l->in[1]] : NULL;
      if (b && r == 4 && rank[l->in[1]] == 2) {
        /* a per-channel factor after a dense layer (squeeze-excitation's
         * gate): N x C to N x C x 1 x 1, for ONNX's broadcast */
        const char *axes = bag_name(w, l->layer, "axes");
        const char *b4 = bag_name(w, l->layer, "nchw");
        init_i64(w, axes, (const int64_t[]){2, 3}, 2);
        node(w, "Unsqueeze", b4, (const char *[]){b, axes, NULL}, b4, NULL);
        b = b4;
      }
      node(w, l->onnx, l->layer, (const char *[]){x, b, NULL}, out, NULL);
    } else if (!strcmp(l->op, "maxpool") || !strcmp(l->op, "avgpool")) {
      int64_t k[2] = {a[0], a[0]}, st[2] = {a[1], a[1]};
      int64_t pads[4] = {a[2], a[2], a[2], a[2]};
      int avg = l->op[0] == 'a';
      /* netc's average pool counts the padding, as PyTorch's default */
      node(w, avg ? "AveragePool" : "MaxPool", l->layer,
           (const char *[]){x, NULL}, out,
           (Onnx__AttributeProto *[]){attr_ints(w, "kernel_shape", k, 2),
                                      attr_ints(w, "strides", st, 2),
                                      attr_ints(w, "pads", pads, 4),
                                      avg ? attr_int(w, "count_include_pad", 1)
                                          : NULL,
                                      NULL});
    } else if (!strcmp(l->op, "global_avgpool")) {
      node(w, "GlobalAveragePool", l->layer, (const char *[]){x, NULL}, out,
           NULL);
    } else if (!strcmp(l->op, "flatten")) {
      node(w, "Flatten", l->layer, (const char *[]){x, NULL}, out,
           (Onnx__AttributeProto *[]){attr_int(w, "axis", 1), NULL});
      rank[i + 1] = 2;
    } else {
      fprintf(stderr, "netc: cannot export layer %s: op %s has no ONNX "
                      "writer\n", l->layer, l->op);
      free(readers);
      return -1;
    }
  }
  free(readers);
  return 0;
}

int onnx_export(const NetcState *s, const ClassList *c, int fold_bn,
                const char *path) {
  const NetcModel *m = s->model;
  Writer w = {.s = s, .fold = fold_bn};
  w.written = xcalloc((size_t)m->nparam_tensors, 1);
  Bag names = {0};
  /* Value names: the image "input", each layer's output its layer name,
   * the logits "logits". */
  const char **value = xcalloc((size_t)m->nlayers + 1, sizeof *value);
  int *rank = xcalloc((size_t)m->nlayers + 1, sizeof *rank);
  value[0] = "input";
  rank[0] = 4;
  /* Matrices after a flatten or a dense layer, NCHW maps elsewhere. */
  for (int i = 0; i < m->nlayers; i++) {
    const char *op = m->layers[i].op;
    rank[i + 1] = !strcmp(op, "flatten") || !strcmp(op, "dense")
                      ? 2 : rank[m->layers[i].in[0]];
  }
  int nchw_logits = rank[m->logits_value] == 4; /* classes x 1 x 1 */
  for (int i = 0; i < m->nlayers; i++)
    value[i + 1] = i + 1 != m->logits_value ? m->layers[i].layer
                   : nchw_logits            ? "logits.nchw"
                                            : "logits";
  int rc = graph_nodes(&w, value, rank, &names);
  const char *out_name = "logits";
  if (rc == 0 && nchw_logits)
    node(&w, "Flatten", "logits", (const char *[]){"logits.nchw", NULL},
         "logits", (Onnx__AttributeProto *[]){attr_int(&w, "axis", 1), NULL});
  char *ids = NULL, *cnames = NULL;
  if (rc == 0) {
    Onnx__GraphProto *g = bag(&w.b, sizeof *g);
    onnx__graph_proto__init(g);
    g->name = bag_str(&w.b, m->name);
    g->n_node = w.nodes.n;
    g->node = (Onnx__NodeProto **)w.nodes.v;
    g->n_initializer = w.inits.n;
    g->initializer = (Onnx__TensorProto **)w.inits.v;
    int64_t in_dims[4] = {0, m->in_c, m->in_h, m->in_w};
    int64_t out_dims[2] = {0, m->classes};
    Onnx__ValueInfoProto *in = value_info(&w, "input", in_dims, 4);
    Onnx__ValueInfoProto *out = value_info(&w, out_name, out_dims, 2);
    g->n_input = 1, g->input = &in;
    g->n_output = 1, g->output = &out;
    g->doc_string = bag_str(&w.b, "netc export: the inference graph");

    char text[256];
    snprintf(text, sizeof text, "%g,%g,%g", NETC_MEAN_R, NETC_MEAN_G,
             NETC_MEAN_B);
    meta(&w, "mean", text);
    snprintf(text, sizeof text, "%g,%g,%g", NETC_STD_R, NETC_STD_G,
             NETC_STD_B);
    meta(&w, "std", text);
    snprintf(text, sizeof text, "float32 NCHW [N, %d, %d, %d]: RGB / 255, "
                                "then (x - mean) / std per channel",
             m->in_c, m->in_h, m->in_w);
    meta(&w, "input", text);
    meta(&w, "output", "logits [N, classes]; softmax gives the "
                       "probabilities");
    meta(&w, "netc_model", m->name);
    meta(&w, "netc_source", m->source);
    if (c && c->nclasses) {
      meta(&w, "classes", ids = class_list(c, 0));
      meta(&w, "class_names", cnames = class_list(c, 1));
    }
    Onnx__OperatorSetIdProto op = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    op.domain = "";
    op.has_version = 1, op.version = OPSET;
    Onnx__OperatorSetIdProto *ops = &op;
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    model.has_ir_version = 1, model.ir_version = IR_VERSION;
    model.n_opset_import = 1, model.opset_import = &ops;
    model.producer_name = "netc";
    model.producer_version = (char *)m->netc_version;
    model.graph = g;
    model.n_metadata_props = w.meta.n;
    model.metadata_props = (Onnx__StringStringEntryProto **)w.meta.v;

    size_t size = onnx__model_proto__get_packed_size(&model);
    uint8_t *buf = xmalloc(size);
    onnx__model_proto__pack(&model, buf);
    char *tmp = xprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int bad = !f || fwrite(buf, 1, size, f) != size || fflush(f) != 0 ||
              fsync(fileno(f)) != 0;
    bad |= f && fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
      fprintf(stderr, "netc: writing %s failed: %s\n", path, strerror(errno));
      unlink(tmp);
      rc = -1;
    }
    free(tmp);
    free(buf);
  }
  free(ids);
  free(cnames);
  free(w.nodes.v);
  free(w.inits.v);
  free(w.meta.v);
  free(w.written);
  free(w.fold_conv);
  free(w.fold_bn);
  free(w.fold_name);
  free(value);
  free(rank);
  bag_free(&names);
  bag_free(&w.b);
  return rc;
}
