//! The library API (`onnx_rap::explainer`): what a crate user gets. Checked against RAP's
//! conservation law, runs of one sample against runs of a batch, and the command line's
//! files; bad inputs give errors, never panics.

mod common;

use std::path::PathBuf;

use common::*;
use ndarray::{ArrayD, Axis, IxDyn};
use onnx_rap::explainer::{Explainer, Settings};
use onnx_rap::runtime::Value;

fn digits() -> PathBuf {
    root().join("models/digits_vgg.onnx")
}

fn max_abs(a: &ArrayD<f32>) -> f32 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn rel_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let d = a
        .iter()
        .zip(b.iter())
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    d / max_abs(b)
}

#[test]
fn a_batch_conserves_and_equals_its_samples_run_alone() {
    let e = Explainer::load(&digits(), &Settings::default()).unwrap();
    assert_eq!(e.classes(), 10);
    let sample = e.compiled().sample.clone();
    let pics: Vec<_> = ["digit_1_4.png", "digit_5_9.png"]
        .iter()
        .map(|f| root().join("models/samples").join(f))
        .collect();
    let refs: Vec<&std::path::Path> = pics.iter().map(|p| p.as_path()).collect();
    let both = e.explain_images(&refs, Some(&[3, -1])).unwrap();
    let x = &both.explanation;
    assert_eq!(x.relevance.shape()[1..], sample[..]);
    assert_eq!(x.targets[0], 3);
    // A negative target is the prediction.
    let row: Vec<f32> = x.logits.row(1).to_vec();
    assert_eq!(x.targets[1], onnx_rap::explainer::argmax(&row));
    for k in 0..2 {
        // RAP conserves: each sample's relevance sums to its explained logit.
        let sum: f64 = x
            .relevance
            .index_axis(Axis(0), k)
            .iter()
            .map(|v| *v as f64)
            .sum();
        let logit = x.logits[[k, x.targets[k]]] as f64;
        assert!(
            (sum / logit - 1.0).abs() < 1e-3,
            "sample {k}: {sum} vs {logit}"
        );
        let one = e
            .explain_images(&refs[k..k + 1], Some(&[x.targets[k] as i64]))
            .unwrap();
        let alone = one.explanation.relevance.index_axis(Axis(0), 0).to_owned();
        let batched = x.relevance.index_axis(Axis(0), k).to_owned();
        assert!(rel_diff(&batched, &alone) <= 1e-6);
    }
    // The heatmap output is the channel sum.
    let heat = x.output("heatmap").unwrap();
    let sum = x.relevance.sum_axis(Axis(1));
    assert!(rel_diff(heat, &sum) <= 1e-5);
}

#[test]
fn explain_equals_the_command_lines_file() {
    let out = tempfile::tempdir().unwrap();
    let pic = root().join("models/samples/digit_2_5.png");
    let (code, _, err) = run_cli(
        env!("CARGO_BIN_EXE_onnx-rap"),
        &[
            "explain",
            digits().to_str().unwrap(),
            "--input",
            pic.to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
            "--method",
            "lrp-a2b1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let want: ArrayD<f32> =
        ndarray_npy::read_npy(out.path().join("digit_2_5_relevance.npy")).unwrap();
    let settings = Settings {
        compile: onnx_rap::pass::Options {
            method: onnx_rap::rules::Method::LrpA2B1,
            ..Default::default()
        },
        ..Default::default()
    };
    let e = Explainer::load(&digits(), &settings).unwrap();
    let got = e.explain_images(&[pic.as_path()], None).unwrap();
    let got = got.explanation.relevance.index_axis(Axis(0), 0).to_owned();
    assert!(rel_diff(&got, &want) <= 1e-6);
}

#[test]
fn a_model_that_folds_its_batch_runs_sample_by_sample() {
    // The torch encoder folds its batch (one sample per run): a batch of 3 is split into
    // three runs and stacked, equal to each sample explained alone.
    let path = root().join("tests/data/transformers/torch_encoder_ts17.onnx");
    let model = onnx_rap::explainer::load_model(&path).unwrap();
    let e = Explainer::tensors(model, &path, &Settings::default()).unwrap();
    assert_eq!(e.max_batch(), Some(1));
    let npz = std::fs::File::open(root().join("tests/data/transformers/torch_encoder_input.npz"))
        .unwrap();
    let ids: ArrayD<i64> = ndarray_npy::NpzReader::new(npz)
        .unwrap()
        .by_name("input_ids")
        .unwrap();
    let n = ids.shape()[0];
    e.warm_up(&[Value::I64(ids.clone())]).unwrap();
    let all = e.run(vec![Value::I64(ids.clone())], None).unwrap();
    assert_eq!(all.relevance.shape()[0], n);
    for k in 0..n {
        let one = Value::I64(ids.clone()).sample(k);
        let alone = e.run(vec![one], None).unwrap();
        let a = all.relevance.index_axis(Axis(0), k).to_owned();
        let b = alone.relevance.index_axis(Axis(0), 0).to_owned();
        assert!(rel_diff(&a, &b) <= 1e-6, "sample {k}");
        assert_eq!(all.targets[k], alone.targets[0]);
        let sum: f64 = a.iter().map(|v| *v as f64).sum();
        let logit = all.logits[[k, all.targets[k]]] as f64;
        assert!(
            (sum / logit - 1.0).abs() < 1e-3,
            "sample {k}: {sum} vs {logit}"
        );
    }
}

#[test]
fn texts_split_into_tokens_special_tokens_and_padding() {
    let path = root().join("tests/data/text/tiny_bert.onnx");
    let e = Explainer::load(&path, &Settings::default()).unwrap();
    assert!(e.text().is_some());
    let out = e
        .explain_texts(
            &["the cat sat on the mat", "a dog"],
            &["one", "two"],
            Some(&[1, 0]),
        )
        .unwrap();
    for (t, want) in out.iter().zip([1usize, 0]) {
        assert_eq!(t.verdict.target, want);
        let parts: f64 = t.relevance.tokens.iter().map(|v| *v as f64).sum::<f64>()
            + t.relevance.special.unwrap_or(0.0)
            + t.relevance.padding;
        assert!((parts - t.relevance.sum).abs() <= 1e-5 * t.relevance.sum.abs().max(1.0));
        assert_eq!(t.tokens.len(), t.relevance.tokens.len());
        // [CLS] and [SEP] are special tokens of a WordPiece model.
        assert!(t.relevance.special.is_some());
        let logit = t.logits[want] as f64;
        assert!((t.relevance.sum / logit - 1.0).abs() < 1e-3);
    }
}

#[test]
fn bad_inputs_are_errors_that_say_what_is_wrong() {
    let e = Explainer::load(&digits(), &Settings::default()).unwrap();
    let err = |r: onnx_rap::Result<onnx_rap::explainer::Explanation>| match r {
        Err(onnx_rap::Error::Input(m)) => m,
        Err(other) => panic!("not a bad-input error: {other}"),
        Ok(_) => panic!("accepted"),
    };
    let shape = err(e.explain(ArrayD::zeros(IxDyn(&[1, 1, 8, 8])), None));
    assert!(shape.contains("per sample"), "{shape}");
    let mut s = vec![2];
    s.extend_from_slice(&e.compiled().sample);
    let target = err(e.explain(ArrayD::zeros(IxDyn(&s)), Some(&[1, 10])));
    assert!(target.contains("out of range"), "{target}");
    let count = err(e.explain(ArrayD::zeros(IxDyn(&s)), Some(&[1])));
    assert!(
        count.contains("1 target(s) given for 2 sample(s)"),
        "{count}"
    );
    let kind = err(e.run(vec![Value::I64(ArrayD::zeros(IxDyn(&s)))], None));
    assert!(kind.contains("takes float32"), "{kind}");
    let many = err(e.run(vec![], None));
    assert!(many.contains("takes 1 input(s)"), "{many}");
    let text = err(e
        .explain_texts(&["hello"], &["t"], None)
        .map(|_| unreachable!()));
    assert!(text.contains("not token ids"), "{text}");
}
