//! Normalisations. BatchNormalization (inference; docs/RULES.md, "BatchNormalization,
//! LayerNormalization & co"): the reference arithmetic reduces to `R * [X * w != 0]` with
//! `w = gamma / sqrt(var^2 + eps)` (the reference squares the variance); the mask is what is
//! left of it. LRP's `X * (R / (X w + 1e-9)) * w` equals the same mask up to ~1e-9, so every
//! LRP variant uses it. Gradients are scaled by the op's own derivative
//! `gamma / sqrt(var + eps)`. LayerNormalization and RMSNormalization (and their decomposed
//! forms, canonicalised in `crate::canon`): docs/RULES.md, "Attention models".

use std::collections::HashMap;

use super::{first_only, input, rel0, Cx, Rule};
use crate::error::Result;
use crate::onnx::attr;
use crate::onnx::proto::NodeProto;

pub fn register(reg: &mut HashMap<&'static str, &'static dyn Rule>) {
    reg.insert("BatchNormalization", &BatchNorm);
    reg.insert("LayerNormalization", &LayerNorm);
    reg.insert("RMSNormalization", &RmsNorm);
    for op in ["InstanceNormalization", "GroupNormalization", "LRN"] {
        reg.insert(op, &SampleNorm);
    }
}

/// The axes `axis..rank` a LayerNormalization / RMSNormalization normalises over (`axis`
/// defaults to -1), as non-negative indices of the full tensor; never the batch axis.
fn norm_axes(cx: &Cx, node: &NodeProto, x: &str) -> Result<Vec<i64>> {
    let rank = cx.dims(node, x)?.len();
    let axis = attr::int(node, "axis")?.unwrap_or(-1);
    let a = super::norm_axis(node, axis, rank)? as i64;
    if cx.is_batch_axis(a) {
        return Err(super::unsupported_use(
            node,
            "it normalises over the batch axis",
        ));
    }
    Ok((a..rank as i64).collect())
}

/// The optional constant input `slot` (scale or bias), or None when absent.
fn optional(node: &NodeProto, slot: usize) -> Option<String> {
    node.input.get(slot).filter(|s| !s.is_empty()).cloned()
}

/// `(x - mean) / sd` and `sd = sqrt(var + eps)` over `axes`, recomputed from x.
fn standardise(cx: &mut Cx, node: &NodeProto, x: &str, axes: &[i64]) -> Result<(String, String)> {
    let eps = attr::float(node, "epsilon")?.unwrap_or(1e-5);
    let mean = cx.e.reduce("ReduceMean", x, axes, true, "mean")?;
    let c = cx.e.sub(x, &mean, "centred")?;
    let c2 = cx.e.mul(&c, &c, "centred.sq")?;
    let var = cx.e.reduce("ReduceMean", &c2, axes, true, "var")?;
    let e = cx.e.scalar(eps);
    let v = cx.e.add(&var, &e, "var.eps")?;
    let sd = cx.e.op("Sqrt", "sd", &[&v], vec![])?;
    let xh = cx.e.div(&c, &sd, "xhat")?;
    Ok((xh, sd))
}

/// The gradient through `xh = x / s` (`centred`: `xh = (x - mean) / s`) with `s` the
/// normalising statistic over `axes`, given `g` (the output gradient times the scale):
/// `(g [- mean(g)] - xh mean(g xh)) / s`.
fn norm_gradient(
    cx: &mut Cx,
    g: &str,
    xh: &str,
    s: &str,
    axes: &[i64],
    centred: bool,
) -> Result<String> {
    let gx = cx.e.mul(g, xh, "g.xhat")?;
    let mx = cx.e.reduce("ReduceMean", &gx, axes, true, "g.xhat.mean")?;
    let p = cx.e.mul(xh, &mx, "proj")?;
    let d = if centred {
        let m = cx.e.reduce("ReduceMean", g, axes, true, "g.mean")?;
        cx.e.sub(g, &m, "g.centred")?
    } else {
        g.to_string()
    };
    let d = cx.e.sub(&d, &p, "g.tangent")?;
    cx.e.div(&d, s, "grad")
}

/// LayerNormalization `y = gamma (x - mean) / sd + beta` over the trailing axes (the op, and
/// the decomposed form `crate::canon` recognises as one).
/// - RAP and the LRP variants: relevance passes unchanged, the statistics held constant
///   (docs/RULES.md, "Normalisations").
/// - AttnLRP: `sd` held fixed, the rest is linear in x: the epsilon rule through it,
///   `R_x = x (g - mean(g))` with `g = gamma R / (sd stab(y))`.
/// - Gradient: the full derivative, `(gg - mean(gg) - xh mean(gg xh)) / sd`, `gg = gamma g`.
struct LayerNorm;

impl Rule for LayerNorm {
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        if !cx.method.is_gradient() && !cx.method.is_attnlrp() {
            return Ok(first_only(r, node.input.len()));
        }
        let x = input(node, 0)?.to_string();
        let axes = norm_axes(cx, node, &x)?;
        let (xh, sd) = standardise(cx, node, &x, &axes)?;
        let g = if cx.method.is_attnlrp() {
            cx.eps_div(&r, &node.output[0], "s")?
        } else {
            r
        };
        let g = match optional(node, 1) {
            Some(gamma) => cx.e.mul(&g, &gamma, "g.scaled")?,
            None => g,
        };
        let out = if cx.method.is_attnlrp() {
            let g = cx.e.div(&g, &sd, "g.sd")?;
            let m = cx.e.reduce("ReduceMean", &g, &axes, true, "g.mean")?;
            let back = cx.e.sub(&g, &m, "back")?;
            cx.e.mul(&x, &back, "in")?
        } else {
            norm_gradient(cx, &g, &xh, &sd, &axes, true)?
        };
        Ok(first_only(out, node.input.len()))
    }
}

/// RMSNormalization `y = w x / sqrt(mean(x^2) + eps)` over the trailing axes (the opset 23
/// op, and the decomposed form `crate::canon` recognises as one). Every relevance method
/// passes relevance unchanged (AttnLRP's rule: the root mean square held fixed leaves an
/// element-wise rescaling, whose epsilon rule is the identity). Gradient: the full
/// derivative `(gw - xh mean(gw xh)) / rms`, `xh = x / rms`.
struct RmsNorm;

impl Rule for RmsNorm {
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        if !cx.method.is_gradient() {
            return Ok(first_only(r, node.input.len()));
        }
        let x = input(node, 0)?.to_string();
        let axes = norm_axes(cx, node, &x)?;
        let eps = attr::float(node, "epsilon")?.unwrap_or(1e-5);
        let x2 = cx.e.mul(&x, &x, "sq")?;
        let ms = cx.e.reduce("ReduceMean", &x2, &axes, true, "ms")?;
        let e = cx.e.scalar(eps);
        let ms = cx.e.add(&ms, &e, "ms.eps")?;
        let rms = cx.e.op("Sqrt", "rms", &[&ms], vec![])?;
        let xh = cx.e.div(&x, &rms, "xhat")?;
        let g = match optional(node, 1) {
            Some(w) => cx.e.mul(&r, &w, "g.scaled")?,
            None => r,
        };
        let out = norm_gradient(cx, &g, &xh, &rms, &axes, false)?;
        Ok(first_only(out, node.input.len()))
    }
}

/// Normalisations by statistics of the sample itself (Instance/Group normalisation, LRN): relevance passes unchanged, as through BatchNormalization, treating
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
