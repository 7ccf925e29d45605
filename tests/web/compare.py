"""Compare the heatmaps the web page computed (e2e.mjs's JSON) with `onnx-rap explain`'s relevance.

    python tests/web/compare.py RESULT.json FIRST_relevance.npy [SECOND_relevance.npy]

The page's `heatmap` is the channel sum of the relevance; each must match the reference within
1e-3 of max|R|, and its sum must equal the explained logit (RAP conserves it). Exits 1 if not.
"""

import json
import sys

import numpy as np

TOLERANCE = 1e-3


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    result = json.load(open(sys.argv[1]))
    failed = 0
    for key, ref_path in zip(("first", "second"), sys.argv[2:]):
        run = result.get(key)
        if run is None:
            print(f"web: {key}: no result in {sys.argv[1]}")
            failed += 1
            continue
        h, w = run["height"], run["width"]
        ref = np.load(ref_path).astype(np.float64).reshape(-1, h, w).sum(0)
        page = np.asarray(run["heatmap"], np.float64).reshape(h, w)
        diff = np.abs(page - ref).max()
        scale = np.abs(ref).max()
        logit = run["logits"][run["target"]]
        ok = diff <= TOLERANCE * scale and abs(page.sum() - logit) <= 1e-3 * max(1.0, abs(logit))
        failed += not ok
        print(
            f"web: {key}: {'ok' if ok else 'FAILED'}: class {run['target']}, "
            f"max|diff| {diff:.3g} = {diff / scale:.3g} of max|R|, "
            f"sum {page.sum():.5f} vs logit {logit:.5f}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
