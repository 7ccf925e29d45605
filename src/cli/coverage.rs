//! `onnx-rap coverage DIR`: compile every model in a folder and check model_rap.onnx in two
//! runtimes: tract (in process) and onnxruntime (through a Python that has it, running the
//! embedded `scripts/ort_run.py`). One row per model: ops, compiles, runs in each runtime,
//! agreement, conservation, explain/forward time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{read_npy, write_npy};
use serde_json::{json, Value as Json};

use super::args::{self, MethodArg};
use super::bench::median;
use crate::analysis::{find_roles, infer_facts};
use crate::bad_input;
use crate::error::{Error, Result};
use crate::ir;
use crate::pass::{compile_with_facts, signed_layers, Options, RELEVANCE};
use crate::rules::{Method, Tuning};
use crate::runtime::{Optimise, Plan, Value};

const ORT_RUN: &str = include_str!("../../scripts/ort_run.py");

/// One model's row.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub file: String,
    pub nodes: usize,
    /// Op types and their counts.
    pub ops: BTreeMap<String, usize>,
    /// None when it compiled; else the reason.
    pub compile_error: Option<String>,
    pub tract_error: Option<String>,
    pub ort_error: Option<String>,
    /// max |R_tract - R_ort| / max |R_tract|.
    pub agreement: Option<f64>,
    /// |sum R - logit_t| / |logit_t| in tract.
    pub conservation: Option<f64>,
    /// The same in onnxruntime (float32).
    pub ort_conservation: Option<f64>,
    /// Linear layers with signed input (RAP doubles there).
    pub signed_layers: usize,
    pub forward_s: Option<f64>,
    pub explain_s: Option<f64>,
    /// The same two checks with LRP z+ (a control: its rules have no discontinuous masks
    /// besides safe division, and it conserves on every architecture).
    pub zplus_agreement: Option<f64>,
    pub zplus_conservation: Option<f64>,
    pub zplus_error: Option<String>,
    /// max |R_fused - R_unfused| / max |R| in tract, the larger of RAP's and z+'s: onnx-rap's
    /// fused kernels against tract's own ops on the same graph; and RAP's nodes now inside
    /// fused kernels.
    pub fusion: Option<f64>,
    pub fused_nodes: usize,
}

impl Row {
    pub fn ok(&self) -> bool {
        self.compile_error.is_none()
            && self.tract_error.is_none()
            && self.ort_error.is_none()
            && self.zplus_error.is_none()
    }

    pub fn to_json(&self) -> Json {
        json!({
            "file": self.file,
            "nodes": self.nodes,
            "ops": self.ops,
            "compile_error": self.compile_error,
            "tract_error": self.tract_error,
            "onnxruntime_error": self.ort_error,
            "agreement": self.agreement,
            "conservation": self.conservation,
            "ort_conservation": self.ort_conservation,
            "signed_layers": self.signed_layers,
            "forward_s": self.forward_s,
            "explain_s": self.explain_s,
            "ratio": self.explain_s.zip(self.forward_s).map(|(e, f)| e / f),
            "zplus_agreement": self.zplus_agreement,
            "zplus_conservation": self.zplus_conservation,
            "zplus_error": self.zplus_error,
            "fusion": self.fusion,
            "fused_nodes": self.fused_nodes,
        })
    }
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| model | nodes | op types | compiles | tract | onnxruntime | RAP: max\\|tract-ort\\| / max\\|R\\| | RAP: conservation error (tract / onnxruntime) | signed layers | explain/forward | z+: tract-ort | z+: conservation |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mark = |e: &Option<String>, ran: bool| match (e, ran) {
        (Some(_), _) => "no".to_string(),
        (None, true) => "yes".to_string(),
        (None, false) => "—".to_string(),
    };
    for r in rows {
        let compiled = r.compile_error.is_none();
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.file,
            r.nodes,
            r.ops.len(),
            mark(&r.compile_error, true),
            mark(&r.tract_error, compiled),
            mark(&r.ort_error, compiled),
            r.agreement.map_or("—".into(), |v| format!("{v:.1e}")),
            match (r.conservation, r.ort_conservation) {
                (Some(t), Some(o)) => format!("{t:.1e} / {o:.1e}"),
                (Some(t), None) => format!("{t:.1e} / —"),
                _ => "—".into(),
            },
            r.signed_layers,
            r.explain_s
                .zip(r.forward_s)
                .map_or("—".into(), |(e, f)| format!("{:.2}", e / f)),
            r.zplus_agreement.map_or("—".into(), |v| format!("{v:.1e}")),
            r.zplus_conservation
                .map_or("—".into(), |v| format!("{v:.1e}")),
        );
    }
    let failures: Vec<&Row> = rows.iter().filter(|r| !r.ok()).collect();
    if !failures.is_empty() {
        s += "\nFailures:\n\n";
        for r in failures {
            let why = r
                .compile_error
                .as_ref()
                .or(r.tract_error.as_ref())
                .or(r.ort_error.as_ref())
                .or(r.zplus_error.as_ref())
                .cloned()
                .unwrap_or_default();
            s += &format!("- `{}`: {}\n", r.file, why.replace('\n', " "));
        }
    }
    s
}

/// A fixed pseudo-random standard-normal-ish input (sum of uniforms), seed per model.
fn input_for(dims: &[usize], seed: u64) -> ArrayD<f32> {
    let mut g = crate::metrics::SplitMix64(seed);
    ArrayD::from_shape_fn(IxDyn(dims), |_| {
        ((0..4).map(|_| g.next_f64()).sum::<f64>() - 2.0) as f32 * 1.7
    })
}

/// The fixed inputs of a model, batch 1, in the order of its runtime inputs: float inputs
/// from [`input_for`], token ids pseudo-random in `[0, vocabulary)`, masks of ones
/// (`super::feeds`).
fn inputs_for(
    model: &ir::Model,
    facts: &crate::analysis::Facts,
    origin: &str,
    seed: u64,
) -> Result<Vec<(String, Value)>> {
    super::feeds::synthetic(
        model,
        facts,
        origin,
        1,
        &mut |dims| input_for(dims, seed),
        &mut |dims, rows| {
            let mut g = crate::metrics::SplitMix64(seed ^ 0x5eed);
            ArrayD::from_shape_fn(IxDyn(dims), |_| {
                ((g.next_f64() * rows as f64) as i64).min(rows - 1)
            })
        },
    )
}

fn first_line(e: &Error) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}

/// Run a model file in onnxruntime through `python`; outputs by name.
fn run_ort(
    python: &Path,
    model: &Path,
    feeds: &[(String, Value)],
    dir: &Path,
) -> std::result::Result<BTreeMap<String, ArrayD<f32>>, String> {
    let script = dir.join("ort_run.py");
    std::fs::write(&script, ORT_RUN).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg(model).arg(dir);
    for (k, (name, a)) in feeds.iter().enumerate() {
        let p = dir.join(format!("in_{k}.npy"));
        match a {
            Value::F32(a) => write_npy(&p, a),
            Value::I64(a) => write_npy(&p, a),
        }
        .map_err(|e| e.to_string())?;
        cmd.arg(format!("{name}={}", p.display()));
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(last.to_string());
    }
    let names = std::fs::read_to_string(dir.join("outputs.txt")).map_err(|e| e.to_string())?;
    let mut res = BTreeMap::new();
    for (k, name) in names.lines().enumerate() {
        let p = dir.join(format!("out_{k}.npy"));
        if let Ok(a) = read_npy::<_, ArrayD<f32>>(&p) {
            res.insert(name.to_string(), a);
        }
    }
    Ok(res)
}

/// What both methods of a model share: loaded and analysed once.
struct Prepared {
    origin: String,
    model: ir::Model,
    facts: crate::analysis::Facts,
    roles: crate::analysis::Roles,
    /// The fixed inputs, batch 1, in the order of the runtime inputs.
    feeds: Vec<(String, Value)>,
    /// The original model, planned for `feeds`.
    forward: Plan,
}

/// The checks of one method on one model.
#[derive(Default)]
struct Checked {
    compile_error: Option<String>,
    tract_error: Option<String>,
    ort_error: Option<String>,
    agreement: Option<f64>,
    conservation: Option<f64>,
    ort_conservation: Option<f64>,
    forward_s: Option<f64>,
    explain_s: Option<f64>,
    /// max|fused - unfused| / max|R| in tract (`crate::fuse`), and the nodes fused.
    fusion: Option<f64>,
    fused_nodes: usize,
}

impl Checked {
    fn error(&self) -> Option<String> {
        self.compile_error
            .clone()
            .or(self.tract_error.clone())
            .or(self.ort_error.clone())
    }
}

/// Check one model with `opts` (RAP) and with `control` (the z+ control run).
/// `python`: a Python with onnxruntime (None: onnxruntime is not run).
pub fn check(
    path: &Path,
    python: Option<&Path>,
    runs: usize,
    opts: &Options,
    control: &Options,
) -> Row {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut row = Row {
        file,
        ..Row::default()
    };
    let origin = path.display().to_string();
    let model = match super::load_model(path) {
        Ok(m) => m,
        Err(e) => {
            row.compile_error = Some(first_line(&e));
            return row;
        }
    };
    for ix in model.graph.topo_order().unwrap_or_default() {
        if let Some(n) = model.graph.g[ix].op() {
            row.nodes += 1;
            *row.ops.entry(n.op_type().to_string()).or_default() += 1;
        }
    }
    let seed = row
        .file
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let prepared = (|| -> Result<(Prepared, usize)> {
        let facts = infer_facts(&ir::export(&model)?, &origin)?;
        let roles = find_roles(&model.graph, &facts, None, None, &origin)?;
        let signed = signed_layers(&model, &facts, opts, &origin)?.len();
        let feeds = inputs_for(&model, &facts, &origin, seed)?;
        let values: Vec<Value> = feeds.iter().map(|(_, v)| v.clone()).collect();
        let fwd_bytes = crate::onnx::encode(&ir::export(&model)?);
        let forward = Plan::new(&fwd_bytes, &values, vec![])?;
        let p = Prepared {
            origin: origin.clone(),
            model,
            facts,
            roles,
            feeds,
            forward,
        };
        Ok((p, signed))
    })();
    let (prep, signed) = match prepared {
        Ok(p) => p,
        Err(e) => {
            row.compile_error = Some(first_line(&e));
            return row;
        }
    };
    row.signed_layers = signed;
    let rap = run_method(&prep, opts, python, runs);
    let z = run_method(&prep, control, python, 1);
    row.zplus_error = z.error();
    row.zplus_agreement = z.agreement;
    row.zplus_conservation = z.conservation;
    row.compile_error = rap.compile_error;
    row.tract_error = rap.tract_error;
    row.ort_error = rap.ort_error;
    row.agreement = rap.agreement;
    row.conservation = rap.conservation;
    row.ort_conservation = rap.ort_conservation;
    row.forward_s = rap.forward_s;
    row.explain_s = rap.explain_s;
    row.fused_nodes = rap.fused_nodes;
    row.fusion = match (rap.fusion, z.fusion) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    row
}

/// Compile with `opts`, run in tract (timed against the forward pass) and in onnxruntime.
fn run_method(p: &Prepared, opts: &Options, python: Option<&Path>, runs: usize) -> Checked {
    let mut c = Checked::default();
    let bytes = (|| -> Result<Vec<u8>> {
        let mut compiled = compile_with_facts(&p.model, &p.facts, opts, &p.origin)?;
        // Outputs: the explained logits, then the relevance.
        compiled.graph.outputs.retain(|o| o.name() == RELEVANCE);
        compiled.graph.outputs.insert(
            0,
            crate::onnx::proto::ValueInfoProto {
                name: Some(p.roles.logits.clone()),
                ..Default::default()
            },
        );
        Ok(crate::onnx::encode(&ir::export(&compiled)?))
    })();
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => {
            c.compile_error = Some(first_line(&e));
            return c;
        }
    };
    let input: Vec<Value> = p.feeds.iter().map(|(_, v)| v.clone()).collect();
    let mut fused_nodes = 0;
    let mut fusion = f64::INFINITY;
    let tract = (|| -> Result<(ArrayD<f32>, ArrayD<f32>, f64, f64)> {
        let plan = Plan::with(&bytes, &input, vec![], Optimise::Codegen)?;
        fused_nodes = plan.fusion().map_or(0, |s| s.fused_nodes + s.channel_sums);
        let mut out = plan.run(&input)?;
        p.forward.run(&input)?;
        let (mut tf, mut te) = (Vec::new(), Vec::new());
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            p.forward.run(&input)?;
            tf.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            out = plan.run(&input)?;
            te.push(t.elapsed().as_secs_f64());
        }
        let rel = out.pop().map(|o| o.1).unwrap_or_default();
        let logits = out.pop().map(|o| o.1).unwrap_or_default();
        // The same graph without onnx-rap's fused kernels, for the fused ones' check.
        let plain = Plan::with(&bytes, &input, vec![], Optimise::Unfused)?
            .run(&input)?
            .pop()
            .map(|o| o.1)
            .unwrap_or_default();
        let scale = rel.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-30);
        if plain.shape() == rel.shape() {
            let d = rel
                .iter()
                .zip(plain.iter())
                .fold(0f32, |a, (p, q)| a.max((p - q).abs()));
            fusion = (d / scale) as f64;
        }
        Ok((logits, rel, median(&tf), median(&te)))
    })();
    let (logits, rel) = match tract {
        Ok((l, r, f, e)) => {
            c.forward_s = Some(f);
            c.explain_s = Some(e);
            c.fusion = Some(fusion);
            c.fused_nodes = fused_nodes;
            (l, r)
        }
        Err(e) => {
            c.tract_error = Some(first_line(&e));
            return c;
        }
    };
    let bad = rel.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        c.tract_error = Some(format!(
            "the relevance has {bad} non-finite values in tract"
        ));
        return c;
    }
    let t = logits
        .iter()
        .enumerate()
        .fold((0, f32::MIN), |a, (k, &v)| if v > a.1 { (k, v) } else { a });
    let gap = |rel: &ArrayD<f32>, logit: f64| {
        let sum: f64 = rel.iter().map(|&v| v as f64).sum();
        (sum - logit).abs() / logit.abs().max(1e-12)
    };
    c.conservation = Some(gap(&rel, t.1 as f64));

    let Some(python) = python else {
        c.ort_error = Some("not run: no Python with onnxruntime given".into());
        return c;
    };
    let dir = match tempfile_dir() {
        Ok(d) => d,
        Err(e) => {
            c.ort_error = Some(e);
            return c;
        }
    };
    let file = dir.join("model_rap.onnx");
    let res = std::fs::write(&file, &bytes)
        .map_err(|e| e.to_string())
        .and_then(|_| run_ort(python, &file, &p.feeds, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    match res {
        Ok(outs) => match outs.get(RELEVANCE) {
            Some(o) if o.iter().any(|v| !v.is_finite()) => {
                c.ort_error = Some("the relevance has non-finite values in onnxruntime".into())
            }
            Some(o) if o.shape() == rel.shape() => {
                c.ort_conservation = outs
                    .get(&p.roles.logits)
                    .and_then(|l| l.iter().nth(t.0))
                    .map(|&l| gap(o, l as f64));
                let scale = rel.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-30);
                let diff = rel
                    .iter()
                    .zip(o.iter())
                    .fold(0f32, |a, (p, q)| a.max((p - q).abs()));
                c.agreement = Some((diff / scale) as f64);
            }
            _ => {
                c.ort_error = Some("onnxruntime returned no relevance of the input's shape".into())
            }
        },
        Err(e) => c.ort_error = Some(e),
    }
    c
}

fn tempfile_dir() -> std::result::Result<PathBuf, String> {
    let base = std::env::temp_dir();
    for k in 0..1000u32 {
        let d = base.join(format!("onnx-rap-coverage-{}-{k}", std::process::id()));
        if std::fs::create_dir(&d).is_ok() {
            return Ok(d);
        }
    }
    Err("cannot create a temporary folder".into())
}

/// The .onnx files of `dir`, sorted.
pub fn models_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| bad_input!("{}: cannot list the folder: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(bad_input!("{}: no .onnx files here", dir.display()));
    }
    Ok(v)
}

/// Whether `python` can import onnxruntime.
pub fn has_onnxruntime(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Rows as one JSON array.
pub fn to_json(rows: &[Row]) -> Json {
    Json::Array(rows.iter().map(Row::to_json).collect())
}

// The command line of `coverage`: its flags (the doc comments are the --help text) and what
// `onnx-rap coverage` does with them.

#[derive(clap::Args)]
pub struct CoverageCli {
    /// Folders of .onnx models, or model files
    #[arg(required = true, num_args = 1..)]
    dirs: Vec<PathBuf>,
    /// A Python with onnxruntime and numpy [default: .venv/bin/python if present, else python3]
    #[arg(long)]
    python: Option<PathBuf>,
    /// Write the Markdown table here (stdout always gets it)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Timed runs per model
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Propagation rules to check
    #[arg(long, value_enum, default_value = "rap")]
    method: MethodArg,
    /// Compile without the cheaper equivalent forms (see `compile --exact`)
    #[arg(long)]
    exact: bool,
    /// Print one JSON array instead of the table
    #[arg(long)]
    json: bool,
}

/// `onnx-rap coverage`: check every model, print the table (or JSON), write it to --out; an
/// error when any model failed.
pub fn main(cli: CoverageCli) -> Result<()> {
    let CoverageCli {
        dirs,
        python,
        out,
        runs,
        method: method_arg,
        exact,
        json,
    } = cli;
    let opts = Options {
        method: args::method(method_arg),
        tuning: Tuning::exact_if(exact),
        ..Options::default()
    };
    let python = python.unwrap_or_else(|| {
        let venv = PathBuf::from(".venv/bin/python");
        if venv.exists() {
            venv
        } else {
            PathBuf::from("python3")
        }
    });
    let python = has_onnxruntime(&python).then_some(python.clone());
    if python.is_none() {
        eprintln!("warning: no onnxruntime in that Python: the onnxruntime column is not run");
    }
    let mut files = Vec::new();
    for d in &dirs {
        if d.is_file() {
            files.push(d.clone());
        } else {
            files.extend(models_in(d)?);
        }
    }
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(files.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let zplus = Options {
        method: Method::LrpZPlus,
        ..opts.clone()
    };
    let mut rows = Vec::new();
    for f in &files {
        bar.set_message(f.display().to_string());
        rows.push(check(f, python.as_deref(), runs, &opts, &zplus));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let table = table(&rows);
    if let Some(out) = &out {
        // Into an existing document between its markers, else as the whole file.
        let (begin, end) = ("<!-- coverage table -->", "<!-- end of coverage table -->");
        let text = match std::fs::read_to_string(out) {
            Ok(doc) if doc.contains(begin) && doc.contains(end) => {
                let head = &doc[..doc.find(begin).unwrap_or(0) + begin.len()];
                let tail = &doc[doc.find(end).unwrap_or(doc.len())..];
                format!("{head}\n{table}{tail}")
            }
            _ => table.clone(),
        };
        std::fs::write(out, text)
            .map_err(|e| Error::Input(format!("{}: cannot write: {e}", out.display())))?;
    }
    if json {
        println!("{}", to_json(&rows));
    } else {
        print!("{table}");
    }
    let failed = rows.iter().filter(|r| !r.ok()).count();
    if failed > 0 {
        return Err(Error::Runtime(format!(
            "{failed} of {} models failed (listed above)",
            rows.len()
        )));
    }
    Ok(())
}
