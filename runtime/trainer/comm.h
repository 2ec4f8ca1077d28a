/* comm.h: the processes of a data-parallel run, as the trainer sees them.
 *
 * runtime/trainer/comm.c is compiled twice: with NETC_MPI into libnetcrt_mpi.a,
 * which trainers built with `netc build --mpi` link (Open MPI), and
 * without it into libnetcrt.a, where a run is one process: rank 0 of 1,
 * and every collective leaves its data as it is. docs/distributed.md
 * says how to run one on several processes and hosts. */
#ifndef NETC_COMM_H
#define NETC_COMM_H

#include <stdint.h>

#include "model/netc_model.h"

/* Starts MPI when the trainer was built with it (a run without mpirun is
 * one process); returns 0, or -1 after a message. */
int comm_init(int *argc, char ***argv);
void comm_finalize(void);
int comm_rank(void);
int comm_size(void);
int comm_is_mpi(void); /* built with MPI (whatever the process count) */
/* Ends every process of the run with `status` (MPI_Abort), or this one. */
_Noreturn void comm_abort(int status);

/* Collectives over all processes; each must be called by all, in the
 * same order. */
void comm_sum_i64(int64_t *x, int n);
void comm_sum_f64(double *x, int n); /* summed in rank order: the same
                                        bits on every process */
void comm_bcast(void *x, int64_t bytes); /* rank 0's bytes to all */
/* 1 if every process passes the same v; else 0 on all of them. */
int comm_same_u64(uint64_t v);
/* 1 if every process passes ok != 0, else 0 on all. */
int comm_all(int ok);

/* The model's running statistics averaged over the processes (before an
 * evaluation and a checkpoint, so that every rank holds the same). */
void comm_average_bn_stats(NetcState *s);
/* train --sync-bn: batchnorm statistics over every process's rows
 * (rt_set_bn_sync), with the gather buffer allocated here, once; a no-op
 * on one process. -1 when out of memory. */
int comm_sync_bn(const NetcModel *m);
/* A 64-bit hash of the parameters, to compare across ranks in tests. */
uint64_t comm_params_hash(const NetcState *s);

#endif
