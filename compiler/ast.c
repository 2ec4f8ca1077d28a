/* ast.c: AST constructors (called by parse.y's actions) and `netc dump ast`,
 * which prints the tree back as canonical source: chains desugared into
 * calls, every binary operation parenthesized, every statement tagged with
 * its line:col. */
#include "netc.h"

Expr *new_expr(Pool *p, ExprKind kind, Loc loc) {
  Expr *e = pool_alloc(p, sizeof *e);
  e->kind = kind;
  e->loc = loc;
  return e;
}

Expr *new_binary(Pool *p, int op, Expr *l, Expr *r, Loc loc) {
  Expr *e = new_expr(p, r ? EX_BINARY : EX_UNARY, loc);
  e->op = op;
  e->lhs = l;
  e->rhs = r;
  e->depth = 1 + (r && r->depth > l->depth ? r->depth : l->depth);
  return e;
}

/* `lhs -> f(args)` is `f(lhs, args)`. */
Expr *chain_call(Pool *p, Expr *lhs, Expr *call) {
  Arg *a = pool_alloc(p, sizeof *a);
  a->value = lhs;
  a->loc = lhs->loc;
  if (call->args) {
    a->next = call->args;
    a->tail = call->args->tail;
  } else {
    a->tail = a;
  }
  call->args = a;
  if (lhs->depth + 1 > call->depth)
    call->depth = lhs->depth + 1;
  return call;
}

/* Each list keeps its last element in the head's `tail`, so appending is
 * O(1) however long a file is. */
#define APPEND(T)                                                             \
  if (!item)                                                                  \
    return list;                                                              \
  item->tail = item;                                                          \
  if (!list)                                                                  \
    return item;                                                              \
  list->tail->next = item;                                                    \
  list->tail = item;                                                          \
  return list;

Arg *append_arg(Arg *list, Arg *item) { APPEND(Arg) }
Stmt *append_stmt(Stmt *list, Stmt *item) { APPEND(Stmt) }
Param *append_param(Param *list, Param *item) { APPEND(Param) }
Decl *append_decl(Decl *list, Decl *item) { APPEND(Decl) }

const char *operator_text(int op) {
  static const char *const text[] = {
      [OPR_NEG] = "-",  [OPR_NOT] = "!",  [OPR_ADD] = "+",  [OPR_SUB] = "-",
      [OPR_MUL] = "*",  [OPR_DIV] = "/",  [OPR_MOD] = "%",  [OPR_EQ] = "==",
      [OPR_NE] = "!=",  [OPR_LT] = "<",   [OPR_LE] = "<=",  [OPR_GT] = ">",
      [OPR_GE] = ">=",  [OPR_AND] = "&&", [OPR_OR] = "||",
  };
  return text[op];
}

static void print_expr(FILE *out, const Expr *e);

static void print_args(FILE *out, const Arg *a) {
  for (; a; a = a->next) {
    if (a->name)
      fprintf(out, "%s=", a->name);
    print_expr(out, a->value);
    if (a->next)
      fputs(", ", out);
  }
}

static void print_expr(FILE *out, const Expr *e) {
  switch (e->kind) {
  case EX_INT:
    fprintf(out, "%lld", (long long)e->ival);
    break;
  case EX_BOOL:
    fputs(e->ival ? "true" : "false", out);
    break;
  case EX_REAL:
    fprintf(out, "%.17g", e->rval);
    break;
  case EX_SHAPE:
    for (int i = 0; i < e->ndims && i < MAX_SHAPE_DIMS; i++)
      fprintf(out, "%s%lld", i ? "x" : "", (long long)e->dims[i]);
    break;
  case EX_NAME:
    fputs(e->name, out);
    break;
  case EX_ATTR:
    print_expr(out, e->lhs);
    fprintf(out, ".%s", e->name);
    break;
  case EX_CALL:
    fprintf(out, "%s(", e->name);
    print_args(out, e->args);
    fputc(')', out);
    break;
  case EX_UNARY:
    fputs(operator_text(e->op), out);
    print_expr(out, e->lhs);
    break;
  case EX_BINARY:
    fputc('(', out);
    print_expr(out, e->lhs);
    fprintf(out, " %s ", operator_text(e->op));
    print_expr(out, e->rhs);
    fputc(')', out);
    break;
  }
}

static void print_stmts(FILE *out, const Stmt *s, int indent) {
  for (; s; s = s->next) {
    fprintf(out, "%*s", indent * 2, "");
    switch (s->kind) {
    case ST_ASSIGN:
      fprintf(out, "%s = ", s->name);
      print_expr(out, s->value);
      break;
    case ST_SHARED:
      fprintf(out, "shared %s = ", s->name);
      print_expr(out, s->value);
      break;
    case ST_RETURN:
      fputs("return ", out);
      print_expr(out, s->value);
      break;
    case ST_REPEAT:
    case ST_IF:
      fputs(s->kind == ST_IF ? "if " : "repeat ", out);
      print_expr(out, s->value);
      fprintf(out, " {  # %d:%d\n", s->loc.line, s->loc.col);
      print_stmts(out, s->body, indent + 1);
      if (s->else_body) {
        fprintf(out, "%*s} else {\n", indent * 2, "");
        print_stmts(out, s->else_body, indent + 1);
      }
      fprintf(out, "%*s}\n", indent * 2, "");
      continue;
    }
    fprintf(out, "  # %d:%d\n", s->loc.line, s->loc.col);
  }
}

void dump_ast(FILE *out, Diag *d, Decl *decls) {
  int file = -1;
  for (Decl *x = decls; x; x = x->next) {
    if (x->loc.file != file) {
      file = x->loc.file;
      fprintf(out, "# file %s\n", d->files[file].path);
    }
    if (x->kind == DECL_IMPORT) {
      fprintf(out, "import \"%s\"  # %d:%d\n", x->name, x->loc.line,
              x->loc.col);
      continue;
    }
    fprintf(out, "%s %s(", x->kind == DECL_BLOCK ? "block" : "network",
            x->name);
    for (Param *p = x->params; p; p = p->next) {
      fputs(p->name, out);
      if (p->def) {
        fputs(" = ", out);
        print_expr(out, p->def);
      }
      if (p->next)
        fputs(", ", out);
    }
    fprintf(out, ") {  # %d:%d\n", x->loc.line, x->loc.col);
    print_stmts(out, x->body, 1);
    fputs("}\n", out);
  }
}
