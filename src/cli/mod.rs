//! The command line: one module per command, each with its arguments (`<cmd>::<Cmd>Cli`)
//! and what the command does with them (`<cmd>::main`); `args` holds what they share.

pub mod app;
pub mod args;
pub mod bench;
pub mod compile;
pub mod coverage;
pub mod eval;
pub mod eval_text;
pub mod explain;
pub mod explain_text;
pub mod feeds;
pub mod inspect;
pub mod serve;

use std::path::Path;

use crate::error::Result;
use crate::ir::Model;

/// Load a model file (external data included) and import it.
pub fn load_model(path: &Path) -> Result<Model> {
    crate::explainer::load_model(path)
}
