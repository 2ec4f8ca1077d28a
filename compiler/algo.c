/* algo.c: how each convolution pass is computed, chosen per layer at
 * compile time (after infer.c, before autodiff.c sizes the workspaces).
 *
 * The candidates are the runtime's CONV_* (runtime/kernels/netc_rt.h):
 * - CONV_GEMM: im2col + OpenBLAS sgemm; the reference and the fallback;
 * - CONV_DIRECT: netc's register-blocked kernel, which skips padding taps
 *   and packs its weights itself (runtime/kernels/conv_direct.c);
 * - CONV_WINOGRAD, CONV_WINOGRAD4: F(2x2, 3x3) and F(4x4, 3x3) for 3x3
 *   stride-1 layers, as 16 or 36 small GEMMs in netc's tiles between
 *   transforms (runtime/kernels/conv_winograd.c); asked of another layer,
 *   a pass gets GEMM.
 * The cost model below says which one wins for a layer's shape; it was
 * fitted to per-layer measurements of both (docs/kernels.md). */
#include <string.h>

#include "netc.h"

static const char *const names[CONV_ALGO_COUNT] = {
    [CONV_GEMM] = "gemm", [CONV_DIRECT] = "direct",
    [CONV_WINOGRAD] = "winograd", [CONV_WINOGRAD4] = "winograd4"};

const char *conv_algo_name(int algo) {
  return algo >= 0 && algo < CONV_ALGO_COUNT ? names[algo] : "?";
}

static int algo_lookup(const char *name, size_t len) {
  for (int a = 0; a < CONV_ALGO_COUNT; a++)
    if (strlen(names[a]) == len && !strncmp(name, names[a], len))
      return a;
  return -1;
}

int conv_policy_lookup(const char *name) {
  if (!strcmp(name, "auto"))
    return CONV_POLICY_AUTO;
  int a[CONV_PASSES], n = 0;
  for (const char *p = name;; n++) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (n == CONV_PASSES || (a[n] = algo_lookup(p, len)) < 0)
      return -2;
    if (!comma)
      break;
    p = comma + 1;
  }
  if (n == 0) /* one name: every pass */
    return CONV_POLICY(a[0], a[0], a[0]);
  return n == 2 ? CONV_POLICY(a[0], a[1], a[2]) : -2;
}

ConvShape node_conv_shape(const Graph *g, int i) {
  const Node *n = &g->nodes[i];
  if (op_info(n->op)->shape != SK_CONV)
    op_unhandled("node_conv_shape", n->op);
  const Node *f = n->op == OP_CONV ? n : &g->nodes[n->fwd];
  Shape in = g->tensors[f->in[0]].shape, out = g->tensors[f->out].shape;
  return (ConvShape){.N = (int)g->batch, .H = (int)in.h, .W = (int)in.w,
                     .C = (int)in.c, .OC = (int)out.c,
                     .K = (int)f->attr[CONV_K],
                     .stride = (int)f->attr[CONV_STRIDE],
                     .pad = (int)f->attr[CONV_PAD], .OH = (int)out.h,
                     .OW = (int)out.w, .algo = f->algo[CONV_PASS_FWD],
                     .algo_dx = f->algo[CONV_PASS_DX],
                     .algo_dw = f->algo[CONV_PASS_DW],
                     .groups = (int)f->attr[CONV_GROUPS]};
}

/* The cost model: rules fitted to per-layer times of every algorithm on
 * every conv shape of ResNet-18 and ResNet-50 at 64x64 and batch 64, two
 * threads (make bench-algos; docs/kernels.md has the tables): on Zen 3
 * (AVX2, OpenBLAS's Haswell kernels) and on a Sapphire Rapids Xeon
 * (AVX-512, where Debian's OpenBLAS runs its SSE3 Prescott kernels).
 * - Winograd, where it applies (3x3, stride 1): F(4x4) wins all three
 *   passes on 16x16 maps (1.2x-1.9x over F(2x2) and direct on both ISAs);
 *   on 8x8 the two tie in the forward pass and dX, where F(2x2), the more
 *   accurate, is kept, and F(4x4) wins dW; on 4x4 maps Winograd's tiles
 *   are mostly padding (F(4x4) wins AVX2's dW alone), on 2x2 always;
 *   with under 16 channels in or out, direct.
 * - AVX-512: netc's 12x32 tiles beat OpenBLAS everywhere else, by 3x-4x
 *   where OpenBLAS falls back to SSE3, and on every 1x1 layer. (A 1x1
 *   layer runs as GEMMs over the pixels in netc's tiles, conv_tiles.c's
 *   pointwise kernels; the RGB stem's dW in its own kernel.)
 * - AVX2, forward: the direct kernel wins on every KxK layer, the 7x7
 *   stem on RGB included, and on the 1x1 layers (its pointwise GEMM)
 *   but those on maps of 4 pixels or with 1024 channels in, where
 *   OpenBLAS ties or wins (ResNet-50 at batch 64 on a Zen 4 EPYC with
 *   AVX-512 hidden: 64 -> 256 on 16x16, 3.5 ms against 6.1).
 * - AVX2, dX: direct wins at stride 1 (it is the forward tiles on the
 *   flipped kernel; the pointwise GEMM for 1x1); at stride 2 its taps
 *   scatter, and GEMM wins below 16x16 and on every 1x1.
 * - AVX2, dW: GEMM ties or wins everywhere else but the 2x2 maps, where
 *   the direct kernel's walk across the batch beats a GEMM of 256 rows,
 *   the 1x1 layers with at most 640 channels in and out together (the
 *   pointwise dW's packed runs: 64 -> 256 on 16x16, 3.8-4.7 ms against
 *   4.7-4.9), and the layers of under 16 input channels, whose direct dW runs over
 *   output-channel vectors with no im2col (conv_direct_dw_small_c): on
 *   ResNet-50's stem at batch 64, 7.5-9.8 ms against OpenBLAS's 11.3 on
 *   a Zen 4 EPYC (make bench-algos), 6.6 ms on its AVX-512 tiles. */
static int model(const ConvShape *s, int pass, int isa) {
  bool pointwise = s->K == 1;
  /* Winograd's transforms run over channel vectors: with under 16
   * channels (an RGB input) they are mostly empty. */
  bool wino = conv_wino_fits(s) && s->C >= 16 && s->OC >= 16;
  int side = s->OH < s->OW ? s->OH : s->OW, map = s->OH * s->OW;
  bool avx512 = isa == RT_ISA_AVX512;
  switch (pass) {
  case CONV_PASS_FWD:
    if (wino && side >= 8)
      return side >= 16 ? CONV_WINOGRAD4 : CONV_WINOGRAD;
    return avx512 || !pointwise || (map > 4 && s->C < 1024) ? CONV_DIRECT
                                                             : CONV_GEMM;
  case CONV_PASS_DX:
    if (wino && side >= 8)
      return side >= 16 ? CONV_WINOGRAD4 : CONV_WINOGRAD;
    if (avx512)
      return CONV_DIRECT;
    if (pointwise)
      return s->stride == 1 ? CONV_DIRECT : CONV_GEMM;
    return s->stride == 1 || s->H >= 16 ? CONV_DIRECT : CONV_GEMM;
  default:
    if (wino && (side >= 8 || (side >= 4 && !avx512)))
      return CONV_WINOGRAD4;
    if (avx512 || conv_direct_dw_small_c(s) ||
        (pointwise && s->pad == 0 && s->C + s->OC <= 640))
      return CONV_DIRECT;
    return !pointwise && s->stride == 1 && map <= 4 ? CONV_DIRECT
                                                    : CONV_GEMM;
  }
}

int conv_native_isa(void) { /* as the runtime picks by default */
  return rt_cpu_has_isa(RT_ISA_AVX512) ? RT_ISA_AVX512 : RT_ISA_AVX2;
}

void choose_conv_algos(Graph *g, const ConvChoice *c) {
  for (int i = 0; i < g->nnodes; i++) { /* the forward graph */
    Node *n = &g->nodes[i];
    if (n->op != OP_CONV)
      continue;
    ConvShape s = node_conv_shape(g, i);
    const int *tuned = tuning_find(c->tuning, &s);
    for (int pass = 0; pass < CONV_PASSES; pass++) {
      /* A grouped layer is not tuned (its key would be a dense one's):
       * CONV_DIRECT, where conv_algo_of lets it run, unless asked. */
      int a = c->policy != CONV_POLICY_AUTO ? c->policy >> (8 * pass) & 0xff
              : s.groups > 1                ? CONV_DIRECT
              : tuned                       ? tuned[pass]
                                            : model(&s, pass, c->isa);
      /* What the runtime would run (Winograd only fits 3x3 stride 1;
       * a grouped layer's strided dX is GEMM). */
      ConvShape q = s;
      q.algo = q.algo_dx = q.algo_dw = a;
      n->algo[pass] = conv_algo_of(&q, pass);
    }
  }
}
