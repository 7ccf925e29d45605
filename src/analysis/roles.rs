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
    /// The tensor whose relevance is the explanation: the input itself, or for integer token
    /// ids the output of their embedding lookup.
    pub explained: String,
    /// The embedding lookup of a token input, when the explained input is token ids.
    pub embedding: Option<Embedding>,
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

/// The embedding lookup that reads a token input: `Gather(table, ids)` with a constant float
/// table, possibly behind a Cast of the ids.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// The Gather's output `[N, T, D]`: relevance is taken there.
    pub output: String,
    /// The table (an initializer) and its number of rows (the vocabulary).
    pub table: String,
    pub rows: i64,
    /// Elements in the table, to pick the word embeddings among several lookups.
    pub size: i64,
}

fn is_integer(facts: &Facts, tensor: &str) -> bool {
    facts.get(tensor).is_some_and(|f| f.is_integer())
}

/// The initializer behind `t` (through Identity nodes), with its dimensions.
fn constant_table<'g>(graph: &'g Graph, t: &'g str) -> Option<(&'g str, Vec<i64>)> {
    let mut t = t;
    loop {
        if let Some(init) = graph.initializer(t) {
            let float = matches!(init.data_type(), 1 | 10 | 11 | 16);
            return float.then(|| (t, init.dims.clone()));
        }
        match graph.producer_op(t) {
            Some(n) if n.op_type() == "Identity" && !n.input.is_empty() => t = &n.input[0],
            _ => return None,
        }
    }
}

/// The largest embedding lookup of integer input `ids`, if any reads it.
pub fn embedding_of(graph: &Graph, ids: &str) -> Option<Embedding> {
    let mut reads = vec![ids.to_string()];
    // Ids cast to another integer type first (int32 -> int64) are the same ids.
    for (ix, _) in graph.consumers(ids) {
        if let Some(n) = graph.g[ix].op() {
            if n.op_type() == "Cast" {
                reads.extend(n.output.iter().cloned());
            }
        }
    }
    let mut best: Option<Embedding> = None;
    for t in &reads {
        for (ix, slot) in graph.consumers(t) {
            let Some(n) = graph.g[ix].op() else {
                continue;
            };
            if n.op_type() != "Gather" || slot != 1 || n.output.is_empty() {
                continue;
            }
            let axis = crate::onnx::attr::int(n, "axis")
                .ok()
                .flatten()
                .unwrap_or(0);
            let Some((table, dims)) = n
                .input
                .first()
                .and_then(|w| constant_table(graph, w.as_str()))
            else {
                continue;
            };
            if axis != 0 || dims.len() != 2 {
                continue;
            }
            let size = dims.iter().product::<i64>();
            if best.as_ref().is_none_or(|b| size > b.size) {
                best = Some(Embedding {
                    output: n.output[0].clone(),
                    table: table.to_string(),
                    rows: dims[0],
                    size,
                });
            }
        }
    }
    best
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
    // Token inputs: integer ids read by an embedding lookup. With no float input, the one
    // read by the largest table (the word embeddings) is explained by default.
    let tokens: Vec<(&str, Embedding)> = runtime
        .iter()
        .filter(|t| is_integer(facts, t))
        .filter_map(|t| Some((*t, embedding_of(graph, t)?)))
        .collect();
    let floats = runtime.iter().filter(|t| !is_integer(facts, t)).count();
    let word = (input.is_none() && floats == 0 && runtime.len() > 1)
        .then(|| tokens.iter().max_by_key(|(_, e)| e.size).map(|(t, _)| *t))
        .flatten();
    let input = match (input.or(word), runtime.as_slice()) {
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
                 [batch, classes, 1, 1]); for a dense output (a segmentation or saliency map) \
                 `--reduce-output mean` (compile, explain) explains its per-sample mean",
                if other.is_none() {
                    facts.why_unknown()
                } else {
                    String::new()
                }
            ));
        }
    };

    let embedding =
        if is_integer(facts, &input) {
            let e =
                embedding_of(graph, &input).ok_or_else(|| {
                    bad_input!(
                "{origin}: input '{input}' holds integers and no embedding lookup reads it \
                 (a Gather from a constant float table [vocabulary, hidden]); onnx-rap explains \
                 float inputs and token ids{}",
                if runtime.len() > 1 {
                    format!("; choose another with --input NAME ({})", runtime.join(", "))
                } else {
                    String::new()
                }
            )
                })?;
            Some(e)
        } else {
            None
        };
    let explained = embedding
        .as_ref()
        .map_or_else(|| input.clone(), |e| e.output.clone());

    // Forward from the explained tensor along float tensors, through nodes that make a float
    // (comparisons, IsNaN and Shape read activations but carry no relevance), backward
    // from the logits.
    let start = graph
        .producer(&explained)
        .ok_or_else(|| bad_input!("{origin}: input '{input}' is not in the graph"))?;
    let makes_float = |ix: NodeIndex| {
        let outs = graph.g[ix].outputs();
        outs.is_empty() || outs.iter().any(|o| float_edge(facts, o))
    };
    let mut fwd = HashSet::new();
    let mut queue = VecDeque::from([start]);
    while let Some(ix) = queue.pop_front() {
        for e in graph.g.edges_directed(ix, Direction::Outgoing) {
            let from_explained = ix != start || e.weight().tensor == explained;
            if from_explained
                && float_edge(facts, &e.weight().tensor)
                && makes_float(e.target())
                && fwd.insert(e.target())
            {
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
    // Embeddings are not bounded pixel values: no z^B input layer reads them.
    for &ix in path.iter().filter(|_| embedding.is_none()) {
        if !is_linear(ix) {
            continue;
        }
        let Some(node) = graph.g[ix].op() else {
            continue;
        };
        // Follow the data input back through shape-only ops.
        let mut t = node.input.first().cloned().unwrap_or_default();
        loop {
            if t == explained {
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
        explained,
        embedding,
        logits,
        classes,
        logits_rank,
        output_layer,
        input_layers,
        path,
    })
}
