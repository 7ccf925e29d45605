//! Snapshots (stored in the top-level snapshots/ folder): what `inspect` prints, and what the
//! compiler emits for a two-layer MLP and a tiny conv net, so a change to either shows in review.

mod common;

use common::*;
use onnx_rap::pass::Options;

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(root().join("snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s
}

#[test]
fn inspect_tiny_cnn() {
    let r =
        onnx_rap::cli::inspect::report(std::path::Path::new("tests/data/tiny_cnn.onnx")).unwrap();
    settings()
        .bind(|| insta::assert_snapshot!("inspect_tiny_cnn", onnx_rap::cli::inspect::render(&r)));
}

fn compiled_listing(file: &str, opts: &Options) -> String {
    let bytes = compile_file(&root().join(file), opts);
    let m = onnx_rap::onnx::decode(&bytes, file).unwrap();
    onnx_rap::ir::listing(m.graph.as_ref().unwrap())
}

#[test]
fn compiled_mlp() {
    let l = compiled_listing("tests/data/tiny_mlp.onnx", &Options::default());
    settings().bind(|| insta::assert_snapshot!("compiled_tiny_mlp", l));
}

#[test]
fn compiled_cnn() {
    let l = compiled_listing("tests/data/tiny_cnn.onnx", &Options::default());
    settings().bind(|| insta::assert_snapshot!("compiled_tiny_cnn", l));
}
