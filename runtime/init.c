/* init.c: a model's memory, and its initialization as torchvision does it:
 * convolutions Kaiming normal (fan_out, ReLU gain), batchnorm weight 1 and
 * bias 0, dense layers and conv biases PyTorch's default uniform. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "netc_model.h"
#include "util.h"

static void *alloc64(int64_t bytes) {
  void *p = NULL;
  size_t n = (size_t)((bytes + 63) / 64 * 64);
  if (n == 0)
    n = 64;
  if (posix_memalign(&p, 64, n))
    return NULL;
  memset(p, 0, n);
  return p;
}

NetcState *netc_state_new(const NetcModel *m) {
  NetcState *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->model = m;
  s->params = alloc64(m->nparams * 4);
  s->bn_stats = alloc64(m->bn_floats * 4);
  s->arena = alloc64(m->arena_bytes);
  s->bn_momentum = 0.1f;
  s->bn_eps = 1e-5f;
  if (!s->params || !s->bn_stats || !s->arena) {
    netc_state_free(s);
    return NULL;
  }
  return s;
}

int netc_state_keep_grads(NetcState *s) {
  if (!s->grads)
    s->grads = alloc64(s->model->nparams * 4);
  return s->grads ? 0 : -1;
}

/* Profiles: OpenMP and OpenBLAS calls return when their work is done, so
 * the wall time between two marks (now_seconds) is the op's. */
void netc_profile_start(NetcState *s) {
  if (!s->prof_seconds)
    s->prof_seconds = calloc((size_t)s->model->nops + 1, sizeof(double));
  s->prof_last = now_seconds();
}

int netc_all_finite(const float *x, int64_t n) {
  int ok = 1;
  /* x - x is 0 for finite x and NaN for NaN and +-Inf. */
#pragma omp parallel for reduction(&& : ok) schedule(static)
  for (int64_t i = 0; i < n; i++)
    ok = ok && x[i] - x[i] == 0.0f;
  return ok;
}

static int op_finite(const NetcState *s, const NetcOp *o) {
  if (o->out_offset >= 0 &&
      !netc_all_finite((const float *)(s->arena + o->out_offset),
                       o->out_floats))
    return 0;
  for (int k = 0; k < 2; k++)
    if (o->grad_offset[k] >= 0 &&
        !netc_all_finite((const float *)(s->arena + o->grad_offset[k]),
                         o->grad_floats[k]))
      return 0;
  return 1;
}

void netc_profile_mark(NetcState *s, int op) {
  double t = now_seconds();
  if (s->prof_seconds && (s->profile & NETC_PROFILE_TIME))
    s->prof_seconds[op] += t - s->prof_last;
  if (s->profile & NETC_PROFILE_FINITE) {
    if (s->first_nonfinite < 0 && !op_finite(s, &s->model->ops[op]))
      s->first_nonfinite = op;
    t = now_seconds(); /* the check is not the next op's time */
  }
  s->prof_last = t;
}

void netc_state_free(NetcState *s) {
  if (!s)
    return;
  free(s->prof_seconds);
  free(s->params);
  free(s->grads);
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
    float *w = s->params + p->offset;
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
  }
  /* Running statistics, in the order of the batchnorm weights in the
   * parameter table: mean[C] = 0, then var[C] = 1 (netc_model.h). */
  int64_t at = 0;
  for (int i = 0; i < m->nparam_tensors; i++) {
    const NetcParam *p = &m->params[i];
    if (p->kind != NP_BN_WEIGHT)
      continue;
    for (int64_t j = 0; j < p->count; j++) {
      s->bn_stats[at + j] = 0.0f;
      s->bn_stats[at + p->count + j] = 1.0f;
    }
    at += 2 * p->count;
  }
}
