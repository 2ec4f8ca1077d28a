/* infer_blocks.c: block expansion. A block call binds its arguments in a
 * fresh scope and runs the block's statements there; a shared block's
 * later applications replay the weights of its first. */
#include <string.h>

#include "infer.h"

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
      v = eval_expr(c, inner, p->def);
    } else {
      ierror(c, e->loc, "missing argument '%s' in the call to block "
                               "'%s'", p->name, blk->name);
      diag_note(c->d, p->loc, "'%s' is a parameter of '%s', declared here",
                p->name, blk->name);
      ok = false;
      v = none;
    }
    bind_value(c, inner, p->name, v, p->loc);
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
  exec_stmts(c, &inner, blk->body);
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

Value eval_call(Ctx *c, Scope *s, const Expr *e) {
  Binding *b = lookup_name(s, e->name);
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
  hint_name(c, e->loc, suggest_name(c, s, e->name, true));
  return none;
}

/* ---- statements -------------------------------------------------------- */

static void shared_decl(Ctx *c, Scope *s, const Stmt *st) {
  const Expr *e = st->value;
  Binding *named = lookup_name(s, e->name);
  const Decl *blk = named && named->v.kind == V_BLOCK ? named->v.block
                                                     : find_block(c, e->name);
  if (!blk) {
    if (op_lookup(e->name) >= 0)
      ierror(c, e->loc, "'shared' applies to blocks; '%s' is an op "
                               "(wrap it in a block to share it)", e->name);
    else {
      ierror(c, e->loc, "unknown block '%s'", e->name);
      hint_name(c, e->loc, suggest_name(c, s, e->name, true));
    }
    bind_value(c, s, st->name, none, st->loc);
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
      bind_value(c, s, st->name, none, st->loc);
      return;
    }
    in->bound_vals[i] = args[i].v;
  }
  bind_value(c, s, st->name, (Value){.kind = V_SHARED, .inst = in}, st->loc);
}

static void exec_one(Ctx *c, Scope *s, const Stmt *st) {
  switch (st->kind) {
  case ST_ASSIGN:
    bind_value(c, s, st->name, eval_expr(c, s, st->value), st->loc);
    break;
  case ST_SHARED:
    shared_decl(c, s, st);
    break;
  case ST_RETURN:
    s->ret = eval_expr(c, s, st->value);
    s->ret_loc = st->loc;
    s->returned = true;
    break;
  case ST_REPEAT: {
    Value n = eval_expr(c, s, st->value);
    if (!want_kind(c, n, V_INT, st->value->loc, "a repeat count"))
      break;
    if (n.i < 0 || n.i > MAX_REPEAT) {
      ierror(c, st->value->loc, "repeat count %lld is outside "
                                       "0..%d", (long long)n.i, MAX_REPEAT);
      break;
    }
    for (int64_t i = 0; i < n.i && !s->returned && !c->d->stop; i++)
      exec_stmts(c, s, st->body);
    break;
  }
  case ST_IF: {
    Value v = eval_expr(c, s, st->value);
    if (want_kind(c, v, V_BOOL, st->value->loc, "an 'if' condition"))
      exec_stmts(c, s, v.i ? st->body : st->else_body);
    break;
  }
  }
}

void exec_stmts(Ctx *c, Scope *s, const Stmt *st) {
  for (; st && !c->d->stop; st = st->next) {
    if (s->returned || over_budget(c, st->loc))
      return;
    exec_one(c, s, st);
  }
}
