//! The InfraPilot plugin SDK: write a plugin (a WebAssembly component) in Rust.
//!
//! A plugin implements the export of one world and registers it with that world's macro:
//!
//! ```ignore
//! use infrapilot_plugin_sdk::channel::{Alert, AlertChannel, Delivery, PluginError};
//!
//! struct MyChannel;
//! impl AlertChannel for MyChannel {
//!     fn validate() -> Result<(), PluginError> { Ok(()) }
//!     fn deliver(alert: Alert) -> Result<Delivery, PluginError> { /* … */ }
//! }
//! infrapilot_plugin_sdk::export_alert_channel!(MyChannel);
//! ```
//!
//! Build it with `scripts/build-plugins.sh` (or see `sdk/README.md`), which turns the
//! `wasm32-unknown-unknown` module into a component. Host functions only work inside the host;
//! `infrapilot-plugin-testing` runs a built component against a recording fake host in `cargo test`.

/// Bindings of the `alert-channel` world (`wit/since_v0.2.0`).
pub mod alert_channel {
    wit_bindgen::generate!({
        world: "alert-channel",
        path: "../wit/since_v0.2.0",
        default_bindings_module: "infrapilot_plugin_sdk::alert_channel",
        pub_export_macro: true,
        export_macro_name: "export_alert_channel",
    });
}

/// Bindings of the `proxy-backend` world (`wit/since_v0.2.0`).
pub mod proxy_backend {
    wit_bindgen::generate!({
        world: "proxy-backend",
        path: "../wit/since_v0.2.0",
        default_bindings_module: "infrapilot_plugin_sdk::proxy_backend",
        pub_export_macro: true,
        export_macro_name: "export_proxy_backend",
    });
}

/// Bindings of the `sso-provider` world (`wit/since_v0.2.0`).
pub mod sso_provider {
    wit_bindgen::generate!({
        world: "sso-provider",
        path: "../wit/since_v0.2.0",
        default_bindings_module: "infrapilot_plugin_sdk::sso_provider",
        pub_export_macro: true,
        export_macro_name: "export_sso_provider",
    });
}

/// Bindings of the `log-sink` world (`wit/since_v0.2.0`).
pub mod log_sink {
    wit_bindgen::generate!({
        world: "log-sink",
        path: "../wit/since_v0.2.0",
        default_bindings_module: "infrapilot_plugin_sdk::log_sink",
        pub_export_macro: true,
        export_macro_name: "export_log_sink",
    });
}

/// Bindings of the `policy-engine` world (`wit/since_v0.2.0`).
pub mod policy_engine {
    wit_bindgen::generate!({
        world: "policy-engine",
        path: "../wit/since_v0.2.0",
        default_bindings_module: "infrapilot_plugin_sdk::policy_engine",
        pub_export_macro: true,
        export_macro_name: "export_policy_engine",
    });
}

pub mod channel;
pub mod policy;
pub mod proxy;
pub mod sink;
pub mod sso;

pub use alert_channel::export_alert_channel;
pub use log_sink::export_log_sink;
pub use policy_engine::export_policy_engine;
pub use proxy_backend::export_proxy_backend;
pub use sso_provider::export_sso_provider;

pub use serde_json as json;
