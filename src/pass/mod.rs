//! The relevance pass: model.onnx -> model_rap.onnx.
//!
//! It finds the roles (explained input and logits, output and input layers), checks that every
//! op on the way has a rule, seeds the relevance at the logits, then walks the operators in
//! reverse topological order and asks each one's rule to emit its backward subgraph. Relevance
//! reaching a tensor from several consumers is summed. The driver knows no operator: all op
//! knowledge sits in `rules`.

mod dense;
mod scan;

use std::collections::{BTreeMap, HashMap, HashSet};

pub use dense::{score_name, Reduction};

use crate::analysis::{
    channel_axis, find_roles, infer_facts, infer_signs, model_layout, Dim, Facts,
};
use crate::bad_input;
use crate::error::Result;
use crate::heatmap;
use crate::image::Layout;
use crate::ir::{self, Model, Node};
use crate::onnx::attr::make_int;
use crate::onnx::proto::{
    tensor_shape_proto::Dimension, type_proto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::rules::{rule_for, Bounds, Cx, Emit, Method, Role, Tuning};

/// Names of what the pass adds to the model.
pub const RELEVANCE: &str = "relevance";
pub const HEATMAP: &str = "heatmap";
pub const TARGET: &str = "rap_target";
pub const HEATMAP_RGB: &str = "heatmap_rgb";
/// Prefix of the per-rule conservation outputs (`compile --layer-sums`).
pub const LAYER_SUM: &str = "layer_sum:";
/// The per-dimension relevance of a token input's embeddings (`--embedding-relevance`).
pub const RELEVANCE_EMBEDDING: &str = "relevance_embedding";

/// What to compile.
#[derive(Clone, Debug)]
pub struct Options {
    pub method: Method,
    /// LRP-epsilon's stabiliser (`--method lrp-eps`).
    pub epsilon: f32,
    /// Add an int64 `[N]` input `rap_target` choosing the class (a negative value: the
    /// argmax); otherwise the argmax.
    pub target_input: bool,
    /// Add the output `heatmap_rgb`: the heatmap painted with `explain`'s colour map.
    pub colormap: bool,
    pub bounds: Bounds,
    /// The graph input to explain, when the model has several.
    pub input: Option<String>,
    /// The graph output to explain, when the model has several.
    pub output: Option<String>,
    /// Cheaper forms of the same computation.
    pub tuning: Tuning,
    /// Add one output per rule application, `layer_sum:NODE` float `[N, 2]`: per sample the
    /// relevance the rule received and the relevance it handed to its inputs.
    pub layer_sums: bool,
    /// The layout of an image input, whose channel axis `heatmap` sums over; None: the
    /// model's metadata, else detected ([`crate::analysis::model_layout`]).
    pub layout: Option<Layout>,
    /// For token inputs: add `relevance_embedding`, the relevance of every embedding
    /// dimension `[N, T, D]`, beside the per-token `relevance` `[N, T]`.
    pub embedding_relevance: bool,
    /// Explain the per-sample mean (or sum) of a dense output (`[N, ...]`: a segmentation or
    /// saliency map) instead of logits: the score is added as the output `OUTPUT_mean`
    /// (`[N, 1]`) and explained.
    pub reduce_output: Option<Reduction>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            method: Method::Rap,
            epsilon: crate::rules::DEFAULT_EPSILON,
            target_input: false,
            colormap: false,
            bounds: Bounds::PerSample,
            input: None,
            output: None,
            tuning: Tuning::default(),
            layer_sums: false,
            layout: None,
            embedding_relevance: false,
            reduce_output: None,
        }
    }
}

/// Compile the relevance graph into a copy of `model`. `origin` names the model in errors.
pub fn compile(model: &Model, opts: &Options, origin: &str) -> Result<Model> {
    let facts = infer_facts(&ir::export(model)?, origin)?;
    compile_with_facts(model, &facts, opts, origin)
}

/// A model whose dense output is explained through a score ([`with_score`]).
pub struct Scored {
    /// The model with the score `OUTPUT_mean` (or `_sum`) `[N, 1]` as an output.
    pub model: Model,
    pub facts: Facts,
    /// The options that explain the score.
    pub opts: Options,
    /// What the score is, for people: `mean of OUTPUT`.
    pub label: String,
}

/// With `opts.reduce_output`: `model` with the reduced output added as a score ([`dense`]),
/// its facts and the options that explain it; None without it.
pub fn with_score(
    model: &Model,
    facts: &Facts,
    opts: &Options,
    origin: &str,
) -> Result<Option<Scored>> {
    let Some(how) = opts.reduce_output else {
        return Ok(None);
    };
    let mut scored = model.clone();
    let (output, name) = dense::add_score(&mut scored, facts, opts.output.as_deref(), how, origin)?;
    let facts = infer_facts(&ir::export(&scored)?, origin)?;
    let opts = Options {
        reduce_output: None,
        output: Some(name),
        ..opts.clone()
    };
    Ok(Some(Scored {
        model: scored,
        facts,
        opts,
        label: format!("{} of {output}", how.name()),
    }))
}

/// [`compile`] with the facts of `model` already inferred (callers that need them too). The
/// phases: the canonical view and the roles, every op on the path checked for a rule, the
/// output model prepared, the seed at the logits, the reverse walk of the rules, the relevance
/// at the input turned into the new outputs.
pub fn compile_with_facts(
    model: &Model,
    facts: &Facts,
    opts: &Options,
    origin: &str,
) -> Result<Model> {
    if let Some(s) = with_score(model, facts, opts, origin)? {
        return compile_with_facts(&s.model, &s.facts, &s.opts, origin);
    }
    let opset = model.opset();
    if opset < 9 {
        return Err(bad_input!(
            "{origin}: the model uses opset {opset}; onnx-rap needs opset 9 or later \
             (convert it with onnx.version_converter)"
        ));
    }
    // The rules analyse the canonical form (exporter spellings rewritten, `crate::canon`);
    // model_rap.onnx keeps the original forward graph.
    let canon = crate::canon::canonical(model, facts, origin)?;
    let graph = &canon.as_ref().unwrap_or(model).graph;
    let roles = find_roles(
        graph,
        facts,
        opts.input.as_deref(),
        opts.output.as_deref(),
        origin,
    )?;
    let order = path_with_rules(graph, &roles, origin)?;
    let signs = infer_signs(graph)?;
    let dynamic: HashSet<String> = roles
        .path
        .iter()
        .flat_map(|&ix| graph.g[ix].outputs().into_iter().map(str::to_string))
        .chain(std::iter::once(roles.explained.clone()))
        .collect();

    let (mut out, batch_dim) = output_model(model, facts, &roles, opts, origin)?;
    let mut e = Emit::new(&mut out.graph, opset, opts.tuning, facts.single_sample);
    let (target, seed) = seed(&mut e, graph, &roles, opts)?;
    let walk = Walk {
        graph,
        order: &order,
        facts,
        signs: &signs,
        dynamic: &dynamic,
        opts,
        target: &target,
        origin,
    };
    let (rel, layer_sums) = walk.propagate(&mut e, &roles, seed)?;
    let ends = input_ends(&mut e, model, facts, &roles, opts, &rel, origin)?;
    drop(e);
    add_outputs(
        &mut out, model, facts, &roles, opts, &ends, layer_sums, &batch_dim,
    )?;
    if ends.input_dims.len() == 4 && ends.layout == Layout::Nhwc {
        state_layout(&mut out, "nhwc");
    }
    // A model that folds its batch into other axes was compiled for one sample: a Scan over
    // the batch gives model_rap.onnx the source model's batch axis back.
    if facts.single_sample {
        let symbolic = model
            .graph
            .inputs
            .iter()
            .find(|v| v.name() == roles.input)
            .and_then(crate::onnx::declared_shape)
            .and_then(|s| s.dim.first())
            .and_then(|d| d.dim_param.clone());
        if let Some(batch) = symbolic {
            return scan::over_batch(&out, &batch, origin);
        }
    }
    Ok(out)
}

/// The ops on the relevance path in topological order; every one needs a rule, and all that
/// miss one are reported at once.
fn path_with_rules(
    graph: &ir::Graph,
    roles: &crate::analysis::Roles,
    origin: &str,
) -> Result<Vec<petgraph::graph::NodeIndex>> {
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let order: Vec<_> = graph
        .topo_order()?
        .into_iter()
        .filter(|ix| roles.path.contains(ix))
        .collect();
    for &ix in &order {
        if let Some(node) = graph.g[ix].op() {
            if rule_for(node).is_none() {
                let op = if node.domain().is_empty() {
                    node.op_type().to_string()
                } else {
                    format!("{}:{}", node.domain(), node.op_type())
                };
                let name = if node.name().is_empty() {
                    format!(
                        "(output '{}')",
                        node.output.first().map_or("", |o| o.as_str())
                    )
                } else {
                    node.name().to_string()
                };
                missing.entry(op).or_default().push(name);
            }
        }
    }
    if missing.keys().any(|op| op.starts_with("com.microsoft:")) {
        return Err(bad_input!(
            "{origin}: the model holds onnxruntime's fused operators ({}): they come from \
             onnxruntime's graph optimisations (onnxruntime.transformers' optimizer, or a \
             session's optimized_model_filepath) and are not standard ONNX; nothing was \
             written. Compile the model as the exporter wrote it (torch.onnx.export, tf2onnx, \
             optimum's export without --optimize)",
            missing_list(&missing)
        ));
    }
    if !missing.is_empty() {
        return Err(bad_input!(
            "{origin}: no relevance rule for {} op type(s) between the input and the logits: \
             {}; nothing was written. Every op that relevance flows through needs a rule \
             (`onnx-rap inspect` lists the model's ops and which have one): re-export the \
             model without these ops (fold constants, e.g. with onnxsim; export in float32), \
             or explain another output with --explain-output",
            missing.len(),
            missing_list(&missing)
        ));
    }
    Ok(order)
}

/// The model that receives the relevance graph: a copy of `model` (fixed to one sample when
/// it folds its batch), its new tensor names checked free, `rap_target` added when asked
/// for. Returns it with the batch dimension of the explained input.
fn output_model(
    model: &Model,
    facts: &Facts,
    roles: &crate::analysis::Roles,
    opts: &Options,
    origin: &str,
) -> Result<(Model, Dim)> {
    let mut out = model.clone();
    if facts.single_sample {
        // The batch is folded into other axes somewhere: the explanation is per run, so the
        // compiled model takes exactly one sample, and a runtime rejects more.
        for vi in out
            .graph
            .inputs
            .iter_mut()
            .chain(out.graph.outputs.iter_mut())
        {
            batch_of_one(vi);
        }
    }
    for name in [RELEVANCE, HEATMAP, TARGET, HEATMAP_RGB, RELEVANCE_EMBEDDING] {
        if out.graph.is_used(name) {
            return Err(bad_input!(
                "{origin}: the model already has a tensor or node named '{name}'; \
                 onnx-rap adds one with that name"
            ));
        }
    }
    let batch_dim = facts
        .get(&roles.input)
        .and_then(|f| f.shape.as_ref())
        .and_then(|s| s.first().cloned())
        .unwrap_or(Dim::Sym("N".into()));
    if opts.target_input {
        add_input(&mut out.graph, TARGET, 7, std::slice::from_ref(&batch_dim));
    }
    Ok((out, batch_dim))
}

/// The explained class per sample (`rap_target`, else the argmax) and the seed relevance at
/// the logits; returns (target, seed) tensor names.
fn seed(
    e: &mut Emit,
    graph: &ir::Graph,
    roles: &crate::analysis::Roles,
    opts: &Options,
) -> Result<(String, String)> {
    e.set_prefix("rap.seed".into());
    let argmax = e.op(
        "ArgMax",
        if opts.target_input {
            "argmax"
        } else {
            "target"
        },
        &[&roles.logits],
        vec![make_int("axis", 1), make_int("keepdims", 0)],
    )?;
    let target = if opts.target_input {
        // rap_target < 0 picks the predicted class, so one model serves both uses.
        let zero = e.const_i64("zero", &[], &[0]);
        let neg = e.op("Less", "target.auto", &[TARGET, &zero], vec![])?;
        e.op("Where", "target", &[&neg, &argmax, TARGET], vec![])?
    } else {
        argmax
    };
    let classes: Vec<i64> = (0..roles.classes).collect();
    let range = e.const_i64("classes", &[roles.classes], &classes);
    let col = e.reshape(&target, &[-1, 1], "target.col")?;
    let hot = e.op("Equal", "onehot.eq", &[&col, &range], vec![])?;
    let mut hot = e.op("Cast", "onehot", &[&hot], vec![make_int("to", 1)])?;
    if roles.logits_rank > 2 {
        let shape: Vec<i64> = [vec![-1, roles.classes], vec![1; roles.logits_rank - 2]].concat();
        hot = e.reshape(&hot, &shape, "onehot.shape")?;
    }
    // RAP's first step turns the one-hot into relevance summing to the logit; where no dense
    // layer makes the logits (a convolutional head), the seed is the logit itself instead.
    let first_step = roles.logits_rank == 2
        && roles
            .output_layer
            .and_then(|ix| graph.g[ix].op())
            .is_some_and(|n| matches!(n.op_type(), "Gemm" | "MatMul"));
    let rap_without_first_step = opts.method.is_rap() && !first_step;
    let seed = if opts.method.seeds_with_logit() || rap_without_first_step {
        e.mul(&roles.logits, &hot, "logit_onehot")?
    } else {
        hot
    };

    Ok((target, seed))
}

/// The relevance tensor of every tensor reached, by name.
type Relevances = HashMap<String, String>;
/// The per-rule outputs of `layer_sums`: (output name, tensor).
type LayerSums = Vec<(String, String)>;

/// What the reverse walk reads.
struct Walk<'a> {
    graph: &'a ir::Graph,
    order: &'a [petgraph::graph::NodeIndex],
    facts: &'a Facts,
    signs: &'a crate::analysis::Signs,
    dynamic: &'a HashSet<String>,
    opts: &'a Options,
    target: &'a str,
    origin: &'a str,
}

impl Walk<'_> {
    /// Walk the path from the logits back to the input, each op's rule emitting its backward
    /// subgraph; relevance reaching a tensor from several consumers is summed. Returns the
    /// relevance of every tensor reached and, with `layer_sums`, the per-rule outputs.
    fn propagate(
        &self,
        e: &mut Emit,
        roles: &crate::analysis::Roles,
        seed: String,
    ) -> Result<(Relevances, LayerSums)> {
        let Walk {
            graph,
            order,
            facts,
            signs,
            dynamic,
            opts,
            target,
            origin,
        } = *self;
        let mut rel: HashMap<String, String> = HashMap::from([(roles.logits.clone(), seed)]);
        let mut layer_sums: Vec<(String, String)> = Vec::new();
        for &ix in order.iter().rev() {
            let Node::Op(node) = &graph.g[ix] else {
                continue;
            };
            let rel_out: Vec<Option<String>> =
                node.output.iter().map(|o| rel.get(o).cloned()).collect();
            if rel_out.iter().all(Option::is_none) {
                continue;
            }
            let rule = rule_for(node).expect("checked above");
            let role = if roles.input_layers.contains(&ix) {
                Role::Input
            } else if roles.output_layer == Some(ix) {
                Role::Output
            } else {
                Role::Hidden
            };
            let label = if node.name().is_empty() {
                node.output[0].as_str()
            } else {
                node.name()
            };
            e.set_prefix(format!("{label}.rap"));
            let mut cx = Cx {
                e: &mut *e,
                facts,
                signs,
                method: opts.method,
                epsilon: opts.epsilon,
                role,
                target,
                bounds: opts.bounds,
                tuning: opts.tuning,
                graph,
                dynamic,
            };
            let rel_in = rule
                .backward(&mut cx, node, &rel_out)
                .map_err(|e| e.context(origin))?;
            if opts.layer_sums {
                let received: Vec<(&str, &str)> = node
                    .output
                    .iter()
                    .zip(&rel_out)
                    .filter_map(|(t, r)| Some((t.as_str(), r.as_deref()?)))
                    .collect();
                let handed: Vec<(&str, &str)> = node
                    .input
                    .iter()
                    .zip(&rel_in)
                    .filter(|(t, _)| dynamic.contains(*t))
                    .filter_map(|(t, r)| Some((t.as_str(), r.as_deref()?)))
                    .collect();
                let a = sample_sums(e, facts, &received, "layer_sum.received")?
                    .expect("the rule received relevance");
                let b = match sample_sums(e, facts, &handed, "layer_sum.handed")? {
                    Some(b) => b,
                    None => {
                        let zero = e.scalar(0.0);
                        e.mul(&a, &zero, "layer_sum.none")?
                    }
                };
                let pair = e.concat(&[&a, &b], 1, "layer_sum")?;
                layer_sums.push((format!("{LAYER_SUM}{label}"), pair));
            }
            for (slot, r) in rel_in.into_iter().enumerate() {
                let (Some(r), Some(t)) = (r, node.input.get(slot)) else {
                    continue;
                };
                if !dynamic.contains(t) {
                    continue;
                }
                let sum = match rel.remove(t) {
                    None => r,
                    Some(prev) => e.add(&prev, &r, "fanout")?,
                };
                rel.insert(t.clone(), sum);
            }
        }
        Ok((rel, layer_sums))
    }
}

/// The relevance at the explained input and what the outputs are made of.
struct Ends {
    r_in: String,
    input_dims: Vec<Dim>,
    layout: Layout,
    channel: i64,
    heat: Option<String>,
    rgb: Option<String>,
    per_token: Option<String>,
}

/// The relevance at the explained input (times the embeddings for gradient methods on token
/// ids), its channel sum for image inputs (painted with `colormap`), its per-token sum for
/// token ids.
fn input_ends(
    e: &mut Emit,
    model: &Model,
    facts: &Facts,
    roles: &crate::analysis::Roles,
    opts: &Options,
    rel: &HashMap<String, String>,
    origin: &str,
) -> Result<Ends> {
    let mut r_in = rel
        .get(&roles.explained)
        .cloned()
        .ok_or_else(|| bad_input!("{origin}: no relevance reached input '{}'", roles.input))?;
    if opts.method.is_gradient() && roles.embedding.is_some() {
        // Gradient x input at the embeddings (no input layer multiplied by them).
        e.set_prefix("rap.out".into());
        r_in = e.mul(&r_in, &roles.explained, "embedding.grad_x")?;
    }
    let input_dims = facts
        .get(&roles.explained)
        .and_then(|f| f.shape.clone())
        .unwrap_or_default();
    // Image inputs [N, C, H, W] or [N, H, W, C] also get the channel sum, [N, H, W].
    let layout = opts.layout.unwrap_or_else(|| {
        let sample: Vec<usize> = input_dims
            .iter()
            .skip(1)
            .map(|d| match d {
                Dim::Known(v) => *v as usize,
                Dim::Sym(_) => 0,
            })
            .collect();
        model_layout(model, &roles.input, &sample)
    });
    let channel = channel_axis(layout);
    let heat = if input_dims.len() == 4 {
        e.set_prefix("rap.out".into());
        Some(e.reduce("ReduceSum", &r_in, &[channel], false, "heatmap.sum")?)
    } else {
        None
    };
    let rgb = match (&heat, opts.colormap) {
        (Some(h), true) => Some(paint(e, h)?),
        (None, true) => {
            return Err(bad_input!(
                "{origin}: --colormap needs an image input [N, C, H, W] or [N, H, W, C]; '{}' \
                 has rank {}",
                roles.input,
                input_dims.len()
            ))
        }
        (_, false) => None,
    };
    // Token ids: one value per token, the relevance of its embedding summed over the hidden
    // axis (and, on request, the per-dimension map).
    let per_token = match &roles.embedding {
        Some(_) => {
            e.set_prefix("rap.out".into());
            let last = input_dims.len() as i64 - 1;
            Some(e.reduce("ReduceSum", &r_in, &[last], false, "tokens.sum")?)
        }
        None => None,
    };
    Ok(Ends {
        r_in,
        input_dims,
        layout,
        channel,
        heat,
        rgb,
        per_token,
    })
}

/// The new outputs of model_rap.onnx, under their contract names: `relevance`,
/// `relevance_embedding`, `heatmap`, `heatmap_rgb`, `layer_sum:*`.
#[allow(clippy::too_many_arguments)]
fn add_outputs(
    out: &mut Model,
    model: &Model,
    facts: &Facts,
    roles: &crate::analysis::Roles,
    opts: &Options,
    ends: &Ends,
    layer_sums: Vec<(String, String)>,
    batch_dim: &Dim,
) -> Result<()> {
    let Ends {
        r_in,
        input_dims,
        channel,
        heat,
        rgb,
        per_token,
        ..
    } = ends;
    let channel = *channel;
    // The new outputs carry their contract names exactly (checked free above).
    let mut b = ir::Builder::new(&mut out.graph);
    let mut outputs = Vec::new();
    match &per_token {
        Some(t) => {
            b.op("Identity", RELEVANCE, &[t], 1, vec![])?;
            let dims = &input_dims[..input_dims.len().saturating_sub(1)];
            let mut vi = value_info(RELEVANCE, 1, dims);
            vi.doc_string = Some(format!(
                "relevance of each token of '{}' (its embedding's relevance summed over the \
                 hidden axis), [N, T]",
                roles.input
            ));
            outputs.push(vi);
            if opts.embedding_relevance {
                b.op("Identity", RELEVANCE_EMBEDDING, &[r_in], 1, vec![])?;
                let mut vi = value_info(RELEVANCE_EMBEDDING, 1, input_dims);
                vi.doc_string =
                    Some("relevance of each token's embedding, per dimension, [N, T, D]".into());
                outputs.push(vi);
            }
        }
        None => {
            b.op("Identity", RELEVANCE, &[r_in], 1, vec![])?;
            let mut rel_vi = model
                .graph
                .inputs
                .iter()
                .find(|v| v.name() == roles.input)
                .cloned()
                .unwrap_or_default();
            rel_vi.name = Some(RELEVANCE.into());
            rel_vi.doc_string = Some("RAP relevance of the input, same shape as the input".into());
            outputs.push(rel_vi);
        }
    }
    if facts.single_sample {
        batch_of_one(&mut outputs[0]);
    }
    if let Some(h) = heat {
        b.op("Identity", HEATMAP, &[h], 1, vec![])?;
        let spatial: Vec<Dim> = (1..4)
            .filter(|&a| a != channel as usize)
            .map(|a| input_dims[a].clone())
            .collect();
        let dims = [
            input_dims[0].clone(),
            spatial[0].clone(),
            spatial[1].clone(),
        ];
        let mut vi = value_info(HEATMAP, 1, &dims);
        vi.doc_string = Some("relevance summed over the channel axis, [N, H, W]".into());
        outputs.push(vi);
        if let Some(rgb) = rgb {
            b.op("Identity", HEATMAP_RGB, &[rgb], 1, vec![])?;
            let mut vi = value_info(
                HEATMAP_RGB,
                2,
                &[
                    dims[0].clone(),
                    dims[1].clone(),
                    dims[2].clone(),
                    Dim::Known(3),
                ],
            );
            vi.doc_string = Some(
                "heatmap / max|heatmap| per sample in the colour map of `onnx-rap explain` \
                 (white = 0, red = relevant, blue = irrelevant), uint8 [N, H, W, 3]"
                    .into(),
            );
            outputs.push(vi);
        }
    }
    for (name, t) in layer_sums {
        let name = b.op1("Identity", &name, &[&t], vec![])?;
        let n = if facts.single_sample {
            Dim::Known(1)
        } else {
            batch_dim.clone()
        };
        let mut vi = value_info(&name, 1, &[n, Dim::Known(2)]);
        vi.doc_string = Some(
            "per sample: relevance this rule received, relevance it handed to its inputs".into(),
        );
        outputs.push(vi);
    }
    out.graph.outputs.extend(outputs);
    Ok(())
}

/// Record the image input's layout in model_rap.onnx's `onnx_rap.preprocess` metadata (added,
/// or merged into a JSON object without one), so that every consumer (the Python example,
/// the page) feeds what the model wants; metadata that names a layout stays as it is.
fn state_layout(model: &mut Model, layout: &str) {
    const KEY: &str = "onnx_rap.preprocess";
    let props = &mut model.rest.metadata_props;
    match props.iter_mut().find(|p| p.key() == KEY) {
        Some(p) => {
            if let Ok(serde_json::Value::Object(mut o)) = serde_json::from_str(p.value()) {
                if !o.contains_key("layout") {
                    o.insert("layout".into(), layout.into());
                    p.value = Some(serde_json::Value::Object(o).to_string());
                }
            }
        }
        None => props.push(crate::onnx::proto::StringStringEntryProto {
            key: Some(KEY.into()),
            value: Some(serde_json::json!({ "layout": layout }).to_string()),
        }),
    }
}

/// `Cast: 309 nodes, e.g. /Cast, /Cast_1, /Cast_2, /Cast_3, /Cast_4, ...; Sin: 1 node (s)`:
/// per op type its count and at most five nodes, op types in name order.
fn missing_list(missing: &BTreeMap<String, Vec<String>>) -> String {
    const SHOWN: usize = 5;
    missing
        .iter()
        .map(|(op, nodes)| match nodes.len() {
            1 => format!("{op}: 1 node ({})", nodes[0]),
            n if n <= SHOWN => format!("{op}: {n} nodes ({})", nodes.join(", ")),
            n => format!("{op}: {n} nodes, e.g. {}, ...", nodes[..SHOWN].join(", ")),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `[N, 1]`: per sample, the sum of every element of the relevance tensors `rels`
/// (`(tensor, relevance)` pairs; the tensor's rank comes from the facts); None if there are none.
fn sample_sums(
    e: &mut Emit,
    facts: &Facts,
    rels: &[(&str, &str)],
    part: &str,
) -> Result<Option<String>> {
    let mut total: Option<String> = None;
    for (t, r) in rels {
        let rank = facts
            .get(*t)
            .and_then(|f| f.shape.as_ref())
            .map_or(2, |s| s.len());
        let s = e.sum_sample(r, rank, part)?;
        let s = e.reshape(&s, &[-1, 1], part)?;
        total = Some(match total {
            None => s,
            Some(prev) => e.add(&prev, &s, part)?,
        });
    }
    Ok(total)
}

/// `heatmap_rgb`: per sample `v = M / max|M|` (M = 0 stays 0), level `floor(127 v + 127.5)`
/// clamped to the table, and the table's colour: the arithmetic of `heatmap::level`.
fn paint(e: &mut Emit, heat: &str) -> Result<String> {
    let a = e.op("Abs", "rgb.abs", &[heat], vec![])?;
    let mx = e.reduce("ReduceMax", &a, &[1, 2], true, "rgb.max")?;
    let (den, _) = e.safe_den(&mx)?;
    let v = e.div(heat, &den, "rgb.v")?;
    let k = e.scalar(heatmap::CENTRE);
    let half = e.scalar(heatmap::CENTRE + 0.5);
    let x = e.mul(&v, &k, "rgb.scaled")?;
    let x = e.add(&x, &half, "rgb.shifted")?;
    let x = e.op("Floor", "rgb.floor", &[&x], vec![])?;
    let lo = e.scalar(0.0);
    let hi = e.scalar((heatmap::LEVELS - 1) as f32);
    let x = e.op("Max", "rgb.min0", &[&x, &lo], vec![])?;
    let x = e.op("Min", "rgb.clamp", &[&x, &hi], vec![])?;
    let idx = e.op("Cast", "rgb.level", &[&x], vec![make_int("to", 7)])?;
    let table: Vec<u8> = heatmap::table().into_iter().flatten().collect();
    let t = e.const_u8("rgb.table", &[heatmap::LEVELS as i64, 3], &table);
    e.op("Gather", "rgb", &[&t, &idx], vec![make_int("axis", 0)])
}

/// The linear layers on the relevance path (the input layers aside) whose input can be
/// negative: RAP runs both sign paths there and the relevance sum doubles (docs/RULES.md, "Signed activations" under "Ops beyond the official set").
pub fn signed_layers(
    model: &Model,
    facts: &Facts,
    opts: &Options,
    origin: &str,
) -> Result<Vec<String>> {
    // The rules analyse the canonical form (exporter spellings rewritten, `crate::canon`);
    // model_rap.onnx keeps the original forward graph.
    let canon = crate::canon::canonical(model, facts, origin)?;
    let graph = &canon.as_ref().unwrap_or(model).graph;
    let roles = find_roles(
        graph,
        facts,
        opts.input.as_deref(),
        opts.output.as_deref(),
        origin,
    )?;
    let signs = infer_signs(graph)?;
    let mut out = Vec::new();
    for &ix in &roles.path {
        let Some(node) = graph.g[ix].op() else {
            continue;
        };
        let linear = rule_for(node).is_some_and(|r| r.kind() == crate::rules::Kind::Linear);
        if !linear || roles.input_layers.contains(&ix) {
            continue;
        }
        let x = node.input.first().map(String::as_str).unwrap_or("");
        if signs.get(x).copied().unwrap_or(crate::analysis::Sign::Any) == crate::analysis::Sign::Any
        {
            out.push(if node.name().is_empty() {
                node.output[0].clone()
            } else {
                node.name().to_string()
            });
        }
    }
    out.sort();
    Ok(out)
}

fn value_info(name: &str, elem: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Known(v) => Dimension {
                dim_value: Some(*v),
                ..Default::default()
            },
            Dim::Sym(s) => Dimension {
                dim_param: Some(s.clone()),
                ..Default::default()
            },
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto { dim }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Set a symbolic leading dimension of a tensor's type to 1.
fn batch_of_one(vi: &mut ValueInfoProto) {
    let d0 = crate::onnx::declared_shape_mut(vi).and_then(|s| s.dim.first_mut());
    if let Some(d0) = d0 {
        if d0.dim_param.is_some() {
            d0.dim_param = None;
            d0.dim_value = Some(1);
        }
    }
}

fn add_input(graph: &mut ir::Graph, name: &str, elem: i32, dims: &[Dim]) {
    graph.add_runtime_input(value_info(name, elem, dims));
}
