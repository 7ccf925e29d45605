"""From PyTorch to an explanation in one script: torch.onnx.export, onnx_rap.compile, run.

    pip install .  torch onnx onnxruntime      # torch is only this example's, not onnx-rap's
    python examples/python/export_and_explain.py [OUT.onnx]

exports a small convolutional classifier (random weights: the point is the pipeline) to ONNX in
memory, compiles it with onnx_rap into model_rap.onnx (written to OUT.onnx, default
model_rap.onnx), then explains one input twice: in process with onnx_rap.Explainer and with
onnxruntime on the compiled file, the portable path any ONNX runtime takes. It prints both
relevance sums beside the logit (RAP conserves: they are equal) and the largest difference of
the two runtimes' relevance.
"""
import io
import sys
import warnings

import numpy as np
import onnxruntime as ort
import torch

import onnx_rap


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "model_rap.onnx"
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10),
    ).eval()
    x = torch.rand(1, 3, 32, 32)
    buf = io.BytesIO()
    # The TorchScript exporter needs nothing but torch; dynamo=True (opset 18, with onnxscript)
    # gives a graph onnx_rap explains the same way.
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
    torch.onnx.export(net, (x,), buf, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)

    onnx_rap.compile_to(buf.getvalue(), out, target_input=True)
    print(f"wrote {out}")

    e = onnx_rap.Explainer(buf.getvalue())
    r = e.explain(x.numpy())
    t = int(r.targets[0])
    print(f"in process: class {t}, logit {r.logits[0, t]:.4f}, relevance sum {r.relevance[0].sum():.4f}")

    s = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    logits, rel = s.run(["logits", "relevance"], {"image": x.numpy(), "rap_target": np.array([-1])})
    print(f"onnxruntime: class {int(logits[0].argmax())}, logit {logits[0].max():.4f}, "
          f"relevance sum {rel[0].sum():.4f}; max |difference| / max |R| = "
          f"{np.abs(rel - r.relevance).max() / np.abs(rel).max():.1e}")


if __name__ == "__main__":
    main()
