//! The `onnx-rap` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use onnx_rap::cli;
use onnx_rap::error::{Error, Result};
use onnx_rap::onnx::SaveOptions;
use onnx_rap::pass::Options;
use onnx_rap::rules::{Bounds, Method};

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
    /// Relative Attributing Propagation (Nam et al., AAAI 2020), as the official code computes it
    Rap,
    /// LRP alpha1-beta0 (z+ rule), the baseline of the official code
    Lrp,
}

#[derive(Subcommand)]
enum Command {
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
    /// input) and, for image inputs [N,C,H,W], `heatmap` ([N,H,W], summed over channels).
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
        /// The graph input to explain, when the model has several
        #[arg(long, value_name = "NAME")]
        input: Option<String>,
        /// The graph output (logits) to explain, when the model has several
        #[arg(long = "explain-output", value_name = "NAME")]
        explain_output: Option<String>,
        /// Store initializers of at least BYTES bytes in OUT.data beside OUT
        #[arg(long, value_name = "BYTES")]
        external_data_above: Option<usize>,
    },
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

fn run(cli: Cli) -> Result<()> {
    match cli.command {
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
            method,
            input,
            explain_output,
            external_data_above,
        } => {
            let opts = Options {
                method: match method {
                    MethodArg::Rap => Method::Rap,
                    MethodArg::Lrp => Method::Lrp,
                },
                target_input,
                bounds: input_bounds.map_or(Bounds::PerSample, |(l, h)| Bounds::Fixed(l, h)),
                input,
                output: explain_output,
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
