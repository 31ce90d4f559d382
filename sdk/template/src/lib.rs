//! An alert channel that pushes each alert to an ntfy topic.

use infrapilot_plugin_sdk::channel::{
    Alert, AlertChannel, AlertState, Delivery, PluginError, RequestBuilder, ResponseExt, Severity,
    log, optional_secret, settings,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Settings {
    #[serde(default = "default_server")]
    server: String,
    topic: String,
}

fn default_server() -> String {
    "https://ntfy.sh".into()
}

fn checked() -> Result<Settings, PluginError> {
    let s: Settings = settings()?;
    if !s.server.starts_with("https://") && !s.server.starts_with("http://") {
        return Err(PluginError::InvalidSettings("server: must start with https://".into()));
    }
    let topic_ok = !s.topic.is_empty()
        && s.topic.len() <= 64
        && s.topic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !topic_ok {
        return Err(PluginError::InvalidSettings(
            "topic: 1–64 letters, digits, '_' or '-'".into(),
        ));
    }
    Ok(s)
}

struct Ntfy;

impl AlertChannel for Ntfy {
    fn validate() -> Result<(), PluginError> {
        checked().map(|_| ())
    }

    fn deliver(alert: Alert) -> Result<Delivery, PluginError> {
        let s = checked()?;
        let priority = match (alert.state, alert.severity) {
            (AlertState::Firing, Severity::Critical) => "5",
            (AlertState::Firing, Severity::Warning) => "4",
            _ => "3",
        };
        let tag = match alert.state {
            AlertState::Firing => "rotating_light",
            AlertState::Resolved => "white_check_mark",
            AlertState::Test => "test_tube",
        };
        let url = format!("{}/{}", s.server.trim_end_matches('/'), s.topic);
        let mut request = RequestBuilder::post(&url)
            .header("Title", &alert.title)
            .header("Priority", priority)
            .header("Tags", tag)
            .body(alert.summary.clone());
        if let Some(token) = optional_secret("token")? {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let response = request.send()?.error_for_status()?;
        log::log(log::Level::Info, &format!("pushed alert {} to {url}", alert.id));
        Ok(Delivery {
            detail: format!("HTTP {}", response.status),
        })
    }
}

infrapilot_plugin_sdk::export_alert_channel!(Ntfy);
