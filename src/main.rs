//! The `onnx-rap` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use onnx_rap::cli;
use onnx_rap::error::{Error, Result};
use onnx_rap::image::{Interpolation, Layout, PartialPreprocess};
use onnx_rap::onnx::SaveOptions;
use onnx_rap::pass::Options;
use onnx_rap::rules::{Bounds, Method, Tuning};

/// Relative Attributing Propagation (RAP) for any ONNX classifier.
///
/// onnx-rap compiles model.onnx into model_rap.onnx: the same model plus a relevance graph of
/// plain ONNX ops, so any ONNX runtime returns the logits and, beside them, the RAP relevance
/// of every input value (`relevance`) and its channel sum (`heatmap`).
#[derive(Parser)]
#[command(name = "onnx-rap", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, ValueEnum)]
enum MethodArg {
    /// Relative Attributing Propagation (Nam et al., AAAI 2020), generalised: conserving on
    /// every architecture (residual joins, signed layer inputs); equal to rap-official on
    /// plain ReLU networks
    Rap,
    /// RAP exactly as the official code computes it (doubles the relevance at layers with
    /// signed inputs; its residual rule amplifies rounding)
    RapOfficial,
    /// LRP alpha1-beta0, the baseline of the official code (each sign path normalised alone)
    Lrp,
    /// LRP-epsilon (bias included, --epsilon), z^B at the input layer
    LrpEps,
    /// LRP alpha2-beta1, z^B at the input layer
    #[value(name = "lrp-a2b1")]
    LrpA2B1,
    /// LRP z+ (positive contributions normalised jointly), z^B at the input layer
    LrpZplus,
    /// Gradient x input (plain gradient of the target logit, times the input)
    Gradxinput,
}

#[derive(Copy, Clone, ValueEnum)]
enum LayoutArg {
    Nchw,
    Nhwc,
}

#[derive(Subcommand)]
enum Command {
    /// Explain images or tensors: write heatmap and overlay PNGs and the raw relevance
    ///
    /// For every input NAME it writes NAME_heatmap.png (relevance summed over channels, divided
    /// by its largest magnitude, red = relevant, white = 0, blue = irrelevant; at model
    /// resolution), NAME_overlay.png (the image the model saw, after resize and crop, beside its
    /// heatmap, enlarged to at least 224 pixels) and NAME_relevance.npy, and prints one line:
    /// the top 5 classes (softmax), then the explained class, its logit, the relevance sum and
    /// the share of positive relevance. Images are resized, cropped and normalised as the
    /// model's metadata says (flags override it).
    ///
    /// Example: onnx-rap explain models/efficientnet_lite0.onnx --input models/photos
    Explain {
        /// The model to explain (.onnx)
        model: PathBuf,
        /// Images (.png, .jpg), .npy tensors (float32, one sample or a batch), or folders of them
        #[arg(short, long, required = true, num_args = 1..)]
        input: Vec<PathBuf>,
        /// Class to explain for every input [default: each input's predicted class]
        #[arg(short, long)]
        target: Option<i64>,
        /// Output folder
        #[arg(short, long, default_value = "rap_out")]
        out: PathBuf,
        /// Inputs per tract run. tract's per-image time grows with the batch (ResNet-50: 1.9x
        /// at 8), so the default runs each input alone, several at once on --threads
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Threads: inputs run in parallel on one shared plan (reading and writing too); a
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
        #[arg(long, default_value_t = onnx_rap::rules::DEFAULT_EPSILON)]
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
        /// Fixed bounds LO,HI for the input layer's z^B rule [default: per-sample min/max]
        #[arg(long, value_name = "LO,HI", value_parser = parse_bounds, allow_hyphen_values = true)]
        input_bounds: Option<(f32, f32)>,
        /// After each input's line, print what every rule received and handed to its inputs
        /// (from the logits to the input), to find where conservation breaks
        #[arg(long)]
        layer_sums: bool,
    },
    /// Show a model's inputs, outputs, ops, parameter count, and which ops have a relevance rule
    ///
    /// Example: onnx-rap inspect models/vgg_mini.onnx
    Inspect {
        /// The model (.onnx); external data files are read from its folder
        model: PathBuf,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Compile MODEL into a model that also outputs its RAP relevance
    ///
    /// The output keeps every original input and output and adds `relevance` (shape of the
    /// input) and, for image inputs [N,C,H,W] or [N,H,W,C], `heatmap` ([N,H,W], summed over
    /// channels).
    /// The explained class is the argmax of the logits unless --target-input adds an int64 [N]
    /// input `rap_target`. A Softmax at the output is skipped: its logits are explained.
    ///
    /// Example: onnx-rap compile model.onnx -o model_rap.onnx --target-input
    Compile {
        /// The model to explain (.onnx)
        model: PathBuf,
        /// Where to write the compiled model
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Add an int64 [N] input `rap_target` that chooses the explained class per sample
        #[arg(long)]
        target_input: bool,
        /// Fixed bounds LO,HI of the input values for the input layer's z^B rule
        /// [default: per-sample min and max of the input]
        #[arg(long, value_name = "LO,HI", value_parser = parse_bounds, allow_hyphen_values = true)]
        input_bounds: Option<(f32, f32)>,
        /// Propagation rules to compile
        #[arg(long, value_enum, default_value = "rap")]
        method: MethodArg,
        /// Stabiliser of --method lrp-eps
        #[arg(long, default_value_t = onnx_rap::rules::DEFAULT_EPSILON)]
        epsilon: f32,
        /// The graph input to explain, when the model has several
        #[arg(long, value_name = "NAME")]
        input: Option<String>,
        /// The graph output (logits) to explain, when the model has several
        #[arg(long = "explain-output", value_name = "NAME")]
        explain_output: Option<String>,
        /// Store initializers of at least BYTES bytes in OUT.data beside OUT
        #[arg(long, value_name = "BYTES")]
        external_data_above: Option<usize>,
        /// Emit the rules op for op as the reference computes them, without the cheaper
        /// equivalent forms (Z2 from the layer output, transposed convs as flipped convs)
        #[arg(long)]
        exact: bool,
        /// Add the output `heatmap_rgb` (uint8 [N,H,W,3]): the heatmap in explain's colour map,
        /// so any runtime returns a ready-to-show picture (image inputs only)
        #[arg(long)]
        colormap: bool,
        /// Add one output per rule application, `layer_sum:NODE` (float [N,2]: per sample the
        /// relevance the rule received and what it handed on), to find where conservation breaks
        #[arg(long)]
        layer_sums: bool,
        /// Layout of an image input; `heatmap` sums its channel axis [default: metadata, else
        /// detected: a Transpose to NCHW right after the input, or a trailing 1 or 3]
        #[arg(long, value_enum)]
        layout: Option<LayoutArg>,
    },
    /// Serve the browser page that explains images with onnxruntime-web, offline
    ///
    /// Compiles MODEL in memory (with `rap_target` and `heatmap_rgb`), then serves it with the
    /// page built in --dir (`npm --prefix web ci && npm --prefix web run build`) on 127.0.0.1.
    /// Everything runs in the browser: images never leave it. --write-to DIR writes the same
    /// files for any static server instead of serving.
    ///
    /// Example: onnx-rap serve --port 8000   (then open http://127.0.0.1:8000/)
    Serve {
        /// The model the page explains (.onnx)
        #[arg(default_value = "models/efficientnet_lite0.onnx")]
        model: PathBuf,
        /// The built page
        #[arg(long, default_value = "web/dist")]
        dir: PathBuf,
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port (0: any free port; the URL is printed)
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Write the site (page, model_rap.onnx, model.json) to DIR and exit
        #[arg(long, value_name = "DIR")]
        write_to: Option<PathBuf>,
        /// Propagation rules
        #[arg(long, value_enum, default_value = "rap")]
        method: MethodArg,
    },
    /// Score every method on a benchmark: localisation and faithfulness (docs/EVALUATION.md)
    ///
    /// Explains the true class of every benchmark image with each method, then reports the
    /// outside-inside relevance ratio (positive relevance, lower is better), the pointing game,
    /// segmentation IoU / mIoU / pixel accuracy (map min-max normalised, thresholded at its
    /// mean), and region perturbation (AOPC): PATCH x PATCH patches replaced by fixed-seed
    /// uniform noise, most relevant first (MoRF, higher is better) and least relevant first
    /// (LeRF, lower is better). Writes curves.csv and curves.png to --out.
    ///
    /// Example: onnx-rap eval models/digits_vgg.onnx --methods rap,lrp,gradxinput --limit 100
    ///
    /// Photos: onnx-rap eval models/efficientnet_lite0.onnx --data models/photos --patch 16
    Eval {
        /// The model (.onnx)
        model: PathBuf,
        /// Benchmark .npz (images uint8 [N,H,W(,3)], labels, boxes [N,4] as x0,y0,x1,y1,
        /// masks), or a folder of photos (preprocessed as `explain` does; only region
        /// perturbation is scored, for the predicted class) [default: the model's
        /// onnx_rap.benchmark metadata]
        #[arg(long)]
        data: Option<PathBuf>,
        /// Methods to compare, comma-separated [default: all]
        #[arg(long, value_enum, value_delimiter = ',')]
        methods: Vec<MethodArg>,
        /// Stabiliser of lrp-eps
        #[arg(long, default_value_t = onnx_rap::rules::DEFAULT_EPSILON)]
        epsilon: f32,
        /// Evaluate only the first N images
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Patch size of region perturbation (pixels)
        #[arg(long, default_value_t = 4)]
        patch: usize,
        /// Perturbation steps (one patch each)
        #[arg(long, default_value_t = 48)]
        steps: usize,
        /// Seed of the noise generator (SplitMix64, started at seed + image index)
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Images per tract run of the explanation (tract's per-image time grows with the
        /// batch, so the default runs each image alone, several at once on --threads)
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Threads: images run in parallel on one shared plan [default: every core]
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        threads: Option<u32>,
        /// Output folder for curves.csv and curves.png
        #[arg(short, long, default_value = "eval_out")]
        out: PathBuf,
        /// Also write every heatmap and perturbation curve (.npy) to this folder
        #[arg(long, value_name = "DIR")]
        dump: Option<PathBuf>,
        /// Print one JSON object instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Compile every model in a folder and check model_rap.onnx in tract and onnxruntime
    ///
    /// One row per .onnx file: node and op-type counts, whether it compiles, runs in tract and
    /// in onnxruntime (through --python, which must have onnxruntime and numpy), the largest
    /// difference of the two runtimes' relevance relative to max|R|, the conservation error
    /// |sum R - logit| / |logit| in both runtimes, the number of linear layers with signed
    /// inputs (where rap-official's relevance doubles), and explain/forward time in tract
    /// (batch 1). LRP z+ runs beside the chosen method as a control.
    ///
    /// Example: onnx-rap coverage models/zoo tests/data/light --out docs/COVERAGE.md
    Coverage {
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
    },
    /// Time the forward pass against the explanation (forward + relevance) in tract
    ///
    /// In one process: compile in memory, warm up, then K interleaved runs of the original
    /// model and of model_rap.onnx on the same random input; prints medians, min/max, the
    /// ratio explain/forward, compile time, peak memory and file sizes.
    ///
    /// Example: onnx-rap bench model.onnx --batch 8 --threads 2 --runs 5
    Bench {
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
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PartArg {
    Forward,
    Explain,
}

fn parse_bounds(s: &str) -> std::result::Result<(f32, f32), String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [lo, hi] = parts.as_slice() else {
        return Err("expected two numbers LO,HI, e.g. --input-bounds=-2.2,2.7".into());
    };
    let lo: f32 = lo
        .trim()
        .parse()
        .map_err(|_| format!("'{lo}' is not a number"))?;
    let hi: f32 = hi
        .trim()
        .parse()
        .map_err(|_| format!("'{hi}' is not a number"))?;
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(format!("LO ({lo}) must not exceed HI ({hi})"));
    }
    Ok((lo, hi))
}

fn parse_size(s: &str) -> std::result::Result<(u32, u32), String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [h, w] = parts.as_slice() else {
        return Err("expected H,W, e.g. --size 224,224".into());
    };
    let h: u32 = h
        .trim()
        .parse()
        .map_err(|_| format!("'{h}' is not a size"))?;
    let w: u32 = w
        .trim()
        .parse()
        .map_err(|_| format!("'{w}' is not a size"))?;
    Ok((h, w))
}

fn parse_interpolation(s: &str) -> std::result::Result<Interpolation, String> {
    Interpolation::parse(s).ok_or_else(|| {
        format!(
            "unknown interpolation '{s}' (known: {})",
            Interpolation::NAMES
        )
    })
}

fn method(m: MethodArg) -> Method {
    match m {
        MethodArg::Rap => Method::Rap,
        MethodArg::RapOfficial => Method::RapOfficial,
        MethodArg::Lrp => Method::Lrp,
        MethodArg::LrpEps => Method::LrpEps,
        MethodArg::LrpA2B1 => Method::LrpA2B1,
        MethodArg::LrpZplus => Method::LrpZPlus,
        MethodArg::Gradxinput => Method::GradInput,
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Bench {
            model,
            batch,
            threads,
            runs,
            method: m,
            exact,
            json,
            peak_of,
            peak_shape,
        } => {
            let opts = Options {
                method: method(m),
                tuning: Tuning::exact_if(exact),
                ..Options::default()
            };
            if let Some(part) = peak_of {
                let part = match part {
                    PartArg::Forward => cli::bench::Part::Forward,
                    PartArg::Explain => cli::bench::Part::Explain,
                };
                println!(
                    "{}",
                    cli::bench::peak_of(
                        &model,
                        &opts,
                        batch.max(1),
                        part,
                        (!peak_shape.is_empty()).then_some(peak_shape.as_slice()),
                    )?
                );
                return Ok(());
            }
            let threads = threads.map_or_else(onnx_rap::parallel::cores, |t| t as usize);
            let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
            let r = cli::bench::run(&model, &opts, batch.max(1), threads, runs.max(1), &args)?;
            if json {
                println!("{}", r.to_json());
            } else {
                print!("{}", r.render());
            }
        }
        Command::Explain {
            model,
            input,
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
        } => {
            let args = cli::explain::Args {
                model,
                inputs: input,
                target,
                out,
                batch,
                threads: threads.map_or_else(onnx_rap::parallel::cores, |t| t as usize),
                blend,
                preprocess: PartialPreprocess {
                    size,
                    resize,
                    crop,
                    interpolation,
                    layout: layout.map(|l| match l {
                        LayoutArg::Nchw => Layout::Nchw,
                        LayoutArg::Nhwc => Layout::Nhwc,
                    }),
                    grayscale: grayscale.then_some(true),
                    mean,
                    std,
                },
                compile: Options {
                    method: method(m),
                    epsilon,
                    bounds: input_bounds.map_or(Bounds::PerSample, |(l, h)| Bounds::Fixed(l, h)),
                    layer_sums,
                    ..Options::default()
                },
            };
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let outcomes = cli::explain::run(&args, progress)?;
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
        }
        Command::Serve {
            model,
            dir,
            host,
            port,
            write_to,
            method: m,
        } => {
            let opts = Options {
                method: method(m),
                ..Options::default()
            };
            let site = cli::serve::build(&dir, &model, &opts)?;
            if let Some(out) = write_to {
                let files = cli::serve::write(&site, &out)?;
                eprintln!(
                    "wrote {} files ({} bytes) to {}; serve that folder with any static server",
                    files.len(),
                    site.bytes(),
                    out.display()
                );
                return Ok(());
            }
            let (listener, url) = cli::serve::bind(&host, port)?;
            println!("serving {} at {url} (Ctrl-C to stop)", model.display());
            std::io::Write::flush(&mut std::io::stdout()).ok();
            cli::serve::serve(site, listener)?;
        }
        Command::Eval {
            model,
            data,
            methods,
            epsilon,
            limit,
            patch,
            steps,
            seed,
            batch,
            threads,
            out,
            dump,
            json,
        } => {
            let methods: Vec<Method> = if methods.is_empty() {
                Method::ALL.to_vec()
            } else {
                methods.into_iter().map(method).collect()
            };
            let args = cli::eval::Args {
                model,
                data,
                methods,
                epsilon,
                limit,
                patch,
                steps,
                seed,
                batch,
                threads: threads.map_or_else(onnx_rap::parallel::cores, |t| t as usize),
                out,
                dump,
            };
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let r = cli::eval::run(&args, progress)?;
            if json {
                println!("{}", r.to_json());
            } else {
                println!(
                    "{}: {} images of {}, patches {}x{} ({} steps of {} patches), seed {}\n",
                    r.model, r.images, r.data, r.patch, r.patch, r.steps, r.patches, r.seed
                );
                print!("{}", r.table());
                eprintln!(
                    "wrote {}",
                    r.files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Command::Coverage {
            dirs,
            python,
            out,
            runs,
            method: method_arg,
            exact,
            json,
        } => {
            let opts = Options {
                method: method(method_arg),
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
            let python = cli::coverage::has_onnxruntime(&python).then_some(python.clone());
            if python.is_none() {
                eprintln!(
                    "warning: no onnxruntime in that Python: the onnxruntime column is not run"
                );
            }
            let mut files = Vec::new();
            for d in &dirs {
                if d.is_file() {
                    files.push(d.clone());
                } else {
                    files.extend(cli::coverage::models_in(d)?);
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
                rows.push(cli::coverage::check(
                    f,
                    python.as_deref(),
                    runs,
                    &opts,
                    &zplus,
                ));
                bar.inc(1);
            }
            bar.finish_and_clear();
            let table = cli::coverage::table(&rows);
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
                println!("{}", cli::coverage::to_json(&rows));
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
        }
        Command::Inspect { model, json } => {
            let r = cli::inspect::report(&model)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r).map_err(|e| Error::Runtime(e.to_string()))?
                );
            } else {
                print!("{}", cli::inspect::render(&r));
            }
        }
        Command::Compile {
            model,
            output,
            target_input,
            input_bounds,
            method: method_arg,
            epsilon,
            input,
            explain_output,
            external_data_above,
            exact,
            colormap,
            layer_sums,
            layout,
        } => {
            let opts = Options {
                method: method(method_arg),
                epsilon,
                target_input,
                colormap,
                bounds: input_bounds.map_or(Bounds::PerSample, |(l, h)| Bounds::Fixed(l, h)),
                input,
                output: explain_output,
                tuning: Tuning::exact_if(exact),
                layer_sums,
                layout: layout.map(|l| match l {
                    LayoutArg::Nchw => Layout::Nchw,
                    LayoutArg::Nhwc => Layout::Nhwc,
                }),
            };
            let save = SaveOptions {
                external_above: external_data_above,
            };
            let s = cli::compile::run(&model, &output, &opts, &save)?;
            eprintln!(
                "wrote {} ({} nodes, {} before; {} bytes)",
                output.display(),
                s.nodes_after,
                s.nodes_before,
                s.bytes
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
