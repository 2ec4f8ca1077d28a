/* fuse.c: folds relus into the ops beside them, so that a step makes one
 * pass over memory where it made two.
 *
 * Requires: a verified training graph (autodiff.c), before comm.c's
 * buckets and the plan. Guarantees: graph_verify() holds, and the step
 * computes the same bits as unfused (each fused kernel runs its two ops'
 * loops as one, in the same order; tests/check_fuse.c compares).
 *
 * Forward: relu(batchnorm(x)) and relu(add(a, b)), when the relu is the
 * only reader of the op's output, become one kernel call (the row's
 * fused_kernel) that writes the relu's values; the relu node stays in the
 * graph, FUSE_FOLDED (the export and the dumps still see it), and its
 * output becomes a view of the op's, so both are one buffer.
 * Backward: relu_backward followed by the batchnorm_backward that is the
 * only reader of its output becomes batchnorm_relu_backward, which reads
 * the relu's output gradient and output (the mask) itself: the masked
 * gradient is never written. A relu_backward that adds into its output
 * (a second contribution) is left alone. */
#include "netc.h"

/* How many node inputs read each tensor, and whether anything but its
 * producer writes it (an accumulating backward op). */
static void readers(const Graph *g, int *reads, bool *added_to) {
  for (int t = 0; t < g->ntensors; t++)
    reads[t] = 0, added_to[t] = false;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    for (int j = 0; j < n->nin; j++)
      if (n->in[j] >= 0)
        reads[n->in[j]]++;
    if (n->out >= 0 && n->accumulate)
      added_to[n->out] = true;
  }
}

/* The node that makes tensor t, if it is an unfused op of kind k whose
 * output only the relu reads. */
static Node *sole_producer(Graph *g, int t, OpKind k, const int *reads,
                           const bool *added_to) {
  int p = g->tensors[t].producer;
  if (p < 0 || reads[t] != 1 || added_to[t] || t == g->loss)
    return NULL;
  Node *n = &g->nodes[p];
  return n->op == k && n->fuse == FUSE_NONE && n->out == t ? n : NULL;
}

int fuse_relus(Graph *g) {
  Pool *pool = g->pool;
  int *reads = pool_alloc(pool, sizeof(int) * ((size_t)g->ntensors + 1));
  bool *added_to = pool_alloc(pool, sizeof(bool) * ((size_t)g->ntensors + 1));
  readers(g, reads, added_to);
  int folded = 0;
  for (int i = 0; i < g->nforward; i++) {
    Node *r = &g->nodes[i];
    if (r->op != OP_RELU || r->fuse != FUSE_NONE)
      continue;
    int z = r->in[0];
    Node *p = sole_producer(g, z, OP_BATCHNORM, reads, added_to);
    if (!p)
      p = sole_producer(g, z, OP_ADD, reads, added_to);
    if (!p || g->tensors[r->out].view_of >= 0 || added_to[r->out])
      continue;
    p->fuse = FUSE_RELU;
    r->fuse = FUSE_FOLDED;
    g->tensors[r->out].view_of = z;
    folded++;
  }
  for (int i = g->nforward; i < g->nnodes; i++) {
    Node *r = &g->nodes[i];
    if (r->op != OP_RELU_BWD || r->fuse != FUSE_NONE || r->out < 0 ||
        r->accumulate || reads[r->out] != 1 || added_to[r->out])
      continue;
    int dz = r->out;
    Node *b = NULL;
    for (int k = i + 1; k < g->nnodes && !b; k++)
      if (g->nodes[k].nin > 0 && g->nodes[k].in[0] == dz)
        b = &g->nodes[k];
    if (!b || b->op != OP_BATCHNORM_BWD || b->fuse != FUSE_NONE)
      continue;
    b->in[0] = r->in[0]; /* dY of the relu ... */
    b->in[4] = r->in[1]; /* ... and its output, for the mask */
    b->nin = op_info(b->op)->fused_inputs;
    b->fuse = FUSE_RELU;
    r->fuse = FUSE_FOLDED;
    g->tensors[dz].view_of = r->in[0];
    folded++;
  }
  return folded;
}
