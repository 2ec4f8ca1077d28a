/* train.c: the trainer's train, eval and predict commands.
 *
 * A run lives in RUN_DIR: metrics.csv (one row per epoch), loss.svg and
 * accuracy.svg (gnuplot, refreshed every epoch), last.ckpt (every epoch and
 * every --checkpoint-minutes), best.ckpt (best validation top-1). The data
 * order and augmentation depend only on (seed, epoch, position), and the
 * checkpoint holds everything else, so --resume continues with the losses
 * an uninterrupted run would have had (same thread count). Each step is
 * train_step (step.h); one that fails (a NaN) ends the run without saving,
 * after naming the op that made the NaN. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data.h"
#include "netc_rt.h"
#include "step.h"
#include "train.h"

enum { SCHED_COSINE, SCHED_STEP, SCHED_CONSTANT };

typedef struct {
  const char *data, *out, *checkpoint;
  int epochs, threads, resume, progress, resize, no_plots;
  double minutes;       /* checkpoint interval */
  long ckpt_steps;      /* also checkpoint every this many steps, 0: no */
  long log_every;       /* print the loss every this many steps, 0: no */
  long max_steps;       /* stop after this many steps (tests), 0: no */
  RunState r;
} TrainArgs;

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) {
  interrupted = sig;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- options ------------------------------------------------------------ */

static int opt_error(const char *fmt, const char *arg) {
  fprintf(stderr, "%s: ", netc_model.name);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry '%s train --help'.\n", netc_model.name);
  return 2;
}

static const char train_help[] =
    "usage: %s train --data DIR [options]\n"
    "  --data DIR             TinyImageNet-200 (release or ImageFolder layout)\n"
    "  --epochs E             epochs (default 30)\n"
    "  --lr LR                peak learning rate (default 0.1 x batch/128)\n"
    "  --schedule S           cosine | step | constant (default cosine)\n"
    "  --warmup-epochs W      linear warm-up (default 1)\n"
    "  --optimizer O          sgd | adam | adamw (default sgd)\n"
    "  --momentum M           SGD momentum (default 0.9)\n"
    "  --nesterov             Nesterov momentum\n"
    "  --weight-decay WD      (default 5e-4; 0.05 for adamw)\n"
    "  --bn-decay             also decay batchnorm parameters and biases\n"
    "  --seed S               data order, augmentation, init (default 1)\n"
    "  --threads T            threads for OpenMP and OpenBLAS (default all)\n"
    "  --out RUN_DIR          metrics, plots, checkpoints (default runs/<model>)\n"
    "  --resume               continue from RUN_DIR/last.ckpt\n"
    "  --checkpoint-minutes N also checkpoint every N minutes (default 10)\n"
    "  --checkpoint-steps N   also checkpoint every N steps\n"
    "  --log-every N          print 'step G loss L' to stdout every N steps\n"
    "  --resize               resize images that are not the input size\n"
    "  --no-plots             skip the gnuplot pictures\n";

static int parse_float(const char *s, double *v) {
  char *end;
  errno = 0;
  *v = strtod(s, &end);
  return *end || errno || !isfinite(*v) ? -1 : 0;
}

static int parse_choice(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s, names[i]))
      return i;
  return -1;
}

/* One option with a value; returns 0, or 2 after a message. */
static int set_value(TrainArgs *a, const char *name, const char *v) {
  static const char *const opts[] = {"sgd", "adam", "adamw"};
  static const char *const scheds[] = {"cosine", "step", "constant"};
  double x;
  RunState *r = &a->r;
  if (!strcmp(name, "--data")) a->data = v;
  else if (!strcmp(name, "--out")) a->out = v;
  else if (!strcmp(name, "--optimizer")) {
    if ((r->optimizer = parse_choice(v, opts, 3)) < 0)
      return opt_error("--optimizer is sgd, adam or adamw, not '%s'", v);
  } else if (!strcmp(name, "--schedule")) {
    if ((r->schedule = parse_choice(v, scheds, 3)) < 0)
      return opt_error("--schedule is cosine, step or constant, not '%s'", v);
  } else {
    if (parse_float(v, &x) || x < 0)
      return opt_error("a non-negative number is needed, not '%s'", v);
    if (!strcmp(name, "--epochs")) a->epochs = (int)x;
    else if (!strcmp(name, "--lr")) r->lr = (float)x;
    else if (!strcmp(name, "--warmup-epochs")) r->warmup_epochs = (float)x;
    else if (!strcmp(name, "--momentum")) r->momentum = (float)x;
    else if (!strcmp(name, "--weight-decay")) r->weight_decay = (float)x;
    else if (!strcmp(name, "--seed")) r->seed = (uint64_t)x;
    else if (!strcmp(name, "--threads")) a->threads = (int)x;
    else if (!strcmp(name, "--checkpoint-minutes")) a->minutes = x;
    else if (!strcmp(name, "--max-steps")) a->max_steps = (long)x;
    else if (!strcmp(name, "--checkpoint-steps")) a->ckpt_steps = (long)x;
    else if (!strcmp(name, "--log-every")) a->log_every = (long)x;
    else return opt_error("unknown option '%s'", name);
  }
  return 0;
}

static int parse_train(int argc, char **argv, TrainArgs *a) {
  RunState *r = &a->r;
  *a = (TrainArgs){.epochs = 30, .minutes = 10, .progress = isatty(2)};
  *r = (RunState){.seed = 1, .optimizer = OPT_SGD, .schedule = SCHED_COSINE,
                  .momentum = 0.9f, .weight_decay = -1, .warmup_epochs = 1,
                  .lr = -1};
  for (int i = 0; i < argc; i++) {
    const char *o = argv[i];
    if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
      printf(train_help, netc_model.name);
      exit(0);
    } else if (!strcmp(o, "--resume")) a->resume = 1;
    else if (!strcmp(o, "--nesterov")) r->nesterov = 1;
    else if (!strcmp(o, "--bn-decay")) r->bn_decay = 1;
    else if (!strcmp(o, "--resize")) a->resize = 1;
    else if (!strcmp(o, "--no-plots")) a->no_plots = 1;
    else if (!strcmp(o, "--progress")) a->progress = 1;
    else if (o[0] == '-' && i + 1 < argc) {
      int rc = set_value(a, o, argv[++i]);
      if (rc)
        return rc;
    } else {
      return opt_error("unknown or incomplete option '%s'", o);
    }
  }
  if (!a->data)
    return opt_error("%s", "--data DIR is required");
  if (a->epochs < 1)
    return opt_error("%s", "--epochs must be at least 1");
  if (r->lr < 0) /* 0.1 for batch 128, scaled linearly */
    r->lr = r->optimizer == OPT_SGD ? 0.1f * netc_model.batch / 128.0f : 1e-3f;
  if (r->weight_decay < 0)
    r->weight_decay = r->optimizer == OPT_ADAMW ? 0.05f : 5e-4f;
  r->epochs = a->epochs;
  return 0;
}

/* ---- learning rate ------------------------------------------------------ */

static float learning_rate(const RunState *r, int64_t step) {
  double total = (double)r->epochs * r->steps_per_epoch;
  double warm = r->warmup_epochs * r->steps_per_epoch;
  double t = (double)step;
  if (t < warm)
    return (float)(r->lr * (t + 1) / warm);
  if (r->schedule == SCHED_CONSTANT)
    return r->lr;
  double frac = (t - warm) / (total - warm > 1 ? total - warm : 1);
  if (r->schedule == SCHED_STEP) /* x0.1 at half and three quarters */
    return (float)(r->lr * (frac < 0.5 ? 1 : frac < 0.75 ? 0.1 : 0.01));
  return (float)(0.5 * r->lr * (1 + cos(M_PI * (frac < 1 ? frac : 1))));
}

/* ---- evaluation --------------------------------------------------------- */

typedef struct {
  double loss, top1, top5; /* mean loss, percent */
  int64_t images;
} EvalResult;

static EvalResult evaluate(NetcState *s, const Dataset *val) {
  const NetcModel *m = s->model;
  LoaderOptions lo = {.batch = m->batch, .train = 0, .prefetch = 1};
  Loader *l = loader_new(val, &lo);
  float *x = (float *)(s->arena + m->input_offset);
  int32_t *y = (int32_t *)(s->arena + m->labels_offset);
  EvalResult e = {0};
  int64_t t1 = 0, t5 = 0;
  loader_seek(l, 0, 0);
  for (int n; (n = loader_next(l, x, y)) > 0;) {
    m->forward(s, 0); /* the labels stay in the arena through the step */
    score_batch(s, n, y, &e.loss, &t1, &t5);
    e.images += n;
  }
  loader_free(l);
  if (e.images) {
    e.loss /= (double)e.images;
    e.top1 = 100.0 * (double)t1 / (double)e.images;
    e.top5 = 100.0 * (double)t5 / (double)e.images;
  }
  return e;
}

/* ---- the run directory: metrics and plots ------------------------------- */

static const char metrics_header[] =
    "epoch,train_loss,train_top1,val_loss,val_top1,val_top5,lr,images_per_s,"
    "seconds\n";

static char *run_path(const TrainArgs *a, const char *name) {
  size_t n = strlen(a->out) + strlen(name) + 2;
  char *p = malloc(n);
  snprintf(p, n, "%s/%s", a->out, name);
  return p;
}

/* Keeps the rows of epochs 1..completed (a row written after the last
 * checkpoint belongs to an epoch the resumed run will redo). The file is
 * replaced atomically, and only when a row must go: a kill or a full disk
 * here loses nothing. */
static int trim_metrics(const TrainArgs *a, int completed) {
  char *path = run_path(a, "metrics.csv"), *tmp = run_path(a, "metrics.csv.tmp");
  FILE *f = fopen(path, "r");
  char *keep = NULL, *old = NULL;
  size_t len = 0, old_len = 0;
  FILE *mem = open_memstream(&keep, &len), *was = open_memstream(&old, &old_len);
  fputs(metrics_header, mem);
  if (f) {
    char line[1024];
    while (fgets(line, sizeof line, f)) {
      fputs(line, was);
      if (line[0] >= '0' && line[0] <= '9' && atoi(line) <= completed)
        fputs(line, mem);
    }
    fclose(f);
  }
  fclose(mem);
  fclose(was);
  int bad = 0;
  if (!f || len != old_len || memcmp(keep, old, len)) {
    f = fopen(tmp, "w");
    bad = !f || fputs(keep, f) < 0;
    bad |= f && fclose(f) != 0;
    bad = bad || rename(tmp, path) != 0;
    if (bad) {
      fprintf(stderr, "netc: cannot write %s: %s\n", path, strerror(errno));
      unlink(tmp);
    }
  }
  free(keep);
  free(old);
  free(path);
  free(tmp);
  return bad ? -1 : 0;
}

static void append_metrics(const TrainArgs *a, int epoch, double tl,
                           double ta, const EvalResult *v, float lr,
                           double ips, double sec) {
  char *path = run_path(a, "metrics.csv");
  FILE *f = fopen(path, "a");
  if (f) {
    fprintf(f, "%d,%.6f,%.4f,%.6f,%.4f,%.4f,%.6g,%.2f,%.1f\n", epoch, tl, ta,
            v->loss, v->top1, v->top5, lr, ips, sec);
    fclose(f);
  } else {
    fprintf(stderr, "netc: cannot append to %s: %s\n", path, strerror(errno));
  }
  free(path);
}

/* Loss and accuracy per epoch, as the original project plotted them. */
static void plot(const TrainArgs *a) {
  if (a->no_plots)
    return;
  if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
    static int told;
    if (!told++)
      fprintf(stderr, "netc: gnuplot not found: no plots (apt-get install "
                      "gnuplot-nox)\n");
    return;
  }
  char *csv = run_path(a, "metrics.csv"), *loss = run_path(a, "loss.svg");
  char *acc = run_path(a, "accuracy.svg");
  FILE *g = popen("gnuplot 2>/dev/null", "w");
  if (g) {
    fprintf(g, "set datafile separator ','\nset terminal svg size 800,500 "
               "font 'Helvetica,12'\nset key autotitle columnhead\n"
               "set xlabel 'epoch'\nset grid\n"
               "set output '%s'\nset title '%s: loss'\nset ylabel 'loss'\n"
               "plot '%s' using 1:2 with linespoints title 'train', '' using "
               "1:4 with linespoints title 'validation'\n"
               "set output '%s'\nset title '%s: accuracy'\nset ylabel "
               "'accuracy (%%)'\nplot '%s' using 1:3 with linespoints title "
               "'train', '' using 1:5 with linespoints title 'validation', "
               "'' using 1:6 with linespoints title 'validation top-5'\n",
            loss, netc_model.name, csv, acc, netc_model.name, csv);
    pclose(g);
  }
  free(csv), free(loss), free(acc);
}

/* ---- progress ------------------------------------------------------------ */

static void progress(const TrainArgs *a, const RunState *r, int steps,
                     float lr, double ips, int last) {
  double loss = r->seen ? r->loss_sum / (double)r->seen : 0;
  double acc = r->seen ? 100.0 * (double)r->correct / (double)r->seen : 0;
  double eta = ips > 0 ? (double)(steps - r->step) * netc_model.batch / ips
                       : 0;
  if (a->progress) {
    int w = 24, done = steps ? r->step * w / steps : w;
    fprintf(stderr, "\repoch %d/%d [%.*s%.*s] %d/%d %6.1f img/s loss %.4f "
                    "acc %5.2f%% lr %.4g ETA %02d:%02d ",
            r->epoch + 1, r->epochs, done, "########################",
            w - done, "........................", r->step, steps, ips, loss,
            acc, lr, (int)eta / 60, (int)eta % 60);
    if (last)
      fputc('\n', stderr);
  } else {
    fprintf(stderr, "epoch %d/%d step %d/%d %.1f img/s loss %.4f acc %.2f%% "
                    "lr %.4g eta %ds\n",
            r->epoch + 1, r->epochs, r->step, steps, ips, loss, acc, lr,
            (int)eta);
  }
}

/* ---- train --------------------------------------------------------------- */

static int make_dir(const char *dir) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", dir);
  for (char *p = buf + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      mkdir(buf, 0777);
      *p = '/';
    }
  if (mkdir(buf, 0777) && errno != EEXIST) {
    fprintf(stderr, "netc: cannot create %s: %s\n", dir, strerror(errno));
    return -1;
  }
  return 0;
}

static ClassList classes_of(const Dataset *d) {
  ClassList c = {.nclasses = d->nclasses};
  c.class_ids = calloc((size_t)d->nclasses + 1, MAX_CLASS_NAME);
  c.class_names = calloc((size_t)d->nclasses + 1, MAX_CLASS_NAME);
  for (int i = 0; i < d->nclasses; i++) {
    snprintf(c.class_ids[i], MAX_CLASS_NAME, "%s", d->class_ids[i]);
    snprintf(c.class_names[i], MAX_CLASS_NAME, "%s", d->class_names[i]);
  }
  return c;
}

static void classes_free(ClassList *c) {
  free(c->class_ids);
  free(c->class_names);
  c->class_ids = c->class_names = NULL;
}

static int open_data(const char *dir, int resize, Dataset *train,
                     Dataset *val) {
  DataOptions o = {.resize = resize, .h = netc_model.in_h,
                   .w = netc_model.in_w};
  if (train && dataset_open(train, dir, "train", &o))
    return -1;
  if (val && dataset_open(val, dir, "val", &o))
    return -1;
  const Dataset *d = train ? train : val;
  if (d->nclasses != netc_model.classes) {
    fprintf(stderr, "netc: %s has %d classes; model '%s' has %d (change "
                    "classes = in the .net file)\n",
            dir, d->nclasses, netc_model.name, netc_model.classes);
    return -1;
  }
  return 0;
}

/* A run killed while writing a checkpoint leaves NAME.ckpt.tmpPID behind
 * (the checkpoint itself is intact): removed when the run directory is
 * used again. */
static void remove_unfinished(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strstr(e->d_name, ".ckpt.tmp"))
      continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    n += unlink(path) == 0;
  }
  closedir(d);
  if (n)
    fprintf(stderr, "netc: removed %d unfinished checkpoint file%s of an "
                    "interrupted run in %s\n", n, n == 1 ? "" : "s", dir);
}

typedef struct {
  TrainArgs *a;
  NetcState *s;
  NetcOptimizer *o;
  ClassList *c;
  char *last, *best;
} Run;

static int save(Run *run, const char *path) {
  return checkpoint_save(path, run->s, run->o, &run->a->r, run->c);
}

static int finish_epoch(Run *run, const Dataset *val, float lr) {
  RunState *r = &run->a->r;
  EvalResult v = evaluate(run->s, val);
  double tl = r->seen ? r->loss_sum / (double)r->seen : 0;
  double ta = r->seen ? 100.0 * (double)r->correct / (double)r->seen : 0;
  double ips = r->seconds > 0 ? (double)r->seen / r->seconds : 0;
  append_metrics(run->a, r->epoch + 1, tl, ta, &v, lr, ips, r->seconds);
  printf("epoch %d/%d train_loss %.4f train_top1 %.2f%% val_loss %.4f "
         "val_top1 %.2f%% val_top5 %.2f%% lr %.4g %.1f img/s %.0f s\n",
         r->epoch + 1, r->epochs, tl, ta, v.loss, v.top1, v.top5, lr, ips,
         r->seconds);
  fflush(stdout);
  r->completed = r->epoch + 1;
  r->epoch++;
  r->step = 0;
  r->loss_sum = r->seconds = 0;
  r->correct = r->seen = 0;
  if (v.top1 > r->best_top1) {
    r->best_top1 = v.top1;
    if (save(run, run->best))
      return -1;
  }
  int rc = save(run, run->last);
  plot(run->a);
  return rc;
}

/* After a failed step (step.h): runs the step again on the same batch
 * (the loader is deterministic) with every op's output checked and no
 * update, and names the first op that wrote a NaN or an Inf. After a bad
 * loss the parameters are the ones the step started from; after a bad
 * gradient the step had updated some of them, so the repeat may not fail
 * the same way. Nothing is saved after a failed step, so the last
 * checkpoint, written before it, is intact. */
static void locate_nonfinite(Run *run, Loader *l, const StepResult *res) {
  NetcState *s = run->s;
  RunState *r = &run->a->r;
  float *x = (float *)(s->arena + netc_model.input_offset);
  int32_t *y = (int32_t *)(s->arena + netc_model.labels_offset);
  loader_seek(l, r->epoch, r->step);
  int saved = s->profile;
  s->profile = NETC_PROFILE_FINITE;
  s->first_nonfinite = -1;
  s->on_grad = NULL; /* the repeat updates nothing */
  if (loader_next(l, x, y) > 0) {
    netc_model.forward(s, 1);
    if (s->first_nonfinite < 0)
      netc_model.backward(s);
  }
  s->profile = saved;
  char what[512];
  fprintf(stderr, "\nnetc: %s at epoch %d step %d: training stopped%s; the "
                  "last checkpoint (%s) is intact\n",
          step_failure(res, what, sizeof what), r->epoch + 1, r->step + 1,
          res->status == STEP_BAD_GRADIENT
              ? " with the parameters before it in the backward pass updated"
              : "",
          run->last);
  int i = s->first_nonfinite;
  if (i >= 0) {
    const NetcOp *o = &netc_model.ops[i];
    fprintf(stderr, "netc: the first NaN or Inf was written by %s (%s pass) "
                    "of layer '%s', defined at %s\n",
            o->op, o->backward ? "backward" : "forward", o->layer, o->where);
  } else {
    fprintf(stderr, "netc: the step did not fail again when repeated with "
                    "every op checked\n");
  }
  fprintf(stderr, "netc: a lower --lr or a longer --warmup-epochs usually "
                  "helps\n");
}

/* One step of the run on the batch in the arena (train_step, at the
 * schedule's learning rate) and its bookkeeping: the epoch's sums, the log
 * and the progress line. -1 after a failed step, which is named. */
static int run_step(Run *run, Loader *l, int steps, double *last_report,
                    double t0) {
  RunState *r = &run->a->r;
  float lr = learning_rate(r, r->global_step);
  StepResult res = train_step(run->s, run->o, lr);
  if (res.status != STEP_OK) {
    locate_nonfinite(run, l, &res);
    return -1;
  }
  r->loss_sum += (double)res.loss * netc_model.batch;
  r->correct += res.correct;
  r->seen += netc_model.batch;
  r->step++;
  r->global_step++;
  if (run->a->log_every && r->global_step % run->a->log_every == 0) {
    printf("step %lld loss %.6f\n", (long long)r->global_step, res.loss);
    fflush(stdout);
  }
  double t = now();
  r->seconds += t - t0;
  if (t - *last_report >= (run->a->progress ? 0.5 : 60) || r->step == steps) {
    progress(run->a, r, steps, lr, r->seen / (r->seconds > 0 ? r->seconds : 1),
             r->step == steps);
    *last_report = t;
  }
  return 0;
}

static int train_epochs(Run *run, Loader *l, const Dataset *val) {
  RunState *r = &run->a->r;
  NetcState *s = run->s;
  float *x = (float *)(s->arena + netc_model.input_offset);
  int32_t *y = (int32_t *)(s->arena + netc_model.labels_offset);
  double last_ckpt = now(), last_report = 0;
  while (r->epoch < r->epochs) {
    loader_seek(l, r->epoch, r->step);
    while (r->step < r->steps_per_epoch) {
      double t0 = now();
      if (loader_next(l, x, y) <= 0)
        break;
      if (run_step(run, l, r->steps_per_epoch, &last_report, t0))
        return 1;
      int timed = now() - last_ckpt >= run->a->minutes * 60 ||
                  (run->a->ckpt_steps &&
                   r->global_step % run->a->ckpt_steps == 0);
      int stop = interrupted ||
                 (run->a->max_steps && r->global_step >= run->a->max_steps);
      if (timed || stop) {
        if (save(run, run->last))
          return 1;
        last_ckpt = now();
      }
      if (stop) {
        fprintf(stderr, "\nnetc: %s at epoch %d step %d; checkpoint %s "
                        "written: continue with --resume\n",
                interrupted == SIGTERM ? "terminated"
                : interrupted          ? "interrupted"
                                       : "stopped",
                r->epoch + 1,
                r->step, run->last);
        return interrupted ? 1 : 0; /* an unfinished run is not a success */
      }
    }
    if (finish_epoch(run, val, learning_rate(r, r->global_step - 1)))
      return 1;
    last_ckpt = now();
  }
  return 0;
}

static int start_run(TrainArgs *a, Run *run, Dataset *train, Loader **l) {
  RunState *r = &a->r;
  LoaderOptions lo = {.batch = netc_model.batch, .train = 1, .pad = 4,
                      .seed = r->seed, .prefetch = 1};
  if (a->resume) {
    RunState given = *r;
    classes_free(run->c); /* the checkpoint's list replaces the data's */
    if (checkpoint_load(run->last, run->s, run->o, r, run->c))
      return -1;
    if (given.epochs != r->epochs && given.epochs != 30)
      r->epochs = given.epochs; /* a resume may lengthen a run */
    lo.seed = r->seed;
    printf("netc: resuming %s at epoch %d step %d (global step %lld)\n",
           run->last, r->epoch + 1, r->step, (long long)r->global_step);
    fflush(stdout);
    if (trim_metrics(a, r->completed))
      return -1;
  } else {
    netc_init_params(run->s, r->seed);
    if (trim_metrics(a, 0))
      return -1;
  }
  run->o->kind = r->optimizer;
  run->o->momentum = r->momentum;
  run->o->weight_decay = r->weight_decay;
  run->o->nesterov = r->nesterov;
  run->o->decay_bn_and_bias = r->bn_decay;
  run->o->beta1 = 0.9f, run->o->beta2 = 0.999f, run->o->eps = 1e-8f;
  if (!a->resume && optim_init(run->o, &netc_model))
    return -1;
  *l = loader_new(train, &lo);
  r->steps_per_epoch = loader_steps(*l);
  return *l ? 0 : -1;
}

int cmd_train(int argc, char **argv) {
  TrainArgs a;
  int rc = parse_train(argc, argv, &a);
  if (rc)
    return rc;
  char out[512];
  if (!a.out)
    snprintf(out, sizeof out, "runs/%s", netc_model.name), a.out = out;
  if (a.threads > 0)
    rt_set_threads(a.threads);
  Dataset train, val;
  if (make_dir(a.out) || open_data(a.data, a.resize, &train, &val))
    return 1;
  remove_unfinished(a.out);
  NetcState *s = netc_state_new(&netc_model);
  NetcOptimizer o = {.kind = a.r.optimizer};
  ClassList c = classes_of(&train);
  Run run = {.a = &a, .s = s, .o = &o, .c = &c,
             .last = run_path(&a, "last.ckpt"),
             .best = run_path(&a, "best.ckpt")};
  Loader *l = NULL;
  if (!s || start_run(&a, &run, &train, &l))
    return 1;
  printf("netc: training %s (batch %d, %d steps per epoch, %d train and %d "
         "val images, %d skipped) for %d epochs into %s\n",
         netc_model.name, netc_model.batch, a.r.steps_per_epoch, train.n,
         val.n, train.skipped + val.skipped, a.r.epochs, a.out);
  fflush(stdout);
  /* Ctrl-C or a polite kill: finish the step, checkpoint, exit 1. */
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  rc = train_epochs(&run, l, &val);
  loader_free(l);
  dataset_close(&train);
  dataset_close(&val);
  netc_state_free(s);
  optim_free(&o);
  classes_free(&c);
  free(run.last);
  free(run.best);
  return rc;
}

/* ---- eval and predict ---------------------------------------------------- */

typedef struct {
  const char *data, *checkpoint;
  int threads, resize;
  int first_arg; /* predict: where the image paths start */
} EvalArgs;

static int parse_eval(int argc, char **argv, EvalArgs *e, int predict) {
  *e = (EvalArgs){0};
  int i = 0;
  for (; i < argc; i++) {
    const char *o = argv[i];
    if (!strcmp(o, "--resize")) e->resize = 1;
    else if (!strcmp(o, "--data") && i + 1 < argc) e->data = argv[++i];
    else if (!strcmp(o, "--checkpoint") && i + 1 < argc)
      e->checkpoint = argv[++i];
    else if (!strcmp(o, "--threads") && i + 1 < argc)
      e->threads = atoi(argv[++i]);
    else if (o[0] == '-')
      return opt_error("unknown or incomplete option '%s'", o);
    else if (predict)
      break;
    else
      return opt_error("unexpected argument '%s'", o);
  }
  e->first_arg = i;
  if (!e->checkpoint)
    return opt_error("%s", "--checkpoint FILE is required");
  if (!predict && !e->data)
    return opt_error("%s", "--data DIR is required");
  if (predict && i >= argc)
    return opt_error("%s", "predict needs at least one IMAGE");
  if (e->threads > 0)
    rt_set_threads(e->threads);
  return 0;
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
  int rc = parse_eval(argc, argv, &e, 0);
  if (rc)
    return rc;
  Dataset val;
  NetcState *s = netc_state_new(&netc_model);
  ClassList c;
  if (!s || open_data(e.data, e.resize, NULL, &val) ||
      checkpoint_load(e.checkpoint, s, NULL, NULL, &c))
    return 1;
  if (!same_classes(&c, &val)) {
    fprintf(stderr, "netc: %s was trained on other classes than %s has\n",
            e.checkpoint, e.data);
    return 1;
  }
  EvalResult r = evaluate(s, &val);
  printf("top1=%.2f top5=%.2f loss=%.4f images=%lld\n", r.top1, r.top5,
         r.loss, (long long)r.images);
  dataset_close(&val);
  netc_state_free(s);
  classes_free(&c);
  return 0;
}

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

int cmd_predict(int argc, char **argv) {
  EvalArgs e;
  int rc = parse_eval(argc, argv, &e, 1);
  if (rc)
    return rc;
  NetcState *s = netc_state_new(&netc_model);
  ClassList c;
  if (!s || checkpoint_load(e.checkpoint, s, NULL, NULL, &c))
    return 1;
  const NetcModel *m = &netc_model;
  DataOptions o = {.resize = e.resize, .h = m->in_h, .w = m->in_w};
  uint8_t *rgb = malloc((size_t)m->in_h * m->in_w * 3);
  float *x = (float *)(s->arena + m->input_offset);
  int64_t img = (int64_t)m->in_h * m->in_w * 3;
  const char **paths = malloc(sizeof(char *) * (size_t)m->batch);
  int failed = 0;
  for (int i = e.first_arg; i < argc;) {
    int n = 0;
    memset(x, 0, sizeof(float) * (size_t)(img * m->batch));
    memset(s->arena + m->labels_offset, 0, sizeof(int32_t) * (size_t)m->batch);
    for (; i < argc && n < m->batch; i++) {
      if (image_load(argv[i], rgb, &o) != 0) {
        failed++;
        continue;
      }
      image_normalize(x + n * img, rgb, m->in_h, m->in_w);
      paths[n++] = argv[i];
    }
    if (n == 0)
      continue;
    m->forward(s, 0);
    for (int k = 0; k < n; k++)
      print_top5(s, k, paths[k], &c);
  }
  free(rgb);
  free(paths);
  netc_state_free(s);
  classes_free(&c);
  return failed ? 1 : 0;
}

/* ---- inspect: a checkpoint, verified ------------------------------------ */

int cmd_inspect(int argc, char **argv) {
  if (argc != 1 || argv[0][0] == '-') {
    fprintf(stderr, "usage: %s inspect FILE.ckpt\n", netc_model.name);
    return 2;
  }
  NetcState *s = netc_state_new(&netc_model);
  NetcOptimizer o = {0};
  RunState r;
  ClassList c = {0};
  if (!s || checkpoint_load(argv[0], s, &o, &r, &c)) {
    netc_state_free(s);
    classes_free(&c);
    return 1;
  }
  printf("checkpoint=%s model=%s batch=%d epoch=%d step=%d global_step=%lld "
         "completed=%d epochs=%d best_top1=%.2f classes=%d state_hash=%016llx\n",
         argv[0], netc_model.name, netc_model.batch, r.epoch + 1, r.step,
         (long long)r.global_step, r.completed, r.epochs, r.best_top1,
         c.nclasses, (unsigned long long)checkpoint_state_hash(s, &o));
  netc_state_free(s);
  optim_free(&o);
  classes_free(&c);
  return 0;
}
