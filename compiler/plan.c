/* plan.c: the memory plan of one training step.
 *
 * Requires: a verified graph with its backward pass (autodiff.c).
 * Guarantees: every tensor has a byte offset in one arena, 64-byte aligned,
 * such that no two tensors live at the same step share a byte
 * (plan_check proves it); every other byte a trainer uses has its place in
 * the persistent block: each weight its offset and layout in the parameter
 * region, each batchnorm its running statistics, each optimizer its state
 * (persistent()). Codegen prints these decisions; it makes none. A
 * weight's gradient is an arena tensor like any other: it lives from its
 * first backward writer to the update node that consumes it, and kernel
 * scratch and workspaces are arena tensors of their op.
 *
 * 1. Schedule: the nodes in graph order (forward, then backward). A
 *    tensor lives from the step that produces it to the last step that
 *    reads it or adds to it; the inputs and the loss, the whole step.
 * 2. Storage: a view (flatten, and a gradient seen through a flatten)
 *    shares its tensor's buffer, and a weight gradient in a bucket
 *    (build --mpi, comm.c) lies in its bucket's, at its offset there. Then, in schedule order, an op that may
 *    run in place (relu, add, relu_backward, batchnorm_backward, grad_add)
 *    writes its output over an input whose buffer is read for the last time
 *    at that step. Tensors sharing a buffer form one group.
 * 3. Placement: the groups are intervals with sizes; each is put at the
 *    best-fitting (or the lowest fitting) gap among the groups already
 *    placed that overlap it in time. Four orders (by size, by start, by
 *    lifetime, by size x lifetime) times the two fits are tried and the
 *    smallest arena kept.
 * The lower bound is the most bytes of groups live at one step: no
 * placement of these buffers can use less. */
#include <stdlib.h>
#include <string.h>

#include "netc.h"

static int64_t align_up(int64_t n) {
  return (n + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN;
}

static int find(int *parent, int t) {
  while (parent[t] != t)
    t = parent[t] = parent[parent[t]];
  return t;
}

/* ---- placement of intervals --------------------------------------------- */

typedef struct {
  const int64_t *size;
  const int *first, *last;
  int order;
} Order;

static const Order *sort_ctx; /* qsort has no context argument in C11 */

static int64_t key(const Order *o, int i, int which) {
  int64_t life = o->last[i] - o->first[i] + 1;
  switch (which) {
  case 0: return o->size[i];
  case 1: return -(int64_t)o->first[i];
  case 2: return life;
  default: return o->size[i] * life;
  }
}

static int by_order(const void *pa, const void *pb) {
  int a = *(const int *)pa, b = *(const int *)pb;
  int64_t ka = key(sort_ctx, a, sort_ctx->order);
  int64_t kb = key(sort_ctx, b, sort_ctx->order);
  if (ka != kb)
    return ka > kb ? -1 : 1;
  int64_t sa = sort_ctx->size[a], sb = sort_ctx->size[b];
  if (sa != sb)
    return sa > sb ? -1 : 1;
  return a - b; /* deterministic */
}

static const int64_t *offset_ctx;
static int by_offset(const void *pa, const void *pb) {
  int64_t a = offset_ctx[*(const int *)pa], b = offset_ctx[*(const int *)pb];
  return a < b ? -1 : a > b;
}

int64_t place_intervals(int n, const int64_t *size, const int *first,
                        const int *last, int64_t *offset, int order) {
  Order o = {size, first, last, order % 4};
  int *idx = malloc(sizeof(int) * (size_t)(n + 1));
  int *near = malloc(sizeof(int) * (size_t)(n + 1));
  bool *placed = calloc((size_t)n + 1, 1);
  for (int i = 0; i < n; i++)
    idx[i] = i;
  sort_ctx = &o;
  qsort(idx, (size_t)n, sizeof(int), by_order);
  int64_t arena = 0;
  for (int k = 0; k < n; k++) {
    int b = idx[k];
    int m = 0;
    for (int j = 0; j < n; j++)
      if (placed[j] && first[j] <= last[b] && first[b] <= last[j])
        near[m++] = j;
    offset_ctx = offset;
    qsort(near, (size_t)m, sizeof(int), by_offset);
    /* Best fit: the smallest gap that holds b (orders >= 4: the lowest
     * gap); else above everything. */
    int64_t at = 0, best = -1, best_gap = 0, top = 0;
    for (int j = 0; j < m; j++) {
      int64_t gap = offset[near[j]] - at;
      if (gap >= size[b] && (best < 0 || (order < 4 && gap < best_gap)))
        best = at, best_gap = gap;
      int64_t end = offset[near[j]] + size[near[j]];
      if (end > at)
        at = end;
      if (end > top)
        top = end;
    }
    offset[b] = best >= 0 ? best : top;
    placed[b] = true;
    if (offset[b] + size[b] > arena)
      arena = offset[b] + size[b];
  }
  free(idx);
  free(near);
  free(placed);
  return arena;
}

/* ---- the plan ----------------------------------------------------------- */

static void intervals(const Graph *g, Plan *p) {
  for (int t = 0; t < g->ntensors; t++) {
    int pr = g->tensors[t].producer;
    p->first[t] = p->last[t] = pr >= 0 ? pr : 0;
  }
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    for (int j = 0; j < n->nin; j++)
      if (p->last[n->in[j]] < i)
        p->last[n->in[j]] = i;
    if (n->out >= 0 && n->accumulate && p->last[n->out] < i)
      p->last[n->out] = i;
    for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++)
      if (n->wgrad[j] >= 0 && p->last[n->wgrad[j]] < i)
        p->last[n->wgrad[j]] = i;
  }
  /* A gradient view, and a bucket of gradients (comm.c), is born when
   * first used (a bucket's group reaches back to its first gradient). */
  for (int t = 0; t < g->ntensors; t++)
    if (g->tensors[t].producer < 0 &&
        (g->tensors[t].view_of >= 0 || g->tensors[t].kind == TK_WGRAD))
      p->first[t] = p->last[t];
  /* The loss, the image and the labels live through the whole step: the
   * trainer reads the loss afterwards, and may train on a batch twice. */
  p->last[g->loss] = p->last[g->input] = p->last[g->labels] = p->nsteps - 1;
}

/* Which inputs an op may overwrite with its output: its row's bits. */
static int inplace_candidates(const Node *n, int *cand) {
  unsigned bits = op_info(n->op)->inplace;
  int k = 0;
  for (int j = 0; j < n->nin; j++)
    if (bits & (1u << j))
      cand[k++] = n->in[j];
  return k;
}

static void merge(int *parent, int *gfirst, int *glast, int a,
                  int b) {
  a = find(parent, a), b = find(parent, b);
  if (a == b)
    return;
  if (b < a) { /* the older tensor owns the buffer */
    int t = a;
    a = b, b = t;
  }
  parent[b] = a;
  if (gfirst[b] < gfirst[a])
    gfirst[a] = gfirst[b];
  if (glast[b] > glast[a])
    glast[a] = glast[b];
}

static void storage(const Graph *g, Plan *p, int *parent, int *gfirst,
                    int *glast) {
  for (int t = 0; t < g->ntensors; t++) {
    parent[t] = t;
    gfirst[t] = p->first[t];
    glast[t] = p->last[t];
    p->inplace[t] = -1;
  }
  for (int t = 0; t < g->ntensors; t++) {
    if (g->tensors[t].view_of >= 0)
      merge(parent, gfirst, glast, t, g->tensors[t].view_of);
    if (g->tensors[t].bucket >= 0)
      merge(parent, gfirst, glast, t, g->tensors[t].bucket);
  }
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->out < 0 || n->accumulate || find(parent, n->out) != n->out)
      continue;
    int cand[MAX_NODE_IN], nc = inplace_candidates(n, cand);
    for (int j = 0; j < nc; j++) {
      int s = find(parent, cand[j]);
      TensorKind k = g->tensors[s].kind;
      if (k == TK_INPUT || k == TK_LOSS || glast[s] != i ||
          tensor_bytes(g, s) < tensor_bytes(g, n->out))
        continue;
      merge(parent, gfirst, glast, n->out, s);
      p->inplace[n->out] = cand[j];
      break;
    }
  }
}

const char *weight_layout_name(WeightLayout l) {
  static const char *const names[WL_COUNT] = {
      [WL_VECTOR] = "vector", [WL_OUT_IN] = "out_in", [WL_OHWI] = "ohwi"};
  return (unsigned)l < WL_COUNT ? names[l] : "?";
}

/* The dims of a weight in layout l, from its PyTorch dims. */
static void layout_dims(const Weight *w, WeightLayout l, int64_t *d) {
  memcpy(d, w->dims, sizeof w->dims);
  if (l == WL_OHWI) /* (C_out, C_in, K, K) -> (C_out, K, K, C_in) */
    d[1] = w->dims[2], d[2] = w->dims[3], d[3] = w->dims[1];
}

/* The persistent block: every weight at a 64-byte-aligned offset of the
 * parameter region, in the layout its op's row asks for; the running mean
 * and variance of each batchnorm (a shared block shares them, as a
 * PyTorch module reused does) in the statistics region; and per optimizer
 * its state, regions that mirror the parameter region (one for SGD's
 * momentum, two for Adam's moments). */
static void persistent(const Graph *g, Plan *p) {
  Pool *pool = g->pool;
  size_t nw = (size_t)g->nweights + 1;
  p->woffset = pool_alloc(pool, sizeof(int64_t) * nw);
  p->wlayout = pool_alloc(pool, sizeof(WeightLayout) * nw);
  p->wdims = pool_alloc(pool, sizeof(int64_t[4]) * nw);
  p->stats_offset = pool_alloc(pool, sizeof(int64_t) * nw);
  p->stats_var_offset = pool_alloc(pool, sizeof(int64_t) * nw);
  for (int w = 0; w < g->nweights; w++) {
    const Weight *wt = &g->weights[w];
    const Node *n = &g->nodes[wt->first_node];
    int j = n->weight[0] == w ? 0 : 1;
    p->wlayout[w] = op_info(n->op)->layout[j];
    layout_dims(wt, p->wlayout[w], p->wdims[w]);
    p->woffset[w] = p->param_bytes;
    p->param_bytes += align_up(wt->count * 4);
    p->stats_offset[w] = p->stats_var_offset[w] = -1;
    if (n->op == OP_BATCHNORM && j == 0) { /* mean, then variance */
      p->stats_offset[w] = p->stats_bytes;
      p->stats_var_offset[w] = p->stats_bytes + align_up(wt->count * 4);
      p->stats_bytes += 2 * align_up(wt->count * 4);
    }
  }
  p->optimizer_bytes[PLAN_SGD] = p->param_bytes;
  p->optimizer_bytes[PLAN_ADAM] = 2 * p->param_bytes;
  p->persistent_bytes = p->param_bytes + p->stats_bytes +
                        p->optimizer_bytes[PLAN_SGD];
}

/* The buffers to place: one per group of tensors sharing storage, as
 * large as its largest member, live over the union of their intervals. */
typedef struct {
  int n;
  int *owner;         /* per buffer: the tensor that owns it */
  int *of;            /* per owner tensor: its buffer */
  int64_t *size;
  int *first, *last;
} Buffers;

static Buffers buffers(const Graph *g, Plan *p, const int *gfirst,
                       const int *glast) {
  Pool *pool = g->pool;
  size_t nt = (size_t)g->ntensors + 1;
  Buffers b = {.owner = pool_alloc(pool, sizeof(int) * nt),
               .of = pool_alloc(pool, sizeof(int) * nt)};
  for (int t = 0; t < g->ntensors; t++) {
    int s = find(p->storage, t);
    p->storage[t] = s;
    int64_t bytes = align_up(tensor_bytes(g, t));
    if (bytes > p->size[s])
      p->size[s] = bytes;
    if (g->tensors[t].view_of < 0 && g->tensors[t].bucket < 0)
      p->naive_bytes += bytes; /* a bucket counts its gradients once */
  }
  for (int t = 0; t < g->ntensors; t++)
    if (p->storage[t] == t)
      b.of[t] = b.n, b.owner[b.n++] = t;
  size_t nb = (size_t)b.n + 1;
  b.size = pool_alloc(pool, sizeof(int64_t) * nb);
  b.first = pool_alloc(pool, sizeof(int) * nb);
  b.last = pool_alloc(pool, sizeof(int) * nb);
  for (int i = 0; i < b.n; i++) {
    b.size[i] = p->size[b.owner[i]];
    b.first[i] = gfirst[b.owner[i]];
    b.last[i] = glast[b.owner[i]];
  }
  return b;
}

/* The lower bound: the most bytes live at one step. */
static int64_t lower_bound(const Buffers *b, int nsteps, Pool *pool) {
  int64_t *live = pool_alloc(pool, sizeof(int64_t) * (size_t)(nsteps + 1));
  int64_t most = 0;
  for (int i = 0; i < b->n; i++)
    for (int s = b->first[i]; s <= b->last[i]; s++)
      live[s] += b->size[i];
  for (int s = 0; s < nsteps; s++)
    if (live[s] > most)
      most = live[s];
  return most;
}

/* Every placement order; the smallest arena wins (the first to reach the
 * lower bound stops the search). Writes the buffers' offsets to `best`. */
static void place(const Buffers *b, Plan *p, int64_t *best, Pool *pool) {
  static const char *const orders[] = {
      "size, best fit",          "start, best fit",
      "lifetime, best fit",      "size*lifetime, best fit",
      "size, first fit",         "start, first fit",
      "lifetime, first fit",     "size*lifetime, first fit"};
  int64_t *off = pool_alloc(pool, sizeof(int64_t) * (size_t)(b->n + 1));
  p->planned_bytes = -1;
  for (int o = 0; o < 8; o++) {
    int64_t arena = place_intervals(b->n, b->size, b->first, b->last, off, o);
    if (p->planned_bytes < 0 || arena < p->planned_bytes) {
      p->planned_bytes = arena;
      p->strategy = orders[o];
      memcpy(best, off, sizeof(int64_t) * (size_t)b->n);
    }
    if (arena == p->lower_bound_bytes)
      break; /* optimal */
  }
}

void plan_memory(const Graph *g, Plan *p) {
  Pool *pool = g->pool;
  size_t nt = (size_t)g->ntensors + 1;
  memset(p, 0, sizeof *p);
  p->nsteps = g->nnodes;
  p->first = pool_alloc(pool, sizeof(int) * nt);
  p->last = pool_alloc(pool, sizeof(int) * nt);
  p->storage = pool_alloc(pool, sizeof(int) * nt);
  p->inplace = pool_alloc(pool, sizeof(int) * nt);
  p->size = pool_alloc(pool, sizeof(int64_t) * nt);
  p->offset = pool_alloc(pool, sizeof(int64_t) * nt);
  int *gfirst = pool_alloc(pool, sizeof(int) * nt);
  int *glast = pool_alloc(pool, sizeof(int) * nt);
  intervals(g, p);
  storage(g, p, p->storage, gfirst, glast);
  Buffers b = buffers(g, p, gfirst, glast);
  p->lower_bound_bytes = lower_bound(&b, p->nsteps, pool);
  int64_t *best = pool_alloc(pool, sizeof(int64_t) * (size_t)(b.n + 1));
  place(&b, p, best, pool);
  for (int t = 0; t < g->ntensors; t++)
    p->offset[t] = best[b.of[p->storage[t]]] + g->tensors[t].bucket_offset;
  persistent(g, p);
}

#define CONFLICT(...)                                                         \
  do {                                                                        \
    fprintf(err, "plan: " __VA_ARGS__);                                       \
    fputc('\n', err);                                                         \
    bad++;                                                                    \
  } while (0)

/* Checks every tensor against every other, by buffers: members of one
 * group are allowed to share bytes (that is what a view or an in-place op
 * is); two groups that are live at one step must not. */
int plan_check(const Graph *g, const Plan *p, FILE *err) {
  int bad = 0;
  for (int t = 0; t < g->ntensors; t++) {
    int s = p->storage[t];
    /* a group's buffer starts at its owner's offset less its place in a
     * bucket; a bucket's gradients lie inside it */
    int64_t in = g->tensors[t].bucket_offset;
    int64_t base = p->offset[s] - g->tensors[s].bucket_offset;
    if (p->offset[t] % PLAN_ALIGN)
      CONFLICT("%s is not %d-byte aligned", g->tensors[t].label, PLAN_ALIGN);
    if (p->offset[t] != base + in || in + tensor_bytes(g, t) > p->size[s])
      CONFLICT("%s does not fit its buffer", g->tensors[t].label);
    if (base + p->size[s] > p->planned_bytes)
      CONFLICT("%s ends past the arena", g->tensors[t].label);
  }
  /* Group intervals from member intervals. */
  int nt = g->ntensors;
  int *gf = malloc(sizeof(int) * (size_t)(nt + 1));
  int *gl = malloc(sizeof(int) * (size_t)(nt + 1));
  for (int t = 0; t < nt; t++)
    gf[t] = p->nsteps, gl[t] = -1;
  for (int t = 0; t < nt; t++) {
    int s = p->storage[t];
    if (p->first[t] < gf[s])
      gf[s] = p->first[t];
    if (p->last[t] > gl[s])
      gl[s] = p->last[t];
  }
  for (int a = 0; a < nt && bad < 20; a++) {
    if (p->storage[a] != a)
      continue;
    for (int b = a + 1; b < nt; b++) {
      if (p->storage[b] != b || gf[a] > gl[b] || gf[b] > gl[a])
        continue;
      int64_t oa = p->offset[a] - g->tensors[a].bucket_offset;
      int64_t ob = p->offset[b] - g->tensors[b].bucket_offset;
      if (oa < ob + p->size[b] && ob < oa + p->size[a])
        CONFLICT("%s [%d, %d] and %s [%d, %d] overlap in bytes",
                 g->tensors[a].label, gf[a], gl[a], g->tensors[b].label,
                 gf[b], gl[b]);
    }
  }
  free(gf);
  free(gl);
  return bad;
}
