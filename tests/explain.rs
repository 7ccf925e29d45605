//! `onnx-rap explain` on the shipped default model and samples: rendered pixels, folder vs
//! single files, PNG vs preprocessed .npy, and bad inputs.

mod common;

use std::path::Path;

use common::*;
use ndarray::{ArrayD, Axis};

fn explain(args: &[&str]) -> (i32, String, String) {
    let all: Vec<&str> = std::iter::once("explain")
        .chain(args.iter().copied())
        .collect();
    run_cli(env!("CARGO_BIN_EXE_onnx-rap"), &all)
}

fn model() -> String {
    root().join("models/digits_vgg.onnx").display().to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn heatmap_pixels_follow_the_colour_map() {
    let tmp = tempfile::tempdir().unwrap();
    let img = &samples()[0];
    let (code, out, err) = explain(&[&model(), "--input", s(img), "--out", s(tmp.path())]);
    assert_eq!(code, 0, "{err}");
    let stem = img.file_stem().unwrap().to_str().unwrap();
    // "NAME: C1 P1%, ..., C5 P5% | explained: C, logit L, relevance sum S, positive share P%"
    assert!(out.starts_with(&format!("{stem}: ")), "{out}");
    let (top, explained) = out.trim().split_once(" | explained: ").expect(&out);
    assert_eq!(top.matches('%').count(), 5, "{out}");
    assert!(explained.contains(", logit "), "{out}");
    let rel = npy_f32(&tmp.path().join(format!("{stem}_relevance.npy")));
    let m = rel.sum_axis(Axis(0)); // [H, W] for the 1-channel input
    let png = image::open(tmp.path().join(format!("{stem}_heatmap.png")))
        .unwrap()
        .to_rgb8();
    assert_eq!(png.dimensions(), (64, 64));
    let scale = m.iter().fold(0f32, |a, v| a.max(v.abs()));
    let (mut at_max, mut best) = ((0, 0), 0f32);
    for ((y, x), v) in m.indexed_iter().map(|(i, v)| ((i[0], i[1]), *v)) {
        if v > best {
            best = v;
            at_max = (x as u32, y as u32);
        }
        let want = onnx_rap::heatmap::colour(v / scale);
        assert_eq!(
            png.get_pixel(x as u32, y as u32).0,
            want,
            "pixel ({x},{y}) for M = {v}"
        );
    }
    if (best - scale).abs() < 1e-12 {
        assert_eq!(
            png.get_pixel(at_max.0, at_max.1).0,
            [128, 0, 0],
            "the maximum is the red end"
        );
    }
    // The overlay holds the input the model saw (left) and the heatmap (right), both enlarged
    // 4 times by pixel replication (64 x 4 = 256 >= 224 pixels).
    let overlay = image::open(tmp.path().join(format!("{stem}_overlay.png")))
        .unwrap()
        .to_rgb8();
    assert_eq!(overlay.dimensions(), (512, 256));
    let input = image::open(img).unwrap().to_rgb8();
    for (x, y) in [at_max, (0, 0), (63, 63), (17, 40)] {
        for (dx, dy) in [(0, 0), (3, 3), (1, 2)] {
            let (ox, oy) = (4 * x + dx, 4 * y + dy);
            assert_eq!(overlay.get_pixel(256 + ox, oy), png.get_pixel(x, y));
            assert_eq!(overlay.get_pixel(ox, oy), input.get_pixel(x, y));
        }
    }
}

#[test]
fn a_folder_equals_each_file_alone() {
    let all = tempfile::tempdir().unwrap();
    let dir = root().join("models/samples");
    let (code, _, err) = explain(&[
        &model(),
        "--input",
        s(&dir),
        "--batch",
        "3",
        "--out",
        s(all.path()),
    ]);
    assert_eq!(code, 0, "{err}");
    for img in samples() {
        let one = tempfile::tempdir().unwrap();
        let (code, _, err) = explain(&[&model(), "--input", s(&img), "--out", s(one.path())]);
        assert_eq!(code, 0, "{err}");
        let stem = img.file_stem().unwrap().to_str().unwrap();
        let f = format!("{stem}_relevance.npy");
        let a = npy_f32(&all.path().join(&f));
        let b = npy_f32(&one.path().join(&f));
        let e = rel_err_per_sample(&a.insert_axis(Axis(0)), &b.insert_axis(Axis(0)))[0];
        assert!(e <= 1e-5, "{stem}: folder vs alone differ by {e:.2e}");
    }
}

#[test]
fn worker_threads_change_neither_results_nor_their_order() {
    // Images run in parallel on one shared plan; each run is tract single-threaded, so the
    // relevance is bit for bit the one-thread run's, and the summary keeps the input order.
    let dir = root().join("models/samples");
    let mut runs = Vec::new();
    for threads in ["1", "3"] {
        let tmp = tempfile::tempdir().unwrap();
        let (code, out, err) = explain(&[
            &model(),
            "--input",
            s(&dir),
            "--threads",
            threads,
            "--json",
            "--out",
            s(tmp.path()),
        ]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let names: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        let rel: Vec<ArrayD<f32>> = names
            .iter()
            .map(|n| npy_f32(&tmp.path().join(format!("{n}_relevance.npy"))))
            .collect();
        runs.push((names, rel, tmp));
    }
    // The folder's files in path order (a .npy sharing a PNG's stem is named STEM_npy).
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png" || x == "npy"))
        .collect();
    files.sort();
    let want: Vec<String> = files
        .iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap();
            if p.extension().unwrap() == "npy" && p.with_extension("png").exists() {
                format!("{stem}_npy")
            } else {
                stem.to_string()
            }
        })
        .collect();
    assert!(want.len() >= 3, "{want:?}");
    assert_eq!(runs[0].0, want, "the summary follows the folder order");
    assert_eq!(runs[0].0, runs[1].0);
    for ((n, a), b) in runs[0].0.iter().zip(&runs[0].1).zip(&runs[1].1) {
        assert_eq!(a, b, "{n}: 3 threads differ from 1");
    }
}

#[test]
fn npy_of_the_preprocessed_png_gives_the_same_relevance() {
    // models/train.py saved the first sample's preprocessed tensor next to its PNG.
    let npy = std::fs::read_dir(root().join("models/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "npy"))
        .expect("a sample .npy");
    let png = npy.with_extension("png");
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert_eq!(
        explain(&[&model(), "--input", s(&png), "--out", s(a.path())]).0,
        0
    );
    assert_eq!(
        explain(&[&model(), "--input", s(&npy), "--out", s(b.path())]).0,
        0
    );
    let stem = png.file_stem().unwrap().to_str().unwrap();
    let ra: ArrayD<f32> = npy_f32(&a.path().join(format!("{stem}_relevance.npy")));
    let rb: ArrayD<f32> = npy_f32(&b.path().join(format!("{stem}_relevance.npy")));
    let e = rel_err_per_sample(&ra.insert_axis(Axis(0)), &rb.insert_axis(Axis(0)))[0];
    assert!(e <= 1e-5, "PNG vs npy differ by {e:.2e}");
}

#[test]
fn json_summary_has_one_entry_per_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = explain(&[
        &model(),
        "--input",
        s(&samples()[0]),
        s(&samples()[1]),
        "--json",
        "--target",
        "3",
        "--out",
        s(tmp.path()),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 2);
    for e in a {
        assert_eq!(e["target"], 3);
        assert_eq!(e["target_label"], "3");
        // the five most probable classes, the prediction first
        let top5 = e["top5"].as_array().unwrap();
        assert_eq!(top5.len(), 5);
        assert_eq!(top5[0]["class"], e["predicted"]);
        assert_eq!(top5[0]["name"], e["predicted_label"]);
        let p: Vec<f64> = top5
            .iter()
            .map(|t| t["probability"].as_f64().unwrap())
            .collect();
        assert!(p.windows(2).all(|w| w[0] >= w[1]), "{p:?}");
        assert!(p.iter().sum::<f64>() <= 1.0 + 1e-9 && p[4] >= 0.0, "{p:?}");
        let (sum, logit) = (
            e["relevance_sum"].as_f64().unwrap(),
            e["target_logit"].as_f64().unwrap(),
        );
        assert!(
            (sum - logit).abs() <= 1e-3 * logit.abs().max(1.0),
            "RAP conserves: {sum} vs {logit}"
        );
    }
}

/// Exit 2, one line naming the problem, and no output file written.
fn refuses(args: &[&str], out_dir: &Path, needle: &str) {
    let (code, _, err) = explain(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(needle), "lacks '{needle}': {err}");
    let written = std::fs::read_dir(out_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0, "files were written despite the error");
}

#[test]
fn bad_inputs_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = s(&out);
    let good = samples()[0].clone();
    // a text file named .png, together with a good image: nothing is written for either
    let fake = tmp.path().join("fake.png");
    std::fs::write(&fake, "not an image").unwrap();
    refuses(
        &[&model(), "--input", s(&good), s(&fake), "--out", o],
        &out,
        "fake.png",
    );
    // a truncated PNG, and an empty file
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp.path().join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refuses(&[&model(), "--input", s(&cut), "--out", o], &out, "cut.png");
    // its header reads, so it fails when its pixels are decoded, on a worker, after the good
    // image's files were written: they are staged, and go with the failure
    refuses(
        &[
            &model(),
            "--input",
            s(&good),
            s(&cut),
            "--out",
            o,
            "--threads",
            "1",
        ],
        &out,
        "cut.png",
    );
    let empty = tmp.path().join("empty.jpg");
    std::fs::write(&empty, "").unwrap();
    refuses(
        &[&model(), "--input", s(&empty), "--out", o],
        &out,
        "empty.jpg",
    );
    // photo form: a crop larger than the image resized by --resize, a crop that is not the
    // model's input size
    let photo_model = root().join("models/efficientnet_lite0.onnx");
    let photo = root().join("models/photos/chelsea.png");
    refuses(
        &[
            s(&photo_model),
            "--input",
            s(&photo),
            "--resize",
            "200",
            "--out",
            o,
        ],
        &out,
        "chelsea.png: resized to 300x200 (width x height, shorter side 200), the image is \
         smaller than the crop 224x224",
    );
    refuses(
        &[
            s(&photo_model),
            "--input",
            s(&photo),
            "--crop",
            "256,256",
            "--out",
            o,
        ],
        &out,
        "does not match the model input 224x224",
    );
    // target out of range
    refuses(
        &[&model(), "--input", s(&good), "--target", "10", "--out", o],
        &out,
        "out of range",
    );
    // .npy of the wrong shape, and of the wrong dtype
    let wrong = tmp.path().join("wrong.npy");
    ndarray_npy::write_npy(&wrong, &ndarray::Array2::<f32>::zeros((3, 5))).unwrap();
    refuses(&[&model(), "--input", s(&wrong), "--out", o], &out, "shape");
    let f64s = tmp.path().join("f64.npy");
    ndarray_npy::write_npy(&f64s, &ndarray::Array4::<f64>::zeros((1, 1, 64, 64))).unwrap();
    refuses(
        &[&model(), "--input", s(&f64s), "--out", o],
        &out,
        "float32",
    );
    // an output folder that cannot be created
    let blocker = tmp.path().join("a_file");
    std::fs::write(&blocker, "x").unwrap();
    let under = blocker.join("out");
    refuses(
        &[&model(), "--input", s(&good), "--out", s(&under)],
        &under,
        "output folder",
    );
}

#[test]
fn behind_a_softmax_the_summary_reports_the_logits() {
    let input = root().join("tests/data/tiny_mlp_input.npy");
    let summary = |model: &str| -> serde_json::Value {
        let tmp = tempfile::tempdir().unwrap();
        let m = root().join(model);
        let (code, out, err) = explain(&[
            s(&m),
            "--input",
            s(&input),
            "--json",
            "--out",
            s(tmp.path()),
        ]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let plain = summary("tests/data/tiny_mlp.onnx");
    let soft = summary("tests/data/tiny_mlp_softmax.onnx");
    let (a, b) = (plain.as_array().unwrap(), soft.as_array().unwrap());
    assert_eq!(a.len(), 5, "one entry per sample of the .npy batch");
    for (p, q) in a.iter().zip(b) {
        assert_eq!(p["predicted"], q["predicted"]);
        let (x, y) = (
            p["target_logit"].as_f64().unwrap(),
            q["target_logit"].as_f64().unwrap(),
        );
        assert!((x - y).abs() < 1e-6, "logit {x} vs {y}");
        let r = q["relevance_sum"].as_f64().unwrap();
        assert!(
            (r - y).abs() <= 1e-4 * y.abs().max(1.0),
            "relevance {r} vs logit {y}"
        );
    }
}

#[test]
fn a_gray_image_is_converted_for_an_rgb_model() {
    // as PIL's convert("RGB"): the gray value in all three channels
    let tmp = tempfile::tempdir().unwrap();
    let rgb_model = root().join("models/resnet18_mini.onnx");
    let gray = samples()[0].clone();
    let rgb = tmp.path().join("as_rgb.png");
    image::open(&gray).unwrap().to_rgb8().save(&rgb).unwrap();
    let json = |p: &Path| -> serde_json::Value {
        let out = tmp.path().join("out");
        let (code, stdout, err) =
            explain(&[s(&rgb_model), "--input", s(p), "--json", "--out", s(&out)]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&stdout).unwrap()
    };
    let (a, b) = (json(&gray), json(&rgb));
    assert_eq!(a[0]["top5"], b[0]["top5"]);
    assert_eq!(a[0]["relevance_sum"], b[0]["relevance_sum"]);
}

#[test]
fn a_photo_is_resized_cropped_and_named() {
    // efficientnet_lite0: shorter side 256 (bicubic), centre crop 224x224, ImageNet names
    let tmp = tempfile::tempdir().unwrap();
    let m = root().join("models/efficientnet_lite0.onnx");
    let photo = root().join("models/photos/chelsea.png");
    let (code, out, err) = explain(&[s(&m), "--input", s(&photo), "--out", s(tmp.path())]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("chelsea: tiger cat "), "{out}");
    assert!(out.contains("| explained: tiger cat, logit "), "{out}");
    for cat in ["Egyptian cat", "tabby"] {
        assert!(out.contains(cat), "{out}");
    }
    // the overlay shows the 224x224 crop the model saw beside its heatmap
    let overlay = image::open(tmp.path().join("chelsea_overlay.png")).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (448, 224));
    let rel = npy_f32(&tmp.path().join("chelsea_relevance.npy"));
    assert_eq!(rel.shape(), &[3, 224, 224]);
    // The crop: 451x300 -> 384x256, 224x224 from left 80, top 16. Bicubic resampling by
    // another library rounds differently, so compare the resized picture loosely: the crop
    // the overlay shows is closer to that region than to a crop shifted by 8 pixels.
    let shown = overlay.to_rgb8();
    let resized = image::imageops::resize(
        &image::open(&photo).unwrap().to_rgb8(),
        384,
        256,
        image::imageops::FilterType::CatmullRom,
    );
    let diff = |left: u32, top: u32| -> f64 {
        let mut d = 0f64;
        for y in 0..224 {
            for x in 0..224 {
                let (a, b) = (
                    shown.get_pixel(x, y).0,
                    resized.get_pixel(left + x, top + y).0,
                );
                d += (0..3)
                    .map(|c| (a[c] as f64 - b[c] as f64).abs())
                    .sum::<f64>();
            }
        }
        d / (224.0 * 224.0 * 3.0)
    };
    assert!(diff(80, 16) < 0.5, "{}", diff(80, 16));
    assert!(diff(88, 16) > 2.0 && diff(80, 24) > 2.0);
}

#[test]
fn layer_sums_list_every_rule_from_the_logits_to_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let img = &samples()[0];
    let args = [
        model(),
        "--input".into(),
        s(img).into(),
        "--layer-sums".into(),
        "--out".into(),
        s(tmp.path()).into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = explain(&args);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains(" | explained: "), "{out}");
    assert!(lines[1].contains("handed/received"), "{out}");
    assert!(
        lines.last().unwrap().contains(" rules, from the logits"),
        "{out}"
    );
    let mut with_json = args.clone();
    with_json.push("--json");
    let (code, out, err) = explain(&with_json);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let e = &v[0];
    let rows = e["layer_sums"].as_array().unwrap();
    assert_eq!(rows.len() + 3, lines.len(), "one printed row per JSON row");
    let logit = e["target_logit"].as_f64().unwrap();
    let ops: Vec<&str> = rows.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert!(ops.contains(&"Conv") && ops.contains(&"Gemm"), "{ops:?}");
    assert!(
        !ops.contains(&"?"),
        "every node is found in the model: {ops:?}"
    );
    // The first rule is the output layer (it receives the one-hot target, or the logit, and
    // hands on the logit); the last hands on the relevance of the input, its sum.
    let first = rows[0]["received"].as_f64().unwrap();
    assert!((first - 1.0).abs() < 1e-6 || (first - logit).abs() < 1e-3 * logit.abs());
    let first = rows[0]["handed"].as_f64().unwrap();
    assert!(
        (first - logit).abs() < 1e-3 * logit.abs(),
        "{first} vs {logit}"
    );
    let last = rows.last().unwrap()["handed"].as_f64().unwrap();
    let sum = e["relevance_sum"].as_f64().unwrap();
    assert!((last - sum).abs() <= 1e-3 * logit.abs(), "{last} vs {sum}");
    for r in rows {
        let ratio = r["handed_over_received"].as_f64().unwrap();
        let of_logit = r["handed_over_logit"].as_f64().unwrap();
        assert!((r["handed"].as_f64().unwrap() / logit - of_logit).abs() < 1e-9);
        assert!(ratio.is_finite() && of_logit.is_finite(), "{r}");
    }
}

/// A dense output (a Conv's map [N, 2, 6, 6]) is refused without `--reduce-output` (and with
/// an output name the model lacks) and explained through its per-sample mean with it: the score and the relevance files sum to the
/// mean of the map that onnxruntime computes from the original model (for `--reduce-output
/// sum`, to its sum).
#[test]
fn a_dense_output_is_explained_through_its_mean_or_sum() {
    let tmp = tempfile::tempdir().unwrap();
    let dense = root().join("tests/data/not_a_classifier.onnx");
    let x = uniform(&[2, 1, 8, 8], 7);
    let xp = tmp.path().join("x.npy");
    ndarray_npy::write_npy(&xp, &x).unwrap();
    let map = &run_ort(&dense, &[("x", Feed::F32(x))])["y"];
    let refused = tmp.path().join("refused");
    refuses(
        &[s(&dense), "--input", s(&xp), "--out", s(&refused)],
        &refused,
        "--reduce-output mean",
    );
    let unknown = tmp.path().join("unknown");
    refuses(
        &[
            s(&dense),
            "--input",
            s(&xp),
            "--reduce-output",
            "mean",
            "--explain-output",
            "nope",
            "--out",
            s(&unknown),
        ],
        &unknown,
        "no output named 'nope'; its outputs are: y",
    );
    for how in ["mean", "sum"] {
        let out = tmp.path().join(how);
        let (code, stdout, err) = explain(&[
            s(&dense),
            "--input",
            s(&xp),
            "--reduce-output",
            how,
            "--explain-output",
            "y",
            "--json",
            "--out",
            s(&out),
        ]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        for (k, e) in v.as_array().unwrap().iter().enumerate() {
            let total: f64 = map.index_axis(Axis(0), k).iter().map(|&v| v as f64).sum();
            let want = if how == "mean" { total / 72.0 } else { total };
            assert_eq!(e["target_label"], format!("{how} of y"));
            let score = e["target_logit"].as_f64().unwrap();
            assert!(
                (score - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{how} {k}: {score} vs {want}"
            );
            let file = out.join(format!("x_{k}_relevance.npy"));
            let r: f64 = npy_f32(&file).iter().map(|&v| v as f64).sum();
            assert!(
                (r - want).abs() <= 1e-4 * want.abs().max(1e-2),
                "{how} {k}: {r} vs {want}"
            );
            let share = e["positive_share"].as_f64().unwrap();
            assert!(
                (0.0..=1.0).contains(&share) && share.is_sign_positive(),
                "{share}"
            );
        }
    }
}
