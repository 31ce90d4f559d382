//! What a plugin is, without running it (no wasmtime): the SDK's tool, the host and the runtime
//! share these.
//!
//! - [`manifest`]: what a plugin declares (id, version, world, WIT version, edition, requested
//!   capabilities, the JSON Schema of its settings).
//! - [`bundle`]: component + manifest + Ed25519 signature, packed as a tar file; verified against
//!   the operator's trusted publisher keys.
//! - [`capabilities`]: what a plugin requests and an operator grants; their intersection is what
//!   the runtime lets it do.
//! - [`contract`]: the WIT contract's types, the same for every contract version; the runtime
//!   converts each version's bindings to these.

pub mod bundle;
pub mod capabilities;
pub mod contract;
pub mod manifest;

pub use bundle::{Bundle, BundleError, SigningKey, TrustedKeys, VerifiedBundle};
pub use capabilities::Capabilities;
pub use manifest::{Edition, Manifest, ManifestError, SsoLogin, World};

/// WIT contract versions a manifest may name (the runtime links each of them).
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];
