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
  int *saved;       /* per forward node: its first saved/scratch tensor */
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

static void add_extra(AD *a, int node, int t) {
  Node *n = &a->g->nodes[node];
  n->extra[n->nextra++] = t;
}

static bool conv_needs_columns(const Node *n) {
  return n->attr[CONV_K] != 1 || n->attr[CONV_STRIDE] != 1 ||
         n->attr[CONV_PAD] != 0;
}

/* The state forward node i saves for its backward op, and its scratch. */
static void add_saved(AD *a, int i) {
  Graph *g = a->g;
  Node *n = &g->nodes[i];
  Shape in = g->tensors[n->in[0]].shape, out = g->tensors[n->out].shape;
  const char *p = n->path;
  Pool *pool = g->pool;
  a->saved[i] = g->ntensors;
  switch (n->op) {
  case OP_CONV:
    if (conv_needs_columns(n)) {
      Shape cols = {in.c * n->attr[CONV_K] * n->attr[CONV_K], out.h, out.w};
      add_extra(a, i, new_tensor(a, cols, TK_SCRATCH, i, n,
                                 pool_printf(pool, "%s.cols", p)));
    }
    break;
  case OP_BATCHNORM:
    for (int j = 0; j < 2; j++) {
      int t = new_tensor(a, (Shape){in.c, 1, 1}, TK_SAVED, i, n,
                         pool_printf(pool, "%s.%s", p, j ? "invstd" : "mean"));
      g->tensors[t].batched = false;
      add_extra(a, i, t);
    }
    break;
  case OP_MAXPOOL: {
    int t = new_tensor(a, out, TK_SAVED, i, n,
                       pool_printf(pool, "%s.argmax", p));
    g->tensors[t].is_int = true;
    add_extra(a, i, t);
    break;
  }
  case OP_SOFTMAX_XENT:
    add_extra(a, i, new_tensor(a, in, TK_SAVED, i, n,
                               pool_printf(pool, "%s.probs", p)));
    break;
  default:
    break;
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
    Node n = {.op = OP_BN_RELU_RECOMPUTE, .fwd = b, .loc = relu->loc,
              .path = relu->path, .nin = 3,
              .in = {bn->in[0], a->saved[b], a->saved[b] + 1},
              .weight = {-1, -1}, .wgrad = {-1, -1}};
    n.out = new_tensor(a, g->tensors[t].shape, TK_ACT, g->nnodes, relu,
                       pool_printf(g->pool, "%s.again", relu->path));
    graph_add_node(g, &n);
    a->recomp[t] = n.out;
  }
  return a->recomp[t];
}

/* The backward node of forward node i: inputs by op, weights shared. */
static void differentiate(AD *a, int i) {
  Graph *g = a->g;
  const Node f = g->nodes[i];
  int dy = f.op == OP_SOFTMAX_XENT ? -1 : a->grad[f.out];
  if (f.op != OP_SOFTMAX_XENT && dy < 0)
    return; /* its output does not reach the loss */
  if (op_info(f.op)->backward == OP_PASS) {
    for (int j = 0; j < f.nin; j++) {
      int t = dy;
      if (f.op == OP_FLATTEN) { /* the gradient, seen in x's shape */
        t = new_tensor(a, g->tensors[f.in[j]].shape, TK_GRAD, -1, &f,
                       grad_label(a, f.in[j]));
        g->tensors[t].view_of = dy;
        g->tensors[t].grad_of = f.in[j];
      }
      pass(a, f.in[j], t, &f);
    }
    return;
  }
  Node n = {.op = op_info(f.op)->backward, .fwd = i, .loc = f.loc,
            .path = f.path};
  memcpy(n.attr, f.attr, sizeof n.attr);
  memcpy(n.weight, f.weight, sizeof n.weight);
  int s = a->saved[i]; /* the saved tensors, in add_saved's order */
  switch (f.op) {
  case OP_CONV:
  case OP_DENSE:
    n.nin = 2, n.in[0] = dy, n.in[1] = kept_or_recomputed(a, f.in[0]);
    break;
  case OP_BATCHNORM:
    n.nin = 4, n.in[0] = dy, n.in[1] = f.in[0], n.in[2] = s,
    n.in[3] = s + 1;
    break;
  case OP_RELU:
    n.nin = 2, n.in[0] = dy, n.in[1] = kept_or_recomputed(a, f.out);
    break;
  case OP_MAXPOOL:
    n.nin = 2, n.in[0] = dy, n.in[1] = s;
    break;
  case OP_SOFTMAX_XENT:
    n.nin = 2, n.in[0] = s, n.in[1] = g->labels;
    break;
  default: /* avgpool, global_avgpool */
    n.nin = 1, n.in[0] = dy;
    break;
  }
  /* The first backward use of a weight makes its gradient (n, added
   * next, is its producer); later uses add to it. */
  for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++) {
    Weight *w = n.weight[j] >= 0 ? &g->weights[n.weight[j]] : NULL;
    if (w && w->grad < 0) {
      w->grad = new_tensor(a, (Shape){w->count, 1, 1}, TK_WGRAD, g->nnodes,
                           &f, pool_printf(g->pool, "%s.grad", w->name));
      g->tensors[w->grad].batched = false;
    } else if (w) {
      n.wgrad_accumulate[j] = true;
    }
    n.wgrad[j] = w ? w->grad : -1;
  }
  if (f.op == OP_CONV && conv_needs_columns(&f)) {
    /* The columns of X for dW, then of dX, one buffer in turn. */
    n.nextra = 1;
    n.extra[0] = new_tensor(a, g->tensors[s].shape, TK_SCRATCH, g->nnodes,
                            &f, pool_printf(g->pool, "%s.dcols", f.path));
  }
  emit_contributing(a, &n, f.in[0], &f);
  /* After the last backward use of a weight its gradient is final: the
   * optimizer updates it there, and the gradient's buffer dies. */
  for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++) {
    int w = n.weight[j];
    if (w < 0 || a->last_use[w] != i)
      continue;
    Node u = {.op = OP_UPDATE, .nin = 1, .in = {g->weights[w].grad},
              .out = -1, .weight = {w, -1}, .wgrad = {-1, -1}, .fwd = i,
              .loc = f.loc, .path = f.path};
    graph_add_node(g, &u);
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
  a.saved = pool_alloc(p, sizeof(int) * (size_t)g->nforward);
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
    add_saved(&a, i);
  }
  find_last_uses(&a);
  for (a.cur = g->nforward - 1; a.cur >= 0; a.cur--)
    differentiate(&a, a.cur);
}
