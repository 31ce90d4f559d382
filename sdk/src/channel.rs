//! Everything an alert channel needs: the trait to implement, the alert types, the host
//! capabilities and helpers for HTTP and settings.

use serde::de::DeserializeOwned;

pub use crate::alert_channel::exports::infrapilot::plugin::channel::Guest as AlertChannel;
pub use crate::alert_channel::infrapilot::plugin::alerts::{Alert, AlertState, Delivery, Severity};
pub use crate::alert_channel::infrapilot::plugin::types::{Header, PluginError};
pub use crate::alert_channel::infrapilot::plugin::{clock, config, http, kv, log, mail, random};

use crate::alert_channel::infrapilot::plugin::config::ConfigError;
use crate::alert_channel::infrapilot::plugin::http::{HttpError, Method, Request, Response};
use crate::alert_channel::infrapilot::plugin::mail::MailError;

/// The instance's non-secret settings, deserialized. Errors become `invalid-settings` naming the
/// field serde complains about.
pub fn settings<T: DeserializeOwned>() -> Result<T, PluginError> {
    let raw = config::settings();
    serde_json::from_str(&raw).map_err(|e| PluginError::InvalidSettings(e.to_string()))
}

/// A secret setting; a missing one is an `invalid-settings` error naming it.
pub fn secret(name: &str) -> Result<String, PluginError> {
    config::secret(name).map_err(PluginError::from)
}

/// An optional secret setting: `None` when it is not set.
pub fn optional_secret(name: &str) -> Result<Option<String>, PluginError> {
    match config::secret(name) {
        Ok(value) => Ok(Some(value)),
        Err(ConfigError::NotSet(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl From<ConfigError> for PluginError {
    fn from(e: ConfigError) -> PluginError {
        match e {
            ConfigError::Denied(why) => PluginError::Denied(why),
            ConfigError::NotSet(name) => PluginError::InvalidSettings(format!("{name}: not set")),
        }
    }
}

impl From<HttpError> for PluginError {
    fn from(e: HttpError) -> PluginError {
        match e {
            HttpError::Denied(why) => PluginError::Denied(why),
            HttpError::InvalidRequest(why) => {
                PluginError::Failed(format!("invalid request: {why}"))
            }
            HttpError::Timeout => PluginError::Failed("the request timed out".into()),
            HttpError::TooLarge => PluginError::Failed("the response was too large".into()),
            HttpError::Transport(why) => PluginError::Failed(why),
        }
    }
}

impl From<MailError> for PluginError {
    fn from(e: MailError) -> PluginError {
        match e {
            MailError::Denied(why) => PluginError::Denied(why),
            MailError::InvalidMessage(why) => {
                PluginError::Failed(format!("invalid message: {why}"))
            }
            MailError::NotConfigured => {
                PluginError::Failed("no SMTP server is configured on the host".into())
            }
            MailError::Transport(why) => PluginError::Failed(why),
        }
    }
}

/// Builds an HTTP request for [`http::fetch`].
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    request: Request,
}

impl RequestBuilder {
    pub fn new(method: Method, url: &str) -> RequestBuilder {
        RequestBuilder {
            request: Request {
                method,
                url: url.to_owned(),
                headers: Vec::new(),
                body: None,
                timeout_ms: None,
            },
        }
    }

    pub fn get(url: &str) -> RequestBuilder {
        RequestBuilder::new(Method::Get, url)
    }

    pub fn post(url: &str) -> RequestBuilder {
        RequestBuilder::new(Method::Post, url)
    }

    pub fn header(mut self, name: &str, value: &str) -> RequestBuilder {
        self.request.headers.push(Header {
            name: name.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> RequestBuilder {
        self.request.body = Some(body.into());
        self
    }

    /// A JSON body and `content-type: application/json`.
    pub fn json(self, value: &impl serde::Serialize) -> Result<RequestBuilder, PluginError> {
        let body = serde_json::to_vec(value).map_err(|e| PluginError::Failed(e.to_string()))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    pub fn timeout_ms(mut self, ms: u32) -> RequestBuilder {
        self.request.timeout_ms = Some(ms);
        self
    }

    /// The request as built (for signing the body, say).
    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn send(self) -> Result<Response, HttpError> {
        http::fetch(&self.request)
    }
}

/// Helpers on a received response.
pub trait ResponseExt {
    fn is_success(&self) -> bool;
    fn text(&self) -> String;
    fn header(&self, name: &str) -> Option<&str>;
    /// `Ok(self)` for 2xx, else a `failed` error with the status and the start of the body.
    fn error_for_status(self) -> Result<Response, PluginError>;
}

impl ResponseExt for Response {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    fn error_for_status(self) -> Result<Response, PluginError> {
        if self.is_success() {
            return Ok(self);
        }
        let mut text = self.text();
        if text.len() > 200 {
            let mut cut = 200;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        Err(PluginError::Failed(format!(
            "HTTP {}: {}",
            self.status,
            text.trim()
        )))
    }
}

/// The alert's state as a lowercase word ("firing", "resolved", "test").
pub fn state_name(state: AlertState) -> &'static str {
    match state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
        AlertState::Test => "test",
    }
}

/// The severity as a lowercase word ("info", "warning", "critical").
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// The alert as a JSON object (the webhook payload's `alert`), times in RFC 3339 milliseconds.
pub fn alert_json(alert: &Alert) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = alert
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "id": alert.id,
        "rule_id": alert.rule_id,
        "rule_name": alert.rule_name,
        "state": state_name(alert.state),
        "severity": severity_name(alert.severity),
        "title": alert.title,
        "summary": alert.summary,
        "node": alert.node,
        "target": alert.target,
        "labels": labels,
        "started_at_ms": alert.started_at_unix_ms,
        "resolved_at_ms": alert.resolved_at_unix_ms,
        "url": alert.url,
    })
}
