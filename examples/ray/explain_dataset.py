"""Explain a dataset of images with model_rap.onnx on Ray Data (one machine or a cluster).

    onnx-rap compile models/digits_vgg.onnx -o digits_vgg_rap.onnx --colormap --target-input
    python examples/ray/explain_dataset.py digits_vgg_rap.onnx models/samples rap_ray

reads every image under INPUT (a folder, one file, or a URI: s3://bucket/dir, gs://...,
anything pyarrow's filesystems open, as Ray Data does), preprocesses it as the model's
`onnx_rap.preprocess` metadata says (examples/python/rap_image.py, shared with explain.py),
runs model_rap.onnx in onnxruntime in a pool of Ray Data actors (one session each) and writes
into OUT, per image, NAME_relevance.npy and NAME_heatmap.png (the model's `heatmap_rgb`, when
it has one), plus one table, OUT/explanations.parquet and OUT/explanations.csv: path, name,
status (ok / failed), reason, predicted and explained class (and their names when the model
has labels), logit, relevance sum, positive share. An image that cannot be read or decoded is
a failed row; the others finish. A rerun skips every image whose outputs exist and whose row
says ok, and every failed image whose file has not changed since (--retry-failed: try those
again). Without --address it starts a local Ray instance on this machine's CPUs. Exit codes:
0 done (failed rows included), 2 bad arguments (model, input, output), 1 a runtime failure.
"""
import argparse
import io
import logging
import math
import os
import sys
import time
import uuid

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import rap_image  # noqa: E402  (examples/python; shipped to the workers as a py_module)

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TABLE = "explanations"  # OUT/explanations.parquet and OUT/explanations.csv
COLUMNS = ["path", "name", "status", "reason", "predicted", "predicted_label", "target",
           "target_label", "logit", "relevance_sum", "positive_share", "size", "mtime_ns"]


class UsageError(Exception):
    """Bad input from the user: exit code 2."""


def open_fs(uri: str):
    """(pyarrow filesystem, path in it) for a local path or a URI."""
    from pyarrow import fs as pafs

    if "://" in uri and not uri.startswith("file://"):
        try:
            return pafs.FileSystem.from_uri(uri)
        except Exception as e:  # unknown scheme, missing credentials, ...
            raise UsageError(f"{uri}: cannot open this location: {e}") from None
    local = uri[len("file://"):] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), os.path.abspath(local)


def display(uri: str, path: str) -> str:
    """The path inside a filesystem as the user writes it (scheme kept)."""
    if "://" in uri and not uri.startswith("file://"):
        return uri.split("://", 1)[0] + "://" + path
    return path


def list_images(uri: str):
    """[(path as shown, name, size, mtime_ns)], sorted by path. Names are the file stems (below
    a folder: the relative path, '/' as '__'), made unique with _2, _3, ... in path order."""
    from pyarrow import fs as pafs

    fs, base = open_fs(uri)
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.NotFound:
        raise UsageError(f"{uri}: no such file or folder")
    if info.type == pafs.FileType.File:
        found, root = [info], os.path.dirname(base)
    else:
        found = [f for f in fs.get_file_info(pafs.FileSelector(base, recursive=True))
                 if f.type == pafs.FileType.File and f.extension.lower() in
                 [e[1:] for e in IMAGE_EXT]]
        root = base.rstrip("/")
    if not found:
        raise UsageError(f"{uri}: holds no image ({', '.join(IMAGE_EXT)})")
    found.sort(key=lambda f: f.path)
    items, seen = [], {}
    for f in found:
        rel = f.path[len(root):].lstrip("/")
        name = os.path.splitext(rel)[0].replace("/", "__")
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}_{seen[name]}"
        mtime = f.mtime_ns if f.mtime_ns is not None else -1
        items.append((display(uri, f.path), name, int(f.size or 0), int(mtime)))
    return items


def read_bytes(fs, path: str) -> bytes:
    with fs.open_input_file(path) as f:
        return f.read()


def write_atomic(fs, path: str, data: bytes) -> None:
    """Write a file whole or not at all: a temporary file beside it, then a rename."""
    d, b = os.path.split(path)
    tmp = f"{d}/.{b}.{uuid.uuid4().hex[:8]}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def output_files(name: str, heatmap: bool):
    return [f"{name}_relevance.npy"] + ([f"{name}_heatmap.png"] if heatmap else [])


def open_session(model: str, threads: int):
    """An onnxruntime session of MODEL (a local path or a URI) with THREADS intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    fs, path = open_fs(model)
    if fs.type_name == "local":
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return ort.InferenceSession(read_bytes(fs, path), so, providers=["CPUExecutionProvider"])


class Explainer:
    """One Ray Data actor: one onnxruntime session; explains a batch of image paths, writes
    their files into OUT and returns one table row per image."""

    def __init__(self, model: str, input_uri: str, out_uri: str, threads: int):
        self.sess = open_session(model, threads)
        self.spec = rap_image.session_spec(self.sess)
        self.labels = rap_image.labels(rap_image.metadata(self.sess))
        self.outputs = [o.name for o in self.sess.get_outputs()]
        self.heatmap = "heatmap_rgb" in self.outputs
        self.in_fs, _ = open_fs(input_uri)
        self.in_uri = input_uri
        self.out_fs, self.out_dir = open_fs(out_uri)

    def _fs_path(self, shown: str) -> str:
        return shown.split("://", 1)[1] if "://" in self.in_uri and "://" in shown else shown

    def __call__(self, batch):
        from PIL import Image

        paths, names = list(batch["path"]), list(batch["name"])
        n = len(paths)
        rows = {k: [None] * n for k in COLUMNS}
        rows["path"], rows["name"] = paths, names
        rows["size"], rows["mtime_ns"] = list(batch["size"]), list(batch["mtime_ns"])
        good, xs = [], []
        for i, p in enumerate(paths):
            try:
                xs.append(rap_image.load_image(read_bytes(self.in_fs, self._fs_path(p)),
                                               self.spec))
                good.append(i)
            except Exception as e:  # unreadable, not an image, truncated, too small to crop
                rows["status"][i], rows["reason"][i] = "failed", f"{type(e).__name__}: {e}"
        out = {}
        if good:
            try:
                out = rap_image.run_batch(self.sess, np.stack(xs), None, self.outputs)
            except Exception:
                # Find the sample that fails: run them one by one, keep the others.
                runs, kept = [], []
                for i, x in zip(good, xs):
                    try:
                        runs.append(rap_image.run_batch(self.sess, x[None], None, self.outputs))
                        kept.append(i)
                    except Exception as e:
                        rows["status"][i], rows["reason"][i] = "failed", f"runtime: {e}"
                good = kept
                if runs:
                    out = {k: np.concatenate([r[k] for r in runs]) for k in self.outputs}
        for j, i in enumerate(good):
            logits = np.asarray(out[self.outputs[0]][j]).reshape(-1)
            rel = out["relevance"][j]
            k = int(logits.argmax())
            pos = float(rel[rel > 0].sum(dtype=np.float64))
            neg = float(-rel[rel < 0].sum(dtype=np.float64))
            try:
                buf = io.BytesIO()
                np.save(buf, rel)
                base = f"{self.out_dir}/{names[i]}"
                write_atomic(self.out_fs, f"{base}_relevance.npy", buf.getvalue())
                if self.heatmap:
                    buf = io.BytesIO()
                    Image.fromarray(out["heatmap_rgb"][j]).save(buf, "PNG", compress_level=1)
                    write_atomic(self.out_fs, f"{base}_heatmap.png", buf.getvalue())
            except Exception as e:
                rows["status"][i], rows["reason"][i] = "failed", f"cannot write: {e}"
                continue
            # rap_target is -1 (or absent): the explained class is the predicted one.
            rows["status"][i], rows["reason"][i] = "ok", ""
            rows["predicted"][i] = rows["target"][i] = k
            if self.labels and k < len(self.labels):
                rows["predicted_label"][i] = rows["target_label"][i] = self.labels[k]
            rows["logit"][i] = float(logits[k])
            rows["relevance_sum"][i] = float(rel.sum(dtype=np.float64))
            rows["positive_share"][i] = pos / (pos + neg) if pos + neg > 0 else 0.0
        return to_columns(rows)


def to_columns(rows):
    """Row lists as typed numpy columns (missing numbers: -1 or NaN)."""
    num = lambda k, d, t: np.array([d if v is None else v for v in rows[k]], t)
    return {
        "path": np.array(rows["path"], object),
        "name": np.array(rows["name"], object),
        "status": np.array(rows["status"], object),
        "reason": np.array(rows["reason"], object),
        "predicted": num("predicted", -1, np.int64),
        "predicted_label": np.array(rows["predicted_label"], object),
        "target": num("target", -1, np.int64),
        "target_label": np.array(rows["target_label"], object),
        "logit": num("logit", np.nan, np.float64),
        "relevance_sum": num("relevance_sum", np.nan, np.float64),
        "positive_share": num("positive_share", np.nan, np.float64),
        "size": num("size", -1, np.int64),
        "mtime_ns": num("mtime_ns", -1, np.int64),
    }


def check_model(model: str):
    """Open the model on the driver: exists, has `relevance`, has an image input. Returns
    (has heatmap_rgb, has labels)."""
    from pyarrow import fs as pafs

    fs, path = open_fs(model)
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise UsageError(f"{model}: no such model file")
    try:
        sess = open_session(model, 1)
    except Exception as e:
        raise UsageError(f"{model}: not a model onnxruntime can load: {e}") from None
    outputs = [o.name for o in sess.get_outputs()]
    if "relevance" not in outputs:
        raise UsageError(f"{model} has no 'relevance' output: give a model_rap.onnx "
                         "(onnx-rap compile MODEL -o MODEL_rap.onnx --colormap --target-input)")
    try:
        rap_image.session_spec(sess)
    except ValueError as e:
        raise UsageError(f"{model}: {e}") from None
    return "heatmap_rgb" in outputs, rap_image.labels(rap_image.metadata(sess)) is not None


def previous_table(out_uri: str):
    """The table of an earlier run in OUT as a pandas DataFrame, or None."""
    import pyarrow.parquet as pq

    fs, d = open_fs(out_uri)
    try:
        return pq.read_table(f"{d}/{TABLE}.parquet", filesystem=fs).to_pandas()
    except FileNotFoundError:
        return None
    except Exception as e:
        print(f"warning: cannot read the previous table ({e}); explaining every image again",
              file=sys.stderr)
        return None


def write_table(out_uri: str, df) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    fs, d = open_fs(out_uri)
    table = pa.Table.from_pandas(df, preserve_index=False)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    write_atomic(fs, f"{d}/{TABLE}.parquet", buf.getvalue().to_pybytes())
    buf = pa.BufferOutputStream()
    pcsv.write_csv(table, buf)
    write_atomic(fs, f"{d}/{TABLE}.csv", buf.getvalue().to_pybytes())


def finish_table(out_uri: str, kept, new_parts, has_labels: bool) -> None:
    """Write the rows kept from the previous run and the new ones, sorted by path."""
    import pandas as pd

    frames = [f for f in [kept, *new_parts] if f is not None and not f.empty]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    if not has_labels:
        table = table.drop(columns=["predicted_label", "target_label"], errors="ignore")
    table = table.sort_values("path", kind="stable").reset_index(drop=True)
    write_table(out_uri, table)


def runtime_env() -> dict:
    """The job's runtime_env: Ray ships the modules the actors import to every node (none needs
    this repository): rap_image, and this file unless it runs as __main__ (then Ray pickles
    its classes by value). A caller that runs ray.init itself before run() passes this."""
    mods = [os.path.abspath(rap_image.__file__)]
    if __name__ != "__main__":
        mods.append(os.path.abspath(__file__))
    return {"py_modules": mods}


def plan(items, prev, out_uri: str, heatmap: bool, retry_failed: bool):
    """Split the images into (to do, rows kept from the previous table)."""
    from pyarrow import fs as pafs

    if prev is None or prev.empty:
        return items, None
    fs, d = open_fs(out_uri)
    present = {os.path.basename(f.path) for f in fs.get_file_info(pafs.FileSelector(d))}
    last = {r.path: r for r in prev.itertuples(index=False)}
    todo, keep = [], []
    for it in items:
        path, name, size, mtime = it
        r = last.get(path)
        if r is None or r.name != name:
            todo.append(it)
        elif r.status == "ok" and all(f in present for f in output_files(name, heatmap)):
            keep.append(path)
        elif r.status != "ok" and not retry_failed and (r.size, r.mtime_ns) == (size, mtime):
            keep.append(path)
        else:
            todo.append(it)
    kept = prev[prev["path"].isin(set(keep))] if keep else None
    return todo, kept


def run(args) -> dict:
    """Explain; returns {"images", "processed", "failed", "skipped", "seconds",
    "images_per_s", "steady_images_per_s", "workers"}. Raises UsageError on bad arguments."""
    import pandas as pd

    if args.batch < 1 or args.threads < 1 or (args.workers is not None and args.workers < 1):
        raise UsageError("--batch, --threads and --workers must be at least 1")
    heatmap, has_labels = check_model(args.model)
    items = list_images(args.input)
    out_fs, out_dir = open_fs(args.out)
    try:
        out_fs.create_dir(out_dir, recursive=True)
    except Exception as e:
        raise UsageError(f"{args.out}: cannot create the output folder: {e}") from None
    prev = previous_table(args.out)
    todo, kept = plan(items, prev, args.out, heatmap, args.retry_failed)
    skipped = len(items) - len(todo)
    before = 0 if kept is None else int((kept["status"] != "ok").sum())
    print(f"{len(items)} images in {args.input}: {len(todo)} to explain, "
          f"{skipped - before} done before"
          + (f", {before} failed before and unchanged (--retry-failed: try again)"
             if before else "")
          + ("" if heatmap else " (the model has no heatmap_rgb: writing relevance only)"),
          flush=True)

    new, seconds, workers, steady = None, 0.0, 0, None
    if todo:
        import ray

        if not ray.is_initialized():
            ray.init(address=args.address, logging_level="ERROR", runtime_env=runtime_env(),
                     **({} if args.address else {"include_dashboard": False}))
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.ERROR)  # after import: it sets levels
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = args.workers or max(1, cpus // args.threads)
        workers = min(workers, len(todo))
        blocks = max(workers, math.ceil(len(todo) / args.batch))
        rows = [{"path": p, "name": n, "size": s, "mtime_ns": m} for p, n, s, m in todo]
        ds = ray.data.from_items(rows, override_num_blocks=min(blocks, len(todo)))
        ds = ds.map_batches(
            Explainer,
            fn_constructor_kwargs=dict(model=args.model, input_uri=args.input,
                                       out_uri=args.out, threads=args.threads),
            batch_size=args.batch,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=args.threads,
        )
        print(f"explaining with {workers} actor(s) x {args.threads} thread(s), "
              f"batch {args.batch}", flush=True)
        parts, done, failed = [], 0, 0
        t0 = last = time.perf_counter()
        first = None  # (time, images) when the first rows came back: the actors are up
        try:
            for b in ds.iter_batches(batch_size=None, batch_format="pandas"):
                parts.append(b)
                done += len(b)
                if first is None:
                    first = (time.perf_counter(), done)
                failed += int((b["status"] != "ok").sum())
                now = time.perf_counter()
                if now - last >= 2.0 or done == len(todo):
                    last = now
                    print(f"  {done}/{len(todo)} images, {failed} failed, "
                          f"{done / (now - t0):.1f} images/s", flush=True)
        except KeyboardInterrupt:
            # Keep what is done: a rerun then starts where this run stopped.
            finish_table(args.out, kept, parts, has_labels)
            raise
        t_end = time.perf_counter()
        seconds = t_end - t0
        if first and done > first[1] and t_end > first[0]:
            steady = (done - first[1]) / (t_end - first[0])
        new = pd.concat(parts, ignore_index=True)

    finish_table(args.out, kept, [] if new is None else [new], has_labels)
    failed = 0 if new is None else int((new["status"] != "ok").sum())
    for r in ([] if new is None else new[new["status"] != "ok"].itertuples(index=False)):
        print(f"  failed: {r.path}: {r.reason}", flush=True)
    rate = len(todo) / seconds if seconds > 0 else 0.0
    print(f"explained {len(todo) - failed} images, {failed} failed, {skipped} skipped"
          + (f", in {seconds:.2f} s ({rate:.2f} images/s" if todo else "")
          + (f"; {steady:.2f} images/s once the first rows came back" if steady else "")
          + (")" if todo else "")
          + f"; table: {args.out.rstrip('/')}/{TABLE}.parquet (and .csv)", flush=True)
    return {"images": len(items), "processed": len(todo), "failed": failed,
            "skipped": skipped, "seconds": seconds, "images_per_s": rate,
            "steady_images_per_s": steady, "workers": workers}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="on a cluster (`ray start --head` on one machine, `ray start --address HEAD:6379`"
               " on the others):\n  python examples/ray/explain_dataset.py "
               "s3://bucket/model_rap.onnx s3://bucket/images s3://bucket/rap --address auto",
    )
    ap.add_argument("model", metavar="MODEL_RAP.onnx",
                    help="a model compiled by `onnx-rap compile` (output `relevance`; with "
                         "--colormap the heatmap PNGs come from its `heatmap_rgb`); a path or "
                         "URI every worker can read")
    ap.add_argument("input", metavar="INPUT",
                    help="a folder (read recursively), one image file, or a URI "
                         "(s3://bucket/prefix, gs://..., file:///...)")
    ap.add_argument("out", metavar="OUT",
                    help="output folder or URI: NAME_relevance.npy, NAME_heatmap.png, "
                         f"{TABLE}.parquet and {TABLE}.csv; on a cluster every worker must "
                         "reach it (shared storage)")
    ap.add_argument("--workers", type=int, default=None, metavar="N",
                    help="actors, one onnxruntime session each (default: the cluster's CPUs "
                         "divided by --threads)")
    ap.add_argument("--batch", type=int, default=16, metavar="B",
                    help="images per session run (default 16)")
    ap.add_argument("--threads", type=int, default=1, metavar="T",
                    help="onnxruntime intra-op threads per actor; each actor reserves T CPUs "
                         "(default 1)")
    ap.add_argument("--address", default=None, metavar="ADDR",
                    help="attach to a running Ray cluster: 'auto' on a machine of the cluster, "
                         "or HEAD_HOST:6379 (default: start a local Ray instance)")
    ap.add_argument("--retry-failed", action="store_true",
                    help="explain images that failed before again even when unchanged")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the table keeps the images done so far; rerun to finish",
              file=sys.stderr)
        return 130
    except Exception as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
