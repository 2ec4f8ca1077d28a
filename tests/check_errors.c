/* check_errors.c: the diagnostics corpus. Every tests/errors/NAME.net must
 * be rejected (exit status 1) with exactly the text in NAME.err. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "check_netc.h"

static int cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The corpus, sorted, so failures read the same on every machine. */
static int corpus(char ***out) {
  DIR *d = opendir("tests/errors");
  ck_assert_ptr_nonnull(d);
  char **names = NULL;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len > 4 && !strcmp(e->d_name + len - 4, ".net")) {
      names = realloc(names, sizeof(char *) * (size_t)(n + 1));
      names[n++] = strndup(e->d_name, len - 4);
    }
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof(char *), cmp);
  *out = names;
  return n;
}

START_TEST(test_corpus_is_large_enough) {
  char **names;
  int n = corpus(&names);
  ck_assert_int_ge(n, 25);
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
}
END_TEST

START_TEST(test_each_error_file) {
  char **names;
  int n = corpus(&names);
  int failures = 0;
  for (int i = 0; i < n; i++) {
    char *cmd = NULL, *err = NULL;
    ck_assert_int_ge(asprintf(&cmd, "%s check tests/errors/%s.net 2>&1 "
                                    ">/dev/null",
                              netc_path(), names[i]), 0);
    ck_assert_int_ge(asprintf(&err, "tests/errors/%s.err", names[i]), 0);
    int status;
    char *got = run_command(cmd, &status);
    char *want = read_file(err, NULL);
    if (status != 1) {
      fprintf(stderr, "%s: exit status %d, expected 1\n", names[i], status);
      failures++;
    } else if (!want) {
      fprintf(stderr, "%s: missing %s\n", names[i], err);
      failures++;
    } else if (strcmp(got, want)) {
      fprintf(stderr, "%s: messages differ.\n--- expected\n%s--- got\n%s",
                      names[i], want, got);
      failures++;
    }
    free(got);
    free(want);
    free(cmd);
    free(err);
    free(names[i]);
  }
  free(names);
  ck_assert_int_eq(failures, 0);
}
END_TEST

Suite *suite_errors(void) {
  Suite *s = suite_create("errors");
  TCase *tc = tcase_create("errors");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_corpus_is_large_enough);
  tcase_add_test(tc, test_each_error_file);
  suite_add_tcase(s, tc);
  return s;
}
