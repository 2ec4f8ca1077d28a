/* main.c: the netc command line.
 *
 * The pipeline, one pass per file:
 *   load.c      read FILE.net and its imports
 *   parse.y     tokens (lex.l) -> AST (ast.c); defines.c applies -D
 *   infer.c     AST -> forward graph: blocks expanded (infer_blocks.c),
 *               expressions evaluated (infer_expr.c), shapes inferred
 *               (infer_ops.c)
 *   algo.c      each convolution's algorithm, per layer and pass
 *   autodiff.c  forward graph -> training graph: the backward pass
 *   fuse.c      relus folded into the batchnorm or add beside them
 *   comm.c      (--mpi) gradient buckets and their allreduce nodes
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
#include "util/util.h" /* runtime/util/util.h: make_dirs, OutFile */

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
    "  --conv ALGO             how convolutions are computed: auto (the\n"
    "                          cost model, default), gemm (im2col + BLAS),\n"
    "                          direct (netc's kernels), winograd or\n"
    "                          winograd4 (F(2x2,3x3), F(4x4,3x3): 3x3\n"
    "                          stride 1; gemm elsewhere); FWD,DX,DW sets\n"
    "                          each pass apart (direct,direct,gemm)\n"
    "  (tuning)                build takes each convolution pass's algorithm\n"
    "                          from this machine's tuning cache\n"
    "                          ($XDG_CACHE_HOME/netc), times the shapes it\n"
    "                          lacks there, heaviest first, for at most 60 s\n"
    "                          (the rest: the cost model), and writes the\n"
    "                          choices to DIR/NET.tune\n"
    "  --no-tune               with build: the cost model alone, no timing\n"
    "  --tune-seconds S        with build: time for at most S seconds (0:\n"
    "                          look up the cache only)\n"
    "  --tune                  with build: time every shape anew, however\n"
    "                          long it takes, and update the cache\n"
    "  --threads N             with build: time on N threads, as training\n"
    "                          will run (default: all cores)\n"
    "  --tuning FILE           the algorithms a tuning file lists (shapes it\n"
    "                          lacks: the cost model), no timing; the same\n"
    "                          file gives the same C\n"
    "  --no-compile            with build: write the C files only\n"
    "  --no-fuse               every relu its own pass (fuse.c folds them\n"
    "                          into the batchnorm or add beside them)\n"
    "  --portable              a trainer for any AVX2 machine, not tuned to\n"
    "                          this one's CPU (-march=native); with check\n"
    "                          and dump: the algorithms such a build gets\n"
    "  --mpi                   data-parallel training over MPI: gradients in\n"
    "                          buckets, each summed over the processes by an\n"
    "                          allreduce in the backward pass; the trainer\n"
    "                          runs under mpirun (docs/distributed.md)\n"
    "  --bucket-kib N          with --mpi: buckets of about N KiB (default:\n"
    "                          an eighth of the gradients, 1-32 MiB)\n"
    "  -h, --help              print this help and exit\n"
    "  --version               print the version and exit\n"
    "\n"
    "The language is described in docs/language.md, the passes in\n"
    "docs/architecture.md, the memory plan in docs/memory-plan.md.\n";

enum { MAX_DEFINES = 64 };

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
  bool portable;
  int conv_policy;
  bool tune;          /* build: time every layer anew (--tune) */
  bool no_tune;       /* build: the cost model alone */
  double tune_seconds; /* build: the timing budget; < 0: not given (60) */
  const char *tuning; /* a tuning file to use */
  int threads;        /* for the timing; 0: all cores */
  bool mpi;           /* data-parallel: buckets and allreduce (comm.c) */
  bool no_fuse;       /* keep every relu a call of its own (fuse.c) */
  int64_t bucket_kib; /* 0: comm_default_bucket_bytes */
  Define defines[MAX_DEFINES]; /* -D NAME=VALUE, in order */
  char define_names[MAX_DEFINES][MAX_IDENT_LEN + 1];
  int ndefines;
} Options;

static int bad_usage(const char *fmt, const char *arg) {
  fprintf(stderr, "netc: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'netc --help'.\n");
  return 2;
}

/* build's output directory: -o, or build/<network>. */
static const char *out_dir(const Options *o, const Graph *g) {
  return o->out_path ? o->out_path : pool_printf(g->pool, "build/%s", g->name);
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
    return build_trainer(d, g, &plan, o->path, out_dir(o, g),
                         &(BuildOptions){.compile = !o->no_compile,
                                         .debug = o->debug,
                                         .portable = o->portable,
                                         .mpi = o->mpi});
  case CMD_AST: break;
  }
  return 0;
}

/* Whether a build times its convolutions: unless told how to choose. */
static bool tunes(const Options *o) {
  return o->cmd == CMD_BUILD && !o->no_tune && !o->tuning &&
         o->conv_policy == CONV_POLICY_AUTO;
}

/* The front end with the convolution algorithms of the options: a
 * tuning file read (--tuning), or for a build this machine's timings
 * (tune.c: the cache, the shapes it lacks timed now), then the sources
 * compiled again with them and the choices written to DIR/NET.tune. */
static int compile_conv(Diag *d, Pool *pool, const Options *o, Graph *g) {
  Tuning tuning = {0};
  const char *file = o->tuning;
  if (file && !tuning_load(file, pool, &tuning))
    return 1;
  int isa = o->portable ? RT_ISA_AVX2 : conv_native_isa();
  ConvChoice conv = {o->conv_policy, file ? &tuning : NULL, isa};
  int rc = compile_front_conv(d, pool, o->path, o->batch, o->defines,
                              o->ndefines, &conv, g);
  if (rc || !tunes(o))
    return rc;
  TuneRequest req = {netc_tuner(pool), o->threads, isa,
                     o->tune ? -1 : o->tune_seconds < 0 ? 60 : o->tune_seconds,
                     o->tune};
  if (tuning_for_machine(g, &req, &tuning))
    return 1;
  if (tuning.n) {
    Diag again; /* the sources once more, as if for the first time */
    diag_init(&again, pool, d->out);
    conv.tuning = &tuning;
    rc = compile_front_conv(&again, pool, o->path, o->batch, o->defines,
                            o->ndefines, &conv, g);
    d->errors += again.errors;
    if (rc)
      return rc;
  }
  const char *dir = out_dir(o, g);
  if (make_dirs(dir)) {
    fprintf(stderr, "netc: cannot create '%s': %s\n", dir, strerror(errno));
    return 1;
  }
  return tuning_write_choices(g, &tuning,
                              pool_printf(pool, "%s/%s.tune", dir, g->name));
}

/* ... the relus folded, and, for a data-parallel build, the gradient
 * buckets. */
static int compile(Diag *d, Pool *pool, const Options *o, Graph *g) {
  int rc = compile_conv(d, pool, o, g);
  if (rc)
    return rc;
  if (!o->no_fuse && (fuse_relus(g), graph_verify(g, stderr))) {
    fprintf(stderr, "netc: internal error: fusing broke the graph\n");
    exit(1);
  }
  if (!o->mpi)
    return 0;
  insert_allreduce(g, o->bucket_kib ? o->bucket_kib * 1024
                                    : comm_default_bucket_bytes(g));
  if (graph_verify(g, stderr)) { /* a netc bug, never the input's */
    fprintf(stderr, "netc: internal error: the buckets broke the graph\n");
    exit(1);
  }
  return 0;
}

/* Output goes to stdout, or with -o to a file written whole or not at all
 * (OutFile): a failed dump leaves an earlier FILE as it was. */
static int run(const Options *o) {
  Pool pool = {0};
  Diag d;
  diag_init(&d, &pool, stderr);
  int rc;
  FILE *out = stdout;
  OutFile file = {0};
  if (o->cmd != CMD_BUILD && o->out_path) {
    if (outfile_open(&file, o->out_path)) {
      fprintf(stderr, "netc: cannot write '%s': %s\n", o->out_path,
              strerror(errno));
      pool_free(&pool);
      return 1;
    }
    out = file.f;
  }
  if (o->cmd == CMD_AST) { /* the parse alone: no meaning needed */
    Decl *decls = load_program(&d, &pool, o->path);
    if (!d.errors)
      apply_defines(&d, &pool, decls, o->defines, o->ndefines);
    rc = d.errors ? 1 : 0;
    if (rc == 0)
      dump_ast(out, &d, decls);
  } else {
    Graph g;
    rc = compile(&d, &pool, o, &g);
    if (rc == 0)
      rc = emit(out, &d, o, &g);
  }
  if (d.errors)
    fprintf(stderr, "%d error%s\n", d.errors, d.errors == 1 ? "" : "s");
  pool_free(&pool);
  if (file.f && rc) {
    outfile_abandon(&file);
    return rc;
  }
  if (file.f ? outfile_commit(&file) : outfile_flush(stdout)) {
    /* The reader has gone (netc check | head -1): end quietly, as standard
     * tools do. Any other failure (a full disk) is news. */
    if (errno != EPIPE)
      fprintf(stderr, "netc: cannot write %s%s%s: %s\n",
              o->out_path ? "'" : "",
              o->out_path ? o->out_path : "to standard output",
              o->out_path ? "'" : "", strerror(errno));
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

/* -D NAME=VALUE (or -DNAME=VALUE): the value is checked where the
 * network is (apply_defines), the form here. */
static int parse_define(const char *arg, Options *o) {
  const char *eq = arg ? strchr(arg, '=') : NULL;
  if (!eq || eq == arg || !eq[1])
    return bad_usage("-D needs NAME=VALUE, such as -D classes=10, not '%s'",
                     arg ? arg : "");
  if (o->ndefines == MAX_DEFINES)
    return bad_usage("%s", "too many -D options");
  if (eq - arg > MAX_IDENT_LEN)
    return bad_usage("-D %s: the name is too long to be a parameter", arg);
  char *name = o->define_names[o->ndefines];
  memcpy(name, arg, (size_t)(eq - arg));
  name[eq - arg] = 0;
  for (int i = 0; i < o->ndefines; i++)
    if (!strcmp(o->defines[i].name, name))
      return bad_usage("-D %s is given twice", name);
  o->defines[o->ndefines++] = (Define){name, eq + 1};
  return 0;
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
    } else if (!strncmp(a, "-D", 2)) {
      if (parse_define(a[2] ? a + 2 : ++argi < argc ? argv[argi] : NULL, o))
        return 2;
    } else if (!strcmp(a, "--json")) {
      o->json = true;
    } else if (!strcmp(a, "--no-compile")) {
      o->no_compile = true;
    } else if (!strcmp(a, "--debug")) {
      o->debug = true;
    } else if (!strcmp(a, "--portable")) {
      o->portable = true;
    } else if (!strcmp(a, "--mpi")) {
      o->mpi = true;
    } else if (!strcmp(a, "--no-fuse")) {
      o->no_fuse = true;
    } else if (!strcmp(a, "--bucket-kib")) {
      char *end;
      errno = 0;
      long long k = ++argi < argc ? strtoll(argv[argi], &end, 10) : -1;
      if (k < 1 || k > (1LL << 30) || *end || errno)
        return bad_usage("--bucket-kib needs a size in KiB, 1..2^30, not '%s'",
                         argi < argc ? argv[argi] : "");
      o->bucket_kib = k;
    } else if (!strcmp(a, "--tune")) {
      o->tune = true;
    } else if (!strcmp(a, "--no-tune")) {
      o->no_tune = true;
    } else if (!strcmp(a, "--tune-seconds")) {
      char *end;
      errno = 0;
      double t = ++argi < argc ? strtod(argv[argi], &end) : -1;
      if (argi >= argc || end == argv[argi] || *end || errno || !(t >= 0) ||
          t > 86400)
        return bad_usage("--tune-seconds needs seconds, 0..86400, not '%s'",
                         argi < argc ? argv[argi] : "");
      o->tune_seconds = t;
    } else if (!strcmp(a, "--tuning")) {
      if (++argi >= argc)
        return bad_usage("%s needs a tuning file (netc build --tune "
                         "writes one)", a);
      o->tuning = argv[argi];
    } else if (!strcmp(a, "--threads")) {
      char *end;
      errno = 0;
      long t = ++argi < argc ? strtol(argv[argi], &end, 10) : -1;
      if (t < 1 || t > 1024 || *end || errno)
        return bad_usage("--threads needs a number 1..1024, not '%s'",
                         argi < argc ? argv[argi] : "");
      o->threads = (int)t;
    } else if (!strcmp(a, "--conv")) {
      if (++argi >= argc)
        return bad_usage("%s needs an algorithm: auto, gemm, direct, "
                         "winograd or winograd4", a);
      o->conv_policy = conv_policy_lookup(argv[argi]);
      if (o->conv_policy < CONV_POLICY_AUTO)
        return bad_usage("unknown convolution algorithm '%s' (auto, gemm, "
                         "direct, winograd, winograd4, or FWD,DX,DW of "
                         "those)",
                         argv[argi]);
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
  if ((o->tune || o->no_tune || o->threads || o->tune_seconds >= 0) &&
      o->cmd != CMD_BUILD)
    return bad_usage("%s", "--tune, --no-tune, --tune-seconds and --threads "
                           "go with build");
  if (o->bucket_kib && !o->mpi)
    return bad_usage("%s", "--bucket-kib goes with --mpi");
  if (o->mpi && o->cmd == CMD_AST)
    return bad_usage("%s", "--mpi does not go with dump ast");
  if (o->no_fuse && o->cmd == CMD_AST)
    return bad_usage("%s", "--no-fuse does not go with dump ast");
  if (o->tune && o->no_tune)
    return bad_usage("%s", "--tune times every shape, --no-tune none: give "
                           "one of them");
  if (o->tune && (o->tuning || o->conv_policy != CONV_POLICY_AUTO))
    return bad_usage("%s", "--tune makes the tuning: it goes with neither "
                           "--tuning nor --conv");
  if (o->tune && o->tune_seconds >= 0)
    return bad_usage("%s", "--tune times every shape, however long: it does "
                           "not go with --tune-seconds");
  if ((o->threads || o->tune_seconds >= 0) &&
      (o->no_tune || o->tuning || o->conv_policy != CONV_POLICY_AUTO))
    return bad_usage("%s", "--threads and --tune-seconds are for timing: "
                           "they do not go with --no-tune, --tuning or "
                           "--conv");
  if (o->tuning && o->conv_policy != CONV_POLICY_AUTO)
    return bad_usage("%s", "--conv sets every layer: it does not go with "
                           "--tuning");
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
  Options o = {.batch = 64, .conv_policy = CONV_POLICY_AUTO,
               .tune_seconds = -1};
  int argi = 2;
  int rc = parse_command(argc, argv, &argi, &o);
  if (rc == 0)
    rc = parse_options(argc, argv, argi, &o);
  return rc ? rc : run(&o);
}
