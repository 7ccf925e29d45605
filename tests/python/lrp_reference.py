"""Independent float64 reference for the non-RAP methods of onnx-rap, on small sequential nets.

usage: lrp_reference.py MODEL INPUT.npy METHOD OUT.npy [EPSILON]

METHOD: lrp (the reference code's alpha1-beta0, each sign path normalised alone), lrp-eps,
lrp-a2b1, lrp-zplus, gradxinput. Explains each sample's argmax class. Writes the input
relevance with the input's shape.

Written from the method definitions, not from onnx-rap's graphs: every Conv is unrolled into a
dense matrix (one row per output value, built with loops from the kernel), so each rule is a
plain sum over explicit contributions x_i * w_ij, and no transposed convolution is involved.
Supported ops (a chain): Conv (group 1, pads, strides), Relu, MaxPool (kernel = stride, no
pads, first maximum wins), Flatten, Gemm (transB = 1). The input layer of the LRP variants is
the z^B rule with per-sample bounds (min and max of the sample), Z + 1e-9, as the reference.
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def conv_matrix(w, b, in_shape, pads, strides):
    """Dense matrix A [out, in] and bias [out] of a Conv on one sample of shape in_shape."""
    co, ci, kh, kw = w.shape
    _, h, wd = in_shape
    pt, pl, pb, pr = pads[0], pads[1], pads[2], pads[3]
    sh, sw = strides
    oh = (h + pt + pb - kh) // sh + 1
    ow = (wd + pl + pr - kw) // sw + 1
    a = np.zeros((co, oh, ow, ci, h, wd))
    for o in range(co):
        for y in range(oh):
            for x in range(ow):
                for c in range(ci):
                    for i in range(kh):
                        for j in range(kw):
                            yy, xx = y * sh - pt + i, x * sw - pl + j
                            if 0 <= yy < h and 0 <= xx < wd:
                                a[o, y, x, c, yy, xx] = w[o, c, i, j]
    bias = np.repeat(b if b is not None else np.zeros(co), oh * ow)
    return a.reshape(co * oh * ow, ci * h * wd), bias, (co, oh, ow)


def layers(model, in_shape):
    """The net as a list of ('linear', A, bias) / ('relu',) / ('maxpool', groups) on flat vectors."""
    init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    shape = in_shape
    out = []
    for node in model.graph.node:
        at = attrs(node)
        if node.op_type == "Conv":
            assert at.get("group", 1) == 1 and all(d == 1 for d in at.get("dilations", [1, 1]))
            w = init[node.input[1]]
            b = init[node.input[2]] if len(node.input) > 2 else None
            a, bias, shape = conv_matrix(w, b, shape, at.get("pads", [0] * 4), at.get("strides", [1, 1]))
            out.append(("linear", a, bias))
        elif node.op_type == "Gemm":
            assert at.get("transB", 0) == 1 and at.get("alpha", 1.0) == 1.0 and at.get("beta", 1.0) == 1.0
            w = init[node.input[1]]
            out.append(("linear", w, init[node.input[2]]))
            shape = (w.shape[0],)
        elif node.op_type == "Relu":
            out.append(("relu",))
        elif node.op_type == "Flatten":
            shape = (int(np.prod(shape)),)
        elif node.op_type == "MaxPool":
            k, s = at["kernel_shape"], at["strides"]
            assert k == s and not any(at.get("pads", [0]))
            c, h, w = shape
            oh, ow = h // k[0], w // k[1]
            groups = []
            for ch in range(c):
                for y in range(oh):
                    for x in range(ow):
                        groups.append([ch * h * w + (y * k[0] + i) * w + x * k[1] + j
                                       for i in range(k[0]) for j in range(k[1])])
            out.append(("maxpool", groups))
            shape = (c, oh, ow)
        else:
            raise SystemExit(f"lrp_reference.py: op {node.op_type} is not supported")
    return out


def forward(net, x):
    acts = [x]
    for layer in net:
        if layer[0] == "linear":
            x = layer[1] @ x + layer[2]
        elif layer[0] == "relu":
            x = np.maximum(x, 0)
        else:
            x = np.array([x[g].max() for g in layer[1]])
        acts.append(x)
    return acts


def sd(a, b):
    return np.where(b != 0, a / np.where(b != 0, b, 1), 0.0)


def linear_rule(method, a, bias, x, r, eps, first, lo, hi):
    """Relevance (or gradient) of a linear layer's input: explicit contributions c[j, i]."""
    if method == "gradxinput":
        return a.T @ r
    if first:
        # z^B: contributions x_i w_ij - lo w+_ij - hi w-_ij.
        c = a * x[None, :] - lo * np.maximum(a, 0) - hi * np.minimum(a, 0)
        return (c / (c.sum(1) + 1e-9)[:, None] * r[:, None]).sum(0)
    c = a * x[None, :]
    if method == "lrp-eps":
        z = c.sum(1) + bias
        z = z + eps * np.where(z >= 0, 1.0, -1.0)
        return (c / z[:, None] * r[:, None]).sum(0)
    if method == "lrp":
        # Each sign path alone: x+ with W+, x- with W-.
        out = np.zeros_like(x)
        for xs, ws in [(np.maximum(x, 0), np.maximum(a, 0)), (np.minimum(x, 0), np.minimum(a, 0))]:
            cp = ws * xs[None, :]
            out += (sd(r, cp.sum(1))[:, None] * cp).sum(0)
        return out
    alpha, beta = {"lrp-a2b1": (2.0, 1.0), "lrp-zplus": (1.0, 0.0)}[method]
    cp, cn = np.maximum(c, 0), np.minimum(c, 0)
    out = alpha * (sd(r, cp.sum(1))[:, None] * cp).sum(0)
    if beta:
        out -= beta * (sd(r, cn.sum(1))[:, None] * cn).sum(0)
    return out


def explain(net, x, method, eps):
    acts = forward(net, x)
    t = int(acts[-1].argmax())
    r = np.zeros_like(acts[-1])
    r[t] = 1.0 if method == "gradxinput" else acts[-1][t]
    for k in range(len(net) - 1, -1, -1):
        layer, xin = net[k], acts[k]
        if layer[0] == "linear":
            r = linear_rule(method, layer[1], layer[2], xin, r, eps, k == 0, x.min(), x.max())
        elif layer[0] == "relu":
            if method == "gradxinput":
                r = r * (xin > 0)
        else:
            back = np.zeros_like(xin)
            for j, g in enumerate(layer[1]):
                i = g[int(np.argmax(xin[g]))]  # the first maximum
                # z-rule through the winner: x_i * R_j / y_j; the gradient: R_j.
                back[i] += r[j] if method == "gradxinput" else sd(xin[i] * r[j], acts[k + 1][j])
            r = back
    return r * x if method == "gradxinput" else r


def main():
    model_path, input_path, method, out_path = sys.argv[1:5]
    eps = float(sys.argv[5]) if len(sys.argv) > 5 else 0.01
    model = onnx.load(model_path)
    xs = np.load(input_path).astype(np.float64)
    net = layers(model, xs.shape[1:])
    rel = np.stack([explain(net, x.reshape(-1), method, eps).reshape(x.shape) for x in xs])
    np.save(out_path, rel)


if __name__ == "__main__":
    main()
