#!/usr/bin/env python3
"""Two tiny token models that differ only in how their RMSNorm is written: the opset-23
`RMSNormalization` op (`tests/data/rmsnorm/rms_op23.onnx`) and the decomposition older
exporters write, Pow -> ReduceMean -> Add(eps) -> Sqrt -> Div(1, .) -> Mul(x) -> Mul(w)
(`rms_decomposed.onnx`, opset 17), plus `input.npz` (input_ids int64 [2, 5]).

usage: python scripts/make_rmsnorm_tests.py   (numpy + onnx; deterministic)
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "rmsnorm"
EPS = 1e-6


def model(op23: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(23)
    emb = rng.normal(0, 1, (12, 6)).astype(np.float32)
    w = rng.uniform(0.5, 1.5, 6).astype(np.float32)
    fc = rng.normal(0, 0.7, (6, 6)).astype(np.float32)
    head = rng.normal(0, 0.7, (3, 6)).astype(np.float32)
    inits = [nh.from_array(emb, "emb"), nh.from_array(w, "w"), nh.from_array(fc, "fc"),
             nh.from_array(head, "head"), nh.from_array(np.zeros(3, np.float32), "head_b")]
    nodes = [h.make_node("Gather", ["emb", "input_ids"], ["e"], name="embed")]
    if op23:
        nodes.append(h.make_node("RMSNormalization", ["e", "w"], ["n"], name="rms",
                                 axis=-1, epsilon=EPS))
        opset = 23
    else:
        inits += [nh.from_array(np.array(2.0, np.float32), "two"),
                  nh.from_array(np.array(EPS, np.float32), "eps"),
                  nh.from_array(np.array(1.0, np.float32), "one")]
        nodes += [
            h.make_node("Pow", ["e", "two"], ["sq"], name="sq"),
            h.make_node("ReduceMean", ["sq"], ["ms"], name="ms", axes=[-1], keepdims=1),
            h.make_node("Add", ["ms", "eps"], ["mse"], name="mse"),
            h.make_node("Sqrt", ["mse"], ["rms"], name="rms_sqrt"),
            h.make_node("Div", ["one", "rms"], ["inv"], name="inv"),
            h.make_node("Mul", ["e", "inv"], ["xn"], name="xn"),
            h.make_node("Mul", ["xn", "w"], ["n"], name="rms"),
        ]
        opset = 17
    nodes += [
        h.make_node("MatMul", ["n", "fc"], ["f"], name="fc"),
        h.make_node("Relu", ["f"], ["r"], name="relu"),
    ]
    if opset >= 18:
        inits.append(nh.from_array(np.array([1], np.int64), "axis1"))
        nodes.append(h.make_node("ReduceMean", ["r", "axis1"], ["pooled"], name="pool",
                                 keepdims=0))
    else:
        nodes.append(h.make_node("ReduceMean", ["r"], ["pooled"], name="pool", axes=[1],
                                 keepdims=0))
    nodes.append(h.make_node("Gemm", ["pooled", "head", "head_b"], ["logits"], name="head",
                             transB=1))
    g = h.make_graph(nodes, "rms", [h.make_tensor_value_info("input_ids", T.INT64, ["N", 5])],
                     [h.make_tensor_value_info("logits", T.FLOAT, ["N", 3])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)],
                     producer_name="make_rmsnorm_tests")
    m.ir_version = 10 if op23 else 8
    onnx.checker.check_model(m, full_check=True)
    return m


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(model(True), OUT / "rms_op23.onnx")
    onnx.save(model(False), OUT / "rms_decomposed.onnx")
    ids = np.array([[1, 4, 7, 2, 11], [3, 3, 0, 9, 5]], np.int64)
    np.savez(OUT / "input.npz", input_ids=ids)
    try:
        import onnxruntime as ort
        outs = [ort.InferenceSession(str(OUT / f)).run(None, {"input_ids": ids})[0]
                for f in ("rms_op23.onnx", "rms_decomposed.onnx")]
        print("onnxruntime: op vs decomposed max |diff|", float(np.abs(outs[0] - outs[1]).max()))
    except ImportError:
        pass


if __name__ == "__main__":
    main()
