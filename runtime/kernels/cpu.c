/* cpu.c: the machine the kernels run on: how many threads (OpenMP's and
 * OpenBLAS's, one pool) and which instruction set's tiles (netc_rt.h). */
#include <cblas.h>
#include <omp.h>

#include "kernels/netc_rt.h"

void rt_set_threads(int n) {
  if (n < 1)
    n = 1;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int rt_threads(void) { return omp_get_max_threads(); }

/* ---- the instruction set ------------------------------------------------ */

static int current_isa = -1; /* -1: not chosen yet, the CPU's best */

int rt_set_isa(int isa) {
  if (isa < 0 || isa >= RT_ISA_COUNT || !rt_cpu_has_isa(isa))
    return -1;
  current_isa = isa;
  return 0;
}

int rt_isa(void) {
  if (current_isa < 0)
    current_isa = rt_cpu_has_isa(RT_ISA_AVX512) ? RT_ISA_AVX512 : RT_ISA_AVX2;
  return current_isa;
}

const char *rt_isa_name(int isa) {
  return isa == RT_ISA_AVX512 ? "avx512" : "avx2";
}

const char *rt_conv_kernel_name(void) {
  return rt_isa() == RT_ISA_AVX512 ? "avx512-direct-12x32"
                                   : "avx2-fma-direct-6x16";
}
