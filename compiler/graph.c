/* graph.c: the graph IR: tensors, nodes and weights in arrays, referred to
 * by integer ids; and the verifier that every pass's output must satisfy. */
#include <string.h>

#include "netc.h"

int graph_add_tensor(Graph *g, Shape s, int producer, Loc loc) {
  g->tensors = pool_grow(g->pool, g->tensors, sizeof(Tensor), g->ntensors,
                         &g->cap_tensors);
  g->tensors[g->ntensors] = (Tensor){.shape = s, .producer = producer,
                                     .loc = loc};
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
                .first_node = node};
  for (int i = 0; i < ndims; i++) {
    w->dims[i] = dims[i];
    w->count *= dims[i];
  }
  return g->nweights++;
}

int64_t shape_elems(Shape s) { return s.c * s.h * s.w; }

const char *shape_str(Pool *p, Shape s) {
  return pool_printf(p, "%lldx%lldx%lld", (long long)s.c, (long long)s.h,
                     (long long)s.w);
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

/* Invariants: ids in range; every tensor but the input has exactly one
 * producer and is produced before it is read; each node's output shape is
 * what its op's shape rule gives; each weight has the shape its op asks. */
int graph_verify(const Graph *g, FILE *err) {
  int bad = 0;
  Pool scratch = {0};
  int *made = pool_alloc(&scratch, sizeof(int) * (size_t)(g->ntensors + 1));
  if (g->input < 0 || g->input >= g->ntensors)
    BAD("input tensor id %d out of range", g->input);
  else
    made[g->input] = 1;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    Shape in[2];
    if (n->nin != op_info(n->op)->ninputs)
      BAD("node %d (%s) has %d inputs", i, n->path, n->nin);
    for (int j = 0; j < n->nin && j < 2; j++) {
      if (n->in[j] < 0 || n->in[j] >= g->ntensors) {
        BAD("node %d (%s) reads tensor %d out of range", i, n->path,
            n->in[j]);
        continue;
      }
      if (!made[n->in[j]])
        BAD("node %d (%s) reads tensor %d before it is produced", i,
            n->path, n->in[j]);
      in[j] = g->tensors[n->in[j]].shape;
    }
    if (n->out < 0 || n->out >= g->ntensors) {
      BAD("node %d (%s) writes tensor %d out of range", i, n->path, n->out);
      continue;
    }
    if (made[n->out]++)
      BAD("tensor %d has more than one producer", n->out);
    if (g->tensors[n->out].producer != i)
      BAD("tensor %d does not name node %d as its producer", n->out, i);
    if (bad)
      continue;
    Shape out;
    const char *why = NULL;
    if (!op_infer(n->op, in, n->attr, &out, &scratch, &why))
      BAD("node %d (%s): %s", i, n->path, why);
    else if (!same_shape(out, g->tensors[n->out].shape))
      BAD("node %d (%s): output shape disagrees with its op", i, n->path);
    WeightShape ws[MAX_WEIGHTS_PER_NODE];
    int nw = op_weights(n->op, in, n->attr, ws);
    for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++) {
      int id = n->weight[j];
      if (j >= nw) {
        if (id != -1)
          BAD("node %d (%s) has an extra weight", i, n->path);
        continue;
      }
      if (id < 0 || id >= g->nweights) {
        BAD("node %d (%s): weight id %d out of range", i, n->path, id);
        continue;
      }
      const Weight *w = &g->weights[id];
      if (w->ndims != ws[j].ndims ||
          memcmp(w->dims, ws[j].dims, sizeof(int64_t) * (size_t)w->ndims))
        BAD("node %d (%s): weight %s has the wrong shape", i, n->path,
            w->name);
    }
  }
  for (int t = 0; t < g->ntensors; t++)
    if (!made[t])
      BAD("tensor %d is never produced", t);
  if (g->loss < 0 || g->loss >= g->ntensors)
    BAD("loss tensor id %d out of range", g->loss);
  else if (g->tensors[g->loss].producer < 0 ||
           g->nodes[g->tensors[g->loss].producer].op != OP_SOFTMAX_XENT)
    BAD("the loss is not produced by softmax_cross_entropy");
  pool_free(&scratch);
  return bad;
}
