//! Everything a log sink needs: the trait to implement and the log model. The host writes the
//! lines its nodes deliver and asks the sink instead of its own database; every call names the
//! organisation, and a sink answers a query with that organisation's lines only.

pub use crate::log_sink::exports::infrapilot::plugin::sink::Guest as LogSink;
pub use crate::log_sink::infrapilot::plugin::log_model::{
    ContainerCount, LogCursor, LogLine, LogQuery, ProxyCount, VolumeCount,
};
pub use crate::log_sink::infrapilot::plugin::types::PluginError;
pub use crate::log_sink::infrapilot::plugin::{clock, config, http, log};

/// The sink's settings (the JSON object the operator configured), read as `T`.
pub fn settings<T: serde::de::DeserializeOwned>() -> Result<T, PluginError> {
    serde_json::from_str(&config::settings())
        .map_err(|e| PluginError::InvalidSettings(format!("settings: {e}")))
}
