/* autodiff.c: derives the backward pass from the forward graph.
 *
 * Requires: a verified forward graph (infer.c), nodes [0, nforward).
 * Guarantees: the graph also holds the labels' reader, the state each
 * forward op saves for its backward op (batchnorm's batch statistics,
 * maxpool's argmax, the softmax probabilities), per-op scratch (im2col
 * columns), and backward nodes [nforward, nnodes) that compute the gradient
 * of the loss with respect to every weight; graph_verify() holds.
 *
 * Reverse-mode differentiation over the forward nodes in reverse order.
 * grad[t] is the gradient of forward tensor t accumulated so far. An op
 * whose rule is PASS (add, flatten) hands its output gradient to its inputs
 * without computing anything, so one gradient buffer can serve several
 * tensors. A second contribution to grad[x] is added in place (the backward
 * op accumulates, +=) when no pending reader still needs the old value, and
 * through a fresh grad_add otherwise. Each op saves only what its backward
 * needs: relu keeps its output (for the sign), not its input; maxpool keeps
 * argmax, not its input; a relu over a batchnorm keeps nothing (its output
 * is recomputed). Tensors no weight lies upstream of (the image) get
 * no gradient. A weight used by several nodes (a shared block) gets one
 * gradient: the first backward use writes it, the later ones add to it. */
#include <string.h>

#include "netc.h"

typedef struct {
  Graph *g;
  int nfwd_tensors; /* tensors that existed before autodiff */
  int *grad;        /* per forward tensor: its gradient so far, or -1 */
  int *versions;    /* per forward tensor: gradient buffers made for it */
  bool *needs;      /* per forward tensor: is a weight upstream of it? */
  int *last_use;    /* per weight: the forward node whose backward op
                       writes its gradient last, or -1 */
  int *recomp;      /* per forward tensor: its recomputed copy, or -1 */
  int cur;          /* the forward node being differentiated */
} AD;

static int new_tensor(AD *a, Shape s, TensorKind kind, int producer,
                      const Node *n, const char *label) {
  int t = graph_add_tensor(a->g, s, producer, n->loc);
  Tensor *x = &a->g->tensors[t];
  x->kind = kind;
  x->label = label;
  return t;
}

/* Adds to node n (of kind k, made by node `producer`) the extra tensors
 * its row lists: saved state and scratch, shaped after forward op f. */
static void add_extras(AD *a, Node *n, OpKind k, const Node *f,
                       int producer) {
  const OpInfo *op = op_info(k);
  for (int j = 0; j < op->nextras; j++) {
    const ExtraSpec *e = &op->extras[j];
    bool batched;
    Shape s = op_extra_shape(e, a->g->tensors[f->in[0]].shape,
                             a->g->tensors[f->out].shape, f, a->g->batch,
                             &batched);
    if (e->if_work && shape_elems(s) == 0)
      continue;
    int t = new_tensor(a, s, e->scratch ? TK_SCRATCH : TK_SAVED, producer, f,
                       pool_printf(a->g->pool, "%s.%s", f->path, e->suffix));
    a->g->tensors[t].batched = batched;
    a->g->tensors[t].is_int = e->is_int;
    n->extra[n->nextra++] = t;
  }
}

static int root(const Graph *g, int t) {
  while (g->tensors[t].view_of >= 0)
    t = g->tensors[t].view_of;
  return t;
}

/* May the buffer of grad[x] be added to now? Not while another tensor
 * whose gradient shares that buffer still has its backward op to run (its
 * producer is the current node or comes earlier in the forward order). */
static bool writable(AD *a, int x) {
  int r = root(a->g, a->grad[x]);
  for (int z = 0; z < a->nfwd_tensors; z++) {
    if (z == x || a->grad[z] < 0 || root(a->g, a->grad[z]) != r)
      continue;
    int p = a->g->tensors[z].producer;
    if (p >= 0 && p <= a->cur)
      return false;
  }
  return true;
}

static const char *grad_label(AD *a, int x) {
  const char *l = a->g->tensors[x].label;
  int v = ++a->versions[x];
  return v == 1 ? pool_printf(a->g->pool, "%s.grad", l)
                : pool_printf(a->g->pool, "%s.grad%d", l, v);
}

static int new_grad(AD *a, int x, int producer, const Node *n) {
  int t = new_tensor(a, a->g->tensors[x].shape, TK_GRAD, producer, n,
                     grad_label(a, x));
  a->g->tensors[t].grad_of = x;
  return t;
}

/* grad[x] += t, through a fresh grad_add node. */
static void emit_grad_add(AD *a, int x, int t, const Node *f) {
  Node n = {.op = OP_GRAD_ADD, .nin = 2, .in = {a->grad[x], t},
            .weight = {-1, -1}, .wgrad = {-1, -1}, .fwd = a->cur, .loc = f->loc,
            .path = f->path};
  n.out = new_grad(a, x, a->g->nnodes, f);
  graph_add_node(a->g, &n);
  a->grad[x] = n.out;
}

/* Gives x the gradient contribution `t` that already exists (PASS). */
static void pass(AD *a, int x, int t, const Node *f) {
  if (!a->needs[x])
    return;
  if (a->grad[x] < 0)
    a->grad[x] = t;
  else
    emit_grad_add(a, x, t, f);
}

/* Adds backward node `n`, whose result is a contribution to grad[x]. */
static void emit_contributing(AD *a, Node *n, int x, const Node *f) {
  int id = a->g->nnodes;
  if (!a->needs[x]) {
    n->out = -1;
  } else if (a->grad[x] < 0) {
    n->out = a->grad[x] = new_grad(a, x, id, f);
  } else if (writable(a, x)) {
    n->out = a->grad[x];
    n->accumulate = true;
  } else {
    n->out = new_grad(a, x, id, f);
    graph_add_node(a->g, n);
    emit_grad_add(a, x, n->out, f);
    return;
  }
  graph_add_node(a->g, n);
}

static int backward_input(AD *a, const Node *f, BackwardInput what, int dy);

/* What the backward pass reads for forward tensor t: t itself, or, when t
 * is relu(batchnorm(X)), a copy recomputed from X and the batch statistics
 * (which the batchnorm's own backward keeps anyway), made just before its
 * first backward reader. t then dies with its last forward reader: of the
 * three tensors of conv -> batchnorm -> relu, one is kept, not two. */
static int kept_or_recomputed(AD *a, int t) {
  Graph *g = a->g;
  int r = g->tensors[t].producer;
  if (t >= a->nfwd_tensors || r < 0 || g->nodes[r].op != OP_RELU)
    return t;
  int b = g->tensors[g->nodes[r].in[0]].producer;
  if (b < 0 || g->nodes[b].op != OP_BATCHNORM)
    return t;
  if (a->recomp[t] < 0) {
    const Node *bn = &g->nodes[b], *relu = &g->nodes[r];
    const OpInfo *op = op_info(OP_BN_RELU_RECOMPUTE);
    Node n = {.op = OP_BN_RELU_RECOMPUTE, .fwd = b, .loc = relu->loc,
              .path = relu->path, .nin = op->nbwd_in, .weight = {-1, -1},
              .wgrad = {-1, -1}};
    for (int j = 0; j < op->nbwd_in; j++)
      n.in[j] = backward_input(a, bn, op->bwd_in[j], -1);
    n.out = new_tensor(a, g->tensors[t].shape, TK_ACT, g->nnodes, relu,
                       pool_printf(g->pool, "%s.again", relu->path));
    add_extras(a, &n, n.op, bn, g->nnodes);
    graph_add_node(g, &n);
    a->recomp[t] = n.out;
  }
  return a->recomp[t];
}

/* Input `what` of a backward op of forward node f (dy: its output's
 * gradient). */
static int backward_input(AD *a, const Node *f, BackwardInput what, int dy) {
  switch (what) {
  case BI_DY: return dy;
  case BI_X: return f->in[0];
  case BI_X1: return f->in[1];
  case BI_X_KEPT: return kept_or_recomputed(a, f->in[0]);
  case BI_Y_KEPT: return kept_or_recomputed(a, f->out);
  case BI_SAVED0: return f->extra[0];
  case BI_SAVED1: return f->extra[1];
  case BI_LABELS: return a->g->labels;
  }
  op_unhandled("backward_input", f->op);
}

/* A PASS op (add, flatten) hands dy to each input: a view of it in the
 * input's shape when the op is a view (flatten), else dy itself. */
static void pass_through(AD *a, const Node *f, int dy) {
  Graph *g = a->g;
  for (int j = 0; j < f->nin; j++) {
    int t = dy;
    if (op_info(f->op)->view) {
      t = new_tensor(a, g->tensors[f->in[j]].shape, TK_GRAD, -1, f,
                     grad_label(a, f->in[j]));
      g->tensors[t].view_of = dy;
      g->tensors[t].grad_of = f->in[j];
    }
    pass(a, f->in[j], t, f);
  }
}

/* The first backward use of a weight makes its gradient (n, added next,
 * is its producer); later uses add to it. */
static void weight_grads(AD *a, Node *n, const Node *f) {
  Graph *g = a->g;
  for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++) {
    Weight *w = n->weight[j] >= 0 ? &g->weights[n->weight[j]] : NULL;
    if (w && w->grad < 0) {
      w->grad = new_tensor(a, (Shape){w->count, 1, 1}, TK_WGRAD, g->nnodes,
                           f, pool_printf(g->pool, "%s.grad", w->name));
      g->tensors[w->grad].batched = false;
    } else if (w) {
      n->wgrad_accumulate[j] = true;
    }
    n->wgrad[j] = w ? w->grad : -1;
  }
}

/* After the last backward use of a weight its gradient is final: the
 * optimizer updates it there, and the gradient's buffer dies. */
static void emit_updates(AD *a, const Node *n, int i) {
  Graph *g = a->g;
  const Node *f = &g->nodes[i];
  for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++) {
    int w = n->weight[j];
    if (w < 0 || a->last_use[w] != i)
      continue;
    Node u = {.op = OP_UPDATE, .nin = 1, .in = {g->weights[w].grad},
              .out = -1, .weight = {w, -1}, .wgrad = {-1, -1}, .fwd = i,
              .loc = f->loc, .path = f->path};
    graph_add_node(g, &u);
  }
}

/* The backward node of forward node i, as its op's row describes it. */
static void differentiate(AD *a, int i) {
  Graph *g = a->g;
  const Node f = g->nodes[i];
  const OpInfo *op = op_info(f.op);
  int dy = op->loss ? -1 : a->grad[f.out];
  if (!op->loss && dy < 0)
    return; /* its output does not reach the loss */
  if (op->backward == OP_PASS) {
    pass_through(a, &f, dy);
    return;
  }
  const OpInfo *bop = op_info(op->backward);
  Node n = {.op = op->backward, .fwd = i, .loc = f.loc, .path = f.path,
            .nin = bop->nbwd_in};
  memcpy(n.attr, f.attr, sizeof n.attr);
  memcpy(n.weight, f.weight, sizeof n.weight);
  for (int j = 0; j < bop->nbwd_in; j++)
    n.in[j] = backward_input(a, &f, bop->bwd_in[j], dy);
  /* (scale's backward op for x writes nothing when only s needs a
   * gradient: it is not made) */
  if (a->needs[f.in[0]] || f.weight[0] >= 0) {
    weight_grads(a, &n, &f);
    add_extras(a, &n, n.op, &f, g->nnodes);
    emit_contributing(a, &n, f.in[0], &f);
    emit_updates(a, &n, i);
  }
  /* An input with a backward op of its own (scale's s) */
  for (int j = 1; j < f.nin; j++) {
    OpKind k = op_backward_of(f.op, j);
    if (k == OP_NONE || !a->needs[f.in[j]])
      continue;
    const OpInfo *jop = op_info(k);
    Node m = {.op = k, .fwd = i, .loc = f.loc, .path = f.path,
              .nin = jop->nbwd_in, .weight = {-1, -1}, .wgrad = {-1, -1}};
    memcpy(m.attr, f.attr, sizeof m.attr);
    for (int q = 0; q < jop->nbwd_in; q++)
      m.in[q] = backward_input(a, &f, jop->bwd_in[q], dy);
    add_extras(a, &m, m.op, &f, g->nnodes);
    emit_contributing(a, &m, f.in[j], &f);
  }
}

/* For each weight, the earliest forward node that uses it on a path to the
 * loss: its backward op, differentiated last, is the gradient's last
 * writer. (Tensors off every such path get no gradient.) */
static void find_last_uses(AD *a) {
  Graph *g = a->g;
  bool *reach = pool_alloc(g->pool, sizeof(bool) * (size_t)g->ntensors);
  reach[g->loss] = true;
  for (int i = g->nforward - 1; i >= 0; i--) {
    const Node *n = &g->nodes[i];
    if (!reach[n->out])
      continue;
    for (int j = 0; j < n->nin; j++)
      reach[n->in[j]] |= a->needs[n->in[j]];
    for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++)
      if (n->weight[j] >= 0)
        a->last_use[n->weight[j]] = i;
  }
}

void autodiff(Graph *g) {
  Pool *p = g->pool;
  AD a = {.g = g, .nfwd_tensors = g->ntensors};
  a.grad = pool_alloc(p, sizeof(int) * (size_t)g->ntensors);
  a.versions = pool_alloc(p, sizeof(int) * (size_t)g->ntensors);
  a.needs = pool_alloc(p, sizeof(bool) * (size_t)g->ntensors);
  a.last_use = pool_alloc(p, sizeof(int) * (size_t)(g->nweights + 1));
  a.recomp = pool_alloc(p, sizeof(int) * (size_t)g->ntensors);
  for (int t = 0; t < g->ntensors; t++)
    a.grad[t] = a.recomp[t] = -1;
  for (int w = 0; w < g->nweights; w++)
    a.last_use[w] = -1;
  for (int i = 0; i < g->nforward; i++) {
    const Node *n = &g->nodes[i];
    bool needs = n->weight[0] >= 0;
    for (int j = 0; j < n->nin; j++)
      needs |= a.needs[n->in[j]];
    a.needs[n->out] = needs;
    add_extras(&a, &g->nodes[i], g->nodes[i].op, &g->nodes[i], i);
  }
  find_last_uses(&a);
  for (a.cur = g->nforward - 1; a.cur >= 0; a.cur--)
    differentiate(&a, a.cur);
}
