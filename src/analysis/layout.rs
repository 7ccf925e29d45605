//! The channel axis of an image input: NCHW (PyTorch, Caffe) or NHWC (Keras / tf2onnx).
//!
//! Evidence, strongest first: the model's first op on the input is a Transpose that moves
//! axis 3 to axis 1 (`perm = [0, 3, 1, 2]`, what tf2onnx writes in front of the first
//! convolution of a channels-last Keras model), or, for a convolution-free model, one that
//! moves axis 1 to the end; then the shape: a trailing dimension of 1 or 3 (grayscale or RGB)
//! where axis 1 is not. Metadata (`onnx_rap.preprocess`'s `layout`) and `--layout` override
//! the detection where they are read (`explainer::image_preprocess`).

use crate::image::Layout;
use crate::ir::{Graph, Model};

/// The layout of the image input `input` of `graph`, `sample` its dimensions after the batch
/// axis (`[C, H, W]` or `[H, W, C]`). NCHW unless the graph or the shape says otherwise.
pub fn image_layout(graph: &Graph, input: &str, sample: &[usize]) -> Layout {
    if sample.len() != 3 {
        return Layout::Nchw;
    }
    if let Some(l) = transpose_after(graph, input) {
        return l;
    }
    let small = |c: usize| c == 1 || c == 3;
    if small(sample[2]) && !small(sample[0]) {
        Layout::Nhwc
    } else {
        Layout::Nchw
    }
}

/// The layout of a model's image input: the `layout` of its `onnx_rap.preprocess` metadata
/// where it names one, else [`image_layout`].
pub fn model_layout(model: &Model, input: &str, sample: &[usize]) -> Layout {
    let meta = model
        .rest
        .metadata_props
        .iter()
        .find(|p| p.key() == "onnx_rap.preprocess")
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p.value()).ok());
    match meta
        .as_ref()
        .and_then(|m| m.get("layout"))
        .and_then(|l| l.as_str())
    {
        Some("nhwc") => Layout::Nhwc,
        Some("nchw") => Layout::Nchw,
        _ => image_layout(&model.graph, input, sample),
    }
}

/// [`image_layout`] of a model's only runtime input (with several inputs, the shape alone
/// decides).
pub fn single_input_layout(model: &Model, sample: &[usize]) -> Layout {
    match model.graph.runtime_inputs().as_slice() {
        [one] => image_layout(&model.graph, one, sample),
        _ => image_layout(&model.graph, "", sample),
    }
}

/// The layout a Transpose right after the input (possibly behind Identity or a Cast) tells.
fn transpose_after(graph: &Graph, input: &str) -> Option<Layout> {
    let mut t = input.to_string();
    for _ in 0..4 {
        let consumers = graph.consumers(&t);
        let mut next = None;
        for (ix, _) in consumers {
            let Some(n) = graph.g[ix].op() else { continue };
            match n.op_type() {
                "Transpose" => {
                    let perm = crate::onnx::attr::ints(n, "perm").ok().flatten()?;
                    match perm.as_slice() {
                        [0, 3, 1, 2] => return Some(Layout::Nhwc),
                        [0, 2, 3, 1] => return Some(Layout::Nchw),
                        _ => {}
                    }
                }
                "Identity" | "Cast" => next = n.output.first().cloned(),
                _ => {}
            }
        }
        t = next?;
    }
    None
}

/// The channel axis (1 or 3) of a rank-4 image input under `layout`.
pub fn channel_axis(layout: Layout) -> i64 {
    match layout {
        Layout::Nchw => 1,
        Layout::Nhwc => 3,
    }
}
