/* inspect.c: the commands that describe without training: `info` (the
 * model: shapes, parameters, memory) and `inspect` (a checkpoint, verified,
 * and where its run is). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "formats/checkpoint.h"
#include "kernels/netc_rt.h"
#include "trainer/commands.h"
#include "trainer/options.h"
#include "trainer/step.h"

/* `info`: the model, and the memory a trainer of it allocates with the
 * optimizer given: the plan's regions, allocated for real and counted by
 * netc_alloc, so that a test can hold them to `netc dump plan`. */
int cmd_info(int argc, char **argv) {
  static const char *const optimizers[] = {"sgd", "adam", "adamw", NULL};
  int optimizer = OPT_SGD;
  const Option options[] = {
      {"--optimizer", "O", "sgd | adam | adamw: whose state to allocate "
                           "(default sgd)",
       .choice = &optimizer, .choices = optimizers},
      {NULL}};
  const CommandSpec c = {.name = "info", .options = options,
                         .about = "The model in one line: its source, batch, "
                                  "input, classes, parameters and arena; "
                                  "then the memory a trainer allocates."};
  int rc = parse_command(&c, argc, argv, NULL);
  if (rc != OPTIONS_RUN)
    return rc;
  const NetcModel *m = &netc_model;
  printf("model=%s source=%s netc=%s batch=%d input=%dx%dx%d classes=%d "
         "param_bytes=%lld param_tensors=%d arena_bytes=%lld isa=%s "
         "conv_kernel=%s conv_algos=%s\n",
         m->name, m->source, m->netc_version, m->batch, m->in_c, m->in_h,
         m->in_w, m->classes, (long long)m->param_bytes, m->nparam_tensors,
         (long long)m->arena_bytes, rt_isa_name(m->isa),
         rt_conv_kernel_name(), m->conv_algos);
  NetcOptimizer o = {.kind = (NetcOptKind)optimizer};
  NetcState *s = trainer_state_new(&o);
  if (!s)
    return 1;
  printf("allocated optimizer=%s arena=%lld params=%lld bn_stats=%lld "
         "optimizer_state=%lld total=%lld\n",
         optimizers[optimizer], (long long)m->arena_bytes,
         (long long)m->param_bytes, (long long)m->stats_bytes,
         (long long)m->optimizer_bytes[optimizer],
         (long long)netc_allocated_bytes());
  optim_free(&o);
  netc_state_free(s);
  return 0;
}

/* The largest differences between two models' parameters. */
static int print_against(const NetcState *a, const char *path) {
  NetcState *b = trainer_state_new(NULL);
  ClassList cl = {0};
  if (!b || checkpoint_load(path, b, NULL, NULL, &cl)) {
    netc_state_free(b);
    classes_free(&cl);
    return 1;
  }
  /* max_rel_diff: the largest |a - b| of a tensor over its largest |a|,
   * over the tensors (element by element, a weight near zero would make
   * any difference look large). */
  double abs_max = 0, rel_max = 0;
  for (int p = 0; p < netc_model.nparam_tensors; p++) {
    const float *x = netc_param(a, p), *y = netc_param(b, p);
    double d = 0, scale = 0;
    for (int64_t i = 0; i < netc_model.params[p].count; i++) {
      d = fmax(d, fabs((double)x[i] - y[i]));
      scale = fmax(scale, fabs(x[i]));
    }
    abs_max = fmax(abs_max, d);
    if (d > 0)
      rel_max = fmax(rel_max, scale > 0 ? d / scale : INFINITY);
  }
  printf("against=%s max_abs_diff=%.6e max_rel_diff=%.6e identical=%d\n",
         path, abs_max, rel_max,
         memcmp(a->params, b->params, (size_t)netc_model.param_bytes) == 0);
  netc_state_free(b);
  classes_free(&cl);
  return 0;
}

int cmd_inspect(int argc, char **argv) {
  const char *against = NULL;
  const Option options[] = {
      {"--against", "OTHER.ckpt", "also print the largest parameter "
       "differences from another checkpoint of this model (max_rel_diff: "
       "per tensor, over its largest magnitude)",
       .text = &against},
      {NULL}};
  const CommandSpec c = {
      .name = "inspect", .args = "FILE.ckpt", .min_args = 1, .max_args = 1,
      .options = options,
      .about = "Verifies a checkpoint (magic, version, model, batch, "
               "checksum) and prints where\nits run is and a state_hash of "
               "what training changes."};
  int rc = parse_command(&c, argc, argv, NULL);
  if (rc != OPTIONS_RUN)
    return rc;
  NetcState *s = trainer_state_new(NULL);
  NetcOptimizer o = {0};
  RunState r = {0}; /* global_batch 0: a run of any batch */
  ClassList cl = {0};
  if (!s || checkpoint_load(argv[0], s, &o, &r, &cl)) {
    netc_state_free(s);
    classes_free(&cl);
    return 1;
  }
  printf("checkpoint=%s model=%s batch=%d epoch=%d step=%d global_step=%lld "
         "completed=%d epochs=%d best_top1=%.2f classes=%d state_hash=%016llx\n",
         argv[0], netc_model.name, netc_model.batch, r.epoch + 1, r.step,
         (long long)r.global_step, r.completed, r.epochs, r.best_top1,
         cl.nclasses, (unsigned long long)checkpoint_state_hash(s, &o));
  rc = against ? print_against(s, against) : 0;
  netc_state_free(s);
  optim_free(&o);
  classes_free(&cl);
  return rc;
}
