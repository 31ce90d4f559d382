//! Compiles agent.proto with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=agent.proto");
    let descriptors = protox::compile(["agent.proto"], ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // No `connect` helper: it needs tonic's channel feature in every user of this crate.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
