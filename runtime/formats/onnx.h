/* onnx.h: the model as ONNX (onnx.c). */
#ifndef NETC_ONNX_H
#define NETC_ONNX_H

#include "formats/checkpoint.h"
#include "model/netc_model.h"

/* Writes the inference graph of s->model with s's parameters and batchnorm
 * running statistics (evaluation mode) to `path` as an ONNX model: input
 * "input" float32 NCHW [N, C, H, W], output "logits" [N, classes], the
 * class list and the input normalization in its metadata. fold_bn: each
 * batchnorm that follows a convolution whose output nothing else reads is
 * folded into that convolution's weights and bias. Written under a
 * temporary name and renamed. 0, or -1 with a message. */
int onnx_export(const NetcState *s, const ClassList *classes, int fold_bn,
                const char *path);

#endif
