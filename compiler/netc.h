/* netc.h: the one internal header of the netc compiler.
 *
 * Read it as the table of contents: one section per .c file, in pipeline
 * order. Data flows  source text -> tokens -> AST (parse.y) -> graph IR
 * (infer.c) -> dumps and summaries. Every later pass refers to tensors,
 * nodes and weights by integer ids into the Graph's arrays, never by pointer.
 */
#ifndef NETC_H
#define NETC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NETC_VERSION "0.1.0"

/* Limits that keep netc bounded on any input (see docs/language.md). */
enum {
  MAX_ERRORS = 20,        /* stop reporting after this many errors */
  MAX_NESTING = 200,      /* brackets and braces, and block call depth */
  MAX_IDENT_LEN = 64,     /* identifier length */
  MAX_REPEAT = 10000,     /* count of one repeat statement */
  MAX_NODES = 100000,     /* ops in one elaborated network */
  MAX_DIM = 1 << 24,      /* a shape literal's dimension, an op argument */
  MAX_STEPS = 2000000,    /* evaluation steps: bounds nested repeats and
                             recursive blocks that make few ops */
  MAX_IMPORTS = 64,       /* files in one compilation */
};
/* Elements of one tensor per image, or of one weight. */
#define MAX_ELEMS ((int64_t)1 << 31)
/* All tensors of one training step (the plan's naive bytes): 1 TiB. */
#define MAX_STEP_BYTES ((int64_t)1 << 40)

/* ---- pool.c: one arena for everything a compilation allocates ---------- */

typedef struct PoolBlock PoolBlock;
typedef struct {
  PoolBlock *head;
} Pool;

void *pool_alloc(Pool *p, size_t size);            /* zeroed, never NULL */
char *pool_strndup(Pool *p, const char *s, size_t n);
char *pool_strdup(Pool *p, const char *s);
char *pool_printf(Pool *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void *pool_grow(Pool *p, void *old, size_t elem, int n, int *cap);
void pool_free(Pool *p);
int edit_distance(const char *a, const char *b);
/* The candidate nearest to `name` (or NULL if none is plausibly meant). */
const char *nearest_name(const char *name, const char *const *cands, int n);

/* ---- diag.c: source files and diagnostics ----------------------------- */

typedef struct {
  int file; /* index into Diag.files; -1 = no location */
  int line; /* 1-based */
  int col;  /* 1-based, in bytes */
} Loc;

typedef struct {
  const char *path;
  char *text; /* file contents, NUL-terminated (may contain other NULs) */
  size_t len;
} SourceFile;

typedef struct {
  SourceFile files[MAX_IMPORTS];
  int nfiles;
  FILE *out;   /* where diagnostics go (stderr, or a memstream in tests) */
  int errors;
  int warnings;
  bool stop;   /* MAX_ERRORS reached: passes should return promptly */
  bool muted;  /* the last error repeated an earlier one: drop its notes */
  struct Seen *seen; /* errors reported so far, to drop exact repeats */
  Pool *pool;
} Diag;

void diag_init(Diag *d, Pool *pool, FILE *out);
/* Reads `path` into a new SourceFile; returns its index or -1 (reported). */
int diag_load(Diag *d, const char *path, Loc from);
int diag_add_text(Diag *d, const char *path, const char *text, size_t len);
/* Reports an error; returns false if it was dropped (an exact repeat of an
 * earlier one, as a mistake inside a repeat loop would give, or past the
 * MAX_ERRORS stop). */
bool diag_error(Diag *d, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool diag_verror(Diag *d, Loc loc, const char *fmt, va_list ap);
void diag_warning(Diag *d, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_note(Diag *d, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *loc_str(Diag *d, Loc loc); /* "file:line:col", pool-allocated */

/* ---- ast.c / parse.y / lex.l: the abstract syntax tree ----------------- */

typedef struct Expr Expr;
typedef struct Stmt Stmt;

typedef enum {
  EX_INT,    /* 42 */
  EX_BOOL,   /* true, false */
  EX_SHAPE,  /* 3x64x64 */
  EX_NAME,   /* x */
  EX_ATTR,   /* x.c, x.h, x.w */
  EX_CALL,   /* conv(x, 64, k=3); also what `x -> relu` becomes */
  EX_UNARY,  /* -e, !e */
  EX_BINARY, /* e + e, e == e, e && e, ... */
} ExprKind;

typedef struct Arg {
  const char *name; /* NULL for a positional argument */
  Expr *value;
  Loc loc;
  struct Arg *next, *tail; /* tail: valid in the list head only */
} Arg;

enum { MAX_SHAPE_DIMS = 4 };

struct Expr {
  ExprKind kind;
  Loc loc;
  int64_t ival;                /* EX_INT, EX_BOOL */
  int64_t dims[MAX_SHAPE_DIMS]; /* EX_SHAPE */
  int ndims;
  const char *name;            /* EX_NAME, EX_CALL callee, EX_ATTR field */
  int op;                      /* EX_UNARY/EX_BINARY: an Operator */
  Expr *lhs, *rhs;             /* operands; EX_ATTR base in lhs */
  Arg *args;                   /* EX_CALL */
  int depth;                   /* nesting depth, bounded by MAX_NESTING */
};

typedef enum {
  OPR_NEG, OPR_NOT, OPR_ADD, OPR_SUB, OPR_MUL, OPR_DIV, OPR_MOD,
  OPR_EQ, OPR_NE, OPR_LT, OPR_LE, OPR_GT, OPR_GE, OPR_AND, OPR_OR,
} Operator;

typedef enum {
  ST_ASSIGN, /* name = expr */
  ST_SHARED, /* shared name = block(args) */
  ST_RETURN, /* return expr */
  ST_REPEAT, /* repeat expr { body } */
  ST_IF,     /* if expr { body } else { else_body } */
} StmtKind;

struct Stmt {
  StmtKind kind;
  Loc loc;
  const char *name;
  Expr *value;
  Stmt *body, *else_body;
  Stmt *next, *tail; /* tail: valid in the list head only */
};

typedef struct Param {
  const char *name;
  Expr *def; /* default value, or NULL */
  Loc loc;
  struct Param *next, *tail; /* tail: valid in the list head only */
} Param;

typedef enum { DECL_IMPORT, DECL_BLOCK, DECL_NETWORK } DeclKind;

typedef struct Decl {
  DeclKind kind;
  Loc loc;
  const char *name; /* block/network name, or the import path */
  Param *params;
  Stmt *body;
  struct Decl *next, *tail; /* tail: valid in the list head only */
} Decl;

Expr *new_expr(Pool *p, ExprKind kind, Loc loc);
Expr *new_binary(Pool *p, int op, Expr *l, Expr *r, Loc loc);
Expr *chain_call(Pool *p, Expr *lhs, Expr *call); /* lhs -> call */
Arg *append_arg(Arg *list, Arg *a);
Stmt *append_stmt(Stmt *list, Stmt *s);
Param *append_param(Param *list, Param *prm);
Decl *append_decl(Decl *list, Decl *d);
const char *operator_text(int op);
void dump_ast(FILE *out, Diag *d, Decl *decls);

/* parse.y: parses diag file `file`; returns its declarations. Errors go to
 * the Diag; recovery happens at statement boundaries. */
Decl *parse_file(Diag *d, Pool *pool, int file);

/* ---- ops.c: the table of operations ------------------------------------ */

/* X(ENUM, name, tensor inputs, parameter spec, backward rule, summary)
 * A parameter spec lists named parameters in positional order. `name` is a
 * required int, `name=3` has a default, `name=true` is a bool, `name=other`
 * defaults to another parameter's value. The backward rule is the op that
 * differentiates it, or PASS (the output gradient flows to every input as
 * it is: add, flatten). Adding an op means one line here, a shape rule in
 * ops.c, its gradient rule in autodiff.c and its kernels in runtime/. */
#define OP_LIST(X)                                                            \
  X(CONV, "conv", 1, "out k stride=1 pad=0 bias=true", CONV_BWD,              \
    "2-D convolution")                                                        \
  X(BATCHNORM, "batchnorm", 1, "", BATCHNORM_BWD,                             \
    "batch normalization, per channel")                                       \
  X(RELU, "relu", 1, "", RELU_BWD, "max(x, 0)")                               \
  X(ADD, "add", 2, "", PASS, "elementwise sum of two equal shapes")           \
  X(MAXPOOL, "maxpool", 1, "k stride=k pad=0", MAXPOOL_BWD, "max pooling")    \
  X(AVGPOOL, "avgpool", 1, "k stride=k pad=0", AVGPOOL_BWD,                   \
    "average pooling (padding counted)")                                      \
  X(GLOBAL_AVGPOOL, "global_avgpool", 1, "", GLOBAL_AVGPOOL_BWD,              \
    "mean over height and width")                                             \
  X(DENSE, "dense", 1, "out bias=true", DENSE_BWD, "fully connected layer")   \
  X(FLATTEN, "flatten", 1, "", PASS, "C x H x W -> (C*H*W) x 1 x 1")          \
  X(SOFTMAX_XENT, "softmax_cross_entropy", 1, "", SOFTMAX_XENT_BWD,           \
    "softmax cross-entropy loss, mean over the batch")

/* Ops the compiler makes (autodiff.c), never written in a .net file. Their
 * inputs are listed in autodiff.c; each writes the gradient of its forward
 * op's first input, and the weight gradients of its forward op. */
#define INTERNAL_OP_LIST(X)                                                   \
  X(CONV_BWD, "conv_backward", 2, "", NONE, "dX, dW, db from dY, X, W")       \
  X(BATCHNORM_BWD, "batchnorm_backward", 4, "", NONE,                         \
    "dX, dgamma, dbeta from dY, X, mean, invstd")                             \
  X(RELU_BWD, "relu_backward", 2, "", NONE, "dX = dY where Y > 0")            \
  X(MAXPOOL_BWD, "maxpool_backward", 2, "", NONE, "dX from dY, argmax")       \
  X(AVGPOOL_BWD, "avgpool_backward", 1, "", NONE, "dX from dY")               \
  X(GLOBAL_AVGPOOL_BWD, "global_avgpool_backward", 1, "", NONE,               \
    "dX = dY / (H*W) everywhere")                                             \
  X(DENSE_BWD, "dense_backward", 2, "", NONE, "dX, dW, db from dY, X, W")     \
  X(SOFTMAX_XENT_BWD, "softmax_cross_entropy_backward", 2, "", NONE,          \
    "dlogits = (probabilities - onehot(labels)) / batch")                     \
  X(GRAD_ADD, "grad_add", 2, "", NONE,                                        \
    "the sum of two gradient contributions")                                  \
  X(BN_RELU_RECOMPUTE, "batchnorm_relu_recompute", 3, "", NONE,               \
    "relu(batchnorm(X)) again, from X, mean and invstd, for the backward "    \
    "pass (its forward value is not kept)")                                 \
  X(UPDATE, "update", 1, "", NONE,                                            \
    "the optimizer's step on one weight, as soon as its gradient is final")

typedef enum {
#define X(e, n, ni, spec, bwd, doc) OP_##e,
  OP_LIST(X)
  INTERNAL_OP_LIST(X)
#undef X
  OP_COUNT,
  OP_PASS,   /* backward rule: the gradient passes through unchanged */
  OP_NONE,   /* backward rule of a backward op */
} OpKind;

#define OP_USER_COUNT ((int)OP_CONV_BWD) /* user ops come first */

enum { MAX_OP_PARAMS = 6, MAX_WEIGHTS_PER_NODE = 2 };

typedef struct {
  const char *name;
  bool is_bool;
  bool required;
  int64_t def;       /* default value when !required and def_from < 0 */
  int def_from;      /* index of the parameter whose value is the default */
} OpParam;

typedef struct {
  const char *name;
  int ninputs;
  const char *doc;
  OpParam params[MAX_OP_PARAMS];
  int nparams;
  bool user;        /* may be written in a .net file */
  OpKind backward;  /* the op that differentiates it: a kind, PASS or NONE */
} OpInfo;

/* Attribute indices, in spec order. */
enum { CONV_OUT, CONV_K, CONV_STRIDE, CONV_PAD, CONV_BIAS };
enum { POOL_K, POOL_STRIDE, POOL_PAD };
enum { DENSE_OUT, DENSE_BIAS };

typedef struct Shape Shape;

typedef struct {
  const char *suffix; /* "weight", "bias" */
  int64_t dims[4];    /* PyTorch order */
  int ndims;
} WeightShape;

const OpInfo *op_info(OpKind k);
/* Tensor inputs of a node of kind k in the graph: the op's inputs, plus the
 * labels for softmax_cross_entropy. */
int op_graph_inputs(OpKind k);
int op_lookup(const char *name); /* a user OpKind, or -1 */
const char *const *op_names(void); /* OP_USER_COUNT names, for hints */
/* Output shape of op `k` for inputs `in` and attributes `a`; false with a
 * message in *why when the inputs do not fit. */
bool op_infer(OpKind k, const Shape *in, const int64_t *a, Shape *out,
              Pool *p, const char **why);
/* The weights op `k` creates for input `in`: their number, shapes in `w`. */
int op_weights(OpKind k, const Shape *in, const int64_t *a,
               WeightShape w[MAX_WEIGHTS_PER_NODE]);
double op_flops(OpKind k, const Shape *in, const Shape *out,
                const int64_t *a);

/* ---- graph.c: the graph IR --------------------------------------------- */

struct Shape {
  int64_t c, h, w; /* per image when batched, else the whole tensor */
};

typedef enum {
  TK_INPUT,   /* the image batch, the labels */
  TK_ACT,     /* a forward activation */
  TK_SAVED,   /* forward state a backward op needs (BN statistics, argmax) */
  TK_LOSS,    /* the loss, one float */
  TK_GRAD,    /* the gradient of an activation */
  TK_SCRATCH, /* an op's workspace (im2col columns), live for that op only */
  TK_WGRAD,   /* a weight's gradient: from its first backward writer to the
                 update that consumes it */
  TK_COUNT
} TensorKind;

typedef struct {
  Shape shape;
  TensorKind kind;
  bool batched;     /* the shape is per image: the batch multiplies it */
  bool is_int;      /* int32 elements (labels, argmax), else float */
  int producer;     /* node id, or -1 for the image and labels inputs */
  int view_of;      /* -1, or the tensor whose storage this one is (flatten) */
  int grad_of;      /* TK_GRAD: the forward tensor it is the gradient of */
  Loc loc;          /* where the value was defined */
  const char *name; /* the .net variable it was first bound to, or NULL */
  const char *label; /* what dumps call it: layer path + role */
} Tensor;

typedef struct {
  const char *name;  /* stage2.bottleneck1.conv1.weight */
  int64_t dims[4];   /* PyTorch order: (C_out, C_in, K, K), (C), (out, in) */
  int ndims;
  int64_t count;
  int first_node;    /* the node that created it */
  int uses;          /* forward nodes that read it (> 1 when shared) */
  int grad;          /* its TK_WGRAD tensor, or -1 (it does not reach the
                        loss: no gradient, no update) */
} Weight;

enum { MAX_NODE_IN = 4, MAX_NODE_EXTRA = 2 };

typedef struct {
  OpKind op;
  int in[MAX_NODE_IN];
  int nin;
  int out;                          /* tensor id, or -1 (no dX needed) */
  bool accumulate;                  /* out += result: out exists already */
  int extra[MAX_NODE_EXTRA];        /* saved state or scratch it writes */
  int nextra;
  int64_t attr[MAX_OP_PARAMS];      /* bound op parameters, spec order */
  int weight[MAX_WEIGHTS_PER_NODE]; /* weight ids, -1 if none */
  /* Backward ops: the forward node they differentiate, and per weight
   * the TK_WGRAD tensor of its gradient and whether it is added to (a
   * shared weight's later use) rather than written. An update node reads
   * in[0], the gradient of weight[0]. */
  int fwd;
  int wgrad[MAX_WEIGHTS_PER_NODE];
  bool wgrad_accumulate[MAX_WEIGHTS_PER_NODE];
  Loc loc;
  const char *path;                 /* hierarchical layer name */
} Node;

typedef struct {
  Node *nodes;
  int nnodes, cap_nodes;
  int nforward;     /* nodes [0, nforward) are the forward pass */
  Tensor *tensors;
  int ntensors, cap_tensors;
  Weight *weights;
  int nweights, cap_weights;
  const char *name; /* network name */
  int input;        /* tensor id of the image input */
  int labels;       /* tensor id of the labels (after autodiff) */
  int loss;         /* tensor id of the loss */
  int64_t classes;
  int64_t batch;    /* images per step: a compile-time constant */
  Pool *pool;
} Graph;

int graph_add_tensor(Graph *g, Shape s, int producer, Loc loc);
int graph_add_node(Graph *g, const Node *n);
int graph_add_weight(Graph *g, const char *name, const int64_t *dims,
                     int ndims, int node);
int64_t shape_elems(Shape s);
const char *shape_str(Pool *p, Shape s);
int64_t graph_param_count(const Graph *g);
double node_flops(const Graph *g, int node); /* forward, per image */
double step_flops(const Graph *g); /* forward + backward, whole batch */
/* Bytes of tensor t at the graph's batch size (before alignment). */
int64_t tensor_bytes(const Graph *g, int t);
const char *tensor_kind_name(TensorKind k);
/* Checks the invariants; reports violations to `err`; returns their count.
 * Runs after every pass in the tests and in debug builds. */
int graph_verify(const Graph *g, FILE *err);

/* ---- autodiff.c: the backward pass -------------------------------------- */

/* Appends to the forward graph what training needs: the labels, the state
 * each forward op saves for its backward op, scratch, and the backward ops
 * that compute every weight's gradient. */
void autodiff(Graph *g);

/* ---- plan.c: the memory plan -------------------------------------------- */

enum { PLAN_ALIGN = 64 };

typedef struct {
  int nsteps;         /* the schedule: node ids 0 .. nsteps-1, in order */
  int *first, *last;  /* per tensor: live interval over the schedule */
  int *storage;       /* per tensor: the tensor whose buffer it uses */
  int *inplace;       /* per tensor: the tensor it overwrites, or -1 */
  int64_t *size;      /* per buffer owner: aligned bytes */
  int64_t *offset;    /* per tensor: byte offset in the arena */
  int64_t naive_bytes;       /* every tensor its own buffer */
  int64_t lower_bound_bytes; /* the most bytes live at one step */
  int64_t planned_bytes;     /* the arena */
  int64_t param_bytes;       /* persistent: parameters */
  int64_t persistent_bytes;  /* parameters, momentum, BN stats */
  const char *strategy;      /* which placement order won */
} Plan;

void plan_memory(const Graph *g, Plan *p);
/* Proves that no two tensors whose intervals overlap share a byte; reports
 * to `err` and returns the number of conflicts. */
int plan_check(const Graph *g, const Plan *p, FILE *err);

/* Interval placement on its own, for tests: n buffers with sizes and
 * [first, last] intervals get offsets; returns the arena size. */
int64_t place_intervals(int n, const int64_t *size, const int *first,
                        const int *last, int64_t *offset, int order);

/* ---- infer.c: elaboration and shape inference -------------------------- */

/* Expands blocks and repeats of the network in `decls` (with imports
 * resolved), checks every value, and fills `g`. Returns false on errors. */
bool infer_network(Diag *d, Decl *decls, Graph *g);

/* ---- load.c: parse a file with its imports ----------------------------- */

/* Parses `path` and, transitively, every file it imports. Returns all
 * declarations (imports first), or NULL with errors in `d`. */
Decl *load_program(Diag *d, Pool *pool, const char *path);

/* ---- dump.c: the training graph and the plan, for people ----------------- */

void dump_graph(FILE *out, Diag *d, const Graph *g);
void dump_graph_json(FILE *out, const Graph *g);
void dump_dot(FILE *out, const Graph *g);
void dump_plan(FILE *out, const Graph *g, const Plan *p);
void dump_plan_json(FILE *out, const Graph *g, const Plan *p);
void dump_memory_svg(FILE *out, const Graph *g, const Plan *p);

/* ---- codegen.c: the training graph and its plan -> C -------------------- */

/* Writes the model's C file and header (which the C file includes as
 * `header_name`). */
void codegen(FILE *c_out, FILE *h_out, Diag *d, const Graph *g,
             const Plan *p, const char *source, const char *header_name);

/* ---- build.c: netc build ------------------------------------------------- */

/* Writes DIR/<network>.c and .h and, if `compile`, builds the trainer
 * DIR/<network>. Returns 0, or 1 with a message. */
int build_trainer(Diag *d, const Graph *g, const Plan *p, const char *source,
                  const char *dir, bool compile);

/* ---- report.c: what `netc check` and `netc dump shapes` print ---------- */

void print_summary(FILE *out, const Graph *g);
void dump_shapes(FILE *out, Diag *d, const Graph *g);

/* ---- load.c (continued): the whole front end behind one call ----------- */

/* Loads, parses, checks and differentiates `path` into `g` for `batch`
 * images per step. Returns 0 on success, 1 when the input has errors
 * (reported to d->out). */
int compile_front(Diag *d, Pool *pool, const char *path, int64_t batch,
                  Graph *g, Decl **decls_out);

/* The same for source text in memory named `name` (imports resolve from
 * the current directory): the fuzz target's entry. */
int compile_source(Diag *d, Pool *pool, const char *name, const char *text,
                   size_t len, int64_t batch, Graph *g);

#endif
