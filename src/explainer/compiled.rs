//! A model compiled for explaining in memory: the encoded graph with its relevance outputs
//! (and the explained logits as an output), and what a run needs to read them.

use std::collections::HashMap;

use ndarray::{ArrayD, Axis};

use super::meta::labels;
use super::verdict::LayerSum;
use crate::analysis::{find_roles, infer_facts, input_sample_dims};
use crate::error::{Error, Result};
use crate::ir;
use crate::onnx::proto::ValueInfoProto;
use crate::pass::{compile_with_facts, with_score, Options};

/// A model compiled in memory: the encoded graph with its relevance outputs
/// (and the explained logits as an output), and what the runs need to read them.
pub struct Compiled {
    pub bytes: Vec<u8>,
    /// The compiled graph's outputs, in order.
    pub names: Vec<String>,
    /// The explained logits' tensor.
    pub logits: String,
    /// The explained input and its dims per sample.
    pub input: String,
    pub sample: Vec<usize>,
    pub classes: usize,
    pub labels: Option<Vec<String>>,
    pub facts: crate::analysis::Facts,
    pub roles: crate::analysis::Roles,
    /// The model's runtime inputs in order, each with whether it holds integers.
    pub inputs: Vec<(String, bool)>,
    /// Nodes of the compiled graph.
    pub nodes: usize,
    /// The batch size the compiled graph's first input declares, when fixed.
    pub fixed_batch: Option<usize>,
    /// Op types of the layer-sum rows, by node name (or first output, for unnamed nodes).
    op_types: HashMap<String, String>,
}

impl Compiled {
    /// Compile `model` (read from `origin`) with `opts`; `target_input` adds the `rap_target`
    /// input (int64 `[N]`, the class to explain per sample; negative: the prediction).
    pub fn new(
        model: &ir::Model,
        origin: &str,
        opts: &Options,
        target_input: bool,
    ) -> Result<Compiled> {
        let proto = ir::export(model)?;
        let facts = infer_facts(&proto, origin)?;
        drop(proto); // every copy of the weights goes as soon as it is not needed

        // A dense output explained through its mean or sum: the score is the model's logit.
        let (scored, facts, opts, score_label) = match with_score(model, &facts, opts, origin)? {
            Some(s) => (Some(s.model), s.facts, s.opts, Some(s.label)),
            None => (None, facts, opts.clone(), None),
        };
        let model = scored.as_ref().unwrap_or(model);
        let opts = Options {
            target_input,
            ..opts
        };
        let op_types: HashMap<String, String> = model
            .graph
            .g
            .node_weights()
            .filter_map(|n| n.op())
            .flat_map(|n| {
                let t = n.op_type().to_string();
                let mut keys = vec![(n.name().to_string(), t.clone())];
                if let Some(o) = n.output.first() {
                    keys.push((o.clone(), t));
                }
                keys
            })
            .filter(|(k, _)| !k.is_empty())
            .collect();
        let mut compiled = compile_with_facts(model, &facts, &opts, origin)?;
        // The explained logits (behind a trailing Softmax, say) become an output of the
        // in-memory model, so the summary reports the logit itself.
        let roles = find_roles(
            &model.graph,
            &facts,
            opts.input.as_deref(),
            opts.output.as_deref(),
            origin,
        )?;
        let logits = roles.logits.clone();
        if !compiled.graph.outputs.iter().any(|o| o.name() == logits) {
            compiled.graph.outputs.push(ValueInfoProto {
                name: Some(logits.clone()),
                ..Default::default()
            });
        }
        let bytes = crate::onnx::encode(&ir::export(&compiled)?);
        let nodes = compiled.graph.op_count();
        let fixed_batch = compiled
            .graph
            .inputs
            .first()
            .and_then(crate::onnx::declared_shape)
            .and_then(|s| s.dim.first().and_then(|d| d.dim_value))
            .map(|d| d as usize);
        let names = compiled
            .graph
            .outputs
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        drop(compiled);
        let input = roles.input.clone();
        let sample: Vec<usize> = input_sample_dims(&facts, &input, origin)?;
        let classes = roles.classes as usize;
        let inputs = model
            .graph
            .runtime_inputs()
            .into_iter()
            .map(|n| {
                let integer = facts.get(n).is_some_and(|f| f.is_integer());
                (n.to_string(), integer)
            })
            .collect();
        Ok(Compiled {
            bytes,
            names,
            inputs,
            logits,
            input,
            sample,
            classes,
            labels: score_label
                .map(|l| vec![l])
                .or_else(|| labels(model, classes)),
            facts,
            roles,
            nodes,
            fixed_batch,
            op_types,
        })
    }

    /// The `--layer-sum` outputs, in order.
    pub fn layer_outputs(&self) -> Vec<&String> {
        self.names
            .iter()
            .filter(|n| n.starts_with(crate::pass::LAYER_SUM))
            .collect()
    }

    /// Sample `k`'s layer sums in the outputs `out` of a run.
    pub fn layer_sums(&self, out: &[(String, ArrayD<f32>)], k: usize) -> Result<Vec<LayerSum>> {
        self.layer_outputs()
            .into_iter()
            .map(|n| {
                let a = out
                    .iter()
                    .find(|(o, _)| o == n)
                    .map(|(_, v)| v)
                    .ok_or_else(|| Error::Runtime(format!("no output {n}")))?;
                let layer = n[crate::pass::LAYER_SUM.len()..].to_string();
                let pair = a.index_axis(Axis(0), k);
                Ok(LayerSum {
                    op: self
                        .op_types
                        .get(&layer)
                        .cloned()
                        .unwrap_or_else(|| "?".into()),
                    layer,
                    received: pair.get(0).copied().unwrap_or(f32::NAN) as f64,
                    handed: pair.get(1).copied().unwrap_or(f32::NAN) as f64,
                })
            })
            .collect()
    }
}
