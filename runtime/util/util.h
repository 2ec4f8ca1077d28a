/* util.h: the small helpers every part of the runtime shares (and the
 * compiler's `netc build`, for make_dirs): a monotonic clock, mkdir -p, one
 * 64-bit hash, and allocation that cannot return NULL. One copy each. */
#ifndef NETC_UTIL_H
#define NETC_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Seconds on the monotonic clock: for durations only. */
double now_seconds(void);

/* mkdir -p: creates `path` and its missing parents. Returns 0, or -1 with
 * errno set (the path exists as a file, no permission, ...). */
int make_dirs(const char *path);

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
