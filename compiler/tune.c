/* tune.c: tuning files, the measured alternative to algo.c's cost model.
 *
 * `netc build --tune` times every pass of every convolution shape of the
 * network with each algorithm on this machine (build/netc-tune, which
 * links the runtime) and writes what won to a tuning file; `--tuning
 * FILE` builds with one. The file alone decides: the same file gives the
 * same C, whatever the machine's load when it is used. One line per
 * shape:
 *     conv N H W C OC K stride pad FWD DX DW   # times, for the reader
 * A shape the file does not list falls back to the cost model. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netc.h"
#include "util/util.h" /* runtime/util/util.h: OutFile */

/* The 8 numbers a tuning line is keyed by. */
static void shape_key(const ConvShape *s, int64_t k[8]) {
  int64_t v[8] = {s->N, s->H, s->W, s->C, s->OC, s->K, s->stride, s->pad};
  memcpy(k, v, sizeof v);
}

const int *tuning_find(const Tuning *t, const ConvShape *s) {
  int64_t k[8];
  shape_key(s, k);
  for (int i = 0; t && i < t->n; i++)
    if (!memcmp(t->entries[i].shape, k, sizeof k))
      return t->entries[i].algo;
  return NULL;
}

static bool bad_line(const char *path, int line, const char *what) {
  fprintf(stderr, "netc: %s:%d: %s\n", path, line, what);
  return false;
}

bool tuning_load(const char *path, Pool *pool, Tuning *t) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "netc: cannot read tuning file '%s': %s\n", path,
            strerror(errno));
    return false;
  }
  memset(t, 0, sizeof *t);
  int cap = 0;
  char buf[1024];
  bool ok = true;
  for (int line = 1; ok && fgets(buf, sizeof buf, f); line++) {
    char *hash = strchr(buf, '#');
    if (hash)
      *hash = 0;
    char word[16], algo[CONV_PASSES][16];
    long long v[8];
    int n = sscanf(buf, "%15s %lld %lld %lld %lld %lld %lld %lld %lld %15s "
                        "%15s %15s", word, &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7], algo[0], algo[1], algo[2]);
    if (n <= 0)
      continue; /* blank or comment */
    if (n != 12 || strcmp(word, "conv")) {
      ok = bad_line(path, line, "expected 'conv N H W C OC K stride pad "
                                "FWD DX DW' (netc build --tune writes "
                                "these)");
      break;
    }
    TuneEntry e;
    for (int j = 0; j < 8; j++)
      e.shape[j] = v[j];
    for (int p = 0; p < CONV_PASSES; p++) {
      int a = conv_policy_lookup(algo[p]);
      if (a < 0 || strchr(algo[p], ',')) {
        ok = bad_line(path, line, pool_printf(pool, "unknown algorithm '%s' "
                                              "(gemm, direct, winograd or "
                                              "winograd4)",
                                              algo[p]));
        break;
      }
      e.algo[p] = a & 0xff;
    }
    if (ok) {
      t->entries = pool_grow(pool, t->entries, sizeof e, t->n + 1, &cap);
      t->entries[t->n++] = e;
    }
  }
  if (ok && ferror(f))
    ok = bad_line(path, 0, "read error");
  fclose(f);
  return ok;
}

/* The first "model name" of /proc/cpuinfo, for the file's header. */
static const char *cpu_name(Pool *pool) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  char buf[512];
  const char *name = "unknown CPU";
  while (f && fgets(buf, sizeof buf, f))
    if (!strncmp(buf, "model name", 10) && strchr(buf, ':')) {
      char *v = strchr(buf, ':') + 1;
      v += strspn(v, " \t");
      v[strcspn(v, "\n")] = 0;
      name = pool_strdup(pool, v);
      break;
    }
  if (f)
    fclose(f);
  return name;
}

/* Each distinct conv shape of g once, as netc-tune reads them. */
static int write_shapes(const Graph *g, FILE *f, ConvShape *shapes) {
  int n = 0;
  for (int i = 0; i < g->nforward; i++) {
    if (g->nodes[i].op != OP_CONV)
      continue;
    ConvShape s = node_conv_shape(g, i);
    int64_t k[8], q[8];
    shape_key(&s, k);
    int j = 0;
    while (j < n && (shape_key(&shapes[j], q), memcmp(k, q, sizeof k)))
      j++;
    if (j < n)
      continue;
    shapes[n] = s;
    fprintf(f, "s%d %d %d %d %d %d %d %d %d\n", n, s.N, s.H, s.W, s.C, s.OC,
            s.K, s.stride, s.pad);
    n++;
  }
  return n;
}

int tuning_measure(const Graph *g, const char *tuner, int threads, int isa,
                   const char *path) {
  Pool *pool = g->pool;
  ConvShape *shapes = pool_alloc(pool, sizeof *shapes * (size_t)(g->nforward + 1));
  char tmp[] = "/tmp/netc-tune-XXXXXX";
  int fd = mkstemp(tmp);
  FILE *in = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!in) {
    fprintf(stderr, "netc: cannot make a temporary file: %s\n",
            strerror(errno));
    return 1;
  }
  int n = write_shapes(g, in, shapes);
  fclose(in);
  const char *cmd = pool_printf(pool, "'%s' --threads %d --isa %s < '%s'",
                                tuner, threads,
                                isa == RT_ISA_AVX512 ? "avx512" : "avx2", tmp);
  fprintf(stderr, "netc: timing %d convolution shapes of %s (%s)\n", n,
          g->name, cmd);
  FILE *run = popen(cmd, "r");
  /* Per shape and pass: the winner and both times, as netc-tune prints. */
  char (*win)[CONV_PASSES][16] = pool_alloc(pool, sizeof *win * (size_t)(n + 1));
  char (*ms)[CONV_PASSES][64] = pool_alloc(pool, sizeof *ms * (size_t)(n + 1));
  const char *header = "";
  char buf[512];
  int got = 0;
  while (run && fgets(buf, sizeof buf, run)) {
    int id;
    char pass[8], best[16];
    double tg, td, tw, t4;
    if (buf[0] == '#') {
      header = pool_printf(pool, "%s%s", header, buf);
      continue;
    }
    if (sscanf(buf, "s%d %7s %lf %lf %lf %lf %15s", &id, pass, &tg, &td, &tw,
               &t4, best) != 7 ||
        id < 0 || id >= n)
      continue;
    int p = !strcmp(pass, "fwd") ? 0 : !strcmp(pass, "dx") ? 1 : 2;
    snprintf(win[id][p], sizeof win[id][p], "%s", best);
    if (tw < 0)
      snprintf(ms[id][p], sizeof ms[id][p], "%s %.3f/%.3f", pass, tg, td);
    else
      snprintf(ms[id][p], sizeof ms[id][p], "%s %.3f/%.3f/%.3f/%.3f", pass,
               tg, td, tw, t4);
    got++;
  }
  int status = run ? pclose(run) : -1;
  unlink(tmp);
  if (status != 0 || got != n * CONV_PASSES) {
    fprintf(stderr, "netc: timing failed (%s gave %d of %d results)\n",
            tuner, got, n * CONV_PASSES);
    return 1;
  }
  OutFile file;
  if (outfile_open(&file, path)) {
    fprintf(stderr, "netc: cannot write '%s': %s\n", path, strerror(errno));
    return 1;
  }
  FILE *out = file.f;
  fprintf(out, "# netc tuning file for %s at batch %lld: the fastest "
               "algorithm of each convolution pass\n# measured on %s\n%s"
               "# conv N H W C OC K stride pad FWD DX DW  # ms "
               "gemm/direct[/winograd/winograd4] per pass\n",
          g->name, (long long)g->batch, cpu_name(pool), header);
  for (int i = 0; i < n; i++) {
    const ConvShape *s = &shapes[i];
    fprintf(out, "conv %d %d %d %d %d %d %d %d %s %s %s  # %s, %s, %s\n",
            s->N, s->H, s->W, s->C, s->OC, s->K, s->stride, s->pad,
            win[i][0], win[i][1], win[i][2], ms[i][0], ms[i][1], ms[i][2]);
  }
  if (outfile_commit(&file)) {
    fprintf(stderr, "netc: cannot write '%s': %s\n", path, strerror(errno));
    return 1;
  }
  fprintf(stderr, "netc: wrote %s\n", path);
  return 0;
}
