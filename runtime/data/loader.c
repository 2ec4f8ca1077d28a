/* loader.c: the Loader of data.h, which turns an open Dataset's uint8
 * pixels into shuffled, augmented (random crop with zero padding, flip),
 * normalized NHWC float batches, optionally on a thread that works ahead
 * of the trainer (a ring of RING batches); and image_normalize.
 *
 * Loader randomness derives from (seed, epoch, position) alone: the order
 * of epoch e is a Fisher-Yates shuffle driven by splitmix64 seeded with
 * hash(seed, e); the image at position i of epoch e gets its crop offsets
 * and flip from hash(seed, e, i). So batches do not depend on timing,
 * prefetching or where a run was resumed.
 *
 * Requires: the Dataset outlives the Loader, and one thread calls it. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "util/util.h"

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
  int parts = l->o.parts;
  int64_t at = (int64_t)(step / parts) * l->o.group + l->o.offset +
               (int64_t)(step % parts) * b; /* the batch's first position */
  if (!l->o.train) {
    int first = (int)(at < d->n ? at : d->n);
    int count = d->n - first < b ? d->n - first : b;
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
    int64_t pos = at + j;
    int32_t k = c->perm[pos];
    augment(x + (size_t)j * l->img, d->pixels + (size_t)k * img8, d->h, d->w,
            l->o.pad,
            hash3(l->o.seed, (uint64_t)epoch, (uint64_t)pos) &
                (l->o.no_flip ? ~(1ULL << 63) : ~0ULL),
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
  l->o.parts = o->parts > 0 ? o->parts : 1;
  l->o.group = o->group > 0 ? o->group : o->batch * l->o.parts;
  if (l->o.offset < 0 || l->o.offset + o->batch * l->o.parts > l->o.group) {
    fprintf(stderr, "netc: error: a loader's share (%d + %d x %d) lies "
                    "outside its group of %d images\n",
            l->o.offset, l->o.parts, o->batch, l->o.group);
    free(l);
    return NULL;
  }
  int group = l->o.group;
  l->steps = (o->train ? d->n / group : (d->n + group - 1) / group) *
             l->o.parts;
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
