#!/usr/bin/env bash
# End-to-end test of the browser page: build it, write the site with `onnx-rap serve
# --write-to`, serve it on 127.0.0.1, drive headless Chromium through one image and a second
# class (tests/web/e2e.mjs), and compare the page's heatmaps with `onnx-rap explain`.
#
#   tests/web/run.sh            (from anywhere; needs node/npm, python3 with numpy, chromium)
#
# Environment: ONNX_RAP (the binary, default target/release/onnx-rap), PYTHON (with numpy,
# default .venv/bin/python), CHROMIUM (default /usr/bin/chromium), KEEP (a folder to keep the
# result JSON and screenshot in).
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${ONNX_RAP:-target/release/onnx-rap}
PYTHON=${PYTHON:-.venv/bin/python}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
IMAGE=models/samples/digit_1_4.png
SECOND=3

if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "web: installing chromium"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "web: $CHROMIUM is missing (apt-get install chromium)" >&2
    exit 1
  fi
fi

(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$BIN" serve models/digits_vgg.onnx --write-to "$work/site" >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" -d "$work/site" --bind 127.0.0.1 >"$work/http.log" 2>&1 &
server=$!
url="http://127.0.0.1:$port/"
for _ in $(seq 100); do
  curl -sf -o /dev/null "$url" && break
  sleep 0.1
done

node tests/web/e2e.mjs --url "$url" --image "$IMAGE" --chromium "$CHROMIUM" \
  --second-target "$SECOND" --out "$work/result.json" --screenshot "$work/shot.png"

"$BIN" explain models/digits_vgg.onnx --input "$IMAGE" --out "$work/ref" >/dev/null
"$BIN" explain models/digits_vgg.onnx --input "$IMAGE" --target "$SECOND" --out "$work/ref2" >/dev/null
name=$(basename "$IMAGE" .png)
status=0
"$PYTHON" tests/web/compare.py "$work/result.json" \
  "$work/ref/${name}_relevance.npy" "$work/ref2/${name}_relevance.npy" || status=$?

if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"
  cp "$work/result.json" "$work/shot.png" "$KEEP/"
fi
exit "$status"
