"""Export full-size torchvision VGG-16 and ResNet-50 (random weights, fixed seed) to ONNX for
the benchmarks. A development tool: needs torch and torchvision, which the tests never do.

usage: python scripts/export_full_models.py OUT_DIR
"""
import sys

import torch
import torchvision


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    for name, ctor in [("vgg16", torchvision.models.vgg16), ("resnet50", torchvision.models.resnet50)]:
        model = ctor(weights=None).eval()
        x = torch.randn(1, 3, 224, 224)
        torch.onnx.export(model, x, f"{out}/{name}.onnx", opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=False, training=torch.onnx.TrainingMode.EVAL)
        print(f"{out}/{name}.onnx")


if __name__ == "__main__":
    main()
