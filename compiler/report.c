/* report.c: what `netc check` prints (a per-layer summary with totals) and
 * `netc dump shapes` (every op with its inputs, attributes and output
 * shape, then every weight). Both are stable text for golden tests. */
#include <string.h>

#include "netc.h"

/* Parameters a node creates (0 for a replay of a shared block). */
static int64_t node_params(const Graph *g, int i) {
  int64_t n = 0;
  for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++) {
    int w = g->nodes[i].weight[j];
    if (w >= 0 && g->weights[w].first_node == i)
      n += g->weights[w].count;
  }
  return n;
}

static bool node_shares(const Graph *g, int i) {
  int w = g->nodes[i].weight[0];
  return w >= 0 && g->weights[w].first_node != i;
}

static double node_mflops(const Graph *g, int i) {
  return node_flops(g, i) / 1e6;
}

/* The step's traffic (traffic.c) and each kind of op's share of it: a
 * backward op counts with its forward op's kind, grad_add and the updates
 * on their own. */
static void print_traffic(FILE *out, const Graph *g) {
  double by[OP_COUNT] = {0}, pass[3] = {0}, total = 0, read = 0, written = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    Traffic t = node_traffic(g, i);
    double b = (double)(t.read + t.written);
    bool fwd_kind = i >= g->nforward && n->op != OP_UPDATE &&
                    n->op != OP_GRAD_ADD && n->fwd >= 0;
    by[fwd_kind ? g->nodes[n->fwd].op : n->op] += b;
    pass[i < g->nforward ? 0 : n->op == OP_UPDATE ? 2 : 1] += b;
    total += b;
    read += (double)t.read;
    written += (double)t.written;
  }
  fprintf(out, "traffic at batch %lld: %.1f MB read, %.1f MB written per "
               "step (forward %.0f%%, backward %.0f%%, update %.0f%%); by op:",
          (long long)g->batch, read / 1e6, written / 1e6,
          100 * pass[0] / total, 100 * pass[1] / total, 100 * pass[2] / total);
  for (int k = 0; k < OP_COUNT; k++)
    if (by[k] >= 0.005 * total)
      fprintf(out, " %s %.1f%%", op_info((OpKind)k)->name, 100 * by[k] / total);
  fputc('\n', out);
}

void print_summary(FILE *out, const Graph *g) {
  int width = 5;
  for (int i = 0; i < g->nforward; i++)
    if ((int)strlen(g->nodes[i].path) > width)
      width = (int)strlen(g->nodes[i].path);
  Pool p = {0};
  fprintf(out, "%-*s  %-21s  %-12s  %10s  %9s\n", width, "layer", "op",
          "output", "params", "MFLOPs");
  double total = 0;
  for (int i = 0; i < g->nforward; i++) {
    const Node *n = &g->nodes[i];
    double mf = node_mflops(g, i);
    total += mf;
    char params[32];
    if (node_shares(g, i))
      snprintf(params, sizeof params, "shared");
    else
      snprintf(params, sizeof params, "%lld", (long long)node_params(g, i));
    fprintf(out, "%-*s  %-21s  %-12s  %10s  %9.2f", width, n->path,
            op_info(n->op)->name, shape_str(&p, g->tensors[n->out].shape),
            params, mf);
    if (n->op == OP_CONV) { /* each pass's algorithm, the workspaces */
      ConvShape cs = node_conv_shape(g, i);
      fprintf(out, "  fwd=%s dx=%s dw=%s work=%lld+%lldB",
              conv_algo_name(n->algo[CONV_PASS_FWD]),
              conv_algo_name(n->algo[CONV_PASS_DX]),
              conv_algo_name(n->algo[CONV_PASS_DW]),
              (long long)conv_work_floats(&cs, 0) * 4,
              (long long)conv_work_floats(&cs, 1) * 4);
    }
    fputc('\n', out);
  }
  print_traffic(out, g);
  fprintf(out, "network=%s input=%s classes=%lld layers=%d params=%lld "
               "weights=%d mflops=%.2f\n",
          g->name, shape_str(&p, g->tensors[g->input].shape),
          (long long)g->classes, g->nforward, (long long)graph_param_count(g),
          g->nweights, total);
  pool_free(&p);
}

static void print_attrs(FILE *out, const Node *n) {
  const OpInfo *op = op_info(n->op);
  for (int i = 0; i < op->nparams; i++) {
    if (op->params[i].is_bool)
      fprintf(out, " %s=%s", op->params[i].name,
              n->attr[i] ? "true" : "false");
    else if (op->params[i].is_real)
      fprintf(out, " %s=%g", op->params[i].name, attr_real(n->attr[i]));
    else
      fprintf(out, " %s=%lld", op->params[i].name, (long long)n->attr[i]);
  }
}

void dump_shapes(FILE *out, Diag *d, const Graph *g) {
  Pool p = {0};
  const Tensor *in = &g->tensors[g->input];
  fprintf(out, "t%d = input : %s  # %s\n", g->input,
          shape_str(&p, in->shape), loc_str(d, in->loc));
  for (int i = 0; i < g->nforward; i++) {
    const Node *n = &g->nodes[i];
    fprintf(out, "t%d = %s(", n->out, op_info(n->op)->name);
    for (int j = 0; j < op_info(n->op)->ninputs; j++)
      fprintf(out, "%st%d", j ? ", " : "", n->in[j]);
    fputc(')', out);
    print_attrs(out, n);
    for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++)
      if (n->weight[j] >= 0)
        fprintf(out, " w%d", n->weight[j]);
    fprintf(out, " : %s  # %s %s\n", shape_str(&p, g->tensors[n->out].shape),
            n->path, loc_str(d, n->loc));
  }
  for (int i = 0; i < g->nweights; i++) {
    const Weight *w = &g->weights[i];
    fprintf(out, "w%d %s", i, w->name);
    for (int j = 0; j < w->ndims; j++)
      fprintf(out, "%s%lld", j ? "x" : " ", (long long)w->dims[j]);
    fprintf(out, " = %lld", (long long)w->count);
    if (w->uses > 1)
      fprintf(out, " (shared by %d ops)", w->uses);
    fputc('\n', out);
  }
  fprintf(out, "loss t%d params=%lld\n", g->loss,
          (long long)graph_param_count(g));
  pool_free(&p);
}
