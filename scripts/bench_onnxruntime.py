"""Forward vs explain time of model.onnx and model_rap.onnx in onnxruntime, in one process.

usage: bench_onnxruntime.py MODEL.onnx MODEL_RAP.onnx [--batch N] [--threads T] [--runs K] [--json]

Interleaves K timed runs of each after one warm-up and reports medians and the ratio
explain / forward, the same quantities `onnx-rap bench` reports for tract.
"""
import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort


def session(path, threads):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("rap_model")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    fwd, exp = session(a.model, a.threads), session(a.rap_model, a.threads)
    inp = fwd.get_inputs()[0]
    shape = [a.batch] + [d for d in inp.shape[1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    feed = {inp.name: x}
    fwd.run(None, feed)
    exp.run(None, feed)
    tf, te = [], []
    for _ in range(a.runs):
        t = time.perf_counter()
        fwd.run(None, feed)
        tf.append(time.perf_counter() - t)
        t = time.perf_counter()
        exp.run(None, feed)
        te.append(time.perf_counter() - t)
    f, e = statistics.median(tf), statistics.median(te)
    res = {"runtime": "onnxruntime " + ort.__version__, "batch": a.batch, "threads": a.threads,
           "forward_s": f, "explain_s": e, "ratio": e / f,
           "forward_min_max": [min(tf), max(tf)], "explain_min_max": [min(te), max(te)]}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"onnxruntime batch {a.batch} threads {a.threads}: forward {f:.4f}s explain {e:.4f}s ratio {e / f:.2f}")


if __name__ == "__main__":
    main()
