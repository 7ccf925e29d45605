"""Write the tiny transformer test models into tests/data/transformers/ and check them.

usage:
    python scripts/make_transformer_tests.py            # the numpy-built models (numpy, onnx, onnxruntime)
    python scripts/make_transformer_tests.py --torch    # also the torch-exported encoders (needs torch,
                                                        # onnxscript) and a torch autograd check of the
                                                        # numpy AttnLRP reference

Numpy-built models (weights and graphs: tests/python/tiny_transformers.py): for each NAME it
writes NAME.onnx and NAME_input.npz (the graph inputs, 3 samples) and checks that onnxruntime's
logits match the layer-level float64 numpy forward (max |diff| < 1e-4), that bert_decomposed and
bert_gelu_op give bert_ln's logits, that llama_like ignores padded tokens, and that the AttnLRP
reference runs (finite relevance; zero on llama_like's padded tokens).

With --torch: torch_encoder_ts14.onnx / _ts17.onnx (TorchScript exporter, opset 14 / 17) and
torch_encoder_dyn18.onnx (dynamo exporter, opset 18) of one 2-layer nn.TransformerEncoder text
classifier, torch_encoder_input.npz (input_ids, 3 samples) and torch_encoder_weights.npz (its
state dict, for the numpy reference), each file checked in onnxruntime against torch. Then the
numpy AttnLRP of every numpy-built model is compared with an independent torch formulation
(input x modified gradient, see torch_attnlrp below).
"""
import collections
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
import tiny_transformers as tt  # noqa: E402

OUT = os.path.join(ROOT, "tests", "data", "transformers")


def run_ort(path, feed):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    return s.run(["logits"], {k: feed[k] for k in names})[0]


def histogram(model):
    return collections.Counter(n.op_type for n in model.graph.node)


KNOWN = set("Gather Add Sub Mul Div MatMul Gemm Reshape Transpose Softmax LayerNormalization ReduceMean "
            "ReduceSum Erf Pow Sqrt Tanh Relu Sigmoid Where IsNaN Neg Slice Concat Unsqueeze Cast Equal "
            "Expand Shape Conv Reciprocal Constant".split())


def describe(path):
    m = onnx.load(path)
    h = histogram(m)
    extra = sorted(set(h) - KNOWN)
    hist = " ".join(f"{k}:{v}" for k, v in sorted(h.items()))
    print(f"  {os.path.basename(path)}: {os.path.getsize(path)} B, opset "
          f"{[o.version for o in m.opset_import if o.domain in ('', 'ai.onnx')][0]}, {len(m.graph.node)} nodes")
    print(f"    ops: {hist}")
    if extra:
        print(f"    ops outside the basic list: {extra}")
    return m


def make_numpy_models():
    os.makedirs(OUT, exist_ok=True)
    logits = {}
    for name, (arch, form, _opset) in tt.MODELS.items():
        w = tt.make_weights(arch)
        x = tt.make_inputs(arch)
        m = tt.write_onnx(name, w)
        path = os.path.join(OUT, f"{name}.onnx")
        onnx.save(m, path)
        np.savez(os.path.join(OUT, f"{name}_input.npz"), **x)
        got = run_ort(path, x)
        want = tt.forward(arch, w, x, form)["logits"]
        err = np.abs(got - want).max()
        assert err < 1e-4, (name, err)
        # weights read back from the file give the same forward
        w2 = tt.weights_from_onnx(onnx.load(path), arch)
        assert all(np.array_equal(w[k], w2[k]) for k in w)
        srt = np.sort(want, axis=1)
        margin = (srt[:, -1] - srt[:, -2]).min()
        print(f"{name}: ort vs numpy max|diff| {err:.2e}; logits range [{want.min():.2f}, {want.max():.2f}], "
              f"argmax {want.argmax(1).tolist()}, smallest top-2 margin {margin:.3f}")
        assert margin > 0.1 and np.abs(want).max() < 20, name
        logits[name] = got
        describe(path)
    for n in ("bert_decomposed", "bert_gelu_op"):
        d = np.abs(logits[n] - logits["bert_ln"]).max()
        print(f"{n} vs bert_ln (onnxruntime): max|diff| {d:.2e}")
        assert d < 1e-4, n
    d = np.abs(logits["bert_gelu_tanh"] - logits["bert_ln"]).max()
    print(f"bert_gelu_tanh vs bert_ln: max|diff| {d:.2e} (differ, as they should)")
    # llama_like: a padded token's id does not matter
    x = tt.make_inputs("llama")
    x2 = {k: v.copy() for k, v in x.items()}
    x2["input_ids"][1, 4], x2["input_ids"][1, 5], x2["input_ids"][2, 5] = 7, 13, 19
    p = os.path.join(OUT, "llama_like.onnx")
    d = np.abs(run_ort(p, x) - run_ort(p, x2)).max()
    w = tt.make_weights("llama")
    dn = np.abs(tt.forward("llama", w, x)["logits"] - tt.forward("llama", w, x2)["logits"]).max()
    print(f"llama_like: padded ids changed, logits max|diff| onnxruntime {d:.2e}, numpy {dn:.2e}")
    assert d < 1e-6 and dn < 1e-12
    # the reference runs
    for name, (arch, form, _opset) in tt.MODELS.items():
        w = tt.make_weights(arch)
        x = tt.make_inputs(arch)
        c = tt.forward(arch, w, x, form)
        rel, sums = tt.attnlrp(arch, c, w, c["logits"].argmax(1))
        assert np.isfinite(rel).all()
        flat = rel.reshape(len(rel), -1)
        print(f"{name}: AttnLRP relevance {rel.shape}, sum per sample {np.round(flat.sum(1), 4).tolist()}, "
              f"target logit {np.round(c['logits'].max(1), 4).tolist()}")
        if arch == "llama":
            assert np.all(rel[x["attention_mask"] == 0] == 0.0), rel
        if arch in ("bert", "llama"):
            print(f"    token relevance sample 1: {np.round(rel[1], 4).tolist()}")


# ============================================================================================
# torch part


def torch_attnlrp(arch, w, inputs, target, gelu_form="erf"):
    """AttnLRP as input x modified gradient (an independent formulation of the same rules, up to
    the eps stabiliser): with R = x * g at every tensor, the rules of attnlrp_reference.py become
    the plain gradient of the forward except: LayerNorm's sigma and RMSNorm's scale are detached;
    GELU / SiLU / squared ReLU pass g * act(x) / x; a product of two activations (Mul or MatMul)
    passes half the gradient to each factor. Seed: the one-hot of the target (g at the logits),
    so R_logits = logits * onehot. Returns the same relevance as tiny_transformers.attnlrp."""
    import torch

    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in w.items()}

    def ln(x, g, b):
        mu = x.mean(-1, keepdim=True)
        sd = torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + tt.LN_EPS).detach()
        return g * (x - mu) / sd + b

    def ident(x, y):  # value y, gradient g * y / x
        return x * (y / x).detach()

    def gelu(x):
        return ident(x, torch.nn.functional.gelu(x, approximate="tanh" if gelu_form == "tanh" else "none"))

    def half_mul(a, b, op):
        return 0.5 * op(a, b.detach()) + 0.5 * op(a.detach(), b)

    def heads(x):
        n, s, _ = x.shape
        return x.reshape(n, s, tt.H, tt.DH).transpose(1, 2)

    def merge(o):
        n, _, s, _ = o.shape
        return o.transpose(1, 2).reshape(n, s, tt.D)

    def attention(x, mask=None, kind="none"):
        q, k, v = (heads(x @ t["w" + n] + t["b" + n]) for n in "qkv")
        s = half_mul(q, k.transpose(-1, -2), torch.matmul)
        if kind == "additive":
            s = s / 2.0 + ((1.0 - mask) * tt.MASK_NEG)[:, None, None, :]
        else:
            s = s * 0.5
        p = torch.softmax(s, -1)
        return merge(half_mul(p, v, torch.matmul)) @ t["wo"] + t["bo"]

    def mlp(x):
        return gelu(x @ t["w1"] + t["b1"]) @ t["w2"] + t["b2"]

    if arch == "bert":
        ids = torch.tensor(inputs["input_ids"])
        mask = torch.tensor(inputs["attention_mask"], dtype=torch.float64)
        e = t["word"][ids].clone().requires_grad_(True)
        x0 = ln(e + t["pos"], t["ln0_g"], t["ln0_b"])
        x1 = ln(attention(x0, mask, "additive") + x0, t["ln1_g"], t["ln1_b"])
        x2 = ln(mlp(x1) + x1, t["ln2_g"], t["ln2_b"])
        logits = x2.mean(1) @ t["wc"].T + t["bc"]
        leaf = e
    elif arch == "llama":
        ids = torch.tensor(inputs["input_ids"])
        mask = torch.tensor(inputs["attention_mask"])
        cos, sin = (torch.tensor(a) for a in tt.rope_tables())

        def rms(x, g):
            r = torch.sqrt((x ** 2).mean(-1, keepdim=True) + tt.RMS_EPS).detach()
            return x / r * g

        def rope(x):
            rh = torch.cat([-x[..., tt.DH // 2:], x[..., :tt.DH // 2]], -1)
            return (x * cos + rh * sin) * tt.DH ** -0.25

        e = t["word"][ids].clone().requires_grad_(True)
        r1 = rms(e, t["rms1"])
        q, k, v = (heads(r1 @ t["w" + n]) for n in "qkv")
        q, k = rope(q), rope(k)
        s = half_mul(q, k.transpose(-1, -2), torch.matmul)
        s = torch.where(mask[:, None, None, :] != 0, s, torch.tensor(-torch.inf, dtype=torch.float64))
        p = torch.softmax(s, -1)
        h1 = e + merge(half_mul(p, v, torch.matmul)) @ t["wo"]
        r2 = rms(h1, t["rms2"])
        u = r2 @ t["wu"]
        gt = r2 @ t["wg"]
        z = half_mul(ident(u, torch.relu(u) ** 2), ident(gt, gt * torch.sigmoid(gt)), torch.mul)
        h2 = h1 + z @ t["wd"]
        mf = mask.to(torch.float64)
        pooled = (h2 * mf[:, :, None]).sum(1) / mf.sum(1, keepdim=True)
        logits = ln(pooled, t["lnf_g"], t["lnf_b"]) @ t["wc"].T + t["bc"]
        leaf = e
    elif arch == "torch_encoder":
        ids = torch.tensor(inputs["input_ids"])
        e = t["emb.weight"][ids].clone().requires_grad_(True)
        x = e + t["pos"]
        dh = tt.TE_D // tt.TE_H
        for i in range(tt.TE_LAYERS):
            p = f"encoder.layers.{i}."
            qkv = x @ t[p + "self_attn.in_proj_weight"].T + t[p + "self_attn.in_proj_bias"]
            q, k, v = (a.reshape(len(x), -1, tt.TE_H, dh).transpose(1, 2) for a in qkv.chunk(3, -1))
            pr = torch.softmax(half_mul(q, k.transpose(-1, -2), torch.matmul) / dh ** 0.5, -1)
            a = half_mul(pr, v, torch.matmul).transpose(1, 2).reshape(len(x), -1, tt.TE_D)
            h1 = x + a @ t[p + "self_attn.out_proj.weight"].T + t[p + "self_attn.out_proj.bias"]
            x1 = ln(h1, t[p + "norm1.weight"], t[p + "norm1.bias"])
            m = x1 @ t[p + "linear1.weight"].T + t[p + "linear1.bias"]
            m = ident(m, torch.relu(m)) @ t[p + "linear2.weight"].T + t[p + "linear2.bias"]
            x = ln(x1 + m, t[p + "norm2.weight"], t[p + "norm2.bias"])
        logits = x.mean(1) @ t["head.weight"].T + t["head.bias"]
        leaf = e
    else:
        x = torch.tensor(inputs["input"], dtype=torch.float64, requires_grad=True)
        y = torch.nn.functional.conv2d(x, t["conv_w"], t["conv_b"], stride=tt.PATCH)
        y = y.reshape(len(x), tt.D, -1).transpose(1, 2)
        h0 = torch.cat([t["cls"].expand(len(x), 1, tt.D), y], 1) + t["pos"]
        h1 = h0 + attention(ln(h0, t["ln1_g"], t["ln1_b"]))
        h2 = h1 + mlp(ln(h1, t["ln2_g"], t["ln2_b"]))
        logits = ln(h2, t["lnf_g"], t["lnf_b"])[:, 0] @ t["wc"].T + t["bc"]
        leaf = x
    onehot = torch.nn.functional.one_hot(torch.tensor(target), tt.NCLS).to(torch.float64)
    (g,) = torch.autograd.grad((logits * onehot).sum(), leaf)
    rel = (leaf * g).detach().numpy()
    return rel.sum(-1) if arch != "vit" else rel


def check_reference_with_torch():
    print("numpy AttnLRP vs torch modified-gradient AttnLRP:")
    cases = [(name, arch, form, tt.make_weights(arch), tt.make_inputs(arch))
             for name, (arch, form, _opset) in tt.MODELS.items()]
    z = np.load(os.path.join(OUT, "torch_encoder_weights.npz"))
    sd = {k: z[k].astype(np.float64) for k in z.files}
    cases.append(("torch_encoder", "torch_encoder", None, sd,
                  dict(np.load(os.path.join(OUT, "torch_encoder_input.npz")))))
    for name, arch, form, w, x in cases:
        if arch == "torch_encoder":
            c = tt.torch_encoder_forward(w, x["input_ids"])
        else:
            c = tt.forward(arch, w, x, form)
        target = c["logits"].argmax(1)
        for tgt in (target, (target + 1) % tt.NCLS):
            ref = torch_attnlrp(arch, w, x, tgt, form)
            errs = []
            for eps in (tt.EPS, 1e-12):
                saved, tt.EPS = tt.EPS, eps
                try:
                    rel, _ = tt.attnlrp(arch, c, w, tgt)
                finally:
                    tt.EPS = saved
                e = np.abs(rel - ref).reshape(len(rel), -1).max(1) / np.abs(ref).reshape(len(rel), -1).max(1)
                errs.append(" ".join(f"{v:.1e}" for v in e))
            # the two formulations differ only by the stabiliser: equal as eps -> 0
            print(f"  {name} target {tgt.tolist()}: max|diff| / max|ref| per sample: eps {tt.EPS:g}: {errs[0]}; "
                  f"eps 1e-12: {errs[1]}")
            assert max(float(v) for v in errs[1].split()) < 1e-7, name


def make_torch_models():
    import torch
    import torch.nn as nn

    V, TT, DM, NH, FF, NL = 30, 8, 16, 2, 32, 2

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, DM)
            self.pos = nn.Parameter(0.5 * torch.randn(1, TT, DM))
            layer = nn.TransformerEncoderLayer(DM, NH, FF, dropout=0.1, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, NL, enable_nested_tensor=False)
            self.head = nn.Linear(DM, 3)

        def forward(self, input_ids):
            h = self.encoder(self.emb(input_ids) + self.pos)
            return self.head(h.mean(1))

    torch.manual_seed(0)
    model = Encoder()
    with torch.no_grad():
        # the encoder's layers are deep copies of one layer and MHA's biases start at 0: draw
        # every layer's weights anew (nonzero biases too), and random LayerNorm affine
        # parameters, so that none is an identity
        for name, prm in model.encoder.named_parameters():
            if prm.dim() == 2:
                nn.init.xavier_uniform_(prm)
            elif "norm" not in name:
                prm.copy_(0.1 * torch.randn_like(prm))
        for mod in model.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.weight.copy_(1.0 + 0.2 * torch.randn_like(mod.weight))
                mod.bias.copy_(0.1 * torch.randn_like(mod.bias))
        model.head.weight.mul_(6.0)
    model.eval()
    ids = torch.randint(0, V, (3, TT), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(ids).numpy()
    np.savez(os.path.join(OUT, "torch_encoder_input.npz"), input_ids=ids.numpy())
    np.savez(os.path.join(OUT, "torch_encoder_weights.npz"),
             **{k: v.detach().numpy() for k, v in model.state_dict().items()})
    srt = np.sort(want, 1)
    print(f"torch encoder logits {np.round(want, 3).tolist()}, smallest top-2 margin {(srt[:, -1] - srt[:, -2]).min():.3f}")
    # the numpy forward of the same model
    sd = {k: v.detach().numpy().astype(np.float64) for k, v in model.state_dict().items()}
    npl = tt.torch_encoder_forward(sd, ids.numpy())["logits"]
    print(f"  numpy forward vs torch: max|diff| {np.abs(npl - want).max():.2e}")
    assert np.abs(npl - want).max() < 1e-5

    files = []
    for fname, opset, dynamo in (("torch_encoder_ts14.onnx", 14, False), ("torch_encoder_ts17.onnx", 17, False),
                                 ("torch_encoder_dyn18.onnx", 18, True)):
        path = os.path.join(OUT, fname)
        kw = dict(input_names=["input_ids"], output_names=["logits"], opset_version=opset, dynamo=dynamo)
        if dynamo:
            kw["dynamic_shapes"] = {"input_ids": {0: torch.export.Dim("batch", min=1, max=1024)}}
            kw["external_data"] = False
        else:
            kw["dynamic_axes"] = {"input_ids": {0: "batch"}, "logits": {0: "batch"}}
            kw["do_constant_folding"] = True
        torch.onnx.export(model, (ids,), path, **kw)
        m = onnx.load(path)
        if dynamo:  # drop the per-node metadata (source stack traces: 140 KB), keep the graph
            for n in m.graph.node:
                del n.metadata_props[:]
            onnx.save(m, path)
        onnx.checker.check_model(m, full_check=True)
        got = run_ort(path, {"input_ids": ids.numpy()})
        err = np.abs(got - want).max()
        got1 = run_ort(path, {"input_ids": ids.numpy()[:1]})
        err1 = np.abs(got1 - want[:1]).max()
        print(f"{fname}: onnxruntime vs torch max|diff| {err:.2e} (batch 3), {err1:.2e} (batch 1)")
        assert err < 1e-4 and err1 < 1e-4
        describe(path)
        reshape_shapes(m)
        files.append(path)
    return files


def reshape_shapes(m):
    """Print, per Reshape, whether its shape input is a constant or computed (and from what)."""
    inits = {t.name for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in m.graph.node
              if n.op_type == "Constant" and n.attribute[0].name == "value"}
    init_vals = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}

    def ancestors(name, seen):
        if name in seen or name not in producer:
            return
        seen.add(name)
        for i in producer[name].input:
            ancestors(i, seen)

    out = []
    for n in m.graph.node:
        if n.op_type != "Reshape":
            continue
        s = n.input[1]
        if s in inits:
            out.append(f"initializer {init_vals[s].tolist()}")
        elif s in consts:
            out.append(f"Constant {consts[s].tolist()}")
        else:
            seen = set()
            ancestors(s, seen)
            ops = collections.Counter(producer[a].op_type for a in seen)
            out.append("computed from " + "/".join(f"{k}:{v}" for k, v in sorted(ops.items())))
    print(f"    Reshape shapes: {out}")


def main():
    make_numpy_models()
    if "--torch" in sys.argv[1:]:
        make_torch_models()
        check_reference_with_torch()
    total = 0
    print("files:")
    for f in sorted(os.listdir(OUT)):
        sz = os.path.getsize(os.path.join(OUT, f))
        total += sz
        print(f"  {f}: {sz} B")
        assert sz < 100_000, f
    print(f"total {total} B")
    assert total < 1_500_000


if __name__ == "__main__":
    main()
