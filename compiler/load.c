/* load.c: reads a .net file and everything it imports, and runs the front
 * end (parse -> infer -> verify) behind one call.
 *
 * An import path is relative to the importing file's directory. Each file
 * is loaded once (by its real path), so diamonds and cycles are harmless. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "netc.h"

static const char *dir_of(Pool *p, const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? pool_strndup(p, path, (size_t)(slash - path + 1)) : "";
}

static bool already_loaded(Diag *d, const char **real, const char *path) {
  char buf[PATH_MAX];
  if (!realpath(path, buf))
    return false;
  for (int i = 0; i < d->nfiles; i++)
    if (real[i] && !strcmp(real[i], buf))
      return true;
  real[d->nfiles] = pool_strdup(d->pool, buf);
  return false;
}

Decl *load_program(Diag *d, Pool *pool, const char *path) {
  const char *real[MAX_IMPORTS + 1] = {0};
  already_loaded(d, real, path);
  if (diag_load(d, path, (Loc){-1, 0, 0}) < 0)
    return NULL;
  Decl *all = NULL;
  /* Files are parsed in load order; each parse may load more files. */
  for (int f = 0; f < d->nfiles && !d->stop; f++) {
    Decl *decls = parse_file(d, pool, f);
    for (Decl *x = decls; x; x = x->next) {
      if (x->kind != DECL_IMPORT)
        continue;
      const char *p = x->name[0] == '/'
                          ? x->name
                          : pool_printf(pool, "%s%s",
                                        dir_of(pool, d->files[f].path),
                                        x->name);
      if (!already_loaded(d, real, p))
        diag_load(d, p, x->loc);
    }
    if (decls) {
      Decl *tail = decls->tail;
      tail->next = all;
      decls->tail = all ? all->tail : tail;
      all = decls;
    }
  }
  return all;
}

int compile_front(Diag *d, Pool *pool, const char *path, Graph *g,
                  Decl **decls_out) {
  memset(g, 0, sizeof *g);
  g->pool = pool;
  g->input = g->loss = -1;
  Decl *decls = load_program(d, pool, path);
  if (decls_out)
    *decls_out = decls;
  if (d->errors)
    return 1;
  if (!infer_network(d, decls, g))
    return 1;
  if (graph_verify(g, stderr)) {
    fprintf(stderr, "netc: internal error: the graph of %s fails "
                    "verification\n", path);
    return 1;
  }
  return 0;
}
