//! Byte-level BPE in the tiktoken style: the text is split into pieces by a regular
//! expression, each piece's UTF-8 bytes start as one part per byte, and the adjacent pair whose
//! concatenation has the lowest rank is merged until no pair is in the table; each part's rank
//! is its token id (Sennrich et al. 2016, with the byte-level alphabet of GPT-2).
//!
//! The table is the plain JSON `models/export_nanoguard.py` writes from the package's pickle:
//! `{"kind": "tiktoken-bpe", "pattern": REGEX, "mergeable_ranks": {base64(bytes): id}, ...}`.

use std::collections::HashMap;
use std::ops::Range;

use base64::Engine;
use serde_json::Value as Json;

use crate::bad_input;
use crate::error::Result;

/// One token: its id and the bytes of the text it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub id: i64,
    pub bytes: Range<usize>,
}

/// A tiktoken-style tokenizer (ordinary encoding: special tokens in the text are plain text).
pub struct Bpe {
    pattern: fancy_regex::Regex,
    ranks: HashMap<Vec<u8>, u32>,
}

impl Bpe {
    /// Read the JSON form; `origin` names the file in errors.
    pub fn from_json(v: &Json, origin: &str) -> Result<Bpe> {
        let pattern = v
            .get("pattern")
            .and_then(Json::as_str)
            .ok_or_else(|| bad_input!("{origin}: a tiktoken-bpe tokenizer needs a \"pattern\""))?;
        let pattern = fancy_regex::Regex::new(pattern).map_err(|e| {
            bad_input!(
                "{origin}: the tokenizer's \"pattern\" is not a valid regular expression: {e}"
            )
        })?;
        let table = v
            .get("mergeable_ranks")
            .and_then(Json::as_object)
            .ok_or_else(|| {
                bad_input!(
                    "{origin}: a tiktoken-bpe tokenizer needs \"mergeable_ranks\" (an object)"
                )
            })?;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut ranks = HashMap::with_capacity(table.len());
        for (k, r) in table {
            let bytes = engine.decode(k).map_err(|e| {
                bad_input!("{origin}: mergeable_ranks key {k:?} is not base64: {e}")
            })?;
            let rank = r
                .as_u64()
                .and_then(|r| u32::try_from(r).ok())
                .ok_or_else(|| bad_input!("{origin}: the rank of {k:?} is not an integer id"))?;
            ranks.insert(bytes, rank);
        }
        // Every byte must be a token, or some texts would have no encoding.
        if let Some(b) = (0..=255u8).find(|b| !ranks.contains_key(&vec![*b])) {
            return Err(bad_input!(
                "{origin}: mergeable_ranks lacks the single byte {b:#04x}; a byte-level BPE \
                 table holds all 256"
            ));
        }
        Ok(Bpe { pattern, ranks })
    }

    /// The tokens of `text`, in order, with their byte ranges.
    pub fn encode(&self, text: &str) -> Result<Vec<Piece>> {
        let mut out = Vec::new();
        for m in self.pattern.find_iter(text) {
            let m = m.map_err(|e| {
                crate::runtime_err!("the tokenizer's pattern failed on the text: {e}")
            })?;
            let piece = &text.as_bytes()[m.range()];
            if let Some(&id) = self.ranks.get(piece) {
                out.push(Piece {
                    id: id.into(),
                    bytes: m.range(),
                });
                continue;
            }
            for part in self.merge(piece) {
                let id = self.ranks[&piece[part.clone()]];
                out.push(Piece {
                    id: id.into(),
                    bytes: m.start() + part.start..m.start() + part.end,
                });
            }
        }
        Ok(out)
    }

    /// The parts of one piece after merging: the adjacent pair with the lowest rank first
    /// (the leftmost of equal ranks), until no adjacent pair is a token.
    fn merge(&self, piece: &[u8]) -> Vec<Range<usize>> {
        let mut parts: Vec<Range<usize>> = (0..piece.len()).map(|i| i..i + 1).collect();
        loop {
            let mut best: Option<(u32, usize)> = None;
            for i in 0..parts.len().saturating_sub(1) {
                let pair = &piece[parts[i].start..parts[i + 1].end];
                if let Some(&r) = self.ranks.get(pair) {
                    if best.is_none_or(|(b, _)| r < b) {
                        best = Some((r, i));
                    }
                }
            }
            let Some((_, i)) = best else {
                return parts;
            };
            parts[i].end = parts[i + 1].end;
            parts.remove(i + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(extra: &[(&[u8], u32)]) -> Json {
        let engine = base64::engine::general_purpose::STANDARD;
        let mut ranks = serde_json::Map::new();
        for b in 0..=255u8 {
            ranks.insert(engine.encode([b]), json!(b));
        }
        for (bytes, r) in extra {
            ranks.insert(engine.encode(bytes), json!(r));
        }
        json!({"kind": "tiktoken-bpe", "pattern": r" ?\p{L}+|\p{N}|\s+|[^\s\p{L}\p{N}]+", "mergeable_ranks": ranks})
    }

    #[test]
    fn merges_lowest_rank_first() {
        // "abc": (b,c) has rank 256 < (a,b) 257, so b+c merges first; then (a,bc) 258.
        let t = table(&[(b"bc", 256), (b"ab", 257), (b"abc", 258), (b" x", 259)]);
        let bpe = Bpe::from_json(&t, "t").unwrap();
        let p = bpe.encode("abc x abd").unwrap();
        let ids: Vec<i64> = p.iter().map(|p| p.id).collect();
        // "abc" is in the table whole; " x"; " abd": no " a" pair, so ' ', ab, d.
        assert_eq!(ids, vec![258, 259, 32, 257, 100]);
        let spans: Vec<Range<usize>> = p.iter().map(|p| p.bytes.clone()).collect();
        assert_eq!(spans, vec![0..3, 3..5, 5..6, 6..8, 8..9]);
    }

    #[test]
    fn multibyte_characters_split_into_bytes() {
        let bpe = Bpe::from_json(&table(&[]), "t").unwrap();
        let p = bpe.encode("é").unwrap();
        assert_eq!(p.iter().map(|p| p.id).collect::<Vec<_>>(), vec![0xc3, 0xa9]);
    }

    #[test]
    fn a_table_without_every_byte_is_refused() {
        let mut t = table(&[]);
        t["mergeable_ranks"].as_object_mut().unwrap().remove("AA==");
        let e = Bpe::from_json(&t, "tok.json").err().unwrap().to_string();
        assert!(e.contains("tok.json") && e.contains("0x00"), "{e}");
    }
}
