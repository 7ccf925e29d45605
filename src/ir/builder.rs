//! Adding nodes and initializers to a [`Graph`] with unique names and correct edges.

use super::{Edge, Graph, Node};
use crate::bad_input;
use crate::error::Result;
use crate::onnx::proto::{AttributeProto, NodeProto, TensorProto};

/// Emits nodes named `{prefix}.{part}` (made unique) into a graph.
pub struct Builder<'g> {
    pub graph: &'g mut Graph,
}

impl<'g> Builder<'g> {
    pub fn new(graph: &'g mut Graph) -> Self {
        Builder { graph }
    }

    /// A name not used by any tensor or node yet, derived from `base`.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.graph.names.contains(&name) {
            k += 1;
            name = format!("{base}.{k}");
        }
        self.graph.names.insert(name.clone());
        name
    }

    /// Add an initializer named after `base`; returns its tensor name.
    pub fn constant(&mut self, base: &str, mut t: TensorProto) -> String {
        let name = self.fresh(base);
        t.name = Some(name.clone());
        let ix = self.graph.g.add_node(Node::Init(t));
        self.graph.producer.insert(name.clone(), ix);
        name
    }

    /// Add an operator `op_type` named `base` reading `inputs` ("" for an absent optional input)
    /// and making `n_out` outputs named `base`, `base.1`, ...; returns the output names.
    pub fn op(
        &mut self,
        op_type: &str,
        base: &str,
        inputs: &[&str],
        n_out: usize,
        attrs: Vec<AttributeProto>,
    ) -> Result<Vec<String>> {
        let name = self.fresh(base);
        let outputs: Vec<String> = (0..n_out)
            .map(|k| {
                if k == 0 {
                    name.clone()
                } else {
                    self.fresh(&format!("{name}.{k}"))
                }
            })
            .collect();
        let mut sources = Vec::new();
        for (slot, inp) in inputs.iter().enumerate() {
            if inp.is_empty() {
                continue;
            }
            let from = self.graph.producer(inp).ok_or_else(|| {
                bad_input!("internal: node '{name}' ({op_type}) reads unknown tensor '{inp}'")
            })?;
            sources.push((from, slot, inp.to_string()));
        }
        let node = NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            name: Some(name),
            op_type: Some(op_type.to_string()),
            attribute: attrs,
            ..Default::default()
        };
        let ix = self.graph.g.add_node(Node::Op(node));
        for o in &outputs {
            self.graph.producer.insert(o.clone(), ix);
        }
        for (from, slot, tensor) in sources {
            self.graph.g.add_edge(from, ix, Edge { tensor, slot });
        }
        Ok(outputs)
    }

    /// Like [`Builder::op`] with one output.
    pub fn op1(
        &mut self,
        op_type: &str,
        base: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> Result<String> {
        Ok(self
            .op(op_type, base, inputs, 1, attrs)?
            .pop()
            .expect("one output"))
    }
}
