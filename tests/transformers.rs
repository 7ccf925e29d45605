//! Attention models (tests/data/transformers, made by scripts/make_transformer_tests.py):
//! tiny BERT-like, Llama-like (RMSNorm, rotary, `Where` masks, an `IsNaN` guard, squared ReLU,
//! SiLU, masked mean pooling) and ViT-like graphs written op by op from numpy weights, and a
//! 2-layer `nn.TransformerEncoder` exported by torch at opsets 14 and 17 (TorchScript) and 18
//! (dynamo). Against independent expectations:
//! - `attnlrp` against a float64 numpy port of the AttnLRP rules written at layer level
//!   (tests/python/attnlrp_reference.py), in tract and onnxruntime;
//! - `rap` conserves the logit per sample in both runtimes, and the runtimes agree;
//! - the decomposed LayerNorm and the op, the Erf-chain GELU and the `Gelu` op give the same
//!   relevance (same function, so the canonical rules must see the same layer);
//! - a padded token (attention mask 0) gets no relevance;
//! - a batch of 3 gives each sample the relevance of its batch-1 run.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::*;
use ndarray::{ArrayD, Axis};
use onnx_rap::pass::Options;
use onnx_rap::rules::Method;
use onnx_rap::runtime::Value;

fn dir() -> PathBuf {
    root().join("tests/data/transformers")
}

fn opts(m: Method) -> Options {
    Options {
        method: m,
        ..Options::default()
    }
}

/// The inputs of a model by name, in the model's input order.
fn inputs(model: &str) -> Vec<(String, Feed)> {
    let stem = if model.starts_with("torch_encoder") {
        "torch_encoder"
    } else {
        model
    };
    let f = std::fs::File::open(dir().join(format!("{stem}_input.npz"))).unwrap();
    let mut npz = ndarray_npy::NpzReader::new(f).unwrap();
    let mut out = Vec::new();
    for name in ["input_ids", "attention_mask", "input"] {
        let key = format!("{name}.npy");
        if let Ok(a) = npz.by_name::<ndarray::OwnedRepr<i64>, ndarray::IxDyn>(&key) {
            out.push((name.to_string(), Feed::I64(a)));
        } else if let Ok(a) = npz.by_name::<ndarray::OwnedRepr<f32>, ndarray::IxDyn>(&key) {
            out.push((name.to_string(), Feed::F32(a)));
        }
    }
    assert!(!out.is_empty(), "{model}: no inputs");
    out
}

fn sample(feeds: &[(String, Feed)], k: usize) -> Vec<(String, Feed)> {
    feeds
        .iter()
        .map(|(n, f)| {
            let f = match f {
                Feed::F32(a) => Feed::F32(a.slice_axis(Axis(0), (k..k + 1).into()).to_owned()),
                Feed::I64(a) => Feed::I64(a.slice_axis(Axis(0), (k..k + 1).into()).to_owned()),
            };
            (n.clone(), f)
        })
        .collect()
}

fn values(feeds: &[(String, Feed)]) -> Vec<Value> {
    feeds
        .iter()
        .map(|(_, f)| match f {
            Feed::F32(a) => Value::F32(a.clone()),
            Feed::I64(a) => Value::I64(a.clone()),
        })
        .collect()
}

fn ort(bytes: &[u8], feeds: &[(String, Feed)]) -> HashMap<String, ArrayD<f32>> {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("m.onnx");
    std::fs::write(&p, bytes).unwrap();
    let f: Vec<(&str, Feed)> = feeds
        .iter()
        .map(|(n, f)| {
            let f = match f {
                Feed::F32(a) => Feed::F32(a.clone()),
                Feed::I64(a) => Feed::I64(a.clone()),
            };
            (n.as_str(), f)
        })
        .collect();
    run_ort(&p, &f)
}

/// Whether the compiled model takes one sample per run (torch's MultiheadAttention folds the
/// batch into the heads: README, "the batch axis stays symbolic, except...").
fn one_sample(bytes: &[u8]) -> bool {
    let m = onnx_rap::onnx::decode(bytes, "model").unwrap();
    let g = m.graph.unwrap();
    onnx_rap::onnx::declared_shape(&g.input[0])
        .and_then(|s| s.dim.first())
        .is_some_and(|d| d.dim_value == Some(1))
}

/// `outputs` of `model` compiled with `m` for every sample, in tract and onnxruntime:
/// (tract, onnxruntime) maps with the samples stacked on axis 0.
fn run_both(
    model: &str,
    m: Method,
) -> (HashMap<String, ArrayD<f32>>, HashMap<String, ArrayD<f32>>) {
    let bytes = compile_file(&dir().join(format!("{model}.onnx")), &opts(m));
    let feeds = inputs(model);
    let n = match &feeds[0].1 {
        Feed::F32(a) => a.shape()[0],
        Feed::I64(a) => a.shape()[0],
    };
    let runs: Vec<Vec<(String, Feed)>> = if one_sample(&bytes) {
        (0..n).map(|k| sample(&feeds, k)).collect()
    } else {
        vec![feeds]
    };
    let stack = |outs: Vec<HashMap<String, ArrayD<f32>>>| {
        let mut res = HashMap::new();
        for key in ["logits", "relevance"] {
            let views: Vec<_> = outs.iter().map(|o| o[key].view()).collect();
            res.insert(
                key.to_string(),
                ndarray::concatenate(Axis(0), &views).unwrap(),
            );
        }
        res
    };
    let t = runs
        .iter()
        .map(|f| run_tract(&bytes, values(f)))
        .collect::<Vec<_>>();
    let o = runs.iter().map(|f| ort(&bytes, f)).collect::<Vec<_>>();
    (stack(t), stack(o))
}

/// The numpy reference's relevance and logits for `model`.
fn reference(model: &str) -> (ArrayD<f32>, ArrayD<f32>) {
    let stem = if model.starts_with("torch_encoder") {
        "torch_encoder"
    } else {
        model
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ref.npy");
    let input = dir().join(format!("{stem}_input.npz"));
    run_python(
        "tests/python/attnlrp_reference.py",
        [
            std::ffi::OsStr::new(model),
            input.as_os_str(),
            out.as_os_str(),
        ],
    );
    let r: ArrayD<f64> = ndarray_npy::read_npy(&out).unwrap();
    let l: ArrayD<f64> = ndarray_npy::read_npy(tmp.path().join("ref_logits.npy")).unwrap();
    (r.mapv(|v| v as f32), l.mapv(|v| v as f32))
}

const MODELS: [&str; 9] = [
    "bert_ln",
    "bert_decomposed",
    "bert_gelu_op",
    "bert_gelu_tanh",
    "llama_like",
    "vit_tiny",
    "torch_encoder_ts14",
    "torch_encoder_ts17",
    "torch_encoder_dyn18",
];

#[test]
fn attnlrp_equals_the_numpy_port_of_its_rules() {
    for model in MODELS {
        let (want, want_logits) = reference(model);
        let (t, o) = run_both(model, Method::AttnLrp);
        let logit_err = rel_err_per_sample(&t["logits"], &want_logits);
        assert!(
            logit_err.iter().all(|&e| e < 1e-5),
            "{model}: the forward pass differs from numpy's: {logit_err:?}"
        );
        for (rt, out) in [("tract", &t), ("onnxruntime", &o)] {
            let err = rel_err_per_sample(&out["relevance"], &want);
            let worst = err.iter().cloned().fold(0.0, f64::max);
            assert!(
                worst <= 1e-5,
                "{model} attnlrp in {rt}: max |got - numpy| = {worst:.2e} x max|R|"
            );
        }
        assert!(want.iter().any(|v| v.abs() > 1e-2), "{model}: all zero");
    }
}

#[test]
fn rap_conserves_the_logit_on_attention_models_in_both_runtimes() {
    for model in MODELS {
        let (t, o) = run_both(model, Method::Rap);
        for (rt, out) in [("tract", &t), ("onnxruntime", &o)] {
            let logits = max_logits(&out["logits"]);
            for (k, (s, l)) in sums(&out["relevance"]).iter().zip(&logits).enumerate() {
                let gap = (s - l).abs() / l.abs().max(1e-6);
                assert!(
                    gap <= 1e-5,
                    "{model} sample {k} in {rt}: relevance sums to {s}, logit {l} ({gap:.1e})"
                );
            }
        }
        let err = rel_err_per_sample(&o["relevance"], &t["relevance"]);
        assert!(
            err.iter().all(|&e| e <= 1e-4),
            "{model}: tract and onnxruntime differ: {err:?}"
        );
    }
}

#[test]
fn the_forms_of_one_layer_give_the_same_relevance() {
    // LayerNorm op / decomposed; GELU as the Erf chain / the opset-20 op: same weights.
    for m in [
        Method::Rap,
        Method::AttnLrp,
        Method::LrpEps,
        Method::GradInput,
    ] {
        let (base, _) = run_both("bert_ln", m);
        for other in ["bert_decomposed", "bert_gelu_op"] {
            let (t, _) = run_both(other, m);
            let err = rel_err_per_sample(&t["relevance"], &base["relevance"]);
            assert!(
                err.iter().all(|&e| e <= 1e-5),
                "{other} against bert_ln, {}: {err:?}",
                m.name()
            );
        }
    }
}

#[test]
fn padded_tokens_get_no_relevance_and_batches_match_single_runs() {
    let feeds = inputs("llama_like");
    let Feed::I64(mask) = &feeds[1].1 else {
        panic!("llama_like has an attention mask")
    };
    assert!(mask.iter().any(|&v| v == 0), "some tokens are padded");
    for m in [Method::Rap, Method::AttnLrp] {
        let bytes = compile_file(&dir().join("llama_like.onnx"), &opts(m));
        assert!(!one_sample(&bytes), "the batch axis stays");
        let all = run_tract(&bytes, values(&feeds));
        let r = &all["relevance"];
        assert_eq!(r.shape(), mask.shape(), "one value per token");
        let scale = r.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (v, &k) in r.iter().zip(mask.iter()) {
            if k == 0 {
                assert!(
                    v.abs() <= 1e-6 * scale,
                    "{}: a padded token got {v}",
                    m.name()
                );
            }
        }
        for k in 0..mask.shape()[0] {
            let one = run_tract(&bytes, values(&sample(&feeds, k)));
            let got = r.slice_axis(Axis(0), (k..k + 1).into()).to_owned();
            let err = rel_err_per_sample(&got, &one["relevance"]);
            assert!(
                err[0] <= 1e-5,
                "{} sample {k}: batch vs alone {err:?}",
                m.name()
            );
        }
    }
}

#[test]
fn token_models_explain_the_word_ids_and_keep_the_mask_an_input() {
    let bytes = compile_file(
        &dir().join("bert_ln.onnx"),
        &Options {
            embedding_relevance: true,
            ..opts(Method::Rap)
        },
    );
    let m = onnx_rap::onnx::decode(&bytes, "model").unwrap();
    let g = m.graph.unwrap();
    let ins: Vec<&str> = g.input.iter().map(|i| i.name()).collect();
    assert!(ins.contains(&"input_ids") && ins.contains(&"attention_mask"));
    let feeds = inputs("bert_ln");
    let out = run_tract(&bytes, values(&feeds));
    let per_dim = &out["relevance_embedding"];
    assert_eq!(per_dim.shape(), &[3, 6, 8]);
    let summed = per_dim.sum_axis(Axis(2));
    let err = rel_err_per_sample(&summed, &out["relevance"]);
    assert!(err.iter().all(|&e| e <= 1e-6), "{err:?}");
}

#[test]
fn an_integer_input_without_an_embedding_is_refused_with_its_name() {
    let bin = env!("CARGO_BIN_EXE_onnx-rap");
    let model = dir().join("bert_ln.onnx");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.onnx");
    let (code, _, err) = run_cli(
        bin,
        &[
            "compile",
            path(&model),
            "-o",
            path(&out),
            "--input",
            "attention_mask",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("'attention_mask' holds integers") && err.contains("--input"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_dense_output_is_explained_through_its_mean() {
    // tests/data/not_a_classifier.onnx: a Conv whose output is a map [N, 2, 6, 6].
    let model = root().join("tests/data/not_a_classifier.onnx");
    let o = Options {
        reduce_output: Some(onnx_rap::pass::Reduction::Mean),
        ..opts(Method::Rap)
    };
    let bytes = compile_file(&model, &o);
    let x = uniform(&[2, 1, 8, 8], 1);
    let t = run_tract(&bytes, vec![Value::F32(x.clone())]);
    let feeds = vec![("x".to_string(), Feed::F32(x))];
    let r = ort(&bytes, &feeds);
    for (rt, out) in [("tract", &t), ("onnxruntime", &r)] {
        let map = &out["y"];
        let score = &out["y_mean"];
        assert_eq!(score.shape(), &[2, 1]);
        for (k, s) in sums(&out["relevance"]).iter().enumerate() {
            let mean: f64 = map
                .index_axis(Axis(0), k)
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / 72.0;
            assert!((mean - score[[k, 0]] as f64).abs() < 1e-5, "{rt}");
            assert!(
                (s - mean).abs() <= 1e-5 * mean.abs().max(1e-3),
                "{rt} {k}: {s} vs {mean}"
            );
        }
    }
}

#[test]
fn models_that_fold_the_batch_keep_it_through_a_scan() {
    // torch's MultiheadAttention reshapes [T, N, E] to [T, N*heads, d]: the relevance graph
    // is built for one sample and wrapped into a Scan over the batch.
    for model in [
        "torch_encoder_ts14",
        "torch_encoder_ts17",
        "torch_encoder_dyn18",
    ] {
        let bytes = compile_file(&dir().join(format!("{model}.onnx")), &opts(Method::Rap));
        assert!(
            !one_sample(&bytes),
            "{model}: the batch axis is symbolic again"
        );
        let m = onnx_rap::onnx::decode(&bytes, "model").unwrap();
        assert!(m.graph.unwrap().node.iter().any(|n| n.op_type() == "Scan"));
        let feeds = inputs(model);
        let all_t = run_tract(&bytes, values(&feeds));
        let all_o = ort(&bytes, &feeds);
        assert_eq!(all_t["relevance"].shape(), &[3, 8]);
        for k in 0..3 {
            let one = run_tract(&bytes, values(&sample(&feeds, k)));
            for (rt, all) in [("tract", &all_t), ("onnxruntime", &all_o)] {
                let got = all["relevance"]
                    .slice_axis(Axis(0), (k..k + 1).into())
                    .to_owned();
                let err = rel_err_per_sample(&got, &one["relevance"]);
                assert!(err[0] <= 1e-5, "{model} {rt} sample {k}: {err:?}");
            }
        }
    }
}

#[test]
fn rmsnorm_as_the_opset_23_op_and_decomposed_give_the_same_relevance() {
    // tests/data/rmsnorm (scripts/make_rmsnorm_tests.py): one token model, its RMSNorm written
    // as the opset-23 op and as the exporters' decomposition; onnxruntime runs both.
    let d = root().join("tests/data/rmsnorm");
    let f = std::fs::File::open(d.join("input.npz")).unwrap();
    let mut npz = ndarray_npy::NpzReader::new(f).unwrap();
    let ids: ArrayD<i64> = npz.by_name("input_ids.npy").unwrap();
    let feeds = vec![("input_ids".to_string(), Feed::I64(ids))];
    for m in [Method::Rap, Method::AttnLrp, Method::GradInput] {
        let a = ort(&compile_file(&d.join("rms_op23.onnx"), &opts(m)), &feeds);
        let b = ort(
            &compile_file(&d.join("rms_decomposed.onnx"), &opts(m)),
            &feeds,
        );
        let err = rel_err_per_sample(&a["relevance"], &b["relevance"]);
        assert!(err.iter().all(|&e| e <= 1e-5), "{}: {err:?}", m.name());
        // Gradient x input along the embeddings is 0 here: RMSNorm right after the lookup is
        // scale invariant (checked against finite differences below).
        if m != Method::GradInput {
            assert!(
                b["relevance"].iter().any(|v| v.abs() > 1e-3),
                "{}",
                m.name()
            );
        }
        if m == Method::Rap {
            let logits = max_logits(&a["logits"]);
            for (s, l) in sums(&a["relevance"]).iter().zip(&logits) {
                assert!((s - l).abs() <= 1e-5 * l.abs().max(1.0), "{s} vs {l}");
            }
        }
    }
}

/// `bytes` with row `row` of initializer `table` scaled by `1 + t`.
fn scale_row(bytes: &[u8], table: &str, row: usize, t: f32) -> Vec<u8> {
    let mut m = onnx_rap::onnx::decode(bytes, "model").unwrap();
    let g = m.graph.as_mut().unwrap();
    let init = g
        .initializer
        .iter_mut()
        .find(|i| i.name() == table)
        .unwrap();
    let mut a = onnx_rap::onnx::tensor::to_f32(init).unwrap();
    a.index_axis_mut(Axis(0), row)
        .mapv_inplace(|v| v * (1.0 + t));
    let dims = init.dims.clone();
    *init = onnx_rap::onnx::tensor::f32_tensor(table, &dims, a.as_slice().unwrap());
    onnx_rap::onnx::encode(&m)
}

#[test]
fn gradient_x_input_on_tokens_equals_finite_differences_of_the_embeddings() {
    // Per token, gradxinput is sum_D (df/de) e: the derivative of f along its own embedding,
    // d/dt f((1 + t) e). Scaling a row of the table scales every token with that id, so per
    // id the relevance of its tokens sums to that derivative (central differences).
    for (model, table) in [
        ("tests/data/rmsnorm/rms_decomposed.onnx", "emb"),
        ("tests/data/transformers/bert_ln.onnx", "word"),
        ("tests/data/transformers/llama_like.onnx", "word"),
    ] {
        let path = root().join(model);
        let source = std::fs::read(&path).unwrap();
        let bytes = compile_file(&path, &opts(Method::GradInput));
        let name = path.file_stem().unwrap().to_str().unwrap();
        let feeds = if name == "rms_decomposed" {
            let f = std::fs::File::open(root().join("tests/data/rmsnorm/input.npz")).unwrap();
            let mut npz = ndarray_npy::NpzReader::new(f).unwrap();
            vec![(
                "input_ids".to_string(),
                Feed::I64(npz.by_name("input_ids.npy").unwrap()),
            )]
        } else {
            inputs(name)
        };
        let one = sample(&feeds, 0);
        let out = run_tract(&bytes, values(&one));
        let r = &out["relevance"];
        let t = max_logits(&out["logits"])[0];
        let target = out["logits"].iter().position(|&v| v as f64 == t).unwrap();
        let Feed::I64(ids) = &one[0].1 else { panic!() };
        // RMSNorm right after the lookup makes f scale invariant along the embeddings (the
        // derivative is 0: a wrong RMSNorm gradient shows there), so the bound is relative
        // to the logit too.
        let scale = (r.iter().fold(0f32, |a, v| a.max(v.abs())) as f64).max(0.01 * t.abs());
        let mut seen = std::collections::BTreeSet::new();
        for &id in ids.iter() {
            if !seen.insert(id) {
                continue;
            }
            // float32 logits: a step of 1e-2 keeps rounding below the O(h^2) truncation.
            let h = 1e-2f32;
            let f = |t: f32| {
                let b = scale_row(&source, table, id as usize, t);
                run_tract(&b, values(&one))["logits"].as_slice().unwrap()[target] as f64
            };
            let fd = (f(h) - f(-h)) / (2.0 * h as f64);
            let got: f64 = ids
                .iter()
                .zip(r.iter())
                .filter(|(&k, _)| k == id)
                .map(|(_, &v)| v as f64)
                .sum();
            assert!(
                (got - fd).abs() <= 2e-3 * scale.max(1e-3),
                "{name} id {id}: gradxinput {got} vs finite differences {fd}"
            );
        }
    }
}
