//! Generates the Rust types of `proto/onnx.proto` with protox (a pure-Rust protobuf compiler),
//! so building onnx-rap needs no `protoc` binary.

fn main() {
    let proto = "proto/onnx.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = match protox::compile([proto], ["proto"]) {
        Ok(d) => d,
        Err(e) => panic!("proto/onnx.proto does not compile: {e}"),
    };
    let mut config = prost_build::Config::new();
    if let Err(e) = config.compile_fds(descriptors) {
        panic!("prost-build failed on proto/onnx.proto: {e}");
    }
}
