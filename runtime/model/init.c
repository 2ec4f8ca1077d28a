/* init.c: a model's memory, and its initialization as torchvision does it:
 * convolutions Kaiming normal (fan_out, ReLU gain), batchnorm weight 1 and
 * bias 0, dense layers and conv biases PyTorch's default uniform. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/netc_model.h"

static int64_t allocated; /* plan-owned bytes allocated by this process */

int64_t netc_allocated_bytes(void) { return allocated; }

/* The plan's sizes are multiples of 64 already; a region of 0 bytes (no
 * batchnorm) gets no memory at all. */
void *netc_alloc(int64_t bytes) {
  void *p = NULL;
  if (bytes <= 0 || posix_memalign(&p, 64, (size_t)bytes))
    return NULL;
  memset(p, 0, (size_t)bytes);
  allocated += bytes;
  return p;
}

NetcState *netc_state_new(const NetcModel *m) {
  NetcState *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->model = m;
  s->params = netc_alloc(m->param_bytes);
  s->bn_stats = netc_alloc(m->stats_bytes);
  s->arena = netc_alloc(m->arena_bytes);
  s->bn_momentum = 0.1f;
  s->bn_eps = 1e-5f;
  s->accumulate = 1;
  s->loss_scale = 1.0f;
  if ((m->param_bytes && !s->params) || (m->stats_bytes && !s->bn_stats) ||
      !s->arena) {
    netc_state_free(s);
    return NULL;
  }
  return s;
}

int64_t netc_accum_bytes(const NetcModel *m) {
  if (!m->nbuckets)
    return m->param_bytes;
  const NetcBucket *b = &m->buckets[m->nbuckets - 1];
  return b->accum_offset + b->floats * 4;
}

int netc_state_accumulate(NetcState *s, int k, int procs) {
  s->accumulate = k > 1 ? k : 1;
  s->micro = 0;
  s->loss_scale = 1.0f / ((float)s->accumulate * (float)(procs > 1 ? procs : 1));
  if (s->accumulate > 1 && !s->accum)
    s->accum = netc_alloc(netc_accum_bytes(s->model));
  return s->accumulate == 1 || s->accum ? 0 : -1;
}

int netc_state_keep_grads(NetcState *s) {
  /* Test tooling, not the plan's: posix_memalign, not netc_alloc. */
  void *p = NULL;
  size_t n = (size_t)(s->model->param_bytes > 0 ? s->model->param_bytes : 64);
  if (!s->grads && posix_memalign(&p, 64, n) == 0) {
    memset(p, 0, n);
    s->grads = p;
  }
  return s->grads ? 0 : -1;
}

void netc_state_free(NetcState *s) {
  if (!s)
    return;
  free(s->prof_seconds);
  free(s->params);
  free(s->grads);
  free(s->accum);
  free(s->bn_stats);
  free(s->arena);
  free(s);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rng_seed(NetcRng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) { /* splitmix64 */
    uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    r->s[i] = z ^ (z >> 31);
  }
}

uint64_t rng_next(NetcRng *r) {
  uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}

double rng_uniform(NetcRng *r) {
  return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

double rng_normal(NetcRng *r) { /* Box-Muller */
  double u = rng_uniform(r), v = rng_uniform(r);
  return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

void netc_init_params(NetcState *s, uint64_t seed) {
  const NetcModel *m = s->model;
  NetcRng r;
  rng_seed(&r, seed);
  for (int i = 0; i < m->nparam_tensors; i++) {
    const NetcParam *p = &m->params[i];
    float *w = netc_param(s, i);
    double bound = 1.0 / sqrt((double)(p->fan_in > 0 ? p->fan_in : 1));
    double std = sqrt(2.0 / (double)(p->fan_out > 0 ? p->fan_out : 1));
    for (int64_t j = 0; j < p->count; j++) {
      switch (p->kind) {
      case NP_CONV_WEIGHT: w[j] = (float)(std * rng_normal(&r)); break;
      case NP_BN_WEIGHT: w[j] = 1.0f; break;
      case NP_BN_BIAS: w[j] = 0.0f; break;
      default: w[j] = (float)(bound * (2.0 * rng_uniform(&r) - 1.0)); break;
      }
    }
    if (p->kind != NP_BN_WEIGHT) /* running mean 0, variance 1 */
      continue;
    float *mean = netc_bn_stat(s, i, 0), *var = netc_bn_stat(s, i, 1);
    for (int64_t j = 0; j < p->count; j++) {
      mean[j] = 0.0f;
      var[j] = 1.0f;
    }
  }
}
