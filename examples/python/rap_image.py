"""Images in, model_rap.onnx outputs out: the preprocessing a model's metadata asks for.

Shared by `explain.py` (one image) and `../ray/explain_dataset.py` (a dataset on Ray). Needs
numpy and pillow; `run_batch` takes an onnxruntime InferenceSession.

The metadata entry `onnx_rap.preprocess` (JSON) comes in two forms:

  {"size": [H, W], "layout": "nchw"|"nhwc", "grayscale": bool, "mean": [...], "std": [...]}
      plain resize to H x W (bilinear) when the image has another size;
  {"resize": S, "crop": [H, W], "interpolation": "bicubic", "layout": ..., "mean": ..., "std": ...}
      photo form: resize so the shorter side is S (the long side int(S * long / short)), then
      crop H x W from the centre.

Then pixel / 255 and (v - mean) / std per channel (one value: every channel). A missing size
is the input's own; a missing layout is NCHW; a 1-channel input or "grayscale" reads the image
as PIL's "L", else as "RGB" (palette, CMYK and alpha images convert as PIL converts them;
16-bit gray is scaled to 8 bits first). EXIF orientation is applied first.
"""
import io
import json
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

META_PREPROCESS = "onnx_rap.preprocess"
META_LABELS = "onnx_rap.labels"

_FILTERS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "linear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "cubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
    "hamming": Image.HAMMING,
}


@dataclass(frozen=True)
class Preprocess:
    """How one image file becomes one model input sample (no batch axis)."""

    size: Tuple[int, int]  # (H, W) of the model input
    channels: int  # C of the model input
    layout: str  # "nchw" or "nhwc"
    mode: str  # PIL mode the image is converted to: "L" or "RGB"
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    resize: Optional[int] = None  # photo form: the shorter side before the centre crop
    interpolation: str = "bilinear"

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def metadata(session) -> Dict[str, str]:
    """The custom metadata of an onnxruntime session's model."""
    return dict(session.get_modelmeta().custom_metadata_map)


def labels(meta: Dict[str, str]) -> Optional[list]:
    """The class names of the `onnx_rap.labels` entry (a JSON list), or None."""
    try:
        v = json.loads(meta.get(META_LABELS, "null"))
    except json.JSONDecodeError:
        return None
    return [str(x) for x in v] if isinstance(v, list) else None


def preprocess_spec(meta: Dict[str, str], input_shape: Sequence) -> Preprocess:
    """The preprocessing of a model from its metadata and its image input's shape
    ([N, C, H, W] or [N, H, W, C]; symbolic dims are strings or None). Raises ValueError."""
    try:
        pp = json.loads(meta.get(META_PREPROCESS, "{}"))
    except json.JSONDecodeError as e:
        raise ValueError(f"metadata '{META_PREPROCESS}' is not valid JSON: {e}") from None
    if not isinstance(pp, dict):
        raise ValueError(f"metadata '{META_PREPROCESS}' is not a JSON object")
    if len(input_shape) != 4:
        raise ValueError(f"the model input has shape {list(input_shape)}, not an image batch "
                         "[N, C, H, W] or [N, H, W, C]")
    layout = str(pp.get("layout", "nchw")).lower()
    if layout not in ("nchw", "nhwc"):
        raise ValueError(f"metadata '{META_PREPROCESS}': unknown layout {layout!r}")
    dims = list(input_shape[1:])
    c, h, w = dims if layout == "nchw" else (dims[2], dims[0], dims[1])
    if "crop" in pp:
        size = tuple(int(v) for v in pp["crop"])
    elif "size" in pp:
        size = tuple(int(v) for v in pp["size"])
    else:
        size = (h, w)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ValueError(f"cannot tell the image size: metadata gives {size}, the input "
                         f"{list(input_shape)}; set 'size' in '{META_PREPROCESS}'")
    if isinstance(h, int) and isinstance(w, int) and (h, w) != size:
        raise ValueError(f"metadata size {size[0]}x{size[1]} does not match the model input "
                         f"{h}x{w}")
    channels = c if isinstance(c, int) else (1 if pp.get("grayscale") else 3)
    if channels not in (1, 3):
        raise ValueError(f"the model input has {channels} channels: images give 1 or 3")
    if pp.get("grayscale") and channels != 1:
        raise ValueError(f"metadata says grayscale but the model input has {channels} channels")
    interpolation = str(pp.get("interpolation", "bilinear")).lower()
    if interpolation not in _FILTERS:
        raise ValueError(f"metadata '{META_PREPROCESS}': unknown interpolation "
                         f"{interpolation!r} (known: {', '.join(sorted(_FILTERS))})")
    floats = lambda k, d: tuple(float(v) for v in np.atleast_1d(pp.get(k, d)))
    resize = pp.get("resize")
    return Preprocess(
        size=size,
        channels=channels,
        layout=layout,
        mode="L" if channels == 1 else "RGB",
        mean=floats("mean", 0.0),
        std=floats("std", 1.0),
        resize=int(resize) if resize is not None else None,
        interpolation=interpolation,
    )


def session_spec(session) -> Preprocess:
    """`preprocess_spec` of an onnxruntime session's model (its first input is the image)."""
    return preprocess_spec(metadata(session), session.get_inputs()[0].shape)


def decode(source: Union[str, bytes, "io.IOBase"]) -> Image.Image:
    """Open an image (a path, its bytes or a file object), decoded and upright (EXIF)."""
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    except UnidentifiedImageError:
        raise ValueError("not an image PIL can read") from None
    img.load()
    return ImageOps.exif_transpose(img)


def to_input(img: Image.Image, spec: Preprocess) -> np.ndarray:
    """A decoded image as one float32 model sample ([C, H, W] or [H, W, C])."""
    h, w = spec.size
    flt = _FILTERS[spec.interpolation]
    if img.mode == "I" or img.mode.startswith("I;16"):
        # 16-bit gray: PIL's convert would clip at 255; scale 0..65535 to 0..255 instead.
        v = np.asarray(img, np.float64) / 257.0
        img = Image.fromarray(np.clip(np.round(v), 0, 255).astype(np.uint8), "L")
    img = img.convert(spec.mode)
    if spec.resize is not None:
        iw, ih = img.size
        s = spec.resize
        nw, nh = (s, int(s * ih / iw)) if iw <= ih else (int(s * iw / ih), s)
        if (nw, nh) != (iw, ih):
            img = img.resize((nw, nh), flt)
        if nh < h or nw < w:
            raise ValueError(f"the resized image {nw}x{nh} is smaller than the crop {w}x{h}")
        top, left = int(round((nh - h) / 2.0)), int(round((nw - w) / 2.0))
        img = img.crop((left, top, left + w, top + h))
    elif img.size != (w, h):
        img = img.resize((w, h), flt)
    x = np.asarray(img, np.float32).reshape(h, w, -1) / 255.0
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if spec.layout == "nchw":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x, np.float32)


def load_image(source: Union[str, bytes, "io.IOBase"], spec: Preprocess) -> np.ndarray:
    """Decode one image file (path, bytes or file object) into one float32 model sample."""
    return to_input(decode(source), spec)


def run_batch(session, x: np.ndarray, targets: Optional[Sequence[int]] = None,
              names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
    """Run model_rap.onnx on a batch `x` ([N, ...] float32) and return {output name: array}.

    `targets` feeds `rap_target` (int64 [N], negative: the predicted class) when the model has
    that input; without it, every sample explains its prediction. A model whose batch is fixed
    to 1 runs sample by sample, the outputs stacked again."""
    inputs = session.get_inputs()
    names = list(names or [o.name for o in session.get_outputs()])
    n = len(x)
    t = np.full(n, -1, np.int64) if targets is None else np.asarray(targets, np.int64)
    has_target = any(i.name == "rap_target" for i in inputs)

    def run(lo: int, hi: int):
        feeds = {inputs[0].name: np.ascontiguousarray(x[lo:hi], np.float32)}
        if has_target:
            feeds["rap_target"] = t[lo:hi]
        return session.run(names, feeds)

    if inputs[0].shape[0] == 1 and n > 1:
        parts = [run(k, k + 1) for k in range(n)]
        outs = [np.concatenate([p[j] for p in parts]) for j in range(len(names))]
    else:
        outs = run(0, n)
    return dict(zip(names, outs))
