//! What plan-time fusion (`onnx_rap::fuse`) gives: the forward pass, the unfused explanation
//! and the fused one, planned in one process and timed interleaved (this machine's load moves
//! between runs; the ratios of one run hold), with the largest difference of their relevance.
//!
//! usage: cargo run --release --example fuse_ab -- MODEL [BATCH] [RUNS] [THREADS]

use std::time::Instant;

use onnx_rap::cli::bench::median;
use onnx_rap::pass::{compile, Options};
use onnx_rap::runtime::{Optimise, Plan};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::Path::new(&args[1]);
    let batch: usize = args.get(2).map_or(1, |s| s.parse().unwrap());
    let runs: usize = args.get(3).map_or(5, |s| s.parse().unwrap());
    let threads: usize = args.get(4).map_or(1, |s| s.parse().unwrap());
    onnx_rap::runtime::set_intra_op_threads(threads);
    let proto = onnx_rap::onnx::load(path)?;
    let model = onnx_rap::ir::import(&proto, &args[1])?;
    let facts = onnx_rap::analysis::infer_facts(&proto, &args[1])?;
    let inputs = onnx_rap::cli::bench::synthetic_inputs(&model, &facts, &args[1], batch)?;
    let rap = compile(&model, &Options::default(), &args[1])?;
    let bytes = onnx_rap::onnx::encode(&onnx_rap::ir::export(&rap)?);
    let fwd = Plan::new(&std::fs::read(path)?, &inputs, vec![])?;
    onnx_rap::fuse::set_enabled(false);
    let plain = Plan::with(&bytes, &inputs, vec![], Optimise::Codegen)?;
    onnx_rap::fuse::set_enabled(true);
    let fused = Plan::with(&bytes, &inputs, vec![], Optimise::Codegen)?;
    let a = plain.run(&inputs)?;
    let b = fused.run(&inputs)?;
    let mut worst: f32 = 0.0;
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let scale = x
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(f32::MIN_POSITIVE);
        let d = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        println!(
            "  {name}: max|fused - unfused| = {:.3e} x max|R|",
            d / scale
        );
        worst = worst.max(d / scale);
    }
    println!("  largest: {worst:.3e} x max|R|");
    fwd.run(&inputs)?;
    let (mut tf, mut tp, mut tu) = (vec![], vec![], vec![]);
    for _ in 0..runs {
        for (plan, times) in [(&fwd, &mut tf), (&plain, &mut tp), (&fused, &mut tu)] {
            let s = Instant::now();
            plan.run(&inputs)?;
            times.push(s.elapsed().as_secs_f64());
        }
    }
    let (f, p, u) = (median(&tf), median(&tp), median(&tu));
    println!(
        "{} batch {batch}, {threads} thread(s), {runs} runs: forward {f:.4} s, unfused {p:.4} s (ratio {:.2}), fused {u:.4} s (ratio {:.2}); fused / unfused {:.3}",
        path.display(),
        p / f,
        u / f,
        u / p
    );
    Ok(())
}
