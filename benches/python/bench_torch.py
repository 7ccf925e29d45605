"""Time the PyTorch RAP baseline: the forward pass against RAP (forward + relevance), CPU.

In one process: build the model (scripts/export_full_models.py's weights), warm up, then K
interleaved runs of (a) the plain forward pass (torch.no_grad) and (b) rap_torch.rap (forward
recording every layer input, then the relevance of the argmax class) on the same random input;
prints the medians, min/max and the ratio explain/forward. The counterpart of
`onnx-rap bench MODEL.onnx --batch N --threads T --runs K`.

usage: python benches/python/bench_torch.py --model vgg16 [--batch N] [--threads T] [--runs K] [--json]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rap_torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["vgg16", "resnet50"], default="vgg16")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    model = rap_torch.build_model(a.model)
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(a.batch, 3, 224, 224, generator=g)

    def forward():
        with torch.no_grad():
            model(x)

    def explain():
        rap_torch.rap(model, x)

    for _ in range(a.warmup):
        forward()
        explain()
    fw, ex = [], []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        forward()
        fw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        explain()
        ex.append(time.perf_counter() - t0)
    f_med, e_med = statistics.median(fw), statistics.median(ex)
    res = {
        "tool": "torch", "torch": torch.__version__, "model": a.model, "batch": a.batch,
        "threads": a.threads, "runs": a.runs,
        "forward_s": f_med, "explain_s": e_med, "ratio": e_med / f_med,
        "forward_min_s": min(fw), "forward_max_s": max(fw),
        "explain_min_s": min(ex), "explain_max_s": max(ex),
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{a.model} batch {a.batch}, {a.threads} thread(s), {a.runs} runs (torch {torch.__version__})")
        print(f"forward_s  {f_med:.4f}  (min {min(fw):.4f}, max {max(fw):.4f})")
        print(f"explain_s  {e_med:.4f}  (min {min(ex):.4f}, max {max(ex):.4f})")
        print(f"ratio      {e_med / f_med:.2f}")


if __name__ == "__main__":
    main()
