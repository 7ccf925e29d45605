//! The native module of the Python package `onnx_rap` (`python/onnx_rap/__init__.py` wraps it
//! and documents the API): compile a model, explain tensors, images and texts in process, and
//! run the command line. Rust works with the GIL released, so Python threads explain at once.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use numpy::ndarray::{ArrayD, Axis};
use numpy::{IntoPyArray, PyReadonlyArray2, PyReadonlyArrayDyn};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use onnx_rap::cli::args::MethodArg;
use onnx_rap::explainer::{self, Explainer, Explanation, Front, Settings};
use onnx_rap::image::{Interpolation, Layout, PartialPreprocess};
use onnx_rap::ir;
use onnx_rap::pass::{Options, Reduction, HEATMAP};
use onnx_rap::rules::{Bounds, Method, Tuning};
use onnx_rap::runtime::Value;
use onnx_rap::Error;

/// The name a model given as bytes has in messages.
const BYTES_ORIGIN: &str = "<model bytes>";

/// onnx-rap's errors as Python's: bad input is a `ValueError`, a runtime failure a
/// `RuntimeError`; the message is the command line's.
fn py_err(e: Error) -> PyErr {
    match e {
        Error::Input(m) => PyValueError::new_err(m),
        Error::Runtime(m) => PyRuntimeError::new_err(m),
    }
}

/// Load a model from a path or from the bytes of an ONNX file (external data then resolved
/// against the working directory); returns it with the path that names it.
fn load(path: Option<PathBuf>, data: Option<&[u8]>) -> onnx_rap::Result<(ir::Model, PathBuf)> {
    match (path, data) {
        (Some(p), _) => Ok((explainer::load_model(&p)?, p)),
        (None, Some(b)) => {
            let proto = onnx_rap::onnx::load_bytes(b, Path::new("."), BYTES_ORIGIN)?;
            Ok((
                ir::import(&proto, BYTES_ORIGIN)?,
                PathBuf::from(BYTES_ORIGIN),
            ))
        }
        (None, None) => Err(onnx_rap::bad_input!("no model given: pass a path or bytes")),
    }
}

fn method(name: &str) -> PyResult<Method> {
    Method::parse(name).ok_or_else(|| {
        let all: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        PyValueError::new_err(format!(
            "unknown method '{name}'; choose one of: {}",
            all.join(", ")
        ))
    })
}

fn layout(name: Option<&str>) -> PyResult<Option<Layout>> {
    match name {
        None => Ok(None),
        Some("nchw") => Ok(Some(Layout::Nchw)),
        Some("nhwc") => Ok(Some(Layout::Nhwc)),
        Some(o) => Err(PyValueError::new_err(format!(
            "unknown layout '{o}'; choose nchw or nhwc"
        ))),
    }
}

/// The compile options shared by `compile` and `Explainer`.
struct Common {
    method: Method,
    epsilon: f32,
    input_bounds: Option<(f32, f32)>,
    input: Option<String>,
    output: Option<String>,
    layer_sums: bool,
    exact: bool,
    reduce_output: Option<Reduction>,
}

/// `reduce_output="mean" | "sum"`.
fn reduction(r: Option<&str>) -> PyResult<Option<Reduction>> {
    match r {
        None => Ok(None),
        Some("mean") => Ok(Some(Reduction::Mean)),
        Some("sum") => Ok(Some(Reduction::Sum)),
        Some(o) => Err(PyValueError::new_err(format!(
            "unknown reduce_output '{o}'; choose mean or sum"
        ))),
    }
}

impl Common {
    fn options(self) -> Options {
        Options {
            method: self.method,
            epsilon: self.epsilon,
            bounds: self
                .input_bounds
                .map_or(Bounds::PerSample, |(l, h)| Bounds::Fixed(l, h)),
            input: self.input,
            output: self.output,
            layer_sums: self.layer_sums,
            tuning: Tuning::exact_if(self.exact),
            reduce_output: self.reduce_output,
            ..Options::default()
        }
    }
}

/// Compile a model into model_rap.onnx; returns its bytes.
#[pyfunction]
#[pyo3(signature = (path=None, data=None, *, method="rap", target_input=false, colormap=false,
    layer_sums=false, epsilon=onnx_rap::rules::DEFAULT_EPSILON, input_bounds=None, input=None,
    output=None, exact=false, layout=None, embedding_relevance=false, reduce_output=None))]
#[allow(clippy::too_many_arguments)]
fn compile<'py>(
    py: Python<'py>,
    path: Option<PathBuf>,
    data: Option<Bound<'py, PyBytes>>,
    method: &str,
    target_input: bool,
    colormap: bool,
    layer_sums: bool,
    epsilon: f32,
    input_bounds: Option<(f32, f32)>,
    input: Option<String>,
    output: Option<String>,
    exact: bool,
    layout: Option<&str>,
    embedding_relevance: bool,
    reduce_output: Option<&str>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut opts = Common {
        method: self::method(method)?,
        epsilon,
        input_bounds,
        input,
        output,
        layer_sums,
        exact,
        reduce_output: reduction(reduce_output)?,
    }
    .options();
    opts.target_input = target_input;
    opts.colormap = colormap;
    opts.layout = self::layout(layout)?;
    opts.embedding_relevance = embedding_relevance;
    let bytes = data.map(|d| d.as_bytes().to_vec());
    let out = py
        .detach(move || -> onnx_rap::Result<Vec<u8>> {
            let (m, p) = load(path, bytes.as_deref())?;
            explainer::compile_bytes(&m, &opts, &p.display().to_string())
        })
        .map_err(py_err)?;
    Ok(PyBytes::new(py, &out))
}

/// A model compiled once for one method and planned by tract once per input shape.
#[pyclass(frozen, name = "Explainer", module = "onnx_rap._native")]
struct PyExplainer {
    inner: Explainer,
    method: Method,
}

/// An explanation as a dict of numpy arrays and lists.
fn explanation_dict<'py>(
    py: Python<'py>,
    e: Explanation,
    ex: &Explainer,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let labels = ex.labels();
    let predicted: Vec<usize> = e
        .logits
        .rows()
        .into_iter()
        .map(|r| explainer::argmax(&r.to_vec()))
        .collect();
    let name = |k: usize| labels.and_then(|l| l.get(k).cloned());
    d.set_item("predicted", &predicted)?;
    d.set_item(
        "predicted_labels",
        predicted.iter().map(|&k| name(k)).collect::<Vec<_>>(),
    )?;
    d.set_item("targets", &e.targets)?;
    d.set_item(
        "target_labels",
        e.targets.iter().map(|&k| name(k)).collect::<Vec<_>>(),
    )?;
    let sums = PyList::empty(py);
    for rows in &e.layer_sums {
        let l = PyList::empty(py);
        for r in rows {
            l.append((r.layer.as_str(), r.op.as_str(), r.received, r.handed))?;
        }
        sums.append(l)?;
    }
    d.set_item("layer_sums", sums)?;
    let outputs = PyDict::new(py);
    for (n, v) in e.outputs {
        outputs.set_item(n, v.into_pyarray(py))?;
    }
    d.set_item("outputs", outputs)?;
    d.set_item("logits", e.logits.into_pyarray(py))?;
    d.set_item("relevance", e.relevance.into_pyarray(py))?;
    Ok(d)
}

/// Explained images as a dict: the explanation's, and "images" (what the model saw).
fn image_dict<'py>(
    py: Python<'py>,
    r: explainer::ImageExplanation,
    ex: &Explainer,
) -> PyResult<Bound<'py, PyDict>> {
    let d = explanation_dict(py, r.explanation, ex)?;
    d.set_item("images", pictures(&r.shown).into_pyarray(py))?;
    Ok(d)
}

/// One numpy array as an input value: float32 or int64 (the wrapper casts to the kind the
/// model's input holds).
fn value(a: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Ok(x) = a.extract::<PyReadonlyArrayDyn<'_, f32>>() {
        return Ok(Value::F32(x.as_array().to_owned()));
    }
    if let Ok(x) = a.extract::<PyReadonlyArrayDyn<'_, i64>>() {
        return Ok(Value::I64(x.as_array().to_owned()));
    }
    Err(PyValueError::new_err(
        "inputs must be numpy arrays of float32 or int64",
    ))
}

#[pymethods]
impl PyExplainer {
    #[new]
    #[pyo3(signature = (path=None, data=None, *, method="rap", epsilon=onnx_rap::rules::DEFAULT_EPSILON,
        input_bounds=None, input=None, output=None, layer_sums=false, exact=false, tokenizer=None,
        size=None, resize=None, crop=None, interpolation=None, mean=None, std=None, layout=None,
        grayscale=None, reduce_output=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: Option<PathBuf>,
        data: Option<Bound<'_, PyBytes>>,
        method: &str,
        epsilon: f32,
        input_bounds: Option<(f32, f32)>,
        input: Option<String>,
        output: Option<String>,
        layer_sums: bool,
        exact: bool,
        tokenizer: Option<PathBuf>,
        size: Option<(u32, u32)>,
        resize: Option<u32>,
        crop: Option<(u32, u32)>,
        interpolation: Option<&str>,
        mean: Option<Vec<f32>>,
        std: Option<Vec<f32>>,
        layout: Option<&str>,
        grayscale: Option<bool>,
        reduce_output: Option<&str>,
    ) -> PyResult<Self> {
        let m = self::method(method)?;
        let interpolation = match interpolation {
            None => None,
            Some(s) => Some(Interpolation::parse(s).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "unknown interpolation '{s}'; choose nearest, bilinear, bicubic or lanczos"
                ))
            })?),
        };
        let settings = Settings {
            compile: Common {
                method: m,
                epsilon,
                input_bounds,
                input,
                output,
                layer_sums,
                exact,
                reduce_output: reduction(reduce_output)?,
            }
            .options(),
            preprocess: PartialPreprocess {
                size,
                resize,
                crop,
                interpolation,
                layout: self::layout(layout)?,
                grayscale,
                mean,
                std,
            },
            tokenizer,
        };
        let bytes = data.map(|d| d.as_bytes().to_vec());
        let inner = py
            .detach(move || -> onnx_rap::Result<Explainer> {
                let (model, p) = load(path, bytes.as_deref())?;
                Explainer::new(model, &p, &settings)
            })
            .map_err(py_err)?;
        Ok(PyExplainer { inner, method: m })
    }

    /// The method's name.
    #[getter]
    fn method(&self) -> &'static str {
        self.method.name()
    }

    /// "image", "text" or "tensor": what the model's input takes.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner.front() {
            Front::Image(_) => "image",
            Front::Text(_) => "text",
            Front::Tensor => "tensor",
        }
    }

    #[getter]
    fn classes(&self) -> usize {
        self.inner.classes()
    }

    #[getter]
    fn labels(&self) -> Option<Vec<String>> {
        self.inner.labels().map(|l| l.to_vec())
    }

    /// The model's runtime inputs in order, each (name, holds integers).
    #[getter]
    fn inputs(&self) -> Vec<(String, bool)> {
        self.inner.compiled().inputs.clone()
    }

    /// The explained input's name.
    #[getter]
    fn input(&self) -> String {
        self.inner.compiled().input.clone()
    }

    /// The explained input's shape per sample.
    #[getter]
    fn sample_shape(&self) -> Vec<usize> {
        self.inner.compiled().sample.clone()
    }

    /// The model's name in messages (its path, or "<model bytes>").
    #[getter]
    fn origin(&self) -> String {
        self.inner.origin().to_string()
    }

    /// A text model's context (tokens per text, special tokens included).
    #[getter]
    fn context(&self) -> Option<usize> {
        self.inner.text().map(|t| t.context)
    }

    /// An image model's preprocessing: size, resize, interpolation, layout, channels,
    /// grayscale, mean, std.
    #[getter]
    fn preprocess<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(pp) = self.inner.preprocess() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("size", pp.size)?;
        d.set_item("resize", pp.resize)?;
        d.set_item("interpolation", pp.interpolation.name())?;
        d.set_item(
            "layout",
            match pp.layout {
                Layout::Nchw => "nchw",
                Layout::Nhwc => "nhwc",
            },
        )?;
        d.set_item("channels", pp.channels)?;
        d.set_item("grayscale", pp.grayscale)?;
        d.set_item("mean", pp.mean.to_vec())?;
        d.set_item("std", pp.std.to_vec())?;
        Ok(Some(d))
    }

    /// Explain `inputs` (every runtime input of the model, batch first) for `targets`.
    #[pyo3(signature = (inputs, targets=None))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<Bound<'py, PyAny>>,
        targets: Option<Vec<i64>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let values = inputs.iter().map(value).collect::<PyResult<Vec<_>>>()?;
        let ex = &self.inner;
        let e = py
            .detach(|| ex.run(values, targets.as_deref()))
            .map_err(py_err)?;
        explanation_dict(py, e, ex)
    }

    /// Decode and preprocess image files, then explain them; adds "images" (what the model
    /// saw, uint8 [N, H, W, 3]).
    #[pyo3(signature = (paths, targets=None))]
    fn explain_images<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        targets: Option<Vec<i64>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ex = &self.inner;
        let r = py
            .detach(|| {
                let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
                ex.explain_images(&refs, targets.as_deref())
            })
            .map_err(py_err)?;
        image_dict(py, r, ex)
    }

    /// Preprocess decoded pictures (uint8 [H, W] or [H, W, C], C = 1, 3 or 4), then explain
    /// them; adds "images".
    #[pyo3(signature = (pixels, targets=None))]
    fn explain_pixels<'py>(
        &self,
        py: Python<'py>,
        pixels: Vec<PyReadonlyArrayDyn<'py, u8>>,
        targets: Option<Vec<i64>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let imgs = pixels
            .iter()
            .map(|p| picture(p.as_array().to_owned()))
            .collect::<PyResult<Vec<_>>>()?;
        let ex = &self.inner;
        let r = py
            .detach(|| ex.explain_pictures(imgs, "the picture", targets.as_deref()))
            .map_err(py_err)?;
        image_dict(py, r, ex)
    }

    /// Tokenise and explain texts; one dict per text.
    #[pyo3(signature = (texts, targets=None))]
    fn explain_texts<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        targets: Option<Vec<i64>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let ex = &self.inner;
        let names: Vec<String> = (1..=texts.len()).map(|k| format!("text {k}")).collect();
        let out = py
            .detach(|| {
                let t: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
                let n: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
                ex.explain_texts(&t, &n, targets.as_deref())
            })
            .map_err(py_err)?;
        let list = PyList::empty(py);
        for t in out {
            let d = PyDict::new(py);
            d.set_item(
                "tokens",
                t.tokens.iter().map(|k| k.text.clone()).collect::<Vec<_>>(),
            )?;
            d.set_item("ids", t.tokens.iter().map(|k| k.id).collect::<Vec<_>>())?;
            d.set_item(
                "spans",
                t.tokens
                    .iter()
                    .map(|k| (k.start, k.end))
                    .collect::<Vec<_>>(),
            )?;
            d.set_item("relevance", t.relevance.tokens.clone().into_pyarray(py))?;
            d.set_item("special", t.relevance.special)?;
            d.set_item("padding", t.relevance.padding)?;
            d.set_item("relevance_sum", t.relevance.sum)?;
            d.set_item("truncated", t.truncated)?;
            d.set_item("predicted", t.verdict.predicted)?;
            d.set_item("predicted_label", t.verdict.label.clone())?;
            d.set_item("target", t.verdict.target)?;
            d.set_item("target_label", t.verdict.target_label.clone())?;
            d.set_item("logits", t.logits.clone().into_pyarray(py))?;
            list.append(d)?;
        }
        Ok(list)
    }
}

/// RGB pictures as one uint8 array [N, H, W, 3].
fn pictures(shown: &[image::RgbImage]) -> ArrayD<u8> {
    let (w, h) = shown.first().map_or((0, 0), |p| p.dimensions());
    let mut data = Vec::with_capacity(shown.len() * (w * h * 3) as usize);
    for p in shown {
        data.extend_from_slice(p.as_raw());
    }
    ArrayD::from_shape_vec(vec![shown.len(), h as usize, w as usize, 3], data)
        .unwrap_or_else(|_| ArrayD::zeros(vec![0, 0, 0, 3]))
}

/// A uint8 [H, W] or [H, W, C] array as a decoded picture.
fn picture(a: ArrayD<u8>) -> PyResult<image::DynamicImage> {
    let a = if a.ndim() == 2 {
        a.insert_axis(Axis(2))
    } else {
        a
    };
    let bad = || {
        PyValueError::new_err(format!(
            "a picture is a uint8 array [H, W] or [H, W, C] with C = 1, 3 or 4, not {:?}",
            a.shape()
        ))
    };
    if a.ndim() != 3 {
        return Err(bad());
    }
    let (h, w, c) = (a.shape()[0] as u32, a.shape()[1] as u32, a.shape()[2]);
    let raw: Vec<u8> = a.iter().copied().collect();
    let img = match c {
        1 => image::GrayImage::from_raw(w, h, raw).map(image::DynamicImage::ImageLuma8),
        3 => image::RgbImage::from_raw(w, h, raw).map(image::DynamicImage::ImageRgb8),
        4 => image::RgbaImage::from_raw(w, h, raw).map(image::DynamicImage::ImageRgba8),
        _ => None,
    };
    img.ok_or_else(bad)
}

/// Paint a heatmap [H, W] with explain's colour map (red relevant, white 0, blue irrelevant,
/// scaled by its largest magnitude), resized to width x height: uint8 [height, width, 3].
#[pyfunction]
fn render_heatmap<'py>(
    py: Python<'py>,
    heatmap: PyReadonlyArray2<'py, f32>,
    width: u32,
    height: u32,
) -> PyResult<Bound<'py, PyAny>> {
    let img = onnx_rap::heatmap::render(heatmap.as_array(), width, height);
    Ok(pictures(&[img])
        .index_axis_move(Axis(0), 0)
        .into_pyarray(py)
        .into_any())
}

/// The methods: (name, what it computes), as `--method` lists them.
#[pyfunction]
fn methods() -> Vec<(String, String)> {
    MethodArg::value_variants()
        .iter()
        .filter_map(|m| m.to_possible_value())
        .map(|v| {
            (
                v.get_name().to_string(),
                v.get_help().map(|h| h.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

/// Run the command line with `args` (the program name first); returns its exit code.
#[pyfunction]
fn run_cli(py: Python<'_>, args: Vec<String>) -> i32 {
    py.detach(|| onnx_rap::cli::app::main_with(args))
}

/// Threads tract uses inside one run, for the whole process.
#[pyfunction]
fn set_threads(threads: usize) {
    onnx_rap::runtime::set_intra_op_threads(threads.max(1));
}

/// The name of the heatmap output.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", onnx_rap::VERSION)?;
    m.add("HEATMAP", HEATMAP)?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(methods, m)?)?;
    m.add_function(wrap_pyfunction!(render_heatmap, m)?)?;
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_class::<PyExplainer>()?;
    Ok(())
}
