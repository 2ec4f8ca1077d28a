/* run_dir.c: the run directory of `train` (run_dir.h). Only the process
 * that holds the directory's lock writes here: rank 0 of a run. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "trainer/run_dir.h"
#include "util/util.h"

/* ---- the lock ------------------------------------------------------------- */

/* The PID a holder wrote into the lock file, or 0. A holder writes it
 * just after it takes the lock, so an empty file is read again for a
 * moment before giving up on the PID. */
static long holder_pid(int fd) {
  for (int tries = 0; tries < 20; tries++) {
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
    if (pid > 0)
      return pid;
    usleep(50 * 1000);
  }
  return 0;
}

int run_dir_lock(const char *dir) {
  char *path = xprintf("%s/train.lock", dir);
  /* Not truncated on open: a second trainer changes nothing, not even the
   * PID of the first. CLOEXEC: gnuplot, which the trainer starts, must
   * not keep the lock after the trainer dies. */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "netc: cannot open %s: %s\n", path, strerror(errno));
    free(path);
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      long pid = holder_pid(fd);
      char who[64] = "another process";
      if (pid > 0)
        snprintf(who, sizeof who, "process %ld", pid);
      fprintf(stderr, "netc: %s is in use: %s is training there (it holds "
                      "%s); wait for it, stop it, or train into another "
                      "--out\n", dir, who, path);
      close(fd);
      free(path);
      return -1;
    }
    /* A file system without locks (some network mounts): train anyway. */
    fprintf(stderr, "netc: warning: cannot lock %s (%s): nothing stops a "
                    "second trainer from using %s\n", path,
            strerror(errno), dir);
    free(path);
    return 0;
  }
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
    fprintf(stderr, "netc: cannot write %s: %s\n", path, strerror(errno));
    close(fd);
    free(path);
    return -1;
  }
  free(path);
  return 0; /* fd stays open: the lock lives as long as the process */
}

/* ---- metrics and plots ---------------------------------------------------- */

static const char metrics_header[] =
    "epoch,train_loss,train_top1,val_loss,val_top1,val_top5,lr,images_per_s,"
    "seconds\n";

int run_dir_trim_metrics(const char *dir, int completed) {
  char *path = xprintf("%s/metrics.csv", dir);
  char *tmp = xprintf("%s/metrics.csv.tmp", dir);
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

int run_dir_append_metrics(const char *dir, const MetricsRow *m) {
  char *path = xprintf("%s/metrics.csv", dir);
  FILE *f = fopen(path, "a");
  int bad = !f;
  if (f) {
    bad = fprintf(f, "%d,%.6f,%.4f,%.6f,%.4f,%.4f,%.6g,%.2f,%.1f\n", m->epoch,
                  m->train_loss, m->train_top1, m->val_loss, m->val_top1,
                  m->val_top5, m->lr, m->images_per_s, m->seconds) < 0;
    bad |= fclose(f) != 0;
  }
  if (bad)
    fprintf(stderr, "netc: cannot append to %s: %s\n", path, strerror(errno));
  free(path);
  return bad ? -1 : 0;
}

void run_dir_plot(const char *dir, const char *model) {
  if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
    static int told;
    if (!told++)
      fprintf(stderr, "netc: gnuplot not found: no plots (apt-get install "
                      "gnuplot-nox)\n");
    return;
  }
  char *csv = xprintf("%s/metrics.csv", dir);
  char *loss = xprintf("%s/loss.svg", dir), *acc = xprintf("%s/accuracy.svg", dir);
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
            loss, model, csv, acc, model, csv);
    pclose(g);
  }
  free(csv), free(loss), free(acc);
}

/* ---- what an interrupted run left ------------------------------------------ */

void run_dir_remove_unfinished(const char *dir) {
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
