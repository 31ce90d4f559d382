//! The worlds, one module per world: its typed handle (implementing
//! [`crate::runtime::WorldPlugin`]) and the dispatch of its calls to the contract version a
//! component was built against (the per-version calls are in [`crate::versions`]). A new world is
//! one more module here and its `World` variant; nothing else in the runtime or the host's plugin
//! registry names worlds one by one, except the install-time check's table
//! ([`crate::runtime::Runtime::check_world`]).

pub mod alert_channel;
pub mod proxy_backend;
