/* run_dir.h: the run directory of `train` (RUN_DIR, docs/training.md):
 * its lock, metrics.csv, the plots, and what an interrupted run left.
 * The checkpoints in it are formats/checkpoint.h's. */
#ifndef NETC_RUN_DIR_H
#define NETC_RUN_DIR_H

/* One row of metrics.csv: an epoch, trained and evaluated. */
typedef struct {
  int epoch; /* 1-based */
  double train_loss, train_top1, val_loss, val_top1, val_top5;
  double lr, images_per_s, seconds;
} MetricsRow;

/* Takes RUN_DIR/train.lock (flock, exclusive) for the rest of the
 * process's life and writes this process's PID into it. A lock dies with
 * its process, so a trainer killed with SIGKILL never blocks a later
 * --resume. When another process holds it: -1 after a message naming the
 * directory and that process, with nothing in the directory changed. */
int run_dir_lock(const char *dir);

/* Keeps the rows of epochs 1..completed of DIR/metrics.csv (a row written
 * after the last checkpoint belongs to an epoch a resumed run will redo),
 * and makes the file with its header if there is none. 0, or -1 after a
 * message; the file is replaced atomically, and only when a row must go. */
int run_dir_trim_metrics(const char *dir, int completed);

/* Appends row to DIR/metrics.csv: 0, or -1 after a message naming it. */
int run_dir_append_metrics(const char *dir, const MetricsRow *row);

/* DIR/loss.svg and DIR/accuracy.svg from metrics.csv, as the original
 * project plotted them (gnuplot; a note once if it is missing). */
void run_dir_plot(const char *dir, const char *model);

/* A run killed while writing a checkpoint leaves NAME.ckpt.tmpPID behind
 * (the checkpoint itself is intact): removed when the directory is used
 * again, by the process that holds its lock. */
void run_dir_remove_unfinished(const char *dir);

#endif
