/* eval.c: a model on the validation split: each epoch's figures of
 * `train` and the `eval` command (--limit, --inputs and --logits write what
 * the network saw and gave, for comparisons with other runtimes). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/checkpoint.h"
#include "formats/safetensors.h"
#include "kernels/netc_rt.h"
#include "trainer/comm.h"
#include "trainer/commands.h"
#include "trainer/eval.h"
#include "trainer/options.h"
#include "trainer/step.h"
#include "util/util.h"

/* What eval writes besides its figures (eval --limit, --inputs,
 * --logits): the first `limit` images (0: all), as the network sees them
 * (float32 NCHW, normalized) and the logits it gives them (float32, one
 * row of classes per image), in the split's order. */
typedef struct {
  int64_t limit;
  FILE *inputs, *logits;
  int tta;    /* --tta flip: logits averaged over each image and its mirror */
  int mirror; /* --mirror: the mirror images instead of the images */
} EvalDump;

/* The batch's n images (NHWC in the arena) mirrored left to right. */
static void mirror_batch(NetcState *s, int n) {
  const NetcModel *m = s->model;
  float *x = (float *)(s->arena + m->input_offset);
  const int c = m->in_c, w = m->in_w;
  for (int64_t row = 0; row < (int64_t)n * m->in_h; row++) {
    float *r = x + row * w * c;
    for (int a = 0, b = w - 1; a < b; a++, b--)
      for (int k = 0; k < c; k++) {
        float t = r[a * c + k];
        r[a * c + k] = r[b * c + k], r[b * c + k] = t;
      }
  }
}

/* The forward of the batch's first n images with --tta flip: the logits
 * of the image and of its mirror averaged, and their softmax in the
 * arena's probabilities, which score_batch reads. `z`: n rows of
 * classes. */
static void forward_flip_tta(NetcState *s, int n, float *z) {
  const NetcModel *m = s->model;
  float *lg = (float *)(s->arena + m->logits_offset);
  float *p = (float *)(s->arena + m->probs_offset);
  const int64_t k = m->classes;
  m->forward(s, 0);
  memcpy(z, lg, sizeof(float) * (size_t)(n * k));
  mirror_batch(s, n);
  m->forward(s, 0);
  mirror_batch(s, n); /* the images as they were, for --inputs */
  for (int i = 0; i < n; i++) {
    float *zi = z + i * k, *li = lg + i * k, *pi = p + i * k;
    double top = -INFINITY, sum = 0;
    for (int64_t j = 0; j < k; j++) {
      li[j] = 0.5f * (zi[j] + li[j]);
      top = li[j] > top ? li[j] : top;
    }
    for (int64_t j = 0; j < k; j++)
      sum += exp((double)li[j] - top);
    for (int64_t j = 0; j < k; j++)
      pi[j] = (float)(exp((double)li[j] - top) / sum);
  }
}

static int dump_batch(const NetcState *s, int n, const EvalDump *d) {
  const NetcModel *m = s->model;
  const float *x = (const float *)(s->arena + m->input_offset);
  const float *z = (const float *)(s->arena + m->logits_offset);
  int64_t hw = (int64_t)m->in_h * m->in_w, img = hw * m->in_c;
  int bad = 0;
  float *chw = xmalloc(sizeof(float) * (size_t)img);
  for (int i = 0; i < n; i++) {
    if (d->inputs) {
      for (int64_t p = 0; p < hw; p++)
        for (int c = 0; c < m->in_c; c++)
          chw[c * hw + p] = x[i * img + p * m->in_c + c];
      bad |= fwrite(chw, sizeof(float), (size_t)img, d->inputs) !=
             (size_t)img;
    }
    if (d->logits)
      bad |= fwrite(z + (int64_t)i * m->classes, sizeof(float),
                    (size_t)m->classes, d->logits) != (size_t)m->classes;
  }
  free(chw);
  return bad ? -1 : 0;
}

/* On several processes each evaluates its slice of every group of
 * processes x batch images, and the sums are added: every process gets
 * the whole split's figures. */
static EvalResult evaluate_dump(NetcState *s, const Dataset *val,
                                const EvalDump *d, int *failed) {
  const NetcModel *m = s->model;
  LoaderOptions lo = {.batch = m->batch, .train = 0, .prefetch = 1,
                      .group = m->batch * comm_size(),
                      .offset = m->batch * comm_rank()};
  Loader *l = loader_new(val, &lo);
  float *x = (float *)(s->arena + m->input_offset);
  int32_t *y = (int32_t *)(s->arena + m->labels_offset);
  EvalResult e = {0};
  int64_t t1 = 0, t5 = 0;
  float *z = d && d->tta ? xmalloc(sizeof(float) * (size_t)m->batch *
                                   (size_t)m->classes)
                         : NULL;
  loader_seek(l, 0, 0);
  for (int n; (n = loader_next(l, x, y)) > 0;) {
    if (d && d->limit && e.images + n > d->limit)
      n = (int)(d->limit - e.images);
    if (d && d->mirror)
      mirror_batch(s, m->batch);
    /* the labels stay in the arena through the step */
    if (z)
      forward_flip_tta(s, m->batch, z);
    else
      m->forward(s, 0);
    score_batch(s, n, y, &e.loss, &t1, &t5);
    e.images += n;
    if (d && dump_batch(s, n, d))
      *failed = 1;
    if (d && d->limit && e.images >= d->limit)
      break;
  }
  loader_free(l);
  free(z);
  double sums[4] = {e.loss, (double)t1, (double)t5, (double)e.images};
  comm_sum_f64(sums, 4);
  e.loss = sums[0], t1 = (int64_t)sums[1], t5 = (int64_t)sums[2];
  e.images = (int64_t)sums[3];
  if (e.images) {
    e.loss /= (double)e.images;
    e.top1 = 100.0 * (double)t1 / (double)e.images;
    e.top5 = 100.0 * (double)t5 / (double)e.images;
  }
  return e;
}

EvalResult evaluate(NetcState *s, const Dataset *val) {
  return evaluate_dump(s, val, NULL, NULL);
}

ClassList classes_of(const Dataset *d) {
  ClassList c = {.nclasses = d->nclasses};
  c.class_ids = calloc((size_t)d->nclasses + 1, MAX_CLASS_NAME);
  c.class_names = calloc((size_t)d->nclasses + 1, MAX_CLASS_NAME);
  for (int i = 0; i < d->nclasses; i++) {
    snprintf(c.class_ids[i], MAX_CLASS_NAME, "%s", d->class_ids[i]);
    snprintf(c.class_names[i], MAX_CLASS_NAME, "%s", d->class_names[i]);
  }
  return c;
}

int open_data(const char *dir, int resize, Dataset *train,
                     Dataset *val) {
  DataOptions o = {.resize = resize, .h = netc_model.in_h,
                   .w = netc_model.in_w};
  if (train && dataset_open(train, dir, "train", &o))
    return -1;
  if (val && dataset_open(val, dir, "val", &o)) {
    if (train)
      dataset_close(train);
    return -1;
  }
  const Dataset *d = train ? train : val;
  if (d->nclasses != netc_model.classes) {
    fprintf(stderr, "netc: %s has %d classes; model '%s' has %d: rebuild "
                    "it for this data with 'netc build -D classes=%d -b %d "
                    "%s' (make train: CLASSES=%d)\n",
            dir, d->nclasses, netc_model.name, netc_model.classes,
            d->nclasses, netc_model.batch, netc_model.source, d->nclasses);
    if (train)
      dataset_close(train);
    if (val)
      dataset_close(val);
    return -1;
  }
  return 0;
}

/* ---- the eval command ------------------------------------------------------ */

typedef struct {
  const char *data, *checkpoint;
  const char *init; /* weights from FILE.safetensors instead */
  long threads;
  int resize;
  long limit;  /* the first this many images, 0: all */
  int tta, mirror;
  const char *inputs, *logits; /* where to write them, or NULL */
} EvalArgs;

static int parse_eval(int argc, char **argv, EvalArgs *e) {
  static const char *const ttas[] = {"none", "flip", NULL};
  *e = (EvalArgs){0};
  const Option options[] = {
      {"--data", "DIR", "TinyImageNet-200 (release or ImageFolder layout)",
       .text = &e->data, .required = 1},
      {"--checkpoint", "FILE", "a checkpoint of this model and batch size",
       .text = &e->checkpoint},
      threads_option(&e->threads),
      {"--resize", NULL, "resize images that are not the input size",
       .flag = &e->resize},
      {"--limit", "N", "only the first N images of the split",
       .whole = &e->limit, .min = 0, .max = OPTIONS_NO_MAX},
      {"--logits", "FILE", "write each image's logits (float32, a row of "
       "classes per image)", .text = &e->logits},
      {"--inputs", "FILE", "write each image as the network sees it (float32 "
       "NCHW, normalized)", .text = &e->inputs},
      {"--tta", "KIND", "test-time augmentation: none, or flip (the logits "
       "of each image and its mirror averaged)", .choice = &e->tta,
       .choices = ttas},
      {"--mirror", NULL, "the mirror images of the split instead (what "
       "--tta flip averages in)", .flag = &e->mirror},
      {"--init", "FILE", "instead of a checkpoint: the weights and batchnorm "
       "statistics of FILE.safetensors (export's, or PyTorch's in netc's or "
       "torchvision's names)", .text = &e->init},
      {NULL}};
  const CommandSpec eval = {
      .name = "eval", .options = options,
      .about = "Top-1, top-5 and mean loss of a checkpoint (or of --init's "
               "weights) on the val split;\nthe last line is top1=.. "
               "top5=.. loss=.. images=.."};
  int rc = parse_command(&eval, argc, argv, NULL);
  if (rc == OPTIONS_RUN && !e->checkpoint == !e->init)
    return usage_error(&eval, "eval needs --checkpoint FILE or --init "
                              "FILE.safetensors (one of them)");
  if (rc == OPTIONS_RUN && e->threads > 0)
    rt_set_threads((int)e->threads);
  return rc;
}

static int same_classes(const ClassList *c, const Dataset *d) {
  if (c->nclasses != d->nclasses)
    return 0;
  for (int i = 0; i < c->nclasses; i++)
    if (strncmp(c->class_ids[i], d->class_ids[i], MAX_CLASS_NAME - 1))
      return 0;
  return 1;
}

int cmd_eval(int argc, char **argv) {
  EvalArgs e;
  int rc = parse_eval(argc, argv, &e);
  if (rc != OPTIONS_RUN)
    return rc;
  Dataset val;
  if (open_data(e.data, e.resize, NULL, &val))
    return 1;
  NetcState *s = trainer_state_new(NULL);
  ClassList c = {0};
  rc = 1;
  if (!s || (e.checkpoint ? checkpoint_load(e.checkpoint, s, NULL, NULL, &c)
                           : safetensors_import(s, e.init))) {
    /* said */
  } else if (e.checkpoint && !same_classes(&c, &val)) {
    fprintf(stderr, "netc: %s was trained on other classes than %s has\n",
            e.checkpoint, e.data);
  } else {
    EvalDump d = {.limit = e.limit, .tta = e.tta, .mirror = e.mirror};
    int failed = 0;
    if (e.inputs && !(d.inputs = fopen(e.inputs, "wb")))
      fprintf(stderr, "netc: cannot write %s: %s\n", e.inputs,
              strerror(errno));
    else if (e.logits && !(d.logits = fopen(e.logits, "wb")))
      fprintf(stderr, "netc: cannot write %s: %s\n", e.logits,
              strerror(errno));
    else {
      EvalResult r = evaluate_dump(s, &val, &d, &failed);
      if (d.inputs && fclose(d.inputs))
        failed = 1;
      if (d.logits && fclose(d.logits))
        failed = 1;
      d.inputs = d.logits = NULL;
      if (failed)
        fprintf(stderr, "netc: writing %s failed: %s\n",
                e.logits ? e.logits : e.inputs, strerror(errno));
      printf("top1=%.2f top5=%.2f loss=%.4f images=%lld\n", r.top1, r.top5,
             r.loss, (long long)r.images);
      rc = failed;
    }
    if (d.inputs)
      fclose(d.inputs);
    if (d.logits)
      fclose(d.logits);
  }
  dataset_close(&val);
  netc_state_free(s);
  classes_free(&c);
  return rc;
}
