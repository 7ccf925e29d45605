//! ModelProto -> [`Model`]. Checks what the graph needs to be usable: every tensor read is
//! produced by exactly one node, input or initializer, and the graph has no cycle.

use super::{Edge, Graph, Model, Node};
use crate::bad_input;
use crate::error::Result;
use crate::onnx::proto::ModelProto;

/// Build the IR of a decoded model. `origin` (the file name) prefixes errors.
pub fn import(model: &ModelProto, origin: &str) -> Result<Model> {
    let mut rest = model.clone();
    let mut gp = rest
        .graph
        .take()
        .ok_or_else(|| bad_input!("{origin}: the model has no graph"))?;
    let nodes = std::mem::take(&mut gp.node);
    let inits = std::mem::take(&mut gp.initializer);
    let mut graph = Graph {
        inputs: std::mem::take(&mut gp.input),
        outputs: std::mem::take(&mut gp.output),
        value_info: std::mem::take(&mut gp.value_info),
        ..Default::default()
    };
    graph.rest = gp;

    let define = |graph: &mut Graph, name: &str, ix, what: &str| -> Result<()> {
        if name.is_empty() {
            return Ok(());
        }
        if graph.producer.insert(name.to_string(), ix).is_some() {
            return Err(bad_input!(
                "{origin}: tensor '{name}' is defined twice (again by {what}); \
                 every tensor must have exactly one producer"
            ));
        }
        graph.names.insert(name.to_string());
        Ok(())
    };

    for t in inits {
        let name = t.name().to_string();
        let ix = graph.g.add_node(Node::Init(t));
        define(&mut graph, &name, ix, "an initializer")?;
    }
    for vi in graph.inputs.clone() {
        if graph.producer.contains_key(vi.name()) {
            continue; // an initializer listed as an input (IR < 4 style)
        }
        let ix = graph.g.add_node(Node::Input(vi.name().to_string()));
        define(&mut graph, vi.name(), ix, "a graph input")?;
    }
    let mut op_ix = Vec::with_capacity(nodes.len());
    for n in nodes {
        let outs = n.output.clone();
        let label = format!("node '{}' ({})", n.name(), n.op_type());
        if !n.name().is_empty() {
            graph.names.insert(n.name().to_string());
        }
        let ix = graph.g.add_node(Node::Op(n));
        for o in &outs {
            define(&mut graph, o, ix, &label)?;
        }
        op_ix.push(ix);
    }
    for &ix in &op_ix {
        let Node::Op(n) = &graph.g[ix] else { continue };
        let reads: Vec<(usize, String)> = n
            .input
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(i, s)| (i, s.clone()))
            .collect();
        let label = format!("node '{}' ({})", n.name(), n.op_type());
        for (slot, tensor) in reads {
            let Some(&from) = graph.producer.get(&tensor) else {
                return Err(bad_input!(
                    "{origin}: {label} reads tensor '{tensor}', which no node, initializer or \
                     graph input produces; the model is incomplete"
                ));
            };
            graph.g.add_edge(from, ix, Edge { tensor, slot });
        }
    }
    for o in &graph.outputs {
        if !graph.producer.contains_key(o.name()) {
            return Err(bad_input!(
                "{origin}: graph output '{}' is produced by no node, initializer or input",
                o.name()
            ));
        }
    }
    graph
        .topo_order()
        .map_err(|e| e.context(origin.to_string()))?;
    Ok(Model { graph, rest })
}
