//! Explaining a dense output (a segmentation or saliency map, a regression grid): a model
//! transform before the relevance pass that appends the output's per-sample mean or sum as a
//! one-column score `[N, 1]`, so the pass explains that score like a logit. Relevance then
//! starts at every value of the map (its share of the mean) and the input's relevance sums to
//! the score.

use crate::analysis::{Dim, Facts};
use crate::bad_input;
use crate::error::Result;
use crate::ir::{Builder, Model};
use crate::onnx::attr::{make_int, make_ints};
use crate::onnx::tensor::i64_tensor;

/// How a dense output becomes one score per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    Mean,
    Sum,
}

impl Reduction {
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
        }
    }
}

/// The score's tensor name for `output`.
pub fn score_name(output: &str, how: Reduction) -> String {
    format!("{output}_{}", how.name())
}

/// Add `score_name(output)` = the per-sample `how` of `output` over its non-batch axes,
/// `[N, 1]`, as a new graph output; returns the reduced output's name and the score's.
/// `output`: the model's one output when None.
pub fn add_score(
    model: &mut Model,
    facts: &Facts,
    output: Option<&str>,
    how: Reduction,
    origin: &str,
) -> Result<(String, String)> {
    let outs: Vec<String> = model
        .graph
        .outputs
        .iter()
        .map(|o| o.name().to_string())
        .collect();
    let output = match (output, outs.as_slice()) {
        (Some(o), _) if outs.iter().any(|x| x == o) => o.to_string(),
        (Some(o), _) => {
            return Err(bad_input!(
                "{origin}: the model has no output named '{o}'; its outputs are: {}",
                outs.join(", ")
            ))
        }
        (None, [one]) => one.clone(),
        (None, _) => {
            return Err(bad_input!(
                "{origin}: the model has {} outputs ({}); choose the one to reduce with \
                 --explain-output NAME",
                outs.len(),
                outs.join(", ")
            ))
        }
    };
    let rank = facts
        .get(&output)
        .and_then(|f| f.shape.as_ref())
        .map(Vec::len)
        .ok_or_else(|| {
            bad_input!(
                "{origin}: the rank of output '{output}' is not known{}",
                facts.why_unknown()
            )
        })?;
    if rank < 2 {
        return Err(bad_input!(
            "{origin}: output '{output}' has rank {rank}; --reduce-output needs a batch axis \
             and at least one more"
        ));
    }
    let dtype_ok = facts.get(&output).is_none_or(|f| f.is_float());
    if !dtype_ok {
        return Err(bad_input!(
            "{origin}: output '{output}' is not a float tensor"
        ));
    }
    let name = score_name(&output, how);
    if model.graph.is_used(&name) {
        return Err(bad_input!(
            "{origin}: the model already has a tensor named '{name}'"
        ));
    }
    let opset = model.opset();
    let axes: Vec<i64> = (1..rank as i64).collect();
    let op = match how {
        Reduction::Mean => "ReduceMean",
        Reduction::Sum => "ReduceSum",
    };
    let axes_are_input = match op {
        "ReduceSum" => opset >= 13,
        _ => opset >= 18,
    };
    let mut b = Builder::new(&mut model.graph);
    let keep = make_int("keepdims", 1);
    let reduced = if axes_are_input {
        let a = b.constant(
            &format!("{name}.axes"),
            i64_tensor("", &[axes.len() as i64], &axes),
        );
        b.op1(op, &format!("{name}.reduce"), &[&output, &a], vec![keep])?
    } else {
        b.op1(
            op,
            &format!("{name}.reduce"),
            &[&output],
            vec![make_ints("axes", &axes), keep],
        )?
    };
    let shape = b.constant(&format!("{name}.shape"), i64_tensor("", &[2], &[-1, 1]));
    b.op("Reshape", &name, &[&reduced, &shape], 1, vec![])?;
    let batch = facts
        .get(&output)
        .and_then(|f| f.shape.as_ref())
        .and_then(|s| s.first().cloned())
        .unwrap_or(Dim::Sym("N".into()));
    let mut vi = super::value_info(&name, 1, &[batch, Dim::Known(1)]);
    vi.doc_string = Some(format!(
        "per-sample {} of '{output}' over its non-batch axes, [N, 1] (explained)",
        how.name()
    ));
    model.graph.outputs.push(vi);
    Ok((output, name))
}
