//! The methods besides RAP (`lrp`, `lrp-eps`, `lrp-a2b1`, `lrp-zplus`, `gradxinput`), each a
//! rule selection of the same compiler, against independent expectations:
//! - a float64 numpy reference written from the definitions, with every Conv unrolled into
//!   explicit contributions (tests/python/lrp_reference.py), on a net with an input conv,
//!   MaxPool, a hidden conv with signed output and two dense layers; in tract and onnxruntime;
//! - gradient x input against finite differences of the forward pass, on the conv geometry of
//!   tiny_cnn and on the trained ResNet;
//! - conservation: z+ sums to the target logit on the trained models. (alpha2-beta1 conserves
//!   only where an output has both positive and negative contributions; where one side is
//!   empty its share is dropped, so its sum is not checked.)

mod common;

use common::*;
use ndarray::{ArrayD, Axis};
use onnx_rap::pass::Options;
use onnx_rap::rules::Method;
use onnx_rap::runtime::Value;

const METHODS: [Method; 5] = [
    Method::Lrp,
    Method::LrpEps,
    Method::LrpA2B1,
    Method::LrpZPlus,
    Method::GradInput,
];

fn opts(m: Method) -> Options {
    Options {
        method: m,
        ..Options::default()
    }
}

fn reference(model: &str, input: &str, m: Method) -> ArrayD<f32> {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ref.npy");
    let eps = onnx_rap::rules::DEFAULT_EPSILON.to_string();
    run_python(
        "tests/python/lrp_reference.py",
        [
            root().join(model).as_os_str(),
            root().join(input).as_os_str(),
            m.name().as_ref(),
            out.as_os_str(),
            eps.as_ref(),
        ],
    );
    let r: ArrayD<f64> = ndarray_npy::read_npy(&out).unwrap();
    r.mapv(|v| v as f32)
}

fn check_against_numpy(model: &str, input: &str) {
    let x = npy_f32(&root().join(input));
    for m in METHODS {
        let want = reference(model, input, m);
        let bytes = compile_file(&root().join(model), &opts(m));
        let t = run_tract(&bytes, vec![Value::F32(x.clone())]);
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("m.onnx");
        std::fs::write(&p, &bytes).unwrap();
        let o = run_ort(&p, &[("x", Feed::F32(x.clone()))]);
        for (rt, got) in [("tract", &t["relevance"]), ("onnxruntime", &o["relevance"])] {
            let err = rel_err_per_sample(got, &want);
            let worst = err.iter().cloned().fold(0.0, f64::max);
            assert!(
                worst <= 1e-4,
                "{model} {} in {rt}: max |got - numpy| = {worst:.2e} x max|R|",
                m.name()
            );
        }
        // Not all zero: the comparison means something.
        assert!(want.iter().any(|v| v.abs() > 1e-3), "{}", m.name());
    }
}

#[test]
fn every_method_equals_the_numpy_reference_on_tiny_lrp() {
    check_against_numpy("tests/data/tiny_lrp.onnx", "tests/data/tiny_lrp_input.npy");
}

#[test]
fn every_method_equals_the_numpy_reference_on_tiny_mlp() {
    check_against_numpy("tests/data/tiny_mlp.onnx", "tests/data/tiny_mlp_input.npy");
}

#[test]
fn methods_differ_where_their_rules_differ() {
    // On tiny_lrp the dense layer after the signed conv sees both signs, so the reference's
    // per-path alpha1-beta0 and the jointly normalised z+ must differ, and a2b1 from both.
    let x = npy_f32(&root().join("tests/data/tiny_lrp_input.npy"));
    let run = |m| {
        let b = compile_file(&root().join("tests/data/tiny_lrp.onnx"), &opts(m));
        run_tract(&b, vec![Value::F32(x.clone())])["relevance"].clone()
    };
    let (lrp, zp, ab) = (
        run(Method::Lrp),
        run(Method::LrpZPlus),
        run(Method::LrpA2B1),
    );
    for (a, b, what) in [(&lrp, &zp, "lrp vs lrp-zplus"), (&zp, &ab, "z+ vs a2b1")] {
        let e = rel_err_per_sample(a, b);
        assert!(e.iter().all(|&v| v > 1e-2), "{what}: {e:?}");
    }
}

/// f(x + h d) - f(x - h d) over 2h for the target logit, with tract in float32.
fn directional(
    bytes: &[u8],
    x: &ArrayD<f32>,
    d: &ArrayD<f32>,
    target: &[usize],
    h: f32,
) -> Vec<f64> {
    let plus = x + &(d * h);
    let minus = x - &(d * h);
    let names = output_names(bytes);
    let fp = &run_tract(bytes, vec![Value::F32(plus)])[&names[0]];
    let fm = &run_tract(bytes, vec![Value::F32(minus)])[&names[0]];
    target
        .iter()
        .enumerate()
        .map(|(i, &t)| (fp[[i, t]] as f64 - fm[[i, t]] as f64) / (2.0 * h as f64))
        .collect()
}

fn check_gradient(model: &str, x: ArrayD<f32>) {
    let path = root().join(model);
    let original = std::fs::read(&path).unwrap();
    let bytes = compile_file(&path, &opts(Method::GradInput));
    let out = run_tract(&bytes, vec![Value::F32(x.clone())]);
    let r = &out["relevance"];
    let logits = &out[&output_names(&bytes)[0]];
    let target: Vec<usize> = logits
        .outer_iter()
        .map(|l| {
            l.iter()
                .enumerate()
                .fold((0, f32::MIN), |a, (k, &v)| if v > a.1 { (k, v) } else { a })
                .0
        })
        .collect();
    // Directions d = x * u: then sum(R * u) = sum(grad * x * u) = the derivative along d.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..3 {
        let u = x.mapv(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        });
        let d = &x * &u;
        let fd = directional(&original, &x, &d, &target, 1e-3);
        let ru = r * &u;
        for (i, f) in fd.iter().enumerate() {
            let s: f64 = ru.index_axis(Axis(0), i).iter().map(|&v| v as f64).sum();
            let scale: f64 = r
                .index_axis(Axis(0), i)
                .iter()
                .map(|&v| (v as f64).abs())
                .sum::<f64>()
                .max(1e-6);
            assert!(
                (s - f).abs() <= 2e-3 * scale,
                "{model} sample {i}: sum(R u) = {s}, finite difference {f} (scale {scale})"
            );
        }
    }
}

#[test]
fn gradient_x_input_matches_finite_differences_on_tiny_cnn() {
    check_gradient(
        "tests/data/tiny_cnn.onnx",
        npy_f32(&root().join("tests/data/tiny_cnn_input.npy")),
    );
}

/// The preprocessed sample digit as a batch of one.
fn digit() -> ArrayD<f32> {
    let x = npy_f32(&root().join("models/samples/digit_0_2.npy"));
    if x.ndim() == 3 {
        x.insert_axis(Axis(0))
    } else {
        x
    }
}

#[test]
fn gradient_x_input_matches_finite_differences_on_the_resnet() {
    check_gradient("models/digits_resnet.onnx", digit());
}

#[test]
fn z_plus_conserves_on_the_trained_models() {
    let x = digit();
    for model in ["models/digits_vgg.onnx", "models/digits_resnet.onnx"] {
        let b = compile_file(&root().join(model), &opts(Method::LrpZPlus));
        let out = run_tract(&b, vec![Value::F32(x.clone())]);
        let logit = out[&output_names(&b)[0]]
            .iter()
            .fold(f32::MIN, |a, &v| a.max(v)) as f64;
        let s = sums(&out["relevance"])[0];
        assert!(
            (s - logit).abs() <= 1e-2 * logit.abs(),
            "{model} lrp-zplus: sum {s} vs logit {logit}"
        );
    }
}

/// Every method on `model` in tract and onnxruntime: the same relevance within 1e-4 of
/// max|R|, finite, not all zero.
fn every_method_in_both_runtimes(model: &str, x: &ArrayD<f32>) {
    for m in Method::ALL {
        let bytes = compile_file(&root().join(model), &opts(m));
        let t = run_tract(&bytes, vec![Value::F32(x.clone())]);
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("m.onnx");
        std::fs::write(&p, &bytes).unwrap();
        let o = run_ort(&p, &[("x", Feed::F32(x.clone()))]);
        let err = rel_err_per_sample(&t["relevance"], &o["relevance"]);
        assert!(
            err.iter().all(|&e| e <= 1e-4),
            "{model} {}: tract vs onnxruntime {err:?}",
            m.name()
        );
        assert!(t["relevance"].iter().all(|v| v.is_finite()), "{}", m.name());
        assert!(
            t["relevance"].iter().any(|v| v.abs() > 1e-6),
            "{}",
            m.name()
        );
    }
}

#[test]
fn gradient_x_input_matches_finite_differences_through_the_new_ops() {
    // Pad, Slice, Resize nearest + linear, Split, gates, ReduceMean/Sum, Transpose, MatMul on
    // tokens, Gather, attention: each op's backward routing is checked by the gradient.
    check_gradient(
        "tests/data/tiny_ops.onnx",
        npy_f32(&root().join("tests/data/tiny_ops_input.npy")),
    );
}

#[test]
fn every_method_runs_through_the_new_ops_alike_in_both_runtimes() {
    let x = npy_f32(&root().join("tests/data/tiny_ops_input.npy"));
    every_method_in_both_runtimes("tests/data/tiny_ops.onnx", &x);
}

#[test]
fn conv_transpose_and_einsum_are_true_transposes() {
    // z+ conserves exactly when every emitted transpose is the adjoint of its forward op (all
    // layers here see Relu outputs or the input); the gradient checks the same routing, and the
    // two runtimes must agree for every method.
    let model = "tests/data/tiny_deconv.onnx";
    let x = npy_f32(&root().join("tests/data/tiny_deconv_input.npy"));
    let b = compile_file(&root().join(model), &opts(Method::LrpZPlus));
    let out = run_tract(&b, vec![Value::F32(x.clone())]);
    let logits = &out[&output_names(&b)[0]];
    for (i, s) in sums(&out["relevance"]).iter().enumerate() {
        let l = logits
            .index_axis(Axis(0), i)
            .iter()
            .fold(f32::MIN, |a, &v| a.max(v)) as f64;
        assert!(
            (s - l).abs() <= 1e-4 * l.abs().max(1.0),
            "sample {i}: sum {s} vs logit {l}"
        );
    }
    check_gradient(model, x.clone());
    every_method_in_both_runtimes(model, &x);
}
