/* check_diag.c: the format of diagnostics: location, source line, caret,
 * notes, the window over long lines, and the stop after MAX_ERRORS. */
#include <stdlib.h>
#include <string.h>

#include "check_netc.h"

/* Reports one error at `loc` in `text` and returns what was printed. */
static char *report(const char *text, Loc loc, const char *msg) {
  Pool p = {0};
  Diag d;
  char *buf = NULL;
  size_t len;
  FILE *out = open_memstream(&buf, &len);
  diag_init(&d, &p, out);
  loc.file = diag_add_text(&d, "m.net", text, strlen(text));
  diag_error(&d, loc, "%s", msg);
  fclose(out);
  pool_free(&p);
  return buf;
}

START_TEST(test_caret_under_column) {
  char *s = report("a = 1\nx = relu(y)\n", (Loc){0, 2, 10}, "unknown name");
  ck_assert_str_eq(s, "m.net:2:10: error: unknown name\n"
                      " x = relu(y)\n"
                      "          ^\n");
  free(s);
}
END_TEST

START_TEST(test_tabs_keep_alignment) {
  char *s = report("\tx = q\n", (Loc){0, 1, 6}, "e");
  ck_assert_str_eq(s, "m.net:1:6: error: e\n \tx = q\n \t    ^\n");
  free(s);
}
END_TEST

START_TEST(test_control_bytes_shown_safely) {
  char *s = report("x\x01\x02y\n", (Loc){0, 1, 2}, "bad");
  ck_assert_str_eq(s, "m.net:1:2: error: bad\n x??y\n  ^\n");
  free(s);
}
END_TEST

START_TEST(test_long_line_window) {
  char *line = malloc(100001);
  memset(line, 'a', 100000);
  line[100000] = 0;
  line[50000] = 'Q';
  char *s = report(line, (Loc){0, 1, 50001}, "here");
  /* The shown window is bounded and the caret sits under the Q. */
  ck_assert_int_lt((int)strlen(s), 400);
  char *src = strchr(s, '\n') + 1, *caret = strchr(src, '\n') + 1;
  long qcol = strchr(src, 'Q') - src, ccol = strchr(caret, '^') - caret;
  ck_assert_int_eq(qcol, ccol);
  free(s);
  free(line);
}
END_TEST

START_TEST(test_stops_after_max_errors) {
  Pool p = {0};
  Diag d;
  char *buf = NULL;
  size_t len;
  FILE *out = open_memstream(&buf, &len);
  diag_init(&d, &p, out);
  for (int i = 0; i < 50; i++)
    diag_error(&d, (Loc){-1, 0, 0}, "error %d", i);
  fclose(out);
  ck_assert_int_eq(d.errors, MAX_ERRORS);
  ck_assert(d.stop);
  ck_assert_ptr_nonnull(strstr(buf, "error 19\n"));
  ck_assert_ptr_null(strstr(buf, "error 20\n"));
  ck_assert_ptr_nonnull(strstr(buf, "too many errors (20), stopping"));
  free(buf);
  pool_free(&p);
}
END_TEST

START_TEST(test_missing_file) {
  Pool p = {0};
  Diag d;
  char *buf = NULL;
  size_t len;
  FILE *out = open_memstream(&buf, &len);
  diag_init(&d, &p, out);
  ck_assert_int_eq(diag_load(&d, "/nonexistent/x.net", (Loc){-1, 0, 0}), -1);
  fclose(out);
  ck_assert_str_eq(buf, "netc: error: cannot open '/nonexistent/x.net': "
                        "No such file or directory\n");
  free(buf);
  pool_free(&p);
}
END_TEST

Suite *suite_diag(void) {
  Suite *s = suite_create("diag");
  TCase *tc = tcase_create("diag");
  tcase_add_test(tc, test_caret_under_column);
  tcase_add_test(tc, test_tabs_keep_alignment);
  tcase_add_test(tc, test_control_bytes_shown_safely);
  tcase_add_test(tc, test_long_line_window);
  tcase_add_test(tc, test_stops_after_max_errors);
  tcase_add_test(tc, test_missing_file);
  suite_add_tcase(s, tc);
  return s;
}
