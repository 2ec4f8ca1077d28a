#!/usr/bin/env python3
"""torchvision_check.py: netc's exported weights in torchvision's own model.

    torchvision_check.py ARCH CLASSES weights.safetensors inputs.f32 logits.f32

Reads the safetensors file with its own reader (not netc's), loads it into
torchvision.models.ARCH(num_classes=CLASSES) with strict=True (every
parameter and buffer named as torchvision names it, of its shape, none
left over), runs the images netc evaluated (`eval --inputs`, float32
NCHW) in evaluation mode, and compares with netc's logits (`eval
--logits`): the same top-1 for every image, and max |torch - netc| / max
|netc| at most --tol. Prints one line of figures; exit 1 when they are
not met."""
import argparse
import json
import struct
import sys

import numpy as np
import torch
import torchvision

from logits_compare import agreement

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64,
          "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        a = np.frombuffer(data[b:e], dtype=DTYPES[t["dtype"]])
        out[name] = torch.from_numpy(a.reshape(t["shape"]).copy())
    return out, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("arch")
    ap.add_argument("classes", type=int)
    ap.add_argument("weights")
    ap.add_argument("inputs")
    ap.add_argument("logits")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    state, meta = read_safetensors(a.weights)
    model = getattr(torchvision.models, a.arch)(num_classes=a.classes)
    model.load_state_dict(state, strict=True)
    model.eval()
    z = np.fromfile(a.logits, dtype=np.float32).reshape(-1, a.classes)
    x = np.fromfile(a.inputs, dtype=np.float32).reshape(z.shape[0], 3, *(
        int(d) for d in meta["input"].split()[0].split("x")[1:]))
    with torch.no_grad():
        t = model(torch.from_numpy(x)).numpy()
    ok, text = agreement(t, z, a.tol)
    print(f"torchvision {a.arch} strict load: {len(state)} tensors; {text}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
