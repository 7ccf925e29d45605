//! BatchNormalization (inference): RAP_SPEC.md 3.6. The reference arithmetic reduces to
//! `R * [X * w != 0]` with `w = gamma / sqrt(var^2 + eps)` (the reference squares the
//! variance); the mask is what is left of it. LRP's `X * (R / (X w + 1e-9)) * w` equals the
//! same mask up to ~1e-9, so every LRP variant uses it. Gradients are scaled by the op's own
//! derivative `gamma / sqrt(var + eps)`.

use std::collections::HashMap;

use super::{first_only, input, rel0, Cx, Rule};
use crate::error::Result;
use crate::onnx::attr;
use crate::onnx::proto::NodeProto;

pub fn register(reg: &mut HashMap<&'static str, &'static dyn Rule>) {
    reg.insert("BatchNormalization", &BatchNorm);
    for op in [
        "LayerNormalization",
        "InstanceNormalization",
        "GroupNormalization",
        "LRN",
    ] {
        reg.insert(op, &SampleNorm);
    }
}

/// Normalisations by statistics of the sample itself (LayerNormalization, Instance/Group
/// normalisation, LRN): relevance passes unchanged, as through BatchNormalization, treating
/// the normalising statistics as constants. No gradient rule yet.
struct SampleNorm;

impl Rule for SampleNorm {
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        if cx.method.is_gradient() {
            return Err(super::unsupported_use(
                node,
                "gradient x input has no derivative for this normalisation yet",
            ));
        }
        Ok(first_only(r, node.input.len()))
    }
}

struct BatchNorm;

impl Rule for BatchNorm {
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let x = input(node, 0)?;
        let gamma = input(node, 1)?;
        let var = input(node, 4)?;
        let rank = cx.sample_dims(node, x)?.len() + 1;
        let eps = attr::float(node, "epsilon")?.unwrap_or(1e-5);
        let shape: Vec<i64> = std::iter::once(-1)
            .chain(std::iter::repeat_n(1, rank - 2))
            .collect();
        if cx.method.is_gradient() {
            // The op's own derivative: gamma / sqrt(var + eps), per channel.
            let e = cx.e.scalar(eps);
            let ve = cx.e.add(var, &e, "var_eps")?;
            let sq = cx.e.op("Sqrt", "std", &[&ve], vec![])?;
            let w = cx.e.div(gamma, &sq, "w")?;
            let w = cx.e.reshape(&w, &shape, "w.col")?;
            let g = cx.e.mul(&r, &w, "grad")?;
            return Ok(first_only(g, node.input.len()));
        }
        if cx.method.is_robust() {
            // Generalised RAP: the normalisation is an affine map per channel, its statistics
            // constants; relevance passes unchanged (the official mask `[X w != 0]` drops the
            // relevance of positions where the layer before output exactly 0).
            return Ok(first_only(r, node.input.len()));
        }
        // With every w_c != 0 (known from the constants), [X w != 0] is [X != 0]: no
        // per-channel product on the activation.
        if cx.tuning.sign_masks {
            if let (Some(g), Some(v)) = (cx.constant(gamma), cx.constant(var)) {
                let all_nonzero = g.iter().zip(v.iter()).all(|(&g, &v)| {
                    let w = g / (v * v + eps).sqrt();
                    w != 0.0 && w.is_finite()
                });
                if all_nonzero && g.len() == v.len() {
                    let out = if cx.e.selects() {
                        cx.e.zero_where_zero(x, &r, "masked")?
                    } else {
                        let mask = cx.e.nonzero(x)?;
                        cx.e.mul(&r, &mask, "masked")?
                    };
                    return Ok(first_only(out, node.input.len()));
                }
            }
        }
        let v2 = cx.e.mul(var, var, "var2")?;
        let e = cx.e.scalar(eps);
        let v2e = cx.e.add(&v2, &e, "var2_eps")?;
        let sq = cx.e.op("Sqrt", "std", &[&v2e], vec![])?;
        let w = cx.e.div(gamma, &sq, "w")?;
        let w = cx.e.reshape(&w, &shape, "w.col")?;
        let xw = cx.e.mul(x, &w, "xw")?;
        let mask = cx.e.nonzero(&xw)?;
        let out = cx.e.mul(&r, &mask, "masked")?;
        Ok(first_only(out, node.input.len()))
    }
}
