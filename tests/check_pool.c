/* check_pool.c: the arena and the "did you mean" helpers. */
#include <string.h>

#include "check_netc.h"

START_TEST(test_alloc_zeroed_and_aligned) {
  Pool p = {0};
  for (int i = 1; i < 2000; i += 37) {
    unsigned char *b = pool_alloc(&p, (size_t)i);
    ck_assert_uint_eq((uintptr_t)b % 16, 0);
    for (int j = 0; j < i; j++)
      ck_assert_uint_eq(b[j], 0);
    memset(b, 0xab, (size_t)i);
  }
  char *big = pool_alloc(&p, 1 << 20); /* larger than a block */
  big[(1 << 20) - 1] = 1;
  char *after = pool_alloc(&p, 8);
  ck_assert_ptr_nonnull(after);
  pool_free(&p);
  ck_assert_ptr_null(p.head);
}
END_TEST

START_TEST(test_grow_keeps_contents) {
  Pool p = {0};
  int *a = NULL, cap = 0;
  for (int n = 0; n < 1000; n++) {
    a = pool_grow(&p, a, sizeof(int), n, &cap);
    a[n] = n * 3;
  }
  ck_assert_int_ge(cap, 1000);
  for (int n = 0; n < 1000; n++)
    ck_assert_int_eq(a[n], n * 3);
  pool_free(&p);
}
END_TEST

START_TEST(test_printf) {
  Pool p = {0};
  ck_assert_str_eq(pool_printf(&p, "%s.%s%d", "stage2", "conv", 3),
                   "stage2.conv3");
  ck_assert_str_eq(pool_strndup(&p, "abcdef", 3), "abc");
  pool_free(&p);
}
END_TEST

START_TEST(test_edit_distance) {
  ck_assert_int_eq(edit_distance("conv", "conv"), 0);
  ck_assert_int_eq(edit_distance("conv", "convv"), 1);
  ck_assert_int_eq(edit_distance("widht", "width"), 1); /* transposition */
  ck_assert_int_eq(edit_distance("", "relu"), 4);
  ck_assert_int_eq(edit_distance("kitten", "sitting"), 3);
}
END_TEST

START_TEST(test_nearest_name) {
  const char *ops[] = {"conv", "batchnorm", "relu", "dense", "maxpool"};
  ck_assert_str_eq(nearest_name("convv", ops, 5), "conv");
  ck_assert_str_eq(nearest_name("rleu", ops, 5), "relu");
  ck_assert_str_eq(nearest_name("batch", ops, 5), "batchnorm"); /* prefix */
  ck_assert_str_eq(nearest_name("bn", ops, 5), "batchnorm");    /* alias */
  ck_assert_str_eq(nearest_name("Linear", ops, 5), "dense");    /* alias */
  ck_assert_ptr_null(nearest_name("softplus", ops, 5));
  const char *params[] = {"out", "k", "stride", "pad", "bias"};
  ck_assert_str_eq(nearest_name("kernel", params, 5), "k");
  ck_assert_str_eq(nearest_name("padding", params, 5), "pad");
  ck_assert_str_eq(nearest_name("strid", params, 5), "stride");
}
END_TEST

Suite *suite_pool(void) {
  Suite *s = suite_create("pool");
  TCase *tc = tcase_create("pool");
  tcase_add_test(tc, test_alloc_zeroed_and_aligned);
  tcase_add_test(tc, test_grow_keeps_contents);
  tcase_add_test(tc, test_printf);
  tcase_add_test(tc, test_edit_distance);
  tcase_add_test(tc, test_nearest_name);
  suite_add_tcase(s, tc);
  return s;
}
