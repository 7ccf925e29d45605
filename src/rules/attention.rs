//! The ops of attention blocks: MatMul of two activations and a Softmax inside the network.
//!
//! `Y = A B` with both factors activations is bilinear. When one factor comes out of a gate
//! (the Softmax of attention weights), it is held fixed and the other takes all the relevance
//! by the z-rule: `R_B = B * (A^T sd(R, Y))`; otherwise each factor takes half of its z-rule
//! share with the other held fixed. A Softmax inside the network passes relevance unchanged
//! (it is reached only where its output is not used as a gate).
//!
//! AttnLRP (docs/RULES.md, "attnlrp") splits every product of two activations equally by the
//! epsilon rule, the attention weights included, and takes the Softmax by its Taylor rule.

use std::collections::HashMap;

use super::{first_only, input, rel0, unsupported_use, Cx, Rule};
use crate::analysis::Sign;
use crate::error::Result;
use crate::onnx::attr::make_ints;
use crate::onnx::proto::NodeProto;

pub fn register(reg: &mut HashMap<&'static str, &'static dyn Rule>) {
    reg.insert("Softmax", &InnerSoftmax);
}

/// `Y = A B` of two activations (called by the linear rule when the weight is not constant).
pub fn bilinear(cx: &mut Cx, node: &NodeProto, r: &str) -> Result<Vec<Option<String>>> {
    let (a, b) = (input(node, 0)?.to_string(), input(node, 1)?.to_string());
    let y = node.output[0].clone();
    let (ad, bd) = (cx.sample_dims(node, &a)?, cx.sample_dims(node, &b)?);
    if ad.len() < 2 || ad.len() != bd.len() {
        return Err(unsupported_use(
            node,
            "a product of activations needs both of the same rank >= 3 ([batch, ..., m, n])",
        ));
    }
    let rank = ad.len() as i64 + 1;
    let mut perm: Vec<i64> = (0..rank).collect();
    perm.swap(rank as usize - 1, rank as usize - 2);
    let t = |cx: &mut Cx, v: &str, part: &str| {
        cx.e.op("Transpose", part, &[v], vec![make_ints("perm", &perm)])
    };
    if cx.method.is_gradient() {
        let bt = t(cx, &b, "b.t")?;
        let at = t(cx, &a, "a.t")?;
        let ga = cx.e.op("MatMul", "grad.a", &[r, &bt], vec![])?;
        let gb = cx.e.op("MatMul", "grad.b", &[&at, r], vec![])?;
        return Ok(vec![Some(ga), Some(gb)]);
    }
    // AttnLRP splits every product equally, the attention weights included (the `_` arm
    // below with the epsilon rule's division: `R_A = A ((R / 2 stab(Y)) B^T)`, and so for B).
    let (ga, gb) = if cx.method.is_attnlrp() {
        (false, false)
    } else {
        (
            super::elementwise::is_gate(cx, &a),
            super::elementwise::is_gate(cx, &b),
        )
    };
    // Generalised RAP: signed operands enter by magnitude (the gate, >= 0, as it is), so each
    // share `|a_ik| |b_kj| / sum_k |a_ik| |b_kj|` lies in [0, 1] and the rule conserves.
    let (a, b, y) = if cx.method.is_robust() {
        let mut changed = false;
        let mut mag = |cx: &mut Cx, v: &str, gate: bool, part: &str| -> Result<String> {
            if gate || cx.sign(v) == Sign::NonNeg {
                return Ok(v.to_string());
            }
            changed = true;
            cx.e.op("Abs", part, &[v], vec![])
        };
        let a2 = mag(cx, &a, ga, "a.abs")?;
        let b2 = mag(cx, &b, gb, "b.abs")?;
        let y2 = if changed {
            cx.e.op("MatMul", "y.abs", &[&a2, &b2], vec![])?
        } else {
            y
        };
        (a2, b2, y2)
    } else {
        (a, b, y)
    };
    let s = cx.z_div(r, &y, "s")?;
    let to_a = |cx: &mut Cx, s: &str| -> Result<String> {
        let bt = t(cx, &b, "b.t")?;
        let back = cx.e.op("MatMul", "back.a", &[s, &bt], vec![])?;
        cx.e.mul(&a, &back, "in.a")
    };
    let to_b = |cx: &mut Cx, s: &str| -> Result<String> {
        let at = t(cx, &a, "a.t")?;
        let back = cx.e.op("MatMul", "back.b", &[&at, s], vec![])?;
        cx.e.mul(&b, &back, "in.b")
    };
    Ok(match (ga, gb) {
        (true, false) => vec![None, Some(to_b(cx, &s)?)],
        (false, true) => vec![Some(to_a(cx, &s)?), None],
        _ => {
            let h = cx.e.scalar(0.5);
            let half = cx.e.mul(&s, &h, "s.half")?;
            vec![Some(to_a(cx, &half)?), Some(to_b(cx, &half)?)]
        }
    })
}

/// Softmax: at the model output it is skipped (the logits are explained, see the activation
/// rules); inside the network relevance passes, and its output is non-negative.
struct InnerSoftmax;

impl Rule for InnerSoftmax {
    fn kind(&self) -> super::Kind {
        super::Kind::OutputNormalizer
    }
    fn sign(&self, _: &NodeProto, _: &[Sign]) -> Sign {
        Sign::NonNeg
    }
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        if cx.method.is_gradient() {
            // y * (g - sum(y g)) along the axis.
            let y = node.output[0].clone();
            let rank = cx.sample_dims(node, &y)?.len() as i64 + 1;
            let axis = crate::onnx::attr::int(node, "axis")?.unwrap_or(-1);
            let axis = if axis < 0 { axis + rank } else { axis };
            let yg = cx.e.mul(&y, &r, "yg")?;
            let s = cx.e.reduce("ReduceSum", &yg, &[axis], true, "sum")?;
            let d = cx.e.sub(&r, &s, "centered")?;
            let g = cx.e.mul(&y, &d, "grad")?;
            return Ok(first_only(g, node.input.len()));
        }
        if cx.method.is_attnlrp() {
            // AttnLRP's Taylor rule: R_x = x~ (R - s sum(R)) along the axis, x~ the logits with
            // the masked ones (s = 0: -inf or a large negative added) set to 0.
            let x = input(node, 0)?.to_string();
            let s = node.output[0].clone();
            let rank = cx.sample_dims(node, &s)?.len() as i64 + 1;
            let axis = crate::onnx::attr::int(node, "axis")?.unwrap_or(-1);
            let axis = if axis < 0 { axis + rank } else { axis };
            if cx.e.opset() < 13 && axis != rank - 1 {
                return Err(unsupported_use(
                    node,
                    "AttnLRP's Softmax rule needs the softmax over the last axis before opset 13",
                ));
            }
            let zero = cx.e.scalar(0.0);
            let masked = cx.e.op("Equal", "masked", &[&s, &zero], vec![])?;
            let xt =
                cx.e.op("Where", "x.unmasked", &[&masked, &zero, &x], vec![])?;
            let total = cx.e.reduce("ReduceSum", &r, &[axis], true, "sum")?;
            let st = cx.e.mul(&s, &total, "s.sum")?;
            let d = cx.e.sub(&r, &st, "centered")?;
            let rx = cx.e.mul(&xt, &d, "in")?;
            return Ok(first_only(rx, node.input.len()));
        }
        Ok(first_only(r, node.input.len()))
    }
}
