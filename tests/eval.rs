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

/// Run the numpy reference (tests/python/eval_reference.py) with `args`; its JSON verdict.
fn reference(args: &[&std::ffi::OsStr]) -> Json {
    let check = Command::new(python())
        .arg(root().join("tests/python/eval_reference.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    serde_json::from_slice(&check.stdout).unwrap()
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
    let diff = reference(&[
        model.as_os_str(),
        root().join("models/data/digits_test.npz").as_os_str(),
        dump.as_os_str(),
        json_path.as_os_str(),
    ]);
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
    // Labelled texts always explain their labels: --explain is refused, not ignored.
    let texts = root().join("models/data/nanoguard_texts.jsonl");
    let (code, _, err) = eval(&[
        root().join("models/nanoguard.onnx").to_str().unwrap(),
        "--data",
        texts.to_str().unwrap(),
        "--explain",
        "predicted",
        "--out",
        out,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("nanoguard_texts.jsonl") && err.contains("--explain"),
        "{err}"
    );
}

/// Three of the labelled ImageNet photos (models/data/imagenet_photos) with EfficientNet-Lite0:
/// the true class is explained, the accuracy, the random floor, deletion / insertion AUC, ABPC
/// and the bootstrap intervals equal the numpy reference, which rebuilds every deletion and
/// insertion input and runs it in onnxruntime.
#[test]
fn photo_benchmark_equals_the_numpy_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("dump");
    let model = root().join("models/efficientnet_lite0.onnx");
    let photos = root().join("models/data/imagenet_photos");
    let (code, stdout, err) = eval(&[
        model.to_str().unwrap(),
        "--data",
        photos.to_str().unwrap(),
        "--methods",
        "rap,lrp-zplus",
        "--limit",
        "3",
        "--patch",
        "56",
        "--steps",
        "8",
        "--out",
        tmp.path().join("out").to_str().unwrap(),
        "--dump",
        dump.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: Json = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["images"], 3);
    assert_eq!(report["explained"], "true");
    assert_eq!(report["patches"], 16);
    assert_eq!(report["deletion_steps"], 8);
    assert_eq!(report["baseline"], "Gaussian blur, sigma = 5 pixels");
    let names: Vec<&str> = report["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rap", "lrp-zplus", "random"]);
    // Two methods against rap, five metrics each.
    assert_eq!(report["bootstrap"].as_array().unwrap().len(), 10);
    for m in report["methods"].as_array().unwrap() {
        for k in ["deletion_auc", "insertion_auc"] {
            let v = m[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{m}");
        }
    }
    let json_path = tmp.path().join("eval.json");
    std::fs::write(&json_path, &stdout).unwrap();
    let diff = reference(&[
        "--photos".as_ref(),
        model.as_os_str(),
        photos.as_os_str(),
        dump.as_os_str(),
        json_path.as_os_str(),
    ]);
    let get = |k: &str| diff[k].as_f64().unwrap();
    assert!(get("max_metric_diff") <= 1e-9, "{diff}");
    assert!(get("max_bootstrap_diff") <= 1e-9, "{diff}");
    assert_eq!(get("max_random_map_diff"), 0.0, "{diff}");
    assert_eq!(get("accuracy_diff"), 0.0, "{diff}");
    assert_eq!(diff["rows"], 10, "{diff}");
    // Another runtime on the same inputs: float32 rounding only.
    assert!(get("max_prob_diff") <= 1e-4, "{diff}");
}

#[test]
fn photo_labels_are_read_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let model = root().join("models/efficientnet_lite0.onnx");
    let dir = tmp.path().join("photos");
    std::fs::create_dir(&dir).unwrap();
    let src = root().join("models/data/imagenet_photos");
    for f in ["imagenet_00_243.jpg", "imagenet_01_559.jpg"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    // `labels`: the labels.json to write (None: the folder has none).
    let run = |labels: Option<&str>, extra: &[&str]| {
        match labels {
            Some(l) => std::fs::write(dir.join("labels.json"), l).unwrap(),
            None if dir.join("labels.json").exists() => {
                std::fs::remove_file(dir.join("labels.json")).unwrap()
            }
            None => {}
        }
        let mut a = vec![
            model.to_str().unwrap(),
            "--data",
            dir.to_str().unwrap(),
            "--methods",
            "gradxinput",
            "--patch",
            "112",
            "--steps",
            "2",
            "--out",
            out.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        eval(&a)
    };
    // A photo without a label: exit 2, naming it.
    let (code, _, err) = run(Some(r#"{"imagenet_00_243.jpg": 243}"#), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("imagenet_01_559.jpg") && err.contains("labels.json"),
        "{err}"
    );
    // A label out of range.
    let (code, _, err) = run(
        Some(r#"{"imagenet_00_243.jpg": 243, "imagenet_01_559.jpg": 1000}"#),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("imagenet_01_559.jpg") && err.contains("1000"),
        "{err}"
    );
    // Not a JSON object.
    let (code, _, err) = run(Some("[243, 559]"), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("labels.json"), "{err}");
    // A wrong label: the accuracy counts it, and the true class is what is explained.
    let (code, stdout, err) = run(
        Some(r#"{"imagenet_00_243.jpg": 243, "imagenet_01_559.jpg": 7}"#),
        &["--json"],
    );
    assert_eq!(code, 0, "{err}");
    let r: Json = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["accuracy"].as_f64().unwrap(), 0.5, "{r}");
    assert_eq!(r["explained"], "true");
    // --explain predicted: the same accuracy, the prediction explained.
    let (code, stdout, err) = run(
        Some(r#"{"imagenet_00_243.jpg": 243, "imagenet_01_559.jpg": 7}"#),
        &["--json", "--explain", "predicted"],
    );
    assert_eq!(code, 0, "{err}");
    let p: Json = serde_json::from_str(&stdout).unwrap();
    assert_eq!(p["explained"], "predicted");
    assert_eq!(p["accuracy"].as_f64().unwrap(), 0.5, "{p}");
    // The second photo's explained class differs (7 against the prediction), so the
    // deletion scores differ.
    assert_ne!(
        r["methods"][0]["deletion_auc"], p["methods"][0]["deletion_auc"],
        "{r} {p}"
    );
    // No labels.json: the prediction, no accuracy; --explain true is an error.
    let (code, _, err) = run(None, &["--explain", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("labels.json"), "{err}");
    let (code, stdout, err) = run(None, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let q: Json = serde_json::from_str(&stdout).unwrap();
    assert_eq!(q["explained"], "predicted");
    assert!(q["accuracy"].is_null(), "{q}");
}
