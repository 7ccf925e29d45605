//! TensorProto <-> ndarray, and the small constant tensors the compiler emits.

use ndarray::{ArrayD, IxDyn};

use super::proto::{tensor_proto::DataType, TensorProto};
use crate::bad_input;
use crate::error::Result;

/// ONNX element type name, for messages.
pub fn dtype_name(code: i32) -> String {
    DataType::try_from(code)
        .map(|d| d.as_str_name().to_lowercase())
        .unwrap_or_else(|_| format!("type {code}"))
}

fn shape_of(t: &TensorProto) -> Result<Vec<usize>> {
    t.dims
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| bad_input!("tensor '{}' has a negative dimension {d}", t.name()))
        })
        .collect()
}

/// Number of elements a tensor declares.
pub fn numel(t: &TensorProto) -> u64 {
    t.dims
        .iter()
        .fold(1u64, |n, &d| n.saturating_mul(d.max(0) as u64))
}

fn from_raw<T, const N: usize>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunk of N bytes")))
        .collect()
}

/// Read a numeric tensor as f32 (float, double and integer types are converted).
pub fn to_f32(t: &TensorProto) -> Result<ArrayD<f32>> {
    let shape = shape_of(t)?;
    let raw = t.raw_data.as_deref();
    let dt = DataType::try_from(t.data_type()).unwrap_or(DataType::Undefined);
    let data: Vec<f32> = match (dt, raw) {
        (DataType::Float, Some(r)) => from_raw(r, f32::from_le_bytes),
        (DataType::Float, None) => t.float_data.clone(),
        (DataType::Double, Some(r)) => from_raw(r, f64::from_le_bytes)
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        (DataType::Double, None) => t.double_data.iter().map(|&v| v as f32).collect(),
        (DataType::Int64, _) => to_i64(t)?.iter().map(|&v| v as f32).collect(),
        (DataType::Int32, Some(r)) => from_raw(r, i32::from_le_bytes)
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        (DataType::Int32, None) => t.int32_data.iter().map(|&v| v as f32).collect(),
        _ => {
            return Err(bad_input!(
                "tensor '{}' has element type {}, which onnx-rap cannot read as numbers",
                t.name(),
                dtype_name(t.data_type())
            ))
        }
    };
    ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|_| {
        bad_input!(
            "tensor '{}' holds a number of values that does not match its shape {:?}",
            t.name(),
            shape
        )
    })
}

/// Read an int64 (or int32) tensor.
pub fn to_i64(t: &TensorProto) -> Result<ArrayD<i64>> {
    let shape = shape_of(t)?;
    let raw = t.raw_data.as_deref();
    let data: Vec<i64> = match (t.data_type(), raw) {
        (7, Some(r)) => from_raw(r, i64::from_le_bytes),
        (7, None) => t.int64_data.clone(),
        (6, Some(r)) => from_raw(r, i32::from_le_bytes)
            .into_iter()
            .map(i64::from)
            .collect(),
        (6, None) => t.int32_data.iter().map(|&v| i64::from(v)).collect(),
        (other, _) => {
            return Err(bad_input!(
                "tensor '{}' has element type {}, expected int64",
                t.name(),
                dtype_name(other)
            ))
        }
    };
    ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|_| {
        bad_input!(
            "tensor '{}' holds a number of values that does not match its shape {:?}",
            t.name(),
            shape
        )
    })
}

/// A float32 tensor with raw little-endian data.
pub fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// An int64 tensor with raw little-endian data.
pub fn i64_tensor(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// A uint8 tensor with raw data.
pub fn u8_tensor(name: &str, dims: &[i64], values: &[u8]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Uint8 as i32),
        raw_data: Some(values.to_vec()),
        ..Default::default()
    }
}
