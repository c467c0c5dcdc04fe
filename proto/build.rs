//! Compiles `proto/ferry/v1/ferry.proto` with protox (pure Rust), so building
//! Ferry never needs a system `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/ferry/v1/ferry.proto"];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    // Bulk bytes decode as `Bytes` (no copy out of the HTTP/2 buffers).
    tonic_prost_build::configure()
        .bytes(".ferry.v1.Chunk.data")
        .compile_fds(descriptors)?;
    Ok(())
}
