//! Where the time of an explanation goes: run model_rap.onnx in tract with a timer around every
//! node, and sum the times by op and by the part of the relevance rule that emitted the node.
//!
//! usage: cargo run --release --example profile_explain -- MODEL [BATCH] [RUNS] [TOP] [THREADS]
//! (TOP: the lines shown per table, default 24; THREADS: tract's intra-op threads, default 1;
//! PROFILE_NODES=SUBSTRING prints every matching node's time; ONNX_RAP_FUSE=0: unfused plan)

use std::collections::HashMap;
use std::time::Instant;

use onnx_rap::pass::{compile, Options};
use tract_onnx::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::Path::new(&args[1]);
    let batch: usize = args.get(2).map_or(1, |s| s.parse().unwrap());
    let runs: usize = args.get(3).map_or(3, |s| s.parse().unwrap());
    let top: usize = args.get(4).map_or(24, |s| s.parse().unwrap());
    let threads: usize = args.get(5).map_or(1, |s| s.parse().unwrap());
    onnx_rap::runtime::set_intra_op_threads(threads);
    let proto = onnx_rap::onnx::load(path)?;
    let model = onnx_rap::ir::import(&proto, &args[1])?;
    let rap = compile(&model, &Options::default(), &args[1])?;
    let bytes = onnx_rap::onnx::encode(&onnx_rap::ir::export(&rap)?);
    let facts = onnx_rap::analysis::infer_facts(&proto, &args[1])?;
    let xs = onnx_rap::cli::bench::synthetic_inputs(&model, &facts, &args[1], batch)?;
    // Fold the constant weight subgraphs first, as `onnx-rap` does before running tract.
    let bytes = onnx_rap::onnx::encode(&onnx_rap::fold::fold_constants(onnx_rap::onnx::decode(
        &bytes, "model",
    )?)?);
    let mut plan = tract_onnx::onnx().model_for_read(&mut &bytes[..])?;
    for (k, x) in xs.iter().enumerate() {
        plan = plan.with_input_fact(k, x.fact())?;
    }
    let plan = plan.into_typed()?;
    // Codegen only, as onnx-rap plans explanations (runtime::Optimise::Codegen).
    let mut plan = plan;
    // Fused element-wise chains as onnx-rap plans them (ONNX_RAP_FUSE=0: unfused).
    if onnx_rap::fuse::enabled() {
        let s = onnx_rap::fuse::fuse(&mut plan)?;
        println!(
            "fusion: {} of {} element-wise nodes in {} fused nodes; {} channel sums; {} stacks, {} of them padded",
            s.fused_nodes, s.candidates, s.groups, s.channel_sums, s.stacks, s.pads
        );
    }
    plan.optimize()?;
    let plan = plan.into_runnable()?;
    let mut by_op: HashMap<String, f64> = HashMap::new();
    let mut by_part: HashMap<String, f64> = HashMap::new();
    let mut by_step: HashMap<String, f64> = HashMap::new();
    let mut total = 0.0;
    for r in 0..=runs {
        let mut state = tract_core::plan::SimpleState::new(&plan)?;
        let t0 = Instant::now();
        let mut times: Vec<(String, String, String, f64)> = vec![];
        state.run_plan_with_eval(
            xs.iter().map(|x| x.tensor().into()).collect(),
            |ctx, st, node, inputs| {
                let t = Instant::now();
                let r = tract_core::plan::eval(ctx, st, node, inputs);
                let part = match node.name.find(".rap.") {
                    Some(i) => node.name[i + 5..]
                        .split(['.', '#'])
                        .next()
                        .unwrap_or("")
                        .to_string(),
                    None if node.name.starts_with("rap.") => "seed/out".into(),
                    None => "forward".into(),
                };
                // The rule step: the name after `.rap.` up to its tensor-specific tail.
                let step = match node.name.find(".rap.") {
                    Some(i) => node.name[i + 5..]
                        .split('.')
                        .take(2)
                        .collect::<Vec<_>>()
                        .join("."),
                    None => part.clone(),
                };
                // PROFILE_NODES=SUBSTRING: each matching node's time, as it runs.
                if let Ok(pat) = std::env::var("PROFILE_NODES") {
                    if node.name.contains(&pat) {
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        eprintln!("{ms:8.3} ms {} {}", node.name, node.op().name());
                    }
                }
                times.push((
                    node.op().name().to_string(),
                    part,
                    step,
                    t.elapsed().as_secs_f64(),
                ));
                r
            },
        )?;
        if r == 0 {
            continue; // warm-up
        }
        total += t0.elapsed().as_secs_f64();
        for (op, part, step, t) in times {
            *by_op.entry(op.clone()).or_default() += t;
            *by_part.entry(part).or_default() += t;
            *by_step.entry(format!("{step} ({op})")).or_default() += t;
        }
    }
    let show = |title: &str, m: &HashMap<String, f64>| {
        let mut v: Vec<_> = m.iter().collect();
        v.sort_by(|a, b| b.1.partial_cmp(a.1).unwrap());
        println!("{title}");
        for (k, t) in v.iter().take(top) {
            println!(
                "  {:<44} {:>8.2} ms  {:>5.1}%",
                k,
                **t * 1e3 / runs as f64,
                100.0 * **t / total
            );
        }
    };
    println!(
        "{} batch {batch}, {threads} thread(s): {:.2} ms per run",
        path.display(),
        total * 1e3 / runs as f64
    );
    show("by op", &by_op);
    show("by rule part (first word after .rap.)", &by_part);
    show("by rule step and op (two words after .rap.)", &by_step);
    Ok(())
}
