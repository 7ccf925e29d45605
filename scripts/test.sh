#!/usr/bin/env bash
# Install what the tests need and run them all:
#   - a local Python venv (.venv) with onnx, onnxruntime and numpy: onnxruntime is the second
#     runtime the tests run model_rap.onnx in, and the ONNX schema check reads onnx's descriptor;
#   - cargo fmt --check, cargo clippy -D warnings, then cargo test --release.
# usage: scripts/test.sh            (from anywhere; needs python3 >= 3.9 and a Rust toolchain)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import onnx, onnxruntime, numpy" 2>/dev/null; then
  echo "== creating .venv with onnx, onnxruntime, numpy"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
export ONNX_RAP_PYTHON="$PWD/.venv/bin/python"

echo "== proto/onnx.proto field numbers against the onnx package's schema"
.venv/bin/python tests/python/check_proto.py proto/onnx.proto

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --release --all-targets -- -D warnings
echo "== cargo test --release"
cargo test --release
