//! Compiles Ferry's `.proto` files with protox (pure Rust), so building
//! Ferry never needs a system `protoc`: the public API (package `ferry.v1`,
//! one file and service per resource, under `proto/ferry/v1/`) and the
//! cluster-internal services (package `ferry.internal.v1`, under
//! `proto/ferry/internal/v1/`). prost writes one Rust file per package. The
//! gRPC clients and servers are generated only with the `grpc` feature (on by
//! default).
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut files = Vec::new();
    for dir in ["proto/ferry/v1", "proto/ferry/internal/v1"] {
        files.extend(proto_files(Path::new(dir))?);
    }
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    // The public package alone (and what it imports), for server reflection:
    // generic clients (grpcurl) see the API, not the cluster's own services.
    let public = protox::compile(proto_files(Path::new("proto/ferry/v1"))?, ["proto"])?;
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    std::fs::write(
        out.join("ferry_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&public),
    )?;
    let descriptors = protox::compile(&files, ["proto"])?;
    // Bulk bytes decode as `Bytes` (no copy out of the HTTP/2 buffers).
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .bytes(".ferry.v1.Chunk.data")
        .compile_fds(descriptors)?;
    Ok(())
}

/// The `.proto` files of one directory, sorted (a stable build).
fn proto_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "proto") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
