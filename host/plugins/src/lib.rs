//! The plugin runtime of the InfraPilot host.
//!
//! - [`manifest`]: what a plugin declares (id, version, world, WIT version, edition, requested
//!   capabilities, the JSON Schema of its settings).
//! - [`bundle`]: component + manifest + Ed25519 signature, packed as a tar file; verified against
//!   the operator's trusted publisher keys.
//! - [`capabilities`]: requested ∩ granted, checked inside every host function, denied by default.
//! - [`runtime`]: one wasmtime `Engine` (pooling allocator, epoch interruption every 10 ms), compiled
//!   components cached on disk by content hash and engine, `InstancePre` per loaded plugin, a
//!   deadline and a memory limit per hook; a runaway plugin yields a [`HookError`], never a crash.
//! - [`egress`]: the real outbound HTTP for plugins: allowed hosts, addresses checked at dial time
//!   and on every redirect, time and size bounds.
//! - [`services`]: what the host functions delegate to ([`HostServices`]); the host implements it
//!   for real, tests with a recording fake.

pub mod bindings;
pub mod bundle;
pub mod capabilities;
pub mod egress;
mod host_functions;
pub mod license;
pub mod manifest;
pub mod runtime;
pub mod services;

pub use bundle::{Bundle, BundleError, SigningKey, TrustedKeys, VerifiedBundle};
pub use capabilities::Capabilities;
pub use manifest::{Edition, Manifest, ManifestError, World};
pub use runtime::{
    AlertChannelPlugin, HookError, Invocation, Limits, ProxyBackendPlugin, Rendered, Runtime,
    RuntimeError,
};
pub use services::HostServices;

/// WIT contract versions this host can link plugins against.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.0"];
