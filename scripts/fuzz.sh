#!/usr/bin/env bash
# Mutation fuzzing of load / inspect / compile for SECONDS seconds (default 600).
#
# usage: scripts/fuzz.sh [SECONDS] [FIRST_SEED] [MODEL...]
#
# Runs examples/fuzz.rs (tests/support/mutator.rs makes the mutants) in rounds of at most
# 120 s, a new seed each round, under a virtual-memory limit of 8 GiB, until SECONDS are
# spent. Findings land in target/fuzz-findings/: panic-*.onnx and slow-*.onnx from the
# fuzzer itself, crash-SEED.onnx when a mutant killed the process (an abort, the memory
# limit), each with a .txt saying what happened. Prints one line per round and a total; exits
# 1 when there were findings. Reproduce one with
#   target/release/onnx-rap compile target/fuzz-findings/NAME.onnx -o /tmp/x.onnx
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
seed=${2:-1}
shift $(( $# > 2 ? 2 : $# ))
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    models=(tests/data/tiny_mlp.onnx tests/data/tiny_cnn.onnx tests/data/tiny_ops.onnx
            tests/data/tiny_pools.onnx tests/data/tiny_robust.onnx tests/data/tiny_fold.onnx
            tests/data/tiny_deconv.onnx tests/data/tiny_lrp.onnx tests/data/tiny_mlp_softmax.onnx
            tests/data/maxpool_ties.onnx tests/data/light/light_squeezenet.onnx)
    for m in tests/data/exporters/*.onnx; do [ -e "$m" ] && models+=("$m"); done
fi
out=target/fuzz-findings
mkdir -p "$out"
cargo build --release --example fuzz >&2
bin=target/release/examples/fuzz

start=$(date +%s)
total=0 findings=0 rounds=0
while :; do
    left=$(( seconds - ($(date +%s) - start) ))
    [ "$left" -le 0 ] && break
    round=$(( left < 120 ? left : 120 ))
    set +e
    line=$( (ulimit -v 8388608; RUST_BACKTRACE=0 "$bin" "$round" --seed "$seed" --out "$out" "${models[@]}") 2>"$out/stderr-$seed.txt")
    code=$?
    set -e
    rounds=$(( rounds + 1 ))
    if [ $code -gt 1 ]; then
        # The process died: keep the mutant it was running.
        findings=$(( findings + 1 ))
        "$bin" --unpack "$out/current.bin" "$out/crash-$seed.onnx"
        { echo "exit code $code"; tail -5 "$out/stderr-$seed.txt"; } > "$out/crash-$seed.txt"
        echo "seed $seed: the process died (exit $code): kept $out/crash-$seed.onnx"
    else
        echo "$line"
        n=$(sed -n 's/.*: \([0-9]*\) mutants.*/\1/p' <<<"$line")
        f=$(sed -n 's/.* \([0-9]*\) findings.*/\1/p' <<<"$line")
        total=$(( total + ${n:-0} ))
        findings=$(( findings + ${f:-0} ))
        [ "$code" -eq 0 ] && rm -f "$out/stderr-$seed.txt"
    fi
    seed=$(( seed + 1 ))
done
echo "fuzz.sh: $total mutants (completed rounds) in $(( $(date +%s) - start )) s, $rounds rounds, $findings findings (in $out)"
[ "$findings" -eq 0 ]
