//! model_rap.onnx outside `explain`: the in-graph colour map (`heatmap_rgb`) in tract and in
//! onnxruntime against the PNG `explain` paints, `rap_target = -1`, and the Python example.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ndarray::{ArrayD, Axis, IxDyn};
use onnx_rap::image::{load_image, Interpolation, Layout, Preprocess};
use onnx_rap::pass::Options;
use onnx_rap::runtime::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_onnx-rap")
}

fn model() -> PathBuf {
    root().join("models/digits_vgg.onnx")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().to_string()
}

/// The digit models' preprocessing (their `onnx_rap.preprocess` metadata).
fn digits_pp() -> Preprocess {
    Preprocess {
        size: (64, 64),
        resize: None,
        interpolation: Interpolation::Bilinear,
        channels: 1,
        layout: Layout::Nchw,
        grayscale: true,
        mean: vec![0.11],
        std: vec![0.15],
    }
}

fn array_levels(a: &ArrayD<f32>) -> Vec<i64> {
    let flat: Vec<u8> = a.iter().map(|&v| v as u8).collect();
    rgb_levels(&flat)
}

/// `explain` on every sample: the folder it wrote.
fn explain_all() -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let dir = root().join("models/samples");
    let (code, _, err) = run_cli(
        bin(),
        &[
            "explain",
            s(&model()),
            "--input",
            s(&dir),
            "--out",
            s(out.path()),
        ],
    );
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn heatmap_rgb_in_tract_equals_the_explain_png() {
    let reference = explain_all();
    let opts = Options {
        colormap: true,
        ..Options::default()
    };
    let bytes = compile_file(&model(), &opts);
    let imgs = samples();
    let xs: Vec<ArrayD<f32>> = imgs
        .iter()
        .map(|p| load_image(p, &digits_pp()).unwrap().tensor)
        .collect();
    let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
    let batch = ndarray::stack(Axis(0), &views).unwrap();
    let out = run_tract(&bytes, vec![Value::F32(batch)]);
    let rgb = &out["heatmap_rgb"];
    assert_eq!(rgb.shape(), &[imgs.len(), 64, 64, 3]);
    for (i, p) in imgs.iter().enumerate() {
        let got = array_levels(&rgb.index_axis(Axis(0), i).to_owned().into_dyn());
        let want = png_levels(&reference.path().join(format!("{}_heatmap.png", stem(p))));
        // Same runtime, same graph, same arithmetic: every pixel has the same level.
        let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{}: {diff} pixels differ", stem(p));
        // And the picture is not trivial: the map uses both ends of the scale.
        assert_eq!(*got.iter().max().unwrap(), 254, "{}", stem(p));
    }
}

#[test]
fn negative_rap_target_explains_the_prediction() {
    let with_target = compile_file(
        &model(),
        &Options {
            target_input: true,
            ..Options::default()
        },
    );
    let argmax = compile_file(&model(), &Options::default());
    let xs: Vec<ArrayD<f32>> = samples()[..3]
        .iter()
        .map(|p| load_image(p, &digits_pp()).unwrap().tensor)
        .collect();
    let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
    let batch = ndarray::stack(Axis(0), &views).unwrap();
    let plain = run_tract(&argmax, vec![Value::F32(batch.clone())]);
    let pred: Vec<i64> = plain["logits"]
        .outer_iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::MIN), |a, (k, &v)| if v > a.1 { (k, v) } else { a })
                .0 as i64
        })
        .collect();
    // Sample 1 explains another class, samples 0 and 2 their prediction via -1 and via k.
    let other = (pred[1] + 1) % 10;
    let t = ArrayD::from_shape_vec(IxDyn(&[3]), vec![-1, other, pred[2]]).unwrap();
    let got = run_tract(&with_target, vec![Value::F32(batch.clone()), Value::I64(t)]);
    let r = &got["relevance"];
    let want = &plain["relevance"];
    let err = rel_err_per_sample(r, want);
    assert!(err[0] <= 1e-6 && err[2] <= 1e-6, "{err:?}");
    // The other class: its own logit is conserved, so it differs from the prediction's map.
    let sums = sums(r);
    let logit = plain["logits"][[1, other as usize]] as f64;
    assert!(
        (sums[1] - logit).abs() <= 1e-3 * logit.abs().max(1.0),
        "{sums:?} vs {logit}"
    );
    assert!(
        err[1] > 1e-2,
        "class {other} gave the predicted class's map"
    );
}

#[test]
fn colormap_needs_an_image_input() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.onnx");
    let m = root().join("tests/data/tiny_mlp.onnx");
    let (code, _, err) = run_cli(bin(), &["compile", s(&m), "-o", s(&out), "--colormap"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tiny_mlp.onnx") && err.contains("--colormap needs an image input"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written on failure");
}

/// The Python example (examples/python/explain.py) in the test venv's onnxruntime equals
/// `explain`: the same relevance and the same picture.
#[test]
fn python_example_equals_explain() {
    let reference = explain_all();
    let tmp = tempfile::tempdir().unwrap();
    let rap = tmp.path().join("digits_vgg_rap.onnx");
    let (code, _, err) = run_cli(
        bin(),
        &[
            "compile",
            s(&model()),
            "-o",
            s(&rap),
            "--colormap",
            "--target-input",
        ],
    );
    assert_eq!(code, 0, "{err}");
    for p in samples() {
        let prefix = tmp.path().join("py").join(stem(&p));
        let out = run_python("examples/python/explain.py", [s(&rap), s(&p), s(&prefix)]);
        let line = String::from_utf8_lossy(&out);
        assert!(line.starts_with("predicted "), "{line}");
        let got = npy_f32(&PathBuf::from(format!("{}_relevance.npy", s(&prefix))));
        let want = npy_f32(&reference.path().join(format!("{}_relevance.npy", stem(&p))));
        let e = rel_err_per_sample(&got.insert_axis(Axis(0)), &want.insert_axis(Axis(0)))[0];
        assert!(
            e <= 1e-3,
            "{}: relevance differs by {e:.2e} x max|R|",
            stem(&p)
        );
        let a = png_levels(&PathBuf::from(format!("{}_heatmap.png", s(&prefix))));
        let b = png_levels(&reference.path().join(format!("{}_heatmap.png", stem(&p))));
        // Another runtime rounds differently: a pixel may sit one level off, no more.
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).max().unwrap();
        assert!(worst <= 1, "{}: a pixel is {worst} levels off", stem(&p));
    }
}
