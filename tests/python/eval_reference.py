"""Independent check of `onnx-rap eval`, written from docs/EVALUATION.md in numpy.

usage: eval_reference.py MODEL DATA.npz DUMP_DIR EVAL.json

EVAL.json is `onnx-rap eval --json --dump DUMP_DIR` output. From the dumped heatmaps
(METHOD_heatmaps.npy) this script recomputes every localisation metric and, from the dumped
perturbation curves (METHOD_morf.npy, METHOD_lerf.npy), the AOPC values and mean curves, and
prints the largest difference from the JSON. It also rebuilds every perturbed input itself
(patch order, SplitMix64 noise, preprocessing) and runs the original model in onnxruntime:
the target logits must match the dumped curves. Prints one JSON object:
{"max_metric_diff": ..., "max_curve_diff": ..., "max_logit_rel_diff": ...}.

usage: eval_reference.py --photos MODEL PHOTO_DIR DUMP_DIR EVAL.json

The photo benchmark (docs/EVALUATION.md, "The photo benchmark"), from the dumped pixels the
model saw (images.npy) and the folder's labels.json: the model's top-1 accuracy; the random
floor's maps; the Gaussian-blur baseline, every deletion and insertion input rebuilt and run
in onnxruntime (softmax probability of the explained class against the dumped curves); the
per-image AOPC, ABPC and deletion / insertion AUC (trapezoid over the fraction of patches);
their means; and the paired percentile bootstrap intervals of rap - method. Prints
{"max_metric_diff", "max_prob_diff", "max_random_map_diff", "max_bootstrap_diff",
"accuracy_diff", "rows"}.

With `--sanity` in the run (the dump then holds METHOD_random_topK_heatmaps.npy and
random_topK.onnx): Spearman's rho of every image's map before and after, from average ranks
written here, of the signed and the absolute maps, and their bootstrap intervals, against the
JSON; and the randomised model against the original: exactly the weights and biases of the
named layers differ, each re-drawn with about the original's standard deviation and a mean
near 0. Adds {"max_spearman_diff", "sanity_rows", "max_sd_z", "max_mean_z",
"randomized_tensors", "unexpected_changes"}.
"""
import json
import sys

import numpy as np
import onnxruntime as ort

MASK64 = (1 << 64) - 1


def splitmix64(state):
    """Yields uniform floats in [0, 1) (53 bits) from SplitMix64 started at `state`."""
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        yield (z >> 11) * 2.0 ** -53


def noise(seed, index, n):
    g = splitmix64((seed + index) & MASK64)
    return np.array([next(g) for _ in range(n)], dtype=np.float64).astype(np.float32)


def outside_inside(m, box):
    x0, y0, x1, y1 = box
    p = np.maximum(m, 0.0)
    inside = np.zeros(m.shape, bool)
    inside[y0:y1, x0:x1] = True
    if p[inside].sum() <= 0 or inside.all():
        return None
    return p[~inside].mean() / p[inside].mean()


def pointing(m, box):
    x0, y0, x1, y1 = box
    y, x = np.unravel_index(int(np.argmax(m)), m.shape)
    return x0 <= x < x1 and y0 <= y < y1


def segmentation(m, mask):
    lo, hi = m.min(), m.max()
    norm = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    pred = norm > norm.mean()
    mask = mask.astype(bool)

    def iou(a, b):
        u = np.logical_or(a, b).sum()
        return 1.0 if u == 0 else np.logical_and(a, b).sum() / u

    fg, bg = iou(pred, mask), iou(~pred, ~mask)
    return fg, (fg + bg) / 2, (pred == mask).mean()


def patch_order(m, p, morf):
    h, w = m.shape
    starts = [(i * p, j * p) for i in range(h // p) for j in range(w // p)]
    scores = []
    for y0, x0 in starts:
        s = 0.0
        for y in range(y0, y0 + p):
            for x in range(x0, x0 + p):
                s += float(m[y, x])
        scores.append(s)
    key = (lambda k: (-scores[k], k)) if morf else (lambda k: (scores[k], k))
    return starts, sorted(range(len(starts)), key=key)


def main():
    model, data, dump, report_path = sys.argv[1:5]
    report = json.load(open(report_path))
    d = np.load(data)
    n, p, steps, seed = report["images"], report["patch"], report["steps"], report["seed"]
    images, labels = d["images"][:n], d["labels"][:n]
    boxes, masks = d["boxes"][:n], d["masks"][:n]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    pp = json.loads(meta.get("onnx_rap.preprocess", "{}"))
    mean = np.float32(pp.get("mean", [0.0])[0])
    std = np.float32(pp.get("std", [1.0])[0])
    inp = sess.get_inputs()[0].name
    out = sess.get_outputs()[0].name

    metric_diff = curve_diff = logit_diff = 0.0
    for r in report["methods"]:
        name = r["method"]
        maps = np.load(f"{dump}/{name}_heatmaps.npy").astype(np.float64)
        ratios = [outside_inside(m, b) for m, b in zip(maps, boxes)]
        defined = [v for v in ratios if v is not None]
        seg = np.array([segmentation(m, k) for m, k in zip(maps, masks)])
        mine = {
            "outside_inside": np.mean(defined) if defined else float("nan"),
            "outside_inside_undefined": len(ratios) - len(defined),
            "pointing": np.mean([pointing(m, b) for m, b in zip(maps, boxes)]),
            "iou": seg[:, 0].mean(),
            "miou": seg[:, 1].mean(),
            "pixel_accuracy": seg[:, 2].mean(),
        }
        curves = {}
        for tag in ["morf", "lerf"]:
            f = np.load(f"{dump}/{name}_{tag}.npy")
            drop = f[:, :1] - f
            mine[f"aopc_{tag}"] = drop.mean(axis=1).mean()
            curves[tag] = f
            curve_diff = max(curve_diff, np.abs(drop.mean(axis=0) - np.array(r[f"{tag}_curve"])).max())
        for k, v in mine.items():
            if not (np.isnan(v) and r[k] is None):
                metric_diff = max(metric_diff, abs(float(v) - float(r[k])))

        # Rebuild the perturbed inputs and run them in onnxruntime.
        h, w = images.shape[1:3]
        for i in range(n):
            pix = images[i].astype(np.float32) / np.float32(255)
            u = noise(seed, i, h * w).reshape(h, w)
            for tag, morf in [("morf", True), ("lerf", False)]:
                starts, order = patch_order(maps[i], p, morf)
                cur = pix.copy()
                batch = [cur.copy()]
                for k in range(steps):
                    y0, x0 = starts[order[k]]
                    cur[y0:y0 + p, x0:x0 + p] = u[y0:y0 + p, x0:x0 + p]
                    batch.append(cur.copy())
                x = ((np.stack(batch) - mean) / std)[:, None].astype(np.float32)
                logits = sess.run([out], {inp: x})[0][:, labels[i]]
                want = curves[tag][i]
                logit_diff = max(logit_diff, float(np.abs(logits - want).max() / max(1.0, np.abs(want).max())))
    print(json.dumps({"max_metric_diff": metric_diff, "max_curve_diff": curve_diff,
                      "max_logit_rel_diff": logit_diff}))


RANDOM_STREAM = 0x52414E444F4D  # "RANDOM"
BOOTSTRAP_STREAM = 0x424F4F54  # "BOOT"


def splitmix64_u64(state):
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        yield z ^ (z >> 31)


def blur(img, sigma):
    """Separable Gaussian (truncated at ceil(3 sigma), normalised), edges replicated."""
    r = int(np.ceil(3 * sigma))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-t * t / (2 * sigma * sigma))
    k /= k.sum()
    x = img.astype(np.float64)
    h, w = x.shape[:2]
    px = np.pad(x, ((0, 0), (r, r), (0, 0)), mode="edge")
    x = sum(k[j] * px[:, j:j + w] for j in range(2 * r + 1))
    py = np.pad(x, ((r, r), (0, 0), (0, 0)), mode="edge")
    x = sum(k[j] * py[j:j + h] for j in range(2 * r + 1))
    return x.astype(np.float32)


def softmax(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def average_ranks(v):
    """Ranks from 1, tied values sharing the mean of their positions."""
    order = np.argsort(v, kind="stable")
    sv = v[order]
    r = np.empty(len(v))
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and sv[j + 1] == sv[i]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = average_ranks(a), average_ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def sanity_check(model, report, dump, idx):
    """The sanity check's correlations and randomised models (see the docstring)."""
    import onnx
    from onnx import numpy_helper

    orig = onnx.load(model)
    before = {t.name: numpy_helper.to_array(t) for t in orig.graph.initializer}
    out = {"max_spearman_diff": 0.0, "sanity_rows": 0, "max_sd_z": 0.0, "max_mean_z": 0.0,
           "randomized_tensors": 0, "unexpected_changes": 0}
    for check in report["sanity"]:
        k = check["layers"]
        rand = onnx.load(f"{dump}/random_top{k}.onnx")
        nodes = {n.name: n for n in rand.graph.node}
        named = set()
        for layer in check["randomized"]:
            named.update(i for i in nodes[layer].input[1:3] if i in before)
        assert len(check["randomized"]) == k
        for t in rand.graph.initializer:
            new = numpy_helper.to_array(t).astype(np.float64)
            old = before[t.name].astype(np.float64)
            changed = not np.array_equal(new, old)
            if t.name not in named:
                out["unexpected_changes"] += int(changed)
                continue
            out["randomized_tensors"] += 1
            n = new.size
            sd = old.std() if old.std() > 0 else 1.0
            # Standard errors of a normal sample's sd and mean.
            out["max_sd_z"] = max(out["max_sd_z"], abs(new.std() / sd - 1) / np.sqrt(1 / (2 * n)))
            out["max_mean_z"] = max(out["max_mean_z"], abs(new.mean()) / (sd / np.sqrt(n)))
        for row in check["methods"]:
            m = row["method"]
            a = np.load(f"{dump}/{m}_heatmaps.npy").astype(np.float64)
            b = np.load(f"{dump}/{m}_random_top{k}_heatmaps.npy").astype(np.float64)
            rho = np.array([[spearman(x.ravel(), y.ravel()),
                             spearman(np.abs(x).ravel(), np.abs(y).ravel())]
                            for x, y in zip(a, b)])
            got = np.array(row["per_image"], dtype=np.float64)
            d = float(np.abs(rho - got).max())
            for j, key in enumerate(["spearman", "spearman_abs"]):
                means = rho[:, j][idx].mean(axis=1)
                lo, hi = np.percentile(means, [2.5, 97.5])
                for want, have in [(rho[:, j].mean(), row[key]), (lo, row[key + "_lo"]),
                                   (hi, row[key + "_hi"])]:
                    d = max(d, abs(float(want) - have))
            out["max_spearman_diff"] = max(out["max_spearman_diff"], d)
            out["sanity_rows"] += 1
    return out


def photos_main(model, photo_dir, dump, report_path):
    report = json.load(open(report_path))
    per = json.load(open(f"{dump}/per_image.json"))
    labels = json.load(open(f"{photo_dir}/labels.json"))
    pix = np.load(f"{dump}/images.npy")
    n, h, w, c = pix.shape
    p, steps, seed, npatch = report["patch"], report["steps"], report["seed"], report["patches"]
    sigma = float(report["baseline"].split("sigma = ")[1].split()[0])
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    pp = json.loads(sess.get_modelmeta().custom_metadata_map["onnx_rap.preprocess"])
    mean = np.array(pp["mean"], np.float32)
    std = np.array(pp["std"], np.float32)
    inp, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def run(batch):
        x = ((np.stack(batch) - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
        return sess.run([out], {inp: x})[0]

    truth = np.array([labels[f] for f in per["files"]])
    predicted = run(list(pix)).argmax(axis=1)
    accuracy_diff = abs(float((predicted == truth).mean()) - report["accuracy"])
    targets = np.array(per["explained_class"])
    if report["explained"] == "true":
        assert (targets == truth).all(), (targets, truth)

    # The fraction of patches replaced after each step: floor(k N / D) / N.
    frac = np.array([(k * npatch) // steps for k in range(steps + 1)]) / npatch
    base = [blur(pix[i], sigma) for i in range(n)]
    metric_diff = prob_diff = map_diff = 0.0
    mine = {}
    for r in report["methods"]:
        name = r["method"]
        maps = np.load(f"{dump}/{name}_heatmaps.npy").astype(np.float64)
        if name == "random":
            for i in range(n):
                g = splitmix64_u64(((seed + i) & MASK64) ^ RANDOM_STREAM)
                want = np.array([(next(g) >> 11) * 2.0 ** -53 for _ in range(h * w)]).reshape(h, w)
                map_diff = max(map_diff, float(np.abs(want.astype(np.float32) - maps[i]).max()))
        morf = np.load(f"{dump}/{name}_morf.npy")
        lerf = np.load(f"{dump}/{name}_lerf.npy")
        dele = np.load(f"{dump}/{name}_deletion.npy")
        ins = np.load(f"{dump}/{name}_insertion.npy")
        a_m = (morf[:, :1] - morf).mean(axis=1)
        a_l = (lerf[:, :1] - lerf).mean(axis=1)
        vals = {
            "aopc_morf": a_m,
            "aopc_lerf": a_l,
            "abpc": a_m - a_l,
            "deletion_auc": np.array([np.trapezoid(d, frac) for d in dele]),
            "insertion_auc": np.array([np.trapezoid(d, frac) for d in ins]),
        }
        mine[name] = vals
        for k, v in vals.items():
            metric_diff = max(metric_diff, float(np.abs(v - np.array(per["methods"][name][k])).max()))
            metric_diff = max(metric_diff, abs(float(v.mean()) - r[k]))
        # Rebuild deletion and insertion: the most relevant patches first.
        for i in range(n):
            starts, order = patch_order(maps[i], p, True)
            d_img, i_img = pix[i].copy(), base[i].copy()
            d_batch, i_batch = [d_img.copy()], [i_img.copy()]
            for k in range(1, steps + 1):
                for o in order[(k - 1) * npatch // steps:k * npatch // steps]:
                    y0, x0 = starts[o]
                    d_img[y0:y0 + p, x0:x0 + p] = base[i][y0:y0 + p, x0:x0 + p]
                    i_img[y0:y0 + p, x0:x0 + p] = pix[i][y0:y0 + p, x0:x0 + p]
                d_batch.append(d_img.copy())
                i_batch.append(i_img.copy())
            t = targets[i]
            prob_diff = max(prob_diff, float(np.abs(softmax(run(d_batch))[:, t] - dele[i]).max()))
            prob_diff = max(prob_diff, float(np.abs(softmax(run(i_batch))[:, t] - ins[i]).max()))

    # Paired bootstrap of rap - method, the same resamples for every method and metric.
    boot_diff = 0.0
    rows = 0
    resamples = int(report["resamples"])
    g = splitmix64_u64((seed & MASK64) ^ BOOTSTRAP_STREAM)
    idx = np.array([[next(g) % n for _ in range(n)] for _ in range(resamples)])
    for b in report["bootstrap"]:
        d = mine["rap"][b["metric"]] - mine[b["method"]][b["metric"]]
        means = d[idx].mean(axis=1)
        lo, hi = np.percentile(means, [2.5, 97.5])
        for want, got in [(d.mean(), b["rap_minus_method"]), (lo, b["lo"]), (hi, b["hi"])]:
            boot_diff = max(boot_diff, abs(float(want) - got))
        rows += 1
    verdict = {"max_metric_diff": metric_diff, "max_prob_diff": prob_diff,
               "max_random_map_diff": map_diff, "max_bootstrap_diff": boot_diff,
               "accuracy_diff": accuracy_diff, "rows": rows}
    if "sanity" in report:
        verdict.update(sanity_check(model, report, dump, idx))
    print(json.dumps(verdict))


if __name__ == "__main__":
    if sys.argv[1] == "--photos":
        photos_main(*sys.argv[2:6])
    else:
        main()
