/* train.c: the trainer's train command.
 *
 * A run lives in RUN_DIR (run_dir.c), which one trainer holds at a time: metrics.csv (one row per epoch), loss.svg and
 * accuracy.svg (gnuplot, refreshed every epoch), last.ckpt (every epoch and
 * every --checkpoint-minutes), best.ckpt (best validation top-1). The data
 * order and augmentation depend only on (seed, epoch, position), and the
 * checkpoint holds everything else, so --resume continues with the losses
 * an uninterrupted run would have had (same thread count). Each step is
 * train_step (step.h); one that fails (a NaN) ends the run without saving,
 * after naming the op that made the NaN. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data.h"
#include "formats/checkpoint.h"
#include "formats/safetensors.h"
#include "kernels/netc_rt.h"
#include "trainer/comm.h"
#include "trainer/commands.h"
#include "trainer/eval.h"
#include "trainer/options.h"
#include "trainer/run_dir.h"
#include "trainer/saver.h"
#include "trainer/schedule.h"
#include "trainer/step.h"
#include "util/util.h"

/* The options as given; r is the run, its recipe from them or (--resume)
 * from the checkpoint. */
typedef struct {
  const char *data, *out;
  const char *init;     /* --init: starting weights (safetensors) */
  long epochs, threads, seed; /* epochs 0: not given */
  const char *budget_text; /* --time-budget as given */
  double budget;        /* its seconds, 0: none */
  int resume, progress, resize, no_plots;
  int no_augment;       /* shuffled, but neither cropped nor flipped */
  double label_smoothing;
  int optimizer, schedule, nesterov, bn_decay;
  double lr, warmup_epochs, momentum, weight_decay; /* lr, wd < 0: default */
  double minutes;       /* checkpoint interval */
  long ckpt_steps;      /* also checkpoint every this many steps, 0: no */
  long log_every;       /* print the loss every this many steps, 0: no */
  long max_steps;       /* stop after this many steps (tests), 0: no */
  long accumulate;      /* micro-batches per step */
  int check_replicas;   /* compare the processes' parameters every step */
  int sync_bn;          /* batchnorm statistics over all processes */
  RunState r;
} TrainArgs;

/* On several processes, rank 0 writes the run directory. */
static int root(void) { return comm_rank() == 0; }

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) {
  interrupted = sig;
}

/* stdout is the run's log (resume, step and epoch lines). When its reader
 * has gone (EPIPE: `train ... | head`), the run ends as on Ctrl-C: after
 * the step, with a checkpoint, status 1, and no message about the pipe. */
static int output_closed;
static void flush_log(void) {
  if (flush_stdout() && errno == EPIPE)
    output_closed = 1;
}

/* ---- options ------------------------------------------------------------ */

/* The recipe the options give, defaults filled in. */
static void set_recipe(TrainArgs *a) {
  RunState *r = &a->r;
  *r = (RunState){.seed = (uint64_t)a->seed,
                  .epochs = (int32_t)(a->epochs ? a->epochs : 30),
                  .budget_seconds = a->budget,
                  .optimizer = a->optimizer, .schedule = a->schedule,
                  .nesterov = a->nesterov, .bn_decay = a->bn_decay,
                  .momentum = (float)a->momentum,
                  .warmup_epochs = (float)a->warmup_epochs,
                  .label_smoothing = (float)a->label_smoothing,
                  .no_augment = a->no_augment};
  /* 0.1 for 128 images per step, scaled linearly */
  r->global_batch = (int32_t)(netc_model.batch * a->accumulate * comm_size());
  r->lr = a->lr >= 0 ? (float)a->lr
          : r->optimizer == OPT_SGD ? 0.1f * r->global_batch / 128.0f
                                    : 1e-3f;
  r->weight_decay = a->weight_decay >= 0 ? (float)a->weight_decay
                    : r->optimizer == OPT_ADAMW ? 0.05f
                                                : 5e-4f;
}

static int parse_train(int argc, char **argv, TrainArgs *a) {
  static const char *const optimizers[] = {"sgd", "adam", "adamw", NULL};
  static const char *const schedules[] = {"cosine", "step", "constant",
                                          "linear", NULL};
  *a = (TrainArgs){.seed = 1, .lr = -1, .warmup_epochs = 1,
                   .momentum = 0.9, .weight_decay = -1, .minutes = 10,
                   .optimizer = OPT_SGD, .schedule = SCHED_COSINE,
                   .progress = isatty(2), .accumulate = 1};
  const Option options[] = {
      {"--data", "DIR", "TinyImageNet-200 (release or ImageFolder layout)",
       .text = &a->data, .required = 1},
      {"--epochs", "E", "epochs (default 30)", .whole = &a->epochs, .min = 1,
       .max = 1000000},
      {"--time-budget", "DURATION", "train for this long instead (2h, 90m, "
       "1h30m): the schedule laid over the steps that fit",
       .text = &a->budget_text},
      {"--lr", "LR", "peak learning rate (default 0.1 x images per step / 128)",
       .real = &a->lr, .min = 0, .max = FLT_MAX},
      {"--schedule", "S", "cosine | step | constant | linear (default "
       "cosine)",
       .choice = &a->schedule, .choices = schedules},
      {"--warmup-epochs", "W", "linear warm-up (default 1)",
       .real = &a->warmup_epochs, .min = 0, .max = FLT_MAX},
      {"--optimizer", "O", "sgd | adam | adamw (default sgd)",
       .choice = &a->optimizer, .choices = optimizers},
      {"--momentum", "M", "SGD momentum (default 0.9)", .real = &a->momentum,
       .min = 0, .max = FLT_MAX},
      {"--nesterov", NULL, "Nesterov momentum", .flag = &a->nesterov},
      {"--weight-decay", "WD", "(default 5e-4; 0.05 for adamw)",
       .real = &a->weight_decay, .min = 0, .max = FLT_MAX},
      {"--bn-decay", NULL, "also decay batchnorm parameters and biases",
       .flag = &a->bn_decay},
      {"--label-smoothing", "E", "targets (1 - E) onehot + E / classes, as "
       "PyTorch's (default 0)", .real = &a->label_smoothing, .min = 0,
       .max = 1},
      {"--no-augment", NULL, "no random crop or flip of the training images",
       .flag = &a->no_augment},
      {"--seed", "S", "data order, augmentation, init (default 1)",
       .whole = &a->seed, .min = 0, .max = OPTIONS_NO_MAX},
      threads_option(&a->threads),
      {"--out", "RUN_DIR", "metrics, plots, checkpoints (default "
       "runs/<model>)", .text = &a->out},
      {"--resume", NULL, "continue from RUN_DIR/last.ckpt", .flag = &a->resume},
      {"--init", "FILE", "start from the weights of FILE.safetensors (netc "
       "export, or torchvision's names)", .text = &a->init},
      {"--checkpoint-minutes", "N", "also checkpoint every N minutes (default "
       "10)", .real = &a->minutes, .min = 0, .max = OPTIONS_NO_MAX},
      {"--checkpoint-steps", "N", "also checkpoint every N steps",
       .whole = &a->ckpt_steps, .min = 0, .max = OPTIONS_NO_MAX},
      {"--log-every", "N", "print 'step G loss L' to stdout every N steps",
       .whole = &a->log_every, .min = 0, .max = OPTIONS_NO_MAX},
      {"--max-steps", "N", "stop with a checkpoint at global step N (tests)",
       .whole = &a->max_steps, .min = 0, .max = OPTIONS_NO_MAX},
      {"--accumulate", "K", "K micro-batches per step, their gradients "
       "summed (default 1)", .whole = &a->accumulate, .min = 1, .max = 4096},
      {"--sync-bn", NULL, "batchnorm statistics over the global batch, "
       "not each process's (with mpirun)", .flag = &a->sync_bn},
      {"--check-replicas", NULL, "after every step, check that every process "
       "holds the same parameters (tests)", .flag = &a->check_replicas},
      {"--resize", NULL, "resize images that are not the input size",
       .flag = &a->resize},
      {"--no-plots", NULL, "skip the gnuplot pictures", .flag = &a->no_plots},
      {"--progress", NULL, "a progress bar on stderr, even when it is not a "
       "terminal", .flag = &a->progress},
      {NULL}};
  const CommandSpec c = {
      .name = "train", .options = options,
      .about = "Trains on TinyImageNet-200 into RUN_DIR: metrics.csv, plots, "
               "last.ckpt and best.ckpt\n(docs/training.md)."};
  int rc = parse_command(&c, argc, argv, NULL);
  if (rc != OPTIONS_RUN)
    return rc;
  if (a->budget_text) {
    a->budget = parse_duration(a->budget_text);
    if (a->budget < 0)
      return usage_error(&c, "--time-budget needs a duration such as 2h, "
                         "90m or 1h30m, not '%s'", a->budget_text);
    if (a->budget <= 0 || a->budget > 30 * 86400.0)
      return usage_error(&c, "--time-budget must be more than 0 and at most "
                         "30 days, not '%s'", a->budget_text);
    if (a->epochs)
      return usage_error(&c, "--time-budget and --epochs both say how long "
                         "to train: give one of them");
  }
  set_recipe(a);
  return rc;
}

/* ---- learning rate ------------------------------------------------------ */

/* A budgeted run lays its schedule over the steps it plans; until its
 * first plan (a few steps in), over a run that never ends: the warm-up. */
static float learning_rate(const RunState *r, int64_t step) {
  double per = (double)r->steps_per_epoch;
  if (r->budget_seconds > 0 && r->total_steps == 0)
    return schedule_lr(r->schedule, r->lr, r->warmup_epochs * per, 1e18,
                       step);
  if (r->budget_seconds > 0)
    return schedule_lr(r->schedule, r->lr,
                       budget_warmup(r->warmup_epochs, r->steps_per_epoch,
                                     r->total_steps),
                       (double)r->total_steps, step);
  return schedule_lr(r->schedule, r->lr, r->warmup_epochs * per,
                     (double)r->epochs * per, step);
}

/* Whether the run has trained all it is to train. */
static int run_done(const RunState *r) {
  if (r->budget_seconds > 0)
    return r->total_steps > 0 && r->global_step >= r->total_steps;
  return r->epoch >= r->epochs;
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

typedef struct {
  TrainArgs *a;
  NetcState *s;
  NetcOptimizer *o;
  ClassList *c;
  char *last, *best;
  Saver saver;          /* rank 0's checkpoint writer */
  double ckpt_seconds;  /* the steps' time lost to checkpoints this epoch */
  double ckpt_total;    /* and over the run */
  /* A time budget's clock (rank 0's decides): */
  double started;       /* now_seconds() when this process began */
  double spent_before;  /* the run's wall time before this process */
  double step_time;     /* the loop's seconds over timed_steps steps */
  int64_t steps_here, timed_steps; /* this process's; timed: past 2 */
  double end_time;      /* seconds of the `ends` epoch ends so far */
  int ends, planned;    /* planned: the plan has been printed */
  int val_steps;        /* batches in an evaluation */
} Run;

/* The run's wall time so far, its earlier processes' included. */
static double run_elapsed(const Run *run) {
  return run->spent_before + now_seconds() - run->started;
}

/* A budgeted run's plan from what it has measured (rank 0, every step):
 * the total step count that ends it on time, adopted when it moves by
 * more than 0.2% (the learning rate follows the plan, so it should not
 * jitter with the clock). The first plan is printed. */
static void replan(Run *run) {
  RunState *r = &run->a->r;
  if (r->budget_seconds <= 0 || run->timed_steps < 3)
    return;
  double step = run->step_time / (double)run->timed_steps;
  /* Until the first evaluation is timed: a forward pass, about a third
   * of a training step, per batch. Then the mean of the measured. */
  double end = run->ends ? run->end_time / run->ends
                         : run->val_steps * step / 3 + 0.1;
  /* What follows the last step (the last write) and the noise of the
   * clock: 1% of the budget, at most a minute. */
  double margin = r->budget_seconds / 100 < 60 ? r->budget_seconds / 100 : 60;
  BudgetClock c = {.budget = r->budget_seconds, .elapsed = run_elapsed(run),
                   .step_seconds = step, .epoch_end_seconds = end,
                   .final_seconds = margin, .global_step = r->global_step,
                   .steps_per_epoch = r->steps_per_epoch};
  int64_t plan = budget_plan(&c), cur = r->total_steps;
  int64_t slack = cur / 500 > 1 ? cur / 500 : 1;
  if (cur == 0 || plan > cur + slack || plan < cur - slack)
    r->total_steps = plan;
  if (run->planned)
    return;
  run->planned = 1;
  double warm = budget_warmup(r->warmup_epochs, r->steps_per_epoch,
                              r->total_steps);
  static const char *const kinds[] = {"cosine", "step", "constant",
                                      "linear"};
  printf("netc: time budget %.0f s, %.0f s spent: %lld steps planned (%.2f "
         "epochs) at %.3f s per step, evaluations of about %.1f s each; "
         "warm-up %.0f steps, then %s decay to 0 at the last step; "
         "re-planned as the run goes\n", r->budget_seconds, c.elapsed,
         (long long)r->total_steps,
         (double)r->total_steps / (double)r->steps_per_epoch, step, end,
         warm, kinds[r->schedule]);
  flush_log();
}

/* The run state with the epoch's running sums (loss, correct, seen) added
 * over the processes: the run's, whatever the process count. Every
 * process calls it. */
static RunState epoch_sums(const RunState *mine) {
  RunState r = *mine;
  double sums[3] = {r.loss_sum, (double)r.correct, (double)r.seen};
  comm_sum_f64(sums, 3);
  r.loss_sum = sums[0], r.correct = (int64_t)sums[1], r.seen = (int64_t)sums[2];
  return r;
}

/* Every process calls it: the running statistics are averaged and the
 * epoch's sums added, so that rank 0's files are the run's. Rank 0 copies
 * the state and writes it to each of paths in the background (saver.h);
 * with `wait`, the write is done when save returns. -1 when this write or
 * the one before it failed (said), on every process. */
static int save(Run *run, const char *const *paths, int npaths, int wait) {
  double t0 = now_seconds();
  comm_average_bn_stats(run->s);
  RunState r = epoch_sums(&run->a->r);
  r.spent_seconds = run_elapsed(run); /* rank 0's counts */
  int rc = 0;
  if (root()) {
    rc = saver_start(&run->saver, run->s, run->o, &r, run->c, paths, npaths);
    if (rc == 0 && wait)
      rc = saver_wait(&run->saver);
  }
  double t = now_seconds() - t0;
  run->ckpt_seconds += t, run->ckpt_total += t;
  return comm_all(rc == 0) ? 0 : -1;
}

/* The epoch's end: evaluation, metrics, checkpoints (best.ckpt when the
 * top-1 is the best yet, and last.ckpt), plots, and the epoch's line with
 * the seconds of its loop, evaluation and checkpoints apart. */
static int finish_epoch(Run *run, const Dataset *val, float lr) {
  RunState *r = &run->a->r;
  double t0 = now_seconds();
  comm_average_bn_stats(run->s);
  EvalResult v = evaluate(run->s, val);
  double eval_seconds = now_seconds() - t0, loop_seconds = r->seconds;
  double before = loop_seconds + run->ckpt_seconds; /* this epoch's so far */
  RunState all = epoch_sums(r); /* the epoch over every process */
  double seen = (double)all.seen;
  double tl = seen ? all.loss_sum / seen : 0;
  double ta = seen ? 100.0 * (double)all.correct / seen : 0;
  double ips = r->seconds > 0 ? seen / r->seconds : 0;
  if (root()) /* a row that cannot be written is said; the run goes on */
    run_dir_append_metrics(run->a->out, &(MetricsRow){
        .epoch = r->epoch + 1, .train_loss = tl, .train_top1 = ta,
        .val_loss = v.loss, .val_top1 = v.top1, .val_top5 = v.top5,
        .lr = lr, .images_per_s = ips, .seconds = r->seconds});
  int epoch = r->epoch + 1;
  r->completed = r->epoch + 1;
  r->epoch++;
  r->step = 0;
  r->loss_sum = r->seconds = 0;
  r->correct = r->seen = 0;
  /* best.ckpt and last.ckpt hold the same state: one copy, two files. */
  const char *paths[2] = {run->best, run->last};
  int best = v.top1 > r->best_top1;
  if (best)
    r->best_top1 = v.top1;
  int rc = save(run, paths + !best, 1 + best, 0);
  if (root() && !run->a->no_plots)
    run_dir_plot(run->a->out, netc_model.name);
  printf("epoch %d/%d train_loss %.4f train_top1 %.2f%% val_loss %.4f "
         "val_top1 %.2f%% val_top5 %.2f%% lr %.4g %.1f img/s %.0f s "
         "(loop %.1f s, eval %.1f s, checkpoints %.2f s)\n",
         epoch, r->epochs, tl, ta, v.loss, v.top1, v.top5, lr, ips,
         before + now_seconds() - t0, loop_seconds, eval_seconds,
         run->ckpt_seconds);
  flush_log();
  run->ckpt_seconds = 0;
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
  loader_seek(l, r->epoch, r->step * s->accumulate + s->micro);
  int saved = s->profile, k = s->accumulate;
  s->profile = NETC_PROFILE_FINITE;
  s->first_nonfinite = -1;
  s->on_grad = NULL; /* the repeat updates nothing */
  s->accumulate = 1, s->micro = 0; /* nor accumulates */
  if (loader_next(l, x, y) > 0) {
    netc_model.forward(s, 1);
    /* every process runs backward, or none: it may hold collectives */
    if (comm_all(s->first_nonfinite < 0))
      netc_model.backward(s);
  }
  s->profile = saved, s->accumulate = k;
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
  NetcState *s = run->s;
  float lr = learning_rate(r, r->global_step);
  float *x = (float *)(s->arena + netc_model.input_offset);
  int32_t *y = (int32_t *)(s->arena + netc_model.labels_offset);
  StepResult res = {0};
  /* The first micro-batch is in the arena; the others follow. */
  for (s->micro = 0; s->micro < s->accumulate; s->micro++) {
    if (s->micro > 0 && loader_next(l, x, y) <= 0)
      return -1; /* cannot be: an epoch has whole steps */
    /* dropout's masks: from the run's seed and place, so a resumed run
     * draws the same ones */
    s->step_key = rt_step_key(r->seed, (uint64_t)r->global_step,
                              (uint64_t)comm_rank(), (uint64_t)s->micro);
    res = train_step(s, run->o, lr);
    if (res.status != STEP_OK) {
      locate_nonfinite(run, l, &res);
      return -1;
    }
    r->loss_sum += (double)res.loss * netc_model.batch;
    r->correct += res.correct;
    r->seen += netc_model.batch;
  }
  s->micro = 0;
  if (run->a->check_replicas && !comm_same_u64(comm_params_hash(s))) {
    if (root())
      fprintf(stderr, "\nnetc: the processes' parameters differ after global "
                      "step %lld\n", (long long)r->global_step + 1);
    comm_abort(1);
  }
  r->step++;
  r->global_step++;
  if (run->a->log_every && r->global_step % run->a->log_every == 0) {
    printf("step %lld loss %.6f\n", (long long)r->global_step, res.loss);
    flush_log();
  }
  double t = now_seconds();
  r->seconds += t - t0;
  if (run->steps_here++ >= 2) /* the first steps warm the caches */
    run->step_time += t - t0, run->timed_steps++;
  if (!root())
    return 0;
  if (t - *last_report >= (run->a->progress ? 0.5 : 60) || r->step == steps) {
    progress(run->a, r, steps, lr, r->seen / (r->seconds > 0 ? r->seconds : 1),
             r->step == steps);
    *last_report = t;
  }
  return 0;
}

/* Why a run stops before its end, or NULL: it goes on. */
static const char *stop_reason(const TrainArgs *a) {
  if (interrupted)
    return interrupted == SIGTERM ? "terminated" : "interrupted";
  if (output_closed)
    return "the output was closed";
  if (a->max_steps && a->r.global_step >= a->max_steps)
    return "stopped";
  return NULL;
}

/* A checkpoint write failed (checkpoint_save said why): the run stops
 * with nothing more written. Returns the run's status, 1. */
static int write_failed(const RunState *r) {
  if (root())
    fprintf(stderr, "\nnetc: training stopped at epoch %d step %d: a "
                    "checkpoint could not be written (said above); continue "
                    "with --resume from the last one\n", r->epoch + 1, r->step);
  return 1;
}

static int train_epochs(Run *run, Loader *l, const Dataset *val) {
  RunState *r = &run->a->r;
  NetcState *s = run->s;
  float *x = (float *)(s->arena + netc_model.input_offset);
  int32_t *y = (int32_t *)(s->arena + netc_model.labels_offset);
  double last_ckpt = now_seconds(), last_report = 0;
  while (!run_done(r)) {
    loader_seek(l, r->epoch, r->step * s->accumulate);
    while (r->step < r->steps_per_epoch && !run_done(r)) {
      double t0 = now_seconds();
      if (loader_next(l, x, y) <= 0)
        break;
      if (run_step(run, l, r->steps_per_epoch, &last_report, t0))
        return 1;
      /* Every process must checkpoint and stop at the same step: rank 0's
       * clock decides the timed checkpoints, and rank 0's saver says
       * whether a background write failed (it said why), which stops the
       * run at once with nothing more written; one broadcast carries both.
       * A signal or a closed output on any process stops them all. */
      if (root())
        replan(run); /* a budget's plan travels with the flags */
      struct {
        int64_t flags, total_steps;
      } m = {(now_seconds() - last_ckpt >= run->a->minutes * 60 ||
              (run->a->ckpt_steps &&
               r->global_step % run->a->ckpt_steps == 0)) |
                 (root() && saver_failed(&run->saver)) << 1,
             r->total_steps};
      comm_bcast(&m, sizeof m);
      r->total_steps = m.total_steps;
      if (r->budget_seconds > 0 && r->total_steps > 0)
        r->epochs = (int32_t)((r->total_steps + r->steps_per_epoch - 1) /
                              r->steps_per_epoch);
      int flags = (int)m.flags;
      if (flags & 2)
        return write_failed(r);
      int timed = flags & 1;
      const char *stop = stop_reason(run->a);
      if (!comm_all(stop == NULL) && !stop)
        stop = "stopped by another process";
      if (timed || stop) {
        if (save(run, (const char *[]){run->last}, 1, stop != NULL))
          return write_failed(r);
        last_ckpt = now_seconds();
      }
      if (stop) {
        if (root())
          fprintf(stderr, "\nnetc: %s at epoch %d step %d; checkpoint %s "
                          "written: continue with --resume\n",
                  stop, r->epoch + 1, r->step, run->last);
        /* An unfinished run is not a success; --max-steps asked for it. */
        return interrupted || output_closed;
      }
    }
    /* (A budget's plan that shrank to an epoch's start ends the run with
     * the epoch before it, which was evaluated.) */
    if (r->step == 0 && r->budget_seconds > 0)
      break;
    double t0 = now_seconds();
    if (finish_epoch(run, val, learning_rate(r, r->global_step - 1)))
      return write_failed(r);
    last_ckpt = now_seconds();
    run->end_time += last_ckpt - t0, run->ends++;
  }
  return 0;
}

/* A resume on several processes: rank 0 reads the checkpoint and sends
 * the others its parameters, statistics, optimizer state and where the
 * run is (so that the run directory need not be shared). The epoch's
 * running sums stay with rank 0: the others start them from zero, so
 * that the sum over the processes is the run's. */
static int resume_run(Run *run) {
  RunState *r = &run->a->r;
  NetcState *s = run->s;
  NetcOptimizer *o = run->o;
  int ok = 1;
  if (root()) {
    classes_free(run->c); /* the checkpoint's list replaces the data's */
    ok = checkpoint_load(run->last, s, o, r, run->c) == 0;
  }
  if (!comm_all(ok))
    return -1;
  if (comm_size() == 1)
    return 0;
  comm_bcast(r, sizeof *r);
  comm_bcast(s->params, netc_model.param_bytes);
  comm_bcast(s->bn_stats, netc_model.stats_bytes);
  if (!root()) {
    o->kind = r->optimizer;
    if (optim_init(o, &netc_model))
      comm_abort(1);
    o->step = r->global_step;
    r->loss_sum = 0, r->correct = r->seen = 0;
  }
  comm_bcast(o->state, netc_model.optimizer_bytes[o->kind]);
  return 0;
}

static int start_run(TrainArgs *a, Run *run, Dataset *train, Loader **l) {
  RunState *r = &a->r;
  int k = (int)a->accumulate, procs = comm_size();
  LoaderOptions lo = {.batch = netc_model.batch, .train = 1, .pad = 4,
                      .seed = r->seed, .prefetch = 1,
                      .group = r->global_batch, .parts = k,
                      .offset = comm_rank() * k * netc_model.batch};
  if (netc_state_accumulate(run->s, k, procs) ||
      (a->sync_bn && comm_sync_bn(&netc_model))) {
    fprintf(stderr, "netc: out of memory for --accumulate %d\n", k);
    return -1;
  }
  if (a->resume) {
    /* A job scheduler restarts a job with its command line: --resume in a
     * run directory without a checkpoint yet starts the run. */
    int have = root() && access(run->last, F_OK) == 0;
    comm_bcast(&have, sizeof have);
    if (!have) {
      printf("netc: no checkpoint %s yet: starting a new run\n", run->last);
      a->resume = 0;
    }
  }
  if (a->resume) {
    if (resume_run(run))
      return -1;
    /* A resume may lengthen a run, or change its budget. */
    if (r->budget_seconds > 0 && a->epochs) {
      fprintf(stderr, "netc: %s trains for a time budget: give "
                      "--time-budget to change it, not --epochs\n", run->last);
      return -1;
    }
    if (r->budget_seconds <= 0 && a->budget > 0) {
      fprintf(stderr, "netc: %s trains for %d epochs: a time budget is for "
                      "a new run (or give --epochs)\n", run->last, r->epochs);
      return -1;
    }
    if (a->epochs)
      r->epochs = (int32_t)a->epochs;
    if (a->budget > 0)
      r->budget_seconds = a->budget;
    run->spent_before = r->spent_seconds;
    lo.seed = r->seed;
    printf("netc: resuming %s at epoch %d step %d (global step %lld)\n",
           run->last, r->epoch + 1, r->step, (long long)r->global_step);
    flush_log();
    if (root() && run_dir_trim_metrics(a->out, r->completed))
      return -1;
  } else {
    netc_init_params(run->s, r->seed); /* the same on every process */
    /* Fine-tuning: every process reads the same file. */
    if (a->init && !comm_all(safetensors_import(run->s, a->init) == 0))
      return -1;
    if (a->init)
      printf("netc: starting from the weights of %s\n", a->init);
    if (root() && run_dir_trim_metrics(a->out, 0))
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
  /* The recipe as given, or as the resumed checkpoint recorded it. */
  lo.pad = r->no_augment ? 0 : 4;
  lo.no_flip = r->no_augment;
  run->s->label_smoothing = r->label_smoothing;
  *l = loader_new(train, &lo);
  if (!*l)
    return -1;
  r->steps_per_epoch = loader_steps(*l) / k;
  return 0;
}

/* The run, once its state is ready: announced, then its epochs. */
static int train_run(Run *run, Loader *l, const Dataset *train,
                     const Dataset *val) {
  const TrainArgs *a = run->a;
  char length[96];
  if (a->r.budget_seconds > 0)
    snprintf(length, sizeof length, "for a time budget of %.0f s",
             a->r.budget_seconds);
  else
    snprintf(length, sizeof length, "for %d epochs", a->r.epochs);
  printf("netc: training %s (batch %d, %d steps per epoch, %d train and %d "
         "val images, %d skipped) %s into %s\n",
         netc_model.name, a->r.global_batch, a->r.steps_per_epoch, train->n,
         val->n, train->skipped + val->skipped, length, a->out);
  run->val_steps = (val->n + netc_model.batch - 1) / netc_model.batch;
  printf("netc: augmentation %s; label smoothing %g\n",
         a->r.no_augment ? "none" : "random crop (4 pixels) and flip",
         (double)a->r.label_smoothing);
  printf("netc: %d process%s x %d thread%s; %d images per step = batch %d "
         "per process x %d process%s x %ld micro-batch%s; batchnorm over %s\n",
         comm_size(), comm_size() == 1 ? "" : "es", rt_threads(),
         rt_threads() == 1 ? "" : "s", a->r.global_batch, netc_model.batch,
         comm_size(), comm_size() == 1 ? "" : "es", a->accumulate,
         a->accumulate == 1 ? "" : "es",
         a->sync_bn && comm_size() > 1 ? "the global batch (--sync-bn)"
         : comm_size() > 1 || a->accumulate > 1 ? "each micro-batch"
                                                : "the batch");
  flush_log();
  /* Ctrl-C or a polite kill: finish the step, checkpoint, exit 1. */
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  int64_t from = a->r.global_step;
  int rc = train_epochs(run, l, val);
  /* The last write must have landed before the run says it is done. */
  if (!comm_all(!root() || saver_wait(&run->saver) == 0))
    rc = 1;
  if (root() && rc == 0 && run->saver.write_seconds > 0)
    printf("netc: checkpoints took the steps %.2f s; written in %.2f s in the "
           "background\n", run->ckpt_total, run->saver.write_seconds);
  if (root() && rc == 0 && a->r.budget_seconds > 0)
    printf("netc: time budget %.0f s: the run took %.1f s for %lld steps; "
           "the last step's learning rate was %.3g\n", a->r.budget_seconds,
           run_elapsed(run), (long long)a->r.global_step,
           (double)learning_rate(&a->r, a->r.global_step - 1));
  if (a->check_replicas && rc == 0)
    printf("netc: the parameters were identical on all %d processes after "
           "each of %lld steps\n", comm_size(),
           (long long)(a->r.global_step - from));
  return rc;
}

int cmd_train(int argc, char **argv) {
  double started = now_seconds(); /* a budget counts from here */
  TrainArgs a;
  int rc = parse_train(argc, argv, &a);
  if (rc != OPTIONS_RUN)
    return rc;
  char out[512];
  if (!a.out)
    snprintf(out, sizeof out, "runs/%s", netc_model.name), a.out = out;
  if (a.threads > 0)
    rt_set_threads((int)a.threads);
  /* Rank 0 holds RUN_DIR until it exits (a second trainer there stops
   * here, having changed nothing); the others only read their data. */
  int held = 1;
  if (root() && make_dirs(a.out)) {
    fprintf(stderr, "netc: cannot create %s: %s\n", a.out, strerror(errno));
    held = 0;
  } else if (root()) {
    held = run_dir_lock(a.out) == 0;
  }
  if (!comm_all(held))
    return 1;
  /* Rank 0 opens the data first: it decodes the images into their cache
   * once, and the other processes then map it. */
  Dataset train, val;
  int ok = root() ? open_data(a.data, a.resize, &train, &val) == 0 : 1;
  if (!comm_all(ok))
    return 1;
  if (!root())
    ok = open_data(a.data, a.resize, &train, &val) == 0;
  if (!comm_all(ok)) {
    if (ok)
      dataset_close(&train), dataset_close(&val);
    return 1;
  }
  /* Every process must run the same plan (the same collectives in the
   * same order) on the same images. */
  if (!comm_same_u64(netc_model.plan_hash) ||
      !comm_same_u64((uint64_t)train.n << 32 | (uint64_t)val.n)) {
    if (root())
      fprintf(stderr, "netc: the processes of this run differ in their "
                      "trainer (plan hash %016llx here) or their data (%d "
                      "train images here): run one trainer binary on the "
                      "same data everywhere\n",
              (unsigned long long)netc_model.plan_hash, train.n);
    comm_abort(1);
  }
  if (root())
    run_dir_remove_unfinished(a.out);
  NetcOptimizer o = {.kind = a.r.optimizer};
  ClassList c = classes_of(&train);
  Run run = {.a = &a, .s = trainer_state_new(NULL), .o = &o, .c = &c,
             .started = started,
             .last = xprintf("%s/last.ckpt", a.out),
             .best = xprintf("%s/best.ckpt", a.out)};
  Loader *l = NULL;
  rc = run.s && start_run(&a, &run, &train, &l) == 0
           ? train_run(&run, l, &train, &val)
           : 1;
  saver_free(&run.saver);
  loader_free(l);
  dataset_close(&train);
  dataset_close(&val);
  netc_state_free(run.s);
  optim_free(&o);
  classes_free(&c);
  free(run.last);
  free(run.best);
  return rc;
}
