//! Synthetic inputs for every runtime input of a model, for the commands that run a model
//! without data of their own (`bench`, `coverage`): float inputs and token ids from the
//! caller's generators, other integer inputs as masks that attend to every token (ones, when
//! the name says mask) or zeros (token types).

use ndarray::ArrayD;

use crate::analysis::{embedding_of, input_sample_dims, Facts};
use crate::error::Result;
use crate::ir::Model;
use crate::runtime::Value;

/// `(name, value)` for each runtime input in order, batch `batch`: `float(shape)` for float
/// inputs, `ids(shape, vocabulary)` for integer inputs read by an embedding lookup.
pub fn synthetic(
    model: &Model,
    facts: &Facts,
    origin: &str,
    batch: usize,
    float: &mut dyn FnMut(&[usize]) -> ArrayD<f32>,
    ids: &mut dyn FnMut(&[usize], i64) -> ArrayD<i64>,
) -> Result<Vec<(String, Value)>> {
    let mut feeds = Vec::new();
    for name in model.graph.runtime_inputs() {
        let dims: Vec<usize> = std::iter::once(batch)
            .chain(input_sample_dims(facts, name, origin)?)
            .collect();
        let integer = facts.get(name).is_some_and(|f| f.is_integer());
        let value = if !integer {
            Value::F32(float(&dims))
        } else if let Some(e) = embedding_of(&model.graph, name) {
            Value::I64(ids(&dims, e.rows.max(1)))
        } else {
            let fill = i64::from(name.to_ascii_lowercase().contains("mask"));
            Value::I64(ArrayD::from_elem(dims, fill))
        };
        feeds.push((name.to_string(), value));
    }
    Ok(feeds)
}
