/* build.c: `netc build`: writes <model>.c and <model>.h into a directory
 * and compiles them with the runtime into a trainer executable.
 *
 * Where the runtime is was fixed when netc was built (NETC_RT_INCLUDE,
 * NETC_RT_LIBDIR, NETC_BLAS_LIBS, NETC_CC, NETC_MPICC); the environment
 * variables NETC_CC, NETC_MPICC, NETC_RUNTIME and NETC_LIBDIR override
 * them. A data-parallel trainer (--mpi) is compiled with Open MPI's mpicc
 * and linked with libnetcrt_mpi.a, the runtime whose comm.c calls MPI. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "netc.h"
#include "util/util.h" /* runtime/util/util.h: make_dirs, OutFile */

#ifndef NETC_RT_INCLUDE
#define NETC_RT_INCLUDE "runtime"
#endif
#ifndef NETC_RT_LIBDIR
#define NETC_RT_LIBDIR "build"
#endif
#ifndef NETC_BLAS_LIBS
#define NETC_BLAS_LIBS "-lopenblas"
#endif
#ifndef NETC_CC
#define NETC_CC "cc"
#endif
#ifndef NETC_MPICC
#define NETC_MPICC "mpicc"
#endif

static const char *env_or(const char *name, const char *def) {
  const char *v = getenv(name);
  return v && *v ? v : def;
}

/* Writes the sources; returns the model's file stem, or NULL. */
static const char *write_sources(Diag *d, const Graph *g, const Plan *p,
                                 const char *source, const char *dir) {
  Pool *pool = g->pool;
  const char *stem = g->name;
  const char *cpath = pool_printf(pool, "%s/%s.c", dir, stem);
  const char *hpath = pool_printf(pool, "%s/%s.h", dir, stem);
  if (make_dirs(dir)) {
    fprintf(stderr, "netc: cannot create '%s': %s\n", dir, strerror(errno));
    return NULL;
  }
  /* The pair whole or not at all (OutFile): a failed write leaves the
   * sources of an earlier build as they were. */
  OutFile out[2];
  const char *path[2] = {cpath, hpath};
  for (int i = 0; i < 2; i++)
    if (outfile_open(&out[i], path[i])) {
      fprintf(stderr, "netc: cannot write '%s': %s\n", path[i],
              strerror(errno));
      if (i)
        outfile_abandon(&out[0]);
      return NULL;
    }
  codegen(out[0].f, out[1].f, d, g, p, source,
          pool_printf(pool, "%s.h", stem));
  int failed;
  if (outfile_commit_all(out, 2, &failed)) {
    fprintf(stderr, "netc: cannot write '%s': %s\n", path[failed],
            strerror(errno));
    return NULL;
  }
  return stem;
}

const char *netc_tuner(Pool *pool) {
  return pool_printf(pool, "%s/netc-tune",
                     env_or("NETC_LIBDIR", NETC_RT_LIBDIR));
}

int build_trainer(Diag *d, const Graph *g, const Plan *p, const char *source,
                  const char *dir, const BuildOptions *bo) {
  const char *stem = write_sources(d, g, p, source, dir);
  if (!stem)
    return 1;
  bool debug = bo->debug;
  if (!bo->compile) {
    printf("netc: wrote %s/%s.c and %s/%s.h\n", dir, stem, dir, stem);
    return 0;
  }
  const char *rt = env_or("NETC_RUNTIME", NETC_RT_INCLUDE);
  const char *lib = env_or("NETC_LIBDIR", NETC_RT_LIBDIR);
  const char *cc = bo->mpi ? env_or("NETC_MPICC", NETC_MPICC)
                           : env_or("NETC_CC", NETC_CC);
  const char *rtlib = bo->mpi ? "libnetcrt_mpi.a" : "libnetcrt.a";
  if (bo->mpi) {
    char *probe = pool_printf(g->pool, "test -f '%s/%s' && command -v %s "
                              ">/dev/null 2>&1", lib, rtlib, cc);
    if (system(probe) != 0) {
      fprintf(stderr, "netc: --mpi needs Open MPI (mpicc) and the MPI "
                      "runtime %s/%s: apt-get install openmpi-bin "
                      "libopenmpi-dev, then make\n", lib, rtlib);
      return 1;
    }
  }
  char *cmd = pool_printf(
      g->pool,
      "%s -std=c11 %s %s -Wall -Wextra -Werror -fopenmp -I'%s/kernels' "
      "-I'%s/model' -I'%s' -o '%s/%s' '%s/%s.c' '%s/trainer.o' '%s/%s' %s "
      "-lm -lpthread",
      cc,
      /* -g3 keeps the macros: gdb can `print *F(T_conv1)@8` by name. */
      debug ? "-O0 -g3" : "-O2",
      /* The generated code asks for the kernels of the instruction set it
       * is compiled for (NETC_ISA in codegen.c). */
      bo->portable ? "-march=x86-64-v3" : "-march=native", rt, rt, dir, dir,
      stem, dir, stem, lib, lib, rtlib, NETC_BLAS_LIBS);
  int rc = system(cmd);
  if (rc != 0) {
    fprintf(stderr, "netc: compiling the trainer failed:\n  %s\n", cmd);
    return 1;
  }
  printf("netc: built %s/%s (from %s, batch %lld; arena %lld bytes; %s%s%s)\n",
         dir, stem, source, (long long)g->batch, (long long)p->planned_bytes,
         bo->portable ? "portable, AVX2" : "for this CPU",
         bo->mpi ? pool_printf(g->pool, "; MPI, %d gradient buckets",
                               g->nbuckets)
                 : "",
         debug ? "; -O0 -g3 for gdb" : "");
  return 0;
}
