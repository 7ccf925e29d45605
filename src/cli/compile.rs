//! `onnx-rap compile MODEL -o OUT`: write model_rap.onnx.

use std::path::{Path, PathBuf};

use super::args::{self, parse_bounds, LayoutArg, MethodArg, ReduceArg};
use crate::error::Result;
use crate::ir;
use crate::onnx::{save, SaveOptions};
use crate::pass::{compile, Options};
use crate::rules::Tuning;

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

// The command line of `compile`: its flags (the doc comments are the --help text) and what
// `onnx-rap compile` does with them.

#[derive(clap::Args)]
pub struct CompileCli {
    /// The model to explain (.onnx)
    model: PathBuf,
    /// Where to write the compiled model
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Add an int64 [N] input `rap_target` that chooses the explained class per sample
    #[arg(long)]
    target_input: bool,
    /// Fixed bounds LO,HI of the input values for the input layer's z^B rule (and, for `rap`
    /// at a patch embedding, LO as the floor the pixels' offset is measured from)
    /// [default: per-sample min and max of the input]
    #[arg(long, value_name = "LO,HI", value_parser = parse_bounds, allow_hyphen_values = true)]
    input_bounds: Option<(f32, f32)>,
    /// Propagation rules to compile
    #[arg(long, value_enum, default_value = "rap")]
    method: MethodArg,
    /// Stabiliser of --method lrp-eps (attnlrp uses AttnLRP's own, 1e-6)
    #[arg(long, default_value_t = crate::rules::DEFAULT_EPSILON)]
    epsilon: f32,
    /// The graph input to explain, when the model has several
    #[arg(long, value_name = "NAME")]
    input: Option<String>,
    /// The graph output (logits) to explain, when the model has several
    #[arg(long = "explain-output", value_name = "NAME")]
    explain_output: Option<String>,
    /// Store initializers of at least BYTES bytes in OUT.data beside OUT
    #[arg(long, value_name = "BYTES")]
    external_data_above: Option<usize>,
    /// Emit the rules op for op as the reference computes them, without the cheaper
    /// equivalent forms (Z2 from the layer output, transposed convs as flipped convs)
    #[arg(long)]
    exact: bool,
    /// Add the output `heatmap_rgb` (uint8 [N,H,W,3]): the heatmap in explain's colour map,
    /// so any runtime returns a ready-to-show picture (image inputs only)
    #[arg(long)]
    colormap: bool,
    /// Add one output per rule application, `layer_sum:NODE` (float [N,2]: per sample the
    /// relevance the rule received and what it handed on), to find where conservation breaks
    #[arg(long)]
    layer_sums: bool,
    /// Layout of an image input; `heatmap` sums its channel axis [default: metadata, else
    /// detected: a Transpose to NCHW right after the input, or a trailing 1 or 3]
    #[arg(long, value_enum)]
    layout: Option<LayoutArg>,
    /// For a model explained through token ids: add `relevance_embedding` (float [N,T,D]),
    /// the relevance of every embedding dimension, beside the per-token `relevance` [N,T]
    #[arg(long)]
    embedding_relevance: bool,
    /// Explain the per-sample mean (or sum) of a dense output such as a segmentation or
    /// saliency map [N, ...] instead of a [N, classes] output: the score is added as the
    /// output OUTPUT_mean [N, 1] and explained; its relevance sums to the score
    #[arg(long, value_enum, value_name = "HOW")]
    reduce_output: Option<ReduceArg>,
}

/// `onnx-rap compile`: write the compiled model and print the summary line.
pub fn main(cli: CompileCli) -> Result<()> {
    let CompileCli {
        model,
        output,
        target_input,
        input_bounds,
        method: method_arg,
        epsilon,
        input,
        explain_output,
        external_data_above,
        exact,
        colormap,
        layer_sums,
        layout,
        embedding_relevance,
        reduce_output,
    } = cli;
    let opts = Options {
        method: args::method(method_arg),
        epsilon,
        target_input,
        colormap,
        bounds: args::bounds(input_bounds),
        input,
        output: explain_output,
        tuning: Tuning::exact_if(exact),
        layer_sums,
        layout: layout.map(args::layout),
        embedding_relevance,
        reduce_output: reduce_output.map(args::reduction),
    };
    let save = SaveOptions {
        external_above: external_data_above,
    };
    let s = run(&model, &output, &opts, &save)?;
    eprintln!(
        "wrote {} ({} nodes, {} before; {} bytes)",
        output.display(),
        s.nodes_after,
        s.nodes_before,
        s.bytes
    );
    Ok(())
}
