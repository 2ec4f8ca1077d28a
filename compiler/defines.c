/* defines.c: -D name=value, set on the network's parameters before
 * elaboration (infer.c), as if the file had said name = value. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "netc.h"

/* The value of -D text as the literal the lexer would make of it: an
 * integer, a number (0.25, -1e-3), true or false, or a shape; NULL if it
 * is none of those. */
static Expr *define_value(Pool *pool, const char *text, Loc loc) {
  Expr *e;
  if (!strcmp(text, "true") || !strcmp(text, "false")) {
    e = new_expr(pool, EX_BOOL, loc);
    e->ival = text[0] == 't';
    return e;
  }
  if (strpbrk(text, ".eE") && !strchr(text, 'x')) {
    char *end;
    double r = strtod(text, &end);
    if (*end || end == text || !isfinite(r) || !strchr("-0123456789", *text))
      return NULL;
    e = new_expr(pool, EX_REAL, loc);
    e->rval = r;
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
                 "integer such as 10, a number such as 0.25, true or "
                 "false, or a shape such as 3x32x32)",
                 defs[i].name, defs[i].value, defs[i].value);
      continue;
    }
    p->def = e;
    p->defined = pool_printf(pool, "-D %s=%s", defs[i].name, defs[i].value);
  }
  return d->errors == errors;
}
