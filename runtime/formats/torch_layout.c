/* torch_layout.c: a parameter in PyTorch's layout and back (torch_layout.h):
 * convolutions OIHW where netc keeps OHWI, and a dense weight after a
 * flatten with the columns of an NCHW flatten (netc flattens NHWC). */
#include <string.h>

#include "formats/torch_layout.h"

/* ---- PyTorch's layouts --------------------------------------------------- */

/* The C x H x W a dense weight's columns come from when its layer reads a
 * flatten of a map larger than 1x1 (netc flattens NHWC: columns in
 * (H, W, C) order, PyTorch's in (C, H, W)); 0 otherwise. */
static int flattened_map(const NetcModel *m, int p, int64_t chw[3]) {
  for (int i = 0; i < m->nlayers; i++) {
    const NetcLayer *l = &m->layers[i];
    if (strcmp(l->op, "dense") || l->param[0] != p || l->in[0] < 1)
      continue;
    const NetcLayer *f = &m->layers[l->in[0] - 1];
    if (strcmp(f->op, "flatten"))
      return 0;
    int v = f->in[0];
    chw[0] = v ? m->layers[v - 1].c : m->in_c;
    chw[1] = v ? m->layers[v - 1].h : m->in_h;
    chw[2] = v ? m->layers[v - 1].w : m->in_w;
    return chw[1] * chw[2] > 1;
  }
  return 0;
}

int torch_dims(const NetcModel *m, int p, int64_t dims[4]) {
  const NetcParam *q = &m->params[p];
  if (q->layout == NL_OHWI) { /* (O, K, K, I) -> (O, I, K, K) */
    dims[0] = q->dims[0], dims[1] = q->dims[3];
    dims[2] = q->dims[1], dims[3] = q->dims[2];
    return 4;
  }
  memcpy(dims, q->dims, sizeof(int64_t) * 4);
  return q->ndims;
}

/* One permutation serves both ways: element j of the netc layout is
 * element perm(j) of PyTorch's. */
static void convert(const NetcModel *m, int p, const float *src, float *dst,
                    int to_torch) {
  const NetcParam *q = &m->params[p];
  int64_t chw[3];
  if (q->layout == NL_OHWI) {
    int64_t O = q->dims[0], KH = q->dims[1], KW = q->dims[2], I = q->dims[3];
    for (int64_t o = 0; o < O; o++)
      for (int64_t y = 0; y < KH; y++)
        for (int64_t x = 0; x < KW; x++)
          for (int64_t i = 0; i < I; i++) {
            int64_t n = ((o * KH + y) * KW + x) * I + i;
            int64_t t = ((o * I + i) * KH + y) * KW + x;
            if (to_torch)
              dst[t] = src[n];
            else
              dst[n] = src[t];
          }
  } else if (q->layout == NL_OUT_IN && flattened_map(m, p, chw)) {
    int64_t C = chw[0], H = chw[1], W = chw[2], in = C * H * W;
    for (int64_t o = 0; o < q->dims[0]; o++)
      for (int64_t c = 0; c < C; c++)
        for (int64_t y = 0; y < H; y++)
          for (int64_t x = 0; x < W; x++) {
            int64_t n = o * in + (y * W + x) * C + c;
            int64_t t = o * in + (c * H + y) * W + x;
            if (to_torch)
              dst[t] = src[n];
            else
              dst[n] = src[t];
          }
  } else {
    memcpy(dst, src, sizeof(float) * (size_t)q->count);
  }
}

void to_torch_layout(const NetcModel *m, int p, const float *src, float *dst) {
  convert(m, p, src, dst, 1);
}

void from_torch_layout(const NetcModel *m, int p, const float *src,
                       float *dst) {
  convert(m, p, src, dst, 0);
}
