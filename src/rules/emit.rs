//! What a rule writes with: an emitter that adds plain ONNX nodes named `{node}.rap.{part}`,
//! in the form the model's opset expects, plus the arithmetic RAP needs (safe division,
//! per-sample sums).

use std::collections::HashMap;

use super::Tuning;

use crate::error::Result;
use crate::ir::{Builder, Graph};
use crate::onnx::attr::{make_int, make_ints, make_tensor};
use crate::onnx::proto::AttributeProto;
use crate::onnx::tensor::{f32_tensor, i64_tensor, u8_tensor};

/// Emits nodes into a graph for one node's rule at a time.
pub struct Emit<'g> {
    b: Builder<'g>,
    opset: i64,
    prefix: String,
    scalars: HashMap<u32, String>,
    safe: HashMap<String, (String, String)>,
    masks: HashMap<String, String>,
    sign_masks: bool,
    select_division: bool,
    zero_tests: HashMap<String, String>,
    /// One sample per run: per-sample reductions cover every axis (see `Facts`).
    single_sample: bool,
}

impl<'g> Emit<'g> {
    /// `tuning`: the forms of masks and safe divisions (see [`Tuning`]).
    /// `single_sample`: the model runs one sample at a time, its batch axis folded into others.
    pub fn new(graph: &'g mut Graph, opset: i64, tuning: Tuning, single_sample: bool) -> Self {
        Emit {
            sign_masks: tuning.sign_masks,
            // Equal takes floats from opset 11 on.
            select_division: tuning.select_division && opset >= 11,
            zero_tests: HashMap::new(),
            single_sample,
            b: Builder::new(graph),
            opset,
            prefix: "rap".into(),
            scalars: HashMap::new(),
            safe: HashMap::new(),
            masks: HashMap::new(),
        }
    }

    /// Opset of the default domain the emitted nodes follow.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// Whether the model runs one sample at a time, so that axis 0 is not a batch axis.
    pub fn single_sample(&self) -> bool {
        self.single_sample
    }

    /// Name the following nodes after the node whose rule runs now.
    pub fn set_prefix(&mut self, prefix: String) {
        self.prefix = prefix;
    }

    /// The graph being written to.
    pub fn graph(&mut self) -> &mut Graph {
        self.b.graph
    }

    /// Any operator with one output, named `{prefix}.{part}`.
    pub fn op(
        &mut self,
        op_type: &str,
        part: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> Result<String> {
        let base = format!("{}.{part}", self.prefix);
        self.b.op1(op_type, &base, inputs, attrs)
    }

    /// Any operator with `n` outputs.
    pub fn op_n(
        &mut self,
        op_type: &str,
        part: &str,
        inputs: &[&str],
        n: usize,
        attrs: Vec<AttributeProto>,
    ) -> Result<Vec<String>> {
        let base = format!("{}.{part}", self.prefix);
        self.b.op(op_type, &base, inputs, n, attrs)
    }

    /// A constant initializer named `{prefix}.{part}`.
    pub fn const_f32(&mut self, part: &str, dims: &[i64], values: &[f32]) -> String {
        let base = format!("{}.{part}", self.prefix);
        self.b.constant(&base, f32_tensor("", dims, values))
    }

    /// An int64 constant initializer named `{prefix}.{part}`.
    pub fn const_i64(&mut self, part: &str, dims: &[i64], values: &[i64]) -> String {
        let base = format!("{}.{part}", self.prefix);
        self.b.constant(&base, i64_tensor("", dims, values))
    }

    /// A uint8 constant initializer named `{prefix}.{part}`.
    pub fn const_u8(&mut self, part: &str, dims: &[i64], values: &[u8]) -> String {
        let base = format!("{}.{part}", self.prefix);
        self.b.constant(&base, u8_tensor("", dims, values))
    }

    /// A float scalar constant, shared by every rule.
    pub fn scalar(&mut self, v: f32) -> String {
        if let Some(n) = self.scalars.get(&v.to_bits()) {
            return n.clone();
        }
        let base = format!("rap.const.{v}");
        let n = self.b.constant(&base, f32_tensor("", &[], &[v]));
        self.scalars.insert(v.to_bits(), n.clone());
        n
    }

    pub fn add(&mut self, a: &str, b: &str, part: &str) -> Result<String> {
        self.op("Add", part, &[a, b], vec![])
    }
    pub fn sub(&mut self, a: &str, b: &str, part: &str) -> Result<String> {
        self.op("Sub", part, &[a, b], vec![])
    }
    pub fn mul(&mut self, a: &str, b: &str, part: &str) -> Result<String> {
        self.op("Mul", part, &[a, b], vec![])
    }
    pub fn div(&mut self, a: &str, b: &str, part: &str) -> Result<String> {
        self.op("Div", part, &[a, b], vec![])
    }
    pub fn relu(&mut self, a: &str, part: &str) -> Result<String> {
        self.op("Relu", part, &[a], vec![])
    }
    pub fn neg(&mut self, a: &str, part: &str) -> Result<String> {
        self.op("Neg", part, &[a], vec![])
    }

    /// `max(-a, 0)`: the magnitude of the negative part.
    pub fn relu_neg(&mut self, a: &str, part: &str) -> Result<String> {
        let n = self.neg(a, &format!("{part}.neg"))?;
        self.relu(&n, part)
    }

    /// `[a == 0]` as float.
    pub fn is_zero(&mut self, a: &str, part: &str) -> Result<String> {
        // Equal takes floats from opset 11 on; the sign form works at every opset.
        if self.sign_masks || self.opset < 11 {
            let one = self.scalar(1.0);
            let nz = self.nonzero_of(a, &format!("{part}.nz"))?;
            return self.sub(&one, &nz, part);
        }
        let zero = self.scalar(0.0);
        let eq = self.op("Equal", &format!("{part}.eq"), &[a, &zero], vec![])?;
        self.op("Cast", part, &[&eq], vec![make_int("to", 1)])
    }

    /// `[a != 0]` as float, written `|sign(a)|` (exactly 0 or 1, and cheaper to run than
    /// `Cast(Not(Equal(a, 0)))`).
    fn nonzero_of(&mut self, a: &str, part: &str) -> Result<String> {
        let s = self.op("Sign", &format!("{part}.sign"), &[a], vec![])?;
        self.op("Abs", part, &[&s], vec![])
    }

    /// For a denominator `b`: `b + [b == 0]` and the mask `[b != 0]`, emitted once per `b`.
    pub fn safe_den(&mut self, b: &str) -> Result<(String, String)> {
        if let Some(p) = self.safe.get(b) {
            return Ok(p.clone());
        }
        let part = format!("sd.{}", short(b));
        let one = self.scalar(1.0);
        let (z, mask) = if self.sign_masks {
            let mask = self.nonzero(b)?;
            (self.sub(&one, &mask, &format!("{part}.zero"))?, mask)
        } else {
            let z = self.is_zero(b, &format!("{part}.zero"))?;
            (z.clone(), self.sub(&one, &z, &format!("{part}.mask"))?)
        };
        let den = self.add(b, &z, &format!("{part}.den"))?;
        self.safe.insert(b.to_string(), (den.clone(), mask.clone()));
        Ok((den, mask))
    }

    /// The mask `[b != 0]` as float, emitted once per `b`.
    pub fn nonzero(&mut self, b: &str) -> Result<String> {
        if !self.sign_masks {
            return Ok(self.safe_den(b)?.1);
        }
        if let Some(m) = self.masks.get(b) {
            return Ok(m.clone());
        }
        let m = self.nonzero_of(b, &format!("sd.{}.mask", short(b)))?;
        self.masks.insert(b.to_string(), m.clone());
        Ok(m)
    }

    /// Whether safe divisions are written as selections (`Where`).
    pub fn selects(&self) -> bool {
        self.select_division
    }

    /// `v` where `b != 0`, and 0 where `b == 0` (`Where`; the test emitted once per `b`).
    pub fn zero_where_zero(&mut self, b: &str, v: &str, part: &str) -> Result<String> {
        let test = match self.zero_tests.get(b) {
            Some(t) => t.clone(),
            None => {
                let zero = self.scalar(0.0);
                let t = self.op(
                    "Equal",
                    &format!("sd.{}.is0", short(b)),
                    &[b, &zero],
                    vec![],
                )?;
                self.zero_tests.insert(b.to_string(), t.clone());
                t
            }
        };
        let zero = self.scalar(0.0);
        self.op("Where", part, &[&test, &zero, v], vec![])
    }

    /// Safe division as RAP defines it: `a / b` where `b != 0`, and 0 where `b == 0`,
    /// written `Where(b == 0, 0, a / b)` (the division's inf or NaN at `b == 0` is never
    /// selected) or, before opset 11 or with `select_division` off,
    /// `(a / (b + [b==0])) * [b!=0]`.
    pub fn sd(&mut self, a: &str, b: &str, part: &str) -> Result<String> {
        if self.select_division {
            let q = self.div(a, b, &format!("{part}.q"))?;
            return self.zero_where_zero(b, &q, part);
        }
        let (den, mask) = self.safe_den(b)?;
        let q = self.div(a, &den, &format!("{part}.q"))?;
        self.mul(&q, &mask, part)
    }

    /// A reduction over `axes`, in the form of the model's opset.
    pub fn reduce(
        &mut self,
        op_type: &str,
        x: &str,
        axes: &[i64],
        keepdims: bool,
        part: &str,
    ) -> Result<String> {
        let keep = make_int("keepdims", keepdims as i64);
        let axes_are_input = match op_type {
            "ReduceSum" => self.opset >= 13,
            _ => self.opset >= 18,
        };
        if axes_are_input {
            let a = self.const_i64(&format!("{part}.axes"), &[axes.len() as i64], axes);
            self.op(op_type, part, &[x, &a], vec![keep])
        } else {
            self.op(op_type, part, &[x], vec![make_ints("axes", axes), keep])
        }
    }

    /// Per-sample sum over every non-batch axis of a rank-`rank` tensor, keeping the dims
    /// (every axis for a single-sample model).
    pub fn sum_sample(&mut self, x: &str, rank: usize, part: &str) -> Result<String> {
        let first = if self.single_sample { 0 } else { 1 };
        let axes: Vec<i64> = (first..rank as i64).collect();
        self.reduce("ReduceSum", x, &axes, true, part)
    }

    /// Reshape to a constant shape (0 copies the input's dimension, -1 is inferred).
    pub fn reshape(&mut self, x: &str, shape: &[i64], part: &str) -> Result<String> {
        let s = self.const_i64(&format!("{part}.shape"), &[shape.len() as i64], shape);
        self.op("Reshape", part, &[x, &s], vec![])
    }

    pub fn concat(&mut self, xs: &[&str], axis: i64, part: &str) -> Result<String> {
        self.op("Concat", part, xs, vec![make_int("axis", axis)])
    }

    /// Split along `axis` into pieces of the given sizes.
    pub fn split(&mut self, x: &str, axis: i64, sizes: &[i64], part: &str) -> Result<Vec<String>> {
        let ax = make_int("axis", axis);
        if self.opset >= 13 {
            let s = self.const_i64(&format!("{part}.sizes"), &[sizes.len() as i64], sizes);
            self.op_n("Split", part, &[x, &s], sizes.len(), vec![ax])
        } else {
            self.op_n(
                "Split",
                part,
                &[x],
                sizes.len(),
                vec![ax, make_ints("split", sizes)],
            )
        }
    }

    /// A float tensor of ones with a constant shape, made in the graph (folded at load time).
    pub fn ones(&mut self, dims: &[i64], part: &str) -> Result<String> {
        let s = self.const_i64(&format!("{part}.shape"), &[dims.len() as i64], dims);
        let one = f32_tensor("", &[1], &[1.0]);
        self.op(
            "ConstantOfShape",
            part,
            &[&s],
            vec![make_tensor("value", one)],
        )
    }
}

/// A short readable tag for a tensor name, used in generated node names.
fn short(name: &str) -> String {
    name.rsplit('.').next().unwrap_or(name).to_string()
}
