//! [`Model`] -> ModelProto, nodes in a stable topological order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use petgraph::stable_graph::NodeIndex;
use petgraph::Direction;

use super::{Graph, Model, Node};
use crate::bad_input;
use crate::error::Result;
use crate::onnx::proto::ModelProto;

/// Kahn's algorithm, always taking the ready node that was inserted first, so a graph that
/// was already sorted keeps its order. A cycle is an error naming one node on it.
pub(super) fn topo_order(graph: &Graph) -> Result<Vec<NodeIndex>> {
    let g = &graph.g;
    let mut indeg: HashMap<NodeIndex, usize> = HashMap::new();
    let mut ready = BinaryHeap::new();
    for ix in g.node_indices() {
        let d = g.edges_directed(ix, Direction::Incoming).count();
        indeg.insert(ix, d);
        if d == 0 {
            ready.push(Reverse(ix));
        }
    }
    let mut order = Vec::with_capacity(g.node_count());
    while let Some(Reverse(ix)) = ready.pop() {
        order.push(ix);
        for next in g.neighbors_directed(ix, Direction::Outgoing) {
            let d = indeg.get_mut(&next).expect("every node has a degree");
            *d -= 1;
            if *d == 0 {
                ready.push(Reverse(next));
            }
        }
    }
    if order.len() != g.node_count() {
        let stuck = g
            .node_indices()
            .find(|ix| indeg[ix] > 0)
            .and_then(|ix| g[ix].op())
            .map(|n| format!("node '{}' ({})", n.name(), n.op_type()))
            .unwrap_or_else(|| "a node".into());
        return Err(bad_input!(
            "the graph has a cycle through {stuck}; ONNX graphs must be acyclic"
        ));
    }
    Ok(order
        .into_iter()
        .filter(|ix| g[*ix].op().is_some())
        .collect())
}

/// Write the model back as a ModelProto.
pub fn export(model: &Model) -> Result<ModelProto> {
    let graph = &model.graph;
    let mut gp = graph.rest.clone();
    gp.node = graph
        .topo_order()?
        .into_iter()
        .filter_map(|ix| graph.g[ix].op().cloned())
        .collect();
    gp.initializer = graph
        .g
        .node_indices()
        .filter_map(|ix| match &graph.g[ix] {
            Node::Init(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    gp.input = graph.inputs.clone();
    gp.output = graph.outputs.clone();
    gp.value_info = graph.value_info.clone();
    let mut m = model.rest.clone();
    m.graph = Some(gp);
    Ok(m)
}
