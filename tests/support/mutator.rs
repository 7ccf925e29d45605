//! Hostile mutants of ONNX files, and one in-process run of onnx-rap over a mutant (load,
//! inspect, compile). Shared by the mutation test (`tests/mutation.rs`) and the long-running
//! fuzzer (`examples/fuzz.rs`, `scripts/fuzz.sh`); no dependency beyond onnx-rap.
//!
//! Mutations, 1 to 3 stacked per mutant, half on the raw bytes and half on the protobuf
//! structure (the wire format is parsed into a field tree, one field changed, and the tree
//! written back with every enclosing length fixed, so the mutant reaches past the decoder):
//!
//! - bytes: bit flips, interesting bytes, truncation, a huge varint written over or into the
//!   data, a span duplicated elsewhere, a span zeroed;
//! - structure: an integer field set to an interesting value (0, -1, 2^31, 2^32, 2^63, a huge
//!   axis, +-1, ...), a field deleted, duplicated or moved, a bytes field zeroed, cut or
//!   emptied, a float field set to NaN, inf or an extreme.
#![allow(dead_code)]

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

/// SplitMix64: small, fast, and the same sequence everywhere for a seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }
}

// ---------------------------------------------------------------------------------------
// The protobuf wire format as a tree.

#[derive(Clone, Debug)]
enum Val {
    Varint(u64),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
    Bytes(Vec<u8>),
    Msg(Vec<Field>),
}

#[derive(Clone, Debug)]
struct Field {
    num: u64,
    val: Val,
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Parse a whole buffer as fields; None unless every byte is accounted for.
fn parse(buf: &[u8], depth: usize) -> Option<Vec<Field>> {
    let mut pos = 0;
    let mut fields = Vec::new();
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        if num == 0 || num > 1 << 20 {
            return None;
        }
        let val = match wire {
            0 => Val::Varint(read_varint(buf, &mut pos)?),
            1 => {
                let b: [u8; 8] = buf.get(pos..pos + 8)?.try_into().ok()?;
                pos += 8;
                Val::Fixed64(b)
            }
            5 => {
                let b: [u8; 4] = buf.get(pos..pos + 4)?.try_into().ok()?;
                pos += 4;
                Val::Fixed32(b)
            }
            2 => {
                let len = read_varint(buf, &mut pos)? as usize;
                let body = buf.get(pos..pos.checked_add(len)?)?;
                pos += len;
                // Nested message when the body parses as one (strings rarely do).
                match (depth < 12 && !body.is_empty())
                    .then(|| parse(body, depth + 1))
                    .flatten()
                {
                    Some(sub) => Val::Msg(sub),
                    None => Val::Bytes(body.to_vec()),
                }
            }
            _ => return None,
        };
        fields.push(Field { num, val });
    }
    Some(fields)
}

fn encode(fields: &[Field], out: &mut Vec<u8>) {
    for f in fields {
        let wire = match f.val {
            Val::Varint(_) => 0,
            Val::Fixed64(_) => 1,
            Val::Bytes(_) | Val::Msg(_) => 2,
            Val::Fixed32(_) => 5,
        };
        write_varint(out, (f.num << 3) | wire);
        match &f.val {
            Val::Varint(v) => write_varint(out, *v),
            Val::Fixed64(b) => out.extend_from_slice(b),
            Val::Fixed32(b) => out.extend_from_slice(b),
            Val::Bytes(b) => {
                write_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
            Val::Msg(sub) => {
                let mut body = Vec::new();
                encode(sub, &mut body);
                write_varint(out, body.len() as u64);
                out.extend_from_slice(&body);
            }
        }
    }
}

fn count(fields: &[Field]) -> usize {
    fields
        .iter()
        .map(|f| match &f.val {
            Val::Msg(sub) => 1 + count(sub),
            _ => 1,
        })
        .sum()
}

/// Call `f` on the field list holding the `k`-th field (preorder) and its index there.
fn at_mut(
    fields: &mut Vec<Field>,
    k: &mut usize,
    f: &mut dyn FnMut(&mut Vec<Field>, usize),
) -> bool {
    for i in 0..fields.len() {
        if *k == 0 {
            f(fields, i);
            return true;
        }
        *k -= 1;
        if let Val::Msg(sub) = &mut fields[i].val {
            if at_mut(sub, k, f) {
                return true;
            }
        }
    }
    false
}

const INTERESTING: [u64; 20] = [
    0,
    1,
    2,
    3,
    7,
    0x7f,
    0x80,
    0xff,
    0xffff,
    (1 << 31) - 1,
    1 << 31,
    1 << 32,
    (1 << 32) + 1,
    1 << 40,
    515_396_075_521,
    (1 << 62) + 3,
    1 << 63,
    u64::MAX,
    u64::MAX - 1,
    u64::MAX - 3,
];

fn interesting_f32(rng: &mut Rng) -> f32 {
    [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        0.0,
        1e38,
        -1e38,
        1e-45,
        65536.0,
        -1.0,
    ][rng.below(10)]
}

fn mutate_tree(fields: &mut Vec<Field>, rng: &mut Rng) {
    let n = count(fields);
    if n == 0 {
        return;
    }
    let mut k = rng.below(n);
    let choice = rng.next();
    at_mut(fields, &mut k, &mut |list, i| {
        let op = choice % 16;
        match op {
            0 => {
                list.remove(i);
                return;
            }
            1 => {
                let dup = list[i].clone();
                list.insert(i, dup);
                return;
            }
            2 if list.len() > 1 => {
                let j = (choice >> 8) as usize % list.len();
                list.swap(i, j);
                return;
            }
            3 => {
                list[i].num ^= 1 + (choice >> 8) % 3;
                return;
            }
            _ => {}
        }
        match (&mut list[i].val, op) {
            (Val::Varint(v), _) => {
                *v = match (choice >> 4) % 6 {
                    0 => v.wrapping_add(1),
                    1 => v.wrapping_sub(1),
                    2 => *v ^ (1 << ((choice >> 8) % 64)),
                    3 => choice >> 12,
                    _ => INTERESTING[(choice >> 8) as usize % INTERESTING.len()],
                }
            }
            (Val::Fixed32(b), _) => {
                *b = if op.is_multiple_of(2) {
                    let mut r = Rng(choice);
                    interesting_f32(&mut r).to_le_bytes()
                } else {
                    (INTERESTING[(choice >> 8) as usize % INTERESTING.len()] as u32).to_le_bytes()
                }
            }
            (Val::Fixed64(b), _) => {
                *b = INTERESTING[(choice >> 8) as usize % INTERESTING.len()].to_le_bytes()
            }
            (Val::Bytes(b), _) => match op % 4 {
                0 => b.clear(),
                1 => {
                    let cut = (choice >> 8) as usize % (b.len() + 1);
                    b.truncate(cut);
                }
                2 => b.iter_mut().for_each(|x| *x = 0),
                _ => {
                    let extra = b.clone();
                    b.extend_from_slice(&extra);
                }
            },
            (Val::Msg(sub), _) => match op % 3 {
                0 => sub.clear(),
                1 => {
                    if let Some(last) = sub.last().cloned() {
                        sub.push(last);
                    }
                }
                _ => sub.reverse(),
            },
        }
    });
}

fn mutate_bytes(b: &mut Vec<u8>, rng: &mut Rng) {
    if b.is_empty() {
        b.push(rng.next() as u8);
        return;
    }
    let len = b.len();
    match rng.below(7) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let i = rng.below(len);
            b[i] = [0x00, 0xff, 0x7f, 0x80, 0x01][rng.below(5)];
        }
        2 => b.truncate(rng.below(len)),
        3 => {
            // A huge varint, written over the data or inserted.
            let mut v = Vec::new();
            write_varint(
                &mut v,
                INTERESTING[rng.below(INTERESTING.len())] | (1 << 40),
            );
            let i = rng.below(len);
            if rng.chance(1, 2) {
                for (k, x) in v.into_iter().enumerate() {
                    if let Some(slot) = b.get_mut(i + k) {
                        *slot = x;
                    }
                }
            } else {
                b.splice(i..i, v);
            }
        }
        4 => {
            let i = rng.below(len);
            let n = 1 + rng.below(64.min(len - i));
            let span = b[i..i + n].to_vec();
            let at = rng.below(len);
            b.splice(at..at, span);
        }
        5 => {
            let i = rng.below(len);
            let n = 1 + rng.below(32.min(len - i));
            b[i..i + n].iter_mut().for_each(|x| *x = 0);
        }
        _ => {
            let i = rng.below(len);
            b[i] = rng.next() as u8;
        }
    }
}

/// One mutant of `seed`: 1 to 3 mutations, structural or byte-level.
pub fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        if rng.chance(1, 2) {
            if let Some(mut tree) = parse(&bytes, 0) {
                mutate_tree(&mut tree, rng);
                bytes.clear();
                encode(&tree, &mut bytes);
                continue;
            }
        }
        mutate_bytes(&mut bytes, rng);
    }
    bytes
}

// ---------------------------------------------------------------------------------------
// One run.

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Loaded, inspected and compiled.
    Compiled,
    /// A clean error (exit code 2 or 1 on the command line).
    Refused(String),
    /// A panic: a finding.
    Panic(String),
}

/// Load, inspect and compile `bytes` (a model file that would live in `dir`) in process, as
/// `onnx-rap inspect` and `onnx-rap compile` do; `variant` picks the compile options.
pub fn run(bytes: &[u8], dir: &Path, origin: &str, variant: u64) -> (Outcome, Duration) {
    let t = Instant::now();
    let r = panic::catch_unwind(AssertUnwindSafe(|| -> onnx_rap::Result<()> {
        let proto = onnx_rap::onnx::load_bytes(bytes, dir, origin)?;
        let model = onnx_rap::ir::import(&proto, origin)?;
        let report = onnx_rap::cli::inspect::report_model(&model, origin);
        let _ = onnx_rap::cli::inspect::render(&report);
        let methods = onnx_rap::rules::Method::ALL;
        let opts = onnx_rap::pass::Options {
            method: if variant.is_multiple_of(3) {
                methods[(variant / 3) as usize % methods.len()]
            } else {
                onnx_rap::rules::Method::Rap
            },
            target_input: variant % 5 == 1,
            colormap: variant % 7 == 2,
            ..Default::default()
        };
        let compiled = onnx_rap::pass::compile(&model, &opts, origin)?;
        let out = onnx_rap::ir::export(&compiled)?;
        let _ = onnx_rap::onnx::encode(&out);
        Ok(())
    }));
    let outcome = match r {
        Ok(Ok(())) => Outcome::Compiled,
        Ok(Err(e)) => Outcome::Refused(e.to_string()),
        Err(p) => Outcome::Panic(
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default(),
        ),
    };
    (outcome, t.elapsed())
}

/// The peak resident memory of this process so far (VmHWM), in bytes; 0 where unknown.
pub fn peak_rss() -> u64 {
    onnx_rap::cli::bench::peak_rss_kb() * 1024
}
