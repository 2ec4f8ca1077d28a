/* torch_layout.h: netc's parameter layouts against PyTorch's
 * (torch_layout.c), for the formats that leave netc and come in:
 * safetensors.c and onnx.c. */
#ifndef NETC_TORCH_LAYOUT_H
#define NETC_TORCH_LAYOUT_H

#include <stdint.h>

#include "model/netc_model.h"

/* Parameter p of m as PyTorch lays it out (count floats) and back. */
void to_torch_layout(const NetcModel *m, int p, const float *src, float *dst);
void from_torch_layout(const NetcModel *m, int p, const float *src,
                       float *dst);
/* Its dims in PyTorch's order; returns their number. */
int torch_dims(const NetcModel *m, int p, int64_t dims[4]);

#endif
