//! Ops that select, move or pad values without arithmetic: Transpose, Pad, Slice, Split,
//! Gather with constant indices. Relevance (or gradient) goes back to the positions the values
//! came from: an inverse Transpose, a Slice of the padded relevance, a zero Pad around a
//! slice, the pieces of a Split put back together. Padded or dropped positions carry none.
//! Every shape-like parameter is emitted as a constant.

use std::collections::HashMap;

use super::{first_only, input, norm_axis, rel0, unsupported_use, Cx, Kind, Rule};
use crate::analysis::{common_sign, first_input_sign, Sign};
use crate::error::Result;
use crate::onnx::attr::{self, make_int, make_ints};
use crate::onnx::proto::NodeProto;

pub fn register(reg: &mut HashMap<&'static str, &'static dyn Rule>) {
    reg.insert("Transpose", &Transpose);
    reg.insert("Pad", &Pad);
    reg.insert("Slice", &Slice);
    reg.insert("Split", &Split);
    reg.insert("Gather", &Gather);
}

struct Transpose;
struct Pad;
struct Slice;
struct Split;
struct Gather;

/// Integer values of a constant input, or of an attribute for older opsets.
fn ints(cx: &Cx, node: &NodeProto, slot: usize, name: &str) -> Result<Option<Vec<i64>>> {
    if let Some(t) = node.input.get(slot).filter(|s| !s.is_empty()) {
        return match cx.constant(t) {
            Some(a) => Ok(Some(a.iter().map(|&v| v as i64).collect())),
            None => Err(unsupported_use(
                node,
                &format!("its {name} are computed at run time; onnx-rap needs them constant"),
            )),
        };
    }
    attr::ints(node, name)
}

/// Zero-pad `r` (rank `rank`) by `begin` / `end` per axis.
pub(super) fn zero_pad(
    cx: &mut Cx,
    r: &str,
    begin: &[i64],
    end: &[i64],
    part: &str,
) -> Result<String> {
    if begin.iter().chain(end).all(|&p| p == 0) {
        return Ok(r.to_string());
    }
    let pads: Vec<i64> = begin.iter().chain(end).copied().collect();
    if cx.e.opset() >= 11 {
        let p =
            cx.e.const_i64(&format!("{part}.pads"), &[pads.len() as i64], &pads);
        cx.e.op("Pad", part, &[r, &p], vec![])
    } else {
        cx.e.op("Pad", part, &[r], vec![make_ints("pads", &pads)])
    }
}

/// `r[begin..begin+len]` per axis; axis 0 is left whole where its `len` is -1 (the batch).
pub(super) fn crop(cx: &mut Cx, r: &str, begin: &[i64], len: &[i64], part: &str) -> Result<String> {
    let axes: Vec<i64> = (0..begin.len() as i64)
        .filter(|&a| a > 0 || len[0] >= 0)
        .collect();
    let starts: Vec<i64> = axes.iter().map(|&a| begin[a as usize]).collect();
    let ends: Vec<i64> = axes
        .iter()
        .map(|&a| begin[a as usize] + len[a as usize])
        .collect();
    let k = axes.len() as i64;
    if cx.e.opset() >= 10 {
        let s = cx.e.const_i64(&format!("{part}.starts"), &[k], &starts);
        let e = cx.e.const_i64(&format!("{part}.ends"), &[k], &ends);
        let a = cx.e.const_i64(&format!("{part}.axes"), &[k], &axes);
        cx.e.op("Slice", part, &[r, &s, &e, &a], vec![])
    } else {
        cx.e.op(
            "Slice",
            part,
            &[r],
            vec![
                make_ints("starts", &starts),
                make_ints("ends", &ends),
                make_ints("axes", &axes),
            ],
        )
    }
}

impl Rule for Transpose {
    fn kind(&self) -> Kind {
        Kind::ShapeOnly
    }
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        first_input_sign(ins)
    }
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let rank = cx.dims(node, input(node, 0)?)?.len();
        let perm = attr::ints(node, "perm")?.unwrap_or_else(|| (0..rank as i64).rev().collect());
        let mut inv = vec![-1i64; rank];
        for (i, &p) in perm.iter().enumerate() {
            match usize::try_from(p).ok().and_then(|p| inv.get_mut(p)) {
                Some(slot) if *slot < 0 && perm.len() == rank => *slot = i as i64,
                _ => {
                    return Err(unsupported_use(
                        node,
                        &format!("perm {perm:?} is not a permutation of {rank} axes"),
                    ))
                }
            }
        }
        if perm.first() != Some(&0) && !cx.e.single_sample() {
            return Err(unsupported_use(node, "it moves the batch axis"));
        }
        let out =
            cx.e.op("Transpose", "in", &[&r], vec![make_ints("perm", &inv)])?;
        Ok(first_only(out, node.input.len()))
    }
}

impl Rule for Pad {
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        first_input_sign(ins)
    }
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let x = input(node, 0)?;
        let dims = cx.dims(node, x)?;
        let rank = dims.len();
        let mode = attr::string(node, "mode")?.unwrap_or_else(|| "constant".into());
        if !matches!(mode.as_str(), "constant" | "reflect" | "edge") {
            return Err(unsupported_use(
                node,
                &format!("mode '{mode}' (constant, reflect and edge are supported)"),
            ));
        }
        let pads =
            ints(cx, node, 1, "pads")?.ok_or_else(|| unsupported_use(node, "it has no pads"))?;
        let axes: Vec<i64> = match node.input.get(3).filter(|s| !s.is_empty()) {
            Some(_) => ints(cx, node, 3, "axes")?.unwrap_or_default(),
            None => (0..rank as i64).collect(),
        };
        let k = axes.len();
        if pads.len() != 2 * k || pads.iter().any(|&p| p < 0) {
            return Err(unsupported_use(node, "negative or malformed pads"));
        }
        let mut begin = vec![0i64; rank];
        let mut end = vec![0i64; rank];
        for (j, &a) in axes.iter().enumerate() {
            let a = norm_axis(node, a, rank)?;
            if cx.is_batch_axis(a as i64) && (pads[j] != 0 || pads[j + k] != 0) {
                return Err(unsupported_use(node, "it pads the batch axis"));
            }
            begin[a] = pads[j];
            end[a] = pads[j + k];
        }
        if mode == "constant" {
            // The padded positions hold the pad value, not input: they carry no relevance.
            let out = crop(cx, &r, &begin, &dims, "in")?;
            return Ok(first_only(out, node.input.len()));
        }
        // Reflect and edge padding copy input values: each copy's relevance goes back to the
        // value it copies (the gradient of the padding, and conserving). One axis at a time.
        let mut padded: Vec<i64> = (0..rank)
            .map(|a| {
                if dims[a] < 0 {
                    dims[a]
                } else {
                    dims[a] + begin[a] + end[a]
                }
            })
            .collect();
        let mut out = r;
        for a in 0..rank {
            if begin[a] == 0 && end[a] == 0 {
                continue;
            }
            out = fold_copies(
                cx,
                node,
                &out,
                &padded,
                a,
                (begin[a], end[a]),
                dims[a],
                &mode,
            )?;
            padded[a] = dims[a];
        }
        Ok(first_only(out, node.input.len()))
    }
}

/// Relevance `r` over an axis `a` padded by `(b, e)` around `d` input positions (`shape`: the
/// current shape of `r`), folded back onto the `d` positions: the middle as it is, plus each
/// padded position's relevance at the input position it copies (edge: the first or last;
/// reflect: mirrored about them).
#[allow(clippy::too_many_arguments)]
fn fold_copies(
    cx: &mut Cx,
    node: &NodeProto,
    r: &str,
    shape: &[i64],
    a: usize,
    (b, e): (i64, i64),
    d: i64,
    mode: &str,
) -> Result<String> {
    let rank = shape.len();
    if mode == "reflect" && (b >= d || e >= d) {
        return Err(unsupported_use(
            node,
            "reflect padding wider than the axis it mirrors",
        ));
    }
    let at = |pos: i64| {
        let mut v = vec![0i64; rank];
        v[a] = pos;
        v
    };
    let len = |n: i64| {
        let mut v = shape.to_vec();
        v[a] = n;
        v
    };
    let part = format!("axis{a}");
    let mut total = crop(cx, r, &at(b), &len(d), &format!("{part}.middle"))?;
    for (side, width) in [("begin", b), ("end", e)] {
        if width == 0 {
            continue;
        }
        let p = format!("{part}.{side}");
        // Where the strip sits in `r`, and where its relevance goes in the input.
        let strip_start = if side == "begin" { 0 } else { b + d };
        let copies = if mode == "edge" {
            let strip = crop(cx, r, &at(strip_start), &len(width), &format!("{p}.strip"))?;
            let sum = cx.e.reduce("ReduceSum", &strip, &[a as i64], true, &p)?;
            let to = if side == "begin" { 0 } else { d - 1 };
            zero_pad(cx, &sum, &at(to), &at(d - 1 - to), &format!("{p}.place"))?
        } else {
            // Mirrored: padded position b - j copies input j (begin), b + d + k copies
            // input d - 2 - k (end); gathered in input order.
            let (idx, to): (Vec<i64>, i64) = if side == "begin" {
                ((1..=width).map(|j| b - j).collect(), 1)
            } else {
                (
                    (d - 1 - width..d - 1)
                        .map(|j| b + d + (d - 2 - j))
                        .collect(),
                    d - 1 - width,
                )
            };
            let ix = cx.e.const_i64(&format!("{p}.index"), &[width], &idx);
            let g = cx.e.op(
                "Gather",
                &format!("{p}.mirror"),
                &[r, &ix],
                vec![make_int("axis", a as i64)],
            )?;
            zero_pad(cx, &g, &at(to), &at(d - to - width), &format!("{p}.place"))?
        };
        total = cx.e.add(&total, &copies, &format!("{p}.add"))?;
    }
    Ok(total)
}

impl Rule for Slice {
    fn kind(&self) -> Kind {
        Kind::ShapeOnly
    }
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        first_input_sign(ins)
    }
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let x = input(node, 0)?;
        let dims = cx.dims(node, x)?;
        let rank = dims.len();
        let starts = ints(cx, node, 1, "starts")?
            .ok_or_else(|| unsupported_use(node, "it has no starts"))?;
        let ends =
            ints(cx, node, 2, "ends")?.ok_or_else(|| unsupported_use(node, "it has no ends"))?;
        let axes = ints(cx, node, 3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = ints(cx, node, 4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
        let n = axes.len();
        if starts.len() != n || ends.len() != n || steps.len() != n {
            return Err(unsupported_use(
                node,
                "its starts, ends, axes and steps differ in length",
            ));
        }
        let mut begin = vec![0i64; rank];
        let mut end = vec![0i64; rank];
        for (j, &a) in axes.iter().enumerate() {
            let a = norm_axis(node, a, rank)?;
            if cx.is_batch_axis(a as i64) {
                return Err(unsupported_use(node, "it slices the batch axis"));
            }
            if steps[j] != 1 {
                return Err(unsupported_use(node, "a step other than 1"));
            }
            let d = dims[a];
            let clamp = |v: i64| {
                if v < 0 {
                    v.saturating_add(d).max(0)
                } else {
                    v.min(d)
                }
            };
            let (s, e) = (clamp(starts[j]), clamp(ends[j]));
            begin[a] = s;
            end[a] = d - e.max(s);
        }
        // The slice's relevance goes back to its place; the rest of the input gets zero.
        let out = zero_pad(cx, &r, &begin, &end, "in")?;
        Ok(first_only(out, node.input.len()))
    }
}

impl Rule for Split {
    fn kind(&self) -> Kind {
        Kind::ShapeOnly
    }
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        first_input_sign(ins)
    }
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let x = input(node, 0)?;
        let dims = cx.dims(node, x)?;
        let rank = dims.len() as i64;
        let axis = norm_axis(node, attr::int(node, "axis")?.unwrap_or(0), dims.len())? as i64;
        if cx.is_batch_axis(axis) {
            return Err(unsupported_use(node, "it splits the batch axis"));
        }
        let ax = axis as usize;
        let total = dims[ax];
        // Each piece's relevance, zero-padded to the full axis, summed.
        let mut offset = 0i64;
        let mut sum: Option<String> = None;
        for (k, (out, r)) in node.output.iter().zip(rel).enumerate() {
            let len = match cx.dims(node, out)?.get(ax) {
                Some(&l) if l >= 0 && offset + l <= total => l,
                _ => return Err(unsupported_use(node, "its pieces do not fit the input")),
            };
            if let Some(r) = r {
                let mut begin = vec![0i64; rank as usize];
                let mut end = vec![0i64; rank as usize];
                begin[ax] = offset;
                end[ax] = total - offset - len;
                let p = zero_pad(cx, r, &begin, &end, &format!("piece{k}"))?;
                sum = Some(match sum {
                    None => p,
                    Some(s) => cx.e.add(&s, &p, &format!("sum{k}"))?,
                });
            }
            offset += len;
        }
        let sum = sum.ok_or_else(|| unsupported_use(node, "no piece carries relevance"))?;
        Ok(first_only(sum, node.input.len()))
    }
}

impl Rule for Gather {
    fn kind(&self) -> Kind {
        Kind::ShapeOnly
    }
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        common_sign(&ins[..1])
    }
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let x = input(node, 0)?;
        let idx_name = input(node, 1)?;
        let dims = cx.dims(node, x)?;
        let rank = dims.len() as i64;
        let axis = norm_axis(node, attr::int(node, "axis")?.unwrap_or(0), dims.len())? as i64;
        if cx.is_batch_axis(axis) {
            return Err(unsupported_use(node, "it gathers along the batch axis"));
        }
        let idx = cx
            .constant(idx_name)
            .ok_or_else(|| unsupported_use(node, "its indices are computed at run time"))?;
        let d = dims[axis as usize];
        if let Some(bad) = idx.iter().find(|&&v| !(v >= -(d as f32) && v < d as f32)) {
            return Err(unsupported_use(
                node,
                &format!("index {bad} is out of range for an axis of {d}"),
            ));
        }
        cx.facts.budget.check(&[d, idx.len() as i64], &|| {
            format!(
                "node '{}' (Gather): the inverse of its indices",
                node.name()
            )
        })?;
        let norm = |v: f32| {
            let v = v as i64;
            if v < 0 {
                v + d
            } else {
                v
            }
        };
        let out = if idx.ndim() == 0 {
            // One index: the axis disappeared; put it back and pad around the position.
            let i = norm(idx.iter().next().copied().unwrap_or(0.0));
            let u = if cx.e.opset() >= 13 {
                let a = cx.e.const_i64("axis", &[1], &[axis]);
                cx.e.op("Unsqueeze", "restore", &[&r, &a], vec![])?
            } else {
                cx.e.op(
                    "Unsqueeze",
                    "restore",
                    &[&r],
                    vec![make_ints("axes", &[axis])],
                )?
            };
            let mut begin = vec![0i64; rank as usize];
            let mut end = vec![0i64; rank as usize];
            begin[axis as usize] = i;
            end[axis as usize] = d - 1 - i;
            zero_pad(cx, &u, &begin, &end, "in")?
        } else {
            // Several indices, of any rank: flattened to one axis of K positions.
            let flat: Vec<i64> = idx.iter().map(|&v| norm(v)).collect();
            let k = flat.len() as i64;
            let ax = axis as usize;
            let r = if idx.ndim() == 1 {
                r
            } else {
                let out_dims = cx.dims(node, &node.output[0])?;
                let tail = &out_dims[ax + idx.ndim()..];
                let shape: Vec<i64> = out_dims[..ax]
                    .iter()
                    .copied()
                    .chain(std::iter::once(k))
                    .chain(tail.iter().copied())
                    .collect();
                cx.e.reshape(&r, &shape, "flat")?
            };
            let mut reader = vec![-1i64; d as usize];
            let mut repeats = false;
            for (j, &p) in flat.iter().enumerate() {
                if reader[p as usize] >= 0 {
                    repeats = true;
                }
                reader[p as usize] = j as i64;
            }
            if !repeats {
                // Each input position takes the relevance of the one output that read it;
                // positions nobody read take the zero appended at the end of the axis.
                let mut end = vec![0i64; rank as usize];
                end[ax] = 1;
                let ext = zero_pad(cx, &r, &vec![0i64; rank as usize], &end, "ext")?;
                let inv: Vec<i64> = reader.iter().map(|&j| if j < 0 { k } else { j }).collect();
                let inv = cx.e.const_i64("reader", &[d], &inv);
                cx.e.op("Gather", "in", &[&ext, &inv], vec![make_int("axis", axis)])?
            } else {
                // Repeated indices: a one-hot matrix [K, D] scatters them back (repeats add).
                let mut hot = vec![0f32; (k * d) as usize];
                for (j, &p) in flat.iter().enumerate() {
                    hot[j * d as usize + p as usize] = 1.0;
                }
                let hot = cx.e.const_f32("onehot", &[k, d], &hot);
                let last = rank - 1;
                let mut perm: Vec<i64> = (0..rank).collect();
                perm.swap(ax, last as usize);
                let t = cx.e.op(
                    "Transpose",
                    "to_last",
                    &[&r],
                    vec![make_ints("perm", &perm)],
                )?;
                let m = cx.e.op("MatMul", "scatter", &[&t, &hot], vec![])?;
                cx.e.op("Transpose", "in", &[&m], vec![make_ints("perm", &perm)])?
            }
        };
        Ok(first_only(out, node.input.len()))
    }
}
