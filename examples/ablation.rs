//! What each cheaper equal form (`rules::Tuning`) gives: compile one model with the rewrites
//! switched on one after another, and time every variant against the forward pass in tract,
//! interleaved in one process.
//!
//! usage: cargo run --release --example ablation -- MODEL [BATCH] [RUNS] [VARIANTS]
//!
//! VARIANTS: comma-separated indices of the variants to time (default all; each plan of a
//! large model holds its own folded weights, so pick a few there).

use std::time::Instant;

use onnx_rap::cli::bench::median;
use onnx_rap::pass::{compile, Options};
use onnx_rap::rules::Tuning;
use onnx_rap::runtime::Plan;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::Path::new(&args[1]);
    let batch: usize = args.get(2).map_or(1, |s| s.parse().unwrap());
    let runs: usize = args.get(3).map_or(3, |s| s.parse().unwrap());
    let proto = onnx_rap::onnx::load(path)?;
    let model = onnx_rap::ir::import(&proto, &args[1])?;
    let facts = onnx_rap::analysis::infer_facts(&proto, &args[1])?;
    let inputs = onnx_rap::cli::bench::synthetic_inputs(&model, &facts, &args[1], batch)?;
    let mut t = Tuning::none();
    let mut variants = vec![("reference form", t)];
    t.z2_from_output = true;
    variants.push(("+ Z2 from the layer output", t));
    t.flip_transpose = true;
    variants.push(("+ stride-1 ConvTranspose as flipped Conv", t));
    t.fold_masks = true;
    variants.push(("+ redundant masks folded", t));
    t.sign_masks = true;
    variants.push(("+ masks as |sign|, BN mask on X", t));
    t.select_division = true;
    variants.push(("+ safe division as Where", t));
    if let Some(pick) = args.get(4) {
        let keep: Vec<usize> = pick.split(',').map(|v| v.parse().unwrap()).collect();
        variants = variants
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, v)| v)
            .collect();
    }
    let fwd = Plan::new(&std::fs::read(path)?, &inputs, vec![])?;
    let mut plans = Vec::new();
    for (name, tuning) in &variants {
        let rap = compile(
            &model,
            &Options {
                tuning: *tuning,
                ..Options::default()
            },
            &args[1],
        )?;
        let bytes = onnx_rap::onnx::encode(&onnx_rap::ir::export(&rap)?);
        let p = onnx_rap::runtime::Plan::with(
            &bytes,
            &inputs,
            vec![],
            onnx_rap::runtime::Optimise::Codegen,
        )?;
        p.run(&inputs)?;
        plans.push((name, p));
    }
    fwd.run(&inputs)?;
    let mut tf = vec![];
    let mut te = vec![vec![]; plans.len()];
    for _ in 0..runs {
        let s = Instant::now();
        fwd.run(&inputs)?;
        tf.push(s.elapsed().as_secs_f64());
        for (k, (_, p)) in plans.iter().enumerate() {
            let s = Instant::now();
            p.run(&inputs)?;
            te[k].push(s.elapsed().as_secs_f64());
        }
    }
    let f = median(&tf);
    println!("{} batch {batch}: forward {f:.4} s", path.display());
    for ((name, _), t) in plans.iter().zip(te) {
        let e = median(&t);
        println!("  {name:<42} explain {e:.4} s  ratio {:.2}", e / f);
    }
    Ok(())
}
