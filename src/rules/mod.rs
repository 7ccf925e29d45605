//! Relevance rules, one file per operator family, and the registry that maps an ONNX op type
//! to its rule. A rule turns the relevance of a node's outputs into the relevance of its inputs
//! by emitting plain ONNX nodes; it also tells the analysis what it knows about its op (sign of
//! the output, whether it is a linear layer or only moves data).

mod activation;
mod attention;
mod elementwise;
pub mod emit;
mod layout;
mod linear;
mod norm;
mod pool;
mod reduce;
mod resize;
mod structure;
mod window;

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use crate::analysis::{Facts, Sign, Signs};
use crate::bad_input;
use crate::error::{Error, Result};
use crate::onnx::proto::NodeProto;
pub use emit::Emit;

/// Which propagation rules to compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Relative Attributing Propagation generalised to every graph: the official rules where
    /// they conserve (ReLU networks without residual joins), conserving and bounded rules for
    /// residual joins, signed layer inputs and normalisations (docs/RULES.md, "rap").
    Rap,
    /// Relative Attributing Propagation exactly as the official code computes it.
    RapOfficial,
    /// The LRP alpha1-beta0 baseline of the reference code (docs/RULES.md, "Other methods").
    Lrp,
    /// LRP-epsilon: `R_in = x * Ft(R / (z + eps sign(z)); W)` with `z` the layer output
    /// (bias included) at every linear layer but the input one (z^B).
    LrpEps,
    /// LRP alpha2-beta1 with positive and negative contributions each normalised jointly;
    /// z^B at the input layer.
    LrpA2B1,
    /// LRP z+ (alpha1-beta0 with joint normalisation of the positive contributions); z^B at
    /// the input layer.
    LrpZPlus,
    /// Gradient x input: the gradient of the target logit, times the input.
    GradInput,
    /// AttnLRP (Achtibat et al., ICML 2024): the epsilon rule on linear layers and sums,
    /// Softmax by its Taylor rule, products of two activations split equally, LayerNorm with
    /// its standard deviation held fixed, element-wise nonlinearities and RMSNorm by the
    /// identity (docs/RULES.md, "attnlrp"). Not conserving by design.
    AttnLrp,
}

impl Method {
    /// Every method, in the order tables list them.
    pub const ALL: [Method; 8] = [
        Method::Rap,
        Method::RapOfficial,
        Method::Lrp,
        Method::LrpEps,
        Method::LrpA2B1,
        Method::LrpZPlus,
        Method::GradInput,
        Method::AttnLrp,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Rap => "rap",
            Method::RapOfficial => "rap-official",
            Method::Lrp => "lrp",
            Method::LrpEps => "lrp-eps",
            Method::LrpA2B1 => "lrp-a2b1",
            Method::LrpZPlus => "lrp-zplus",
            Method::GradInput => "gradxinput",
            Method::AttnLrp => "attnlrp",
        }
    }

    /// The method of a command-line name.
    pub fn parse(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// True for gradient x input: rules propagate gradients, not relevance.
    pub fn is_gradient(self) -> bool {
        self == Method::GradInput
    }

    /// Either form of RAP: both start from the one-hot and take RAP's first step.
    pub fn is_rap(self) -> bool {
        matches!(self, Method::Rap | Method::RapOfficial)
    }

    /// True for the generalised RAP: rules that conserve on every graph (where the official
    /// rules double or amplify, `rap-official` keeps them).
    pub fn is_robust(self) -> bool {
        self == Method::Rap
    }

    /// True where the seed is the target logit (LRP's `y * T`) rather than a one-hot.
    pub fn seeds_with_logit(self) -> bool {
        matches!(
            self,
            Method::Lrp | Method::LrpEps | Method::LrpA2B1 | Method::LrpZPlus | Method::AttnLrp
        )
    }

    /// True for AttnLRP.
    pub fn is_attnlrp(self) -> bool {
        self == Method::AttnLrp
    }
}

/// AttnLRP's stabiliser of every division (the value LXT uses).
pub const ATTNLRP_EPSILON: f32 = 1e-6;

/// The LRP-epsilon stabiliser when none is given (Bach et al. 2015 used 0.01).
pub const DEFAULT_EPSILON: f32 = 0.01;

/// Where a node sits, which decides the rule variant of linear layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Makes the explained logits: RAP's first-step rule.
    Output,
    /// Reads the model input: the bounded z^B rule.
    Input,
    /// Everything else: RAP's relative rule.
    Hidden,
}

/// What kind of operator a rule handles, for the analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Gemm, MatMul, Conv: candidates for the first-step and input rules.
    Linear,
    /// Moves or copies data without arithmetic (Flatten, Reshape, Identity...).
    ShapeOnly,
    /// Normalises logits into probabilities (Softmax): explaining its output explains its input.
    OutputNormalizer,
    /// Anything else.
    Other,
}

/// The bounds of the z^B input rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bounds {
    /// Per-sample minimum and maximum of the input (the reference behaviour).
    PerSample,
    /// Fixed bounds for every sample.
    Fixed(f32, f32),
}

/// Rewrites that give the same relevance up to float rounding and make it cheaper to run.
/// All on by default; switchable so the benchmark can show what each one gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Hidden layer with input >= 0: take `Z2 = Z1 - (y - b)` from the forward output
    /// instead of a second convolution.
    pub z2_from_output: bool,
    /// Stride-1 transposed convolutions as plain convolutions with flipped kernels.
    pub flip_transpose: bool,
    /// Leave out the safe-division masks that the relative rule's algebra makes redundant.
    pub fold_masks: bool,
    /// Write the masks `[b != 0]` as `|sign(b)|` (the same 0/1 values, cheaper ops).
    pub sign_masks: bool,
    /// Safe division as `Where(b == 0, 0, a / b)` (opset >= 11): three ops, no mask or
    /// patched denominator to build.
    pub select_division: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            z2_from_output: true,
            flip_transpose: true,
            fold_masks: true,
            sign_masks: true,
            select_division: false,
        }
    }
}

impl Tuning {
    /// [`Tuning::none`] when `exact`, else the default.
    pub fn exact_if(exact: bool) -> Self {
        if exact {
            Tuning::none()
        } else {
            Tuning::default()
        }
    }

    /// Every rewrite off: the rules as the reference computes them, op for op.
    pub fn none() -> Self {
        Tuning {
            z2_from_output: false,
            flip_transpose: false,
            fold_masks: false,
            sign_masks: false,
            select_division: false,
        }
    }
}

/// What a rule sees besides its node.
pub struct Cx<'a, 'g> {
    pub e: &'a mut Emit<'g>,
    pub facts: &'a Facts,
    pub signs: &'a Signs,
    pub method: Method,
    /// LRP-epsilon's stabiliser.
    pub epsilon: f32,
    pub role: Role,
    /// int64 `[N]` tensor: the class explained per sample.
    pub target: &'a str,
    pub bounds: Bounds,
    pub tuning: Tuning,
    /// The original graph, to read constant values (initializers) at compile time.
    pub graph: &'a crate::ir::Graph,
    /// Tensors that depend on the explained input (everything else is a constant).
    pub dynamic: &'a HashSet<String>,
}

impl Cx<'_, '_> {
    /// The per-sample dimensions of a tensor, all known, or an error naming the node.
    pub fn sample_dims(&self, node: &NodeProto, tensor: &str) -> Result<Vec<i64>> {
        self.facts
            .get(tensor)
            .and_then(|f| f.sample_dims())
            .ok_or_else(|| {
                bad_input!(
                    "node '{}' ({}): the shape of '{tensor}' is not known past the batch \
                     axis{}; onnx-rap needs static shapes (fix the input size when exporting)",
                    node.name(),
                    node.op_type(),
                    self.facts.why_unknown()
                )
            })
    }

    /// The shape of a tensor on the relevance path: -1 for the batch axis, every other
    /// dimension known. A single-sample model has no batch axis: all of its shape.
    pub fn dims(&self, node: &NodeProto, tensor: &str) -> Result<Vec<i64>> {
        if self.e.single_sample() {
            return self.known_shape(node, tensor);
        }
        Ok(std::iter::once(-1)
            .chain(self.sample_dims(node, tensor)?)
            .collect())
    }

    /// Whether `axis` (non-negative) is the batch axis, which per-sample rules leave alone.
    pub fn is_batch_axis(&self, axis: i64) -> bool {
        axis == 0 && !self.e.single_sample()
    }

    /// The full shape of a constant (or any fully known) tensor.
    pub fn known_shape(&self, node: &NodeProto, tensor: &str) -> Result<Vec<i64>> {
        let dims = self
            .facts
            .get(tensor)
            .and_then(|f| f.shape.as_ref())
            .and_then(|s| {
                s.iter()
                    .map(|d| match d {
                        crate::analysis::Dim::Known(v) => Some(*v),
                        _ => None,
                    })
                    .collect::<Option<Vec<i64>>>()
            });
        dims.ok_or_else(|| {
            bad_input!(
                "node '{}' ({}): the shape of '{tensor}' is not known",
                node.name(),
                node.op_type()
            )
        })
    }

    /// The value of an initializer, if `tensor` is one (exporters may put Identity nodes in
    /// front of shared initializers: those are followed).
    pub fn constant(&self, tensor: &str) -> Option<ndarray::ArrayD<f32>> {
        let mut t = tensor;
        loop {
            if let Some(init) = self.graph.initializer(t) {
                return crate::onnx::tensor::to_f32(init).ok();
            }
            match self.graph.producer_op(t) {
                Some(n) if n.op_type() == "Identity" && !n.input.is_empty() => t = &n.input[0],
                Some(n) if n.op_type() == "Constant" => {
                    let v = crate::onnx::attr::tensor(n, "value").ok().flatten()?;
                    return crate::onnx::tensor::to_f32(v).ok();
                }
                // A filled tensor of a constant shape (weights of the onnx "light" models).
                Some(n) if n.op_type() == "ConstantOfShape" && !n.input.is_empty() => {
                    let shape = self.constant(&n.input[0])?;
                    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
                    let fill = match crate::onnx::attr::tensor(n, "value").ok().flatten() {
                        Some(v) => crate::onnx::tensor::to_f32(v)
                            .ok()?
                            .iter()
                            .next()
                            .copied()?,
                        None => 0.0,
                    };
                    return Some(ndarray::ArrayD::from_elem(ndarray::IxDyn(&dims), fill));
                }
                // Computed from shapes only: inference knows its value.
                _ => return self.facts.get(t).and_then(|f| f.value.clone()),
            }
        }
    }

    /// The operand and denominator of a z-rule `R_in = x * F^T(sd(R, F(x)))` through input
    /// `slot` of `node`: `(x, y)` as the forward pass computed them, or, for the generalised
    /// RAP where `x` can be negative, `(|x|, F(|x|))` with `F` recomputed by a copy of the node
    /// on `|x|`. The ops this serves (average pools, reductions, resizing) have non-negative
    /// weights, so the shares `|x_i| w_i / sum_k |x_k| w_k` lie in [0, 1] and sum to 1: the
    /// rule conserves and never divides by a sum of opposite-signed terms that nearly cancel.
    /// Where `x >= 0` both forms are the same numbers.
    pub fn magnitudes(&mut self, node: &NodeProto, slot: usize) -> Result<(String, String)> {
        let x = input(node, slot)?.to_string();
        let y = node.output[0].clone();
        if !self.method.is_robust() || self.sign(&x) == Sign::NonNeg {
            return Ok((x, y));
        }
        let ax = self.e.op("Abs", "x.abs", &[&x], vec![])?;
        let ins: Vec<&str> = node
            .input
            .iter()
            .enumerate()
            .map(|(k, t)| if k == slot { ax.as_str() } else { t.as_str() })
            .collect();
        let y_abs = self
            .e
            .op(node.op_type(), "y.abs", &ins, node.attribute.clone())?;
        Ok((ax, y_abs))
    }

    /// The generalised RAP's split of `R` over the summands `xs` of a join (`y = sum_k x_k`):
    /// `R_k = |x_k| sd(R, sum_j |x_j|)`. Each share lies in [0, 1] and the shares sum to 1, so
    /// it conserves wherever any summand is non-zero and never amplifies; where every summand
    /// is >= 0 it is the official z-rule `x_k sd(R, y)`.
    /// `sum`: the join's own output when it is the plain sum of `xs` (Add, Sum), reused as
    /// the total where every summand is known to be >= 0.
    pub fn split_by_magnitude(
        &mut self,
        r: &str,
        xs: &[&str],
        sum: Option<&str>,
    ) -> Result<Vec<String>> {
        let nonneg = xs.iter().all(|x| self.sign(x) == Sign::NonNeg);
        let mut mags = Vec::new();
        for (k, x) in xs.iter().enumerate() {
            mags.push(if self.sign(x) == Sign::NonNeg {
                x.to_string()
            } else {
                self.e.op("Abs", &format!("abs{k}"), &[x], vec![])?
            });
        }
        let mut total = mags[0].clone();
        match sum {
            Some(y) if nonneg => total = y.to_string(),
            _ => {
                for (k, m) in mags.iter().enumerate().skip(1) {
                    total = self.e.add(&total, m, &format!("abs_sum{k}"))?;
                }
            }
        }
        let s = self.e.sd(r, &total, "s")?;
        mags.iter()
            .enumerate()
            .map(|(k, m)| self.e.mul(m, &s, &format!("in{k}")))
            .collect()
    }

    /// The epsilon rule's stabilised division `r / (z + eps s(z))`, `s(z) = 1` where `z >= 0`
    /// and -1 elsewhere (never 0), with `eps` = [`ATTNLRP_EPSILON`] under AttnLRP and the
    /// method's `--epsilon` otherwise.
    pub fn eps_div(&mut self, r: &str, z: &str, part: &str) -> Result<String> {
        let eps = if self.method.is_attnlrp() {
            ATTNLRP_EPSILON
        } else {
            self.epsilon
        };
        let zero = self.e.scalar(0.0);
        let neg = self
            .e
            .op("Less", &format!("{part}.neg"), &[z, &zero], vec![])?;
        let (up, down) = (self.e.scalar(eps), self.e.scalar(-eps));
        let shift = self
            .e
            .op("Where", &format!("{part}.eps"), &[&neg, &down, &up], vec![])?;
        let den = self.e.add(z, &shift, &format!("{part}.den"))?;
        self.e.div(r, &den, part)
    }

    /// The z-rule's `r / y`: RAP's safe division (0 where `y == 0`), or under AttnLRP its
    /// stabilised division ([`Cx::eps_div`]).
    pub fn z_div(&mut self, r: &str, y: &str, part: &str) -> Result<String> {
        if self.method.is_attnlrp() {
            self.eps_div(r, y, part)
        } else {
            self.e.sd(r, y, part)
        }
    }

    /// Sign of a tensor as the analysis found it.
    pub fn sign(&self, tensor: &str) -> Sign {
        self.signs.get(tensor).copied().unwrap_or(Sign::Any)
    }
}

/// One operator family's relevance rule.
pub trait Rule: Sync {
    /// What kind of op this is.
    fn kind(&self) -> Kind {
        Kind::Other
    }

    /// The sign of the output, given the signs of the inputs.
    fn sign(&self, _node: &NodeProto, _inputs: &[Sign]) -> Sign {
        Sign::Any
    }

    /// Emit the relevance of the inputs (one entry per input slot; `None` where an input gets
    /// none) from the relevance of the outputs.
    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel_out: &[Option<String>],
    ) -> Result<Vec<Option<String>>>;
}

/// The registry: op type -> rule (default ONNX domain).
pub fn registry() -> &'static HashMap<&'static str, &'static dyn Rule> {
    static REG: OnceLock<HashMap<&'static str, &'static dyn Rule>> = OnceLock::new();
    REG.get_or_init(|| {
        let mut reg: HashMap<&'static str, &'static dyn Rule> = HashMap::new();
        linear::register(&mut reg);
        activation::register(&mut reg);
        pool::register(&mut reg);
        norm::register(&mut reg);
        structure::register(&mut reg);
        elementwise::register(&mut reg);
        layout::register(&mut reg);
        reduce::register(&mut reg);
        attention::register(&mut reg);
        resize::register(&mut reg);
        reg
    })
}

/// The rule for a node, if onnx-rap has one.
pub fn rule_for(node: &NodeProto) -> Option<&'static dyn Rule> {
    if !(node.domain().is_empty() || node.domain() == "ai.onnx") {
        return None;
    }
    registry().get(node.op_type()).copied()
}

/// The relevance reaching output 0, or an error naming the node.
pub(crate) fn rel0<'r>(node: &NodeProto, rel_out: &'r [Option<String>]) -> Result<&'r str> {
    rel_out
        .first()
        .and_then(|r| r.as_deref())
        .ok_or_else(|| unsupported_use(node, "its first output carries no relevance"))
}

/// An op used in a way its rule does not cover.
pub(crate) fn unsupported_use(node: &NodeProto, why: &str) -> Error {
    bad_input!(
        "node '{}' ({}): onnx-rap cannot propagate relevance through it: {why}",
        node.name(),
        node.op_type()
    )
}

/// `axis` (negative: counted from the end) as an index into a tensor of rank `rank`, or an
/// error naming the node (a malformed file may hold any integer there).
pub(crate) fn norm_axis(node: &NodeProto, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 {
        axis.saturating_add(r)
    } else {
        axis
    };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(unsupported_use(
            node,
            &format!("axis {axis} is out of range for a tensor of rank {rank}"),
        ))
    }
}

/// Input `slot` of a node, or an error.
pub(crate) fn input(node: &NodeProto, slot: usize) -> Result<&str> {
    node.input
        .get(slot)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unsupported_use(node, &format!("input {slot} is missing")))
}

/// `[Some(r), None, None...]` for a node with `n` inputs.
pub(crate) fn first_only(r: String, n: usize) -> Vec<Option<String>> {
    let mut v = vec![None; n.max(1)];
    v[0] = Some(r);
    v
}
