//! Models as real exporters write them (`scripts/make_exporter_models.py`, committed in
//! `tests/data/exporters`): Keras through tf2onnx (channels-last inputs behind a Transpose or
//! a Reshape, BN folded or kept, dense layers as MatMul + Add, a Shape-driven flatten,
//! Softmax and Sigmoid heads), PyTorch 2's dynamo exporter, and the graph of a Caffe ResNet
//! converted through PyTorch (BN as Sub/Mul/Add/Div, float->float Casts, Transposes, reflect /
//! edge / constant Pad, ReduceMean, an op of another domain off the relevance path). Each
//! compiles with default options, conserves (`rap`: |sum R - logit| <= 1e-3 |logit|) in
//! onnxruntime and tract, agrees between the two, and has an `[N, H, W]` heatmap.

mod common;

use common::*;
use onnx_rap::image::Layout;
use onnx_rap::onnx::proto::ValueInfoProto;
use onnx_rap::pass::Options;
use onnx_rap::rules::Method;
use onnx_rap::runtime::Value;

struct Case {
    name: &'static str,
    /// The graph output to explain (the model's classifier output).
    output: &'static str,
    /// The tensor of logits behind it (the Softmax's or Sigmoid's input).
    logits: &'static str,
    layout: Layout,
    /// Runs in tract too (an op of another domain does not).
    tract: bool,
}

const CASES: [Case; 6] = [
    Case {
        name: "keras_cnn_bn",
        output: "dense_1",
        logits: "model/dense_1/BiasAdd:0",
        layout: Layout::Nhwc,
        tract: true,
    },
    Case {
        name: "keras_residual",
        output: "dense_2",
        logits: "model_1/dense_2/BiasAdd:0",
        layout: Layout::Nhwc,
        tract: true,
    },
    Case {
        name: "keras_sigmoid",
        output: "dense_3",
        logits: "model_2/dense_3/BiasAdd:0",
        layout: Layout::Nhwc,
        tract: true,
    },
    Case {
        name: "torch_dynamo_cnn",
        output: "scores",
        logits: "linear",
        layout: Layout::Nchw,
        tract: true,
    },
    Case {
        name: "torch_dynamo_nhwc",
        output: "scores",
        logits: "scores",
        layout: Layout::Nhwc,
        tract: true,
    },
    Case {
        name: "caffe_resnet",
        output: "prob",
        logits: "Gemm_out",
        layout: Layout::Nchw,
        tract: false,
    },
];

fn path(name: &str) -> std::path::PathBuf {
    root().join(format!("tests/data/exporters/{name}.onnx"))
}

/// model_rap.onnx of a case, with its logits added as an output (to check conservation).
fn compile_case(c: &Case, opts: &Options) -> Vec<u8> {
    let file = path(c.name);
    let mut proto = onnx_rap::onnx::load(&file).unwrap();
    let g = proto.graph.as_mut().unwrap();
    if !g.output.iter().any(|o| o.name() == c.logits) {
        g.output.push(ValueInfoProto {
            name: Some(c.logits.into()),
            ..Default::default()
        });
    }
    let origin = file.display().to_string();
    let m = onnx_rap::ir::import(&proto, &origin).unwrap();
    let opts = Options {
        output: Some(c.output.into()),
        ..opts.clone()
    };
    let compiled =
        onnx_rap::pass::compile(&m, &opts, &origin).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    onnx_rap::onnx::encode(&onnx_rap::ir::export(&compiled).unwrap())
}

#[test]
fn exported_models_compile_conserve_and_agree_with_nhw_heatmaps() {
    for c in &CASES {
        let bytes = compile_case(c, &Options::default());
        let x = npy_f32(&root().join(format!("tests/data/exporters/{}_input.npy", c.name)));
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("m.onnx");
        std::fs::write(&p, &bytes).unwrap();
        let input = onnx_rap::onnx::decode(&bytes, c.name)
            .unwrap()
            .graph
            .unwrap()
            .input[0]
            .name()
            .to_string();
        let o = run_ort(&p, &[(input.as_str(), Feed::F32(x.clone()))]);
        let mut runs = vec![("onnxruntime", o.clone())];
        if c.tract {
            runs.push(("tract", run_tract(&bytes, vec![Value::F32(x.clone())])));
        }
        let (h, w) = match c.layout {
            Layout::Nchw => (x.shape()[2], x.shape()[3]),
            Layout::Nhwc => (x.shape()[1], x.shape()[2]),
        };
        let channel = match c.layout {
            Layout::Nchw => 1,
            Layout::Nhwc => 3,
        };
        for (rt, out) in &runs {
            let r = &out["relevance"];
            assert_eq!(r.shape(), x.shape(), "{} {rt}", c.name);
            let heat = &out["heatmap"];
            assert_eq!(
                heat.shape(),
                &[x.shape()[0], h, w],
                "{} {rt}: heatmap",
                c.name
            );
            let want = r.sum_axis(ndarray::Axis(channel));
            let err = rel_err_per_sample(heat, &want);
            assert!(
                err.iter().all(|&e| e < 1e-5),
                "{} {rt}: heatmap {err:?}",
                c.name
            );
            for (i, (s, y)) in sums(r).iter().zip(max_logits(&out[c.logits])).enumerate() {
                assert!(
                    (s - y).abs() <= 1e-3 * y.abs(),
                    "{} {rt} sample {i}: relevance sum {s} vs logit {y}",
                    c.name
                );
            }
        }
        if let [(_, o), (_, t)] = runs.as_slice() {
            let err = rel_err_per_sample(&t["relevance"], &o["relevance"]);
            assert!(
                err.iter().all(|&e| e < 1e-4),
                "{}: tract vs onnxruntime {err:?}",
                c.name
            );
        }
    }
}

#[test]
fn image_layouts_are_detected_and_fed_without_flags() {
    for c in &CASES {
        let file = path(c.name);
        let model = onnx_rap::cli::load_model(&file).unwrap();
        let x = npy_f32(&root().join(format!("tests/data/exporters/{}_input.npy", c.name)));
        let sample: Vec<usize> = x.shape()[1..].to_vec();
        let input = model.graph.runtime_inputs()[0].to_string();
        assert_eq!(
            onnx_rap::analysis::image_layout(&model.graph, &input, &sample),
            c.layout,
            "{}",
            c.name
        );
        // What explain, eval and serve feed: the detected layout, no flag needed.
        let pp = onnx_rap::explainer::image_preprocess(&model, &sample, Default::default(), c.name)
            .unwrap()
            .unwrap();
        assert_eq!(pp.layout, c.layout, "{}", c.name);
        // --layout (here: metadata-free options) overrides the detection in the heatmap.
        let other = match c.layout {
            Layout::Nchw => Layout::Nhwc,
            Layout::Nhwc => Layout::Nchw,
        };
        if x.shape()[1..].iter().all(|&d| d > 1) {
            let bytes = compile_case(
                c,
                &Options {
                    layout: Some(other),
                    ..Options::default()
                },
            );
            let m = onnx_rap::onnx::decode(&bytes, c.name).unwrap();
            let heat = m
                .graph
                .unwrap()
                .output
                .into_iter()
                .find(|o| o.name() == "heatmap")
                .unwrap();
            let dims: Vec<i64> = heat
                .r#type
                .unwrap()
                .tensor_type
                .unwrap()
                .shape
                .unwrap()
                .dim
                .iter()
                .map(|d| d.dim_value.unwrap_or(-1))
                .collect();
            let want: Vec<i64> = match other {
                Layout::Nchw => vec![-1, x.shape()[2] as i64, x.shape()[3] as i64],
                Layout::Nhwc => vec![-1, x.shape()[1] as i64, x.shape()[2] as i64],
            };
            assert_eq!(dims, want, "{}: --layout override", c.name);
        }
    }
}

#[test]
fn dense_layers_written_as_matmul_add_are_canonical_gemms() {
    let file = path("keras_cnn_bn");
    let model = onnx_rap::cli::load_model(&file).unwrap();
    let facts =
        onnx_rap::analysis::infer_facts(&onnx_rap::ir::export(&model).unwrap(), "k").unwrap();
    let canon = onnx_rap::canon::canonical(&model, &facts, "k")
        .unwrap()
        .expect("two dense layers to rewrite");
    let count = |m: &onnx_rap::ir::Model, op: &str| {
        m.graph
            .g
            .node_weights()
            .filter(|n| n.op().is_some_and(|n| n.op_type() == op))
            .count()
    };
    assert_eq!(count(&model, "MatMul"), 2);
    assert_eq!(count(&canon, "MatMul"), 0);
    assert_eq!(count(&canon, "Gemm"), 2);
    assert_eq!(count(&canon, "Add"), count(&model, "Add") - 2);
    // The logits are made by a dense layer now: RAP's first step (which splits the bias)
    // applies there, as for PyTorch's Gemm. The main test checks that it conserves.
    let roles = onnx_rap::analysis::find_roles(&canon.graph, &facts, None, None, "k").unwrap();
    let head = roles.output_layer.and_then(|ix| canon.graph.g[ix].op());
    assert_eq!(head.map(|n| n.op_type()), Some("Gemm"));
    // A model without such a layer is left as it is.
    let plain = onnx_rap::cli::load_model(&path("torch_dynamo_cnn")).unwrap();
    let facts =
        onnx_rap::analysis::infer_facts(&onnx_rap::ir::export(&plain).unwrap(), "t").unwrap();
    assert!(onnx_rap::canon::canonical(&plain, &facts, "t")
        .unwrap()
        .is_none());
}

/// Reflect, edge and constant padding hand every copy's share back to the value it copies:
/// gradient x input stops at the Gemm (no linear layer reads the input directly), so the
/// relevance at the input is the gradient of the logit, checked against finite differences
/// (the model is linear: one step of 1 is exact up to rounding).
#[test]
fn padding_modes_hand_relevance_back_to_the_copied_values() {
    let file = path("pad_modes");
    let bytes = common::compile_file(
        &file,
        &Options {
            method: Method::GradInput,
            ..Options::default()
        },
    );
    let x = npy_f32(&root().join("tests/data/exporters/pad_modes_input.npy"));
    let out = run_tract(&bytes, vec![Value::F32(x.clone())]);
    let grad = &out["relevance"];
    let model = std::fs::read(&file).unwrap();
    let logits = &out["logits"];
    let n = x.shape()[0];
    let per = x.len() / n;
    for i in 0..n {
        let t = (0..logits.shape()[1])
            .max_by(|&a, &b| logits[[i, a]].total_cmp(&logits[[i, b]]))
            .unwrap();
        // One batch: the sample, then the sample with each value raised by 1.
        let base = x.index_axis(ndarray::Axis(0), i).to_owned();
        let mut batch = ndarray::Array::zeros(
            [per + 1]
                .iter()
                .chain(&x.shape()[1..])
                .copied()
                .collect::<Vec<_>>(),
        );
        for k in 0..=per {
            let mut s = base.clone();
            if k > 0 {
                s.as_slice_mut().unwrap()[k - 1] += 1.0;
            }
            batch.index_axis_mut(ndarray::Axis(0), k).assign(&s);
        }
        let names = output_names(&model);
        let y = &onnx_rap::runtime::run_once(&model, &[Value::F32(batch.into_dyn())], names)
            .unwrap()[0]
            .1;
        let g = grad.index_axis(ndarray::Axis(0), i);
        for (k, &gk) in g.iter().enumerate() {
            let fd = y[[k + 1, t]] - y[[0, t]];
            assert!((fd - gk).abs() < 1e-3, "sample {i} value {k}: {gk} vs {fd}");
        }
    }
}

/// BatchNormalization written as Sub/Div/Mul/Add (channels-first constants, and behind a pair
/// of Transposes) gets the relevance of the BatchNormalization op it spells.
#[test]
fn batchnorm_as_arithmetic_explains_like_the_op() {
    let x = npy_f32(&root().join("tests/data/exporters/bn_as_op_input.npy"));
    for method in [
        Method::Rap,
        Method::RapOfficial,
        Method::LrpZPlus,
        Method::GradInput,
    ] {
        let opts = Options {
            method,
            ..Options::default()
        };
        let run = |name: &str| {
            let bytes = common::compile_file(&path(name), &opts);
            run_tract(&bytes, vec![Value::F32(x.clone())])
        };
        let (op, arith) = (run("bn_as_op"), run("bn_as_arithmetic"));
        let err = rel_err_per_sample(&arith["logits"], &op["logits"]);
        assert!(err.iter().all(|&e| e < 1e-5), "{method:?} logits {err:?}");
        let err = rel_err_per_sample(&arith["relevance"], &op["relevance"]);
        assert!(
            err.iter().all(|&e| e < 1e-4),
            "{method:?} relevance {err:?}"
        );
    }
}
