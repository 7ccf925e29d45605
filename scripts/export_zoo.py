"""Export a zoo of torchvision classifier architectures (random weights, fixed seed) to ONNX,
each twice: with the TorchScript exporter at opset 17 (BatchNormalization kept as a node, no
constant folding) and with the dynamo exporter at opset 18.

A development tool: needs torch, torchvision, onnx, onnxscript and onnxruntime, which the tests
never do.

usage:
    python scripts/export_zoo.py                     # small variants into models/zoo/ (+ README.md, index.json)
    python scripts/export_zoo.py --out DIR           # small variants into DIR
    python scripts/export_zoo.py --full OUT_DIR      # full-size torchvision models (not committed)
    python scripts/export_zoo.py --only resnet18,vit_b_16 ...   # a subset (README/index still list all
                                                     # files already described in DIR's index.json)

Small variants keep each architecture's block structure (same block types, depths and op
patterns) but divide every channel width by a per-architecture factor (3 input channels and the
class count excepted), use num_classes=10 and a small input. The division is done by patching
the constructors of nn.Conv2d, nn.BatchNorm2d, nn.Linear and nn.LayerNorm while torchvision
builds the model; ShuffleNet, ConvNeXt and ViT are built from their constructor arguments
instead (their widths also live outside those modules).

Weights: torchvision's default initialisation, then every BatchNorm / LayerNorm gets random
affine parameters and every BatchNorm perturbed measured running statistics, so that none is an
identity and the logits depend on the input (see randomise_norms). The seed of each
architecture is crc32 of its name, so one model does not depend on which others are exported.

Every file is checked with onnx.checker.check_model(full_check=True) and its logits are compared
with torch's in onnxruntime (batch of 2, max |diff| <= 1e-4 * max |torch logits|).
"""
import argparse
import collections
import contextlib
import json
import math
import os
import sys
import time
import traceback
import zlib

import numpy as np
import onnx
import torch
import torch.nn as nn
import torchvision
from torchvision.models import convnext as tv_convnext
from torchvision.models import shufflenetv2 as tv_shufflenet
from torchvision.models import vision_transformer as tv_vit

NUM_CLASSES_SMALL = 10
RTOL = 1e-4
TS_OPSET = 17
DYN_OPSET = 18

# --------------------------------------------------------------------------------------------
# width reduction


class WidthMap:
    """Maps an original channel count to the reduced one: overrides first, else c / factor
    (rounded up where it does not divide). `keep` values are never changed (3 input channels,
    the class count)."""

    def __init__(self, factor, overrides=None, keep=(3,)):
        self.factor = factor
        self.overrides = dict(overrides or {})
        self.keep = set(keep)
        self.inexact = set()

    def __call__(self, c):
        if c in self.keep:
            return c
        if c in self.overrides:
            return self.overrides[c]
        if c % self.factor:
            self.inexact.add(c)
        return max(1, math.ceil(c / self.factor))

    def groups(self, groups, old_in, old_out, new_in, new_out):
        if groups == 1:
            return 1
        if groups == old_in == old_out:  # depthwise stays depthwise
            return new_in
        # grouped (not depthwise): the most groups, at most the original count, that divide both
        # reduced widths and leave at least 2 channels per group (so it stays a grouped, not a
        # depthwise, convolution wherever the width allows)
        g = math.gcd(new_in, new_out)
        for d in range(min(groups, g), 0, -1):
            if g % d == 0 and new_in // d >= 2 and new_out // d >= 2:
                return d
        return 1


@contextlib.contextmanager
def reduced_widths(wmap):
    """While active, nn.Conv2d / nn.BatchNorm2d / nn.Linear / nn.LayerNorm (and subclasses that
    do not override __init__) are built with widths mapped by `wmap`."""
    orig = {
        nn.Conv2d: nn.Conv2d.__init__,
        nn.BatchNorm2d: nn.BatchNorm2d.__init__,
        nn.Linear: nn.Linear.__init__,
        nn.LayerNorm: nn.LayerNorm.__init__,
    }

    def conv_init(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                  groups=1, *args, **kwargs):
        ni, no = wmap(in_channels), wmap(out_channels)
        ng = wmap.groups(groups, in_channels, out_channels, ni, no)
        orig[nn.Conv2d](self, ni, no, kernel_size, stride, padding, dilation, ng, *args, **kwargs)

    def bn_init(self, num_features, *args, **kwargs):
        orig[nn.BatchNorm2d](self, wmap(num_features), *args, **kwargs)

    def linear_init(self, in_features, out_features, *args, **kwargs):
        orig[nn.Linear](self, wmap(in_features), wmap(out_features), *args, **kwargs)

    def ln_init(self, normalized_shape, *args, **kwargs):
        if isinstance(normalized_shape, int):
            normalized_shape = wmap(normalized_shape)
        else:
            normalized_shape = list(normalized_shape)
            normalized_shape[-1] = wmap(normalized_shape[-1])
        orig[nn.LayerNorm](self, normalized_shape, *args, **kwargs)

    nn.Conv2d.__init__ = conv_init
    nn.BatchNorm2d.__init__ = bn_init
    nn.Linear.__init__ = linear_init
    nn.LayerNorm.__init__ = ln_init
    try:
        yield
    finally:
        for cls, init in orig.items():
            cls.__init__ = init


# --------------------------------------------------------------------------------------------
# the zoo

M = torchvision.models

# name -> dict(
#   full=(ctor, kwargs, input size)            standard torchvision model, 1000 classes
#   small=dict(factor, overrides, size, build=callable or None, note))
# `build` (if given) makes the small model itself (no constructor patching).


def _shufflenet_small():
    # x1.0: stages_out_channels [24, 116, 232, 464, 1024], divided by 8 and rounded to even
    # values (each stage splits its channels in two halves)
    return tv_shufflenet.ShuffleNetV2([4, 8, 4], [4, 14, 30, 58, 128], num_classes=NUM_CLASSES_SMALL)


def _convnext_small():
    # tiny: (96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3); widths / 24
    cfg = tv_convnext.CNBlockConfig
    settings = [cfg(4, 8, 3), cfg(8, 16, 3), cfg(16, 32, 9), cfg(32, None, 3)]
    return tv_convnext.ConvNeXt(settings, stochastic_depth_prob=0.1, num_classes=NUM_CLASSES_SMALL)


def _vit_small():
    # ViT-B/16: 12 layers, 12 heads, hidden 768, mlp 3072 at 224 px
    return tv_vit.VisionTransformer(image_size=64, patch_size=16, num_layers=4, num_heads=2,
                                    hidden_dim=32, mlp_dim=64, num_classes=NUM_CLASSES_SMALL)


ZOO = collections.OrderedDict([
    ("alexnet", dict(full=(M.alexnet, {}, 224),
                     small=dict(factor=16, overrides={4096: 32}, size=224,
                                note="classifier hidden 4096 -> 32; 224 px so the 6x6 adaptive "
                                     "average pool is exact (smaller inputs give a 1x1 map, which "
                                     "the TorchScript exporter cannot pool up to 6x6)"))),
    ("vgg11", dict(full=(M.vgg11, {}, 224),
                   small=dict(factor=32, overrides={4096: 16}, size=224,
                              note="classifier hidden 4096 -> 16; 224 px so the 7x7 adaptive "
                                   "average pool is exact"))),
    ("vgg11_bn", dict(full=(M.vgg11_bn, {}, 224),
                      small=dict(factor=32, overrides={4096: 16}, size=224,
                                 note="classifier hidden 4096 -> 16; 224 px so the 7x7 adaptive "
                                   "average pool is exact"))),
    ("vgg16", dict(full=(M.vgg16, {}, 224),
                   small=dict(factor=32, overrides={4096: 16}, size=224, note="classifier hidden 4096 -> 16; 224 px so the 7x7 adaptive "
                                   "average pool is exact"))),
    ("vgg16_bn", dict(full=(M.vgg16_bn, {}, 224),
                      small=dict(factor=32, overrides={4096: 16}, size=224, note="classifier hidden 4096 -> 16; 224 px so the 7x7 adaptive "
                                   "average pool is exact"))),
    ("vgg19", dict(full=(M.vgg19, {}, 224),
                   small=dict(factor=32, overrides={4096: 16}, size=224, note="classifier hidden 4096 -> 16; 224 px so the 7x7 adaptive "
                                   "average pool is exact"))),
    ("vgg19_bn", dict(full=(M.vgg19_bn, {}, 224),
                      small=dict(factor=32, overrides={4096: 16}, size=224, note="classifier hidden 4096 -> 16; 224 px so the 7x7 adaptive "
                                   "average pool is exact"))),
    ("resnet18", dict(full=(M.resnet18, {}, 224), small=dict(factor=16, size=64))),
    ("resnet50", dict(full=(M.resnet50, {}, 224), small=dict(factor=32, size=64))),
    ("resnet101", dict(full=(M.resnet101, {}, 224), small=dict(factor=32, size=64))),
    ("wide_resnet50_2", dict(full=(M.wide_resnet50_2, {}, 224), small=dict(factor=32, size=64))),
    ("resnext50_32x4d", dict(full=(M.resnext50_32x4d, {}, 224),
                             small=dict(factor=32, size=64,
                                        note="grouped 3x3 convs: 32 groups -> 2/4/8/16 groups "
                                             "of 2 channels (widths 4/8/16/32)"))),
    ("densenet121", dict(full=(M.densenet121, {}, 224), small=dict(factor=16, size=64))),
    ("squeezenet1_1", dict(full=(M.squeezenet1_1, {}, 224), small=dict(factor=8, size=64))),
    ("googlenet", dict(full=(M.googlenet, dict(aux_logits=False, transform_input=False,
                                               init_weights=True), 224),
                       small=dict(factor=16, size=64,
                                  kwargs=dict(aux_logits=False, transform_input=False,
                                              init_weights=True)))),
    ("inception_v3", dict(full=(M.inception_v3, dict(aux_logits=False, transform_input=False,
                                                     init_weights=True), 299),
                          small=dict(factor=32, size=96,
                                     kwargs=dict(aux_logits=False, transform_input=False,
                                                 init_weights=True)))),
    ("mobilenet_v2", dict(full=(M.mobilenet_v2, {}, 224), small=dict(factor=12, size=64))),
    ("mobilenet_v3_small", dict(full=(M.mobilenet_v3_small, {}, 224),
                                small=dict(factor=8, size=64))),
    ("efficientnet_b0", dict(full=(M.efficientnet_b0, {}, 224), small=dict(factor=12, size=64))),
    ("shufflenet_v2_x1_0", dict(full=(M.shufflenet_v2_x1_0, {}, 224),
                                small=dict(factor=8, size=64, build=_shufflenet_small,
                                           note="stages_out_channels [24,116,232,464,1024] -> "
                                                "[4,14,30,58,128] (/8, rounded to even)"))),
    ("regnet_y_400mf", dict(full=(M.regnet_y_400mf, {}, 224),
                            small=dict(factor=16, size=64,
                                       overrides={48: 4, 104: 8, 208: 14, 440: 28},
                                       note="stage widths 48/104/208/440 -> 4/8/14/28; grouped "
                                            "3x3 convs (group width 8, 6/13/26/55 groups) -> "
                                            "2/4/7/14 groups of 2 channels"))),
    ("convnext_tiny", dict(full=(M.convnext_tiny, {}, 224),
                           small=dict(factor=24, size=64, build=_convnext_small,
                                      note="widths / 24: block settings (4,8,3), (8,16,3), "
                                           "(16,32,9), (32,-,3)"))),
    ("vit_b_16", dict(full=(M.vit_b_16, {}, 224),
                      small=dict(factor=24, size=64, build=_vit_small,
                                 note="VisionTransformer(image_size=64, patch_size=16, "
                                      "num_layers=4 (12), num_heads=2 (12), hidden_dim=32 (768), "
                                      "mlp_dim=64 (3072)): depth 12 -> 4 for the size budget"))),
])


def seed_of(name):
    return zlib.crc32(name.encode())


def randomise_norms(model, gen, size):
    """Make every BatchNorm a non-identity with sane statistics, and the few parameters that
    torchvision initialises to constants (which would make the network degenerate) random.

    BatchNorm: weight ~ U(0.5, 1.5), bias ~ N(0, 0.1); then the running statistics are measured
    on a batch of 8 standard-normal inputs (one forward with only the BatchNorm layers in
    training mode, cumulative average) and perturbed: running_mean = mean + 0.1 * std * N(0, 1),
    running_var = var * U(0.5, 1.5). (Drawing running_mean ~ N(0, 0.1), running_var ~ U(0.5, 1.5)
    outright, i.e. independent of the real activation scale, kills the signal in the nets whose
    default init is small, e.g. GoogLeNet's / Inception's truncated normal(std 0.01 / 0.1) and
    MobileNet's: their logits then do not depend on the input.)
    LayerNorm: weight ~ U(0.5, 1.5), bias ~ N(0, 0.1).
    ViT: the classification head is zero-initialised (the logits would be 0): default nn.Linear
    init instead. ConvNeXt: layer_scale is 1e-6 (the residual blocks would be all but absent):
    U(0.5, 1.5) instead."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            if isinstance(m, tv_convnext.CNBlock):
                m.layer_scale.copy_(torch.rand(m.layer_scale.shape, generator=gen) + 0.5)
        if isinstance(model, tv_vit.VisionTransformer):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            model.heads.head.reset_parameters()
        if bns:
            model.eval()
            saved = []
            for m in bns:
                saved.append(m.momentum)
                m.reset_running_stats()
                m.momentum = None
                m.train()
            model(torch.randn(8, 3, size, size, generator=gen))
            for m, mom in zip(bns, saved):
                m.momentum = mom
                std = m.running_var.sqrt()
                m.running_mean.add_(torch.randn(m.num_features, generator=gen) * 0.1 * std)
                m.running_var.mul_(torch.rand(m.num_features, generator=gen) + 0.5)
    model.eval()


def build(name, full):
    spec = ZOO[name]
    torch.manual_seed(seed_of(name))
    info = {}
    if full:
        ctor, kwargs, size = spec["full"]
        model = ctor(weights=None, **kwargs)
        info["width"] = "full"
    else:
        s = spec["small"]
        size = s["size"]
        if s.get("build"):
            model = s["build"]()
            info["width"] = s.get("note", "")
        else:
            ctor = spec["full"][0]
            wmap = WidthMap(s["factor"], s.get("overrides"), keep=(3, NUM_CLASSES_SMALL))
            with reduced_widths(wmap):
                model = ctor(weights=None, num_classes=NUM_CLASSES_SMALL, **s.get("kwargs", {}))
            w = f"widths / {s['factor']}"
            if wmap.inexact:
                w += f" (rounded up: {sorted(wmap.inexact)})"
            if s.get("note"):
                w += "; " + s["note"]
            info["width"] = w
    gen = torch.Generator().manual_seed(seed_of(name) + 1)
    randomise_norms(model, gen, size)
    info["size"] = size
    info["params"] = sum(p.numel() for p in model.parameters())
    return model, info


# --------------------------------------------------------------------------------------------
# export


def export_ts(model, x, path):
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=TS_OPSET,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=False, training=torch.onnx.TrainingMode.EVAL)


def _strip_and_rename(path):
    """Drop the per-node debug metadata_props the dynamo exporter writes (stack traces, FX node
    text, name scopes: more than half of a small model's bytes) and make sure the symbolic batch
    axis of the graph input and output is named `batch` (it already is: the exporter names it
    after the torch.export.Dim)."""
    m = onnx.load(path)
    changed = False

    def strip(graph):
        nonlocal changed
        for node in graph.node:
            if len(node.metadata_props):
                del node.metadata_props[:]
                changed = True
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    strip(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for g in a.graphs:
                        strip(g)

    strip(m.graph)
    for vi in list(m.graph.input) + list(m.graph.output):
        d = vi.type.tensor_type.shape.dim[0]
        if d.dim_param != "batch":
            old = d.dim_param
            d.dim_param = "batch"
            changed = True
            # the same symbol may appear on value_info entries
            for v in m.graph.value_info:
                for dd in v.type.tensor_type.shape.dim:
                    if old and dd.dim_param == old:
                        dd.dim_param = "batch"
    if changed:
        onnx.save(m, path)


def export_dyn(model, x, path):
    batch = torch.export.Dim("batch", min=1, max=1024)
    prog = torch.onnx.export(model, (x,), dynamo=True, opset_version=DYN_OPSET,
                             input_names=["input"], output_names=["logits"],
                             dynamic_shapes=({0: batch},))
    prog.save(path)
    _strip_and_rename(path)


def op_histogram(m):
    hist = collections.Counter()

    def walk(graph):
        for node in graph.node:
            hist[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"] += 1
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for g in a.graphs:
                        walk(g)

    walk(m.graph)
    for f in m.functions:
        for node in f.node:
            hist[f"(function {f.name}) {node.op_type}"] += 1
    return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))


def verify(path, model, size):
    import onnxruntime as ort

    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    inp = m.graph.input[0]
    out = m.graph.output[0]
    assert inp.name == "input" and out.name == "logits", (inp.name, out.name)
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert out.type.tensor_type.shape.dim[0].dim_param == "batch"
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(2, 3, size, size, generator=gen)
    with torch.no_grad():
        ref = model(x).numpy()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": x.numpy()})[0]
    assert got.shape == ref.shape, (got.shape, ref.shape)
    # the logits must depend on the input (guards against a degenerate, constant network)
    assert np.abs(ref[0] - ref[1]).max() > 1e-3 * np.abs(ref).max(), "logits do not depend on the input"
    err = float(np.abs(got - ref).max())
    scale = float(np.abs(ref).max())
    rel = err / max(scale, 1e-30)
    if not rel <= RTOL:
        raise AssertionError(f"logits differ: max |diff| {err:.3g}, max |ref| {scale:.3g}, rel {rel:.3g}")
    return m, rel


def bn_note(hist, model):
    n_bn = sum(isinstance(mm, nn.modules.batchnorm._BatchNorm) for mm in model.modules())
    if n_bn == 0:
        return None
    k = hist.get("BatchNormalization", 0)
    if k == n_bn:
        return "all BatchNormalization kept"
    return f"{k} of {n_bn} BatchNorm layers kept as BatchNormalization (rest folded/decomposed)"


EXPORTERS = [
    ("ts17", "torchscript", TS_OPSET, export_ts),
    ("dyn18", "dynamo", DYN_OPSET, export_dyn),
]


def export_one(name, out_dir, full, log):
    model, info = build(name, full)
    entries = []
    for tag, exporter, opset, fn in EXPORTERS:
        fname = f"{name}_{tag}.onnx"
        path = os.path.join(out_dir, fname)
        e = dict(file=fname, arch=name, exporter=exporter, opset=opset,
                 input_name="input", output_name="logits",
                 input_shape=["batch", 3, info["size"], info["size"]],
                 output_shape=["batch", 1000 if full else NUM_CLASSES_SMALL],
                 width=info["width"], params=info["params"])
        t0 = time.time()
        x = torch.randn(2, 3, info["size"], info["size"], generator=torch.Generator().manual_seed(7))
        try:
            if os.path.exists(path):
                os.remove(path)
            # not under torch.no_grad(): with autograd on, nn.MultiheadAttention takes its
            # exportable path instead of the fused _native_multi_head_attention
            fn(model, x, path)
            m, rel = verify(path, model, info["size"])
            e["bytes"] = os.path.getsize(path)
            e["max_rel_diff_vs_torch"] = float(f"{rel:.3g}")
            e["ops"] = op_histogram(m)
            note = bn_note(e["ops"], model)
            if note:
                e["batchnorm"] = note
            log(f"  {fname}: {e['bytes'] / 1024:.0f} KB, {len(m.graph.node)} nodes, rel {rel:.2g}, "
                f"{time.time() - t0:.1f}s" + (f", {note}" if note else ""))
        except Exception as ex:  # record the failure instead of hiding it
            msg = f"{type(ex).__name__}: {ex}"
            lines = [ln for ln in msg.splitlines() if ln.strip()]
            e["error"] = "\n".join(lines[:12])[:2000]
            if os.path.exists(path):
                os.remove(path)
            log(f"  {fname}: FAILED {lines[0][:300] if lines else ''}")
            traceback.print_exc(file=sys.stderr)
        entries.append(e)
    return entries


# --------------------------------------------------------------------------------------------
# README


def fmt_ops(ops):
    return ", ".join(f"{k} {v}" for k, v in ops.items())


def write_readme(out_dir, entries):
    total = sum(e.get("bytes", 0) for e in entries)
    lines = []
    lines.append("# Model zoo (small variants)")
    lines.append("")
    lines.append("Random-weight (fixed seed) versions of torchvision classifier architectures, each "
                 "exported twice: `<arch>_ts17.onnx` with the TorchScript exporter "
                 "(`torch.onnx.export(..., dynamo=False, opset_version=17, do_constant_folding=False, "
                 "training=EVAL)`, BatchNormalization kept as its own node) and `<arch>_dyn18.onnx` "
                 "with the dynamo exporter (`torch.onnx.export(..., dynamo=True, opset_version=18)`, "
                 "`ONNXProgram.save`). Input `input` float32 `[batch, 3, H, W]`, output `logits` "
                 "float32 `[batch, 10]`, batch axis symbolic (`batch`), eval mode, no Softmax.")
    lines.append("")
    lines.append("The small variants keep each architecture's structure (block types, depths, op "
                 "patterns) but divide the channel widths (column *width*: the 3 input channels and "
                 "the 10 classes excepted; where a width does not divide it is rounded up, which "
                 "only happens for widths inside a block); only ViT-B/16 is shallower (4 of 12 "
                 "encoder layers). Inputs are 64x64 except AlexNet and VGG (224x224: their "
                 "adaptive average pools to 6x6 / 7x7 need a map at least that large; the "
                 "TorchScript exporter only exports adaptive pooling whose output size divides "
                 "the input size) and Inception-v3 (96x96, it needs at least 75).")
    lines.append("")
    lines.append("Weights: torchvision's default initialisation, then (fixed seed per architecture, "
                 "crc32 of its name):")
    lines.append("")
    lines.append("- BatchNorm: weight ~ U(0.5, 1.5), bias ~ N(0, 0.1); running statistics measured "
                 "on a batch of 8 standard-normal inputs (only the BatchNorm layers in training "
                 "mode) and then perturbed: running_mean = mean + 0.1 std N(0, 1), running_var = "
                 "var U(0.5, 1.5). So no BatchNorm is an identity and the signal keeps its scale. "
                 "Drawing running_mean ~ N(0, 0.1) and running_var ~ U(0.5, 1.5) outright made the "
                 "logits of GoogLeNet, Inception-v3, MobileNet-v2/v3, EfficientNet, ShuffleNet "
                 "independent of the input (their small default init shrinks the activations "
                 "layer by layer until the BatchNorm biases are all that is left).")
    lines.append("- LayerNorm (ViT, ConvNeXt): weight ~ U(0.5, 1.5), bias ~ N(0, 0.1).")
    lines.append("- ViT: the head, zero-initialised by torchvision (all logits 0), gets the default "
                 "nn.Linear init. ConvNeXt: layer_scale (1e-6 by default, residual blocks all but "
                 "absent) ~ U(0.5, 1.5).")
    lines.append("")
    lines.append("Checks: every file passes `onnx.checker.check_model(full_check=True)`; its logits "
                 "match torch's in onnxruntime (batch 2, graph optimisations off, "
                 "max |diff| / max |logit| <= 1e-4; column *rel diff*) and differ between the two "
                 "inputs.")
    lines.append("")
    lines.append("Dynamo exporter notes: its default graph optimisation folds a BatchNormalization "
                 "into the preceding Conv wherever there is one (column *BatchNorm*; only "
                 "DenseNet's pre-activation BatchNorms after a Concat stay), and global average "
                 "pooling becomes ReduceMean. The script drops the per-node `metadata_props` it "
                 "writes (stack traces, FX node text: more than half of the bytes of a small "
                 "model); nothing else is changed. The batch axis is named `batch` after the "
                 "`torch.export.Dim` passed in `dynamic_shapes`.")
    lines.append("")
    lines.append("`index.json` lists the same data in machine-readable form (file, arch, exporter, "
                 "opset, input/output names and shapes, parameter count, bytes, op histogram, or "
                 "`error` where an export failed).")
    lines.append("")
    lines.append("Regenerate (needs torch, torchvision, onnx, onnxscript, onnxruntime):")
    lines.append("")
    lines.append("```sh")
    lines.append("python scripts/export_zoo.py                 # small variants into models/zoo/, rewrites README.md and index.json")
    lines.append("python scripts/export_zoo.py --full OUT_DIR  # full-size models (224 px, 299 for Inception-v3, 1000 classes), not committed")
    lines.append("```")
    lines.append("")
    lines.append(f"{len([e for e in entries if 'bytes' in e])} files, {total / 1e6:.2f} MB in total "
                 f"(generated with torch {torch.__version__}, torchvision {torchvision.__version__}, "
                 f"onnx {onnx.__version__}).")
    lines.append("")
    failures = [e for e in entries if "error" in e]
    if failures:
        lines.append("## Failures")
        lines.append("")
        for e in failures:
            lines.append(f"- `{e['file']}` ({e['exporter']}, opset {e['opset']}):")
            lines.append("")
            lines.append("  ```")
            for ln in e["error"].splitlines():
                lines.append("  " + ln)
            lines.append("  ```")
        lines.append("")
    lines.append("## Files")
    lines.append("")
    lines.append("| file | arch | exporter / opset | input | width / depth change | params | size | rel diff | BatchNorm |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for e in entries:
        shape = "[" + ", ".join(str(d) for d in e["input_shape"]) + "]"
        size = f"{e['bytes'] / 1024:.0f} KB" if "bytes" in e else "FAILED"
        rel = f"{e['max_rel_diff_vs_torch']:.1e}" if "max_rel_diff_vs_torch" in e else "-"
        lines.append(f"| `{e['file']}` | {e['arch']} | {e['exporter']} / {e['opset']} | `{shape}` | "
                     f"{e['width']} | {e['params']:,} | {size} | {rel} | {e.get('batchnorm', '-')} |")
    lines.append("")
    lines.append("## ONNX ops per file")
    lines.append("")
    lines.append("| file | nodes | ops (count) |")
    lines.append("|---|---|---|")
    for e in entries:
        if "ops" in e:
            lines.append(f"| `{e['file']}` | {sum(e['ops'].values())} | {fmt_ops(e['ops'])} |")
        else:
            lines.append(f"| `{e['file']}` | - | FAILED: see Failures |")
    lines.append("")
    for tag, exporter, opset, _ in EXPORTERS:
        sel = [e for e in entries if e["exporter"] == exporter and "ops" in e]
        union = collections.Counter()
        for e in sel:
            for op in e["ops"]:
                union[op] += 1
        lines.append(f"## Op types, {exporter} exporter (opset {opset}): number of files using each")
        lines.append("")
        lines.append(", ".join(f"{k} {v}" for k, v in sorted(union.items(), key=lambda kv: (-kv[1], kv[0]))))
        lines.append("")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", metavar="OUT_DIR", help="export full-size models into OUT_DIR")
    ap.add_argument("--out", default=None, help="output directory of the small variants (default models/zoo)")
    ap.add_argument("--only", default=None, help="comma-separated architecture names")
    ap.add_argument("--no-readme", action="store_true", help="do not (re)write README.md")
    args = ap.parse_args()

    full = args.full is not None
    if full:
        out_dir = args.full
    else:
        out_dir = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "zoo")
    out_dir = os.path.normpath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    names = list(ZOO)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in ZOO]
        if unknown:
            sys.exit(f"unknown architectures {unknown}; known: {', '.join(ZOO)}")

    torch.set_num_threads(max(1, os.cpu_count() or 1))

    def log(msg):
        print(msg, flush=True)

    index_path = os.path.join(out_dir, "index.json")
    old = {}
    if args.only and os.path.exists(index_path):
        with open(index_path) as f:
            old = {e["file"]: e for e in json.load(f)["models"]}
    new = {}
    for name in names:
        log(f"{name}:")
        for e in export_one(name, out_dir, full, log):
            new[e["file"]] = e
    merged = dict(old)
    merged.update(new)
    order = {n: i for i, n in enumerate(ZOO)}
    tags = {tag: i for i, (tag, *_rest) in enumerate(EXPORTERS)}
    entries = sorted(merged.values(),
                     key=lambda e: (order.get(e["arch"], 99), tags.get(e["file"].rsplit("_", 1)[1][:-5], 9)))
    index = dict(
        description=("torchvision classifier architectures, random weights, exported with the "
                     "TorchScript (opset 17) and dynamo (opset 18) exporters; generated by "
                     "scripts/export_zoo.py" + (" --full" if full else "")),
        torch=torch.__version__, torchvision=torchvision.__version__, onnx=onnx.__version__,
        models=entries,
    )
    with open(index_path, "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    if not full and not args.no_readme:
        write_readme(out_dir, entries)
    total = sum(e.get("bytes", 0) for e in entries)
    failed = [e["file"] for e in entries if "error" in e]
    log(f"{len(entries) - len(failed)} files, {total / 1e6:.2f} MB; failed: {failed or 'none'}")


if __name__ == "__main__":
    main()
