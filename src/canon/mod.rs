//! Canonicalisation: the graph the relevance pass analyses, with exporter spellings of one
//! layer rewritten into the form the rules know. It is a view for the analysis only:
//! model_rap.onnx keeps the original forward graph node for node, and every rewrite keeps the
//! names of the tensors it leaves (a rewritten node reads the original inputs and makes the
//! original output), so the relevance graph the rules emit reads tensors that exist there.
//!
//! Rewrites:
//! - **normalisations written op by op** (LayerNorm before opset 17, RMSNorm before opset
//!   23): the canonical `LayerNormalization` / `RMSNormalization` node (`norms`);
//! - **dense layer as MatMul + Add** (tf2onnx writes Keras `Dense` this way): `MatMul(x, W)`
//!   with a constant 2-D `W`, a 2-D `x`, read only by `Add(., b)` with a constant `b` of
//!   shape `[C]` or `[1, C]`, becomes `Gemm(x, W, b)` making the Add's output. The layer
//!   making the logits is then a dense layer with its bias, and RAP's first step (which
//!   splits the bias) applies, as for the Gemm PyTorch writes.

mod norms;

use std::collections::HashMap;

use crate::analysis::{Dim, Facts};
use crate::error::Result;
use crate::ir::{self, Model};
use crate::onnx::proto::{GraphProto, NodeProto};

/// The canonical form of `model`, or None when no rewrite applies (the model is canonical).
pub fn canonical(model: &Model, facts: &Facts, origin: &str) -> Result<Option<Model>> {
    let mut proto = ir::export(model)?;
    let Some(graph) = proto.graph.as_mut() else {
        return Ok(None);
    };
    let dense = dense_layers(graph, facts);
    let norms = norms::norms(graph, facts);
    if dense.is_empty() && norms.is_empty() {
        return Ok(None);
    }
    let mut drop = vec![false; graph.node.len()];
    for r in norms {
        graph.node[r.at] = r.node;
        for k in r.drop {
            drop[k] = true;
        }
    }
    for &(k, a, slot) in &dense {
        let (mm, add) = (&graph.node[k], &graph.node[a]);
        let gemm = NodeProto {
            input: vec![
                mm.input[0].clone(),
                mm.input[1].clone(),
                add.input[slot].clone(),
            ],
            output: vec![add.output[0].clone()],
            name: mm.name.clone(),
            op_type: Some("Gemm".into()),
            ..Default::default()
        };
        graph.node[k] = gemm;
        drop[a] = true;
    }
    let mut k = 0;
    graph.node.retain(|_| {
        k += 1;
        !drop[k - 1]
    });
    ir::import(&proto, origin).map(Some)
}

/// `(MatMul, Add, bias slot of the Add)` node indices of every dense layer written as
/// MatMul + Add with constants.
fn dense_layers(graph: &GraphProto, facts: &Facts) -> Vec<(usize, usize, usize)> {
    let inits: HashMap<&str, &[i64]> = graph
        .initializer
        .iter()
        .map(|t| (t.name(), t.dims.as_slice()))
        .collect();
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for n in &graph.node {
        for i in &n.input {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *readers.entry(o.name()).or_default() += 1;
    }
    let rank = |t: &str| facts.get(t).and_then(|f| f.shape.as_ref()).map(Vec::len);
    // MatMul index -> (Add index, bias slot in the Add).
    let mut dense: Vec<(usize, usize, usize)> = Vec::new();
    let by_input: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type() == "Add" && n.domain().is_empty())
        .flat_map(|(k, n)| n.input.iter().map(move |i| (i.as_str(), k)))
        .collect();
    for (k, n) in graph.node.iter().enumerate() {
        if n.op_type() != "MatMul" || !n.domain().is_empty() || n.input.len() != 2 {
            continue;
        }
        let (x, w) = (n.input[0].as_str(), n.input[1].as_str());
        let Some(&&[_, c]) = inits.get(w) else {
            continue;
        };
        let Some(y) = n.output.first().map(String::as_str) else {
            continue;
        };
        if rank(x) != Some(2) || readers.get(y) != Some(&1) {
            continue;
        }
        let Some(&a) = by_input.get(y) else {
            continue;
        };
        let add = &graph.node[a];
        if add.input.len() != 2 {
            continue;
        }
        let slot = usize::from(add.input[0] == y);
        let bias_ok = match inits.get(add.input[slot].as_str()) {
            Some(&&[b]) | Some(&&[1, b]) => b == c,
            _ => false,
        };
        let out_ok = facts
            .get(add.output[0].as_str())
            .and_then(|f| f.shape.as_ref())
            .is_some_and(|s| s.len() == 2 && s[1] == Dim::Known(c));
        if bias_ok && out_ok {
            dense.push((k, a, slot));
        }
    }
    dense
}
