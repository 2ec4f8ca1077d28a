/* pool.c: the arena every compilation allocates from, and small string
 * helpers. A compilation frees everything with one pool_free, so no error
 * path can leak. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "netc.h"

struct PoolBlock {
  PoolBlock *next;
  size_t used, size;
  _Alignas(16) unsigned char data[];
};

enum { POOL_BLOCK = 64 * 1024 };

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p) {
    fprintf(stderr, "netc: out of memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}

void *pool_alloc(Pool *p, size_t size) {
  size = (size + 15) & ~(size_t)15;
  PoolBlock *b = p->head;
  if (!b || b->size - b->used < size) {
    size_t cap = size > POOL_BLOCK ? size : POOL_BLOCK;
    b = xmalloc(sizeof(PoolBlock) + cap);
    b->size = cap;
    b->used = 0;
    /* A large one-off block goes behind the current one, so the current
     * block's free space stays usable. */
    if (p->head && size > POOL_BLOCK) {
      b->next = p->head->next;
      p->head->next = b;
    } else {
      b->next = p->head;
      p->head = b;
    }
  }
  void *r = b->data + b->used;
  b->used += size;
  memset(r, 0, size);
  return r;
}

char *pool_strndup(Pool *p, const char *s, size_t n) {
  char *r = pool_alloc(p, n + 1);
  memcpy(r, s, n);
  r[n] = 0;
  return r;
}

char *pool_strdup(Pool *p, const char *s) {
  return pool_strndup(p, s, strlen(s));
}

char *pool_printf(Pool *p, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *r = pool_alloc(p, (size_t)n + 1);
  vsnprintf(r, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return r;
}

/* Grows an array of n elements to hold at least n + 1 (doubling). The old
 * storage stays in the pool until pool_free: at most 2x waste. */
void *pool_grow(Pool *p, void *old, size_t elem, int n, int *cap) {
  if (n < *cap)
    return old;
  int ncap = *cap ? *cap * 2 : 16;
  void *r = pool_alloc(p, elem * (size_t)ncap);
  if (old)
    memcpy(r, old, elem * (size_t)n);
  *cap = ncap;
  return r;
}

void pool_free(Pool *p) {
  PoolBlock *b = p->head;
  while (b) {
    PoolBlock *next = b->next;
    free(b);
    b = next;
  }
  p->head = NULL;
}

/* Edit distance with adjacent transpositions ("widht" -> "width" is 1),
 * for "did you mean" hints. Names are short (MAX_IDENT_LEN). */
int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > MAX_IDENT_LEN || lb > MAX_IDENT_LEN)
    return MAX_IDENT_LEN;
  int d[MAX_IDENT_LEN + 1][MAX_IDENT_LEN + 1];
  for (size_t i = 0; i <= la; i++)
    d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++)
    d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    for (size_t j = 1; j <= lb; j++) {
      int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < best)
        best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best)
        best = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  }
  return d[la][lb];
}

/* Names people bring from other frameworks, and what netc calls them. */
static const char *const aliases[][2] = {
    {"kernel", "k"},          {"kernel_size", "k"},   {"ksize", "k"},
    {"padding", "pad"},       {"strides", "stride"},  {"out_channels", "out"},
    {"filters", "out"},       {"channels", "out"},    {"units", "out"},
    {"out_features", "out"},  {"bn", "batchnorm"},    {"batch_norm", "batchnorm"},
    {"batchnorm2d", "batchnorm"}, {"conv2d", "conv"}, {"convolution", "conv"},
    {"linear", "dense"},      {"fc", "dense"},        {"fully_connected", "dense"},
    {"max_pool", "maxpool"},  {"maxpool2d", "maxpool"}, {"avg_pool", "avgpool"},
    {"avgpool2d", "avgpool"}, {"gap", "global_avgpool"},
    {"adaptive_avgpool", "global_avgpool"}, {"sum", "add"},
    {"cross_entropy", "softmax_cross_entropy"},
    {"softmax", "softmax_cross_entropy"},
};

const char *nearest_name(const char *name, const char *const *cands, int n) {
  for (size_t a = 0; a < sizeof aliases / sizeof aliases[0]; a++)
    if (!strcasecmp(name, aliases[a][0]))
      for (int i = 0; i < n; i++)
        if (cands[i] && !strcmp(cands[i], aliases[a][1]))
          return cands[i];
  if (strlen(name) < 2) /* every other one-letter name is 1 edit away */
    return NULL;
  const char *best = NULL;
  int bestd = 0;
  for (int i = 0; i < n; i++) {
    if (!cands[i])
      continue;
    int d = edit_distance(name, cands[i]);
    if (!best || d < bestd) {
      best = cands[i];
      bestd = d;
    }
  }
  /* Plausible: at most a third of the name wrong (at least 1, at most 3),
   * or the name is a prefix of the candidate ("batch" -> "batchnorm"). */
  int len = (int)strlen(name);
  int allowed = len / 3 < 1 ? 1 : (len / 3 > 3 ? 3 : len / 3);
  if (best && bestd <= allowed)
    return best;
  for (int i = 0; i < n; i++)
    if (cands[i] && len >= 3 && strncmp(cands[i], name, (size_t)len) == 0)
      return cands[i];
  return NULL;
}
