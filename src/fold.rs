//! Constant folding before a model is handed to tract.
//!
//! model_rap.onnx derives W+, |W-|, stacked and flipped kernels from the original weights with
//! ordinary nodes, so the file stays the size of the model. onnxruntime folds those at session
//! creation; tract's optimiser does not fold a constant that has several consumers and is
//! larger than its memory budget (every large weight here), and would recompute them on every
//! run. This pass evaluates every node whose inputs are all constant, once, with tract itself,
//! and replaces it with an initializer.

use std::collections::HashSet;

use tract_onnx::prelude::*;

use crate::error::Result;
use crate::onnx::proto::{ModelProto, NodeProto, TensorProto, ValueInfoProto};
use crate::onnx::tensor::{f32_tensor, i64_tensor};
use crate::runtime_err;

/// Ops whose output is not a function of their inputs.
const RANDOM: [&str; 6] = [
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
];

fn to_proto(name: &str, t: &Tensor) -> Option<TensorProto> {
    let dims: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    match t.datum_type() {
        DatumType::F32 => {
            let v: Vec<f32> = t
                .to_plain_array_view::<f32>()
                .ok()?
                .iter()
                .copied()
                .collect();
            Some(f32_tensor(name, &dims, &v))
        }
        DatumType::I64 => {
            let v: Vec<i64> = t
                .to_plain_array_view::<i64>()
                .ok()?
                .iter()
                .copied()
                .collect();
            Some(i64_tensor(name, &dims, &v))
        }
        _ => None,
    }
}

/// `model` with every constant-only node replaced by an initializer holding its value.
pub fn fold_constants(model: &ModelProto) -> Result<ModelProto> {
    let Some(graph) = model.graph.as_ref() else {
        return Ok(model.clone());
    };
    let mut known: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    let mut is_const = vec![false; graph.node.len()];
    for (i, n) in graph.node.iter().enumerate() {
        let plain = (n.domain().is_empty() || n.domain() == "ai.onnx")
            && !RANDOM.contains(&n.op_type())
            && n.attribute
                .iter()
                .all(|a| a.g.is_none() && a.graphs.is_empty());
        if plain
            && n.input
                .iter()
                .all(|x| x.is_empty() || known.contains(x.as_str()))
        {
            is_const[i] = true;
            known.extend(n.output.iter().map(String::as_str));
        }
    }
    let (consts, rest): (Vec<_>, Vec<_>) = graph.node.iter().zip(&is_const).partition(|(_, &c)| c);
    let consts: Vec<&NodeProto> = consts.into_iter().map(|(n, _)| n).collect();
    let rest: Vec<&NodeProto> = rest.into_iter().map(|(n, _)| n).collect();
    // Constant tensors made by nodes and read by the rest of the graph.
    let made: HashSet<&str> = consts
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .collect();
    let mut needed: Vec<&str> = Vec::new();
    let readers = rest
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name()));
    for t in readers {
        if made.contains(t) && !needed.contains(&t) {
            needed.push(t);
        }
    }
    if needed.is_empty() {
        return Ok(model.clone());
    }
    let const_inputs: HashSet<&str> = consts
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();

    let mut sub = model.clone();
    let g = sub.graph.as_mut().expect("graph");
    g.node = consts.iter().map(|&n| n.clone()).collect();
    g.initializer.retain(|t| const_inputs.contains(t.name()));
    g.input.clear();
    g.value_info.clear();
    g.output = needed
        .iter()
        .map(|n| ValueInfoProto {
            name: Some(n.to_string()),
            ..Default::default()
        })
        .collect();
    let bytes = crate::onnx::encode(&sub);
    let budget = crate::guard::Budget::for_file(crate::onnx::encode(model).len());
    crate::guard::check_model(&sub, "the model", budget)?;
    let values = crate::guard::in_tract("the model", "constant folding", || {
        tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_runnable())
            .and_then(|p| p.run(tvec![]))
    })?
    .map_err(|e| runtime_err!("folding the constant weights failed: {e:#}"))?;
    let mut folded = Vec::new();
    for (name, v) in needed.iter().zip(values.iter()) {
        match to_proto(name, v) {
            Some(t) => folded.push(t),
            None => return Ok(model.clone()), // a type we do not write back: leave it to tract
        }
    }

    let mut out = model.clone();
    let g = out.graph.as_mut().expect("graph");
    g.node = rest.iter().map(|&n| n.clone()).collect();
    let used: HashSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(g.output.iter().map(|o| o.name().to_string()))
        .collect();
    g.initializer.retain(|t| used.contains(t.name()));
    // Old models also list initializers as graph inputs: drop the ones folded away.
    let kept: HashSet<String> = g.initializer.iter().map(|t| t.name().to_string()).collect();
    let was_init: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    g.input
        .retain(|i| !was_init.contains(i.name()) || kept.contains(i.name()));
    g.initializer.extend(folded);
    Ok(out)
}
