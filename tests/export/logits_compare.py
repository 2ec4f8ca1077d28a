#!/usr/bin/env python3
"""logits_compare.py CLASSES reference.f32 netc.f32 [--tol T]: two runs'
logits (float32, a row of CLASSES per image): the same top-1 for every
image and max |reference - netc| / max |netc| at most T (1e-4).
Prints one line of figures; exit 1 when they are not met.

agreement() is that rule, for the other export checks to share."""
import argparse
import sys

import numpy as np


def agreement(ref, z, tol):
    """The rule for logits ref (another runtime's) against netc's z:
    (ok, "images=.. top1_agree=../.. max_rel_diff=.. (tol ..) ok|FAIL")."""
    rel = float(np.abs(ref - z).max() / np.abs(z).max())
    agree = int((ref.argmax(1) == z.argmax(1)).sum())
    ok = rel <= tol and agree == z.shape[0]
    return ok, (f"images={z.shape[0]} top1_agree={agree}/{z.shape[0]} "
                f"max_rel_diff={rel:.3e} (tol {tol:g}) {'ok' if ok else 'FAIL'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("classes", type=int)
    ap.add_argument("reference")
    ap.add_argument("netc")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    r = np.fromfile(a.reference, dtype=np.float32).reshape(-1, a.classes)
    z = np.fromfile(a.netc, dtype=np.float32).reshape(-1, a.classes)
    if r.shape != z.shape:
        print(f"logits of {r.shape[0]} and {z.shape[0]} images: FAIL")
        sys.exit(1)
    ok, text = agreement(r, z, a.tol)
    print(text)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
