//! The generalised RAP (`--method rap`, the default) against independent expectations:
//! - a float64 numpy reference written from the rule definitions (tests/python/rap_reference.py,
//!   every Conv unrolled into explicit contributions) on `tiny_robust.onnx`, a graph with every
//!   case where the official rules double or amplify: a residual join of a ReLU and a signed
//!   branch, BatchNormalization, a 1x1 conv, a strided depthwise conv and a dense layer reading
//!   signed values, a Relu6, a global average pool of signed values, a first step on signed
//!   input; the relevance and the per-rule sums of `--layer-sums`, in tract and onnxruntime;
//! - conservation: per sample the relevance sums to the explained logit, at every rule too.

mod common;

use std::collections::HashMap;

use common::*;
use ndarray::{ArrayD, Axis};
use onnx_rap::pass::{Options, LAYER_SUM};
use onnx_rap::rules::Method;
use onnx_rap::runtime::Value;
use serde_json::Value as Json;

const MODEL: &str = "tests/data/tiny_robust.onnx";
const INPUT: &str = "tests/data/tiny_robust_input.npy";
/// A ViT-like patch embedding (kernel = stride) reading the input, some pixels at the minimum.
const PATCH: &str = "tests/data/tiny_patch.onnx";
const PATCH_INPUT: &str = "tests/data/tiny_patch_input.npy";

/// The numpy reference: input relevance and, per node, per sample [received, handed].
fn reference(model: &str, input: &str) -> (ArrayD<f32>, HashMap<String, Vec<[f64; 2]>>) {
    let tmp = tempfile::tempdir().unwrap();
    run_python(
        "tests/python/rap_reference.py",
        [
            root().join(model).as_os_str(),
            root().join(input).as_os_str(),
            tmp.path().as_os_str(),
        ],
    );
    let r: ArrayD<f64> = ndarray_npy::read_npy(tmp.path().join("relevance.npy")).unwrap();
    let sums: Json =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("layer_sums.json")).unwrap())
            .unwrap();
    let sums = sums
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let rows = v
                .as_array()
                .unwrap()
                .iter()
                .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
                .collect();
            (k.clone(), rows)
        })
        .collect();
    (r.mapv(|v| v as f32), sums)
}

fn compiled(method: Method) -> Vec<u8> {
    compiled_model(MODEL, method)
}

fn compiled_model(model: &str, method: Method) -> Vec<u8> {
    let opts = Options {
        method,
        layer_sums: true,
        ..Options::default()
    };
    compile_file(&root().join(model), &opts)
}

/// Outputs of the compiled tiny_robust in tract and in onnxruntime.
fn both_runtimes(bytes: &[u8]) -> [(&'static str, HashMap<String, ArrayD<f32>>); 2] {
    both_runtimes_on(bytes, INPUT)
}

fn both_runtimes_on(
    bytes: &[u8],
    input: &str,
) -> [(&'static str, HashMap<String, ArrayD<f32>>); 2] {
    let x = npy_f32(&root().join(input));
    let t = run_tract(bytes, vec![Value::F32(x.clone())]);
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("m.onnx");
    std::fs::write(&p, bytes).unwrap();
    let o = run_ort(&p, &[("x", Feed::F32(x))]);
    [("tract", t), ("onnxruntime", o)]
}

/// In the default form and op for op (`--exact`, none of docs/RULES.md's "Cheaper forms").
#[test]
fn rap_matches_the_numpy_reference_rule_by_rule() {
    let (want, want_sums) = reference(MODEL, INPUT);
    let exact = Options {
        method: Method::Rap,
        layer_sums: true,
        tuning: onnx_rap::rules::Tuning::none(),
        ..Options::default()
    };
    let forms = [
        ("default", compiled(Method::Rap)),
        ("exact", compile_file(&root().join(MODEL), &exact)),
    ];
    let runs = forms.iter().flat_map(|(form, bytes)| {
        both_runtimes(bytes).map(|(rt, out)| (format!("{form} form, {rt}"), out))
    });
    for (rt, out) in runs {
        assert_matches_numpy(&rt, &out, &want, &want_sums);
        // One output per rule that ran: 14 nodes.
        let n_outputs = out.keys().filter(|k| k.starts_with(LAYER_SUM)).count();
        assert_eq!((want_sums.len(), n_outputs), (14, 14), "{rt}");
    }
    assert!(want.iter().any(|v| v.abs() > 1e-3));
}

/// The relevance within 1e-4 of max|R| per sample, and every rule's received and handed sums
/// within 1e-4 of the logit, against the numpy reference.
fn assert_matches_numpy(
    rt: &str,
    out: &HashMap<String, ArrayD<f32>>,
    want: &ArrayD<f32>,
    want_sums: &HashMap<String, Vec<[f64; 2]>>,
) {
    let worst = rel_err_per_sample(&out["relevance"], want)
        .into_iter()
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-4,
        "{rt}: max |got - numpy| = {worst:.2e} x max|R|"
    );
    let logits = max_logits(&out["logits"]);
    for (node, rows) in want_sums {
        let got = out
            .get(&format!("{LAYER_SUM}{node}"))
            .unwrap_or_else(|| panic!("{rt}: no layer_sum output for {node}"));
        assert_eq!(got.shape(), &[rows.len(), 2], "{rt} {node}");
        for (i, w) in rows.iter().enumerate() {
            for k in 0..2 {
                let g = got[[i, k]] as f64;
                assert!(
                    (g - w[k]).abs() <= 1e-4 * logits[i].abs(),
                    "{rt} {node} sample {i} column {k}: {g} vs numpy {}",
                    w[k]
                );
            }
        }
    }
}

/// A patch embedding reading the input (kernel = stride, as in a ViT) takes the relative rule on
/// the input's offset from the sample's minimum, then the shift: equal to the numpy reference in
/// both runtimes, every rule conserving, and a pixel at the minimum gets exactly no relevance
/// (one whole patch of them, and scattered ones in the other patches).
#[test]
fn rap_at_a_patch_embedding_matches_the_numpy_reference() {
    let (want, want_sums) = reference(PATCH, PATCH_INPUT);
    let x = npy_f32(&root().join(PATCH_INPUT));
    for (rt, out) in both_runtimes_on(&compiled_model(PATCH, Method::Rap), PATCH_INPUT) {
        assert_matches_numpy(rt, &out, &want, &want_sums);
        let r = &out["relevance"];
        let logits = max_logits(&out["logits"]);
        for (i, s) in sums(r).iter().enumerate() {
            assert!(
                (s - logits[i]).abs() <= 1e-5 * logits[i].abs(),
                "{rt} sample {i}: {s}"
            );
        }
        for (i, (xs, rs)) in x.outer_iter().zip(r.outer_iter()).enumerate() {
            let lo = xs.iter().cloned().fold(f32::INFINITY, f32::min);
            let (mut at_lo, mut other) = (0, 0);
            for (&v, &rv) in xs.iter().zip(rs.iter()) {
                if v == lo {
                    assert_eq!(rv, 0.0, "{rt} sample {i}: a pixel at the minimum");
                    at_lo += 1;
                } else if rv != 0.0 {
                    other += 1;
                }
            }
            assert!(at_lo >= 48 && other > 0, "{rt} sample {i}: {at_lo} {other}");
        }
    }
    // z^B (every other method's input rule, and rap's at overlapping windows) gives those pixels
    // relevance: the rule above is what makes them 0.
    let (_, lrp) = both_runtimes_on(&compiled_model(PATCH, Method::LrpZPlus), PATCH_INPUT)
        .into_iter()
        .next()
        .unwrap();
    let corner = lrp["relevance"]
        .slice(ndarray::s![.., .., 4.., 4..])
        .to_owned();
    assert!(corner.iter().any(|v| v.abs() > 1e-4));
}

/// Per sample and per rule: what a rule hands on equals what it received (1e-5 of the logit),
/// and the input relevance sums to the explained logit; the official rules on the same graph
/// do not conserve (the graph exercises what the generalised rules repair).
#[test]
fn rap_conserves_at_every_rule_where_the_official_rules_do_not() {
    for (rt, out) in both_runtimes(&compiled(Method::Rap)) {
        let logits = max_logits(&out["logits"]);
        for (i, s) in sums(&out["relevance"]).iter().enumerate() {
            let y = logits[i];
            assert!(
                (s - y).abs() <= 1e-5 * y.abs(),
                "{rt} sample {i}: {s} vs {y}"
            );
        }
        for (name, v) in out.iter().filter(|(k, _)| k.starts_with(LAYER_SUM)) {
            if name.ends_with("fc_out") {
                continue; // the first step turns the one-hot into the logit
            }
            for (i, row) in v.axis_iter(Axis(0)).enumerate() {
                let (got, handed) = (row[0] as f64, row[1] as f64);
                assert!(
                    (got - handed).abs() <= 1e-5 * logits[i].abs(),
                    "{rt} {name} sample {i}: received {got}, handed {handed}"
                );
            }
        }
    }
    for (rt, out) in both_runtimes(&compiled(Method::RapOfficial)) {
        let logits = max_logits(&out["logits"]);
        let worst = sums(&out["relevance"])
            .iter()
            .zip(&logits)
            .map(|(s, y)| ((s - y) / y).abs())
            .fold(0.0, f64::max);
        assert!(
            worst > 0.1,
            "{rt}: rap-official conserves here ({worst:.2e})"
        );
    }
}

/// tract gives the same relevance run after run on this graph's small planes (8x8 and 4x4),
/// where its biased hidden convolutions take `y - b` from a depthwise 1x1 convolution (tract
/// 0.23.9 has given run-dependent values for other small convolutions: tests/tiny_nets.rs).
#[test]
fn tract_gives_the_same_relevance_run_after_run() {
    let bytes = compiled(Method::Rap);
    let graph = onnx_rap::onnx::decode(&bytes, MODEL)
        .unwrap()
        .graph
        .unwrap();
    let depthwise = graph
        .node
        .iter()
        .filter(|n| n.name().ends_with(".y.nobias") && n.op_type() == "Conv")
        .count();
    assert!(depthwise >= 2, "{depthwise} depthwise y - b");
    let inputs = [Value::F32(npy_f32(&root().join(INPUT)))];
    let names = output_names(&bytes);
    let at = names.iter().position(|n| n == "relevance").unwrap();
    let plan =
        onnx_rap::runtime::Plan::with(&bytes, &inputs, names, onnx_rap::runtime::Optimise::Codegen)
            .unwrap();
    let first = plan.run(&inputs).unwrap()[at].1.clone();
    for _ in 0..20 {
        assert_eq!(plan.run(&inputs).unwrap()[at].1, first);
    }
}
