/* allreduce.c: `make bench-mpi`'s microbenchmark: MPI_Allreduce (sum,
 * float, in place, as netc's buckets are reduced) of each size given on
 * the command line, in bytes; after warm-up, the median of ROUNDS timed
 * calls (each rank times the same calls; rank 0 prints). One line per
 * size:
 *   allreduce procs=P bytes=B median_us=T gbit_per_s=G
 * G is the algorithm bandwidth, bytes / time x 8. Run it under mpirun,
 * with --mca btl tcp,self for TCP. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

enum { ROUNDS = 21, WARMUP = 3 };

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, procs;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &procs);
  for (int a = 1; a < argc; a++) {
    long bytes = atol(argv[a]);
    int n = (int)(bytes / 4 > 0 ? bytes / 4 : 1);
    float *x = calloc((size_t)n, sizeof(float));
    double t[ROUNDS];
    for (int r = -WARMUP; r < ROUNDS; r++) {
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      if (r >= 0)
        t[r] = MPI_Wtime() - t0;
    }
    qsort(t, ROUNDS, sizeof t[0], cmp);
    if (rank == 0)
      printf("allreduce procs=%d bytes=%ld median_us=%.1f gbit_per_s=%.2f\n",
             procs, (long)n * 4, t[ROUNDS / 2] * 1e6,
             (double)n * 4 * 8 / t[ROUNDS / 2] / 1e9);
    free(x);
  }
  MPI_Finalize();
  return 0;
}
