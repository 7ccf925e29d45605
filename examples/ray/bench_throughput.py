"""Images/s of explain_dataset.py with 1 and 2 actors beside `onnx-rap explain`, same folder.

    .venv/bin/python examples/ray/bench_throughput.py            # EfficientNet-Lite0 on photos
    .venv/bin/python examples/ray/bench_throughput.py --model models/digits_vgg.onnx \\
        --count 1024 --batch 32                                  # the digits on the samples

Fills a temporary folder with COUNT copies of the images, compiles MODEL with --colormap
--target-input, starts a local Ray instance on this machine's CPUs, then times in turn, ROUNDS
times: `onnx-rap explain MODEL --input DIR` (tract, one thread); the example attached to that
Ray instance with --workers 1 and --workers 2 (one onnxruntime thread per actor); and, as a
control without Ray, onnxruntime alone in 1 and in 2 processes side by side (random inputs,
10 s each: what the machine gives two sessions at that moment). Ray's "whole run" images/s
count from the dataset's start to its last row (actor start-up included, the driver's Python
start-up not), "actors up" from the first rows back; explain's is its whole run (model load
and in-memory compile included). Prints a Markdown table of the medians.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
EXT = (".png", ".jpg", ".jpeg")


# A control without Ray: onnxruntime alone, one thread, on random inputs, for SECONDS.
RAW = """
import sys, time, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
shape = [int(sys.argv[2])] + [d if isinstance(d, int) else 1 for d in i.shape[1:]]
feeds = {i.name: np.random.default_rng(0).random(shape, np.float32)}
if any(j.name == "rap_target" for j in s.get_inputs()):
    feeds["rap_target"] = np.full(shape[0], -1, np.int64)
s.run(None, feeds)
t, n = time.perf_counter(), 0
while time.perf_counter() - t < float(sys.argv[3]):
    s.run(None, feeds); n += shape[0]
print(n / (time.perf_counter() - t))
"""


def raw_rate(rap: str, batch: int, procs: int, seconds: float = 10.0) -> float:
    """Images/s of PROCS onnxruntime processes side by side (their sum)."""
    ps = [subprocess.Popen([sys.executable, "-c", RAW, rap, str(batch), str(seconds)],
                           stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    return sum(float(p.communicate()[0]) for p in ps)


def main() -> int:
    photos = os.path.join(ROOT, "models", "efficientnet_lite0.onnx")
    default_model = photos if os.path.isfile(photos) else os.path.join(ROOT, "models",
                                                                         "digits_vgg.onnx")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=default_model, help="model.onnx (default: %(default)s)")
    ap.add_argument("--images", default=None,
                    help="folder of images to copy (default: models/photos for "
                         "efficientnet_lite0, else models/samples)")
    ap.add_argument("--count", type=int, default=64, help="images in the folder (default 64)")
    ap.add_argument("--batch", type=int, default=8, help="batch size of both (default 8)")
    ap.add_argument("--rounds", type=int, default=1, help="timed rounds (default 1)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "onnx-rap"))
    args = ap.parse_args()
    if args.images is None:
        name = "photos" if "efficientnet" in os.path.basename(args.model) else "samples"
        args.images = os.path.join(ROOT, "models", name)
    srcs = sorted(os.path.join(args.images, f) for f in os.listdir(args.images)
                  if f.lower().endswith(EXT))
    if not srcs:
        print(f"{args.images}: no image", file=sys.stderr)
        return 2

    import ray

    tmp = tempfile.mkdtemp(prefix="onnx_rap_bench_")
    try:
        folder = os.path.join(tmp, "images")
        os.makedirs(folder)
        for i in range(args.count):
            s = srcs[i % len(srcs)]
            shutil.copyfile(s, os.path.join(folder, f"{i:05d}_{os.path.basename(s)}"))
        rap = os.path.join(tmp, "model_rap.onnx")
        subprocess.run([args.bin, "compile", args.model, "-o", rap, "--colormap",
                        "--target-input"], check=True, capture_output=True)
        ray.init(include_dashboard=False, logging_level="ERROR")
        address = ray.get_runtime_context().gcs_address
        cpus = int(ray.cluster_resources().get("CPU", 0))
        print(f"{args.count} images ({len(srcs)} distinct from {args.images}), model "
              f"{os.path.basename(args.model)}, batch {args.batch}, {cpus} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)

        rates = {"onnx-rap explain": [], "Ray, 1 actor": [], "Ray, 2 actors": [],
                 "onnxruntime alone, 1 process": [], "onnxruntime alone, 2 processes": []}
        steady = {k: [] for k in rates}
        for r in range(args.rounds):
            out = os.path.join(tmp, f"explain_{r}")
            t0 = time.perf_counter()
            subprocess.run([args.bin, "explain", args.model, "--input", folder, "--out", out,
                            "--batch", str(args.batch), "--threads", "1"],
                           check=True, capture_output=True)
            rates["onnx-rap explain"].append(args.count / (time.perf_counter() - t0))
            for workers in (1, 2):
                out = os.path.join(tmp, f"ray{workers}_{r}")
                p = subprocess.run(
                    [sys.executable, os.path.join(HERE, "explain_dataset.py"), rap, folder, out,
                     "--address", address, "--workers", str(workers), "--batch",
                     str(args.batch)], capture_output=True, text=True)
                m = re.search(r"explained (\d+) images, 0 failed.*\(([\d.]+) images/s; "
                              r"([\d.]+) images/s once", p.stdout)
                if p.returncode or not m or int(m.group(1)) != args.count:
                    print(p.stdout, p.stderr, file=sys.stderr)
                    return 1
                key = "Ray, 1 actor" if workers == 1 else "Ray, 2 actors"
                rates[key].append(float(m.group(2)))
                steady[key].append(float(m.group(3)))
            for procs in (1, 2):
                key = f"onnxruntime alone, {procs} process" + ("es" if procs > 1 else "")
                rates[key].append(raw_rate(rap, args.batch, procs))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rates.items())
                  + " images/s", flush=True)
        med = {k: statistics.median(v) for k, v in rates.items()}
        hot = {k: statistics.median(v) if v else None for k, v in steady.items()}
        base, hot_base = med["Ray, 1 actor"], hot["Ray, 1 actor"]
        print("\n| runner | images/s, whole run | vs 1 actor | images/s, actors up "
              "| vs 1 actor |\n|---|---|---|---|---|")
        for k, v in med.items():
            h = hot[k]
            print(f"| {k} | {v:.2f} | {v / base:.2f}x | "
                  + (f"{h:.2f} | {h / hot_base:.2f}x |" if h else "- | - |"))
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
