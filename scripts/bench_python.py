"""In-process explain from Python against the command line's run time, on one model.

    .venv/bin/python scripts/bench_python.py [MODEL] [--photo FILE] [--threads T] [--runs K] [--rounds R]

Each round runs `onnx-rap bench MODEL --threads T --runs K --json` (the command line's timed
tract runs of the explanation, batch 1, plan built once) and then, in this process, K runs of
`onnx_rap.Explainer.explain(x)` on the preprocessed photo and K runs of `explain_image(photo)`
(decoding and preprocessing included), each after a warm-up; it prints the medians and the
ratio Python / command line per round, then the median ratio over the rounds. Rounds alternate
the two sides so that a slow spell of a shared machine hits both. Needs the package installed
(`pip install .`) and `cargo build --release`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default=os.path.join(ROOT, "models", "efficientnet_lite0.onnx"))
    ap.add_argument("--photo", default=os.path.join(ROOT, "models", "photos", "chelsea.png"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cli", default=os.path.join(ROOT, "target", "release", "onnx-rap"))
    args = ap.parse_args()

    import onnx_rap

    t0 = time.perf_counter()
    e = onnx_rap.Explainer(args.model, threads=args.threads)
    made = time.perf_counter() - t0
    first = e.explain_image(args.photo)
    planned = time.perf_counter() - t0 - made
    # The tensor the model sees for the photo (the same preprocessing as explain_image).
    x = first.images  # what the model saw, for the record; the tensor comes from the metadata
    pp = e.preprocess
    pic = x[0].astype(np.float32) / 255.0
    mean = np.asarray(pp["mean"] or [0.0], dtype=np.float32)
    std = np.asarray(pp["std"] or [1.0], dtype=np.float32)
    t = (pic - mean) / std
    t = t.transpose(2, 0, 1) if pp["layout"] == "nchw" else t
    tensor = np.ascontiguousarray(t[None], dtype=np.float32)
    check = e.explain(tensor)
    drift = float(np.abs(check.relevance - first.relevance).max() / np.abs(first.relevance).max())
    print(f"{args.model}: Explainer made in {made:.2f} s, first explain_image (plans) {planned:.2f} s; "
          f"tensor rebuilt here vs explain_image relevance: max diff {drift:.1e} of max|R|")

    ratios, image_ratios = [], []
    for r in range(args.rounds):
        out = subprocess.run(
            [args.cli, "bench", args.model, "--threads", str(args.threads), "--runs",
             str(args.runs), "--json"],
            check=True, capture_output=True, text=True)
        cli = json.loads(out.stdout)["explain_s"]
        py, img = [], []
        for _ in range(args.runs):
            s = time.perf_counter()
            e.explain(tensor)
            py.append(time.perf_counter() - s)
            s = time.perf_counter()
            e.explain_image(args.photo)
            img.append(time.perf_counter() - s)
        p, i = statistics.median(py), statistics.median(img)
        ratios.append(p / cli)
        image_ratios.append(i / cli)
        print(f"round {r + 1}: command line (bench) {cli * 1e3:.1f} ms, Python explain(x) "
              f"{p * 1e3:.1f} ms ({p / cli:.3f}x), explain_image(photo) {i * 1e3:.1f} ms "
              f"({i / cli:.3f}x)")
    print(f"median over {args.rounds} rounds, {args.threads} thread(s): explain(x) / command line = "
          f"{statistics.median(ratios):.3f}, explain_image / command line = "
          f"{statistics.median(image_ratios):.3f}")


if __name__ == "__main__":
    sys.exit(main())
