"""Explain photos in process with the onnx_rap Python package: no command line, no onnxruntime.

    pip install .            # at the repository root: builds and installs onnx_rap
    python examples/python/explain_photo.py models/efficientnet_lite0.onnx models/photos/chelsea.png out

compiles the model once, explains every image given (preprocessed as the model's metadata
says, exactly as `onnx-rap explain` does) and writes, per image, OUT/NAME_overlay.png (what the
model saw beside its heatmap: red relevant, white zero, blue irrelevant) and
OUT/NAME_relevance.npy, and prints the five most probable classes and the explained one.
--method picks the rules (onnx_rap.methods()), --target K explains class K. Needs pillow.
"""
import argparse
import os

import numpy as np
from PIL import Image

import onnx_rap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="an image classifier (.onnx)")
    ap.add_argument("images", nargs="+", help="PNG or JPEG files")
    ap.add_argument("out", help="output folder")
    ap.add_argument("--method", default="rap", choices=list(onnx_rap.methods()))
    ap.add_argument("--target", type=int, default=None, help="class to explain [default: predicted]")
    args = ap.parse_args()

    explainer = onnx_rap.Explainer(args.model, args.method)
    labels = explainer.labels

    def name(k: int) -> str:
        return labels[k] if labels else f"class {k}"

    os.makedirs(args.out, exist_ok=True)
    for path in args.images:
        r = explainer.explain_image(path, target=args.target)
        logits = r.logits[0].astype(np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = ", ".join(f"{name(k)} {100 * p[k]:.1f}%" for k in np.argsort(-p, kind="stable")[:5])
        t = int(r.targets[0])
        print(f"{os.path.basename(path)}: {top} | explained: {name(t)}, logit {logits[t]:.2f}, "
              f"relevance sum {r.relevance[0].sum():.2f}")
        stem = os.path.splitext(os.path.basename(path))[0]
        seen = r.images[0]
        heat = r.heatmap_rgb(0, size=seen.shape[:2])
        Image.fromarray(np.concatenate([seen, heat], axis=1)).save(
            os.path.join(args.out, f"{stem}_overlay.png"))
        np.save(os.path.join(args.out, f"{stem}_relevance.npy"), r.relevance[0])


if __name__ == "__main__":
    main()
