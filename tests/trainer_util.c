/* trainer_util.c: what the suites that run trainers share
 * (check_train.h): a shell with formatted commands, the data subset and
 * the trainers, built once per build directory. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "check_train.h"

char *sh(int *status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *cmd = NULL;
  ck_assert_int_ge(vasprintf(&cmd, fmt, ap), 0);
  va_end(ap);
  char *out = run_command(cmd, status);
  free(cmd);
  return out;
}

const char *data = "build/testdata/sub10";
const char *trainer = "build/testdata/small10/small10";
const char *tiny = "build/testdata/tiny10/tiny10";

/* Builds a trainer unless it is newer than netc, the runtime and its
 * source. NETC_TEST_CONV, if set, is its --conv: the sanitized suite sets
 * gemm (Makefile), because AddressSanitizer instruments netc's own kernels
 * but not OpenBLAS, and with them five sanitized epochs take over the
 * test's 10 minutes; check_runtime and check_codegen run those kernels
 * under the sanitizers. */
void build_with(const char *net, int batch, const char *dir,
                       const char *name, const char *flags) {
  const char *conv = getenv("NETC_TEST_CONV");
  MUST("t=%s/%s; d=$(dirname %s); for f in %s $d/libnetcrt.a $d/trainer.o "
       "%s; do [ \"$t\" -nt \"$f\" ] || { %s build --no-tune %s%s %s -b %d -o %s %s "
       ">/dev/null; exit $?; }; done", dir, name, netc_path(), netc_path(),
       net, netc_path(), conv ? "--conv " : "", conv ? conv : "", flags,
       batch, dir, net);
}

void build(const char *net, int batch, const char *dir,
                  const char *name) {
  build_with(net, batch, dir, name, "");
}

/* The subset and the trainers, made once per build directory. */
void setup(void) {
  MUST("sh tests/train/subset.sh %s 10 >/dev/null", data);
  build("tests/train/small10.net", 64, "build/testdata/small10", "small10");
  build("tests/train/tiny10.net", 64, "build/testdata/tiny10", "tiny10");
}

/* The value of column `col` (0-based) in the last row of a metrics.csv. */
double last_metric(const char *csv, int col, int *rows) {
  char *text = read_file(csv, NULL);
  ck_assert_ptr_nonnull(text);
  *rows = 0;
  char *last = NULL;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
    if (line[0] >= '0' && line[0] <= '9')
      last = line, (*rows)++;
  ck_assert_ptr_nonnull(last);
  char *p = last;
  for (int i = 0; i < col; i++)
    p = strchr(p, ',') + 1;
  double v = atof(p);
  free(text);
  return v;
}
