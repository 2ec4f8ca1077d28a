#!/usr/bin/env python3
"""torch_ref.py: the PyTorch reference for one netc network.

    netc dump graph --json -b 8 FILE.net > graph.json
    python3 torch_ref.py graph.json ref.bin [--seed 1] [--steps 5]
    python3 torch_ref.py --module torchvision|original graph.json ref.bin

Builds the network of graph.json (the forward ops netc elaborated from the
.net file; with --module, the real PyTorch module the network claims to be,
modules.py) as a PyTorch computation, with its own random weights, input and
labels, runs one training step and writes, in netc's layouts, to a binary
file that `<trainer> compare ref.bin` checks tensor by tensor: the input, the
labels, every parameter, the logits, the loss, every parameter's gradient,
the batchnorm running statistics after the step, and the losses of a few
SGD-momentum steps.

File format: b"NETCREF1", u32 version 1, u32 record count, then records:
u32 name length, name, u32 type (0 float32, 1 int32), u32 ndims, u64 dims,
data (little-endian). Layouts: images NHWC; conv weights (C_out, K, K,
C_in); a dense weight after a flatten of C x H x W (H*W > 1) has its columns
in netc's (H, W, C) order."""
import argparse
import json
import struct

import numpy as np
import torch
import torch.nn.functional as F

import modules
from modules import ModuleNet


# ---- dropout's masks, as runtime/kernels/netc_rt.h draws them: a hash of
# (the step's key, the layer's salt, the element's NHWC index) ------------

M64 = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9e3779b97f4a7c15) & M64
    x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & M64
    x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & M64
    return x ^ (x >> 31)


def step_key(seed, step, rank=0, micro=0):
    k = splitmix64(seed)
    for v in (step, rank, micro):
        k = splitmix64(k ^ v)
    return k


def layer_salt(name):
    h = 2166136261
    for ch in name.encode():
        h = ((h ^ ch) * 16777619) & 0xffffffff
    return h


def mix32(h):
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85ebca6b)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xc2b2ae35)
    return h ^ (h >> np.uint32(16))


def dropout_mask(shape, p32, key, name):
    """netc's keep mask (NCHW, as float32) of a dropout layer `name` on a
    tensor of `shape` at the step of `key`."""
    n, c, h, w = shape
    lk = splitmix64(key ^ layer_salt(name))
    idx = np.arange(n * h * w * c, dtype=np.uint64)  # NHWC order
    lo = (idx & np.uint64(0xffffffff)).astype(np.uint32)
    hi = (idx >> np.uint64(32)).astype(np.uint32)
    with np.errstate(over="ignore"):
        hsh = mix32(lo ^ np.uint32(lk & 0xffffffff))
        hsh = mix32(hsh ^ (hi + np.uint32(lk >> 32)))
    threshold = int(float(p32) * 16777216.0 + 0.5)
    kept = (hsh >> np.uint32(8)) >= threshold
    nchw = kept.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(nchw).astype(np.float32))


class Records:
    def __init__(self):
        self.items = []

    def add(self, name, t, dtype=torch.float32):
        t = t.detach().contiguous().to(dtype).cpu()
        self.items.append((name, 1 if dtype == torch.int32 else 0, list(t.shape),
                           t.numpy().tobytes()))

    def write(self, path):
        with open(path, "wb") as f:
            f.write(b"NETCREF1" + struct.pack("<II", 1, len(self.items)))
            for name, typ, dims, data in self.items:
                n = name.encode()
                f.write(struct.pack("<I", len(n)) + n)
                f.write(struct.pack("<II", typ, len(dims)))
                f.write(b"".join(struct.pack("<Q", d) for d in dims))
                f.write(data)


class Net:
    """The forward graph of netc, run with torch.nn.functional."""

    def __init__(self, graph, gen):
        self.g = graph
        self.step = 0  # train() sets it: the dropout masks' step
        self.tensors = {t["id"]: t for t in graph["tensors"]}
        self.nodes = graph["nodes"]
        self.producer = {n["out"]: n for n in self.nodes}
        self.params = {}
        self.kind = {}
        self.running = {}
        for n in self.nodes:
            for slot, w in enumerate(n["weights"]):
                if w >= 0 and w not in self.params:
                    self.params[w] = self.init(n, slot, w, gen)
            if n["op"] == "batchnorm" and n["weights"][0] not in self.running:
                c = self.tensors[n["in"][0]]["shape"][0]
                self.running[n["weights"][0]] = (torch.zeros(c), torch.ones(c))

    def init(self, node, slot, w, gen):
        dims = self.g["weights"][w]["dims"]
        self.kind[w] = (node["op"], slot, node)
        t = torch.empty(dims)
        if node["op"] == "conv" and slot == 0:
            fan_out = dims[0] * dims[2] * dims[3]
            t.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=gen)
        elif node["op"] == "batchnorm":
            # Not 1 and 0, so that the test sees gamma and beta at work.
            lo, hi = (0.5, 1.5) if slot == 0 else (-0.5, 0.5)
            t.uniform_(lo, hi, generator=gen)
        else:
            fan_in = self.tensors[node["in"][0]]["shape"][0]
            if node["op"] == "conv":
                k, groups = node["attrs"]["k"], node["attrs"]["groups"]
                fan_in = fan_in // groups * k * k
            bound = fan_in ** -0.5
            t.uniform_(-bound, bound, generator=gen)
        return t.requires_grad_(True)

    def forward(self, x, labels):
        v = {self.g["input"]: x, self.g["labels"]: labels}
        for n in self.nodes:
            a, ins = n["attrs"], [v[i] for i in n["in"]]
            w = [self.params.get(i) for i in n["weights"]]
            op = n["op"]
            if op == "conv":
                y = F.conv2d(ins[0], w[0], w[1], a["stride"], a["pad"],
                             groups=a["groups"])
            elif op == "batchnorm":
                rm, rv = self.running[n["weights"][0]]
                y = F.batch_norm(ins[0], rm, rv, w[0], w[1], training=True,
                                 momentum=0.1, eps=1e-5)
            elif op == "relu":
                y = F.relu(ins[0])
            elif op == "sigmoid":
                y = torch.sigmoid(ins[0])
            elif op == "scale":  # s is N x C x 1 x 1
                y = ins[0] * ins[1]
            elif op == "dropout":  # netc's mask at this step (compare's key)
                p32 = np.float32(a["p"])
                scale = float(np.float32(1) / (np.float32(1) - p32))
                mask = dropout_mask(tuple(ins[0].shape), p32,
                                    step_key(0, self.step), n["path"])
                y = ins[0] * (mask.to(ins[0].dtype) * scale)
            elif op == "add":
                y = ins[0] + ins[1]
            elif op == "maxpool":
                y = F.max_pool2d(ins[0], a["k"], a["stride"], a["pad"])
            elif op == "avgpool":
                y = F.avg_pool2d(ins[0], a["k"], a["stride"], a["pad"],
                                 count_include_pad=True)
            elif op == "global_avgpool":
                y = ins[0].mean((2, 3), keepdim=True)
            elif op == "flatten":
                y = ins[0].reshape(ins[0].shape[0], -1, 1, 1)
            elif op == "dense":
                y = F.linear(ins[0].flatten(1), w[0], w[1])[:, :, None, None]
            elif op == "softmax_cross_entropy":
                self.logits = ins[0].flatten(1)
                y = F.cross_entropy(self.logits, labels,
                                    label_smoothing=modules.LABEL_SMOOTHING)
            else:
                raise SystemExit(f"torch_ref.py: unknown op {op}")
            v[n["out"]] = y
        return v[self.g["loss"]]

    def relu_margin(self, x, labels):
        """The smallest |input| of any ReLU, relative to that input's std,
        computed in float64 on copies. A ReLU input within float32 rounding
        of zero can flip between two correct implementations, and one
        flipped element moves a max-relative comparison by O(1): such a
        test point compares nothing."""
        saved = self.params, self.running
        self.params = {k: p.detach().double() for k, p in saved[0].items()}
        self.running = {k: (m.double(), v.double()) for k, (m, v) in saved[1].items()}
        margins = []
        orig = F.relu

        def relu(t):
            margins.append((t.abs().min() / t.std()).item())
            return orig(t)
        F.relu = relu
        try:
            with torch.no_grad():
                self.forward(x.double(), labels)
        finally:
            F.relu = orig
            self.params, self.running = saved
        return min(margins) if margins else float("inf")

    def netc_layout(self, w, t):
        """A weight (or its gradient) in netc's layout."""
        op, slot, node = self.kind[w]
        if op == "conv" and slot == 0:
            return t.permute(0, 2, 3, 1)
        if op == "dense" and slot == 0:
            src = self.producer.get(node["in"][0])
            if src and src["op"] == "flatten":
                c, h, wd = self.tensors[src["in"][0]]["shape"]
                if h * wd > 1:
                    return t.reshape(t.shape[0], c, h, wd).permute(0, 2, 3, 1)
        return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("graph")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--min-margin", type=float, default=1e-5,
                    help="smallest |ReLU input| / std accepted (see "
                         "relu_margin); seeds are tried until one has it")
    ap.add_argument("--tries", type=int, default=30)
    ap.add_argument("--module", choices=("original", "torchvision", "paper"),
                    help="build the network as a real PyTorch module, "
                         "independently of netc's graph (modules.py): "
                         "torchvision's ResNet of the network's name, the "
                         "original project's seed network, or one written "
                         "from its paper (SE, pre-activation, ResNet-D)")
    ap.add_argument("--perturbations", type=int, default=4,
                    help="with --float64: float32 runs on inputs moved by "
                         "one rounding, to measure float32's own error")
    ap.add_argument("--label-smoothing", type=float, default=0.0,
                    help="the loss's targets smoothed by E, as "
                         "cross_entropy(label_smoothing=E) and train "
                         "--label-smoothing E")
    ap.add_argument("--float64", action="store_true",
                    help="write float64 results as the reference, with "
                         "PyTorch float32's own error on each tensor, for "
                         "networks where float32 itself cannot agree to "
                         "1e-3 (ReLU inputs within rounding of zero)")
    args = ap.parse_args()
    with open(args.graph) as f:
        graph = json.load(f)
    modules.LABEL_SMOOTHING = args.label_smoothing
    best = None
    for seed in range(args.seed, args.seed + args.tries):
        gen = torch.Generator().manual_seed(seed)
        net = ModuleNet(graph, gen, args.module) if args.module else Net(graph, gen)
        n = graph["batch"]
        c, h, w = next(t["shape"] for t in graph["tensors"]
                       if t["id"] == graph["input"])
        x = torch.randn(n, c, h, w, generator=gen)
        labels = torch.randint(0, graph["classes"], (n,), generator=gen)
        margin = net.relu_margin(x, labels)
        if best is None or margin > best[0]:
            best = (margin, seed, net, x, labels)
        if margin >= args.min_margin:
            break
    margin, seed, net, x, labels = best
    note = "" if margin >= args.min_margin else " (below --min-margin!)"
    print(f"torch_ref: seed {seed}: smallest ReLU input {margin:.2e} std{note}")
    if args.float64:
        run_float64(args, graph, net, x, labels)
        return

    names = {wt["id"]: wt["name"] for wt in graph["weights"]}
    rec = start_records(net, x, labels, names)
    out = train(net, x, labels, args, torch.float32, names)
    for key, value in out.items():
        rec.add(key, value)
    rec.add("sgd", torch.tensor([args.lr, args.momentum, args.weight_decay]))
    rec.write(args.out)
    print(f"torch_ref: {graph['network']} batch {graph['batch']}: loss "
          f"{out['loss'].item():.6f}, {len(net.params)} parameters, "
          f"{args.steps} steps -> {args.out}")


def start_records(net, x, labels, names):
    """The inputs of the compared step: the batch and the weights."""
    rec = Records()
    if modules.LABEL_SMOOTHING:
        rec.add("label_smoothing", torch.tensor([modules.LABEL_SMOOTHING]))
    rec.add("input", x.permute(0, 2, 3, 1))
    rec.add("labels", labels, torch.int32)
    for wid, p in net.params.items():
        rec.add("param:" + names[wid], net.netc_layout(wid, p))
    return rec


def train(net, x, labels, args, dtype, names):
    """One compared step, then SGD steps: the results, in netc's layouts."""
    net.params = {k: p.detach().to(dtype).requires_grad_(True)
                  for k, p in net.params.items()}
    net.running = {k: (m.to(dtype), v.to(dtype))
                   for k, (m, v) in net.running.items()}
    x = x.to(dtype)
    out = {}
    opt = torch.optim.SGD(list(net.params.values()), lr=args.lr,
                          momentum=args.momentum, weight_decay=args.weight_decay)
    losses = []
    for step in range(args.steps):
        opt.zero_grad()
        net.step = step  # dropout's masks: compare's key for this step
        loss = net.forward(x, labels)
        loss.backward()
        if step == 0:
            out["logits"] = net.logits.detach().clone()
            out["loss"] = loss.detach().reshape(1)
            for wid, p in net.params.items():
                out["grad:" + names[wid]] = net.netc_layout(wid, p.grad).clone()
            for wid, (rm, rv) in net.running.items():
                out["bn_mean:" + names[wid]] = rm.clone()
                out["bn_var:" + names[wid]] = rv.clone()
        losses.append(loss.item())
        opt.step()
    out["step_losses"] = torch.tensor(losses, dtype=torch.float64)
    return out


def run_float64(args, graph, net, x, labels):
    names = {wt["id"]: wt["name"] for wt in graph["weights"]}
    rec = start_records(net, x, labels, names)
    start = ({k: p.detach().clone() for k, p in net.params.items()},
             {k: (m.clone(), v.clone()) for k, (m, v) in net.running.items()})
    def reset():
        net.params = {k: p.clone() for k, p in start[0].items()}
        net.running = {k: (m.clone(), v.clone())
                       for k, (m, v) in start[1].items()}

    # PyTorch float32 on the input as given, then on inputs moved by one
    # rounding (relative 2^-24, random sign): a ReLU input within rounding
    # of zero flips in some of them, as it may in any float32 program, so
    # the worst of these errors is float32's own error on this network,
    # whatever the summation order of the BLAS kernel that runs.
    gen = torch.Generator().manual_seed(args.seed)
    r32s = []
    for k in range(1 + args.perturbations):
        sign = torch.randint(0, 2, x.shape, generator=gen) * 2.0 - 1.0
        xk = x if k == 0 else x * (1 + sign * 2.0 ** -24)
        r32s.append(train(net, xk, labels, args, torch.float32, names))
        reset()
    r64 = train(net, x, labels, args, torch.float64, names)
    worst = 0.0
    scale = max(v.abs().max().item() for k, v in r64.items()
                if k.startswith("grad:"))
    for key, ref in r64.items():
        rec.add(key, ref)
        # As compare.c measures: a gradient that is zero by construction
        # is measured against 1e-4 of the model's largest gradient.
        floor = 1e-4 * scale if key.startswith("grad:") else 1e-30
        err = max(((r32[key].double() - ref).abs().max() /
                   ref.abs().max().clamp_min(floor)).item() for r32 in r32s)
        rec.add("torch32_err:" + key, torch.tensor([err]))
        worst = max(worst, err) if key.startswith("grad:") else worst
    rec.add("sgd", torch.tensor([args.lr, args.momentum, args.weight_decay]))
    rec.write(args.out)
    print(f"torch_ref: {graph['network']} batch {graph['batch']}: float64 "
          f"reference, loss {r64['loss'].item():.6f}; PyTorch float32's own "
          f"largest gradient error {worst:.3e} -> {args.out}")


if __name__ == "__main__":
    main()
