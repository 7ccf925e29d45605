"""Make the small ONNX files under tests/data (run once; the outputs are committed).

Needs only onnx and numpy (the test venv). Every model has fixed-seed random weights.

usage: python scripts/make_test_data.py
"""
import os
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data")
rng = np.random.default_rng(7)


def init(name, *shape, scale=0.3):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def model(nodes, inits, inputs, outputs, opset=17, name="g"):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="onnx-rap tests")
    m.ir_version = 8
    return m


def vi(name, *dims, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, list(dims))


def save(m, name, check=True):
    if check:
        onnx.checker.check_model(m, full_check=True)
    onnx.save(m, os.path.join(OUT, name))


def tiny_mlp():
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["logits"], name="fc2", transB=1),
    ]
    inits = [init("w1", 6, 8), init("b1", 6), init("w2", 3, 6), init("b2", 3)]
    return model(nodes, inits, [vi("x", "N", 8)], [vi("logits", "N", 3)], name="tiny_mlp")


def tiny_cnn():
    """Conv geometry the golden cases do not cover: asymmetric pads, stride 2, dilation,
    groups, non-square input, overlapping ceil-mode MaxPool, padded AveragePool (both
    count_include_pad settings), BatchNormalization, Concat, a residual Add, GAP."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "c1w", "c1b"], ["c1"], name="conv1", pads=[1, 0, 2, 1], strides=[2, 1]),
        n("Relu", ["c1"], ["r1"], name="relu1"),
        n("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
        n("Conv", ["p1", "c2w"], ["c2"], name="conv2_grouped", group=2, pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["c2", "bn_s", "bn_b", "bn_m", "bn_v"], ["b2"], name="bn2"),
        n("Relu", ["b2"], ["r2"], name="relu2"),
        n("Conv", ["p1", "c3w"], ["c3"], name="conv3_dilated", dilations=[2, 2], pads=[2, 2, 2, 2]),
        n("Relu", ["c3"], ["r3"], name="relu3"),
        n("Add", ["r2", "r3"], ["s"], name="residual"),
        n("Relu", ["s"], ["rs"], name="relu_s"),
        n("AveragePool", ["rs"], ["ap1"], name="avg_excl", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
        n("AveragePool", ["rs"], ["ap2"], name="avg_incl", kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1], count_include_pad=1),
        n("Conv", ["ap2", "c4w"], ["c4"], name="conv4_depthwise", group=4, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("Relu", ["c4"], ["r4"], name="relu4"),
        n("GlobalAveragePool", ["ap1"], ["g1"], name="gap1"),
        n("GlobalAveragePool", ["r4"], ["g2"], name="gap2"),
        n("Concat", ["g1", "g2"], ["cat"], name="concat", axis=1),
        n("Flatten", ["cat"], ["flat"], name="flatten"),
        n("Gemm", ["flat", "fcw", "fcb"], ["logits"], name="fc", transB=1),
    ]
    inits = [
        init("c1w", 4, 3, 3, 2), init("c1b", 4),
        init("c2w", 4, 2, 3, 3),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "bn_s"),
        init("bn_b", 4), init("bn_m", 4),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "bn_v"),
        init("c3w", 4, 4, 3, 3),
        init("c4w", 4, 1, 3, 3),
        init("fcw", 5, 8), init("fcb", 5),
    ]
    return model(nodes, inits, [vi("x", "N", 3, 13, 11)], [vi("logits", "N", 5)], name="tiny_cnn")


def main():
    os.makedirs(OUT, exist_ok=True)
    save(tiny_mlp(), "tiny_mlp.onnx")
    cnn = tiny_cnn()
    save(cnn, "tiny_cnn.onnx")
    np.save(os.path.join(OUT, "tiny_cnn_input.npy"), rng.standard_normal((3, 3, 13, 11)).astype(np.float32))
    np.save(os.path.join(OUT, "tiny_mlp_input.npy"), rng.standard_normal((5, 8)).astype(np.float32))

    # The same network with its weights in an external data file.
    ext = os.path.join(OUT, "external")
    shutil.rmtree(ext, ignore_errors=True)  # onnx appends to an existing data file
    os.makedirs(ext)
    onnx.save(tiny_cnn_copy(cnn), os.path.join(ext, "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)

    # A model with an op nobody has a rule for, two inputs, and a non-2-D output.
    n = helper.make_node
    save(model([n("Gemm", ["x", "w"], ["h"], name="fc1", transB=1),
                n("Sin", ["h"], ["s"], name="mystery_sin"),
                n("Cos", ["s"], ["c"], name="mystery_cos"),
                n("Sin", ["c"], ["logits"], name="mystery_sin2")],
               [init("w", 3, 4)], [vi("x", "N", 4)], [vi("logits", "N", 3)]), "unsupported_op.onnx")
    save(model([n("Add", ["a", "b"], ["s"], name="add"), n("Gemm", ["s", "w"], ["logits"], name="fc", transB=1)],
               [init("w", 3, 4)], [vi("a", "N", 4), vi("b", "N", 4)], [vi("logits", "N", 3)]), "two_inputs.onnx")
    save(model([n("Conv", ["x", "w"], ["y"], name="conv")], [init("w", 2, 1, 3, 3)],
               [vi("x", "N", 1, 8, 8)], [vi("y", "N", 2, 6, 6)]), "not_a_classifier.onnx")

    # The same networks declared at opset 12 and 18, where the emitted ReduceSum/ReduceMin/
    # Split take their axes as attributes (12) or inputs (18): every op they use has the same
    # meaning there.
    for base in ["tiny_mlp", "tiny_cnn"]:
        for version in [12, 18]:
            m = onnx.load(os.path.join(OUT, f"{base}.onnx"))
            m.opset_import[0].version = version
            save(m, f"{base}_opset{version}.onnx")

    # A trailing Softmax: explaining it explains the logits of tiny_mlp.
    sm = onnx.ModelProto()
    sm.CopyFrom(onnx.load(os.path.join(OUT, "tiny_mlp.onnx")))
    sm.graph.node[-1].output[0] = "logits"
    sm.graph.node.append(helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1))
    sm.graph.output[0].name = "probs"
    save(sm, "tiny_mlp_softmax.onnx")

    # MaxPool ties: every 2x2 window of the input holds four equal values, so the first
    # element of each window must take all of its relevance.
    save(model([n("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
                n("Flatten", ["p"], ["f"], name="flatten"),
                n("Gemm", ["f", "w", "b"], ["logits"], name="fc", transB=1)],
               [init("w", 3, 8), init("b", 3)], [vi("x", "N", 2, 4, 4)], [vi("logits", "N", 3)]),
         "maxpool_ties.onnx")
    tie = np.kron(rng.uniform(0.5, 2.0, (2, 2, 2, 2)), np.ones((2, 2))).astype(np.float32)
    np.save(os.path.join(OUT, "maxpool_ties_input.npy"), tie)

    # Bad files.
    bad = os.path.join(OUT, "bad")
    os.makedirs(bad, exist_ok=True)
    open(os.path.join(bad, "empty.onnx"), "wb").close()
    with open(os.path.join(bad, "not_onnx.onnx"), "w") as f:
        f.write("this is a text file, not a model\n" * 4)
    full = tiny_cnn().SerializeToString()
    with open(os.path.join(bad, "truncated.onnx"), "wb") as f:
        f.write(full[: len(full) // 2])
    cyc = model([n("Relu", ["b"], ["a"], name="relu_a"), n("Relu", ["a"], ["b"], name="relu_b"),
                 n("Add", ["x", "a"], ["logits"], name="add")], [], [vi("x", "N", 3)], [vi("logits", "N", 3)])
    save(cyc, "bad/cycle.onnx", check=False)
    dangling = model([n("Gemm", ["x", "w_missing"], ["logits"], name="fc", transB=1)], [],
                     [vi("x", "N", 4)], [vi("logits", "N", 3)])
    save(dangling, "bad/dangling_input.onnx", check=False)
    # External data: a model whose data file is missing, and one whose offset is past the end.
    os.makedirs(os.path.join(bad, "missing_data"), exist_ok=True)
    shutil.copy(os.path.join(ext, "model.onnx"), os.path.join(bad, "missing_data", "model.onnx"))
    os.makedirs(os.path.join(bad, "short_data"), exist_ok=True)
    shutil.copy(os.path.join(ext, "model.onnx"), os.path.join(bad, "short_data", "model.onnx"))
    with open(os.path.join(ext, "model.onnx.data"), "rb") as f:
        data = f.read()
    with open(os.path.join(bad, "short_data", "model.onnx.data"), "wb") as f:
        f.write(data[: len(data) // 3])

    # Methods other than RAP against the numpy reference (tests/python/lrp_reference.py): an
    # input conv, a hidden conv whose output stays signed (no Relu) so the next dense layer
    # has both sign paths, MaxPool, and two dense layers. Its own generator: adding it changes
    # no other file.
    save(tiny_lrp(), "tiny_lrp.onnx")
    g = np.random.default_rng(11)
    np.save(os.path.join(OUT, "tiny_lrp_input.npy"), g.standard_normal((3, 1, 6, 6)).astype(np.float32))

    # A digit-sized classifier whose logits do not depend on the image (zero conv weights):
    # every perturbation leaves its logits alone, so its AOPC must be 0.
    g = np.random.default_rng(13)
    save(model([n("Conv", ["x", "zw", "zb"], ["c"], name="conv_zero"),
                n("Relu", ["c"], ["r"], name="relu"),
                n("GlobalAveragePool", ["r"], ["g"], name="gap"),
                n("Flatten", ["g"], ["f"], name="flatten"),
                n("Gemm", ["f", "fw", "fb"], ["logits"], name="fc", transB=1)],
               [numpy_helper.from_array(np.zeros((2, 1, 1, 1), np.float32), "zw"),
                numpy_helper.from_array(np.array([0.5, 0.2], np.float32), "zb"),
                numpy_helper.from_array(g.standard_normal((10, 2)).astype(np.float32), "fw"),
                numpy_helper.from_array(g.standard_normal(10).astype(np.float32), "fb")],
               [vi("x", "N", 1, 64, 64)], [vi("logits", "N", 10)]), "ignores_input.onnx")

    # The ops of issue 5 in one chain, for gradient checks and the two runtimes.
    save(tiny_ops(), "tiny_ops.onnx")
    np.save(os.path.join(OUT, "tiny_ops_input.npy"),
            np.random.default_rng(17).standard_normal((2, 2, 6, 6)).astype(np.float32))

    # ConvTranspose layers (strided with output_padding, grouped) and an Einsum that is a
    # matrix product, between Relus: z+ must conserve exactly through them.
    save(tiny_deconv(), "tiny_deconv.onnx")
    np.save(os.path.join(OUT, "tiny_deconv_input.npy"),
            np.random.default_rng(23).standard_normal((2, 2, 5, 5)).astype(np.float32))

    # The same function twice: once with a clean leading batch axis, once with the batch
    # folded into the rows of a MatMul (as torch's MultiheadAttention does). RAP on both must
    # agree at batch 1: the folded one is explained one sample per run.
    plain, folded = tiny_fold()
    save(plain, "tiny_fold_plain.onnx")
    save(folded, "tiny_fold.onnx")
    np.save(os.path.join(OUT, "tiny_fold_input.npy"),
            np.random.default_rng(29).standard_normal((1, 3, 4)).astype(np.float32))

    # Pools whose planes (batch x channels = 33) are 4x4 after pooling: the shapes where
    # tract 0.23.9's single-output-channel ConvTranspose went wrong (GoogLeNet).
    save(tiny_pools(), "tiny_pools.onnx")
    np.save(os.path.join(OUT, "tiny_pools_input.npy"),
            np.random.default_rng(37).standard_normal((1, 33, 7, 7)).astype(np.float32))

    # Every generalised RAP rule on one small graph (tests/python/rap_reference.py).
    save(tiny_robust(), "tiny_robust.onnx")
    np.save(os.path.join(OUT, "tiny_robust_input.npy"),
            np.random.default_rng(43).standard_normal((3, 2, 8, 8)).astype(np.float32))

    # A patch embedding (kernel = stride) reading the input, as in a ViT: rap's offset rule
    # there (docs/RULES.md); some pixels sit at the sample's minimum, one patch entirely.
    save(tiny_patch(), "tiny_patch.onnx")
    np.save(os.path.join(OUT, "tiny_patch_input.npy"), tiny_patch_input())

    # The light model zoo that the onnx package ships (weights from ConstantOfShape).
    light_src = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    light = os.path.join(OUT, "light")
    os.makedirs(light, exist_ok=True)
    for f in sorted(os.listdir(light_src)):
        if f.endswith(".onnx"):
            shutil.copy(os.path.join(light_src, f), os.path.join(light, f))


def tiny_robust():
    """A residual join of a ReLU and a signed (BatchNormalization, then 1x1 conv) branch, a
    Relu6 (Clip), a hidden conv and a strided depthwise conv with signed input, a global average
    pool of signed values, and a dense head whose hidden and output layers read signed values:
    where the official RAP rules double or amplify and the generalised ones do not."""
    g = np.random.default_rng(41)
    n = helper.make_node

    def w(name, *shape, scale=0.4):
        return numpy_helper.from_array((g.standard_normal(shape) * scale).astype(np.float32), name)

    def const(name, values):
        return numpy_helper.from_array(np.asarray(values, np.float32), name)

    inits = [w("w1", 4, 2, 3, 3), w("b1", 4, scale=0.1), w("w2", 4, 4, 3, 3), w("b2", 4, scale=0.1),
             const("bn_s", g.uniform(0.5, 1.5, 4)), w("bn_b", 4, scale=0.3), w("bn_m", 4, scale=0.2),
             const("bn_v", g.uniform(0.5, 1.5, 4)), w("w3", 4, 4, 1, 1), w("b3", 4, scale=0.1),
             const("lo", 0.0), const("hi", 6.0), w("w4", 4, 4, 3, 3), w("b4", 4, scale=0.1),
             w("w5", 4, 1, 3, 3), w("b5", 4, scale=0.1), w("f1", 6, 4), w("fb1", 6, scale=0.1),
             w("f2", 5, 6), w("fb2", 5, scale=0.5)]
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], name="conv_in", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["a"], name="relu"),
        n("Conv", ["a", "w2", "b2"], ["c2"], name="conv_relu_in", pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["c2", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn"),
        n("Conv", ["bn", "w3", "b3"], ["c3"], name="pointwise_signed_in"),
        n("Add", ["a", "c3"], ["d"], name="residual"),
        n("Clip", ["d", "lo", "hi"], ["e"], name="relu6"),
        n("MaxPool", ["e"], ["f"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["f", "w4", "b4"], ["c4"], name="conv_signed_out", pads=[1, 1, 1, 1]),
        n("Conv", ["c4", "w5", "b5"], ["c5"], name="depthwise_signed_in", pads=[1, 1, 1, 1],
          strides=[2, 2], group=4),
        n("GlobalAveragePool", ["c5"], ["gap"], name="gap_signed"),
        n("Flatten", ["gap"], ["flat"], name="flatten"),
        n("Gemm", ["flat", "f1", "fb1"], ["h"], name="fc_signed_in", transB=1),
        n("Gemm", ["h", "f2", "fb2"], ["logits"], name="fc_out", transB=1),
    ]
    return model(nodes, inits, [vi("x", "N", 2, 8, 8)], [vi("logits", "N", 5)])


def tiny_patch():
    """A 4x4 stride-4 patch embedding with bias, a hidden 1x1 conv, a dense head."""
    g = np.random.default_rng(47)
    n = helper.make_node

    def w(name, *shape, scale=0.4):
        return numpy_helper.from_array((g.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [w("pw", 6, 3, 4, 4), w("pb", 6, scale=0.2), w("w2", 5, 6, 1, 1), w("b2", 5, scale=0.1),
             w("fw", 4, 20), w("fb", 4, scale=0.3)]
    nodes = [
        n("Conv", ["x", "pw", "pb"], ["p"], name="patch_embed", kernel_shape=[4, 4], strides=[4, 4]),
        n("Relu", ["p"], ["a"], name="relu1"),
        n("Conv", ["a", "w2", "b2"], ["c2"], name="pointwise"),
        n("Relu", ["c2"], ["b"], name="relu2"),
        n("Flatten", ["b"], ["f"], name="flatten"),
        n("Gemm", ["f", "fw", "fb"], ["logits"], name="fc", transB=1),
    ]
    return model(nodes, inits, [vi("x", "N", 3, 8, 8)], [vi("logits", "N", 4)])


def tiny_patch_input():
    x = np.random.default_rng(53).uniform(-1.0, 2.0, (3, 3, 8, 8)).astype(np.float32)
    for i, s in enumerate(x):
        lo = s.min()
        s[:, 4:, 4:] = lo  # a patch of background: no pixel above the minimum
        s[:, i, :3] = lo  # scattered background pixels in the other patches
    return x


def tiny_lrp():
    g = np.random.default_rng(5)
    w = lambda name, *shape: numpy_helper.from_array((g.standard_normal(shape) * 0.5).astype(np.float32), name)
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "c1w", "c1b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"], name="relu1"),
        n("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p1", "c2w", "c2b"], ["c2"], name="conv2_signed", pads=[1, 1, 1, 1]),
        n("Flatten", ["c2"], ["f"], name="flatten"),
        n("Gemm", ["f", "f1w", "f1b"], ["h"], name="fc1", transB=1),
        n("Relu", ["h"], ["a"], name="relu2"),
        n("Gemm", ["a", "f2w", "f2b"], ["logits"], name="fc2", transB=1),
    ]
    inits = [w("c1w", 3, 1, 3, 3), w("c1b", 3), w("c2w", 4, 3, 3, 3), w("c2b", 4),
             w("f1w", 5, 36), w("f1b", 5), w("f2w", 3, 5), w("f2b", 3)]
    return model(nodes, inits, [vi("x", "N", 1, 6, 6)], [vi("logits", "N", 3)], name="tiny_lrp")


def tiny_ops():
    """Pad, Slice, Resize (nearest and linear), Split, Sigmoid gate, Tanh, ReduceMean, Sub,
    Div and Mul by constants, Clip, Transpose, MatMul on [N, T, D], HardSwish, Gather,
    attention (MatMul of activations, Softmax inside), LeakyRelu, Concat: the ops of real
    exported models beyond the golden cases, in one differentiable chain."""
    g = np.random.default_rng(19)
    w = lambda name, *shape: numpy_helper.from_array((g.standard_normal(shape) * 0.5).astype(np.float32), name)
    c = lambda name, values, dt=np.int64: numpy_helper.from_array(np.array(values, dt), name)
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "cw", "cb"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
        n("LeakyRelu", ["c1"], ["l1"], name="leaky", alpha=0.1),
        n("Pad", ["l1", "pads"], ["p1"], name="pad"),                       # 4 x 7 x 9
        n("Slice", ["p1", "st", "en", "ax"], ["s1"], name="slice"),          # 4 x 6 x 8
        n("Resize", ["s1", "", "sc2"], ["u1"], name="up_nearest", mode="nearest"),  # 4 x 12 x 16
        n("Resize", ["s1", "", "sc2"], ["u2"], name="up_linear", mode="linear"),
        n("Sub", ["u1", "u2"], ["d1"], name="sub"),
        n("Div", ["d1", "two"], ["d2"], name="div_const"),
        n("Split", ["d2", "split"], ["a", "b"], name="split", axis=1),      # 1 + 3 channels
        n("Sigmoid", ["a"], ["gate"], name="sigmoid"),
        n("Tanh", ["b"], ["tb"], name="tanh"),
        n("ReduceMean", ["tb", "ax1"], ["m1"], name="mean_c", keepdims=1),
        n("Mul", ["m1", "gate"], ["gated"], name="gate_mul"),
        n("Clip", ["gated", "lo", "hi"], ["cl"], name="clip"),
        n("Transpose", ["cl"], ["t1"], name="to_nhwc", perm=[0, 2, 3, 1]),  # 12 x 16 x 1
        n("Reshape", ["t1", "shape3"], ["r3"], name="tokens"),             # 12 x 16
        n("MatMul", ["r3", "mw"], ["mm"], name="dense3d"),                 # 12 x 5
        n("HardSwish", ["mm"], ["hs"], name="hardswish"),
        n("Gather", ["hs", "idx"], ["gt"], name="gather", axis=1),         # 4 x 5
        n("Transpose", ["gt"], ["gtt"], name="keys_t", perm=[0, 2, 1]),    # 5 x 4
        n("MatMul", ["gt", "gtt"], ["qk"], name="scores"),                # 4 x 4
        n("Mul", ["qk", "scale"], ["qks"], name="scale"),
        n("Softmax", ["qks"], ["att"], name="softmax", axis=-1),
        n("MatMul", ["att", "gt"], ["ctx"], name="attend"),                # 4 x 5
        n("ReduceSum", ["ctx", "ax2"], ["rs"], name="sum_tokens", keepdims=0),  # 5
        n("Gather", ["hs", "idx0"], ["cls"], name="cls_token", axis=1),     # 5
        n("Concat", ["rs", "cls"], ["cat"], name="concat", axis=1),         # 10
        n("Gemm", ["cat", "fw", "fb"], ["logits"], name="fc", transB=1),
    ]
    inits = [w("cw", 4, 2, 3, 3), w("cb", 4), c("pads", [0, 0, 1, 2, 0, 0, 0, 1]),
             c("st", [1, 0]), c("en", [7, 8]), c("ax", [2, 3]),
             c("sc2", [1.0, 1.0, 2.0, 2.0], np.float32), c("two", 2.0, np.float32),
             c("split", [1, 3]), c("lo", -0.8, np.float32), c("hi", 0.9, np.float32),
             c("shape3", [0, 12, 16]), w("mw", 16, 5), c("idx", [0, 3, 3, 7]),
             c("scale", 0.5, np.float32), c("ax1", [1]), c("ax2", [1]), c("idx0", 5), w("fw", 3, 10), w("fb", 3)]
    return model(nodes, inits, [vi("x", "N", 2, 6, 6)], [vi("logits", "N", 3)], opset=18, name="tiny_ops")


def tiny_deconv():
    g = np.random.default_rng(29)
    w = lambda name, *shape: numpy_helper.from_array((g.standard_normal(shape) * 0.5).astype(np.float32), name)
    n = helper.make_node
    nodes = [
        n("ConvTranspose", ["x", "d1w", "d1b"], ["d1"], name="deconv_s2", strides=[2, 2],
          pads=[1, 1, 1, 1], output_padding=[1, 1], kernel_shape=[3, 3]),      # 4 x 10 x 10
        n("Relu", ["d1"], ["r1"], name="relu1"),
        n("ConvTranspose", ["r1", "d2w"], ["d2"], name="deconv_grouped", group=2,
          pads=[0, 1, 0, 1], kernel_shape=[2, 3]),                              # 4 x 11 x 10
        n("Relu", ["d2"], ["r2"], name="relu2"),
        n("Transpose", ["r2"], ["t"], name="to_nhwc", perm=[0, 2, 3, 1]),      # 11 x 10 x 4
        n("Einsum", ["t", "ew"], ["e"], name="einsum_dense", equation="nhwc,cd->nhwd"),  # 11 x 10 x 5
        n("Relu", ["e"], ["r3"], name="relu3"),
        n("ReduceMean", ["r3", "axes"], ["m"], name="mean_hw", keepdims=0),   # 5
        n("Gemm", ["m", "fw", "fb"], ["logits"], name="fc", transB=1),
    ]
    inits = [w("d1w", 2, 4, 3, 3), w("d1b", 4), w("d2w", 4, 2, 2, 3), w("ew", 4, 5),
             numpy_helper.from_array(np.array([1, 2], np.int64), "axes"), w("fw", 3, 5), w("fb", 3)]
    return model(nodes, inits, [vi("x", "N", 2, 5, 5)], [vi("logits", "N", 3)], opset=18, name="tiny_deconv")


def tiny_fold():
    g = np.random.default_rng(31)

    def w(name, *shape):
        return numpy_helper.from_array(g.standard_normal(shape).astype(np.float32), name)

    def c64(name, vals):
        return numpy_helper.from_array(np.array(vals, np.int64), name)

    inits = [w("w0", 4, 4), w("w1", 4, 5), w("w2", 3, 15), w("b2", 3)]
    n = helper.make_node
    head = [n("Relu", ["h1"], ["a1"], name="relu1"),
            n("Flatten", ["a1"], ["f"], name="flatten"),
            n("Gemm", ["f", "w2", "b2"], ["logits"], name="fc", transB=1)]
    first = [n("MatMul", ["x", "w0"], ["h0"], name="mm0"), n("Relu", ["h0"], ["a0"], name="relu0")]
    plain = model(first + [n("MatMul", ["a0", "w1"], ["h1"], name="mm1")] + head, inits,
                  [vi("x", "N", 3, 4)], [vi("logits", "N", 3)], name="tiny_fold_plain")
    fold = [n("Transpose", ["a0"], ["t"], name="rows_first", perm=[1, 0, 2]),
            n("Reshape", ["t", "rows"], ["r0"], name="fold"),
            # A zero row padded on and sliced off again: routing along the folded axis 0.
            n("Pad", ["r0", "pad_rows"], ["rp"], name="pad_rows"),
            n("Slice", ["rp", "one", "big", "zero"], ["r"], name="drop_row"),
            n("MatMul", ["r", "w1"], ["m"], name="mm1"),
            n("Reshape", ["m", "back"], ["u"], name="unfold"),
            n("Transpose", ["u"], ["h1"], name="batch_first", perm=[1, 0, 2])]
    folded = model(first + fold + head,
                   inits + [c64("rows", [-1, 4]), c64("back", [3, -1, 5]),
                            c64("pad_rows", [1, 0, 0, 0]), c64("one", [1]), c64("big", [1 << 30]),
                            c64("zero", [0])],
                   [vi("x", "N", 3, 4)], [vi("logits", "N", 3)], name="tiny_fold")
    return plain, folded


def tiny_pools():
    g = np.random.default_rng(41)
    n = helper.make_node
    nodes = [n("Relu", ["x"], ["a"], name="relu"),
             n("MaxPool", ["a"], ["p1"], name="pool_s2", kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1], ceil_mode=1),
             n("MaxPool", ["p1"], ["p2"], name="pool_s1", kernel_shape=[3, 3], strides=[1, 1],
               pads=[1, 1, 1, 1], ceil_mode=1),
             n("AveragePool", ["p2"], ["p3"], name="avg", kernel_shape=[3, 3], strides=[1, 1],
               pads=[1, 1, 1, 1]),
             n("Flatten", ["p3"], ["f"], name="flatten"),
             n("Gemm", ["f", "w", "b"], ["logits"], name="fc", transB=1)]
    inits = [numpy_helper.from_array(g.standard_normal((3, 528)).astype(np.float32), "w"),
             numpy_helper.from_array(g.standard_normal(3).astype(np.float32), "b")]
    return model(nodes, inits, [vi("x", "N", 33, 7, 7)], [vi("logits", "N", 3)], name="tiny_pools")


def tiny_cnn_copy(m):
    c = onnx.ModelProto()
    c.CopyFrom(m)
    return c


if __name__ == "__main__":
    main()
