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
 * more, so one mistake gives one message.
 *
 * The work is in four files: this one (diagnostics, scopes, the network),
 * infer_expr.c (expressions and arguments), infer_ops.c (op calls and their
 * shape rules) and infer_blocks.c (block expansion, shared blocks,
 * statements). -D values are set on the AST before, in defines.c. */
#include <stdarg.h>
#include <string.h>

#include "infer.h"

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

void ierror(Ctx *c, Loc loc, const char *fmt, ...) {
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

/* After an error that ends elaboration (a limit), print its trace at once:
 * once stopped, no note is printed. */
void stop_now(Ctx *c) {
  flush_trace(c);
  c->d->stop = true;
}

bool return_error(Ctx *c, Loc loc, const char *name) {
  flush_trace(c);
  return diag_error(c->d, loc, "block '%s' ends without 'return'", name);
}

/* ---- scopes ------------------------------------------------------------ */

Binding *lookup_name(Scope *s, const char *name) {
  for (Binding *b = s->vars; b; b = b->next)
    if (!strcmp(b->name, name))
      return b;
  return NULL;
}

void bind_value(Ctx *c, Scope *s, const char *name, Value v, Loc loc) {
  if (v.kind == V_TENSOR && !c->g->tensors[v.tensor].name)
    c->g->tensors[v.tensor].name = name;
  Binding *b = lookup_name(s, name);
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
const char *child_path(Ctx *c, Scope *s, const char *base) {
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
const char *user_path(Ctx *c, Scope *s, const char *name) {
  const char *n = name;
  for (int i = 2; name_used(c, s, n); i++)
    n = pool_printf(c->pool, "%s_%d", name, i);
  return claim(c, s, n);
}

const Decl *find_block(Ctx *c, const char *name) {
  for (const Decl *x = c->decls; x; x = x->next)
    if (x->kind == DECL_BLOCK && !strcmp(x->name, name))
      return x;
  return NULL;
}

/* "did you mean" over ops, blocks and the names in scope. */
const char *suggest_name(Ctx *c, Scope *s, const char *name, bool calls) {
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

void hint_name(Ctx *c, Loc loc, const char *near) {
  if (near)
    diag_note(c->d, loc, "did you mean '%s'?", near);
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
  Value v = eval_expr(c, s, p->def);
  if (!strcmp(p->name, "input")) {
    if (!want_kind(c, v, V_SHAPE, p->def->loc, "'input'"))
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
    if (want_kind(c, v, V_INT, p->def->loc, "'classes'") && v.i < 1) {
      ierror(c, p->def->loc, "'classes' must be at least 1");
      v = none;
    }
    c->g->classes = v.kind == V_INT ? v.i : 0;
    *classes_loc = p->def->loc;
  }
  bind_value(c, s, p->name, v, p->loc);
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
  exec_stmts(&c, &s, net->body);
  if (d->errors)
    return finish(&c, false);
  check_loss(&c, net, &s, classes_loc);
  if (d->errors)
    return finish(&c, false);
  warn_unused(&c);
  g->nforward = g->nnodes;
  return finish(&c, true);
}
