//! `onnx-rap coverage` over the model set of docs/COVERAGE.md (models/zoo: 23 torchvision
//! architectures, each exported by the TorchScript exporter at opset 17 and the dynamo exporter
//! at opset 18, plus the onnx package's light zoo; the attention graphs of
//! tests/data/transformers, the real nanoguard text transformer and the trained digits_vit): every model compiles and runs in tract and
//! onnxruntime, the two runtimes agree on the relevance within 1e-3 of max|R|, and `rap` (the
//! default) conserves it within 1e-3 of the logit in both runtimes, and tract's plan with
//! onnx-rap's fused kernels gives the relevance of the unfused plan within 1e-6 of max|R| —
//! except the models
//! docs/COVERAGE.md lists under "Exceptions", each with its reason. (An op nobody supports fails with the pass's
//! message: tests/errors.rs.)

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value as Json;

/// The exceptions docs/COVERAGE.md lists: `- \`file\`: reason` lines under "## Exceptions".
fn listed_exceptions() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(root().join("docs/COVERAGE.md")).unwrap();
    let section = doc
        .split("## Exceptions")
        .nth(1)
        .expect("docs/COVERAGE.md has an Exceptions section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .filter_map(|l| l.split_once("`: "))
        .map(|(f, why)| (f.to_string(), why.to_string()))
        .collect()
}

#[test]
fn every_model_of_the_set_compiles_runs_and_agrees_or_is_listed() {
    let py = python();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onnx-rap"))
        .current_dir(root())
        .args([
            "coverage",
            "models/zoo",
            "tests/data/light",
            "tests/data/transformers",
            "models/nanoguard.onnx",
            "models/digits_vit.onnx",
            "--runs",
            "1",
            "--json",
        ])
        .arg("--python")
        .arg(&py)
        .output()
        .unwrap();
    let rows: Json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON from coverage ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let rows = rows.as_array().unwrap();
    assert!(
        rows.len() >= 66,
        "46 zoo models, 9 light models, 9 attention test graphs, nanoguard and digits_vit, got {}",
        rows.len()
    );
    let listed = listed_exceptions();
    let names: BTreeSet<String> = rows
        .iter()
        .map(|r| r["file"].as_str().unwrap().to_string())
        .collect();
    for f in listed.keys() {
        assert!(
            names.contains(f),
            "COVERAGE.md lists {f}, which the set does not hold"
        );
    }
    let mut problems = Vec::new();
    for r in rows {
        let f = r["file"].as_str().unwrap();
        if listed.contains_key(f) {
            continue;
        }
        for k in [
            "compile_error",
            "tract_error",
            "onnxruntime_error",
            "zplus_error",
        ] {
            if !r[k].is_null() {
                problems.push(format!("{f}: {k}: {}", r[k]));
            }
        }
        // onnx-rap's fused kernels (src/fuse) against tract's own ops on the same graph.
        let fu = r["fusion"].as_f64().unwrap_or(f64::INFINITY);
        if fu > 1e-6 {
            problems.push(format!("{f}: fused vs unfused plan {fu:.2e} x max|R|"));
        }
        // Every RAP graph has element-wise chains (safe divisions, masks): a plan with none
        // fused means the check above compared the unfused plan with itself.
        if r["fused_nodes"].as_u64().unwrap_or(0) == 0 {
            problems.push(format!("{f}: nothing fused in tract's plan"));
        }
        let ag = r["agreement"].as_f64().unwrap_or(f64::INFINITY);
        if ag > 1e-3 {
            problems.push(format!("{f}: tract vs onnxruntime {ag:.2e} x max|R|"));
        }
        for (k, rt) in [
            ("conservation", "tract"),
            ("ort_conservation", "onnxruntime"),
        ] {
            let co = r[k].as_f64().unwrap_or(f64::INFINITY);
            if co > 1e-3 {
                problems.push(format!("{f}: conservation error {co:.2e} in {rt}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "not listed in docs/COVERAGE.md but failing:\n{}",
        problems.join("\n")
    );
}
