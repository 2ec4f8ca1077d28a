#!/usr/bin/env python3
"""torchvision_write.py: weights made by PyTorch, for netc to take in.

    torchvision_write.py ARCH CLASSES OUT.safetensors inputs.f32 OUT_logits.f32

Builds torchvision.models.ARCH(num_classes=CLASSES) with PyTorch's own
initialization, gives every batchnorm a random affine transform and
running statistics of its own (a few training-mode passes over random
images), and writes its state_dict, torchvision's names and PyTorch's
layouts, as safetensors with this script's own writer (not netc's).
Then runs the images netc evaluated (`eval --inputs`, float32 NCHW) in
evaluation mode and writes the logits, for `eval --init OUT.safetensors
--logits` to be compared with (logits_compare.py)."""
import argparse
import json
import struct

import numpy as np
import torch
import torchvision

DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def write_safetensors(path, state, meta):
    header, blobs, at = {"__metadata__": meta}, [], 0
    for name, t in state.items():
        b = t.detach().contiguous().numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the data 8-byte aligned, as the format asks
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("arch")
    ap.add_argument("classes", type=int)
    ap.add_argument("weights")
    ap.add_argument("inputs")
    ap.add_argument("logits")
    ap.add_argument("--size", type=int, default=64, help="input height = width")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = getattr(torchvision.models, a.arch)(num_classes=a.classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.train()
        for _ in range(3):
            model(torch.randn(4, 3, a.size, a.size))
    model.eval()
    write_safetensors(a.weights, model.state_dict(),
                      {"source": f"torchvision.models.{a.arch}, seed {a.seed}"})
    x = np.fromfile(a.inputs, dtype=np.float32).reshape(-1, 3, a.size, a.size)
    with torch.no_grad():
        z = model(torch.from_numpy(x)).numpy()
    z.astype(np.float32).tofile(a.logits)
    print(f"torchvision {a.arch}: {len(model.state_dict())} tensors written, "
          f"logits of {x.shape[0]} images")


if __name__ == "__main__":
    main()
