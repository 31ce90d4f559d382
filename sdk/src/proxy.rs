//! Everything a proxy backend needs: the trait to implement and the typed proxy model.

pub use crate::proxy_backend::exports::infrapilot::plugin::backend::Guest as ProxyBackend;
pub use crate::proxy_backend::infrapilot::plugin::proxy_model::{
    AccessRule, Location, ProxyHost, RateLimit, RenderedFile, SecurityHeaders, Tls, Upstream,
    UpstreamScheme,
};
pub use crate::proxy_backend::infrapilot::plugin::types::PluginError;
pub use crate::proxy_backend::infrapilot::plugin::{config, log};
