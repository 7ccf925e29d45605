#!/usr/bin/env bash
# Regenerate the Performance table of README.md: full-size VGG-16 and ResNet-50 (random
# weights, 224x224, exported by scripts/export_full_models.py), batch 1 and 8, in tract
# (`onnx-rap bench`) and onnxruntime (scripts/bench_onnxruntime.py), same thread count.
# tract rows also give the explanation's images/s with THREADS workers of batch-B runs at once
# and the peak RSS of a forward-only and an explain-only process (bench --json).
# usage: scripts/bench_table.sh DIR_WITH_vgg16.onnx_AND_resnet50.onnx [THREADS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?folder holding vgg16.onnx and resnet50.onnx}
threads=${2:-2}
runs=${3:-3}
cargo build --release --quiet
echo "| model | batch | runtime | forward s | explain s | explain/forward | explain images/s | peak RSS forward / explain |"
echo "|---|---|---|---|---|---|---|---|"
for m in vgg16 resnet50; do
  ./target/release/onnx-rap compile "$dir/$m.onnx" -o "$dir/${m}_rap.onnx" 2>/dev/null
  for b in 1 8; do
    ./target/release/onnx-rap bench "$dir/$m.onnx" --batch $b --threads $threads --runs $runs --json |
      .venv/bin/python -c "import json,sys; r=json.load(sys.stdin); mb=lambda k: f\"{r[k] / 1024:.0f} MB\" if r[k] else '?'; print(f\"| $m | $b | tract | {r['forward_s']:.3f} | {r['explain_s']:.3f} | {r['ratio']:.2f} | {r['images_per_s_explain']:.2f} | {mb('peak_rss_kb_forward')} / {mb('peak_rss_kb_explain')} |\")"
    .venv/bin/python scripts/bench_onnxruntime.py "$dir/$m.onnx" "$dir/${m}_rap.onnx" --batch $b --threads $threads --runs $runs --json |
      .venv/bin/python -c "import json,sys; r=json.load(sys.stdin); print(f\"| $m | $b | onnxruntime | {r['forward_s']:.3f} | {r['explain_s']:.3f} | {r['ratio']:.2f} | {$b / r['explain_s']:.2f} | - |\")"
  done
done
