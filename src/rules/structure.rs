//! Ops that combine or reshape tensors: Add (the residual z-rule, docs/RULES.md "Residual joins"), Concat
//! (z-rule per piece), and Flatten / Reshape / Squeeze / Unsqueeze (relevance is reshaped back,
//! 3.7). Gradients: Add copies, Concat splits.

use std::collections::HashMap;

use super::{input, rel0, unsupported_use, Cx, Kind, Rule};
use crate::analysis::{common_sign, first_input_sign, Sign};
use crate::error::Result;
use crate::onnx::attr;
use crate::onnx::proto::NodeProto;

pub fn register(reg: &mut HashMap<&'static str, &'static dyn Rule>) {
    reg.insert("Add", &Add);
    reg.insert("Sum", &Sum);
    reg.insert("Shape", &ShapeOf);
    reg.insert("Size", &ShapeOf);
    reg.insert("Concat", &Concat);
    reg.insert("Expand", &Expand);
    for op in ["Flatten", "Reshape", "Squeeze", "Unsqueeze"] {
        reg.insert(op, &Reshape);
    }
}

struct Add;
struct Sum;

/// The z-rule over the summands `xs` of `y` (those with `live` set): `x_k * r / y`, the
/// division RAP's safe one or AttnLRP's stabilised one ([`Cx::z_div`]); a summand not live
/// gets nothing. `part(k)` names summand k's share.
fn z_shares(
    cx: &mut Cx,
    r: &str,
    y: &str,
    xs: &[&str],
    live: &[bool],
    part: &dyn Fn(usize) -> String,
) -> Result<Vec<Option<String>>> {
    let s = cx.z_div(r, y, "s")?;
    let mut out = Vec::new();
    for (k, (x, &l)) in xs.iter().zip(live).enumerate() {
        out.push(if l {
            Some(cx.e.mul(x, &s, &part(k))?)
        } else {
            None
        });
    }
    Ok(out)
}
struct ShapeOf;

/// Shape / Size read an activation's dimensions, not its values: no relevance goes back.
impl Rule for ShapeOf {
    fn backward(
        &self,
        _: &mut Cx,
        node: &NodeProto,
        _: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        Ok(vec![None; node.input.len().max(1)])
    }
}
struct Concat;
struct Reshape;

/// Expand copies an activation along broadcast axes: each copy's relevance goes back to the
/// value it copied (summed over the copies, as for a broadcast operand of the element-wise
/// ops), for every method; the shape input takes none.
struct Expand;

impl Rule for Expand {
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
        let x = input(node, 0)?.to_string();
        if cx.dims(node, &x)?.len() != cx.dims(node, &node.output[0])?.len() {
            return Err(unsupported_use(
                node,
                "an Expand that adds axes to an activation is not supported",
            ));
        }
        let out = super::elementwise::unbroadcast(cx, node, &r, &x, "in")?;
        let mut v = vec![Some(out)];
        v.resize(node.input.len().max(1), None);
        Ok(v)
    }
}

impl Rule for Add {
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        common_sign(ins)
    }
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let y = node.output[0].clone();
        let (a, b) = (input(node, 0)?.to_string(), input(node, 1)?.to_string());
        let y_dims = cx.dims(node, &y)?;
        let live: Vec<bool> = [&a, &b]
            .iter()
            .map(|t| cx.dynamic.contains(t.as_str()))
            .collect();
        for (t, &l) in [&a, &b].iter().zip(&live) {
            if l && cx.dims(node, t)? != y_dims {
                return Err(unsupported_use(
                    node,
                    "a broadcasting Add of activations is not supported",
                ));
            }
        }
        if cx.method.is_gradient() {
            // Both summands get the whole gradient.
            let out = |l: bool| l.then(|| r.clone());
            return Ok(vec![out(live[0]), out(live[1])]);
        }
        let part = |k: usize| ["in.a", "in.b"][k].to_string();
        match (live[0], live[1]) {
            // Residual join, generalised RAP: shares by magnitude (conserving, bounded).
            (true, true) if cx.method.is_robust() => {
                let v = cx.split_by_magnitude(&r, &[&a, &b], Some(&y))?;
                Ok(v.into_iter().map(Some).collect())
            }
            // Residual join: z-rule on the recomputed sum, each summand gets its share.
            (true, true) => z_shares(cx, &r, &y, &[&a, &b], &live, &part),
            // AttnLRP takes its epsilon rule with a constant summand too, whose share (a bias,
            // a position embedding, an additive mask) is absorbed.
            (true, false) | (false, true) if cx.method.is_attnlrp() => {
                z_shares(cx, &r, &y, &[&a, &b], &live, &part)
            }
            // A constant added to an activation (a bias): the constant takes no relevance.
            (true, false) => Ok(vec![Some(r), None]),
            (false, true) => Ok(vec![None, Some(r)]),
            (false, false) => Ok(vec![None, None]),
        }
    }
}

/// Sum of any number of tensors (the residual join of older exports): the z-rule as for Add.
impl Rule for Sum {
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        common_sign(ins)
    }
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let y = node.output[0].clone();
        let y_dims = cx.dims(node, &y)?;
        let live: Vec<&String> = node
            .input
            .iter()
            .filter(|t| cx.dynamic.contains(*t))
            .collect();
        for t in &live {
            if cx.dims(node, t)? != y_dims {
                return Err(unsupported_use(node, "a broadcasting Sum of activations"));
            }
        }
        if live.len() == 1 && !cx.method.is_attnlrp() || cx.method.is_gradient() {
            // One activation plus constants, or a gradient: each live input gets all of it.
            return Ok(node
                .input
                .iter()
                .map(|t| cx.dynamic.contains(t).then(|| r.clone()))
                .collect());
        }
        if cx.method.is_robust() {
            let xs: Vec<&str> = live.iter().map(|t| t.as_str()).collect();
            // The output is the sum of the live inputs only when no constant is added in.
            let sum = (live.len() == node.input.len()).then_some(y.as_str());
            let mut shares = cx.split_by_magnitude(&r, &xs, sum)?.into_iter();
            return Ok(node
                .input
                .iter()
                .map(|t| cx.dynamic.contains(t).then(|| shares.next()).flatten())
                .collect());
        }
        let ins: Vec<&str> = node.input.iter().map(String::as_str).collect();
        let flags: Vec<bool> = ins.iter().map(|t| cx.dynamic.contains(*t)).collect();
        z_shares(cx, &r, &y, &ins, &flags, &|k| format!("in{k}"))
    }
}

impl Rule for Concat {
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        common_sign(ins)
    }
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let rank = cx.dims(node, &node.output[0])?.len() as i64;
        let mut axis = attr::int(node, "axis")?.ok_or_else(|| unsupported_use(node, "no axis"))?;
        if axis < 0 {
            axis += rank;
        }
        if axis < 0 || axis >= rank || cx.is_batch_axis(axis) {
            return Err(unsupported_use(node, "concatenation along the batch axis"));
        }
        let mut sizes = Vec::new();
        for t in &node.input {
            let d = cx.dims(node, t)?;
            if d.len() as i64 != rank {
                return Err(unsupported_use(node, "its inputs differ in rank"));
            }
            sizes.push(d[axis as usize]);
        }
        let pieces = cx.e.split(&r, axis, &sizes, "pieces")?;
        if cx.method.is_robust() && !cx.method.is_gradient() {
            return concat_robust(cx, node, &pieces, rank as usize);
        }
        let mut out = Vec::new();
        for (t, piece) in node.input.iter().zip(pieces) {
            if cx.dynamic.contains(t) && (cx.method.is_gradient() || cx.method.is_attnlrp()) {
                out.push(Some(piece));
            } else if cx.dynamic.contains(t) && cx.e.selects() {
                out.push(Some(cx.e.zero_where_zero(t, &piece, "in")?));
            } else if cx.dynamic.contains(t) {
                let m = cx.e.nonzero(t)?;
                out.push(Some(cx.e.mul(&piece, &m, "in")?));
            } else {
                out.push(None);
            }
        }
        Ok(out)
    }
}

/// The generalised RAP's Concat: each activation gets its piece of the relevance as it is (a
/// concatenation moves values, no arithmetic: the official mask `[x_k != 0]` would drop the
/// relevance of zero-valued positions). The relevance of a constant piece (a class token, a
/// learned constant) is not the input's: like RAP's shift, it is spread evenly over the
/// non-zero values of the activation pieces, so the total is kept.
fn concat_robust(
    cx: &mut Cx,
    node: &NodeProto,
    pieces: &[String],
    rank: usize,
) -> Result<Vec<Option<String>>> {
    let live: Vec<bool> = node.input.iter().map(|t| cx.dynamic.contains(t)).collect();
    let mut left: Option<String> = None;
    for (k, piece) in pieces.iter().enumerate() {
        if !live[k] {
            let s = cx.e.sum_sample(piece, rank, &format!("const{k}.sum"))?;
            left = Some(match left {
                None => s,
                Some(l) => cx.e.add(&l, &s, "const.sum")?,
            });
        }
    }
    let Some(left) = left else {
        return Ok(pieces.iter().map(|p| Some(p.clone())).collect());
    };
    // Non-zero values of the activation pieces, counted per sample.
    let mut masks = Vec::new();
    let mut count: Option<String> = None;
    for (k, t) in node.input.iter().enumerate() {
        if live[k] {
            let m = cx.e.nonzero(t)?;
            let c = cx.e.sum_sample(&m, rank, &format!("in{k}.count"))?;
            count = Some(match count {
                None => c,
                Some(n) => cx.e.add(&n, &c, "count")?,
            });
            masks.push(Some(m));
        } else {
            masks.push(None);
        }
    }
    let count =
        count.ok_or_else(|| unsupported_use(node, "no input depends on the model input"))?;
    let per = cx.e.sd(&left, &count, "const.per")?;
    let mut out = Vec::new();
    for (k, piece) in pieces.iter().enumerate() {
        out.push(match &masks[k] {
            Some(m) => {
                let add = cx.e.mul(&per, m, &format!("in{k}.spread"))?;
                Some(cx.e.add(piece, &add, &format!("in{k}"))?)
            }
            None => None,
        });
    }
    Ok(out)
}

impl Rule for Reshape {
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
        let shape = cx.dims(node, x)?;
        let out = cx.e.reshape(&r, &shape, "in")?;
        Ok(super::first_only(out, node.input.len()))
    }
}
