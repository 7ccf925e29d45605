//! `onnx-rap bench MODEL`: forward pass against explanation, in tract, in one process.

use std::path::Path;
use std::time::Instant;

use ndarray::ArrayD;
use serde_json::{json, Value as Json};

use crate::analysis::{infer_facts, input_sample_dims, Facts};
use crate::bad_input;
use crate::error::Result;
use crate::ir;
use crate::pass::{compile_with_facts, Options};
use crate::runtime::{Plan, Value};

/// Timings of one bench run.
pub struct Report {
    pub model: String,
    pub batch: usize,
    pub threads: usize,
    pub runs: usize,
    pub forward: Vec<f64>,
    pub explain: Vec<f64>,
    pub compile_s: f64,
    pub model_bytes: usize,
    pub rap_bytes: usize,
    /// Size model_rap.onnx would have with W+, |W-|, stacks and flips stored as initializers.
    pub rap_folded_bytes: usize,
    pub nodes: (usize, usize),
    /// Peak resident memory of the process (kB) after the forward plan ran, and after the
    /// explain plan ran too.
    pub peak_kb: (u64, u64),
}

/// The median of some timings.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn minmax(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)))
}

/// Peak resident set size of this process in kB (Linux), 0 elsewhere.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

impl Report {
    pub fn ratio(&self) -> f64 {
        median(&self.explain) / median(&self.forward)
    }

    pub fn to_json(&self) -> Json {
        json!({
            "model": self.model,
            "runtime": "tract",
            "batch": self.batch,
            "threads": self.threads,
            "runs": self.runs,
            "forward_s": median(&self.forward),
            "explain_s": median(&self.explain),
            "ratio": self.ratio(),
            "forward_min_max_s": minmax(&self.forward),
            "explain_min_max_s": minmax(&self.explain),
            "compile_s": self.compile_s,
            "model_bytes": self.model_bytes,
            "rap_bytes": self.rap_bytes,
            "rap_folded_bytes": self.rap_folded_bytes,
            "nodes": self.nodes.0,
            "rap_nodes": self.nodes.1,
            "peak_rss_kb_after_forward": self.peak_kb.0,
            "peak_rss_kb_after_explain": self.peak_kb.1,
        })
    }

    pub fn render(&self) -> String {
        let (fmin, fmax) = minmax(&self.forward);
        let (emin, emax) = minmax(&self.explain);
        format!(
            "model      {}\nbatch      {}   threads {}   runs {}\n\
             forward    {:.4} s  (min {:.4}, max {:.4})\n\
             explain    {:.4} s  (min {:.4}, max {:.4})\n\
             ratio      {:.2}  (explain / forward, medians)\n\
             compile    {:.3} s  ({} -> {} nodes)\n\
             size       {} -> {} bytes ({:.3}x); {:.3}x with derived weights as initializers\n\
             peak RSS   {} MB after forward runs, {} MB after explain runs\n",
            self.model,
            self.batch,
            self.threads,
            self.runs,
            median(&self.forward),
            fmin,
            fmax,
            median(&self.explain),
            emin,
            emax,
            self.ratio(),
            self.compile_s,
            self.nodes.0,
            self.nodes.1,
            self.model_bytes,
            self.rap_bytes,
            self.rap_bytes as f64 / self.model_bytes as f64,
            self.rap_folded_bytes as f64 / self.model_bytes as f64,
            self.peak_kb.0 / 1024,
            self.peak_kb.1 / 1024,
        )
    }
}

/// A fixed pseudo-random input in [-1, 1) of the model's input shape with batch `batch`.
pub fn synthetic_input(
    model: &ir::Model,
    facts: &Facts,
    origin: &str,
    batch: usize,
) -> Result<ArrayD<f32>> {
    let input = model
        .graph
        .runtime_inputs()
        .first()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let mut shape: Vec<usize> = input_sample_dims(facts, &input, origin)?;
    shape.insert(0, batch);
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i.wrapping_mul(2654435761) % 2000) as f32) / 1000.0 - 1.0)
        .collect();
    ArrayD::from_shape_vec(shape, data).map_err(|e| bad_input!("{e}"))
}

/// Compile `path` in memory and time forward against explain.
pub fn run(
    path: &Path,
    opts: &Options,
    batch: usize,
    threads: usize,
    runs: usize,
) -> Result<Report> {
    if threads > 1 {
        tract_linalg::multithread::set_default_executor(
            tract_linalg::multithread::Executor::multithread(threads),
        );
    }
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| bad_input!("{origin}: cannot read: {e}"))?;
    let t0 = Instant::now();
    let proto = crate::onnx::load(path)?;
    let model = ir::import(&proto, &origin)?;
    let facts = infer_facts(&proto, &origin)?;
    if facts.single_sample && batch > 1 {
        return Err(bad_input!(
            "{origin}: model_rap.onnx of this model explains one sample per run (its batch \
             axis is fixed to 1, or a reshape folds it into other axes); use --batch 1"
        ));
    }
    let rap = compile_with_facts(&model, &facts, opts, &origin)?;
    let rap_bytes = crate::onnx::encode(&ir::export(&rap)?);
    let compile_s = t0.elapsed().as_secs_f64();

    let x = synthetic_input(&model, &facts, &origin, batch)?;
    let inputs = [Value::F32(x)];
    let fwd = Plan::new(&bytes, &inputs, vec![])?;
    fwd.run(&inputs)?;
    let peak_fwd = peak_rss_kb();
    let exp = Plan::new(&rap_bytes, &inputs, vec![])?;
    exp.run(&inputs)?;
    let peak_exp = peak_rss_kb();
    let (mut tf, mut te) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        fwd.run(&inputs)?;
        tf.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        exp.run(&inputs)?;
        te.push(t.elapsed().as_secs_f64());
    }
    Ok(Report {
        model: origin,
        batch,
        threads,
        runs,
        forward: tf,
        explain: te,
        compile_s,
        model_bytes: bytes.len(),
        rap_bytes: rap_bytes.len(),
        rap_folded_bytes: crate::onnx::encode(&crate::fold::fold_constants(&ir::export(&rap)?)?)
            .len(),
        nodes: (model.graph.op_count(), rap.graph.op_count()),
        peak_kb: (peak_fwd, peak_exp),
    })
}
