"""ONNX clean-up shared by the model export scripts (models/train.py, models/export_efficientnet.py)."""
import onnx


def inline_constant_identities(model):
    """Replace `Identity(initializer)` nodes by a copy of the initializer.

    The TorchScript exporter shares parameters whose values are equal and
    links them with Identity nodes; a plain initializer is easier to consume.
    """
    inits = {t.name: t for t in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            model.graph.initializer.append(copy)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
