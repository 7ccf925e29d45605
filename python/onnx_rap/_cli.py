"""The ``onnx-rap`` command installed with the package: the same command line as the Rust
binary (``onnx-rap --help``), run in this process."""
import signal
import sys


def main() -> None:
    from . import _native

    # Ctrl-C stops the command as it stops the binary (Python's handler would wait for Rust).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_native.run_cli(["onnx-rap", *sys.argv[1:]]))
