/* check_data.c: the data sets (data.h; runtime/data/data_list.c, jpeg.c
 * and data_cache.c). Every test builds its own small data set under the
 * run's temporary directory (data_fixtures.c), writing JPEGs with libjpeg:
 * both layouts, grayscale and CMYK files, broken files, wrong sizes, and
 * the cache's life cycle. Tests that assert on warnings capture stderr into
 * a file (check forks each test, so the redirection dies with it). The
 * loader's tests are in check_loader.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "data_fixtures.h"


/* ---- layouts ------------------------------------------------------------ */

START_TEST(test_release_train) {
  char *root = make_release("release-train"), *msg;
  DataOptions o = quiet_options();
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), 0);
  ck_assert_str_eq(d.layout, "tiny-imagenet");
  ck_assert_int_eq(d.n, 12);
  ck_assert_int_eq(d.h, 64);
  ck_assert_int_eq(d.skipped, 0);
  ck_assert_int_eq(d.nclasses, 3);
  for (int c = 0; c < 3; c++) {
    ck_assert_str_eq(d.class_ids[c], wnid[c]); /* wnids.txt's order */
    ck_assert_str_eq(d.class_names[c], word[c]);
  }
  for (int i = 0; i < 12; i++) {
    int c = i / 4, k = i % 4;
    ck_assert_int_eq(d.labels[i], c);
    if (c == 1 && k == 0)
      continue; /* the grayscale one */
    ck_assert_double_eq_tol(channel_mean(&d, i, 0), class_red(c), 3);
    ck_assert_double_eq_tol(channel_mean(&d, i, 1), image_green(k), 3);
  }
  const uint8_t *gray = d.pixels + (size_t)4 * 64 * 64 * 3;
  for (int k = 0; k < 64 * 64; k++) {
    ck_assert_int_eq(gray[3 * k], gray[3 * k + 1]);
    ck_assert_int_eq(gray[3 * k], gray[3 * k + 2]);
  }
  ck_assert_int_gt(gray[3 * 64 * 64 - 1], gray[0]); /* the ramp survived */
  dataset_close(&d);
  free(msg);
  free(root);
}
END_TEST

START_TEST(test_release_val) {
  char *root = make_release("release-val"), *msg;
  DataOptions o = quiet_options();
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), 0);
  ck_assert_int_eq(d.n, 6);
  ck_assert_int_eq(d.nclasses, 3);
  ck_assert_str_eq(d.class_ids[0], "n03");
  for (int k = 0; k < 6; k++) { /* annotation order */
    ck_assert_int_eq(d.labels[k], val_class[k]);
    ck_assert_double_eq_tol(channel_mean(&d, k, 0), class_red(val_class[k]), 3);
    ck_assert_double_eq_tol(channel_mean(&d, k, 1), image_green(k), 3);
  }
  dataset_close(&d);
  free(msg);
  free(root);
}
END_TEST

/* ImageFolder: classes are train/'s sorted folder names; .jpg, .jpeg and
 * .JPEG count, other files and hidden files do not. */
static char *make_folder(const char *name) {
  char *root = fresh_dir(name), *p;
  const char *cls[3] = {"emu", "cat", "dog"}, *files[3] = {"b.jpeg", "a.jpg",
                                                            "c.JPEG"};
  for (int c = 0; c < 3; c++) {
    mkdir_p(p = pathf("%s/train/%s", root, cls[c])), free(p);
    for (int k = 0; k < 3; k++) {
      p = pathf("%s/train/%s/%s", root, cls[c], files[k]);
      write_jpeg(p, 64, 64, 3, class_red(c), image_green(files[k][0] - 'a'));
      free(p);
    }
    write_text(p = pathf("%s/train/%s/notes.txt", root, cls[c]), "x"), free(p);
    write_text(p = pathf("%s/train/%s/._a.jpg", root, cls[c]), "x"), free(p);
  }
  mkdir_p(p = pathf("%s/val/cat", root)), free(p);
  mkdir_p(p = pathf("%s/val/emu", root)), free(p);
  write_jpeg(p = pathf("%s/val/emu/x.jpg", root), 64, 64, 3, 0, 0), free(p);
  write_jpeg(p = pathf("%s/val/cat/y.jpg", root), 64, 64, 3, 0, 0), free(p);
  write_jpeg(p = pathf("%s/val/emu/z.jpg", root), 64, 64, 3, 0, 0), free(p);
  return root;
}

START_TEST(test_imagefolder) {
  char *root = make_folder("folder"), *msg, *p;
  DataOptions o = quiet_options();
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), 0);
  ck_assert_str_eq(d.layout, "imagefolder");
  ck_assert_int_eq(d.nclasses, 3);
  const char *sorted[3] = {"cat", "dog", "emu"};
  const int red_of[3] = {1, 2, 0}; /* make_folder's index of each class */
  for (int c = 0; c < 3; c++) {
    ck_assert_str_eq(d.class_ids[c], sorted[c]);
    ck_assert_str_eq(d.class_names[c], sorted[c]);
  }
  ck_assert_int_eq(d.n, 9);
  for (int i = 0; i < 9; i++) {
    ck_assert_int_eq(d.labels[i], i / 3);
    ck_assert_double_eq_tol(channel_mean(&d, i, 0), class_red(red_of[i / 3]), 3);
    ck_assert_double_eq_tol(channel_mean(&d, i, 1), image_green(i % 3), 3);
  }
  dataset_close(&d);
  free(msg);
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), 0);
  ck_assert_int_eq(d.n, 3);
  ck_assert_int_eq(d.nclasses, 3);
  ck_assert_int_eq(d.labels[0], 0); /* cat/y */
  ck_assert_int_eq(d.labels[1], 2); /* emu/x */
  ck_assert_int_eq(d.labels[2], 2); /* emu/z */
  dataset_close(&d);
  free(msg);
  mkdir_p(p = pathf("%s/val/fox", root)), free(p);
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), -1);
  p = pathf("%s/val/fox is a class that %s/train does not have", root, root);
  assert_contains(msg, p);
  free(p);
  free(msg);
  free(root);
}
END_TEST

/* ---- errors and broken files -------------------------------------------- */

START_TEST(test_broken_files) {
  char *root = make_release("broken"), *msg, *p;
  char *trunc = pathf("%s/train/n01/images/n01_trunc.JPEG", root);
  char *empty = pathf("%s/train/n01/images/n01_empty.JPEG", root);
  char *png = pathf("%s/train/n02/images/n02_png.JPEG", root);
  write_jpeg(trunc, 64, 64, 3, 10, 10);
  struct stat st;
  ck_assert_int_eq(stat(trunc, &st), 0);
  /* Cut inside the scan data: libjpeg only warns about that. */
  ck_assert_int_eq(truncate(trunc, st.st_size - 40), 0);
  write_text(empty, "");
  write_text(png, "\x89PNG\r\n\x1a\n and then some junk that is not a PNG");
  DataOptions o = quiet_options();
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), 0);
  ck_assert_int_eq(d.n, 12);
  ck_assert_int_eq(d.skipped, 3);
  const char *bad[3] = {trunc, empty, png};
  for (int i = 0; i < 3; i++) {
    p = pathf("netc: warning: skipping %s: ", bad[i]);
    assert_contains(msg, p);
    free(p);
  }
  assert_contains(msg, "Premature end of JPEG file");
  assert_contains(msg, "(3 skipped)");
  for (int i = 0; i < 12; i++) /* the survivors keep their labels */
    ck_assert_int_eq(d.labels[i], i / 4);
  ck_assert_double_eq_tol(channel_mean(&d, 8, 0), class_red(2), 3);
  dataset_close(&d);
  free(msg);
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), 0);
  ck_assert_int_eq(d.skipped, 3); /* remembered by the cache */
  dataset_close(&d);
  free(msg);
  free(trunc);
  free(empty);
  free(png);
  free(root);
}
END_TEST

START_TEST(test_wrong_size) {
  char *root = make_release("size"), *msg, *p;
  char *small = pathf("%s/train/n02/images/n02_small.JPEG", root);
  write_jpeg(small, 32, 32, 3, 200, 100);
  DataOptions o = quiet_options();
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), -1);
  p = pathf("netc: error: %s is 32x32, not 64x64 (use --resize to scale "
            "images)", small);
  assert_contains(msg, p);
  free(p);
  free(msg);
  o.resize = 1;
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), 0);
  ck_assert_int_eq(d.n, 13);
  ck_assert_int_eq(d.labels[12], 2); /* n02_small sorts after n02_3 */
  ck_assert_double_eq_tol(channel_mean(&d, 12, 0), 200, 3);
  ck_assert_double_eq_tol(channel_mean(&d, 12, 1), 100, 3);
  dataset_close(&d);
  free(msg);
  /* A cache with resized images does not satisfy a run without --resize. */
  o.resize = 0;
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), -1);
  assert_contains(msg, "is 32x32, not 64x64");
  free(msg);
  free(small);
  free(root);
}
END_TEST

START_TEST(test_missing_class) {
  char *root = make_release("missing-class"), *msg, *p;
  write_text(p = pathf("%s/wnids.txt", root), "n03\nn01\nn02\nn04\n"), free(p);
  DataOptions o = quiet_options();
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), -1);
  p = pathf("missing class folder %s/train/n04/images", root);
  assert_contains(msg, p);
  free(p);
  free(msg);
  free(root);
}
END_TEST

START_TEST(test_val_unknown_class) {
  char *root = make_release("val-unknown"), *msg, *p;
  write_text(p = pathf("%s/val/val_annotations.txt", root),
             "val_0.JPEG\tn02\t0\t0\t1\t1\nval_1.JPEG\tn03\t0\t0\t1\t1\n"
             "val_2.JPEG\tn09\t0\t0\t1\t1\n"), free(p);
  DataOptions o = quiet_options();
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), -1);
  p = pathf("%s/val/val_annotations.txt:3: unknown class n09", root);
  assert_contains(msg, p);
  free(p);
  free(msg);
  free(root);
}
END_TEST

START_TEST(test_val_missing_file) {
  char *root = make_release("val-missing"), *msg, *p;
  FILE *f = fopen(p = pathf("%s/val/val_annotations.txt", root), "ab");
  free(p);
  fputs("val_99.JPEG\tn01\t0\t0\t1\t1\n", f);
  fclose(f);
  DataOptions o = quiet_options();
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), 0);
  ck_assert_int_eq(d.n, 6);
  ck_assert_int_eq(d.skipped, 1);
  p = pathf("netc: warning: skipping %s/val/images/val_99.JPEG", root);
  assert_contains(msg, p);
  free(p);
  dataset_close(&d);
  free(msg);
  free(root);
}
END_TEST

START_TEST(test_unreadable_paths) {
  char *root = fresh_dir("unreadable"), *msg, *p;
  DataOptions o = quiet_options();
  Dataset d;
  char *none = pathf("%s/no-such-dir", root);
  ck_assert_int_eq(open_captured(&d, none, "train", &o, &msg), -1);
  p = pathf("cannot open data directory %s: ", none);
  assert_contains(msg, p);
  free(p);
  free(msg);
  /* Neither layout. */
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), -1);
  assert_contains(msg, "is not a data set");
  free(msg);
  /* ImageFolder whose val/ is a file. */
  mkdir_p(p = pathf("%s/train/cat", root)), free(p);
  write_jpeg(p = pathf("%s/train/cat/a.jpg", root), 64, 64, 3, 1, 1), free(p);
  write_text(p = pathf("%s/val", root), "not a directory"), free(p);
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), -1);
  p = pathf("cannot read directory %s/val: ", root);
  assert_contains(msg, p);
  free(p);
  free(msg);
  ck_assert_int_eq(open_captured(&d, root, "test", &o, &msg), -1);
  assert_contains(msg, "unknown split 'test'");
  free(msg);
  dataset_close(&d); /* harmless after a failed open */
  free(none);
  free(root);
}
END_TEST

START_TEST(test_image_load) {
  char *root = fresh_dir("image-load");
  char *good = pathf("%s/good.jpg", root), *cmyk = pathf("%s/cmyk.jpg", root),
       *small = pathf("%s/small.jpg", root), *junk = pathf("%s/junk.jpg", root),
       *msg;
  write_jpeg(good, 64, 64, 3, 120, 80);
  write_jpeg(cmyk, 64, 64, 4, 255, 128);
  write_jpeg(small, 48, 80, 3, 40, 220);
  write_text(junk, "GIF89a, not a JPEG");
  DataOptions o = {.h = 64, .w = 64};
  uint8_t *rgb = malloc(64 * 64 * 3);
  ck_assert_int_eq(image_load(good, rgb, &o), 0);
  ck_assert_int_le(abs(rgb[0] - 120) + abs(rgb[1] - 80) + abs(rgb[2] - 60), 6);
  /* Adobe CMYK (inverted) 255, 128, 0, 200 is RGB 200, 100, 0. */
  ck_assert_int_eq(image_load(cmyk, rgb, &o), 0);
  ck_assert_int_le(abs(rgb[0] - 200) + abs(rgb[1] - 100) + rgb[2], 9);
  capture_begin();
  ck_assert_int_eq(image_load(junk, rgb, &o), 1);
  ck_assert_int_eq(image_load(small, rgb, &o), -1);
  msg = capture_end();
  char *p = pathf("netc: warning: skipping %s: ", junk);
  assert_contains(msg, p);
  free(p);
  p = pathf("netc: error: %s is 48x80, not 64x64", small);
  assert_contains(msg, p);
  free(p);
  free(msg);
  o.resize = 1;
  ck_assert_int_eq(image_load(small, rgb, &o), 0);
  ck_assert_int_le(abs(rgb[0] - 40) + abs(rgb[1] - 220), 6);
  /* The blue ramp (60 + y over 80 rows) is squeezed into 64 rows. */
  ck_assert_int_le(abs(rgb[63 * 64 * 3 + 2] - (60 + 79)), 4);
  free(rgb);
  free(good), free(cmyk), free(small), free(junk), free(root);
}
END_TEST

/* ---- the cache ---------------------------------------------------------- */

static char *local_cache(const char *root, const char *split) {
  return pathf("%s/.netc-cache-%s-64x64.bin", root, split);
}

START_TEST(test_cache_reuse) {
  char *root = make_release("cache-reuse"), *msg, *p;
  char *cache = local_cache(root, "train");
  DataOptions o = quiet_options();
  o.quiet = 0;
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), 0);
  p = pathf("netc: decoded 12 images of train (0 skipped) into %s in ", cache);
  assert_contains(msg, p);
  free(p);
  assert_contains(msg, "netc: decoding "); /* progress lines */
  ck_assert_str_eq(d.cache_path, cache);
  ino_t first = inode_of(cache);
  dataset_close(&d);
  free(msg);
  /* Unchanged: mapped, not rebuilt (a rebuild renames a new file in). */
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), 0);
  ck_assert_ptr_null(strstr(msg, "decoded"));
  ck_assert_int_eq(d.n, 12);
  ck_assert(inode_of(cache) == first);
  ck_assert_double_eq_tol(channel_mean(&d, 11, 0), class_red(2), 3);
  dataset_close(&d);
  free(msg);
  /* A file added: rebuilt. */
  write_jpeg(p = pathf("%s/train/n01/images/n01_9.JPEG", root), 64, 64, 3, 1, 2);
  free(p);
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), 0);
  assert_contains(msg, "rebuilding");
  assert_contains(msg, "netc: decoded 13 images");
  ck_assert_int_eq(d.n, 13);
  ino_t second = inode_of(cache);
  ck_assert(second != first);
  dataset_close(&d);
  free(msg);
  /* A file changed (new contents, new mtime): rebuilt with the new pixels. */
  p = pathf("%s/train/n03/images/n03_0.JPEG", root);
  write_jpeg(p, 64, 64, 3, 250, image_green(0));
  struct timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
  ck_assert_int_eq(utimensat(AT_FDCWD, p, times, 0), 0);
  free(p);
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), 0);
  assert_contains(msg, "netc: decoded 13 images");
  ck_assert(inode_of(cache) != second);
  ck_assert_double_eq_tol(channel_mean(&d, 0, 0), 250, 3);
  dataset_close(&d);
  free(msg);
  free(cache);
  free(root);
}
END_TEST

/* Flips one byte of a file at `offset` from its end. */
static void flip_byte(const char *path, off_t from_end) {
  int fd = open(path, O_RDWR);
  ck_assert_int_ge(fd, 0);
  off_t at = lseek(fd, 0, SEEK_END) - from_end;
  uint8_t b;
  ck_assert_int_eq(pread(fd, &b, 1, at), 1);
  b ^= 0x5a;
  ck_assert_int_eq(pwrite(fd, &b, 1, at), 1);
  close(fd);
}

START_TEST(test_cache_damaged) {
  char *root = make_release("cache-damaged"), *msg, *p;
  char *cache = local_cache(root, "val");
  DataOptions o = quiet_options();
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), 0);
  dataset_close(&d);
  free(msg);
  struct stat st;
  ck_assert_int_eq(stat(cache, &st), 0);
  ck_assert_int_eq(truncate(cache, st.st_size - 100), 0);
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), 0);
  p = pathf("netc: warning: ignoring the damaged cache %s (truncated", cache);
  assert_contains(msg, p);
  free(p);
  assert_contains(msg, "netc: decoded 6 images");
  ck_assert_int_eq(d.n, 6);
  dataset_close(&d);
  free(msg);
  flip_byte(cache, 1000); /* a pixel */
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), 0);
  assert_contains(msg, "checksum does not match");
  assert_contains(msg, "netc: decoded 6 images");
  for (int k = 0; k < 6; k++)
    ck_assert_int_eq(d.labels[k], val_class[k]);
  dataset_close(&d);
  free(msg);
  /* Another format version (the field after the magic; its checksums are
   * another hash's) is out of date, not damaged: rebuilt with a note. */
  int fd = open(cache, O_RDWR);
  uint32_t version = 1, now = 0;
  ck_assert_int_eq(pread(fd, &now, 4, 8), 4);
  ck_assert_uint_ge(now, 2);
  ck_assert_int_eq(pwrite(fd, &version, 4, 8), 4);
  close(fd);
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), 0);
  p = pathf("netc: cache %s was written by another version of netc; "
            "rebuilding it", cache);
  assert_contains(msg, p);
  free(p);
  ck_assert_ptr_null(strstr(msg, "ignoring the damaged cache"));
  assert_contains(msg, "netc: decoded 6 images");
  for (int k = 0; k < 6; k++)
    ck_assert_int_eq(d.labels[k], val_class[k]);
  dataset_close(&d);
  free(msg);
  write_text(cache, "garbage");
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), 0);
  assert_contains(msg, "not a netc data cache");
  ck_assert_int_eq(d.n, 6);
  dataset_close(&d);
  free(msg);
  free(cache);
  free(root);
}
END_TEST

/* A read-only data directory puts the cache in the cache directory. Root
 * ignores directory permissions, so as root NETC_CACHE_READONLY_DATA=1
 * stands in for the chmod (data_cache.c treats both the same way: it finds
 * out by trying to create the file). */
START_TEST(test_cache_read_only_data) {
  char *root = make_release("read-only"), *msg;
  char *cachedir = pathf("%s/cache-read-only/deeper", temp_dir());
  setenv("NETC_CACHE_DIR", cachedir, 1);
  ck_assert_int_eq(chmod(root, 0555), 0);
  if (geteuid() == 0)
    setenv("NETC_CACHE_READONLY_DATA", "1", 1);
  DataOptions o = quiet_options();
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), 0);
  ck_assert_int_eq(d.n, 12);
  ck_assert_msg(!strncmp(d.cache_path, cachedir, strlen(cachedir)),
                "cache at %s, not in %s", d.cache_path, cachedir);
  ck_assert_ptr_nonnull(strstr(d.cache_path, "data-read-only-"));
  ck_assert_ptr_nonnull(strstr(d.cache_path, "-train-64x64.bin"));
  char *local = local_cache(root, "train"), *remote = strdup(d.cache_path);
  ck_assert_int_ne(access(local, F_OK), 0);
  ino_t first = inode_of(remote);
  dataset_close(&d);
  free(msg);
  ck_assert_int_eq(open_captured(&d, root, "train", &o, &msg), 0);
  ck_assert_str_eq(d.cache_path, remote);
  ck_assert_ptr_null(strstr(msg, "decoded"));
  ck_assert(inode_of(remote) == first);
  dataset_close(&d);
  free(msg);
  /* Without NETC_CACHE_DIR, DataOptions.cache_dir says where. */
  unsetenv("NETC_CACHE_DIR");
  free(cachedir);
  o.cache_dir = cachedir = pathf("%s/cache-read-only-option", temp_dir());
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), 0);
  ck_assert_msg(!strncmp(d.cache_path, cachedir, strlen(cachedir)),
                "cache at %s, not in %s", d.cache_path, cachedir);
  dataset_close(&d);
  free(msg);
  ck_assert_int_eq(chmod(root, 0755), 0);
  free(local), free(remote), free(cachedir), free(root);
}
END_TEST

/* With nowhere to write a cache, the images are decoded into memory. */
START_TEST(test_cache_nowhere) {
  char *root = make_release("nowhere"), *msg, *p;
  char *file = pathf("%s/a-file", root), *bad = pathf("%s/cache", file);
  write_text(file, "x");
  setenv("NETC_CACHE_DIR", bad, 1);
  setenv("NETC_CACHE_READONLY_DATA", "1", 1);
  DataOptions o = quiet_options();
  Dataset d;
  /* A trailing slash names the same data set. */
  p = pathf("%s/", root);
  ck_assert_int_eq(open_captured(&d, p, "val", &o, &msg), 0);
  free(p);
  assert_contains(msg, "netc: warning: cannot write a cache");
  assert_contains(msg, "into (memory)");
  ck_assert_str_eq(d.cache_path, "(memory)");
  ck_assert_int_eq(d.n, 6);
  for (int k = 0; k < 6; k++)
    ck_assert_double_eq_tol(channel_mean(&d, k, 0), class_red(val_class[k]), 3);
  dataset_close(&d);
  free(msg);
  unsetenv("NETC_CACHE_READONLY_DATA");
  p = pathf("%s/", root);
  ck_assert_int_eq(open_captured(&d, p, "val", &o, &msg), 0);
  free(p);
  p = local_cache(root, "val");
  ck_assert_str_eq(d.cache_path, p);
  free(p);
  dataset_close(&d);
  free(msg);
  free(file), free(bad), free(root);
}
END_TEST

Suite *suite_data(void) {
  Suite *s = suite_create("data");
  TCase *tc = tcase_create("datasets");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_release_train);
  tcase_add_test(tc, test_release_val);
  tcase_add_test(tc, test_imagefolder);
  tcase_add_test(tc, test_broken_files);
  tcase_add_test(tc, test_wrong_size);
  tcase_add_test(tc, test_missing_class);
  tcase_add_test(tc, test_val_unknown_class);
  tcase_add_test(tc, test_val_missing_file);
  tcase_add_test(tc, test_unreadable_paths);
  tcase_add_test(tc, test_image_load);
  suite_add_tcase(s, tc);
  tc = tcase_create("cache");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_cache_reuse);
  tcase_add_test(tc, test_cache_damaged);
  tcase_add_test(tc, test_cache_read_only_data);
  tcase_add_test(tc, test_cache_nowhere);
  suite_add_tcase(s, tc);
  return s;
}
