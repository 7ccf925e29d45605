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
//! A HuggingFace `tokenizer.json` (`"kind": "huggingface"`, or any file with a `"model"`) adds
//! the special tokens its post-processor names (`[CLS] ... [SEP]`) instead of `bos`; a model
//! whose sequence axis is not fixed is fixed to the context before it is compiled
//! ([`fix_length`]): the metadata's `context`, else the tokenizer's truncation length, else 512.

pub mod bpe;
pub mod hf;
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
    /// The model's ids before padding: special tokens (the start token, `[CLS]`), the text's
    /// tokens, special tokens (`[SEP]`).
    pub ids: Vec<i64>,
    /// The text's tokens the model reads, in order: `ids[offset..offset + tokens.len()]`.
    pub tokens: Vec<Token>,
    /// How many tokens the whole text has (more than `tokens.len()` when it was cut).
    pub total: usize,
    /// Special positions before the first text token (1 with a start token or `[CLS]`).
    pub offset: usize,
}

impl Encoded {
    pub fn truncated(&self) -> bool {
        self.total > self.tokens.len()
    }

    /// The range of the text's tokens in `ids`.
    pub fn text_range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.tokens.len()
    }

    /// The same text with only the tokens `keep` says (special tokens stay).
    pub fn keeping(&self, keep: impl Fn(usize) -> bool) -> Encoded {
        let r = self.text_range();
        let tokens: Vec<Token> = self
            .tokens
            .iter()
            .enumerate()
            .filter(|(k, _)| keep(*k))
            .map(|(_, t)| t.clone())
            .collect();
        let ids = self.ids[..r.start]
            .iter()
            .copied()
            .chain(tokens.iter().map(|t| t.id))
            .chain(self.ids[r.end..].iter().copied())
            .collect();
        Encoded {
            ids,
            total: tokens.len(),
            tokens,
            offset: self.offset,
        }
    }
}

enum Tok {
    Bpe(bpe::Bpe),
    Hf(Box<hf::Hf>),
}

/// A text model's tokenizer and sequence settings.
pub struct TextSpec {
    tok: Tok,
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
        let tok = match kind {
            Some("tiktoken-bpe") => Tok::Bpe(bpe::Bpe::from_json(&v, &shown.to_string())?),
            Some("huggingface") => Tok::Hf(Box::new(hf::Hf::from_bytes(&raw, &shown.to_string())?)),
            None if v.get("model").is_some() => {
                Tok::Hf(Box::new(hf::Hf::from_bytes(&raw, &shown.to_string())?))
            }
            Some(k) => {
                return Err(bad_input!(
                    "{shown}: tokenizer kind '{k}' is not supported; onnx-rap reads tiktoken-bpe \
                     JSON tables (\"kind\": \"tiktoken-bpe\") and HuggingFace tokenizer.json \
                     files"
                ))
            }
            None => {
                return Err(bad_input!(
                    "{shown}: the tokenizer says no \"kind\" and is no HuggingFace \
                     tokenizer.json (no \"model\"); onnx-rap reads tiktoken-bpe JSON tables \
                     (\"kind\": \"tiktoken-bpe\", \"pattern\", \"mergeable_ranks\") and \
                     tokenizer.json files"
                ))
            }
        };
        // Special ids: the metadata's, else the tokenizer file's {"bos": {"id": ..}}.
        let id = |key: &str| -> Option<i64> {
            meta.get(format!("{key}_id"))
                .and_then(Json::as_i64)
                .or_else(|| v.get(key).and_then(|t| t.get("id")).and_then(Json::as_i64))
        };
        let hf = match &tok {
            Tok::Hf(h) => Some(h),
            Tok::Bpe(_) => None,
        };
        let context = meta
            .get("context")
            .and_then(Json::as_u64)
            .map(|c| c as usize)
            .or(context)
            .or_else(|| hf.and_then(|h| h.max_length()))
            .unwrap_or(512);
        if context < 2 {
            return Err(bad_input!(
                "{origin}: a context of {context} tokens leaves no room for text"
            ));
        }
        let pad = id("pad")
            .or_else(|| hf.and_then(|h| h.pad_id().or_else(|| h.token_id("[PAD]"))))
            .unwrap_or(0);
        let bos = if hf.is_some() { None } else { id("bos") };
        Ok(TextSpec {
            tok,
            file,
            context,
            bos,
            pad,
        })
    }

    /// The tokenizer's kind: `tiktoken-bpe` or `huggingface`.
    pub fn kind(&self) -> &'static str {
        match self.tok {
            Tok::Bpe(_) => "tiktoken-bpe",
            Tok::Hf(_) => "huggingface",
        }
    }

    /// Tokenise `text` (named `name` in errors and warnings) as the model reads it: the start
    /// token, then the tokens that fit in the context.
    pub fn encode(&self, text: &str, name: &str) -> Result<Encoded> {
        if text.trim().is_empty() {
            return Err(bad_input!("{name}: the text is empty; nothing to explain"));
        }
        // Character index of every byte offset that starts a character.
        let mut char_at = vec![0usize; text.len() + 1];
        let mut n = 0;
        for (b, _) in text.char_indices() {
            char_at[b] = n;
            n += 1;
        }
        char_at[text.len()] = n;
        let chars: Vec<char> = text.chars().collect();
        let token = |id: i64, start: usize, end: usize| Token {
            id,
            start,
            end,
            text: chars[start..end.max(start)].iter().collect(),
        };
        if let Tok::Hf(h) = &self.tok {
            let e = h.encode(text, self.context)?;
            let offset = e.special.iter().take_while(|s| **s).count();
            let n_text = e.special[offset..].iter().take_while(|s| !**s).count();
            let tokens = (offset..offset + n_text)
                .map(|k| token(e.ids[k], e.spans[k].0, e.spans[k].1))
                .collect();
            return Ok(Encoded {
                ids: e.ids,
                tokens,
                total: e.total,
                offset,
            });
        }
        let Tok::Bpe(bpe) = &self.tok else {
            unreachable!("the tokenizer is BPE or HuggingFace")
        };
        let pieces = bpe.encode(text)?;
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
                token(
                    p.id,
                    first_char_from(p.bytes.start),
                    first_char_from(p.bytes.end),
                )
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

/// The sequence length a text model declares: axis 1 of its first rank-2 integer input, if fixed.
pub fn declared_length(model: &crate::ir::Model) -> Option<usize> {
    sequence_inputs(model)
        .next()
        .and_then(|vi| crate::onnx::declared_shape(vi)?.dim.get(1)?.dim_value)
        .and_then(|v| usize::try_from(v).ok())
}

/// Whether a graph input holds integers.
fn integer_input(vi: &crate::onnx::proto::ValueInfoProto) -> bool {
    vi.r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.elem_type)
        .is_some_and(|e| matches!(e, 2..=7 | 12 | 13))
}

/// The rank-2 integer runtime inputs (ids, masks, token types).
pub fn sequence_inputs(
    model: &crate::ir::Model,
) -> impl Iterator<Item = &crate::onnx::proto::ValueInfoProto> {
    let runtime = model.graph.runtime_inputs();
    model.graph.inputs.iter().filter(move |vi| {
        integer_input(vi)
            && runtime.contains(&vi.name())
            && crate::onnx::declared_shape(vi).is_some_and(|s| s.dim.len() == 2)
    })
}

/// Fix the sequence axis of every rank-2 integer input to `length` where it is not fixed
/// (models exported with a dynamic sequence): onnx-rap compiles static shapes.
pub fn fix_length(model: &mut crate::ir::Model, length: usize) {
    let names: Vec<String> = sequence_inputs(model)
        .map(|vi| vi.name().to_string())
        .collect();
    for vi in model.graph.inputs.iter_mut() {
        if !names.iter().any(|n| n == vi.name()) {
            continue;
        }
        if let Some(d) = crate::onnx::declared_shape_mut(vi).and_then(|s| s.dim.get_mut(1)) {
            if d.dim_value.is_none() {
                d.dim_value = Some(length as i64);
                d.dim_param = None;
            }
        }
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
