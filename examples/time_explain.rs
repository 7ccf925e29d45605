//! Measure one model in one process: compile time, node counts and file sizes of model.onnx and
//! model_rap.onnx, and tract's median forward time against its median explain time.
//!
//! usage: cargo run --release --example time_explain -- MODEL [BATCH] [RUNS]

use std::time::Instant;

use ndarray::ArrayD;
use onnx_rap::analysis::{infer_facts, Dim};
use onnx_rap::pass::{compile, Options};
use onnx_rap::runtime::{Plan, Value};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::Path::new(&args[1]);
    let batch: usize = args.get(2).map_or(1, |s| s.parse().unwrap());
    let runs: usize = args.get(3).map_or(5, |s| s.parse().unwrap());
    let bytes = std::fs::read(path)?;
    let t0 = Instant::now();
    let proto = onnx_rap::onnx::load(path)?;
    let model = onnx_rap::ir::import(&proto, &args[1])?;
    let rap = compile(&model, &Options::default(), &args[1])?;
    let rap_bytes = onnx_rap::onnx::encode(&onnx_rap::ir::export(&rap)?);
    let compile_s = t0.elapsed().as_secs_f64();
    let input = model.graph.runtime_inputs()[0].to_string();
    let facts = infer_facts(&proto, &args[1])?;
    let shape: Vec<usize> = facts[&input]
        .shape
        .as_ref()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Known(v) if i > 0 => *v as usize,
            _ => batch,
        })
        .collect();
    let n: usize = shape.iter().product();
    let x = ArrayD::from_shape_vec(
        shape.clone(),
        (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect(),
    )?;
    let inputs = [Value::F32(x)];
    let fwd = Plan::new(&bytes, &inputs, vec!["y".into()])?;
    let exp = Plan::new(
        &rap_bytes,
        &inputs,
        vec!["y".into(), "r".into(), "h".into()],
    )?;
    fwd.run(&inputs)?;
    exp.run(&inputs)?;
    let (mut tf, mut te) = (vec![], vec![]);
    for _ in 0..runs {
        let t = Instant::now();
        fwd.run(&inputs)?;
        tf.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        exp.run(&inputs)?;
        te.push(t.elapsed().as_secs_f64());
    }
    println!(
        "tract plan nodes computing only from constants: {}",
        unfolded(&rap_bytes, &inputs)
    );
    let count = |m: &onnx_rap::ir::Model| {
        m.graph
            .g
            .node_weights()
            .filter(|n| n.op().is_some())
            .count()
    };
    let (f, e) = (median(tf), median(te));
    println!(
        "{} input {:?}: nodes {} -> {}, bytes {} -> {} ({:.3}x), compile {:.3}s, forward {:.4}s, explain {:.4}s, explain/forward {:.2}",
        path.display(), shape, count(&model), count(&rap), bytes.len(), rap_bytes.len(),
        rap_bytes.len() as f64 / bytes.len() as f64, compile_s, f, e, e / f
    );
    Ok(())
}

/// How many nodes of tract's optimised plan compute only from constants (0 = all folded).
#[allow(dead_code)]
fn unfolded(bytes: &[u8], inputs: &[Value]) -> usize {
    use tract_onnx::prelude::*;
    let mut m = tract_onnx::onnx().model_for_read(&mut &bytes[..]).unwrap();
    for (i, v) in inputs.iter().enumerate() {
        if let Value::F32(a) = v {
            m = m
                .with_input_fact(i, InferenceFact::dt_shape(f32::datum_type(), a.shape()))
                .unwrap();
        }
    }
    let opt = m.into_optimized().unwrap();
    opt.nodes()
        .iter()
        .filter(|n| {
            !n.inputs.is_empty()
                && n.inputs
                    .iter()
                    .all(|i| opt.node(i.node).op_is::<tract_core::ops::konst::Const>())
        })
        .count()
}
