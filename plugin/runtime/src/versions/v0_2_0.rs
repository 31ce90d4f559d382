//! Contract 0.2.0 (`wit/since_v0.2.0`): bindings, conversions to [`crate::contract`], host
//! adapters and calls of its worlds. Its interfaces have the 0.1.0 shape, so the shared macros
//! write them.

use crate::runtime::HostState;

/// World `alert-channel`.
pub(crate) mod alert_channel {
    wasmtime::component::bindgen!({
        world: "alert-channel",
        path: "../../wit/since_v0.2.0",
        imports: { default: async },
        exports: { default: async },
    });
}

/// World `proxy-backend`; shares the host interfaces with `alert-channel`.
pub(crate) mod proxy_backend {
    wasmtime::component::bindgen!({
        world: "proxy-backend",
        path: "../../wit/since_v0.2.0",
        imports: { default: async },
        exports: { default: async },
        with: {
            "infrapilot:plugin/types": super::alert_channel::infrapilot::plugin::types,
            "infrapilot:plugin/log": super::alert_channel::infrapilot::plugin::log,
            "infrapilot:plugin/config": super::alert_channel::infrapilot::plugin::config,
        },
    });
}

use alert_channel::infrapilot::plugin as wit;
use proxy_backend::infrapilot::plugin::proxy_model as proxy_wit;

super::contract_conversions!();
super::host_adapters!();
super::world_calls!();
