#!/usr/bin/env python3
"""Fetch the labelled ImageNet photo benchmark of `onnx-rap eval` (docs/EVALUATION.md).

Downloads the wheel foolbox==3.3.4 from PyPI (`pip download --no-deps`), checks its sha256
against the value pinned below, and extracts its 20 labelled ImageNet photos
`foolbox/data/imagenet_{NN}_{label}.jpg` (label: the ImageNet class index) into
models/data/imagenet_photos/, with labels.json (file name -> class index), the package's
LICENSE, and the provenance note models/data/imagenet_photos.md.

Usage: python scripts/fetch_photo_benchmark.py   (from anywhere; needs pip and PyPI)
The output is byte-for-byte reproducible: the photos are copied unchanged, the JSON and the
note are written with sorted keys and no dates.
"""

import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

PACKAGE = "foolbox"
VERSION = "3.3.4"
WHEEL = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
SHA256 = "11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb"
PHOTO = re.compile(r"^foolbox/data/(imagenet_(\d{2})_(\d+)\.jpg)$")

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "models" / "data" / "imagenet_photos"
NOTE = ROOT / "models" / "data" / "imagenet_photos.md"


def download(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps",
         "--only-binary", ":all:", "-d", str(dest), "--quiet"],
        check=True,
    )
    wheel = dest / WHEEL
    if not wheel.is_file():
        sys.exit(f"pip did not produce {WHEEL} in {dest}")
    return wheel


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download(Path(tmp))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != SHA256:
            sys.exit(f"{WHEEL}: sha256 {digest}, expected {SHA256}; refusing to extract")
        with zipfile.ZipFile(wheel) as z:
            meta = Parser().parsestr(z.read(f"{PACKAGE}-{VERSION}.dist-info/METADATA").decode())
            licence_text = z.read(f"{PACKAGE}-{VERSION}.dist-info/LICENSE")
            photos = {}
            for name in sorted(z.namelist()):
                m = PHOTO.match(name)
                if m:
                    photos[m.group(1)] = (int(m.group(3)), z.read(name))
    if len(photos) != 20:
        sys.exit(f"{WHEEL}: expected 20 ImageNet photos, found {len(photos)}")
    licence = meta.get("License", "")
    if "MIT" not in licence:
        sys.exit(f"{WHEEL}: licence '{licence}', expected MIT")

    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("imagenet_*.jpg"):
        if old.name not in photos:
            old.unlink()
    labels = {}
    for name, (label, data) in photos.items():
        (OUT / name).write_bytes(data)
        labels[name] = label
    (OUT / "labels.json").write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")
    (OUT / "LICENSE").write_bytes(licence_text)

    rows = "\n".join(f"| `{n}` | {labels[n]} |" for n in sorted(labels))
    NOTE.write_text(
        f"""# The labelled ImageNet photos (`imagenet_photos/`)

20 photos with their ImageNet class (index 0-999, the standard ILSVRC-2012 order), the
benchmark of `onnx-rap eval MODEL --data models/data/imagenet_photos` (docs/EVALUATION.md,
"The photo benchmark").

- Source: the PyPI wheel `{WHEEL}` ({meta.get('Name')} {meta.get('Version')},
  {meta.get('Home-page')}), files `foolbox/data/imagenet_NN_LABEL.jpg`, copied unchanged.
- sha256 of the wheel: `{SHA256}`
- Licence (the wheel's metadata): {licence}; its text is `imagenet_photos/LICENSE`.
- `labels.json`: file name -> class index (the number after the second underscore).
- Rebuild: `python scripts/fetch_photo_benchmark.py` (downloads the wheel with
  `pip download {PACKAGE}=={VERSION} --no-deps`, checks the sha256, rewrites these files
  byte for byte).

| file | class |
|---|---|
{rows}
"""
    )
    print(f"wrote {len(photos)} photos, labels.json and LICENSE to {OUT} and {NOTE}")


if __name__ == "__main__":
    main()
