//! Hostile files: a fixed-seed run of byte-level and structural mutants of the test models
//! (`tests/support/mutator.rs`) through load, inspect and compile, in process. Every outcome
//! must be a compiled model or a clean error: no panic (ours or a dependency's), no run
//! slower than a few seconds, no runaway memory. `scripts/fuzz.sh SECONDS` runs the same
//! mutator for as long as wanted.

#[path = "support/mutator.rs"]
mod mutator;

mod common;

use std::time::{Duration, Instant};

use mutator::{mutate, peak_rss, run, Outcome, Rng};

/// Small models covering most rules: dense, conv geometry, pools, layout ops, attention,
/// residual joins, transposed convolutions, a folded batch, a Softmax head, exporter-made
/// models (tf2onnx, dynamo, a converted Caffe graph with Casts and an op of another domain),
/// every Pad mode, BN as arithmetic, and an onnx light-zoo model (weights made by
/// ConstantOfShape).
const MODELS: [&str; 18] = [
    "tests/data/tiny_mlp.onnx",
    "tests/data/tiny_cnn.onnx",
    "tests/data/tiny_ops.onnx",
    "tests/data/tiny_pools.onnx",
    "tests/data/tiny_robust.onnx",
    "tests/data/tiny_fold.onnx",
    "tests/data/tiny_deconv.onnx",
    "tests/data/tiny_lrp.onnx",
    "tests/data/tiny_mlp_softmax.onnx",
    "tests/data/maxpool_ties.onnx",
    "tests/data/light/light_squeezenet.onnx",
    "tests/data/exporters/keras_cnn_bn.onnx",
    "tests/data/exporters/keras_residual.onnx",
    "tests/data/exporters/torch_dynamo_cnn.onnx",
    "tests/data/exporters/caffe_resnet.onnx",
    "tests/data/exporters/pad_modes.onnx",
    "tests/data/exporters/bn_as_arithmetic.onnx",
    "tests/data/exporters/bn_as_op.onnx",
];

const MUTANTS: usize = 20_000;
const SLOWEST: Duration = Duration::from_secs(5);
const MEMORY: u64 = 2 << 30;

#[test]
fn mutants_end_in_a_model_or_a_clean_error() {
    let root = common::root();
    let seeds: Vec<(String, Vec<u8>)> = MODELS
        .iter()
        .filter(|m| root.join(m).exists())
        .map(|m| (m.to_string(), std::fs::read(root.join(m)).unwrap()))
        .collect();
    assert_eq!(seeds.len(), MODELS.len(), "test models missing");
    let keep = root.join("target/fuzz-findings");
    let start = Instant::now();
    let mut rng = Rng(0x0a11_5eed);
    let (mut compiled, mut refused) = (0, 0);
    let mut longest = (Duration::ZERO, String::new());
    let mut panics = Vec::new();
    for i in 0..MUTANTS {
        let (name, bytes) = &seeds[i % seeds.len()];
        let mutant = mutate(bytes, &mut rng);
        let dir = root.join(name).parent().unwrap().to_path_buf();
        let origin = format!("{name}#{i}");
        let (outcome, took) = run(&mutant, &dir, &origin, i as u64);
        if took > longest.0 {
            longest = (took, origin.clone());
        }
        match outcome {
            Outcome::Compiled => compiled += 1,
            Outcome::Refused(msg) => {
                refused += 1;
                assert!(!msg.is_empty(), "{origin}: an empty error message");
            }
            Outcome::Panic(msg) => {
                std::fs::create_dir_all(&keep).unwrap();
                let file = keep.join(format!("mutation-test-{i}.onnx"));
                std::fs::write(&file, &mutant).unwrap();
                panics.push(format!("{origin}: {msg} (kept as {})", file.display()));
            }
        }
    }
    let took = start.elapsed();
    eprintln!(
        "{MUTANTS} mutants of {} models in {:.1} s: {compiled} compiled, {refused} refused, \
         {} panics; slowest {:.3} s ({}); peak memory {} MiB",
        seeds.len(),
        took.as_secs_f64(),
        panics.len(),
        longest.0.as_secs_f64(),
        longest.1,
        peak_rss() >> 20
    );
    assert!(panics.is_empty(), "panics:\n{}", panics.join("\n"));
    assert!(
        longest.0 < SLOWEST,
        "{} took {:?} (bound {SLOWEST:?})",
        longest.1,
        longest.0
    );
    assert!(peak_rss() < MEMORY, "peak memory {} MiB", peak_rss() >> 20);
    // The mutants must reach the compiler, not only the decoder.
    assert!(compiled > MUTANTS / 20, "only {compiled} mutants compiled");
}

#[test]
fn mutator_is_deterministic() {
    let bytes = std::fs::read(common::root().join(MODELS[1])).unwrap();
    let a: Vec<Vec<u8>> = {
        let mut r = Rng(3);
        (0..20).map(|_| mutate(&bytes, &mut r)).collect()
    };
    let b: Vec<Vec<u8>> = {
        let mut r = Rng(3);
        (0..20).map(|_| mutate(&bytes, &mut r)).collect()
    };
    assert_eq!(a, b);
    assert!(a.iter().any(|m| m != &bytes));
}
