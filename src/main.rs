//! The `onnx-rap` command line: the commands live in the library (`cli::app`).

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(onnx_rap::cli::app::main_with(std::env::args_os()) as u8)
}
