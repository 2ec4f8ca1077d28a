/* check_util.c: the shared helpers of runtime/util/util.c: make_dirs (nested,
 * idempotent, refused under a regular file), hash_bytes (deterministic,
 * every bit and every tail byte counts, seeds chain, pinned values that
 * data caches and checkpoints depend on), the clock and the allocators. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "check_netc.h"
#include "util/util.h"

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

START_TEST(test_make_dirs_nested) {
  char *top = xprintf("%s/util-nested", temp_dir());
  char *deep = xprintf("%s/a/b/c", top);
  ck_assert(!is_dir(top));
  ck_assert_int_eq(make_dirs(deep), 0);
  ck_assert(is_dir(deep));
  free(top);
  free(deep);
}
END_TEST

START_TEST(test_make_dirs_idempotent) {
  char *dir = xprintf("%s/util-again/x/y", temp_dir());
  char *slash = xprintf("%s/", dir);
  char *parent = xprintf("%s/util-again/x", temp_dir());
  ck_assert_int_eq(make_dirs(dir), 0);
  ck_assert_int_eq(make_dirs(dir), 0);     /* it exists: nothing to do */
  ck_assert_int_eq(make_dirs(slash), 0);   /* a trailing slash is the same */
  ck_assert_int_eq(make_dirs(parent), 0);  /* a prefix of what exists */
  ck_assert(is_dir(dir));
  free(dir);
  free(slash);
  free(parent);
}
END_TEST

START_TEST(test_make_dirs_under_a_file) {
  char *file = xprintf("%s/util-file", temp_dir());
  char *under = xprintf("%s/x/y", file);
  FILE *f = fopen(file, "w");
  ck_assert_ptr_nonnull(f);
  fclose(f);
  errno = 0;
  ck_assert_int_eq(make_dirs(under), -1);
  ck_assert_int_eq(errno, ENOTDIR);
  /* The path itself a file: not a directory, though mkdir says EEXIST. */
  errno = 0;
  ck_assert_int_eq(make_dirs(file), -1);
  ck_assert_int_eq(errno, ENOTDIR);
  free(file);
  free(under);
}
END_TEST

/* 100 bytes: three 32-byte blocks (the four lanes) and a 4-byte tail. */
static void fill(unsigned char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    b[i] = (unsigned char)(i * 7 + 1);
}

START_TEST(test_hash_deterministic) {
  unsigned char a[100], b[101];
  fill(a, sizeof a);
  fill(b + 1, sizeof a); /* the same bytes at another alignment */
  uint64_t h = hash_bytes(a, sizeof a, 5);
  ck_assert_uint_eq(hash_bytes(a, sizeof a, 5), h);
  ck_assert_uint_eq(hash_bytes(b + 1, sizeof a, 5), h);
}
END_TEST

static int u64_cmp(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return a < b ? -1 : a > b;
}

static void assert_distinct(uint64_t *h, int n) {
  qsort(h, (size_t)n, sizeof *h, u64_cmp);
  for (int i = 1; i < n; i++)
    ck_assert_msg(h[i] != h[i - 1], "two inputs share hash %016llx",
                  (unsigned long long)h[i]);
}

/* Every one of the 800 single-bit flips of 100 bytes, in the lanes and in
 * the tail, gives a hash of its own. */
START_TEST(test_hash_every_bit_counts) {
  unsigned char b[100];
  uint64_t h[801];
  fill(b, sizeof b);
  h[800] = hash_bytes(b, sizeof b, 0);
  for (int i = 0; i < 800; i++) {
    b[i / 8] ^= (unsigned char)(1u << (i % 8));
    h[i] = hash_bytes(b, sizeof b, 0);
    b[i / 8] ^= (unsigned char)(1u << (i % 8));
  }
  assert_distinct(h, 801);
}
END_TEST

/* Every length from 0 to 100 (whole blocks, tails of 1 to 31 bytes, and
 * both) hashes differently, even for zeros: the length counts, not only
 * the bytes. And the last byte counts at every length. */
START_TEST(test_hash_lengths_and_tails) {
  unsigned char b[100], zeros[100] = {0};
  uint64_t hb[101], hz[101];
  fill(b, sizeof b);
  for (int n = 0; n <= 100; n++) {
    hb[n] = hash_bytes(b, (size_t)n, 0);
    hz[n] = hash_bytes(zeros, (size_t)n, 0);
  }
  assert_distinct(hb, 101);
  assert_distinct(hz, 101);
  for (int n = 1; n <= 100; n++) {
    uint64_t before = hash_bytes(b, (size_t)n, 0);
    b[n - 1] ^= 0x80;
    ck_assert_msg(hash_bytes(b, (size_t)n, 0) != before, "n=%d", n);
    b[n - 1] ^= 0x80;
  }
  /* n = 0 reads nothing, but still depends on the seed. */
  ck_assert_uint_eq(hash_bytes(NULL, 0, 1), hash_bytes(b, 0, 1));
  ck_assert_uint_ne(hash_bytes(NULL, 0, 1), hash_bytes(NULL, 0, 2));
}
END_TEST

/* Chaining: the seed is the previous hash, so parts hashed in turn depend
 * on every part and on their order. */
START_TEST(test_hash_chains_by_seed) {
  const char *x = "stage1.conv", *y = "stage2.conv";
  uint64_t hx = hash_bytes(x, strlen(x), 0), hy = hash_bytes(y, strlen(y), 0);
  ck_assert_uint_ne(hash_bytes(x, strlen(x), 1), hx);
  uint64_t xy = hash_bytes(y, strlen(y), hx), yx = hash_bytes(x, strlen(x), hy);
  ck_assert_uint_ne(xy, yx);
  ck_assert_uint_ne(xy, hy);
  /* The first part still counts after the second. */
  const char *x2 = "stage1.conw";
  ck_assert_uint_ne(hash_bytes(y, strlen(y), hash_bytes(x2, strlen(x2), 0)),
                    xy);
}
END_TEST

/* Data caches and checkpoints store these hashes: if this test fails, the
 * hash changed, and CACHE_VERSION (data_cache.c) and CKPT_VERSION
 * (train.h) must change with it, so that old files are rebuilt or
 * refused rather than taken for damaged or misread. */
START_TEST(test_hash_pinned) {
  unsigned char b[100];
  fill(b, sizeof b);
  ck_assert_uint_eq(hash_bytes("", 0, 0), 0x48ab108b103b3a36ULL);
  ck_assert_uint_eq(hash_bytes("netc", 4, 0), 0xe05dea2c4ce1d24fULL);
  ck_assert_uint_eq(hash_bytes(b, sizeof b, 0x4e455443ULL),
                    0x48f319669d35bd76ULL);
  ck_assert_uint_eq(mix64(1), 0x5692161d100b05e5ULL);
}
END_TEST

START_TEST(test_xprintf) {
  char *s = xprintf("%s/%s-%dx%d.bin", "dir", "val", 64, 32);
  ck_assert_str_eq(s, "dir/val-64x32.bin");
  free(s);
  s = xprintf("%016llx|%.2f|%c", 0xabcULL, 1.5, 'z');
  ck_assert_str_eq(s, "0000000000000abc|1.50|z");
  free(s);
  s = xprintf("%s", "");
  ck_assert_str_eq(s, "");
  free(s);
  s = xprintf("%*d", 10000, 7); /* longer than any fixed buffer */
  ck_assert_uint_eq(strlen(s), 10000);
  ck_assert_int_eq(s[9999], '7');
  ck_assert_int_eq(s[0], ' ');
  free(s);
}
END_TEST

START_TEST(test_allocators) {
  char *s = xstrdup("netc");
  ck_assert_str_eq(s, "netc");
  s = xrealloc(s, 1 << 20); /* grows, keeping the contents */
  ck_assert_str_eq(s, "netc");
  free(s);
  int *z = xcalloc(1000, sizeof *z);
  for (int i = 0; i < 1000; i++)
    ck_assert_int_eq(z[i], 0);
  free(z);
  free(xmalloc(0)); /* a size of 0 is not out of memory */
  free(xcalloc(0, 0));
}
END_TEST

START_TEST(test_now_seconds) {
  double t0 = now_seconds(), t1 = now_seconds();
  ck_assert(t1 >= t0);
  struct timespec ts = {0, 20 * 1000 * 1000};
  nanosleep(&ts, NULL);
  double dt = now_seconds() - t1;
  ck_assert_msg(dt >= 0.019 && dt < 5, "slept 20 ms, measured %g s", dt);
}
END_TEST

Suite *suite_util(void) {
  Suite *s = suite_create("util");
  TCase *tc = tcase_create("util");
  tcase_add_test(tc, test_make_dirs_nested);
  tcase_add_test(tc, test_make_dirs_idempotent);
  tcase_add_test(tc, test_make_dirs_under_a_file);
  tcase_add_test(tc, test_hash_deterministic);
  tcase_add_test(tc, test_hash_every_bit_counts);
  tcase_add_test(tc, test_hash_lengths_and_tails);
  tcase_add_test(tc, test_hash_chains_by_seed);
  tcase_add_test(tc, test_hash_pinned);
  tcase_add_test(tc, test_xprintf);
  tcase_add_test(tc, test_allocators);
  tcase_add_test(tc, test_now_seconds);
  suite_add_tcase(s, tc);
  return s;
}
