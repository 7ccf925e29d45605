"""Explain one image with model_rap.onnx in onnxruntime: no Rust, no torch, no autograd.

    onnx-rap compile models/digits_vgg.onnx -o digits_vgg_rap.onnx --colormap
    python examples/python/explain.py digits_vgg_rap.onnx models/samples/digit_1_4.png out/digit_1_4

writes out/digit_1_4_heatmap.png (the graph's own `heatmap_rgb`, the picture `onnx-rap explain`
paints) and out/digit_1_4_relevance.npy, and prints the prediction. Needs numpy, onnxruntime
and pillow. Preprocessing follows the model's `onnx_rap.preprocess` metadata (rap_image.py,
beside this file). With a model compiled with --target-input, --target K explains class K
(default: the predicted class).
"""
import argparse
import os

import numpy as np
import onnxruntime as ort
from PIL import Image

import rap_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="model_rap.onnx compiled with --colormap")
    ap.add_argument("image", help="a PNG or JPEG image")
    ap.add_argument("out", help="output prefix: writes OUT_heatmap.png and OUT_relevance.npy")
    ap.add_argument("--target", type=int, default=-1, help="class to explain (-1: predicted)")
    args = ap.parse_args()

    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    try:
        spec = rap_image.session_spec(sess)
    except ValueError as e:
        raise SystemExit(f"{args.model}: {e}")
    labels = rap_image.labels(rap_image.metadata(sess))
    x = rap_image.load_image(args.image, spec)
    if args.target >= 0 and not any(i.name == "rap_target" for i in sess.get_inputs()):
        raise SystemExit("this model explains its prediction only: compile it with --target-input")

    names = [o.name for o in sess.get_outputs()]
    if "heatmap_rgb" not in names:
        raise SystemExit(f"{args.model} has no heatmap_rgb output: compile it with --colormap")
    out = rap_image.run_batch(sess, x[None], [args.target], names)
    logits, relevance = out[names[0]][0], out["relevance"]
    k = int(logits.argmax())
    t = k if args.target < 0 else args.target
    name = lambda i: f"{i} ({labels[i]})" if labels else str(i)
    print(f"predicted {name(k)}, target {name(t)}, logit {logits[t]:.4f}, "
          f"relevance sum {relevance.sum():.4f}")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    Image.fromarray(out["heatmap_rgb"][0]).save(args.out + "_heatmap.png")
    np.save(args.out + "_relevance.npy", relevance[0])


if __name__ == "__main__":
    main()
