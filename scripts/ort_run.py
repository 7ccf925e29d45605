"""Run an ONNX model in onnxruntime: the second runtime of the onnx-rap tests and of
`onnx-rap coverage` (which embeds this file).

usage: ort_run.py MODEL OUT_DIR NAME=FILE.npy [NAME=FILE.npy ...]

Feeds each named input from its .npy file, writes graph output k to OUT_DIR/out_<k>.npy and the
output names, one per line, to OUT_DIR/outputs.txt (tensor names need not be valid file names).
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
    for k, value in enumerate(sess.run(names, inputs)):
        np.save(f"{out_dir}/out_{k}.npy", value)
    with open(f"{out_dir}/outputs.txt", "w") as f:
        f.write("".join(n + "\n" for n in names))


if __name__ == "__main__":
    main()
