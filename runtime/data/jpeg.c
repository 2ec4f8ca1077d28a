/* jpeg.c: JPEG files into fixed-size uint8 RGB images, with libjpeg-turbo:
 * one file for `predict` (image_load, data.h) or every file of a Source
 * for a new cache (decode_all, data_internal.h: OpenMP over files, a
 * libjpeg decoder per thread).
 *
 * Grayscale becomes RGB and Adobe CMYK (or YCCK) is converted. A file that
 * cannot be read, is empty, has more than 64 Mpixels or makes libjpeg warn
 * (truncated or corrupt data, which it would fill with gray) is skipped
 * with a warning naming it; an image of another size than DataOptions'
 * h x w is an error naming it unless DataOptions.resize.
 *
 * Resizing is bilinear with antialiasing, the filter of PIL's and
 * torchvision's Resize: a triangle filter widened by the scale factor when
 * shrinking. The aspect ratio is not kept. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "data/data_internal.h"
#include "util/util.h"

/* ---- decoding ------------------------------------------------------------ */

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
} JpegError;

static void jpeg_on_error(j_common_ptr c) {
  JpegError *e = (JpegError *)c->err;
  c->err->format_message(c, e->msg);
  longjmp(e->jump, 1);
}

/* libjpeg reports recoverable damage (a truncated file, corrupt data) as a
 * warning and carries on with gray pixels; such an image would be worse
 * than none, so a warning ends the decode like an error. Trace messages
 * (level > 0) are ignored. */
static void jpeg_on_message(j_common_ptr c, int level) {
  if (level < 0)
    jpeg_on_error(c);
}

typedef struct {
  struct jpeg_decompress_struct cinfo;
  JpegError err;
  uint8_t *file; /* the file's bytes */
  size_t file_cap;
  uint8_t *raw; /* pixels at the file's size, before conversion/resizing */
  size_t raw_cap;
} Decoder;

static void decoder_init(Decoder *k) {
  memset(k, 0, sizeof *k);
  k->cinfo.err = jpeg_std_error(&k->err.pub);
  k->err.pub.error_exit = jpeg_on_error;
  k->err.pub.emit_message = jpeg_on_message;
  jpeg_create_decompress(&k->cinfo);
}

static void decoder_free(Decoder *k) {
  jpeg_destroy_decompress(&k->cinfo);
  free(k->file);
  free(k->raw);
}

enum { DEC_OK, DEC_SKIP, DEC_SIZE, DEC_RESIZED };

typedef struct {
  int status;
  int sw, sh; /* the file's width and height */
  char why[JMSG_LENGTH_MAX + 64];
} DecodeResult;

/* Images beyond this many pixels are skipped rather than decoded. */
#define MAX_PIXELS (64 << 20)

static void *grow(void *p, size_t *cap, size_t need) {
  if (need > *cap) {
    p = xrealloc(p, need);
    *cap = need;
  }
  return p;
}

/* Reads `path` into k->file; 0, or errno. */
static int read_file_bytes(Decoder *k, const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st)) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    return e;
  }
  k->file = grow(k->file, &k->file_cap, (size_t)st.st_size + 1);
  size_t n = 0;
  ssize_t got;
  while (n < (size_t)st.st_size &&
         (got = read(fd, k->file + n, (size_t)st.st_size - n)) > 0)
    n += (size_t)got;
  int e = n < (size_t)st.st_size ? (errno ? errno : EIO) : 0;
  close(fd);
  *len = n;
  return e;
}

/* Adobe CMYK JPEGs store inverted ink values: R = C * K / 255 and so on.
 * In place, 4 bytes per pixel in, 3 out. */
static void cmyk_to_rgb(uint8_t *p, size_t pixels) {
  for (size_t i = 0; i < pixels; i++) {
    const uint8_t *q = p + 4 * i;
    unsigned k = q[3];
    uint8_t r = (uint8_t)((q[0] * k + 127) / 255),
            g = (uint8_t)((q[1] * k + 127) / 255),
            b = (uint8_t)((q[2] * k + 127) / 255);
    p[3 * i] = r, p[3 * i + 1] = g, p[3 * i + 2] = b;
  }
}

/* The filter taps of one resized axis: output i reads inputs start[i] ..
 * start[i] + count[i] - 1 with weights w[i * maxc ..]. */
typedef struct {
  int *start, *count, maxc;
  float *w;
} Taps;

/* Antialiased bilinear, as PIL: a triangle filter of radius max(scale, 1)
 * input pixels around each output pixel's center. */
static void taps_make(Taps *t, int in, int out) {
  double scale = (double)in / out, fs = scale > 1 ? scale : 1;
  t->maxc = (int)ceil(fs) * 2 + 1;
  t->start = xmalloc(sizeof(int) * (size_t)out);
  t->count = xmalloc(sizeof(int) * (size_t)out);
  t->w = xcalloc((size_t)out * (size_t)t->maxc, sizeof(float));
  for (int i = 0; i < out; i++) {
    double center = (i + 0.5) * scale, total = 0;
    int lo = (int)(center - fs + 0.5), hi = (int)(center + fs + 0.5);
    lo = lo < 0 ? 0 : lo;
    hi = hi > in ? in : hi;
    if (hi - lo > t->maxc)
      hi = lo + t->maxc;
    float *w = t->w + (size_t)i * t->maxc;
    for (int x = lo; x < hi; x++) {
      double v = 1 - fabs((x - center + 0.5) / fs);
      w[x - lo] = (float)(v > 0 ? v : 0);
      total += w[x - lo];
    }
    for (int x = lo; x < hi; x++)
      w[x - lo] = total > 0 ? (float)(w[x - lo] / total) : 0;
    t->start[i] = lo;
    t->count[i] = hi - lo;
  }
}

static void taps_free(Taps *t) {
  free(t->start);
  free(t->count);
  free(t->w);
}

/* Resizes an sh x sw RGB image to h x w: rows first into floats, then
 * columns. */
static void resize_rgb(const uint8_t *src, int sh, int sw, uint8_t *dst,
                       int h, int w) {
  Taps tx, ty;
  taps_make(&tx, sw, w);
  taps_make(&ty, sh, h);
  float *tmp = xmalloc(sizeof(float) * (size_t)sh * w * 3);
  for (int y = 0; y < sh; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        const float *wt = tx.w + (size_t)x * tx.maxc;
        const uint8_t *p = src + ((size_t)y * sw + tx.start[x]) * 3 + c;
        float acc = 0;
        for (int k = 0; k < tx.count[x]; k++)
          acc += wt[k] * p[3 * k];
        tmp[((size_t)y * w + x) * 3 + c] = acc;
      }
  for (int y = 0; y < h; y++) {
    const float *wt = ty.w + (size_t)y * ty.maxc;
    for (int i = 0; i < w * 3; i++) {
      const float *p = tmp + (size_t)ty.start[y] * w * 3 + i;
      float acc = 0;
      for (int k = 0; k < ty.count[y]; k++)
        acc += wt[k] * p[(size_t)k * w * 3];
      long v = lrintf(acc);
      dst[(size_t)y * w * 3 + i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
  free(tmp);
  taps_free(&tx);
  taps_free(&ty);
}

/* The body of a decode; a libjpeg error or warning longjmps out of it back
 * to decode_mem. */
static int decode_body(Decoder *k, size_t len, uint8_t *out,
                       const DataOptions *o, DecodeResult *r) {
  struct jpeg_decompress_struct *c = &k->cinfo;
  jpeg_mem_src(c, k->file, (unsigned long)len);
  jpeg_read_header(c, TRUE);
  r->sw = (int)c->image_width, r->sh = (int)c->image_height;
  int same = r->sw == o->w && r->sh == o->h;
  if (!same && !o->resize) {
    jpeg_abort_decompress(c);
    return r->status = DEC_SIZE;
  }
  if ((size_t)r->sw * (size_t)r->sh > MAX_PIXELS) {
    jpeg_abort_decompress(c);
    snprintf(r->why, sizeof r->why, "%dx%d is too large", r->sw, r->sh);
    return r->status = DEC_SKIP;
  }
  int cmyk = c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK;
  c->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(c);
  size_t stride = (size_t)c->output_width * (size_t)c->output_components;
  uint8_t *dst = out;
  if (!same || cmyk)
    dst = k->raw = grow(k->raw, &k->raw_cap, stride * c->output_height);
  while (c->output_scanline < c->output_height) {
    JSAMPROW row = dst + stride * c->output_scanline;
    jpeg_read_scanlines(c, &row, 1);
  }
  jpeg_finish_decompress(c);
  if (cmyk)
    cmyk_to_rgb(dst, (size_t)r->sw * r->sh);
  if (!same)
    resize_rgb(dst, r->sh, r->sw, out, o->h, o->w);
  else if (dst != out)
    memcpy(out, dst, (size_t)o->h * o->w * 3);
  return r->status = same ? DEC_OK : DEC_RESIZED;
}

static int decode_mem(Decoder *k, size_t len, uint8_t *out,
                      const DataOptions *o, DecodeResult *r) {
  if (setjmp(k->err.jump)) {
    jpeg_abort_decompress(&k->cinfo);
    snprintf(r->why, sizeof r->why, "%s", k->err.msg);
    return r->status = DEC_SKIP;
  }
  return decode_body(k, len, out, o, r);
}

/* Decodes the JPEG at `path` into out (o->h x o->w x 3). */
static int decode_file(Decoder *k, const char *path, uint8_t *out,
                       const DataOptions *o, DecodeResult *r) {
  size_t len = 0;
  r->sw = r->sh = 0;
  int e = read_file_bytes(k, path, &len);
  if (e || !len) {
    snprintf(r->why, sizeof r->why, "%s",
             e ? strerror(e) : "empty file");
    return r->status = DEC_SKIP;
  }
  return decode_mem(k, len, out, o, r);
}

DataOptions options_or_defaults(const DataOptions *opt) {
  DataOptions o = {0};
  if (opt)
    o = *opt;
  if (o.h <= 0)
    o.h = 64;
  if (o.w <= 0)
    o.w = 64;
  return o;
}

static void print_size_error(const char *path, int sw, int sh,
                             const DataOptions *o) {
  fprintf(stderr, "netc: error: %s is %dx%d, not %dx%d (use --resize to "
                  "scale images)\n", path, sw, sh, o->w, o->h);
}

int image_load(const char *path, uint8_t *rgb, const DataOptions *opt) {
  DataOptions o = options_or_defaults(opt);
  Decoder k;
  DecodeResult r;
  decoder_init(&k);
  decode_file(&k, path, rgb, &o, &r);
  decoder_free(&k);
  if (r.status == DEC_SKIP)
    fprintf(stderr, "netc: warning: skipping %s: %s\n", path, r.why);
  if (r.status == DEC_SIZE)
    print_size_error(path, r.sw, r.sh, &o);
  return r.status == DEC_SKIP ? 1 : r.status == DEC_SIZE ? -1 : 0;
}


/* Warns about every skipped file, in list order (so messages do not depend
 * on thread timing), and fails on files of the wrong size. */
static int decode_report(const Source *s, const DataOptions *o,
                         const uint8_t *status, char **why, const int *dims,
                         DecodeStats *st) {
  int bad = 0, first = -1;
  for (int i = 0; i < s->nmissing; i++)
    fprintf(stderr, "netc: warning: skipping %s\n", s->missing[i]);
  for (int i = 0; i < s->nfiles; i++) {
    if (status[i] == DEC_SKIP) {
      fprintf(stderr, "netc: warning: skipping %s/%s: %s\n", s->dir,
              s->files[i].rel, why[i]);
      st->skipped++;
    }
    st->resized += status[i] == DEC_RESIZED;
    if (status[i] == DEC_SIZE && !bad++)
      first = i;
  }
  if (!bad)
    return 0;
  char *path = xprintf("%s/%s", s->dir, s->files[first].rel);
  print_size_error(path, dims[2 * first], dims[2 * first + 1], o);
  if (bad > 1)
    fprintf(stderr, "netc: error: and %d more images of %s/%s are not "
                    "%dx%d\n", bad - 1, s->dir, s->split, o->w, o->h);
  free(path);
  return -1;
}

/* Decodes every file of `s` into slot i of pixels (OpenMP, dynamic
 * schedule: decode times vary), then closes the gaps of skipped files. */
int decode_all(const Source *s, const DataOptions *o, uint8_t *pixels,
               int32_t *labels, DecodeStats *st) {
  int n = s->nfiles, done = 0;
  size_t img = (size_t)o->h * o->w * 3;
  uint8_t *status = xcalloc((size_t)n, 1);
  char **why = xcalloc((size_t)n, sizeof(char *));
  int *dims = xcalloc((size_t)n * 2, sizeof(int));
  int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
#pragma omp parallel num_threads(threads)
  {
    Decoder k;
    DecodeResult r;
    char *path = xmalloc(PATH_MAX);
    decoder_init(&k);
#pragma omp for schedule(dynamic, 32)
    for (int i = 0; i < n; i++) {
      snprintf(path, PATH_MAX, "%s/%s", s->dir, s->files[i].rel);
      status[i] = (uint8_t)decode_file(&k, path, pixels + (size_t)i * img, o, &r);
      if (r.status == DEC_SKIP)
        why[i] = xstrdup(r.why);
      dims[2 * i] = r.sw, dims[2 * i + 1] = r.sh;
      int c;
#pragma omp atomic capture
      c = ++done;
      if (!o->quiet && c < n && (int64_t)c * 10 / n != (int64_t)(c - 1) * 10 / n)
        fprintf(stderr, "netc: decoding %s/%s: %d%% (%d of %d images)\n",
                s->dir, s->split, (int)((int64_t)c * 100 / n), c, n);
    }
    decoder_free(&k);
    free(path);
  }
  memset(st, 0, sizeof *st);
  int rc = decode_report(s, o, status, why, dims, st);
  for (int i = 0; i < n; i++) {
    if (!rc && (status[i] == DEC_OK || status[i] == DEC_RESIZED)) {
      if (st->n != i)
        memmove(pixels + (size_t)st->n * img, pixels + (size_t)i * img, img);
      labels[st->n++] = s->files[i].label;
    }
    free(why[i]);
  }
  free(status);
  free(why);
  free(dims);
  return rc;
}
