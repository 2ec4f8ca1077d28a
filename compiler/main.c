/* main.c: the netc command line.
 *
 * The pipeline, one pass per file:
 *   load.c      read FILE.net and its imports
 *   parse.y     tokens (lex.l) -> AST (ast.c)
 *   infer.c     AST -> forward graph: blocks expanded, shapes inferred
 *   autodiff.c  forward graph -> training graph: the backward pass
 *   plan.c      every tensor of a training step placed in one arena
 *   codegen.c   graph + plan -> C; build.c compiles it with the runtime
 *   report.c, dump.c   what people read: summaries, dumps, pictures
 * graph.c holds the IR and its verifier, which runs after every pass;
 * ops.c the table of operations. Exit status: 0 success, 1 errors in the
 * input, 2 bad usage. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "netc.h"

static const char usage[] =
    "usage: netc <command> [options] FILE.net\n"
    "\n"
    "commands:\n"
    "  check FILE.net          check the network and print a per-layer\n"
    "                          summary: output shapes, parameters, MFLOPs\n"
    "  build FILE.net          generate C for a training step and compile\n"
    "                          it with the runtime into a trainer: -o DIR\n"
    "                          (default build/<network>), --no-compile,\n"
    "                          --debug (-O0 -g3: tensors by name in gdb)\n"
    "  dump ast FILE.net       the parsed program as canonical source\n"
    "  dump shapes FILE.net    every forward op with its output shape, then\n"
    "                          every weight\n"
    "  dump graph FILE.net     the training graph: forward and backward ops,\n"
    "                          their tensors, shapes and source locations\n"
    "  dump plan FILE.net      the memory plan: every tensor's bytes, offset\n"
    "                          and live interval, then naive_bytes=,\n"
    "                          lower_bound_bytes= and planned_bytes=\n"
    "  dump dot FILE.net       the training graph in Graphviz DOT\n"
    "  dump memory FILE.net    the plan as an SVG picture (use -o plan.svg)\n"
    "\n"
    "options:\n"
    "  -b N, --batch N         images per training step (default 64)\n"
    "  --json                  with dump plan or dump graph: JSON\n"
    "  -o FILE                 write the output to FILE instead of stdout\n"
    "                          (with build: the output directory)\n"
    "  --no-compile            with build: write the C files only\n"
    "  -h, --help              print this help and exit\n"
    "  --version               print the version and exit\n"
    "\n"
    "The language is described in docs/language.md, the passes in\n"
    "docs/architecture.md, the memory plan in docs/memory-plan.md.\n";

typedef enum {
  CMD_CHECK, CMD_BUILD, CMD_AST, CMD_SHAPES, CMD_GRAPH, CMD_PLAN, CMD_DOT,
  CMD_MEMORY
} Command;

typedef struct {
  Command cmd;
  const char *path;
  const char *out_path;
  int64_t batch;
  bool json;
  bool no_compile;
  bool debug;
} Options;

static int bad_usage(const char *fmt, const char *arg) {
  fprintf(stderr, "netc: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'netc --help'.\n");
  return 2;
}

static int emit(FILE *out, Diag *d, const Options *o, Graph *g) {
  Plan plan;
  if (o->cmd == CMD_PLAN || o->cmd == CMD_MEMORY || o->cmd == CMD_BUILD) {
    plan_memory(g, &plan);
    if (plan_check(g, &plan, stderr)) { /* a netc bug, never the input's */
      fprintf(stderr, "netc: internal error: the memory plan overlaps\n");
      exit(1);
    }
  }
  switch (o->cmd) {
  case CMD_CHECK: print_summary(out, g); break;
  case CMD_SHAPES: dump_shapes(out, d, g); break;
  case CMD_GRAPH:
    if (o->json)
      dump_graph_json(out, g);
    else
      dump_graph(out, d, g);
    break;
  case CMD_DOT: dump_dot(out, g); break;
  case CMD_PLAN:
    (o->json ? dump_plan_json : dump_plan)(out, g, &plan);
    break;
  case CMD_MEMORY: dump_memory_svg(out, g, &plan); break;
  case CMD_BUILD:
    return build_trainer(d, g, &plan, o->path,
                         o->out_path ? o->out_path
                                     : pool_printf(g->pool, "build/%s",
                                                   g->name),
                         !o->no_compile, o->debug);
  case CMD_AST: break;
  }
  return 0;
}

static int run(const Options *o) {
  Pool pool = {0};
  Diag d;
  diag_init(&d, &pool, stderr);
  int rc;
  FILE *out = stdout;
  if (o->cmd != CMD_BUILD && o->out_path &&
      !(out = fopen(o->out_path, "w"))) {
    fprintf(stderr, "netc: cannot write '%s': %s\n", o->out_path,
            strerror(errno));
    pool_free(&pool);
    return 1;
  }
  if (o->cmd == CMD_AST) { /* the parse alone: no meaning needed */
    Decl *decls = load_program(&d, &pool, o->path);
    rc = d.errors ? 1 : 0;
    if (rc == 0)
      dump_ast(out, &d, decls);
  } else {
    Graph g;
    rc = compile_front(&d, &pool, o->path, o->batch, &g, NULL);
    if (rc == 0)
      rc = emit(out, &d, o, &g);
  }
  if (d.errors)
    fprintf(stderr, "%d error%s\n", d.errors, d.errors == 1 ? "" : "s");
  pool_free(&pool);
  if ((out == stdout ? fflush(out) : fclose(out)) != 0) {
    /* The reader has gone (netc check | head -1): end quietly, as standard
     * tools do. Any other failure (a full disk) is news. */
    if (errno != EPIPE)
      perror("netc: writing the output");
    return 1;
  }
  return rc;
}

static int parse_command(int argc, char **argv, int *argi, Options *o) {
  static const struct {
    const char *name;
    Command cmd;
  } dumps[] = {{"ast", CMD_AST},   {"shapes", CMD_SHAPES}, {"graph", CMD_GRAPH},
               {"plan", CMD_PLAN}, {"dot", CMD_DOT},       {"memory", CMD_MEMORY}};
  const char *cmd = argv[1];
  if (!strcmp(cmd, "check") || !strcmp(cmd, "build")) {
    o->cmd = cmd[0] == 'c' ? CMD_CHECK : CMD_BUILD;
    return 0;
  }
  if (strcmp(cmd, "dump"))
    return bad_usage("unknown command '%s'", cmd);
  if (argc < 3)
    return bad_usage("%s", "dump needs a kind: ast, shapes, graph, plan, "
                           "dot or memory");
  const char *kind = argv[(*argi)++];
  for (size_t i = 0; i < sizeof dumps / sizeof dumps[0]; i++)
    if (!strcmp(kind, dumps[i].name)) {
      o->cmd = dumps[i].cmd;
      return 0;
    }
  return bad_usage("unknown dump kind '%s' (ast, shapes, graph, plan, dot "
                   "or memory)", kind);
}

static int parse_options(int argc, char **argv, int argi, Options *o) {
  for (; argi < argc; argi++) {
    const char *a = argv[argi];
    if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
      if (++argi >= argc)
        return bad_usage("%s needs a number", a);
      char *end;
      errno = 0;
      long long b = strtoll(argv[argi], &end, 10);
      if (*end || errno || b < 1 || b > 65536)
        return bad_usage("the batch size must be 1..65536, not '%s'",
                         argv[argi]);
      o->batch = b;
    } else if (!strcmp(a, "--json")) {
      o->json = true;
    } else if (!strcmp(a, "--no-compile")) {
      o->no_compile = true;
    } else if (!strcmp(a, "--debug")) {
      o->debug = true;
    } else if (!strcmp(a, "-o")) {
      if (++argi >= argc)
        return bad_usage("%s needs a file name", a);
      o->out_path = argv[argi];
    } else if (a[0] == '-' && a[1]) {
      return bad_usage("unknown option '%s'", a);
    } else if (o->path) {
      return bad_usage("unexpected argument '%s'", a);
    } else {
      o->path = a;
    }
  }
  if (!o->path)
    return bad_usage("%s", "missing FILE.net");
  if (o->json && o->cmd != CMD_PLAN && o->cmd != CMD_GRAPH)
    return bad_usage("%s", "--json goes with dump plan or dump graph");
  if (o->no_compile && o->cmd != CMD_BUILD)
    return bad_usage("%s", "--no-compile goes with build");
  if (o->debug && o->cmd != CMD_BUILD)
    return bad_usage("%s", "--debug goes with build");
  return 0;
}

int main(int argc, char **argv) {
  /* A closed pipe (netc dump graph | head) is a write error, EPIPE: exit
   * status 1 without a message, not a death by SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2)
    return bad_usage("%s", "missing command");
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    fputs(usage, stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version")) {
    printf("netc %s\n", NETC_VERSION);
    return 0;
  }
  Options o = {.batch = 64};
  int argi = 2;
  int rc = parse_command(argc, argv, &argi, &o);
  if (rc == 0)
    rc = parse_options(argc, argv, argi, &o);
  return rc ? rc : run(&o);
}
