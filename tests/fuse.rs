//! onnx-rap's plan-time kernels (src/fuse) against tract's own ops: the same ONNX graph
//! planned with and without them must give the same values, bit for bit (both compute each
//! element with the same float32 operations in the same order; NaN counts as equal to NaN),
//! on the values where float semantics are delicate (signed zeros, NaN, infinities,
//! subnormals, division by zero), every broadcast the kernel tells apart, boolean outputs,
//! and tensors large enough to be split over threads. The coverage test checks the same on
//! every model of the coverage set (within 1e-6 of max|R|).

use ndarray::ArrayD;
use onnx_rap::onnx::proto::{
    tensor_shape_proto, type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use onnx_rap::runtime::{Optimise, Plan, Value};

fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(output.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[usize], elem_type: i32) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(type_proto::Tensor {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| tensor_shape_proto::Dimension {
                            dim_value: Some(d as i64),
                            ..Default::default()
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A model of float inputs `inputs` (name, shape), float32 initializers, `nodes`, `outputs`.
fn model(
    inputs: &[(&str, Vec<usize>)],
    initializers: Vec<onnx_rap::onnx::proto::TensorProto>,
    nodes: Vec<NodeProto>,
    outputs: &[&str],
) -> Vec<u8> {
    let m = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("fuse".into()),
            node: nodes,
            initializer: initializers,
            input: inputs.iter().map(|(n, d)| value_info(n, d, 1)).collect(),
            output: outputs
                .iter()
                .map(|n| ValueInfoProto {
                    name: Some(n.to_string()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    onnx_rap::onnx::encode(&m)
}

/// The delicate values first, then a mix of them and ordinary ones, varied by `seed`.
fn values(dims: &[usize], seed: usize) -> ArrayD<f32> {
    let special = [
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-40,
        -1e-40,
        1.0,
        -1.0,
        3.5,
        -2.25,
        1e30,
        -7e-3,
    ];
    let n: usize = dims.iter().product();
    ArrayD::from_shape_vec(
        dims.to_vec(),
        (0..n)
            .map(|i| {
                let k = i.wrapping_mul(2654435761).wrapping_add(seed * 97) % 1000;
                if i < special.len() {
                    // Every delicate value at least once, in another order per input.
                    special[(i + seed) % special.len()]
                } else if k < 130 {
                    special[k % special.len()]
                } else {
                    (k as f32 - 500.0) / 37.0
                }
            })
            .collect(),
    )
    .unwrap()
}

fn same_bits(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// Plan `bytes` fused and unfused, run both on `feeds`, compare every output bit for bit;
/// returns the fused plan's statistics.
fn fused_equals_unfused(bytes: &[u8], feeds: &[Value], outputs: &[&str]) -> onnx_rap::fuse::Stats {
    let names: Vec<String> = outputs.iter().map(|s| s.to_string()).collect();
    let fused = Plan::with(bytes, feeds, names.clone(), Optimise::Codegen).unwrap();
    let plain = Plan::with(bytes, feeds, names, Optimise::Unfused).unwrap();
    assert!(plain.fusion().is_none());
    let stats = fused
        .fusion()
        .expect("the fused plan went through the fusion pass (ONNX_RAP_FUSE unset)");
    let a = fused.run(feeds).unwrap();
    let b = plain.run(feeds).unwrap();
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x.shape(), y.shape(), "{name}");
        let bad = x
            .iter()
            .zip(y.iter())
            .filter(|(p, q)| !same_bits(**p, **q))
            .count();
        let first = x
            .iter()
            .zip(y.iter())
            .enumerate()
            .find(|(_, (p, q))| !same_bits(**p, **q));
        assert_eq!(bad, 0, "{name}: {bad} values differ, first {first:?}");
    }
    stats
}

/// Every op the kernel takes, chained, with every broadcast: a and b full, c per channel,
/// s one value, g one value per row, m one plane per sample, o one plane for all samples,
/// x a broadcast of none of those forms, and boolean values inside and out.
fn chain_model(dims: &[usize]) -> (Vec<u8>, Vec<Value>, Vec<&'static str>) {
    let c_dims = vec![1, dims[1], 1, 1];
    let g_dims = vec![1, 1, dims[2], 1];
    let m_dims = vec![dims[0], 1, dims[2], dims[3]];
    let o_dims = vec![1, 1, dims[2], dims[3]];
    let x_dims = vec![dims[0], 1, dims[2], 1];
    let nodes = vec![
        node("Sub", &["a", "b"], "t1"),
        node("Sign", &["t1"], "t2"),
        node("Abs", &["t2"], "t3"),
        node("Mul", &["t3", "c"], "t4"),
        node("Div", &["a", "t4"], "t5"),
        node("Max", &["t5", "s"], "t6"),
        node("Min", &["t6", "g"], "t7"),
        node("Neg", &["t7"], "t8"),
        node("Reciprocal", &["b"], "t9"),
        node("Add", &["t8", "t9"], "t10"),
        node("Abs", &["a"], "t11"),
        node("Sqrt", &["t11"], "t12"),
        node("Greater", &["a", "b"], "gt"),
        node("Less", &["a", "c"], "lt"),
        node("Equal", &["t3", "s"], "eq"),
        node("And", &["gt", "lt"], "both"),
        node("Or", &["both", "eq"], "either"),
        node("Not", &["either"], "neither"),
        node("Where", &["neither", "t10", "t12"], "w"),
        node("Mul", &["w", "t5"], "out"),
        node("Mul", &["out", "m"], "om"),
        node("Sub", &["om", "o"], "omo"),
        node("Add", &["omo", "x"], "last"),
    ];
    let bytes = model(
        &[
            ("a", dims.to_vec()),
            ("b", dims.to_vec()),
            ("c", c_dims.clone()),
            ("s", vec![1]),
            ("g", g_dims.clone()),
            ("m", m_dims.clone()),
            ("o", o_dims.clone()),
            ("x", x_dims.clone()),
        ],
        vec![],
        nodes,
        &["last", "t5", "gt", "w"],
    );
    let feeds = vec![
        Value::F32(values(dims, 1)),
        Value::F32(values(dims, 2)),
        Value::F32(values(&c_dims, 3)),
        Value::F32(ArrayD::from_elem(vec![1], 0.5)),
        Value::F32(values(&g_dims, 5)),
        Value::F32(values(&m_dims, 6)),
        Value::F32(values(&o_dims, 8)),
        Value::F32(values(&x_dims, 9)),
    ];
    (bytes, feeds, vec!["last", "t5", "gt", "w"])
}

#[test]
fn every_fused_op_equals_tracts_own_bit_for_bit() {
    // Odd plane sizes: blocks of the kernel end inside channels and rows.
    let (bytes, feeds, outs) = chain_model(&[2, 3, 17, 19]);
    let stats = fused_equals_unfused(&bytes, &feeds, &outs);
    assert!(
        stats.fused_nodes >= 15 && stats.groups >= 1,
        "the chain was fused: {stats:?}"
    );
}

#[test]
fn fused_ops_split_over_threads_equal_tracts_own() {
    // 2 x 8 x 64 x 64 = 65536 elements: above tract's threshold for splitting element-wise
    // work, so the kernel runs in chunks on the two threads.
    onnx_rap::runtime::set_intra_op_threads(2);
    let (bytes, feeds, outs) = chain_model(&[2, 8, 64, 64]);
    let stats = fused_equals_unfused(&bytes, &feeds, &outs);
    assert!(stats.fused_nodes >= 15, "{stats:?}");
}

#[test]
fn channel_sums_equal_tracts_convolution_of_ones() {
    for (dims, threads) in [([2usize, 5, 7, 9], 1), ([1, 64, 56, 56], 2)] {
        onnx_rap::runtime::set_intra_op_threads(threads);
        let c = dims[1];
        let ones = onnx_rap::onnx::tensor::f32_tensor("ones", &[1, c as i64, 1, 1], &vec![1.0; c]);
        let bytes = model(
            &[("x", dims.to_vec())],
            vec![ones],
            vec![
                node("Conv", &["x", "ones"], "sum"),
                node("Abs", &["sum"], "out"),
            ],
            &["out", "sum"],
        );
        // Finite values: NaN and infinities would make the sums NaN either way.
        let x = values(&dims, 7).mapv(|v| if v.is_finite() { v } else { 0.25 });
        let stats = fused_equals_unfused(&bytes, &[Value::F32(x)], &["out", "sum"]);
        assert_eq!(stats.channel_sums, 1, "{dims:?}: {stats:?}");
    }
}

/// The rules' stacked slots: two outputs of a chain concatenated along the channels, once
/// read by a padded convolution (the chain writes the stack with the padding; the
/// convolution loses its own) and once by another op (the chain writes the stack alone); and
/// two chains that meet only at a Concat, fused into one.
#[test]
fn stacks_and_padded_convolutions_equal_tracts_concat_pad_and_conv() {
    for (dims, threads) in [([1usize, 3, 9, 7], 1), ([2, 8, 48, 45], 2)] {
        onnx_rap::runtime::set_intra_op_threads(threads);
        let c = dims[1];
        let w: Vec<f32> = (0..4 * 2 * c * 9)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let weight = onnx_rap::onnx::tensor::f32_tensor("w", &[4, 2 * c as i64, 3, 3], &w);
        let mut conv = node("Conv", &["slots", "w"], "back");
        conv.attribute
            .push(onnx_rap::onnx::attr::make_ints("pads", &[1, 2, 0, 1]));
        let bytes = model(
            &[("a", dims.to_vec()), ("b", dims.to_vec())],
            vec![weight],
            vec![
                node("Mul", &["a", "b"], "p"),
                node("Abs", &["p"], "q"),
                node("Sub", &["a", "q"], "r"),
                node("Max", &["r", "b"], "u"),
                {
                    let mut n = node("Concat", &["q", "u"], "slots");
                    n.attribute.push(onnx_rap::onnx::attr::make_int("axis", 1));
                    n
                },
                conv,
                {
                    let mut n = node("Concat", &["u", "r", "q"], "three");
                    n.attribute.push(onnx_rap::onnx::attr::make_int("axis", 1));
                    n
                },
                node("Abs", &["three"], "out3"),
                // A chain that meets the first only at the Concat (RAP's s1 and s2).
                node("Sub", &["b", "a"], "v0"),
                node("Neg", &["v0"], "v1"),
                {
                    let mut n = node("Concat", &["v1", "q"], "pair");
                    n.attribute.push(onnx_rap::onnx::attr::make_int("axis", 1));
                    n
                },
                node("Abs", &["pair"], "outpair"),
            ],
            &["back", "out3", "r", "outpair"],
        );
        let finite = |v: f32| if v.is_finite() { v } else { -0.5 };
        let feeds = [
            Value::F32(values(&dims, 11).mapv(finite)),
            Value::F32(values(&dims, 12).mapv(finite)),
        ];
        let stats = fused_equals_unfused(&bytes, &feeds, &["back", "out3", "r", "outpair"]);
        assert_eq!((stats.stacks, stats.pads), (3, 1), "{dims:?}: {stats:?}");
        assert_eq!(stats.groups, 1, "the two chains are one: {stats:?}");
    }
}
