"""Tiny transformer classifiers for the AttnLRP tests: weights, a layer-level float64 numpy
forward, the op-level ONNX writers and the layer-level AttnLRP backward.

Needs only numpy and onnx. Three parts, kept apart on purpose:

1. WEIGHTS and FORWARD: `make_weights(arch)` draws the weights (fixed seed, float32 values) and
   `forward(arch, w, inputs, gelu=...)` runs the model in float64 from a weights dict, layer by
   layer, keeping every intermediate tensor in a dict (the cache the backward reads).
2. ONNX WRITERS: `write_onnx(name, w)` emits each model as a graph of plain ONNX ops (see the
   model table below); the forward above never reads a graph.
3. BACKWARD: `attnlrp(arch, cache, w, target)` applies the AttnLRP rules (listed in
   attnlrp_reference.py) layer by layer on the cached float64 tensors.

Models (T = 6 tokens, D = 8, 2 heads of 4, vocab 20, MLP 16, 3 classes):
    bert_ln          opset 17  post-norm BERT layer, LayerNormalization op, Erf GELU chain
    bert_decomposed  opset 17  the same, every LayerNorm as ReduceMean/Sub/Pow/.../Div/Mul/Add
    bert_gelu_op     opset 20  the same, the single Gelu op
    bert_gelu_tanh   opset 17  the tanh-approximation GELU chain (different logits)
    llama_like       opset 17  RMSNorm, rotary q/k, Where(-inf) mask, IsNaN guard, squared ReLU
                               times SiLU gate, masked mean pooling, LayerNorm, Gemm head
    vit_tiny         opset 17  patch Conv, class token via Expand, pre-norm block, class-token head
and, for the torch-exported torch_encoder_*.onnx (written by scripts/make_transformer_tests.py
--torch), `torch_encoder_forward(state_dict, ids)` and attnlrp(arch="torch_encoder").
"""
import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

T, D, H, DH, VOCAB, MLP, NCLS = 6, 8, 2, 4, 20, 16, 3
LN_EPS = 1e-5
RMS_EPS = 1e-6
MASK_NEG = -10000.0
# vit_tiny
IMG, PATCH, CH = 16, 4, 3
NPATCH = (IMG // PATCH) ** 2
TV = NPATCH + 1

MODELS = {
    # name: (architecture, gelu form, opset)
    "bert_ln": ("bert", "erf", 17),
    "bert_decomposed": ("bert", "erf", 17),
    "bert_gelu_op": ("bert", "erf", 20),
    "bert_gelu_tanh": ("bert", "tanh", 17),
    "llama_like": ("llama", None, 17),
    "vit_tiny": ("vit", "erf", 17),
}
SEEDS = {"bert": 0, "llama": 1, "vit": 2}


# ============================================================================================
# 1. weights and the layer-level forward


def make_weights(arch):
    """The weights of one architecture: float32 values (as stored in the ONNX), returned as
    float64 arrays. Scaled so that activations are O(1)."""
    rng = np.random.default_rng(SEEDS[arch])

    def lin(i, o, gain=1.0):
        return rng.standard_normal((i, o)) * gain / math.sqrt(i)

    def vec(n, scale=0.1, mean=0.0):
        return mean + scale * rng.standard_normal(n)

    w = {}
    if arch in ("bert", "llama"):
        w["word"] = rng.standard_normal((VOCAB, D))
    if arch == "bert":
        w["pos"] = 0.5 * rng.standard_normal((T, D))
        w["ln0_g"], w["ln0_b"] = vec(D, 0.2, 1.0), vec(D)
    if arch == "vit":
        w["conv_w"] = rng.standard_normal((D, CH, PATCH, PATCH)) / math.sqrt(CH * PATCH * PATCH)
        w["conv_b"] = vec(D)
        w["cls"] = rng.standard_normal((1, 1, D))
        w["pos"] = 0.5 * rng.standard_normal((1, TV, D))
        w["ln1_g"], w["ln1_b"] = vec(D, 0.2, 1.0), vec(D)
    if arch == "llama":
        w["rms1"] = vec(D, 0.2, 1.0)
    gain = 2.0  # sharper attention than 1/sqrt(D) weights give
    for n in ("q", "k", "v"):
        w["w" + n] = lin(D, D, gain if n != "v" else 1.0)
        if arch != "llama":
            w["b" + n] = vec(D)
    w["wo"] = lin(D, D)
    if arch != "llama":
        w["bo"] = vec(D)
    if arch == "bert":
        w["ln1_g"], w["ln1_b"] = vec(D, 0.2, 1.0), vec(D)
    if arch == "vit":
        w["ln2_g"], w["ln2_b"] = vec(D, 0.2, 1.0), vec(D)
    if arch == "llama":
        w["rms2"] = vec(D, 0.2, 1.0)
        w["wu"], w["wg"] = lin(D, MLP, 1.5), lin(D, MLP, 1.5)
        w["wd"] = lin(MLP, D)
    else:
        w["w1"], w["b1"] = lin(D, MLP, 1.5), vec(MLP)
        w["w2"], w["b2"] = lin(MLP, D), vec(D)
    if arch == "bert":
        w["ln2_g"], w["ln2_b"] = vec(D, 0.2, 1.0), vec(D)
    else:
        w["lnf_g"], w["lnf_b"] = vec(D, 0.2, 1.0), vec(D)
    w["wc"] = 1.5 * rng.standard_normal((NCLS, D))  # Gemm transB = 1: [classes, D]
    w["bc"] = vec(NCLS)
    return {k: v.astype(np.float32).astype(np.float64) for k, v in w.items()}


def make_inputs(arch):
    """3 samples of graph inputs (int64 ids and mask, or a float32 image)."""
    if arch == "vit":  # noise plus a per-sample channel offset (the seed picked for distinct argmaxes)
        rng = np.random.default_rng(111)
        x = rng.standard_normal((3, CH, IMG, IMG)) + rng.standard_normal((3, CH, 1, 1))
        return {"input": x.astype(np.float32)}
    rng = np.random.default_rng(100 + SEEDS[arch])
    ids = rng.integers(1, VOCAB, size=(3, T)).astype(np.int64)
    mask = np.ones((3, T), dtype=np.int64)
    mask[1, 4:] = 0
    mask[2, 5:] = 0
    ids[mask == 0] = 0  # pad id
    return {"input_ids": ids, "attention_mask": mask}


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def gelu(x, form):
    if form == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x, g, b, eps=LN_EPS):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return g * (x - mu) / np.sqrt(var + eps) + b


def rms_norm(x, g, eps=RMS_EPS):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * g


def softmax(x):
    m = x.max(-1, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(-1, keepdims=True)


def split_heads(x):
    """[N, T, D] -> [N, H, T, DH]"""
    n, t, _ = x.shape
    return x.reshape(n, t, H, DH).transpose(0, 2, 1, 3)


def merge_heads(x):
    """[N, H, T, DH] -> [N, T, D]"""
    n, _, t, _ = x.shape
    return x.transpose(0, 2, 1, 3).reshape(n, t, D)


def rotate_half(x):
    return np.concatenate([-x[..., DH // 2:], x[..., :DH // 2]], axis=-1)


def rope_tables():
    """cos, sin [T, DH] (the usual rotary tables, base 10000)."""
    inv = 1.0 / (10000.0 ** (np.arange(0, DH, 2) / DH))
    ang = np.arange(T)[:, None] * inv[None, :]
    ang = np.concatenate([ang, ang], axis=-1)
    return np.cos(ang).astype(np.float32).astype(np.float64), np.sin(ang).astype(np.float32).astype(np.float64)


def patches_of(x):
    """[N, 3, 16, 16] -> [N, 16 patches (row-major), 48 = (c, kh, kw)]: the stride-4 kernel-4
    Conv's receptive fields, which do not overlap."""
    n = x.shape[0]
    g = IMG // PATCH
    p = x.reshape(n, CH, g, PATCH, g, PATCH).transpose(0, 2, 4, 1, 3, 5)
    return p.reshape(n, g * g, CH * PATCH * PATCH)


def unpatch(p):
    """inverse of patches_of"""
    n = p.shape[0]
    g = IMG // PATCH
    x = p.reshape(n, g, g, CH, PATCH, PATCH).transpose(0, 3, 1, 4, 2, 5)
    return x.reshape(n, CH, IMG, IMG)


def _attention_block(c, w, x, pre, mask_kind, mask=None):
    """Self-attention with biases (bert / vit); fills the cache c with prefix `pre`."""
    for n in ("q", "k", "v"):
        c[pre + n] = x @ w["w" + n]
        c[pre + n + "b"] = c[pre + n] + w["b" + n]
        c[pre + n + "h"] = split_heads(c[pre + n + "b"])
    qh, kh, vh = c[pre + "qh"], c[pre + "kh"], c[pre + "vh"]
    c[pre + "khT"] = kh.swapaxes(-1, -2)
    c[pre + "s"] = qh @ c[pre + "khT"]
    if mask_kind == "additive":  # bert: Div by sqrt(DH), then the additive mask
        c[pre + "s2"] = c[pre + "s"] / 2.0
        c[pre + "madd"] = ((1.0 - mask) * MASK_NEG)[:, None, None, :]
        c[pre + "s3"] = c[pre + "s2"] + c[pre + "madd"]
    else:  # vit: Mul(0.5), no mask
        c[pre + "s3"] = c[pre + "s"] * 0.5
    c[pre + "p"] = softmax(c[pre + "s3"])
    c[pre + "o"] = c[pre + "p"] @ vh
    c[pre + "a"] = merge_heads(c[pre + "o"])
    c[pre + "ao"] = c[pre + "a"] @ w["wo"]
    c[pre + "aob"] = c[pre + "ao"] + w["bo"]
    return c[pre + "aob"]


def _mlp(c, w, x, pre, form):
    c[pre + "m1"] = x @ w["w1"]
    c[pre + "m1b"] = c[pre + "m1"] + w["b1"]
    c[pre + "g"] = gelu(c[pre + "m1b"], form)
    c[pre + "m2"] = c[pre + "g"] @ w["w2"]
    c[pre + "m2b"] = c[pre + "m2"] + w["b2"]
    return c[pre + "m2b"]


def forward(arch, w, inputs, gelu_form="erf"):
    """float64 forward; returns the cache (every intermediate tensor, 'logits' among them)."""
    c = {}
    if arch == "bert":
        ids, mask = inputs["input_ids"], inputs["attention_mask"].astype(np.float64)
        c["e"] = w["word"][ids]
        c["h0"] = c["e"] + w["pos"]
        c["x0"] = layer_norm(c["h0"], w["ln0_g"], w["ln0_b"])
        _attention_block(c, w, c["x0"], "", "additive", mask)
        c["h1"] = c["aob"] + c["x0"]
        c["x1"] = layer_norm(c["h1"], w["ln1_g"], w["ln1_b"])
        _mlp(c, w, c["x1"], "", gelu_form)
        c["h2"] = c["m2b"] + c["x1"]
        c["x2"] = layer_norm(c["h2"], w["ln2_g"], w["ln2_b"])
        c["pooled"] = c["x2"].mean(1)
        c["logits"] = c["pooled"] @ w["wc"].T + w["bc"]
    elif arch == "llama":
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        cos, sin = rope_tables()
        c["e"] = w["word"][ids]
        c["r1"] = rms_norm(c["e"], w["rms1"])
        for n in ("q", "k", "v"):
            c[n] = c["r1"] @ w["w" + n]
            c[n + "h"] = split_heads(c[n])
        for n in ("q", "k"):
            c[n + "c"] = c[n + "h"] * cos
            c[n + "r"] = rotate_half(c[n + "h"]) * sin
            c[n + "rot"] = c[n + "c"] + c[n + "r"]
            c[n + "s"] = c[n + "rot"] * DH ** -0.25
        c["ksT"] = c["ks"].swapaxes(-1, -2)
        c["s"] = c["qs"] @ c["ksT"]
        c["maskb"] = (mask != 0)[:, None, None, :]
        c["sm"] = np.where(c["maskb"], c["s"], -np.inf)
        c["p"] = softmax(c["sm"])
        c["p2"] = np.where(np.isnan(c["p"]), 0.0, c["p"])
        c["o"] = c["p2"] @ c["vh"]
        c["a"] = merge_heads(c["o"])
        c["ao"] = c["a"] @ w["wo"]
        c["h1"] = c["e"] + c["ao"]
        c["r2"] = rms_norm(c["h1"], w["rms2"])
        c["u"] = c["r2"] @ w["wu"]
        c["gt"] = c["r2"] @ w["wg"]
        c["ua"] = np.maximum(c["u"], 0.0) ** 2
        c["gs"] = c["gt"] / (1.0 + np.exp(-c["gt"]))
        c["z"] = c["ua"] * c["gs"]
        c["d"] = c["z"] @ w["wd"]
        c["h2"] = c["h1"] + c["d"]
        mf = mask.astype(np.float64)
        c["hm"] = c["h2"] * mf[:, :, None]
        c["ssum"] = c["hm"].sum(1)
        c["pooled"] = c["ssum"] / mf.sum(1, keepdims=True)
        c["xf"] = layer_norm(c["pooled"], w["lnf_g"], w["lnf_b"])
        c["logits"] = c["xf"] @ w["wc"].T + w["bc"]
    elif arch == "vit":
        x = inputs["input"].astype(np.float64)
        c["patches"] = patches_of(x)
        wflat = w["conv_w"].reshape(D, -1)
        c["y"] = c["patches"] @ wflat.T + w["conv_b"]
        n = x.shape[0]
        c["tok"] = np.concatenate([np.broadcast_to(w["cls"], (n, 1, D)), c["y"]], axis=1)
        c["h0"] = c["tok"] + w["pos"]
        c["a1"] = layer_norm(c["h0"], w["ln1_g"], w["ln1_b"])
        _attention_block(c, w, c["a1"], "", "none")
        c["h1"] = c["h0"] + c["aob"]
        c["a2"] = layer_norm(c["h1"], w["ln2_g"], w["ln2_b"])
        _mlp(c, w, c["a2"], "", gelu_form)
        c["h2"] = c["h1"] + c["m2b"]
        c["xf"] = layer_norm(c["h2"], w["lnf_g"], w["lnf_b"])
        c["cls_out"] = c["xf"][:, 0]
        c["logits"] = c["cls_out"] @ w["wc"].T + w["bc"]
    else:
        raise ValueError(arch)
    return c


# the torch-exported encoder (tests/data/transformers/torch_encoder_*.onnx): 2 post-norm
# nn.TransformerEncoderLayer (d_model 16, 2 heads, ff 32, ReLU), learned positions, mean over
# tokens, Linear head; weights from its state dict (torch_encoder_weights.npz)
TE_T, TE_D, TE_H, TE_LAYERS = 8, 16, 2, 2


def torch_encoder_forward(sd, ids):
    c = {}
    dh = TE_D // TE_H
    c["e"] = sd["emb.weight"][ids]
    c["h0"] = c["e"] + sd["pos"]
    x = c["h0"]
    for i in range(TE_LAYERS):
        p = f"encoder.layers.{i}."
        c[f"L{i}_in"] = x
        w_in, b_in = sd[p + "self_attn.in_proj_weight"], sd[p + "self_attn.in_proj_bias"]
        c[f"L{i}_qkv"] = x @ w_in.T
        c[f"L{i}_qkvb"] = c[f"L{i}_qkv"] + b_in
        q, k, v = np.split(c[f"L{i}_qkvb"], 3, axis=-1)
        hs = lambda t: t.reshape(t.shape[0], t.shape[1], TE_H, dh).transpose(0, 2, 1, 3)
        c[f"L{i}_qh"], c[f"L{i}_kh"], c[f"L{i}_vh"] = hs(q), hs(k), hs(v)
        # both exporters scale q and k by dh^-1/4 each (Mul), then MatMul
        c[f"L{i}_qs"] = c[f"L{i}_qh"] * dh ** -0.25
        c[f"L{i}_ksT"] = c[f"L{i}_kh"].swapaxes(-1, -2) * dh ** -0.25
        c[f"L{i}_s"] = c[f"L{i}_qs"] @ c[f"L{i}_ksT"]
        c[f"L{i}_p"] = softmax(c[f"L{i}_s"])
        c[f"L{i}_o"] = c[f"L{i}_p"] @ c[f"L{i}_vh"]
        n, _, t, _ = c[f"L{i}_o"].shape
        c[f"L{i}_a"] = c[f"L{i}_o"].transpose(0, 2, 1, 3).reshape(n, t, TE_D)
        # out_proj: one Gemm with its bias in both exports
        c[f"L{i}_aob"] = c[f"L{i}_a"] @ sd[p + "self_attn.out_proj.weight"].T + sd[p + "self_attn.out_proj.bias"]
        c[f"L{i}_h1"] = x + c[f"L{i}_aob"]
        c[f"L{i}_x1"] = layer_norm(c[f"L{i}_h1"], sd[p + "norm1.weight"], sd[p + "norm1.bias"])
        c[f"L{i}_m1"] = c[f"L{i}_x1"] @ sd[p + "linear1.weight"].T
        c[f"L{i}_m1b"] = c[f"L{i}_m1"] + sd[p + "linear1.bias"]
        c[f"L{i}_g"] = np.maximum(c[f"L{i}_m1b"], 0.0)
        c[f"L{i}_m2"] = c[f"L{i}_g"] @ sd[p + "linear2.weight"].T
        c[f"L{i}_m2b"] = c[f"L{i}_m2"] + sd[p + "linear2.bias"]
        c[f"L{i}_h2"] = c[f"L{i}_x1"] + c[f"L{i}_m2b"]
        x = c[f"L{i}_x2"] = layer_norm(c[f"L{i}_h2"], sd[p + "norm2.weight"], sd[p + "norm2.bias"])
    c["x"] = x
    c["pooled"] = x.mean(1)
    c["logits"] = c["pooled"] @ sd["head.weight"].T + sd["head.bias"]
    return c


# ============================================================================================
# 3. the AttnLRP backward (the rules: see attnlrp_reference.py's docstring)

EPS = 1e-6


def stab(d):
    return d + EPS * np.where(d >= 0, 1.0, -1.0)


def r_linear(x, wmat, y, r):
    """y = x @ wmat (+ bias folded into y): R_x = x * ((R / stab(y)) @ wmat^T)."""
    return x * ((r / stab(y)) @ wmat.T)


def r_add(a, b, r):
    """y = a + b: both shares (broadcast shapes are the caller's business)."""
    z = r / stab(a + b)
    return a * z, b * z


def r_matmul2(a, b, o, r):
    """O = A @ B, both activations: half the relevance to each factor."""
    z = 0.5 * r / stab(o)
    return a * (z @ b.swapaxes(-1, -2)), b * (a.swapaxes(-1, -2) @ z)


def r_softmax(x, s, r):
    xt = np.where(s != 0, x, 0.0)
    return xt * (r - s * r.sum(-1, keepdims=True))


def r_layer_norm(x, g, b, r, eps=LN_EPS):
    mu = x.mean(-1, keepdims=True)
    sigma = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    y = g * (x - mu) / sigma + b
    gg = (r / stab(y)) * g / sigma
    return x * (gg - gg.mean(-1, keepdims=True))


def _r_attention(c, w, r_aob, x_in, pre, mask_kind):
    """From the relevance at the attention block's output (after the out-proj bias) to its
    input x; returns R_x (the sum of the q, k and v paths) and adds sums to c['_sums']."""
    r_ao = c[pre + "ao"] * r_aob / stab(c[pre + "aob"])
    r_a = r_linear(c[pre + "a"], w["wo"], c[pre + "ao"], r_ao)
    r_o = split_heads(r_a)
    r_p, r_vh = r_matmul2(c[pre + "p"], c[pre + "vh"], c[pre + "o"], r_o)
    r_s3 = r_softmax(c[pre + "s3"], c[pre + "p"], r_p)
    if mask_kind == "additive":
        r_s2 = c[pre + "s2"] * r_s3 / stab(c[pre + "s3"])  # the mask's share is absorbed
        r_s = r_s2  # Div by a constant
    else:
        r_s = r_s3  # Mul by a constant
    r_qh, r_khT = r_matmul2(c[pre + "qh"], c[pre + "khT"], c[pre + "s"], r_s)
    rs = {"qh": r_qh, "kh": r_khT.swapaxes(-1, -2), "vh": r_vh}
    r_x = 0.0
    for n in ("q", "k", "v"):
        r_nb = merge_heads(rs[n + "h"])
        r_n = c[pre + n] * r_nb / stab(c[pre + n + "b"])
        r_x = r_x + r_linear(x_in, w["w" + n], c[pre + n], r_n)
    sums = c["_sums"]
    sums["attn_out"] = r_aob
    sums["attn_probs"] = r_p
    sums["attn_scores"] = r_s
    sums["attn_v"] = r_vh
    return r_x


def _r_mlp(c, w, r_m2b, x_in, pre):
    r_m2 = c[pre + "m2"] * r_m2b / stab(c[pre + "m2b"])
    r_g = r_linear(c[pre + "g"], w["w2"], c[pre + "m2"], r_m2)
    r_m1b = r_g  # GELU: identity
    r_m1 = c[pre + "m1"] * r_m1b / stab(c[pre + "m1b"])
    return r_linear(x_in, w["w1"], c[pre + "m1"], r_m1)


def attnlrp(arch, c, w, target):
    """Relevance at the model's input: for token models the per-token relevance [N, T] (the
    relevance at the word-embedding Gather's output summed over D), for vit the image relevance
    [N, 3, 16, 16]. Returns (relevance, layer_sums) where layer_sums maps a point's name to the
    per-sample relevance sum there."""
    logits = c["logits"]
    n = logits.shape[0]
    onehot = np.zeros_like(logits)
    onehot[np.arange(n), target] = 1.0
    r = logits * onehot
    sums = {"logits": r}
    c["_sums"] = {}
    if arch == "bert":
        r_pooled = r_linear(c["pooled"], w["wc"].T, logits, r)
        r_x2 = c["x2"] * (r_pooled / stab(c["pooled"]))[:, None, :] / c["x2"].shape[1]
        r_h2 = r_layer_norm(c["h2"], w["ln2_g"], w["ln2_b"], r_x2)
        r_m2b, r_x1 = r_add(c["m2b"], c["x1"], r_h2)
        r_x1 = r_x1 + _r_mlp(c, w, r_m2b, c["x1"], "")
        r_h1 = r_layer_norm(c["h1"], w["ln1_g"], w["ln1_b"], r_x1)
        r_aob, r_x0 = r_add(c["aob"], c["x0"], r_h1)
        r_x0 = r_x0 + _r_attention(c, w, r_aob, c["x0"], "", "additive")
        r_h0 = r_layer_norm(c["h0"], w["ln0_g"], w["ln0_b"], r_x0)
        r_e = c["e"] * r_h0 / stab(c["h0"])  # the position table's share is absorbed
        sums.update(pooled=r_pooled, x2=r_x2, h2=r_h2, x1=r_x1, h1=r_h1, x0=r_x0, h0=r_h0, embedding=r_e)
        rel = r_e.sum(-1)
    elif arch == "llama":
        r_xf = r_linear(c["xf"], w["wc"].T, logits, r)
        r_pooled = r_layer_norm(c["pooled"], w["lnf_g"], w["lnf_b"], r_xf)
        r_ssum = r_pooled  # Div by the mask count: identity
        r_hm = c["hm"] * (r_ssum / stab(c["ssum"]))[:, None, :]
        r_h2 = r_hm  # Mul by the mask: identity
        r_h1, r_d = r_add(c["h1"], c["d"], r_h2)
        r_z = r_linear(c["z"], w["wd"], c["d"], r_d)
        r_u, r_gt = 0.5 * r_z, 0.5 * r_z  # Mul of two activations; squared ReLU, SiLU: identity
        r_r2 = r_linear(c["r2"], w["wu"], c["u"], r_u) + r_linear(c["r2"], w["wg"], c["gt"], r_gt)
        r_h1 = r_h1 + r_r2  # RMSNorm: identity
        r_e, r_ao = r_add(c["e"], c["ao"], r_h1)
        r_a = r_linear(c["a"], w["wo"], c["ao"], r_ao)
        r_o = split_heads(r_a)
        r_p2, r_vh = r_matmul2(c["p2"], c["vh"], c["o"], r_o)
        r_p = np.where(np.isnan(c["p"]), 0.0, r_p2)
        r_sm = r_softmax(c["sm"], c["p"], r_p)
        r_s = np.where(c["maskb"], r_sm, 0.0)
        r_qs, r_ksT = r_matmul2(c["qs"], c["ksT"], c["s"], r_s)
        r_heads = {"v": r_vh}
        for nm, r_ns in (("q", r_qs), ("k", r_ksT.swapaxes(-1, -2))):
            r_rot = r_ns  # Mul by DH^-0.25: identity
            r_c, r_r = r_add(c[nm + "c"], c[nm + "r"], r_rot)
            # q*cos, rotate_half(q)*sin: Mul by constants, Neg: identity; Slice/Concat: routing
            un = np.concatenate([r_r[..., DH // 2:], r_r[..., :DH // 2]], axis=-1)
            r_heads[nm] = r_c + un
        r_r1 = 0.0
        for nm in ("q", "k", "v"):
            r_r1 = r_r1 + r_linear(c["r1"], w["w" + nm], c[nm], merge_heads(r_heads[nm]))
        r_e = r_e + r_r1  # RMSNorm: identity
        sums.update(xf=r_xf, pooled=r_pooled, h2=r_h2, h1=r_h1, attn_out=r_ao, attn_probs=r_p,
                    attn_scores=r_s, attn_v=r_vh, embedding=r_e)
        rel = r_e.sum(-1)
    elif arch == "vit":
        r_cls = r_linear(c["cls_out"], w["wc"].T, logits, r)
        r_xf = np.zeros_like(c["xf"])
        r_xf[:, 0] = r_cls  # Gather index 0
        r_h2 = r_layer_norm(c["h2"], w["lnf_g"], w["lnf_b"], r_xf)
        r_h1, r_m2b = r_add(c["h1"], c["m2b"], r_h2)
        r_a2 = _r_mlp(c, w, r_m2b, c["a2"], "")
        r_h1 = r_h1 + r_layer_norm(c["h1"], w["ln2_g"], w["ln2_b"], r_a2)
        r_h0, r_aob = r_add(c["h0"], c["aob"], r_h1)
        r_a1 = _r_attention(c, w, r_aob, c["a1"], "", "none")
        r_h0 = r_h0 + r_layer_norm(c["h0"], w["ln1_g"], w["ln1_b"], r_a1)
        r_tok = c["tok"] * r_h0 / stab(c["h0"])  # position share absorbed
        r_y = r_tok[:, 1:]  # the class token's share dropped
        wflat = w["conv_w"].reshape(D, -1)
        r_p = r_linear(c["patches"], wflat.T, c["y"], r_y)
        rel = unpatch(r_p)
        sums.update(cls_out=r_cls, h2=r_h2, h1=r_h1, h0=r_h0, tokens=r_tok, patch_embedding=r_y, input=rel)
    elif arch == "torch_encoder":
        sd = w
        dh = TE_D // TE_H
        r_pooled = r_linear(c["pooled"], sd["head.weight"].T, logits, r)
        r_x = c["x"] * (r_pooled / stab(c["pooled"]))[:, None, :] / c["x"].shape[1]
        sums.update(pooled=r_pooled)
        for i in reversed(range(TE_LAYERS)):
            p, L = f"encoder.layers.{i}.", f"L{i}_"
            sums[L + "out"] = r_x
            r_h2 = r_layer_norm(c[L + "h2"], sd[p + "norm2.weight"], sd[p + "norm2.bias"], r_x)
            r_x1, r_m2b = r_add(c[L + "x1"], c[L + "m2b"], r_h2)
            r_m2 = c[L + "m2"] * r_m2b / stab(c[L + "m2b"])
            r_g = r_linear(c[L + "g"], sd[p + "linear2.weight"].T, c[L + "m2"], r_m2)
            r_m1 = c[L + "m1"] * r_g / stab(c[L + "m1b"])  # ReLU: identity
            r_x1 = r_x1 + r_linear(c[L + "x1"], sd[p + "linear1.weight"].T, c[L + "m1"], r_m1)
            r_h1 = r_layer_norm(c[L + "h1"], sd[p + "norm1.weight"], sd[p + "norm1.bias"], r_x1)
            r_in, r_aob = r_add(c[L + "in"], c[L + "aob"], r_h1)
            # out_proj as one Gemm (bias included in y)
            r_a = r_linear(c[L + "a"], sd[p + "self_attn.out_proj.weight"].T, c[L + "aob"], r_aob)
            n, t, _ = r_a.shape
            r_o = r_a.reshape(n, t, TE_H, dh).transpose(0, 2, 1, 3)
            r_p, r_vh = r_matmul2(c[L + "p"], c[L + "vh"], c[L + "o"], r_o)
            r_s = r_softmax(c[L + "s"], c[L + "p"], r_p)
            r_qs, r_ksT = r_matmul2(c[L + "qs"], c[L + "ksT"], c[L + "s"], r_s)
            mh = lambda a: a.transpose(0, 2, 1, 3).reshape(n, t, TE_D)
            # Mul by dh^-1/4: identity
            r_qkvb = np.concatenate([mh(r_qs), mh(r_ksT.swapaxes(-1, -2)), mh(r_vh)], axis=-1)
            r_qkv = c[L + "qkv"] * r_qkvb / stab(c[L + "qkvb"])
            r_x = r_in + r_linear(c[L + "in"], sd[p + "self_attn.in_proj_weight"].T, c[L + "qkv"], r_qkv)
            sums[L + "attn_probs"] = r_p
        r_e = c["e"] * r_x / stab(c["h0"])
        sums.update(h0=r_x, embedding=r_e)
        rel = r_e.sum(-1)
    else:
        raise ValueError(arch)
    for k, v in c.pop("_sums").items():
        sums.setdefault(k, v)
    layer_sums = {k: v.reshape(n, -1).sum(1) for k, v in sums.items()}
    return rel, layer_sums


# ============================================================================================
# 2. the ONNX writers (op-level graphs)


class Graph:
    def __init__(self, opset):
        self.opset = opset
        self.nodes, self.inits, self.k = [], [], 0
        self.names = set()

    def init(self, name, arr, dtype=np.float32):
        arr = np.asarray(arr, dtype=dtype)
        assert name not in self.names, name
        self.names.add(name)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def const(self, arr, dtype=np.float32):
        self.k += 1
        return self.init(f"c{self.k}", arr, dtype)

    def i64(self, arr):
        return self.const(arr, np.int64)

    def op(self, op_type, inputs, out=None, **attrs):
        self.k += 1
        out = out or f"{op_type.lower()}_{self.k}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"n{self.k}_{op_type}", **attrs))
        return out

    # helpers
    def reduce_mean(self, x, axes, keepdims=1):
        if self.opset >= 18:
            return self.op("ReduceMean", [x, self.i64(axes)], keepdims=keepdims)
        return self.op("ReduceMean", [x], axes=axes, keepdims=keepdims)

    def reduce_sum(self, x, axes, keepdims=1):
        return self.op("ReduceSum", [x, self.i64(axes)], keepdims=keepdims)

    def matmul_add(self, x, wname, bname=None):
        y = self.op("MatMul", [x, wname])
        return self.op("Add", [y, bname]) if bname else y

    def layer_norm(self, x, g, b, decomposed=False):
        if not decomposed:
            return self.op("LayerNormalization", [x, g, b], axis=-1, epsilon=LN_EPS)
        mu = self.reduce_mean(x, [-1])
        d = self.op("Sub", [x, mu])
        var = self.reduce_mean(self.op("Pow", [d, self.const(2.0)]), [-1])
        sd = self.op("Sqrt", [self.op("Add", [var, self.const(LN_EPS)])])
        return self.op("Add", [self.op("Mul", [self.op("Div", [d, sd]), g]), b])

    def gelu(self, x, form):
        if form == "op":
            return self.op("Gelu", [x])
        if form == "tanh":
            x3 = self.op("Pow", [x, self.const(3.0)])
            inner = self.op("Add", [x, self.op("Mul", [x3, self.const(0.044715)])])
            t = self.op("Tanh", [self.op("Mul", [inner, self.const(math.sqrt(2.0 / math.pi))])])
            return self.op("Mul", [self.op("Mul", [x, self.op("Add", [t, self.const(1.0)])]), self.const(0.5)])
        e = self.op("Erf", [self.op("Div", [x, self.const(math.sqrt(2.0))])])
        return self.op("Mul", [self.op("Mul", [x, self.op("Add", [e, self.const(1.0)])]), self.const(0.5)])

    def heads(self, x, t, perm=(0, 2, 1, 3)):
        r = self.op("Reshape", [x, self.i64([-1, t, H, DH])])
        return self.op("Transpose", [r], perm=list(perm))

    def merge(self, o, t):
        tr = self.op("Transpose", [o], perm=[0, 2, 1, 3])
        return self.op("Reshape", [tr, self.i64([-1, t, D])])

    def model(self, inputs, outputs, name):
        g = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)],
                              producer_name="onnx-rap tests/python/tiny_transformers.py")
        m.ir_version = 8 if self.opset <= 17 else 9 if self.opset <= 20 else 10
        onnx.checker.check_model(m, full_check=True)
        return m


def _token_inputs():
    return [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", T]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["N", T])]


def _logits_out():
    return [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", NCLS])]


def _add_weights(g, w):
    for k, v in w.items():
        g.init(k, v)


def _write_bert(name, w, gelu_form, opset, decomposed):
    g = Graph(opset)
    _add_weights(g, w)
    e = g.op("Gather", ["word", "input_ids"], axis=0)
    h0 = g.op("Add", [e, "pos"])
    x0 = g.layer_norm(h0, "ln0_g", "ln0_b", decomposed)
    q = g.heads(g.matmul_add(x0, "wq", "bq"), T)
    k = g.heads(g.matmul_add(x0, "wk", "bk"), T, perm=(0, 2, 3, 1))
    v = g.heads(g.matmul_add(x0, "wv", "bv"), T)
    s = g.op("Div", [g.op("MatMul", [q, k]), g.const(2.0)])
    m = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    madd = g.op("Mul", [g.op("Sub", [g.const(1.0), m]), g.const(MASK_NEG)])
    madd = g.op("Unsqueeze", [madd, g.i64([1, 2])])
    p = g.op("Softmax", [g.op("Add", [s, madd])], axis=-1)
    a = g.merge(g.op("MatMul", [p, v]), T)
    h1 = g.op("Add", [g.matmul_add(a, "wo", "bo"), x0])
    x1 = g.layer_norm(h1, "ln1_g", "ln1_b", decomposed)
    f = g.gelu(g.matmul_add(x1, "w1", "b1"), gelu_form)
    h2 = g.op("Add", [g.matmul_add(f, "w2", "b2"), x1])
    x2 = g.layer_norm(h2, "ln2_g", "ln2_b", decomposed)
    pooled = g.reduce_mean(x2, [1], keepdims=0)
    g.op("Gemm", [pooled, "wc", "bc"], out="logits", transB=1)
    return g.model(_token_inputs(), _logits_out(), name)


def _write_llama(name, w):
    g = Graph(17)
    _add_weights(g, w)
    cos, sin = rope_tables()
    g.init("rope_cos", cos)
    g.init("rope_sin", sin)

    def rms(x, wname, recip):
        ms = g.reduce_mean(g.op("Pow", [x, g.const(2.0)]), [-1])
        sd = g.op("Sqrt", [g.op("Add", [ms, g.const(RMS_EPS)])])
        xn = g.op("Mul", [x, g.op("Reciprocal", [sd])]) if recip else g.op("Div", [x, sd])
        return g.op("Mul", [xn, wname])

    def rope(x):
        x1 = g.op("Slice", [x, g.i64([0]), g.i64([DH // 2]), g.i64([-1])])
        x2 = g.op("Slice", [x, g.i64([DH // 2]), g.i64([DH]), g.i64([-1])])
        rh = g.op("Concat", [g.op("Neg", [x2]), x1], axis=-1)
        r = g.op("Add", [g.op("Mul", [x, "rope_cos"]), g.op("Mul", [rh, "rope_sin"])])
        return g.op("Mul", [r, g.const(DH ** -0.25)])

    e = g.op("Gather", ["word", "input_ids"], axis=0)
    r1 = rms(e, "rms1", recip=True)
    q = rope(g.heads(g.op("MatMul", [r1, "wq"]), T))
    k = rope(g.heads(g.op("MatMul", [r1, "wk"]), T))
    v = g.heads(g.op("MatMul", [r1, "wv"]), T)
    s = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])
    mb = g.op("Unsqueeze", [g.op("Cast", ["attention_mask"], to=TensorProto.BOOL), g.i64([1, 2])])
    sm = g.op("Where", [mb, s, g.const(-np.inf)])
    p = g.op("Softmax", [sm], axis=-1)
    p = g.op("Where", [g.op("IsNaN", [p]), g.const(0.0), p])
    a = g.merge(g.op("MatMul", [p, v]), T)
    h1 = g.op("Add", [e, g.op("MatMul", [a, "wo"])])
    r2 = rms(h1, "rms2", recip=False)
    u = g.op("Pow", [g.op("Relu", [g.op("MatMul", [r2, "wu"])]), g.const(2.0)])
    gt = g.op("MatMul", [r2, "wg"])
    gs = g.op("Mul", [gt, g.op("Sigmoid", [gt])])
    h2 = g.op("Add", [h1, g.op("MatMul", [g.op("Mul", [u, gs]), "wd"])])
    mf = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    hm = g.op("Mul", [h2, g.op("Unsqueeze", [mf, g.i64([2])])])
    ssum = g.reduce_sum(hm, [1], keepdims=0)
    cnt = g.reduce_sum(mf, [1], keepdims=1)
    pooled = g.op("Div", [ssum, cnt])
    xf = g.layer_norm(pooled, "lnf_g", "lnf_b")
    g.op("Gemm", [xf, "wc", "bc"], out="logits", transB=1)
    return g.model(_token_inputs(), _logits_out(), name)


def _write_vit(name, w):
    g = Graph(17)
    _add_weights(g, w)
    y = g.op("Conv", ["input", "conv_w", "conv_b"], kernel_shape=[PATCH, PATCH], strides=[PATCH, PATCH])
    y = g.op("Transpose", [g.op("Reshape", [y, g.i64([-1, D, NPATCH])])], perm=[0, 2, 1])
    nb = g.op("Gather", [g.op("Shape", ["input"]), g.i64(0)], axis=0)
    shp = g.op("Concat", [g.op("Unsqueeze", [nb, g.i64([0])]), g.i64([1, D])], axis=0)
    cls = g.op("Expand", ["cls", shp])
    h0 = g.op("Add", [g.op("Concat", [cls, y], axis=1), "pos"])
    a1 = g.layer_norm(h0, "ln1_g", "ln1_b")
    q = g.heads(g.matmul_add(a1, "wq", "bq"), TV)
    k = g.heads(g.matmul_add(a1, "wk", "bk"), TV, perm=(0, 2, 3, 1))
    v = g.heads(g.matmul_add(a1, "wv", "bv"), TV)
    p = g.op("Softmax", [g.op("Mul", [g.op("MatMul", [q, k]), g.const(0.5)])], axis=-1)
    a = g.merge(g.op("MatMul", [p, v]), TV)
    h1 = g.op("Add", [h0, g.matmul_add(a, "wo", "bo")])
    a2 = g.layer_norm(h1, "ln2_g", "ln2_b")
    h2 = g.op("Add", [h1, g.matmul_add(g.gelu(g.matmul_add(a2, "w1", "b1"), "erf"), "w2", "b2")])
    xf = g.layer_norm(h2, "lnf_g", "lnf_b")
    c = g.op("Gather", [xf, g.i64(0)], axis=1)
    g.op("Gemm", [c, "wc", "bc"], out="logits", transB=1)
    inp = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", CH, IMG, IMG])]
    return g.model(inp, _logits_out(), name)


def write_onnx(name, w):
    arch, form, opset = MODELS[name]
    if arch == "bert":
        return _write_bert(name, w, "op" if name == "bert_gelu_op" else form, opset,
                           decomposed=(name == "bert_decomposed"))
    if arch == "llama":
        return _write_llama(name, w)
    return _write_vit(name, w)


def weights_from_onnx(model, arch):
    """The weights dict, read back from a model's initializers by name."""
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    names = make_weights_names(arch)
    return {k: init[k].astype(np.float64) for k in names}


def make_weights_names(arch):
    return list(make_weights(arch).keys())
