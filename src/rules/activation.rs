//! Element-wise activations and the ops that pass values through unchanged: relevance passes
//! unchanged (docs/RULES.md, "The official rules"); gradients are masked by the derivative.
//! Softmax at the output is skipped (the logits are explained).

use std::collections::HashMap;

use super::{first_only, rel0, unsupported_use, Cx, Kind, Rule};
use crate::analysis::{first_input_sign, Sign};
use crate::error::Result;
use crate::onnx::proto::NodeProto;
use crate::onnx::tensor::dtype_name;

pub fn register(reg: &mut HashMap<&'static str, &'static dyn Rule>) {
    reg.insert("Relu", &Relu);
    reg.insert("Identity", &PassThrough);
    reg.insert("Dropout", &PassThrough);
    reg.insert("LogSoftmax", &OutputSoftmax);
    reg.insert("Cast", &Cast);
}

/// Cast from float32 to float32 (converters write hundreds of them): values and relevance
/// pass unchanged. Relevance reaching any other Cast is refused: the relevance graph is
/// float32, and an activation turned into integers (or another float width) carries no
/// relevance onnx-rap could hand back.
struct Cast;

impl Rule for Cast {
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
        let dtype = |t: &str| cx.facts.get(t).and_then(|f| f.dtype);
        let from = node.input.first().and_then(|t| dtype(t));
        let to = crate::onnx::attr::int(node, "to")?.map(|v| v as i32);
        let name = |d: Option<i32>| d.map_or("an unknown type".into(), dtype_name);
        // An unknown input type is float: the relevance path follows float tensors only.
        if !matches!(from, Some(1) | None) || to != Some(1) {
            return Err(unsupported_use(
                node,
                &format!(
                    "it casts an activation from {} to {} on the way from the input to the \
                     logits; onnx-rap explains float32 models (only float32 -> float32 casts \
                     pass relevance): export the model in float32",
                    name(from),
                    name(to)
                ),
            ));
        }
        Ok(first_only(r, node.input.len()))
    }
}

/// Relu: identity for relevance; its output is non-negative. The gradient is masked by
/// `[y > 0]` (`[y != 0]` on the output).
struct Relu;

impl Rule for Relu {
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
            let m = cx.e.nonzero(&node.output[0])?;
            let g = cx.e.mul(&r, &m, "grad")?;
            return Ok(first_only(g, node.input.len()));
        }
        Ok(first_only(r, node.input.len()))
    }
}

/// Identity and Dropout (inference): values and relevance pass unchanged.
struct PassThrough;

impl Rule for PassThrough {
    fn kind(&self) -> Kind {
        Kind::ShapeOnly
    }
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        first_input_sign(ins)
    }
    fn backward(
        &self,
        _: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        Ok(first_only(rel0(node, rel)?.to_string(), node.input.len()))
    }
}

/// Softmax / LogSoftmax: explained through its input when it makes the model output.
/// Inside a network (attention) there is no rule yet.
struct OutputSoftmax;

impl Rule for OutputSoftmax {
    fn kind(&self) -> Kind {
        Kind::OutputNormalizer
    }
    fn sign(&self, node: &NodeProto, _: &[Sign]) -> Sign {
        if node.op_type() == "Softmax" {
            Sign::NonNeg
        } else {
            Sign::NonPos
        }
    }
    fn backward(
        &self,
        _: &mut Cx,
        node: &NodeProto,
        _: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        Err(super::unsupported_use(
            node,
            "a Softmax inside the network (not at the output) has no relevance rule yet",
        ))
    }
}
