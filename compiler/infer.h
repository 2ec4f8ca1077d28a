/* infer.h: what the files of elaboration share (infer.c, infer_expr.c,
 * infer_ops.c, infer_blocks.c): the values an expression evaluates to, the
 * scopes that bind them, and the one context of a run. Private to those
 * files; the rest of the compiler calls infer_network() (netc.h). */
#ifndef NETC_INFER_H
#define NETC_INFER_H

#include "netc.h"

typedef enum {
  V_NONE, V_INT, V_BOOL, V_SHAPE, V_TENSOR, V_SHARED, V_BLOCK, V_REAL
} ValKind;

typedef struct Instance Instance;

typedef struct {
  ValKind kind;
  int64_t i;                    /* V_INT, V_BOOL */
  double r;                     /* V_REAL */
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

/* An evaluated call argument. */
typedef struct {
  const char *name; /* NULL if positional */
  Value v;
  Loc loc;
  const Expr *expr; /* NULL for a shared block's bound argument */
} ArgVal;

/* The value of an expression that already caused an error: using it
 * reports nothing more. */
static const Value none = {.kind = V_NONE};

/* infer.c: diagnostics with the call trace, scopes and names. */
__attribute__((format(printf, 3, 4)))
void ierror(Ctx *c, Loc loc, const char *fmt, ...);
void stop_now(Ctx *c);
bool return_error(Ctx *c, Loc loc, const char *name);
Binding *lookup_name(Scope *s, const char *name);
void bind_value(Ctx *c, Scope *s, const char *name, Value v, Loc loc);
const char *child_path(Ctx *c, Scope *s, const char *base);
const char *user_path(Ctx *c, Scope *s, const char *name);
const Decl *find_block(Ctx *c, const char *name);
const char *suggest_name(Ctx *c, Scope *s, const char *name, bool calls);
void hint_name(Ctx *c, Loc loc, const char *near);

/* infer_expr.c: expressions and call arguments. */
const char *kind_name(ValKind k);
bool want_kind(Ctx *c, Value v, ValKind k, Loc loc, const char *what);
bool over_budget(Ctx *c, Loc loc);
Value eval_expr(Ctx *c, Scope *s, const Expr *e);
int eval_args(Ctx *c, Scope *s, const Arg *a, ArgVal **out);
bool match_args(Ctx *c, const char *callee, Loc at, ArgVal *args, int n,
                const char *const *names, int np, int *slot);

/* infer_ops.c: a call of a built-in op, through its shape rule. */
Value apply_op(Ctx *c, Scope *s, OpKind k, const Expr *e);

/* infer_blocks.c: block calls, shared blocks and statements. */
Value eval_call(Ctx *c, Scope *s, const Expr *e);
void exec_stmts(Ctx *c, Scope *s, const Stmt *st);

#endif
