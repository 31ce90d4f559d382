//! Host-side bindings of the WIT worlds in `wit/since_v0.1.0`.

/// World `alert-channel`.
pub mod alert_channel {
    wasmtime::component::bindgen!({
        world: "alert-channel",
        path: "../../wit/since_v0.1.0",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

/// World `proxy-backend`; shares the host interfaces with `alert-channel`.
pub mod proxy_backend {
    wasmtime::component::bindgen!({
        world: "proxy-backend",
        path: "../../wit/since_v0.1.0",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "infrapilot:plugin/types": crate::bindings::alert_channel::infrapilot::plugin::types,
            "infrapilot:plugin/log": crate::bindings::alert_channel::infrapilot::plugin::log,
            "infrapilot:plugin/config": crate::bindings::alert_channel::infrapilot::plugin::config,
        },
    });
}

pub use alert_channel::exports::infrapilot::plugin::channel;
pub use alert_channel::infrapilot::plugin::alerts::{Alert, AlertState, Delivery, Severity};
pub use alert_channel::infrapilot::plugin::types::{Header, PluginError};
pub use alert_channel::infrapilot::plugin::{clock, config, http, kv, log, mail, random};
pub use proxy_backend::infrapilot::plugin::proxy_model::{
    AccessRule, Location, ProxyHost, RateLimit, RenderedFile, SecurityHeaders, Tls, Upstream,
    UpstreamScheme,
};
