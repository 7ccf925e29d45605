"""PyTorch baseline of RAP (Relative Attributing Propagation, Nam et al., AAAI 2020) for the
benchmarks. A development tool: needs torch and torchvision, which the tests never do.

It follows the official code (github wjNam/Relative_Attributing_Propagation, modules/layers.py)
rule for rule and operation for operation, as restated in shared/RAP_SPEC.md sections 2-4 and 9:

* one relevance function per layer type (Linear first step / hidden rule, Conv2d relative rule
  and bounded z^B input rule, ReLU, Dropout, MaxPool2d, AdaptiveAvgPool2d, BatchNorm2d, Flatten,
  the residual Bottleneck with its Add);
* every transposed operator is taken with torch.autograd.grad on a re-run of the layer's forward
  (the official `gradprop`), except the z^B input conv, which uses conv_transpose2d with the
  height-axis output_padding (the official `gradprop2`);
* the same safe_divide (no epsilon), the same order of terms, both sign paths of the hidden rule
  computed even when the input is >= 0 (as the official code does), the BatchNorm rule in the
  official form (variance squared included);
* float32, a whole batch at once (every per-sample reduction runs over the non-batch axes), the
  argmax class of each sample, the one-hot as the starting relevance.

Differences from the official code, none of which changes the arithmetic:
* layer inputs are recorded by this module's own forward walk over an unmodified torchvision
  model (no custom nn.Module subclasses, no forward hooks);
* "is the output layer" is an explicit flag instead of the official `R.max() == 1` test (which
  is over the whole batch);
* W+ and W- are clamped once per layer and cached (the official code clamps them on every call).

usage (correctness check, see README.md):
    python benches/python/rap_torch.py --model vgg16 --input X.npy --out R.npy
"""
import argparse
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

# ------------------------------------------------------------------------------------------------
# models


def build_models():
    """vgg16 and resnet50 with exactly the weights of scripts/export_full_models.py: the same seed,
    the same construction order, and the same random input drawn between the two constructions."""
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None).eval()
    torch.randn(1, 3, 224, 224)  # the export script draws its dummy input here
    resnet = torchvision.models.resnet50(weights=None).eval()
    for m in (vgg, resnet):
        for p in m.parameters():
            p.requires_grad_(False)
    return {"vgg16": vgg, "resnet50": resnet}


def build_model(name):
    return build_models()[name]


# ------------------------------------------------------------------------------------------------
# helpers (as in the official layers.py)


def safe_divide(a, b):
    """a / b where b != 0, 0 where b == 0; no epsilon is ever added to a nonzero b."""
    return a / (b + b.eq(0).type(b.type()) * 1e-9) * b.ne(0).type(b.type())


def gradprop(Z, X, S):
    """The transpose of the map X -> Z applied to S (the official `gradprop`)."""
    return torch.autograd.grad(Z, X, S, retain_graph=True)


def leaf(X):
    """A detached copy of a stored layer input that autograd can differentiate against."""
    return X.detach().requires_grad_(True)


def signed_weights(layer):
    """(W+, W-) of a Linear/Conv2d layer, clamped once and cached on the layer."""
    w = layer.weight.detach()
    cached = getattr(layer, "_rap_signed", None)
    if cached is None or cached[0] != w.data_ptr() or cached[1].dtype != w.dtype:
        cached = (w.data_ptr(), w.clamp(min=0), w.clamp(max=0))
        layer._rap_signed = cached
    return cached[1], cached[2]


def shift_rel(C, R_val, dims):
    """The uniform shift: subtract sd(R_val, #nonzero) from every nonzero entry (per sample)."""
    nonzero = C.ne(0).type(C.type())
    shift = safe_divide(R_val, nonzero.sum(dim=dims, keepdim=True)) * nonzero
    return C - shift


# ------------------------------------------------------------------------------------------------
# per-layer relevance functions


def rel_identity(layer, X, R):
    """ReLU, Dropout (eval): R passes unchanged (spec 3.4)."""
    return R


def rel_simple(layer, X, R):
    """MaxPool2d, AvgPool2d, AdaptiveAvgPool2d: the z-rule through the op's own gradient (3.5)."""
    X = leaf(X)
    Z = layer(X)
    S = safe_divide(R, Z)
    C = gradprop(Z, X, S)[0]
    return X.detach() * C


def rel_add(Xa, Xb, R):
    """Residual Add: z-rule on the recomputed sum, both summands get X_k * sd(R, Xa + Xb) (3.8)."""
    Xa, Xb = leaf(Xa), leaf(Xb)
    Z = torch.add(Xa, Xb)
    S = safe_divide(R, Z)
    Ca, Cb = gradprop(Z, [Xa, Xb], S)
    return Xa.detach() * Ca, Xb.detach() * Cb


def rel_batchnorm(layer, X, R):
    """BatchNorm2d (eval), in the official form (3.6); algebraically R * [X*w != 0]."""
    def f(R, w1, x1):
        Z1 = x1 * w1
        S1 = safe_divide(R, Z1) * w1
        return x1 * S1

    weight = layer.weight.view(1, -1, 1, 1) / (layer.running_var.view(1, -1, 1, 1).pow(2) + layer.eps).pow(0.5)
    bias = layer.bias.view(1, -1, 1, 1)
    active = R.ne(0).type(R.type())
    bias_p = safe_divide(bias * active, active.sum(dim=[2, 3], keepdim=True))
    R = R - bias_p
    return f(R, weight, X) + f(bias_p, weight, X)


def _relative_prop(R, Za1, Za2, x1, dims, conv):
    """One sign path of the hidden rule (3.2): the four back-projected terms, then the shift.
    Za1 / Za2 are the slot-1 / slot-2 totals (nonnegative), built from x1 with autograd."""
    R_pos = torch.clamp(R, min=0)
    R_neg = torch.clamp(R, max=0)
    D = Za1 + Za2
    rho = safe_divide(D, D)
    g = safe_divide(Za2, D)
    S1 = safe_divide(R_pos * rho, Za1)
    C1 = x1 * gradprop(Za1, x1, S1)[0]
    if conv:  # Conv2d variant: the negative relevance's full share goes over slot 2
        S1n = safe_divide(R_neg * rho, Za2)
        C1n = x1 * gradprop(Za2, x1, S1n)[0]
    else:  # Linear variant: over slot 1
        S1n = safe_divide(R_neg * rho, Za1)
        C1n = x1 * gradprop(Za1, x1, S1n)[0]
    S2 = safe_divide(R_pos * g, Za2)
    C2 = x1 * gradprop(Za2, x1, S2)[0]
    S2n = safe_divide(R_neg * g, Za2)
    C2n = x1 * gradprop(Za2, x1, S2n)[0]
    C = (C1 + C2) + (C2n + C1n)
    return shift_rel(C, C.sum(dim=dims, keepdim=True) - R.sum(dim=dims, keepdim=True), dims)


def _relative_rule(R, X, fwd, pw, nw, dims, conv):
    """The hidden Linear / Conv2d rule (3.2): path a (x+) plus path b (x-), each shifted."""
    X = leaf(X)
    px = torch.clamp(X, min=0)
    nx = torch.clamp(X, max=0)
    R_nonzero = R.ne(0).type(R.type())
    Za1 = fwd(px, pw) * R_nonzero
    Za2 = -fwd(px, nw) * R_nonzero
    Zb1 = -fwd(nx, pw) * R_nonzero
    Zb2 = fwd(nx, nw) * R_nonzero
    C1 = _relative_prop(R, Za1, Za2, px, dims, conv)
    C2 = _relative_prop(R, Zb1, Zb2, nx, dims, conv)
    return (C1 + C2).detach()


def rel_linear_hidden(layer, X, R):
    """Hidden Linear: the relative rule, FC variant; the bias is ignored (3.2)."""
    pw, nw = signed_weights(layer)
    return _relative_rule(R, X, lambda x, w: F.linear(x, w), pw, nw, -1, conv=False)


def rel_linear_first(layer, X, pd):
    """Output Linear, first step (3.1): the four sign classes plus the bias split P : Q, then the
    absolute-influence redistribution. pd is the one-hot of the explained class."""
    pw, nw = signed_weights(layer)
    X = leaf(X)
    px = torch.clamp(X, min=0)
    nx = torch.clamp(X, max=0)
    Rpp = F.linear(px, pw) * pd
    Rpn = F.linear(px, nw) * pd
    Rnp = F.linear(nx, pw) * pd
    Rnn = F.linear(nx, nw) * pd
    Pos = (Rpp + Rnn).sum(dim=-1, keepdim=True)
    Neg = (Rpn + Rnp).sum(dim=-1, keepdim=True)
    Z1 = F.linear(px, pw)
    Z2 = F.linear(px, nw)
    Z3 = F.linear(nx, pw)
    Z4 = F.linear(nx, nw)
    C1 = px * gradprop(Z1, px, safe_divide(Rpp, Z1))[0]
    C2 = px * gradprop(Z2, px, safe_divide(Rpn, Z2))[0]
    C3 = nx * gradprop(Z3, nx, safe_divide(Rnp, Z3))[0]
    C4 = nx * gradprop(Z4, nx, safe_divide(Rnn, Z4))[0]
    bp = layer.bias * pd * safe_divide(Pos, Pos + Neg)
    bn = layer.bias * pd * safe_divide(Neg, Pos + Neg)
    Cb1 = px * gradprop(Z1, px, safe_divide(bp, Z1))[0]
    Cb2 = px * gradprop(Z2, px, safe_divide(bn, Z2))[0]
    c = (C1 + C4 + Cb1 + C2 + C3 + Cb2).detach()
    # redistribute: A_i = |c_i| * sd(sum c, sum |c|), per sample
    cp = torch.clamp(c, min=0)
    cn = torch.clamp(c, max=0)
    total_abs = (cp - cn).sum(dim=-1, keepdim=True)
    total = (cp + cn).sum(dim=-1, keepdim=True)
    return safe_divide(cp, total_abs) * total - safe_divide(cn, total_abs) * total


def rel_conv_hidden(layer, X, R):
    """Hidden Conv2d: the relative rule, Conv variant; the bias is ignored (3.2)."""
    pw, nw = signed_weights(layer)

    def fwd(x, w):
        return F.conv2d(x, w, bias=None, stride=layer.stride, padding=layer.padding)

    return _relative_rule(R, X, fwd, pw, nw, [1, 2, 3], conv=True)


def rel_conv_input(layer, X, R):
    """Input Conv2d (3 input channels): the bounded z^B rule with the per-sample min/max of the
    input as bounds (3.3); transposes by conv_transpose2d, as the official `gradprop2`."""
    pw, nw = signed_weights(layer)
    w = layer.weight
    lo = X.amin(dim=[1, 2, 3], keepdim=True)
    hi = X.amax(dim=[1, 2, 3], keepdim=True)
    L = X * 0 + lo
    H = X * 0 + hi

    def conv(x, w):
        return F.conv2d(x, w, bias=None, stride=layer.stride, padding=layer.padding)

    Za = conv(X, w) - conv(L, pw) - conv(H, nw)
    # output_padding from the height axis only, as the official code
    output_padding = X.shape[2] - ((Za.shape[2] - 1) * layer.stride[0] - 2 * layer.padding[0] + layer.kernel_size[0])

    def gradprop2(DY, weight):
        return F.conv_transpose2d(DY, weight, stride=layer.stride, padding=layer.padding,
                                  output_padding=output_padding)

    Sp = safe_divide(R, Za)
    return X * gradprop2(Sp, w) - L * gradprop2(Sp, pw) - H * gradprop2(Sp, nw)


def rel_conv(layer, X, R):
    if X.shape[1] == 3:
        return rel_conv_input(layer, X, R)
    return rel_conv_hidden(layer, X, R)


RULES = {
    nn.Conv2d: rel_conv,
    nn.Linear: rel_linear_hidden,
    nn.ReLU: rel_identity,
    nn.Dropout: rel_identity,
    nn.MaxPool2d: rel_simple,
    nn.AvgPool2d: rel_simple,
    nn.AdaptiveAvgPool2d: rel_simple,
    nn.BatchNorm2d: rel_batchnorm,
}

# ------------------------------------------------------------------------------------------------
# forward walk that records every layer input, and the backward (RAP) walk


class Flatten:
    """Marker for the forward flatten / view; undone by a reshape."""


def run_layer(layer, x, tape):
    tape.append((layer, x))
    if isinstance(layer, nn.ReLU):
        return F.relu(x)  # never in place: later rules may need the stored tensor
    return layer(x)


def run_seq(mods, x, tape):
    for m in mods:
        x = run_layer(m, x, tape)
    return x


def run_bottleneck(block, x, tape):
    branch = []
    out = run_seq([block.conv1, block.bn1, block.relu, block.conv2, block.bn2, block.relu,
                   block.conv3, block.bn3], x, branch)
    skip = []
    identity = run_seq(list(block.downsample), x, skip) if block.downsample is not None else x
    y = F.relu(out + identity)
    tape.append((block, (branch, skip, out, identity)))
    return y


def forward_record(model, x):
    """Run the torchvision model layer by layer; returns (logits, tape of (layer, input))."""
    tape = []
    if isinstance(model, torchvision.models.VGG):
        x = run_seq(model.features, x, tape)
        x = run_layer(model.avgpool, x, tape)
        tape.append((Flatten, x))
        x = torch.flatten(x, 1)
        x = run_seq(model.classifier, x, tape)
    elif isinstance(model, torchvision.models.ResNet):
        x = run_seq([model.conv1, model.bn1, model.relu, model.maxpool], x, tape)
        for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
            for block in stage:
                x = run_bottleneck(block, x, tape)
        x = run_layer(model.avgpool, x, tape)
        tape.append((Flatten, x))
        x = torch.flatten(x, 1)
        x = run_layer(model.fc, x, tape)
    else:
        raise ValueError(f"unsupported model {type(model).__name__}")
    return x, tape


def relprop_tape(tape, R):
    for layer, X in reversed(tape):
        if layer is Flatten:
            R = R.reshape(X.shape)
        elif isinstance(layer, torchvision.models.resnet.Bottleneck):
            branch, skip, Xa, Xb = X
            R = rel_identity(None, None, R)  # the final ReLU
            Ra, Rb = rel_add(Xa, Xb, R)
            Rb = relprop_tape(skip, Rb)  # downsample: bn, then conv1x1; identity: nothing
            Ra = relprop_tape(branch, Ra)
            R = Ra + Rb  # fan-out of the block input: plain sum
        else:
            R = RULES[type(layer)](layer, X, R)
    return R


def rap(model, x):
    """RAP relevance of the argmax class of each sample: (R_in [N,3,H,W], logits, targets)."""
    with torch.no_grad():
        logits, tape = forward_record(model, x)
    targets = logits.argmax(dim=1)
    onehot = F.one_hot(targets, logits.shape[1]).type(logits.type())
    last, X = tape[-1]
    assert isinstance(last, nn.Linear)
    with torch.enable_grad():
        R = rel_linear_first(last, X, onehot)  # the first step, by position
        R = relprop_tape(tape[:-1], R)
    return R.detach(), logits, targets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["vgg16", "resnet50"], required=True)
    ap.add_argument("--input", required=True, help=".npy float32 [N,3,224,224]")
    ap.add_argument("--out", help="write the relevance [N,3,224,224] here (.npy)")
    ap.add_argument("--logits", help="write the logits here (.npy)")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = build_model(a.model)
    x = torch.from_numpy(np.load(a.input).astype(np.float32))
    t0 = time.perf_counter()
    R, logits, targets = rap(model, x)
    dt = time.perf_counter() - t0
    for i in range(x.shape[0]):
        t = int(targets[i])
        s = float(R[i].double().sum())
        y = float(logits[i, t])
        print(f"sample {i}: class {t} logit {y:.6f} relevance sum {s:.6f} "
              f"(rel. diff {abs(s - y) / abs(y):.2e}) positive share {float((R[i] > 0).float().mean()):.3f}")
    print(f"explain time {dt:.3f} s", file=sys.stderr)
    if a.out:
        np.save(a.out, R.numpy())
    if a.logits:
        np.save(a.logits, logits.numpy())


if __name__ == "__main__":
    main()
