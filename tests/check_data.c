/* check_data.c: the data pipeline (data.h; runtime/data_list.c, jpeg.c,
 * data_cache.c and loader.c). Every test builds its own small data set
 * under the run's temporary directory, writing JPEGs with libjpeg: both
 * layouts, grayscale and CMYK files, broken files, wrong sizes, the cache's
 * life cycle, and the loader's order, augmentation, normalization,
 * padding, seeking and prefetching. Tests that assert on warnings capture
 * stderr into a file (check forks each test, so the redirection dies with
 * it). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "check_netc.h"
#include "data/data.h"

/* ---- helpers ------------------------------------------------------------ */

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  ck_assert_int_ge(vasprintf(&s, fmt, ap), 0);
  va_end(ap);
  return s;
}

static void mkdir_p(const char *path) {
  char *p = pathf("%s", path);
  for (char *q = p + 1; *q; q++)
    if (*q == '/') {
      *q = 0;
      ck_assert(mkdir(p, 0755) == 0 || errno == EEXIST);
      *q = '/';
    }
  ck_assert(mkdir(p, 0755) == 0 || errno == EEXIST);
  free(p);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

/* The red level of class c's images; green says which image of the class
 * it is, so order and labels can be read back from the pixels. */
static int class_red(int c) { return 30 + 90 * c; }
static int image_green(int k) { return 20 + 40 * k; }

/* Writes a w x h JPEG (quality 95) with `comps` components: RGB with red
 * `red`, green `green` and a gentle blue ramp; 1 component: a gray ramp;
 * 4: uniform Adobe CMYK (inverted) ink values red, green, 0, 200. */
static void write_jpeg(const char *path, int w, int h, int comps, int red,
                       int green) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr err;
  FILE *f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "cannot write %s", path);
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  jpeg_stdio_dest(&c, f);
  c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h;
  c.input_components = comps;
  c.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 95, TRUE);
  jpeg_start_compress(&c, TRUE);
  JSAMPLE *row = malloc((size_t)w * comps);
  while (c.next_scanline < c.image_height) {
    int y = (int)c.next_scanline;
    for (int x = 0; x < w; x++) {
      JSAMPLE *p = row + x * comps;
      if (comps == 1)
        p[0] = (JSAMPLE)(60 + x + y);
      else if (comps == 3)
        p[0] = (JSAMPLE)red, p[1] = (JSAMPLE)green, p[2] = (JSAMPLE)(60 + y);
      else
        p[0] = (JSAMPLE)red, p[1] = (JSAMPLE)green, p[2] = 0, p[3] = 200;
    }
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  fclose(f);
  free(row);
}

/* A fresh directory for one test, and a cache directory beside it that
 * NETC_CACHE_DIR points at (so no test writes to ~/.cache). */
static char *fresh_dir(const char *name) {
  char *root = pathf("%s/data-%s", temp_dir(), name);
  char *cache = pathf("%s/cache-%s", temp_dir(), name);
  mkdir_p(root);
  setenv("NETC_CACHE_DIR", cache, 1);
  unsetenv("NETC_CACHE_READONLY_DATA");
  free(cache);
  return root;
}

/* The release layout's classes, deliberately not in sorted order. */
static const char *const wnid[3] = {"n03", "n01", "n02"};
static const char *const word[3] = {"gamma thing", "alpha thing, a",
                                    "beta thing"};
/* val_k's class */
static const int val_class[6] = {2, 0, 1, 2, 0, 1};

/* TinyImageNet's release layout: 3 classes x 4 train images (class 1's
 * first one grayscale), 6 val images. */
static char *make_release(const char *name) {
  char *root = fresh_dir(name), *p;
  write_text(p = pathf("%s/wnids.txt", root), "n03\nn01\r\nn02\n\n"), free(p);
  write_text(p = pathf("%s/words.txt", root),
             "n00\tentity\nn01\talpha thing, a\nn02\tbeta thing\n"
             "n03\tgamma thing\nn04\tdelta\n"), free(p);
  for (int c = 0; c < 3; c++) {
    mkdir_p(p = pathf("%s/train/%s/images", root, wnid[c])), free(p);
    write_text(p = pathf("%s/train/%s/%s_boxes.txt", root, wnid[c], wnid[c]),
               "ignored\n"), free(p);
    for (int k = 0; k < 4; k++) {
      p = pathf("%s/train/%s/images/%s_%d.JPEG", root, wnid[c], wnid[c], k);
      write_jpeg(p, 64, 64, c == 1 && k == 0 ? 1 : 3, class_red(c),
                 image_green(k));
      free(p);
    }
  }
  mkdir_p(p = pathf("%s/val/images", root)), free(p);
  char ann[512] = "";
  for (int k = 0; k < 6; k++) {
    p = pathf("%s/val/images/val_%d.JPEG", root, k);
    write_jpeg(p, 64, 64, 3, class_red(val_class[k]), image_green(k));
    free(p);
    snprintf(ann + strlen(ann), sizeof ann - strlen(ann),
             "val_%d.JPEG\t%s\t0\t0\t10\t10\n", k, wnid[val_class[k]]);
  }
  write_text(p = pathf("%s/val/val_annotations.txt", root), ann), free(p);
  return root;
}

static DataOptions quiet_options(void) {
  return (DataOptions){.h = 64, .w = 64, .threads = 2, .quiet = 1};
}

static int saved_stderr = -1;
static char *capture_path;

/* Sends stderr to a file until capture_end, which returns what was said. */
static void capture_begin(void) {
  fflush(stderr);
  free(capture_path);
  capture_path = pathf("%s/stderr-%d.txt", temp_dir(), (int)getpid());
  int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ck_assert_int_ge(fd, 0);
  saved_stderr = dup(2);
  dup2(fd, 2);
  close(fd);
}

static char *capture_end(void) {
  fflush(stderr);
  dup2(saved_stderr, 2);
  close(saved_stderr);
  char *text = read_file(capture_path, NULL);
  ck_assert_ptr_nonnull(text);
  return text;
}

/* Opens a split with stderr captured; returns dataset_open's result. */
static int open_captured(Dataset *d, const char *root, const char *split,
                         const DataOptions *o, char **messages) {
  capture_begin();
  int rc = dataset_open(d, root, split, o);
  *messages = capture_end();
  return rc;
}

static void assert_contains(const char *text, const char *want) {
  ck_assert_msg(strstr(text, want) != NULL, "expected '%s' in:\n%s", want,
                text);
}

static double channel_mean(const Dataset *d, int i, int c) {
  const uint8_t *p = d->pixels + (size_t)i * d->h * d->w * 3;
  double sum = 0;
  for (int k = 0; k < d->h * d->w; k++)
    sum += p[3 * k + c];
  return sum / (d->h * d->w);
}

static ino_t inode_of(const char *path) {
  struct stat st;
  ck_assert_msg(stat(path, &st) == 0, "no %s", path);
  return st.st_ino;
}

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

/* ---- the loader --------------------------------------------------------- */

/* An in-memory data set: image i has label i and pixels that are never 0,
 * so crop padding stands out. */
static Dataset fake_dataset(int n, int h, int w) {
  Dataset d = {.n = n, .h = h, .w = w, .nclasses = n};
  uint8_t *px = malloc((size_t)n * h * w * 3);
  int32_t *labels = malloc(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < n; i++) {
    labels[i] = i;
    for (int k = 0; k < h * w * 3; k++)
      px[(size_t)i * h * w * 3 + k] = (uint8_t)(1 + (i * 7 + k * 13) % 255);
  }
  d.pixels = px;
  d.labels = labels;
  return d;
}

static void fake_free(Dataset *d) {
  free((void *)d->pixels);
  free((void *)d->labels);
}

static float norm(int v, int c) {
  const float mean[3] = {NETC_MEAN_R, NETC_MEAN_G, NETC_MEAN_B};
  const float std[3] = {NETC_STD_R, NETC_STD_G, NETC_STD_B};
  return ((float)v / 255.0f - mean[c]) / std[c];
}

START_TEST(test_normalize) {
  const uint8_t rgb[6] = {0, 0, 0, 255, 128, 7};
  float out[6];
  image_normalize(out, rgb, 1, 2);
  for (int i = 0; i < 6; i++)
    ck_assert_float_eq(out[i], norm(rgb[i], i % 3)); /* exactly */
  ck_assert_float_eq_tol(out[0], -0.4802f / 0.2302f, 1e-6f);
  ck_assert_float_eq_tol(out[3], (1 - 0.4802f) / 0.2302f, 1e-6f);
  ck_assert_float_eq_tol(out[4], (128 / 255.0f - 0.4481f) / 0.2265f, 1e-6f);
  ck_assert_float_eq_tol(out[5], (7 / 255.0f - 0.3975f) / 0.2262f, 1e-6f);
}
END_TEST

typedef struct {
  float *x;
  int32_t *y;
  int n;
} Got;

static Got next_batch(Loader *l, int batch, size_t img) {
  Got g = {malloc(sizeof(float) * img * (size_t)batch),
           malloc(sizeof(int32_t) * (size_t)batch), 0};
  g.n = loader_next(l, g.x, g.y);
  return g;
}

static int same_batch(Got a, Got b, int batch, size_t img) {
  return a.n == b.n && !memcmp(a.x, b.x, sizeof(float) * img * (size_t)batch) &&
         !memcmp(a.y, b.y, sizeof(int32_t) * (size_t)batch);
}

static void got_free(Got g) {
  free(g.x);
  free(g.y);
}

START_TEST(test_loader_eval) {
  Dataset d = fake_dataset(37, 8, 8);
  size_t img = 8 * 8 * 3;
  for (int prefetch = 0; prefetch < 2; prefetch++) {
    LoaderOptions lo = {.batch = 8, .train = 0, .prefetch = prefetch};
    Loader *l = loader_new(&d, &lo);
    ck_assert_int_eq(loader_steps(l), 5);
    loader_seek(l, 0, 0);
    int total = 0;
    for (int step = 0; step < 5; step++) {
      Got g = next_batch(l, 8, img);
      ck_assert_int_eq(g.n, step < 4 ? 8 : 5);
      for (int j = 0; j < 8; j++) {
        int i = step * 8 + j;
        for (size_t k = 0; k < img; k++) {
          float want = i < 37 ? norm(d.pixels[i * img + k], (int)(k % 3)) : 0;
          ck_assert_float_eq(g.x[j * img + k], want);
        }
        ck_assert_int_eq(g.y[j], i < 37 ? i : 0);
      }
      total += g.n;
      got_free(g);
    }
    ck_assert_int_eq(total, 37); /* every image once */
    Got g = next_batch(l, 8, img);
    ck_assert_int_eq(g.n, 0);
    got_free(g);
    loader_free(l);
  }
  fake_free(&d);
}
END_TEST

/* Finds the crop offsets and flip that turn image `src` into `out`;
 * returns 0 if one of them does, with padding equal to normalized black. */
static int find_augmentation(const float *out, const uint8_t *src, int h,
                             int w, int pad, int *dx, int *dy, int *flip) {
  for (*flip = 0; *flip < 2; ++*flip)
    for (*dy = -pad; *dy <= pad; ++*dy)
      for (*dx = -pad; *dx <= pad; ++*dx) {
        int ok = 1;
        for (int y = 0; y < h && ok; y++)
          for (int x = 0; x < w && ok; x++) {
            int sy = y + *dy, sx = (*flip ? w - 1 - x : x) + *dx;
            int in = sy >= 0 && sy < h && sx >= 0 && sx < w;
            for (int c = 0; c < 3 && ok; c++)
              ok = out[(y * w + x) * 3 + c] ==
                   norm(in ? src[(sy * w + sx) * 3 + c] : 0, c);
          }
        if (ok)
          return 0;
      }
  return -1;
}

START_TEST(test_loader_train_augmentation) {
  Dataset d = fake_dataset(37, 8, 8);
  size_t img = 8 * 8 * 3;
  LoaderOptions lo = {.batch = 8, .train = 1, .pad = 2, .seed = 5};
  Loader *l = loader_new(&d, &lo);
  ck_assert_int_eq(loader_steps(l), 4); /* 37 / 8, the rest dropped */
  int flips = 0, dxs[5] = {0}, dys[5] = {0}, first_order[32] = {0};
  for (int epoch = 0; epoch < 4; epoch++) {
    int seen[37] = {0};
    loader_seek(l, epoch, 0);
    for (int step = 0; step < 4; step++) {
      Got g = next_batch(l, 8, img);
      ck_assert_int_eq(g.n, 8);
      for (int j = 0; j < 8; j++) {
        int i = g.y[j], dx, dy, flip;
        ck_assert_int_eq(seen[i]++, 0);
        if (epoch == 0)
          first_order[step * 8 + j] = i;
        ck_assert_msg(!find_augmentation(g.x + j * img, d.pixels + i * img, 8,
                                         8, 2, &dx, &dy, &flip),
                      "image %d is no crop/flip of its source", i);
        flips += flip, dxs[dx + 2]++, dys[dy + 2]++;
      }
      got_free(g);
    }
    Got g = next_batch(l, 8, img);
    ck_assert_int_eq(g.n, 0);
    got_free(g);
  }
  /* 128 images: about half flipped, every offset used. */
  ck_assert_int_gt(flips, 40);
  ck_assert_int_lt(flips, 88);
  for (int k = 0; k < 5; k++)
    ck_assert(dxs[k] > 5 && dys[k] > 5);
  int shuffled = 0;
  for (int k = 0; k < 32; k++)
    shuffled += first_order[k] != k;
  ck_assert_int_gt(shuffled, 16);
  loader_free(l);
  fake_free(&d);
}
END_TEST

/* Every batch of `epochs` epochs of a loader, in order. */
static Got *record(const Dataset *d, LoaderOptions lo, int epochs) {
  Loader *l = loader_new(d, &lo);
  int steps = loader_steps(l);
  size_t img = (size_t)d->h * d->w * 3;
  Got *all = malloc(sizeof *all * (size_t)(epochs * steps));
  for (int e = 0; e < epochs; e++) {
    for (int s = 0; s < steps; s++)
      all[e * steps + s] = next_batch(l, lo.batch, img);
    Got end = next_batch(l, lo.batch, img); /* then the next epoch begins */
    ck_assert_int_eq(end.n, 0);
    got_free(end);
  }
  loader_free(l);
  return all;
}

START_TEST(test_loader_determinism) {
  Dataset d = fake_dataset(50, 16, 16);
  size_t img = 16 * 16 * 3;
  LoaderOptions lo = {.batch = 6, .train = 1, .pad = 4, .seed = 42};
  int steps = 50 / 6, total = 3 * steps;
  Got *a = record(&d, lo, 3), *b = record(&d, lo, 3);
  lo.prefetch = 1;
  Got *c = record(&d, lo, 3);
  lo.seed = 43;
  Got *other = record(&d, lo, 3);
  int differ = 0;
  for (int k = 0; k < total; k++) {
    ck_assert_msg(same_batch(a[k], b[k], 6, img), "batch %d differs", k);
    ck_assert_msg(same_batch(a[k], c[k], 6, img), "prefetch changed batch %d", k);
    differ += !same_batch(a[k], other[k], 6, img);
    if (k >= steps) /* another epoch, another order */
      ck_assert(!same_batch(a[k], a[k - steps], 6, img));
  }
  ck_assert_int_eq(differ, total);
  for (int k = 0; k < total; k++)
    got_free(a[k]), got_free(b[k]), got_free(c[k]), got_free(other[k]);
  free(a), free(b), free(c), free(other);
  fake_free(&d);
}
END_TEST

/* Data parallelism: P processes x K micro-batches of batch B, each
 * loader taking its share (group P*K*B, offset r*K*B, parts K), see
 * together exactly the batches of one loader of batch P*K*B: the same
 * images in the same order with the same augmentation, over 3 epochs
 * (so every image of each epoch once, in one process's order). Val
 * loaders split every group of P*B images, the last one short. */
START_TEST(test_loader_shares) {
  Dataset d = fake_dataset(53, 8, 8);
  size_t img = 8 * 8 * 3;
  const int B = 3, cases[][2] = {{2, 1}, {1, 2}, {2, 2}, {3, 1}};
  for (int c = 0; c < 4; c++) {
    int P = cases[c][0], K = cases[c][1], G = P * K * B;
    for (int train = 0; train < 2; train++) {
      int parts = train ? K : 1, group = train ? G : P * B;
      LoaderOptions whole = {.batch = group, .train = train, .pad = 2,
                             .seed = 7, .prefetch = train};
      int epochs = train ? 3 : 1;
      Got *one = record(&d, whole, epochs);
      int steps = train ? 53 / G : (53 + group - 1) / group;
      Loader *l[3];
      for (int r = 0; r < P; r++) {
        LoaderOptions o = {.batch = B, .train = train, .pad = 2, .seed = 7,
                           .group = group, .offset = r * parts * B,
                           .parts = parts, .prefetch = r % 2};
        l[r] = loader_new(&d, &o);
        ck_assert_int_eq(loader_steps(l[r]), steps * parts);
      }
      for (int e = 0; e < epochs; e++) {
        for (int r = 0; r < P; r++)
          loader_seek(l[r], e, 0);
        for (int st = 0; st < steps; st++) {
          const Got *w = &one[e * steps + st];
          for (int r = 0; r < P; r++)
            for (int k = 0; k < parts; k++) {
              Got g = next_batch(l[r], B, img);
              int at = (r * parts + k) * B; /* its place in the group */
              int real = w->n - at < 0 ? 0 : w->n - at > B ? B : w->n - at;
              ck_assert_int_eq(g.n, real);
              ck_assert(!memcmp(g.x, w->x + (size_t)at * img,
                                sizeof(float) * img * (size_t)real));
              ck_assert(!memcmp(g.y, w->y + at, sizeof(int32_t) * (size_t)real));
              got_free(g);
            }
        }
      }
      for (int r = 0; r < P; r++)
        loader_free(l[r]);
      for (int k = 0; k < epochs * steps; k++)
        got_free(one[k]);
      free(one);
    }
  }
  /* A share outside its group is refused. */
  LoaderOptions bad = {.batch = 4, .train = 1, .group = 8, .offset = 6};
  ck_assert_ptr_null(loader_new(&d, &bad));
  fake_free(&d);
}
END_TEST

START_TEST(test_loader_seek) {
  Dataset d = fake_dataset(40, 8, 8);
  size_t img = 8 * 8 * 3;
  LoaderOptions lo = {.batch = 4, .train = 1, .pad = 2, .seed = 9};
  Got *run = record(&d, lo, 3); /* 10 steps per epoch */
  for (int prefetch = 0; prefetch < 2; prefetch++) {
    lo.prefetch = prefetch;
    Loader *l = loader_new(&d, &lo);
    const int at[][2] = {{2, 3}, {0, 1}, {1, 9}, {1, 9}, {0, 0}, {2, 0}};
    for (int k = 0; k < 6; k++) {
      loader_seek(l, at[k][0], at[k][1]);
      int i = at[k][0] * 10 + at[k][1];
      Got g = next_batch(l, 4, img), h = next_batch(l, 4, img);
      ck_assert_msg(same_batch(g, run[i], 4, img),
                    "seek(%d, %d) prefetch %d", at[k][0], at[k][1], prefetch);
      if (at[k][1] < 9)
        ck_assert(same_batch(h, run[i + 1], 4, img));
      else
        ck_assert_int_eq(h.n, 0);
      got_free(g), got_free(h);
    }
    loader_seek(l, 1, 10); /* the end of epoch 1 */
    Got g = next_batch(l, 4, img);
    ck_assert_int_eq(g.n, 0);
    got_free(g);
    loader_free(l);
  }
  for (int k = 0; k < 30; k++)
    got_free(run[k]);
  free(run);
  fake_free(&d);
}
END_TEST

/* loader_free joins the prefetch thread wherever it is. */
START_TEST(test_loader_free_mid_epoch) {
  Dataset d = fake_dataset(64, 8, 8);
  LoaderOptions lo = {.batch = 4, .train = 1, .pad = 1, .prefetch = 1};
  for (int k = 0; k < 20; k++) {
    Loader *l = loader_new(&d, &lo);
    if (k % 2) {
      Got g = next_batch(l, 4, 8 * 8 * 3);
      ck_assert_int_eq(g.n, 4);
      got_free(g);
    }
    loader_free(l);
  }
  lo.batch = 0;
  capture_begin();
  ck_assert_ptr_null(loader_new(&d, &lo));
  char *msg = capture_end();
  assert_contains(msg, "batch size");
  free(msg);
  fake_free(&d);
}
END_TEST

/* The loader over a real (decoded) data set: labels and pixels line up. */
START_TEST(test_loader_on_dataset) {
  char *root = make_release("loader-dataset"), *msg;
  DataOptions o = quiet_options();
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), 0);
  LoaderOptions lo = {.batch = 4, .train = 0, .prefetch = 1};
  Loader *l = loader_new(&d, &lo);
  size_t img = 64 * 64 * 3;
  Got g = next_batch(l, 4, img);
  ck_assert_int_eq(g.n, 4);
  for (int j = 0; j < 4; j++) {
    ck_assert_int_eq(g.y[j], val_class[j]);
    ck_assert_float_eq(g.x[j * img], norm(d.pixels[j * img], 0));
  }
  got_free(g);
  g = next_batch(l, 4, img);
  ck_assert_int_eq(g.n, 2);
  got_free(g);
  loader_free(l);
  dataset_close(&d);
  free(msg);
  free(root);
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
  tc = tcase_create("loader");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_normalize);
  tcase_add_test(tc, test_loader_eval);
  tcase_add_test(tc, test_loader_train_augmentation);
  tcase_add_test(tc, test_loader_determinism);
  tcase_add_test(tc, test_loader_seek);
  tcase_add_test(tc, test_loader_shares);
  tcase_add_test(tc, test_loader_free_mid_epoch);
  tcase_add_test(tc, test_loader_on_dataset);
  suite_add_tcase(s, tc);
  return s;
}
