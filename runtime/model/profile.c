/* profile.c: what the generated code calls after every op when s->profile
 * is set (netc_model.h): the op's time (NETC_PROFILE_TIME), or whether what
 * it wrote is finite (NETC_PROFILE_FINITE, to name the op that produced
 * the first NaN or Inf); and the printed profile of bench --profile, with
 * every op's own line too when NETC_PROFILE_ALL=1 (tests/bench/layers.py
 * reads them). */
#include "model/profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* OpenMP and OpenBLAS calls return when their work is done, so the wall
 * time between two marks is the op's. */
int netc_profile_enable(NetcState *s, int bits) {
  if ((bits & NETC_PROFILE_TIME) && !s->prof_seconds) {
    s->prof_seconds = calloc((size_t)s->model->nops + 1, sizeof(double));
    if (!s->prof_seconds)
      return -1;
  }
  s->profile = bits;
  return 0;
}

void netc_profile_start(NetcState *s) { s->prof_last = now_seconds(); }

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

typedef struct {
  const char *key;
  int backward;
  double seconds, bytes;
} Bucket;

static int by_seconds(const void *a, const void *b) {
  double x = ((const Bucket *)a)->seconds, y = ((const Bucket *)b)->seconds;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Sums op times into buckets keyed by op kind or by layer, slowest first. */
static int bucket_ops(const NetcState *s, Bucket *b, int by_layer) {
  const NetcModel *m = s->model;
  int n = 0;
  for (int i = 0; i < m->nops; i++) {
    const NetcOp *op = &m->ops[i];
    const char *key = by_layer ? op->layer : op->op;
    int j = 0;
    while (j < n && (strcmp(b[j].key, key) || b[j].backward != op->backward))
      j++;
    if (j == n)
      b[n++] = (Bucket){key, op->backward, 0, 0};
    b[j].seconds += s->prof_seconds[i];
    b[j].bytes += op->bytes;
  }
  qsort(b, (size_t)n, sizeof *b, by_seconds);
  return n;
}

/* NETC_PROFILE_ALL=1: one line per op of the step, in the step's order,
 * for scripts (each op runs once per step, so its ms/step is its ms per
 * call):
 *   profile_op index=I layer=L op=O pass=forward|backward ms_per_step=T
 *              flops=F bytes=B where=FILE:LINE:COL
 * after a header line "profile_ops model=M batch=B steps=S ops=N". */
static void print_all_ops(const NetcState *s, int steps) {
  const NetcModel *m = s->model;
  printf("profile_ops model=%s batch=%d steps=%d ops=%d\n", m->name, m->batch,
         steps, m->nops);
  for (int i = 0; i < m->nops; i++) {
    const NetcOp *op = &m->ops[i];
    printf("profile_op index=%d layer=%s op=%s pass=%s ms_per_step=%.4f "
           "flops=%.0f bytes=%.0f where=%s\n",
           i, op->layer, op->op, op->backward ? "backward" : "forward",
           1e3 * s->prof_seconds[i] / steps, op->flops, op->bytes,
           op->where ? op->where : "-");
  }
}

void print_profile(const NetcState *s, int steps) {
  const NetcModel *m = s->model;
  Bucket *b = xcalloc((size_t)m->nops + 1, sizeof *b);
  double total = 0;
  for (int i = 0; i < m->nops; i++)
    total += s->prof_seconds[i];
  for (int by_layer = 0; by_layer < 2; by_layer++) {
    int n = bucket_ops(s, b, by_layer);
    printf("profile by %s (%d steps, %.1f ms per step):\n",
           by_layer ? "layer, top 25" : "op kind", steps, 1e3 * total / steps);
    /* MB: what the ops move per step in traffic.c's model; GB/s: that
     * over their time, against the memory's bandwidth. */
    printf("  %-44s %-8s %9s %6s %9s %6s\n", by_layer ? "layer" : "op",
           "pass", "ms/step", "share", "MB/step", "GB/s");
    for (int i = 0; i < n && (!by_layer || i < 25); i++) {
      double sec = b[i].seconds / steps;
      printf("  %-44s %-8s %9.2f %5.1f%% %9.1f %6.1f\n", b[i].key,
             b[i].backward ? "backward" : "forward", 1e3 * sec,
             100 * b[i].seconds / total, b[i].bytes / 1e6,
             sec > 0 ? b[i].bytes / sec / 1e9 : 0);
    }
  }
  free(b);
  const char *all = getenv("NETC_PROFILE_ALL");
  if (all && *all && strcmp(all, "0"))
    print_all_ops(s, steps);
}
