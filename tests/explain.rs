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
    assert!(out.starts_with(&format!("{stem}: predicted ")), "{out}");
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
    // The overlay holds the input (left) and the heatmap (right).
    let overlay = image::open(tmp.path().join(format!("{stem}_overlay.png")))
        .unwrap()
        .to_rgb8();
    assert_eq!(overlay.dimensions(), (128, 64));
    assert_eq!(
        overlay.get_pixel(64 + at_max.0, at_max.1),
        png.get_pixel(at_max.0, at_max.1)
    );
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
    // an RGB model given a grayscale image
    let rgb_model = root().join("models/resnet18_mini.onnx");
    refuses(
        &[s(&rgb_model), "--input", s(&good), "--out", o],
        &out,
        "colour channel",
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
