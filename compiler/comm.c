/* comm.c: the communication of data-parallel training (netc build --mpi).
 *
 * Requires: a verified training graph (autodiff.c), before the plan.
 * Guarantees: the weight gradients are grouped into buckets in the order
 * they become final in the backward pass (the order of their update
 * nodes), each about bucket_bytes; a gradient larger than that is a bucket
 * of its own. A bucket is one TK_WGRAD tensor, and each of its gradients
 * lives in it at a 64-byte-aligned offset (Tensor.bucket), so the plan
 * places a bucket's gradients contiguously and one collective sums them.
 * Where a bucket's last gradient becomes final, an allreduce node starts
 * summing the bucket over the processes (non-blocking); its
 * allreduce_wait comes after the next bucket's allreduce, so that the
 * backward ops in between overlap the communication, and the bucket's
 * updates follow the wait. The last bucket is waited for at the end of
 * the backward pass. The plan keeps a bucket live from its first
 * gradient's writer to its wait and its updates.
 *
 * Every process runs the same generated code, so all of them issue the
 * same collectives in the same order; the trainer checks at start that
 * they run the same plan (runtime/trainer/comm.c). */
#include <stdlib.h>
#include <string.h>

#include "netc.h"

static int64_t align_up(int64_t n) {
  return (n + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN;
}

/* About eight buckets: enough that the first reductions overlap most of
 * the backward pass; at least 1 MiB, below which a collective's latency
 * (tens of microseconds over TCP) outweighs its bytes; at most 32 MiB,
 * which bounds the gradient bytes a bucket keeps live (PyTorch's DDP
 * uses 25 MiB). */
int64_t comm_default_bucket_bytes(const Graph *g) {
  int64_t total = 0;
  for (int w = 0; w < g->nweights; w++)
    if (g->weights[w].grad >= 0)
      total += align_up(g->weights[w].count * 4);
  int64_t b = total / 8, lo = (int64_t)1 << 20, hi = (int64_t)32 << 20;
  return b < lo ? lo : b > hi ? hi : align_up(b);
}

int bucket_weights(const Graph *g, int b, int *w) {
  int n = 0, bt = g->bucket_tensor[b];
  for (int i = g->nforward; i < g->nnodes; i++) {
    const Node *u = &g->nodes[i];
    if (u->op == OP_UPDATE && g->tensors[u->in[0]].bucket == bt)
      w[n++] = u->weight[0];
  }
  return n;
}

static Node comm_node(const Graph *g, OpKind op, int b, const Node *at) {
  return (Node){.op = op, .nin = 1, .in = {g->bucket_tensor[b]}, .out = -1,
                .attr = {b}, .weight = {-1, -1}, .wgrad = {-1, -1},
                .fwd = at->fwd, .loc = at->loc,
                .path = pool_printf(g->pool, "bucket%d", b)};
}

void insert_allreduce(Graph *g, int64_t bucket_bytes) {
  Pool *p = g->pool;
  int nb0 = g->nforward, nbwd = g->nnodes - nb0;
  /* 1. Buckets, in update order: bucket_of[i] for update node i, and for
   *    each bucket the update node that closes it. */
  int *bucket_of = pool_alloc(p, sizeof(int) * (size_t)(g->nnodes + 1));
  int *closes = pool_alloc(p, sizeof(int) * (size_t)(nbwd + 1));
  int64_t *bytes = pool_alloc(p, sizeof(int64_t) * (size_t)(nbwd + 1));
  int nb = 0;
  int64_t fill = 0;
  for (int i = nb0; i < g->nnodes; i++) {
    bucket_of[i] = -1;
    const Node *u = &g->nodes[i];
    if (u->op != OP_UPDATE)
      continue;
    int64_t size = align_up(tensor_bytes(g, u->in[0]));
    if (fill > 0 && fill + size > bucket_bytes) /* close the open bucket */
      nb++, fill = 0;
    bucket_of[i] = nb;
    closes[nb] = i;
    fill += size;
    bytes[nb] = fill;
  }
  if (fill > 0)
    nb++;
  g->nbuckets = nb;
  g->bucket_bytes = bucket_bytes;
  g->bucket_tensor = pool_alloc(p, sizeof(int) * (size_t)(nb + 1));
  if (nb == 0)
    return;
  /* 2. The bucket tensors, and each gradient's place in its bucket. */
  int64_t *at = pool_alloc(p, sizeof(int64_t) * (size_t)(nb + 1));
  for (int b = 0; b < nb; b++) {
    int t = graph_add_tensor(g, (Shape){bytes[b] / 4, 1, 1}, -1,
                             g->nodes[closes[b]].loc);
    Tensor *x = &g->tensors[t];
    x->kind = TK_WGRAD;
    x->batched = false;
    x->label = pool_printf(p, "bucket%d.grads", b);
    g->bucket_tensor[b] = t;
  }
  for (int i = nb0; i < g->nnodes; i++)
    if (bucket_of[i] >= 0) {
      Tensor *x = &g->tensors[g->nodes[i].in[0]];
      int b = bucket_of[i];
      x->bucket = g->bucket_tensor[b];
      x->bucket_offset = at[b];
      at[b] += align_up(x->shape.c * 4);
    }
  /* 3. The new backward order: updates leave their places; after the one
   *    that closes bucket b come allreduce(b), then allreduce_wait(b - 1)
   *    and bucket b - 1's updates; at the end the last bucket's wait and
   *    updates. */
  Node *old = pool_alloc(p, sizeof(Node) * (size_t)(nbwd + 1));
  memcpy(old, g->nodes + nb0, sizeof(Node) * (size_t)nbwd);
  int *newid = pool_alloc(p, sizeof(int) * (size_t)(g->nnodes + 1));
  g->nnodes = nb0;
  for (int k = 0; k < nbwd; k++) {
    int i = nb0 + k;
    if (bucket_of[i] < 0) {
      newid[i] = graph_add_node(g, &old[k]);
      continue;
    }
    int b = bucket_of[i];
    if (closes[b] != i)
      continue;
    Node start = comm_node(g, OP_ALLREDUCE, b, &old[k]);
    graph_add_node(g, &start);
    if (b == 0)
      continue;
    Node wait = comm_node(g, OP_ALLREDUCE_WAIT, b - 1, &old[k]);
    graph_add_node(g, &wait);
    for (int j = 0; j < nbwd; j++)
      if (bucket_of[nb0 + j] == b - 1)
        newid[nb0 + j] = graph_add_node(g, &old[j]);
  }
  Node wait = comm_node(g, OP_ALLREDUCE_WAIT, nb - 1, &old[nbwd - 1]);
  graph_add_node(g, &wait);
  for (int j = 0; j < nbwd; j++)
    if (bucket_of[nb0 + j] == nb - 1)
      newid[nb0 + j] = graph_add_node(g, &old[j]);
  /* 4. Producers follow their nodes (updates produce nothing). */
  for (int t = 0; t < g->ntensors; t++) {
    int pr = g->tensors[t].producer;
    if (pr >= nb0)
      g->tensors[t].producer = newid[pr];
  }
}
