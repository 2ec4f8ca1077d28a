/* traffic.c: the bytes a training step moves through memory, counted
 * from the graph, per op and in all (netc check, the trainer's bench and
 * profile).
 *
 * The model is each op's compulsory traffic: it reads every input tensor
 * and weight it takes once and writes its output, saved state and weight
 * gradients once (and reads them too when it adds into them). An update
 * reads the gradient and reads and writes the parameter and its SGD
 * momentum. Not counted: workspaces (im2col columns, packed weights),
 * whose size is the algorithm's choice, views (flatten), and the passes a
 * kernel makes beyond the first (batchnorm's statistics, then its apply).
 * So the figure is what a step would move if every op were one pass over
 * its operands: what fusing ops removes is whole terms of it, as an
 * activation that is never written and read back (fuse.c: a folded relu
 * moves nothing, and its neighbour reads what the relu would have). */
#include "netc.h"

static void add(Traffic *t, int64_t read, int64_t written) {
  t->read += read, t->written += written;
}

Traffic node_traffic(const Graph *g, int i) {
  const Node *n = &g->nodes[i];
  const OpInfo *op = op_info(n->op);
  Traffic t = {0, 0};
  if (op->view || n->fuse == FUSE_FOLDED || n->op == OP_ALLREDUCE ||
      n->op == OP_ALLREDUCE_WAIT)
    return t;
  for (int j = 0; j < n->nin; j++)
    if (n->in[j] >= 0)
      add(&t, tensor_bytes(g, n->in[j]), 0);
  if (n->op == OP_UPDATE) { /* parameter and momentum, read and written */
    int64_t b = g->weights[n->weight[0]].count * 4;
    add(&t, 2 * b, 2 * b);
    return t;
  }
  if (n->out >= 0)
    add(&t, n->accumulate ? tensor_bytes(g, n->out) : 0,
        tensor_bytes(g, n->out));
  bool backward = i >= g->nforward;
  for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++) {
    /* the weights: read by a forward op, and by a backward op for dX */
    if (n->weight[j] >= 0 && (!backward || n->out >= 0))
      add(&t, g->weights[n->weight[j]].count * 4, 0);
    if (n->wgrad[j] >= 0)
      add(&t, n->wgrad_accumulate[j] ? tensor_bytes(g, n->wgrad[j]) : 0,
          tensor_bytes(g, n->wgrad[j]));
  }
  for (int j = 0; j < n->nextra; j++)
    if (g->tensors[n->extra[j]].kind == TK_SAVED)
      add(&t, 0, tensor_bytes(g, n->extra[j]));
  return t;
}

Traffic step_traffic(const Graph *g) {
  Traffic t = {0, 0};
  for (int i = 0; i < g->nnodes; i++) {
    Traffic o = node_traffic(g, i);
    add(&t, o.read, o.written);
  }
  return t;
}
