/* safetensors.h: weights that leave netc and come in, in PyTorch's layouts.
 *
 * safetensors (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header size, a JSON header naming each tensor's dtype,
 * shape and byte range, then the data. netc writes every parameter and
 * batchnorm statistic as PyTorch lays them out (convolutions OIHW, dense
 * weights with the columns of an NCHW flatten), named as `netc check`
 * names them or, for the zoo's ResNets, as torchvision does. */
#ifndef NETC_SAFETENSORS_H
#define NETC_SAFETENSORS_H

#include <stdint.h>

#include "formats/checkpoint.h"
#include "model/netc_model.h"

enum { NAMES_NETC, NAMES_TORCHVISION };

/* Writes s's parameters and statistics to `path` atomically; `steps` is
 * the batches trained (torchvision's num_batches_tracked). 0, or -1 with
 * a message naming the tensor or the file. */
int safetensors_export(const NetcState *s, const ClassList *c, int names,
                       int64_t steps, const char *path);

/* Reads a safetensors file of either naming into s's parameters and
 * statistics (all of them: a missing, extra, wrong-typed or wrong-shaped
 * tensor is an error naming it, as PyTorch's strict load_state_dict).
 * Nothing of s changes unless every tensor is right. 0, or -1 with a
 * message. */
int safetensors_import(NetcState *s, const char *path);

#endif
