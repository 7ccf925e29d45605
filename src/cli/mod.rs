//! The command line: one module per command, each with its arguments (`<cmd>::<Cmd>Cli`)
//! and what the command does with them (`<cmd>::main`); `args` holds what they share.

pub mod app;
pub mod args;
pub mod bench;
pub mod compile;
pub mod coverage;
pub mod eval;
pub mod eval_sanity;
pub mod eval_text;
pub mod explain;
pub mod explain_text;
pub mod feeds;
pub mod inspect;
pub mod serve;

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};
use crate::ir::Model;

/// Load a model file (external data included) and import it.
pub fn load_model(path: &Path) -> Result<Model> {
    crate::explainer::load_model(path)
}

/// A progress bar on stderr over `len` items called `what` ("inputs", "texts"), hidden unless
/// `show`. `per_method`: the form of `eval`, which runs every item once per method and shows
/// the method as the prefix; otherwise the form of `explain`, with the rate.
pub fn progress_bar(show: bool, len: usize, what: &str, per_method: bool) -> Result<ProgressBar> {
    if !show {
        return Ok(ProgressBar::hidden());
    }
    let style = if per_method {
        ProgressStyle::with_template(&format!(
            "{{prefix:>10}} [{{bar:30}}] {{pos}}/{{len}} {what}, eta {{eta}}"
        ))
        .map(|s| s.progress_chars("=> "))
    } else {
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what}, {{per_sec}}, eta {{eta}}"
        ))
    }
    .map_err(|e| Error::Runtime(e.to_string()))?;
    let b = ProgressBar::new(len as u64);
    b.set_style(style);
    Ok(b)
}
