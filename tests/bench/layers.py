#!/usr/bin/env python3
"""layers.py: `make bench-layers`: netc's and PyTorch's time for every
convolution shape of a model, pass by pass, as a Markdown table.

    python3 tests/bench/layers.py [--netc build/netc] [--out build/bench]
        [--batch 64] [--threads 2] [--steps 3] [--format channels_last]
        [models/resnet50.net]

netc: the model is built at --batch and its trainer runs `bench --profile`
(--steps profiled steps after one warm-up step and one timed window) with
NETC_PROFILE_ALL=1, which prints every op's time (runtime/model/profile.c). A conv
layer's forward op and its backward ops are found by layer name; its shape
(input, output channels, kernel, stride, padding, bias) comes from
`netc dump shapes`. Layers of the same shape are one row, with their count;
a shared block's every use counts. netc's profile splits a conv's backward
into data and weights only if its ops do (an op whose name says "data" or
"weight"); today one conv_backward op does both, so the passes are forward
and backward, and the torch split of the backward is shown beside it.

PyTorch: the same shape at the same batch, threads and memory format
(channels_last by default, as PyTorch recommends for CPU convolutions):
torch.nn.functional.conv2d for the forward (with autograd recording it, as
in training), torch.ops.aten.convolution_backward for the backward (the input's gradient only where netc computes one: not for
the network's input), each the median of 5 windows of enough calls to last
about 0.05 s, after a warm-up. Times are ms per call; netc/torch above 1
means netc is slower. With --peak GFLOPS (`make bench-layers` passes
`make bench-peak`'s figure on the same threads) each row also gives both
sides' GFLOP/s and fraction of that peak: 2 x N x OH x OW x OC x C x K x K
flops per forward call, twice that per backward (once where no input
gradient is computed). The last rows sum every conv over the step (ms per
call x count) against netc's whole step.
"""
import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import time


def sh(cmd, env=None):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True,
                          env=env).stdout


def kv(line):
    return dict(f.split("=", 1) for f in line.split() if "=" in f)


# ---- netc -------------------------------------------------------------------

def conv_shapes(netc, model):
    """layer -> shape dict, from `netc dump shapes` (shapes per image)."""
    tensors, convs = {}, {}
    for line in sh([netc, "dump", "shapes", model]).splitlines():
        m = re.match(r"(t\d+) = (\w+)\(?([^)]*)\)?(.*?) : (\d+)x(\d+)x(\d+)"
                     r"\s*#\s*(\S+)", line)
        if not m:
            continue
        t, op, args, attrs = m.group(1), m.group(2), m.group(3), m.group(4)
        shape = tuple(int(m.group(i)) for i in (5, 6, 7))
        tensors[t] = (op, shape)
        if op != "conv":
            continue
        a = dict(re.findall(r"(\w+)=(\w+)", attrs))
        src = args.split(",")[0].strip()
        src_op, (c, h, w) = tensors[src]
        convs[m.group(8)] = {
            "cin": c, "h": h, "w": w, "cout": int(a["out"]), "k": int(a["k"]),
            "stride": int(a.get("stride", 1)), "pad": int(a.get("pad", 0)),
            "bias": a.get("bias", "true") == "true",
            # netc computes no gradient for the network's input
            "dx": src_op != "input", "ho": shape[1], "wo": shape[2]}
    return convs


def netc_profile(args, name):
    trainer = os.path.join(args.out, name, name)
    env = dict(os.environ, NETC_PROFILE_ALL="1")
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    sh([args.netc, "build", "--threads", str(args.threads), "-b",
        str(args.batch), "-o", os.path.join(args.out, name), args.model],
       env=env)
    out = sh([trainer, "bench", "--threads", str(args.threads), "--steps",
              str(args.steps), "--windows", "1", "--warmup", "1",
              "--profile"], env=env)
    ops = [kv(l) for l in out.splitlines() if l.startswith("profile_op ")]
    if not ops:
        sys.exit("layers.py: the trainer printed no profile_op lines "
                 "(runtime/model/profile.c's NETC_PROFILE_ALL)")
    return ops, out.splitlines()[0]


def conv_pass(op):
    """The pass a conv layer's op belongs to, or None (e.g. its update)."""
    if not op["op"].startswith("conv"):
        return None
    if op["pass"] == "forward":
        return "forward"
    if "data" in op["op"]:
        return "backward-data"
    if "weight" in op["op"] or "filter" in op["op"]:
        return "backward-weights"
    return "backward"


# ---- PyTorch ----------------------------------------------------------------

class Torch:
    def __init__(self, threads, fmt):
        import torch
        self.torch = torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.fmt = {"channels_last": torch.channels_last,
                    "contiguous": torch.contiguous_format}[fmt]

    @staticmethod
    def timed(fn):
        for _ in range(3):
            fn()
        t = time.perf_counter()
        fn()
        n = max(1, math.ceil(0.05 / max(time.perf_counter() - t, 1e-6)))
        per_call = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(n):
                fn()
            per_call.append((time.perf_counter() - t) / n)
        return 1e3 * statistics.median(per_call)

    def times(self, s, batch, passes):
        """ms per call of each pass for shape s."""
        torch, F = self.torch, self.torch.nn.functional
        x = torch.randn(batch, s["cin"], s["h"], s["w"]).to(
            memory_format=self.fmt)
        w = (torch.randn(s["cout"], s["cin"], s["k"], s["k"]) * 0.05).to(
            memory_format=self.fmt)
        b = torch.randn(s["cout"]) if s["bias"] else None
        st, pd = [s["stride"]] * 2, [s["pad"]] * 2
        gy = torch.randn(batch, s["cout"], s["ho"], s["wo"]).to(
            memory_format=self.fmt)
        bias_sizes = [s["cout"]] if s["bias"] else None

        def bwd(dx, dw):
            return lambda: torch.ops.aten.convolution_backward(
                gy, x, w, bias_sizes, st, pd, [1, 1], False, [0, 0], 1,
                [dx, dw, dw and s["bias"]])

        # the forward as training runs it: autograd records it (weights
        # that need gradients), then drops it
        xg, wg = x.clone().requires_grad_(s["dx"]), w.clone().requires_grad_()
        bg = b.clone().requires_grad_() if b is not None else None
        fns = {"forward": lambda: F.conv2d(xg, wg, bg, st, pd),
               "backward": bwd(s["dx"], True),
               "backward-data": bwd(True, False),
               "backward-weights": bwd(False, True)}
        return {p: (self.timed(fns[p])
                    if p != "backward-data" or s["dx"] else None)
                for p in passes}


# ---- the table ----------------------------------------------------------------

def label(s):
    return (f"{s['cin']}x{s['h']}x{s['w']} → {s['cout']}x{s['ho']}x{s['wo']}, "
            f"{s['k']}x{s['k']}/{s['stride']} p{s['pad']}"
            + (" +bias" if s["bias"] else "") + ("" if s["dx"] else " (no dx)"))


def fmt(x, digits=3):
    return "–" if x is None else f"{x:.{digits}f}"


def flops(s, batch, p):
    """Flops of one call of pass p of shape s."""
    fwd = 2.0 * batch * s["ho"] * s["wo"] * s["cout"] * s["cin"] * s["k"] ** 2
    if p == "forward" or p == "backward-data" or p == "backward-weights":
        return fwd
    return fwd * (2 if s["dx"] else 1)


def rate(s, batch, p, ms, peak):
    """' GFLOP/s | % of peak |' of a call of ms milliseconds."""
    if ms is None or ms <= 0:
        return " – | – |"
    g = flops(s, batch, p) / (ms * 1e6)
    return f" {g:.0f} | {100 * g / peak:.0f}% |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="models/resnet50.net")
    ap.add_argument("--netc", default="build/netc")
    ap.add_argument("--out", default="build/bench")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--format", default="channels_last",
                    choices=["channels_last", "contiguous"])
    ap.add_argument("--peak", type=float, default=0,
                    help="this CPU's FMA peak in GFLOP/s (make bench-peak)")
    args = ap.parse_args()
    total = sh([args.netc, "check", args.model]).splitlines()[-1]
    name = kv(total)["network"]
    shapes = conv_shapes(args.netc, args.model)
    ops, bench_line = netc_profile(args, name)
    step_ms = sum(float(o["ms_per_step"]) for o in ops)

    # (shape, pass) -> netc ms over its ops; shape -> forward calls
    rows, count, order = {}, {}, []
    for o in ops:
        p = conv_pass(o)
        if p is None or o["layer"] not in shapes:
            continue
        s = shapes[o["layer"]]
        key = tuple(sorted(s.items()))
        if key not in count:
            count[key] = 0
            order.append(key)
        if p == "forward":
            count[key] += 1
        r = rows.setdefault((key, p), [0.0, 0])
        r[0] += float(o["ms_per_step"])
        r[1] += 1
    passes = ["forward", "backward", "backward-data", "backward-weights"]
    netc_passes = [p for p in passes if any(k[1] == p for k in rows)]
    split = "backward" in netc_passes  # netc does not split: torch's split
    torch_passes = netc_passes + (["backward-data", "backward-weights"]
                                  if split else [])
    try:
        t = Torch(args.threads, args.format)
        ttimes = {k: t.times(dict(k), args.batch, torch_passes) for k in order}
        tname = f"torch {t.torch.__version__} {args.format}"
    except ImportError:
        ttimes, tname = {}, "torch not installed"

    b = kv(bench_line)
    print(f"## {name}: convolutions, batch {args.batch}, "
          f"{b.get('threads', args.threads)} threads\n")
    print(f"netc: `bench --profile`, {args.steps} steps, {step_ms:.1f} ms per "
          f"profiled step ({b.get('img_per_s', '?')} img/s unprofiled); "
          f"{tname}. ms per call; netc/torch > 1: netc is slower."
          + (f" Peak: {args.peak:.0f} GFLOP/s (`make bench-peak`)."
             if args.peak else "") + "\n")
    head = ("| # | shape (in → out, kernel/stride pad) | count | pass | "
            "netc ms | torch ms | netc/torch | netc ms/step |")
    if args.peak:
        head += (" netc GFLOP/s | netc of peak | torch GFLOP/s | "
                 "torch of peak |")
    if split:
        head += " torch data + weights ms |"
    print(head)
    print("|---:|---|---:|---|---:|---:|---:|---:|"
          + ("---:|" * 4 if args.peak else "") + ("---:|" if split else ""))
    sums = {}
    for i, key in enumerate(order, 1):
        for p in netc_passes:
            if (key, p) not in rows:
                continue
            ms, calls = rows[(key, p)]
            per = ms / calls
            tm = ttimes.get(key, {}).get(p)
            ratio = per / tm if tm else None
            acc = sums.setdefault(p, [0.0, 0.0])
            acc[0] += ms
            acc[1] += tm * calls if tm else 0.0
            line = (f"| {i} | {label(dict(key))} | {calls} | {p} | {per:.3f} | "
                    f"{fmt(tm)} | {fmt(ratio, 2)} | {ms:.2f} |")
            if args.peak:
                line += (rate(dict(key), args.batch, p, per, args.peak)
                         + rate(dict(key), args.batch, p, tm, args.peak))
            if split:
                tt = ttimes.get(key, {})
                line += (f" {fmt(tt.get('backward-data'))} + "
                         f"{fmt(tt.get('backward-weights'))} |"
                         if p == "backward" else " |")
            print(line)
    print()
    print("| all convolutions | netc ms/step | torch ms/step | netc/torch | "
          "share of netc's step |")
    print("|---|---:|---:|---:|---:|")
    for p in netc_passes:
        n, tm = sums.get(p, [0.0, 0.0])
        print(f"| {p} | {n:.1f} | {fmt(tm if ttimes else None, 1)} | "
              f"{fmt(n / tm if tm else None, 2)} | {100 * n / step_ms:.1f}% |")
    n = sum(v[0] for v in sums.values())
    tm = sum(v[1] for v in sums.values())
    print(f"| total | {n:.1f} | {fmt(tm if ttimes else None, 1)} | "
          f"{fmt(n / tm if tm else None, 2)} | {100 * n / step_ms:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
