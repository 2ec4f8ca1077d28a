#!/usr/bin/env python3
"""original_check.py: netc's exported seed network in the original module.

    original_check.py CLASSES weights.safetensors inputs.f32 logits.f32

Loads the safetensors file (netc's names, read by torchvision_check's own
reader) into the original project's ResNet module (tests/reference/
modules.py, written independently of netc), renaming by modules.py's rule.
Every module tensor must come from the file except the projections that
the shared blocks register and never run, which keep their initial values;
nothing in the file may be left over. Then the images netc evaluated, in
evaluation mode, against netc's logits: the same top-1 for each, and max
|torch - netc| / max |netc| at most --tol."""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from modules import ResNet, original_name  # noqa: E402
from torchvision_check import read_safetensors  # noqa: E402
from logits_compare import agreement  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("classes", type=int)
    ap.add_argument("weights")
    ap.add_argument("inputs")
    ap.add_argument("logits")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    state, meta = read_safetensors(a.weights)
    model = ResNet(a.classes)
    renamed = {}
    for name, t in state.items():
        if name.endswith("num_batches_tracked"):
            base = original_name(name.rsplit(".", 1)[0] + ".weight")
            mname = base.rsplit(".", 1)[0] + ".num_batches_tracked"
        elif name.endswith((".running_mean", ".running_var")):
            stem, stat = name.rsplit(".", 1)
            mname = original_name(stem + ".weight").rsplit(".", 1)[0] + "." + stat
        else:
            mname = original_name(name)
        if mname is None:
            sys.exit(f"original_check: {name} has no counterpart in the module")
        renamed[mname] = t
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    unused = [k for k in missing if k.startswith("shared") and ".projection." in k]
    if unexpected or len(unused) != len(missing):
        sys.exit(f"original_check: not loaded: {sorted(set(missing) - set(unused))[:5]}"
                 f", left over: {unexpected[:5]}")
    model.eval()
    z = np.fromfile(a.logits, dtype=np.float32).reshape(-1, a.classes)
    x = np.fromfile(a.inputs, dtype=np.float32).reshape(z.shape[0], 3, 64, 64)
    with torch.no_grad():
        t = model(torch.from_numpy(x)).numpy()
    ok, text = agreement(t, z, a.tol)
    params = sum(p.numel() for p in model.parameters())
    print(f"original module: {len(renamed)} tensors loaded, {len(unused)} "
          f"unused projection tensors at their initial values, {params} "
          f"parameters; {text}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
