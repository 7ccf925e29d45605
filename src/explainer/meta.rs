//! What a model's metadata says about explaining it: class names, and how image files become
//! its input (`onnx_rap.preprocess`, overridden by flags).

use crate::bad_input;
use crate::error::Result;
use crate::image::{Layout, PartialPreprocess, Preprocess};
use crate::ir;

/// Metadata keys a model may carry for `explain`.
pub const META_LABELS: &str = "onnx_rap.labels";
pub const META_PREPROCESS: &str = "onnx_rap.preprocess";

/// The value of a `metadata_props` entry.
pub fn metadata<'a>(model: &'a ir::Model, key: &str) -> Option<&'a str> {
    model
        .rest
        .metadata_props
        .iter()
        .find(|p| p.key() == key)
        .map(|p| p.value())
}

/// The class names of the `onnx_rap.labels` metadata, if it holds a JSON array of `classes`.
pub fn labels(model: &ir::Model, classes: usize) -> Option<Vec<String>> {
    metadata(model, META_LABELS)
        .and_then(|l| serde_json::from_str::<Vec<String>>(l).ok())
        .filter(|l| l.len() == classes)
}

/// How image files become inputs of a model whose input has `sample` dims per sample: the
/// flags, then the model's metadata, then the input shape. None when the input is no image.
pub fn image_preprocess(
    model: &ir::Model,
    sample: &[usize],
    flags: PartialPreprocess,
    origin: &str,
) -> Result<Option<Preprocess>> {
    let meta = match metadata(model, META_PREPROCESS) {
        Some(j) => Preprocess::from_metadata(j, origin)?,
        None => PartialPreprocess::default(),
    };
    let pp = flags.or(meta);
    let layout = pp
        .layout
        .unwrap_or_else(|| crate::analysis::single_input_layout(model, sample));
    if sample.len() != 3 {
        return Ok(None);
    }
    let (c, h, w) = match layout {
        Layout::Nchw => (sample[0], sample[1], sample[2]),
        Layout::Nhwc => (sample[2], sample[0], sample[1]),
    };
    let size = pp.crop.or(pp.size).unwrap_or((h as u32, w as u32));
    if size != (h as u32, w as u32) {
        let what = if pp.crop.is_some() { "crop" } else { "size" };
        return Err(bad_input!(
            "{origin}: the image {what} {}x{} (height x width) does not match the model input \
             {h}x{w}",
            size.0,
            size.1
        ));
    }
    Ok(Some(Preprocess {
        size,
        resize: pp.resize,
        interpolation: pp.interpolation.unwrap_or_default(),
        channels: c,
        layout,
        grayscale: pp.grayscale.unwrap_or(false),
        mean: pp.mean.unwrap_or_default(),
        std: pp.std.unwrap_or_default(),
    }))
}
