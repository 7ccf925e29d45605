//! onnx-rap: Relative Attributing Propagation (RAP) compiled into plain ONNX graphs.
//!
//! The data flow is one direction: decode (`onnx`) -> import (`ir`) -> analyse (`analysis`)
//! -> the relevance pass (`pass`, with one rule per operator family in `rules`) -> export
//! (`ir`) -> encode (`onnx`), and optionally run with tract (`runtime`).

pub mod error;
pub mod ir;
pub mod onnx;

pub use error::{Error, Result};

/// The version of onnx-rap (the crate, the command line and the Python package).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub mod analysis;
pub mod canon;
pub mod cli;
pub mod consteval;
pub mod explainer;
pub mod fold;
pub mod fuse;
pub mod guard;
pub mod heatmap;
pub mod image;
pub mod metrics;
pub mod outdir;
pub mod parallel;
pub mod pass;
pub mod plot;
pub mod rules;
pub mod runtime;
pub mod text;
