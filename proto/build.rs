//! Generates the `commons.v1` messages with prost, and the tonic services when
//! the `grpc` feature is on. protoc comes from `protoc-bin-vendored`, so no
//! system protoc is needed.

use std::path::PathBuf;

const PROTOS: &[&str] = &["commons/v1/tx.proto", "commons/v1/api.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .build_transport(grpc)
        .file_descriptor_set_path(out_dir.join("commons_v1_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["."])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
