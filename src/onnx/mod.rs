//! The ONNX file format: the generated protobuf types, loading and saving (external data too),
//! tensors as ndarrays, and typed attribute access.

pub mod attr;
pub mod io;
pub mod tensor;

/// Rust types generated from `proto/onnx.proto` by `build.rs`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use io::{decode, decode_file, encode, load, load_bytes, save, SaveOptions};

/// The shape a value's tensor type declares, if it declares one.
pub fn declared_shape(vi: &proto::ValueInfoProto) -> Option<&proto::TensorShapeProto> {
    vi.r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
}

/// [`declared_shape`], to change it.
pub fn declared_shape_mut(vi: &mut proto::ValueInfoProto) -> Option<&mut proto::TensorShapeProto> {
    vi.r#type
        .as_mut()
        .and_then(|t| t.tensor_type.as_mut())
        .and_then(|t| t.shape.as_mut())
}
