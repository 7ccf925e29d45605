//! Normalisations written out op by op, recognised as the one op they compute (an analysis
//! view: `crate::canon`):
//! - **LayerNorm** as older exporters write it: `m = ReduceMean(x)`, `d = x - m`,
//!   `v = ReduceMean(d^2)` (`Pow(d, 2)` or `d * d`), `sd = Sqrt(v + eps)`, `d / sd` (or
//!   `d * Reciprocal(sd)`), then optionally `* gamma` and `+ beta` (constants) becomes
//!   `LayerNormalization(x, gamma, beta)` over the last axis;
//! - **RMSNorm**: `x * Reciprocal(Sqrt(ReduceMean(x^2) + eps))` (or `x / Sqrt(..)`,
//!   `x * (1 / Sqrt(..))`), optionally `* w`, becomes `RMSNormalization(x, w)` (opset 23's op).
//!
//! Every intermediate value must be read only inside the pattern, the reductions must be over
//! the last axis with the axis kept, and `eps`, `gamma`, `beta`, `w` must be constants.

use std::collections::HashMap;

use crate::analysis::Facts;
use crate::onnx::attr;
use crate::onnx::proto::{GraphProto, NodeProto};

/// One recognised normalisation: the canonical node replaces node `at`; `drop` are the other
/// nodes of the pattern.
pub struct Rewrite {
    pub at: usize,
    pub node: NodeProto,
    pub drop: Vec<usize>,
}

struct View<'a> {
    graph: &'a GraphProto,
    facts: &'a Facts,
    producer: HashMap<&'a str, usize>,
    readers: HashMap<&'a str, Vec<usize>>,
}

impl<'a> View<'a> {
    fn new(graph: &'a GraphProto, facts: &'a Facts) -> Self {
        let mut producer = HashMap::new();
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (k, n) in graph.node.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), k);
            }
            for i in &n.input {
                readers.entry(i.as_str()).or_default().push(k);
            }
        }
        for o in &graph.output {
            // A graph output is read from outside: it is never an intermediate.
            readers.entry(o.name()).or_default().push(usize::MAX);
        }
        View {
            graph,
            facts,
            producer,
            readers,
        }
    }

    /// The node making `t` if it is `op` (default domain).
    fn made_by(&self, t: &str, op: &str) -> Option<(usize, &'a NodeProto)> {
        let &k = self.producer.get(t)?;
        let n = &self.graph.node[k];
        (n.op_type() == op && n.domain().is_empty()).then_some((k, n))
    }

    /// The single reader of `t` when it is `op`.
    fn only_reader(&self, t: &str, op: &str) -> Option<(usize, &'a NodeProto)> {
        let rs = self.readers.get(t)?;
        let [k] = rs.as_slice() else {
            return None;
        };
        let n = self.graph.node.get(*k)?;
        (n.op_type() == op && n.domain().is_empty()).then_some((*k, n))
    }

    /// Whether `t` is read by exactly the nodes `by` (in any order, with repeats).
    fn read_only_by(&self, t: &str, by: &[usize]) -> bool {
        let mut rs = self.readers.get(t).cloned().unwrap_or_default();
        rs.sort_unstable();
        rs.dedup();
        let mut want = by.to_vec();
        want.sort_unstable();
        want.dedup();
        rs == want
    }

    /// The values of a constant tensor: an initializer, a Constant node, or a value the
    /// inference computed.
    fn constant(&self, t: &str) -> Option<ndarray::ArrayD<f32>> {
        if let Some(init) = self.graph.initializer.iter().find(|i| i.name() == t) {
            return crate::onnx::tensor::to_f32(init).ok();
        }
        if let Some((_, n)) = self.made_by(t, "Constant") {
            let v = attr::tensor(n, "value").ok().flatten()?;
            return crate::onnx::tensor::to_f32(v).ok();
        }
        self.facts.get(t).and_then(|f| f.value.clone())
    }

    fn is_constant(&self, t: &str) -> bool {
        self.graph.initializer.iter().any(|i| i.name() == t)
            || self.made_by(t, "Constant").is_some()
            || self.facts.get(t).is_some_and(|f| f.value.is_some())
    }

    fn scalar(&self, t: &str) -> Option<f32> {
        let v = self.constant(t)?;
        (v.len() == 1).then(|| v.iter().next().copied()).flatten()
    }

    /// The other input of a binary node, given one of them.
    fn other<'n>(n: &'n NodeProto, t: &str) -> Option<&'n str> {
        match n.input.as_slice() {
            [a, b] if a == t => Some(b),
            [a, b] if b == t => Some(a),
            _ => None,
        }
    }

    /// A ReduceMean over the last axis of its input, axis kept.
    fn mean_last(&self, n: &NodeProto) -> bool {
        let x = n.input.first().map(String::as_str).unwrap_or("");
        let Some(rank) = self
            .facts
            .get(x)
            .and_then(|f| f.shape.as_ref())
            .map(Vec::len)
        else {
            return false;
        };
        let axes: Vec<i64> = match n.input.get(1).filter(|s| !s.is_empty()) {
            Some(t) => match self.constant(t) {
                Some(v) => v.iter().map(|&a| a as i64).collect(),
                None => return false,
            },
            None => attr::ints(n, "axes").ok().flatten().unwrap_or_default(),
        };
        let keep = attr::int(n, "keepdims").ok().flatten().unwrap_or(1) != 0;
        keep && rank >= 2 && matches!(axes.as_slice(), [a] if *a == -1 || *a == rank as i64 - 1)
    }

    /// `t = d^2` as `Pow(d, 2)` or `Mul(d, d)`: (node, d).
    fn square(&self, t: &str) -> Option<(usize, &'a str)> {
        if let Some((k, n)) = self.made_by(t, "Pow") {
            return (n.input.len() == 2 && self.scalar(&n.input[1]) == Some(2.0))
                .then(|| (k, n.input[0].as_str()));
        }
        let (k, n) = self.made_by(t, "Mul")?;
        (n.input.len() == 2 && n.input[0] == n.input[1]).then(|| (k, n.input[0].as_str()))
    }

    /// From a Sqrt node: `sd = Sqrt(ReduceMean(s^2) + eps)`; returns (s, eps, the node making
    /// `s^2`, the nodes used: the Add, the ReduceMean and that node).
    fn root_mean_square(&self, sqrt: &NodeProto) -> Option<(&'a str, f32, usize, Vec<usize>)> {
        let (ka, add) = self.made_by(sqrt.input.first()?, "Add")?;
        let (v, eps) = match add.input.as_slice() {
            [a, b] if self.scalar(b).is_some() => (a.as_str(), self.scalar(b)?),
            [a, b] if self.scalar(a).is_some() => (b.as_str(), self.scalar(a)?),
            _ => return None,
        };
        let (km, mean) = self.made_by(v, "ReduceMean")?;
        if !self.mean_last(mean) {
            return None;
        }
        let (kp, s) = self.square(mean.input.first()?)?;
        let nodes = vec![ka, km, kp];
        for &k in &nodes {
            let out = self.graph.node[k].output.first()?;
            if self.readers.get(out.as_str()).map(Vec::len) != Some(1) {
                return None;
            }
        }
        Some((s, eps, kp, nodes))
    }

    /// `t / sd` read from the Sqrt's output `sd`: as Div(t, sd), Mul(t, Reciprocal(sd)) or
    /// Mul(t, Div(1, sd)). Returns (the node making the quotient, t, the nodes used).
    fn divided(&self, sd: &str) -> Option<(usize, &'a str, Vec<usize>)> {
        let rs = self.readers.get(sd)?;
        let [k] = rs.as_slice() else {
            return None;
        };
        let n = self.graph.node.get(*k)?;
        match n.op_type() {
            "Div" if n.input.len() == 2 && n.input[1] == sd => {
                let t = n.input[0].as_str();
                if self.scalar(t) == Some(1.0) {
                    let r = n.output.first()?;
                    let (km, m) = self.only_reader(r, "Mul")?;
                    let t = View::other(m, r)?;
                    return Some((km, t, vec![*k, km]));
                }
                Some((*k, t, vec![*k]))
            }
            "Reciprocal" => {
                let r = n.output.first()?;
                let (km, m) = self.only_reader(r, "Mul")?;
                let t = View::other(m, r)?;
                Some((km, t, vec![*k, km]))
            }
            _ => None,
        }
    }

    /// An optional `* c` then (with `bias`) `+ c` with constants after `t` (its only reader
    /// each): (scale, bias, the output, the nodes).
    fn affine(
        &self,
        t: &'a str,
        with_bias: bool,
    ) -> (Option<String>, Option<String>, &'a str, Vec<usize>) {
        let mut nodes = Vec::new();
        let mut y = t;
        let mut scale = None;
        if let Some((k, n)) = self.only_reader(y, "Mul") {
            if let Some(c) = View::other(n, y).filter(|c| self.is_constant(c)) {
                scale = Some(c.to_string());
                nodes.push(k);
                y = n.output[0].as_str();
            }
        }
        let mut bias = None;
        if !with_bias {
            return (scale, bias, y, nodes);
        }
        if let Some((k, n)) = self.only_reader(y, "Add") {
            if let Some(c) = View::other(n, y).filter(|c| self.is_constant(c)) {
                bias = Some(c.to_string());
                nodes.push(k);
                y = n.output[0].as_str();
            }
        }
        (scale, bias, y, nodes)
    }
}

fn canonical_node(op: &str, name: &str, inputs: Vec<String>, output: &str, eps: f32) -> NodeProto {
    let mut node = NodeProto {
        input: inputs,
        output: vec![output.to_string()],
        name: Some(name.to_string()),
        op_type: Some(op.into()),
        ..Default::default()
    };
    node.attribute.push(attr::make_int("axis", -1));
    node.attribute.push(attr::make_float("epsilon", eps));
    node
}

/// Every decomposed LayerNorm and RMSNorm of `graph`.
pub fn norms(graph: &GraphProto, facts: &Facts) -> Vec<Rewrite> {
    let v = View::new(graph, facts);
    let mut out = Vec::new();
    let mut used = vec![false; graph.node.len()];
    for (ks, sqrt) in graph.node.iter().enumerate() {
        if sqrt.op_type() != "Sqrt" || !sqrt.domain().is_empty() || sqrt.output.is_empty() {
            continue;
        }
        let Some((s, eps, square, mut nodes)) = v.root_mean_square(sqrt) else {
            continue;
        };
        nodes.push(ks);
        let Some((kq, t, more)) = v.divided(&sqrt.output[0]) else {
            continue;
        };
        nodes.extend(more);
        let q = graph.node[kq].output[0].as_str();
        if t != s {
            continue;
        }
        // LayerNorm: the squared value is the centred input `x - ReduceMean(x)`.
        let centred = v.made_by(s, "Sub").and_then(|(kd, d)| {
            let x = d.input.first()?.as_str();
            let (km, m) = v.made_by(d.input.get(1)?, "ReduceMean")?;
            (v.mean_last(m) && m.input.first().map(String::as_str) == Some(x)).then_some((
                kd,
                km,
                x,
                m.output.first()?.as_str(),
            ))
        });
        let (op, x) = match centred {
            Some((kd, km, x, mean)) => {
                // d is read by the square and the division only; the mean by d only.
                if !v.read_only_by(s, &[square, kq]) || !v.read_only_by(mean, &[kd]) {
                    continue;
                }
                nodes.extend([kd, km]);
                ("LayerNormalization", x)
            }
            None => {
                // RMSNorm: x is read by the square and the final product, and by others
                // outside (a residual): nothing to check.
                ("RMSNormalization", s)
            }
        };
        let (scale, bias, y, aff) = v.affine(q, op == "LayerNormalization");
        nodes.extend(&aff);
        if nodes.iter().any(|&k| used[k]) {
            continue;
        }
        for &k in &nodes {
            used[k] = true;
        }
        let last = *nodes.iter().max().expect("a pattern has nodes");
        let mut inputs = vec![x.to_string(), scale.unwrap_or_default()];
        if op == "LayerNormalization" {
            inputs.push(bias.unwrap_or_default());
        }
        out.push(Rewrite {
            at: last,
            node: canonical_node(op, sqrt.name(), inputs, y, eps),
            drop: nodes.into_iter().filter(|&k| k != last).collect(),
        });
    }
    out
}
