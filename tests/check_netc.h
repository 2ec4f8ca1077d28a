/* check_netc.h: the suites of the test runner and the helpers they share.
 * One check_<module>.c per compiler module; check_main.c runs them all. */
#ifndef CHECK_NETC_H
#define CHECK_NETC_H

#include <check.h>
#include <stdio.h>

#include "netc.h"

Suite *suite_pool(void);
Suite *suite_diag(void);
Suite *suite_parse(void);
Suite *suite_ops(void);
Suite *suite_infer(void);
Suite *suite_graph(void);
Suite *suite_autodiff(void);
Suite *suite_fuse(void);
Suite *suite_plan(void);
Suite *suite_codegen(void);
Suite *suite_train(void);
Suite *suite_recipe(void);
Suite *suite_export(void);
Suite *suite_mpi(void);
Suite *suite_trainer(void);
Suite *suite_errors(void);
Suite *suite_cli(void);
Suite *suite_runtime(void);
Suite *suite_contracts(void);
Suite *suite_data(void);
Suite *suite_loader(void);
Suite *suite_util(void);
Suite *suite_fuzz(void);
Suite *suite_layout(void);

/* One compilation of a source text (written to a temporary file `name`,
 * so imports and messages work as for real files). */
typedef struct {
  Pool pool;
  Diag diag;
  Graph graph;
  Decl *decls;
  int rc;          /* compile_front's result: 0 ok, 1 errors */
  char *messages;  /* everything reported, NUL-terminated */
} Compiled;

void compile_text(Compiled *c, const char *name, const char *src);
void compile_path(Compiled *c, const char *path);
/* Compiles `network n(input = 3x9x9, classes = 5) {` + body + tail, with
 * models/blocks.net imported; a tail of NULL returns the usual head
 * (global_avgpool, flatten, dense, softmax_cross_entropy) of x. Fails the
 * test on a compile error. */
void compile_in_network(Compiled *c, const char *name, const char *body,
                        const char *tail);
void compiled_free(Compiled *c);
/* Writes `src` to a file `name` in the test's temporary directory; returns
 * its path (static storage until the next call). */
const char *write_temp(const char *name, const char *src, size_t len);
/* Runs a shell command; returns its output (stdout and stderr, malloc'ed)
 * and stores its exit status (or 128 + signal) in *status. */
char *run_command(const char *cmd, int *status);
/* Fails the test, showing `text`, unless `want` is in it. */
void assert_contains(const char *text, const char *want);
/* The directory of this run's temporary files. */
const char *temp_dir(void);
/* The sanitized suite (make test SANITIZE=1 sets NETC_TEST_SANITIZED=1).
 * It leaves out the cases that only retrain or recompute at length what
 * the plain suite has (learning to an accuracy, an uninterrupted run
 * against a resumed one, a second PyTorch comparison of one network);
 * every kernel, front-end, fault and export case stays. */
bool sanitized_run(void);
/* Adds `fn` to `tc`, unless this is the sanitized run, which says so. */
#define tcase_add_test_unsanitized(tc, fn)                                   \
  do {                                                                       \
    if (sanitized_run())                                                     \
      fprintf(stderr, "sanitized run: %s left out (make test runs it)\n",  \
              #fn);                                                          \
    else                                                                     \
      tcase_add_test(tc, fn);                                                \
  } while (0)
/* The netc binary under test ($NETC, default build/netc). */
const char *netc_path(void);
/* Reads a whole file (malloc'ed, NUL-terminated) or NULL. */
char *read_file(const char *path, size_t *len);
/* The first index of a weight called `name`, or -1. */
int find_weight(const Graph *g, const char *name);
int find_node(const Graph *g, const char *path);

#endif
