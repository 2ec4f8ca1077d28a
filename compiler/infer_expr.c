/* infer_expr.c: evaluating expressions (integers, booleans, shapes,
 * tensor fields, arithmetic that reports overflow) and binding call
 * arguments to parameters. */
#include <math.h>
#include <string.h>

#include "infer.h"

const char *kind_name(ValKind k) {
  static const char *const n[] = {"an erroneous value", "an integer",
                                  "a boolean", "a shape", "a tensor",
                                  "a shared block", "a block", "a number"};
  return n[k];
}

bool want_kind(Ctx *c, Value v, ValKind k, Loc loc, const char *what) {
  if (v.kind == k)
    return true;
  if (v.kind != V_NONE)
    ierror(c, loc, "%s must be %s, not %s", what, kind_name(k),
               kind_name(v.kind));
  return false;
}

static Value int_value(int64_t i) { return (Value){.kind = V_INT, .i = i}; }
static Value real_value(double r) { return (Value){.kind = V_REAL, .r = r}; }
static Value bool_value(bool b) { return (Value){.kind = V_BOOL, .i = b}; }

static Value attr(Ctx *c, Scope *s, const Expr *e) {
  Value base = eval_expr(c, s, e->lhs);
  if (!want_kind(c, base, V_TENSOR, e->lhs->loc, "the value before '.'"))
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

/* Arithmetic and comparisons with a real number (0.5, 1e-3) on either
 * side: an integer operand is converted; % stays integers' alone. */
static Value real_arith(Ctx *c, const Expr *e, double a, double b) {
  double r = 0;
  switch (e->op) {
  case OPR_ADD: r = a + b; break;
  case OPR_SUB: r = a - b; break;
  case OPR_MUL: r = a * b; break;
  case OPR_DIV:
    if (b == 0) {
      ierror(c, e->loc, "division by zero");
      return none;
    }
    r = a / b;
    break;
  case OPR_LT: return bool_value(a < b);
  case OPR_LE: return bool_value(a <= b);
  case OPR_GT: return bool_value(a > b);
  case OPR_GE: return bool_value(a >= b);
  case OPR_EQ: return bool_value(a == b);
  case OPR_NE: return bool_value(a != b);
  default:
    ierror(c, e->loc, "'%s' needs integers, not numbers",
           operator_text(e->op));
    return none;
  }
  if (!isfinite(r)) {
    ierror(c, e->loc, "'%s' overflows", operator_text(e->op));
    return none;
  }
  return real_value(r);
}

static bool numeric(Value v) { return v.kind == V_INT || v.kind == V_REAL; }
static double as_real(Value v) {
  return v.kind == V_REAL ? v.r : (double)v.i;
}

static Value binary(Ctx *c, Scope *s, const Expr *e) {
  Value a = eval_expr(c, s, e->lhs);
  if (e->op == OPR_AND || e->op == OPR_OR) {
    if (!want_kind(c, a, V_BOOL, e->lhs->loc, "an operand of '&&' or '||'"))
      return none;
    if (a.i == (e->op == OPR_OR)) /* short-circuit */
      return a;
    Value b = eval_expr(c, s, e->rhs);
    return want_kind(c, b, V_BOOL, e->rhs->loc, "an operand of '&&' or '||'")
               ? b : none;
  }
  Value b = eval_expr(c, s, e->rhs);
  if (a.kind == V_NONE || b.kind == V_NONE)
    return none;
  if ((a.kind == V_REAL || b.kind == V_REAL) && numeric(a) && numeric(b))
    return real_arith(c, e, as_real(a), as_real(b));
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
  Value a = eval_expr(c, s, e->lhs);
  if (e->op == OPR_NOT)
    return want_kind(c, a, V_BOOL, e->lhs->loc, "the operand of '!'")
               ? bool_value(!a.i) : none;
  if (a.kind == V_REAL)
    return real_value(-a.r);
  if (!want_kind(c, a, V_INT, e->lhs->loc, "the operand of '-'"))
    return none;
  if (a.i == INT64_MIN) {
    ierror(c, e->loc, "integer overflow in '-'");
    return none;
  }
  return int_value(-a.i);
}

bool over_budget(Ctx *c, Loc loc) {
  if (++c->steps < MAX_STEPS)
    return false;
  if (!c->d->stop) {
    ierror(c, loc, "the network takes more than %d evaluation steps (a "
                   "deep repeat or a recursive block?)", MAX_STEPS);
    stop_now(c);
  }
  return true;
}

Value eval_expr(Ctx *c, Scope *s, const Expr *e) {
  if (over_budget(c, e->loc))
    return none;
  switch (e->kind) {
  case EX_INT:
    return int_value(e->ival);
  case EX_BOOL:
    return bool_value(e->ival);
  case EX_REAL:
    return real_value(e->rval);
  case EX_SHAPE: {
    Value v = {.kind = V_SHAPE, .ndims = e->ndims};
    memcpy(v.dims, e->dims, sizeof v.dims);
    return v;
  }
  case EX_NAME: {
    Binding *b = lookup_name(s, e->name);
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
      hint_name(c, e->loc, suggest_name(c, s, e->name, false));
    return none;
  }
  case EX_ATTR:
    return attr(c, s, e);
  case EX_CALL:
    return eval_call(c, s, e);
  case EX_UNARY:
    return unary(c, s, e);
  case EX_BINARY:
    return binary(c, s, e);
  }
  return none;
}

/* ---- calls: arguments -------------------------------------------------- */

int eval_args(Ctx *c, Scope *s, const Arg *a, ArgVal **out) {
  int n = 0;
  for (const Arg *x = a; x; x = x->next)
    n++;
  ArgVal *v = pool_alloc(c->pool, sizeof(ArgVal) * (size_t)(n + 1));
  int i = 0;
  for (const Arg *x = a; x; x = x->next, i++)
    v[i] = (ArgVal){.name = x->name, .v = eval_expr(c, s, x->value),
                    .loc = x->loc, .expr = x->value};
  *out = v;
  return n;
}

/* Binds `n` argument values to the parameters `names[0..np)`: positional
 * arguments in order, then named ones. slot[i] is the argument index for
 * parameter i, or -1. Reports misplaced, unknown and repeated arguments. */
bool match_args(Ctx *c, const char *callee, Loc at, ArgVal *args,
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
      hint_name(c, args[i].loc, nearest_name(args[i].name, names, np));
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
