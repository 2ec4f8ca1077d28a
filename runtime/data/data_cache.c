/* data_cache.c: dataset_open and dataset_close (data.h), around a cache
 * file of decoded pixels. dataset_open lists the data set (data_list.c)
 * and looks for a cache with its fingerprint; only when there is none does
 * it decode every JPEG (jpeg.c) into a new one. Training then reads the
 * uint8 pixels straight from a read-only mmap of the cache.
 *
 * Cache file, version 2, host byte order:
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
 * fingerprint (see data_list.c) and the checksum of its whole payload
 * (hashed in parallel, about 0.1 s per GB) all match; anything else is
 * rebuilt, with a warning when the file was damaged rather than merely out
 * of date. The checksums and the fingerprint are util.h's hash_bytes: a
 * change to it changes every cache's bytes, so it must come with a new
 * CACHE_VERSION. The cache is not fsync'ed: a crash that loses its pages
 * fails the payload checksum next time. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_internal.h"
#include "util/util.h"

/* ---- the cache file ------------------------------------------------------ */

/* 2: util.h's hash_bytes got a stronger lane step (version 1's checksums
 * and fingerprints are another hash's). */
#define CACHE_VERSION 2
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

/* Why the header is not one of a sane cache for `s`, or NULL. Another
 * version's header is not checked (its checksum may be another hash's, and
 * it is not damaged): cache_open calls it out of date. */
static const char *header_problem(const CacheHeader *h, ssize_t got,
                                  off_t size, const Source *s,
                                  const DataOptions *o) {
  if (got != (ssize_t)sizeof *h || memcmp(h->magic, "NETCDATA", 8))
    return "not a netc data cache";
  if (h->version != CACHE_VERSION)
    return NULL;
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
  class_lists_free(d->class_ids, d->class_names, d->nclasses);
  free((char *)d->cache_path);
  memset(d, 0, sizeof *d);
}
