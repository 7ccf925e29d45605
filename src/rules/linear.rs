//! Gemm, MatMul (with a constant weight) and Conv: RAP's first-step rule, its relative hidden
//! rule and the bounded z^B input rule (docs/RULES.md, "The official rules"; Nam et al. 2020),
//! the generalised forms (docs/RULES.md, "The generalised rules"), and the LRP variants,
//! gradient x input and AttnLRP's epsilon rule (docs/RULES.md, "Other methods").
//!
//! Every linear layer is brought to one form: `F(x; W)` without bias and its transpose
//! `Ft(s; W)` (MatMul or ConvTranspose with the same W). W+ = Relu(W) and |W-| = Relu(-W)
//! are nodes on the original weight, folded once at load time by the runtime. Sign paths use
//! the identity `x- path == the x+ path applied to Relu(-x)`, so both share one code path.

use std::collections::HashMap;

use super::window::Window;
use super::{input, rel0, unsupported_use, Bounds, Cx, Kind, Method, Role, Rule};
use crate::analysis::Sign;
use crate::error::Result;
use crate::onnx::attr::{self, make_int, make_ints};
use crate::onnx::proto::NodeProto;

pub fn register(reg: &mut HashMap<&'static str, &'static dyn Rule>) {
    reg.insert("Gemm", &LinearRule);
    reg.insert("MatMul", &LinearRule);
    reg.insert("Conv", &LinearRule);
    reg.insert("ConvTranspose", &LinearRule);
    reg.insert("Einsum", &LinearRule);
}

/// An Einsum that is a matrix product, `<batch>ij,jk-><batch>ik` (the same letters, any
/// names), as the equivalent MatMul node; None for any other equation.
fn einsum_as_matmul(node: &NodeProto) -> Option<NodeProto> {
    let eq: String = attr::string(node, "equation")
        .ok()??
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let (lhs, out) = eq.split_once("->")?;
    let (a, b) = lhs.split_once(',')?;
    let (a, b, out): (Vec<char>, Vec<char>, Vec<char>) = (
        a.chars().collect(),
        b.chars().collect(),
        out.chars().collect(),
    );
    if a.len() < 2 || b.len() < 2 || a.len() != out.len() || node.input.len() != 2 {
        return None;
    }
    let (i, j) = (a[a.len() - 2], a[a.len() - 1]);
    let (j2, k) = (b[b.len() - 2], b[b.len() - 1]);
    let batch = &a[..a.len() - 2];
    let b_batch = &b[..b.len() - 2];
    let plain = j == j2
        && out[..out.len() - 2] == *batch
        && out[out.len() - 2..] == [i, k]
        && (b_batch.is_empty() || b_batch == batch)
        && !a.contains(&'.')
        && [i, j, k].iter().all(|c| !batch.contains(c));
    plain.then(|| NodeProto {
        op_type: Some("MatMul".into()),
        attribute: Vec::new(),
        ..node.clone()
    })
}

struct LinearRule;

/// A linear layer in the common form.
struct Lin {
    conv: Option<(Window, i64)>,
    /// Weight in F layout: Dense `[C, D]`, Conv `[Cout, Cin/g, k...]`.
    w: String,
    /// Bias with C values and its factor beta (Dense only; only the first step uses it,
    /// hidden layers ignore biases as the reference does).
    bias: Option<(String, f32)>,
    /// Output channels C.
    c: i64,
    /// Rank of the layer input (2 for Dense).
    rank: usize,
    x_dims: Vec<i64>,
    /// The layer's output `y` and the bias (with its factor) that makes `y = F(x; W) + b`.
    y: String,
    y_bias: Option<(String, f32)>,
    /// Every weight is known to be >= 0 (then W+ = W and |W-| = 0).
    w_nonneg: bool,
    /// A ConvTranspose layer: F is the node's own ConvTranspose (these attributes), Ft the
    /// Conv of `conv`'s window (which then maps the output grid back to the input grid).
    deconv: Option<Vec<crate::onnx::proto::AttributeProto>>,
}

impl Lin {
    /// A layer applied at every position alone, input and output on the same grid: a 1x1
    /// convolution with stride 1 and no padding, or a dense layer (per row of its input: per
    /// token of `[N, ..., D]`; for `[N, D]` the row is the sample, as in the official shift, and
    /// a model that folds its tokens into the rows keeps them apart the same way).
    fn pointwise(&self) -> bool {
        match &self.conv {
            None => true,
            Some((w, g)) => {
                self.deconv.is_none()
                    && *g == 1
                    && w.kernel.iter().all(|&k| k == 1)
                    && w.strides.iter().all(|&s| s == 1)
                    && w.begin.iter().chain(&w.end).all(|&p| p == 0)
            }
        }
    }

    /// A convolution whose windows tile its input, each input position in one window: kernel
    /// = stride > 1, no padding or dilation, one group, every spatial size a multiple of the
    /// kernel (a ViT's patch embedding).
    fn tiles_input(&self) -> bool {
        let Some((w, g)) = self.conv.as_ref() else {
            return false;
        };
        self.deconv.is_none()
            && *g == 1
            && w.kernel == w.strides
            && w.dilations.iter().all(|&d| d == 1)
            && w.begin.iter().chain(&w.end).all(|&p| p == 0)
            && w.kernel.iter().any(|&k| k > 1)
            && w.input
                .iter()
                .zip(&w.kernel)
                .all(|(&n, &k)| k > 0 && n % k == 0)
    }

    fn stackable(&self) -> bool {
        self.conv.as_ref().is_none_or(|(_, g)| *g == 1)
    }

    /// The axis of output channels: 1, or the last axis of a MatMul on `[N, ..., D]`.
    fn chan_axis(&self) -> i64 {
        if self.conv.is_some() || self.rank == 2 {
            1
        } else {
            self.rank as i64 - 1
        }
    }

    /// The weight axis of output channels (stacking axis): 1 for ConvTranspose.
    fn w_out_axis(&self) -> i64 {
        if self.deconv.is_some() {
            1
        } else {
            0
        }
    }

    /// `F(x; w)` without bias.
    fn f(&self, cx: &mut Cx, x: &str, w: &str, part: &str) -> Result<String> {
        if let Some(attrs) = &self.deconv {
            return cx.e.op("ConvTranspose", part, &[x, w], attrs.clone());
        }
        match &self.conv {
            // MatMul on [N, ..., D], and Gemm before opset 11 (its C input was required).
            None if self.rank > 2 || cx.e.opset() < 11 => {
                let wt = cx.e.op(
                    "Transpose",
                    &format!("{part}.wt"),
                    &[w],
                    vec![make_ints("perm", &[1, 0])],
                )?;
                cx.e.op("MatMul", part, &[x, &wt], vec![])
            }
            None => cx.e.op("Gemm", part, &[x, w], vec![make_int("transB", 1)]),
            Some((win, g)) => {
                let mut a = win.conv_attrs();
                a.push(make_int("group", *g));
                cx.e.op("Conv", part, &[x, w], a)
            }
        }
    }

    /// `Ft(s; w)`: the transpose of F, back to the input's shape.
    fn ft(&self, cx: &mut Cx, s: &str, w: &str, part: &str) -> Result<String> {
        if self.deconv.is_some() {
            let (win, g) = self.conv.as_ref().expect("a deconv has a window");
            let mut a = win.conv_attrs();
            a.push(make_int("group", *g));
            return cx.e.op("Conv", part, &[s, w], a);
        }
        match &self.conv {
            None => cx.e.op("MatMul", part, &[s, w], vec![]),
            Some((win, g)) => {
                // A depthwise layer: one input and one output channel per group.
                let depthwise = *g > 1 && self.c == *g && self.x_dims.first() == Some(g);
                if (*g == 1 || depthwise) && cx.tuning.flip_transpose {
                    if let Some(mut a) = win.flipped_conv_attrs() {
                        // Stride 1: the transpose is a plain Conv with the weight's in/out
                        // axes swapped and its kernel flipped (folded at load time); tract
                        // runs that faster than ConvTranspose. A depthwise layer's weight
                        // has one in and one out channel per group: only the flip, and the
                        // groups kept (EfficientNet-Lite0: 81 -> 36 ms of tract's 300 ms
                        // explanation; docs/RULES.md, "Equal forms").
                        let wf = flip_kernel(cx, w, &win.kernel, !depthwise, part)?;
                        if depthwise {
                            a.push(make_int("group", *g));
                        }
                        return cx.e.op("Conv", part, &[s, &wf], a);
                    }
                }
                let mut a = win.transpose_attrs();
                a.push(make_int("group", *g));
                cx.e.op("ConvTranspose", part, &[s, w], a)
            }
        }
    }

    /// `F(x; W)` read off the forward pass: the output `y` less its bias.
    fn output_without_bias(&self, cx: &mut Cx) -> Result<String> {
        let Some((b, beta)) = &self.y_bias else {
            return Ok(self.y.clone());
        };
        let mut b = b.clone();
        if *beta != 1.0 {
            let s = cx.e.scalar(*beta);
            b = cx.e.mul(&b, &s, "y.beta")?;
        }
        if self.conv.is_some() && self.c > 1 && !cx.dynamic.contains(&b) {
            // y - b per channel as a depthwise 1x1 convolution with weight 1 and bias -b:
            // y * 1 + (-b) is y - b bit for bit, and tract runs it ~4x faster than a
            // subtraction broadcast over the planes (VGG-16: 44 ms -> 11 ms). Not for one
            // channel: tract 0.23.9's one-input-channel convolutions are unreliable there;
            // kept to constant biases, the case measured and tested (an input-dependent
            // bias keeps the Sub).
            let nb = cx.e.neg(&b, "y.bias.neg")?;
            let dims: Vec<i64> = [vec![self.c, 1], vec![1; self.rank - 2]].concat();
            let ones = cx.e.const_f32("y.ones", &dims, &vec![1.0; self.c as usize]);
            return cx.e.op(
                "Conv",
                "y.nobias",
                &[&self.y, &ones, &nb],
                vec![make_int("group", self.c)],
            );
        }
        if self.conv.is_some() {
            let shape: Vec<i64> = std::iter::once(-1)
                .chain(std::iter::repeat_n(1, self.rank - 2))
                .collect();
            b = cx.e.reshape(&b, &shape, "y.bias")?;
        }
        cx.e.sub(&self.y, &b, "y.nobias")
    }

    /// `[F(x; W+), F(x; |W-|)]`, with one op on stacked weights where groups allow.
    fn f_pair(&self, cx: &mut Cx, x: &str, w: &Parts, part: &str) -> Result<(String, String)> {
        if let Some(wst) = &w.stack {
            let z = self.f(cx, x, wst, &format!("{part}.z"))?;
            let mut v = cx.e.split(&z, self.chan_axis(), &[self.c, self.c], part)?;
            let b = v.pop().expect("two pieces");
            let a = v.pop().expect("two pieces");
            Ok((a, b))
        } else {
            let a = self.f(cx, x, &w.pos, &format!("{part}.a"))?;
            let b = self.f(cx, x, &w.neg, &format!("{part}.b"))?;
            Ok((a, b))
        }
    }

    /// `Ft(sa; W+) + Ft(sb; |W-|)`, as one op on stacked relevance where groups allow.
    fn ft_sum(&self, cx: &mut Cx, sa: &str, sb: &str, w: &Parts, part: &str) -> Result<String> {
        if let Some(wst) = &w.stack {
            let s =
                cx.e.concat(&[sa, sb], self.chan_axis(), &format!("{part}.s"))?;
            self.ft(cx, &s, wst, part)
        } else {
            let a = self.ft(cx, sa, &w.pos, &format!("{part}.a"))?;
            let b = self.ft(cx, sb, &w.neg, &format!("{part}.b"))?;
            cx.e.add(&a, &b, part)
        }
    }
}

/// `[Cout, Cin, k...]` -> `[Cin, Cout, k...]` with every spatial axis reversed.
fn flip_kernel(
    cx: &mut Cx,
    w: &str,
    kernel: &[i64],
    transpose: bool,
    part: &str,
) -> Result<String> {
    let mut t = w.to_string();
    if transpose {
        let mut perm: Vec<i64> = vec![1, 0];
        perm.extend(2..2 + kernel.len() as i64);
        t = cx.e.op(
            "Transpose",
            &format!("{part}.wt"),
            &[w],
            vec![make_ints("perm", &perm)],
        )?;
    }
    for (axis, &k) in kernel.iter().enumerate() {
        let rev: Vec<i64> = (0..k).rev().collect();
        let idx = cx.e.const_i64(&format!("{part}.rev{axis}"), &[k], &rev);
        t = cx.e.op(
            "Gather",
            &format!("{part}.flip{axis}"),
            &[&t, &idx],
            vec![make_int("axis", 2 + axis as i64)],
        )?;
    }
    Ok(t)
}

/// W+ = Relu(W), |W-| = Relu(-W), and their stack along the output axis when groups allow.
struct Parts {
    pos: String,
    neg: String,
    stack: Option<String>,
}

/// Whether every value of the constant weight `w`, times `alpha`, is >= 0.
fn nonneg(cx: &Cx, w: &str, alpha: f32) -> bool {
    alpha >= 0.0 && cx.constant(w).is_some_and(|a| a.iter().all(|&v| v >= 0.0))
}

fn parse(cx: &mut Cx, node: &NodeProto) -> Result<Lin> {
    let x = input(node, 0)?;
    let wt = input(node, 1)?;
    if cx.dynamic.contains(wt) {
        return Err(unsupported_use(
            node,
            "its weight depends on the input (only MatMul takes a product of two activations)",
        ));
    }
    let x_dims = cx.sample_dims(node, x)?;
    let rank = x_dims.len() + 1;
    let w_shape = cx.known_shape(node, wt)?;
    match node.op_type() {
        op @ ("Conv" | "ConvTranspose") => {
            let deconv = op == "ConvTranspose";
            let y = node.output.first().map(String::as_str).unwrap_or("");
            let y_dims = cx.sample_dims(node, y)?;
            if w_shape.len() < 3 || y_dims.len() + 1 != rank {
                return Err(unsupported_use(node, "unexpected weight or output rank"));
            }
            if deconv && attr::string(node, "auto_pad")?.is_some_and(|a| a != "NOTSET") {
                return Err(unsupported_use(node, "auto_pad (give explicit pads)"));
            }
            let group = attr::int(node, "group")?.unwrap_or(1);
            // The window of the Conv: the layer's own, or for a ConvTranspose the Conv that is
            // its transpose, from the output grid back to the input's.
            let (from, to) = if deconv {
                (&y_dims, &x_dims)
            } else {
                (&x_dims, &y_dims)
            };
            let win = Window::of(
                node,
                w_shape[2..].to_vec(),
                from[1..].to_vec(),
                to[1..].to_vec(),
            )?;
            let y_bias = node
                .input
                .get(2)
                .filter(|s| !s.is_empty())
                .map(|b| (b.clone(), 1.0));
            Ok(Lin {
                w_nonneg: nonneg(cx, wt, 1.0),
                deconv: deconv.then(|| node.attribute.clone()),
                y: y.to_string(),
                y_bias,
                conv: Some((win, group)),
                w: wt.to_string(),
                bias: None,
                c: if deconv {
                    w_shape[1] * group
                } else {
                    w_shape[0]
                },
                rank,
                x_dims,
            })
        }
        "Gemm" | "MatMul" => {
            let gemm = node.op_type() == "Gemm";
            if (gemm && rank != 2) || rank < 2 || w_shape.len() != 2 {
                return Err(unsupported_use(
                    node,
                    "only a [batch, ..., features] input times a 2-D weight is supported",
                ));
            }
            if gemm && attr::int(node, "transA")?.unwrap_or(0) != 0 {
                return Err(unsupported_use(
                    node,
                    "transA = 1 (the batch must be the first axis)",
                ));
            }
            let trans_b = gemm && attr::int(node, "transB")?.unwrap_or(0) != 0;
            let mut w = wt.to_string();
            let c = if trans_b { w_shape[0] } else { w_shape[1] };
            if !trans_b {
                w =
                    cx.e.op("Transpose", "w.t", &[&w], vec![make_ints("perm", &[1, 0])])?;
            }
            let alpha = if gemm {
                attr::float(node, "alpha")?.unwrap_or(1.0)
            } else {
                1.0
            };
            if alpha != 1.0 {
                let a = cx.e.scalar(alpha);
                w = cx.e.mul(&w, &a, "w.alpha")?;
            }
            let mut bias = None;
            if let Some(b) = node.input.get(2).filter(|s| gemm && !s.is_empty()) {
                let beta = attr::float(node, "beta")?.unwrap_or(1.0);
                let numel: i64 = cx.known_shape(node, b)?.iter().product();
                if numel != c {
                    return Err(unsupported_use(
                        node,
                        "its bias is not one value per output",
                    ));
                }
                bias = Some((b.clone(), beta));
            }
            Ok(Lin {
                w_nonneg: nonneg(cx, wt, alpha),
                deconv: None,
                y: node.output[0].clone(),
                y_bias: bias.clone(),
                conv: None,
                w,
                bias,
                c,
                rank,
                x_dims,
            })
        }
        _ => Err(unsupported_use(node, "not a linear layer")),
    }
}

impl Rule for LinearRule {
    fn kind(&self) -> Kind {
        Kind::Linear
    }

    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel_out: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel_out)?.to_string();
        let as_matmul;
        let node = if node.op_type() == "Einsum" {
            as_matmul = einsum_as_matmul(node).ok_or_else(|| {
                unsupported_use(
                    node,
                    "only an Einsum that is a matrix product (..ij,jk->..ik)",
                )
            })?;
            &as_matmul
        } else {
            node
        };
        if node.op_type() == "MatMul" && cx.dynamic.contains(input(node, 1)?) {
            return super::attention::bilinear(cx, node, &r);
        }
        let lin = parse(cx, node)?;
        let x = input(node, 0)?.to_string();
        let rin = match (cx.role, cx.method) {
            (_, Method::GradInput) => gradient(cx, &lin, &x, &r)?,
            // AttnLRP: the epsilon rule everywhere, the input layer included.
            (_, Method::AttnLrp) => {
                let s = cx.eps_div(&r, &lin.y, "s")?;
                let back = lin.ft(cx, &s, &lin.w, "back")?;
                cx.e.mul(&x, &back, "in")?
            }
            (Role::Input, Method::Rap) if lin.tiles_input() => patch_offset(cx, &lin, &x, &r)?,
            (Role::Input, m) => z_bounded(cx, &lin, &x, &r, m)?,
            (Role::Output, m) if m.is_rap() && lin.conv.is_none() && lin.rank == 2 => {
                first_step(cx, &lin, &x)?
            }
            (_, Method::LrpEps) => epsilon(cx, &lin, &x, &r)?,
            (_, Method::LrpA2B1) => alpha_beta(cx, &lin, &x, &r, 2.0, 1.0)?,
            (_, Method::LrpZPlus) => alpha_beta(cx, &lin, &x, &r, 1.0, 0.0)?,
            (_, Method::Rap) if cx.sign(&x) != Sign::NonNeg => relative_joint(cx, &lin, &x, &r)?,
            (_, m) => hidden(cx, &lin, &x, &r, m)?,
        };
        Ok(super::first_only(rin, node.input.len()))
    }
}

fn weight_parts(cx: &mut Cx, lin: &Lin) -> Result<Parts> {
    let pos = cx.e.relu(&lin.w, "w.pos")?;
    let neg = cx.e.relu_neg(&lin.w, "w.neg")?;
    let stack = if lin.stackable() {
        Some(cx.e.concat(&[&pos, &neg], lin.w_out_axis(), "w.stack")?)
    } else {
        None
    };
    Ok(Parts { pos, neg, stack })
}

/// The sign paths of x: (path input >= 0, tag), skipping paths known to be zero.
fn sign_paths(cx: &mut Cx, x: &str) -> Result<Vec<(String, &'static str)>> {
    Ok(match cx.sign(x) {
        Sign::NonNeg => vec![(x.to_string(), "xpos")],
        Sign::NonPos => vec![(cx.e.neg(x, "xneg")?, "xneg")],
        Sign::Any => vec![
            (cx.e.relu(x, "xpos")?, "xpos"),
            (cx.e.relu_neg(x, "xneg")?, "xneg"),
        ],
    })
}

/// Gradient x input: the gradient goes back through the transpose; the input layer multiplies
/// it by its input.
fn gradient(cx: &mut Cx, lin: &Lin, x: &str, g: &str) -> Result<String> {
    let back = lin.ft(cx, g, &lin.w, "grad")?;
    if cx.role == Role::Input {
        cx.e.mul(x, &back, "in")
    } else {
        Ok(back)
    }
}

/// LRP-epsilon: `R_in = x * Ft(R / (z + eps sign(z)); W)`, `z` the layer output with its bias,
/// `sign(0) = 1`. With eps = 0 it is LRP-0 with RAP's safe division.
fn epsilon(cx: &mut Cx, lin: &Lin, x: &str, r: &str) -> Result<String> {
    let z = lin.y.clone();
    let s = if cx.epsilon == 0.0 {
        cx.e.sd(r, &z, "s")?
    } else {
        // sign(z) + [z == 0]: +1 or -1, never 0.
        let sg = cx.e.op("Sign", "z.sign", &[&z], vec![])?;
        let nz = cx.e.op("Abs", "z.nonzero", &[&sg], vec![])?;
        let one = cx.e.scalar(1.0);
        let zero = cx.e.sub(&one, &nz, "z.zero")?;
        let sg = cx.e.add(&sg, &zero, "z.sign1")?;
        let eps = cx.e.scalar(cx.epsilon);
        let shift = cx.e.mul(&sg, &eps, "z.eps")?;
        let den = cx.e.add(&z, &shift, "z.stable")?;
        cx.e.div(r, &den, "s")?
    };
    let back = lin.ft(cx, &s, &lin.w, "back")?;
    cx.e.mul(x, &back, "in")
}

/// LRP alpha-beta (beta = 0: z+): positive contributions `x+ W+`, `|x-| |W-|` share
/// `alpha R` in proportion, negative ones `x+ |W-|`, `|x-| W+` take `-beta R`; each sum is
/// normalised jointly over both sign paths, biases are left out (as the reference does).
fn alpha_beta(cx: &mut Cx, lin: &Lin, x: &str, r: &str, alpha: f32, beta: f32) -> Result<String> {
    let pos = cx.e.relu(&lin.w, "w.pos")?;
    let neg = cx.e.relu_neg(&lin.w, "w.neg")?;
    let stack = if beta != 0.0 && lin.stackable() {
        Some(cx.e.concat(&[&pos, &neg], lin.w_out_axis(), "w.stack")?)
    } else {
        None
    };
    let w = Parts { pos, neg, stack };
    let paths = sign_paths(cx, x)?;
    let mut zp: Option<String> = None;
    let mut zn: Option<String> = None;
    let acc = |cx: &mut Cx, t: Option<String>, v: String, part: &str| -> Result<Option<String>> {
        Ok(Some(match t {
            None => v,
            Some(t) => cx.e.add(&t, &v, part)?,
        }))
    };
    for (v, tag) in &paths {
        let xpos = *tag == "xpos";
        if beta != 0.0 {
            let (a, b) = lin.f_pair(cx, v, &w, &format!("{tag}.z"))?;
            let (p, n) = if xpos { (a, b) } else { (b, a) };
            zp = acc(cx, zp, p, "zp")?;
            zn = acc(cx, zn, n, "zn")?;
        } else {
            let wk = if xpos { &w.pos } else { &w.neg };
            let p = lin.f(cx, v, wk, &format!("{tag}.zp"))?;
            zp = acc(cx, zp, p, "zp")?;
        }
    }
    let mut sp = cx.e.sd(r, &zp.expect("a sign path"), "sp")?;
    if alpha != 1.0 {
        let a = cx.e.scalar(alpha);
        sp = cx.e.mul(&sp, &a, "sp.alpha")?;
    }
    let sn = match zn {
        Some(zn) => {
            let q = cx.e.sd(r, &zn, "sn")?;
            let b = cx.e.scalar(-beta);
            Some(cx.e.mul(&q, &b, "sn.beta")?)
        }
        None => None,
    };
    let mut total: Option<String> = None;
    for (v, tag) in &paths {
        let xpos = *tag == "xpos";
        let back = match &sn {
            // W+ carries the positive share on the x+ path and the negative one on |x-|.
            Some(sn) if xpos => lin.ft_sum(cx, &sp, sn, &w, &format!("{tag}.back"))?,
            Some(sn) => lin.ft_sum(cx, sn, &sp, &w, &format!("{tag}.back"))?,
            None => {
                let wk = if xpos { &w.pos } else { &w.neg };
                lin.ft(cx, &sp, wk, &format!("{tag}.back"))?
            }
        };
        let c = cx.e.mul(v, &back, &format!("{tag}.c"))?;
        total = acc(cx, total, c, "paths")?;
    }
    Ok(total.expect("a sign path"))
}

/// RAP 3.2 (relative rule, with the FC / Conv variants of T4) and LRP's z+ rule.
fn hidden(cx: &mut Cx, lin: &Lin, x: &str, r: &str, method: Method) -> Result<String> {
    let w = weight_parts(cx, lin)?;
    let mut total: Option<String> = None;
    for (v, tag) in sign_paths(cx, x)? {
        let c = match method {
            m if m.is_rap() && lin.w_nonneg => {
                // No negative weight: Z2 = 0, so g = 0, rho = [Z1 != 0] and s2 = 0; what is
                // left is s1 = sd(R, Z1) (FC) or sd(R+, Z1) (Conv) back through W itself.
                let z1 = lin.f(cx, &v, &lin.w, &format!("{tag}.z1"))?;
                let num = if lin.conv.is_none() {
                    r.to_string()
                } else {
                    cx.e.relu(r, &format!("{tag}.rpos"))?
                };
                let s1 = cx.e.sd(&num, &z1, &format!("{tag}.s1"))?;
                let back = lin.ft(cx, &s1, &lin.w, &format!("{tag}.back"))?;
                let c = cx.e.mul(&v, &back, &format!("{tag}.c"))?;
                shift(cx, lin, &c, r, tag)?
            }
            m if m.is_rap() => {
                let (z1, z2) = if v == x && cx.tuning.z2_from_output {
                    // x >= 0: F(x; W) = Z1 - Z2 is the layer's own output less its bias, so
                    // one convolution gives Z1 and Z2 = Z1 - (y - b).
                    let z1 = lin.f(cx, &v, &w.pos, &format!("{tag}.z1"))?;
                    let fx = lin.output_without_bias(cx)?;
                    let z2 = cx.e.sub(&z1, &fx, &format!("{tag}.z2"))?;
                    (z1, z2)
                } else {
                    lin.f_pair(cx, &v, &w, &format!("{tag}.z"))?
                };
                let (s1, s2) = factors(cx, lin.conv.is_none(), r, &z1, &z2, tag)?;
                let back = lin.ft_sum(cx, &s1, &s2, &w, &format!("{tag}.back"))?;
                let c = cx.e.mul(&v, &back, &format!("{tag}.c"))?;
                shift(cx, lin, &c, r, tag)?
            }
            _ => {
                // The reference's alpha1-beta0: x+ with W+, and |x-| with |W-| (both positive
                // contributions), each path normalised on its own.
                let wk = if tag == "xpos" { &w.pos } else { &w.neg };
                let z = lin.f(cx, &v, wk, &format!("{tag}.z"))?;
                let s = cx.e.sd(r, &z, &format!("{tag}.s"))?;
                let back = lin.ft(cx, &s, wk, &format!("{tag}.back"))?;
                cx.e.mul(&v, &back, &format!("{tag}.c"))?
            }
        };
        total = Some(match total {
            None => c,
            Some(t) => cx.e.add(&t, &c, "paths")?,
        });
    }
    Ok(total.expect("at least one sign path"))
}

/// The generalised RAP rule of a hidden layer whose input can be negative. The official code
/// runs the relative rule twice, on `x+` and on `x-`, and shifts each path to the whole `R`, so
/// the relevance doubles at every such layer. Here both sign paths share one relative rule:
/// slot 1 holds every positive contribution (`x+ W+` and `|x-| |W-|`), slot 2 the magnitude of
/// every negative one (`x+ |W-|` and `|x-| W+`), the factors are those of the official rule
/// (`Z1`, `Z2` summed over both paths, FC / Conv variants kept), and one shift restores
/// `sum C = sum R`. Where `x >= 0` this is the official rule exactly (the `x-` terms vanish).
fn relative_joint(cx: &mut Cx, lin: &Lin, x: &str, r: &str) -> Result<String> {
    let w = weight_parts(cx, lin)?;
    let xp = cx.e.relu(x, "xpos")?;
    let xn = cx.e.relu_neg(x, "xneg")?;
    // Z1 and Z2 from their own convolutions (not `Z1 - F(x; W)`: a difference of two large
    // sums would make a small Z2 inexact, and Z2 divides).
    let (pos_p, neg_p) = lin.f_pair(cx, &xp, &w, "xpos.z")?;
    let (neg_n, pos_n) = lin.f_pair(cx, &xn, &w, "xneg.z")?;
    let z1 = cx.e.add(&pos_p, &pos_n, "z1")?;
    let z2 = cx.e.add(&neg_p, &neg_n, "z2")?;
    let (s1, s2) = factors(cx, lin.conv.is_none(), r, &z1, &z2, "joint")?;
    // x+ meets W+ in slot 1 and |W-| in slot 2; |x-| the other way round:
    // back+ = Ft(s1; W+) + Ft(s2; |W-|), back- = Ft(s2; W+) + Ft(s1; |W-|). With
    // W+ = (|W| + W) / 2 and |W-| = (|W| - W) / 2 both come from two back-projections,
    // A = Ft(s1 + s2; |W|) and B = Ft(s1 - s2; W): back+ = (A + B) / 2, back- = (A - B) / 2
    // (half the transposed products of four; docs/RULES.md, "Signed inputs").
    let u = cx.e.add(&s1, &s2, "joint.s_sum")?;
    let v = cx.e.sub(&s1, &s2, "joint.s_diff")?;
    let w_abs = cx.e.add(&w.pos, &w.neg, "w.abs")?;
    let a = lin.ft(cx, &u, &w_abs, "back.abs")?;
    let b = lin.ft(cx, &v, &lin.w, "back.w")?;
    let half = cx.e.scalar(0.5);
    let ab = cx.e.add(&a, &b, "xpos.back.sum")?;
    let back_p = cx.e.mul(&ab, &half, "xpos.back")?;
    let amb = cx.e.sub(&a, &b, "xneg.back.diff")?;
    let back_n = cx.e.mul(&amb, &half, "xneg.back")?;
    let cp = cx.e.mul(&xp, &back_p, "xpos.c")?;
    let cn = cx.e.mul(&xn, &back_n, "xneg.c")?;
    let c = cx.e.add(&cp, &cn, "c")?;
    shift(cx, lin, &c, r, "joint")
}

/// The relative rule's factors `(s1, s2)` in the form the tuning asks for (the reference's,
/// with the redundant masks folded, or with safe divisions as selections).
fn factors(
    cx: &mut Cx,
    fc: bool,
    r: &str,
    z1: &str,
    z2: &str,
    tag: &str,
) -> Result<(String, String)> {
    if cx.tuning.fold_masks && cx.e.selects() {
        relative_factors_select(cx, fc, r, z1, z2, tag)
    } else if cx.tuning.fold_masks {
        relative_factors_folded(cx, fc, r, z1, z2, tag)
    } else {
        relative_factors(cx, fc, r, z1, z2, tag)
    }
}

/// The per-output factors `(s1, s2)` of RAP's relative rule, as the reference forms them:
/// `g = sd(Z2, D)`, `rho = [D != 0]`, then FC `s1 = sd(R rho, Z1)`, `s2 = sd(R g, Z2)`, or
/// Conv `s1 = sd(R+ rho, Z1)`, `s2 = sd(R g + R- rho, Z2)`.
fn relative_factors(
    cx: &mut Cx,
    fc: bool,
    r: &str,
    z1: &str,
    z2: &str,
    tag: &str,
) -> Result<(String, String)> {
    let d = cx.e.add(z1, z2, &format!("{tag}.d"))?;
    let g = cx.e.sd(z2, &d, &format!("{tag}.g"))?;
    let rho = cx.e.nonzero(&d)?;
    let (s1_num, s2_num) = if fc {
        // FC: positive and negative relevance both go over slot 1 in full.
        let a = cx.e.mul(r, &rho, &format!("{tag}.r_rho"))?;
        let b = cx.e.mul(r, &g, &format!("{tag}.r_g"))?;
        (a, b)
    } else {
        // Conv: negative relevance goes over slot 2 in full.
        let rp = cx.e.relu(r, &format!("{tag}.rpos"))?;
        let rn = cx.e.sub(r, &rp, &format!("{tag}.rneg"))?;
        let a = cx.e.mul(&rp, &rho, &format!("{tag}.rpos_rho"))?;
        let rg = cx.e.mul(r, &g, &format!("{tag}.r_g"))?;
        let rnr = cx.e.mul(&rn, &rho, &format!("{tag}.rneg_rho"))?;
        let b = cx.e.add(&rg, &rnr, &format!("{tag}.s2num"))?;
        (a, b)
    };
    let s1 = cx.e.sd(&s1_num, z1, &format!("{tag}.s1"))?;
    let s2 = cx.e.sd(&s2_num, z2, &format!("{tag}.s2"))?;
    Ok((s1, s2))
}

/// The same factors with the masks the algebra makes redundant folded away (Z1, Z2 >= 0):
/// `Z1 != 0` implies `D != 0`, so `s1 = sd(R(+), Z1)`; where `Z2 != 0`, `g / Z2 = 1 / D`, so
/// FC `s2 = [Z2 != 0] R / D` and Conv `s2 = [Z2 != 0] (R / D + R- / Z2)`. Equal values up to
/// rounding, five fewer element-wise ops per layer.
fn relative_factors_folded(
    cx: &mut Cx,
    fc: bool,
    r: &str,
    z1: &str,
    z2: &str,
    tag: &str,
) -> Result<(String, String)> {
    // Z2 + [Z2 == 0] and [Z2 != 0]; Z1 + that is D wherever Z2 != 0 and never 0.
    let (z2_safe, m2) = cx.e.safe_den(z2)?;
    let dd = cx.e.add(z1, &z2_safe, &format!("{tag}.d_safe"))?;
    let r_d = cx.e.div(r, &dd, &format!("{tag}.r_d"))?;
    if fc {
        let s1 = cx.e.sd(r, z1, &format!("{tag}.s1"))?;
        let s2 = cx.e.mul(&r_d, &m2, &format!("{tag}.s2"))?;
        return Ok((s1, s2));
    }
    let rp = cx.e.relu(r, &format!("{tag}.rpos"))?;
    let rn = cx.e.sub(r, &rp, &format!("{tag}.rneg"))?;
    let s1 = cx.e.sd(&rp, z1, &format!("{tag}.s1"))?;
    let rn_z2 = cx.e.div(&rn, &z2_safe, &format!("{tag}.rneg_z2"))?;
    let sum = cx.e.add(&r_d, &rn_z2, &format!("{tag}.s2sum"))?;
    let s2 = cx.e.mul(&sum, &m2, &format!("{tag}.s2"))?;
    Ok((s1, s2))
}

/// The folded factors with safe divisions as selections: `s1 = sd(R(+), Z1)`, FC
/// `s2 = [Z2 != 0] R / D`, Conv `s2 = [Z2 != 0] (R / D + R- / Z2)`, each `[Z2 != 0]` a
/// `Where` that discards the division's inf or NaN where `Z2 == 0`. `D = Z1 + Z2 != 0` wherever
/// `Z2 != 0` (both are sums of non-negative terms).
fn relative_factors_select(
    cx: &mut Cx,
    fc: bool,
    r: &str,
    z1: &str,
    z2: &str,
    tag: &str,
) -> Result<(String, String)> {
    let d = cx.e.add(z1, z2, &format!("{tag}.d"))?;
    let r_d = cx.e.div(r, &d, &format!("{tag}.r_d"))?;
    if fc {
        let s1 = cx.e.sd(r, z1, &format!("{tag}.s1"))?;
        let s2 = cx.e.zero_where_zero(z2, &r_d, &format!("{tag}.s2"))?;
        return Ok((s1, s2));
    }
    let rp = cx.e.relu(r, &format!("{tag}.rpos"))?;
    let rn = cx.e.sub(r, &rp, &format!("{tag}.rneg"))?;
    let s1 = cx.e.sd(&rp, z1, &format!("{tag}.s1"))?;
    let rn_z2 = cx.e.div(&rn, z2, &format!("{tag}.rneg_z2"))?;
    let sum = cx.e.add(&r_d, &rn_z2, &format!("{tag}.s2sum"))?;
    let s2 = cx.e.zero_where_zero(z2, &sum, &format!("{tag}.s2"))?;
    Ok((s1, s2))
}

/// RAP's uniform shift: move `sum(C) - sum(R)` evenly off the non-zero entries of C, per
/// sample. The generalised rule keeps it, except at a layer that does not mix positions (a 1x1
/// convolution with stride 1, a dense layer on tokens): there the sums run over the channel
/// axis alone, so each position's excess is taken back at that position, as if every position
/// were a dense layer of its own (the official sums over the whole sample move relevance
/// between positions that the layer never connects; docs/RULES.md, "shift"). A position whose
/// inputs are all zero cannot take its excess back; that remainder is spread over the whole
/// sample as the official shift does, so the layer conserves exactly.
fn shift(cx: &mut Cx, lin: &Lin, c: &str, r: &str, tag: &str) -> Result<String> {
    let nz = cx.e.nonzero(c)?;
    let sum =
        |cx: &mut Cx, x: &str, part: &str| cx.e.sum_sample(x, lin.rank, &format!("{tag}.{part}"));
    if !(cx.method.is_robust() && lin.pointwise()) {
        let sc = sum(cx, c, "sum_c")?;
        let sr = sum(cx, r, "sum_r")?;
        let delta = cx.e.sub(&sc, &sr, &format!("{tag}.delta"))?;
        let n = sum(cx, &nz, "count")?;
        let per = cx.e.sd(&delta, &n, &format!("{tag}.per"))?;
        let take = cx.e.mul(&per, &nz, &format!("{tag}.take"))?;
        return cx.e.sub(c, &take, &format!("{tag}.shifted"));
    }
    // Sums over the channel axis: for a convolution a 1x1 Conv with a kernel of ones (tract
    // reduces over the strided channel axis of NCHW slowly: 10% of ResNet-50's explanation),
    // for tokens a ReduceSum over the contiguous last axis.
    let at = |cx: &mut Cx, x: &str, channels: i64, part: &str| -> Result<String> {
        let part = format!("{tag}.pos.{part}");
        if lin.conv.is_none() {
            return cx.e.reduce("ReduceSum", x, &[lin.chan_axis()], true, &part);
        }
        let dims: Vec<i64> = [vec![1, channels], vec![1; lin.rank - 2]].concat();
        let ones = cx.e.const_f32(
            &format!("{part}.ones"),
            &dims,
            &vec![1.0; channels as usize],
        );
        cx.e.op("Conv", &part, &[x, &ones], vec![])
    };
    let cin = lin.x_dims[0];
    let sc = at(cx, c, cin, "sum_c")?;
    let sr = at(cx, r, lin.c, "sum_r")?;
    let delta = cx.e.sub(&sc, &sr, &format!("{tag}.pos.delta"))?;
    let n = at(cx, &nz, cin, "count")?;
    let per = cx.e.sd(&delta, &n, &format!("{tag}.pos.per"))?;
    let (_, has) = cx.e.safe_den(&n)?;
    let kept = cx.e.mul(&delta, &has, &format!("{tag}.pos.taken"))?;
    let left = cx.e.sub(&delta, &kept, &format!("{tag}.pos.left"))?;
    let left = sum(cx, &left, "left")?;
    // The sample's count from the per-position counts (a reduction of a plane, not of C).
    let n_all = sum(cx, &n, "count")?;
    let per_all = cx.e.sd(&left, &n_all, &format!("{tag}.per_all"))?;
    let per = cx.e.add(&per, &per_all, &format!("{tag}.per"))?;
    // A convolution's per-position amount, [N, 1, ...], copied to every channel (Expand)
    // before it meets the mask: tract multiplies a tensor broadcast over the channel axis
    // slowly (ResNet-50, `profile_explain`: 18.7 ms of a 390 ms explanation; 2.2 ms for the
    // product and 0.5 ms for the copy). Not a 1x1 Conv of ones: tract 0.23.9's convolutions
    // with one input channel give run-dependent values on small planes (tests/tiny_nets.rs,
    // pooled planes).
    let per = if lin.conv.is_some() {
        let to = cx.e.const_i64(
            &format!("{tag}.pos.spread.shape"),
            &[lin.rank as i64],
            &[vec![1, cin], vec![1; lin.rank - 2]].concat(),
        );
        cx.e.op("Expand", &format!("{tag}.pos.spread"), &[&per, &to], vec![])?
    } else {
        per
    };
    let take = cx.e.mul(&per, &nz, &format!("{tag}.take"))?;
    cx.e.sub(c, &take, &format!("{tag}.shifted"))
}

/// RAP 3.1: the first step at the layer making the logits, from the target class alone.
fn first_step(cx: &mut Cx, lin: &Lin, x: &str) -> Result<String> {
    let t = cx.target.to_string();
    let wt = cx.e.op(
        "Gather",
        "w.target",
        &[&lin.w, &t],
        vec![make_int("axis", 0)],
    )?;
    let wtp = cx.e.relu(&wt, "w.target.pos")?;
    let wtn = cx.e.sub(&wt, &wtp, "w.target.neg")?;
    let (xp, xn) = match cx.sign(x) {
        Sign::NonNeg => (Some(x.to_string()), None),
        Sign::NonPos => (None, Some(x.to_string())),
        Sign::Any => {
            let p = cx.e.relu(x, "xpos")?;
            let n = cx.e.sub(x, &p, "xneg")?;
            (Some(p), Some(n))
        }
    };
    let mut c = cx.e.mul(x, &wt, "contrib")?;
    // The target logit, `sum(x w_t) + b_t`, for the generalised rule's rescaling.
    let mut logit = None;
    if let (Some((b, beta)), Some(xp)) = (lin.bias.clone(), xp) {
        let mut b = cx.e.reshape(&b, &[-1], "b.flat")?;
        if beta != 1.0 {
            let s = cx.e.scalar(beta);
            b = cx.e.mul(&b, &s, "b.beta")?;
        }
        // The bias is split between the positive and negative classes as P : Q, and each
        // share spread over x+ in proportion to its contributions in that class.
        let class_sum = |cx: &mut Cx, a: &str, w: &str, part: &str| -> Result<(String, String)> {
            let e = cx.e.mul(a, w, &format!("e.{part}"))?;
            let z =
                cx.e.reduce("ReduceSum", &e, &[1], true, &format!("z.{part}"))?;
            Ok((e, z))
        };
        let (epp, zpp) = class_sum(cx, &xp, &wtp, "pp")?;
        let (epn, zpn) = class_sum(cx, &xp, &wtn, "pn")?;
        let (p, q) = match &xn {
            Some(xn) => {
                let (_, znp) = class_sum(cx, xn, &wtp, "np")?;
                let (_, znn) = class_sum(cx, xn, &wtn, "nn")?;
                (cx.e.add(&zpp, &znn, "p")?, cx.e.add(&zpn, &znp, "q")?)
            }
            None => (zpp.clone(), zpn.clone()),
        };
        let pq = cx.e.add(&p, &q, "pq")?;
        let bt =
            cx.e.op("Gather", "b.target", &[&b, &t], vec![make_int("axis", 0)])?;
        let bt = cx.e.reshape(&bt, &[-1, 1], "b.target.col")?;
        if cx.method.is_robust() {
            let z = cx.e.reduce("ReduceSum", &c, &[1], true, "sum.xw")?;
            logit = Some(cx.e.add(&z, &bt, "logit")?);
        }
        let share_p = cx.e.sd(&p, &pq, "share.p")?;
        let share_q = cx.e.sd(&q, &pq, "share.q")?;
        let fp = cx.e.sd(&epp, &zpp, "frac.pp")?;
        let fq = cx.e.sd(&epn, &zpn, "frac.pn")?;
        let bp = cx.e.mul(&bt, &share_p, "bias.p")?;
        let bq = cx.e.mul(&bt, &share_q, "bias.q")?;
        let tp = cx.e.mul(&bp, &fp, "bias.p.spread")?;
        let tq = cx.e.mul(&bq, &fq, "bias.q.spread")?;
        let c1 = cx.e.add(&c, &tp, "contrib.bp")?;
        c = cx.e.add(&c1, &tq, "contrib.b")?;
    }
    // Every input gets the magnitude of its contribution, rescaled to the total. The
    // generalised RAP rescales to the logit itself: where a class share of the bias finds no
    // x+ to spread over (its contributions sum to 0), the official rule loses it.
    let a = cx.e.op("Abs", "abs", &[&c], vec![])?;
    let sc = match logit {
        Some(yt) if cx.method.is_robust() => yt,
        _ => cx.e.reduce("ReduceSum", &c, &[1], true, "sum")?,
    };
    let sa = cx.e.reduce("ReduceSum", &a, &[1], true, "sum_abs")?;
    let k = cx.e.sd(&sc, &sa, "scale")?;
    cx.e.mul(&a, &k, "first")
}

/// `rap` at an input layer whose windows tile the input (a ViT's patch embedding): RAP's
/// relative rule on the input's offset from its lower bound, `x - l >= 0`, then the shift
/// (docs/RULES.md, "The input layer of a patch embedding"). A pixel at the lower bound has no
/// contribution and gets no relevance; z^B's bound terms would hand every pixel of a relevant
/// patch a share, whatever its value.
fn patch_offset(cx: &mut Cx, lin: &Lin, x: &str, r: &str) -> Result<String> {
    let (lo, _) = input_bounds(cx, lin, x)?;
    let d = cx.e.sub(x, &lo, "xoff.raw")?;
    // >= 0 by construction with per-sample bounds; fixed bounds may lie inside the range.
    let xs = cx.e.relu(&d, "xoff")?;
    let w = weight_parts(cx, lin)?;
    let (z1, z2) = lin.f_pair(cx, &xs, &w, "xoff.z")?;
    // A patch embedding is a convolution: the conv variant of the factors.
    let (s1, s2) = factors(cx, false, r, &z1, &z2, "xoff")?;
    let back = lin.ft_sum(cx, &s1, &s2, &w, "xoff.back")?;
    let c = cx.e.mul(&xs, &back, "xoff.c")?;
    shift(cx, lin, &c, r, "xoff")
}

/// The input's bounds `(l, h)`: the sample's minimum and maximum, or `--input-bounds`.
fn input_bounds(cx: &mut Cx, lin: &Lin, x: &str) -> Result<(String, String)> {
    let bshape: Vec<i64> = std::iter::once(-1)
        .chain(std::iter::repeat_n(1, lin.rank - 1))
        .collect();
    Ok(match cx.bounds {
        Bounds::PerSample => {
            let flat =
                cx.e.op("Flatten", "x.flat", &[x], vec![make_int("axis", 1)])?;
            let lo = cx.e.reduce("ReduceMin", &flat, &[1], true, "lo.flat")?;
            let hi = cx.e.reduce("ReduceMax", &flat, &[1], true, "hi.flat")?;
            (
                cx.e.reshape(&lo, &bshape, "lo")?,
                cx.e.reshape(&hi, &bshape, "hi")?,
            )
        }
        Bounds::Fixed(l, h) => (cx.e.scalar(l), cx.e.scalar(h)),
    })
}

/// RAP 3.3 / LRP section 4: the bounded rule for the layer reading the model input.
fn z_bounded(cx: &mut Cx, lin: &Lin, x: &str, r: &str, method: Method) -> Result<String> {
    let wp = cx.e.relu(&lin.w, "w.pos")?;
    let wn = cx.e.relu_neg(&lin.w, "w.neg")?;
    let (lo, hi) = input_bounds(cx, lin, x)?;
    // F(L; W+) = l * F(1; W+) and F(H; W-) = -h * F(1; |W-|), with zero padding as for x.
    let one_dims: Vec<i64> = std::iter::once(1)
        .chain(lin.x_dims.iter().copied())
        .collect();
    let ones = cx.e.ones(&one_dims, "ones")?;
    let fx = lin.f(cx, x, &lin.w, "z.x")?;
    let fp1 = lin.f(cx, &ones, &wp, "z.ones_pos")?;
    let fn1 = lin.f(cx, &ones, &wn, "z.ones_neg")?;
    let lfp = cx.e.mul(&lo, &fp1, "z.lo")?;
    let hfn = cx.e.mul(&hi, &fn1, "z.hi")?;
    let z0 = cx.e.sub(&fx, &lfp, "z.minus_lo")?;
    let z = cx.e.add(&z0, &hfn, "z")?;
    let s = match method {
        m if m.is_rap() => cx.e.sd(r, &z, "s")?,
        // Every LRP variant: the reference LRP's `R / (Z + 1e-9)`.
        _ => {
            let eps = cx.e.scalar(1e-9);
            let ze = cx.e.add(&z, &eps, "z.eps")?;
            cx.e.div(r, &ze, "s")?
        }
    };
    let bx = lin.ft(cx, &s, &lin.w, "back.x")?;
    let bp = lin.ft(cx, &s, &wp, "back.pos")?;
    let bn = lin.ft(cx, &s, &wn, "back.neg")?;
    let tx = cx.e.mul(x, &bx, "in.x")?;
    let tl = cx.e.mul(&lo, &bp, "in.lo")?;
    let th = cx.e.mul(&hi, &bn, "in.hi")?;
    let a = cx.e.sub(&tx, &tl, "in.x_lo")?;
    cx.e.add(&a, &th, "in")
}
