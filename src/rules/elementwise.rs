//! Element-wise ops beyond Relu: bounded and smooth activations (relevance passes unchanged,
//! as through Relu), arithmetic with a constant (a rescaling or a bias: relevance passes), and
//! arithmetic of two activations: the z-rule for Sub, and for Mul / Div the gate rule (the
//! factor that comes out of a gating function, e.g. the sigmoid of a SiLU or of a
//! squeeze-excitation block, takes no relevance; the signal takes it all). Gradients (for
//! gradient x input) use each op's derivative.

use std::collections::HashMap;

use super::{first_only, input, rel0, unsupported_use, Cx, Rule};
use crate::analysis::{first_input_sign, Sign};
use crate::error::Result;
use crate::onnx::attr;
use crate::onnx::proto::NodeProto;

pub fn register(reg: &mut HashMap<&'static str, &'static dyn Rule>) {
    for op in [
        "Clip",
        "LeakyRelu",
        "PRelu",
        "Sigmoid",
        "Tanh",
        "HardSigmoid",
        "HardSwish",
        "Erf",
        "Elu",
        "Selu",
        "Celu",
        "Gelu",
        "Softplus",
        "Mish",
        "Neg",
    ] {
        reg.insert(op, &Activation);
    }
    // A Sigmoid making the model output is a binary classifier's head: explained through
    // its logit, as a Softmax is.
    reg.insert("Sigmoid", &SigmoidHead);
    reg.insert("Mul", &Mul);
    reg.insert("Div", &Div);
    reg.insert("Sub", &Sub);
    reg.insert("Where", &Where);
    reg.insert("Pow", &Pow);
}

/// `Where(cond, a, b)`: each value comes from one branch, so relevance (and the gradient)
/// goes back to the branch that was selected; the condition (a mask, an `IsNaN` guard) takes
/// none. A masked attention logit `Where(mask, scores, -inf)` thus hands none back.
struct Where;

impl Rule for Where {
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        crate::analysis::common_sign(ins.get(1..).unwrap_or(&[]))
    }

    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let cond = input(node, 0)?.to_string();
        let y_dims = cx.sample_dims(node, &node.output[0])?;
        let zero = cx.e.scalar(0.0);
        let mut out = vec![None];
        for slot in [1, 2] {
            let t = input(node, slot)?.to_string();
            if !cx.dynamic.contains(&t) {
                out.push(None);
                continue;
            }
            let d = cx.sample_dims(node, &t)?;
            if d.len() != y_dims.len() {
                return Err(unsupported_use(
                    node,
                    "an activation broadcast to another rank is not supported",
                ));
            }
            let (yes, no) = if slot == 1 {
                (r.as_str(), zero.as_str())
            } else {
                (zero.as_str(), r.as_str())
            };
            let part = if slot == 1 { "in.a" } else { "in.b" };
            let v =
                cx.e.op("Where", &format!("{part}.full"), &[&cond, yes, no], vec![])?;
            out.push(Some(unbroadcast(cx, node, &v, &t, part)?));
        }
        Ok(out)
    }
}

/// `Pow(x, p)` with a constant exponent (the square of a squared-ReLU MLP, of a variance):
/// an element-wise nonlinearity, so relevance passes unchanged (for `x^2` it is also the sum
/// of the two halves of the product `x * x`); the gradient is `p x^(p-1)`.
struct Pow;

impl Rule for Pow {
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        match first_input_sign(ins) {
            Sign::NonNeg => Sign::NonNeg,
            _ => Sign::Any,
        }
    }

    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let p = input(node, 1)?.to_string();
        if cx.dynamic.contains(&p) {
            return Err(unsupported_use(
                node,
                "only a constant exponent (the exponent depends on the input here)",
            ));
        }
        if !cx.method.is_gradient() {
            return Ok(first_only(r, node.input.len()));
        }
        let pv = cx
            .constant(&p)
            .and_then(|a| (a.len() == 1).then(|| a.iter().next().copied()).flatten())
            .ok_or_else(|| {
                unsupported_use(node, "gradient x input needs a scalar constant exponent")
            })?;
        let x = input(node, 0)?.to_string();
        let k = cx.e.scalar(pv - 1.0);
        let xp = cx.e.op("Pow", "x.pow", &[&x, &k], vec![])?;
        let c = cx.e.scalar(pv);
        let d = cx.e.mul(&xp, &c, "dy")?;
        let g = cx.e.mul(&r, &d, "grad")?;
        Ok(first_only(g, node.input.len()))
    }
}

/// Sigmoid: at the model output it is skipped (its input, the logit, is explained); inside
/// the network it is an activation like the others (relevance passes, the gradient is
/// `y (1 - y)`), and a gate where it multiplies another tensor.
struct SigmoidHead;

impl Rule for SigmoidHead {
    fn kind(&self) -> super::Kind {
        super::Kind::OutputNormalizer
    }
    fn sign(&self, node: &NodeProto, ins: &[Sign]) -> Sign {
        Activation.sign(node, ins)
    }
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        Activation.backward(cx, node, rel)
    }
}

/// Ops whose output in (0, 1) or [0, 1] gates another tensor when multiplied with it.
const GATES: [&str; 6] = ["Sigmoid", "HardSigmoid", "Erf", "Tanh", "Softmax", "Clip"];

struct Activation;

/// `min` of a Clip (opset >= 11: the second input, a constant; earlier: the attribute).
fn clip_min(cx: &Cx, node: &NodeProto) -> Option<f32> {
    match node.input.get(1).filter(|s| !s.is_empty()) {
        Some(t) => cx.constant(t).and_then(|a| a.iter().next().copied()),
        None => attr::float(node, "min").ok().flatten(),
    }
}

impl Rule for Activation {
    fn sign(&self, node: &NodeProto, ins: &[Sign]) -> Sign {
        match node.op_type() {
            "Sigmoid" | "HardSigmoid" | "Softplus" => Sign::NonNeg,
            // Sign-preserving: negative inputs give negative outputs (or zero).
            "LeakyRelu" | "Tanh" | "Erf" | "HardSwish" | "Gelu" | "Mish" | "Elu" | "Selu"
            | "Celu" => match first_input_sign(ins) {
                Sign::NonNeg => Sign::NonNeg,
                _ => Sign::Any,
            },
            "Neg" => match first_input_sign(ins) {
                Sign::NonNeg => Sign::NonPos,
                Sign::NonPos => Sign::NonNeg,
                Sign::Any => Sign::Any,
            },
            // Clip with min >= 0 (Relu6): the bound is the second input (an initializer,
            // whose sign the analysis reads from its values) or, before opset 11, an attribute.
            "Clip" => {
                let min_nonneg = match node.input.get(1).filter(|t| !t.is_empty()) {
                    Some(_) => ins.get(1) == Some(&Sign::NonNeg),
                    None => attr::float(node, "min")
                        .ok()
                        .flatten()
                        .is_some_and(|m| m >= 0.0),
                };
                if min_nonneg {
                    Sign::NonNeg
                } else {
                    Sign::Any
                }
            }
            _ => Sign::Any,
        }
    }

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
        let y = node.output[0].clone();
        let one = cx.e.scalar(1.0);
        let d =
            match node.op_type() {
                "Neg" => cx.e.neg(&r, "grad")?,
                "Sigmoid" => {
                    let c = cx.e.sub(&one, &y, "one_minus_y")?;
                    let d = cx.e.mul(&y, &c, "dy")?;
                    cx.e.mul(&r, &d, "grad")?
                }
                "Erf" => {
                    // 2 / sqrt(pi) exp(-x^2).
                    let x2 = cx.e.mul(&x, &x, "x2")?;
                    let nx2 = cx.e.neg(&x2, "neg.x2")?;
                    let ex = cx.e.op("Exp", "exp", &[&nx2], vec![])?;
                    let k = cx.e.scalar(std::f32::consts::FRAC_2_SQRT_PI);
                    let d = cx.e.mul(&ex, &k, "dy")?;
                    cx.e.mul(&r, &d, "grad")?
                }
                "Gelu" if attr::string(node, "approximate")?.as_deref() != Some("tanh") => {
                    // Phi(x) + x phi(x), with Phi(x) = y / x written as 0.5 (1 + erf(x / sqrt 2)).
                    let k = cx.e.scalar(std::f32::consts::FRAC_1_SQRT_2);
                    let xs = cx.e.mul(&x, &k, "x.s")?;
                    let erf = cx.e.op("Erf", "erf", &[&xs], vec![])?;
                    let e1 = cx.e.add(&erf, &one, "erf1")?;
                    let half = cx.e.scalar(0.5);
                    let cdf = cx.e.mul(&e1, &half, "cdf")?;
                    let x2 = cx.e.mul(&x, &x, "x2")?;
                    let mh = cx.e.scalar(-0.5);
                    let x2 = cx.e.mul(&x2, &mh, "x2.half")?;
                    let ex = cx.e.op("Exp", "exp", &[&x2], vec![])?;
                    let c = cx.e.scalar(0.398_942_3);
                    let pdf = cx.e.mul(&ex, &c, "pdf")?;
                    let xp = cx.e.mul(&x, &pdf, "x.pdf")?;
                    let d = cx.e.add(&cdf, &xp, "dy")?;
                    cx.e.mul(&r, &d, "grad")?
                }
                "Tanh" => {
                    let y2 = cx.e.mul(&y, &y, "y2")?;
                    let d = cx.e.sub(&one, &y2, "dy")?;
                    cx.e.mul(&r, &d, "grad")?
                }
                "Clip" => {
                    // 1 where min < x < max: where the output moved with the input.
                    let lo = clip_min(cx, node).unwrap_or(f32::MIN);
                    let hi = match node.input.get(2).filter(|s| !s.is_empty()) {
                        Some(t) => cx.constant(t).and_then(|a| a.iter().next().copied()),
                        None => attr::float(node, "max")?,
                    }
                    .unwrap_or(f32::MAX);
                    let (l, h) = (cx.e.scalar(lo), cx.e.scalar(hi));
                    let a = cx.e.op("Greater", "above", &[&x, &l], vec![])?;
                    let b = cx.e.op("Less", "below", &[&x, &h], vec![])?;
                    let m = cx.e.op("And", "inside", &[&a, &b], vec![])?;
                    let m =
                        cx.e.op("Cast", "mask", &[&m], vec![attr::make_int("to", 1)])?;
                    cx.e.mul(&r, &m, "grad")?
                }
                "LeakyRelu" => {
                    let alpha = attr::float(node, "alpha")?.unwrap_or(0.01);
                    let zero = cx.e.scalar(0.0);
                    let pos = cx.e.op("Greater", "pos", &[&x, &zero], vec![])?;
                    let a = cx.e.scalar(alpha);
                    let d = cx.e.op("Where", "dy", &[&pos, &one, &a], vec![])?;
                    cx.e.mul(&r, &d, "grad")?
                }
                "HardSigmoid" => {
                    let alpha = attr::float(node, "alpha")?.unwrap_or(0.2);
                    let zero = cx.e.scalar(0.0);
                    let a = cx.e.op("Greater", "above", &[&y, &zero], vec![])?;
                    let b = cx.e.op("Less", "below", &[&y, &one], vec![])?;
                    let m = cx.e.op("And", "inside", &[&a, &b], vec![])?;
                    let m =
                        cx.e.op("Cast", "mask", &[&m], vec![attr::make_int("to", 1)])?;
                    let k = cx.e.scalar(alpha);
                    let d = cx.e.mul(&m, &k, "dy")?;
                    cx.e.mul(&r, &d, "grad")?
                }
                "HardSwish" => {
                    // x < -3: 0; x > 3: 1; else (2x + 3) / 6.
                    let (m3, p3) = (cx.e.scalar(-3.0), cx.e.scalar(3.0));
                    let lo = cx.e.op("Greater", "above", &[&x, &m3], vec![])?;
                    let hi = cx.e.op("Greater", "saturated", &[&x, &p3], vec![])?;
                    let k = cx.e.scalar(1.0 / 3.0);
                    let half = cx.e.scalar(0.5);
                    let mid = cx.e.mul(&x, &k, "mid.x")?;
                    let mid = cx.e.add(&mid, &half, "mid")?;
                    let zero = cx.e.scalar(0.0);
                    let d = cx.e.op("Where", "dy.lo", &[&lo, &mid, &zero], vec![])?;
                    let d = cx.e.op("Where", "dy", &[&hi, &one, &d], vec![])?;
                    cx.e.mul(&r, &d, "grad")?
                }
                _ => return Err(unsupported_use(
                    node,
                    "gradient x input has no derivative for this op yet (the relevance methods \
                     pass relevance through it)",
                )),
            };
        Ok(first_only(d, node.input.len()))
    }
}

/// Whether `tensor` comes out of a gating function, possibly through arithmetic with
/// constants (`0.5 * (1 + erf(x / sqrt 2))` of GELU, `hardsigmoid(x) / 6`...).
pub(crate) fn is_gate(cx: &Cx, tensor: &str) -> bool {
    let mut t = tensor.to_string();
    for _ in 0..4 {
        let Some(n) = cx.graph.producer_op(&t) else {
            return false;
        };
        let op = n.op_type();
        if GATES.contains(&op) {
            return op != "Clip" || clip_min(cx, n).is_some_and(|m| m >= 0.0);
        }
        let live: Vec<&String> = n.input.iter().filter(|i| cx.dynamic.contains(*i)).collect();
        match (op, live.as_slice()) {
            ("Add" | "Sub" | "Mul" | "Div" | "Identity", [one]) => t = one.to_string(),
            _ => return false,
        }
    }
    false
}

/// Which inputs of a binary op depend on the explained input.
fn live(cx: &Cx, node: &NodeProto) -> Result<(String, String, bool, bool)> {
    let (a, b) = (input(node, 0)?.to_string(), input(node, 1)?.to_string());
    let (la, lb) = (cx.dynamic.contains(&a), cx.dynamic.contains(&b));
    let y_dims = cx.sample_dims(node, &node.output[0])?;
    for (t, l) in [(&a, la), (&b, lb)] {
        if l {
            let d = cx.sample_dims(node, t)?;
            let fits =
                d.len() == y_dims.len() && d.iter().zip(&y_dims).all(|(&x, &y)| x == y || x == 1);
            if !fits {
                return Err(unsupported_use(
                    node,
                    "an activation broadcast to another rank is not supported",
                ));
            }
        }
    }
    Ok((a, b, la, lb))
}

/// `r` (shaped like the output) brought back to the shape of `t` by summing over the axes
/// `t` was broadcast along (a squeeze-excitation scale `[N, C, 1, 1]`, say; in a model that
/// runs one sample, axis 0 too). `t` has the output's rank.
pub(crate) fn unbroadcast(
    cx: &mut Cx,
    node: &NodeProto,
    r: &str,
    t: &str,
    part: &str,
) -> Result<String> {
    let (td, yd) = (cx.dims(node, t)?, cx.dims(node, &node.output[0])?);
    let axes: Vec<i64> = td
        .iter()
        .zip(&yd)
        .enumerate()
        .filter(|(_, (&a, &b))| a != b)
        .map(|(k, _)| k as i64)
        .collect();
    if axes.is_empty() {
        return Ok(r.to_string());
    }
    cx.e.reduce("ReduceSum", r, &axes, true, part)
}

struct Mul;

impl Rule for Mul {
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        match (ins.first(), ins.get(1)) {
            (Some(Sign::NonNeg), Some(Sign::NonNeg)) | (Some(Sign::NonPos), Some(Sign::NonPos)) => {
                Sign::NonNeg
            }
            _ => Sign::Any,
        }
    }

    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let (a, b, la, lb) = live(cx, node)?;
        if cx.method.is_gradient() {
            let ga = if la {
                let g = cx.e.mul(&r, &b, "grad.a.full")?;
                Some(unbroadcast(cx, node, &g, &a, "grad.a")?)
            } else {
                None
            };
            let gb = if lb {
                let g = cx.e.mul(&r, &a, "grad.b.full")?;
                Some(unbroadcast(cx, node, &g, &b, "grad.b")?)
            } else {
                None
            };
            return Ok(vec![ga, gb]);
        }
        let to = |cx: &mut Cx, r: &str, t: &str, part: &str| unbroadcast(cx, node, r, t, part);
        Ok(match (la, lb) {
            // A rescaling by a constant: R passes (the z-rule of y = c x).
            (true, false) => vec![Some(to(cx, &r, &a, "in.a")?), None],
            (false, true) => vec![None, Some(to(cx, &r, &b, "in.b")?)],
            (true, true) => match (is_gate(cx, &a), is_gate(cx, &b)) {
                (false, true) => vec![Some(to(cx, &r, &a, "in.a")?), None],
                (true, false) => vec![None, Some(to(cx, &r, &b, "in.b")?)],
                // No gate to tell them apart: half each (each half is the z-rule with the
                // other factor held fixed).
                _ => {
                    let h = cx.e.scalar(0.5);
                    let half = cx.e.mul(&r, &h, "half")?;
                    vec![
                        Some(to(cx, &half, &a, "in.a")?),
                        Some(to(cx, &half, &b, "in.b")?),
                    ]
                }
            },
            (false, false) => vec![None, None],
        })
    }
}

struct Div;

impl Rule for Div {
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        match (ins.first(), ins.get(1)) {
            (Some(Sign::NonNeg), Some(Sign::NonNeg)) => Sign::NonNeg,
            _ => Sign::Any,
        }
    }

    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let (a, b, la, lb) = live(cx, node)?;
        if cx.method.is_gradient() {
            let ga = if la {
                let g = cx.e.div(&r, &b, "grad.a.full")?;
                Some(unbroadcast(cx, node, &g, &a, "grad.a")?)
            } else {
                None
            };
            let gb = if lb {
                // d(a / b)/db = -(a / b) / b = -y / b.
                let q = cx.e.div(&node.output[0], &b, "y_b")?;
                let q = cx.e.neg(&q, "dy")?;
                let g = cx.e.mul(&r, &q, "grad.b.full")?;
                Some(unbroadcast(cx, node, &g, &b, "grad.b")?)
            } else {
                None
            };
            return Ok(vec![ga, gb]);
        }
        // The numerator carries the signal; a divisor (a constant or a normaliser computed
        // from the activations) takes no relevance.
        let ra = if la {
            Some(unbroadcast(cx, node, &r, &a, "in.a")?)
        } else {
            None
        };
        Ok(vec![ra, None])
    }
}

struct Sub;

impl Rule for Sub {
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let (a, b, la, lb) = live(cx, node)?;
        if cx.method.is_gradient() {
            let ga = if la {
                Some(unbroadcast(cx, node, &r, &a, "grad.a")?)
            } else {
                None
            };
            let gb = if lb {
                let n = cx.e.neg(&r, "grad.b.full")?;
                Some(unbroadcast(cx, node, &n, &b, "grad.b")?)
            } else {
                None
            };
            return Ok(vec![ga, gb]);
        }
        if cx.method.is_attnlrp() {
            // The epsilon rule on y = a - b: contributions a and -b; a constant's share is
            // absorbed.
            let s = cx.eps_div(&r, &node.output[0], "s")?;
            let ra = if la {
                let v = cx.e.mul(&a, &s, "in.a.full")?;
                Some(unbroadcast(cx, node, &v, &a, "in.a")?)
            } else {
                None
            };
            let rb = if lb {
                let v = cx.e.mul(&b, &s, "in.b.pos")?;
                let v = cx.e.neg(&v, "in.b.full")?;
                Some(unbroadcast(cx, node, &v, &b, "in.b")?)
            } else {
                None
            };
            return Ok(vec![ra, rb]);
        }
        Ok(match (la, lb) {
            (true, false) => vec![Some(unbroadcast(cx, node, &r, &a, "in.a")?), None],
            (false, true) => vec![None, Some(unbroadcast(cx, node, &r, &b, "in.b")?)],
            // Generalised RAP: contributions a and -b share R by magnitude.
            (true, true) if cx.method.is_robust() => {
                let v = cx.split_by_magnitude(&r, &[&a, &b], None)?;
                vec![
                    Some(unbroadcast(cx, node, &v[0], &a, "in.a")?),
                    Some(unbroadcast(cx, node, &v[1], &b, "in.b")?),
                ]
            }
            // The z-rule of y = a - b: contributions a and -b.
            (true, true) => {
                let s = cx.e.sd(&r, &node.output[0], "s")?;
                let ra = cx.e.mul(&a, &s, "in.a.full")?;
                let nb = cx.e.mul(&b, &s, "in.b.pos")?;
                let rb = cx.e.neg(&nb, "in.b.full")?;
                vec![
                    Some(unbroadcast(cx, node, &ra, &a, "in.a")?),
                    Some(unbroadcast(cx, node, &rb, &b, "in.b")?),
                ]
            }
            (false, false) => vec![None, None],
        })
    }
}
