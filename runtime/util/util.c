/* util.c: the runtime's shared helpers (util.h). Plain POSIX and C11, no
 * other runtime file, so the compiler links it too. */
#include "util/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int make_dirs(const char *path) {
  size_t n = strlen(path);
  char *buf = malloc(n + 1);
  if (!buf)
    return -1;
  memcpy(buf, path, n + 1);
  int rc = 0;
  for (char *p = buf + 1; *p && rc == 0; p++)
    if (*p == '/') {
      *p = 0;
      if (mkdir(buf, 0777) && errno != EEXIST)
        rc = -1;
      *p = '/';
    }
  if (rc == 0 && mkdir(buf, 0777) && errno != EEXIST)
    rc = -1;
  struct stat st;
  if (rc == 0 && (stat(buf, &st) || !S_ISDIR(st.st_mode))) {
    errno = ENOTDIR;
    rc = -1;
  }
  int err = errno;
  free(buf);
  errno = err;
  return rc;
}

int outfile_open(OutFile *o, const char *path) {
  struct stat st;
  *o = (OutFile){.path = xstrdup(path)};
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    o->f = fopen(path, "w");
  } else {
    o->tmp = xprintf("%s.tmp%ld", path, (long)getpid());
    o->f = fopen(o->tmp, "w");
  }
  if (!o->f) {
    int err = errno;
    free(o->path);
    free(o->tmp);
    errno = err;
    return -1;
  }
  return 0;
}

/* Every write failed or not: the error flag covers those the final flush
 * does not. errno still holds the failed write's cause, or is 0. */
static int close_checked(FILE *f, bool close) {
  bool failed = ferror(f) != 0;
  int err = errno;
  int rc = close ? fclose(f) : fflush(f);
  if (rc == 0 && !failed)
    return 0;
  if (rc == 0)
    errno = err ? err : EIO;
  return -1;
}

static void outfile_free(OutFile *o) {
  free(o->path);
  free(o->tmp);
  *o = (OutFile){0};
}

int outfile_commit_all(OutFile *o, int n, int *failed) {
  int bad = -1, err = 0;
  for (int i = 0; i < n; i++) /* every file checked and closed first */
    if (close_checked(o[i].f, true) && bad < 0) {
      bad = i;
      err = errno;
    }
  for (int i = 0; i < n && bad < 0; i++) /* then all renamed */
    if (o[i].tmp && rename(o[i].tmp, o[i].path)) {
      bad = i;
      err = errno;
    }
  for (int i = 0; i < n; i++) {
    if (bad >= 0 && o[i].tmp)
      unlink(o[i].tmp);
    outfile_free(&o[i]);
  }
  if (failed)
    *failed = bad;
  errno = err;
  return bad < 0 ? 0 : -1;
}

int outfile_commit(OutFile *o) { return outfile_commit_all(o, 1, NULL); }

void outfile_abandon(OutFile *o) {
  fclose(o->f);
  if (o->tmp)
    unlink(o->tmp);
  outfile_free(o);
}

int outfile_flush(FILE *f) { return close_checked(f, false); }

uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* One lane's step, xxHash64's round: the multiply before the rotation
 * spreads a difference in w over the high bits, the rotation brings them
 * down, the second multiply spreads them again. (A rotate-then-multiply
 * step leaves a difference in bit 62 or 63 alone, which the lane's next
 * word could cancel: two flipped bits 32 bytes apart did not change the
 * hash.) */
static uint64_t lane(uint64_t acc, uint64_t w) {
  return rotl64(acc + w * 0xc2b2ae3d27d4eb4fULL, 31) * 0x9e3779b185ebca87ULL;
}

uint64_t hash_bytes(const void *data, size_t n, uint64_t seed) {
  const unsigned char *p = data;
  uint64_t a = seed ^ 0x243f6a8885a308d3ULL, b = seed ^ 0x13198a2e03707344ULL,
           c = seed ^ 0xa4093822299f31d0ULL, e = seed ^ 0x082efa98ec4e6c89ULL;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint64_t w[4];
    memcpy(w, p + i, 32);
    a = lane(a, w[0]);
    b = lane(b, w[1]);
    c = lane(c, w[2]);
    e = lane(e, w[3]);
  }
  /* The tail, FNV-1a; the length is mixed in on its own (with t = n to
   * start, "" and "\x01" both left t at 0). */
  uint64_t t = 0xcbf29ce484222325ULL;
  for (; i < n; i++)
    t = (t ^ p[i]) * 0x100000001b3ULL;
  return mix64(a ^ mix64(b ^ mix64(c ^ mix64(e ^ mix64(t ^ mix64(n))))));
}

static void *out_of_memory(size_t n) {
  fprintf(stderr, "netc: error: out of memory (%zu bytes)\n", n);
  exit(1);
}

void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  return p ? p : out_of_memory(n);
}

void *xmalloc(size_t n) { return xrealloc(NULL, n); }

void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  return p ? p : out_of_memory(n * size);
}

char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xmalloc(n), s, n);
}

char *xprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  int rc = vasprintf(&s, fmt, ap);
  va_end(ap);
  return rc < 0 ? out_of_memory(strlen(fmt)) : s;
}
