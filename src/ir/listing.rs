//! A stable, readable text listing of a graph's nodes, one per line, for review and snapshots.

use std::fmt::Write;

use crate::onnx::proto::{AttributeProto, GraphProto};

fn attr_value(a: &AttributeProto) -> String {
    if let Some(i) = a.i {
        return i.to_string();
    }
    if let Some(f) = a.f {
        return format!("{f}");
    }
    if let Some(s) = &a.s {
        return format!("{:?}", String::from_utf8_lossy(s));
    }
    if let Some(t) = &a.t {
        return format!("tensor{:?}", t.dims);
    }
    if !a.ints.is_empty() {
        return format!("{:?}", a.ints);
    }
    if !a.floats.is_empty() {
        return format!("{:?}", a.floats);
    }
    "[]".into()
}

/// `name: Op(in, ...) -> out, ... {attr=value}` for every node, then the graph outputs.
pub fn listing(graph: &GraphProto) -> String {
    let mut s = String::new();
    for n in &graph.node {
        let attrs: Vec<String> = n
            .attribute
            .iter()
            .map(|a| format!("{}={}", a.name(), attr_value(a)))
            .collect();
        let _ = write!(
            s,
            "{}: {}({}) -> {}",
            n.name(),
            n.op_type(),
            n.input.join(", "),
            n.output.join(", ")
        );
        if !attrs.is_empty() {
            let _ = write!(s, " {{{}}}", attrs.join(", "));
        }
        s.push('\n');
    }
    let outs: Vec<&str> = graph.output.iter().map(|o| o.name()).collect();
    let _ = writeln!(s, "outputs: {}", outs.join(", "));
    s
}
