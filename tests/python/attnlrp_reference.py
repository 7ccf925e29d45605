"""Independent float64 numpy reference of AttnLRP on the tiny transformers of
tests/data/transformers/ (the contract the Rust `attnlrp` method is tested against).

usage: attnlrp_reference.py MODEL INPUTS.npz OUT.npy [--target K]

MODEL: a model name (bert_ln, bert_decomposed, bert_gelu_op, bert_gelu_tanh, llama_like,
vit_tiny, torch_encoder_ts14, torch_encoder_ts17, torch_encoder_dyn18), looked up as
tests/data/transformers/MODEL.onnx, or a path to such a .onnx file (its stem is the name).
INPUTS.npz: the graph inputs (NAME_input.npz: input_ids and attention_mask, or input).
--target K explains class K in every sample; by default each sample's argmax class.

Writes (float64 .npy, readable with ndarray_npy::read_npy):
    OUT.npy                the relevance: token models [N, T] (the relevance at the word
                           embedding Gather's output [N, T, D] summed over D); vit_tiny the
                           input relevance [N, 3, 16, 16]
    STEM_logits.npy        [N, 3] the float64 logits
    STEM_target.npy        [N] int64, the explained class
    STEM_layer_sums.json   {point: [per-sample relevance sum]} at named points (debugging aid)
where STEM is OUT without its .npy suffix.

The weights are read by name from the model's initializers (torch_encoder_*: from
torch_encoder_weights.npz beside the model, its state dict); the forward and the rules are the
layer-level numpy code of tiny_transformers.py, written from the rule definitions below, not
from the ONNX graph.

The rules (eps = 1e-6; stab(d) = d + eps * s(d), s(d) = 1 where d >= 0, else -1; all
element-wise on the layer's own tensors; R is the relevance at an op's output):
- Seed at the logits: R = logits * onehot(target).
- Linear map with a constant weight W (MatMul x @ W, Gemm with its bias, Conv with its bias),
  y its full output: R_x = x * (W^T applied to R / stab(y)). The input layer (patch Conv) too.
- A bias added by a separate Add (MatMul then Add(b)) is a step of its own: the Add rule.
- Add y = a + b (residuals, biases, position embeddings, the additive attention mask):
  R_a = a * R / stab(y), R_b = b * R / stab(y); a constant operand's share is dropped.
- Mul or Div by a constant (scales, the rotary cos / sin tables, mask multiplies, the 0.5 of a
  chain): identity, R_x = R. Neg: identity.
- Mul of two activations (outside GELU / SiLU / squared ReLU): R / 2 to each factor.
- MatMul of two activations O = A @ B (Q K^T, P V): with Z = 0.5 R / stab(O),
  R_A = A * (Z @ B^T), R_B = B * (A^T @ Z).
- Softmax s = softmax(x) over the last axis: x~ = x where s != 0, else 0;
  R_x = x~ * (R - s * sum_last_axis(R)).
- Where(cond, scores, -inf): R_scores = R where cond, else 0.
  Where(IsNaN(P), 0, P): R_P = R where P is not NaN, else 0.
- LayerNorm (the op or any decomposed form; one rule): sigma = sqrt(var(x) + eps_ln) (biased
  variance over the last axis) held fixed, y = gamma * (x - mean(x)) / sigma + beta;
  g = (R / stab(y)) * gamma / sigma; R_x = x * (g - mean_last_axis(g)).
- RMSNorm (decomposed): identity, R_x = R. GELU (Erf or tanh chain, or the Gelu op), SiLU
  x * Sigmoid(x), ReLU, squared ReLU: identity.
- ReduceMean over tokens: R_x = x * (R / stab(y)) / T, broadcast over the reduced axis.
  ReduceSum: R_x = x * R / stab(y). Masked mean = Mul by the mask (identity), ReduceSum (rule
  above), Div by the token count (identity).
- Reshape, Transpose, Slice, Concat, Gather of a constant index, Expand of the constant class
  token: the relevance goes back to where each value came from (the class token's is dropped).
- Word embedding Gather: relevance at its output [N, T, D]; a token's relevance is its sum
  over D.

The layer-level code follows each graph's op granularity where it matters (only through eps):
biases added by separate Adds are separate steps, Gemm biases are not. torch_encoder_* (both
exporters alike): in_proj MatMul then Add, q and k each Mul by head_dim^-1/4 before their
MatMul, out_proj one Gemm with its bias, feed-forward MatMul then Add, ReLU, head Gemm.
Rules applied to a coarser or finer split of the same function differ only by the eps terms
(up to ~4e-4 of max |relevance| on these models); a float32 evaluation of these same steps stays
within ~2e-6.
"""
import json
import os
import sys

import numpy as np
import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_transformers as tt  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "transformers")


def load(model_arg):
    if model_arg.endswith(".onnx"):
        path, name = model_arg, os.path.basename(model_arg)[:-5]
    else:
        path, name = os.path.join(DATA, model_arg + ".onnx"), model_arg
    if name.startswith("torch_encoder"):
        z = np.load(os.path.join(os.path.dirname(path), "torch_encoder_weights.npz"))
        return name, "torch_encoder", None, {k: z[k].astype(np.float64) for k in z.files}
    if name not in tt.MODELS:
        sys.exit(f"attnlrp_reference.py: unknown model {name!r} (known: {sorted(tt.MODELS)}, torch_encoder_*)")
    arch, form, _ = tt.MODELS[name]
    return name, arch, form, tt.weights_from_onnx(onnx.load(path), arch)


def main(argv):
    args = list(argv)
    target = None
    if "--target" in args:
        i = args.index("--target")
        target = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    model_arg, inputs_path, out_path = args
    _, arch, form, w = load(model_arg)
    z = np.load(inputs_path)
    inputs = {k: z[k] for k in z.files}
    if arch == "torch_encoder":
        c = tt.torch_encoder_forward(w, inputs["input_ids"])
    else:
        c = tt.forward(arch, w, inputs, form)
    logits = c["logits"]
    n = logits.shape[0]
    tgt = np.full(n, target, dtype=np.int64) if target is not None else logits.argmax(1).astype(np.int64)
    rel, sums = tt.attnlrp(arch, c, w, tgt)
    stem = out_path[:-4] if out_path.endswith(".npy") else out_path
    np.save(stem + ".npy", rel.astype(np.float64))
    np.save(stem + "_logits.npy", logits.astype(np.float64))
    np.save(stem + "_target.npy", tgt)
    with open(stem + "_layer_sums.json", "w") as f:
        json.dump({k: [float(x) for x in v] for k, v in sums.items()}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
