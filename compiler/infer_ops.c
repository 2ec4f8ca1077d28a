/* infer_ops.c: a call of a built-in op: its arguments matched to the op
 * table's parameters, its shape rule applied (op_infer), its weights
 * created or, inside a shared block, replayed. */
#include <string.h>

#include "infer.h"

static const char *signature(Ctx *c, const OpInfo *op) {
  const char *sig = op->ninputs == 2 ? "a, b" : "x";
  for (int i = 0; i < op->nparams; i++) {
    const OpParam *p = &op->params[i];
    if (p->required)
      sig = pool_printf(c->pool, "%s, %s", sig, p->name);
    else if (p->def_from >= 0)
      sig = pool_printf(c->pool, "%s, %s=%s", sig, p->name,
                        op->params[p->def_from].name);
    else if (p->is_bool)
      sig = pool_printf(c->pool, "%s, %s=%s", sig, p->name,
                        p->def ? "true" : "false");
    else if (p->is_real)
      sig = pool_printf(c->pool, "%s, %s=%g", sig, p->name, p->rdef);
    else
      sig = pool_printf(c->pool, "%s, %s=%lld", sig, p->name,
                        (long long)p->def);
  }
  return pool_printf(c->pool, "%s(%s)", op->name, sig);
}

static const char *dims_str(Ctx *c, const int64_t *d, int n) {
  const char *s = "";
  for (int i = 0; i < n; i++)
    s = pool_printf(c->pool, "%s%s%lld", s, i ? "x" : "", (long long)d[i]);
  return s;
}

/* Weight `ws` for the current node: fresh, or the next one of the innermost
 * shared instance that is replaying. An instance nested in another one that
 * is replaying takes its weights from the outer one, so sharing composes. */
static int take_weight(Ctx *c, int level, const WeightShape *ws,
                       const char *name, int node, Loc at) {
  if (level < 0)
    return graph_add_weight(c->g, name, ws->dims, ws->ndims, node);
  Instance *in = c->inst[level];
  if (in->napply > 1) {
    if (in->cursor >= in->nweights) {
      ierror(c, at, "this application of shared block '%s' creates more "
                    "weights than its first", in->path);
      diag_note(c->d, in->first_call, "the first application of '%s'",
                in->path);
      return -1;
    }
    int id = in->weights[in->cursor++];
    Weight *w = &c->g->weights[id];
    if (w->ndims != ws->ndims ||
        memcmp(w->dims, ws->dims, sizeof(int64_t) * (size_t)ws->ndims)) {
      ierror(c, at, "this application of shared block '%s' makes weight "
                    "'%s' %s, but its first application made it %s",
             in->path, w->name, dims_str(c, ws->dims, ws->ndims),
             dims_str(c, w->dims, w->ndims));
      diag_note(c->d, in->first_call, "the first application of '%s'",
                in->path);
      return -1;
    }
    return id;
  }
  int id = take_weight(c, level - 1, ws, name, node, at);
  in->weights = pool_grow(c->pool, in->weights, sizeof(int), in->nweights,
                          &in->cap);
  in->weights[in->nweights++] = id;
  return id;
}

/* Reports a failed shape rule, with a note on where each input came from,
 * named as the call names it (`x` inside a block, not the caller's name). */
static void shape_error(Ctx *c, const Expr *e, const char *why,
                        const int *in, const ArgVal *args, const int *slot,
                        int nin) {
  ierror(c, e->loc, "%s", why);
  for (int j = 0; j < nin; j++) {
    const Tensor *t = &c->g->tensors[in[j]];
    const Expr *x = args[slot[j]].expr;
    const char *name = x && x->kind == EX_NAME
                           ? pool_printf(c->pool, "'%s'", x->name)
                           : pool_printf(c->pool, "operand %d", j + 1);
    diag_note(c->d, t->loc, "%s is %s, defined here", name,
              shape_str(c->pool, t->shape));
  }
}

static bool op_attrs(Ctx *c, const OpInfo *op, const Expr *e, ArgVal *args,
                     const int *slot, int64_t *attr) {
  bool ok = true;
  for (int i = 0; i < op->nparams; i++) {
    const OpParam *p = &op->params[i];
    int a = slot[op->ninputs + i];
    if (a < 0) {
      if (p->required) {
        ierror(c, e->loc, "missing argument '%s' in the call to '%s'",
                   p->name, op->name);
        diag_note(c->d, e->loc, "'%s' is called as %s", op->name,
                  signature(c, op));
        ok = false;
      }
      attr[i] = p->def_from >= 0 ? attr[p->def_from]
                : p->is_real      ? real_attr(p->rdef)
                                  : p->def;
      continue;
    }
    Value v = args[a].v;
    const char *what = pool_printf(c->pool, "argument '%s' of '%s'",
                                   p->name, op->name);
    if (p->is_real) { /* a number; an integer converts */
      if (v.kind == V_INT)
        v = (Value){.kind = V_REAL, .r = (double)v.i};
      if (!want_kind(c, v, V_REAL, args[a].loc, what))
        ok = false;
      attr[i] = real_attr(v.r);
      continue;
    }
    if (!want_kind(c, v, p->is_bool ? V_BOOL : V_INT, args[a].loc, what)) {
      ok = false;
      continue;
    }
    /* Sizes are at least 1; only parameters that default to 0 (pad) may
     * be 0. */
    int64_t min = !p->required && p->def_from < 0 && p->def == 0 ? 0 : 1;
    if (!p->is_bool && (v.i < min || v.i > MAX_DIM)) {
      ierror(c, args[a].loc, "%s is %lld; it must be in %lld..%d", what,
             (long long)v.i, (long long)min, MAX_DIM);
      ok = false;
    }
    attr[i] = v.i;
  }
  return ok;
}

/* Element counts (of the output and of each weight) must stay below
 * MAX_ELEMS, so no later byte-size arithmetic can overflow. */
static bool fits(Ctx *c, const Expr *e, Shape out, const Shape *in,
                 const int64_t *attr, OpKind k) {
  int64_t n;
  if (__builtin_mul_overflow(out.c, out.h, &n) ||
      __builtin_mul_overflow(n, out.w, &n) || n > MAX_ELEMS) {
    ierror(c, e->loc, "the output of '%s' (%lldx%lldx%lld) has more "
                             "than 2^31 elements per image",
               op_info(k)->name, (long long)out.c, (long long)out.h,
               (long long)out.w);
    return false;
  }
  WeightShape ws[MAX_WEIGHTS_PER_NODE];
  int nw = op_weights(k, in, attr, ws);
  for (int j = 0; j < nw; j++) {
    n = 1;
    for (int i = 0; i < ws[j].ndims; i++)
      if (__builtin_mul_overflow(n, ws[j].dims[i], &n) || n > MAX_ELEMS) {
        ierror(c, e->loc, "the %s of '%s' has more than 2^31 "
                                 "elements", ws[j].suffix, op_info(k)->name);
        return false;
      }
  }
  return true;
}

Value apply_op(Ctx *c, Scope *s, OpKind k, const Expr *e) {
  const OpInfo *op = op_info(k);
  ArgVal *args;
  int n = eval_args(c, s, e->args, &args);
  const char *names[2 + MAX_OP_PARAMS] = {"x", "b"};
  if (op->ninputs == 2)
    names[0] = "a";
  for (int i = 0; i < op->nparams; i++)
    names[op->ninputs + i] = op->params[i].name;
  int slot[2 + MAX_OP_PARAMS];
  int np = op->ninputs + op->nparams;
  if (!match_args(c, op->name, e->loc, args, n, names, np, slot))
    return none;
  Node node = {.op = k, .nin = op->ninputs, .loc = e->loc, .fwd = -1,
               .weight = {-1, -1}, .wgrad = {-1, -1}};
  Shape in[2];
  bool ok = true;
  for (int j = 0; j < op->ninputs; j++) {
    if (slot[j] < 0) {
      ierror(c, e->loc, "'%s' needs %d tensor input%s", op->name,
                 op->ninputs, op->ninputs > 1 ? "s" : "");
      diag_note(c->d, e->loc, "'%s' is called as %s", op->name,
                signature(c, op));
      return none;
    }
    Value v = args[slot[j]].v;
    if (!want_kind(c, v, V_TENSOR, args[slot[j]].loc,
              pool_printf(c->pool, "input '%s' of '%s'", names[j], op->name)))
      ok = false;
    else {
      node.in[j] = v.tensor;
      in[j] = c->g->tensors[v.tensor].shape;
    }
  }
  if (!ok || !op_attrs(c, op, e, args, slot, node.attr))
    return none;
  Shape out;
  const char *why = NULL;
  if (!op_infer(k, in, node.attr, &out, c->pool, &why)) {
    /* A rule's message that starts "name=" is about that argument: it is
     * reported there when the call gives it (conv's groups=). */
    for (int i = 0; i < op->nparams; i++) {
      size_t len = strlen(op->params[i].name);
      int a = slot[op->ninputs + i];
      if (a >= 0 && !strncmp(why, op->params[i].name, len) && why[len] == '=') {
        ierror(c, args[a].loc, "%s", why);
        return none;
      }
    }
    shape_error(c, e, why, node.in, args, slot, op->ninputs);
    return none;
  }
  if (!fits(c, e, out, in, node.attr, k))
    return none;
  if (c->g->nnodes >= MAX_NODES) {
    ierror(c, e->loc, "the network has more than %d ops", MAX_NODES);
    stop_now(c);
    return none;
  }
  node.path = child_path(c, s, op->name);
  int id = c->g->nnodes;
  node.out = graph_add_tensor(c->g, out, id, e->loc);
  Tensor *t = &c->g->tensors[node.out];
  t->label = node.path;
  if (op->view) /* the same bytes, seen reshaped */
    t->view_of = node.in[0];
  if (op->loss) { /* a scalar */
    t->kind = TK_LOSS;
    t->batched = false;
  }
  if (op->takes_labels)
    node.in[node.nin++] = c->g->labels;
  WeightShape ws[MAX_WEIGHTS_PER_NODE];
  int nw = op_weights(k, in, node.attr, ws);
  for (int j = 0; j < nw; j++) {
    const char *wname = pool_printf(c->pool, "%s.%s", node.path,
                                    ws[j].suffix);
    node.weight[j] = take_weight(c, c->ninst - 1, &ws[j], wname, id, e->loc);
    if (node.weight[j] < 0)
      return none;
    c->g->weights[node.weight[j]].uses++;
  }
  graph_add_node(c->g, &node);
  return (Value){.kind = V_TENSOR, .tensor = node.out};
}
