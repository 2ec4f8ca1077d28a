/* netc_model.h: what a netc-generated model gives the generic trainer.
 *
 * The generated <model>.c defines one `const NetcModel netc_model`: the
 * network's shapes, its parameter table, its arena size and offsets, and
 * its forward and backward functions (straight-line runtime calls at the
 * offsets netc planned). The rest of runtime/ (the trainer's commands,
 * init.c, optim.c) works on any model through this struct alone. */
#ifndef NETC_MODEL_H
#define NETC_MODEL_H

#include <stdint.h>

/* What a parameter is decides its initialization and weight decay. */
typedef enum {
  NP_CONV_WEIGHT,  /* (C_out, K, K, C_in): Kaiming normal, fan_out */
  NP_CONV_BIAS,    /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as PyTorch */
  NP_BN_WEIGHT,    /* 1 */
  NP_BN_BIAS,      /* 0 */
  NP_DENSE_WEIGHT, /* (out, in): U(-1/sqrt(in), 1/sqrt(in)), as PyTorch */
  NP_DENSE_BIAS,   /* U(-1/sqrt(in), 1/sqrt(in)) */
} NetcParamKind;

/* How a parameter's elements are ordered (the plan's WeightLayout). */
typedef enum {
  NL_VECTOR,  /* (C) */
  NL_OUT_IN,  /* (out, in), as PyTorch's dense weight */
  NL_OHWI,    /* (C_out, K, K, C_in): PyTorch's (C_out, C_in, K, K) with
                 C_in moved last */
} NetcLayout;

/* Every offset the model gives is in bytes, as the plan computed it. */
typedef struct {
  const char *name;  /* stage1.basic1.conv1.weight, as netc check names it */
  NetcParamKind kind;
  NetcLayout layout;
  int64_t offset;    /* bytes into params, and into each optimizer state
                        region and grads, which mirror it */
  int64_t count;     /* floats */
  int ndims;
  int64_t dims[4];   /* in `layout` order */
  int64_t fan_in, fan_out;
  int64_t stats[2];  /* NP_BN_WEIGHT: bytes into bn_stats of its running
                        mean and variance; else -1 */
} NetcParam;

/* One op of the inference graph (the forward pass without the loss), for
 * export (export.c). Values are numbered: 0 is the image batch, i + 1 the
 * output of layer i. */
typedef struct {
  const char *op;     /* as written in .net: conv, batchnorm, relu, add,
                         maxpool, avgpool, global_avgpool, dense, flatten */
  const char *layer;  /* stage1.basic1.conv1 */
  int nin;
  int in[2];          /* the values it reads */
  int param[2];       /* its weights (NetcParam indices), -1 if none */
  int64_t attr[6];    /* the op's parameters in its order (netc's op
                         table): conv out, k, stride, pad, bias; pools
                         k, stride, pad; dense out, bias */
  int64_t c, h, w;    /* its output, per image */
  const char *onnx;   /* the ONNX op it is one to one (inputs as they are,
                         no attributes, any rank), or NULL: the exporter
                         writes it by hand (the op table's column) */
} NetcLayer;

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_COUNT } NetcOptKind;

typedef struct NetcModel NetcModel;

/* One op of the training step, for profiles and for finding the op that
 * first produced a NaN or an infinity. */
typedef struct {
  const char *layer; /* stage1.basic1.conv1 */
  const char *op;    /* conv, conv_backward, ... */
  int backward;
  double flops;      /* forward ops: FLOPs for the batch */
  double bytes;      /* bytes it reads and writes for the batch, each
                        operand once (compiler/traffic.c's model) */
  const char *where; /* its .net source: "models/resnet18.net:12" */
  /* What it writes: a float tensor in the arena (bytes offset, -1 if
   * none) and the gradients of up to two parameters (arena bytes offsets,
   * -1 if none). */
  int64_t out_offset, out_floats;
  int64_t grad_offset[2], grad_floats[2];
} NetcOp;

/* One model's memory, exactly as the plan laid it out: the parameter
 * region, the batchnorm statistics region and the arena (the optimizer
 * adds its state region). Regions are bytes; netc_param() and friends give
 * typed pointers. */
typedef struct NetcState NetcState;
struct NetcState {
  const NetcModel *model;
  unsigned char *params;
  /* NULL, or (netc_state_keep_grads) where every parameter's final
   * gradient is copied: for compare and tests. Training does not need it:
   * a gradient lives in the arena until its parameter's update. */
  unsigned char *grads;
  /* Called by backward with each parameter's gradient as soon as it is
   * final (optim_attach sets it to the optimizer's step); NULL: none. */
  void (*on_grad)(NetcState *s, int param, float *grad);
  void *user;             /* for on_grad */
  unsigned char *bn_stats; /* batchnorm running statistics (NetcParam.stats) */
  unsigned char *arena;   /* every activation, gradient, scratch, workspace */
  float loss;             /* of the last forward */
  float label_smoothing;  /* the loss's target: (1 - e) onehot + e / C */
  float bn_momentum, bn_eps;
  int profile;            /* NETC_PROFILE_TIME | NETC_PROFILE_FINITE */
  double *prof_seconds;   /* per op of the model */
  double prof_last;
  int first_nonfinite;    /* with NETC_PROFILE_FINITE: the first op whose
                             output held a NaN or an Inf, or -1 */
  /* Gradient accumulation (train --accumulate K) and data parallelism:
   * the backward pass of micro-batch `micro` (0 .. accumulate-1) adds its
   * gradients into `accum`, and only the last one's are reduced over the
   * processes and applied. loss_scale = 1 / (processes x accumulate), so
   * that the summed gradient is the global batch's mean (netc_state_new:
   * 1, 1, 0). */
  int accumulate, micro;
  unsigned char *accum;   /* netc_accum_bytes(model); NULL when K = 1 */
  float loss_scale;
  double comm_seconds;    /* time spent waiting for reductions, summed */
  /* Dropout's masks in the next training forward and its backward: the
   * trainer sets it per step and micro-batch (rt_step_key). */
  uint64_t step_key;
};

/* s->profile bits: the generated code calls netc_profile_mark (profile.c)
 * after every op when any is set. TIME adds the op's time to prof_seconds[op]; FINITE
 * checks what the op wrote (slow: for diagnosis after a non-finite loss or
 * gradient). */
enum { NETC_PROFILE_TIME = 1, NETC_PROFILE_FINITE = 2 };
/* Sets s->profile to `bits`, allocating the per-op times first (a step
 * allocates nothing); -1 when out of memory. */
int netc_profile_enable(NetcState *s, int bits);
void netc_profile_start(NetcState *s);
void netc_profile_mark(NetcState *s, int op);
/* Whether n floats are all finite. */
int netc_all_finite(const float *x, int64_t n);
/* The generated backward calls this when parameter `param`'s gradient (in
 * the arena) is final: it goes to s->grads if kept, then to s->on_grad. */
void netc_update(NetcState *s, int param, float *grad);
/* dst = src when `first`, else dst += src: a micro-batch's gradients
 * into the accumulation region, and that region into the last ones. */
void netc_accumulate(float *dst, const float *src, int64_t n, int first);

/* A bucket of weight gradients (netc build --mpi): bytes into the arena
 * where the plan laid its gradients out contiguously, its floats, and its
 * place in the accumulation region. The generated backward calls
 * netc_bucket_start where the bucket's last gradient is final (a
 * non-blocking sum over the processes begins), netc_comm_progress between
 * ops, and netc_bucket_wait before the bucket's updates (runtime/trainer/comm.c). */
typedef struct {
  int64_t offset, floats, accum_offset;
} NetcBucket;
void netc_bucket_start(NetcState *s, int bucket, float *grads);
void netc_bucket_wait(NetcState *s, int bucket, float *grads);
void netc_comm_progress(NetcState *s);

struct NetcModel {
  const char *name;       /* the network's name */
  const char *source;     /* the .net file it was compiled from */
  const char *netc_version;
  int batch;              /* images per step, fixed at compile time */
  int in_c, in_h, in_w;   /* one image */
  int classes;
  int nparam_tensors;
  const NetcParam *params;
  int64_t param_bytes;    /* the parameter region (and grads) */
  int64_t stats_bytes;    /* the batchnorm statistics region */
  int64_t optimizer_bytes[OPT_COUNT]; /* each optimizer's state region */
  int64_t arena_bytes;
  int64_t input_offset;   /* bytes into the arena: the NHWC image batch */
  int64_t labels_offset;  /* int32 per image */
  int64_t logits_offset;  /* (batch, classes) floats, after forward */
  int64_t probs_offset;   /* softmax of the logits, after forward */
  int nlayers;            /* the inference graph, for export */
  const NetcLayer *layers;
  int logits_value;       /* the value the loss reads: the logits */
  int nops;               /* forward and backward ops, schedule order */
  const NetcOp *ops;
  double flops_per_step;  /* forward + backward FLOPs of one batch */
  double bytes_per_step;  /* the ops' bytes summed */
  int isa;                /* the RT_ISA_* its kernels were built for */
  const char *conv_algos; /* how many conv passes use each algorithm:
                             "fwd:direct=19,gemm=1;bwd:direct=19,gemm=1" */
  int nbuckets;           /* netc build --mpi: the gradient buckets, in the
                             order backward reduces them; else 0 */
  const NetcBucket *buckets;
  uint64_t plan_hash;     /* of the schedule, offsets and buckets: every
                             process of a run must have the same */
  /* training = 1: batch statistics (and running statistics updated);
   * 0: running statistics. Sets state->loss. */
  void (*forward)(NetcState *s, int training);
  /* The backward pass: hands each parameter's gradient to netc_update as
   * soon as it is final, which (optim_attach) updates the parameter there:
   * a step is not atomic (step.h says what a failed one has updated).
   * Every parameter the loss depends on gets exactly one call. */
  void (*backward)(NetcState *s);
};

extern const NetcModel netc_model;

/* Typed views of a parameter's bytes. */
static inline float *netc_param(const NetcState *s, int i) {
  return (float *)(s->params + s->model->params[i].offset);
}
static inline float *netc_grad(const NetcState *s, int i) {
  return (float *)(s->grads + s->model->params[i].offset);
}
/* Running mean (which = 0) or variance (1) of batchnorm weight i. */
static inline float *netc_bn_stat(const NetcState *s, int i, int which) {
  return (float *)(s->bn_stats + s->model->params[i].stats[which]);
}

/* ---- init.c ---- */
/* Allocates the state (64-byte aligned): the parameter and statistics
 * regions and the arena, of the plan's sizes; NULL when out of memory. */
NetcState *netc_state_new(const NetcModel *m);
/* The plan-owned memory allocated so far by this process (netc_state_new,
 * optim_init; not the keep_grads copy): what `info` reports. */
int64_t netc_allocated_bytes(void);
/* 64-byte-aligned zeroed memory, counted in netc_allocated_bytes; NULL
 * for 0 bytes or when out of memory. */
void *netc_alloc(int64_t bytes);
/* The accumulation region's bytes: the buckets' floats, or without
 * buckets a mirror of the parameter region. */
int64_t netc_accum_bytes(const NetcModel *m);
/* Sets up K micro-batches per step (allocates s->accum when K > 1) and the
 * loss scale for `procs` processes; -1 when out of memory. */
int netc_state_accumulate(NetcState *s, int k, int procs);
/* Allocates s->grads (zeros), so that backward keeps a copy of every
 * gradient; -1 when out of memory. */
int netc_state_keep_grads(NetcState *s);
void netc_state_free(NetcState *s);
/* torchvision's initialization, from `seed`; running mean 0, variance 1. */
void netc_init_params(NetcState *s, uint64_t seed);

/* A small seeded generator (xoshiro256**), for initialization and data. */
typedef struct {
  uint64_t s[4];
} NetcRng;
void rng_seed(NetcRng *r, uint64_t seed);
uint64_t rng_next(NetcRng *r);
double rng_uniform(NetcRng *r);  /* [0, 1) */
double rng_normal(NetcRng *r);   /* mean 0, std 1 */

/* ---- optim.c ---- */

typedef struct {
  NetcOptKind kind;
  float lr, momentum, weight_decay;
  int nesterov;
  float beta1, beta2, eps;   /* Adam, AdamW */
  int decay_bn_and_bias;     /* 0: no weight decay on batchnorm and biases */
  int64_t step;              /* updates done */
  /* The state region (model->optimizer_bytes[kind]): SGD's momentum, or
   * Adam's first then second moment; each mirrors the parameter region. */
  unsigned char *state;
  unsigned char *m1, *m2;    /* momentum / first moment; second moment */
  int nonfinite;             /* since optim_begin: the first parameter whose
                                gradient was not finite, or -1 */
} NetcOptimizer;

/* Allocates the optimizer state for model m (zeros). */
int optim_init(NetcOptimizer *o, const NetcModel *m);
void optim_free(NetcOptimizer *o);
/* Makes s's backward pass update each parameter with o as soon as its
 * gradient is final; o->nonfinite then names the first parameter whose
 * gradient was not finite, after which the pass updates nothing. The one
 * training step built on this, and what a failed step has updated, is
 * train_step (step.h). */
void optim_attach(NetcOptimizer *o, NetcState *s);
void optim_begin(NetcOptimizer *o);
/* One update of every parameter from s->grads (netc_state_keep_grads), as
 * torch.optim does it: for a step whose gradients were kept, not applied. */
void optim_step(NetcOptimizer *o, NetcState *s);

#endif
