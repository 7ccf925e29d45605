//! Which tensors are known to be non-negative (or non-positive): the relevance rules skip the
//! sign path of a linear layer whose input part is known to be zero.

use std::collections::HashMap;

use crate::error::Result;
use crate::ir::{Graph, Node};
use crate::rules::rule_for;

/// What is known of the sign of every element of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    NonNeg,
    NonPos,
    Any,
}

/// Signs by tensor name.
pub type Signs = HashMap<String, Sign>;

/// Propagate signs forward through the graph with each op's rule.
pub fn infer_signs(graph: &Graph) -> Result<Signs> {
    let mut signs = Signs::new();
    for ix in graph.topo_order()? {
        let Node::Op(node) = &graph.g[ix] else {
            continue;
        };
        let ins: Vec<Sign> = node
            .input
            .iter()
            .map(|t| match constant_sign(graph, t) {
                Sign::Any => signs.get(t).copied().unwrap_or(Sign::Any),
                known => known,
            })
            .collect();
        let s = rule_for(node).map_or(Sign::Any, |r| r.sign(node, &ins));
        for o in &node.output {
            signs.insert(o.clone(), s);
        }
    }
    Ok(signs)
}

/// The sign of a small constant (an initializer or a Constant node of at most 64 values: a
/// Clip's bounds, say) from its values; `Any` for anything else. Weights are not read.
fn constant_sign(graph: &Graph, tensor: &str) -> Sign {
    let value = match graph.producer_op(tensor) {
        Some(n) if n.op_type() == "Constant" => {
            crate::onnx::attr::tensor(n, "value").ok().flatten()
        }
        _ => graph.initializer(tensor),
    };
    let small = value.filter(|t| t.dims.iter().product::<i64>() <= 64);
    let Some(v) = small.and_then(|t| crate::onnx::tensor::to_f32(t).ok()) else {
        return Sign::Any;
    };
    if v.iter().all(|&x| x >= 0.0) {
        Sign::NonNeg
    } else if v.iter().all(|&x| x <= 0.0) {
        Sign::NonPos
    } else {
        Sign::Any
    }
}

/// The sign shared by all of `signs`, if they agree (used by data-moving ops).
pub fn common(signs: &[Sign]) -> Sign {
    match signs.split_first() {
        Some((&first, rest)) if rest.iter().all(|&s| s == first) => first,
        _ => Sign::Any,
    }
}

/// The sign of a node's first input: for ops that move or select values of one tensor.
pub fn of_first(signs: &[Sign]) -> Sign {
    signs.first().copied().unwrap_or(Sign::Any)
}
