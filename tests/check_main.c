/* check_main.c: runs every suite; exits non-zero if any test fails, after
 * a last line 'N passed, N failed'. Shared helpers live here too. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_netc.h"

static char tmpdir[64];

const char *netc_path(void) {
  const char *p = getenv("NETC");
  return p && *p ? p : "build/netc";
}

const char *temp_dir(void) { return tmpdir; }

bool sanitized_run(void) {
  const char *v = getenv("NETC_TEST_SANITIZED");
  return v && !strcmp(v, "1");
}

const char *write_temp(const char *name, const char *src, size_t len) {
  static char path[256];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(src, 1, len, f), len);
  fclose(f);
  return path;
}

void compile_path(Compiled *c, const char *path) {
  memset(c, 0, sizeof *c);
  size_t len;
  FILE *out = open_memstream(&c->messages, &len);
  diag_init(&c->diag, &c->pool, out);
  c->rc = compile_front(&c->diag, &c->pool, path, 64, &c->graph, &c->decls);
  fclose(out);
}

void compile_text(Compiled *c, const char *name, const char *src) {
  compile_path(c, write_temp(name, src, strlen(src)));
}

void compile_in_network(Compiled *c, const char *name, const char *body,
                        const char *tail) {
  char *src = NULL, blocks[PATH_MAX];
  ck_assert_ptr_nonnull(realpath("models/blocks.net", blocks));
  if (!tail)
    tail = "  return global_avgpool(x) -> flatten -> dense(classes) -> "
           "softmax_cross_entropy\n}\n";
  ck_assert_int_ge(asprintf(&src, "import \"%s\"\n"
                                  "network n(input = 3x9x9, classes = 5) {\n"
                                  "%s\n%s",
                            blocks, body, tail), 0);
  compile_text(c, name, src);
  free(src);
  if (c->rc)
    ck_abort_msg("%s", c->messages);
}

void compiled_free(Compiled *c) {
  pool_free(&c->pool);
  free(c->messages);
}

void assert_contains(const char *text, const char *want) {
  if (!strstr(text, want))
    ck_abort_msg("expected \"%s\" in:\n%s", want, text);
}

char *run_command(const char *cmd, int *status) {
  char *full = NULL;
  ck_assert_int_ge(asprintf(&full, "(%s) 2>&1", cmd), 0);
  FILE *p = popen(full, "r");
  free(full);
  ck_assert_ptr_nonnull(p);
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  size_t n;
  while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
    len += n;
    if (cap - len < 2)
      buf = realloc(buf, cap *= 2);
  }
  buf[len] = 0;
  int st = pclose(p);
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return buf;
}

char *read_file(const char *path, size_t *lenp) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)len + 1);
  size_t got = fread(buf, 1, (size_t)len, f);
  fclose(f);
  buf[got] = 0;
  if (lenp)
    *lenp = got;
  return buf;
}

int find_weight(const Graph *g, const char *name) {
  for (int i = 0; i < g->nweights; i++)
    if (!strcmp(g->weights[i].name, name))
      return i;
  return -1;
}

int find_node(const Graph *g, const char *path) {
  for (int i = 0; i < g->nforward; i++)
    if (!strcmp(g->nodes[i].path, path))
      return i;
  return -1;
}

int main(void) {
  /* One directory for the whole run: tests fork, so it is made here. */
  strcpy(tmpdir, "/tmp/netc-test-XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return EXIT_FAILURE;
  }
  /* netc build's tuning cache goes here, never to the user's own
   * (~/.cache/netc): the tests that time convolutions start from none. */
  char cache[96];
  snprintf(cache, sizeof cache, "%s/xdg-cache", tmpdir);
  setenv("XDG_CACHE_HOME", cache, 1);
  SRunner *sr = srunner_create(suite_pool());
  srunner_add_suite(sr, suite_util());
  srunner_add_suite(sr, suite_diag());
  srunner_add_suite(sr, suite_parse());
  srunner_add_suite(sr, suite_ops());
  srunner_add_suite(sr, suite_infer());
  srunner_add_suite(sr, suite_graph());
  srunner_add_suite(sr, suite_autodiff());
  srunner_add_suite(sr, suite_fuse());
  srunner_add_suite(sr, suite_plan());
  srunner_add_suite(sr, suite_codegen());
  srunner_add_suite(sr, suite_errors());
  srunner_add_suite(sr, suite_cli());
  srunner_add_suite(sr, suite_train());
  srunner_add_suite(sr, suite_recipe());
  srunner_add_suite(sr, suite_export());
  srunner_add_suite(sr, suite_mpi());
  srunner_add_suite(sr, suite_trainer());
  srunner_add_suite(sr, suite_runtime());
  srunner_add_suite(sr, suite_contracts());
  srunner_add_suite(sr, suite_data());
  srunner_add_suite(sr, suite_loader());
  srunner_add_suite(sr, suite_fuzz());
  srunner_add_suite(sr, suite_layout());
  srunner_run_all(sr, CK_NORMAL);
  int run = srunner_ntests_run(sr), failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  char *cmd = NULL;
  if (asprintf(&cmd, "rm -rf %s", tmpdir) >= 0 && system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmpdir);
  free(cmd);
  printf("%d passed, %d failed\n", run - failed, failed);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
