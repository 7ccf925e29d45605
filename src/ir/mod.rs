//! The graph onnx-rap works on: a petgraph graph whose nodes are operators (plus one node per
//! graph input and per initializer) and whose edges are the tensors flowing between them.
//!
//! The ONNX protos stay the source of truth for everything the compiler does not touch: an
//! operator node keeps its whole `NodeProto` (attributes, doc string, metadata), an initializer
//! node its `TensorProto`, and the graph and model keep their other fields verbatim. Edges mirror
//! the `input` lists of the nodes, so the graph can be walked in both directions; export writes
//! the protos back in a stable topological order (the original order when it is valid).

mod builder;
mod export;
mod import;
mod listing;

use std::collections::{HashMap, HashSet};

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::onnx::proto::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};

pub use builder::Builder;

/// One node of the graph.
#[derive(Clone, Debug)]
pub enum Node {
    /// A graph input that is not an initializer: data fed at run time.
    Input(String),
    /// An initializer (a constant tensor stored in the model).
    Init(TensorProto),
    /// An operator.
    Op(NodeProto),
}

impl Node {
    /// The names of the tensors this node produces, in output order.
    pub fn outputs(&self) -> Vec<&str> {
        match self {
            Node::Input(n) => vec![n.as_str()],
            Node::Init(t) => vec![t.name()],
            Node::Op(p) => p.output.iter().map(String::as_str).collect(),
        }
    }

    /// The operator, if this node is one.
    pub fn op(&self) -> Option<&NodeProto> {
        match self {
            Node::Op(p) => Some(p),
            _ => None,
        }
    }
}

/// A tensor flowing from its producer to one consumer input.
#[derive(Clone, Debug)]
pub struct Edge {
    /// Tensor name.
    pub tensor: String,
    /// Which input of the consumer reads it.
    pub slot: usize,
}

/// A graph with its inputs, outputs and the GraphProto fields the compiler does not model.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Operators, inputs and initializers; edges are tensors.
    pub g: StableDiGraph<Node, Edge>,
    /// `graph.input` as written (old models also list their initializers here).
    pub inputs: Vec<ValueInfoProto>,
    /// `graph.output`.
    pub outputs: Vec<ValueInfoProto>,
    /// `graph.value_info`.
    pub value_info: Vec<ValueInfoProto>,
    /// The remaining GraphProto fields (name, doc string, annotations, sparse initializers,
    /// metadata), with nodes, initializers, inputs, outputs and value_info emptied.
    pub rest: GraphProto,
    producer: HashMap<String, NodeIndex>,
    names: HashSet<String>,
}

/// A model: its graph plus the ModelProto fields around it (opsets, metadata, functions...).
#[derive(Clone, Debug)]
pub struct Model {
    pub graph: Graph,
    /// The ModelProto without its graph.
    pub rest: ModelProto,
}

impl Model {
    /// Version of the default ("" or "ai.onnx") operator set.
    pub fn opset(&self) -> i64 {
        self.rest
            .opset_import
            .iter()
            .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
            .map(|o| o.version())
            .unwrap_or(1)
    }
}

impl Graph {
    /// The node producing a tensor.
    pub fn producer(&self, tensor: &str) -> Option<NodeIndex> {
        self.producer.get(tensor).copied()
    }

    /// The operator producing a tensor, if it is made by an operator.
    pub fn producer_op(&self, tensor: &str) -> Option<&NodeProto> {
        self.producer(tensor).and_then(|ix| self.g[ix].op())
    }

    /// The initializer of that name, if the tensor is one.
    pub fn initializer(&self, tensor: &str) -> Option<&TensorProto> {
        match self.producer(tensor).map(|ix| &self.g[ix]) {
            Some(Node::Init(t)) => Some(t),
            _ => None,
        }
    }

    /// The operators reading a tensor, with the input slot each reads it at.
    pub fn consumers(&self, tensor: &str) -> Vec<(NodeIndex, usize)> {
        let Some(p) = self.producer(tensor) else {
            return vec![];
        };
        let mut v: Vec<(NodeIndex, usize)> = self
            .g
            .edges_directed(p, Direction::Outgoing)
            .filter(|e| e.weight().tensor == tensor)
            .map(|e| (e.target(), e.weight().slot))
            .collect();
        v.sort();
        v
    }

    /// Names of the graph inputs fed at run time (inputs that are not initializers).
    pub fn runtime_inputs(&self) -> Vec<&str> {
        self.inputs
            .iter()
            .map(|v| v.name())
            .filter(|n| matches!(self.producer(n).map(|ix| &self.g[ix]), Some(Node::Input(_))))
            .collect()
    }

    /// Operator nodes in a stable topological order: the insertion order wherever it is valid.
    pub fn topo_order(&self) -> crate::error::Result<Vec<NodeIndex>> {
        export::topo_order(self)
    }

    /// Add a graph input fed at run time.
    pub fn add_runtime_input(&mut self, vi: ValueInfoProto) {
        let name = vi.name().to_string();
        let ix = self.g.add_node(Node::Input(name.clone()));
        self.producer.insert(name.clone(), ix);
        self.names.insert(name);
        self.inputs.push(vi);
    }

    /// Number of operator nodes.
    pub fn op_count(&self) -> usize {
        self.g.node_weights().filter(|n| n.op().is_some()).count()
    }

    /// Whether a name is used by a tensor or a node already.
    pub fn is_used(&self, name: &str) -> bool {
        self.names.contains(name)
    }
}

pub use export::export;
pub use import::import;
pub use listing::listing;
