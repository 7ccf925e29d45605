//! HuggingFace `tokenizer.json` files (WordPiece, BPE, Unigram: what BERT-, RoBERTa- and
//! similar exports ship), read by the `tokenizers` crate, the library the Python package wraps,
//! so ids, special tokens and offsets are the ones the model was trained with.

use tokenizers::{PostProcessor, Tokenizer, TruncationDirection};

use crate::bad_input;
use crate::error::Result;

pub struct Hf {
    tok: Tokenizer,
}

/// One text through a HuggingFace tokenizer: every id of the sequence with the special tokens
/// its post-processor adds, which positions are special, the character span of each, and how
/// many text tokens the whole text had.
pub struct HfEncoding {
    pub ids: Vec<i64>,
    pub special: Vec<bool>,
    pub spans: Vec<(usize, usize)>,
    pub total: usize,
}

impl Hf {
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Hf> {
        let tok = Tokenizer::from_bytes(bytes).map_err(|e| {
            bad_input!("{origin}: not a tokenizer.json the tokenizers library can read: {e}")
        })?;
        Ok(Hf { tok })
    }

    /// The id of a token of the vocabulary, e.g. `[PAD]`.
    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.tok.token_to_id(token).map(i64::from)
    }

    /// The padding id the file configures, if any.
    pub fn pad_id(&self) -> Option<i64> {
        self.tok.get_padding().map(|p| i64::from(p.pad_id))
    }

    /// The length the file truncates to, if it says.
    pub fn max_length(&self) -> Option<usize> {
        self.tok.get_truncation().map(|t| t.max_length)
    }

    /// Encode `text` in at most `room` positions, special tokens included: the text's tokens
    /// are cut first, then the post-processor adds its special tokens.
    pub fn encode(&self, text: &str, room: usize) -> Result<HfEncoding> {
        let fail = |e: tokenizers::Error| crate::runtime_err!("the tokenizer failed: {e}");
        let mut e = self.tok.encode_char_offsets(text, false).map_err(fail)?;
        let total = e.len();
        let added = self
            .tok
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        let keep = room.saturating_sub(added);
        if keep == 0 {
            return Err(bad_input!(
                "a context of {room} tokens leaves no room for text beside the {added} special \
                 tokens"
            ));
        }
        if e.len() > keep {
            e.truncate(keep, 0, TruncationDirection::Right);
        }
        let e = self.tok.post_process(e, None, true).map_err(fail)?;
        Ok(HfEncoding {
            ids: e.get_ids().iter().map(|&i| i64::from(i)).collect(),
            special: e
                .get_special_tokens_mask()
                .iter()
                .map(|&m| m == 1)
                .collect(),
            spans: e.get_offsets().to_vec(),
            total,
        })
    }
}
