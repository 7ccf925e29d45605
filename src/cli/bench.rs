//! `onnx-rap bench MODEL`: forward pass against explanation, in tract, in one process.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::ArrayD;
use serde_json::{json, Value as Json};

use super::args::{self, MethodArg};
use crate::analysis::Facts;
use crate::bad_input;
use crate::error::Result;
use crate::explainer::{Explainer, Settings};
use crate::ir;
use crate::pass::Options;
use crate::rules::Tuning;
use crate::runtime::{Plan, Value};
use tract_onnx::prelude::*;

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
    /// Throughput in images/s of the forward pass and of the explanation: `threads` workers
    /// each running batch-`batch` runs of one shared plan at once (tract single-threaded in
    /// each), `runs` rounds.
    pub images_per_s: (f64, f64),
    /// Peak resident memory (kB) of a process that plans and runs only the forward pass, and
    /// of one that compiles, plans and runs only the explanation (each in a child process of
    /// its own, so neither counts the other); None where no child could be started.
    pub peak_kb: (Option<u64>, Option<u64>),
    /// What plan-time fusion did to the explanation's plan (None: `--no-fuse`).
    pub fusion: Option<crate::fuse::Stats>,
}

/// One side of the comparison, for `bench --peak-of`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Forward,
    Explain,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Forward => "forward",
            Part::Explain => "explain",
        }
    }
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
pub fn peak_rss_kb() -> u64 {
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

    /// Peak RSS of the explanation over the forward pass's.
    pub fn peak_ratio(&self) -> Option<f64> {
        match self.peak_kb {
            (Some(f), Some(e)) if f > 0 => Some(e as f64 / f as f64),
            _ => None,
        }
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
            "images_per_s_forward": self.images_per_s.0,
            "images_per_s_explain": self.images_per_s.1,
            "peak_rss_kb_forward": self.peak_kb.0,
            "peak_rss_kb_explain": self.peak_kb.1,
            "peak_rss_ratio": self.peak_ratio(),
            "fused": self.fusion.is_some(),
            "fused_nodes": self.fusion.map(|f| f.fused_nodes),
            "fused_kernels": self.fusion.map(|f| f.groups),
            "channel_sums": self.fusion.map(|f| f.channel_sums),
            "fused_stacks": self.fusion.map(|f| f.stacks),
            "fused_pads": self.fusion.map(|f| f.pads),
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
             images/s   {:.2} forward, {:.2} explain ({} workers of batch {} at once)\n\
             peak RSS   {} forward, {} explain ({}; one process each)\n\
             fusion     {}\n",
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
            self.images_per_s.0,
            self.images_per_s.1,
            self.threads,
            self.batch,
            mb(self.peak_kb.0),
            mb(self.peak_kb.1),
            self.peak_ratio()
                .map_or("ratio unknown".to_string(), |r| format!("{r:.2}x")),
            match self.fusion {
                Some(f) => format!(
                    "{} of {} element-wise nodes in {} kernels, {} channel sums, {} stacks \
                     ({} padded) (--no-fuse: tract's own ops)",
                    f.fused_nodes, f.candidates, f.groups, f.channel_sums, f.stacks, f.pads
                ),
                None => "off (tract's own ops)".to_string(),
            },
        )
    }
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or("?".into(), |k| format!("{} MB", k / 1024))
}

/// A fixed pseudo-random input in [-1, 1) of the model's input shape with batch `batch`.
pub fn synthetic_inputs(
    model: &ir::Model,
    facts: &Facts,
    origin: &str,
    batch: usize,
) -> Result<Vec<Value>> {
    // The same index pattern for floats in [-1, 1) and for token ids over the vocabulary.
    let pattern = |i: usize| i.wrapping_mul(2654435761);
    let feeds = super::feeds::synthetic(
        model,
        facts,
        origin,
        batch,
        &mut |dims| {
            let n: usize = dims.iter().product();
            let data = (0..n)
                .map(|i| ((pattern(i) % 2000) as f32) / 1000.0 - 1.0)
                .collect();
            ArrayD::from_shape_vec(dims.to_vec(), data).expect("n values of shape dims")
        },
        &mut |dims, rows| {
            let n: usize = dims.iter().product();
            let data = (0..n)
                .map(|i| (pattern(i) % rows as usize) as i64)
                .collect();
            ArrayD::from_shape_vec(dims.to_vec(), data).expect("n values of shape dims")
        },
    )?;
    Ok(feeds.into_iter().map(|(_, v)| v).collect())
}

/// A model read and compiled: its bytes, IR, explainer, input, compile time.
type Prepared = (Vec<u8>, ir::Model, Explainer, Vec<Value>, f64);

/// Load `path`, compile it in memory and make the batch-`batch` input.
fn prepare(path: &Path, opts: &Options, batch: usize) -> Result<Prepared> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| bad_input!("{origin}: cannot read: {e}"))?;
    let t0 = Instant::now();
    let model = crate::explainer::load_model(path)?;
    let settings = Settings {
        compile: opts.clone(),
        ..Settings::default()
    };
    let ex = Explainer::tensors(model.clone(), path, &settings)?;
    // A model whose batch is fixed to 1 explains one sample per run (one that folds a
    // symbolic batch runs its samples through a Scan and takes any batch).
    if ex.compiled().fixed_batch == Some(1) && batch > 1 {
        return Err(bad_input!(
            "{origin}: model_rap.onnx of this model explains one sample per run (the model's \
             batch axis is fixed to 1); use --batch 1"
        ));
    }
    let compile_s = t0.elapsed().as_secs_f64();
    let x = synthetic_inputs(&model, &ex.compiled().facts, &origin, batch)?;
    Ok((bytes, model, ex, x, compile_s))
}

/// The inputs of a timed explanation run: `inputs` and `rap_target` (-1: the prediction).
fn with_target(inputs: &[Value]) -> Vec<Value> {
    let n = inputs
        .first()
        .and_then(|v| v.shape().first().copied())
        .unwrap_or(1);
    let mut v = inputs.to_vec();
    v.push(Value::I64(ArrayD::from_elem(vec![n], -1)));
    v
}

/// What `bench --peak-of PART` does in its child process: only the forward pass (read the
/// file, plan, run once: what a tract user does; `shape` is the input's, from the parent) or
/// only the explanation (load, compile, plan, run once: what `explain` does); returns the peak
/// RSS (kB).
pub fn peak_of(
    path: &Path,
    opts: &Options,
    batch: usize,
    part: Part,
    shape: Option<&[usize]>,
) -> Result<u64> {
    let origin = path.display().to_string();
    match part {
        Part::Forward => {
            let xs = match shape {
                Some(s) => vec![Value::F32(ArrayD::from_elem(s.to_vec(), 0.5f32))],
                None => prepare(path, opts, batch)?.3,
            };
            // Plain tract, as its users run a model: no folding, no copies of ours.
            crate::guard::in_tract(&origin, "the forward pass", || -> TractResult<()> {
                let mut m = tract_onnx::onnx().model_for_path(path)?;
                for (k, x) in xs.iter().enumerate() {
                    m = m.with_input_fact(k, x.fact())?;
                }
                let plan = m.into_optimized()?.into_runnable()?;
                plan.run(xs.iter().map(|x| x.tensor().into()).collect())?;
                Ok(())
            })?
            .map_err(|e| crate::runtime_err!("{origin}: tract: {e:#}"))?;
        }
        Part::Explain => {
            let (bytes, model, ex, x, _) = prepare(path, opts, batch)?;
            drop((bytes, model));
            ex.run(x, None)?;
        }
    }
    Ok(peak_rss_kb())
}

/// Run this program again as `ARGS --peak-of PART` and read the peak it prints; None when
/// this process is not the `onnx-rap` binary (a test harness, say) or the child fails.
fn child_peak(args: &[std::ffi::OsString], part: Part, shape: Option<&[usize]>) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    if !exe
        .file_stem()
        .is_some_and(|s| s.to_string_lossy().starts_with("onnx-rap"))
    {
        return None;
    }
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args.iter().skip(1))
        .args(["--peak-of", part.name()]);
    if let Some(shape) = shape {
        cmd.arg("--peak-shape").arg(
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let out = cmd.stderr(std::process::Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// `threads` workers running `plan` at once, `rounds` runs each; images/s.
fn throughput(
    plan: &Plan,
    inputs: &[Value],
    batch: usize,
    threads: usize,
    rounds: usize,
) -> Result<f64> {
    crate::runtime::set_intra_op_threads(1);
    let jobs: Vec<usize> = (0..threads * rounds).collect();
    let t = Instant::now();
    crate::parallel::map(threads, &jobs, |_, _| plan.run(inputs).map(|_| ()))?;
    let wall = t.elapsed().as_secs_f64();
    crate::runtime::set_intra_op_threads(threads);
    Ok((jobs.len() * batch) as f64 / wall)
}

/// Compile `path` in memory and time forward against explain. `cli_args` is this program's
/// command line: the peak memory of each side is measured by running it again with
/// `--peak-of` (empty: no peaks).
pub fn run(
    path: &Path,
    opts: &Options,
    batch: usize,
    threads: usize,
    runs: usize,
    cli_args: &[std::ffi::OsString],
) -> Result<Report> {
    crate::runtime::set_intra_op_threads(threads);
    let origin = path.display().to_string();
    let (bytes, model, ex, inputs, compile_s) = prepare(path, opts, batch)?;
    let rap_bytes = &ex.compiled().bytes;
    // A lone float input: the child of the forward side makes it from its shape alone.
    let shape = match inputs.as_slice() {
        [Value::F32(x)] => Some(x.shape().to_vec()),
        _ => None,
    };
    let fwd = Plan::new(&bytes, &inputs, vec![])?;
    fwd.run(&inputs)?;
    // The explainer's plan, run as it is (the timed runs hold no conversion of outputs).
    let targeted = with_target(&inputs);
    let exp = ex.plan(&targeted)?;
    let fusion = exp.fusion();
    exp.run(&targeted)?;
    let (mut tf, mut te) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        fwd.run(&inputs)?;
        tf.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        exp.run(&targeted)?;
        te.push(t.elapsed().as_secs_f64());
    }
    let images_per_s = (
        throughput(&fwd, &inputs, batch, threads, runs)?,
        throughput(&exp, &targeted, batch, threads, runs)?,
    );
    let nodes = (model.graph.op_count(), ex.compiled().nodes);
    let rap_folded_bytes = crate::onnx::encode(&crate::fold::fold_constants(crate::onnx::decode(
        rap_bytes, &origin,
    )?)?)
    .len();
    drop((fwd, exp));
    let peak_kb = if cli_args.is_empty() {
        (None, None)
    } else {
        (
            child_peak(cli_args, Part::Forward, shape.as_deref()),
            child_peak(cli_args, Part::Explain, shape.as_deref()),
        )
    };
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
        rap_folded_bytes,
        nodes,
        images_per_s,
        peak_kb,
        fusion,
    })
}

// The command line of `bench`: its flags (the doc comments are the --help text) and what
// `onnx-rap bench` does with them.

#[derive(clap::Args)]
pub struct BenchCli {
    /// The model (.onnx)
    model: PathBuf,
    /// Batch size
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Threads: tract's intra-op threads for the timed runs, and the workers of the
    /// images/s measurement [default: every core]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Timed runs of each
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Propagation rules
    #[arg(long, value_enum, default_value = "rap")]
    method: MethodArg,
    /// Time the rules without the cheaper equivalent forms (see `compile --exact`)
    #[arg(long)]
    exact: bool,
    /// Time the explanation with tract's own element-wise ops instead of onnx-rap's fused
    /// kernels (the same values: the fused kernels repeat tract's float operations; also
    /// ONNX_RAP_FUSE=0, which every command reads)
    #[arg(long)]
    no_fuse: bool,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
    /// Only plan and run one side once and print this process's peak RSS in kB (what
    /// bench runs in its child processes to measure memory)
    #[arg(long, value_enum, hide = true)]
    peak_of: Option<PartArg>,
    /// The input shape for --peak-of forward
    #[arg(long, value_delimiter = ',', hide = true)]
    peak_shape: Vec<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PartArg {
    Forward,
    Explain,
}

/// `onnx-rap bench`: time forward against explain and print the report (or JSON); with
/// `--peak-of`, only print one side's peak RSS.
pub fn main(cli: BenchCli) -> Result<()> {
    let BenchCli {
        model,
        batch,
        threads,
        runs,
        method: m,
        exact,
        no_fuse,
        json,
        peak_of: peak_part,
        peak_shape,
    } = cli;
    if no_fuse {
        crate::fuse::set_enabled(false);
    }
    let opts = Options {
        method: args::method(m),
        tuning: Tuning::exact_if(exact),
        ..Options::default()
    };
    if let Some(part) = peak_part {
        let part = match part {
            PartArg::Forward => Part::Forward,
            PartArg::Explain => Part::Explain,
        };
        println!(
            "{}",
            peak_of(
                &model,
                &opts,
                batch.max(1),
                part,
                (!peak_shape.is_empty()).then_some(peak_shape.as_slice()),
            )?
        );
        return Ok(());
    }
    let threads = args::threads(threads);
    let cli_args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let r = run(&model, &opts, batch.max(1), threads, runs.max(1), &cli_args)?;
    if json {
        println!("{}", r.to_json());
    } else {
        print!("{}", r.render());
    }
    Ok(())
}
