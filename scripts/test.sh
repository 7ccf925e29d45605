#!/usr/bin/env bash
# Install what the tests need and run them all:
#   - a local Python venv (.venv) with onnx, onnxruntime, numpy and pillow: onnxruntime is the
#     second runtime the tests run model_rap.onnx in, the ONNX schema check reads onnx's
#     descriptor, the Python example reads images with pillow;
#   - the browser page (web/): its npm packages (onnxruntime-web, esbuild, playwright-core), its
#     build in web/dist, and Debian's chromium for the headless end-to-end test;
#   - cargo fmt --check, cargo clippy -D warnings, then cargo test --release (the workspace: the
#     crate and the Python package's native module, so that both share one build);
#   - the Python package: `pip install .` into .venv (maturin builds it from the same build),
#     then its tests against the command line (tests/python/test_package.py).
# usage: scripts/test.sh   (from anywhere; needs python3 >= 3.9, node + npm, a Rust toolchain,
#                           and root or an installed /usr/bin/chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== .venv: tests/python/requirements.txt"
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
export ONNX_RAP_PYTHON="$PWD/.venv/bin/python"

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  echo "== installing Debian's chromium for the browser test"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
export CHROMIUM
echo "== the browser page: npm ci and build (web/dist)"
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd web && npm run build --silent)

echo "== proto/onnx.proto field numbers against the onnx package's schema"
.venv/bin/python tests/python/check_proto.py proto/onnx.proto

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --release --workspace --all-targets -- -D warnings
echo "== cargo test --release"
cargo test --release --workspace
echo "== the Python package: pip install . (into .venv), then its tests"
.venv/bin/pip install --quiet --disable-pip-version-check .
ONNX_RAP_BIN="$PWD/target/release/onnx-rap" .venv/bin/python -m unittest tests/python/test_package.py
echo "== the Ray example (examples/ray) on a local Ray cluster of 2 CPUs"
.venv/bin/python tests/python/test_ray_explain.py
