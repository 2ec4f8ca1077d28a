/* graph.c: the graph IR: tensors, nodes and weights in arrays, referred to
 * by integer ids; and the verifier that every pass's output must satisfy. */
#include <string.h>

#include "netc.h"

int graph_add_tensor(Graph *g, Shape s, int producer, Loc loc) {
  g->tensors = pool_grow(g->pool, g->tensors, sizeof(Tensor), g->ntensors,
                         &g->cap_tensors);
  g->tensors[g->ntensors] = (Tensor){.shape = s, .producer = producer,
                                     .loc = loc, .kind = TK_ACT,
                                     .batched = true, .view_of = -1,
                                     .grad_of = -1, .bucket = -1};
  return g->ntensors++;
}

int graph_add_node(Graph *g, const Node *n) {
  g->nodes = pool_grow(g->pool, g->nodes, sizeof(Node), g->nnodes,
                       &g->cap_nodes);
  g->nodes[g->nnodes] = *n;
  return g->nnodes++;
}

int graph_add_weight(Graph *g, const char *name, const int64_t *dims,
                     int ndims, int node) {
  g->weights = pool_grow(g->pool, g->weights, sizeof(Weight), g->nweights,
                         &g->cap_weights);
  Weight *w = &g->weights[g->nweights];
  *w = (Weight){.name = name, .ndims = ndims, .count = 1,
                .first_node = node, .grad = -1};
  for (int i = 0; i < ndims; i++) {
    w->dims[i] = dims[i];
    w->count *= dims[i];
  }
  return g->nweights++;
}

int64_t shape_elems(Shape s) { return s.c * s.h * s.w; }

int64_t tensor_bytes(const Graph *g, int t) {
  const Tensor *x = &g->tensors[t];
  return shape_elems(x->shape) * 4 * (x->batched ? g->batch : 1);
}

const char *tensor_kind_name(TensorKind k) {
  static const char *const n[TK_COUNT] = {
      [TK_INPUT] = "input", [TK_ACT] = "activation", [TK_SAVED] = "saved",
      [TK_LOSS] = "loss",   [TK_GRAD] = "gradient",  [TK_SCRATCH] = "scratch",
      [TK_WGRAD] = "weight_grad",
  };
  return n[k];
}

const char *shape_str(Pool *p, Shape s) {
  return pool_printf(p, "%lldx%lldx%lld", (long long)s.c, (long long)s.h,
                     (long long)s.w);
}

double node_flops(const Graph *g, int i) {
  const Node *n = &g->nodes[i];
  Shape in[MAX_NODE_IN];
  for (int j = 0; j < n->nin; j++)
    in[j] = g->tensors[n->in[j]].shape;
  return op_flops(n->op, in, &g->tensors[n->out].shape, n->attr);
}

/* A training step: the forward FLOPs, plus for conv and dense the two
 * backward GEMMs (dW, and dX unless nothing needs it), plus for the other
 * ops their forward count once more. Times the batch. */
double step_flops(const Graph *g) {
  double total = 0;
  for (int i = 0; i < g->nforward; i++)
    total += node_flops(g, i);
  for (int i = g->nforward; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    switch (op_info(n->op)->bwd_flops) {
    case BF_NONE: /* grad_add, and the optimizer's update: a few FLOPs per
                     parameter, not counted, as in the frameworks' counts */
      break;
    case BF_FORWARD: total += node_flops(g, n->fwd); break;
    case BF_GEMMS: /* dW, and dX unless nothing needs it */
      total += node_flops(g, n->fwd) * (n->out >= 0 ? 2 : 1);
      break;
    }
  }
  return total * (double)g->batch;
}

int64_t graph_param_count(const Graph *g) {
  int64_t n = 0;
  for (int i = 0; i < g->nweights; i++)
    n += g->weights[i].count;
  return n;
}

#define BAD(...)                                                              \
  do {                                                                        \
    fprintf(err, "verify: " __VA_ARGS__);                                     \
    fputc('\n', err);                                                         \
    bad++;                                                                    \
  } while (0)

static bool same_shape(Shape a, Shape b) {
  return a.c == b.c && a.h == b.h && a.w == b.w;
}

static bool in_range(const Graph *g, int t) {
  return t >= 0 && t < g->ntensors;
}

/* A view is made when the tensor it views is made. */
static bool is_made(const Graph *g, const int *made, int t) {
  while (g->tensors[t].producer < 0 && g->tensors[t].view_of >= 0)
    t = g->tensors[t].view_of;
  return made[t] > 0;
}

/* The output shape a node must have: its op's shape rule for forward ops,
 * the shape of the forward op's first input for backward ops. */
static bool expected_shape(const Graph *g, const Node *n, Shape *out,
                           Pool *p, const char **why) {
  if ((int)n->op >= OP_USER_COUNT) {
    if (n->op == OP_GRAD_ADD) {
      *out = g->tensors[n->in[0]].shape;
      return true;
    }
    /* the gradient of its forward op's input 0, or of the input it is
     * the backward op of (scale's s) */
    const Node *f = &g->nodes[n->fwd];
    int j = 0;
    for (int k = 1; k < f->nin; k++)
      if (op_backward_of(f->op, k) == n->op)
        j = k;
    *out = g->tensors[f->in[j]].shape;
    return true;
  }
  Shape in[MAX_NODE_IN];
  for (int j = 0; j < n->nin; j++)
    in[j] = g->tensors[n->in[j]].shape;
  return op_infer(n->op, in, n->attr, out, p, why);
}

/* An update reads the gradient of its one weight, once. */
static int verify_update(const Graph *g, int i, bool *updated, FILE *err) {
  int bad = 0;
  const Node *n = &g->nodes[i];
  int w = n->weight[0];
  if (w < 0 || w >= g->nweights || n->weight[1] != -1 || n->out != -1) {
    BAD("update node %d (%s) does not name one weight", i, n->path);
    return bad;
  }
  if (n->in[0] != g->weights[w].grad ||
      g->tensors[n->in[0]].kind != TK_WGRAD)
    BAD("update node %d (%s) does not read the gradient of %s", i, n->path,
        g->weights[w].name);
  if (updated[w])
    BAD("update node %d (%s) updates %s a second time", i, n->path,
        g->weights[w].name);
  updated[w] = true;
  return bad;
}

/* updated[w]: an update of weight w ran before node i; nothing may use w
 * after that. */
static int verify_weights(const Graph *g, int i, bool *updated, FILE *err) {
  int bad = 0;
  const Node *n = &g->nodes[i];
  if (n->op == OP_UPDATE)
    return verify_update(g, i, updated, err);
  /* Weights are those whose gradients a backward node writes: grad_add
   * and a recompute (which reads its batchnorm's weights) have none. */
  bool none = n->op == OP_GRAD_ADD || n->op == OP_BN_RELU_RECOMPUTE ||
              n->op == OP_ALLREDUCE || n->op == OP_ALLREDUCE_WAIT;
  const Node *f = (int)n->op >= OP_USER_COUNT && !none ? &g->nodes[n->fwd] : n;
  if ((int)f->op >= OP_USER_COUNT)
    return 0;
  WeightShape ws[MAX_WEIGHTS_PER_NODE];
  int nw = op_weights(f->op, &g->tensors[f->in[0]].shape, f->attr, ws);
  for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++) {
    int id = n->weight[j];
    if (j >= nw || none) {
      if (id != -1)
        BAD("node %d (%s) has an extra weight", i, n->path);
      continue;
    }
    if (id < 0 || id >= g->nweights) {
      BAD("node %d (%s): weight id %d out of range", i, n->path, id);
      continue;
    }
    const Weight *w = &g->weights[id];
    if (updated[id])
      BAD("node %d (%s) uses %s after its update", i, n->path, w->name);
    if (n != f && n->wgrad[j] != w->grad)
      BAD("node %d (%s) does not write the gradient of %s", i, n->path,
          w->name);
    if (w->ndims != ws[j].ndims ||
        memcmp(w->dims, ws[j].dims, sizeof(int64_t) * (size_t)w->ndims))
      BAD("node %d (%s): weight %s has the wrong shape", i, n->path,
          w->name);
  }
  return bad;
}

static int verify_node(const Graph *g, int i, int *made, bool *updated,
                       Pool *p, FILE *err) {
  int bad = 0;
  const Node *n = &g->nodes[i];
  bool bwd = (int)n->op >= OP_USER_COUNT;
  if (n->op < 0 || n->op >= OP_COUNT) {
    BAD("node %d has op %d out of range", i, n->op);
    return bad;
  }
  int nin = node_ninputs(n);
  if (n->fuse == FUSE_RELU && !op_info(n->op)->fused_kernel.fn)
    BAD("node %d (%s): its op cannot take a relu", i, n->path);
  if (n->nin != nin)
    BAD("node %d (%s) has %d inputs, its op takes %d", i, n->path, n->nin,
        nin);
  if (bwd != (i >= g->nforward))
    BAD("node %d (%s) is on the wrong side of the forward/backward split",
        i, n->path);
  if (bwd && n->op != OP_GRAD_ADD && (n->fwd < 0 || n->fwd >= g->nforward))
    BAD("backward node %d (%s) names no forward node", i, n->path);
  for (int j = 0; j < n->nin && j < MAX_NODE_IN; j++) {
    if (!in_range(g, n->in[j]))
      BAD("node %d (%s) reads tensor %d out of range", i, n->path, n->in[j]);
    else if (!is_made(g, made, n->in[j]))
      BAD("node %d (%s) reads tensor %d before it is produced", i, n->path,
          n->in[j]);
  }
  if (bad)
    return bad;
  if (n->out >= 0) {
    if (!in_range(g, n->out)) {
      BAD("node %d (%s) writes tensor %d out of range", i, n->path, n->out);
      return bad;
    }
    if (n->accumulate) {
      if (!is_made(g, made, n->out))
        BAD("node %d (%s) adds to tensor %d before it is produced", i,
            n->path, n->out);
    } else {
      if (made[n->out]++)
        BAD("tensor %d has more than one producer", n->out);
      if (g->tensors[n->out].producer != i)
        BAD("tensor %d does not name node %d as its producer", n->out, i);
    }
    Shape out;
    const char *why = NULL;
    if (!expected_shape(g, n, &out, p, &why))
      BAD("node %d (%s): %s", i, n->path, why);
    else if (!same_shape(out, g->tensors[n->out].shape))
      BAD("node %d (%s): output shape disagrees with its op", i, n->path);
  } else if (!bwd) {
    BAD("forward node %d (%s) has no output", i, n->path);
  }
  for (int j = 0; j < n->nextra; j++) {
    int t = n->extra[j];
    if (!in_range(g, t) || made[t]++ || g->tensors[t].producer != i)
      BAD("node %d (%s): bad extra output %d", i, n->path, t);
  }
  for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++) {
    int t = n->wgrad[j];
    if (t < 0)
      continue;
    if (!in_range(g, t) || g->tensors[t].kind != TK_WGRAD)
      BAD("node %d (%s): bad weight gradient %d", i, n->path, t);
    else if (n->wgrad_accumulate[j] ? !made[t]
                                    : made[t]++ || g->tensors[t].producer != i)
      BAD("node %d (%s): weight gradient %d written out of order", i, n->path,
          t);
  }
  return bad + verify_weights(g, i, updated, err);
}

/* Invariants: ids in range; every tensor but the inputs (and gradient
 * views) has exactly one producer, which runs before any reader; a node
 * that adds into a tensor runs after its producer; each output has the
 * shape its op's rule gives; each weight has the shape its op asks. */
int graph_verify(const Graph *g, FILE *err) {
  int bad = 0;
  Pool scratch = {0};
  int *made = pool_alloc(&scratch, sizeof(int) * (size_t)(g->ntensors + 1));
  bool *updated =
      pool_alloc(&scratch, sizeof(bool) * (size_t)(g->nweights + 1));
  for (int t = 0; t < g->ntensors; t++)
    if (g->tensors[t].producer < 0 && g->tensors[t].view_of < 0)
      made[t] = 1; /* the inputs */
  if (!in_range(g, g->input) || g->tensors[g->input].kind != TK_INPUT)
    BAD("the image input %d is not an input tensor", g->input);
  for (int i = 0; i < g->nnodes; i++)
    bad += verify_node(g, i, made, updated, &scratch, err);
  for (int t = 0; t < g->ntensors && !bad; t++) {
    const Tensor *x = &g->tensors[t];
    if (!is_made(g, made, t))
      BAD("tensor %d (%s) is never produced", t, x->label);
    if (x->view_of >= 0 && (!in_range(g, x->view_of) ||
                            shape_elems(g->tensors[x->view_of].shape) !=
                                shape_elems(x->shape)))
      BAD("tensor %d views tensor %d of another size", t, x->view_of);
    if (x->bucket >= 0 &&
        (!in_range(g, x->bucket) || x->kind != TK_WGRAD ||
         x->bucket_offset % PLAN_ALIGN ||
         x->bucket_offset + tensor_bytes(g, t) > tensor_bytes(g, x->bucket)))
      BAD("tensor %d does not fit in its bucket %d", t, x->bucket);
  }
  if (!in_range(g, g->loss))
    BAD("loss tensor id %d out of range", g->loss);
  else if (g->tensors[g->loss].producer < 0 ||
           g->nodes[g->tensors[g->loss].producer].op != OP_SOFTMAX_XENT)
    BAD("the loss is not produced by softmax_cross_entropy");
  pool_free(&scratch);
  return bad;
}
