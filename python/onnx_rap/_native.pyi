"""Type hints of the native module (python/src/lib.rs); use the wrappers in onnx_rap."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

__version__: str
HEATMAP: str

def compile(
    path: Optional[str] = None,
    data: Optional[bytes] = None,
    *,
    method: str = "rap",
    target_input: bool = False,
    colormap: bool = False,
    layer_sums: bool = False,
    epsilon: float = ...,
    input_bounds: Optional[Tuple[float, float]] = None,
    input: Optional[str] = None,
    output: Optional[str] = None,
    exact: bool = False,
    layout: Optional[str] = None,
    embedding_relevance: bool = False,
    reduce_output: Optional[str] = None,
) -> bytes: ...
def methods() -> List[Tuple[str, str]]: ...
def render_heatmap(heatmap: np.ndarray, width: int, height: int) -> np.ndarray: ...
def run_cli(args: List[str]) -> int: ...
def set_threads(threads: int) -> None: ...

class Explainer:
    def __init__(
        self,
        path: Optional[str] = None,
        data: Optional[bytes] = None,
        *,
        method: str = "rap",
        epsilon: float = ...,
        input_bounds: Optional[Tuple[float, float]] = None,
        input: Optional[str] = None,
        output: Optional[str] = None,
        layer_sums: bool = False,
        exact: bool = False,
        tokenizer: Optional[str] = None,
        size: Optional[Tuple[int, int]] = None,
        resize: Optional[int] = None,
        crop: Optional[Tuple[int, int]] = None,
        interpolation: Optional[str] = None,
        mean: Optional[List[float]] = None,
        std: Optional[List[float]] = None,
        layout: Optional[str] = None,
        grayscale: Optional[bool] = None,
        reduce_output: Optional[str] = None,
    ) -> None: ...
    method: str
    kind: str
    classes: int
    labels: Optional[List[str]]
    inputs: List[Tuple[str, bool]]
    input: str
    sample_shape: List[int]
    origin: str
    context: Optional[int]
    preprocess: Optional[Dict[str, Any]]
    def run(self, inputs: List[np.ndarray], targets: Optional[List[int]] = None) -> Dict[str, Any]: ...
    def explain_images(self, paths: List[str], targets: Optional[List[int]] = None) -> Dict[str, Any]: ...
    def explain_pixels(self, pixels: Sequence[np.ndarray], targets: Optional[List[int]] = None) -> Dict[str, Any]: ...
    def explain_texts(self, texts: List[str], targets: Optional[List[int]] = None) -> List[Dict[str, Any]]: ...
