//! Webhook alert channel: POSTs `{"event": "alert.firing", "alert": {…}}` to the configured URL.
//! With a secret, the request carries `X-InfraPilot-Timestamp: <unix seconds>` and
//! `X-InfraPilot-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, so the
//! receiver can check origin and freshness.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use infrapilot_plugin_sdk::channel::{
    Alert, AlertChannel, Delivery, PluginError, RequestBuilder, ResponseExt, alert_json, clock,
    optional_secret, settings, state_name,
};
use serde::Deserialize;
use sha2::Sha256;

/// Plain settings: none since 0.1.1 (the URL and the headers are secrets); a channel saved by
/// 0.1.0 may still hold them here.
#[derive(Deserialize, Default)]
struct PlainSettings {
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

struct Settings {
    url: String,
    headers: BTreeMap<String, String>,
}

/// Headers the plugin sets itself; settings may not override them.
const RESERVED: [&str; 5] = [
    "content-type",
    "content-length",
    "host",
    "x-infrapilot-signature",
    "x-infrapilot-timestamp",
];

fn checked() -> Result<Settings, PluginError> {
    let plain: PlainSettings = settings()?;
    let url = match optional_secret("url")? {
        Some(url) => url,
        None => plain
            .url
            .ok_or_else(|| PluginError::InvalidSettings("url: not set".into()))?,
    };
    let headers = match optional_secret("headers")? {
        Some(json) => serde_json::from_str(&json)
            .map_err(|_| PluginError::InvalidSettings("headers: not a map of strings".into()))?,
        None => plain.headers,
    };
    let s = Settings { url, headers };
    if !(s.url.starts_with("https://") || s.url.starts_with("http://")) {
        return Err(PluginError::InvalidSettings(
            "url: must start with http:// or https://".into(),
        ));
    }
    for name in s.headers.keys() {
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(PluginError::InvalidSettings(format!(
                "headers.{name}: set by the plugin itself"
            )));
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(PluginError::InvalidSettings(format!(
                "headers.{name}: not a valid header name"
            )));
        }
    }
    Ok(s)
}

/// `sha256=<hex>` over `"<timestamp>.<body>"`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Webhook;

impl AlertChannel for Webhook {
    fn validate() -> Result<(), PluginError> {
        checked().map(|_| ())
    }

    fn deliver(alert: Alert) -> Result<Delivery, PluginError> {
        let s = checked()?;
        let payload = serde_json::json!({
            "version": 1,
            "event": format!("alert.{}", state_name(alert.state)),
            "alert": alert_json(&alert),
        });
        let body = serde_json::to_vec(&payload).map_err(|e| PluginError::Failed(e.to_string()))?;
        let mut request = RequestBuilder::post(&s.url)
            .header("content-type", "application/json")
            .header("user-agent", "InfraPilot-Webhook/0.1");
        for (name, value) in &s.headers {
            request = request.header(name, value);
        }
        if let Some(secret) = optional_secret("secret")? {
            let timestamp = clock::now_unix_ms() / 1000;
            request = request
                .header("x-infrapilot-timestamp", &timestamp.to_string())
                .header(
                    "x-infrapilot-signature",
                    &signature(secret.as_bytes(), timestamp, &body),
                );
        }
        let response = request.body(body).send()?.error_for_status()?;
        Ok(Delivery {
            detail: format!("HTTP {}", response.status),
        })
    }
}

infrapilot_plugin_sdk::export_alert_channel!(Webhook);
