"""onnx-rap in Python: explain ONNX classifiers with Relative Attributing Propagation (RAP).

The same Rust core as the ``onnx-rap`` command, in process: compile ``model.onnx`` into
``model_rap.onnx`` (the model plus its relevance graph, for any ONNX runtime), or explain
tensors, photos and texts with tract inside this process, the GIL released while it works.

    >>> import onnx_rap
    >>> e = onnx_rap.Explainer("models/efficientnet_lite0.onnx")       # compiled once
    >>> r = e.explain_image("models/photos/chelsea.png")              # planned once, then run
    >>> r.target_labels[0], float(r.logits[0, r.targets[0]]), float(r.relevance[0].sum())
    ('tiger cat', 9.25..., 9.25...)
    >>> onnx_rap.compile_to("model.onnx", "model_rap.onnx", target_input=True)

Methods: ``onnx_rap.methods()`` (``rap`` is the default). Errors: ``ValueError`` for bad input
(a malformed model, an op without a rule, a wrong shape; the command line's message), and
``RuntimeError`` when a valid input fails to run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._native import __version__

__all__ = [
    "Explainer",
    "Explanation",
    "LayerSum",
    "TextExplanation",
    "compile",
    "compile_to",
    "methods",
    "render_heatmap",
    "__version__",
]

#: A model: a path to an .onnx file, its bytes, or an ``onnx.ModelProto``.
ModelLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Any]
#: Classes to explain: None (each sample's prediction), one class for every sample, or one
#: class per sample (a negative class means that sample's prediction).
Target = Union[None, int, Sequence[int]]


def _source(model: ModelLike) -> Dict[str, Any]:
    """The native module's model arguments: a path, or bytes."""
    if isinstance(model, (str, os.PathLike)):
        return {"path": os.fspath(model)}
    if isinstance(model, (bytes, bytearray, memoryview)):
        return {"data": bytes(model)}
    if hasattr(model, "SerializeToString"):  # onnx.ModelProto
        return {"data": model.SerializeToString()}
    raise TypeError(
        f"model must be a path, the bytes of an .onnx file or an onnx.ModelProto, "
        f"not {type(model).__name__}"
    )


def _given(**kw: Any) -> Dict[str, Any]:
    """The keyword arguments that were given (None: the native default)."""
    return {k: v for k, v in kw.items() if v is not None}


def methods() -> Dict[str, str]:
    """The propagation methods, name -> what it computes (``onnx-rap explain --help`` lists the
    same): ``rap`` (default), ``rap-official``, ``lrp``, ``lrp-eps``, ``lrp-a2b1``,
    ``lrp-zplus``, ``gradxinput``, ``attnlrp``."""
    return dict(_native.methods())


def compile(
    model: ModelLike,
    method: str = "rap",
    *,
    target_input: bool = False,
    colormap: bool = False,
    layer_sums: bool = False,
    epsilon: Optional[float] = None,
    input_bounds: Optional[Tuple[float, float]] = None,
    input: Optional[str] = None,
    output: Optional[str] = None,
    exact: bool = False,
    layout: Optional[str] = None,
    embedding_relevance: bool = False,
    reduce_output: Optional[str] = None,
) -> bytes:
    """Compile ``model`` into model_rap.onnx and return its bytes (``onnx-rap compile`` writes
    the same bytes).

    The compiled model keeps every input and output of ``model`` and adds ``relevance`` (shaped
    like the explained input; one value per token for token-id inputs) and, for image inputs,
    ``heatmap`` ([N, H, W], summed over channels). Any ONNX runtime runs it.

    Args:
        model: a path, the bytes of an .onnx file, or an ``onnx.ModelProto``.
        method: the propagation rules (see :func:`methods`).
        target_input: add an int64 [N] input ``rap_target`` choosing the class per sample
            (negative: the prediction); without it the argmax is explained.
        colormap: add ``heatmap_rgb`` (uint8 [N, H, W, 3]), the heatmap painted as
            ``onnx-rap explain`` paints it (image inputs).
        layer_sums: add ``layer_sum:NODE`` outputs (float [N, 2]: what each rule received
            and handed on), to find where conservation breaks.
        epsilon: the stabiliser of ``lrp-eps``.
        input_bounds: fixed (low, high) input bounds of the input layer's z^B rule (for
            ``rap`` at a ViT's patch embedding, low is the floor of the pixels' offset)
            [default: each sample's min and max].
        input: the graph input to explain, when the model has several.
        output: the graph output (logits) to explain, when the model has several.
        exact: emit the rules op for op, without the cheaper equivalent forms.
        layout: "nchw" or "nhwc", the layout of an image input [default: metadata, else
            detected].
        embedding_relevance: for token-id inputs, add ``relevance_embedding`` [N, T, D].
        reduce_output: "mean" or "sum": explain the per-sample mean or sum of a dense output
            (a segmentation map) instead of logits.

    Raises:
        ValueError: the model cannot be compiled (the message names the file, the node and
            what to do).
    """
    return _native.compile(
        **_source(model),
        method=method,
        target_input=target_input,
        colormap=colormap,
        layer_sums=layer_sums,
        exact=exact,
        embedding_relevance=embedding_relevance,
        **_given(
            epsilon=epsilon,
            input_bounds=input_bounds,
            input=input,
            output=output,
            layout=layout,
            reduce_output=reduce_output,
        ),
    )


def compile_to(model: ModelLike, path: Union[str, "os.PathLike[str]"], **options: Any) -> None:
    """:func:`compile` ``model`` and write model_rap.onnx to ``path`` (nothing is written when
    compilation fails; the file appears complete or not at all). ``options`` are
    :func:`compile`'s."""
    data = compile(model, **options)
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def render_heatmap(heatmap: np.ndarray, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Paint a heatmap [H, W] as ``onnx-rap explain`` paints NAME_heatmap.png: red relevant,
    white zero, blue irrelevant, scaled by its largest magnitude; ``size`` (height, width)
    resizes it. Returns uint8 [H, W, 3]."""
    m = np.ascontiguousarray(heatmap, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"a heatmap is [H, W], not {list(m.shape)}")
    h, w = size if size is not None else m.shape
    return _native.render_heatmap(m, int(w), int(h))


class LayerSum(NamedTuple):
    """What one rule received and handed to its inputs, for one sample (``layer_sums=True``)."""

    layer: str
    op: str
    received: float
    handed: float


@dataclass
class Explanation:
    """The explanation of a batch, sample by sample along axis 0."""

    #: The explained logits [N, classes] (before a trailing Softmax, if the model has one).
    logits: np.ndarray
    #: The relevance of the explained input [N, ...], shaped like it; float32. For ``rap`` it
    #: sums (per sample) to the explained logit.
    relevance: np.ndarray
    #: The explained class of each sample (int64 [N]).
    targets: np.ndarray
    #: The predicted class of each sample (int64 [N]).
    predicted: np.ndarray
    #: Class names of ``targets`` and ``predicted`` (None where the model has no labels).
    target_labels: List[Optional[str]]
    predicted_labels: List[Optional[str]]
    #: The relevance summed over an image input's channels [N, H, W] (None for other inputs).
    heatmap: Optional[np.ndarray] = None
    #: What the model saw, uint8 [N, H, W, 3], after resize and crop (image inputs only).
    images: Optional[np.ndarray] = None
    #: Per sample, what every rule received and handed on (``layer_sums=True``).
    layer_sums: List[List[LayerSum]] = field(default_factory=list)
    #: The compiled graph's other outputs by name (the model's own outputs among them).
    outputs: Dict[str, np.ndarray] = field(default_factory=dict)

    def heatmap_rgb(self, k: int = 0, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """Sample ``k``'s heatmap painted (uint8 [H, W, 3]); see :func:`render_heatmap`."""
        if self.heatmap is None:
            raise ValueError("this explanation has no heatmap (the input is no image)")
        return render_heatmap(self.heatmap[k], size)

    @staticmethod
    def _of(d: Dict[str, Any]) -> "Explanation":
        outputs = dict(d["outputs"])
        heatmap = outputs.pop(_native.HEATMAP, None)
        return Explanation(
            logits=d["logits"],
            relevance=d["relevance"],
            targets=np.asarray(d["targets"], dtype=np.int64),
            predicted=np.asarray(d["predicted"], dtype=np.int64),
            target_labels=list(d["target_labels"]),
            predicted_labels=list(d["predicted_labels"]),
            heatmap=heatmap,
            images=d.get("images"),
            layer_sums=[[LayerSum(*r) for r in rows] for rows in d["layer_sums"]],
            outputs=outputs,
        )


@dataclass
class TextExplanation:
    """One explained text: its tokens and the relevance of each."""

    text: str
    #: The tokens the model read (the text cut to the context), as text.
    tokens: List[str]
    ids: List[int]
    #: Each token's characters in ``text``: ``text[start:end]``.
    spans: List[Tuple[int, int]]
    #: Relevance of each token (float32 [len(tokens)]).
    relevance: np.ndarray
    #: Relevance of the special tokens ([CLS], [SEP], a start token), None without any.
    special: Optional[float]
    #: Relevance summed over the padding positions.
    padding: float
    #: Relevance summed over every position read (for ``rap``, the explained logit).
    relevance_sum: float
    #: (tokens read, tokens in the text) when the text was longer than the context.
    truncated: Optional[Tuple[int, int]]
    predicted: int
    predicted_label: Optional[str]
    target: int
    target_label: Optional[str]
    logits: np.ndarray

    def __str__(self) -> str:
        """The text with each token's relevance after it: ``I(+0.27)gno(+0.78)re(+0.15)``."""
        out, at = [], 0
        for (s, e), r in zip(self.spans, self.relevance):
            if e <= s:
                continue
            out.append(self.text[at:s] + self.text[s:e] + f"({r:+.2f})")
            at = e
        return "".join(out) + self.text[at:]


def _targets(target: Target, n: int) -> Optional[List[int]]:
    if target is None:
        return None
    if isinstance(target, (int, np.integer)):
        return [int(target)] * n
    t = [int(v) for v in target]
    if len(t) != n:
        raise ValueError(f"{len(t)} target(s) given for {n} sample(s)")
    return t


class Explainer:
    """A model compiled once for one method; tract plans it once per batch size, then each
    call only runs it. One Explainer serves any number of Python threads at once.

    Args:
        model: a path, the bytes of an .onnx file, or an ``onnx.ModelProto``.
        method: the propagation rules (see :func:`methods`).
        threads: threads tract uses inside one run [default: every core]. This is a
            process-wide setting: the last Explainer made decides.
        epsilon, input_bounds, input, output, layer_sums, exact, reduce_output: as
            :func:`compile` (with ``reduce_output``, a dense output's mean or sum is the one
            explained score: ``classes`` is 1, ``labels`` ``["mean of OUTPUT"]``).
        tokenizer: a text model's tokenizer (tiktoken-bpe JSON or HuggingFace tokenizer.json)
            [default: the file the model's ``onnx_rap.tokenizer`` metadata names, beside it].
        size, resize, crop, interpolation, mean, std, layout, grayscale: image preprocessing
            overriding the model's ``onnx_rap.preprocess`` metadata (as ``explain``'s flags):
            ``size=(H, W)`` a plain resize; ``resize=S`` the shorter side, then the centre
            ``crop=(H, W)``; ``interpolation`` one of nearest, bilinear, bicubic, lanczos.

    Raises:
        ValueError: the model cannot be read or compiled, or a text model's tokenizer is
            missing.
    """

    def __init__(
        self,
        model: ModelLike,
        method: str = "rap",
        *,
        threads: Optional[int] = None,
        epsilon: Optional[float] = None,
        input_bounds: Optional[Tuple[float, float]] = None,
        input: Optional[str] = None,
        output: Optional[str] = None,
        layer_sums: bool = False,
        exact: bool = False,
        tokenizer: Optional[Union[str, "os.PathLike[str]"]] = None,
        size: Optional[Tuple[int, int]] = None,
        resize: Optional[int] = None,
        crop: Optional[Tuple[int, int]] = None,
        interpolation: Optional[str] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        layout: Optional[str] = None,
        grayscale: Optional[bool] = None,
        reduce_output: Optional[str] = None,
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        _native.set_threads(threads or os.cpu_count() or 1)
        self._e = _native.Explainer(
            **_source(model),
            method=method,
            layer_sums=layer_sums,
            exact=exact,
            **_given(
                epsilon=epsilon,
                input_bounds=input_bounds,
                input=input,
                output=output,
                tokenizer=os.fspath(tokenizer) if tokenizer is not None else None,
                size=size,
                resize=resize,
                crop=crop,
                interpolation=interpolation,
                mean=list(mean) if mean is not None else None,
                std=list(std) if std is not None else None,
                layout=layout,
                grayscale=grayscale,
                reduce_output=reduce_output,
            ),
        )

    @property
    def method(self) -> str:
        return self._e.method

    @property
    def kind(self) -> str:
        """``"image"``, ``"text"`` or ``"tensor"``: what the model's input takes."""
        return self._e.kind

    @property
    def classes(self) -> int:
        return self._e.classes

    @property
    def labels(self) -> Optional[List[str]]:
        """Class names from the model's ``onnx_rap.labels`` metadata."""
        return self._e.labels

    @property
    def inputs(self) -> List[Tuple[str, bool]]:
        """The model's inputs in order, each (name, holds integers)."""
        return self._e.inputs

    @property
    def input(self) -> str:
        """The explained input's name."""
        return self._e.input

    @property
    def sample_shape(self) -> List[int]:
        """The explained input's shape per sample (no batch axis)."""
        return self._e.sample_shape

    @property
    def context(self) -> Optional[int]:
        """A text model's context in tokens (special tokens included)."""
        return self._e.context

    @property
    def preprocess(self) -> Optional[Dict[str, Any]]:
        """How images become the input (size, resize, interpolation, layout, channels,
        grayscale, mean, std), for an image model."""
        return self._e.preprocess

    def __repr__(self) -> str:
        return (
            f"Explainer({self._e.origin!r}, method={self.method!r}, kind={self.kind!r}, "
            f"classes={self.classes})"
        )

    def explain(self, x: Any, target: Target = None) -> Explanation:
        """Explain a batch ``x`` of the explained input: [N, *sample_shape] (one sample
        without the batch axis is taken as a batch of one), cast to float32.

        Args:
            target: None (each sample's prediction), a class for every sample, or one per
                sample.

        Returns:
            An :class:`Explanation` with a batch axis.
        """
        if self.kind == "text":
            raise ValueError(
                f"{self._e.origin}: the model reads token ids; use explain_text(...) (or run() "
                "with every input)"
            )
        a = np.ascontiguousarray(x, dtype=np.float32)
        if list(a.shape) == list(self.sample_shape):
            a = a[None]
        if len(self.inputs) != 1:
            names = ", ".join(n for n, _ in self.inputs)
            raise ValueError(
                f"{self._e.origin}: the model takes {len(self.inputs)} inputs ({names}); use "
                "run({name: array, ...})"
            )
        return Explanation._of(self._e.run([a], _targets(target, a.shape[0])))

    def run(self, inputs: Union[Mapping[str, Any], Sequence[Any]], target: Target = None) -> Explanation:
        """Explain with every input of the model given: a mapping name -> array, or arrays in
        the model's input order (see :attr:`inputs`), each with the batch first; integer
        inputs are cast to int64, the others to float32."""
        names = [n for n, _ in self.inputs]
        if isinstance(inputs, Mapping):
            missing = [n for n in names if n not in inputs]
            extra = [n for n in inputs if n not in names]
            if missing or extra:
                raise ValueError(
                    f"{self._e.origin}: the model's inputs are {names}; missing {missing}, "
                    f"unknown {extra}"
                )
            arrays = [inputs[n] for n in names]
        else:
            arrays = list(inputs)
        values = [
            np.ascontiguousarray(a, dtype=np.int64 if integer else np.float32)
            for a, (_, integer) in zip(arrays, self.inputs)
        ] + [np.asarray(a) for a in arrays[len(self.inputs):]]
        n = values[0].shape[0] if values and values[0].ndim > 0 else 0
        return Explanation._of(self._e.run(values, _targets(target, n)))

    def explain_image(self, image: Any, target: Target = None) -> Explanation:
        """Explain images, preprocessed as the model's metadata (or this Explainer's
        overrides) says, exactly as ``onnx-rap explain`` does.

        Args:
            image: a path (PNG or JPEG; EXIF orientation applied), a ``PIL.Image.Image``, a
                uint8 array [H, W] or [H, W, C] (C = 1, 3 or 4), or a list of these (one
                batch).
            target: as :meth:`explain`.

        Returns:
            An :class:`Explanation` with ``heatmap`` and ``images`` (what the model saw).
        """
        items = list(image) if isinstance(image, (list, tuple)) else [image]
        if not items:
            raise ValueError("no image given")
        t = _targets(target, len(items))
        if all(isinstance(i, (str, os.PathLike)) for i in items):
            return Explanation._of(self._e.explain_images([os.fspath(i) for i in items], t))
        return Explanation._of(self._e.explain_pixels([_pixels(i) for i in items], t))

    def explain_text(
        self, text: Union[str, Sequence[str]], target: Target = None
    ) -> Union[TextExplanation, List[TextExplanation]]:
        """Tokenise and explain a text (or a list of texts, one batch) with a text model.

        Returns:
            A :class:`TextExplanation` (a list of them for a list of texts).
        """
        one = isinstance(text, str)
        texts = [text] if one else list(text)
        if not texts:
            raise ValueError("no text given")
        out = [
            TextExplanation(
                text=s,
                tokens=d["tokens"],
                ids=d["ids"],
                spans=[tuple(p) for p in d["spans"]],
                relevance=d["relevance"],
                special=d["special"],
                padding=d["padding"],
                relevance_sum=d["relevance_sum"],
                truncated=tuple(d["truncated"]) if d["truncated"] is not None else None,
                predicted=d["predicted"],
                predicted_label=d["predicted_label"],
                target=d["target"],
                target_label=d["target_label"],
                logits=d["logits"],
            )
            for s, d in zip(texts, self._e.explain_texts(texts, _targets(target, len(texts))))
        ]
        return out[0] if one else out


def _pixels(image: Any) -> np.ndarray:
    """A picture as uint8 [H, W, C]: PIL images in mode L, RGB or RGBA as they are, other
    modes converted to RGB by PIL."""
    if hasattr(image, "mode") and hasattr(image, "convert"):  # PIL.Image.Image
        if image.mode not in ("L", "RGB", "RGBA"):
            image = image.convert("RGB")
        return np.asarray(image, dtype=np.uint8)
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(
            f"a picture array must be uint8 [H, W] or [H, W, C], not {a.dtype}; for a "
            "preprocessed tensor use explain()"
        )
    return np.ascontiguousarray(a)
