/* main.c: the netc command line.
 *
 * The pipeline, one pass per file:
 *   load.c   read FILE.net and its imports
 *   parse.y  tokens (lex.l) -> AST (ast.c)
 *   infer.c  AST -> graph IR: blocks expanded, shapes inferred (ops.c)
 *   graph.c  the IR and its verifier
 *   report.c summaries and dumps
 * Exit status: 0 success, 1 errors in the input, 2 bad usage. */
#include <string.h>

#include "netc.h"

static const char usage[] =
    "usage: netc <command> FILE.net\n"
    "\n"
    "commands:\n"
    "  check FILE.net         check the network and print a per-layer\n"
    "                         summary: output shapes, parameters, MFLOPs\n"
    "  dump ast FILE.net      print the parsed program as canonical source\n"
    "  dump shapes FILE.net   print every op with its inputs, attributes and\n"
    "                         output shape, then every weight\n"
    "\n"
    "options:\n"
    "  -h, --help             print this help and exit\n"
    "  --version              print the version and exit\n"
    "\n"
    "The language is described in docs/language.md.\n";

static int bad_usage(const char *fmt, const char *arg) {
  fprintf(stderr, "netc: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'netc --help'.\n");
  return 2;
}

typedef enum { CMD_CHECK, CMD_DUMP_AST, CMD_DUMP_SHAPES } Command;

static int run(Command cmd, const char *path) {
  Pool pool = {0};
  Diag d;
  diag_init(&d, &pool, stderr);
  Graph g;
  int rc;
  if (cmd == CMD_DUMP_AST) { /* the parse alone: no meaning needed */
    Decl *decls = load_program(&d, &pool, path);
    rc = d.errors ? 1 : 0;
    if (rc == 0)
      dump_ast(stdout, &d, decls);
  } else {
    rc = compile_front(&d, &pool, path, 64, &g, NULL);
    if (rc == 0 && cmd == CMD_CHECK)
      print_summary(stdout, &g);
    if (rc == 0 && cmd == CMD_DUMP_SHAPES)
      dump_shapes(stdout, &d, &g);
  }
  if (d.errors)
    fprintf(stderr, "%d error%s\n", d.errors, d.errors == 1 ? "" : "s");
  pool_free(&pool);
  if (fflush(stdout) != 0) {
    perror("netc: writing output");
    return 1;
  }
  return rc;
}

int main(int argc, char **argv) {
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
  int argi = 2;
  Command c;
  if (!strcmp(cmd, "check")) {
    c = CMD_CHECK;
  } else if (!strcmp(cmd, "dump")) {
    if (argc < 3)
      return bad_usage("%s", "dump needs a kind: ast or shapes");
    const char *kind = argv[argi++];
    if (!strcmp(kind, "ast"))
      c = CMD_DUMP_AST;
    else if (!strcmp(kind, "shapes"))
      c = CMD_DUMP_SHAPES;
    else
      return bad_usage("unknown dump kind '%s' (ast or shapes)", kind);
  } else {
    return bad_usage("unknown command '%s'", cmd);
  }
  if (argi >= argc)
    return bad_usage("%s", "missing FILE.net");
  if (argv[argi][0] == '-')
    return bad_usage("unknown option '%s'", argv[argi]);
  if (argi + 1 < argc)
    return bad_usage("unexpected argument '%s'", argv[argi + 1]);
  return run(c, argv[argi]);
}
