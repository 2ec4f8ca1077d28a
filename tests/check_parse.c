/* check_parse.c: the lexer and parser: canonical AST dumps, newline rules,
 * chains, error recovery, and inputs that must never crash or hang. */
#include <stdlib.h>
#include <string.h>

#include "check_netc.h"

static char *ast_of(const char *name, const char *src, int *rc) {
  Compiled c;
  compile_text(&c, name, src);
  char *buf = NULL;
  size_t len;
  FILE *out = open_memstream(&buf, &len);
  dump_ast(out, &c.diag, c.decls);
  fclose(out);
  *rc = c.rc;
  compiled_free(&c);
  return buf;
}

static const char *tiny_net =
    "network t(input = 3x8x8, classes = 4) {\n%s\n"
    "    return global_avgpool(x) -> flatten -> dense(classes) -> "
    "softmax_cross_entropy\n}\n";

static char *wrap(const char *body) {
  char *s = NULL;
  ck_assert_int_ge(asprintf(&s, tiny_net, body), 0);
  return s;
}

START_TEST(test_chain_desugars_to_calls) {
  char *src = wrap("    x = input -> conv(4, k=3, pad=1) -> relu");
  int rc;
  char *ast = ast_of("chain.net", src, &rc);
  ck_assert_int_eq(rc, 0);
  ck_assert_ptr_nonnull(strstr(ast, "x = relu(conv(input, 4, k=3, pad=1))"));
  free(ast);
  free(src);
}
END_TEST

START_TEST(test_precedence) {
  char *src = wrap("    n = 1 + 2 * 3 - -4 % 3 == 7 || !true && false\n"
                   "    x = input");
  int rc;
  char *ast = ast_of("prec.net", src, &rc);
  ck_assert_ptr_nonnull(strstr(
      ast, "n = ((((1 + (2 * 3)) - (-4 % 3)) == 7) || (!true && false))"));
  free(ast);
  free(src);
}
END_TEST

START_TEST(test_newlines_continue_lines) {
  /* Inside brackets and after a binary operator, ',' or '->', a newline
   * does not end the statement; ';' does. */
  char *src = wrap("    x = conv(input,\n        4,\n        k=3) ->\n"
                   "        relu; y = x\n    n = 1 +\n 2");
  int rc;
  char *ast = ast_of("nl.net", src, &rc);
  ck_assert_int_eq(rc, 0);
  ck_assert_ptr_nonnull(strstr(ast, "x = relu(conv(input, 4, k=3))  # 2:5"));
  ck_assert_ptr_nonnull(strstr(ast, "y = x  # 5:15"));
  ck_assert_ptr_nonnull(strstr(ast, "n = (1 + 2)  # 6:5"));
  free(ast);
  free(src);
}
END_TEST

START_TEST(test_else_and_brace_on_next_line) {
  char *src = wrap("    if true\n    {\n        x = input\n    }\n\n"
                   "    else\n    {\n        x = relu(input)\n    }\n"
                   "    n = 9223372036854775807");
  int rc;
  char *ast = ast_of("else.net", src, &rc);
  ck_assert_int_eq(rc, 0);
  ck_assert_ptr_nonnull(strstr(ast, "  } else {\n    x = relu(input)"));
  ck_assert_ptr_nonnull(strstr(ast, "n = 9223372036854775807"));
  free(ast);
  free(src);
}
END_TEST

START_TEST(test_comments) {
  char *src = wrap("    /* a block\n comment */ x = input # trailing\n"
                   "    # a line comment");
  int rc;
  char *ast = ast_of("comments.net", src, &rc);
  ck_assert_int_eq(rc, 0);
  ck_assert_ptr_nonnull(strstr(ast, "x = input  # 3:13"));
  free(ast);
  free(src);
}
END_TEST

START_TEST(test_recovers_and_reports_several) {
  Compiled c;
  compile_text(&c, "several.net",
               "network t(input = 3x8x8, classes = 4) {\n"
               "    x = conv(input 4)\n"
               "    y = = 3\n"
               "    z = relu(x))\n"
               "    return x\n"
               "}\n");
  ck_assert_int_eq(c.rc, 1);
  ck_assert_int_eq(c.diag.errors, 3);
  ck_assert_ptr_nonnull(strstr(c.messages, "several.net:2:20: error"));
  ck_assert_ptr_nonnull(strstr(c.messages, "several.net:3:9: error"));
  ck_assert_ptr_nonnull(strstr(c.messages, "several.net:4:16: error"));
  compiled_free(&c);
}
END_TEST

START_TEST(test_unclosed_paren_note) {
  Compiled c;
  compile_text(&c, "unclosed.net",
               "network t(input = 3x8x8, classes = 4) {\n"
               "    x = relu(input\n"
               "    y = x\n"
               "}\n");
  ck_assert_int_eq(c.rc, 1);
  ck_assert_ptr_nonnull(
      strstr(c.messages, "unclosed.net:2:13: note: this '(' is not closed"));
  compiled_free(&c);
}
END_TEST

/* Hostile inputs: each must end with errors (rc 1), never a crash. */
static void expect_rejected(const char *name, const char *src, size_t len,
                            const char *needle) {
  Compiled c;
  compile_path(&c, write_temp(name, src, len));
  ck_assert_int_eq(c.rc, 1);
  ck_assert_int_le(c.diag.errors, MAX_ERRORS);
  if (needle && !strstr(c.messages, needle))
    ck_abort_msg("%s: expected '%s' in:\n%.2000s", name, needle, c.messages);
  compiled_free(&c);
}

START_TEST(test_binary_garbage) {
  char buf[4096];
  unsigned s = 12345;
  for (size_t i = 0; i < sizeof buf; i++) {
    s = s * 1103515245 + 12345;
    buf[i] = (char)(s >> 16);
  }
  expect_rejected("garbage.net", buf, sizeof buf, "too many errors");
}
END_TEST

START_TEST(test_deep_brackets) {
  size_t n = 100000;
  char *s = malloc(2 * n + 32);
  strcpy(s, "network t() { x = ");
  size_t k = strlen(s);
  for (size_t i = 0; i < n; i++)
    s[k++] = '(';
  for (size_t i = 0; i < n; i++)
    s[k++] = ')';
  s[k] = 0;
  expect_rejected("deep.net", s, k, "brackets nested deeper than 200");
  free(s);
}
END_TEST

START_TEST(test_deep_expressions) {
  /* Long operator chains nest without brackets; they are bounded too. */
  size_t n = 1000000;
  char *s = malloc(2 * n + 64);
  strcpy(s, "network t() {\n x = 1");
  size_t k = strlen(s);
  for (size_t i = 0; i < n; i++) {
    s[k++] = '+';
    s[k++] = '1';
  }
  s[k] = 0;
  expect_rejected("plus.net", s, k, "expression nested deeper than 200");
  memset(s, '-', n);
  memcpy(s + n, "1\n", 3);
  char *t = malloc(n + 64);
  sprintf(t, "network t() {\n x = %s", s);
  expect_rejected("minus.net", t, strlen(t), NULL);
  free(t);
  free(s);
}
END_TEST

START_TEST(test_huge_line_and_literals) {
  size_t n = 10 << 20;
  char *s = malloc(n + 64);
  memset(s, ' ', n);
  memcpy(s + n - 30, "x = 99999999999999999999999", 27);
  expect_rejected("long.net", s, n, "integer literal '99999999999999999999");
  free(s);
  expect_rejected("shape.net", "network t(input = 3x99999999999x8) {}", 37,
                  "shape dimension larger than");
  expect_rejected("dims.net", "network t(input = 1x2x3x4x5) {}", 31,
                  "a shape has at most 4 dimensions");
  expect_rejected("int.net", "network t() { n = 9223372036854775808 }", 39,
                  "integer literal '9223372036854775808' is too large");
}
END_TEST

START_TEST(test_unterminated) {
  expect_rejected("comment.net", "network t() { /* never closed\n", 30,
                  "comment.net:1:15: error: unterminated comment");
  expect_rejected("string.net", "import \"blocks.net\n", 19,
                  "string.net:1:8: error: unterminated string");
}
END_TEST

START_TEST(test_many_statements_linear) {
  /* 200,000 statements parse quickly (lists append in O(1)). */
  size_t n = 200000;
  char *s = malloc(n * 8 + 128);
  char *p = s + sprintf(s, "network t(input = 3x8x8, classes = 4) {\n");
  for (size_t i = 0; i < n; i++)
    p += sprintf(p, "n = %zu\n", i % 10);
  sprintf(p, "x = input\n}\n");
  Compiled c;
  compile_path(&c, write_temp("many.net", s, strlen(s)));
  ck_assert_int_eq(c.rc, 1); /* it returns no loss */
  ck_assert_ptr_nonnull(strstr(c.messages, "does not return its loss"));
  compiled_free(&c);
  free(s);
}
END_TEST

START_TEST(test_golden_ast) {
  Compiled c;
  compile_path(&c, "tests/golden/small.net");
  ck_assert_int_eq(c.rc, 0);
  char *buf = NULL;
  size_t len;
  FILE *out = open_memstream(&buf, &len);
  dump_ast(out, &c.diag, c.decls);
  fclose(out);
  char *want = read_file("tests/golden/small.ast", NULL);
  ck_assert_ptr_nonnull(want);
  ck_assert_str_eq(buf, want);
  free(want);
  free(buf);
  compiled_free(&c);
}
END_TEST

/* A small built-in fuzzer: 3,000 random mutations (byte flips, deletions,
 * duplications, splices) of the zoo's sources. Each must compile or be
 * rejected cleanly; a crash fails the test (it runs in a forked child). */
START_TEST(test_mutated_models_never_crash) {
  const char *seeds[] = {"models/blocks.net", "models/resnet50.net",
                         "models/seed_resnet.net", "tests/golden/small.net"};
  unsigned r = 0x9e3779b9u;
#define RAND() (r ^= r << 13, r ^= r >> 17, r ^= r << 5, r)
  for (int iter = 0; iter < 3000; iter++) {
    size_t len;
    char *src = read_file(seeds[iter % 4], &len);
    ck_assert_ptr_nonnull(src);
    char *buf = malloc(2 * len + 64);
    memcpy(buf, src, len);
    int edits = 1 + (int)(RAND() % 8);
    for (int e = 0; e < edits && len > 2; e++) {
      size_t at = RAND() % len, n = 1 + RAND() % 16;
      if (at + n > len)
        n = len - at;
      switch (RAND() % 4) {
      case 0: buf[at] = (char)RAND(); break;
      case 1: memmove(buf + at, buf + at + n, len - at - n); len -= n; break;
      case 2:
        if (len + n < 2 * len) {
          memmove(buf + at + n, buf + at, len - at);
          len += n;
        }
        break;
      case 3: buf[at] = "(){}=,-x>0\n."[RAND() % 13]; break;
      }
    }
    /* Keep the import resolvable from the temporary directory. */
    const char *name = iter % 4 == 0 ? "blocks.net" : "mutant.net";
    Compiled c;
    compile_path(&c, write_temp(name, buf, len));
    ck_assert(c.rc == 0 || c.rc == 1);
    ck_assert(c.rc == 0 || c.diag.errors > 0);
    compiled_free(&c);
    free(buf);
    free(src);
  }
#undef RAND
}
END_TEST

Suite *suite_parse(void) {
  Suite *s = suite_create("parse");
  TCase *tc = tcase_create("parse");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_chain_desugars_to_calls);
  tcase_add_test(tc, test_precedence);
  tcase_add_test(tc, test_newlines_continue_lines);
  tcase_add_test(tc, test_comments);
  tcase_add_test(tc, test_else_and_brace_on_next_line);
  tcase_add_test(tc, test_recovers_and_reports_several);
  tcase_add_test(tc, test_unclosed_paren_note);
  tcase_add_test(tc, test_binary_garbage);
  tcase_add_test(tc, test_deep_brackets);
  tcase_add_test(tc, test_deep_expressions);
  tcase_add_test(tc, test_huge_line_and_literals);
  tcase_add_test(tc, test_unterminated);
  tcase_add_test(tc, test_many_statements_linear);
  tcase_add_test(tc, test_golden_ast);
  tcase_add_test(tc, test_mutated_models_never_crash);
  suite_add_tcase(s, tc);
  return s;
}
