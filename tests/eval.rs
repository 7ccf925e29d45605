//! `onnx-rap eval`: its numbers against an independent numpy computation of the same protocol
//! (tests/python/eval_reference.py, which also rebuilds every perturbed input and runs it in
//! onnxruntime), a model that ignores its input (AOPC 0), and bad inputs.

mod common;

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
    serde_json::from_slice(&run_python("tests/python/eval_reference.py", args)).unwrap()
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

/// The first three photos' maps of `--maps wave=DIR`, written in three layouts the option
/// reads ([H, W] float64, [3, H, W] float32, [1, H, W, 1] float32), and the [H, W] maps
/// they stand for (channels summed).
fn wave_maps(dir: &std::path::Path) -> Vec<ndarray::Array2<f64>> {
    use ndarray::{Array2, Array3, Array4};
    use ndarray_npy::write_npy;
    std::fs::create_dir_all(dir).unwrap();
    let stems = ["imagenet_00_243", "imagenet_01_559", "imagenet_02_438"];
    let mut want = Vec::new();
    for (i, stem) in stems.iter().enumerate() {
        let f = |y: usize, x: usize, c: usize| {
            ((0.05 + 0.01 * i as f64) * y as f64).sin() * (0.07 * x as f64 + c as f64).cos()
        };
        let path = dir.join(format!("{stem}.npy"));
        let m = match i {
            0 => {
                let m = Array2::from_shape_fn((224, 224), |(y, x)| f(y, x, 0));
                write_npy(&path, &m).unwrap();
                m
            }
            1 => {
                let a = Array3::from_shape_fn((3, 224, 224), |(c, y, x)| f(y, x, c) as f32);
                write_npy(&path, &a).unwrap();
                a.mapv(f64::from).sum_axis(ndarray::Axis(0))
            }
            _ => {
                let a = Array4::from_shape_fn((1, 224, 224, 1), |(_, y, x, _)| f(y, x, 0) as f32);
                write_npy(&path, &a).unwrap();
                Array2::from_shape_fn((224, 224), |(y, x)| f64::from(a[[0, y, x, 0]]))
            }
        };
        want.push(m);
    }
    want
}

/// Three of the labelled ImageNet photos (models/data/imagenet_photos) with EfficientNet-Lite0:
/// the true class is explained, the accuracy, the random floor, deletion / insertion AUC, ABPC
/// and the bootstrap intervals equal the numpy reference, which rebuilds every deletion and
/// insertion input and runs it in onnxruntime. Maps made elsewhere (`--maps`) are read in
/// each layout and scored by the same protocol; the sanity check's rank correlations and
/// randomised models equal the reference's too.
#[test]
fn photo_benchmark_equals_the_numpy_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("dump");
    let model = root().join("models/efficientnet_lite0.onnx");
    let photos = root().join("models/data/imagenet_photos");
    let wave_dir = tmp.path().join("wave");
    let wave = wave_maps(&wave_dir);
    let maps_arg = format!("wave={}", wave_dir.display());
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
        "--maps",
        &maps_arg,
        "--sanity",
        "1,3",
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
    assert_eq!(names, ["rap", "lrp-zplus", "wave", "random"]);
    // Three rows against rap, five metrics each.
    assert_eq!(report["bootstrap"].as_array().unwrap().len(), 15);
    // The maps scored are the files' (channels summed; float32 where the file is).
    let got: ndarray::Array3<f32> = ndarray_npy::read_npy(dump.join("wave_heatmaps.npy")).unwrap();
    for (i, w) in wave.iter().enumerate() {
        let d = (&got.index_axis(ndarray::Axis(0), i).mapv(f64::from) - w)
            .iter()
            .fold(0.0f64, |a, v| a.max(v.abs()));
        assert!(d <= 1e-6, "photo {i}: {d}");
    }
    assert!(report["methods"][2]["ms_per_image"].is_null(), "{report}");
    // The sanity check: two depths, rap and lrp-zplus each; the classifier is the top layer.
    let sanity = report["sanity"].as_array().unwrap();
    assert_eq!(sanity.len(), 2);
    assert_eq!(sanity[0]["randomized"], serde_json::json!(["/_fc/Gemm"]));
    assert_eq!(sanity[1]["randomized"].as_array().unwrap().len(), 3);
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
    assert_eq!(diff["rows"], 15, "{diff}");
    // Spearman from the dumped maps; the randomised models re-draw exactly the named layers'
    // weights and biases (fc: weight + bias; 3 layers: 6 tensors), each with the original's
    // standard deviation and a zero mean within 5 standard errors.
    assert!(get("max_spearman_diff") <= 1e-9, "{diff}");
    assert_eq!(diff["sanity_rows"], 4, "{diff}");
    assert_eq!(diff["randomized_tensors"], 2 + 6, "{diff}");
    assert_eq!(diff["unexpected_changes"], 0, "{diff}");
    assert!(get("max_sd_z") <= 5.0 && get("max_mean_z") <= 5.0, "{diff}");
    // Another runtime on the same inputs: float32 rounding only.
    assert!(get("max_prob_diff") <= 1e-4, "{diff}");
}

/// `tmp/photos` holding these photos of models/data/imagenet_photos (no labels.json).
fn photo_folder(tmp: &std::path::Path, files: &[&str]) -> std::path::PathBuf {
    let dir = tmp.join("photos");
    std::fs::create_dir(&dir).unwrap();
    let src = root().join("models/data/imagenet_photos");
    for f in files {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    dir
}

/// The quickest photo run that reaches every check: EfficientNet-Lite0 on `dir`, gradient x
/// input, two steps of 112-pixel patches, curves to `out`, then `extra`.
fn quick_photo_eval(
    dir: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> (i32, String, String) {
    let model = root().join("models/efficientnet_lite0.onnx");
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
}

/// `--maps` and `--sanity` refuse what they cannot use, naming it.
#[test]
fn maps_and_sanity_reject_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let dir = photo_folder(tmp.path(), &["imagenet_00_243.jpg"]);
    let maps = tmp.path().join("maps");
    std::fs::create_dir(&maps).unwrap();
    let run = |extra: &[&str]| quick_photo_eval(&dir, &out, extra);
    let arg = format!("peer={}", maps.display());
    // A photo without its map: the file it looked for.
    let (code, _, err) = run(&["--maps", &arg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("imagenet_00_243.npy"), "{err}");
    // A map of the wrong size names the size the model takes.
    let small = ndarray::Array2::<f32>::zeros((100, 100));
    ndarray_npy::write_npy(maps.join("imagenet_00_243.npy"), &small).unwrap();
    let (code, _, err) = run(&["--maps", &arg]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("224x224") && err.contains("[100, 100]"),
        "{err}"
    );
    // NaN in a map.
    let nan = ndarray::Array2::<f32>::from_elem((224, 224), f32::NAN);
    ndarray_npy::write_npy(maps.join("imagenet_00_243.npy"), &nan).unwrap();
    let (code, _, err) = run(&["--maps", &arg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NaN"), "{err}");
    // A name of a method, and a folder that does not exist.
    let clash = format!("rap={}", maps.display());
    let (code, _, err) = run(&["--maps", &clash]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("name is taken"), "{err}");
    let (code, _, err) = run(&["--maps", "peer=/no/such/folder"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/no/such/folder"), "{err}");
    // Deeper than the model: EfficientNet-Lite0 has 50 weight layers.
    let (code, _, err) = run(&["--sanity", "500"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--sanity 500") && err.contains("50"), "{err}");
    // --maps on a benchmark .npz.
    let (code, _, err) = eval(&[
        root().join("models/digits_vgg.onnx").to_str().unwrap(),
        "--maps",
        &arg,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--maps") && err.contains(".npz"), "{err}");
}

#[test]
fn photo_labels_are_read_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let dir = photo_folder(tmp.path(), &["imagenet_00_243.jpg", "imagenet_01_559.jpg"]);
    // `labels`: the labels.json to write (None: the folder has none).
    let run = |labels: Option<&str>, extra: &[&str]| {
        match labels {
            Some(l) => std::fs::write(dir.join("labels.json"), l).unwrap(),
            None if dir.join("labels.json").exists() => {
                std::fs::remove_file(dir.join("labels.json")).unwrap()
            }
            None => {}
        }
        quick_photo_eval(&dir, &out, extra)
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
