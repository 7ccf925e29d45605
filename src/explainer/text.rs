//! The text front end: tokenised texts as a text model's inputs, and each text's relevance
//! split into its tokens, the special tokens and the padding.

use ndarray::{ArrayD, Axis};

use std::path::Path;

use super::{Compiled, Explainer, Explanation, Verdict};
use crate::bad_input;
use crate::error::Result;
use crate::ir;
use crate::runtime::Value;
use crate::text::TextSpec;
use crate::text::{Encoded, Token};

/// The tokenizer of a text model (its metadata's, else `tokenizer`; read beside `path`), and
/// the model's sequence axis fixed to the tokenizer's context.
pub fn text_model(
    model: &mut ir::Model,
    path: &Path,
    tokenizer: Option<&Path>,
) -> Result<TextSpec> {
    let origin = path.display().to_string();
    if crate::text::sequence_inputs(model).next().is_none() {
        return Err(bad_input!(
            "{origin}: the model's inputs are not token ids ([batch, sequence] integers); texts \
             need a text model (images and .npy tensors go to --input)"
        ));
    }
    let declared = crate::text::declared_length(model);
    let spec = TextSpec::load(
        super::metadata(model, crate::text::META_TOKENIZER),
        tokenizer,
        path,
        declared,
    )?;
    if declared.is_some_and(|t| t != spec.context) {
        return Err(bad_input!(
            "{origin}: the tokenizer settings give a context of {} tokens but the model reads \
             {}",
            spec.context,
            declared.unwrap_or(0)
        ));
    }
    crate::text::fix_length(model, spec.context);
    Ok(spec)
}

/// The runtime inputs of a text explainer for `texts` (see [`feeds_for`]).
pub fn feeds(e: &Explainer, texts: &[&Encoded]) -> Result<Vec<Value>> {
    let spec = e.text().ok_or_else(|| {
        bad_input!(
            "{}: the model's inputs are not token ids; texts need a text model",
            e.origin()
        )
    })?;
    feeds_for(e.compiled(), spec, texts, e.origin())
}

/// The runtime inputs of the compiled model `c` for `texts`, in graph order: the ids, a mask
/// for every integer input whose name says mask, zeros for other integer inputs (token types).
pub fn feeds_for(
    c: &Compiled,
    spec: &TextSpec,
    texts: &[&Encoded],
    origin: &str,
) -> Result<Vec<Value>> {
    let mut v = Vec::with_capacity(c.inputs.len());
    for (name, integer) in &c.inputs {
        if *name == c.input {
            v.push(Value::I64(spec.ids(texts)));
        } else if !integer {
            return Err(bad_input!(
                "{origin}: input '{name}' holds floats; a text model's other inputs must be \
                 integer masks or token types"
            ));
        } else if name.to_ascii_lowercase().contains("mask") {
            v.push(Value::I64(spec.mask(texts)));
        } else {
            v.push(Value::I64(ArrayD::zeros(vec![texts.len(), spec.context])));
        }
    }
    Ok(v)
}

/// One text's relevance, split where the model read it.
#[derive(Clone, Debug)]
pub struct TokenRelevance {
    /// Relevance of each of the text's tokens.
    pub tokens: Vec<f32>,
    /// Relevance of the special tokens (the start token, `[CLS]`, `[SEP]`), if the tokenizer
    /// adds any.
    pub special: Option<f64>,
    /// Relevance summed over the padding positions.
    pub padding: f64,
    /// Relevance summed over every position the model read (it equals the logit for `rap`).
    pub sum: f64,
}

impl TokenRelevance {
    /// Split `rel` (one value per position of the context) for the text `e`.
    pub fn split(e: &Encoded, rel: &[f32]) -> TokenRelevance {
        let n = e.ids.len();
        let r = e.text_range();
        TokenRelevance {
            tokens: rel[r.clone()].to_vec(),
            special: (n > r.len()).then(|| {
                rel[..r.start]
                    .iter()
                    .chain(&rel[r.end..n])
                    .map(|&v| v as f64)
                    .sum()
            }),
            padding: rel[n..].iter().map(|&v| v as f64).sum(),
            sum: rel.iter().map(|&v| v as f64).sum(),
        }
    }
}

/// One explained text.
pub struct TextExplanation {
    pub verdict: Verdict,
    /// The tokens read (the text cut to the context), with their character spans.
    pub tokens: Vec<Token>,
    pub relevance: TokenRelevance,
    /// `(tokens read, tokens in the text)` when the text was cut to the context.
    pub truncated: Option<(usize, usize)>,
    /// The logits of the text.
    pub logits: Vec<f32>,
}

impl TextExplanation {
    /// Text `k` of the run `e`, tokenised as `enc`; `labels` name the classes.
    pub fn of(
        e: &Explanation,
        k: usize,
        enc: Encoded,
        labels: Option<&[String]>,
    ) -> TextExplanation {
        let rel: Vec<f32> = e.relevance.index_axis(Axis(0), k).iter().copied().collect();
        TextExplanation {
            verdict: e.verdict(k, labels),
            relevance: TokenRelevance::split(&enc, &rel),
            truncated: enc.truncated().then_some((enc.tokens.len(), enc.total)),
            tokens: enc.tokens,
            logits: e.logits.row(k).to_vec(),
        }
    }
}
