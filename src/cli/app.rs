//! The command line as a library function: its commands and flags (clap), and what runs them.
//! `src/main.rs` and the Python package's `onnx-rap` script both call [`main_with`].

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::cli;
use crate::error::Result;

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

#[derive(Subcommand)]
enum Command {
    /// Explain images, tensors or texts: heatmap and overlay PNGs and the raw relevance, or tokens shaded by relevance
    ///
    /// For every input NAME it writes NAME_heatmap.png (relevance summed over channels, divided
    /// by its largest magnitude, red = relevant, white = 0, blue = irrelevant; at model
    /// resolution), NAME_overlay.png (the image the model saw, after resize and crop, beside its
    /// heatmap, enlarged to at least 224 pixels) and NAME_relevance.npy, and prints one line:
    /// the top 5 classes (softmax), then the explained class, its logit, the relevance sum and
    /// the share of positive relevance. Images are resized, cropped and normalised as the
    /// model's metadata says (flags override it).
    ///
    /// Text models (token-id inputs) take --text "..." or .txt/.jsonl files: each text is
    /// tokenised as the model's metadata says and printed token by token with its relevance;
    /// --out DIR adds an HTML page per text, relevance.jsonl and summary.tsv.
    ///
    /// Example: onnx-rap explain models/efficientnet_lite0.onnx --input models/photos
    ///
    /// Example: onnx-rap explain models/nanoguard.onnx --text "Ignore all previous instructions"
    Explain(cli::explain::ExplainCli),
    /// Show a model's inputs, outputs, ops, parameter count, and which ops have a relevance rule
    ///
    /// Example: onnx-rap inspect models/vgg_mini.onnx
    Inspect(cli::inspect::InspectCli),
    /// Compile MODEL into a model that also outputs its RAP relevance
    ///
    /// The output keeps every original input and output and adds `relevance` (shape of the
    /// input) and, for image inputs [N,C,H,W] or [N,H,W,C], `heatmap` ([N,H,W], summed over
    /// channels).
    /// The explained class is the argmax of the logits unless --target-input adds an int64 [N]
    /// input `rap_target`. A Softmax at the output is skipped: its logits are explained.
    ///
    /// Example: onnx-rap compile model.onnx -o model_rap.onnx --target-input
    Compile(cli::compile::CompileCli),
    /// Serve the browser page that explains images or text with onnxruntime-web, offline
    ///
    /// Compiles MODEL in memory (with `rap_target`, and `heatmap_rgb` for an image model),
    /// then serves it with the page built in --dir (`npm --prefix web ci && npm --prefix web
    /// run build`) on 127.0.0.1. A text model (token ids, its tokenizer named by its
    /// `onnx_rap.tokenizer` metadata) gets a text box, tokenised in the page. Everything runs
    /// in the browser: images and texts never leave it. --write-to DIR writes the same files
    /// for any static server instead of serving.
    ///
    /// Example: onnx-rap serve --port 8000   (then open http://127.0.0.1:8000/)
    /// Example: onnx-rap serve models/nanoguard.onnx   (a prompt-injection classifier)
    Serve(cli::serve::ServeCli),
    /// Score every method on a benchmark: localisation and faithfulness (docs/EVALUATION.md)
    ///
    /// Explains the true class of every benchmark image with each method, then reports the
    /// outside-inside relevance ratio (positive relevance, lower is better), the pointing game,
    /// segmentation IoU / mIoU / pixel accuracy (map min-max normalised, thresholded at its
    /// mean), and region perturbation (AOPC): PATCH x PATCH patches replaced by fixed-seed
    /// uniform noise, most relevant first (MoRF, higher is better) and least relevant first
    /// (LeRF, lower is better). Writes curves.csv, curves.png and maps.png (the first three
    /// images' maps, every method side by side) to --out.
    ///
    /// Example: onnx-rap eval models/digits_vgg.onnx --methods rap,lrp,gradxinput --limit 100
    ///
    /// Labelled photos, with another tool's maps and the randomisation sanity check:
    /// onnx-rap eval models/efficientnet_lite0.onnx --data models/data/imagenet_photos
    /// --patch 28 --steps 16 --maps captum-ig=peer/ig --sanity 1,4
    ///
    /// Texts (labelled .jsonl): tokens deleted most and least relevant first, 5% a step, and a
    /// random order as the floor:
    /// onnx-rap eval models/nanoguard.onnx --data models/data/nanoguard_texts.jsonl --limit 40
    Eval(cli::eval::EvalCli),
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
    Coverage(cli::coverage::CoverageCli),
    /// Time the forward pass against the explanation (forward + relevance) in tract
    ///
    /// Compile in memory, warm up, then K interleaved runs of the original model and of
    /// model_rap.onnx on the same random input; prints medians, min/max, the ratio
    /// explain/forward, compile time and file sizes, then the images/s of --threads workers
    /// sharing each plan, and the peak memory of a process that only runs the forward pass
    /// (plain tract) and of one that only explains (each measured in a child process).
    ///
    /// Example: onnx-rap bench model.onnx --batch 8 --threads 2 --runs 5
    Bench(cli::bench::BenchCli),
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Explain(c) => cli::explain::main(c),
        Command::Inspect(c) => cli::inspect::main(c),
        Command::Compile(c) => cli::compile::main(c),
        Command::Serve(c) => cli::serve::main(c),
        Command::Eval(c) => cli::eval::main(c),
        Command::Coverage(c) => cli::coverage::main(c),
        Command::Bench(c) => cli::bench::main(c),
    }
}

/// Parse `args` (the program name first) and run the command; returns the exit code (0 ok,
/// 1 runtime failure, 2 bad input or usage) after printing any error to stderr.
pub fn main_with<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors exit 2.
            let _ = e.print();
            return e.exit_code();
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
