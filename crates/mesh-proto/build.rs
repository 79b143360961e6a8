//! Compiles `proto/identitymesh/v1/*.proto` with protox (pure Rust; no system `protoc`) and
//! generates messages (prost) and gRPC clients and servers (tonic) into `OUT_DIR`, plus the
//! encoded `FileDescriptorSet` that server reflection serves.

use std::error::Error;
use std::path::{Path, PathBuf};

use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let package_dir = proto_root.join("identitymesh/v1");

    // protox does not emit rerun-if-changed; watching the folder catches added files too.
    println!("cargo:rerun-if-changed={}", proto_root.display());
    println!("cargo:rerun-if-changed={}", package_dir.display());

    let mut files = Vec::new();
    for entry in std::fs::read_dir(&package_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
    // Sorted so that the descriptor set (and hence reflection output) is reproducible.
    files.sort();

    let fds = protox::compile(&files, [&proto_root])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("identitymesh_v1_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    let mut config = tonic_prost_build::Config::new();
    // Every message implements `prost::Name` (full name `identitymesh.v1.ChangeEvent`).
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");
    // BTreeMap for every map field: encoding is then deterministic (map entries in key order),
    // which the committed fixtures and message-id derivations rely on.
    config.btree_map(["."]);

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&out_dir)
        .compile_fds_with_config(fds, config)?;

    check_generated(&out_dir)?;
    Ok(())
}

/// Fails the build early, with a clear message, if the package's output file is missing.
fn check_generated(out_dir: &Path) -> Result<(), Box<dyn Error>> {
    let generated = out_dir.join("identitymesh.v1.rs");
    if !generated.exists() {
        return Err(format!("expected generated file {} is missing", generated.display()).into());
    }
    Ok(())
}
