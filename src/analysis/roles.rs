//! Which tensor is explained, which input is explained, which nodes relevance flows through,
//! and the roles of the linear layers (the one making the logits, the ones reading the input).

use std::collections::{HashSet, VecDeque};

use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use super::{Dim, Facts};
use crate::bad_input;
use crate::error::Result;
use crate::ir::{Graph, Node};
use crate::rules::{rule_for, Kind};

/// The roles found in a graph.
#[derive(Clone, Debug)]
pub struct Roles {
    /// The explained graph input.
    pub input: String,
    /// The explained tensor: `[N, classes]` logits.
    pub logits: String,
    /// Number of classes.
    pub classes: i64,
    /// Rank of the logits: 2, or more with trailing axes of size 1.
    pub logits_rank: usize,
    /// The linear node that makes the logits, if one does.
    pub output_layer: Option<NodeIndex>,
    /// Linear nodes whose data input is the model input (possibly through shape-only ops).
    pub input_layers: HashSet<NodeIndex>,
    /// Operators between the input and the logits, through which relevance flows.
    pub path: HashSet<NodeIndex>,
}

fn float_edge(facts: &Facts, tensor: &str) -> bool {
    facts
        .get(tensor)
        .is_none_or(|f| f.dtype.is_none() || f.is_float())
}

/// Find the roles. `input` and `output` choose among several graph inputs or outputs.
pub fn find_roles(
    graph: &Graph,
    facts: &Facts,
    input: Option<&str>,
    output: Option<&str>,
    origin: &str,
) -> Result<Roles> {
    let runtime = graph.runtime_inputs();
    let input = match (input, runtime.as_slice()) {
        (Some(name), _) if runtime.contains(&name) => name.to_string(),
        (Some(name), _) => {
            return Err(bad_input!(
                "{origin}: the model has no input named '{name}'; its inputs are: {}",
                runtime.join(", ")
            ))
        }
        (None, [one]) => one.to_string(),
        (None, []) => return Err(bad_input!("{origin}: the model has no runtime input")),
        (None, many) => {
            return Err(bad_input!(
                "{origin}: the model has {} inputs ({}); choose the one to explain with \
                 --input NAME",
                many.len(),
                many.join(", ")
            ))
        }
    };
    let outs: Vec<&str> = graph.outputs.iter().map(|o| o.name()).collect();
    let mut logits = match (output, outs.as_slice()) {
        (Some(name), _) if outs.contains(&name) => name.to_string(),
        (Some(name), _) => {
            return Err(bad_input!(
                "{origin}: the model has no output named '{name}'; its outputs are: {}",
                outs.join(", ")
            ))
        }
        (None, [one]) => one.to_string(),
        (None, many) => {
            return Err(bad_input!(
                "{origin}: the model has {} outputs ({}); choose the one to explain with \
                 --explain-output NAME",
                many.len(),
                many.join(", ")
            ))
        }
    };
    // Explaining a Softmax output explains the logits that feed it.
    while let Some(node) = graph.producer_op(&logits) {
        match rule_for(node) {
            Some(r) if r.kind() == Kind::OutputNormalizer && !node.input.is_empty() => {
                logits = node.input[0].clone()
            }
            _ => break,
        }
    }
    let shape = facts.get(&logits).and_then(|f| f.shape.clone());
    let classes = match shape.as_deref() {
        Some([_, Dim::Known(c)]) => *c,
        // [N, C, 1, 1]: a convolutional head without the final Flatten (SqueezeNet).
        Some([_, Dim::Known(c), rest @ ..]) if rest.iter().all(|d| *d == Dim::Known(1)) => *c,
        other => {
            let shown = other
                .map(|s| {
                    let d: Vec<String> = s.iter().map(|d| d.to_string()).collect();
                    format!("[{}]", d.join(", "))
                })
                .unwrap_or_else(|| "unknown".into());
            return Err(bad_input!(
                "{origin}: the explained output '{logits}' has shape {shown}{}; onnx-rap \
                 explains classifiers whose output is a [batch, classes] tensor of logits (or \
                 [batch, classes, 1, 1])",
                if other.is_none() {
                    facts.why_unknown()
                } else {
                    String::new()
                }
            ));
        }
    };

    // Forward from the input along float tensors, backward from the logits.
    let start = graph
        .producer(&input)
        .ok_or_else(|| bad_input!("{origin}: input '{input}' is not in the graph"))?;
    let mut fwd = HashSet::new();
    let mut queue = VecDeque::from([start]);
    while let Some(ix) = queue.pop_front() {
        for e in graph.g.edges_directed(ix, Direction::Outgoing) {
            if float_edge(facts, &e.weight().tensor) && fwd.insert(e.target()) {
                queue.push_back(e.target());
            }
        }
    }
    let end = graph
        .producer(&logits)
        .ok_or_else(|| bad_input!("{origin}: output '{logits}' is not produced in the graph"))?;
    let mut bwd = HashSet::from([end]);
    let mut queue = VecDeque::from([end]);
    while let Some(ix) = queue.pop_front() {
        for e in graph.g.edges_directed(ix, Direction::Incoming) {
            if bwd.insert(e.source()) {
                queue.push_back(e.source());
            }
        }
    }
    let path: HashSet<NodeIndex> = fwd.intersection(&bwd).copied().collect();
    if !path.contains(&end) {
        return Err(bad_input!(
            "{origin}: output '{logits}' does not depend on input '{input}'; nothing to explain"
        ));
    }

    let is_linear = |ix: NodeIndex| {
        graph.g[ix]
            .op()
            .and_then(rule_for)
            .is_some_and(|r| r.kind() == Kind::Linear)
    };
    let output_layer = is_linear(end).then_some(end);
    let mut input_layers = HashSet::new();
    for &ix in &path {
        if !is_linear(ix) {
            continue;
        }
        let Some(node) = graph.g[ix].op() else {
            continue;
        };
        // Follow the data input back through shape-only ops.
        let mut t = node.input.first().cloned().unwrap_or_default();
        loop {
            if t == input {
                input_layers.insert(ix);
                break;
            }
            match graph.producer(&t).map(|p| &graph.g[p]) {
                Some(Node::Op(p))
                    if rule_for(p).is_some_and(|r| r.kind() == Kind::ShapeOnly)
                        && !p.input.is_empty() =>
                {
                    t = p.input[0].clone()
                }
                _ => break,
            }
        }
    }
    let logits_rank = shape.as_ref().map_or(2, |s| s.len());
    Ok(Roles {
        input,
        logits,
        classes,
        logits_rank,
        output_layer,
        input_layers,
        path,
    })
}
