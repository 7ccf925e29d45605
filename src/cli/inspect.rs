//! `onnx-rap inspect MODEL`: what is in a model, and whether onnx-rap can explain it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::ir::{Model, Node};
use crate::onnx::proto::{type_proto, ValueInfoProto};
use crate::onnx::tensor::{dtype_name, numel};
use crate::rules::rule_for;

/// A readable `float32[batch, 3, 224, 224]` for a value.
fn describe(vi: &ValueInfoProto) -> (String, Vec<Value>) {
    let Some(type_proto::Tensor { elem_type, shape }) =
        vi.r#type.as_ref().and_then(|t| t.tensor_type.clone())
    else {
        return ("non-tensor".into(), vec![]);
    };
    let dims: Vec<Value> = shape
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match (&d.dim_value, &d.dim_param) {
                    (Some(v), _) => json!(v),
                    (None, Some(p)) => json!(p),
                    _ => json!("?"),
                })
                .collect()
        })
        .unwrap_or_default();
    (dtype_name(elem_type.unwrap_or(0)), dims)
}

/// The `inspect` report as JSON (also the source of the text form).
pub fn report(path: &Path) -> Result<Value> {
    let model = super::load_model(path)?;
    Ok(report_model(&model, &path.display().to_string()))
}

/// The report of a model already loaded; `file` is what the report calls it.
pub fn report_model(model: &Model, file: &str) -> Value {
    let g = &model.graph;
    let mut ops: BTreeMap<String, (usize, bool)> = BTreeMap::new();
    let mut params: u64 = 0;
    for ix in g.g.node_indices() {
        match &g.g[ix] {
            Node::Op(n) => {
                // Ops of other domains are named with it (`com.microsoft:Gelu`).
                let op = match n.domain() {
                    "" | "ai.onnx" => n.op_type().to_string(),
                    d => format!("{d}:{}", n.op_type()),
                };
                let e = ops.entry(op).or_insert((0, rule_for(n).is_some()));
                e.0 += 1;
            }
            Node::Init(t) => params = params.saturating_add(numel(t)),
            Node::Input(_) => {}
        }
    }
    let io = |list: Vec<&ValueInfoProto>| -> Vec<Value> {
        list.into_iter()
            .map(|vi| {
                let (dt, dims) = describe(vi);
                json!({"name": vi.name(), "type": dt, "shape": dims})
            })
            .collect()
    };
    let runtime = g.runtime_inputs();
    let inputs: Vec<&ValueInfoProto> = g
        .inputs
        .iter()
        .filter(|v| runtime.contains(&v.name()))
        .collect();
    let opsets: Vec<Value> = model
        .rest
        .opset_import
        .iter()
        .map(|o| json!({"domain": if o.domain().is_empty() { "ai.onnx" } else { o.domain() }, "version": o.version()}))
        .collect();
    // The ops relevance flows through (between the explained input and the logits, in the
    // canonical form the rules see), when the roles can be found.
    let on_path = relevance_path_ops(model, file);
    let needed = |op: &str| on_path.as_ref().is_none_or(|p| p.contains(op));
    let unsupported: Vec<&String> = ops
        .iter()
        .filter(|(k, (_, ok))| !ok && needed(k))
        .map(|(k, _)| k)
        .collect();
    let off_path: Vec<&String> = ops
        .iter()
        .filter(|(k, (_, ok))| !ok && !needed(k))
        .map(|(k, _)| k)
        .collect();
    json!({
        "file": file,
        "ir_version": model.rest.ir_version(),
        "opset_import": opsets,
        "producer": format!("{} {}", model.rest.producer_name(), model.rest.producer_version()).trim().to_string(),
        "inputs": io(inputs),
        "outputs": io(g.outputs.iter().collect()),
        "nodes": ops.values().map(|(n, _)| n).sum::<usize>(),
        "parameters": params,
        "ops": ops.iter().map(|(k, (n, ok))| json!({"op_type": k, "count": n, "rule": ok, "on_relevance_path": needed(k)})).collect::<Vec<_>>(),
        "explainable": unsupported.is_empty(),
        "ops_without_rule": unsupported,
        "ops_without_rule_off_path": off_path,
    })
}

/// Op types on the relevance path of `model`'s canonical form (`ai.onnx` ops by name, others
/// as `domain:op`), or None when the path cannot be found (several inputs or outputs, an
/// output that is not logits...): every op then counts.
fn relevance_path_ops(model: &Model, file: &str) -> Option<std::collections::BTreeSet<String>> {
    let facts = crate::analysis::infer_facts(&crate::ir::export(model).ok()?, file).ok()?;
    let canon = crate::canon::canonical(model, &facts, file).ok()?;
    let graph = &canon.as_ref().unwrap_or(model).graph;
    let roles = crate::analysis::find_roles(graph, &facts, None, None, file).ok()?;
    Some(
        roles
            .path
            .iter()
            .filter_map(|&ix| graph.g[ix].op())
            .map(|n| match n.domain() {
                "" | "ai.onnx" => n.op_type().to_string(),
                d => format!("{d}:{}", n.op_type()),
            })
            .collect(),
    )
}

/// The text form of the report.
pub fn render(r: &Value) -> String {
    let mut s = String::new();
    let shape = |v: &Value| -> String {
        let dims: Vec<String> = v["shape"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| {
                        d.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| d.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "{} {}[{}]",
            v["name"].as_str().unwrap_or(""),
            v["type"].as_str().unwrap_or(""),
            dims.join(", ")
        )
    };
    s += &format!("model       {}\n", r["file"].as_str().unwrap_or(""));
    s += &format!("ir_version  {}\n", r["ir_version"]);
    let opsets: Vec<String> = r["opset_import"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| format!("{} {}", o["domain"].as_str().unwrap_or(""), o["version"]))
        .collect();
    s += &format!("opset       {}\n", opsets.join(", "));
    if let Some(p) = r["producer"].as_str().filter(|p| !p.is_empty()) {
        s += &format!("producer    {p}\n");
    }
    for (title, key) in [("inputs", "inputs"), ("outputs", "outputs")] {
        s += &format!("{title}\n");
        for v in r[key].as_array().into_iter().flatten() {
            s += &format!("  {}\n", shape(v));
        }
    }
    s += &format!("parameters  {}\n", r["parameters"]);
    s += &format!("ops         {} nodes\n", r["nodes"]);
    for o in r["ops"].as_array().into_iter().flatten() {
        let rule = if o["rule"].as_bool() == Some(true) {
            "rule"
        } else if o["on_relevance_path"].as_bool() == Some(false) {
            "no rule, none needed (no relevance flows through it)"
        } else {
            "NO RULE"
        };
        s += &format!(
            "  {:<24} {:>5}  {}\n",
            o["op_type"].as_str().unwrap_or(""),
            o["count"],
            rule
        );
    }
    if r["explainable"].as_bool() == Some(true) {
        s += "every op that relevance flows through has a rule: `onnx-rap compile` can explain \
              this model\n";
    } else {
        let missing: Vec<&str> = r["ops_without_rule"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        s += &format!(
            "no relevance rule yet for: {} (needed only where relevance flows through them, \
             between the input and the logits: `onnx-rap compile` says)\n",
            missing.join(", ")
        );
    }
    s
}

// The command line of `inspect`: its flags (the doc comments are the --help text) and what
// `onnx-rap inspect` does with them.

#[derive(clap::Args)]
pub struct InspectCli {
    /// The model (.onnx); external data files are read from its folder
    model: PathBuf,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// `onnx-rap inspect`: print the report as text (or JSON).
pub fn main(cli: InspectCli) -> Result<()> {
    let InspectCli { model, json } = cli;
    let r = report(&model)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).map_err(|e| Error::Runtime(e.to_string()))?
        );
    } else {
        print!("{}", render(&r));
    }
    Ok(())
}
