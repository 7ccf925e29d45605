"""Independent float64 reference for onnx-rap's generalised RAP (`--method rap`) on small graphs.

usage: rap_reference.py MODEL INPUT.npy OUT_DIR

Explains each sample's argmax class. Writes OUT_DIR/relevance.npy (the input relevance) and
OUT_DIR/layer_sums.json: for every node that ran a rule, per sample, the relevance it received
(summed over its outputs) and the relevance it handed to its inputs that depend on the input,
keyed by node name: what `compile --layer-sums` outputs as `layer_sum:NODE`.

Written from the rule definitions in docs/RULES.md, not from onnx-rap's graphs: every Conv and
Gemm is unrolled into a dense matrix A (one row per output value, built with loops from the
kernel), contributions are explicit, e_ji = A_ji x_i, and no transposed convolution appears.
Supported ops: Conv (pads, strides, groups; a 1x1 stride-1 unpadded group-1 conv is
"pointwise", one whose kernel equals its stride with no pads a "patch" embedding), Gemm
(transB = 1), Relu, Clip, BatchNormalization, Add, MaxPool (kernel = stride, no pads; each
window's relevance to its first maximum), GlobalAveragePool, Flatten. The graph is walked as a
DAG.
"""
import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def sd(a, b):
    b = np.asarray(b, dtype=np.float64)
    safe = np.where(b == 0, 1.0, b)
    return np.where(b == 0, 0.0, np.asarray(a) / safe)


def conv_matrix(w, shape, pads, strides, group):
    """Dense A [out, in] of a Conv on one sample of shape (C, H, W)."""
    co, cig, kh, kw = w.shape
    ci, h, wd = shape
    pt, pl, pb, pr = pads
    sh, sw = strides
    oh = (h + pt + pb - kh) // sh + 1
    ow = (wd + pl + pr - kw) // sw + 1
    a = np.zeros((co, oh, ow, ci, h, wd))
    per = co // group
    for o in range(co):
        g = o // per
        for y in range(oh):
            for x in range(ow):
                for c in range(cig):
                    for i in range(kh):
                        for j in range(kw):
                            yy, xx = y * sh - pt + i, x * sw - pl + j
                            if 0 <= yy < h and 0 <= xx < wd:
                                a[o, y, x, g * cig + c, yy, xx] = w[o, c, i, j]
    return a.reshape(co * oh * ow, ci * h * wd), (co, oh, ow)


class Net:
    def __init__(self, model):
        self.init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
        self.nodes = list(model.graph.node)  # exporters write them in topological order
        self.input = model.graph.input[0].name
        self.output = model.graph.output[0].name

    def forward(self, x):
        """Every tensor of one sample, and the dense matrix of every linear node."""
        v = {self.input: x}
        mats = {}
        for n in self.nodes:
            at = attrs(n)
            ins = [v.get(i, self.init.get(i)) for i in n.input]
            op = n.op_type
            if op == "Conv":
                w = ins[1]
                a, shape = conv_matrix(w, ins[0].shape, at.get("pads", [0] * 4), at.get("strides", [1, 1]),
                                       at.get("group", 1))
                b = np.repeat(ins[2], shape[1] * shape[2]) if len(ins) > 2 else np.zeros(a.shape[0])
                pointwise = (w.shape[2:] == (1, 1) and at.get("strides", [1, 1]) == [1, 1]
                             and not any(at.get("pads", [0] * 4)) and at.get("group", 1) == 1)
                # A patch embedding: windows that tile the input (kernel = stride, no pads).
                patch = (list(w.shape[2:]) == list(at.get("strides", [1, 1])) and w.shape[2:] != (1, 1)
                         and not any(at.get("pads", [0] * 4)) and at.get("group", 1) == 1)
                mats[n.name] = (a, b, "patch" if patch else "conv", pointwise, shape)
                y = (a @ ins[0].ravel() + b).reshape(shape)
            elif op == "Gemm":
                assert at.get("transB") == 1
                a, b = ins[1], ins[2]
                mats[n.name] = (a, b, "fc", False, (a.shape[0],))
                y = a @ ins[0] + b
            elif op == "Relu":
                y = np.maximum(ins[0], 0)
            elif op == "Clip":
                y = np.clip(ins[0], ins[1], ins[2])
            elif op == "BatchNormalization":
                s = ins[1] / np.sqrt(ins[4] + at.get("epsilon", 1e-5))
                y = (ins[0] - ins[3][:, None, None]) * s[:, None, None] + ins[2][:, None, None]
            elif op == "Add":
                y = ins[0] + ins[1]
            elif op == "MaxPool":
                k = at["kernel_shape"]
                assert at.get("strides") == k and not any(at.get("pads", [0] * 4))
                c, h, w = ins[0].shape
                y = ins[0].reshape(c, h // k[0], k[0], w // k[1], k[1]).max(axis=(2, 4))
            elif op == "GlobalAveragePool":
                y = ins[0].mean(axis=(1, 2), keepdims=True)
            elif op == "Flatten":
                y = ins[0].ravel()
            else:
                raise SystemExit(f"rap_reference.py: no rule for {op}")
            v[n.output[0]] = y
        return v, mats


def first_step(a, bias, x, t):
    """RAP's first step at the layer making the logits: |c| rescaled to sum c."""
    w = a[t]
    xp, xn = np.maximum(x, 0), np.minimum(x, 0)
    wp, wn = np.maximum(w, 0), np.minimum(w, 0)
    epp, epn, enp, enn = xp * wp, xp * wn, xn * wp, xn * wn
    zpp, zpn, znp, znn = epp.sum(), epn.sum(), enp.sum(), enn.sum()
    p, q = zpp + znn, zpn + znp
    c = x * w + bias[t] * sd(p, p + q) * sd(epp, zpp) + bias[t] * sd(q, p + q) * sd(epn, zpn)
    return np.abs(c) * sd(c.sum(), np.abs(c).sum())


def relative(a, x, r, kind, pointwise, out_shape):
    """The generalised relative rule: one rule over both sign paths, then the shift."""
    e = a * x[None, :]  # e[j, i]: contribution of input i to output j
    e1, e2 = np.maximum(e, 0), np.maximum(-e, 0)
    z1, z2 = e1.sum(1), e2.sum(1)
    d = z1 + z2
    g, rho = sd(z2, d), (d != 0).astype(float)
    rp, rn = np.maximum(r, 0), np.minimum(r, 0)
    if kind == "fc":
        c = e1.T @ sd(r * rho, z1) + e2.T @ sd(r * g, z2)
    else:
        c = e1.T @ sd(rp * rho, z1) + e2.T @ sd(r * g + rn * rho, z2)
    nz = (c != 0).astype(float)
    if not pointwise:
        return c - sd(c.sum() - r.sum(), nz.sum()) * nz
    # Per position: channels are axis 0 of both C and R (same grid).
    cc, rr, mm = c.reshape(x.size // np.prod(out_shape[1:]), -1), r.reshape(out_shape[0], -1), nz.reshape(-1)
    mm = mm.reshape(cc.shape)
    delta = cc.sum(0) - rr.sum(0)
    n = mm.sum(0)
    per = sd(delta, n)
    left = (delta * (n == 0)).sum()
    per = per + sd(left, mm.sum())
    return (cc - per[None, :] * mm).reshape(-1)


def patch_offset(a, x, r, shape):
    """The input layer of a patch embedding: the relative rule on x - min(x), then the shift."""
    return relative(a, x - x.min(), r, "conv", False, shape)


def z_bounded(a, x, r):
    lo, hi = x.min(), x.max()
    ap, an = np.maximum(a, 0), np.minimum(a, 0)
    z = a @ x - ap @ np.full_like(x, lo) - an @ np.full_like(x, hi)
    s = sd(r, z)
    return x * (a.T @ s) - lo * (ap.T @ s) - hi * (an.T @ s)


def explain(net, x):
    v, mats = net.forward(x)
    logits = v[net.output]
    t = int(np.argmax(logits))
    rel = {}
    sums = {}
    live = {net.input}
    for n in net.nodes:
        if any(i in live for i in n.input):
            live.update(n.output)
    readers_of_input = {n.name for n in net.nodes if n.input and n.input[0] == net.input}
    for k, n in enumerate(reversed(net.nodes)):
        op = n.op_type
        if n.output[0] == net.output:
            a, b, _, _, _ = mats[n.name]
            r_out = None
            handed = {n.input[0]: first_step(a, b, v[n.input[0]], t)}
            received = 1.0  # the one-hot
        else:
            if n.output[0] not in rel:
                continue
            r_out = rel.pop(n.output[0])
            received = r_out.sum()
            x = v[n.input[0]]
            if op in ("Conv", "Gemm"):
                a, _, kind, pw, shape = mats[n.name]
                if n.name in readers_of_input and kind == "patch":
                    rin = patch_offset(a, x.ravel(), r_out.ravel(), shape)
                elif n.name in readers_of_input:
                    rin = z_bounded(a, x.ravel(), r_out.ravel())
                else:
                    rin = relative(a, x.ravel(), r_out.ravel(), "conv" if kind == "patch" else kind, pw, shape)
                handed = {n.input[0]: rin.reshape(x.shape)}
            elif op in ("Relu", "Clip", "BatchNormalization"):
                handed = {n.input[0]: r_out}
            elif op == "Add":
                xa, xb = v[n.input[0]], v[n.input[1]]
                s = sd(r_out, np.abs(xa) + np.abs(xb))
                handed = {n.input[0]: np.abs(xa) * s, n.input[1]: np.abs(xb) * s}
                handed = {k2: h for k2, h in handed.items() if k2 in live}
            elif op == "MaxPool":
                kh, kw = attrs(n)["kernel_shape"]
                c, h, w = x.shape
                out = np.zeros_like(x)
                for ch in range(c):
                    for i in range(h // kh):
                        for j in range(w // kw):
                            win = x[ch, i * kh:(i + 1) * kh, j * kw:(j + 1) * kw].ravel()
                            m = int(np.argmax(win))  # the first maximum
                            yy, xx = i * kh + m // kw, j * kw + m % kw
                            out[ch, yy, xx] += r_out[ch, i, j]  # its share x / max = 1, kept where max = 0
                handed = {n.input[0]: out}
            elif op == "GlobalAveragePool":
                ax = np.abs(x)
                handed = {n.input[0]: ax * sd(r_out, ax.sum(axis=(1, 2), keepdims=True))}
            elif op == "Flatten":
                handed = {n.input[0]: r_out.reshape(x.shape)}
            else:
                raise SystemExit(f"rap_reference.py: no rule for {op}")
        sums[n.name] = [float(received), float(sum(h.sum() for h in handed.values()))]
        for name, h in handed.items():
            rel[name] = rel.get(name, 0) + h
    return rel[net.input], sums


def main():
    model, inp, out = sys.argv[1:4]
    net = Net(onnx.load(model))
    x = np.load(inp).astype(np.float64)
    rels, all_sums = [], {}
    for sample in x:
        r, s = explain(net, sample)
        rels.append(r)
        for name, pair in s.items():
            all_sums.setdefault(name, []).append(pair)
    np.save(f"{out}/relevance.npy", np.stack(rels))
    with open(f"{out}/layer_sums.json", "w") as f:
        json.dump(all_sums, f)


if __name__ == "__main__":
    main()
