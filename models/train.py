#!/usr/bin/env python3
"""Train the default onnx-rap example models and write everything they need.

One command rebuilds every artefact under models/ that belongs to the digit
models (deterministic: fixed seeds, single data order, deterministic kernels):

    python models/train.py

Outputs (paths relative to the repository root):
    models/digits_vgg.onnx, models/digits_resnet.onnx   the two classifiers
    models/samples/digit_<k>_<label>.png                eight test canvases
    models/samples/boxes.json                           their labels and boxes
    models/samples/<first sample stem>.npy               preprocessed first sample
    models/data/digits_test.npz                         test split for benchmarks
    models/data/train_report.json                       accuracies, times, sizes

torch, torchvision, onnx, scikit-learn and pillow are needed (onnxruntime is
optional, used to check the exported graphs).  They are development tools only:
the Rust crate and its tests never run this script.
"""

import collections
import json
import time
from pathlib import Path

import numpy as np
import onnx
from onnx_tools import inline_constant_identities
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits

MODELS_DIR = Path(__file__).resolve().parent
SAMPLES_DIR = MODELS_DIR / "samples"
DATA_DIR = MODELS_DIR / "data"

SEED = 20240607
CANVAS = 64                 # canvas side in pixels
DIGIT_SIZE = (20, 28)       # inclusive range of the placed digit's side
TRAIN_FRACTION = 0.8        # split by source image
TRAIN_COPIES = 6            # canvases per training source image
TEST_COPIES = 2             # canvases per test source image
MASK_THRESHOLD = 0.25       # digit pixels above this belong to the object mask
MAX_BENCH = 500             # at most this many canvases in digits_test.npz
BENCH_LIMIT_BYTES = 3_000_000

# Normalisation: v = pixel / 255, input = (v - MEAN) / STD.  MEAN and STD are
# the training-set statistics rounded to two decimals (checked at run time),
# so the background (noise around 0.075) maps close to zero.
MEAN = 0.11
STD = 0.15

EPOCHS = 5
BATCH = 64
LR = 2e-3

LABELS = [str(d) for d in range(10)]
DATASET_NOTE = ("sklearn digits (load_digits) upscaled to 20-28 px and placed at random on "
                "64x64 canvases with noise and line/blob clutter, split 80/20 by source "
                "image, see models/train.py")


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def draw_clutter(canvas, rng):
    """Add 3-6 short line segments or small blobs of intensity 0.2-0.5."""
    ys, xs = np.mgrid[0:CANVAS, 0:CANVAS]
    for _ in range(rng.integers(3, 7)):
        value = rng.uniform(0.2, 0.5)
        shape = np.zeros_like(canvas)
        if rng.random() < 0.5:
            # line segment of length 4-12 px, sampled densely along its direction
            length = rng.uniform(4, 12)
            angle = rng.uniform(0, np.pi)
            x0, y0 = rng.uniform(0, CANVAS - 1, size=2)
            for t in np.linspace(0.0, 1.0, int(length * 2) + 1):
                x = int(round(x0 + t * length * np.cos(angle)))
                y = int(round(y0 + t * length * np.sin(angle)))
                if 0 <= x < CANVAS and 0 <= y < CANVAS:
                    shape[y, x] = value
        else:
            # soft round blob of radius 1-3 px
            radius = rng.uniform(1.0, 3.0)
            cx, cy = rng.uniform(0, CANVAS - 1, size=2)
            dist2 = (xs - cx) ** 2 + (ys - cy) ** 2
            shape = value * np.exp(-dist2 / (2 * (radius / 1.5) ** 2))
            shape[dist2 > radius ** 2 * 2.5] = 0.0
        np.maximum(canvas, shape, out=canvas)


def upscale(digit, size):
    """Bilinear upscale of an 8x8 digit (values 0..16) to size x size in [0, 1]."""
    t = torch.from_numpy(digit.astype(np.float32) / 16.0)[None, None]
    up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return up[0, 0].numpy().astype(np.float64).clip(0.0, 1.0)


def make_canvas(digit, rng):
    """One 64x64 canvas: returns (uint8 image, box [x0, y0, x1, y1], uint8 mask)."""
    canvas = rng.uniform(0.0, 0.15, size=(CANVAS, CANVAS))
    draw_clutter(canvas, rng)
    size = int(rng.integers(DIGIT_SIZE[0], DIGIT_SIZE[1] + 1))
    x0 = int(rng.integers(0, CANVAS - size + 1))
    y0 = int(rng.integers(0, CANVAS - size + 1))
    glyph = upscale(digit, size)
    region = canvas[y0:y0 + size, x0:x0 + size]
    np.maximum(region, glyph, out=region)
    mask = np.zeros((CANVAS, CANVAS), np.uint8)
    mask[y0:y0 + size, x0:x0 + size] = glyph > MASK_THRESHOLD
    # Quantise like an 8-bit PNG, so training sees exactly what a PNG carries.
    image = np.round(canvas * 255.0).clip(0, 255).astype(np.uint8)
    return image, [x0, y0, x0 + size, y0 + size], mask


def build_split(digits, targets, indices, copies, rng):
    images, labels, boxes, masks = [], [], [], []
    for _ in range(copies):
        for i in indices:
            image, box, mask = make_canvas(digits[i], rng)
            images.append(image)
            labels.append(int(targets[i]))
            boxes.append(box)
            masks.append(mask)
    order = rng.permutation(len(images))
    return {
        "images": np.stack(images)[order],
        "labels": np.asarray(labels, np.int64)[order],
        "boxes": np.asarray(boxes, np.int64)[order],
        "masks": np.stack(masks)[order],
    }


def build_dataset():
    source = load_digits()
    rng = np.random.default_rng(SEED)
    perm = rng.permutation(len(source.images))
    n_train = int(round(TRAIN_FRACTION * len(perm)))
    train_idx, test_idx = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    train = build_split(source.images, source.target, train_idx, TRAIN_COPIES, rng)
    test = build_split(source.images, source.target, test_idx, TEST_COPIES, rng)
    return train, test, len(train_idx), len(test_idx)


def to_input(images_u8):
    """uint8 [N, H, W] -> normalised float32 [N, 1, H, W] (float32 arithmetic)."""
    v = images_u8.astype(np.float32) / np.float32(255.0)
    v = (v - np.float32(MEAN)) / np.float32(STD)
    return v[:, None, :, :].astype(np.float32)


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

def conv_bn_relu_pool(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.MaxPool2d(2)]


class DigitsVGG(nn.Module):
    """Four Conv-BN-ReLU-MaxPool blocks (64 -> 4), a global MaxPool, a two-layer classifier.

    The digit can sit anywhere on the canvas.  A Flatten + Linear head over a
    spatial map (e.g. 3 blocks -> 8x8 -> Linear(4096, 128)) has to learn every
    position separately and did not train with this data (stuck near chance, or
    about 90% with 4 blocks); pooling the last 4x4 map to 1x1 with a plain
    MaxPool2d makes the head translation invariant and keeps the VGG layer set.
    """

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*conv_bn_relu_pool(1, 16),    # 64 -> 32
                                      *conv_bn_relu_pool(16, 32),   # 32 -> 16
                                      *conv_bn_relu_pool(32, 64),   # 16 -> 8
                                      *conv_bn_relu_pool(64, 64),   # 8 -> 4
                                      nn.MaxPool2d(4))              # 4 -> 1
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(),
                                        nn.Dropout(0.3), nn.Linear(128, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN, identity or 1x1-conv + BN shortcut, Add, ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.relu2(out + skip)


class DigitsResNet(nn.Module):
    """Stem conv (16) + MaxPool, residual blocks 16/32/64 at strides 1/2/2, GAP, Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU(), nn.MaxPool2d(2))          # 64 -> 32
        self.blocks = nn.Sequential(BasicBlock(16, 16, 1),             # 32
                                    BasicBlock(16, 32, 2),             # 16
                                    BasicBlock(32, 64, 2))             # 8
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.blocks(self.stem(x)))))


# ---------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------

def predict(model, x, batch=256):
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(x[i:i + batch]))
    return torch.cat(outs)


def train_model(name, model, x_train, y_train, x_test, y_test):
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    steps = EPOCHS * ((len(x_train) + BATCH - 1) // BATCH)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(x_train), BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = (predict(model, x_test).argmax(1) == y_test).float().mean().item()
        print(f"[{name}] epoch {epoch + 1}/{EPOCHS} loss {total / len(x_train):.4f} "
              f"test acc {acc:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    seconds = time.perf_counter() - start
    model.eval()
    acc = (predict(model, x_test).argmax(1) == y_test).float().mean().item()
    return acc, seconds


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------

def no_softmax(proto):
    """The CNNs end in raw logits: no Softmax, no Dropout in the graph."""
    ops = [n.op_type for n in proto.graph.node]
    assert "Softmax" not in ops and "Dropout" not in ops, ops


def export_onnx(model, path, check=no_softmax):
    """Export as the digit models are shipped (metadata included); `check(proto)` asserts
    what the graph must look like before it is written."""
    model.eval()
    dummy = torch.zeros(1, 1, CANVAS, CANVAS)
    torch.onnx.export(model, (dummy,), str(path), opset_version=17, dynamo=False,
                      do_constant_folding=False, training=torch.onnx.TrainingMode.EVAL,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(path))
    inline_constant_identities(proto)
    preprocess = {"size": [CANVAS, CANVAS], "layout": "nchw", "grayscale": True,
                  "mean": [MEAN], "std": [STD]}
    onnx.helper.set_model_props(proto, {
        "onnx_rap.labels": json.dumps(LABELS),
        "onnx_rap.preprocess": json.dumps(preprocess),
        "onnx_rap.dataset": DATASET_NOTE,
        "onnx_rap.benchmark": "data/digits_test.npz",
    })
    onnx.checker.check_model(proto, full_check=True)
    check(proto)
    onnx.save(proto, str(path))
    return collections.Counter(n.op_type for n in proto.graph.node)


def check_onnx(path, model, x):
    """Compare onnxruntime logits with torch; returns the max abs difference."""
    try:
        import onnxruntime as ort
    except ImportError:
        print(f"onnxruntime not installed, skipped runtime check of {path.name}")
        return None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": x.numpy()})[0]
    want = predict(model, x).numpy()
    diff = float(np.abs(got - want).max())
    assert diff < 1e-4, f"{path.name}: onnxruntime differs from torch by {diff}"
    return diff


# ---------------------------------------------------------------------------
# Samples and benchmark data
# ---------------------------------------------------------------------------

def write_samples(test, correct):
    """Eight test canvases with distinct labels that every model classifies right."""
    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    for old in SAMPLES_DIR.glob("digit_*"):
        old.unlink()
    chosen, seen = [], set()
    for i, label in enumerate(test["labels"]):
        if correct[i] and int(label) not in seen:
            seen.add(int(label))
            chosen.append(i)
        if len(chosen) == 8:
            break
    boxes = {}
    for k, i in enumerate(chosen):
        label = int(test["labels"][i])
        name = f"digit_{k}_{label}.png"
        Image.fromarray(test["images"][i], mode="L").save(SAMPLES_DIR / name)
        boxes[name] = {"label": label, "box": [int(v) for v in test["boxes"][i]]}
    (SAMPLES_DIR / "boxes.json").write_text(json.dumps(boxes, indent=2) + "\n")

    # Preprocess the first sample from the PNG on disk, exactly as the metadata says.
    first = next(iter(boxes))
    pixels = np.asarray(Image.open(SAMPLES_DIR / first).convert("L"))
    assert np.array_equal(pixels, test["images"][chosen[0]])
    tensor = to_input(pixels[None])
    np.save(SAMPLES_DIR / (Path(first).stem + ".npy"), tensor)
    return boxes


def write_benchmark(test):
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / "digits_test.npz"
    n = len(test["labels"])
    for limit in (n, MAX_BENCH):
        part = {k: v[:limit] for k, v in test.items()}
        np.savez_compressed(path, **part)
        if path.stat().st_size <= BENCH_LIMIT_BYTES:
            break
    return path, len(part["labels"])


# ---------------------------------------------------------------------------

def main():
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)

    t0 = time.perf_counter()
    train, test, n_train_src, n_test_src = build_dataset()
    print(f"dataset: {len(train['labels'])} train canvases from {n_train_src} images, "
          f"{len(test['labels'])} test canvases from {n_test_src} images "
          f"({time.perf_counter() - t0:.1f} s)")
    v = train["images"].astype(np.float64) / 255.0
    print(f"train pixel mean {v.mean():.4f} std {v.std():.4f} (using {MEAN} / {STD})")
    assert abs(v.mean() - MEAN) < 0.01 and abs(v.std() - STD) < 0.01

    x_train = torch.from_numpy(to_input(train["images"]))
    y_train = torch.from_numpy(train["labels"])
    x_test = torch.from_numpy(to_input(test["images"]))
    y_test = torch.from_numpy(test["labels"])

    report = {"dataset": {"train_canvases": len(y_train), "test_canvases": len(y_test),
                          "train_images": n_train_src, "test_images": n_test_src},
              "mean": MEAN, "std": STD, "models": {}}
    correct = np.ones(len(y_test), bool)
    for name, cls in (("digits_vgg", DigitsVGG), ("digits_resnet", DigitsResNet)):
        torch.manual_seed(SEED)
        model = cls()
        params = sum(p.numel() for p in model.parameters())
        print(f"[{name}] {params} parameters")
        acc, seconds = train_model(name, model, x_train, y_train, x_test, y_test)
        print(f"[{name}] test accuracy {acc:.4f}, trained in {seconds:.1f} s")
        assert acc >= 0.95, f"{name} only reaches {acc:.4f}"
        correct &= (predict(model, x_test).argmax(1) == y_test).numpy()

        path = MODELS_DIR / f"{name}.onnx"
        ops = export_onnx(model, path)
        diff = check_onnx(path, model, x_test[:16])
        print(f"[{name}] wrote {path.name} ({path.stat().st_size} bytes), ops {dict(ops)}, "
              f"onnxruntime max |diff| {diff}")
        report["models"][name] = {"parameters": params, "test_accuracy": round(acc, 4),
                                  "train_seconds": round(seconds, 1),
                                  "bytes": path.stat().st_size, "ops": dict(ops),
                                  "onnxruntime_max_abs_diff": diff}

    boxes = write_samples(test, correct)
    print(f"samples: {', '.join(boxes)}")
    bench, kept = write_benchmark(test)
    print(f"benchmark: {bench.name} with {kept} canvases ({bench.stat().st_size} bytes)")
    report["benchmark_canvases"] = kept
    (DATA_DIR / "train_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
