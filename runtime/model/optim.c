/* optim.c: the optimizers, computed as torch.optim computes them, so a
 * netc run and a PyTorch run with the same weights take the same steps.
 * SGD: d = g + wd p; buf = momentum buf + d; d = nesterov ? d + momentum buf
 * : buf; p -= lr d. Adam: L2 decay into g; AdamW: p *= 1 - lr wd; then the
 * bias-corrected moments. Weight decay can skip batchnorm parameters and
 * biases (decay_bn_and_bias = 0).
 *
 * Training applies the update of each parameter inside the backward pass,
 * as soon as its gradient is final (netc_update -> on_grad), so that
 * gradients live in the arena for a few ops instead of in a persistent
 * buffer as large as the parameters. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/netc_model.h"

/* The state region is the plan's: SGD's momentum mirrors the parameter
 * region, Adam's moments are two such mirrors, first then second. */
int optim_init(NetcOptimizer *o, const NetcModel *m) {
  o->step = 0;
  o->nonfinite = -1;
  o->state = netc_alloc(m->optimizer_bytes[o->kind]);
  o->m1 = o->state;
  o->m2 = o->kind == OPT_SGD || !o->state ? NULL : o->state + m->param_bytes;
  return o->state || m->optimizer_bytes[o->kind] == 0 ? 0 : -1;
}

void optim_free(NetcOptimizer *o) {
  free(o->state);
  o->state = o->m1 = o->m2 = NULL;
}

/* The update loops skip an element whose gradient is not finite (g - g is
 * NaN for NaN and +-Inf) and return how many they skipped: the check costs
 * no second pass over the gradient. They are written without branches,
 * each element computed and then kept or not, so that GCC vectorizes
 * them (with the branch it did not). The loop is bound by memory, so
 * this gains little, as a one-off timing of both loops on ResNet-50's
 * 25.5M parameters showed. (Without -ffp-contract, the sums are the same
 * bits either way: PyTorch's.) */
static int64_t sgd(const NetcOptimizer *o, float *p, const float *g,
                   float *buf, int64_t n, float wd) {
  const float lr = o->lr, mu = o->momentum;
  const int nesterov = o->nesterov;
  int64_t bad = 0;
  if (mu == 0.0f) {
#pragma omp parallel for simd schedule(static) reduction(+ : bad)
    for (int64_t i = 0; i < n; i++) {
      float gi = g[i], pi = p[i];
      int ok = gi - gi == 0.0f;
      bad += !ok;
      float d = gi + wd * pi;
      p[i] = ok ? pi - lr * d : pi;
    }
    return bad;
  }
#pragma omp parallel for simd schedule(static) reduction(+ : bad)
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i], pi = p[i], bi = buf[i];
    int ok = gi - gi == 0.0f;
    bad += !ok;
    float d = gi + wd * pi;
    float b2 = mu * bi + d;
    float step = nesterov ? d + mu * b2 : b2;
    buf[i] = ok ? b2 : bi;
    p[i] = ok ? pi - lr * step : pi;
  }
  return bad;
}

static int64_t adam(const NetcOptimizer *o, float *p, const float *g,
                    float *m, float *v, int64_t n, float wd) {
  double t = (double)o->step;
  float c1 = (float)(1.0 - pow(o->beta1, t)), c2 = (float)(1.0 - pow(o->beta2, t));
  float b1 = o->beta1, b2 = o->beta2, lr = o->lr, eps = o->eps;
  int decoupled = o->kind == OPT_ADAMW;
  int64_t bad = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : bad)
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i], pi = p[i], mi = m[i], vi = v[i];
    int ok = gi - gi == 0.0f;
    bad += !ok;
    if (decoupled)
      pi *= 1.0f - lr * wd;
    else
      gi += wd * pi;
    float m2 = b1 * mi + (1.0f - b1) * gi;
    float v2 = b2 * vi + (1.0f - b2) * gi * gi;
    float mhat = m2 / c1, vhat = v2 / c2;
    float p2 = pi - lr * mhat / (sqrtf(vhat) + eps);
    m[i] = ok ? m2 : mi;
    v[i] = ok ? v2 : vi;
    p[i] = ok ? p2 : p[i];
  }
  return bad;
}

/* Returns the number of non-finite gradient elements (left un-updated). */
static int64_t update(const NetcOptimizer *o, const NetcParam *p, float *w,
                      const float *g) {
  int decays = o->decay_bn_and_bias ||
               (p->kind == NP_CONV_WEIGHT || p->kind == NP_DENSE_WEIGHT);
  float wd = decays ? o->weight_decay : 0.0f;
  float *m1 = (float *)(o->m1 + p->offset);
  if (o->kind == OPT_SGD)
    return sgd(o, w, g, m1, p->count, wd);
  return adam(o, w, g, m1, (float *)(o->m2 + p->offset), p->count, wd);
}

void optim_begin(NetcOptimizer *o) {
  o->step++;
  o->nonfinite = -1;
}

/* A non-finite gradient element never reaches the weights, and after one
 * the step updates nothing more. */
static void on_grad(NetcState *s, int i, float *g) {
  NetcOptimizer *o = s->user;
  const NetcParam *p = &s->model->params[i];
  if (o->nonfinite < 0 && update(o, p, netc_param(s, i), g))
    o->nonfinite = i;
}

void optim_attach(NetcOptimizer *o, NetcState *s) {
  s->on_grad = on_grad;
  s->user = o;
}

void optim_step(NetcOptimizer *o, NetcState *s) {
  const NetcModel *m = s->model;
  optim_begin(o);
  for (int i = 0; i < m->nparam_tensors; i++) {
    const NetcParam *p = &m->params[i];
    update(o, p, netc_param(s, i), netc_grad(s, i));
  }
}

/* dst = src (the first micro-batch) or dst += src. */
void netc_accumulate(float *dst, const float *src, int64_t n, int first) {
#pragma omp parallel for simd schedule(static)
  for (int64_t j = 0; j < n; j++)
    dst[j] = first ? src[j] : dst[j] + src[j];
}

void netc_update(NetcState *s, int i, float *g) {
  const NetcParam *p = &s->model->params[i];
  /* With buckets, netc_bucket_start has accumulated (comm.c); else each
   * gradient goes into its mirror of the parameter region here. The
   * last micro-batch's gradient adds the sum of the earlier ones. */
  int last = s->micro == s->accumulate - 1;
  if (s->accumulate > 1 && !s->model->nbuckets) {
    float *a = (float *)(s->accum + p->offset);
    if (!last) {
      netc_accumulate(a, g, p->count, s->micro == 0);
      return;
    }
    netc_accumulate(g, a, p->count, 0);
  }
  if (!last)
    return;
  if (s->grads)
    memcpy(s->grads + p->offset, g, (size_t)p->count * sizeof(float));
  if (s->on_grad)
    s->on_grad(s, i, g);
}
