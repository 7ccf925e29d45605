//! Bad input gets a one-line error naming the file and the problem, exit code 2, no panic,
//! and nothing is written.

mod common;

use std::path::Path;

use common::root;

fn onnx_rap(args: &[&str]) -> (i32, String, String) {
    common::run_cli(env!("CARGO_BIN_EXE_onnx-rap"), args)
}

/// Runs `inspect` and `compile` on a bad file: both fail with exit 2 and a one-line message
/// that names the file and contains `needle`.
fn rejects(file: &str, needle: &str) {
    let path = root().join(file);
    let p = path.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.onnx");
    for args in [
        vec!["inspect", p],
        vec!["compile", p, "-o", out.to_str().unwrap()],
    ] {
        let (code, _, err) = onnx_rap(&args);
        assert_eq!(code, 2, "{file} {args:?}: exit code {code}, stderr: {err}");
        assert!(!err.contains("panicked"), "{file}: panic: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{file}: one line expected, got: {err}");
        assert!(lines[0].starts_with("error: "), "{file}: {err}");
        assert!(
            err.contains(p),
            "{file}: message does not name the file: {err}"
        );
        assert!(
            err.contains(needle),
            "{file}: message lacks '{needle}': {err}"
        );
        assert!(
            !out.exists(),
            "{file}: an output was written despite the error"
        );
    }
}

#[test]
fn empty_file() {
    rejects("tests/data/bad/empty.onnx", "empty");
}

#[test]
fn not_an_onnx_file() {
    rejects("tests/data/bad/not_onnx.onnx", "not");
}

#[test]
fn truncated_file() {
    rejects("tests/data/bad/truncated.onnx", "truncated");
}

#[test]
fn graph_with_a_cycle() {
    rejects("tests/data/bad/cycle.onnx", "cycle");
}

#[test]
fn node_reading_a_tensor_nobody_produces() {
    rejects("tests/data/bad/dangling_input.onnx", "'w_missing'");
}

#[test]
fn missing_external_data_file() {
    rejects("tests/data/bad/missing_data/model.onnx", "model.onnx.data");
}

#[test]
fn external_data_offset_past_the_end() {
    rejects("tests/data/bad/short_data/model.onnx", "truncated");
}

#[test]
fn missing_model_file() {
    rejects("tests/data/bad/no_such_model.onnx", "cannot read");
}

#[test]
fn unsupported_ops_are_listed_with_their_nodes() {
    rejects_compile(
        "tests/data/unsupported_op.onnx",
        &[
            "Sin (nodes: ",
            "mystery_sin",
            "mystery_sin2",
            "Cos (nodes: mystery_cos)",
            "2 op type(s)",
        ],
    );
}

#[test]
fn two_inputs_need_a_choice() {
    rejects_compile("tests/data/two_inputs.onnx", &["--input", "a, b"]);
}

#[test]
fn output_must_be_batch_by_classes() {
    rejects_compile(
        "tests/data/not_a_classifier.onnx",
        &["[N, 2, 6, 6]", "[batch, classes]", "[batch, classes, 1, 1]"],
    );
}

fn rejects_compile(file: &str, needles: &[&str]) {
    let path = root().join(file);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.onnx");
    let (code, _, err) = onnx_rap(&[
        "compile",
        path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{file}: {err}");
    assert_eq!(err.lines().count(), 1, "{file}: {err}");
    assert!(err.contains(path.to_str().unwrap()), "{file}: {err}");
    for n in needles {
        assert!(err.contains(n), "{file}: message lacks '{n}': {err}");
    }
    assert!(!Path::new(&out).exists(), "nothing is written");
}

#[test]
fn bad_flags_are_usage_errors() {
    let m = root().join("tests/data/tiny_mlp.onnx");
    let (code, _, err) = onnx_rap(&[
        "compile",
        m.to_str().unwrap(),
        "-o",
        "/tmp/x.onnx",
        "--input-bounds",
        "3,1",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("must not exceed"), "{err}");
    let (code, _, _) = onnx_rap(&[
        "compile",
        m.to_str().unwrap(),
        "-o",
        "/tmp/x.onnx",
        "--method",
        "magic",
    ]);
    assert_eq!(code, 2);
    let (code, out, _) = onnx_rap(&["compile", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("rap_target") && out.contains("--input-bounds"),
        "{out}"
    );
}
