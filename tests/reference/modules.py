"""modules.py: the networks netc's zoo claims to be, written as PyTorch
modules independently of netc, for torch_ref.py --module.

torch_ref.py without --module rebuilds the network from netc's own graph
dump, so it checks netc's arithmetic but not that the .net file describes
the network it claims. Here the network comes from elsewhere: torchvision's
own ResNets, and the original project's ResidualBlock and ResNet classes.
Only the names are shared: each kind maps a netc weight name to the
module's parameter (rules below), and a netc weight the module lacks, or a
module parameter that no netc weight takes (other than the original's
unused projections), is an error.

The original project's source is not in this repository. Its classes are
written here as models/seed_resnet.net's header and issue 15 describe them:
forward is conv -> max_pool -> blocks -> avg_pool -> three linear layers; a
stage is one strided block and one shared block applied 2, 3, 5 and 1
times; every block registers a 1x1 projection (conv + batchnorm), which
only the strided blocks run. PyTorch counts 25,869,804 parameters for it
at 100 classes, the count the original project printed."""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

# torch_ref.py --label-smoothing: the loss's targets, smoothed.
LABEL_SMOOTHING = 0.0

try:  # torch >= 2.0
    from torch.func import functional_call
except ImportError:  # Debian's torch 1.13
    from torch.nn.utils.stateless import functional_call


class ResidualBlock(nn.Module):
    """The original bottleneck: 1x1 (strided), 3x3, 1x1 to 4 x width, each
    with batchnorm and ReLU, the ReLU before the add. The projection is
    registered in every block and run only where the shape changes."""

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        out = 4 * width
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        self.projection = nn.Sequential(
            nn.Conv2d(in_channels, out, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out))
        self.project = stride != 1 or in_channels != out

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.relu(self.bn3(self.conv3(y)))
        return y + (self.projection(x) if self.project else x)


class ResNet(nn.Module):
    """The original network: a 7x7 convolution without padding or
    batchnorm, a 3x3/1 max pool, four stages of a strided block and a
    shared block, a 3x3 average pool and three linear layers."""

    USES = (2, 3, 5, 1)

    def __init__(self, num_classes=100):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, kernel_size=7)
        self.max_pool = nn.MaxPool2d(3, stride=1)
        c = 64
        for s, width in enumerate((64, 128, 256, 512), 1):
            setattr(self, f"block{s}", ResidualBlock(c, width, stride=2))
            setattr(self, f"shared{s}", ResidualBlock(4 * width, width))
            c = 4 * width
        self.avg_pool = nn.AvgPool2d(3)
        self.fc1 = nn.Linear(2048, 2048)
        self.fc2 = nn.Linear(2048, 1000)
        self.fc3 = nn.Linear(1000, num_classes)

    def forward(self, x):
        x = self.conv(x)
        x = self.max_pool(x)
        for s, uses in enumerate(self.USES, 1):
            x = getattr(self, f"block{s}")(x)
            for _ in range(uses):
                x = getattr(self, f"shared{s}")(x)
        x = self.avg_pool(x).flatten(1)
        return self.fc3(self.fc2(self.fc1(x)))


# ---- Networks from their papers, for --module paper -----------------------
# Each is written from its paper's description, in torchvision's style, and
# shares nothing with netc but the weight names (paper_name below).


def _stem(width=64):
    return nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False),
                         nn.BatchNorm2d(width), nn.ReLU(),
                         nn.MaxPool2d(3, 2, 1))


class SEBottleneck(nn.Module):
    """Hu et al., "Squeeze-and-Excitation Networks" (2018), fig. 3: the
    SE-ResNet module. The residual branch's output U is scaled per channel
    by sigmoid(W2 relu(W1 mean(U))), W1 reducing by r = 16, then added to
    the identity."""

    def __init__(self, inplanes, planes, stride=1, reduction=16):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.fc1 = nn.Linear(out, out // reduction)
        self.fc2 = nn.Linear(out // reduction, out)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride, bias=False),
                nn.BatchNorm2d(out))

    def forward(self, x):
        u = F.relu(self.bn1(self.conv1(x)))
        u = F.relu(self.bn2(self.conv2(u)))
        u = self.bn3(self.conv3(u))
        z = u.mean((2, 3))                       # squeeze
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(z))))   # excitation
        u = u * s[:, :, None, None]
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(u + identity)


class PreActBlock(nn.Module):
    """He et al., "Identity Mappings in Deep Residual Networks" (2016),
    fig. 4(e): full pre-activation, BN -> ReLU -> conv twice, and the sum
    left as it is. A projection (1x1 conv) reads the pre-activated input."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or inplanes != planes:
            self.shortcut = nn.Conv2d(inplanes, planes, 1, stride, bias=False)

    def forward(self, x):
        a = F.relu(self.bn1(x))
        y = self.conv1(a)
        y = self.conv2(F.relu(self.bn2(y)))
        return y + (x if self.shortcut is None else self.shortcut(a))


class DBottleneck(nn.Module):
    """He et al., "Bag of Tricks for Image Classification with CNNs" (2019),
    fig. 2(c), ResNet-D: the bottleneck strides in its 3x3 (ResNet-B), and a
    strided projection shortcut is a 2x2 average pool, then a 1x1 conv at
    stride 1 and batchnorm."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride) if stride != 1 else nn.Identity(),
                nn.Conv2d(inplanes, out, 1, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None
                           else self.downsample(x)))


class PaperResNet(nn.Module):
    """A stem, four stages of `block` (64, 128, 256, 512 planes, the last
    three strided), global average pooling and one linear layer. `deep`: the
    Bag of Tricks' ResNet-C stem (three 3x3 convs, 32, 32, 64 wide, the first
    strided). `final_act`: pre-activation's batchnorm and ReLU after the last
    block."""

    def __init__(self, block, counts, expansion, classes, deep=False,
                 final_act=False):
        super().__init__()
        if deep:
            self.stem = nn.Sequential(
                nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32),
                nn.ReLU(), nn.Conv2d(32, 32, 3, 1, 1, bias=False),
                nn.BatchNorm2d(32), nn.ReLU(),
                nn.Conv2d(32, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = _stem()
        inplanes, layers = 64, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
            blocks = []
            for j in range(n):
                blocks.append(block(inplanes, planes,
                                    2 if i > 0 and j == 0 else 1))
                inplanes = planes * expansion
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.final = nn.Sequential(nn.BatchNorm2d(inplanes), nn.ReLU()) \
            if final_act else nn.Identity()
        self.fc = nn.Linear(inplanes, classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.final(x)
        return self.fc(x.mean((2, 3)))


PAPER_NETWORKS = {
    "se_resnet50": lambda c: PaperResNet(SEBottleneck, (3, 4, 6, 3), 4, c),
    "preact_resnet18": lambda c: PaperResNet(PreActBlock, (2, 2, 2, 2), 1, c,
                                             final_act=True),
    "resnet50d": lambda c: PaperResNet(DBottleneck, (3, 4, 6, 3), 4, c,
                                       deep=True),
}


def paper_name(name):
    """netc's name of a weight of a PAPER_NETWORKS network -> the module's."""
    stems = {"imagenet_stem1.conv1": "stem.0", "imagenet_stem1.batchnorm1":
             "stem.1", "deep_stem1.conv1": "stem.0",
             "deep_stem1.batchnorm1": "stem.1", "deep_stem1.conv2": "stem.3",
             "deep_stem1.batchnorm2": "stem.4", "deep_stem1.conv3": "stem.6",
             "deep_stem1.batchnorm3": "stem.7", "batchnorm1": "final.0",
             "classifier1.dense1": "fc"}
    layer, _, leaf = name.rpartition(".")
    if layer in stems:
        return stems[layer] + "." + leaf
    m = re.fullmatch(r"stage(\d)\.(se_bottleneck|preact_basic|d_bottleneck)"
                     r"(\d+)\.(.*)", layer)
    if not m:
        return None
    rest = {"squeeze_excite1.dense1": "fc1", "squeeze_excite1.dense2": "fc2",
            "shortcut1.conv1": "downsample.0",
            "shortcut1.batchnorm1": "downsample.1",
            "avg_shortcut1.conv1": "downsample.1",
            "avg_shortcut1.batchnorm1": "downsample.2"}.get(m[4])
    if rest is None and m[2] == "preact_basic" and m[4] == "conv3":
        rest = "shortcut"
    if rest is None:
        rest = re.sub(r"^batchnorm(\d)$", r"bn\1", m[4])
    return f"layer{m[1]}.{int(m[3]) - 1}.{rest}.{leaf}"


def _layer_part(rest):
    """A block's inner name: netc's conv2 / batchnorm2 / shortcut1.conv1."""
    rest = re.sub(r"^shortcut1\.conv1\.", "downsample.0.", rest)
    rest = re.sub(r"^shortcut1\.batchnorm1\.", "downsample.1.", rest)
    return re.sub(r"^batchnorm(\d)\.", r"bn\1.", rest)


def torchvision_name(name):
    """netc's name of a zoo ResNet's weight -> torchvision's."""
    m = re.fullmatch(r"imagenet_stem1\.(conv1|batchnorm1)\.(\w+)", name)
    if m:
        return ("conv1" if m[1] == "conv1" else "bn1") + "." + m[2]
    m = re.fullmatch(r"stage(\d)\.(?:basic|bottleneck)(\d+)\.(.*)", name)
    if m:
        return f"layer{m[1]}.{int(m[2]) - 1}." + _layer_part(m[3])
    m = re.fullmatch(r"classifier1\.dense1\.(\w+)", name)
    if m:
        return "fc." + m[1]
    return None


def original_name(name):
    """netc's name of a seed_resnet weight -> the original module's."""
    m = re.fullmatch(r"conv1\.(\w+)", name)
    if m:
        return "conv." + m[1]
    m = re.fullmatch(r"seed_stage(\d)\.(seed_bottleneck1|again)\.(.*)", name)
    if m:
        part = _layer_part(m[3]).replace("downsample.", "projection.")
        return ("block" if m[2] != "again" else "shared") + m[1] + "." + part
    m = re.fullmatch(r"dense(\d)\.(\w+)", name)
    if m:
        return f"fc{m[1]}.{m[2]}"
    return None


def build(kind, network, classes):
    """The module of `kind` for netc's network `network`, and the name rule."""
    if kind == "original":
        module = ResNet(classes)
        count = sum(p.numel() for p in module.parameters())
        if classes == 100 and count != 25869804:
            raise SystemExit(f"modules.py: the original network has "
                             f"{count} parameters, not 25,869,804")
        return module, original_name
    if kind == "paper":
        if network not in PAPER_NETWORKS:
            raise SystemExit(f"modules.py: no paper module for {network}")
        return PAPER_NETWORKS[network](classes), paper_name
    if kind == "torchvision":
        import torchvision
        return getattr(torchvision.models, network)(num_classes=classes), \
            torchvision_name
    raise SystemExit(f"modules.py: unknown --module {kind}")


class ModuleNet:
    """torch_ref.py's Net interface over a real module: params and running
    statistics keyed by netc's weight ids, forward through the module with
    them (functional_call), the module's own initialization (batchnorm's
    gamma and beta moved off 1 and 0, as torch_ref does, so that they are
    seen at work)."""

    def __init__(self, graph, gen, kind):
        torch.manual_seed(gen.initial_seed())
        self.module, rule = build(kind, graph["network"], graph["classes"])
        self.module.train()
        state = dict(self.module.state_dict())
        self.names = {}   # netc weight id -> module parameter name
        self.params, self.running = {}, {}
        for wt in graph["weights"]:
            mname = rule(wt["name"])
            if mname is None or mname not in state:
                raise SystemExit(f"modules.py: netc weight {wt['name']} has "
                                 f"no {kind} counterpart ({mname})")
            t = state[mname].clone().float()
            if list(t.shape) != list(wt["dims"]):
                raise SystemExit(f"modules.py: {wt['name']} is "
                                 f"{wt['dims']} in netc, {list(t.shape)} "
                                 f"in the module ({mname})")
            prefix = mname.rsplit(".", 1)[0]
            is_bn = prefix + ".running_mean" in state
            if is_bn:
                lo, hi = (0.5, 1.5) if mname.endswith("weight") else (-0.5, 0.5)
                t.uniform_(lo, hi, generator=gen)
                if mname.endswith("weight"):
                    self.running[wt["id"]] = (
                        state[prefix + ".running_mean"].clone(),
                        state[prefix + ".running_var"].clone())
            self.names[wt["id"]] = mname
            self.params[wt["id"]] = t.requires_grad_(True)
        taken = set(self.names.values())
        unused = [n for n, p in self.module.named_parameters() if n not in taken]
        if kind == "original":
            unused = [n for n in unused if ".projection." not in n or
                      n.startswith("block")]
        if unused:
            raise SystemExit(f"modules.py: module parameters no netc weight "
                             f"takes: {', '.join(unused[:5])}")

    def forward(self, x, labels):
        d = {self.names[w]: p for w, p in self.params.items()}
        for w, (rm, rv) in self.running.items():
            prefix = self.names[w].rsplit(".", 1)[0]
            d[prefix + ".running_mean"] = rm
            d[prefix + ".running_var"] = rv
        self.logits = functional_call(self.module, d, (x,))
        return F.cross_entropy(self.logits, labels,
                               label_smoothing=LABEL_SMOOTHING)

    def relu_margin(self, x, labels):
        """As Net.relu_margin: the smallest |ReLU input| / std, float64."""
        saved = self.params, self.running
        self.params = {k: p.detach().double() for k, p in saved[0].items()}
        self.running = {k: (m.double(), v.double())
                        for k, (m, v) in saved[1].items()}
        margins = []
        orig = F.relu

        def relu(t, inplace=False):
            margins.append((t.abs().min() / t.std()).item())
            return orig(t, inplace=inplace)
        F.relu = relu
        try:
            with torch.no_grad():
                self.forward(x.double(), labels)
        finally:
            F.relu = orig
            self.params, self.running = saved
        return min(margins) if margins else float("inf")

    def netc_layout(self, w, t):
        """A weight (or its gradient) in netc's layout: convolutions OHWI.
        (No zoo network flattens a map larger than 1x1 into a dense layer,
        where netc's columns would be in (H, W, C) order.)"""
        return t.permute(0, 2, 3, 1) if t.dim() == 4 else t
