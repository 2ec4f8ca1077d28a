/* check_layout.c: the house's layout holds (docs/architecture.md).
 *
 * - Includes go one way: a runtime folder includes only its own headers and
 *   those of lower layers (LAYERS below); the compiler includes only the
 *   runtime's util and kernels; the runtime never includes the compiler.
 * - No circle among the headers.
 * - The same at link level, from the symbols of the built objects: no
 *   object uses a symbol of a higher or sibling layer, and no two objects
 *   use each other, directly or around a longer circle.
 * - No hand-written source file is longer than MAX_LINES. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_netc.h"
#include "util/util.h" /* xprintf, xstrdup */

/* The runtime's layers, lowest first. A folder may use its own files and
 * those of strictly lower rank: data and kernels, both rank 1, are
 * independent of each other. */
static const struct {
  const char *folder;
  int rank;
} LAYERS[] = {
    {"util", 0},    {"kernels", 1}, {"data", 1},  {"model", 2},
    {"formats", 3}, {"trainer", 4}, {"tools", 4},
};
enum { NLAYERS = sizeof LAYERS / sizeof LAYERS[0], MAX_LINES = 850 };

/* What the compiler may include from the runtime. */
static const char *const COMPILER_USES[] = {"util", "kernels"};

enum { MAX_FILES = 512 };

typedef struct {
  char *path[MAX_FILES];
  int n;
  /* edge[i][j]: file i includes (or uses a symbol of) file j */
  unsigned char edge[MAX_FILES][MAX_FILES];
} FileGraph;

static FileGraph graph; /* big: not on the stack */

/* The layer of a path: "compiler", or the runtime folder ("kernels" for
 * runtime/kernels/isa/x.c and for the object rt/kernels/isa/x_avx2.o). */
static char *layer_of(const char *path) {
  const char *p;
  if (!strncmp(path, "runtime/", 8))
    p = path + 8;
  else if (!strncmp(path, "rt/", 3))
    p = path + 3;
  else
    return xstrdup("compiler");
  char *l = xstrdup(p);
  l[strcspn(p, "/")] = 0;
  return l;
}

static int rank_of(const char *layer) {
  for (int i = 0; i < NLAYERS; i++)
    if (!strcmp(LAYERS[i].folder, layer))
      return LAYERS[i].rank;
  return -1;
}

static int file_index(FileGraph *g, const char *path) {
  for (int i = 0; i < g->n; i++)
    if (!strcmp(g->path[i], path))
      return i;
  ck_assert_int_lt(g->n, MAX_FILES);
  g->path[g->n] = xstrdup(path);
  return g->n++;
}

static void graph_free(FileGraph *g) {
  for (int i = 0; i < g->n; i++)
    free(g->path[i]);
  memset(g, 0, sizeof *g);
}

/* The lines of a command's output, NULL-terminated (malloc'ed). */
static char **command_lines(const char *cmd, int *n) {
  int st;
  char *out = run_command(cmd, &st);
  ck_assert_msg(st == 0, "%s failed:\n%s", cmd, out);
  int cap = 64;
  char **lines = malloc(sizeof(char *) * (size_t)cap);
  *n = 0;
  for (char *s = strtok(out, "\n"); s; s = strtok(NULL, "\n")) {
    if (*n + 1 >= cap)
      lines = realloc(lines, sizeof(char *) * (size_t)(cap *= 2));
    lines[(*n)++] = xstrdup(s);
  }
  lines[*n] = NULL;
  free(out);
  return lines;
}

static void lines_free(char **lines) {
  for (char **l = lines; *l; l++)
    free(*l);
  free(lines);
}

/* Where `#include "name"` in `from` leads, or NULL for a generated header
 * (parse.h, lex.h, onnx.pb-c.h: not in the tree). */
static char *resolve(const char *from, const char *name) {
  char *dir = xstrdup(from);
  *strrchr(dir, '/') = 0;
  const char *roots[] = {dir, "runtime", "compiler"};
  for (int i = 0; i < 3; i++) {
    char *p = xprintf("%s/%s", roots[i], name);
    if (access(p, R_OK) == 0) {
      free(dir);
      return p;
    }
    free(p);
  }
  free(dir);
  return NULL;
}

/* Why `from` may not use `to` (both paths), or NULL if it may. */
static const char *forbidden(const char *from, const char *to) {
  char *a = layer_of(from), *b = layer_of(to);
  const char *why = NULL;
  bool ac = !strcmp(a, "compiler"), bc = !strcmp(b, "compiler");
  if (ac && !bc) {
    why = "the compiler may use only the runtime's util and kernels";
    for (size_t i = 0; i < 2; i++)
      if (!strcmp(b, COMPILER_USES[i]))
        why = NULL;
  } else if (!ac && bc) {
    why = "the runtime never uses the compiler";
  } else if (!ac && strcmp(a, b)) {
    int ra = rank_of(a), rb = rank_of(b);
    if (ra < 0 || rb < 0)
      why = "a runtime folder missing from LAYERS in tests/check_layout.c "
            "(add it there and to docs/architecture.md)";
    else if (rb >= ra)
      why = "a layer uses only lower layers (LAYERS in "
            "tests/check_layout.c)";
  }
  free(a);
  free(b);
  return why;
}

/* A circle through file `i`, reported as "a -> b -> a", or NULL. */
static int color[MAX_FILES], stack[MAX_FILES];
static char *find_cycle(FileGraph *g, int i, int depth) {
  color[i] = 1;
  stack[depth] = i;
  for (int j = 0; j < g->n; j++) {
    if (!g->edge[i][j] || i == j)
      continue;
    if (color[j] == 1) {
      char *s = xstrdup(g->path[j]);
      int k = depth;
      while (stack[k] != j)
        k--;
      for (k++; k <= depth; k++) {
        char *t = xprintf("%s -> %s", s, g->path[stack[k]]);
        free(s);
        s = t;
      }
      char *t = xprintf("%s -> %s", s, g->path[j]);
      free(s);
      return t;
    }
    if (color[j] == 0) {
      char *s = find_cycle(g, j, depth + 1);
      if (s)
        return s;
    }
  }
  color[i] = 2;
  return NULL;
}

static void assert_no_cycle(FileGraph *g, const char *what) {
  memset(color, 0, sizeof color);
  for (int i = 0; i < g->n; i++)
    if (!color[i]) {
      char *c = find_cycle(g, i, 0);
      ck_assert_msg(!c, "%s run in a circle: %s", what, c);
    }
}

START_TEST(test_include_direction) {
  int n;
  char **files = command_lines("find compiler runtime -name '*.[chly]' "
                               "| sort", &n);
  ck_assert_int_gt(n, 40);
  FileGraph *g = &graph;
  int includes = 0;
  for (char **f = files; *f; f++) {
    int from = file_index(g, *f);
    FILE *fp = fopen(*f, "r");
    ck_assert_ptr_nonnull(fp);
    char line[1024], name[512];
    for (int ln = 1; fgets(line, sizeof line, fp); ln++) {
      if (sscanf(line, " #include \"%511[^\"]\"", name) != 1)
        continue;
      char *to = resolve(*f, name);
      if (!to)
        continue;
      const char *why = forbidden(*f, to);
      ck_assert_msg(!why, "%s:%d: #include \"%s\": %s", *f, ln, name, why);
      g->edge[from][file_index(g, to)] = 1;
      includes++;
      free(to);
    }
    fclose(fp);
  }
  ck_assert_int_gt(includes, 100); /* the parse found the includes */
  assert_no_cycle(g, "includes");
  graph_free(g);
  lines_free(files);
}
END_TEST

/* The folder of the netc under test: its runtime objects are in rt/. */
static char *build_dir(void) {
  char *dir = xstrdup(netc_path());
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = 0;
  else
    strcpy(dir, ".");
  return dir;
}

START_TEST(test_symbol_direction) {
  /* Paths relative to the build folder (rt/kernels/conv.o), so the
   * clone's own path cannot look like a layer. */
  char *dir = build_dir();
  char *cmd = xprintf("cd %s && nm -o rt/*/*.o rt/kernels/isa/*.o", dir);
  int n;
  char **lines = command_lines(cmd, &n);
  FileGraph *g = &graph;
  /* Defined global symbols first, then the undefined ones they meet. */
  int cap = 4096, ndefs = 0;
  struct Def {
    char *sym;
    int file;
  } *defs = malloc(sizeof *defs * (size_t)cap);
  for (int pass = 0; pass < 2; pass++)
    for (char **l = lines; *l; l++) {
      char *colon = strstr(*l, ".o:");
      if (!colon)
        continue;
      char type, sym[512];
      *colon = 0;
      const char *rest = colon + 3;
      if (sscanf(rest, "%*x %c %511s", &type, sym) != 2 &&
          sscanf(rest, " %c %511s", &type, sym) != 2) {
        *colon = '.';
        continue;
      }
      char *obj = xprintf("%s.o", *l);
      *colon = '.';
      int f = file_index(g, obj);
      free(obj);
      if (pass == 0 && type != 'U' && type >= 'A' && type <= 'Z') {
        if (ndefs == cap)
          defs = realloc(defs, sizeof *defs * (size_t)(cap *= 2));
        defs[ndefs++] = (struct Def){xstrdup(sym), f};
      } else if (pass == 1 && type == 'U') {
        for (int d = 0; d < ndefs; d++)
          if (!strcmp(defs[d].sym, sym) && defs[d].file != f) {
            const char *why = forbidden(g->path[f], g->path[defs[d].file]);
            ck_assert_msg(!why, "%s uses %s of %s: %s", g->path[f], sym,
                          g->path[defs[d].file], why);
            g->edge[f][defs[d].file] = 1;
          }
      }
    }
  ck_assert_int_gt(ndefs, 100); /* nm listed the runtime */
  assert_no_cycle(g, "the objects' symbols");
  for (int d = 0; d < ndefs; d++)
    free(defs[d].sym);
  free(defs);
  graph_free(g);
  lines_free(lines);
  free(cmd);
  free(dir);
}
END_TEST

/* Hand-written sources stay small enough to read (the generated ones are
 * under build/, not here). */
START_TEST(test_file_sizes) {
  int n;
  char **files = command_lines("find compiler runtime tests examples "
                               "-name '*.[chly]' | sort", &n);
  for (char **f = files; *f; f++) {
    FILE *fp = fopen(*f, "r");
    ck_assert_ptr_nonnull(fp);
    int lines = 0, ch;
    while ((ch = getc(fp)) != EOF)
      lines += ch == '\n';
    fclose(fp);
    ck_assert_msg(lines <= MAX_LINES, "%s has %d lines (at most %d: split "
                  "it by what it does)", *f, lines, MAX_LINES);
  }
  lines_free(files);
}
END_TEST

Suite *suite_layout(void) {
  Suite *s = suite_create("layout");
  TCase *tc = tcase_create("layout");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_include_direction);
  tcase_add_test(tc, test_symbol_direction);
  tcase_add_test(tc, test_file_sizes);
  suite_add_tcase(s, tc);
  return s;
}
