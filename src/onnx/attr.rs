//! Typed access to node attributes, and constructors for the attributes the compiler emits.
//! A missing or mistyped attribute is an error that names the node, never a panic.

use super::proto::{attribute_proto::AttributeType, AttributeProto, NodeProto, TensorProto};
use crate::bad_input;
use crate::error::Result;

fn find<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name() == name)
}

fn wrong(node: &NodeProto, name: &str, want: &str) -> crate::error::Error {
    bad_input!(
        "node '{}' ({}): attribute '{name}' is not {want}",
        node.name(),
        node.op_type()
    )
}

/// An integer attribute, if present.
pub fn int(node: &NodeProto, name: &str) -> Result<Option<i64>> {
    match find(node, name) {
        None => Ok(None),
        Some(a) => a.i.map(Some).ok_or_else(|| wrong(node, name, "an integer")),
    }
}

/// A float attribute, if present.
pub fn float(node: &NodeProto, name: &str) -> Result<Option<f32>> {
    match find(node, name) {
        None => Ok(None),
        Some(a) => a.f.map(Some).ok_or_else(|| wrong(node, name, "a float")),
    }
}

/// A list-of-integers attribute, if present.
pub fn ints(node: &NodeProto, name: &str) -> Result<Option<Vec<i64>>> {
    match find(node, name) {
        None => Ok(None),
        Some(a) if a.r#type() == AttributeType::Ints || !a.ints.is_empty() => {
            Ok(Some(a.ints.clone()))
        }
        Some(_) => Err(wrong(node, name, "a list of integers")),
    }
}

/// A string attribute, if present.
pub fn string(node: &NodeProto, name: &str) -> Result<Option<String>> {
    match find(node, name) {
        None => Ok(None),
        Some(a) => {
            a.s.as_ref()
                .map(|s| Some(String::from_utf8_lossy(s).to_string()))
                .ok_or_else(|| wrong(node, name, "a string"))
        }
    }
}

/// A tensor attribute, if present.
pub fn tensor<'a>(node: &'a NodeProto, name: &str) -> Result<Option<&'a TensorProto>> {
    match find(node, name) {
        None => Ok(None),
        Some(a) => {
            a.t.as_ref()
                .map(Some)
                .ok_or_else(|| wrong(node, name, "a tensor"))
        }
    }
}

/// `name = v` (INT).
pub fn make_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(AttributeType::Int as i32),
        ..Default::default()
    }
}

/// `name = v` (FLOAT).
pub fn make_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(v),
        r#type: Some(AttributeType::Float as i32),
        ..Default::default()
    }
}

/// `name = [v...]` (INTS).
pub fn make_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(AttributeType::Ints as i32),
        ..Default::default()
    }
}

/// `name = t` (TENSOR).
pub fn make_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        t: Some(t),
        r#type: Some(AttributeType::Tensor as i32),
        ..Default::default()
    }
}
