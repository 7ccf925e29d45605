//! `onnx-rap compile MODEL -o OUT`: write model_rap.onnx.

use std::path::Path;

use crate::error::Result;
use crate::ir;
use crate::onnx::{save, SaveOptions};
use crate::pass::{compile, Options};

/// What `compile` did, for the summary line.
pub struct Summary {
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub bytes: usize,
}

/// Compile `model` to `out`. Nothing is written when compilation fails.
pub fn run(model: &Path, out: &Path, opts: &Options, save_opts: &SaveOptions) -> Result<Summary> {
    let m = super::load_model(model)?;
    let origin = model.display().to_string();
    let compiled = compile(&m, opts, &origin)?;
    let proto = ir::export(&compiled)?;
    save(&proto, out, save_opts)?;
    Ok(Summary {
        nodes_before: m.graph.op_count(),
        nodes_after: compiled.graph.op_count(),
        bytes: crate::onnx::encode(&proto).len(),
    })
}
