/* check_fuzz.c: replays the fuzzing corpus. Every input libFuzzer kept in
 * tests/fuzz/corpus/ (and the seeds: models/, tests/errors/) runs through
 * the fuzz target's own function, so a crash, a sanitizer report (under
 * make test SANITIZE=1) or an overlapping plan fails the suite. */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_netc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs every regular file of `dir`; returns how many. */
static int replay_dir(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_msg(d != NULL, "cannot open %s", dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    size_t len;
    char *text = read_file(path, &len);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    LLVMFuzzerTestOneInput((const uint8_t *)text, len);
    free(text);
    n++;
  }
  closedir(d);
  return n;
}

START_TEST(test_replay_corpus) {
  int n = replay_dir("tests/fuzz/corpus");
  ck_assert_int_ge(n, 100); /* the corpus was not lost */
}
END_TEST

START_TEST(test_replay_seeds) {
  ck_assert_int_ge(replay_dir("models") + replay_dir("tests/errors"), 100);
}
END_TEST

Suite *suite_fuzz(void) {
  Suite *s = suite_create("fuzz");
  TCase *tc = tcase_create("replay");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_replay_corpus);
  tcase_add_test(tc, test_replay_seeds);
  suite_add_tcase(s, tc);
  return s;
}
