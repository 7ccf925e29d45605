"""Make tests/data/exporters: small random-weight classifiers written by real exporters (run
once; the outputs are committed, a few KB to a few hundred KB each).

  keras  (needs tensorflow-cpu 2.15 and tf2onnx 1.16, development tools only):
    keras_cnn_bn.onnx     channels-last [N,24,24,3]: Conv-BN-ReLU-MaxPool x2, a flatten that
                          reads the batch from the tensor (Shape, Slice, Concat, Reshape),
                          Dense, Dropout, Dense + Softmax
    keras_residual.onnx   channels-last [N,20,20,3]: ZeroPadding2D, a residual block with BN,
                          a strided 1x1 conv, GlobalAveragePooling2D, Dense + Softmax
    keras_sigmoid.onnx    channels-last grayscale [N,16,16,1], AveragePooling2D, Dense(1) +
                          Sigmoid (a binary classifier)
  torch  (needs torch 2 and onnxscript: the dynamo exporter):
    torch_dynamo_cnn.onnx NCHW [N,3,20,20]: Conv-BN-ReLU, MaxPool, a residual block,
                          AdaptiveAvgPool, Linear + Softmax
    torch_dynamo_nhwc.onnx channels-last [N,16,16,3] permuted inside the model, Conv, BN, Linear
  caffe  (needs onnx and numpy only): the graph of a ResNet converted from Caffe through
    PyTorch, written node by node: BatchNormalization as Sub/Mul/Add/Div with per-channel
    constants (channels-last behind Transposes and channels-first), float->float Casts on the
    way, Pad (constant, reflect, edge), MaxPool, residual Adds, ReduceMean over the spatial
    axes, Flatten, Gemm + Softmax; plus a second output made by an op of another domain, off
    the relevance path.
    caffe_resnet.onnx
  handmade  (onnx and numpy): pad_modes.onnx (reflect, edge and constant Pad on the relevance
    path), cast_half.onnx (a float16 round trip on the path: refused), many_unsupported.onnx
    (seven nodes without a rule: the error's per-type count and examples), bn_as_op.onnx and
    bn_as_arithmetic.onnx (one network, BatchNormalization as the op and as Sub/Div/Mul/Add)

Each model comes with NAME_input.npy (4 samples). Weights and inputs have fixed seeds.

usage: python scripts/make_exporter_models.py keras|torch|caffe|handmade
"""
import os
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "exporters")


def save_input(name, shape, seed):
    x = np.random.default_rng(seed).standard_normal((4,) + tuple(shape)).astype(np.float32)
    np.save(os.path.join(OUT, f"{name}_input.npy"), x)


# ---------------------------------------------------------------------------------------------
# Keras through tf2onnx


def keras_models():
    import tensorflow as tf
    import tf2onnx
    from tensorflow import keras
    from tensorflow.keras import layers

    def randomize_bn(model, seed):
        # BatchNormalization statistics and biases away from their initial 1s and 0s
        # (tf2onnx folds zero biases away).
        g = np.random.default_rng(seed)
        for layer in model.layers:
            if getattr(layer, "bias", None) is not None:
                w = layer.get_weights()
                w[1] = (g.standard_normal(w[1].shape) * 0.1).astype(np.float32)
                layer.set_weights(w)
            if isinstance(layer, layers.BatchNormalization):
                c = layer.gamma.shape[0]
                layer.set_weights([g.uniform(0.5, 1.5, c), g.standard_normal(c) * 0.1,
                                   g.standard_normal(c) * 0.1, g.uniform(0.5, 1.5, c)])

    def export(model, name, shape):
        spec = [tf.TensorSpec((None,) + shape, tf.float32, name="image")]
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=15,
                                   output_path=os.path.join(OUT, f"{name}.onnx"))

    tf.random.set_seed(1)
    inp = keras.Input((24, 24, 3))
    x = layers.Conv2D(8, 3, padding="same")(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(12, 3, padding="same", activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D()(x)
    # Flatten with the batch read from the tensor: a Shape-driven Reshape in the graph.
    x = layers.Lambda(lambda t: tf.reshape(t, tf.stack([tf.shape(t)[0], 6 * 6 * 12])))(x)
    x = layers.Dense(16, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    out = layers.Dense(5, activation="softmax")(x)
    m = keras.Model(inp, out)
    randomize_bn(m, 2)
    export(m, "keras_cnn_bn", (24, 24, 3))
    save_input("keras_cnn_bn", (24, 24, 3), 3)

    tf.random.set_seed(4)
    inp = keras.Input((20, 20, 3))
    x = layers.ZeroPadding2D(1)(inp)
    x = layers.Conv2D(8, 3)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    y = layers.Conv2D(8, 3, padding="same")(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU()(y)
    y = layers.Conv2D(8, 3, padding="same")(y)
    y = layers.BatchNormalization()(y)
    x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.Conv2D(12, 1, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(4, activation="softmax")(x)
    m = keras.Model(inp, out)
    randomize_bn(m, 5)
    export(m, "keras_residual", (20, 20, 3))
    save_input("keras_residual", (20, 20, 3), 6)

    tf.random.set_seed(7)
    inp = keras.Input((16, 16, 1))
    x = layers.Conv2D(6, 3, padding="same", activation="relu")(inp)
    x = layers.AveragePooling2D()(x)
    x = layers.Conv2D(8, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    out = layers.Dense(1, activation="sigmoid")(x)
    m = keras.Model(inp, out)
    randomize_bn(m, 9)
    export(m, "keras_sigmoid", (16, 16, 1))
    save_input("keras_sigmoid", (16, 16, 1), 8)


# ---------------------------------------------------------------------------------------------
# PyTorch 2 through the dynamo exporter


def torch_models():
    import torch
    from torch import nn

    class Cnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.MaxPool2d(2))
            self.a = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            x = self.stem(x)
            x = torch.relu(x + self.a(x))
            x = torch.flatten(self.pool(x), 1)
            return torch.softmax(self.fc(x), dim=1)

    class Nhwc(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, stride=2)
            self.bn = nn.BatchNorm2d(6)
            self.fc = nn.Linear(6 * 7 * 7, 4)

        def forward(self, x):
            x = x.permute(0, 3, 1, 2)
            x = torch.relu(self.bn(self.conv(x)))
            return self.fc(x.flatten(1))

    def randomize_bn(m, seed):
        g = torch.Generator().manual_seed(seed)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.data = torch.rand(c, generator=g) + 0.5
                mod.bias.data = torch.randn(c, generator=g) * 0.1
                mod.running_mean = torch.randn(c, generator=g) * 0.1
                mod.running_var = torch.rand(c, generator=g) + 0.5

    for name, cls, shape, seed in [("torch_dynamo_cnn", Cnn, (3, 20, 20), 11),
                                   ("torch_dynamo_nhwc", Nhwc, (16, 16, 3), 12)]:
        torch.manual_seed(seed)
        m = cls().eval()
        randomize_bn(m, seed)
        x = torch.randn((2,) + shape)
        batch = torch.export.Dim("N", min=1, max=1024)
        torch.onnx.export(m, (x,), os.path.join(OUT, f"{name}.onnx"), dynamo=True,
                          input_names=["image"], output_names=["scores"],
                          dynamic_shapes=({0: batch},), external_data=False)
        save_input(name, shape, seed + 100)


# ---------------------------------------------------------------------------------------------
# A Caffe ResNet as PyTorch converters write it, node by node


def caffe_model():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = np.random.default_rng(21)
    nodes, inits = [], []
    count = {}

    def name(kind):
        count[kind] = count.get(kind, 0) + 1
        return f"/{kind}" if count[kind] == 1 else f"/{kind}_{count[kind] - 1}"

    def const(vals, dtype=np.float32):
        n = name("const")
        inits.append(numpy_helper.from_array(np.asarray(vals, dtype), n.strip("/")))
        return n.strip("/")

    def op(kind, ins, **attrs):
        n = name(kind)
        out = n.strip("/") + "_out"
        nodes.append(helper.make_node(kind, ins, [out], name=n, **attrs))
        return out

    def cast(x):
        return op("Cast", [x], to=TensorProto.FLOAT)

    def conv(x, cin, cout, k, stride=1, pad=0):
        w = const(g.standard_normal((cout, cin, k, k)) * (2.0 / (cin * k * k)) ** 0.5)
        b = const(g.standard_normal(cout) * 0.05)
        return op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride],
                  pads=[pad] * 4)

    def bn_nchw(x, c):
        # (x - mean) / sqrt(var + eps) * gamma + beta with [C, 1, 1] constants.
        mean = const(g.standard_normal((c, 1, 1)) * 0.1)
        std = const(np.sqrt(g.uniform(0.5, 1.5, (c, 1, 1)) + 1e-5))
        gamma = const(g.uniform(0.5, 1.5, (c, 1, 1)))
        beta = const(g.standard_normal((c, 1, 1)) * 0.1)
        y = op("Sub", [cast(x), mean])
        y = op("Div", [y, std])
        y = op("Mul", [cast(y), gamma])
        return op("Add", [y, beta])

    def bn_nhwc(x, c):
        # The same behind Transposes, with [C] constants broadcast on the last axis.
        t = op("Transpose", [x], perm=[0, 2, 3, 1])
        scale = const(g.uniform(0.5, 1.5, c) / np.sqrt(g.uniform(0.5, 1.5, c) + 1e-5))
        shift = const(g.standard_normal(c) * 0.1)
        y = op("Mul", [cast(t), scale])
        y = op("Add", [y, shift])
        return op("Transpose", [cast(y)], perm=[0, 3, 1, 2])

    x = "data"
    y = op("Pad", [x, const([0, 0, 1, 1, 0, 0, 1, 1], np.int64)], mode="reflect")  # 22
    y = conv(y, 3, 8, 3)                                                       # 8 x 20 x 20
    y = op("Relu", [bn_nhwc(y, 8)])
    y = op("Pad", [y, const([0, 0, 0, 0, 0, 0, 1, 1], np.int64), const(0.0)])  # caffe's ceil pool
    y = op("MaxPool", [cast(y)], kernel_shape=[3, 3], strides=[2, 2])           # 8 x 10 x 10
    # A bottleneck-less residual block, BN in channels-first arithmetic.
    z = op("Relu", [bn_nchw(conv(y, 8, 8, 3, pad=1), 8)])
    z = bn_nchw(conv(z, 8, 8, 3, pad=1), 8)
    y = op("Relu", [cast(op("Add", [cast(y), z]))])
    # A downsampling block with a projection shortcut.
    z = op("Pad", [y, const([0, 0, 1, 1, 0, 0, 1, 1], np.int64)], mode="edge")
    z = op("Relu", [bn_nhwc(conv(z, 8, 12, 3, stride=2), 12)])                  # 12 x 5 x 5
    z = bn_nchw(conv(z, 12, 12, 3, pad=1), 12)
    s = bn_nchw(conv(y, 8, 12, 1, stride=2), 12)
    y = op("Relu", [op("Add", [z, s])])
    y = op("ReduceMean", [cast(y)], axes=[2, 3], keepdims=1)                   # 12 x 1 x 1
    y = op("Flatten", [y], axis=1)
    w = const(g.standard_normal((6, 12)) * 0.5)
    b = const(g.standard_normal(6) * 0.1)
    logits = op("Gemm", [cast(y), w, b], transB=1)
    nodes.append(helper.make_node("Softmax", [logits], ["prob"], name="/Softmax", axis=1))
    # Off the relevance path: an output computed by an op of another domain.
    nodes.append(helper.make_node("Gelu", [y], ["features_gelu"], name="/ms/Gelu",
                                  domain="com.microsoft"))
    graph = helper.make_graph(
        nodes, "caffe_resnet",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 20, 20])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 6]),
         helper.make_tensor_value_info("features_gelu", TensorProto.FLOAT, ["N", 12])],
        inits)
    m = helper.make_model(graph, producer_name="pytorch", producer_version="1.0",
                          opset_imports=[helper.make_opsetid("", 11),
                                         helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 6
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(OUT, "caffe_resnet.onnx"))
    save_input("caffe_resnet", (3, 20, 20), 22)


# ---------------------------------------------------------------------------------------------
# Small hand-written models for single behaviours


def handmade_models():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = np.random.default_rng(31)
    n = helper.make_node

    def save(nodes, inits, shape, classes, name, opset=13):
        graph = helper.make_graph(
            nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"] + shape)],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        onnx.save(m, os.path.join(OUT, f"{name}.onnx"))

    # Reflect, edge and constant padding on the relevance path (pads on both spatial axes).
    pads = numpy_helper.from_array(np.array([0, 0, 2, 1, 0, 0, 1, 2], np.int64), "pads")
    save([n("Pad", ["x", "pads"], ["r"], name="pad_reflect", mode="reflect"),
          n("Pad", ["r", "pads"], ["e"], name="pad_edge", mode="edge"),
          n("Pad", ["e", "pads"], ["c"], name="pad_zero"),
          n("Flatten", ["c"], ["f"], name="flatten"),
          n("Gemm", ["f", "w", "b"], ["logits"], name="fc", transB=1)],
         [pads, numpy_helper.from_array(g.standard_normal((3, 2 * 14 * 15)).astype(np.float32), "w"),
          numpy_helper.from_array(g.standard_normal(3).astype(np.float32), "b")],
         [2, 5, 6], 3, "pad_modes")
    save_input("pad_modes", (2, 5, 6), 32)

    # A half-precision round trip on the relevance path: refused with a clear message.
    save([n("Cast", ["x"], ["h"], name="to_half", to=TensorProto.FLOAT16),
          n("Cast", ["h"], ["f"], name="to_float", to=TensorProto.FLOAT),
          n("Gemm", ["f", "w"], ["logits"], name="fc", transB=1)],
         [numpy_helper.from_array(g.standard_normal((3, 4)).astype(np.float32), "w")],
         [4], 3, "cast_half")

    # The same network twice: BatchNormalization as the op, and written as arithmetic (once
    # channels-first with [C, 1, 1] constants, once behind Transposes with [C] constants).
    c = 4
    w1 = numpy_helper.from_array(g.standard_normal((c, 2, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(g.standard_normal((c, c, 3, 3)).astype(np.float32), "w2")
    fc = numpy_helper.from_array(g.standard_normal((3, c * 6 * 6)).astype(np.float32), "fc")
    stats = []
    for k in range(2):
        gamma, beta = g.uniform(0.5, 1.5, c), g.standard_normal(c) * 0.2
        mean, var = g.standard_normal(c) * 0.2, g.uniform(0.5, 1.5, c)
        stats.append([a.astype(np.float32) for a in (gamma, beta, mean, var)])
    conv = lambda x, w, y: n("Conv", [x, w], [y], name=f"conv_{y}", pads=[1, 1, 1, 1])
    bn_op = [conv("x", "w1", "c1"),
             n("BatchNormalization", ["c1", "g0", "b0", "m0", "v0"], ["n1"], name="bn1"),
             n("Relu", ["n1"], ["r1"], name="relu1"), conv("r1", "w2", "c2"),
             n("BatchNormalization", ["c2", "g1", "b1", "m1", "v1"], ["n2"], name="bn2"),
             n("Relu", ["n2"], ["r2"], name="relu2"), n("Flatten", ["r2"], ["f"], name="flat"),
             n("Gemm", ["f", "fc"], ["logits"], name="head", transB=1)]
    op_inits = [w1, w2, fc]
    for k, (gamma, beta, mean, var) in enumerate(stats):
        op_inits += [numpy_helper.from_array(v, f"{p}{k}")
                     for v, p in zip((gamma, beta, mean, var), "gbmv")]
    save(bn_op, op_inits, [2, 6, 6], 3, "bn_as_op")
    (g0, b0, m0, v0), (g1, b1, m1, v1) = stats
    col = lambda v: v.reshape(c, 1, 1)
    arith = [conv("x", "w1", "c1"),
             n("Sub", ["c1", "m0"], ["s1"], name="bn1_sub"),
             n("Div", ["s1", "sd0"], ["d1"], name="bn1_div"),
             n("Mul", ["d1", "g0"], ["p1"], name="bn1_mul"),
             n("Add", ["p1", "b0"], ["n1"], name="bn1_add"),
             n("Relu", ["n1"], ["r1"], name="relu1"), conv("r1", "w2", "c2"),
             n("Transpose", ["c2"], ["t2"], name="to_nhwc", perm=[0, 2, 3, 1]),
             n("Mul", ["t2", "scale1"], ["p2"], name="bn2_mul"),
             n("Add", ["p2", "shift1"], ["q2"], name="bn2_add"),
             n("Transpose", ["q2"], ["n2"], name="to_nchw", perm=[0, 3, 1, 2]),
             n("Relu", ["n2"], ["r2"], name="relu2"), n("Flatten", ["r2"], ["f"], name="flat"),
             n("Gemm", ["f", "fc"], ["logits"], name="head", transB=1)]
    eps = 1e-5
    scale1 = g1 / np.sqrt(v1 + eps)
    arith_inits = [w1, w2, fc] + [numpy_helper.from_array(a.astype(np.float32), nm) for nm, a in [
        ("m0", col(m0)), ("sd0", col(np.sqrt(v0 + eps))), ("g0", col(g0)), ("b0", col(b0)),
        ("scale1", scale1), ("shift1", b1 - m1 * scale1)]]
    save(arith, arith_inits, [2, 6, 6], 3, "bn_as_arithmetic")
    save_input("bn_as_op", (2, 6, 6), 33)

    # Seven nodes of an op without a rule: the error lists the count and five examples.
    chain = [n("Gemm", ["x", "w"], ["s0"], name="fc", transB=1)]
    chain += [n("Sin", [f"s{k}"], [f"s{k + 1}"], name=f"sin_{k}") for k in range(6)]
    chain += [n("Sin", ["s6"], ["logits"], name="sin_6")]
    save(chain, [numpy_helper.from_array(g.standard_normal((3, 4)).astype(np.float32), "w")],
         [4], 3, "many_unsupported")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    {"keras": keras_models, "torch": torch_models, "caffe": caffe_model,
     "handmade": handmade_models}[which]()
