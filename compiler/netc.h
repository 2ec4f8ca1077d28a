/* netc.h: the internal header of the netc compiler (infer.h is private to
 * the four files of elaboration).
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
#include <string.h>

#include "kernels/netc_rt.h" /* ConvShape, CONV_*: the runtime's shapes */

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

/* A node's tensor inputs and extra outputs (saved state, scratch). */
enum { MAX_NODE_IN = 5, MAX_NODE_EXTRA = 3 };

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
  EX_REAL,   /* 0.25, 1e-3 */
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
  double rval;                 /* EX_REAL */
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
  const char *defined; /* "-D name=value" when the command line set it */
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

/* Every op, user ops first (they may be written in a .net file), then the
 * ops the compiler makes (autodiff.c). Everything netc knows about an op
 * is its row in ops.c's table (OpInfo below); adding an op means a row
 * there, its kernel pair in runtime/ and its reference (docs/architecture.md
 * lists the steps). */
typedef enum {
  OP_CONV, OP_BATCHNORM, OP_RELU, OP_ADD, OP_MAXPOOL, OP_AVGPOOL,
  OP_GLOBAL_AVGPOOL, OP_DENSE, OP_FLATTEN, OP_SOFTMAX_XENT, OP_SIGMOID,
  OP_SCALE, OP_DROPOUT,
  OP_CONV_BWD, /* the first internal op */
  OP_BATCHNORM_BWD, OP_RELU_BWD, OP_MAXPOOL_BWD, OP_AVGPOOL_BWD,
  OP_GLOBAL_AVGPOOL_BWD, OP_DENSE_BWD, OP_SOFTMAX_XENT_BWD, OP_SIGMOID_BWD,
  OP_SCALE_BWD, OP_SCALE_BWD_S, OP_DROPOUT_BWD,
  OP_GRAD_ADD,
  OP_BN_RELU_RECOMPUTE, OP_UPDATE, OP_ALLREDUCE, OP_ALLREDUCE_WAIT,
  OP_COUNT,
  OP_PASS, /* backward rule: the gradient passes through unchanged */
  OP_NONE, /* backward rule of a backward op */
} OpKind;

#define OP_USER_COUNT ((int)OP_CONV_BWD) /* user ops come first */

enum {
  MAX_OP_PARAMS = 6,
  MAX_WEIGHTS_PER_NODE = 2,
  MAX_KERNEL_ARGS = 14,
};

typedef struct {
  const char *name;
  bool is_bool;
  bool is_real;      /* a number (dropout's p): the attribute holds its
                        double's bits (attr_real) */
  double rdef;       /* its default */
  bool required;
  int64_t def;       /* default value when !required and def_from < 0 */
  int def_from;      /* index of the parameter whose value is the default,
                        or -1 */
} OpParam;

/* A real parameter's value from its attribute, and back. */
static inline double attr_real(int64_t a) {
  double r;
  memcpy(&r, &a, sizeof r);
  return r;
}
static inline int64_t real_attr(double r) {
  int64_t a;
  memcpy(&a, &r, sizeof a);
  return a;
}

/* Attribute indices, in parameter order. */
enum { CONV_OUT, CONV_K, CONV_STRIDE, CONV_PAD, CONV_BIAS, CONV_GROUPS };
enum { POOL_K, POOL_STRIDE, POOL_PAD };
enum { DENSE_OUT, DENSE_BIAS };

typedef struct Shape Shape;

/* How a weight is laid out in the persistent parameter region: a tag the
 * plan records per weight, so a kernel can ask for its own layout. */
typedef enum {
  WL_VECTOR,    /* (C): biases, batchnorm's gamma and beta */
  WL_OUT_IN,    /* (out, in): a dense weight, as PyTorch */
  WL_OHWI,      /* (C_out, K, K, C_in): a conv weight, C_in fastest; from
                   PyTorch's (C_out, C_in, K, K) */
  WL_COUNT
} WeightLayout;

typedef struct {
  const char *suffix;  /* "weight", "bias" */
  int64_t dims[4];     /* PyTorch order */
  int ndims;
} WeightShape;

/* A tensor an op's node makes besides its output: state its backward op
 * needs (TK_SAVED), or scratch live for that op only (TK_SCRATCH). */
typedef enum {
  XS_CHANNEL,  /* C x 1 x 1 of input 0, not batched: batch statistics */
  XS_OUTPUT,   /* the output's shape */
  XS_INPUT,    /* input 0's shape */
  XS_CONV_WORK, /* a conv pass's workspace (conv_work_floats): im2col
                   columns (C*K*K) x OH x OW per image for CONV_GEMM,
                   packed weights and tables, unbatched, for CONV_DIRECT */
  XS_BN_WORK,  /* batchnorm's workspace (BATCHNORM_WORK_BYTES), unbatched */
} ExtraShape;

typedef struct {
  const char *suffix;  /* the tensor's label: <layer>.<suffix> */
  ExtraShape shape;
  bool scratch;        /* TK_SCRATCH, else TK_SAVED */
  bool is_int;
  bool if_work;        /* only if the conv pass needs a workspace */
  bool backward;       /* the workspace of the backward pass */
} ExtraSpec;

/* What a backward op reads, in order (autodiff.c builds its inputs). */
typedef enum {
  BI_DY,       /* the gradient of the forward op's output */
  BI_X,        /* the forward op's input 0 */
  BI_X1,       /* its input 1 (scale's s) */
  BI_X_KEPT,   /* input 0, or its recomputed copy (relu(batchnorm(.))) */
  BI_Y_KEPT,   /* the output, or its recomputed copy */
  BI_SAVED0,   /* the forward op's first extra tensor */
  BI_SAVED1,
  BI_LABELS,   /* the labels (softmax_cross_entropy's input 1) */
} BackwardInput;

/* FLOPs of a backward op, for `bench` and step_flops(). */
typedef enum {
  BF_NONE,     /* not counted: grad_add, update */
  BF_FORWARD,  /* as many as its forward op */
  BF_GEMMS,    /* one forward-sized GEMM for dW, one more for dX if any */
} BackwardFlops;

/* The arguments of a kernel call, as codegen.c prints them. A tensor is a
 * typed pointer into the arena (NULL when absent), a weight a pointer into
 * the parameters; SHAPE is the layer's const shape struct. */
typedef enum {
  KA_END,
  KA_OUT,            /* the node's output */
  KA_IN0, KA_IN1, KA_IN2, KA_IN3, KA_IN4,
  KA_EXTRA0, KA_EXTRA1, KA_EXTRA2,
  KA_W0, KA_W1,      /* the node's (or its forward op's) weights */
  KA_WGRAD0, KA_WGRAD1,
  KA_RUN_MEAN, KA_RUN_VAR, /* batchnorm running statistics of weight 0 */
  KA_SHAPE,          /* &<layer shape struct> */
  KA_ACC,            /* NETC_WRITE or NETC_ADD for the output */
  KA_ACC_W,          /* the same for the weight gradients */
  KA_BN_MODE,        /* s->bn_momentum, s->bn_eps, training */
  KA_STATE,          /* s */
  KA_PARAM,          /* the parameter index of weight 0 (a named enum) */
  KA_BUCKET,         /* a gradient bucket's index (attr[0], comm.c) */
  KA_LOSS_SCALE,     /* s->loss_scale: the loss gradient's share of the
                        global batch (data-parallel runs, accumulation) */
  KA_SMOOTHING,      /* s->label_smoothing (train --label-smoothing) */
  KA_STEP_KEY,       /* s->step_key: dropout's masks of this step */
  KA_TRAINING,       /* forward: 1 training, 0 evaluation */
} KernelArg;

/* The runtime's shape structs (runtime/kernels/netc_rt.h). */
typedef enum {
  SK_NONE, SK_CONV, SK_POOL, SK_BN, SK_DENSE, SK_GAP, SK_XENT, SK_ELT,
  SK_DROP, SK_COUNT
} ShapeKind;

typedef struct {
  const char *fn;       /* the runtime function, NULL: nothing to call */
  const char *result;   /* an lvalue its result goes to, or NULL */
  KernelArg args[MAX_KERNEL_ARGS]; /* up to KA_END */
} KernelCall;

typedef struct {
  const char *name;
  const char *doc;
  int ninputs;        /* tensor inputs as written (user ops) or read */
  bool takes_labels;  /* the graph adds the labels as one more input */
  OpParam params[MAX_OP_PARAMS];
  int nparams;
  bool user;          /* may be written in a .net file */
  OpKind backward;    /* the op that differentiates it: a kind, PASS, NONE;
                         it gives input 0's gradient */
  OpKind backward1;   /* the op that gives input 1's gradient (scale's s),
                         or 0 (a user op: none); see op_backward_of */
  /* Output shape of a user op for inputs `in` and attributes `a`; false
   * with a message in *why when the inputs do not fit. NULL: the shape of
   * input 0 (batchnorm, relu). */
  bool (*infer)(const Shape *in, const int64_t *a, Shape *out, Pool *p,
                const char **why);
  /* The weights it creates for input `in`: their number, shapes in `w`. */
  int (*weights)(const Shape *in, const int64_t *a,
                 WeightShape w[MAX_WEIGHTS_PER_NODE]);
  WeightLayout layout[MAX_WEIGHTS_PER_NODE];
  /* How the trainer initializes each weight (a NetcParamKind of
   * runtime/model/netc_model.h), and the fans its rule uses. */
  const char *init[MAX_WEIGHTS_PER_NODE];
  void (*fans)(const Shape *in, const int64_t *a, int64_t *fan_in,
               int64_t *fan_out);
  /* Forward FLOPs per image (NULL: none); backward ops: BackwardFlops. */
  double (*flops)(const Shape *in, const Shape *out, const int64_t *a);
  BackwardFlops bwd_flops;
  /* Tensors it makes besides its output, in order. */
  ExtraSpec extras[MAX_NODE_EXTRA];
  int nextras;
  BackwardInput bwd_in[MAX_NODE_IN];
  int nbwd_in;
  unsigned inplace;   /* bit j: the output may overwrite input j */
  bool view;          /* the output is input 0's bytes, seen reshaped */
  bool loss;          /* the output is the loss */
  ShapeKind shape;    /* the shape struct its kernel takes */
  bool own_shape;     /* backward ops: a shape struct of its own (grad_add),
                         else its forward op's */
  KernelCall kernel;
  /* The op with a relu folded in (fuse.c), when it can take one: its name
   * in profiles, its kernel, and its tensor inputs (a backward op reads
   * the relu's output too, for the mask). */
  const char *fused_name;
  KernelCall fused_kernel;
  int fused_inputs;
  /* The ONNX op a layer of it becomes one to one (its inputs, in order,
   * no attributes, any rank: Relu, Add), for the exporter; NULL when
   * runtime/formats/onnx.c writes it by hand (conv, pools) or not at all. */
  const char *onnx;
} OpInfo;

const OpInfo *op_info(OpKind k);
/* Tensor inputs of a node of kind k in the graph (with the labels). */
int op_graph_inputs(OpKind k);
int op_lookup(const char *name); /* a user OpKind, or -1 */
/* The backward op that gives the gradient of input j of an op of kind k,
 * when it has one of its own beside input 0's (`backward1`); else OP_NONE
 * (input 0's is `backward`). */
OpKind op_backward_of(OpKind k, int j);
/* Stops netc with "internal error: <what> does not handle op <name>": for
 * a switch over ops that meets an op it was not written for. */
_Noreturn void op_unhandled(const char *what, OpKind k);
/* The rules of the row, with their defaults. */
bool op_infer(OpKind k, const Shape *in, const int64_t *a, Shape *out,
              Pool *p, const char **why);
int op_weights(OpKind k, const Shape *in, const int64_t *a,
               WeightShape w[MAX_WEIGHTS_PER_NODE]);
double op_flops(OpKind k, const Shape *in, const Shape *out,
                const int64_t *a);
typedef struct Node Node;
/* The shape of extra tensor e of a node whose forward node is f (input 0
 * of shape `in`, output `out`) at `batch` images per step; *batched
 * says whether the batch multiplies it. */
Shape op_extra_shape(const ExtraSpec *e, Shape in, Shape out, const Node *f,
                     int64_t batch, bool *batched);

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
  int view_of;      /* -1, or the tensor whose storage this one is (flatten;
                       a relu's output or gradient that fuse.c folded) */
  int grad_of;      /* TK_GRAD: the forward tensor it is the gradient of */
  int bucket;       /* TK_WGRAD in a data-parallel build: the bucket tensor
                       (comm.c) whose bytes it is part of, else -1 */
  int64_t bucket_offset; /* and where in the bucket it starts, in bytes */
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


/* fuse.c's folding of a relu into the op next to it. */
typedef enum {
  FUSE_NONE,
  FUSE_RELU,   /* its kernel also does a relu: its row's fused_kernel */
  FUSE_FOLDED, /* a relu (or its backward) that a neighbour computes: no
                  call of its own, and no traffic */
} Fuse;

struct Node {
  OpKind op;
  Fuse fuse;
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
  /* conv nodes: how each pass (CONV_PASS_FWD, _DX, _DW) is computed,
   * a CONV_* of runtime/kernels/netc_rt.h (algo.c chooses). */
  int algo[CONV_PASSES];
  Loc loc;
  const char *path;                 /* hierarchical layer name */
};

/* A node's own row or, with a relu folded in (FUSE_RELU), the fused one:
 * the name it has in dumps and profiles, the call it becomes, and the
 * tensor inputs it reads (ops.c). */
const char *node_op_name(const Node *n);
const KernelCall *node_kernel(const Node *n);
int node_ninputs(const Node *n);

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
  /* Data-parallel builds (comm.c): the gradient buckets, each a TK_WGRAD
   * tensor, in the order they become final; 0 otherwise. */
  int nbuckets;
  int *bucket_tensor;
  int64_t bucket_bytes; /* the size comm.c aimed for */
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

/* ---- traffic.c: the bytes a step moves, per op (the model is there) ---- */

typedef struct {
  int64_t read, written;
} Traffic;
Traffic node_traffic(const Graph *g, int node); /* for the whole batch */
Traffic step_traffic(const Graph *g);
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

/* ---- fuse.c: relus folded into their neighbours ---------------------- */

/* Folds relu(batchnorm) and relu(add) into the batchnorm's or add's
 * kernel, and relu_backward into the batchnorm_backward after it; returns
 * how many relus (forward and backward) it folded. */
int fuse_relus(Graph *g);

/* ---- comm.c: gradient buckets and their allreduce (build --mpi) -------- */

/* The bucket size netc picks for g: about an eighth of the parameter
 * bytes, within 1..32 MiB (comm.c says why). */
int64_t comm_default_bucket_bytes(const Graph *g);
/* Groups the weight gradients of the training graph into buckets of about
 * `bucket_bytes`, in the order they become final, and inserts for each an
 * allreduce (started where its last gradient is final) and an
 * allreduce_wait, before which none of its weights is updated. */
void insert_allreduce(Graph *g, int64_t bucket_bytes);
/* The weights whose gradients bucket b holds, in order: their count, and
 * their ids in w (which must hold g->nweights). */
int bucket_weights(const Graph *g, int b, int *w);

/* ---- algo.c: how each convolution is computed ----------------------- */

/* Who chooses: the cost model (CONV_POLICY_AUTO), or the user, one
 * algorithm for each pass of every layer (netc build --conv direct, or
 * --conv direct,gemm,direct for the forward, dX and dW passes). */
enum { CONV_POLICY_AUTO = -1 };
#define CONV_POLICY(fwd, dx, dw) ((fwd) | (dx) << 8 | (dw) << 16)

/* ---- tune.c: tuning files and the per-machine cache ----------------- */

/* A conv shape (N H W C OC K stride pad), its passes' algorithms, and the
 * times behind them (the line's comment; NULL: none). */
typedef struct {
  int64_t shape[8];
  int algo[CONV_PASSES];
  const char *note;
} TuneEntry;

typedef struct {
  TuneEntry *entries;
  int n;
  const char *machine; /* the machine key it was measured with, or NULL */
} Tuning;

/* Reads a tuning file into t; false with a message naming file:line. */
bool tuning_load(const char *path, Pool *pool, Tuning *t);
/* The algorithms t lists for shape s, or NULL (t may be NULL). */
const int *tuning_find(const Tuning *t, const ConvShape *s);

/* What netc build measures with: the netc-tune program, the trainer's
 * threads (0: the runtime's default) and ISA, and how long it may take. */
typedef struct {
  const char *tuner;
  int threads;
  int isa;
  double budget; /* seconds; < 0: no limit, 0: look up only */
  bool fresh;    /* --tune: measure every shape anew */
} TuneRequest;

/* This machine's measured algorithms for g's conv shapes: those in the
 * cache ($XDG_CACHE_HOME/netc), and the ones it lacks measured now,
 * heaviest first, within r->budget and added to it. Shapes not measured
 * are absent (the cost model's). 0, or 1 with a message when r->fresh
 * and netc-tune fails; otherwise a failure is a note. */
int tuning_for_machine(const Graph *g, const TuneRequest *r, Tuning *t);
/* Writes the algorithms g's convs were given, with measured's times as
 * comments, to path: a tuning file that --tuning builds the same C with.
 * 0, or 1 with a message. */
int tuning_write_choices(const Graph *g, const Tuning *measured,
                         const char *path);

/* How the convolution algorithms are chosen: the policy (a CONV_POLICY of
 * the user's, or CONV_POLICY_AUTO), the tuning file (NULL: none), and the
 * instruction set the trainer is built for (RT_ISA_*: netc's kernels
 * there are twice as wide on AVX-512, which moves the cost model's
 * choices). */
typedef struct {
  int policy;
  const Tuning *tuning;
  int isa;
} ConvChoice;

/* Sets algo[] of every conv node of the forward graph: by the policy, or
 * for CONV_POLICY_AUTO by the tuning (if given and it lists the layer's
 * shape), else by the cost model for c->isa. */
void choose_conv_algos(Graph *g, const ConvChoice *c);
/* The instruction set of this machine, the default target. */
int conv_native_isa(void);
const char *conv_algo_name(int algo);
/* The policy "auto", "gemm", "direct" or "FWD,DX,DW" names; -2 if
 * none. */
int conv_policy_lookup(const char *name);
/* The runtime's ConvShape of conv node i (forward or backward). */
ConvShape node_conv_shape(const Graph *g, int i);

/* ---- plan.c: the memory plan -------------------------------------------- */

enum { PLAN_ALIGN = 64 };

/* Optimizers by the state they keep: SGD one momentum buffer per
 * parameter, Adam and AdamW two moments. */
enum { PLAN_SGD, PLAN_ADAM, PLAN_OPTIMIZERS };

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
  const char *strategy;      /* which placement order won */
  /* The persistent block, in bytes. */
  int64_t *woffset;          /* per weight: into the parameter region (and
                                into each optimizer state region) */
  WeightLayout *wlayout;     /* per weight: how its elements are ordered */
  int64_t (*wdims)[4];       /* per weight: its dims in that layout */
  int64_t *stats_offset;     /* per weight: a batchnorm gamma's running
                                mean in the statistics region, else -1 */
  int64_t *stats_var_offset; /* and its running variance, else -1 */
  int64_t param_bytes;       /* the parameter region */
  int64_t stats_bytes;       /* the batchnorm statistics region */
  int64_t optimizer_bytes[PLAN_OPTIMIZERS]; /* each optimizer's state */
  int64_t persistent_bytes;  /* parameters, statistics and SGD's state */
} Plan;

const char *weight_layout_name(WeightLayout l);

void plan_memory(const Graph *g, Plan *p);
/* Proves that no two tensors whose intervals overlap share a byte; reports
 * to `err` and returns the number of conflicts. */
int plan_check(const Graph *g, const Plan *p, FILE *err);

/* Interval placement on its own, for tests: n buffers with sizes and
 * [first, last] intervals get offsets; returns the arena size. */
int64_t place_intervals(int n, const int64_t *size, const int *first,
                        const int *last, int64_t *offset, int order);

/* ---- infer*.c: elaboration and shape inference ------------------------- */

/* Expands blocks and repeats of the network in `decls` (with imports
 * resolved), checks every value, and fills `g`. Returns false on errors. */
bool infer_network(Diag *d, Decl *decls, Graph *g);

/* ---- defines.c: -D name=value -------------------------------------------- */

/* A network argument set on the command line: -D classes=10. */
typedef struct {
  const char *name, *value;
} Define;

/* Replaces the defaults of the main file's network parameters by the n
 * values in `defs` (an integer, true or false, or a shape such as
 * 3x32x32). An unknown name or a value that is none of those is an error
 * at the network's header line. Returns false on errors. */
bool apply_defines(Diag *d, Pool *pool, Decl *decls, const Define *defs,
                   int n);

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

/* Writes DIR/<network>.c and .h and, if bo->compile, builds the trainer
 * DIR/<network>. Returns 0, or 1 with a message. */
typedef struct {
  bool compile;  /* else write the sources only */
  bool debug;    /* -O0 -g3 */
  bool portable; /* -march=x86-64-v3 and the AVX2 kernels, not this
                    machine's (-march=native) */
  bool mpi;      /* link the MPI runtime (mpicc, libnetcrt_mpi.a) */
} BuildOptions;

int build_trainer(Diag *d, const Graph *g, const Plan *p, const char *source,
                  const char *dir, const BuildOptions *bo);
/* The netc-tune program that came with this netc's runtime. */
const char *netc_tuner(Pool *pool);

/* ---- report.c: what `netc check` and `netc dump shapes` print ---------- */

void print_summary(FILE *out, const Graph *g);
void dump_shapes(FILE *out, Diag *d, const Graph *g);

/* ---- load.c (continued): the whole front end behind one call ----------- */

/* Loads, parses, checks and differentiates `path` into `g` for `batch`
 * images per step. Returns 0 on success, 1 when the input has errors
 * (reported to d->out). */
int compile_front(Diag *d, Pool *pool, const char *path, int64_t batch,
                  Graph *g, Decl **decls_out);

/* The same with the n network arguments of `defs` (-D) and the
 * convolution algorithms chosen as `conv` says (compile_front: the cost
 * model for AVX2, as --portable builds). */
int compile_front_conv(Diag *d, Pool *pool, const char *path, int64_t batch,
                       const Define *defs, int n, const ConvChoice *conv,
                       Graph *g);

/* The same for source text in memory named `name` (imports resolve from
 * the current directory): the fuzz target's entry. */
int compile_source(Diag *d, Pool *pool, const char *name, const char *text,
                   size_t len, int64_t batch, Graph *g);

#endif
