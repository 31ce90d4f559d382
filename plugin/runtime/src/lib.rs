//! The plugin runtime: runs components for the host and for the SDK's test harness. What a plugin
//! is (manifest, capabilities, bundles) is `infrapilot-plugin-types`; licences are
//! `infrapilot-licensing`.
//!
//! - [`runtime`]: one wasmtime `Engine` (pooling allocator, epoch interruption every 10 ms), compiled
//!   components cached on disk by content hash and engine, `InstancePre` per loaded plugin, a
//!   deadline and a memory limit per hook; a runaway plugin yields a [`HookError`], never a crash.
//! - [`egress`]: the real outbound HTTP for plugins: allowed hosts, addresses checked at dial time
//!   and on every redirect, time and size bounds.
//! - [`services`]: what the host functions delegate to ([`HostServices`]); the host implements it
//!   for real, tests with a recording fake.
//! - [`versions`]: the contract versions side by side (`wit/since_v*`), each converting its
//!   generated types to the version-neutral [`contract`]; a component is linked against the
//!   version named in its exports.

pub mod directory;
pub mod egress;
mod host;
pub mod runtime;
pub mod services;
pub mod versions;
pub mod worlds;

/// The plugin contract in version-neutral types: what the host's domain code sees.
pub use infrapilot_plugin_types::contract;

// The runtime's API speaks in these types.
pub use infrapilot_plugin_types::SUPPORTED_WIT_VERSIONS;
pub use infrapilot_plugin_types::{
    Bundle, BundleError, Capabilities, Edition, Manifest, ManifestError, SigningKey, SsoLogin,
    TrustedKeys, VerifiedBundle, World,
};
pub use runtime::{HookError, Invocation, Limits, Runtime, RuntimeError, WorldPlugin};
pub use services::HostServices;
pub use versions::ContractVersion;
pub use worlds::alert_channel::AlertChannelPlugin;
pub use worlds::log_sink::LogSinkPlugin;
pub use worlds::policy_engine::PolicyEnginePlugin;
pub use worlds::proxy_backend::{ProxyBackendPlugin, Rendered};
pub use worlds::sso_provider::SsoProviderPlugin;
