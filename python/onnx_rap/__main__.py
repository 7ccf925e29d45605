"""``python -m onnx_rap ARGS``: the ``onnx-rap`` command line."""
from ._cli import main

main()
