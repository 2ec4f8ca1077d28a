/* data_fixtures.c: what the data suites (check_data.c: layouts, broken
 * files, the cache; check_loader.c: the loader) share: small data sets
 * written with libjpeg under the run's temporary directory, and stderr
 * captured into a file. */
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

char *pathf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  ck_assert_int_ge(vasprintf(&s, fmt, ap), 0);
  va_end(ap);
  return s;
}

void mkdir_p(const char *path) {
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

void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

/* The red level of class c's images; green says which image of the class
 * it is, so order and labels can be read back from the pixels. */
int class_red(int c) { return 30 + 90 * c; }
int image_green(int k) { return 20 + 40 * k; }

/* Writes a w x h JPEG (quality 95) with `comps` components: RGB with red
 * `red`, green `green` and a gentle blue ramp; 1 component: a gray ramp;
 * 4: uniform Adobe CMYK (inverted) ink values red, green, 0, 200. */
void write_jpeg(const char *path, int w, int h, int comps, int red,
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
char *fresh_dir(const char *name) {
  char *root = pathf("%s/data-%s", temp_dir(), name);
  char *cache = pathf("%s/cache-%s", temp_dir(), name);
  mkdir_p(root);
  setenv("NETC_CACHE_DIR", cache, 1);
  unsetenv("NETC_CACHE_READONLY_DATA");
  free(cache);
  return root;
}

/* The release layout's classes, deliberately not in sorted order. */
const char *const wnid[3] = {"n03", "n01", "n02"};
const char *const word[3] = {"gamma thing", "alpha thing, a",
                                    "beta thing"};
/* val_k's class */
const int val_class[6] = {2, 0, 1, 2, 0, 1};

/* TinyImageNet's release layout: 3 classes x 4 train images (class 1's
 * first one grayscale), 6 val images. */
char *make_release(const char *name) {
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

DataOptions quiet_options(void) {
  return (DataOptions){.h = 64, .w = 64, .threads = 2, .quiet = 1};
}

static int saved_stderr = -1;
static char *capture_path;

/* Sends stderr to a file until capture_end, which returns what was said. */
void capture_begin(void) {
  fflush(stderr);
  free(capture_path);
  capture_path = pathf("%s/stderr-%d.txt", temp_dir(), (int)getpid());
  int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ck_assert_int_ge(fd, 0);
  saved_stderr = dup(2);
  dup2(fd, 2);
  close(fd);
}

char *capture_end(void) {
  fflush(stderr);
  dup2(saved_stderr, 2);
  close(saved_stderr);
  char *text = read_file(capture_path, NULL);
  ck_assert_ptr_nonnull(text);
  return text;
}

/* Opens a split with stderr captured; returns dataset_open's result. */
int open_captured(Dataset *d, const char *root, const char *split,
                  const DataOptions *o, char **messages) {
  capture_begin();
  int rc = dataset_open(d, root, split, o);
  *messages = capture_end();
  return rc;
}

double channel_mean(const Dataset *d, int i, int c) {
  const uint8_t *p = d->pixels + (size_t)i * d->h * d->w * 3;
  double sum = 0;
  for (int k = 0; k < d->h * d->w; k++)
    sum += p[3 * k + c];
  return sum / (d->h * d->w);
}

ino_t inode_of(const char *path) {
  struct stat st;
  ck_assert_msg(stat(path, &st) == 0, "no %s", path);
  return st.st_ino;
}
