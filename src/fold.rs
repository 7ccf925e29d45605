//! Constant folding before a model is handed to tract.
//!
//! model_rap.onnx derives W+, |W-|, stacked and flipped kernels from the original weights with
//! ordinary nodes, so the file stays the size of the model. onnxruntime folds those at session
//! creation; tract's optimiser does not fold a constant that has several consumers and is
//! larger than its memory budget (every large weight here), and would recompute them on every
//! run. This pass evaluates every node whose inputs are all constant, once, and replaces it
//! with an initializer: in Rust where [`crate::consteval`] knows the op (every op the rules use
//! to derive weights), with tract itself otherwise.

use std::collections::{HashMap, HashSet};

use prost::Message;
use tract_onnx::prelude::*;

use crate::consteval::{self, Const};
use crate::error::Result;
use crate::onnx::proto::{ModelProto, NodeProto, TensorProto, ValueInfoProto};
use crate::onnx::tensor::{f32_tensor, i64_tensor, to_f32, to_i64};
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

/// `model` with every constant-only node replaced by an initializer holding its value. Takes
/// the model by value: weights are never copied whole, and every computed value is dropped as
/// soon as its last constant reader has run (the peak memory of planning a model is here).
pub fn fold_constants(mut model: ModelProto) -> Result<ModelProto> {
    let Some(graph) = model.graph.as_ref() else {
        return Ok(model);
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
    let consts: Vec<&NodeProto> = graph
        .node
        .iter()
        .zip(&is_const)
        .filter_map(|(n, &c)| c.then_some(n))
        .collect();
    // Constant tensors made by nodes and read by the rest of the graph.
    let made: HashSet<&str> = consts
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .collect();
    let mut needed: Vec<&str> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let readers = graph
        .node
        .iter()
        .zip(&is_const)
        .filter(|(_, &c)| !c)
        .flat_map(|(n, _)| n.input.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name()));
    for t in readers {
        if made.contains(t) && seen.insert(t) {
            needed.push(t);
        }
    }
    if needed.is_empty() {
        return Ok(model);
    }
    let Some(folded) = evaluate(&model, &consts, &needed)? else {
        return Ok(model); // a type we do not write back: leave it to tract
    };
    let drop_names: HashSet<String> = needed.iter().map(|s| s.to_string()).collect();
    let g = model.graph.as_mut().expect("graph");
    let was_init: HashSet<String> = g.initializer.iter().map(|t| t.name().to_string()).collect();
    let mut flags = is_const.iter();
    g.node.retain(|_| !flags.next().copied().unwrap_or(false));
    let used: HashSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(g.output.iter().map(|o| o.name().to_string()))
        .collect();
    g.initializer
        .retain(|t| used.contains(t.name()) && !drop_names.contains(t.name()));
    // Old models also list initializers as graph inputs: drop the ones folded away.
    let kept: HashSet<String> = g.initializer.iter().map(|t| t.name().to_string()).collect();
    g.input
        .retain(|i| !was_init.contains(i.name()) || kept.contains(i.name()));
    g.initializer.extend(folded);
    Ok(model)
}

/// The `needed` values of the constant-only nodes `consts` (in graph order), as initializers;
/// None where tract produced an element type this module does not write back.
fn evaluate(
    model: &ModelProto,
    consts: &[&NodeProto],
    needed: &[&str],
) -> Result<Option<Vec<TensorProto>>> {
    let graph = model.graph.as_ref().expect("graph");
    let inits: HashMap<&str, &TensorProto> =
        graph.initializer.iter().map(|t| (t.name(), t)).collect();
    let needed_set: HashSet<&str> = needed.iter().copied().collect();
    // Readers left per value among the constant nodes: a value is dropped after its last one.
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for x in consts.iter().flat_map(|n| n.input.iter()) {
        *readers.entry(x.as_str()).or_default() += 1;
    }
    let mut values: HashMap<&str, Const> = HashMap::new();
    let mut done: HashMap<&str, TensorProto> = HashMap::new();
    let mut left: Vec<&NodeProto> = Vec::new();
    let mut left_reads: HashSet<&str> = HashSet::new();
    // Rust first (crate::consteval); what it declines, and what depends on that, goes to tract.
    for &n in consts {
        for x in n.input.iter().filter(|x| !x.is_empty()) {
            if !values.contains_key(x.as_str()) {
                if let Some(v) = inits.get(x.as_str()).and_then(|t| initializer_value(t)) {
                    values.insert(x.as_str(), v);
                }
            }
        }
        let ins: Option<Vec<Option<&Const>>> = n
            .input
            .iter()
            .map(|x| {
                if x.is_empty() {
                    Some(None)
                } else {
                    values.get(x.as_str()).map(Some)
                }
            })
            .collect();
        match ins.and_then(|ins| consteval::eval(n, &ins)) {
            Some(outs) => {
                for (name, v) in n.output.iter().zip(outs) {
                    values.insert(name.as_str(), v);
                    finish(name, &mut values, &readers, &needed_set, &mut done);
                }
            }
            None => {
                left.push(n);
                left_reads.extend(n.input.iter().map(String::as_str));
            }
        }
        // Values whose last constant reader this was (the tract leftovers keep theirs).
        for x in n.input.iter().filter(|x| !x.is_empty()) {
            if let Some(r) = readers.get_mut(x.as_str()) {
                *r = r.saturating_sub(1);
            }
            if !left_reads.contains(x.as_str()) {
                finish(x, &mut values, &readers, &needed_set, &mut done);
            }
        }
    }
    for &name in needed {
        if !done.contains_key(name) {
            if let Some(v) = values.get(name) {
                done.insert(name, const_proto(name, v));
            }
        }
    }
    let from_tract: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|t| !done.contains_key(t))
        .collect();
    if !from_tract.is_empty() {
        let tensors = run_in_tract(model, &left, &from_tract, &inits, &values)?;
        drop(values);
        for (name, v) in from_tract.iter().zip(tensors.iter()) {
            match to_proto(name, v) {
                Some(t) => {
                    done.insert(name, t);
                }
                None => return Ok(None),
            }
        }
    }
    Ok(Some(
        needed.iter().filter_map(|name| done.remove(name)).collect(),
    ))
}

/// Once no constant node still reads `name`: a needed value becomes its initializer, any other
/// value is dropped.
fn finish<'a>(
    name: &'a str,
    values: &mut HashMap<&'a str, Const>,
    readers: &HashMap<&str, usize>,
    needed: &HashSet<&str>,
    done: &mut HashMap<&'a str, TensorProto>,
) {
    if readers.get(name).copied().unwrap_or(0) > 0 {
        return;
    }
    if let Some(v) = values.remove(name) {
        if needed.contains(name) {
            done.insert(name, const_proto(name, &v));
        }
    }
}

/// An initializer as a [`Const`], for the element types consteval handles (float, int64).
fn initializer_value(t: &TensorProto) -> Option<Const> {
    match t.data_type() {
        1 => to_f32(t).ok().map(Const::F32),
        7 => to_i64(t).ok().map(Const::I64),
        _ => None,
    }
}

fn const_proto(name: &str, v: &Const) -> TensorProto {
    match v {
        Const::F32(a) => {
            let dims: Vec<i64> = a.shape().iter().map(|&d| d as i64).collect();
            match a.as_slice() {
                Some(s) => f32_tensor(name, &dims, s),
                None => f32_tensor(name, &dims, &a.iter().copied().collect::<Vec<_>>()),
            }
        }
        Const::I64(a) => {
            let dims: Vec<i64> = a.shape().iter().map(|&d| d as i64).collect();
            i64_tensor(name, &dims, &a.iter().copied().collect::<Vec<_>>())
        }
    }
}

/// Evaluate `nodes` (constant-only, in graph order) with tract; returns the `wanted` tensors.
/// Their inputs are the model's initializers or values consteval computed.
fn run_in_tract(
    model: &ModelProto,
    nodes: &[&NodeProto],
    wanted: &[&str],
    inits: &HashMap<&str, &TensorProto>,
    values: &HashMap<&str, Const>,
) -> Result<TVec<TValue>> {
    let made: HashSet<&str> = nodes
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .collect();
    let mut read: Vec<&str> = Vec::new();
    for x in nodes.iter().flat_map(|n| n.input.iter()) {
        if !x.is_empty() && !made.contains(x.as_str()) && !read.contains(&x.as_str()) {
            read.push(x);
        }
    }
    let mut sub = ModelProto {
        ir_version: model.ir_version,
        opset_import: model.opset_import.clone(),
        ..Default::default()
    };
    let mut g = crate::onnx::proto::GraphProto {
        name: Some("constants".into()),
        node: nodes.iter().map(|&n| n.clone()).collect(),
        ..Default::default()
    };
    for name in read {
        match (values.get(name), inits.get(name)) {
            (Some(v), _) => g.initializer.push(const_proto(name, v)),
            (None, Some(t)) => g.initializer.push((*t).clone()),
            (None, None) => {}
        }
    }
    g.output = wanted
        .iter()
        .map(|n| ValueInfoProto {
            name: Some(n.to_string()),
            ..Default::default()
        })
        .collect();
    sub.graph = Some(g);
    let bytes = crate::onnx::encode(&sub);
    let budget = crate::guard::Budget::for_file(model.encoded_len());
    crate::guard::check_model(&sub, "the model", budget)?;
    crate::guard::in_tract("the model", "constant folding", || {
        tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_runnable())
            .and_then(|p| p.run(tvec![]))
    })?
    .map_err(|e| runtime_err!("folding the constant weights failed: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::attr::{make_int, make_ints};
    use crate::onnx::proto::{GraphProto, OperatorSetIdProto};

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(output.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    #[test]
    fn rust_and_tract_share_the_work_and_every_needed_value_is_folded() {
        // d = [relu(W), relu(-W)] is Rust's; Sin is not, so e = sin(d) and f = e^T (which
        // reads e) go to tract; the rest of the graph reads d and f.
        let w = [1.5f32, -2.0, 0.0, -0.25, 3.0, -1.0];
        let mut concat = node("Concat", &["a", "c"], "d");
        concat.attribute.push(make_int("axis", 1));
        let mut tr = node("Transpose", &["e"], "f");
        tr.attribute.push(make_ints("perm", &[1, 0]));
        let graph = GraphProto {
            name: Some("g".into()),
            node: vec![
                node("Relu", &["W"], "a"),
                node("Neg", &["W"], "b"),
                node("Relu", &["b"], "c"),
                concat,
                node("Sin", &["d"], "e"),
                tr,
                node("MatMul", &["x", "f"], "y"),
                node("Mul", &["x", "d"], "z"),
            ],
            initializer: vec![f32_tensor("W", &[2, 3], &w)],
            output: ["y", "z"]
                .iter()
                .map(|n| ValueInfoProto {
                    name: Some(n.to_string()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(17),
            }],
            graph: Some(graph),
            ..Default::default()
        };
        let folded = fold_constants(model).expect("folds");
        let g = folded.graph.expect("graph");
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type()).collect();
        assert_eq!(ops, ["MatMul", "Mul"], "only the nodes that read x stay");
        let init = |name: &str| {
            let t = g.initializer.iter().find(|t| t.name() == name);
            to_f32(t.unwrap_or_else(|| panic!("{name} not folded"))).expect("f32")
        };
        assert!(
            g.initializer.iter().all(|t| t.name() != "W"),
            "W is no longer read"
        );
        let relu = |v: f32| v.max(0.0);
        let d: Vec<f32> = (0..2)
            .flat_map(|r| {
                let row = &w[r * 3..r * 3 + 3];
                row.iter()
                    .map(|&v| relu(v))
                    .chain(row.iter().map(|&v| relu(-v)))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(init("d").shape(), [2, 6]);
        assert_eq!(init("d").iter().copied().collect::<Vec<_>>(), d);
        let f = init("f");
        assert_eq!(f.shape(), [6, 2]);
        for i in 0..6 {
            for j in 0..2 {
                let want = d[j * 6 + i].sin();
                assert!(
                    (f[[i, j]] - want).abs() <= 1e-6,
                    "f[{i},{j}] {} vs {want}",
                    f[[i, j]]
                );
            }
        }
    }
}
