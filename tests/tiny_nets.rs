//! The conv geometry the golden cases do not cover (asymmetric padding, strides per axis,
//! dilation, groups, depthwise, ceil-mode overlapping MaxPool, padded AveragePool both ways,
//! Concat, residual Add), checked by two independent expectations:
//! - LRP's z+ rule conserves relevance exactly when every transposed operator is the true
//!   transpose of its forward operator, so its sum must equal the target logit;
//! - tract and onnxruntime must agree on model_rap.onnx.

mod common;

use common::*;
use onnx_rap::pass::Options;
use onnx_rap::rules::{Bounds, Method};
use onnx_rap::runtime::Value;

fn run_both(
    file: &str,
    input: &str,
    opts: &Options,
) -> (
    ndarray::ArrayD<f32>,
    ndarray::ArrayD<f32>,
    ndarray::ArrayD<f32>,
) {
    let bytes = compile_file(&root().join(file), opts);
    let x = npy_f32(&root().join(input));
    let t = run_tract(&bytes, vec![Value::F32(x.clone())]);
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("m.onnx");
    std::fs::write(&p, &bytes).unwrap();
    let name = onnx_rap::onnx::decode(&bytes, file)
        .unwrap()
        .graph
        .unwrap()
        .input[0]
        .name()
        .to_string();
    let o = run_ort(&p, &[(name.as_str(), Feed::F32(x))]);
    (
        t["relevance"].clone(),
        o["relevance"].clone(),
        t[&output_names(&bytes)[0]].clone(),
    )
}

#[test]
fn lrp_conserves_on_the_tiny_cnn_in_both_runtimes() {
    let opts = Options {
        method: Method::Lrp,
        ..Options::default()
    };
    let (t, o, logits) = run_both(
        "tests/data/tiny_cnn.onnx",
        "tests/data/tiny_cnn_input.npy",
        &opts,
    );
    for (rt, r) in [("tract", &t), ("onnxruntime", &o)] {
        for (i, (s, y)) in sums(r).iter().zip(max_logits(&logits)).enumerate() {
            assert!(
                (s - y).abs() <= 1e-4 * y.abs(),
                "{rt} sample {i}: sum {s} vs logit {y}"
            );
        }
    }
}

#[test]
fn rap_on_the_tiny_cnn_conserves_and_runtimes_agree() {
    let (t, o, logits) = run_both(
        "tests/data/tiny_cnn.onnx",
        "tests/data/tiny_cnn_input.npy",
        &Options::default(),
    );
    let e = rel_err_per_sample(&t, &o);
    assert!(e.iter().all(|e| *e < 1e-3), "tract vs onnxruntime: {e:?}");
    for (i, (s, y)) in sums(&t).iter().zip(max_logits(&logits)).enumerate() {
        assert!(
            (s - y).abs() <= 1e-3 * y.abs(),
            "sample {i}: sum {s} vs logit {y}"
        );
    }
    // RAP maps are bipolar.
    assert!(t.iter().any(|v| *v < 0.0) && t.iter().any(|v| *v > 0.0));
}

#[test]
fn fixed_input_bounds_change_the_map_but_keep_the_total() {
    let fixed = Options {
        bounds: Bounds::Fixed(-4.0, 4.0),
        ..Options::default()
    };
    let (a, _, logits) = run_both(
        "tests/data/tiny_mlp.onnx",
        "tests/data/tiny_mlp_input.npy",
        &Options::default(),
    );
    let (b, bo, _) = run_both(
        "tests/data/tiny_mlp.onnx",
        "tests/data/tiny_mlp_input.npy",
        &fixed,
    );
    assert!(
        rel_err_per_sample(&a, &b).iter().any(|e| *e > 1e-3),
        "bounds had no effect"
    );
    assert!(rel_err_per_sample(&b, &bo).iter().all(|e| *e < 1e-4));
    for (s, y) in sums(&b).iter().zip(max_logits(&logits)) {
        assert!(
            (s - y).abs() <= 1e-3 * y.abs().max(1e-3),
            "sum {s} vs logit {y}"
        );
    }
}

#[test]
fn a_trailing_softmax_is_skipped_and_its_logits_explained() {
    let (a, ao, _) = run_both(
        "tests/data/tiny_mlp.onnx",
        "tests/data/tiny_mlp_input.npy",
        &Options::default(),
    );
    let (b, bo, probs) = run_both(
        "tests/data/tiny_mlp_softmax.onnx",
        "tests/data/tiny_mlp_input.npy",
        &Options::default(),
    );
    assert!(
        probs.iter().all(|p| (0.0..=1.0).contains(p)),
        "the model output stays the softmax"
    );
    assert!(rel_err_per_sample(&a, &b).iter().all(|e| *e < 1e-6));
    assert!(rel_err_per_sample(&ao, &bo).iter().all(|e| *e < 1e-6));
}

#[test]
fn maxpool_ties_go_to_the_first_element_of_each_window() {
    let (t, o, logits) = run_both(
        "tests/data/maxpool_ties.onnx",
        "tests/data/maxpool_ties_input.npy",
        &Options::default(),
    );
    for (rt, r) in [("tract", &t), ("onnxruntime", &o)] {
        for ((idx, v), x) in r
            .indexed_iter()
            .zip(npy_f32(&root().join("tests/data/maxpool_ties_input.npy")).iter())
        {
            let first = idx[2] % 2 == 0 && idx[3] % 2 == 0;
            assert!(*x > 0.0);
            if first {
                assert!(
                    *v != 0.0,
                    "{rt} {idx:?}: the first element of a tied window gets relevance"
                );
            } else {
                assert_eq!(*v, 0.0, "{rt} {idx:?}: later tied elements get none");
            }
        }
        for (s, y) in sums(r).iter().zip(max_logits(&logits)) {
            assert!(
                (s - y).abs() <= 1e-3 * y.abs(),
                "{rt}: sum {s} vs logit {y}"
            );
        }
    }
}

/// The emitted reductions and splits take their axes as attributes below opset 13 (ReduceSum,
/// Split) or 18 (ReduceMin/Max) and as inputs from there on: the same network declared at
/// opsets 12, 17 and 18 gives the same relevance in both runtimes.
#[test]
fn opset_12_and_18_forms_give_the_same_relevance() {
    for (base, input) in [
        ("tiny_mlp", "tests/data/tiny_mlp_input.npy"),
        ("tiny_cnn", "tests/data/tiny_cnn_input.npy"),
    ] {
        let (want, _, _) = run_both(
            &format!("tests/data/{base}.onnx"),
            input,
            &Options::default(),
        );
        for v in [12, 18] {
            let (t, o, _) = run_both(
                &format!("tests/data/{base}_opset{v}.onnx"),
                input,
                &Options::default(),
            );
            for (rt, got) in [("tract", &t), ("onnxruntime", &o)] {
                let e = rel_err_per_sample(got, &want);
                assert!(e.iter().all(|e| *e < 1e-5), "{base} opset {v} {rt}: {e:?}");
            }
        }
    }
}

/// A model that folds its batch axis into the rows of a MatMul (as torch's
/// MultiheadAttention does) is explained one sample per run: its RAP relevance must equal
/// that of the same function written with a clean batch axis (where RAP's per-sample shift
/// covers the whole sample, not one row), in both runtimes, and its model_rap.onnx takes a
/// batch again (a Scan over the samples).
#[test]
fn a_model_that_folds_its_batch_is_explained_per_sample() {
    let opts = Options::default();
    let (plain_t, plain_o, _) = run_both(
        "tests/data/tiny_fold_plain.onnx",
        "tests/data/tiny_fold_input.npy",
        &opts,
    );
    let (fold_t, fold_o, logits) = run_both(
        "tests/data/tiny_fold.onnx",
        "tests/data/tiny_fold_input.npy",
        &opts,
    );
    let scale = plain_t.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);
    for (name, got) in [
        ("tract", &fold_t),
        ("onnxruntime", &fold_o),
        ("plain ort", &plain_o),
    ] {
        let d = got
            .iter()
            .zip(plain_t.iter())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(d <= 1e-5 * scale, "{name}: {d} vs max|R| {scale}");
    }
    // RAP conserves: the relevance adds up to the explained logit.
    let sum = sums(&fold_t)[0];
    let logit = max_logits(&logits)[0];
    assert!(
        (sum - logit).abs() <= 1e-4 * logit.abs(),
        "{sum} vs {logit}"
    );

    // The compiled model keeps a symbolic batch (the one-sample relevance graph runs in a
    // Scan over it): two copies of the sample give the same map twice.
    let bytes = compile_file(&root().join("tests/data/tiny_fold.onnx"), &opts);
    let m = onnx_rap::onnx::decode(&bytes, "tiny_fold_rap").unwrap();
    let d0 = &m.graph.unwrap().input[0]
        .r#type
        .clone()
        .unwrap()
        .tensor_type
        .unwrap()
        .shape
        .unwrap()
        .dim[0];
    assert!(d0.dim_param.is_some(), "{d0:?}");
    let x = npy_f32(&root().join("tests/data/tiny_fold_input.npy"));
    let x2 = ndarray::concatenate(ndarray::Axis(0), &[x.view(), x.view()]).unwrap();
    let r2 = run_tract(&bytes, vec![Value::F32(x2.clone())])["relevance"].clone();
    for i in 0..2 {
        let d = r2
            .index_axis(ndarray::Axis(0), i)
            .iter()
            .zip(plain_t.iter())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(d <= 1e-5 * scale, "fold, sample {i} of 2: {d}");
    }

    // The plain model keeps its batch: two copies of the sample give the same map twice.
    let pb = compile_file(&root().join("tests/data/tiny_fold_plain.onnx"), &opts);
    let r2 = run_tract(&pb, vec![Value::F32(x2)])["relevance"].clone();
    for i in 0..2 {
        let d = r2
            .index_axis(ndarray::Axis(0), i)
            .iter()
            .zip(plain_t.iter())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(d <= 1e-5 * scale);
    }
}

/// Pools over 33 planes of 4x4 (batch x channels), where tract 0.23.9's ConvTranspose with
/// one output channel returned wrong and run-dependent values: the unpooling is written as
/// plain convolutions, so tract must give the same relevance on every run and agree with
/// onnxruntime, for RAP and for z+.
#[test]
fn pooled_planes_agree_in_both_runtimes_run_after_run() {
    for method in [Method::Rap, Method::LrpZPlus] {
        let opts = Options {
            method,
            ..Options::default()
        };
        let bytes = compile_file(&root().join("tests/data/tiny_pools.onnx"), &opts);
        let x = npy_f32(&root().join("tests/data/tiny_pools_input.npy"));
        let inputs = [Value::F32(x.clone())];
        let names = output_names(&bytes);
        let at = names.iter().position(|n| n == "relevance").unwrap();
        let plan = onnx_rap::runtime::Plan::new(&bytes, &inputs, names).unwrap();
        let first = plan.run(&inputs).unwrap()[at].1.clone();
        for _ in 0..3 {
            assert_eq!(plan.run(&inputs).unwrap()[at].1, first, "{method:?}");
        }
        let (_, ort, logits) = run_both(
            "tests/data/tiny_pools.onnx",
            "tests/data/tiny_pools_input.npy",
            &opts,
        );
        let scale = ort.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = first
            .iter()
            .zip(ort.iter())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            scale > 0.0 && d <= 1e-5 * scale,
            "{method:?}: {d} vs {scale}"
        );
        let (sum, logit) = (sums(&first)[0], max_logits(&logits)[0]);
        assert!(
            (sum - logit).abs() <= 1e-4 * logit.abs(),
            "{method:?}: {sum} vs {logit}"
        );
    }
}
