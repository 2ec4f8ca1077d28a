/* data.c: the data pipeline of data.h.
 *
 * dataset_open lists a data set directory with readdir and stat only (the
 * TinyImageNet release or ImageFolder layout, see data.h), hashes what it
 * found into a fingerprint and looks for a cache file with that
 * fingerprint; only when there is none does it decode every JPEG
 * (libjpeg-turbo, OpenMP over files) into a new one. Training then reads
 * the uint8 pixels straight from a read-only mmap of the cache, and the
 * Loader turns them into shuffled, augmented, normalized NHWC batches,
 * optionally on a thread that works ahead of the trainer.
 *
 * Cache file, version 1, host byte order:
 *   0              CacheHeader (128 bytes, fields below)
 *   labels_offset  int32 labels, n of them (room for every listed file)
 *   names_offset   the class ids, then the class names, each NUL-terminated
 *   pixel_offset   (64-byte aligned) uint8 RGB pixels, n x h x w x 3
 * It is written into an unnamed file (O_TMPFILE; a named temporary where
 * the file system lacks it) that is linked and renamed into place when
 * complete, so a reader sees a whole cache or none and a killed build
 * leaves no 1 GB leftover. It lives beside the data as
 * DIR/.netc-cache-<split>-<h>x<w>.bin, or when DIR cannot be written (or
 * NETC_CACHE_READONLY_DATA=1 says to act as if; tests run as root, whom
 * directory permissions do not stop) in the cache directory ($NETC_CACHE_DIR,
 * else DataOptions.cache_dir, else ~/.cache/netc) as
 * <basename>-<hash of DIR's absolute path>-<split>-<h>x<w>.bin. When no
 * place is writable the images are decoded into memory for this run only.
 *
 * An open trusts a cache only if its header checksum, its size, its
 * fingerprint (every source file's relative path, size and mtime, plus the
 * contents of wnids.txt, words.txt and val_annotations.txt) and the
 * checksum of its whole payload (hashed in parallel, about 0.1 s per GB)
 * all match; anything else is rebuilt, with a warning when the file was
 * damaged rather than merely out of date. The cache is not fsync'ed: a
 * crash that loses its pages fails the payload checksum next time.
 *
 * Resizing (DataOptions.resize) is bilinear with antialiasing, the filter
 * of PIL's and torchvision's Resize: a triangle filter widened by the
 * scale factor when shrinking. The aspect ratio is not kept.
 *
 * Loader randomness derives from (seed, epoch, position) alone: the order
 * of epoch e is a Fisher-Yates shuffle driven by splitmix64 seeded with
 * hash(seed, e); the image at position i of epoch e gets its crop offsets
 * and flip from hash(seed, e, i). So batches do not depend on timing,
 * prefetching or where a run was resumed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "data.h"
#include "util.h"

/* ---- text files ---------------------------------------------------------- */

/* Reads a whole file, NUL-terminated; NULL with errno set on failure. */
static char *read_text(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, n = 0, got;
  char *buf = xmalloc(cap);
  while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0)
    if ((n += got) + 1 == cap)
      buf = xrealloc(buf, cap *= 2);
  int err = ferror(f) ? EIO : 0;
  fclose(f);
  if (err) {
    free(buf);
    errno = err;
    return NULL;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

/* The next line of a text being consumed in place (NUL-terminated, without
 * its '\r'), or NULL at the end. */
static char *next_line(char **cursor) {
  char *s = *cursor;
  if (!s || !*s)
    return NULL;
  char *nl = strchr(s, '\n');
  *cursor = nl ? nl + 1 : s + strlen(s);
  if (nl)
    *nl = 0;
  size_t n = strlen(s);
  if (n && s[n - 1] == '\r')
    s[n - 1] = 0;
  return s;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    s[--n] = 0;
  return s;
}

/* ---- fingerprints -------------------------------------------------------- */

typedef struct {
  uint64_t h;
} Fingerprint;

static void fp_add(Fingerprint *f, const void *p, size_t n) {
  f->h = hash_bytes(p, n, f->h);
}
static void fp_str(Fingerprint *f, const char *s) {
  fp_add(f, s, strlen(s) + 1);
}
static void fp_i64(Fingerprint *f, int64_t v) { fp_add(f, &v, sizeof v); }

/* ---- listing a data set (no decoding) ------------------------------------ */

enum { LAYOUT_RELEASE, LAYOUT_FOLDER };
static const char *const layout_names[] = {"tiny-imagenet", "imagefolder"};

typedef struct {
  char *rel; /* relative to the data directory */
  int32_t label;
} SrcFile;

typedef struct {
  const char *dir, *split;
  int layout;
  int nclasses;
  char **ids, **names;
  SrcFile *files;
  int nfiles, cap;
  char **missing; /* "path: why" of listed files that do not exist */
  int nmissing;
  Fingerprint fp;
} Source;

static void source_free(Source *s) {
  for (int i = 0; i < s->nclasses; i++) {
    if (s->ids)
      free(s->ids[i]);
    if (s->names)
      free(s->names[i]);
  }
  free(s->ids);
  free(s->names);
  for (int i = 0; i < s->nfiles; i++)
    free(s->files[i].rel);
  free(s->files);
  for (int i = 0; i < s->nmissing; i++)
    free(s->missing[i]);
  free(s->missing);
}

static void source_add(Source *s, char *rel, int32_t label) {
  if (s->nfiles == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 1024;
    s->files = xrealloc(s->files, sizeof *s->files * (size_t)s->cap);
  }
  s->files[s->nfiles++] = (SrcFile){rel, label};
}

static void source_add_class(Source *s, const char *id) {
  s->ids = xrealloc(s->ids, sizeof(char *) * (size_t)(s->nclasses + 1));
  s->names = xrealloc(s->names, sizeof(char *) * (size_t)(s->nclasses + 1));
  s->ids[s->nclasses] = xstrdup(id);
  s->names[s->nclasses++] = NULL;
}

typedef struct {
  char *name;
  int64_t size, mtime_ns;
  int is_dir, is_file;
} Entry;

static int entry_cmp(const void *a, const void *b) {
  return strcmp(((const Entry *)a)->name, ((const Entry *)b)->name);
}

static void entries_free(Entry *v, int n) {
  for (int i = 0; i < n; i++)
    free(v[i].name);
  free(v);
}

/* Lists directory `path` sorted by name, with each entry's size and mtime;
 * hidden entries (".*", e.g. our caches or macOS "._x.jpg" litter) are left
 * out. Returns the count, or -1 with errno set. */
static int list_dir(const char *path, Entry **out) {
  DIR *dp = opendir(path);
  *out = NULL;
  if (!dp)
    return -1;
  Entry *v = NULL;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((errno = 0, e = readdir(dp))) {
    struct stat st;
    if (e->d_name[0] == '.' || fstatat(dirfd(dp), e->d_name, &st, 0))
      continue; /* hidden, or a dangling symlink */
    if (n == cap)
      v = xrealloc(v, sizeof *v * (size_t)(cap = cap ? 2 * cap : 64));
    v[n++] = (Entry){xstrdup(e->d_name), (int64_t)st.st_size,
                     (int64_t)st.st_mtim.tv_sec * 1000000000 +
                         st.st_mtim.tv_nsec,
                     S_ISDIR(st.st_mode), S_ISREG(st.st_mode)};
  }
  int err = errno;
  closedir(dp);
  if (err) {
    entries_free(v, n);
    errno = err;
    return -1;
  }
  qsort(v, (size_t)n, sizeof *v, entry_cmp);
  *out = v;
  return n;
}

static int is_jpeg_name(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* Adds the JPEG files of directory `rel` (relative to the data directory),
 * sorted by name, as class `label`. `wnid`: the release class whose folder
 * this is, for a better message when it is missing. Returns 0 or -1 after a
 * message naming the directory. */
static int scan_images(Source *s, const char *rel, int label,
                       const char *wnid) {
  char *path = xprintf("%s/%s", s->dir, rel);
  Entry *v;
  int n = list_dir(path, &v);
  if (n < 0) {
    if (wnid && (errno == ENOENT || errno == ENOTDIR))
      fprintf(stderr, "netc: error: missing class folder %s (%s/wnids.txt "
                      "lists class %s; restore the folder or remove the "
                      "line)\n", path, s->dir, wnid);
    else
      fprintf(stderr, "netc: error: cannot read directory %s: %s\n", path,
              strerror(errno));
    free(path);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    if (!v[i].is_file || !is_jpeg_name(v[i].name))
      continue;
    char *file = xprintf("%s/%s", rel, v[i].name);
    fp_str(&s->fp, file);
    fp_i64(&s->fp, v[i].size);
    fp_i64(&s->fp, v[i].mtime_ns);
    source_add(s, file, label);
  }
  entries_free(v, n);
  free(path);
  return 0;
}

typedef struct {
  const char *id;
  int index;
} IdIndex;

static int id_index_cmp(const void *a, const void *b) {
  return strcmp(((const IdIndex *)a)->id, ((const IdIndex *)b)->id);
}

/* The classes sorted by id, for lookups by name. */
static IdIndex *id_index_new(const Source *s) {
  IdIndex *x = xmalloc(sizeof *x * (size_t)s->nclasses);
  for (int i = 0; i < s->nclasses; i++)
    x[i] = (IdIndex){s->ids[i], i};
  qsort(x, (size_t)s->nclasses, sizeof *x, id_index_cmp);
  return x;
}

static int id_lookup(const IdIndex *x, int n, const char *id) {
  IdIndex key = {id, 0};
  const IdIndex *hit = bsearch(&key, x, (size_t)n, sizeof *x, id_index_cmp);
  return hit ? hit->index : -1;
}

/* Reads DIR/wnids.txt: the classes, in the release's order. */
static int read_wnids(Source *s) {
  char *path = xprintf("%s/wnids.txt", s->dir), *cur, *line;
  size_t len;
  char *text = read_text(path, &len);
  if (!text) {
    fprintf(stderr, "netc: error: cannot read %s: %s\n", path,
            strerror(errno));
    free(path);
    return -1;
  }
  fp_add(&s->fp, text, len);
  int rc = 0, lineno = 0;
  for (cur = text; !rc && (line = next_line(&cur));) {
    char *id = trim(line);
    lineno++;
    if (!*id)
      continue;
    for (int i = 0; i < s->nclasses && !rc; i++)
      if (!strcmp(s->ids[i], id))
        rc = -1;
    if (rc || strchr(id, '/') || strchr(id, ' ') || strchr(id, '\t')) {
      fprintf(stderr, "netc: error: %s:%d: '%s' is %s (one class id per "
                      "line)\n", path, lineno, id,
              rc ? "listed twice" : "not a class id");
      rc = -1;
    } else {
      source_add_class(s, id);
    }
  }
  if (!rc && !s->nclasses) {
    fprintf(stderr, "netc: error: %s lists no classes\n", path);
    rc = -1;
  }
  free(text);
  free(path);
  return rc;
}

/* Names the classes from DIR/words.txt (wnid<TAB>names) when it exists;
 * a class it does not name keeps its id as its name. */
static void read_words(Source *s) {
  char *path = xprintf("%s/words.txt", s->dir), *cur, *line;
  size_t len;
  char *text = read_text(path, &len);
  free(path);
  if (text) {
    fp_add(&s->fp, text, len);
    IdIndex *x = id_index_new(s);
    for (cur = text; (line = next_line(&cur));) {
      char *tab = strchr(line, '\t');
      if (!tab)
        continue;
      *tab = 0;
      int c = id_lookup(x, s->nclasses, trim(line));
      if (c >= 0 && !s->names[c])
        s->names[c] = xstrdup(trim(tab + 1));
    }
    free(x);
    free(text);
  }
  for (int c = 0; c < s->nclasses; c++)
    if (!s->names[c])
      s->names[c] = xstrdup(s->ids[c]);
}

/* One line of val_annotations.txt: file<TAB>wnid<TAB>box. */
static int add_val_line(Source *s, const IdIndex *x, char *line,
                        const char *ann, int lineno) {
  char *save = NULL, *file = strtok_r(line, " \t", &save);
  if (!file)
    return 0;
  char *wnid = strtok_r(NULL, " \t", &save);
  int c = wnid ? id_lookup(x, s->nclasses, wnid) : -1;
  if (c < 0) {
    if (wnid)
      fprintf(stderr, "netc: error: %s:%d: unknown class %s (not in "
                      "%s/wnids.txt)\n", ann, lineno, wnid, s->dir);
    else
      fprintf(stderr, "netc: error: %s:%d: expected <file> <wnid>, got "
                      "'%s'\n", ann, lineno, file);
    return -1;
  }
  char *rel = xprintf("val/images/%s", file), *path = xprintf("%s/%s", s->dir, rel);
  struct stat st;
  fp_str(&s->fp, rel);
  if (!stat(path, &st) && S_ISREG(st.st_mode)) {
    fp_i64(&s->fp, (int64_t)st.st_size);
    fp_i64(&s->fp, (int64_t)st.st_mtim.tv_sec * 1000000000 +
                       st.st_mtim.tv_nsec);
    source_add(s, rel, c);
  } else {
    fp_i64(&s->fp, -1);
    s->missing = xrealloc(s->missing, sizeof(char *) * (size_t)(s->nmissing + 1));
    s->missing[s->nmissing++] =
        xprintf("%s: listed on line %d of %s but %s", path, lineno, ann,
             errno == ENOENT || !errno ? "missing" : strerror(errno));
    free(rel);
  }
  free(path);
  return 0;
}

/* The release's val split: val/images/ labelled by val_annotations.txt, in
 * its order. */
static int scan_release_val(Source *s) {
  char *ann = xprintf("%s/val/val_annotations.txt", s->dir), *cur, *line;
  size_t len;
  char *text = read_text(ann, &len);
  if (!text) {
    fprintf(stderr, "netc: error: cannot read %s: %s (the val split of "
                    "TinyImageNet needs it)\n", ann, strerror(errno));
    free(ann);
    return -1;
  }
  fp_add(&s->fp, text, len);
  IdIndex *x = id_index_new(s);
  int rc = 0, lineno = 0;
  for (cur = text; !rc && (line = next_line(&cur));)
    rc = add_val_line(s, x, line, ann, ++lineno);
  free(x);
  free(text);
  free(ann);
  return rc;
}

static int scan_release(Source *s) {
  if (read_wnids(s))
    return -1;
  read_words(s);
  if (!strcmp(s->split, "val"))
    return scan_release_val(s);
  for (int c = 0; c < s->nclasses; c++) {
    char *rel = xprintf("train/%s/images", s->ids[c]);
    int rc = scan_images(s, rel, c, s->ids[c]);
    free(rel);
    if (rc)
      return -1;
  }
  return 0;
}

/* ImageFolder's classes: train/'s subfolders, sorted by name. */
static int scan_folder_classes(Source *s) {
  char *train = xprintf("%s/train", s->dir);
  Entry *v;
  int n = list_dir(train, &v);
  if (n < 0)
    fprintf(stderr, "netc: error: cannot read directory %s: %s\n", train,
            strerror(errno));
  for (int i = 0; i < n; i++)
    if (v[i].is_dir) {
      source_add_class(s, v[i].name);
      s->names[s->nclasses - 1] = xstrdup(v[i].name);
    }
  if (n >= 0 && !s->nclasses)
    fprintf(stderr, "netc: error: %s has no class folders (expected "
                    "train/<class>/<image>.jpg)\n", train);
  entries_free(v, n > 0 ? n : 0);
  free(train);
  return s->nclasses ? 0 : -1;
}

/* ImageFolder's val split: val/<class>/ folders, each a train class. */
static int scan_folder_val(Source *s) {
  char *val = xprintf("%s/val", s->dir);
  Entry *v;
  int n = list_dir(val, &v), rc = n < 0 ? -1 : 0;
  if (rc)
    fprintf(stderr, "netc: error: cannot read directory %s: %s\n", val,
            strerror(errno));
  IdIndex *x = id_index_new(s);
  for (int i = 0; i < n && !rc; i++) {
    if (!v[i].is_dir)
      continue;
    int c = id_lookup(x, s->nclasses, v[i].name);
    char *rel = xprintf("val/%s", v[i].name);
    if (c < 0)
      fprintf(stderr, "netc: error: %s/%s is a class that %s/train does not "
                      "have (every val class needs a train folder of the "
                      "same name)\n", s->dir, rel, s->dir);
    rc = c < 0 ? -1 : scan_images(s, rel, c, NULL);
    free(rel);
  }
  free(x);
  entries_free(v, n > 0 ? n : 0);
  free(val);
  return rc;
}

static int scan_folder(Source *s) {
  if (scan_folder_classes(s))
    return -1;
  if (!strcmp(s->split, "val"))
    return scan_folder_val(s);
  for (int c = 0; c < s->nclasses; c++) {
    char *rel = xprintf("train/%s", s->ids[c]);
    int rc = scan_images(s, rel, c, NULL);
    free(rel);
    if (rc)
      return -1;
  }
  return 0;
}

/* Lists split `split` of `dir` and fingerprints it. */
static int source_scan(Source *s, const char *dir, const char *split,
                       const DataOptions *o) {
  memset(s, 0, sizeof *s);
  s->dir = dir;
  s->split = split;
  struct stat st;
  int bad = stat(dir, &st) ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
  if (bad) {
    fprintf(stderr, "netc: error: cannot open data directory %s: %s\n", dir,
            strerror(bad));
    return -1;
  }
  char *wnids = xprintf("%s/wnids.txt", dir), *train = xprintf("%s/train", dir);
  s->layout = access(wnids, F_OK) == 0 ? LAYOUT_RELEASE : LAYOUT_FOLDER;
  int has_train = !stat(train, &st) && S_ISDIR(st.st_mode);
  free(wnids);
  free(train);
  if (s->layout == LAYOUT_FOLDER && !has_train) {
    fprintf(stderr, "netc: error: %s is not a data set: it has neither "
                    "wnids.txt (TinyImageNet) nor train/<class>/ folders "
                    "(ImageFolder)\n", dir);
    return -1;
  }
  fp_str(&s->fp, "netc-data-1");
  fp_str(&s->fp, split);
  fp_i64(&s->fp, s->layout);
  fp_i64(&s->fp, (int64_t)o->h << 32 | (uint32_t)o->w);
  if ((s->layout == LAYOUT_RELEASE ? scan_release : scan_folder)(s))
    return -1;
  for (int c = 0; c < s->nclasses; c++)
    fp_str(&s->fp, s->ids[c]);
  if (!s->nfiles && !s->nmissing) {
    fprintf(stderr, "netc: error: no JPEG images for split %s in %s\n",
            split, dir);
    return -1;
  }
  return 0;
}

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

static DataOptions options_or_defaults(const DataOptions *opt) {
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

typedef struct {
  int n, skipped, resized;
} DecodeStats;

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
static int decode_all(const Source *s, const DataOptions *o, uint8_t *pixels,
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

/* ---- the cache file ------------------------------------------------------ */

#define CACHE_VERSION 1
#define CHECKSUM_CHUNK ((size_t)4 << 20)

typedef struct {
  char magic[8]; /* "NETCDATA" */
  uint32_t version, header_bytes;
  int32_t n, h, w, nclasses;
  int32_t skipped; /* files skipped when this cache was built */
  int32_t resized; /* images that had to be resized */
  int32_t layout, reserved0;
  uint64_t fingerprint;
  uint64_t labels_offset, names_offset, names_bytes;
  uint64_t pixel_offset, pixel_bytes, file_bytes;
  uint64_t payload_checksum; /* of bytes [header_bytes, file_bytes) */
  uint64_t header_checksum;  /* of this header with this field 0 */
  uint8_t reserved[8];
} CacheHeader;

_Static_assert(sizeof(CacheHeader) == 128, "the cache header is 128 bytes");

static uint64_t header_checksum(const CacheHeader *h) {
  CacheHeader c = *h;
  c.header_checksum = 0;
  return hash_bytes(&c, sizeof c, 0x4e455443ULL);
}

/* Hashes 4 MB chunks in parallel, then the chunk hashes. */
static uint64_t payload_checksum(const uint8_t *p, size_t n, int threads) {
  size_t chunks = (n + CHECKSUM_CHUNK - 1) / CHECKSUM_CHUNK;
  uint64_t *h = xmalloc(sizeof *h * (chunks + 1));
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (size_t i = 0; i < chunks; i++) {
    size_t off = i * CHECKSUM_CHUNK, len = n - off;
    h[i] = hash_bytes(p + off, len < CHECKSUM_CHUNK ? len : CHECKSUM_CHUNK, i);
  }
  uint64_t sum = hash_bytes(h, sizeof *h * chunks, n);
  free(h);
  return sum;
}

static void cache_layout(CacheHeader *h, const Source *s, const DataOptions *o,
                         int slots) {
  memset(h, 0, sizeof *h);
  memcpy(h->magic, "NETCDATA", 8);
  h->version = CACHE_VERSION;
  h->header_bytes = sizeof *h;
  h->h = o->h, h->w = o->w;
  h->nclasses = s->nclasses;
  h->layout = s->layout;
  h->fingerprint = s->fp.h;
  h->labels_offset = sizeof *h;
  h->names_offset = h->labels_offset + 4 * (uint64_t)slots;
  for (int c = 0; c < s->nclasses; c++)
    h->names_bytes += strlen(s->ids[c]) + strlen(s->names[c]) + 2;
  h->pixel_offset = (h->names_offset + h->names_bytes + 63) & ~(uint64_t)63;
  h->pixel_bytes = (uint64_t)slots * (uint64_t)o->h * (uint64_t)o->w * 3;
  h->file_bytes = h->pixel_offset + h->pixel_bytes;
}

/* Why the header is not one of a sane cache for `s`, or NULL. */
static const char *header_problem(const CacheHeader *h, ssize_t got,
                                  off_t size, const Source *s,
                                  const DataOptions *o) {
  if (got != (ssize_t)sizeof *h || memcmp(h->magic, "NETCDATA", 8))
    return "not a netc data cache";
  if (h->header_checksum != header_checksum(h))
    return "its header checksum does not match";
  if ((uint64_t)size != h->file_bytes)
    return "truncated or extended: its size is not the one its header says";
  uint64_t img = (uint64_t)o->h * (uint64_t)o->w * 3;
  if (h->header_bytes != sizeof *h || h->h != o->h || h->w != o->w ||
      h->n <= 0 || h->nclasses != s->nclasses || h->layout != s->layout ||
      h->labels_offset != sizeof *h ||
      h->names_offset < h->labels_offset + 4 * (uint64_t)h->n ||
      h->names_offset + h->names_bytes > h->pixel_offset ||
      h->pixel_offset % 64 || h->pixel_bytes != (uint64_t)h->n * img ||
      h->pixel_offset + h->pixel_bytes != h->file_bytes)
    return "its header is inconsistent";
  return NULL;
}

/* Why the mapped payload is not sane for `s`, or NULL. */
static const char *payload_problem(const uint8_t *base, const CacheHeader *h,
                                   const Source *s, int verify, int threads) {
  if (verify && payload_checksum(base + h->header_bytes,
                                 h->file_bytes - h->header_bytes,
                                 threads) != h->payload_checksum)
    return "its checksum does not match";
  const int32_t *labels = (const int32_t *)(base + h->labels_offset);
  for (int i = 0; i < h->n; i++)
    if (labels[i] < 0 || labels[i] >= h->nclasses)
      return "a label is out of range";
  const char *p = (const char *)base + h->names_offset,
             *end = p + h->names_bytes;
  for (int i = 0; i < 2 * s->nclasses; i++) {
    const char *want = i < s->nclasses ? s->ids[i] : s->names[i - s->nclasses];
    size_t len = strlen(want) + 1;
    if ((size_t)(end - p) < len || memcmp(p, want, len))
      return "its classes are not the data set's";
    p += len;
  }
  return NULL;
}

/* Hands a mapped cache to `d`, which takes over the class lists of `s`. */
static void dataset_fill(Dataset *d, const CacheHeader *h, uint8_t *base,
                         size_t size, const char *path, Source *s) {
  d->n = h->n, d->h = h->h, d->w = h->w;
  d->nclasses = h->nclasses;
  d->class_ids = s->ids, d->class_names = s->names;
  s->ids = s->names = NULL;
  d->pixels = base + h->pixel_offset;
  d->labels = (const int32_t *)(base + h->labels_offset);
  d->skipped = h->skipped;
  d->cache_path = xstrdup(path);
  d->layout = layout_names[h->layout];
  d->map = base;
  d->map_size = size;
}

static int threads_of(const DataOptions *o) {
  return o->threads > 0 ? o->threads : omp_get_max_threads();
}

enum { CACHE_OK, CACHE_ABSENT, CACHE_STALE };

/* Maps the cache at `path` if it is a sane, current cache of `s`. A damaged
 * one is warned about, an outdated one noted; both are CACHE_STALE. */
static int cache_open(Dataset *d, const char *path, Source *s,
                      const DataOptions *o, int verify) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return CACHE_ABSENT;
  struct stat st = {0};
  CacheHeader h;
  ssize_t got = fstat(fd, &st) ? -1 : pread(fd, &h, sizeof h, 0);
  const char *why = header_problem(&h, got, st.st_size, s, o), *stale = NULL;
  if (!why && h.version != CACHE_VERSION)
    stale = "was written by another version of netc";
  else if (!why && h.fingerprint != s->fp.h)
    stale = "is out of date: the data set's files changed";
  else if (!why && h.resized > 0 && !o->resize)
    stale = "holds resized images, and --resize is off";
  void *base = MAP_FAILED;
  if (!why && !stale) {
    base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    why = base == MAP_FAILED ? strerror(errno)
                             : payload_problem(base, &h, s, verify,
                                               threads_of(o));
  }
  close(fd);
  if (why || stale) {
    if (base != MAP_FAILED)
      munmap(base, (size_t)st.st_size);
    if (why)
      fprintf(stderr, "netc: warning: ignoring the damaged cache %s (%s); "
                      "rebuilding it\n", path, why);
    else
      fprintf(stderr, "netc: cache %s %s; rebuilding it\n", path, stale);
    return CACHE_STALE;
  }
  dataset_fill(d, &h, base, (size_t)st.st_size, path, s);
  return CACHE_OK;
}

/* A cache being written: a shared mapping of a temporary file, or of
 * anonymous memory when no place to save it is writable (fd -1). */
typedef struct {
  uint8_t *base;
  size_t bytes;
  int fd;
  char tmp[PATH_MAX + 32]; /* the named temporary, "" for O_TMPFILE */
} CacheOut;

static void out_discard(CacheOut *t) {
  if (t->base)
    munmap(t->base, t->bytes);
  if (t->fd >= 0)
    close(t->fd);
  if (t->tmp[0])
    unlink(t->tmp);
}

/* Creates and maps a file of `bytes` in the directory of `path`. Returns 0,
 * or -1 with errno set (a read-only directory, a full disk). */
static int out_create(CacheOut *t, const char *path, size_t bytes) {
  memset(t, 0, sizeof *t);
  char *dir = xstrdup(path), *slash = strrchr(dir, '/');
  if (slash)
    *(slash == dir ? slash + 1 : slash) = 0;
  t->fd = open(slash ? dir : ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
  free(dir);
  /* File systems without O_TMPFILE: a named temporary instead. */
  if (t->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    snprintf(t->tmp, sizeof t->tmp, "%s.tmpXXXXXX", path);
    if ((t->fd = mkstemp(t->tmp)) >= 0)
      fchmod(t->fd, 0644);
    else
      t->tmp[0] = 0;
  }
  if (t->fd < 0)
    return -1;
  int e = posix_fallocate(t->fd, 0, (off_t)bytes);
  void *base = e ? MAP_FAILED
                 : mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                        t->fd, 0);
  if (base == MAP_FAILED) {
    e = e ? e : errno;
    out_discard(t);
    errno = e;
    return -1;
  }
  t->base = base;
  t->bytes = bytes;
  return 0;
}

static int out_memory(CacheOut *t, size_t bytes) {
  memset(t, 0, sizeof *t);
  t->fd = -1;
  void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED)
    return -1;
  t->base = base;
  t->bytes = bytes;
  return 0;
}

/* Cuts the file to `bytes` and gives it the name `path`: an unnamed file
 * is linked under a temporary name first, as link() cannot replace. */
static int out_commit(CacheOut *t, const char *path, size_t bytes) {
  munmap(t->base, t->bytes);
  t->base = NULL;
  if (ftruncate(t->fd, (off_t)bytes))
    return -1;
  if (!t->tmp[0]) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", t->fd);
    snprintf(t->tmp, sizeof t->tmp, "%s.tmp%ld", path, (long)getpid());
    unlink(t->tmp);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, t->tmp, AT_SYMLINK_FOLLOW)) {
      t->tmp[0] = 0;
      return -1;
    }
  }
  if (rename(t->tmp, path))
    return -1;
  t->tmp[0] = 0;
  close(t->fd);
  t->fd = -1;
  return 0;
}

static const char *cache_dir_of(const DataOptions *o, char *buf, size_t cap) {
  const char *env = getenv("NETC_CACHE_DIR"), *home = getenv("HOME");
  if (env && *env)
    return env;
  if (o->cache_dir && *o->cache_dir)
    return o->cache_dir;
  snprintf(buf, cap, "%s/.cache/netc", home && *home ? home : "/tmp");
  return buf;
}

/* The cache's name in the cache directory: the data directory's name and a
 * hash of its absolute path, so two data sets never share a file. */
static char *remote_path(const char *dir, const char *split,
                         const DataOptions *o) {
  char buf[PATH_MAX], *abs = realpath(dir, NULL);
  const char *full = abs ? abs : dir, *base = strrchr(full, '/');
  base = base && base[1] ? base + 1 : full;
  char *p = xprintf("%s/%s-%016llx-%s-%dx%d.bin", cache_dir_of(o, buf, sizeof buf),
                 base, (unsigned long long)hash_bytes(full, strlen(full), 7),
                 split, o->h, o->w);
  free(abs);
  return p;
}

static int data_dir_read_only(void) {
  const char *e = getenv("NETC_CACHE_READONLY_DATA");
  return e && *e && strcmp(e, "0");
}

/* Picks where the new cache goes: beside the data, else the cache
 * directory, else memory. Returns the path, or NULL for memory. */
static const char *cache_place(CacheOut *t, char *const paths[2],
                               size_t bytes) {
  int e0 = EROFS;
  if (!data_dir_read_only()) {
    if (!out_create(t, paths[0], bytes))
      return paths[0];
    e0 = errno;
  }
  char *dir = xstrdup(paths[1]);
  *strrchr(dir, '/') = 0;
  if (!make_dirs(dir) && !out_create(t, paths[1], bytes)) {
    free(dir);
    return paths[1];
  }
  fprintf(stderr, "netc: warning: cannot write a cache beside the data (%s) "
                  "nor in %s (%s); decoding into memory, which the next run "
                  "repeats (set NETC_CACHE_DIR to a writable directory)\n",
          strerror(e0), dir, strerror(errno));
  free(dir);
  out_memory(t, bytes);
  return NULL;
}

/* Writes the header, labels and class names around decoded pixels. */
static void cache_finish(CacheHeader *h, uint8_t *base, const Source *s,
                         const DecodeStats *st, const DataOptions *o) {
  h->n = st->n;
  h->skipped = st->skipped + s->nmissing;
  h->resized = st->resized;
  h->pixel_bytes = (uint64_t)st->n * (uint64_t)o->h * (uint64_t)o->w * 3;
  h->file_bytes = h->pixel_offset + h->pixel_bytes;
  char *p = (char *)base + h->names_offset;
  for (int i = 0; i < 2 * s->nclasses; i++) {
    const char *name = i < s->nclasses ? s->ids[i] : s->names[i - s->nclasses];
    size_t len = strlen(name) + 1;
    memcpy(p, name, len);
    p += len;
  }
  h->payload_checksum = payload_checksum(base + h->header_bytes,
                                         h->file_bytes - h->header_bytes,
                                         threads_of(o));
  h->header_checksum = header_checksum(h);
  memcpy(base, h, sizeof *h);
}

/* Decodes `s` into a new cache and maps it into `d`. */
static int cache_build(Dataset *d, Source *s, const DataOptions *o,
                       char *const paths[2]) {
  double t0 = now_seconds();
  CacheHeader h;
  CacheOut t;
  cache_layout(&h, s, o, s->nfiles);
  const char *where = cache_place(&t, paths, h.file_bytes);
  if (!t.base) {
    fprintf(stderr, "netc: error: out of memory for %s/%s\n", s->dir, s->split);
    return -1;
  }
  DecodeStats st;
  if (decode_all(s, o, t.base + h.pixel_offset,
                 (int32_t *)(t.base + h.labels_offset), &st)) {
    out_discard(&t);
    return -1;
  }
  if (!st.n) {
    fprintf(stderr, "netc: error: none of the %d images of %s/%s could be "
                    "read\n", s->nfiles + s->nmissing, s->dir, s->split);
    out_discard(&t);
    return -1;
  }
  cache_finish(&h, t.base, s, &st, o);
  if (!where) {
    dataset_fill(d, &h, t.base, t.bytes, "(memory)", s);
  } else if (out_commit(&t, where, h.file_bytes)) {
    fprintf(stderr, "netc: error: cannot write %s: %s\n", where,
            strerror(errno));
    out_discard(&t);
    return -1;
  } else if (cache_open(d, where, s, o, 0) != CACHE_OK) {
    return -1; /* cache_open said why */
  }
  fprintf(stderr, "netc: decoded %d images of %s (%d skipped) into %s in "
                  "%.1f s\n", st.n, s->split, d->skipped, d->cache_path,
          now_seconds() - t0);
  return 0;
}

int dataset_open(Dataset *d, const char *dir, const char *split,
                 const DataOptions *opt) {
  memset(d, 0, sizeof *d);
  DataOptions o = options_or_defaults(opt);
  if (!dir || !split || (strcmp(split, "train") && strcmp(split, "val"))) {
    fprintf(stderr, "netc: error: unknown split '%s' (train or val)\n",
            split ? split : "(null)");
    return -1;
  }
  /* "data/" and "data" are one data set with one cache. */
  char *root = xstrdup(dir);
  for (size_t n = strlen(root); n > 1 && root[n - 1] == '/';)
    root[--n] = 0;
  dir = root;
  Source s;
  int rc = source_scan(&s, dir, split, &o);
  if (!rc) {
    char *paths[2] = {xprintf("%s/.netc-cache-%s-%dx%d.bin", dir, split, o.h, o.w),
                      remote_path(dir, split, &o)};
    int found[2] = {CACHE_ABSENT, CACHE_ABSENT};
    found[0] = cache_open(d, paths[0], &s, &o, 1);
    if (found[0] != CACHE_OK && strcmp(paths[0], paths[1]))
      found[1] = cache_open(d, paths[1], &s, &o, 1);
    if ((found[0] == CACHE_OK || found[1] == CACHE_OK) && d->skipped &&
        !o.quiet)
      fprintf(stderr, "netc: note: %d files of %s/%s were skipped when %s "
                      "was built (see that run's warnings)\n", d->skipped,
              dir, split, d->cache_path);
    if (found[0] != CACHE_OK && found[1] != CACHE_OK) {
      rc = cache_build(d, &s, &o, paths);
      /* An outdated cache the new one does not replace is only litter. */
      for (int i = 0; !rc && i < 2; i++)
        if (found[i] == CACHE_STALE && strcmp(paths[i], d->cache_path))
          unlink(paths[i]);
    }
    free(paths[0]);
    free(paths[1]);
  }
  source_free(&s);
  free(root);
  if (rc)
    dataset_close(d);
  return rc ? -1 : 0;
}

void dataset_close(Dataset *d) {
  if (d->map)
    munmap(d->map, d->map_size);
  for (int i = 0; i < d->nclasses; i++) {
    if (d->class_ids)
      free(d->class_ids[i]);
    if (d->class_names)
      free(d->class_names[i]);
  }
  free(d->class_ids);
  free(d->class_names);
  free((char *)d->cache_path);
  memset(d, 0, sizeof *d);
}

/* ---- normalization and augmentation -------------------------------------- */

static const float norm_mean[3] = {NETC_MEAN_R, NETC_MEAN_G, NETC_MEAN_B};
static const float norm_std[3] = {NETC_STD_R, NETC_STD_G, NETC_STD_B};

/* lut[c][v] = (v / 255 - mean[c]) / std[c], in float as torchvision's
 * ToTensor and Normalize compute it, so values match PyTorch exactly. */
static void make_lut(float lut[3][256]) {
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v++)
      lut[c][v] = ((float)v / 255.0f - norm_mean[c]) / norm_std[c];
}

void image_normalize(float *out, const uint8_t *rgb, int h, int w) {
  float lut[3][256];
  make_lut(lut);
  for (size_t i = 0; i < (size_t)h * w; i++)
    for (int c = 0; c < 3; c++)
      out[3 * i + c] = lut[c][rgb[3 * i + c]];
}

/* RandomCrop(padding=pad) then RandomHorizontalFlip, as torchvision: the
 * image is padded with black (0) before normalization, so padding becomes
 * lut[c][0]. Bits of r: 0-23 pick dx, 24-47 dy, 63 the flip. */
static void augment(float *out, const uint8_t *src, int h, int w, int pad,
                    uint64_t r, const float lut[3][256]) {
  uint64_t span = (uint64_t)(2 * pad + 1);
  int dx = (int)(((r & 0xffffff) * span) >> 24) - pad;
  int dy = (int)((((r >> 24) & 0xffffff) * span) >> 24) - pad;
  int flip = (int)(r >> 63);
  for (int y = 0; y < h; y++) {
    float *o = out + (size_t)y * w * 3;
    int sy = y + dy, inside = sy >= 0 && sy < h;
    const uint8_t *row = src + (size_t)(inside ? sy : 0) * w * 3;
    for (int x = 0; x < w; x++, o += 3) {
      int sx = (flip ? w - 1 - x : x) + dx;
      if (!inside || sx < 0 || sx >= w) {
        o[0] = lut[0][0], o[1] = lut[1][0], o[2] = lut[2][0];
      } else {
        const uint8_t *p = row + 3 * sx;
        o[0] = lut[0][p[0]], o[1] = lut[1][p[1]], o[2] = lut[2][p[2]];
      }
    }
  }
}

/* hash(seed, epoch, index) */
static uint64_t hash3(uint64_t seed, uint64_t epoch, uint64_t index) {
  return mix64(mix64(mix64(seed + 0x6a09e667f3bcc909ULL) + epoch) + index);
}

/* The order of epoch `epoch`: Fisher-Yates driven by splitmix64. */
static void make_perm(int32_t *p, int n, uint64_t seed, int epoch) {
  uint64_t st = hash3(seed, (uint64_t)epoch, UINT64_MAX);
  for (int i = 0; i < n; i++)
    p[i] = i;
  for (int i = n - 1; i > 0; i--) {
    st += 0x9e3779b97f4a7c15ULL;
    uint64_t r = mix64(st);
    int j = (int)(((r >> 32) * (uint64_t)(i + 1)) >> 32);
    int32_t t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
}

/* ---- the loader ---------------------------------------------------------- */

#define RING 3

typedef struct {
  float *x;
  int32_t *y;
  int count, epoch, step;
} Batch;

/* A producer's state: the permutation of the epoch it is in. Each producer
 * (the caller, or the prefetch thread) has its own. */
typedef struct {
  int32_t *perm;
  int epoch; /* of perm, -1: none yet */
} Cursor;

struct Loader {
  const Dataset *d;
  LoaderOptions o;
  int steps;
  size_t img; /* floats per image */
  float lut[3][256];
  int epoch, step; /* the next batch of loader_next (without prefetch) */
  Cursor cur;
  /* prefetch: the thread fills ring slots head .. head + filled - 1 in
   * order, producing (next_epoch, next_step) onwards; a seek that does not
   * match what is queued bumps gen, which voids the batch in progress */
  int threaded, stop;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t ready, space;
  Batch ring[RING];
  int head, filled, next_epoch, next_step;
  unsigned gen;
  Cursor wcur;
};

/* After batch (epoch, step) comes (epoch, step + 1); after the last one an
 * end-of-epoch marker (step == steps), then the next epoch. */
static void advance(const Loader *l, int *epoch, int *step) {
  if (++*step > l->steps)
    ++*epoch, *step = 0;
}

/* Makes batch `step` of epoch `epoch`; returns its count of real images. */
static int make_batch(const Loader *l, Cursor *c, int epoch, int step,
                      float *x, int32_t *y) {
  const Dataset *d = l->d;
  int b = l->o.batch;
  size_t img8 = (size_t)d->h * d->w * 3;
  if (step >= l->steps)
    return 0;
  if (!l->o.train) {
    int first = step * b, count = d->n - first < b ? d->n - first : b;
    for (int j = 0; j < count; j++) {
      const uint8_t *p = d->pixels + (size_t)(first + j) * img8;
      float *o = x + (size_t)j * l->img;
      for (size_t i = 0; i < img8; i += 3) {
        o[i] = l->lut[0][p[i]];
        o[i + 1] = l->lut[1][p[i + 1]];
        o[i + 2] = l->lut[2][p[i + 2]];
      }
      y[j] = d->labels[first + j];
    }
    memset(x + (size_t)count * l->img, 0, sizeof *x * l->img * (size_t)(b - count));
    memset(y + count, 0, sizeof *y * (size_t)(b - count));
    return count;
  }
  if (c->epoch != epoch) {
    make_perm(c->perm, d->n, l->o.seed, epoch);
    c->epoch = epoch;
  }
  for (int j = 0; j < b; j++) {
    int64_t pos = (int64_t)step * b + j;
    int32_t k = c->perm[pos];
    augment(x + (size_t)j * l->img, d->pixels + (size_t)k * img8, d->h, d->w,
            l->o.pad, hash3(l->o.seed, (uint64_t)epoch, (uint64_t)pos),
            l->lut);
    y[j] = d->labels[k];
  }
  return b;
}

static void *prefetch_main(void *arg) {
  Loader *l = arg;
  pthread_mutex_lock(&l->mu);
  while (!l->stop) {
    if (l->filled == RING) {
      pthread_cond_wait(&l->space, &l->mu);
      continue;
    }
    unsigned gen = l->gen;
    Batch *b = &l->ring[(l->head + l->filled) % RING];
    b->epoch = l->next_epoch, b->step = l->next_step;
    pthread_mutex_unlock(&l->mu);
    b->count = make_batch(l, &l->wcur, b->epoch, b->step, b->x, b->y);
    pthread_mutex_lock(&l->mu);
    if (gen == l->gen) {
      l->filled++;
      advance(l, &l->next_epoch, &l->next_step);
      pthread_cond_signal(&l->ready);
    }
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

static int cursor_init(Cursor *c, const Loader *l) {
  c->epoch = -1;
  c->perm = l->o.train ? malloc(sizeof(int32_t) * (size_t)l->d->n) : NULL;
  return l->o.train && !c->perm ? -1 : 0;
}

static int start_prefetch(Loader *l) {
  for (int i = 0; i < RING; i++) {
    l->ring[i].x = malloc(sizeof(float) * l->img * (size_t)l->o.batch);
    l->ring[i].y = malloc(sizeof(int32_t) * (size_t)l->o.batch);
    if (!l->ring[i].x || !l->ring[i].y)
      return -1;
  }
  if (cursor_init(&l->wcur, l))
    return -1;
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->ready, NULL);
  pthread_cond_init(&l->space, NULL);
  if (pthread_create(&l->thread, NULL, prefetch_main, l)) {
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->ready);
    pthread_cond_destroy(&l->space);
    return -1;
  }
  l->threaded = 1;
  return 0;
}

Loader *loader_new(const Dataset *d, const LoaderOptions *o) {
  if (!d || !o || o->batch <= 0 || d->n <= 0 || !d->pixels) {
    fprintf(stderr, "netc: error: a loader needs a batch size > 0 and an "
                    "open data set with images\n");
    return NULL;
  }
  Loader *l = xcalloc(1, sizeof *l);
  l->d = d;
  l->o = *o;
  l->o.pad = o->pad > 0 ? o->pad : 0;
  l->steps = o->train ? d->n / o->batch : (d->n + o->batch - 1) / o->batch;
  l->img = (size_t)d->h * d->w * 3;
  make_lut(l->lut);
  if (cursor_init(&l->cur, l) || (o->prefetch && start_prefetch(l))) {
    fprintf(stderr, "netc: error: cannot set up the data loader: %s\n",
            strerror(errno ? errno : ENOMEM));
    loader_free(l);
    return NULL;
  }
  return l;
}

void loader_free(Loader *l) {
  if (!l)
    return;
  if (l->threaded) {
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->space);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->ready);
    pthread_cond_destroy(&l->space);
  }
  for (int i = 0; i < RING; i++) {
    free(l->ring[i].x);
    free(l->ring[i].y);
  }
  free(l->cur.perm);
  free(l->wcur.perm);
  free(l);
}

int loader_steps(const Loader *l) { return l ? l->steps : 0; }

void loader_seek(Loader *l, int epoch, int step) {
  epoch = epoch < 0 ? 0 : epoch;
  step = step < 0 ? 0 : step > l->steps ? l->steps : step;
  if (!l->threaded) {
    l->epoch = epoch, l->step = step;
    return;
  }
  pthread_mutex_lock(&l->mu);
  const Batch *b = &l->ring[l->head];
  int queued = l->filled ? b->epoch == epoch && b->step == step
                         : l->next_epoch == epoch && l->next_step == step;
  if (!queued) { /* drop what was made ahead; keep it when resuming in place */
    l->gen++;
    l->head = l->filled = 0;
    l->next_epoch = epoch, l->next_step = step;
    pthread_cond_signal(&l->space);
  }
  pthread_mutex_unlock(&l->mu);
}

int loader_next(Loader *l, float *x, int32_t *y) {
  if (!l->threaded) {
    int n = make_batch(l, &l->cur, l->epoch, l->step, x, y);
    advance(l, &l->epoch, &l->step);
    return n;
  }
  pthread_mutex_lock(&l->mu);
  while (!l->filled)
    pthread_cond_wait(&l->ready, &l->mu);
  const Batch *b = &l->ring[l->head];
  pthread_mutex_unlock(&l->mu);
  /* The thread never writes a queued slot, so copy without the lock. */
  int n = b->count;
  if (b->step < l->steps) {
    memcpy(x, b->x, sizeof *x * l->img * (size_t)l->o.batch);
    memcpy(y, b->y, sizeof *y * (size_t)l->o.batch);
  }
  pthread_mutex_lock(&l->mu);
  l->head = (l->head + 1) % RING;
  l->filled--;
  pthread_cond_signal(&l->space);
  pthread_mutex_unlock(&l->mu);
  return n;
}
