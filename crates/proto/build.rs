//! Compiles `proto/sandboxd/v1/*.proto` with protox (a pure-Rust protobuf
//! compiler), so building needs no system `protoc`. The encoded descriptor set
//! is also written to OUT_DIR for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto");
    let files = [
        "events", "execs", "host", "image", "logs", "process", "sandbox", "types", "verify",
    ]
    .map(|name| proto_root.join(format!("sandboxd/v1/{name}.proto")));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("sandboxd_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
