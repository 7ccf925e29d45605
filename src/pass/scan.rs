//! Batches for models that fold the batch axis into others (torch's MultiheadAttention
//! reshapes `[T, N, E]` to `[T, N * heads, d]`; dynamo's `as_strided` Gathers): their
//! relevance graph is built for one sample (RAP's per-sample sums must know which values
//! belong to a sample), and this pass wraps that whole graph into the body of an ONNX `Scan`
//! over the batch axis. model_rap.onnx then takes the source model's batch again, and every
//! sample's outputs are exactly those of its batch-1 run (the same body runs once per sample).

use crate::error::Result;
use crate::ir::{self, Model};
use crate::onnx::attr::make_int;
use crate::onnx::proto::{
    attribute_proto::AttributeType, tensor_shape_proto::Dimension, AttributeProto, GraphProto,
    NodeProto, ValueInfoProto,
};
use crate::onnx::tensor::i64_tensor;

/// `vi` without its leading axis (a scan slice), renamed.
fn slice_info(vi: &ValueInfoProto, name: &str) -> ValueInfoProto {
    let mut v = vi.clone();
    v.name = Some(name.into());
    if let Some(s) = crate::onnx::declared_shape_mut(&mut v) {
        if !s.dim.is_empty() {
            s.dim.remove(0);
        }
    }
    v
}

/// `vi` with a symbolic leading axis `batch`.
fn batched(vi: &ValueInfoProto, batch: &str) -> ValueInfoProto {
    let mut v = vi.clone();
    if let Some(d) = crate::onnx::declared_shape_mut(&mut v).and_then(|s| s.dim.first_mut()) {
        *d = Dimension {
            dim_param: Some(batch.into()),
            ..Default::default()
        };
    }
    v
}

/// Wrap the single-sample `compiled` model into a `Scan` over axis 0 of every runtime input
/// (named `batch` in the new types).
pub fn over_batch(compiled: &Model, batch: &str, origin: &str) -> Result<Model> {
    let mut proto = ir::export(compiled)?;
    let opset = compiled.opset();
    let Some(g) = proto.graph.take() else {
        return ir::import(&proto, origin);
    };
    let inits: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    let runtime: Vec<ValueInfoProto> = g
        .input
        .iter()
        .filter(|v| !inits.contains(v.name()))
        .cloned()
        .collect();
    let mut body = GraphProto {
        name: Some("rap_sample".into()),
        initializer: g.initializer.clone(),
        ..Default::default()
    };
    // Axis 0, as Unsqueeze / Squeeze take it: an input from opset 13, an attribute before.
    const AXES: &str = "rap.scan.axis0";
    if opset >= 13 {
        body.initializer.push(i64_tensor(AXES, &[1], &[0]));
    }
    let (axes_input, axes_attr): (Vec<String>, Vec<AttributeProto>) = if opset >= 13 {
        (vec![AXES.to_string()], vec![])
    } else {
        (vec![], vec![crate::onnx::attr::make_ints("axes", &[0])])
    };
    // Names seen from outside (the Scan's inputs and outputs) are renamed inside the body:
    // a subgraph may not define a name of its enclosing graph again.
    let outer: std::collections::HashSet<String> = runtime
        .iter()
        .chain(&g.output)
        .map(|v| v.name().to_string())
        .collect();
    let inner = |t: &str| -> String {
        if outer.contains(t) {
            format!("{t}.rap_one")
        } else {
            t.to_string()
        }
    };
    // Each scan slice gets its batch axis of 1 back.
    for vi in &runtime {
        let slice = format!("{}.rap_sample", vi.name());
        body.input.push(slice_info(vi, &slice));
        body.node.push(NodeProto {
            input: [vec![slice], axes_input.clone()].concat(),
            output: vec![inner(vi.name())],
            name: Some(format!("rap.scan.in.{}", vi.name())),
            op_type: Some("Unsqueeze".into()),
            attribute: axes_attr.clone(),
            ..Default::default()
        });
    }
    body.node.extend(g.node.iter().map(|n| {
        let mut n = n.clone();
        for t in n.input.iter_mut().chain(n.output.iter_mut()) {
            *t = inner(t);
        }
        n
    }));
    for vi in &g.output {
        let slice = format!("{}.rap_sample", vi.name());
        body.node.push(NodeProto {
            input: [vec![inner(vi.name())], axes_input.clone()].concat(),
            output: vec![slice.clone()],
            name: Some(format!("rap.scan.out.{}", vi.name())),
            op_type: Some("Squeeze".into()),
            attribute: axes_attr.clone(),
            ..Default::default()
        });
        body.output.push(slice_info(vi, &slice));
    }
    let scan = NodeProto {
        input: runtime.iter().map(|v| v.name().to_string()).collect(),
        output: g.output.iter().map(|v| v.name().to_string()).collect(),
        name: Some("rap.scan".into()),
        op_type: Some("Scan".into()),
        attribute: vec![
            make_int("num_scan_inputs", runtime.len() as i64),
            AttributeProto {
                name: Some("body".into()),
                r#type: Some(AttributeType::Graph as i32),
                g: Some(body),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let outer = GraphProto {
        name: g.name.clone(),
        doc_string: g.doc_string.clone(),
        input: runtime.iter().map(|v| batched(v, batch)).collect(),
        output: g.output.iter().map(|v| batched(v, batch)).collect(),
        node: vec![scan],
        ..Default::default()
    };
    proto.graph = Some(outer);
    ir::import(&proto, origin)
}
