/* conv_winograd.c: CONV_WINOGRAD, Winograd's F(2x2, 3x3) for 3x3 stride-1
 * convolutions, in all three passes (Lavin and Gray, "Fast Algorithms for
 * Convolutional Neural Networks", 2015).
 *
 * Each 2x2 block of outputs is A^T [(G g G^T) .* (B^T d B)] A for the 4x4
 * input tile d around it and the 3x3 kernel g: 16 multiplies where the
 * direct form needs 36. Over a batch, the 16 elementwise products become
 * 16 matrix products (tiles x C) times (C x OC), which OpenBLAS does at
 * sgemm speed; the transforms are adds (and halvings, for G) vectorized
 * over the channels, which NHWC keeps contiguous.
 * - forward: U = G g G^T once per call, V = B^T d B per tile, M_xi = V_xi
 *   U_xi, Y = A^T M A;
 * - dX of a stride-1 convolution is the forward pass of dY with the kernel
 *   flipped and transposed, padded 2 - pad;
 * - dW: dM = A dY A^T per tile, dU_xi = V_xi^T dM_xi summed over tiles,
 *   dW = G^T dU G.
 * The batch runs in chunks of images (conv_wino_chunk) so the transformed
 * tiles stay near 8 MiB; the workspace is the plan's. */
#include <assert.h>
#include <cblas.h>
#include <stdint.h>
#include <omp.h>
#include <string.h>

#include "conv_direct.h"
#include "netc_rt.h"

/* A run of tiles: the global tiles [t0, t0 + tiles) of the batch (tile t
 * is block (t / tw % th, t % tw) of image t / (th * tw)), transformed
 * into 16 matrices of (tiles x channels). `parallel`: the transform loops
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

/* The tiles of images [n0, n0 + conv_wino_chunk(s)). */
static Chunk chunk(const ConvShape *s, int n0) {
  int nb = conv_wino_chunk(s);
  nb = s->N - n0 < nb ? s->N - n0 : nb;
  int th = (s->OH + 1) / 2, tw = (s->OW + 1) / 2;
  return (Chunk){(int64_t)n0 * th * tw, (int64_t)nb * th * tw, th, tw, 1};
}

/* U[xi][c][oc] = (G g G^T)[xi] for g = w[oc][.][.][c] (flip = 0), or for
 * the flipped, transposed kernel of dX, U[xi][oc][c] from
 * g[i][j] = w[oc][2-i][2-j][c] (flip = 1). G = [1 0 0; .5 .5 .5;
 * .5 -.5 .5; 0 0 1]. */
static void weight_transform(float *U, const float *w, const ConvShape *s,
                             int flip) {
  int C = s->C, OC = s->OC;
  int64_t plane = (int64_t)C * OC;
#pragma omp parallel for schedule(static)
  for (int oc = 0; oc < OC; oc++)
    for (int c = 0; c < C; c++) {
      float g[3][3], t[4][3], u[4][4];
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
          g[i][j] = flip ? w[((int64_t)oc * 9 + (2 - i) * 3 + (2 - j)) * C + c]
                         : w[((int64_t)oc * 9 + i * 3 + j) * C + c];
      for (int j = 0; j < 3; j++) { /* t = G g */
        t[0][j] = g[0][j];
        t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
        t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
        t[3][j] = g[2][j];
      }
      for (int i = 0; i < 4; i++) { /* u = t G^T */
        u[i][0] = t[i][0];
        u[i][1] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
        u[i][2] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
        u[i][3] = t[i][2];
      }
      int64_t at = flip ? (int64_t)oc * C + c : (int64_t)c * OC + oc;
      for (int xi = 0; xi < 16; xi++)
        U[xi * plane + at] = u[xi / 4][xi % 4];
    }
}

/* V[xi][t][c] = (B^T d B)[xi] for the 4x4 input tile d of each tile t of
 * the chunk, zero outside the image. B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0;
 * 0 1 0 -1]. Vectorized over c. */
static void input_transform(float *V, const float *x, const ConvShape *s,
                            const Chunk *k, const float *zeros) {
  const int C = s->C;
  const int64_t plane = k->tiles * C;
#pragma omp parallel for schedule(static) if (k->parallel)
  for (int64_t t = 0; t < k->tiles; t++) {
    int n, r, q;
    tile_at(k, t, &n, &r, &q);
    int h0 = 2 * r - s->pad, w0 = 2 * q - s->pad;
    const float *row[4][4];
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 4; j++) {
        int h = h0 + i, w = w0 + j;
        row[i][j] = h >= 0 && h < s->H && w >= 0 && w < s->W
                        ? x + (((int64_t)n * s->H + h) * s->W + w) * C
                        : zeros;
      }
    float *out = V + t * C;
    /* Vectorized over the channels: without the pragma GCC keeps this
     * scalar (it cannot prove the 16 rows and the output apart). */
#pragma omp simd
    for (int c = 0; c < C; c++) {
      float d[4][4], e[4][4];
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
          d[i][j] = row[i][j][c];
      for (int j = 0; j < 4; j++) { /* e = B^T d */
        e[0][j] = d[0][j] - d[2][j];
        e[1][j] = d[1][j] + d[2][j];
        e[2][j] = d[2][j] - d[1][j];
        e[3][j] = d[1][j] - d[3][j];
      }
      for (int i = 0; i < 4; i++) { /* e B */
        out[(4 * i + 0) * plane + c] = e[i][0] - e[i][2];
        out[(4 * i + 1) * plane + c] = e[i][1] + e[i][2];
        out[(4 * i + 2) * plane + c] = e[i][2] - e[i][1];
        out[(4 * i + 3) * plane + c] = e[i][1] - e[i][3];
      }
    }
  }
}

/* Y (= or += acc) A^T m A for each tile's 16 products M[xi][t][oc], the
 * outputs past the edge dropped. A^T = [1 1 1 0; 0 1 -1 -1]. */
static void output_transform(float *y, const float *M, const float *b,
                             const ConvShape *s, const Chunk *k, int acc,
                             const float *zeros, float *sink) {
  const int OC = s->OC;
  const int64_t plane = k->tiles * OC;
#pragma omp parallel for schedule(static) if (k->parallel)
  for (int64_t t = 0; t < k->tiles; t++) {
    int n, r, q;
    tile_at(k, t, &n, &r, &q);
    float *dst[2][2];
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 2; j++) {
        int h = 2 * r + i, w = 2 * q + j;
        dst[i][j] = h < s->OH && w < s->OW
                        ? y + (((int64_t)n * s->OH + h) * s->OW + w) * OC
                        : NULL;
      }
    /* Outputs past the edge go to the sink (a thread's own row would be
     * tidier; they are never read, so sharing it is harmless), and what
     * is added to comes from zeros when acc is off. */
    float *out[2][2];
    const float *old[2][2];
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 2; j++) {
        out[i][j] = dst[i][j] ? dst[i][j] : sink;
        old[i][j] = dst[i][j] && acc ? dst[i][j] : zeros;
      }
    const float *bias = b ? b : zeros;
    const float *m = M + t * OC;
#pragma omp simd
    for (int oc = 0; oc < OC; oc++) {
      float v[4][4], a[2][4];
      for (int xi = 0; xi < 16; xi++)
        v[xi / 4][xi % 4] = m[xi * plane + oc];
      for (int j = 0; j < 4; j++) { /* a = A^T v */
        a[0][j] = v[0][j] + v[1][j] + v[2][j];
        a[1][j] = v[1][j] - v[2][j] - v[3][j];
      }
      for (int i = 0; i < 2; i++) {
        float o0 = a[i][0] + a[i][1] + a[i][2] + bias[oc];
        float o1 = a[i][1] - a[i][2] - a[i][3] + bias[oc];
        out[i][0][oc] = old[i][0][oc] + o0;
        out[i][1][oc] = old[i][1][oc] + o1;
      }
    }
  }
}

/* dM[xi][t][oc] = (A dy A^T)[xi] for each tile's 2x2 block of dY, zero
 * where the block passes the edge. */
static void grad_transform(float *dM, const float *dy, const ConvShape *s,
                           const Chunk *k, const float *zeros) {
  const int OC = s->OC;
  const int64_t plane = k->tiles * OC;
#pragma omp parallel for schedule(static) if (k->parallel)
  for (int64_t t = 0; t < k->tiles; t++) {
    int n, r, q;
    tile_at(k, t, &n, &r, &q);
    const float *src[2][2];
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 2; j++) {
        int h = 2 * r + i, w = 2 * q + j;
        src[i][j] = h < s->OH && w < s->OW
                        ? dy + (((int64_t)n * s->OH + h) * s->OW + w) * OC
                        : zeros;
      }
    float *out = dM + t * OC;
#pragma omp simd
    for (int oc = 0; oc < OC; oc++) {
      float g[2][2], e[4][2];
      for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
          g[i][j] = src[i][j][oc];
      for (int j = 0; j < 2; j++) { /* e = A g, A = [1 0; 1 1; 1 -1; 0 -1] */
        e[0][j] = g[0][j];
        e[1][j] = g[0][j] + g[1][j];
        e[2][j] = g[0][j] - g[1][j];
        e[3][j] = -g[1][j];
      }
      for (int i = 0; i < 4; i++) { /* e A^T */
        out[(4 * i + 0) * plane + oc] = e[i][0];
        out[(4 * i + 1) * plane + oc] = e[i][0] + e[i][1];
        out[(4 * i + 2) * plane + oc] = e[i][0] - e[i][1];
        out[(4 * i + 3) * plane + oc] = -e[i][1];
      }
    }
  }
}

/* dW (= or +=) G^T dU G, dU[xi][c][oc] summed over all tiles. */
static void weight_grad_transform(float *dw, const float *dU,
                                  const ConvShape *s, int acc) {
  int C = s->C, OC = s->OC;
  int64_t plane = (int64_t)C * OC;
#pragma omp parallel for schedule(static)
  for (int oc = 0; oc < OC; oc++)
    for (int c = 0; c < C; c++) {
      float u[4][4], t[3][4];
      for (int xi = 0; xi < 16; xi++)
        u[xi / 4][xi % 4] = dU[xi * plane + (int64_t)c * OC + oc];
      for (int j = 0; j < 4; j++) { /* t = G^T u */
        t[0][j] = u[0][j] + 0.5f * (u[1][j] + u[2][j]);
        t[1][j] = 0.5f * (u[1][j] - u[2][j]);
        t[2][j] = 0.5f * (u[1][j] + u[2][j]) + u[3][j];
      }
      for (int i = 0; i < 3; i++) { /* t G */
        float g[3] = {t[i][0] + 0.5f * (t[i][1] + t[i][2]),
                      0.5f * (t[i][1] - t[i][2]),
                      0.5f * (t[i][1] + t[i][2]) + t[i][3]};
        for (int j = 0; j < 3; j++) {
          float *d = &dw[((int64_t)oc * 9 + i * 3 + j) * C + c];
          *d = acc ? *d + g[j] : g[j];
        }
      }
    }
}

/* The 16 products of one chunk: M_xi (tiles x OC) = V_xi (tiles x C)
 * U_xi (C x OC). */
static void products(float *M, const float *V, const float *U,
                     const ConvShape *s, const Chunk *k) {
  for (int xi = 0; xi < 16; xi++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)k->tiles,
                s->OC, s->C, 1.0f, V + xi * k->tiles * s->C, s->C,
                U + (int64_t)xi * s->C * s->OC, s->OC, 0.0f,
                M + xi * k->tiles * s->OC, s->OC);
}

/* The forward pass of s with transformed weights U in work. */
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
 * through the 16 products (single-threaded sgemms) to the output. */
static void run_forward(float *y, float *work, const float *x,
                        const float *b, const ConvShape *s, int acc) {
  float *sink;
  int64_t nu = (int64_t)16 * s->C * s->OC;
  float *zeros = edge_rows(work, nu, s, &sink);
  float *slots = sink + RT_LINE_FLOATS(s->C > s->OC ? s->C : s->OC);
  int th = (s->OH + 1) / 2, tw = (s->OW + 1) / 2, bt = conv_wino_block(s);
  int64_t total = (int64_t)s->N * th * tw, nblk = (total + bt - 1) / bt;
  int threads = rt_threads() < WINO_SLOTS ? rt_threads() : WINO_SLOTS;
#pragma omp parallel num_threads(threads)
  {
    float *V = slots + omp_get_thread_num() * conv_wino_slot(s);
    float *M = V + (int64_t)16 * bt * s->C;
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < nblk; blk++) {
      int64_t t0 = blk * bt;
      Chunk k = {t0, total - t0 < bt ? total - t0 : bt, th, tw, 0};
      input_transform(V, x, s, &k, zeros);
      products(M, V, work, s, &k);
      output_transform(y, M, b, s, &k, acc, zeros, sink);
    }
  }
}

void conv_winograd_forward(float *y, float *work, const float *x,
                           const float *w, const float *b,
                           const ConvShape *s) {
  assert(work && conv_wino_fits(s) && "winograd: a 3x3 stride-1 conv");
  weight_transform(work, w, s, 0);
  run_forward(y, work, x, b, s, 0);
}

void conv_winograd_bwd_data(float *dx, float *work, const float *dy,
                            const float *w, const ConvShape *s, int acc) {
  assert(work && conv_wino_fits(s) && "winograd: a 3x3 stride-1 conv");
  ConvShape t = conv_wino_transposed(s);
  weight_transform(work, w, s, 1); /* U[xi][oc][c]: t's (C x OC) */
  run_forward(dx, work, dy, NULL, &t, acc);
}

void conv_winograd_bwd_weights(float *dw, float *work, const float *dy,
                               const float *x, const ConvShape *s, int acc) {
  assert(work && conv_wino_fits(s) && "winograd: a 3x3 stride-1 conv");
  float *dU = work, *sink;
  float *zeros = edge_rows(work, (int64_t)16 * s->C * s->OC, s, &sink);
  float *V = sink + RT_LINE_FLOATS(s->C > s->OC ? s->C : s->OC);
  Chunk k0 = chunk(s, 0);
  float *dM = V + 16 * k0.tiles * s->C;
  for (int n0 = 0; n0 < s->N; n0 += conv_wino_chunk(s)) {
    Chunk k = chunk(s, n0);
    input_transform(V, x, s, &k, zeros);
    grad_transform(dM, dy, s, &k, zeros);
    for (int xi = 0; xi < 16; xi++) /* dU_xi (C x OC) += V_xi^T dM_xi */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->C, s->OC,
                  (int)k.tiles, 1.0f, V + xi * k.tiles * s->C, s->C,
                  dM + xi * k.tiles * s->OC, s->OC, n0 > 0 ? 1.0f : 0.0f,
                  dU + (int64_t)xi * s->C * s->OC, s->OC);
  }
  weight_grad_transform(dw, dU, s, acc);
}
