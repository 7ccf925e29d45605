//! `onnx-rap eval`: its numbers against an independent numpy computation of the same protocol
//! (tests/python/eval_reference.py, which also rebuilds every perturbed input and runs it in
//! onnxruntime), a model that ignores its input (AOPC 0), and bad inputs.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value as Json;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_onnx-rap")
}

fn eval(args: &[&str]) -> (i32, String, String) {
    let all: Vec<&str> = std::iter::once("eval")
        .chain(args.iter().copied())
        .collect();
    run_cli(bin(), &all)
}

#[test]
fn eval_equals_the_numpy_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let dump = tmp.path().join("dump");
    let model = root().join("models/digits_vgg.onnx");
    // The benchmark comes from the model's metadata (models/data/digits_test.npz).
    let (code, stdout, err) = eval(&[
        model.to_str().unwrap(),
        "--limit",
        "8",
        "--steps",
        "16",
        "--out",
        out.to_str().unwrap(),
        "--dump",
        dump.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: Json = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["images"], 8);
    let methods = report["methods"].as_array().unwrap();
    assert_eq!(
        methods.len(),
        onnx_rap::rules::Method::ALL.len(),
        "every method by default"
    );
    for m in methods {
        assert_eq!(m["morf_curve"].as_array().unwrap().len(), 17);
        let p = m["pointing"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
    }
    let json_path = tmp.path().join("eval.json");
    std::fs::write(&json_path, &stdout).unwrap();
    let check = Command::new(python())
        .arg(root().join("tests/python/eval_reference.py"))
        .arg(&model)
        .arg(root().join("models/data/digits_test.npz"))
        .arg(&dump)
        .arg(&json_path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let diff: Json = serde_json::from_slice(&check.stdout).unwrap();
    let get = |k: &str| diff[k].as_f64().unwrap();
    assert!(get("max_metric_diff") <= 1e-6, "{diff}");
    assert!(get("max_curve_diff") <= 1e-6, "{diff}");
    // Another runtime on the same inputs: float32 rounding only.
    assert!(get("max_logit_rel_diff") <= 1e-4, "{diff}");

    let csv = std::fs::read_to_string(out.join("curves.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 18, "header + 17 steps");
    assert!(lines[0].starts_with(
        "step,fraction_perturbed,rap_morf,rap_lerf,rap-official_morf,rap-official_lerf,lrp_morf"
    ));
    let png = image::open(out.join("curves.png")).unwrap();
    assert!(png.width() > 500);
}

#[test]
fn a_model_that_ignores_the_image_has_aopc_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, err) = eval(&[
        root()
            .join("tests/data/ignores_input.onnx")
            .to_str()
            .unwrap(),
        "--data",
        root().join("models/data/digits_test.npz").to_str().unwrap(),
        "--limit",
        "4",
        "--steps",
        "8",
        "--methods",
        "rap,gradxinput",
        "--out",
        tmp.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: Json = serde_json::from_str(&stdout).unwrap();
    for m in report["methods"].as_array().unwrap() {
        assert_eq!(m["aopc_morf"].as_f64().unwrap(), 0.0, "{m}");
        assert_eq!(m["aopc_lerf"].as_f64().unwrap(), 0.0, "{m}");
        // No relevance anywhere: the ratio is undefined for every image.
        assert_eq!(m["outside_inside_undefined"], 4, "{m}");
    }
}

#[test]
fn eval_rejects_bad_inputs_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let tiny = root().join("tests/data/tiny_cnn.onnx");
    let digits = root().join("models/data/digits_test.npz");
    // No benchmark named anywhere.
    let (code, _, err) = eval(&[
        root()
            .join("tests/data/ignores_input.onnx")
            .to_str()
            .unwrap(),
        "--out",
        out,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("onnx_rap.benchmark") && err.contains("--data"),
        "{err}"
    );
    // Not an .npz.
    let bogus = tmp.path().join("bogus.npz");
    std::fs::write(&bogus, b"not a zip").unwrap();
    let (code, _, err) = eval(&[
        root().join("models/digits_vgg.onnx").to_str().unwrap(),
        "--data",
        bogus.to_str().unwrap(),
        "--out",
        out,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bogus.npz") && err.contains(".npz"), "{err}");
    // Images of another size than the model takes.
    let (code, _, err) = eval(&[
        tiny.to_str().unwrap(),
        "--data",
        digits.to_str().unwrap(),
        "--out",
        out,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("64x64") && err.contains("13x11"), "{err}");
}
