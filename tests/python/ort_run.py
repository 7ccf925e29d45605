"""Run an ONNX model in onnxruntime: the second runtime of the onnx-rap tests.

usage: ort_run.py MODEL OUT_DIR NAME=FILE.npy [NAME=FILE.npy ...]

Feeds each named input from its .npy file and writes every graph output to OUT_DIR/<output>.npy.
"""
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, out_dir, *feeds = sys.argv[1:]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    inputs = {}
    for f in feeds:
        name, path = f.split("=", 1)
        inputs[name] = np.load(path)
    names = [o.name for o in sess.get_outputs()]
    for name, value in zip(names, sess.run(names, inputs)):
        np.save(f"{out_dir}/{name}.npy", value)


if __name__ == "__main__":
    main()
