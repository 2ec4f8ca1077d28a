/* infer.c: elaboration and shape inference: AST -> graph IR.
 *
 * Requires: declarations parsed, imports loaded (load.c).
 * Guarantees: on success, the Graph holds every op of the network with
 * blocks expanded, repeats unrolled and shared blocks' weights shared, every
 * tensor's shape known, and graph_verify() holds.
 *
 * Evaluation is direct: a block call binds its arguments in a fresh scope
 * and runs its statements, so shapes are known while the block is expanded
 * and `if x.c != 4*width` can choose a projection shortcut. Names of layers
 * come from the call tree (stage2.bottleneck1.conv2), counted per scope. A
 * value that already caused an error is V_NONE, and using it reports nothing
 * more, so one mistake gives one message. */
#include <string.h>

#include "netc.h"

typedef enum {
  V_NONE, V_INT, V_BOOL, V_SHAPE, V_TENSOR, V_SHARED, V_BLOCK
} ValKind;

typedef struct Instance Instance;

typedef struct {
  ValKind kind;
  int64_t i;                    /* V_INT, V_BOOL */
  int64_t dims[MAX_SHAPE_DIMS]; /* V_SHAPE */
  int ndims;
  int tensor;                   /* V_TENSOR */
  Instance *inst;               /* V_SHARED */
  const Decl *block;            /* V_BLOCK: a block passed as an argument */
} Value;

typedef struct Binding {
  const char *name;
  Value v;
  Loc loc;
  struct Binding *next;
} Binding;

typedef struct Counter {
  const char *name;
  int n;     /* children generated from this base name */
  bool used; /* this name itself is taken */
  struct Counter *next;
} Counter;

typedef struct {
  Binding *vars;
  const char *path; /* "" for the network, "stage2.bottleneck1" inside */
  Counter *counters;
  bool returned;
  Value ret;
  Loc ret_loc;
} Scope;

/* A shared block: `shared b = bottleneck(width=64)`. Its first application
 * records the weights it creates; later ones replay them in order. */
struct Instance {
  const Decl *block;
  Arg *bound; /* the named arguments of the declaration, evaluated */
  Value *bound_vals;
  const char *path;
  Loc loc;
  Loc first_call; /* where it was first applied */
  int napply;
  int *weights;
  int nweights, cap;
  int cursor;
};

enum { MAX_TRACE = 4 };

typedef struct {
  Diag *d;
  Graph *g;
  Pool *pool;
  Decl *decls;
  Instance *inst[MAX_NESTING + 1];
  int ninst;
  int depth;
  int64_t steps;                 /* evaluation work so far, < MAX_STEPS */
  Loc calls[MAX_NESTING + 1];    /* the block calls being expanded */
  const char *callee[MAX_NESTING + 1];
  Loc trace[MAX_TRACE];          /* call notes owed to the last error */
  const char *trace_callee[MAX_TRACE];
  int ntrace, trace_more;
} Ctx;

/* An error inside a block is followed, after its own notes, by the calls
 * that led there ("in block 'basic' called here"). The trace is taken when
 * the error is reported and printed at the next diagnostic or at the end. */
static void flush_trace(Ctx *c) {
  for (int i = 0; i < c->ntrace; i++)
    diag_note(c->d, c->trace[i], "in block '%s', called here",
              c->trace_callee[i]);
  if (c->trace_more)
    diag_note(c->d, c->trace[c->ntrace - 1], "(and %d calls further out)",
              c->trace_more);
  c->ntrace = c->trace_more = 0;
}

/* After an error that ends elaboration (a limit), print its trace at once:
 * once stopped, no note is printed. */
static void stop_now(Ctx *c);

__attribute__((format(printf, 3, 4)))
static void ierror(Ctx *c, Loc loc, const char *fmt, ...) {
  flush_trace(c);
  va_list ap;
  va_start(ap, fmt);
  bool shown = diag_verror(c->d, loc, fmt, ap);
  va_end(ap);
  if (!shown)
    return;
  for (int i = c->depth - 1; i >= 0; i--) {
    if (c->ntrace == MAX_TRACE) {
      c->trace_more = i + 1;
      break;
    }
    c->trace[c->ntrace] = c->calls[i];
    c->trace_callee[c->ntrace++] = c->callee[i];
  }
}

static const Value none = {.kind = V_NONE};

static void stop_now(Ctx *c) {
  flush_trace(c);
  c->d->stop = true;
}

static bool return_error(Ctx *c, Loc loc, const char *name) {
  flush_trace(c);
  return diag_error(c->d, loc, "block '%s' ends without 'return'", name);
}




static const char *kind_name(ValKind k) {
  static const char *const n[] = {"an erroneous value", "an integer",
                                  "a boolean", "a shape", "a tensor",
                                  "a shared block", "a block"};
  return n[k];
}

static Value eval(Ctx *c, Scope *s, const Expr *e);
static void exec(Ctx *c, Scope *s, const Stmt *st);

/* ---- scopes ------------------------------------------------------------ */

static Binding *lookup(Scope *s, const char *name) {
  for (Binding *b = s->vars; b; b = b->next)
    if (!strcmp(b->name, name))
      return b;
  return NULL;
}

static void bind(Ctx *c, Scope *s, const char *name, Value v, Loc loc) {
  if (v.kind == V_TENSOR && !c->g->tensors[v.tensor].name)
    c->g->tensors[v.tensor].name = name;
  Binding *b = lookup(s, name);
  if (!b) {
    b = pool_alloc(c->pool, sizeof *b);
    b->name = name;
    b->next = s->vars;
    s->vars = b;
  }
  b->v = v;
  b->loc = loc;
}

static Counter *counter(Ctx *c, Scope *s, const char *name) {
  Counter *k = s->counters;
  while (k && strcmp(k->name, name))
    k = k->next;
  if (!k) {
    k = pool_alloc(c->pool, sizeof *k);
    k->name = name;
    k->next = s->counters;
    s->counters = k;
  }
  return k;
}

static const char *in_scope(Ctx *c, Scope *s, const char *name) {
  return *s->path ? pool_printf(c->pool, "%s.%s", s->path, name) : name;
}

/* Child names are unique in their scope: every name given out is marked
 * used, and a generated name skips used ones. */
static bool name_used(Ctx *c, Scope *s, const char *name) {
  Counter *k = s->counters;
  while (k && strcmp(k->name, name))
    k = k->next;
  (void)c;
  return k && k->used;
}

static const char *claim(Ctx *c, Scope *s, const char *name) {
  counter(c, s, name)->used = true;
  return in_scope(c, s, name);
}

/* The next child name in scope `s`: conv1, conv2, bottleneck1, ...; a base
 * that ends in a digit gets a '_' (b1_1), so names cannot collide. */
static const char *child_path(Ctx *c, Scope *s, const char *base) {
  Counter *k = counter(c, s, base);
  size_t len = strlen(base);
  const char *sep = len && base[len - 1] >= '0' && base[len - 1] <= '9'
                        ? "_" : "";
  for (;;) {
    const char *name = pool_printf(c->pool, "%s%s%d", base, sep, ++k->n);
    if (!name_used(c, s, name))
      return claim(c, s, name);
  }
}

/* A name chosen by the user (a shared block): made unique with _2, _3. */
static const char *user_path(Ctx *c, Scope *s, const char *name) {
  const char *n = name;
  for (int i = 2; name_used(c, s, n); i++)
    n = pool_printf(c->pool, "%s_%d", name, i);
  return claim(c, s, n);
}

static const Decl *find_block(Ctx *c, const char *name) {
  for (const Decl *x = c->decls; x; x = x->next)
    if (x->kind == DECL_BLOCK && !strcmp(x->name, name))
      return x;
  return NULL;
}

/* "did you mean" over ops, blocks and the names in scope. */
static const char *suggest(Ctx *c, Scope *s, const char *name, bool calls) {
  int n = 0, cap = OP_USER_COUNT + 16;
  const char **cands = pool_alloc(c->pool, sizeof(char *) * (size_t)cap);
  if (calls)
    for (int i = 0; i < OP_USER_COUNT; i++)
      cands[n++] = op_info((OpKind)i)->name;
  for (const Decl *x = c->decls; x; x = x->next)
    if (x->kind == DECL_BLOCK) {
      cands = pool_grow(c->pool, cands, sizeof(char *), n, &cap);
      cands[n++] = x->name;
    }
  for (Binding *b = s->vars; b; b = b->next)
    if (!calls || b->v.kind == V_SHARED || b->v.kind == V_BLOCK) {
      cands = pool_grow(c->pool, cands, sizeof(char *), n, &cap);
      cands[n++] = b->name;
    }
  return nearest_name(name, cands, n);
}

static void hint(Ctx *c, Loc loc, const char *near) {
  if (near)
    diag_note(c->d, loc, "did you mean '%s'?", near);
}

/* ---- expressions ------------------------------------------------------- */

static bool want(Ctx *c, Value v, ValKind k, Loc loc, const char *what) {
  if (v.kind == k)
    return true;
  if (v.kind != V_NONE)
    ierror(c, loc, "%s must be %s, not %s", what, kind_name(k),
               kind_name(v.kind));
  return false;
}

static Value int_value(int64_t i) { return (Value){.kind = V_INT, .i = i}; }
static Value bool_value(bool b) { return (Value){.kind = V_BOOL, .i = b}; }

static Value attr(Ctx *c, Scope *s, const Expr *e) {
  Value base = eval(c, s, e->lhs);
  if (!want(c, base, V_TENSOR, e->lhs->loc, "the value before '.'"))
    return none;
  Shape sh = c->g->tensors[base.tensor].shape;
  if (!strcmp(e->name, "c"))
    return int_value(sh.c);
  if (!strcmp(e->name, "h"))
    return int_value(sh.h);
  if (!strcmp(e->name, "w"))
    return int_value(sh.w);
  ierror(c, e->loc, "a tensor has no field '%s' (its fields are c, h "
                           "and w)", e->name);
  return none;
}

static Value arith(Ctx *c, const Expr *e, int64_t a, int64_t b) {
  int64_t r = 0;
  bool over = false;
  switch (e->op) {
  case OPR_ADD: over = __builtin_add_overflow(a, b, &r); break;
  case OPR_SUB: over = __builtin_sub_overflow(a, b, &r); break;
  case OPR_MUL: over = __builtin_mul_overflow(a, b, &r); break;
  case OPR_DIV:
  case OPR_MOD:
    if (b == 0) {
      ierror(c, e->loc, "division by zero");
      return none;
    }
    over = a == INT64_MIN && b == -1;
    if (!over)
      r = e->op == OPR_DIV ? a / b : a % b;
    break;
  case OPR_LT: return bool_value(a < b);
  case OPR_LE: return bool_value(a <= b);
  case OPR_GT: return bool_value(a > b);
  case OPR_GE: return bool_value(a >= b);
  }
  if (over) {
    ierror(c, e->loc, "integer overflow in '%s'",
               operator_text(e->op));
    return none;
  }
  return int_value(r);
}

static Value binary(Ctx *c, Scope *s, const Expr *e) {
  Value a = eval(c, s, e->lhs);
  if (e->op == OPR_AND || e->op == OPR_OR) {
    if (!want(c, a, V_BOOL, e->lhs->loc, "an operand of '&&' or '||'"))
      return none;
    if (a.i == (e->op == OPR_OR)) /* short-circuit */
      return a;
    Value b = eval(c, s, e->rhs);
    return want(c, b, V_BOOL, e->rhs->loc, "an operand of '&&' or '||'")
               ? b : none;
  }
  Value b = eval(c, s, e->rhs);
  if (a.kind == V_NONE || b.kind == V_NONE)
    return none;
  if (e->op == OPR_EQ || e->op == OPR_NE) {
    if (a.kind != b.kind || (a.kind != V_INT && a.kind != V_BOOL)) {
      ierror(c, e->loc, "'%s' compares integers or booleans, not %s "
                               "and %s", operator_text(e->op),
                 kind_name(a.kind), kind_name(b.kind));
      return none;
    }
    return bool_value((a.i == b.i) == (e->op == OPR_EQ));
  }
  if (a.kind != V_INT || b.kind != V_INT) {
    ierror(c, e->loc, "'%s' needs integers, not %s and %s",
               operator_text(e->op), kind_name(a.kind), kind_name(b.kind));
    if (e->op == OPR_ADD && a.kind == V_TENSOR && b.kind == V_TENSOR)
      diag_note(c->d, e->loc, "to add two tensors, write add(a, b)");
    return none;
  }
  return arith(c, e, a.i, b.i);
}

static Value unary(Ctx *c, Scope *s, const Expr *e) {
  Value a = eval(c, s, e->lhs);
  if (e->op == OPR_NOT)
    return want(c, a, V_BOOL, e->lhs->loc, "the operand of '!'")
               ? bool_value(!a.i) : none;
  if (!want(c, a, V_INT, e->lhs->loc, "the operand of '-'"))
    return none;
  if (a.i == INT64_MIN) {
    ierror(c, e->loc, "integer overflow in '-'");
    return none;
  }
  return int_value(-a.i);
}

static Value call(Ctx *c, Scope *s, const Expr *e);

static bool over_budget(Ctx *c, Loc loc) {
  if (++c->steps < MAX_STEPS)
    return false;
  if (!c->d->stop) {
    ierror(c, loc, "the network takes more than %d evaluation steps (a "
                   "deep repeat or a recursive block?)", MAX_STEPS);
    stop_now(c);
  }
  return true;
}

static Value eval(Ctx *c, Scope *s, const Expr *e) {
  if (over_budget(c, e->loc))
    return none;
  switch (e->kind) {
  case EX_INT:
    return int_value(e->ival);
  case EX_BOOL:
    return bool_value(e->ival);
  case EX_SHAPE: {
    Value v = {.kind = V_SHAPE, .ndims = e->ndims};
    memcpy(v.dims, e->dims, sizeof v.dims);
    return v;
  }
  case EX_NAME: {
    Binding *b = lookup(s, e->name);
    if (b)
      return b->v;
    const Decl *blk = find_block(c, e->name);
    if (blk) /* a block as a value: stage(x, bottleneck, 64) */
      return (Value){.kind = V_BLOCK, .block = blk};
    ierror(c, e->loc, "unknown name '%s'", e->name);
    if (op_lookup(e->name) >= 0)
      diag_note(c->d, e->loc, "'%s' is an op: call it, as in %s(x), or "
                              "chain it, as in x -> %s",
                e->name, e->name, e->name);
    else
      hint(c, e->loc, suggest(c, s, e->name, false));
    return none;
  }
  case EX_ATTR:
    return attr(c, s, e);
  case EX_CALL:
    return call(c, s, e);
  case EX_UNARY:
    return unary(c, s, e);
  case EX_BINARY:
    return binary(c, s, e);
  }
  return none;
}

/* ---- calls: arguments -------------------------------------------------- */

typedef struct {
  const char *name; /* NULL if positional */
  Value v;
  Loc loc;
  const Expr *expr; /* NULL for a shared block's bound argument */
} ArgVal;

static int eval_args(Ctx *c, Scope *s, const Arg *a, ArgVal **out) {
  int n = 0;
  for (const Arg *x = a; x; x = x->next)
    n++;
  ArgVal *v = pool_alloc(c->pool, sizeof(ArgVal) * (size_t)(n + 1));
  int i = 0;
  for (const Arg *x = a; x; x = x->next, i++)
    v[i] = (ArgVal){.name = x->name, .v = eval(c, s, x->value),
                    .loc = x->loc, .expr = x->value};
  *out = v;
  return n;
}

/* Binds `n` argument values to the parameters `names[0..np)`: positional
 * arguments in order, then named ones. slot[i] is the argument index for
 * parameter i, or -1. Reports misplaced, unknown and repeated arguments. */
static bool match_args(Ctx *c, const char *callee, Loc at, ArgVal *args,
                       int n, const char *const *names, int np, int *slot) {
  bool ok = true, named = false;
  for (int i = 0; i < np; i++)
    slot[i] = -1;
  int pos = 0;
  for (int i = 0; i < n; i++) {
    if (!args[i].name) {
      if (named) {
        ierror(c, args[i].loc, "positional argument after a named "
                                      "one in the call to '%s'", callee);
        ok = false;
      } else if (pos >= np) {
        ierror(c, args[i].loc, "too many arguments to '%s' (it takes "
                                      "%d)", callee, np);
        ok = false;
        break;
      } else {
        slot[pos++] = i;
      }
      continue;
    }
    named = true;
    int p = -1;
    for (int j = 0; j < np; j++)
      if (!strcmp(names[j], args[i].name))
        p = j;
    if (p < 0) {
      ierror(c, args[i].loc, "'%s' has no parameter '%s'", callee,
                 args[i].name);
      hint(c, args[i].loc, nearest_name(args[i].name, names, np));
      ok = false;
    } else if (slot[p] >= 0) {
      /* A shared block's bound arguments come last: then the call is at
       * fault, and the binding is the other place. */
      bool bound = !args[i].expr;
      ierror(c, bound ? args[slot[p]].loc : args[i].loc,
             "parameter '%s' of '%s' is given twice", args[i].name, callee);
      diag_note(c->d, bound ? args[i].loc : args[slot[p]].loc,
                bound ? "already bound by the shared declaration here"
                      : "first given here");
      ok = false;
    } else {
      slot[p] = i;
    }
  }
  (void)at;
  return ok;
}

/* ---- calls: ops -------------------------------------------------------- */

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
      attr[i] = p->def_from >= 0 ? attr[p->def_from] : p->def;
      continue;
    }
    Value v = args[a].v;
    const char *what = pool_printf(c->pool, "argument '%s' of '%s'",
                                   p->name, op->name);
    if (!want(c, v, p->is_bool ? V_BOOL : V_INT, args[a].loc, what)) {
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

static Value apply_op(Ctx *c, Scope *s, OpKind k, const Expr *e) {
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
    if (!want(c, v, V_TENSOR, args[slot[j]].loc,
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

/* ---- calls: blocks ----------------------------------------------------- */

/* Binds a block's parameters in the new scope `inner`: call arguments
 * first, then the named arguments of a shared declaration, then defaults,
 * which are evaluated in `inner` so they can use earlier parameters. */
static bool bind_params(Ctx *c, Scope *inner, const Decl *blk, const Expr *e,
                        ArgVal *args, int n) {
  int np = 0;
  for (const Param *p = blk->params; p; p = p->next)
    np++;
  const char **names = pool_alloc(c->pool, sizeof(char *) * (size_t)(np + 1));
  int *slot = pool_alloc(c->pool, sizeof(int) * (size_t)(np + 1));
  int i = 0;
  for (const Param *p = blk->params; p; p = p->next)
    names[i++] = p->name;
  if (!match_args(c, blk->name, e->loc, args, n, names, np, slot))
    return false;
  bool ok = true;
  i = 0;
  for (const Param *p = blk->params; p; p = p->next, i++) {
    Value v;
    if (slot[i] >= 0) {
      v = args[slot[i]].v;
    } else if (p->def) {
      v = eval(c, inner, p->def);
    } else {
      ierror(c, e->loc, "missing argument '%s' in the call to block "
                               "'%s'", p->name, blk->name);
      diag_note(c->d, p->loc, "'%s' is a parameter of '%s', declared here",
                p->name, blk->name);
      ok = false;
      v = none;
    }
    bind(c, inner, p->name, v, p->loc);
  }
  return ok;
}

static Value apply_block(Ctx *c, Scope *s, const Decl *blk, const Expr *e,
                         Instance *inst) {
  if (c->depth >= MAX_NESTING) {
    ierror(c, e->loc, "block calls nested deeper than %d (does '%s' "
                             "call itself?)", MAX_NESTING, blk->name);
    stop_now(c);
    return none;
  }
  ArgVal *args;
  int n = eval_args(c, s, e->args, &args);
  if (inst) { /* the shared declaration's arguments come after the call's */
    int m = 0;
    for (const Arg *a = inst->bound; a; a = a->next)
      m++;
    ArgVal *all = pool_alloc(c->pool, sizeof(ArgVal) * (size_t)(n + m + 1));
    memcpy(all, args, sizeof(ArgVal) * (size_t)n);
    int j = 0;
    for (const Arg *a = inst->bound; a; a = a->next, j++)
      all[n + j] = (ArgVal){.name = a->name, .v = inst->bound_vals[j],
                            .loc = a->loc};
    args = all;
    n += m;
  }
  Scope inner = {0};
  if (inst) {
    if (++inst->napply == 1)
      inst->first_call = e->loc;
    inst->cursor = 0;
    inner.path = inst->napply == 1
                     ? inst->path
                     : pool_printf(c->pool, "%s@%d", inst->path,
                                   inst->napply);
  } else {
    inner.path = child_path(c, s, blk->name);
  }
  if (!bind_params(c, &inner, blk, e, args, n))
    return none;
  if (inst)
    c->inst[c->ninst++] = inst;
  c->calls[c->depth] = e->loc;
  c->callee[c->depth] = blk->name;
  c->depth++;
  exec(c, &inner, blk->body);
  c->depth--;
  if (inst) {
    c->ninst--;
    if (inst->napply > 1 && inst->cursor != inst->nweights && !c->d->errors) {
      ierror(c, e->loc, "this application of shared block '%s' creates "
                        "fewer weights than its first", inst->path);
      diag_note(c->d, inst->first_call, "the first application of '%s'",
                inst->path);
    }
  }
  if (!inner.returned) {
    if (!c->d->stop && return_error(c, blk->loc, blk->name))
      diag_note(c->d, e->loc, "called here");
    return none;
  }
  return inner.ret;
}

static Value call(Ctx *c, Scope *s, const Expr *e) {
  Binding *b = lookup(s, e->name);
  if (b && b->v.kind == V_SHARED)
    return apply_block(c, s, b->v.inst->block, e, b->v.inst);
  if (b && b->v.kind == V_BLOCK)
    return apply_block(c, s, b->v.block, e, NULL);
  if (b && b->v.kind != V_NONE) {
    ierror(c, e->loc, "'%s' is %s, not an op or a block", e->name,
               kind_name(b->v.kind));
    return none;
  }
  if (b)
    return none;
  int k = op_lookup(e->name);
  if (k >= 0)
    return apply_op(c, s, (OpKind)k, e);
  const Decl *blk = find_block(c, e->name);
  if (blk)
    return apply_block(c, s, blk, e, NULL);
  ierror(c, e->loc, "unknown op or block '%s'", e->name);
  hint(c, e->loc, suggest(c, s, e->name, true));
  return none;
}

/* ---- statements -------------------------------------------------------- */

static void shared_decl(Ctx *c, Scope *s, const Stmt *st) {
  const Expr *e = st->value;
  Binding *named = lookup(s, e->name);
  const Decl *blk = named && named->v.kind == V_BLOCK ? named->v.block
                                                     : find_block(c, e->name);
  if (!blk) {
    if (op_lookup(e->name) >= 0)
      ierror(c, e->loc, "'shared' applies to blocks; '%s' is an op "
                               "(wrap it in a block to share it)", e->name);
    else {
      ierror(c, e->loc, "unknown block '%s'", e->name);
      hint(c, e->loc, suggest(c, s, e->name, true));
    }
    bind(c, s, st->name, none, st->loc);
    return;
  }
  Instance *in = pool_alloc(c->pool, sizeof *in);
  *in = (Instance){.block = blk, .bound = e->args, .loc = st->loc,
                   .path = user_path(c, s, st->name)};
  ArgVal *args;
  int n = eval_args(c, s, e->args, &args);
  in->bound_vals = pool_alloc(c->pool, sizeof(Value) * (size_t)(n + 1));
  for (int i = 0; i < n; i++) {
    if (!args[i].name) {
      ierror(c, args[i].loc, "a shared block binds named arguments "
                                    "only (write name=value)");
      bind(c, s, st->name, none, st->loc);
      return;
    }
    in->bound_vals[i] = args[i].v;
  }
  bind(c, s, st->name, (Value){.kind = V_SHARED, .inst = in}, st->loc);
}

static void exec_one(Ctx *c, Scope *s, const Stmt *st) {
  switch (st->kind) {
  case ST_ASSIGN:
    bind(c, s, st->name, eval(c, s, st->value), st->loc);
    break;
  case ST_SHARED:
    shared_decl(c, s, st);
    break;
  case ST_RETURN:
    s->ret = eval(c, s, st->value);
    s->ret_loc = st->loc;
    s->returned = true;
    break;
  case ST_REPEAT: {
    Value n = eval(c, s, st->value);
    if (!want(c, n, V_INT, st->value->loc, "a repeat count"))
      break;
    if (n.i < 0 || n.i > MAX_REPEAT) {
      ierror(c, st->value->loc, "repeat count %lld is outside "
                                       "0..%d", (long long)n.i, MAX_REPEAT);
      break;
    }
    for (int64_t i = 0; i < n.i && !s->returned && !c->d->stop; i++)
      exec(c, s, st->body);
    break;
  }
  case ST_IF: {
    Value v = eval(c, s, st->value);
    if (want(c, v, V_BOOL, st->value->loc, "an 'if' condition"))
      exec(c, s, v.i ? st->body : st->else_body);
    break;
  }
  }
}

static void exec(Ctx *c, Scope *s, const Stmt *st) {
  for (; st && !c->d->stop; st = st->next) {
    if (s->returned || over_budget(c, st->loc))
      return;
    exec_one(c, s, st);
  }
}

/* ---- declarations and the network -------------------------------------- */

/* Static checks over every declaration, before anything runs. */
static void check_stmts(Ctx *c, const Stmt *st) {
  for (; st; st = st->next) {
    if (st->kind == ST_RETURN && st->next)
      ierror(c, st->next->loc, "statement after 'return' is never "
                                      "run");
    check_stmts(c, st->body);
    check_stmts(c, st->else_body);
  }
}

static void check_decls(Ctx *c) {
  for (const Decl *x = c->decls; x; x = x->next) {
    if (x->kind == DECL_IMPORT)
      continue;
    check_stmts(c, x->body);
    for (const Param *p = x->params; p; p = p->next)
      for (const Param *q = p->next; q; q = q->next)
        if (!strcmp(p->name, q->name))
          ierror(c, q->loc, "parameter '%s' is declared twice",
                     q->name);
    if (x->kind != DECL_BLOCK)
      continue;
    if (op_lookup(x->name) >= 0)
      ierror(c, x->loc, "block '%s' has the name of a built-in op",
                 x->name);
    const Decl *first = find_block(c, x->name);
    if (first != x) {
      ierror(c, x->loc, "block '%s' is defined twice", x->name);
      diag_note(c->d, first->loc, "first defined here");
    }
  }
}

/* The one network of the main file (file 0). */
static const Decl *find_network(Ctx *c) {
  const Decl *net = NULL;
  for (const Decl *x = c->decls; x; x = x->next) {
    if (x->kind != DECL_NETWORK || x->loc.file != 0)
      continue;
    if (net) {
      ierror(c, x->loc, "a second network in one file");
      diag_note(c->d, net->loc, "the first is '%s', here", net->name);
    } else {
      net = x;
    }
  }
  if (!net)
    ierror(c, (Loc){0, 0, 0}, "no 'network' in this file (it needs "
                                     "one, e.g. network name(input = "
                                     "3x64x64, classes = 200) { ... })");
  return net;
}

/* ---- -D name=value ------------------------------------------------------ */

/* The value of -D text as the literal the lexer would make of it: an
 * integer, true or false, or a shape; NULL if it is none of those. */
static Expr *define_value(Pool *pool, const char *text, Loc loc) {
  Expr *e;
  if (!strcmp(text, "true") || !strcmp(text, "false")) {
    e = new_expr(pool, EX_BOOL, loc);
    e->ival = text[0] == 't';
    return e;
  }
  int64_t dims[MAX_SHAPE_DIMS];
  int n = 0;
  const char *p = text;
  bool neg = *p == '-';
  p += neg;
  for (;;) {
    if (*p < '0' || *p > '9' || n == MAX_SHAPE_DIMS)
      return NULL;
    int64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++)
      if (__builtin_mul_overflow(v, 10, &v) ||
          __builtin_add_overflow(v, *p - '0', &v))
        return NULL;
    dims[n++] = v;
    if (!*p)
      break;
    if (*p++ != 'x')
      return NULL;
  }
  if (n == 1) {
    e = new_expr(pool, EX_INT, loc);
    e->ival = neg ? -dims[0] : dims[0];
    return e;
  }
  if (neg)
    return NULL;
  e = new_expr(pool, EX_SHAPE, loc);
  e->ndims = n;
  for (int i = 0; i < n; i++) {
    if (dims[i] > MAX_DIM)
      return NULL;
    e->dims[i] = dims[i];
  }
  return e;
}

bool apply_defines(Diag *d, Pool *pool, Decl *decls, const Define *defs,
                   int n) {
  Decl *net = NULL;
  for (Decl *x = decls; x; x = x->next)
    if (x->kind == DECL_NETWORK && x->loc.file == 0 && !net)
      net = x;
  if (!net) {
    if (n)
      diag_error(d, (Loc){0, 0, 0}, "-D %s=%s: this file has no network "
                 "to set it on", defs[0].name, defs[0].value);
    return n == 0;
  }
  int errors = d->errors;
  for (int i = 0; i < n; i++) {
    Param *p = net->params;
    while (p && strcmp(p->name, defs[i].name))
      p = p->next;
    if (!p) {
      const char *cands[64];
      int nc = 0;
      char *list = pool_strdup(pool, "");
      for (Param *q = net->params; q && nc < 64; q = q->next) {
        cands[nc++] = q->name;
        list = pool_printf(pool, "%s%s%s", list, nc > 1 ? ", " : "", q->name);
      }
      const char *near = nearest_name(defs[i].name, cands, nc);
      diag_error(d, net->loc, "-D %s: network '%s' has no parameter '%s' "
                 "(%s%s%sits parameters: %s)", defs[i].name, net->name,
                 defs[i].name, near ? "did you mean '" : "", near ? near : "",
                 near ? "'? " : "", nc ? list : "none");
      continue;
    }
    Expr *e = define_value(pool, defs[i].value, p->loc);
    if (!e) {
      diag_error(d, net->loc, "-D %s=%s: '%s' is not a value (write an "
                 "integer such as 10, true or false, or a shape such as "
                 "3x32x32)", defs[i].name, defs[i].value, defs[i].value);
      continue;
    }
    p->def = e;
    p->defined = pool_printf(pool, "-D %s=%s", defs[i].name, defs[i].value);
  }
  return d->errors == errors;
}

/* Binds one network parameter: `input` (a CxHxW shape) becomes the input
 * tensor, `classes` an integer; others are constants with their defaults. */
static void bind_network_param(Ctx *c, Scope *s, const Param *p,
                               Loc *classes_loc) {
  if (!p->def) {
    ierror(c, p->loc, "network parameter '%s' needs a value (write "
                      "%s = ..., or give one with -D %s=...)", p->name,
           p->name, p->name);
    return;
  }
  Value v = eval(c, s, p->def);
  if (!strcmp(p->name, "input")) {
    if (!want(c, v, V_SHAPE, p->def->loc, "'input'"))
      return;
    if (v.ndims != 3 || v.dims[0] < 1 || v.dims[1] < 1 || v.dims[2] < 1) {
      ierror(c, p->def->loc, "'input' must be a shape CxHxW such "
                                    "as 3x64x64");
      return;
    }
    Shape sh = {v.dims[0], v.dims[1], v.dims[2]};
    c->g->input = graph_add_tensor(c->g, sh, -1, p->loc);
    c->g->tensors[c->g->input].kind = TK_INPUT;
    c->g->tensors[c->g->input].label = "input";
    /* One int32 class index per image. */
    c->g->labels = graph_add_tensor(c->g, (Shape){1, 1, 1}, -1, p->loc);
    c->g->tensors[c->g->labels].kind = TK_INPUT;
    c->g->tensors[c->g->labels].is_int = true;
    c->g->tensors[c->g->labels].label = "labels";
    v = (Value){.kind = V_TENSOR, .tensor = c->g->input};
  } else if (!strcmp(p->name, "classes")) {
    if (want(c, v, V_INT, p->def->loc, "'classes'") && v.i < 1) {
      ierror(c, p->def->loc, "'classes' must be at least 1");
      v = none;
    }
    c->g->classes = v.kind == V_INT ? v.i : 0;
    *classes_loc = p->def->loc;
  }
  bind(c, s, p->name, v, p->loc);
}

/* Binds the network's parameters, in order. */
static bool network_params(Ctx *c, Scope *s, const Decl *net,
                           Loc *classes_loc) {
  bool have_input = false, have_classes = false;
  for (const Param *p = net->params; p; p = p->next) {
    int errors = c->d->errors;
    bind_network_param(c, s, p, classes_loc);
    /* A value from the command line is wrong there, not in the file. */
    if (c->d->errors > errors && p->defined)
      diag_note(c->d, p->loc, "the value comes from the command line: %s",
                p->defined);
    have_input |= !strcmp(p->name, "input");
    have_classes |= !strcmp(p->name, "classes");
  }
  if (!have_input)
    ierror(c, net->loc, "network '%s' declares no input (add a "
                               "parameter such as input = 3x64x64)",
               net->name);
  if (!have_classes)
    ierror(c, net->loc, "network '%s' declares no classes (add a "
                               "parameter such as classes = 200)", net->name);
  return have_input && have_classes && !c->d->errors;
}

/* The network returns its loss: softmax_cross_entropy over `classes`. */
static void check_loss(Ctx *c, const Decl *net, Scope *s, Loc classes_loc) {
  Graph *g = c->g;
  if (!s->returned) {
    ierror(c, net->loc, "network '%s' does not return its loss (end "
                               "it with: return softmax_cross_entropy(x))",
               net->name);
    return;
  }
  Value v = s->ret;
  if (v.kind == V_NONE)
    return;
  int p = v.kind == V_TENSOR ? g->tensors[v.tensor].producer : -1;
  if (p < 0 || !op_info(g->nodes[p].op)->loss) {
    ierror(c, s->ret_loc, "a network must return a "
                                 "softmax_cross_entropy loss");
    return;
  }
  g->loss = v.tensor;
  const Tensor *logits = &g->tensors[g->nodes[p].in[0]];
  if (logits->shape.c != g->classes) {
    ierror(c, g->nodes[p].loc, "the loss is over %lld logits, but the "
                                      "network has %lld classes",
               (long long)logits->shape.c, (long long)g->classes);
    diag_note(c->d, classes_loc, "classes declared here");
    diag_note(c->d, logits->loc, "the logits are computed here");
  }
}

/* Every value but the loss should feed something: a dead branch is
 * usually a typo (adding `y` where `sc` was meant). */
static void warn_unused(Ctx *c) {
  Graph *g = c->g;
  Pool tmp = {0};
  int *uses = pool_alloc(&tmp, sizeof(int) * (size_t)(g->ntensors + 1));
  for (int i = 0; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i].nin; j++)
      uses[g->nodes[i].in[j]]++;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->out != g->loss && !uses[n->out])
      diag_warning(c->d, n->loc, "the result of '%s' (%s) is never used",
                   op_info(n->op)->name, n->path);
  }
  pool_free(&tmp);
}

static bool finish(Ctx *c, bool ok) {
  flush_trace(c);
  return ok && !c->d->errors;
}

bool infer_network(Diag *d, Decl *decls, Graph *g) {
  Ctx c = {.d = d, .g = g, .pool = g->pool, .decls = decls};
  g->input = g->loss = g->labels = -1;
  check_decls(&c);
  const Decl *net = find_network(&c);
  if (!net || d->errors)
    return false;
  g->name = net->name;
  Scope s = {.path = ""};
  Loc classes_loc = net->loc;
  if (!network_params(&c, &s, net, &classes_loc))
    return false;
  exec(&c, &s, net->body);
  if (d->errors)
    return finish(&c, false);
  check_loss(&c, net, &s, classes_loc);
  if (d->errors)
    return finish(&c, false);
  warn_unused(&c);
  g->nforward = g->nnodes;
  return finish(&c, true);
}
