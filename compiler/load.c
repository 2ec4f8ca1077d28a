/* load.c: reads a .net file and everything it imports, and runs the front
 * end (parse -> infer -> autodiff, verifying after each) behind one call.
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

/* Joins `dir` and `rel` and folds "x/../" and "./" lexically, so messages
 * show models/blocks.net rather than tests/../models/blocks.net. */
static const char *join_path(Pool *p, const char *dir, const char *rel) {
  char *path = pool_printf(p, "%s%s", dir, rel);
  const char *parts[PATH_MAX / 2];
  int n = 0, up = 0; /* up: leading ".." that cannot fold */
  bool abs = path[0] == '/';
  for (char *tok = strtok(path, "/"); tok; tok = strtok(NULL, "/")) {
    if (!strcmp(tok, "."))
      continue;
    if (!strcmp(tok, "..")) {
      if (n > up)
        n--;
      else if (!abs)
        parts[n++] = tok, up++;
      continue;
    }
    if (n < PATH_MAX / 2)
      parts[n++] = tok;
  }
  char *out = pool_alloc(p, strlen(dir) + strlen(rel) + 2);
  char *o = out;
  if (abs)
    *o++ = '/';
  for (int i = 0; i < n; i++)
    o += sprintf(o, "%s%s", i ? "/" : "", parts[i]);
  return out;
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

/* Parses file 0 (already in `d`) and everything it imports. */
static Decl *load_imports(Diag *d, Pool *pool, const char **real) {
  Decl *all = NULL;
  /* Files are parsed in load order; each parse may load more files. */
  for (int f = 0; f < d->nfiles && !d->stop; f++) {
    Decl *decls = parse_file(d, pool, f);
    for (Decl *x = decls; x; x = x->next) {
      if (x->kind != DECL_IMPORT)
        continue;
      if (!x->name) { /* its string was unterminated: already reported */
        x->name = "";
        continue;
      }
      if (!*x->name) {
        diag_error(d, x->loc, "empty import path");
        continue;
      }
      const char *p = join_path(
          pool, x->name[0] == '/' ? "" : dir_of(pool, d->files[f].path),
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

Decl *load_program(Diag *d, Pool *pool, const char *path) {
  const char *real[MAX_IMPORTS + 1] = {0};
  already_loaded(d, real, path);
  if (diag_load(d, path, (Loc){-1, 0, 0}) < 0)
    return NULL;
  return load_imports(d, pool, real);
}

/* Every tensor of a training step, side by side, must stay under
 * MAX_STEP_BYTES: beyond it no machine could run the step, and sums of
 * byte sizes (plan, codegen) could overflow. */
static int step_fits(Diag *d, const Graph *g) {
  int64_t total = 0;
  for (int t = 0; t < g->ntensors; t++)
    if (__builtin_add_overflow(total, tensor_bytes(g, t), &total) ||
        total > MAX_STEP_BYTES) {
      diag_error(d, g->tensors[g->input].loc,
                 "a training step of '%s' at batch %lld needs more than "
                 "%lld GiB of tensors (make the batch or the network "
                 "smaller)", g->name, (long long)g->batch,
                 (long long)(MAX_STEP_BYTES >> 30));
      return 1;
    }
  return 0;
}

/* infer -> autodiff over the loaded `decls`, verifying after each. */
static int front(Diag *d, Pool *pool, const char *path, Decl *decls,
                 int64_t batch, const ConvChoice *conv, Graph *g,
                 Decl **decls_out) {
  memset(g, 0, sizeof *g);
  g->pool = pool;
  g->batch = batch;
  g->input = g->loss = g->labels = -1;
  if (decls_out)
    *decls_out = decls;
  if (d->errors)
    return 1;
  if (!infer_network(d, decls, g))
    return 1;
  choose_conv_algos(g, conv);
  /* The verifier runs after each pass: a failure is netc's bug. */
  if (graph_verify(g, stderr) || (autodiff(g), graph_verify(g, stderr))) {
    fprintf(stderr, "netc: internal error: the graph of %s fails "
                    "verification\n", path);
    return 1;
  }
  return step_fits(d, g);
}

/* The cost model's choices for a portable (AVX2) trainer: what the
 * calls without options get. */
static const ConvChoice portable = {CONV_POLICY_AUTO, NULL, RT_ISA_AVX2};

int compile_front(Diag *d, Pool *pool, const char *path, int64_t batch,
                  Graph *g, Decl **decls_out) {
  return front(d, pool, path, load_program(d, pool, path), batch,
               &portable, g, decls_out);
}

int compile_front_conv(Diag *d, Pool *pool, const char *path, int64_t batch,
                       const Define *defs, int n, const ConvChoice *conv,
                       Graph *g) {
  Decl *decls = load_program(d, pool, path);
  if (!d->errors && !apply_defines(d, pool, decls, defs, n))
    return 1;
  return front(d, pool, path, decls, batch, conv, g, NULL);
}

int compile_source(Diag *d, Pool *pool, const char *name, const char *text,
                   size_t len, int64_t batch, Graph *g) {
  const char *real[MAX_IMPORTS + 1] = {0};
  Decl *decls = NULL;
  if (diag_add_text(d, name, text, len) >= 0)
    decls = load_imports(d, pool, real);
  return front(d, pool, name, decls, batch, &portable, g, NULL);
}
