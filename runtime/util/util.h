/* util.h: the small helpers every part of the runtime shares (and the
 * compiler, for make_dirs and OutFile): a monotonic clock, mkdir -p, files
 * written whole or not at all, one 64-bit hash, and allocation that cannot
 * return NULL. One copy each. */
#ifndef NETC_UTIL_H
#define NETC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Seconds on the monotonic clock: for durations only. */
double now_seconds(void);

/* mkdir -p: creates `path` and its missing parents. Returns 0, or -1 with
 * errno set (the path exists as a file, no permission, ...). */
int make_dirs(const char *path);

/* A file written whole or not at all. outfile_open() writes to a temporary
 * file beside PATH; outfile_commit() checks every write (the stream's error
 * flag as well as the final flush, so a write that failed early in a long
 * output counts) and renames the file over PATH. A failed write (a full
 * disk) thus leaves PATH as it was. A PATH that exists and is not a regular
 * file (/dev/full, a FIFO, /dev/stdout) is written directly. Both return 0,
 * or -1 with errno set; on failure nothing is left behind. */
typedef struct {
  FILE *f;
  char *path, *tmp; /* tmp: NULL when PATH is written directly */
} OutFile;
int outfile_open(OutFile *o, const char *path);
int outfile_commit(OutFile *o);
/* Commits n files as one: all are checked before any is renamed, so a
 * failed write in one leaves every PATH as it was. On failure, *failed
 * (if not NULL) is the index of the file that failed. */
int outfile_commit_all(OutFile *o, int n, int *failed);
/* Closes without committing: PATH stays as it was. */
void outfile_abandon(OutFile *o);
/* Flushes a stream that stays open (stdout): 0, or -1 with errno set if
 * this or any earlier write to it failed. */
int outfile_flush(FILE *f);

/* A fast 64-bit hash for checksums and fingerprints (not cryptographic):
 * four independent lanes keep it at memory speed. Chain calls by passing
 * the last result as the next seed. Data caches and checkpoints store its
 * values: a change to it needs a new CACHE_VERSION (data_cache.c) and
 * CKPT_VERSION (train.h); tests/check_util.c pins a few. */
uint64_t hash_bytes(const void *data, size_t n, uint64_t seed);
/* splitmix64's finalizer: a bijection of 64-bit words that spreads every
 * input bit over the output (hash_bytes ends with it; the data loader
 * derives its shuffles and crops from it). */
uint64_t mix64(uint64_t x);

/* Allocation for code that cannot go on without the memory: on failure
 * they print "netc: error: out of memory (N bytes)" and exit(1). Never
 * used inside a training step (the plan owns that memory). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* A formatted, malloc'ed string. */
char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
