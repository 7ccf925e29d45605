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
            "Sin: 2 nodes (mystery_sin, mystery_sin2)",
            "Cos: 1 node (mystery_cos)",
            "2 op type(s)",
            "onnx-rap inspect",
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

#[test]
fn onnxruntime_fused_ops_say_to_compile_the_exported_model() {
    rejects_compile(
        "tests/data/bad/ort_contrib_fastgelu.onnx",
        &[
            "com.microsoft:FastGelu",
            "fastgelu",
            "graph optimisations",
            "nothing was written",
        ],
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

#[test]
fn many_nodes_without_a_rule_are_counted_with_five_examples() {
    rejects_compile(
        "tests/data/exporters/many_unsupported.onnx",
        &[
            "1 op type(s)",
            "Sin: 7 nodes, e.g. sin_0, sin_1, sin_2, sin_3, sin_4, ...",
            "onnx-rap inspect",
            "re-export",
        ],
    );
}

#[test]
fn a_non_float32_cast_on_the_relevance_path_is_refused() {
    rejects_compile(
        "tests/data/exporters/cast_half.onnx",
        &[
            "(Cast)",
            "from float16 to float",
            "export the model in float32",
        ],
    );
}

/// A copy of a test model with one thing changed, written to a temporary folder.
fn hostile(
    base: &str,
    edit: impl FnOnce(&mut onnx_rap::onnx::proto::GraphProto),
) -> (tempfile::TempDir, std::path::PathBuf) {
    let mut m = onnx_rap::onnx::load(&root().join(base)).unwrap();
    edit(m.graph.as_mut().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hostile.onnx");
    std::fs::write(&p, onnx_rap::onnx::encode(&m)).unwrap();
    (dir, p)
}

fn set_i64(g: &mut onnx_rap::onnx::proto::GraphProto, name: &str, values: &[i64]) {
    let t = g.initializer.iter_mut().find(|t| t.name() == name).unwrap();
    t.raw_data = Some(values.iter().flat_map(|v| v.to_le_bytes()).collect());
}

fn set_ints(g: &mut onnx_rap::onnx::proto::GraphProto, node: &str, attr: &str, values: &[i64]) {
    let n = g.node.iter_mut().find(|n| n.name() == node).unwrap();
    let a = n.attribute.iter_mut().find(|a| a.name() == attr).unwrap();
    a.ints = values.to_vec();
}

/// `compile` fails with exit 2, one line naming the file and containing every needle, no
/// panic, nothing written.
fn rejects_hostile(p: &Path, needles: &[&str]) {
    let out = p.with_file_name("out.onnx");
    let (code, _, err) = onnx_rap(&["compile", p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(p.to_str().unwrap()), "{err}");
    for n in needles {
        assert!(err.contains(n), "message lacks '{n}': {err}");
    }
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn a_huge_reduction_axis_is_refused_before_tract_sees_it() {
    // The mutant of the issue: ReduceSum over axis 515396075521.
    let (_d, p) = hostile("tests/data/tiny_ops.onnx", |g| {
        set_i64(g, "ax2", &[515_396_075_521])
    });
    rejects_hostile(&p, &["sum_tokens", "out of range"]);
}

#[test]
fn a_panic_inside_tract_is_a_clean_error() {
    // Axis 5 of a rank-3 tensor: plausible on its own, and tract's shape inference unwraps
    // it; the panic is caught and reported.
    let (_d, p) = hostile("tests/data/tiny_ops.onnx", |g| set_i64(g, "ax2", &[5]));
    rejects_hostile(&p, &["failed inside tract's shape inference"]);
}

#[test]
fn out_of_range_indices_windows_and_permutations_are_refused() {
    let (_d, p) = hostile("tests/data/tiny_ops.onnx", |g| {
        set_i64(g, "idx", &[0, 3, 3, 100])
    });
    rejects_hostile(&p, &["gather", "out of range"]);
    // A window wider than its padded input (the mutant that once asked for 154 GB).
    let (_d, p) = hostile("tests/data/tiny_pools.onnx", |g| {
        set_ints(g, "pool_s2", "kernel_shape", &[3, 65535])
    });
    rejects_hostile(&p, &["tract's shape inference stopped"]);
    let (_d, p) = hostile("tests/data/tiny_ops.onnx", |g| {
        set_ints(g, "to_nhwc", "perm", &[0, 2, 2, 1])
    });
    rejects_hostile(&p, &["to_nhwc", "perm"]);
}

#[test]
fn declared_sizes_beyond_the_file_are_refused() {
    // Raw data that does not match the declared dimensions, and a filled tensor far larger
    // than the file can justify.
    let (_d, p) = hostile("tests/data/tiny_mlp.onnx", |g| {
        g.initializer[0].dims = vec![1 << 40, 1 << 20];
    });
    rejects_hostile(&p, &["stores"]);
    let (_d, p) = hostile("tests/data/tiny_mlp.onnx", |g| {
        let shape = onnx_rap::onnx::tensor::i64_tensor("huge_shape", &[2], &[1 << 30, 1 << 30]);
        g.initializer.push(shape);
        g.node.insert(
            0,
            onnx_rap::onnx::proto::NodeProto {
                op_type: Some("ConstantOfShape".into()),
                name: Some("fill".into()),
                input: vec!["huge_shape".into()],
                output: vec!["filled".into()],
                ..Default::default()
            },
        );
        g.output.push(onnx_rap::onnx::proto::ValueInfoProto {
            name: Some("filled".into()),
            ..Default::default()
        });
    });
    rejects_hostile(&p, &["fill", "more than"]);
    // A 1-D input declared with 2^40 values, whose values would be a shape: tract would
    // make a rank-2^40 fact of it (the fuzzer's abort).
    let (_d, p) = hostile("tests/data/tiny_mlp.onnx", |g| {
        let mut vi = g.input[0].clone();
        vi.name = Some("shape_in".into());
        let t = vi.r#type.as_mut().unwrap().tensor_type.as_mut().unwrap();
        t.elem_type = Some(7);
        let dims = &mut t.shape.as_mut().unwrap().dim;
        dims.truncate(1);
        dims[0].dim_param = None;
        dims[0].dim_value = Some(1 << 40);
        g.input.push(vi);
        g.node.push(onnx_rap::onnx::proto::NodeProto {
            op_type: Some("ConstantOfShape".into()),
            name: Some("fill".into()),
            input: vec!["shape_in".into()],
            output: vec!["filled".into()],
            ..Default::default()
        });
        g.output.push(onnx_rap::onnx::proto::ValueInfoProto {
            name: Some("filled".into()),
            ..Default::default()
        });
    });
    rejects_hostile(&p, &["'shape_in' as declared", "more than"]);
}

#[test]
fn inputs_tract_would_index_unchecked_are_refused() {
    // tract reads a BatchNormalization's channel axis without checking the rank: a rank-1
    // data input (the inputs reversed) or an empty name (tract drops it and shifts the
    // parameters) was a segmentation fault, not an error.
    let (_d, p) = hostile("tests/data/exporters/bn_as_op.onnx", |g| {
        let n = g.node.iter_mut().find(|n| n.name() == "bn2").unwrap();
        n.input.reverse();
    });
    rejects_hostile(&p, &["bn2", "rank 1", "needs rank 2"]);
    let (_d, p) = hostile("tests/data/exporters/bn_as_op.onnx", |g| {
        let n = g.node.iter_mut().find(|n| n.name() == "bn1").unwrap();
        n.input[0].clear();
    });
    rejects_hostile(&p, &["bn1", "required input 0 is missing"]);
    // A pool over a dense layer's [N, 6] output: the rank follows from the graph.
    let (_d, p) = hostile("tests/data/tiny_mlp.onnx", |g| {
        let n = g.node.iter_mut().find(|n| n.name() == "relu1").unwrap();
        n.op_type = Some("GlobalAveragePool".into());
    });
    rejects_hostile(&p, &["relu1", "'h1' has rank 2"]);
}
