"""Compare the PyTorch RAP baseline (rap_torch.py) with onnx-rap on the same input.

Runs `onnx-rap explain MODEL.onnx --input X.npy` into a temporary folder, runs rap_torch on the
same tensor (float32, and with --f64 also a float64 copy of the model as a reference), and prints
per sample: the logit and relevance sum of each, and max|diff| / max|R| between them.

usage: python benches/python/compare.py --model vgg16 --onnx /tmp/vgg16.onnx --input X.npy [--f64]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rap_torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["vgg16", "resnet50"], required=True)
    ap.add_argument("--onnx", required=True, help="the same model exported by scripts/export_full_models.py")
    ap.add_argument("--input", required=True, help=".npy float32 [N,3,224,224]")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/onnx-rap"))
    ap.add_argument("--f64", action="store_true", help="also compare both with a float64 run of the baseline")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    x = np.load(a.input).astype(np.float32)
    stem = os.path.splitext(os.path.basename(a.input))[0]
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([a.bin, "explain", a.onnx, "--input", a.input, "--out", d], check=True,
                       stdout=subprocess.DEVNULL)
        if x.shape[0] == 1:
            theirs = [np.load(os.path.join(d, f"{stem}_relevance.npy")).reshape(x.shape[1:])]
        else:
            theirs = [np.load(os.path.join(d, f"{stem}_{i}_relevance.npy")).reshape(x.shape[1:])
                      for i in range(x.shape[0])]

    model = rap_torch.build_model(a.model)
    R, logits, targets = rap_torch.rap(model, torch.from_numpy(x))
    R = R.numpy()
    if a.f64:
        R64, logits64, targets64 = rap_torch.rap(model.double(), torch.from_numpy(x).double())
        R64 = R64.numpy()
    for i in range(x.shape[0]):
        t = int(targets[i])
        y = float(logits[i, t])
        line = (f"{a.model} {stem}[{i}] class {t} logit {y:.6f} | sum R torch {R[i].sum(dtype=np.float64):.6f} "
                f"onnx-rap {theirs[i].sum(dtype=np.float64):.6f} | max|diff|/max|R| torch vs onnx-rap "
                f"{rel_err(R[i], theirs[i]):.2e}")
        if a.f64:
            line += (f" | vs float64: torch {rel_err(R[i], R64[i]):.2e} onnx-rap {rel_err(theirs[i], R64[i]):.2e}"
                     f" (f64 class {int(targets64[i])})")
        print(line, flush=True)


if __name__ == "__main__":
    main()
