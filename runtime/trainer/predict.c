/* predict.c: the `predict` command: the 5 most likely classes of each
 * image, a batch at a time, with a checkpoint's class names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "formats/checkpoint.h"
#include "kernels/netc_rt.h"
#include "trainer/commands.h"
#include "trainer/options.h"
#include "trainer/step.h"
#include "util/util.h"

static void print_top5(const NetcState *s, int row, const char *path,
                       const ClassList *c) {
  const float *p = (const float *)(s->arena + netc_model.probs_offset) +
                   (int64_t)row * netc_model.classes;
  int best[5] = {-1, -1, -1, -1, -1};
  for (int k = 0; k < netc_model.classes; k++)
    for (int j = 0; j < 5; j++)
      if (best[j] < 0 || p[k] > p[best[j]]) {
        memmove(best + j + 1, best + j, sizeof(int) * (size_t)(4 - j));
        best[j] = k;
        break;
      }
  printf("%s\n", path);
  for (int j = 0; j < 5 && best[j] >= 0; j++)
    printf("  %d. %6.2f%%  %s  %s\n", j + 1, 100.0 * p[best[j]],
           c->class_ids[best[j]], c->class_names[best[j]]);
}

/* The top 5 of each image, a batch at a time; how many failed to load. */
static int predict_images(NetcState *s, const ClassList *c, char **images,
                          int nimages, int resize) {
  const NetcModel *m = &netc_model;
  DataOptions o = {.resize = resize, .h = m->in_h, .w = m->in_w};
  uint8_t *rgb = xmalloc((size_t)m->in_h * m->in_w * 3);
  float *x = (float *)(s->arena + m->input_offset);
  int64_t img = (int64_t)m->in_h * m->in_w * 3;
  const char **paths = xmalloc(sizeof(char *) * (size_t)m->batch);
  int failed = 0;
  for (int i = 0; i < nimages;) {
    int n = 0;
    memset(x, 0, sizeof(float) * (size_t)(img * m->batch));
    memset(s->arena + m->labels_offset, 0, sizeof(int32_t) * (size_t)m->batch);
    for (; i < nimages && n < m->batch; i++) {
      if (image_load(images[i], rgb, &o) != 0) {
        failed++;
        continue;
      }
      image_normalize(x + n * img, rgb, m->in_h, m->in_w);
      paths[n++] = images[i];
    }
    if (n == 0)
      continue;
    m->forward(s, 0);
    for (int k = 0; k < n; k++)
      print_top5(s, k, paths[k], c);
  }
  free(rgb);
  free(paths);
  return failed;
}

int cmd_predict(int argc, char **argv) {
  const char *checkpoint = NULL;
  long threads = 0;
  int resize = 0, nimages = 0;
  const Option options[] = {
      {"--checkpoint", "FILE", "a checkpoint of this model and batch size",
       .text = &checkpoint, .required = 1},
      threads_option(&threads),
      {"--resize", NULL, "resize images that are not the input size",
       .flag = &resize},
      {NULL}};
  const CommandSpec spec = {
      .name = "predict", .options = options,
      .args = "IMAGE...", .min_args = 1, .max_args = -1,
      .about = "The 5 most likely classes of each image, with their "
               "names."};
  int rc = parse_command(&spec, argc, argv, &nimages);
  if (rc != OPTIONS_RUN)
    return rc;
  if (threads > 0)
    rt_set_threads((int)threads);
  NetcState *s = trainer_state_new(NULL);
  ClassList c = {0};
  rc = 1;
  if (s && checkpoint_load(checkpoint, s, NULL, NULL, &c) == 0)
    rc = predict_images(s, &c, argv, nimages, resize) ? 1 : 0;
  netc_state_free(s);
  classes_free(&c);
  return rc;
}
