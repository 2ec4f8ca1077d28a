/* conv_winograd.c: Winograd's minimal filtering for 3x3 stride-1
 * convolutions, F(2x2, 3x3) (CONV_WINOGRAD) and F(4x4, 3x3)
 * (CONV_WINOGRAD4), in all three passes (Lavin and Gray, "Fast Algorithms
 * for Convolutional Neural Networks", 2015).
 *
 * Each m x m block of outputs is A^T [(G g G^T) .* (B^T d B)] A for the
 * (m + 2) x (m + 2) input tile d around it and the 3x3 kernel g: 16
 * multiplies for 4 outputs (F2) or 36 for 16 (F4), where the direct form
 * needs 9 per output. Over a batch, the (m + 2)^2 elementwise products
 * become as many matrix products (tiles x C) times (C x OC), which
 * OpenBLAS does at sgemm speed; the transforms are adds and small
 * constant multiplies, vectorized over the channels, which NHWC keeps
 * contiguous. F(4x4)'s transforms use 2, 4, 5, 8 and 1/6, 1/24, so it is
 * less accurate than F(2x2) (docs/kernels.md has both errors).
 * - forward: U = G g G^T once per call, V = B^T d B per tile, M_xi = V_xi
 *   U_xi, Y = A^T M A;
 * - dX of a stride-1 convolution is the forward pass of dY with the kernel
 *   flipped and transposed, padded 2 - pad;
 * - dW: dM = A dY A^T per tile, dU_xi = V_xi^T dM_xi summed over tiles,
 *   dW = G^T dU G.
 * Each function takes m; the per-tile loops are written once and inlined
 * for each m, so the compiler sees constant matrices. The workspace is the
 * plan's (netc_rt.h, conv_wino_floats). */
#include <assert.h>
#include <stdint.h>
#include <omp.h>
#include <string.h>

#include "kernels/conv_direct.h"
#include "kernels/netc_rt.h"

#define INLINE static inline __attribute__((always_inline))
enum { WA = 6 }; /* the largest tile side, m + 2 */

/* ---- the one-dimensional transforms; x[i * xs] strided ---------------- */

/* e = B^T d: m + 2 inputs to m + 2 points. */
INLINE void bt_1d(int m, const float *d, int ds, float *e, int es) {
  if (m == 2) {
    e[0] = d[0] - d[2 * ds];
    e[es] = d[ds] + d[2 * ds];
    e[2 * es] = d[2 * ds] - d[ds];
    e[3 * es] = d[ds] - d[3 * ds];
    return;
  }
  float d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds],
        d4 = d[4 * ds], d5 = d[5 * ds];
  float p = d4 - 4 * d2, q = d3 - 4 * d1, r = d4 - d2, t = 2 * (d3 - d1);
  e[0] = 4 * d0 - 5 * d2 + d4;
  e[es] = p + q;
  e[2 * es] = p - q;
  e[3 * es] = r + t;
  e[4 * es] = r - t;
  e[5 * es] = 4 * d1 - 5 * d3 + d5;
}

/* o = A^T v: m + 2 points to m outputs. */
INLINE void at_1d(int m, const float *v, int vs, float *o, int os) {
  if (m == 2) {
    o[0] = v[0] + v[vs] + v[2 * vs];
    o[os] = v[vs] - v[2 * vs] - v[3 * vs];
    return;
  }
  float s1 = v[vs] + v[2 * vs], d1 = v[vs] - v[2 * vs];
  float s2 = v[3 * vs] + v[4 * vs], d2 = v[3 * vs] - v[4 * vs];
  o[0] = v[0] + s1 + s2;
  o[os] = d1 + 2 * d2;
  o[2 * os] = s1 + 4 * s2;
  o[3 * os] = d1 + 8 * d2 + v[5 * vs];
}

/* e = A g (the transpose of at_1d, for dY): m outputs to m + 2 points. */
INLINE void a_1d(int m, const float *g, int gs, float *e, int es) {
  if (m == 2) {
    e[0] = g[0];
    e[es] = g[0] + g[gs];
    e[2 * es] = g[0] - g[gs];
    e[3 * es] = -g[gs];
    return;
  }
  float g0 = g[0], g1 = g[gs], g2 = g[2 * gs], g3 = g[3 * gs];
  float p = g0 + g2, q = g1 + g3, r = g0 + 4 * g2, t = 2 * g1 + 8 * g3;
  e[0] = g0;
  e[es] = p + q;
  e[2 * es] = p - q;
  e[3 * es] = r + t;
  e[4 * es] = r - t;
  e[5 * es] = g3;
}

/* u = G g: 3 taps to m + 2 points. In double: the weights are
 * transformed once per call, and F(4x4)'s sixths are not exact in
 * float. */
static void g_1d(int m, const double *g, int gs, double *u, int us) {
  double g0 = g[0], g1 = g[gs], g2 = g[2 * gs];
  if (m == 2) {
    u[0] = g0;
    u[us] = 0.5 * (g0 + g1 + g2);
    u[2 * us] = 0.5 * (g0 - g1 + g2);
    u[3 * us] = g2;
    return;
  }
  u[0] = g0 / 4;
  u[us] = -(g0 + g1 + g2) / 6;
  u[2 * us] = -(g0 - g1 + g2) / 6;
  u[3 * us] = g0 / 24 + g1 / 12 + g2 / 6;
  u[4 * us] = g0 / 24 - g1 / 12 + g2 / 6;
  u[5 * us] = g2;
}

/* t = G^T u (the transpose of g_1d, for dW): m + 2 points to 3 taps. */
static void gt_1d(int m, const double *u, int us, double *t, int ts) {
  if (m == 2) {
    t[0] = u[0] + 0.5 * (u[us] + u[2 * us]);
    t[ts] = 0.5 * (u[us] - u[2 * us]);
    t[2 * ts] = 0.5 * (u[us] + u[2 * us]) + u[3 * us];
    return;
  }
  double s12 = u[us] + u[2 * us], d12 = u[2 * us] - u[us];
  double s34 = u[3 * us] + u[4 * us], d34 = u[3 * us] - u[4 * us];
  t[0] = u[0] / 4 - s12 / 6 + s34 / 24;
  t[ts] = d12 / 6 + d34 / 12;
  t[2 * ts] = -s12 / 6 + s34 / 6 + u[5 * us];
}

/* A run of tiles: the global tiles [t0, t0 + tiles) of the batch (tile t
 * is block (t / tw % th, t % tw) of image t / (th * tw)), transformed
 * into (m + 2)^2 matrices of (tiles x channels). `parallel`: the transform loops
 * share it among the threads (else the caller is one of them). */
typedef struct {
  int64_t t0, tiles;
  int th, tw;
  int parallel;
} Chunk;

/* Tile t of the run: its image n and block row r and column q. */
static void tile_at(const Chunk *k, int64_t t, int *n, int *r, int *q) {
  int64_t at = k->t0 + t;
  *n = (int)(at / ((int64_t)k->th * k->tw));
  *r = (int)(at / k->tw % k->th);
  *q = (int)(at % k->tw);
}

/* The pixels of a rows x cols block of an (h x w x ch) image n from
 * (h0, w0): p[i * cols + j] points at each, or is `past` where the block
 * leaves the image. */
static void block_pixels(const float **p, const float *img, int h, int w,
                         int ch, int n, int h0, int w0, int rows, int cols,
                         const float *past) {
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) {
      int y = h0 + i, x = w0 + j;
      p[i * cols + j] = y >= 0 && y < h && x >= 0 && x < w
                            ? img + (((int64_t)n * h + y) * w + x) * ch
                            : past;
    }
}

/* The tiles of images [n0, n0 + conv_wino_chunk(s, m)). */
static Chunk chunk(const ConvShape *s, int n0, int m) {
  int nb = conv_wino_chunk(s, m);
  nb = s->N - n0 < nb ? s->N - n0 : nb;
  int th = (s->OH + m - 1) / m, tw = (s->OW + m - 1) / m;
  return (Chunk){(int64_t)n0 * th * tw, (int64_t)nb * th * tw, th, tw, 1};
}

/* Transformed weights: for each point xi, the (R x Q) matrix of the
 * products, packed for conv_tiles_gemm as (Q/VL, R, VL), zero past Q. */
static int64_t packed_at(int r, int q, int R, int vl) {
  return ((int64_t)(q / vl) * R + r) * vl + q % vl;
}
static int64_t packed_floats(int R, int Q) {
  return (int64_t)R * ((Q + WINO_VL - 1) / WINO_VL * WINO_VL);
}

/* U[xi] (C x OC) = (G g G^T)[xi] for g = w[oc][.][.][c] (flip = 0), or
 * for the flipped, transposed kernel of dX, U[xi] (OC x C) from
 * g[i][j] = w[oc][2-i][2-j][c] (flip = 1); packed. */
static void weight_transform(float *U, const float *w, const ConvShape *s,
                             int flip, int m) {
  int C = s->C, OC = s->OC, a = m + 2, vl = conv_tiles_vl();
  int R = flip ? OC : C, Q = flip ? C : OC;
  int64_t plane = packed_floats(R, Q);
  if (Q % vl)
    memset(U, 0, (size_t)(a * a * plane) * sizeof *U);
#pragma omp parallel for schedule(static)
  for (int oc = 0; oc < OC; oc++)
    for (int c = 0; c < C; c++) {
      double g[3][3], t[WA][3], u[WA][WA];
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
          g[i][j] = flip ? w[((int64_t)oc * 9 + (2 - i) * 3 + (2 - j)) * C + c]
                         : w[((int64_t)oc * 9 + i * 3 + j) * C + c];
      for (int j = 0; j < 3; j++) /* t = G g */
        g_1d(m, &g[0][j], 3, &t[0][j], 3);
      for (int i = 0; i < a; i++) /* u = t G^T */
        g_1d(m, t[i], 1, u[i], 1);
      int64_t at = flip ? packed_at(oc, c, R, vl) : packed_at(c, oc, R, vl);
      for (int xi = 0; xi < a * a; xi++)
        U[xi * plane + at] = (float)u[xi / a][xi % a];
    }
}

/* One tile's V[xi][c] = (B^T d B)[xi], d from its input rows, at
 * out[xi * plane + c]. Vectorized over c. The three tile loops need both
 * pragmas: without ivdep GCC keeps them scalar (it cannot prove the rows
 * and the output apart; `omp simd` would be expanded before m is known),
 * and without the unrolling F(4x4)'s 6x6 arrays stay in memory (3x
 * slower, measured). */
INLINE void input_tile(int m, float *out, const float *const *row,
                       int64_t plane, int C) {
  const int a = m + 2;
#pragma GCC ivdep
  for (int c = 0; c < C; c++) {
    float d[WA][WA], e[WA][WA], v[WA];
#pragma GCC unroll 36
    for (int i = 0; i < a; i++)
#pragma GCC unroll 36
      for (int j = 0; j < a; j++)
        d[i][j] = row[i * a + j][c];
#pragma GCC unroll 36
    for (int j = 0; j < a; j++) /* e = B^T d */
      bt_1d(m, &d[0][j], WA, &e[0][j], WA);
#pragma GCC unroll 36
    for (int i = 0; i < a; i++) { /* e B */
      bt_1d(m, e[i], 1, v, 1);
#pragma GCC unroll 36
      for (int j = 0; j < a; j++)
        out[(a * i + j) * plane + c] = v[j];
    }
  }
}

/* V[xi][t][c] for each tile t of the chunk, zero outside the image. */
static void input_transform(float *V, const float *x, const ConvShape *s,
                            const Chunk *k, const float *zeros, int m) {
  const int C = s->C, a = m + 2;
  const int64_t plane = k->tiles * C;
#pragma omp parallel for schedule(static) if (k->parallel)
  for (int64_t t = 0; t < k->tiles; t++) {
    int n, r, q;
    tile_at(k, t, &n, &r, &q);
    const float *row[WA * WA];
    block_pixels(row, x, s->H, s->W, C, n, m * r - s->pad, m * q - s->pad, a,
                 a, zeros);
    if (m == 2)
      input_tile(2, V + t * C, row, plane, C);
    else
      input_tile(4, V + t * C, row, plane, C);
  }
}

/* The m x m outputs of tile t in y (OH x OW x OC): p[i] is each, or
 * `past` beyond the edge. */
static void tile_outputs(const float **p, const float *y, const ConvShape *s,
                         const Chunk *k, int64_t t, const float *past,
                         int m) {
  int n, r, q;
  tile_at(k, t, &n, &r, &q);
  block_pixels(p, y, s->OH, s->OW, s->OC, n, m * r, m * q, m, m, past);
}

/* One tile's outputs (= old + bias +) A^T v A, v[xi] = m[xi * plane]. */
INLINE void output_tile(int m, float *const *out, const float *const *old,
                        const float *mm, const float *bias, int64_t plane,
                        int OC) {
  const int a = m + 2;
#pragma GCC ivdep
  for (int oc = 0; oc < OC; oc++) {
    float v[WA][WA], e[4][WA], o[4];
#pragma GCC unroll 36
    for (int xi = 0; xi < a * a; xi++)
      v[xi / a][xi % a] = mm[xi * plane + oc];
#pragma GCC unroll 36
    for (int j = 0; j < a; j++) /* e = A^T v */
      at_1d(m, &v[0][j], WA, &e[0][j], WA);
#pragma GCC unroll 36
    for (int i = 0; i < m; i++) { /* e A */
      at_1d(m, e[i], 1, o, 1);
#pragma GCC unroll 36
      for (int j = 0; j < m; j++)
        out[i * m + j][oc] = old[i * m + j][oc] + o[j] + bias[oc];
    }
  }
}

/* Y (= or += acc) A^T M A for each tile's products M[xi][t][oc], the
 * outputs past the edge dropped. Outputs past the edge go to the sink (a
 * thread's own row would be tidier; they are never read, so sharing it is
 * harmless). */
static void output_transform(float *y, const float *M, const float *b,
                             const ConvShape *s, const Chunk *k, int acc,
                             const float *zeros, float *sink, int m) {
  const int64_t plane = k->tiles * s->OC;
  const float *bias = b ? b : zeros;
#pragma omp parallel for schedule(static) if (k->parallel)
  for (int64_t t = 0; t < k->tiles; t++) {
    /* what each output adds to: itself when acc, else zeros */
    const float *old[16], *at[16];
    float *out[16];
    tile_outputs(at, y, s, k, t, NULL, m);
    for (int i = 0; i < m * m; i++) {
      out[i] = at[i] ? (float *)at[i] : sink;
      old[i] = at[i] && acc ? at[i] : zeros;
    }
    if (m == 2)
      output_tile(2, out, old, M + t * s->OC, bias, plane, s->OC);
    else
      output_tile(4, out, old, M + t * s->OC, bias, plane, s->OC);
  }
}

/* One tile's dM[xi] = (A g A^T)[xi] for its m x m block g of dY. */
INLINE void grad_tile(int m, float *out, const float *const *src,
                      int64_t plane, int OC) {
  const int a = m + 2;
#pragma GCC ivdep
  for (int oc = 0; oc < OC; oc++) {
    float g[4][4], e[WA][4], v[WA];
#pragma GCC unroll 36
    for (int i = 0; i < m; i++)
#pragma GCC unroll 36
      for (int j = 0; j < m; j++)
        g[i][j] = src[i * m + j][oc];
#pragma GCC unroll 36
    for (int j = 0; j < m; j++) /* e = A g */
      a_1d(m, &g[0][j], 4, &e[0][j], 4);
#pragma GCC unroll 36
    for (int i = 0; i < a; i++) { /* e A^T */
      a_1d(m, e[i], 1, v, 1);
#pragma GCC unroll 36
      for (int j = 0; j < a; j++)
        out[(a * i + j) * plane + oc] = v[j];
    }
  }
}

/* dM[xi][t][oc] for each tile's block of dY, zero past the edge. */
static void grad_transform(float *dM, const float *dy, const ConvShape *s,
                           const Chunk *k, const float *zeros, int m) {
  const int64_t plane = k->tiles * s->OC;
#pragma omp parallel for schedule(static) if (k->parallel)
  for (int64_t t = 0; t < k->tiles; t++) {
    const float *src[16];
    tile_outputs(src, dy, s, k, t, zeros, m);
    if (m == 2)
      grad_tile(2, dM + t * s->OC, src, plane, s->OC);
    else
      grad_tile(4, dM + t * s->OC, src, plane, s->OC);
  }
}

/* dW (= or +=) G^T dU G, dU[xi][oc][c] summed over all tiles. */
static void weight_grad_transform(float *dw, const float *dU,
                                  const ConvShape *s, int acc, int m) {
  int C = s->C, OC = s->OC, a = m + 2;
  int64_t plane = (int64_t)C * OC;
#pragma omp parallel for schedule(static)
  for (int oc = 0; oc < OC; oc++)
    for (int c = 0; c < C; c++) {
      double u[WA][WA], t[3][WA] = {{0}}, g[3][3];
      for (int xi = 0; xi < a * a; xi++)
        u[xi / a][xi % a] = dU[xi * plane + (int64_t)oc * C + c];
      for (int j = 0; j < a; j++) /* t = G^T u */
        gt_1d(m, &u[0][j], WA, &t[0][j], WA);
      for (int i = 0; i < 3; i++) /* t G */
        gt_1d(m, t[i], 1, g[i], 1);
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
          float *d = &dw[((int64_t)oc * 9 + i * 3 + j) * C + c];
          *d = acc ? *d + (float)g[i][j] : (float)g[i][j];
        }
    }
}

/* The products of one block: M_xi (tiles x OC) = V_xi (tiles x C)
 * U_xi (C x OC), in netc's own tiles (one thread: the caller is one of
 * the block loop's). */
static void products(float *M, const float *V, const float *U,
                     const ConvShape *s, const Chunk *k, int m) {
  int64_t plane = packed_floats(s->C, s->OC);
  for (int xi = 0; xi < conv_wino_points(m); xi++)
    conv_tiles_gemm(M + xi * k->tiles * s->OC, s->OC,
                    V + xi * k->tiles * s->C, s->C, U + xi * plane,
                    (int)k->tiles, s->OC, s->C);
}

/* The zero row and the sink of a workspace whose transformed weights
 * take `skip` floats. */
static float *edge_rows(float *work, int64_t skip, const ConvShape *s,
                        float **sink) {
  int64_t row = RT_LINE_FLOATS(s->C > s->OC ? s->C : s->OC);
  float *zeros = work + skip;
  memset(zeros, 0, (size_t)row * sizeof *zeros);
  *sink = zeros + row;
  return zeros;
}

/* The forward pass of s with transformed weights U in work: blocks of
 * conv_wino_block() tiles, one thread each, so that a block's transformed
 * tiles and products stay in that core's L2 from the input transform
 * through the products (single-threaded sgemms) to the output. */
static void run_forward(float *y, float *work, const float *x,
                        const float *b, const ConvShape *s, int acc, int m) {
  float *sink;
  int P = conv_wino_points(m);
  float *zeros = edge_rows(work, P * packed_floats(s->C, s->OC), s, &sink);
  float *slots = sink + RT_LINE_FLOATS(s->C > s->OC ? s->C : s->OC);
  int th = (s->OH + m - 1) / m, tw = (s->OW + m - 1) / m;
  int bt = conv_wino_block(s, m);
  int64_t total = (int64_t)s->N * th * tw, nblk = (total + bt - 1) / bt;
  int threads = rt_threads() < WINO_SLOTS ? rt_threads() : WINO_SLOTS;
#pragma omp parallel num_threads(threads)
  {
    float *V = slots + omp_get_thread_num() * conv_wino_slot(s, m);
    float *M = V + (int64_t)P * bt * s->C;
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < nblk; blk++) {
      int64_t t0 = blk * bt;
      Chunk k = {t0, total - t0 < bt ? total - t0 : bt, th, tw, 0};
      input_transform(V, x, s, &k, zeros, m);
      products(M, V, work, s, &k, m);
      output_transform(y, M, b, s, &k, acc, zeros, sink, m);
    }
  }
}

void conv_winograd_forward(float *y, float *work, const float *x,
                           const float *w, const float *b,
                           const ConvShape *s) {
  assert(work && conv_wino_fits(s) && "winograd: a 3x3 stride-1 conv");
  int m = conv_wino_m(s->algo);
  weight_transform(work, w, s, 0, m);
  run_forward(y, work, x, b, s, 0, m);
}

void conv_winograd_bwd_data(float *dx, float *work, const float *dy,
                            const float *w, const ConvShape *s, int acc) {
  assert(work && conv_wino_fits(s) && "winograd: a 3x3 stride-1 conv");
  int m = conv_wino_m(s->algo_dx);
  ConvShape t = conv_wino_transposed(s);
  weight_transform(work, w, s, 1, m); /* U[xi][oc][c]: t's (C x OC) */
  run_forward(dx, work, dy, NULL, &t, acc, m);
}

void conv_winograd_bwd_weights(float *dw, float *work, const float *dy,
                               const float *x, const ConvShape *s, int acc) {
  assert(work && conv_wino_fits(s) && "winograd: a 3x3 stride-1 conv");
  int m = conv_wino_m(s->algo_dw), P = conv_wino_points(m);
  float *dU = work, *sink;
  float *zeros = edge_rows(work, P * packed_floats(s->C, s->OC), s, &sink);
  float *V = sink + RT_LINE_FLOATS(s->C > s->OC ? s->C : s->OC);
  Chunk k0 = chunk(s, 0, m);
  float *dM = V + P * k0.tiles * s->C;
  for (int n0 = 0; n0 < s->N; n0 += conv_wino_chunk(s, m)) {
    Chunk k = chunk(s, n0, m);
    input_transform(V, x, s, &k, zeros, m);
    grad_transform(dM, dy, s, &k, zeros, m);
    /* dU_xi (OC x C) += dM_xi^T V_xi, one point per task: each element is
     * one thread's sum, chunk after chunk, whatever the thread count. */
#pragma omp parallel for schedule(static)
    for (int xi = 0; xi < P; xi++)
      conv_tiles_gemm_tn(dU + (int64_t)xi * s->C * s->OC, s->C,
                         dM + xi * k.tiles * s->OC, s->OC,
                         V + xi * k.tiles * s->C, s->C, (int)k.tiles, s->OC,
                         s->C, n0 > 0);
  }
  weight_grad_transform(dw, dU, s, acc, m);
}
