/* step.c: the training step every command trains with (step.h), the
 * scoring of a batch, the SGD of step and bench, and the `step` command. */
#include "trainer/step.h"

#include <math.h>
#include <stdio.h>

#include "formats/safetensors.h"
#include "kernels/netc_rt.h"
#include "trainer/comm.h"
#include "trainer/commands.h"
#include "trainer/options.h"

static int32_t *labels_of(NetcState *s) {
  return (int32_t *)(s->arena + s->model->labels_offset);
}

StepResult train_step(NetcState *s, NetcOptimizer *o, float lr) {
  const NetcModel *m = s->model;
  StepResult r = {.status = STEP_OK, .param = -1};
  o->lr = lr;
  m->forward(s, 1);
  r.loss = s->loss;
  /* On several processes all stop, or none: backward holds collectives. */
  if (!comm_all(isfinite(s->loss))) {
    r.status = STEP_BAD_LOSS;
    return r;
  }
  /* The plan may reuse the probabilities' memory during backward. */
  score_batch(s, m->batch, labels_of(s), NULL, &r.correct, NULL);
  /* Attached on every step: whatever ran before (a diagnosis that
   * detached the optimizer), this backward updates. */
  optim_attach(o, s);
  if (s->micro == s->accumulate - 1) /* the one that updates */
    optim_begin(o);
  m->backward(s);
  if (o->nonfinite >= 0) {
    r.status = STEP_BAD_GRADIENT;
    r.param = o->nonfinite;
  }
  return r;
}

const char *step_failure(const StepResult *r, char *buf, size_t n) {
  if (r->status == STEP_BAD_LOSS)
    snprintf(buf, n, "the loss is %s", isnan(r->loss) ? "NaN" : "infinite");
  else if (r->status == STEP_BAD_GRADIENT)
    snprintf(buf, n, "the gradient of %s is not finite",
             netc_model.params[r->param].name);
  else
    snprintf(buf, n, "the step succeeded");
  return buf;
}

void score_batch(const NetcState *s, int n, const int32_t *y, double *loss,
                 int64_t *top1, int64_t *top5) {
  const NetcModel *m = s->model;
  const float *p = (const float *)(s->arena + m->probs_offset);
  for (int i = 0; i < n; i++) {
    const float *row = p + (int64_t)i * m->classes;
    float py = row[y[i]];
    int rank = 0; /* classes ahead of the label; ties go to the lower id */
    for (int k = 0; k < m->classes; k++)
      rank += row[k] > py || (row[k] == py && k < y[i]);
    if (top1)
      *top1 += rank < 1;
    if (top5)
      *top5 += rank < 5;
    if (loss)
      *loss += -log(py > 1e-30f ? py : 1e-30f);
  }
}

NetcState *trainer_state_new(NetcOptimizer *o) {
  NetcState *s = netc_state_new(&netc_model);
  if (s && (!o || optim_init(o, &netc_model) == 0))
    return s;
  fprintf(stderr, "%s: out of memory (the arena alone needs %lld bytes)\n",
          netc_model.name, (long long)netc_model.arena_bytes);
  if (o)
    optim_free(o);
  netc_state_free(s);
  return NULL;
}

NetcOptimizer default_sgd(void) {
  return (NetcOptimizer){.kind = OPT_SGD, .lr = 0.01f, .momentum = 0.9f,
                         .weight_decay = 5e-4f, .decay_bn_and_bias = 1};
}

void random_batch(NetcState *s, uint64_t seed) {
  const NetcModel *m = s->model;
  NetcRng r;
  rng_seed(&r, seed);
  float *x = (float *)(s->arena + m->input_offset);
  int64_t n = (int64_t)m->batch * m->in_h * m->in_w * m->in_c;
  for (int64_t i = 0; i < n; i++)
    x[i] = (float)rng_normal(&r);
  for (int i = 0; i < m->batch; i++)
    labels_of(s)[i] = (int32_t)(rng_next(&r) % (uint64_t)m->classes);
}

/* Steps on one batch: the losses must fall (tests rely on it). */
static int run_steps(NetcState *s, NetcOptimizer *o, long steps) {
  char why[512];
  for (long i = 0; i < steps; i++) {
    s->step_key = rt_step_key(0, (uint64_t)i, 0, 0);
    StepResult r = train_step(s, o, o->lr);
    printf("step %ld loss %.6f\n", i + 1, r.loss);
    if (r.status != STEP_OK) {
      flush_stdout(); /* the losses before the message */
      fprintf(stderr, "%s: %s at step %ld: stopped\n", netc_model.name,
              step_failure(&r, why, sizeof why), i + 1);
      return 1;
    }
  }
  return 0;
}

int cmd_step(int argc, char **argv) {
  long steps = 1, seed = 1, threads = 0;
  const char *init = NULL, *checkpoint = NULL;
  const Option options[] = {
      {"--steps", "N", "steps (default 1)", .whole = &steps, .min = 1,
       .max = OPTIONS_NO_MAX},
      {"--seed", "S", "initialization and the batch (default 1)",
       .whole = &seed, .min = 0, .max = OPTIONS_NO_MAX},
      {"--init", "FILE", "the weights of FILE.safetensors instead (export)",
       .text = &init},
      {"--checkpoint", "FILE", "the weights of a checkpoint instead",
       .text = &checkpoint},
      threads_option(&threads),
      {NULL}};
  const CommandSpec c = {
      .name = "step", .options = options,
      .about = "Steps of the default SGD on one batch of random images and "
               "labels; prints each\nstep's loss (it falls: the batch is "
               "learnt)."};
  int rc = parse_command(&c, argc, argv, NULL);
  if (rc != OPTIONS_RUN)
    return rc;
  if (threads > 0)
    rt_set_threads((int)threads);
  NetcOptimizer o = default_sgd();
  NetcState *s = trainer_state_new(&o);
  if (!s)
    return 1;
  netc_init_params(s, (uint64_t)seed);
  ClassList classes = {0};
  rc = (init && safetensors_import(s, init)) ||
       (checkpoint && checkpoint_load(checkpoint, s, NULL, NULL, &classes));
  classes_free(&classes);
  if (rc) {
    optim_free(&o);
    netc_state_free(s);
    return 1;
  }
  random_batch(s, (uint64_t)seed + 1);
  rc = run_steps(s, &o, steps);
  optim_free(&o);
  netc_state_free(s);
  return rc;
}
