//! `onnx-rap explain MODEL --input PATH...`: compile in memory, run with tract, and write a
//! heatmap PNG, an overlay PNG and the raw relevance (.npy) for every input.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, ArrayViewD, Axis, Ix2};
use serde_json::{json, Value as Json};

use super::args::{
    self, parse_bounds, parse_interpolation, parse_size, LayoutArg, MethodArg, ReduceArg,
};
use crate::bad_input;
use crate::error::{Error, Result};
use crate::explainer::{Explainer, LayerSum, Settings, Verdict};
use crate::heatmap;
use crate::image::{
    display_factor, enlarge, load_image, load_npy, stack, tensor_picture, Interpolation, Layout,
    PartialPreprocess,
};
use crate::pass::Options;

/// What to explain and how.
pub struct Args {
    pub model: PathBuf,
    pub inputs: Vec<PathBuf>,
    pub target: Option<i64>,
    pub out: PathBuf,
    pub batch: usize,
    /// Worker threads: images run in parallel, one plan shared; threads left over when there
    /// are fewer runs than threads go to tract's intra-op executor.
    pub threads: usize,
    pub blend: bool,
    /// Preprocessing given on the command line (wins over the model's metadata).
    pub preprocess: PartialPreprocess,
    pub compile: Options,
}

/// The result for one input.
pub struct Outcome {
    pub name: String,
    pub source: PathBuf,
    pub verdict: Verdict,
    pub relevance_sum: f64,
    pub positive_share: f64,
    /// With `--layer-sums`: one row per rule application, from the logits to the input.
    pub layer_sums: Vec<LayerSum>,
    pub files: Vec<PathBuf>,
}

/// A number for the summary line: two decimals, or three significant digits when small.
fn short(x: f64) -> String {
    if x == 0.0 || x.abs() >= 0.1 || !x.is_finite() {
        format!("{x:.2}")
    } else {
        format!("{x:.2e}")
    }
}

impl Outcome {
    /// One line for the terminal: the top 5 classes, then the explained class.
    pub fn line(&self) -> String {
        if self.verdict.top.len() == 1 {
            // One score (a dense output's mean or sum): its value, no class ranking.
            return format!(
                "{}: {} {} | relevance sum {}, positive share {:.1}%",
                self.name,
                self.verdict.explained(),
                short(self.verdict.logit as f64),
                short(self.relevance_sum),
                100.0 * self.positive_share
            );
        }
        format!(
            "{}: {} | explained: {}, logit {}, relevance sum {}, positive share {:.1}%",
            self.name,
            self.verdict.top_line(),
            self.verdict.explained(),
            short(self.verdict.logit as f64),
            short(self.relevance_sum),
            100.0 * self.positive_share
        )
    }

    /// The `--layer-sums` table (empty without it).
    pub fn layer_table(&self) -> String {
        layer_table(&self.layer_sums, self.verdict.logit as f64)
    }

    pub fn to_json(&self) -> Json {
        let mut v = json!({
            "name": self.name,
            "input": self.source.display().to_string(),
            "relevance_sum": self.relevance_sum,
            "positive_share": self.positive_share,
            "files": self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        });
        self.verdict.add_json(&mut v, "top5");
        if !self.layer_sums.is_empty() {
            v["layer_sums"] = layer_sums_json(&self.layer_sums, self.verdict.logit as f64);
        }
        v
    }
}

/// The `--layer-sums` table of `rows` for an explained `logit` (empty without rows): fixed-width
/// columns, long node names shortened from the left, rows that do not hand on what they
/// received marked `*`.
pub fn layer_table(rows: &[LayerSum], logit: f64) -> String {
    if rows.is_empty() {
        return String::new();
    }
    const NAME_MAX: usize = 44;
    let width = |s: &str| s.chars().count();
    let clip = |s: &str, max: usize| -> String {
        let n = width(s);
        if n <= max {
            s.to_string()
        } else {
            let tail: String = s.chars().skip(n - (max - 3)).collect();
            format!("...{tail}")
        }
    };
    let name_w = rows
        .iter()
        .map(|r| width(&r.layer))
        .max()
        .unwrap_or(0)
        .clamp(5, NAME_MAX);
    let op_w = rows.iter().map(|r| width(&r.op)).max().unwrap_or(0).max(7);
    let mut t = format!(
        "  {:<name_w$}  {:<op_w$}  {:>12}  {:>12}  {:>15}  {:>12}\n",
        "layer", "op type", "received", "handed", "handed/received", "handed/logit"
    );
    let mut off = 0;
    for r in rows {
        let ratio = r.handed / r.received;
        // The output layer of RAP receives the one-hot target and hands on the logit.
        let seed = r.received == 1.0 && (r.handed / logit - 1.0).abs() <= 1e-3;
        let flag = if seed {
            "  (one-hot in, logit out)"
        } else if (ratio - 1.0).abs() > 1e-3 {
            off += 1;
            " *"
        } else {
            ""
        };
        t += &format!(
            "  {:<name_w$}  {:<op_w$}  {:>12.5}  {:>12.5}  {:>15.6}  {:>12.6}{flag}\n",
            clip(&r.layer, name_w),
            r.op,
            r.received,
            r.handed,
            ratio,
            r.handed / logit
        );
    }
    t += &format!(
        "  {} rules, from the logits to the input; {off} marked * hand on a share other \
         than 1 (|handed/received - 1| > 1e-3)\n",
        rows.len()
    );
    t
}

/// The `--layer-sums` rows as JSON, with their ratios (null where undefined).
pub fn layer_sums_json(rows: &[LayerSum], logit: f64) -> Json {
    let finite = |x: f64| if x.is_finite() { json!(x) } else { Json::Null };
    rows.iter()
        .map(|r| {
            json!({
                "layer": r.layer,
                "op": r.op,
                "received": r.received,
                "handed": r.handed,
                "handed_over_received": finite(r.handed / r.received),
                "handed_over_logit": finite(r.handed / logit),
            })
        })
        .collect()
}

struct Item {
    name: String,
    source: PathBuf,
    data: Data,
}

/// An input's values: a tensor read from a .npy file (with its picture), or an image file
/// whose header was checked, decoded when its run comes (so a folder of any size holds only
/// the images being run in memory).
enum Data {
    Tensor(ArrayD<f32>, image::RgbImage),
    Image,
}

const IMAGE_EXT: [&str; 3] = ["png", "jpg", "jpeg"];

/// Files named on the command line; folders give their images and .npy files, sorted.
pub fn expand(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| bad_input!("{}: cannot list the folder: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && ext(f).is_some_and(|x| x == "npy" || IMAGE_EXT.contains(&x.as_str()))
                })
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(bad_input!(
                    "{}: the folder holds no .png, .jpg or .npy file",
                    p.display()
                ));
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        return Err(bad_input!("no input given: pass --input FILE_OR_FOLDER"));
    }
    Ok(files)
}

fn ext(p: &Path) -> Option<String> {
    p.extension().map(|e| e.to_string_lossy().to_lowercase())
}

/// Explain every input; nothing is written unless every input could be read.
pub fn run(args: &Args, progress: bool) -> Result<Vec<Outcome>> {
    let settings = Settings {
        compile: args.compile.clone(),
        preprocess: args.preprocess.clone(),
        tokenizer: None,
    };
    let ex = Explainer::load_image(&args.model, &settings)?;
    if let Some(t) = args.target {
        check_target(t, ex.classes())?;
    }
    let sample = ex.compiled().sample.clone();
    let labels = ex.labels().map(|l| l.to_vec());
    let image_pp = ex.preprocess();
    let layout = ex.layout();

    let threads = args.threads.max(1);
    let items = read_inputs(&args.inputs, &sample, image_pp.is_some(), layout, threads)?;

    let bar = super::progress_bar(progress && items.len() > 1, items.len(), "inputs", false)?;
    // A model that folds its batch axis is explained one input per run; the plan of each
    // run size is made by the first worker that needs it and shared.
    let per_run = ex.max_batch().unwrap_or(args.batch.max(1));
    let chunks: Vec<&[Item]> = items.chunks(per_run).collect();
    let workers = crate::runtime::share_threads(threads, chunks.len());
    // Each worker decodes its inputs, runs them and writes their files, into a staging folder
    // that becomes the output only when every input has succeeded.
    let staged = crate::outdir::Staged::new(&args.out)?;
    let explain_chunk = |chunk: &[Item]| -> Result<Vec<Outcome>> {
        let mut tensors = Vec::with_capacity(chunk.len());
        let mut shown = Vec::with_capacity(chunk.len());
        for it in chunk {
            match &it.data {
                Data::Tensor(t, picture) => {
                    tensors.push(Cow::Borrowed(t));
                    shown.push(Cow::Borrowed(picture));
                }
                Data::Image => {
                    let pp = image_pp.as_ref().ok_or_else(|| {
                        Error::Runtime(format!("{}: no image preprocessing", it.source.display()))
                    })?;
                    let p = load_image(&it.source, pp)?;
                    tensors.push(Cow::Owned(p.tensor));
                    shown.push(Cow::Owned(p.shown));
                }
            }
        }
        let refs: Vec<&ArrayD<f32>> = tensors.iter().map(|t| t.as_ref()).collect();
        let x = stack(&refs);
        drop(tensors);
        let targets = args.target.map(|t| vec![t; chunk.len()]);
        let e = ex.explain(x, targets.as_deref())?;
        let mut outcomes = Vec::with_capacity(chunk.len());
        for (k, it) in chunk.iter().enumerate() {
            let rel = e.relevance.index_axis(Axis(0), k);
            outcomes.push(write_outcome(
                it,
                &shown[k],
                rel,
                e.verdict(k, labels.as_deref()),
                e.layer_sums[k].clone(),
                args,
                layout,
                &staged,
            )?);
        }
        bar.inc(chunk.len() as u64);
        Ok(outcomes)
    };
    let outcomes = crate::parallel::map(workers, &chunks, |_, chunk| explain_chunk(chunk));
    bar.finish_and_clear();
    match outcomes {
        Ok(o) => {
            staged.commit()?;
            Ok(o.into_iter().flatten().collect())
        }
        Err(e) => {
            staged.abandon();
            Err(e)
        }
    }
}

/// Every input file checked before the first run (`images`: whether the model takes
/// images): .npy files are read (their sample counts name the outputs), images only opened and
/// their headers read; they are decoded on the worker that runs them.
fn read_inputs(
    inputs: &[PathBuf],
    sample: &[usize],
    images: bool,
    layout: Layout,
    threads: usize,
) -> Result<Vec<Item>> {
    let files = expand(inputs)?;
    let read = crate::parallel::map(threads, &files, |_, f| -> Result<Vec<Item>> {
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "input".into());
        match ext(f).as_deref() {
            Some("npy") => {
                let samples = load_npy(f, sample)?;
                let many = samples.len() > 1;
                Ok(samples
                    .into_iter()
                    .enumerate()
                    .map(|(k, t)| {
                        let picture = tensor_picture(&t, layout);
                        Item {
                            name: if many {
                                format!("{stem}_{k}")
                            } else {
                                stem.clone()
                            },
                            source: f.clone(),
                            data: Data::Tensor(t, picture),
                        }
                    })
                    .collect())
            }
            Some(x) if IMAGE_EXT.contains(&x) => {
                if !images {
                    return Err(bad_input!("{}: the model input has shape {sample:?} per sample, not an image; pass a .npy tensor", f.display()));
                }
                crate::image::probe(f)?;
                Ok(vec![Item {
                    name: stem,
                    source: f.clone(),
                    data: Data::Image,
                }])
            }
            _ => Err(bad_input!(
                "{}: unknown input type; give .png, .jpg or .npy files or a folder",
                f.display()
            )),
        }
    })?;
    let mut items: Vec<Item> = read.into_iter().flatten().collect();
    unique_names(&mut items);
    Ok(items)
}

/// Names must not collide: an image keeps its stem, a .npy sharing it becomes STEM_npy, and
/// any clash left gets a counter.
fn unique_names(items: &mut [Item]) {
    let stems: HashMap<String, usize> = items.iter().fold(HashMap::new(), |mut m, it| {
        *m.entry(it.name.clone()).or_insert(0) += 1;
        m
    });
    for it in items.iter_mut() {
        if stems[&it.name] > 1 && ext(&it.source).as_deref() == Some("npy") {
            it.name = format!("{}_npy", it.name);
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for it in items.iter_mut() {
        let n = seen.entry(it.name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            it.name = format!("{}_{}", it.name, n);
        }
    }
}

/// Write one input's files (its relevance .npy, and for an image-shaped input the heatmap
/// and the overlay) into the staging folder, and say what they hold.
#[allow(clippy::too_many_arguments)]
fn write_outcome(
    it: &Item,
    shown: &image::RgbImage,
    rel: ArrayViewD<f32>,
    verdict: Verdict,
    layer_sums: Vec<LayerSum>,
    args: &Args,
    layout: Layout,
    staged: &crate::outdir::Staged,
) -> Result<Outcome> {
    // Folds from +0.0: an empty f64 sum is -0.0, which printed a share of "-0.0%".
    let pos = rel
        .iter()
        .filter(|v| **v > 0.0)
        .fold(0.0, |a, v| a + *v as f64);
    let neg = rel
        .iter()
        .filter(|v| **v < 0.0)
        .fold(0.0, |a, v| a - *v as f64);
    let mut files = Vec::new();
    let cannot = |p: &Path, e: &dyn std::fmt::Display| {
        Error::Runtime(format!("{}: cannot write: {e}", p.display()))
    };
    let npy = format!("{}_relevance.npy", it.name);
    ndarray_npy::write_npy(staged.path(&npy), &rel).map_err(|e| cannot(&staged.path(&npy), &e))?;
    files.push(staged.final_path(&npy));
    if let Some(m) = channel_sum(rel.view(), layout) {
        // The heatmap at model resolution (pixel for pixel the graph's `heatmap_rgb`);
        // the overlay enlarged to at least DISPLAY_MIN_SIDE pixels on its short side.
        let (w, h) = shown.dimensions();
        let heat = heatmap::render(m.view(), w, h);
        let hp = format!("{}_heatmap.png", it.name);
        heat.save(staged.path(&hp))
            .map_err(|e| cannot(&staged.path(&hp), &e))?;
        let k = display_factor(w, h);
        let op = format!("{}_overlay.png", it.name);
        heatmap::overlay(&enlarge(shown, k), &enlarge(&heat, k), args.blend)
            .save(staged.path(&op))
            .map_err(|e| cannot(&staged.path(&op), &e))?;
        files.push(staged.final_path(&hp));
        files.push(staged.final_path(&op));
    }
    Ok(Outcome {
        name: it.name.clone(),
        source: it.source.clone(),
        verdict,
        relevance_sum: rel.iter().map(|v| *v as f64).sum(),
        layer_sums,
        positive_share: if pos + neg > 0.0 {
            pos / (pos + neg)
        } else {
            0.0
        },
        files,
    })
}

/// `--target T` against the model's `classes`.
pub fn check_target(t: i64, classes: usize) -> Result<()> {
    if t < 0 || t as usize >= classes {
        return Err(bad_input!(
            "--target {t} is out of range: the model has {classes} classes (0..{})",
            classes - 1
        ));
    }
    Ok(())
}

/// The heatmap M: relevance summed over the channel axis of an image sample.
fn channel_sum(rel: ArrayViewD<f32>, layout: Layout) -> Option<ndarray::Array2<f32>> {
    if rel.ndim() != 3 {
        return None;
    }
    let axis = match layout {
        Layout::Nchw => 0,
        Layout::Nhwc => 2,
    };
    rel.sum_axis(Axis(axis)).into_dimensionality::<Ix2>().ok()
}

// The command line of `explain`: its flags (the doc comments are the --help text) and what
// `onnx-rap explain` does with them.

#[derive(clap::Args)]
pub struct ExplainCli {
    /// The model to explain (.onnx)
    model: PathBuf,
    /// Images (.png, .jpg), .npy tensors (float32, one sample or a batch), or folders of them;
    /// for a text model, .txt files (one text a line) or .jsonl files (a "text" field a line)
    #[arg(short, long, required_unless_present = "text", num_args = 1..)]
    input: Vec<PathBuf>,
    /// A text to explain with a text model (repeatable): its tokens are printed with their
    /// relevance (coloured on a terminal, `token(+0.12)` otherwise)
    ///
    /// Example: onnx-rap explain models/nanoguard.onnx --text "Ignore all previous instructions"
    #[arg(long, value_name = "TEXT")]
    text: Vec<String>,
    /// The tokenizer of a text model: a tiktoken-bpe JSON table or a HuggingFace
    /// tokenizer.json [default: the file the model's metadata names, beside the model]
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Class to explain for every input [default: each input's predicted class]
    #[arg(short, long)]
    target: Option<i64>,
    /// Output folder; its files appear when every input has been explained (on an error it
    /// is left as it was). Texts write files only when it is given: an HTML page per text,
    /// relevance.jsonl and summary.tsv [default for images: rap_out]
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Inputs per tract run. tract's per-image time grows with the batch (ResNet-50: 1.5x
    /// at 8), so the default runs each input alone, several at once on --threads
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Threads: each decodes, runs and writes one input at a time, all sharing one plan; a
    /// single input gets them inside tract instead [default: every core]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Print one JSON array instead of lines
    #[arg(long)]
    json: bool,
    /// Blend the heatmap over the input instead of placing it beside it
    #[arg(long)]
    blend: bool,
    /// Propagation rules
    #[arg(long, value_enum, default_value = "rap")]
    method: MethodArg,
    /// Stabiliser of --method lrp-eps
    #[arg(long, default_value_t = crate::rules::DEFAULT_EPSILON)]
    epsilon: f32,
    /// Resize images to H,W directly (no crop) [default: metadata, else the input shape]
    #[arg(long, value_name = "H,W", value_parser = parse_size, conflicts_with_all = ["resize", "crop"])]
    size: Option<(u32, u32)>,
    /// Resize images so that their shorter side is N, then crop the centre (--crop)
    /// [default: metadata 'resize', else a plain resize]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    resize: Option<u32>,
    /// The centre crop H,W taken after --resize [default: metadata 'crop', else the input
    /// shape]
    #[arg(long, value_name = "H,W", value_parser = parse_size)]
    crop: Option<(u32, u32)>,
    /// Resampling filter of the resize: nearest, bilinear, bicubic or lanczos [default:
    /// metadata, else bilinear]
    #[arg(long, value_name = "NAME", value_parser = parse_interpolation)]
    interpolation: Option<Interpolation>,
    /// Per-channel mean subtracted after scaling pixels to [0,1] [default: metadata, else 0]
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    mean: Option<Vec<f32>>,
    /// Per-channel standard deviation divided by [default: metadata, else 1]
    #[arg(long, value_delimiter = ',')]
    std: Option<Vec<f32>>,
    /// Tensor layout of the model input [default: metadata, else detected from the model: a
    /// Transpose after the input or a trailing 1 or 3]
    #[arg(long, value_enum)]
    layout: Option<LayoutArg>,
    /// Convert images to one gray channel [default: metadata, else no]
    #[arg(long)]
    grayscale: bool,
    /// Fixed bounds LO,HI for the input layer's z^B rule (rap at a patch embedding: LO, the
    /// pixels' floor) [default: per-sample min/max]
    #[arg(long, value_name = "LO,HI", value_parser = parse_bounds, allow_hyphen_values = true)]
    input_bounds: Option<(f32, f32)>,
    /// After each input's line, print what every rule received and handed to its inputs
    /// (from the logits to the input), to find where conservation breaks
    #[arg(long)]
    layer_sums: bool,
    /// Explain the per-sample mean (or sum) of a dense output, such as a segmentation or
    /// saliency map [N, ...], instead of [N, classes] logits; the relevance sums to that score
    #[arg(long, value_enum, value_name = "HOW")]
    reduce_output: Option<ReduceArg>,
    /// The graph output (logits, or the dense output of --reduce-output) to explain, when the
    /// model has several
    #[arg(long = "explain-output", value_name = "NAME")]
    explain_output: Option<String>,
}

/// `onnx-rap explain`: explain every input, print one line each (or JSON), write the files.
pub fn main(cli: ExplainCli) -> Result<()> {
    let texts = !cli.text.is_empty()
        || cli
            .input
            .iter()
            .any(|p| super::explain_text::is_text_file(p));
    if texts {
        return main_text(cli);
    }
    let ExplainCli {
        model,
        input,
        text: _,
        tokenizer: _,
        target,
        out,
        batch,
        threads,
        json,
        blend,
        method: m,
        epsilon,
        size,
        resize,
        crop,
        interpolation,
        mean,
        std,
        layout,
        grayscale,
        input_bounds,
        layer_sums,
        reduce_output,
        explain_output,
    } = cli;
    let args = Args {
        model,
        inputs: input,
        target,
        out: out.unwrap_or_else(|| PathBuf::from("rap_out")),
        batch,
        threads: args::threads(threads),
        blend,
        preprocess: PartialPreprocess {
            size,
            resize,
            crop,
            interpolation,
            layout: layout.map(args::layout),
            grayscale: grayscale.then_some(true),
            mean,
            std,
        },
        compile: Options {
            method: args::method(m),
            epsilon,
            bounds: args::bounds(input_bounds),
            layer_sums,
            reduce_output: reduce_output.map(args::reduction),
            output: explain_output,
            ..Options::default()
        },
    };
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let outcomes = run(&args, progress)?;
    if json {
        let v: Vec<_> = outcomes.iter().map(|o| o.to_json()).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| Error::Runtime(e.to_string()))?
        );
    } else {
        for o in &outcomes {
            println!("{}", o.line());
            print!("{}", o.layer_table());
        }
        eprintln!(
            "wrote {} file(s) to {}",
            outcomes.iter().map(|o| o.files.len()).sum::<usize>(),
            args.out.display()
        );
    }
    Ok(())
}

/// `explain` on texts: one summary line and one line of coloured tokens each (or JSON).
fn main_text(cli: ExplainCli) -> Result<()> {
    use super::explain_text::{gather, TextArgs};
    if let Some(p) = cli
        .input
        .iter()
        .find(|p| !super::explain_text::is_text_file(p))
    {
        return Err(bad_input!(
            "{}: texts come in .txt or .jsonl files (or --text); images and tensors cannot be              mixed with texts",
            p.display()
        ));
    }
    let args = TextArgs {
        texts: gather(&cli.text, &cli.input)?,
        model: cli.model,
        tokenizer: cli.tokenizer,
        target: cli.target,
        out: cli.out,
        batch: cli.batch,
        threads: args::threads(cli.threads),
        compile: Options {
            method: args::method(cli.method),
            epsilon: cli.epsilon,
            layer_sums: cli.layer_sums,
            output: cli.explain_output,
            ..Options::default()
        },
    };
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let outcomes = super::explain_text::run(&args, progress)?;
    if cli.json {
        let v: Vec<_> = outcomes.iter().map(|o| o.to_json()).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| Error::Runtime(e.to_string()))?
        );
        return Ok(());
    }
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    for o in &outcomes {
        println!("{}", o.line());
        println!("  {}", o.tokens_line(colour));
        print!("{}", o.layer_table());
    }
    if let Some(out) = &args.out {
        eprintln!("wrote {} file(s) to {}", outcomes.len() + 2, out.display());
    }
    Ok(())
}
