/* fuzz_front.c: the libFuzzer target over netc's whole front end.
 *
 * One input is one .net source: lexer, parser, checker (infer), graph and
 * its verifier, autodiff, the memory plan and its checker, and the dumps
 * people read. Any crash, sanitizer report, leak or overlapping plan is a
 * finding. `make fuzz` runs it (clang, -fsanitize=fuzzer,address,undefined);
 * `make test` replays tests/fuzz/corpus/ through the same function
 * (check_fuzz.c), so every input it ever kept stays a regression test. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "netc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static FILE *null;
  if (!null && !(null = fopen("/dev/null", "w")))
    abort();
  Pool pool = {0};
  Diag d;
  diag_init(&d, &pool, null);
  Graph g;
  if (compile_source(&d, &pool, "fuzz.net", (const char *)data, size, 64,
                     &g) == 0) {
    Plan plan;
    plan_memory(&g, &plan);
    if (plan_check(&g, &plan, stderr))
      abort(); /* overlapping tensors: a netc bug whatever the input */
    dump_graph(null, &d, &g);
    dump_plan(null, &g, &plan);
    dump_dot(null, &g);
    print_summary(null, &g);
  }
  pool_free(&pool);
  return 0;
}
