/* tune.c: tuning, the measured alternative to algo.c's cost model.
 *
 * A tuning file lists, per convolution shape, the fastest algorithm of
 * each pass as build/netc-tune (which links the runtime) measured it:
 *     conv N H W C OC K stride pad FWD DX DW   # times, for the reader
 * `--tuning FILE` builds with one; the file alone decides, so the same
 * file gives the same C. A shape it does not list falls back to the
 * cost model.
 *
 * `netc build` keeps such a file per machine, as FFTW keeps its wisdom:
 * $XDG_CACHE_HOME/netc/conv-HASH.tune, HASH of the machine key that
 * netc-tune --machine prints (CPU, caches, ISA, threads, OpenBLAS's
 * kernel, netc's kernel sources), which its '# machine:' line repeats.
 * A build looks its shapes up there, measures the ones it lacks within a
 * budget (60 s; the heaviest shapes first) and adds them; then it writes
 * DIR/NET.tune, the choices it built with, which --tuning replays. The
 * cache is only ever a speed-up: unreadable, corrupt or another
 * machine's, it gets a note and is measured again. */
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

static const TuneEntry *find_entry(const Tuning *t, const ConvShape *s) {
  int64_t k[8];
  shape_key(s, k);
  for (int i = 0; t && i < t->n; i++)
    if (!memcmp(t->entries[i].shape, k, sizeof k))
      return &t->entries[i];
  return NULL;
}

const int *tuning_find(const Tuning *t, const ConvShape *s) {
  const TuneEntry *e = find_entry(t, s);
  return e ? e->algo : NULL;
}

/* Reads a tuning file into t: NULL, or what is wrong as "path:line:
 * what". *machine gets its '# machine:' line's key, if it has one. */
static const char *parse_tuning(FILE *f, const char *path, Pool *pool,
                                Tuning *t, const char **machine) {
  memset(t, 0, sizeof *t);
  int cap = 0;
  char buf[1024];
  for (int line = 1; fgets(buf, sizeof buf, f); line++) {
    if (!strchr(buf, '\n') && !feof(f))
      return pool_printf(pool, "%s:%d: line too long", path, line);
    buf[strcspn(buf, "\n")] = 0;
    if (machine && !strncmp(buf, "# machine: ", 11))
      *machine = pool_strdup(pool, buf + 11);
    char *hash = strchr(buf, '#');
    const char *note = NULL;
    if (hash) {
      *hash = 0;
      note = pool_strdup(pool, hash + 1 + strspn(hash + 1, " "));
    }
    char word[16], algo[CONV_PASSES][16], extra[2];
    long long v[8];
    int n = sscanf(buf, "%15s %lld %lld %lld %lld %lld %lld %lld %lld %15s "
                        "%15s %15s %1s", word, &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7], algo[0], algo[1], algo[2],
                   extra);
    if (n <= 0)
      continue; /* blank or comment */
    if (n != 12 || strcmp(word, "conv"))
      return pool_printf(pool, "%s:%d: expected 'conv N H W C OC K stride "
                               "pad FWD DX DW' (netc build writes these)",
                         path, line);
    TuneEntry e = {.note = note};
    for (int j = 0; j < 8; j++) {
      if (v[j] < (j == 7 ? 0 : 1) || v[j] > (1 << 30))
        return pool_printf(pool, "%s:%d: %lld is not a size of a "
                                 "convolution", path, line, v[j]);
      e.shape[j] = v[j];
    }
    for (int p = 0; p < CONV_PASSES; p++) {
      int a = conv_policy_lookup(algo[p]);
      if (a < 0 || strchr(algo[p], ','))
        return pool_printf(pool, "%s:%d: unknown algorithm '%s' (gemm, "
                                 "direct, winograd or winograd4)",
                           path, line, algo[p]);
      e.algo[p] = a & 0xff;
    }
    t->entries = pool_grow(pool, t->entries, sizeof e, t->n + 1, &cap);
    t->entries[t->n++] = e;
  }
  return ferror(f) ? pool_printf(pool, "%s: read error", path) : NULL;
}

bool tuning_load(const char *path, Pool *pool, Tuning *t) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "netc: cannot read tuning file '%s': %s\n", path,
            strerror(errno));
    return false;
  }
  const char *why = parse_tuning(f, path, pool, t, NULL);
  fclose(f);
  if (why)
    fprintf(stderr, "netc: %s\n", why);
  return !why;
}

/* A distinct conv shape of a network and its multiply-adds per forward
 * pass over all the layers that have it. */
typedef struct {
  ConvShape s;
  double weight;
} NetShape;

static int heavier_first(const void *a, const void *b) {
  const NetShape *x = a, *y = b;
  if (x->weight != y->weight)
    return x->weight < y->weight ? 1 : -1;
  int64_t p[8], q[8];
  shape_key(&x->s, p);
  shape_key(&y->s, q);
  return memcmp(p, q, sizeof p);
}

/* The index in shapes[0 .. n) of the shape keyed k, or n. */
static int shape_index(const NetShape *shapes, int n, const int64_t k[8]) {
  int j = 0;
  int64_t q[8];
  while (j < n && (shape_key(&shapes[j].s, q), memcmp(k, q, sizeof q)))
    j++;
  return j;
}

/* Each distinct conv shape of g once, the heaviest first: what a budget
 * cut short leaves to the cost model is what matters least. */
static int net_shapes(const Graph *g, NetShape *out) {
  int n = 0;
  for (int i = 0; i < g->nforward; i++) {
    if (g->nodes[i].op != OP_CONV)
      continue;
    ConvShape s = node_conv_shape(g, i);
    if (s.groups > 1) /* GEMM, always: nothing to choose */
      continue;
    int64_t k[8];
    shape_key(&s, k);
    int j = shape_index(out, n, k);
    if (j == n)
      out[n++] = (NetShape){s, 0};
    out[j].weight += (double)s.N * s.OH * s.OW * s.OC * s.C * s.K * s.K;
  }
  qsort(out, (size_t)n, sizeof *out, heavier_first);
  return n;
}

static const char *isa_word(int isa) {
  return isa == RT_ISA_AVX512 ? "avx512" : "avx2";
}

/* netc-tune --machine's key for this build's ISA and threads, or NULL. */
static const char *machine_key(Pool *pool, const TuneRequest *r) {
  const char *cmd = pool_printf(pool, "'%s' --machine --threads %d --isa %s "
                                      "2>/dev/null",
                                r->tuner, r->threads, isa_word(r->isa));
  FILE *p = popen(cmd, "r");
  char buf[1024];
  const char *key = NULL;
  if (p && fgets(buf, sizeof buf, p) && strchr(buf, '\n')) {
    buf[strcspn(buf, "\n")] = 0;
    key = pool_strdup(pool, buf);
  }
  while (p && fgets(buf, sizeof buf, p)) /* let it end, whatever it says */
    ;
  int status = p ? pclose(p) : -1;
  return status == 0 && key && key[0] ? key : NULL;
}

/* $XDG_CACHE_HOME/netc (an absolute path, as the XDG spec requires),
 * else $HOME/.cache/netc; NULL if neither is set. */
static const char *cache_dir(Pool *pool) {
  const char *x = getenv("XDG_CACHE_HOME");
  if (x && x[0] == '/')
    return pool_printf(pool, "%s/netc", x);
  const char *h = getenv("HOME");
  return h && h[0] ? pool_printf(pool, "%s/.cache/netc", h) : NULL;
}

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

/* The cache file's entries, or none with a note if it cannot be used. */
static void load_cache(const char *path, const char *key, Pool *pool,
                       Tuning *t) {
  memset(t, 0, sizeof *t);
  FILE *f = fopen(path, "r");
  if (!f) {
    if (errno != ENOENT)
      fprintf(stderr, "netc: note: cannot read the tuning cache '%s': %s; "
                      "measuring again\n", path, strerror(errno));
    return;
  }
  const char *machine = NULL;
  const char *why = parse_tuning(f, path, pool, t, &machine);
  fclose(f);
  if (!why && (!machine || strcmp(machine, key)))
    why = pool_printf(pool, "%s is not this machine's (its '# machine:' "
                            "line says %s; this one is %s)",
                      path, machine ? machine : "nothing", key);
  if (why) {
    fprintf(stderr, "netc: note: %s; the tuning cache is measured again "
                    "and replaced\n", why);
    memset(t, 0, sizeof *t);
  }
}

static void add_entry(Tuning *t, Pool *pool, int *cap, TuneEntry e) {
  t->entries = pool_grow(pool, t->entries, sizeof e, t->n + 1, cap);
  t->entries[t->n++] = e;
}

/* Times shapes[0..n) with netc-tune, within r->budget, and adds an entry
 * for each shape measured to t. The number measured, or -1 with a
 * message if netc-tune could not run or failed. */
static int measure(const Graph *g, const TuneRequest *r, const NetShape *shapes,
                   int n, Tuning *t, int *cap) {
  Pool *pool = g->pool;
  char tmp[] = "/tmp/netc-tune-XXXXXX";
  int fd = mkstemp(tmp);
  FILE *in = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!in) {
    fprintf(stderr, "netc: cannot make a temporary file: %s\n",
            strerror(errno));
    return -1;
  }
  for (int i = 0; i < n; i++) {
    const ConvShape *s = &shapes[i].s;
    fprintf(in, "s%d %d %d %d %d %d %d %d %d\n", i, s->N, s->H, s->W, s->C,
            s->OC, s->K, s->stride, s->pad);
  }
  fclose(in);
  const char *budget = r->budget > 0 ? pool_printf(pool, " --budget %g",
                                                   r->budget) : "";
  const char *cmd = pool_printf(pool, "'%s' --threads %d --isa %s%s < '%s'",
                                r->tuner, r->threads, isa_word(r->isa),
                                budget, tmp);
  bool tty = isatty(2);
  fprintf(stderr, "netc: timing %d convolution shapes of %s on this machine "
                  "(%s, %s threads%s; --no-tune skips)\n", n, g->name,
          isa_word(r->isa),
          r->threads ? pool_printf(pool, "%d", r->threads) : "all",
          r->budget > 0 ? pool_printf(pool, ", at most %g s", r->budget) : "");
  double start = now_seconds();
  FILE *run = popen(cmd, "r");
  /* Per shape and pass: the winner and its times, as netc-tune prints. */
  char (*win)[CONV_PASSES][16] = pool_alloc(pool, sizeof *win * (size_t)(n + 1));
  char (*ms)[CONV_PASSES][64] = pool_alloc(pool, sizeof *ms * (size_t)(n + 1));
  int *got = pool_alloc(pool, sizeof *got * (size_t)(n + 1));
  memset(got, 0, sizeof *got * (size_t)(n + 1));
  char buf[512];
  int done = 0;
  while (run && fgets(buf, sizeof buf, run)) {
    int id, p;
    char pass[8], best[16];
    double tg, td, tw, t4;
    if (sscanf(buf, "s%d %7s %lf %lf %lf %lf %15s", &id, pass, &tg, &td, &tw,
               &t4, best) != 7 ||
        id < 0 || id >= n ||
        (p = !strcmp(pass, "fwd") ? 0 : !strcmp(pass, "dx") ? 1
             : !strcmp(pass, "dw") ? 2 : -1) < 0 ||
        conv_policy_lookup(best) < 0)
      continue; /* a comment: the header, '# skipped' */
    snprintf(win[id][p], sizeof win[id][p], "%s", best);
    if (tw < 0)
      snprintf(ms[id][p], sizeof ms[id][p], "%s %.3f/%.3f", pass, tg, td);
    else
      snprintf(ms[id][p], sizeof ms[id][p], "%s %.3f/%.3f/%.3f/%.3f", pass,
               tg, td, tw, t4);
    if ((got[id] |= 1 << p) != 7)
      continue;
    const ConvShape *s = &shapes[id].s;
    TuneEntry e = {.note = pool_printf(pool, "%s, %s, %s", ms[id][0],
                                       ms[id][1], ms[id][2])};
    shape_key(s, e.shape);
    for (int q = 0; q < CONV_PASSES; q++)
      e.algo[q] = conv_policy_lookup(win[id][q]) & 0xff;
    add_entry(t, pool, cap, e);
    done++;
    if (tty)
      fprintf(stderr, "\rnetc: timed %d of %d shapes, %.0f s", done, n,
              now_seconds() - start);
  }
  int status = run ? pclose(run) : -1;
  unlink(tmp);
  if (tty && done)
    fputc('\n', stderr);
  if (status != 0) {
    fprintf(stderr, "netc: timing failed (%s exited with status %d after "
                    "%d of %d shapes)\n", r->tuner, status, done, n);
    return -1;
  }
  fprintf(stderr, "netc: timed %d of %d shapes in %.1f s%s\n", done, n,
          now_seconds() - start,
          done < n ? "; the cost model chooses for the rest" : "");
  return done;
}

static void write_header(FILE *f, const char *what, const char *key) {
  fprintf(f, "# %s\n# machine: %s\n# conv N H W C OC K stride pad FWD DX "
             "DW  # ms gemm/direct[/winograd/winograd4] per pass\n",
          what, key);
}

/* The cache, whole or not at all; a failure is a note. */
static void save_cache(const char *dir, const char *path, const Tuning *t) {
  OutFile file;
  if (make_dirs(dir) || outfile_open(&file, path)) {
    fprintf(stderr, "netc: note: cannot write the tuning cache '%s': %s\n",
            path, strerror(errno));
    return;
  }
  write_header(file.f, "netc's tuning cache: the fastest algorithm of each "
                       "convolution pass as measured on one machine (netc "
                       "build; docs/kernels.md)", t->machine);
  for (int i = 0; i < t->n; i++) {
    const TuneEntry *e = &t->entries[i];
    fprintf(file.f, "conv %lld %lld %lld %lld %lld %lld %lld %lld %s %s %s",
            (long long)e->shape[0], (long long)e->shape[1],
            (long long)e->shape[2], (long long)e->shape[3],
            (long long)e->shape[4], (long long)e->shape[5],
            (long long)e->shape[6], (long long)e->shape[7],
            conv_algo_name(e->algo[0]), conv_algo_name(e->algo[1]),
            conv_algo_name(e->algo[2]));
    fprintf(file.f, e->note ? "  # %s\n" : "\n", e->note);
  }
  if (outfile_commit(&file))
    fprintf(stderr, "netc: note: cannot write the tuning cache '%s': %s\n",
            path, strerror(errno));
}

int tuning_for_machine(const Graph *g, const TuneRequest *r, Tuning *t) {
  Pool *pool = g->pool;
  memset(t, 0, sizeof *t);
  const char *key = machine_key(pool, r);
  if (!key) {
    fprintf(stderr, "netc: %scannot run '%s' to time the convolutions (make "
                    "all builds it)%s\n", r->fresh ? "" : "note: ", r->tuner,
            r->fresh ? "" : "; the cost model chooses them");
    return r->fresh ? 1 : 0;
  }
  t->machine = key;
  const char *dir = cache_dir(pool);
  const char *path = dir ? pool_printf(pool, "%s/conv-%016llx.tune", dir,
                                       (unsigned long long)fnv1a(key))
                         : NULL;
  Tuning cache = {0};
  if (path)
    load_cache(path, key, pool, &cache);
  NetShape *shapes = pool_alloc(pool, sizeof *shapes * (size_t)(g->nforward + 1));
  int n = net_shapes(g, shapes), ntodo = 0, cap = 0;
  NetShape *todo = pool_alloc(pool, sizeof *todo * (size_t)(n + 1));
  for (int i = 0; i < n; i++)
    if (r->fresh || !tuning_find(&cache, &shapes[i].s))
      todo[ntodo++] = shapes[i];
  for (int i = 0; i < cache.n; i++) /* the entries not measured anew */
    if (!r->fresh || shape_index(todo, ntodo, cache.entries[i].shape) == ntodo)
      add_entry(t, pool, &cap, cache.entries[i]);
  if (ntodo == 0) {
    fprintf(stderr, "netc: the tuning cache %s has all %d convolution shapes "
                    "of %s\n", path, n, g->name);
    return 0;
  }
  if (r->budget == 0) {
    fprintf(stderr, "netc: the tuning cache lacks %d of %d convolution shapes "
                    "of %s; the cost model chooses for them (--tune-seconds "
                    "0)\n", ntodo, n, g->name);
    return 0;
  }
  int done = measure(g, r, todo, ntodo, t, &cap);
  if (done < 0 && r->fresh)
    return 1;
  if (done > 0 && path)
    save_cache(dir, path, t);
  else if (done > 0)
    fprintf(stderr, "netc: note: neither XDG_CACHE_HOME nor HOME is set: "
                    "these times are not kept for the next build\n");
  return 0;
}

int tuning_write_choices(const Graph *g, const Tuning *measured,
                         const char *path) {
  Pool *pool = g->pool;
  NetShape *shapes = pool_alloc(pool, sizeof *shapes * (size_t)(g->nforward + 1));
  int n = net_shapes(g, shapes);
  OutFile file;
  if (outfile_open(&file, path)) {
    fprintf(stderr, "netc: cannot write '%s': %s\n", path, strerror(errno));
    return 1;
  }
  write_header(file.f,
               pool_printf(pool, "netc tuning file for %s at batch %lld: the "
                                 "algorithm of each convolution pass this "
                                 "build chose (netc build --tuning FILE "
                                 "builds the same C)",
                           g->name, (long long)g->batch),
               measured->machine ? measured->machine : "?");
  for (int i = 0; i < n; i++) {
    const ConvShape *s = &shapes[i].s;
    const TuneEntry *e = find_entry(measured, s);
    const char *note = !e ? "the cost model's (not measured)"
                          : e->note ? e->note : "";
    fprintf(file.f, "conv %d %d %d %d %d %d %d %d %s %s %s  # %s\n", s->N,
            s->H, s->W, s->C, s->OC, s->K, s->stride, s->pad,
            conv_algo_name(s->algo), conv_algo_name(s->algo_dx),
            conv_algo_name(s->algo_dw), note);
  }
  if (outfile_commit(&file)) {
    fprintf(stderr, "netc: cannot write '%s': %s\n", path, strerror(errno));
    return 1;
  }
  fprintf(stderr, "netc: wrote %s\n", path);
  return 0;
}
