"""The Ray example (examples/ray/explain_dataset.py) against `onnx-rap explain`, on a local Ray
cluster limited to 2 CPUs that the example attaches to with --address.

    .venv/bin/python tests/python/test_ray_explain.py [--bin target/release/onnx-rap]

Copies models/samples into a temporary folder with one corrupt image (broken.png), compiles
models/digits_vgg.onnx with --colormap --target-input, and checks: every relevance equals
`onnx-rap explain`'s within 1e-5 of max|R|; the table's relevance sums equal the logits
`explain` reports (1e-4 relative); exactly one failed row, the corrupt file, with its reason;
Parquet and CSV agree; a rerun explains nothing and rewrites no output; bad arguments exit 2.
Prints `ray example: P passed, F failed` and exits non-zero on any failure. Needs the .venv of
scripts/test.sh (ray[data], onnxruntime, pillow, pandas, pyarrow) and a built onnx-rap.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
import pandas as pd

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(ROOT, "examples", "ray", "explain_dataset.py")
MODEL = os.path.join(ROOT, "models", "digits_vgg.onnx")
SAMPLES = os.path.join(ROOT, "models", "samples")


def sh(*cmd, ok=(0,)):
    p = subprocess.run(list(cmd), capture_output=True, text=True, cwd=ROOT)
    if p.returncode not in ok:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get(
        "ONNX_RAP_BIN", os.path.join(ROOT, "target", "release", "onnx-rap")))
    args = ap.parse_args()
    if not os.path.isfile(args.bin):
        print(f"{args.bin} is missing: run cargo build --release first", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    results = []

    def check(name, fn):
        try:
            fn()
            results.append(True)
            print(f"ok      {name}", flush=True)
        except Exception as e:
            results.append(False)
            detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            print(f"FAILED  {name}: {detail}", flush=True)

    tmp = tempfile.mkdtemp(prefix="onnx_rap_ray_")
    try:
        src = os.path.join(tmp, "images")
        shutil.copytree(SAMPLES, src)
        with open(os.path.join(src, "broken.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3)  # a PNG header, then junk
        rap = os.path.join(tmp, "digits_vgg_rap.onnx")
        sh(args.bin, "compile", MODEL, "-o", rap, "--colormap", "--target-input")
        ref_dir, out = os.path.join(tmp, "ref"), os.path.join(tmp, "out")
        ref = json.loads(sh(args.bin, "explain", MODEL, "--input", SAMPLES, "--out", ref_dir,
                            "--json").stdout)
        # The example reads images only; explain also takes the folder's .npy tensors.
        ref = {r["name"]: r for r in ref if not r["input"].endswith(".npy")}
        images = sorted(os.path.splitext(os.path.basename(p))[0]
                        for p in glob.glob(os.path.join(SAMPLES, "*.png")))
        assert sorted(ref) == images, f"explain named {sorted(ref)}, the folder has {images}"

        import ray

        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20,
                 logging_level="ERROR")
        address = ray.get_runtime_context().gcs_address
        print(f"local Ray cluster (2 CPUs) at {address}, started in "
              f"{time.perf_counter() - t_start:.1f} s", flush=True)
        run = [sys.executable, EXAMPLE, rap, src, out, "--address", address, "--workers", "2",
               "--batch", "4"]
        t0 = time.perf_counter()
        first = sh(*run)
        print(f"first run: {time.perf_counter() - t0:.1f} s", flush=True)
        sys.stdout.write("".join("    " + l + "\n" for l in first.stdout.splitlines()))
        table = pd.read_parquet(os.path.join(out, "explanations.parquet"))

        def relevance_equal():
            assert re.search(rf"{len(images) + 1} to explain", first.stdout), first.stdout
            worst = 0.0
            for n in images:
                got = np.load(os.path.join(out, f"{n}_relevance.npy"))
                want = np.load(os.path.join(ref_dir, f"{n}_relevance.npy"))
                assert got.shape == want.shape, f"{n}: shape {got.shape} != {want.shape}"
                e = float(np.abs(got - want).max() / np.abs(want).max())
                worst = max(worst, e)
                assert e <= 1e-5, f"{n}: relevance differs by {e:.2e} x max|R|"
                assert os.path.isfile(os.path.join(out, f"{n}_heatmap.png")), f"{n}: no heatmap"
            print(f"        worst relevance difference {worst:.1e} x max|R|")

        def sums_equal_logits():
            ok = table[table["status"] == "ok"].set_index("name")
            assert sorted(ok.index) == images, f"ok rows: {sorted(ok.index)}"
            for n in images:
                r, want = ok.loc[n], ref[n]
                assert r["predicted"] == want["predicted"] and r["target"] == want["target"], \
                    f"{n}: class {r['predicted']}/{r['target']}, explain says " \
                    f"{want['predicted']}/{want['target']}"
                logit = want["target_logit"]
                for col in ("relevance_sum", "logit"):
                    e = abs(r[col] - logit) / abs(logit)
                    assert e <= 1e-4, f"{n}: {col} {r[col]} vs explain's logit {logit}"
                assert r["predicted_label"] == want["predicted_label"], f"{n}: label"

        def one_failed_row():
            bad = table[table["status"] != "ok"]
            assert len(bad) == 1, f"{len(bad)} failed rows:\n{bad}"
            r = bad.iloc[0]
            assert r["name"] == "broken" and r["status"] == "failed", r
            assert r["path"].endswith("broken.png") and r["reason"], r
            assert not glob.glob(os.path.join(out, "broken_*")), "outputs for the corrupt file"
            print(f"        broken.png: {r['reason']}")

        def parquet_equals_csv():
            numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
            csv = pd.read_csv(os.path.join(out, "explanations.csv"), keep_default_na=False,
                              dtype={c: str for c in table.columns if c not in numeric},
                              na_values={c: ["", "nan"] for c in numeric})
            assert list(csv.columns) == list(table.columns), f"{list(csv.columns)}"
            assert len(csv) == len(table) == len(images) + 1, f"{len(csv)} rows"
            for c in table.columns:
                if c in numeric:
                    a = table[c].to_numpy(dtype=float, na_value=np.nan)
                    b = csv[c].to_numpy(dtype=float)
                    assert np.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True), c
                else:
                    a = ["" if pd.isna(v) else str(v) for v in table[c]]
                    assert a == list(csv[c]), f"{c}: {a} != {list(csv[c])}"

        def rerun_does_nothing():
            stamp = {f: os.stat(f).st_mtime_ns for f in glob.glob(os.path.join(out, "*_*"))}
            again = sh(*run)
            assert re.search(r"\b0 to explain\b", again.stdout), again.stdout
            assert "explained 0 images" in again.stdout, again.stdout
            now = {f: os.stat(f).st_mtime_ns for f in glob.glob(os.path.join(out, "*_*"))}
            assert now == stamp, "the rerun rewrote outputs"
            t2 = pd.read_parquet(os.path.join(out, "explanations.parquet"))
            pd.testing.assert_frame_equal(t2, table)
            print("        " + again.stdout.splitlines()[0])

        def bad_arguments_exit_2():
            empty = os.path.join(tmp, "empty")
            os.makedirs(empty)
            for argv, says in [
                ([MODEL, src, out], "no 'relevance' output"),
                ([os.path.join(tmp, "missing.onnx"), src, out], "no such model"),
                ([rap, empty, out], "holds no image"),
            ]:
                p = sh(sys.executable, EXAMPLE, *argv, ok=(2,))
                assert says in p.stderr, p.stderr

        check("every relevance equals explain's (1e-5 x max|R|)", relevance_equal)
        check("relevance sums equal explain's logits (1e-4)", sums_equal_logits)
        check("the corrupt file is one failed row with its reason", one_failed_row)
        check("Parquet and CSV hold the same table", parquet_equals_csv)
        check("a rerun explains nothing", rerun_does_nothing)
        check("bad arguments exit 2 with a message", bad_arguments_exit_2)
    except Exception:
        traceback.print_exc()
        results.append(False)
    finally:
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            sys.modules["ray"].shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    passed, failed = sum(results), len(results) - sum(results)
    print(f"ray example: {passed} passed, {failed} failed "
          f"({time.perf_counter() - t_start:.1f} s)")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
