/* codegen.c: the training graph and its memory plan -> C.
 *
 * Requires: a verified training graph and a checked plan.
 * Guarantees: <model>.c and <model>.h that read like hand-written code: a
 * banner, the memory plan as a comment table, every offset a named
 * constant in bytes (T_ into the arena, P_ into the parameters, S_ into
 * the batchnorm statistics), one const shape struct per layer, and forward
 * and backward functions that are flat lists of runtime calls in schedule
 * order, each preceded by a comment naming the .net line, the layer and
 * its shapes. No line is longer than 100 columns, and the same graph
 * always gives the same bytes.
 *
 * Codegen decides nothing: each call is the kernel its op's row names
 * (ops.c) with the arguments the row lists, at the offsets and in the
 * layouts the plan chose. The generic trainer (runtime/trainer/trainer.c)
 * drives the model through `const NetcModel netc_model`. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "netc.h"

enum { MAX_COLS = 100 };

typedef struct {
  FILE *out;
  Diag *d;
  const Graph *g;
  const Plan *p;
  Pool *pool;
  const char **tname;  /* per tensor: its arena offset constant, T_... */
  const char **wname;  /* per weight: its parameter offset, P_... */
  const char **windex; /* per weight: its parameter index, W_... */
  const char **sname;  /* per weight: its statistics' prefix, S_..., or NULL */
  const char **lname;  /* per node: its shape struct, L_..., or NULL */
} Gen;

/* A C identifier from a layer name: stage1.basic1@2.conv1 ->
 * stage1_basic1_at2_conv1. */
static const char *ident(Pool *p, const char *prefix, const char *label) {
  size_t n = strlen(label);
  char *s = pool_alloc(p, strlen(prefix) + 3 * n + 1), *o = s;
  o += sprintf(o, "%s", prefix);
  for (const char *c = label; *c; c++) {
    if (isalnum((unsigned char)*c) || *c == '_')
      *o++ = *c;
    else if (*c == '@')
      o += sprintf(o, "_at");
    else
      *o++ = '_';
  }
  *o = 0;
  return s;
}

/* Unique names: a repeat gets its id appended. */
static const char *unique(Pool *p, const char **seen, int n, const char *s,
                          int id) {
  for (int u = 0; u < n; u++)
    if (seen[u] && !strcmp(seen[u], s))
      return pool_printf(p, "%s_%d", s, id);
  return s;
}

/* The node whose shape struct node i's kernel takes: its own for forward
 * ops and grad_add, else its forward op's. */
static int shape_node(const Graph *g, int i) {
  const Node *n = &g->nodes[i];
  return i < g->nforward || op_info(n->op)->own_shape ? i : n->fwd;
}

/* The node whose weights node i's kernel reads: a backward op reads its
 * forward op's (a recompute reads its batchnorm's). */
static const Node *weight_node(const Graph *g, int i) {
  const Node *n = &g->nodes[i];
  return i < g->nforward || n->op == OP_UPDATE ? n : &g->nodes[n->fwd];
}

static void names(Gen *x) {
  const Graph *g = x->g;
  Pool *p = x->pool;
  x->tname = pool_alloc(p, sizeof(char *) * (size_t)(g->ntensors + 1));
  for (int t = 0; t < g->ntensors; t++)
    x->tname[t] = unique(p, x->tname, t,
                         ident(p, "T_", g->tensors[t].label), t);
  int nw = g->nweights + 1;
  x->wname = pool_alloc(p, sizeof(char *) * (size_t)nw);
  x->windex = pool_alloc(p, sizeof(char *) * (size_t)nw);
  x->sname = pool_alloc(p, sizeof(char *) * (size_t)nw);
  for (int w = 0; w < g->nweights; w++) {
    x->wname[w] = ident(p, "P_", g->weights[w].name);
    x->windex[w] = ident(p, "W_", g->weights[w].name);
    if (x->p->stats_offset[w] >= 0) /* named after its batchnorm layer */
      x->sname[w] = ident(p, "S_", g->nodes[g->weights[w].first_node].path);
  }
  x->lname = pool_alloc(p, sizeof(char *) * (size_t)(g->nnodes + 1));
  /* A shape struct for each node whose own or backward call takes it (a
   * relu folded both ways has none). */
  bool *used = pool_alloc(p, sizeof(bool) * (size_t)(g->nnodes + 1));
  for (int i = 0; i < g->nnodes; i++)
    used[i] = false;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].fuse != FUSE_FOLDED)
      used[shape_node(g, i)] = true;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (!used[i] || op_info(n->op)->shape == SK_NONE)
      continue;
    const char *base = n->op == OP_GRAD_ADD ? g->tensors[n->out].label
                                            : n->path;
    x->lname[i] = unique(p, x->lname, i, ident(p, "L_", base), i);
  }
}

/* A tensor's shape as every dump prints it: NxCxHxW when batched. */
static const char *shape_of(const Gen *x, int t) {
  const Tensor *v = &x->g->tensors[t];
  const char *s = shape_str(x->pool, v->shape);
  return v->batched ? pool_printf(x->pool, "%lldx%s", (long long)x->g->batch, s)
                    : s;
}

static long long elems(const Gen *x, int t) {
  return (long long)(shape_elems(x->g->tensors[t].shape) *
                     (x->g->tensors[t].batched ? x->g->batch : 1));
}

/* Prints `head` then the items separated by ", " and then `tail`, all on
 * one line when it fits in MAX_COLS, else one continuation line after
 * another, indented to line up after `head`. */
static void wrapped(Gen *x, const char *head, const char **items, int n,
                    const char *tail) {
  /* Continuation lines line up after the head's last bracket, or one
   * column in when it has none (a table row: "    {a, b," / "     c},"). */
  size_t col = strlen(head), indent = col + 1;
  for (size_t i = 0; i < col; i++)
    if (head[i] == '(' || head[i] == '{')
      indent = i + 1;
  fputs(head, x->out);
  for (int i = 0; i < n; i++) {
    size_t len = strlen(items[i]) + (i + 1 < n ? 1 : strlen(tail));
    if (i > 0 && col + 1 + len > MAX_COLS) {
      fprintf(x->out, "\n%*s", (int)indent, "");
      col = indent;
    } else if (i > 0) {
      fputc(' ', x->out);
      col++;
    }
    fprintf(x->out, "%s%s", items[i], i + 1 < n ? "," : tail);
    col += len;
  }
  if (n == 0)
    fputs(tail, x->out);
  fputc('\n', x->out);
}

static void banner(Gen *x, const char *source, const char *what) {
  fprintf(x->out, "/* %s.%s: %s of network '%s', batch %lld.\n"
                  " * Generated by netc %s from %s.\n"
                  " * Do not edit: change the .net file and run netc build "
                  "again. */\n",
          x->g->name, what, what[0] == 'c' ? "training code" : "constants",
          x->g->name, (long long)x->g->batch, NETC_VERSION, source);
}

/* ---- the header: the model's sizes and its persistent layout ----------- */

static void emit_header(Gen *x, const char *source) {
  const Graph *g = x->g;
  const Plan *p = x->p;
  FILE *o = x->out;
  banner(x, source, "h");
  const char *guard = ident(x->pool, "NETC_MODEL_", g->name);
  fprintf(o, "#ifndef %s_H\n#define %s_H\n\n#include \"netc_model.h\"\n\n",
          guard, guard);
  const Tensor *in = &g->tensors[g->input];
  fprintf(o, "#define NETC_BATCH %lld\n#define NETC_INPUT_C %lld\n"
             "#define NETC_INPUT_H %lld\n#define NETC_INPUT_W %lld\n"
             "#define NETC_CLASSES %lld\n#define NETC_ARENA_BYTES %lldLL\n"
             "#define NETC_PARAM_BYTES %lldLL\n#define NETC_STATS_BYTES "
             "%lldLL\n\n",
          (long long)g->batch, (long long)in->shape.c, (long long)in->shape.h,
          (long long)in->shape.w, (long long)g->classes,
          (long long)p->planned_bytes, (long long)p->param_bytes,
          (long long)p->stats_bytes);
  /* netc build compiles this with -march=native (or x86-64-v3 when
   * --portable): the kernels follow what that enables. */
  fputs("#ifdef __AVX512F__\n#define NETC_ISA RT_ISA_AVX512\n#else\n"
        "#define NETC_ISA RT_ISA_AVX2\n#endif\n\n", o);
  fputs("/* Parameters: byte offsets into the parameter region (and into\n"
        " * each optimizer state region), with the layout the plan chose. */\n",
        o);
  for (int w = 0; w < g->nweights; w++) {
    const char *dims = "";
    for (int j = 0; j < g->weights[w].ndims; j++)
      dims = pool_printf(x->pool, "%s%s%lld", dims, j ? "x" : "",
                         (long long)p->wdims[w][j]);
    fprintf(o, "#define %s %lldLL /* %s %s */\n", x->wname[w],
            (long long)p->woffset[w], weight_layout_name(p->wlayout[w]),
            dims);
  }
  fputs("\n/* Batchnorm running statistics: byte offsets into bn_stats. */\n",
        o);
  for (int w = 0; w < g->nweights; w++)
    if (x->sname[w])
      fprintf(o, "#define %s_mean %lldLL\n#define %s_var %lldLL\n",
              x->sname[w], (long long)p->stats_offset[w], x->sname[w],
              (long long)p->stats_var_offset[w]);
  fputs("\n/* Parameter indices into netc_model.params. */\nenum {\n", o);
  for (int w = 0; w < g->nweights; w++)
    fprintf(o, "  %s = %d,\n", x->windex[w], w);
  fputs("};\n\n#endif\n", o);
}

/* ---- the C file: the plan, offsets and shapes --------------------------- */

static void emit_plan_table(Gen *x) {
  const Graph *g = x->g;
  const Plan *p = x->p;
  FILE *o = x->out;
  fprintf(o, "/* Memory plan: one arena of %lld bytes (lower bound %lld, "
             "every tensor its own\n * buffer: %lld). Steps 0-%d are the "
             "forward pass, %d-%d the backward.\n *\n"
             " *   offset        bytes  steps      kind         tensor\n",
          (long long)p->planned_bytes, (long long)p->lower_bound_bytes,
          (long long)p->naive_bytes, g->nforward - 1, g->nforward,
          p->nsteps - 1);
  for (int t = 0; t < g->ntensors; t++) {
    const char *row = pool_printf(
        x->pool, " * %10lld %12lld  %4d-%-4d  %-11s", (long long)p->offset[t],
        (long long)tensor_bytes(g, t), p->first[t], p->last[t],
        tensor_kind_name(g->tensors[t].kind));
    const char *name = pool_printf(
        x->pool, "%s%s", g->tensors[t].label,
        g->tensors[t].view_of >= 0 ? " (view)"
        : p->inplace[t] >= 0       ? " (in place)" : "");
    if (strlen(row) + 1 + strlen(name) <= MAX_COLS)
      fprintf(o, "%s %s\n", row, name);
    else /* a long name goes on a line of its own */
      fprintf(o, "%s\n *     %s\n", row, name);
  }
  fputs(" */\n\n/* Arena offsets, in bytes, with each tensor's shape as netc "
        "dump prints it\n * (NxCxHxW; the memory order is NHWC). */\n", o);
  for (int t = 0; t < g->ntensors; t++)
    fprintf(o, "#define %s %lldLL /* %s */\n", x->tname[t],
            (long long)p->offset[t], shape_of(x, t));
  fputs("\n/* Typed pointers at byte offsets: into the arena (A), the "
        "parameters (P)\n * and the batchnorm statistics (S). */\n"
        "#define F(off) ((float *)(A + (off)))\n"
        "#define I32(off) ((int32_t *)(A + (off)))\n"
        "#define PF(off) ((const float *)(P + (off)))\n"
        "#define SF(off) ((float *)(S + (off)))\n"
        "/* With profiling on (bench --profile), the time since the last "
        "mark goes\n * to op i. */\n"
        "#define PROFILE(i) \\\n"
        "  do { \\\n    if (s->profile) \\\n"
        "      netc_profile_mark(s, i); \\\n  } while (0)\n\n", o);
}

/* CONV_DIRECT for CONV_DIRECT: the runtime's name of an algorithm. */
static const char *algo_macro(Pool *p, int algo) {
  char *m = pool_printf(p, "CONV_%s", conv_algo_name(algo));
  for (char *c = m; *c; c++)
    *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c);
  return m;
}

/* "fwd:direct=20;dx:direct=15,gemm=4;dw:gemm=20": the model's
 * conv_algos, per pass, as C string literals. */
static const char *algo_counts(const Gen *x) {
  const Graph *g = x->g;
  char *s = "";
  static const char *const pass_name[CONV_PASSES] = {"fwd", "dx", "dw"};
  for (int pass = 0; pass < CONV_PASSES; pass++) {
    /* One string literal per pass, a line each (lines stay short). */
    s = pool_printf(x->pool, "%s%s\"%s:", s, pass ? ";\"\n                  " : "",
                    pass_name[pass]);
    for (int a = 0, sep = 0; a < CONV_ALGO_COUNT; a++) {
      int count = 0;
      for (int i = 0; i < g->nforward; i++)
        count += g->nodes[i].op == OP_CONV && g->nodes[i].algo[pass] == a;
      if (count)
        s = pool_printf(x->pool, "%s%s%s=%d", s, sep++ ? "," : "",
                        conv_algo_name(a), count);
    }
  }
  return pool_printf(x->pool, "%s\"", s);
}

/* The fields of node i's shape struct, from its tensors and attributes. */
static int shape_fields(const Gen *x, int i, const char **f) {
  const Graph *g = x->g;
  const Node *n = &g->nodes[i];
  Shape in = g->tensors[n->in[0]].shape, out = g->tensors[n->out].shape;
  long long N = g->batch;
  const int64_t *a = n->attr;
  Pool *p = x->pool;
  switch (op_info(n->op)->shape) {
  case SK_CONV:
  case SK_POOL: {
    bool conv = op_info(n->op)->shape == SK_CONV;
    int k = 0, ak = conv ? CONV_K : POOL_K;
    f[k++] = pool_printf(p, ".N = %lld", N);
    f[k++] = pool_printf(p, ".H = %lld", (long long)in.h);
    f[k++] = pool_printf(p, ".W = %lld", (long long)in.w);
    f[k++] = pool_printf(p, ".C = %lld", (long long)in.c);
    if (conv)
      f[k++] = pool_printf(p, ".OC = %lld", (long long)out.c);
    f[k++] = pool_printf(p, ".K = %lld", (long long)a[ak]);
    f[k++] = pool_printf(p, ".stride = %lld", (long long)a[ak + 1]);
    f[k++] = pool_printf(p, ".pad = %lld", (long long)a[ak + 2]);
    f[k++] = pool_printf(p, ".OH = %lld", (long long)out.h);
    f[k++] = pool_printf(p, ".OW = %lld", (long long)out.w);
    if (conv && a[CONV_GROUPS] > 1)
      f[k++] = pool_printf(p, ".groups = %lld", (long long)a[CONV_GROUPS]);
    static const char *const field[CONV_PASSES] = {"algo", "algo_dx",
                                                   "algo_dw"};
    if (conv)
      for (int pass = 0; pass < CONV_PASSES; pass++)
        f[k++] = pool_printf(p, ".%s = %s", field[pass],
                             algo_macro(p, n->algo[pass]));
    return k;
  }
  case SK_BN:
    f[0] = pool_printf(p, ".M = %lld", N * in.h * in.w);
    f[1] = pool_printf(p, ".C = %lld", (long long)in.c);
    return 2;
  case SK_DENSE:
    f[0] = pool_printf(p, ".N = %lld", N);
    f[1] = pool_printf(p, ".IN = %lld", (long long)in.c);
    f[2] = pool_printf(p, ".OUT = %lld", (long long)out.c);
    return 3;
  case SK_GAP:
    f[0] = pool_printf(p, ".N = %lld", N);
    f[1] = pool_printf(p, ".HW = %lld", (long long)(in.h * in.w));
    f[2] = pool_printf(p, ".C = %lld", (long long)in.c);
    return 3;
  case SK_XENT:
    f[0] = pool_printf(p, ".N = %lld", N);
    f[1] = pool_printf(p, ".C = %lld", (long long)in.c);
    return 2;
  case SK_ELT:
    f[0] = pool_printf(p, ".n = %lld", elems(x, n->out));
    return 1;
  case SK_DROP:
    f[0] = pool_printf(p, ".n = %lld", elems(x, n->out));
    f[1] = pool_printf(p, ".p = %#.9gf", attr_real(a[0]));
    f[2] = pool_printf(p, ".salt = 0x%08xu", rt_dropout_salt(n->path));
    return 3;
  case SK_NONE:
  case SK_COUNT:
    break;
  }
  op_unhandled("codegen's shape_fields", n->op);
}

static void emit_shapes(Gen *x) {
  static const char *const type[SK_COUNT] = {
      [SK_CONV] = "ConvShape", [SK_POOL] = "PoolShape", [SK_BN] = "BnShape",
      [SK_DENSE] = "DenseShape", [SK_GAP] = "GapShape",
      [SK_XENT] = "XentShape", [SK_ELT] = "EltShape",
      [SK_DROP] = "DropShape"};
  const Graph *g = x->g;
  fputs("/* Layer shapes: what each kernel call takes as its sizes. */\n",
        x->out);
  for (int i = 0; i < g->nnodes; i++) {
    if (!x->lname[i])
      continue;
    const Node *n = &g->nodes[i];
    const char *f[16];
    int k = shape_fields(x, i, f);
    fprintf(x->out, "/* %s: %s -> %s */\n", n->path, shape_of(x, n->in[0]),
            shape_of(x, n->out));
    wrapped(x, pool_printf(x->pool, "static const %s %s = {",
                           type[op_info(n->op)->shape], x->lname[i]),
            f, k, "};");
  }
  fputc('\n', x->out);
}

/* ---- the calls ------------------------------------------------------------ */

static const char *ptr(const Gen *x, int t) {
  if (t < 0)
    return "NULL";
  return pool_printf(x->pool, "%s(%s)", x->g->tensors[t].is_int ? "I32" : "F",
                     x->tname[t]);
}

static const char *wptr(const Gen *x, int w) {
  return w < 0 ? "NULL" : pool_printf(x->pool, "PF(%s)", x->wname[w]);
}

static const char *stats(const Gen *x, int w, const char *which) {
  return pool_printf(x->pool, "SF(%s_%s)", x->sname[w], which);
}

static const char *acc(bool add) { return add ? "NETC_ADD" : "NETC_WRITE"; }

/* The text of argument `a` of node i's kernel call. */
static const char *arg(const Gen *x, int i, KernelArg a) {
  const Node *n = &x->g->nodes[i];
  const Node *w = weight_node(x->g, i);
  switch (a) {
  case KA_OUT: return ptr(x, n->out);
  case KA_IN0: case KA_IN1: case KA_IN2: case KA_IN3: case KA_IN4:
    return ptr(x, n->in[a - KA_IN0]);
  case KA_EXTRA0: case KA_EXTRA1: case KA_EXTRA2:
    return (int)(a - KA_EXTRA0) < n->nextra ? ptr(x, n->extra[a - KA_EXTRA0])
                                            : "NULL";
  case KA_W0: case KA_W1: return wptr(x, w->weight[a - KA_W0]);
  case KA_WGRAD0: case KA_WGRAD1: return ptr(x, n->wgrad[a - KA_WGRAD0]);
  case KA_RUN_MEAN: return stats(x, w->weight[0], "mean");
  case KA_RUN_VAR: return stats(x, w->weight[0], "var");
  case KA_SHAPE:
    return pool_printf(x->pool, "&%s", x->lname[shape_node(x->g, i)]);
  case KA_ACC: return acc(n->accumulate);
  case KA_ACC_W:
    if (n->wgrad[1] >= 0 && n->wgrad_accumulate[0] != n->wgrad_accumulate[1])
      op_unhandled("codegen (weights accumulated unlike)", n->op);
    return acc(n->wgrad_accumulate[0]);
  case KA_BN_MODE: return "s->bn_momentum, s->bn_eps, training";
  case KA_STATE: return "s";
  case KA_PARAM: return x->windex[n->weight[0]];
  case KA_BUCKET: return pool_printf(x->pool, "%lld", (long long)n->attr[0]);
  case KA_LOSS_SCALE: return "s->loss_scale";
  case KA_SMOOTHING: return "s->label_smoothing";
  case KA_STEP_KEY: return "s->step_key";
  case KA_TRAINING: return "training";
  case KA_END: break;
  }
  op_unhandled("codegen's arg", n->op);
}

static void comment(Gen *x, int i) {
  const Node *n = &x->g->nodes[i];
  const char *what = n->out >= 0        ? shape_of(x, n->out)
                     : n->op == OP_UPDATE ? x->g->weights[n->weight[0]].name
                                          : "no input gradient";
  const char *c = pool_printf(x->pool, "  /* %s %s: %s -> %s */",
                              loc_str(x->d, n->loc), n->path,
                              op_info(n->op)->name, what);
  if (strlen(c) <= MAX_COLS) {
    fprintf(x->out, "%s\n", c);
    return;
  }
  fprintf(x->out, "  /* %s %s:\n   * %s -> %s */\n", loc_str(x->d, n->loc),
          n->path, op_info(n->op)->name, what);
}

static void emit_node(Gen *x, int i) {
  const Node *n = &x->g->nodes[i];
  const KernelCall *k = node_kernel(n);
  comment(x, i);
  if (n->fuse == FUSE_FOLDED) {
    fprintf(x->out, "  /* computed by %s (fuse.c) */\n",
            i < x->g->nforward ? "the call above" : "a call below");
  } else if (!k->fn) { /* a view */
    fprintf(x->out, "  /* a view of %s: nothing to compute */\n",
            x->tname[n->in[0]]);
  } else {
    const char *items[MAX_KERNEL_ARGS];
    int m = 0;
    for (; m < MAX_KERNEL_ARGS && k->args[m] != KA_END; m++)
      items[m] = arg(x, i, k->args[m]);
    wrapped(x, pool_printf(x->pool, "  %s%s%s(", k->result ? k->result : "",
                           k->result ? " = " : "", k->fn),
            items, m, ");");
  }
  fprintf(x->out, "  PROFILE(%d);\n", i);
}

/* The backward pass; in a data-parallel build (comm.c's buckets), after
 * every op while a bucket's sum is in flight, a nudge to MPI to move it
 * along. */
static void emit_backward(Gen *x) {
  const Graph *g = x->g;
  int in_flight = 0;
  for (int i = g->nforward; i < g->nnodes; i++) {
    emit_node(x, i);
    in_flight += (g->nodes[i].op == OP_ALLREDUCE) -
                 (g->nodes[i].op == OP_ALLREDUCE_WAIT);
    if (in_flight > 0 && g->nodes[i].op != OP_ALLREDUCE)
      fputs("  netc_comm_progress(s);\n", x->out);
  }
}

/* ---- the tables the trainer reads ---------------------------------------- */

/* WL_OHWI -> NL_OHWI: the runtime's name of a layout. */
static const char *layout_enum(Gen *x, WeightLayout l) {
  char *s = pool_printf(x->pool, "NL_%s", weight_layout_name(l));
  for (char *c = s; *c; c++)
    *c = (char)toupper((unsigned char)*c);
  return s;
}

static void emit_params(Gen *x) {
  const Graph *g = x->g;
  const Plan *p = x->p;
  FILE *o = x->out;
  fputs("/* name, init, layout, bytes offset, floats, dims (in the layout),"
        "\n * fan in and out, running mean and variance offsets. */\n"
        "static const NetcParam params[] = {\n", o);
  for (int w = 0; w < g->nweights; w++) {
    const Weight *wt = &g->weights[w];
    const Node *n = &g->nodes[wt->first_node];
    const OpInfo *op = op_info(n->op);
    int j = n->weight[0] == w ? 0 : 1;
    int64_t fan_in = 1, fan_out = 1, st = p->stats_offset[w];
    op->fans(&g->tensors[n->in[0]].shape, n->attr, &fan_in, &fan_out);
    const int64_t *d = p->wdims[w];
    const char *sname = x->sname[w];
    const char *it[] = {
        pool_printf(x->pool, "{\"%s\"", wt->name), op->init[j],
        layout_enum(x, p->wlayout[w]),
        x->wname[w], pool_printf(x->pool, "%lld", (long long)wt->count),
        pool_printf(x->pool, "%d", wt->ndims),
        pool_printf(x->pool, "{%lld, %lld, %lld, %lld}", (long long)d[0],
                    (long long)(wt->ndims > 1 ? d[1] : 0),
                    (long long)(wt->ndims > 2 ? d[2] : 0),
                    (long long)(wt->ndims > 3 ? d[3] : 0)),
        pool_printf(x->pool, "%lld", (long long)fan_in),
        pool_printf(x->pool, "%lld", (long long)fan_out),
        st < 0 ? "{-1, -1}"
               : pool_printf(x->pool, "{%s_mean, %s_var}", sname, sname),
        NULL};
    int nit = 10;
    if (strlen(it[9]) > 80) { /* as two items, so that it can wrap */
      it[9] = pool_printf(x->pool, "{%s_mean", sname);
      it[nit++] = pool_printf(x->pool, "%s_var}", sname);
    }
    wrapped(x, "    ", it, nit, "},");
  }
  fputs("};\n\n", o);
}

/* Every op, for profiles and for finding the first non-finite value. */
static void emit_ops(Gen *x) {
  const Graph *g = x->g;
  fputs("/* layer, op, backward, FLOPs, bytes moved (traffic.c), source; "
        "what it writes:\n * arena offset and floats, then two weight "
        "gradients (arena offset, floats). */"
        "\nstatic const NetcOp ops[] = {\n", x->out);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    /* Only float outputs are checked for NaN; labels and argmax are int. */
    bool f32 = n->out >= 0 && !g->tensors[n->out].is_int;
    const int *w = n->wgrad;
    Traffic t = node_traffic(g, i);
    const char *it[] = {
        pool_printf(x->pool, "{\"%s\"", n->path),
        pool_printf(x->pool, "\"%s\"", node_op_name(n)),
        i >= g->nforward ? "1" : "0",
        pool_printf(x->pool, "%.0f",
                    i < g->nforward ? node_flops(g, i) * (double)g->batch : 0),
        pool_printf(x->pool, "%lld", (long long)(t.read + t.written)),
        pool_printf(x->pool, "\"%s\"", loc_str(x->d, n->loc)),
        f32 ? x->tname[n->out] : "-1",
        pool_printf(x->pool, "%lld", f32 ? elems(x, n->out) : 0LL),
        /* {a, b} as two items, so a long pair can wrap inside */
        pool_printf(x->pool, "{%s", w[0] >= 0 ? x->tname[w[0]] : "-1"),
        pool_printf(x->pool, "%s}", w[1] >= 0 ? x->tname[w[1]] : "-1"),
        pool_printf(x->pool, "{%lld", w[0] >= 0 ? elems(x, w[0]) : 0LL),
        pool_printf(x->pool, "%lld}", w[1] >= 0 ? elems(x, w[1]) : 0LL)};
    wrapped(x, "    ", it, 12, "},");
  }
  fputs("};\n\n", x->out);
}

/* The inference graph: every forward op but the loss, with the values it
 * reads (0: the image, i + 1: layer i's output). Sets *logits to the
 * value the loss reads. */
static void emit_layers(Gen *x, int *logits) {
  const Graph *g = x->g;
  int *value = pool_alloc(x->pool, sizeof(int) * (size_t)g->ntensors);
  for (int t = 0; t < g->ntensors; t++)
    value[t] = -1;
  value[g->input] = 0;
  fputs("/* The forward graph without the loss, for export: op, layer, "
        "inputs (0: the image,\n"
        " * i + 1: layer i's output), weights, the op's parameters, "
        "output shape,\n"
        " * the ONNX op it is one to one (or NULL). */\n"
        "static const NetcLayer layers[] = {\n", x->out);
  int n = 0;
  for (int i = 0; i < g->nforward; i++) {
    const Node *nd = &g->nodes[i];
    const OpInfo *op = op_info(nd->op);
    if (op->loss) {
      *logits = value[nd->in[0]];
      continue;
    }
    value[nd->out] = ++n;
    const Shape *sh = &g->tensors[nd->out].shape;
    const int64_t *a = nd->attr;
    const char *it[] = {
        pool_printf(x->pool, "{\"%s\"", op->name),
        pool_printf(x->pool, "\"%s\"", nd->path),
        pool_printf(x->pool, "%d", nd->nin),
        pool_printf(x->pool, "{%d, %d}", value[nd->in[0]],
                    nd->nin > 1 ? value[nd->in[1]] : -1),
        pool_printf(x->pool, "{%d, %d}", nd->weight[0], nd->weight[1]),
        pool_printf(x->pool, "{%lld, %lld, %lld, %lld, %lld, %lld}",
                    (long long)a[0], (long long)a[1], (long long)a[2],
                    (long long)a[3], (long long)a[4], (long long)a[5]),
        pool_printf(x->pool, "%lld, %lld, %lld", (long long)sh->c,
                    (long long)sh->h, (long long)sh->w),
        op->onnx ? pool_printf(x->pool, "\"%s\"", op->onnx) : "NULL"};
    wrapped(x, "    ", it, 8, "},");
  }
  fputs("};\n\n", x->out);
}

/* The gradient buckets (build --mpi): arena bytes offset, floats, and
 * their places in the accumulation region, one after another. */
static void emit_buckets(Gen *x) {
  const Graph *g = x->g;
  if (!g->nbuckets)
    return;
  fprintf(x->out, "/* Gradient buckets of about %lld bytes, in the order "
                  "backward reduces them:\n * arena offset, floats, offset "
                  "in the accumulation region. */\n"
                  "static const NetcBucket buckets[] = {\n",
          (long long)g->bucket_bytes);
  int64_t acc = 0;
  for (int b = 0; b < g->nbuckets; b++) {
    int t = g->bucket_tensor[b];
    long long floats = (long long)(tensor_bytes(g, t) / 4);
    fprintf(x->out, "    {%s, %lld, %lldLL},\n", x->tname[t], floats,
            (long long)acc);
    acc += tensor_bytes(g, t);
  }
  fputs("};\n\n", x->out);
}

/* FNV-1a over what every process of a run must agree on: the batch, the
 * arena, the schedule (each op and what it reads and writes, at which
 * offsets), the parameters' places and the buckets. Two trainers with
 * the same hash issue the same collectives in the same order. */
static uint64_t plan_hash(const Gen *x) {
  const Graph *g = x->g;
  const Plan *p = x->p;
  uint64_t h = 0xcbf29ce484222325ULL;
#define MIX(v)                                                                \
  do {                                                                        \
    uint64_t v_ = (uint64_t)(v);                                              \
    for (int k_ = 0; k_ < 8; k_++)                                            \
      h = (h ^ ((v_ >> (8 * k_)) & 0xff)) * 0x100000001b3ULL;                 \
  } while (0)
  MIX(g->batch);
  MIX(p->planned_bytes);
  MIX(p->param_bytes);
  MIX(p->stats_bytes);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    MIX(n->op);
    MIX(n->out >= 0 ? p->offset[n->out] : -1);
    for (int j = 0; j < n->nin; j++)
      MIX(p->offset[n->in[j]]);
    MIX(n->attr[0]);
  }
  for (int w = 0; w < g->nweights; w++)
    MIX(p->woffset[w]);
  MIX(g->nbuckets);
  for (int b = 0; b < g->nbuckets; b++) {
    MIX(p->offset[g->bucket_tensor[b]]);
    MIX(tensor_bytes(g, g->bucket_tensor[b]));
  }
#undef MIX
  return h;
}

static void emit_model(Gen *x, const char *source, int logits) {
  const Graph *g = x->g;
  const Plan *p = x->p;
  int sm = g->tensors[g->loss].producer;
  Traffic traffic = step_traffic(g);
  int nlayers = 0;
  for (int i = 0; i < g->nforward; i++)
    nlayers += !op_info(g->nodes[i].op)->loss;
  fprintf(x->out,
          "const NetcModel netc_model = {\n"
          "    .name = \"%s\",\n    .source = \"%s\",\n"
          "    .netc_version = \"%s\",\n    .batch = NETC_BATCH,\n"
          "    .in_c = NETC_INPUT_C, .in_h = NETC_INPUT_H, "
          ".in_w = NETC_INPUT_W,\n    .classes = NETC_CLASSES,\n"
          "    .nparam_tensors = %d,\n    .params = params,\n"
          "    .param_bytes = NETC_PARAM_BYTES,\n"
          "    .stats_bytes = NETC_STATS_BYTES,\n"
          "    .optimizer_bytes = {[OPT_SGD] = %lldLL,\n"
          "                        [OPT_ADAM] = %lldLL,\n"
          "                        [OPT_ADAMW] = %lldLL},\n"
          "    .arena_bytes = NETC_ARENA_BYTES,\n"
          "    .input_offset = %s,\n    .labels_offset = %s,\n"
          "    .logits_offset = %s,\n    .probs_offset = %s,\n"
          "    .nlayers = %d,\n    .layers = layers,\n"
          "    .logits_value = %d,\n"
          "    .nops = %d,\n    .ops = ops,\n    .flops_per_step = %.0f,\n"
          "    .bytes_per_step = %lld,\n"
          "    .isa = NETC_ISA,\n    .conv_algos = %s,\n"
          "    .nbuckets = %d,\n    .buckets = %s,\n"
          "    .plan_hash = 0x%016llxULL,\n"
          "    .forward = forward,\n    .backward = backward,\n};\n",
          g->name, source, NETC_VERSION, g->nweights,
          (long long)p->optimizer_bytes[PLAN_SGD],
          (long long)p->optimizer_bytes[PLAN_ADAM],
          (long long)p->optimizer_bytes[PLAN_ADAM], x->tname[g->input],
          x->tname[g->labels], x->tname[g->nodes[sm].in[0]],
          x->tname[g->nodes[sm].extra[0]], nlayers, logits, g->nnodes,
          step_flops(g), (long long)(traffic.read + traffic.written),
          algo_counts(x), g->nbuckets, g->nbuckets ? "buckets" : "NULL",
          (unsigned long long)plan_hash(x));
}

static void emit_c(Gen *x, const char *source, const char *header) {
  const Graph *g = x->g;
  FILE *o = x->out;
  banner(x, source, "c");
  fprintf(o, "#include <stddef.h>\n#include <stdint.h>\n\n"
             "#include \"netc_rt.h\"\n#include \"%s\"\n\n", header);
  emit_plan_table(x);
  emit_shapes(x);
  fputs("static void forward(NetcState *s, int training) {\n"
        "  unsigned char *A = s->arena, *S = s->bn_stats;\n"
        "  const unsigned char *P = s->params;\n  (void)S;\n"
        "  (void)training;\n  if (s->profile)\n"
        "    netc_profile_start(s);\n", o);
  for (int i = 0; i < g->nforward; i++)
    emit_node(x, i);
  fputs("}\n\nstatic void backward(NetcState *s) {\n"
        "  unsigned char *A = s->arena;\n"
        "  const unsigned char *P = s->params;\n  if (s->profile)\n"
        "    netc_profile_start(s);\n", o);
  emit_backward(x);
  fputs("}\n\n", o);
  emit_params(x);
  emit_buckets(x);
  emit_ops(x);
  int logits = -1;
  emit_layers(x, &logits);
  emit_model(x, source, logits);
}

void codegen(FILE *c_out, FILE *h_out, Diag *d, const Graph *g,
             const Plan *p, const char *source, const char *header_name) {
  Gen x = {.d = d, .g = g, .p = p, .pool = g->pool};
  names(&x);
  x.out = h_out;
  emit_header(&x, source);
  x.out = c_out;
  emit_c(&x, source, header_name);
}
