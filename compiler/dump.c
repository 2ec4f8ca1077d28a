/* dump.c: what users inspect: the training graph (text and Graphviz DOT)
 * and the memory plan (a table, JSON, and an SVG picture). Every format
 * is stable, so golden tests can pin it. */
#include <string.h>

#include "netc.h"

static const char *tshape(Pool *p, const Graph *g, int t) {
  const Tensor *x = &g->tensors[t];
  const char *s = shape_str(p, x->shape);
  return x->batched ? pool_printf(p, "%lldx%s", (long long)g->batch, s) : s;
}

static void json_string(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      fputc('\\', out);
    fputc(*s, out);
  }
  fputc('"', out);
}

/* ---- netc dump graph ---------------------------------------------------- */

static void print_node(FILE *out, Diag *d, const Graph *g, int i, Pool *p) {
  const Node *n = &g->nodes[i];
  fprintf(out, "n%d %s(", i, node_op_name(n));
  for (int j = 0; j < n->nin; j++)
    fprintf(out, "%st%d", j ? ", " : "", n->in[j]);
  fputc(')', out);
  for (int j = 0; j < MAX_WEIGHTS_PER_NODE; j++) {
    int w = n->weight[j];
    if (w < 0)
      continue;
    if (i < g->nforward || n->op == OP_UPDATE)
      fprintf(out, " w%d", w);
    else
      fprintf(out, " dw%d%st%d", w, n->wgrad_accumulate[j] ? "+=" : "=",
              n->wgrad[j]);
  }
  bool comm = n->op == OP_ALLREDUCE || n->op == OP_ALLREDUCE_WAIT;
  if (n->out >= 0)
    fprintf(out, " -> t%d%s %s", n->out, n->accumulate ? " (+=)" : "",
            tshape(p, g, n->out));
  else if (comm)
    fprintf(out, " bucket %lld (%lld bytes)", (long long)n->attr[0],
            (long long)tensor_bytes(g, n->in[0]));
  else if (n->op != OP_UPDATE)
    fputs(" -> (no input gradient)", out);
  for (int j = 0; j < n->nextra; j++)
    fprintf(out, ", t%d %s", n->extra[j], tshape(p, g, n->extra[j]));
  if (n->fuse == FUSE_FOLDED) /* fuse.c: its neighbour computes it */
    fputs(" (folded)", out);
  fprintf(out, "  # %s %s\n", n->path, loc_str(d, n->loc));
}

void dump_graph(FILE *out, Diag *d, const Graph *g) {
  Pool p = {0};
  fprintf(out, "# network %s, batch %lld: %d forward ops, %d backward ops\n",
          g->name, (long long)g->batch, g->nforward,
          g->nnodes - g->nforward);
  fputs("# tensors\n", out);
  for (int t = 0; t < g->ntensors; t++) {
    const Tensor *x = &g->tensors[t];
    fprintf(out, "t%d %s %s%s %s", t, tensor_kind_name(x->kind),
            tshape(&p, g, t), x->is_int ? " int32" : "", x->label);
    if (x->view_of >= 0)
      fprintf(out, " (view of t%d)", x->view_of);
    if (x->bucket >= 0)
      fprintf(out, " (in t%d at +%lld)", x->bucket,
              (long long)x->bucket_offset);
    fputc('\n', out);
  }
  fputs("# forward\n", out);
  for (int i = 0; i < g->nforward; i++)
    print_node(out, d, g, i, &p);
  fputs("# backward\n", out);
  for (int i = g->nforward; i < g->nnodes; i++)
    print_node(out, d, g, i, &p);
  pool_free(&p);
}

/* The forward graph as JSON: what tests/reference/torch_ref.py rebuilds in
 * PyTorch. Weight dims are in PyTorch's order. */
void dump_graph_json(FILE *out, const Graph *g) {
  fprintf(out, "{\n  \"network\": \"%s\",\n  \"batch\": %lld,\n  "
               "\"classes\": %lld,\n  \"input\": %d,\n  \"labels\": %d,\n"
               "  \"loss\": %d,\n  \"tensors\": [\n",
          g->name, (long long)g->batch, (long long)g->classes, g->input,
          g->labels, g->loss);
  for (int t = 0; t < g->ntensors; t++) {
    const Tensor *x = &g->tensors[t];
    fprintf(out, "    {\"id\": %d, \"kind\": \"%s\", \"shape\": [%lld, %lld, "
                 "%lld], \"batched\": %s, \"name\": ",
            t, tensor_kind_name(x->kind), (long long)x->shape.c,
            (long long)x->shape.h, (long long)x->shape.w,
            x->batched ? "true" : "false");
    json_string(out, x->label);
    fprintf(out, "}%s\n", t + 1 < g->ntensors ? "," : "");
  }
  fputs("  ],\n  \"weights\": [\n", out);
  for (int w = 0; w < g->nweights; w++) {
    const Weight *x = &g->weights[w];
    fprintf(out, "    {\"id\": %d, \"name\": \"%s\", \"dims\": [", w, x->name);
    for (int j = 0; j < x->ndims; j++)
      fprintf(out, "%s%lld", j ? ", " : "", (long long)x->dims[j]);
    fprintf(out, "]}%s\n", w + 1 < g->nweights ? "," : "");
  }
  fputs("  ],\n  \"nodes\": [\n", out);
  for (int i = 0; i < g->nforward; i++) {
    const Node *n = &g->nodes[i];
    const OpInfo *op = op_info(n->op);
    fprintf(out, "    {\"id\": %d, \"op\": \"%s\", \"path\": \"%s\", "
                 "\"in\": [", i, op->name, n->path);
    for (int j = 0; j < n->nin; j++)
      fprintf(out, "%s%d", j ? ", " : "", n->in[j]);
    fprintf(out, "], \"out\": %d, \"weights\": [%d, %d], \"attrs\": {",
            n->out, n->weight[0], n->weight[1]);
    for (int j = 0; j < op->nparams; j++)
      if (op->params[j].is_real)
        fprintf(out, "%s\"%s\": %.17g", j ? ", " : "", op->params[j].name,
                attr_real(n->attr[j]));
      else
        fprintf(out, "%s\"%s\": %lld", j ? ", " : "", op->params[j].name,
                (long long)n->attr[j]);
    fprintf(out, "}}%s\n", i + 1 < g->nforward ? "," : "");
  }
  fputs("  ]\n}\n", out);
}

/* ---- netc dump plan ----------------------------------------------------- */

/* The persistent block: its regions, then each weight's place and layout
 * in the parameter region (each optimizer state region mirrors it) and
 * each batchnorm's running statistics. */
static void dump_persistent(FILE *out, const Graph *g, const Plan *p) {
  Pool pool = {0};
  fprintf(out, "# persistent block: parameters %lld bytes, batchnorm "
               "statistics %lld, optimizer state %lld with SGD (momentum) "
               "or %lld with Adam/AdamW (two moments)\n",
          (long long)p->param_bytes, (long long)p->stats_bytes,
          (long long)p->optimizer_bytes[PLAN_SGD],
          (long long)p->optimizer_bytes[PLAN_ADAM]);
  fprintf(out, "%-6s %-7s %-18s %12s %12s %12s  %s\n", "weight", "layout",
          "dims", "bytes", "offset", "stats", "name");
  for (int w = 0; w < g->nweights; w++) {
    const Weight *x = &g->weights[w];
    const char *dims = "";
    for (int j = 0; j < x->ndims; j++)
      dims = pool_printf(&pool, "%s%s%lld", dims, j ? "x" : "",
                         (long long)p->wdims[w][j]);
    char stats[32] = "-";
    if (p->stats_offset[w] >= 0)
      snprintf(stats, sizeof stats, "%lld", (long long)p->stats_offset[w]);
    fprintf(out, "w%-5d %-7s %-18s %12lld %12lld %12s  %s\n", w,
            weight_layout_name(p->wlayout[w]), dims,
            (long long)x->count * 4, (long long)p->woffset[w], stats,
            x->name);
  }
  int64_t fixed = p->param_bytes + p->stats_bytes;
  fprintf(out, "# persistent: %lld bytes of parameters; %lld with SGD "
               "momentum and batchnorm running statistics; %lld with "
               "Adam's moments\n",
          (long long)p->param_bytes, (long long)p->persistent_bytes,
          (long long)(fixed + p->optimizer_bytes[PLAN_ADAM]));
  fprintf(out, "# a trainer allocates the arena and the persistent block: "
               "%lld bytes with SGD, %lld with Adam\n",
          (long long)(p->planned_bytes + p->persistent_bytes),
          (long long)(p->planned_bytes + fixed +
                      p->optimizer_bytes[PLAN_ADAM]));
  pool_free(&pool);
}

/* Node i's workspace tensor (its if_work extra), or -1. */
static int conv_work_tensor(const Graph *g, int i) {
  const Node *n = &g->nodes[i];
  return n->nextra > 0 && g->tensors[n->extra[0]].kind == TK_SCRATCH
             ? n->extra[0]
             : -1;
}

/* The backward node of forward conv i, or -1 (no gradient reaches it). */
static int conv_backward_node(const Graph *g, int i) {
  for (int b = g->nforward; b < g->nnodes; b++)
    if (g->nodes[b].op == OP_CONV_BWD && g->nodes[b].fwd == i)
      return b;
  return -1;
}

/* Each convolution's algorithm per pass, and where its workspace is (dX
 * and dW share the backward op's). */
static void dump_convs(FILE *out, const Graph *g, const Plan *p, bool json) {
  static const char *const pass_name[CONV_PASSES] = {"fwd", "dx", "dw"};
  if (!json)
    fprintf(out, "# convolutions: each pass's algorithm and the workspace "
                 "the plan placed for it\n%-4s %-6s %-6s %12s %12s  %s\n",
            "pass", "algo", "work", "bytes", "offset", "layer");
  bool first = true;
  for (int i = 0; i < g->nforward; i++) {
    if (g->nodes[i].op != OP_CONV)
      continue;
    int node[CONV_PASSES] = {i, conv_backward_node(g, i),
                             conv_backward_node(g, i)};
    for (int pass = 0; pass < CONV_PASSES; pass++) {
      if (node[pass] < 0 ||
          (pass == CONV_PASS_DX && g->nodes[node[pass]].out < 0))
        continue; /* no gradient reaches it, or no dX (the first layer) */
      int t = conv_work_tensor(g, node[pass]);
      long long bytes = t >= 0 ? (long long)tensor_bytes(g, t) : 0;
      long long off = t >= 0 ? (long long)p->offset[t] : -1;
      const char *algo = conv_algo_name(g->nodes[i].algo[pass]);
      if (json) {
        fprintf(out, "%s    {\"layer\": ", first ? "" : ",\n");
        json_string(out, g->nodes[i].path);
        fprintf(out, ", \"pass\": \"%s\", \"algo\": \"%s\", \"work\": %d, "
                     "\"bytes\": %lld, \"offset\": %lld}",
                pass_name[pass], algo, t, bytes, off);
      } else {
        char work[16] = "-";
        if (t >= 0)
          snprintf(work, sizeof work, "t%d", t);
        fprintf(out, "%-4s %-6s %-6s %12lld %12lld  %s\n", pass_name[pass],
                algo, work, bytes, off, g->nodes[i].path);
      }
      first = false;
    }
  }
  if (json)
    fputs("\n", out);
}

/* The gradient buckets of a data-parallel build (comm.c): where each
 * lies, its live interval, its allreduce and wait steps, and the weights
 * whose gradients it holds. */
static void dump_buckets(FILE *out, const Graph *g, const Plan *p) {
  if (!g->nbuckets)
    return;
  fprintf(out, "# gradient buckets (about %lld bytes each): summed over the "
               "processes by allreduce at step start, waited for at step "
               "wait, then their weights updated\n%-7s %-6s %12s %12s %5s "
               "%5s  %s\n",
          (long long)g->bucket_bytes, "bucket", "tensor", "bytes", "offset",
          "start", "wait", "weights");
  int *w = pool_alloc(g->pool, sizeof(int) * (size_t)(g->nweights + 1));
  for (int b = 0; b < g->nbuckets; b++) {
    int t = g->bucket_tensor[b], start = -1, wait = -1;
    for (int i = g->nforward; i < g->nnodes; i++)
      if (g->nodes[i].attr[0] == b && g->nodes[i].op == OP_ALLREDUCE)
        start = i;
      else if (g->nodes[i].attr[0] == b && g->nodes[i].op == OP_ALLREDUCE_WAIT)
        wait = i;
    int n = bucket_weights(g, b, w);
    fprintf(out, "b%-6d t%-5d %12lld %12lld %5d %5d  %d:", b, t,
            (long long)tensor_bytes(g, t), (long long)p->offset[t], start,
            wait, n);
    for (int k = 0; k < n; k++)
      fprintf(out, " w%d", w[k]);
    fputc('\n', out);
  }
}

void dump_plan(FILE *out, const Graph *g, const Plan *p) {
  Pool pool = {0};
  fprintf(out, "# memory plan of %s, batch %lld: %d steps (%d forward), "
               "alignment %d\n",
          g->name, (long long)g->batch, p->nsteps, g->nforward, PLAN_ALIGN);
  fprintf(out, "%-6s %-10s %-18s %12s %12s %5s %5s  %-8s %s\n", "tensor",
          "kind", "shape", "bytes", "offset", "first", "last", "shares",
          "name");
  for (int t = 0; t < g->ntensors; t++) {
    const Tensor *x = &g->tensors[t];
    char shares[32] = "-";
    if (x->view_of >= 0)
      snprintf(shares, sizeof shares, "view:t%d", x->view_of);
    else if (x->bucket >= 0)
      snprintf(shares, sizeof shares, "in:t%d", x->bucket);
    else if (p->inplace[t] >= 0)
      snprintf(shares, sizeof shares, "over:t%d", p->inplace[t]);
    fprintf(out, "t%-5d %-10s %-18s %12lld %12lld %5d %5d  %-8s %s\n", t,
            tensor_kind_name(x->kind), tshape(&pool, g, t),
            (long long)tensor_bytes(g, t), (long long)p->offset[t],
            p->first[t], p->last[t], shares, x->label);
  }
  dump_convs(out, g, p, false);
  dump_buckets(out, g, p);
  dump_persistent(out, g, p);
  fprintf(out, "# placement order: %s; planned / lower bound = %.4f\n",
          p->strategy,
          (double)p->planned_bytes / (double)p->lower_bound_bytes);
  fprintf(out, "naive_bytes=%lld lower_bound_bytes=%lld planned_bytes=%lld\n",
          (long long)p->naive_bytes, (long long)p->lower_bound_bytes,
          (long long)p->planned_bytes);
  pool_free(&pool);
}

void dump_plan_json(FILE *out, const Graph *g, const Plan *p) {
  fprintf(out, "{\n  \"network\": ");
  json_string(out, g->name);
  fprintf(out, ",\n  \"batch\": %lld,\n  \"steps\": %d,\n  \"forward_steps\": "
               "%d,\n  \"alignment\": %d,\n  \"tensors\": [\n",
          (long long)g->batch, p->nsteps, g->nforward, PLAN_ALIGN);
  for (int t = 0; t < g->ntensors; t++) {
    const Tensor *x = &g->tensors[t];
    fprintf(out, "    {\"id\": %d, \"name\": ", t);
    json_string(out, x->label);
    fprintf(out, ", \"kind\": \"%s\", \"bytes\": %lld, \"offset\": %lld, "
                 "\"first\": %d, \"last\": %d, \"buffer\": %d, "
                 "\"inplace_of\": %d, \"view_of\": %d}%s\n",
            tensor_kind_name(x->kind), (long long)tensor_bytes(g, t),
            (long long)p->offset[t], p->first[t], p->last[t], p->storage[t],
            p->inplace[t], x->view_of, t + 1 < g->ntensors ? "," : "");
  }
  fputs("  ],\n  \"convolutions\": [\n", out);
  dump_convs(out, g, p, true);
  fputs("  ],\n  \"weights\": [\n", out);
  for (int w = 0; w < g->nweights; w++)
    fprintf(out, "    {\"id\": %d, \"layout\": \"%s\", \"offset\": %lld, "
                 "\"bytes\": %lld, \"stats_offset\": %lld}%s\n",
            w, weight_layout_name(p->wlayout[w]), (long long)p->woffset[w],
            (long long)g->weights[w].count * 4, (long long)p->stats_offset[w],
            w + 1 < g->nweights ? "," : "");
  fprintf(out, "  ],\n  \"param_bytes\": %lld,\n  \"stats_bytes\": %lld,\n"
               "  \"optimizer_bytes\": {\"sgd\": %lld, \"adam\": %lld},\n",
          (long long)p->param_bytes, (long long)p->stats_bytes,
          (long long)p->optimizer_bytes[PLAN_SGD],
          (long long)p->optimizer_bytes[PLAN_ADAM]);
  fprintf(out, "  \"persistent_bytes\": %lld,\n  \"naive_bytes\": "
               "%lld,\n  \"lower_bound_bytes\": %lld,\n  \"planned_bytes\": "
               "%lld\n}\n",
          (long long)p->persistent_bytes, (long long)p->naive_bytes,
          (long long)p->lower_bound_bytes, (long long)p->planned_bytes);
}

/* ---- netc dump dot ------------------------------------------------------ */

/* Clusters follow the layer path: stage2.bottleneck1.conv2 sits in cluster
 * stage2 inside nothing, then bottleneck1 inside it. Nodes are grouped by
 * their path prefix; consecutive nodes of one block share its cluster. */
static int common_depth(const char *a, const char *b) {
  int depth = 0;
  for (size_t i = 0;; i++) {
    if (a[i] != b[i])
      return depth;
    if (a[i] == 0)
      return depth;
    if (a[i] == '.')
      depth++;
  }
}

static int path_depth(const char *s) {
  int d = 0;
  for (; *s; s++)
    d += *s == '.';
  return d;
}

static void dot_clusters(FILE *out, const Graph *g, int from, int to,
                         const char *side) {
  const char *prev = "";
  int open = 0;
  for (int i = from; i < to; i++) {
    const Node *n = &g->nodes[i];
    int keep = common_depth(prev, n->path), depth = path_depth(n->path);
    if (keep > open)
      keep = open;
    for (; open > keep; open--)
      fputs("  }\n", out);
    for (; open < depth; open++) {
      const char *s = n->path;
      for (int k = 0; k < open; k++)
        s = strchr(s, '.') + 1;
      const char *e = strchr(s, '.');
      fprintf(out, "  subgraph \"cluster_%s_%d_%.*s\" { label=\"%.*s\";\n",
              side, i, (int)(e - s), s, (int)(e - s), s);
    }
    fprintf(out, "    n%d [label=\"%s\\n%s\"%s];\n", i, op_info(n->op)->name,
            strrchr(n->path, '.') ? strrchr(n->path, '.') + 1 : n->path,
            i < g->nforward ? "" : " style=filled fillcolor=\"#fde2c8\"");
    prev = n->path;
  }
  for (; open > 0; open--)
    fputs("  }\n", out);
}

void dump_dot(FILE *out, const Graph *g) {
  Pool p = {0};
  fprintf(out, "digraph \"%s\" {\n  rankdir=TB; newrank=true; mclimit=0.2;\n  node [shape=box "
               "fontname=\"Helvetica\" fontsize=10];\n  edge [fontname="
               "\"Helvetica\" fontsize=8];\n", g->name);
  fputs("  input [shape=oval label=\"input\"];\n"
        "  labels [shape=oval label=\"labels\"];\n", out);
  fputs("  subgraph cluster_forward { label=\"forward\";\n", out);
  dot_clusters(out, g, 0, g->nforward, "f");
  fputs("  }\n  subgraph cluster_backward { label=\"backward\";\n", out);
  dot_clusters(out, g, g->nforward, g->nnodes, "b");
  fputs("  }\n", out);
  /* Edges: from the producer of each input (the root, for views). A
   * backward op's reads of forward state (X, saved statistics) are left
   * out: they would tie every backward op to the forward column, and the
   * dumps list them. The loss starts the backward pass. */
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    for (int j = 0; j < n->nin; j++) {
      int t = n->in[j], r = t;
      while (g->tensors[r].producer < 0 && g->tensors[r].view_of >= 0)
        r = g->tensors[r].view_of;
      int pr = g->tensors[r].producer;
      if (i >= g->nforward && (pr < 0 || pr < g->nforward))
        continue;
      const char *from = pr >= 0 ? pool_printf(&p, "n%d", pr)
                         : r == g->labels ? "labels" : "input";
      fprintf(out, "  %s -> n%d [label=\"%s\"%s];\n", from, i,
              tshape(&p, g, t),
              g->tensors[t].kind == TK_GRAD ? " color=\"#c0504d\"" : "");
    }
  }
  if (g->nnodes > g->nforward)
    fprintf(out, "  n%d -> n%d [style=dashed label=\"loss\"];\n",
            g->tensors[g->loss].producer, g->nforward);
  fputs("}\n", out);
  pool_free(&p);
}

/* ---- netc dump memory: the plan as a picture ---------------------------- */

void dump_memory_svg(FILE *out, const Graph *g, const Plan *p) {
  static const char *const color[TK_COUNT] = {
      [TK_INPUT] = "#7f7f7f", [TK_ACT] = "#4f81bd", [TK_SAVED] = "#8064a2",
      [TK_LOSS] = "#000000",  [TK_GRAD] = "#c0504d", [TK_SCRATCH] = "#9bbb59",
      [TK_WGRAD] = "#f79646",
  };
  const double W = 1200, H = 700, L = 90, T = 50, B = 60, R = 170;
  double sx = (W - L - R) / (p->nsteps > 0 ? p->nsteps : 1);
  double sy = (H - T - B) / (double)(p->planned_bytes > 0 ? p->planned_bytes
                                                           : 1);
  double mib = 1024.0 * 1024.0;
  fprintf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
               "height=\"%.0f\" font-family=\"Helvetica\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
          W, H);
  fprintf(out, "<text x=\"%.0f\" y=\"24\" font-size=\"15\">%s, batch %lld: "
               "arena %.1f MiB (lower bound %.1f MiB, naive %.1f MiB)</text>\n",
          L, g->name, (long long)g->batch, p->planned_bytes / mib,
          p->lower_bound_bytes / mib, p->naive_bytes / mib);
  /* One rectangle per buffer (views and in-place outputs share one). */
  for (int t = 0; t < g->ntensors; t++) {
    if (p->storage[t] != t)
      continue;
    int first = p->first[t], last = p->last[t];
    for (int u = 0; u < g->ntensors; u++)
      if (p->storage[u] == t) {
        first = p->first[u] < first ? p->first[u] : first;
        last = p->last[u] > last ? p->last[u] : last;
      }
    fprintf(out, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                 "fill=\"%s\" fill-opacity=\"0.8\" stroke=\"white\" "
                 "stroke-width=\"0.3\"><title>%s: %.2f MiB, steps %d-%d"
                 "</title></rect>\n",
            L + first * sx, H - B - (p->offset[t] + p->size[t]) * sy,
            (last - first + 1) * sx, p->size[t] * sy,
            color[g->tensors[t].kind], g->tensors[t].label,
            p->size[t] / mib, first, last);
  }
  /* Axes: steps, with the forward/backward boundary; offsets in MiB. */
  double xb = L + g->nforward * sx;
  fprintf(out, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" "
               "stroke=\"black\" stroke-dasharray=\"4 3\"/>\n"
               "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">forward | "
               "backward</text>\n",
          xb, T, xb, H - B, xb, T - 6);
  fprintf(out, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" "
               "stroke=\"black\"/>\n<line x1=\"%.0f\" y1=\"%.0f\" "
               "x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n",
          L, H - B, W - R, H - B, L, T, L, H - B);
  fprintf(out, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">schedule "
               "step (%d ops)</text>\n",
          (L + W - R) / 2, H - 20, p->nsteps);
  for (int k = 0; k <= 4; k++) {
    double v = p->planned_bytes * k / 4.0;
    fprintf(out, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.0f "
                 "MiB</text>\n", L - 6, H - B - v * sy + 4, v / mib);
  }
  static const TensorKind legend[] = {TK_ACT, TK_GRAD, TK_WGRAD, TK_SAVED,
                                      TK_SCRATCH, TK_INPUT};
  for (int k = 0; k < 6; k++)
    fprintf(out, "<rect x=\"%.0f\" y=\"%.0f\" width=\"14\" height=\"14\" "
                 "fill=\"%s\"/><text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
            W - R + 15, T + 22.0 * k, color[legend[k]], W - R + 35,
            T + 22.0 * k + 12, tensor_kind_name(legend[k]));
  fputs("</svg>\n", out);
}
