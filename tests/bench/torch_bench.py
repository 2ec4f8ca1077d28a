#!/usr/bin/env python3
"""torch_bench.py: PyTorch training throughput for the netc benchmark.

    python3 torch_bench.py resnet18|34|50|101|152|resnext50_32x4d|
        se_resnet50|wide_resnet50_2 [--batch 64] [--threads 2]
        [--steps 5] [--warmup 2] [--windows 3]
        [--format both|contiguous|channels_last]

An idiomatic PyTorch training loop (torchvision's ResNet definition, written
out here so that no extra package is needed; SGD with momentum, weight
decay, set_to_none gradients) on random 64x64 images and 200 classes, timed
as the median of timed windows after warm-up.

It runs in both of PyTorch's memory formats: contiguous (NCHW) and
channels_last (NHWC: model and input converted with
.to(memory_format=torch.channels_last), as PyTorch's tutorial does it). With
--format both (the default) each format runs in its own Python process, so
that each one's peak RSS is its own, and the lines are

    torch_run model=... format=contiguous img_per_s=... rss_mib=... ...
    torch_run model=... format=channels_last img_per_s=... rss_mib=... ...
    torch model=... img_per_s=BEST format=FASTER nchw_img_per_s=...
          cl_img_per_s=... rss_mib=... nchw_rss_mib=... cl_rss_mib=...
          params=... torch=VERSION

where img_per_s and rss_mib of the last line are the faster format's
(a format that failed is na, and the other one wins). With one --format,
only that format runs, in this process, and prints its torch_run line."""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.down = None
        if stride != 1 or cin != width:
            self.down = nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False),
                                      nn.BatchNorm2d(width))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)), inplace=True)


class Bottleneck(nn.Module):
    """torchvision's, with its groups and width_per_group (base: ResNeXt,
    Wide ResNet), and se: a squeeze-excitation gate of reduction 16 on the
    residual branch (SE-ResNet)."""
    expansion = 4

    def __init__(self, cin, width, stride=1, groups=1, base=64, se=False):
        super().__init__()
        out, mid = width * 4, width * base // 64 * groups
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=groups,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                nn.Linear(out, out // 16), nn.ReLU(inplace=True),
                                nn.Linear(out // 16, out), nn.Sigmoid()) \
            if se else None
        self.down = None
        if stride != 1 or cin != out:
            self.down = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False),
                                      nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.bn3(self.conv3(y))
        if self.se is not None:
            y = y * self.se(y)[:, :, None, None]
        return F.relu(y + (x if self.down is None else self.down(x)), inplace=True)


class ResNet(nn.Module):
    def __init__(self, block, layers, classes=200, **kw):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for i, n in enumerate(layers):
            width = 64 << i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1,
                                    **kw))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        x = self.stages(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


MODELS = {"resnet18": (BasicBlock, [2, 2, 2, 2]),
          "resnet34": (BasicBlock, [3, 4, 6, 3]),
          "resnet50": (Bottleneck, [3, 4, 6, 3]),
          "resnet101": (Bottleneck, [3, 4, 23, 3]),
          "resnet152": (Bottleneck, [3, 8, 36, 3]),
          "resnext50_32x4d": (Bottleneck, [3, 4, 6, 3], {"groups": 32,
                                                          "base": 4}),
          "wide_resnet50_2": (Bottleneck, [3, 4, 6, 3], {"base": 128}),
          "se_resnet50": (Bottleneck, [3, 4, 6, 3], {"se": True})}


FORMATS = {"contiguous": torch.contiguous_format,
           "channels_last": torch.channels_last}


def run_one(args):
    """The loop in one memory format, in this process: its torch_run line."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fmt = FORMATS[args.format]
    block, layers, *kw = MODELS[args.model]
    model = ResNet(block, layers, **(kw[0] if kw else {})).train() \
        .to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                          weight_decay=5e-4)
    x = torch.randn(args.batch, 3, 64, 64).to(memory_format=fmt)
    y = torch.randint(0, 200, (args.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.windows):
        t = time.perf_counter()
        for _ in range(args.steps):
            step()
        rates.append(args.steps * args.batch / (time.perf_counter() - t))
    # the peak of this process, which ran this format only
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    params = sum(p.numel() for p in model.parameters())
    print(f"torch_run model={args.model} format={args.format} "
          f"batch={args.batch} threads={args.threads} "
          f"img_per_s={statistics.median(rates):.2f} rss_mib={rss} "
          f"params={params} torch={torch.__version__}", flush=True)


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)


def run_both(args):
    """Each format in its own process; then the line with the faster one."""
    runs = {}
    for name in FORMATS:
        cmd = [sys.executable, os.path.abspath(__file__), args.model,
               "--format", name, "--batch", str(args.batch),
               "--threads", str(args.threads), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--windows", str(args.windows)]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        lines = [l for l in p.stdout.splitlines() if l.startswith("torch_run ")]
        if p.returncode == 0 and lines:
            print(lines[-1], flush=True)
            runs[name] = fields(lines[-1])
        else:
            print(f"torch_bench: the {name} run failed (status "
                  f"{p.returncode})", file=sys.stderr)
    if not runs:
        return 1
    best = max(runs, key=lambda n: float(runs[n]["img_per_s"]))

    def get(name, key):
        return runs[name][key] if name in runs else "na"

    r = runs[best]
    print(f"torch model={args.model} batch={args.batch} "
          f"threads={args.threads} img_per_s={r['img_per_s']} format={best} "
          f"nchw_img_per_s={get('contiguous', 'img_per_s')} "
          f"cl_img_per_s={get('channels_last', 'img_per_s')} "
          f"rss_mib={r['rss_mib']} "
          f"nchw_rss_mib={get('contiguous', 'rss_mib')} "
          f"cl_rss_mib={get('channels_last', 'rss_mib')} "
          f"params={r['params']} torch={r['torch']}")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--format", default="both",
                    choices=["both"] + sorted(FORMATS))
    args = ap.parse_args()
    if args.format == "both":
        return run_both(args)
    run_one(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
