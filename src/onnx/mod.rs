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
