//! The worlds, one module per world: its typed handle (implementing
//! [`crate::runtime::WorldPlugin`]) and the dispatch of its calls to the contract version a
//! component was built against (the per-version calls are in [`crate::versions`]). A new world is
//! one more module here, its `World` variant, its entry in the `WORLDS` list of each version module
//! that has it, and its arm in the install-time check ([`crate::runtime::Runtime::check_world`]);
//! the host's plugin registry has no per-world loading code.

pub mod alert_channel;
pub mod log_sink;
pub mod policy_engine;
pub mod proxy_backend;
pub mod sso_provider;
