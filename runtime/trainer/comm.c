/* comm.c: data-parallel training over MPI (comm.h), and the gradient
 * bucket hooks that the generated backward pass of a `netc build --mpi`
 * model calls (netc_model.h).
 *
 * A bucket's life in one step (compiler/comm.c places the calls):
 *   netc_bucket_start  its last gradient is final. Micro-batches before
 *                      the last add the bucket into the accumulation
 *                      region and stop there; the last adds that region
 *                      back, then starts a non-blocking in-place sum over
 *                      the processes (MPI_Iallreduce).
 *   netc_comm_progress between the backward ops: MPI_Test on what is in
 *                      flight, so that the sum advances while the next
 *                      bucket is computed.
 *   netc_bucket_wait   before the bucket's updates: MPI_Wait.
 * NETC_MPI_BLOCKING=1 makes the start a blocking MPI_Allreduce (the
 * correct-first version, and the A/B baseline of make bench-mpi).
 *
 * Without NETC_MPI this file is the one-process version: the same bucket
 * hooks with accumulation and nothing to reduce. */
#include "trainer/comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/netc_rt.h"
#include "util/util.h"

#ifdef NETC_MPI
#include <mpi.h>
#endif

enum { MAX_BUCKETS = 4096 };

static int rank, size = 1;
static int blocking;
#ifdef NETC_MPI
static int started;
static MPI_Request requests[MAX_BUCKETS];
static char inflight[MAX_BUCKETS]; /* requests[b] is a started sum */
#endif

int comm_is_mpi(void) {
#ifdef NETC_MPI
  return 1;
#else
  return 0;
#endif
}

#ifndef NETC_MPI
/* What an MPI launcher (mpirun, mpiexec, srun) tells the processes it
 * starts: Open MPI, PMIx, MPICH's and Slurm's PMI, MVAPICH. */
static const char *const size_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                                        "MV2_COMM_WORLD_SIZE", NULL};
static const char *const rank_vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK",
                                        "PMI_RANK", "MV2_COMM_WORLD_RANK",
                                        NULL};

static long env_long(const char *name) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : -1;
}

/* A launcher started several copies of a trainer built without MPI: each
 * would train alone, all into the same run directory. The variable that
 * says so into `why`, and 1; else 0. */
static int launched_several(char *why, size_t n, long *rank_of) {
  *rank_of = 0;
  for (int i = 0; rank_vars[i]; i++)
    if (env_long(rank_vars[i]) > 0 && !*rank_of)
      *rank_of = env_long(rank_vars[i]);
  for (int i = 0; size_vars[i]; i++)
    if (env_long(size_vars[i]) > 1) {
      snprintf(why, n, "%s=%ld", size_vars[i], env_long(size_vars[i]));
      return 1;
    }
  for (int i = 0; rank_vars[i]; i++)
    if (env_long(rank_vars[i]) > 0) {
      snprintf(why, n, "%s=%ld", rank_vars[i], env_long(rank_vars[i]));
      return 1;
    }
  return 0;
}
#endif

int comm_init(int *argc, char ***argv) {
#ifndef NETC_MPI
  char why[96];
  long me;
  if (launched_several(why, sizeof why, &me)) {
    if (me == 0) /* one message for the job, from its first process */
      fprintf(stderr, "netc: this trainer was built without --mpi, but an "
                      "MPI launcher started several copies of it (%s): each "
                      "would train alone into the same directory; rebuild "
                      "it with 'netc build --mpi' for data-parallel "
                      "training, or run it without mpirun\n", why);
    return -1;
  }
#endif
  const char *b = getenv("NETC_MPI_BLOCKING");
  blocking = b && *b && strcmp(b, "0");
#ifdef NETC_MPI
  int provided = 0;
  /* FUNNELED: only the main thread calls MPI; OpenMP and the loader's
   * thread never do. */
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) !=
      MPI_SUCCESS) {
    fprintf(stderr, "netc: MPI_Init failed\n");
    return -1;
  }
  started = 1;
  /* A failed collective ends the job with a message (the default), never
   * a hang; a dead peer is mpirun's to notice, and it kills the rest. */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
#else
  (void)argc, (void)argv;
#endif
  return 0;
}

void comm_finalize(void) {
#ifdef NETC_MPI
  if (started)
    MPI_Finalize();
  started = 0;
#endif
}

int comm_rank(void) { return rank; }
int comm_size(void) { return size; }

_Noreturn void comm_abort(int status) {
  fflush(stdout);
  fflush(stderr);
#ifdef NETC_MPI
  if (started && size > 1)
    MPI_Abort(MPI_COMM_WORLD, status);
#endif
  exit(status);
}

void comm_sum_i64(int64_t *x, int n) {
#ifdef NETC_MPI
  if (size > 1)
    MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
#else
  (void)x, (void)n;
#endif
}

void comm_sum_f64(double *x, int n) {
#ifdef NETC_MPI
  if (size <= 1)
    return;
  /* Gathered, then summed in rank order: MPI_Allreduce does not promise
   * every rank the same bits, and batchnorm's statistics must agree. */
  double *all = xmalloc(sizeof(double) * (size_t)n * (size_t)size);
  MPI_Allgather(x, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD);
  for (int i = 0; i < n; i++) {
    double t = 0;
    for (int r = 0; r < size; r++)
      t += all[(size_t)r * (size_t)n + (size_t)i];
    x[i] = t;
  }
  free(all);
#else
  (void)x, (void)n;
#endif
}

void comm_bcast(void *x, int64_t bytes) {
#ifdef NETC_MPI
  for (int64_t at = 0; size > 1 && at < bytes; at += 1 << 30) {
    int64_t n = bytes - at < (1 << 30) ? bytes - at : 1 << 30;
    MPI_Bcast((char *)x + at, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
  }
#else
  (void)x, (void)bytes;
#endif
}

int comm_same_u64(uint64_t v) {
#ifdef NETC_MPI
  if (size <= 1)
    return 1;
  uint64_t mm[2] = {v, ~v};
  MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return mm[0] == v && mm[1] == ~v; /* max == min == v */
#else
  (void)v;
  return 1;
#endif
}

int comm_all(int ok) {
#ifdef NETC_MPI
  if (size > 1)
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
#endif
  return ok != 0;
}

void comm_average_bn_stats(NetcState *s) {
  if (size <= 1 || !s->model->stats_bytes)
    return;
  int64_t n = s->model->stats_bytes / 4;
  float *x = (float *)s->bn_stats;
  double *d = xmalloc(sizeof(double) * (size_t)n);
  for (int64_t i = 0; i < n; i++)
    d[i] = x[i];
  for (int64_t at = 0; at < n; at += 1 << 24) /* in chunks: an int count */
    comm_sum_f64(d + at, (int)(n - at < (1 << 24) ? n - at : 1 << 24));
  for (int64_t i = 0; i < n; i++)
    x[i] = (float)(d[i] / size);
  free(d);
}

#ifdef NETC_MPI
static double *bn_all; /* procs x (1 + 3 x the widest batchnorm) doubles */

static const double *bn_gather_mpi(const double *mine, int n) {
  MPI_Allgather(mine, n, MPI_DOUBLE, bn_all, n, MPI_DOUBLE, MPI_COMM_WORLD);
  return bn_all;
}
#endif

int comm_sync_bn(const NetcModel *m) {
#ifdef NETC_MPI
  if (size <= 1)
    return 0;
  int64_t widest = 1;
  for (int i = 0; i < m->nparam_tensors; i++)
    if (m->params[i].kind == NP_BN_WEIGHT && m->params[i].count > widest)
      widest = m->params[i].count;
  free(bn_all);
  bn_all = malloc(sizeof(double) * (size_t)size * (size_t)(1 + 3 * widest));
  if (!bn_all)
    return -1;
  rt_set_bn_sync(bn_gather_mpi, size);
#else
  (void)m;
#endif
  return 0;
}

uint64_t comm_params_hash(const NetcState *s) {
  uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
  for (int64_t i = 0; i < s->model->param_bytes; i++)
    h = (h ^ s->params[i]) * 0x100000001b3ULL;
  return h;
}

/* ---- the bucket hooks of the generated backward pass --------------------- */

void netc_bucket_start(NetcState *s, int b, float *g) {
  const NetcBucket *k = &s->model->buckets[b];
  if (s->accumulate > 1) {
    float *a = (float *)(s->accum + k->accum_offset);
    int last = s->micro == s->accumulate - 1;
    netc_accumulate(last ? g : a, last ? a : g, k->floats,
                    !last && s->micro == 0);
    if (!last)
      return;
  }
#ifdef NETC_MPI
  if (size <= 1)
    return;
  if (k->floats > 0x7fffffff) {
    fprintf(stderr, "netc: gradient bucket %d has more than 2^31 floats\n", b);
    comm_abort(1);
  }
  if (blocking || b >= MAX_BUCKETS) {
    double t0 = now_seconds();
    MPI_Allreduce(MPI_IN_PLACE, g, (int)k->floats, MPI_FLOAT, MPI_SUM,
                  MPI_COMM_WORLD);
    s->comm_seconds += now_seconds() - t0;
    return;
  }
  MPI_Iallreduce(MPI_IN_PLACE, g, (int)k->floats, MPI_FLOAT, MPI_SUM,
                 MPI_COMM_WORLD, &requests[b]);
  inflight[b] = 1;
#else
  (void)g;
#endif
}

void netc_comm_progress(NetcState *s) {
#ifdef NETC_MPI
  (void)s;
  for (int b = 0; b < s->model->nbuckets && b < MAX_BUCKETS; b++)
    if (inflight[b]) {
      int done = 0; /* a finished request stays in flight until its wait */
      MPI_Test(&requests[b], &done, MPI_STATUS_IGNORE);
    }
#else
  (void)s;
#endif
}

void netc_bucket_wait(NetcState *s, int b, float *g) {
  (void)g;
#ifdef NETC_MPI
  if (b < MAX_BUCKETS && inflight[b]) {
    double t0 = now_seconds();
    MPI_Wait(&requests[b], MPI_STATUS_IGNORE); /* a no-op once tested done */
    inflight[b] = 0;
    s->comm_seconds += now_seconds() - t0;
  }
#else
  (void)s, (void)b;
#endif
}
