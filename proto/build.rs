//! Compiles `proto/ferry/v1/ferry.proto` with protox (pure Rust), so building
//! Ferry never needs a system `protoc`. The gRPC clients and servers are
//! generated only with the `grpc` feature (on by default).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/ferry/v1/ferry.proto"];
    println!("cargo:rerun-if-changed=proto");
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    let descriptors = protox::compile(files, ["proto"])?;
    // Bulk bytes decode as `Bytes` (no copy out of the HTTP/2 buffers).
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .bytes(".ferry.v1.Chunk.data")
        .compile_fds(descriptors)?;
    Ok(())
}
