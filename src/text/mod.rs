//! Text in, token ids out: the tokenizer a text model names in its metadata, the model's
//! special tokens and context, and the ids, masks and character spans `explain --text` and
//! `eval` feed and print.
//!
//! A text model carries `onnx_rap.tokenizer`, a JSON object such as
//! `{"kind": "tiktoken-bpe", "file": "nanoguard_tokenizer.json", "context": 512, "bos_id": 8188,
//! "pad_id": 8189, "padding": "right"}`: the tokenizer file (beside the model unless
//! `--tokenizer` names another), the ids of the sequence start and the padding, and the
//! context. The ids a text gets are `[bos] + tokens`, cut to the context, right-padded with
//! `pad`; an input whose name says mask gets 1 on the real tokens and 0 on the padding.

pub mod bpe;
pub mod html;

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD};
use serde_json::Value as Json;

use crate::bad_input;
use crate::error::Result;

/// The metadata key of a text model's tokenizer settings.
pub const META_TOKENIZER: &str = "onnx_rap.tokenizer";

/// One token of a text: its id, and the characters of the text it covers (`start..end`,
/// counted in Unicode scalar values). A character whose UTF-8 bytes the tokenizer split over
/// several tokens belongs to the token holding its first byte, so the spans never overlap and
/// cover the text; a token of continuation bytes alone has an empty span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: i64,
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// A text as the model reads it.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The model's ids before padding: the start token, if any, then the text's tokens.
    pub ids: Vec<i64>,
    /// The text's tokens the model reads (after the start token), in order.
    pub tokens: Vec<Token>,
    /// How many tokens the whole text has (more than `tokens.len()` when it was cut).
    pub total: usize,
    /// Positions before the first text token (1 with a start token).
    pub offset: usize,
}

impl Encoded {
    pub fn truncated(&self) -> bool {
        self.total > self.tokens.len()
    }
}

/// A text model's tokenizer and sequence settings.
pub struct TextSpec {
    bpe: bpe::Bpe,
    /// The tokenizer file, as found.
    pub file: PathBuf,
    /// Sequence length the model reads (ids are cut and padded to it).
    pub context: usize,
    pub bos: Option<i64>,
    pub pad: i64,
}

impl TextSpec {
    /// The settings of `meta` (the model's `onnx_rap.tokenizer` value, if any) with the
    /// tokenizer file `tokenizer` when given (else the metadata's file, beside `model_path`).
    /// `context` is the model's sequence length when its input declares one.
    pub fn load(
        meta: Option<&str>,
        tokenizer: Option<&Path>,
        model_path: &Path,
        context: Option<usize>,
    ) -> Result<TextSpec> {
        let origin = model_path.display();
        let meta: Json = match meta {
            Some(m) => serde_json::from_str(m).map_err(|e| {
                bad_input!("{origin}: its metadata '{META_TOKENIZER}' is not JSON: {e}")
            })?,
            None => Json::Null,
        };
        let file = match (tokenizer, meta.get("file").and_then(Json::as_str)) {
            (Some(t), _) => t.to_path_buf(),
            (None, Some(f)) => model_path.parent().unwrap_or(Path::new(".")).join(f),
            (None, None) => {
                return Err(bad_input!(
                    "{origin}: the model names no tokenizer (no '{META_TOKENIZER}' metadata); \
                     pass --tokenizer FILE (a tiktoken-bpe JSON as models/nanoguard_tokenizer.json)"
                ))
            }
        };
        let shown = file.display();
        let raw = std::fs::read(&file).map_err(|e| {
            bad_input!(
                "{shown}: cannot read the tokenizer of {origin}: {e}{}",
                if tokenizer.is_none() {
                    "; it is named by the model's metadata and looked for beside the model \
                     (--tokenizer FILE gives another)"
                } else {
                    ""
                }
            )
        })?;
        let v: Json = serde_json::from_slice(&raw)
            .map_err(|e| bad_input!("{shown}: the tokenizer is not JSON: {e}"))?;
        let kind = v
            .get("kind")
            .or_else(|| meta.get("kind"))
            .and_then(Json::as_str);
        let bpe = match kind {
            Some("tiktoken-bpe") => bpe::Bpe::from_json(&v, &shown.to_string())?,
            Some(k) => {
                return Err(bad_input!(
                    "{shown}: tokenizer kind '{k}' is not supported; onnx-rap reads tiktoken-bpe \
                     JSON tables (\"kind\": \"tiktoken-bpe\", \"pattern\", \"mergeable_ranks\")"
                ))
            }
            None if v.get("model").is_some() => {
                return Err(bad_input!(
                    "{shown}: a HuggingFace tokenizer.json is not supported yet; onnx-rap reads \
                     tiktoken-bpe JSON tables (\"kind\": \"tiktoken-bpe\")"
                ))
            }
            None => {
                return Err(bad_input!(
                    "{shown}: the tokenizer says no \"kind\"; onnx-rap reads tiktoken-bpe JSON \
                     tables (\"kind\": \"tiktoken-bpe\", \"pattern\", \"mergeable_ranks\")"
                ))
            }
        };
        // Special ids: the metadata's, else the tokenizer file's {"bos": {"id": ..}}.
        let id = |key: &str| -> Option<i64> {
            meta.get(format!("{key}_id"))
                .and_then(Json::as_i64)
                .or_else(|| v.get(key).and_then(|t| t.get("id")).and_then(Json::as_i64))
        };
        let context = meta
            .get("context")
            .and_then(Json::as_u64)
            .map(|c| c as usize)
            .or(context)
            .ok_or_else(|| {
                bad_input!(
                    "{origin}: the model's sequence length is not fixed and its metadata gives \
                     no \"context\""
                )
            })?;
        if context < 2 {
            return Err(bad_input!(
                "{origin}: a context of {context} tokens leaves no room for text"
            ));
        }
        let pad = id("pad").unwrap_or(0);
        Ok(TextSpec {
            bpe,
            file,
            context,
            bos: id("bos"),
            pad,
        })
    }

    /// Tokenise `text` (named `name` in errors and warnings) as the model reads it: the start
    /// token, then the tokens that fit in the context.
    pub fn encode(&self, text: &str, name: &str) -> Result<Encoded> {
        if text.trim().is_empty() {
            return Err(bad_input!("{name}: the text is empty; nothing to explain"));
        }
        let pieces = self.bpe.encode(text)?;
        // Character index of every byte offset that starts a character.
        let mut char_at = vec![0usize; text.len() + 1];
        let mut n = 0;
        for (b, _) in text.char_indices() {
            char_at[b] = n;
            n += 1;
        }
        char_at[text.len()] = n;
        // A byte inside a character maps to the next character's index (its span starts after).
        let first_char_from = |byte: usize| -> usize {
            let mut b = byte;
            while !text.is_char_boundary(b) {
                b += 1;
            }
            char_at[b]
        };
        let offset = usize::from(self.bos.is_some());
        let room = self.context - offset;
        let total = pieces.len();
        let tokens: Vec<Token> = pieces
            .into_iter()
            .take(room)
            .map(|p| {
                let start = first_char_from(p.bytes.start);
                let end = first_char_from(p.bytes.end);
                Token {
                    id: p.id,
                    start,
                    end,
                    text: text.chars().skip(start).take(end - start).collect(),
                }
            })
            .collect();
        let ids = self
            .bos
            .into_iter()
            .chain(tokens.iter().map(|t| t.id))
            .collect();
        Ok(Encoded {
            ids,
            tokens,
            total,
            offset,
        })
    }

    /// The ids of `texts`, padded to the context, `[N, context]`.
    pub fn ids(&self, texts: &[&Encoded]) -> ArrayD<i64> {
        let mut a = Array2::from_elem((texts.len(), self.context), self.pad);
        for (k, e) in texts.iter().enumerate() {
            for (j, id) in e.ids.iter().enumerate() {
                a[[k, j]] = *id;
            }
        }
        a.into_dyn()
    }

    /// The attention mask of `texts`: 1 on the start and text tokens, 0 on the padding.
    pub fn mask(&self, texts: &[&Encoded]) -> ArrayD<i64> {
        let mut a = Array2::zeros((texts.len(), self.context));
        for (k, e) in texts.iter().enumerate() {
            for j in 0..e.ids.len() {
                a[[k, j]] = 1;
            }
        }
        a.into_dyn()
    }
}

/// The text of `name` shortened to `n` characters for messages.
pub fn excerpt(text: &str, n: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}...", one_line.chars().take(n).collect::<String>())
    }
}
