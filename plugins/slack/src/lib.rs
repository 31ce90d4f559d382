//! Slack alert channel: one Block Kit message per alert to an incoming webhook.

use infrapilot_plugin_sdk::channel::{
    Alert, AlertChannel, AlertState, Delivery, PluginError, RequestBuilder, ResponseExt, Severity,
    secret, settings,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Settings {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    mention: Option<String>,
}

fn webhook_url() -> Result<String, PluginError> {
    let url = secret("webhook_url")?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(PluginError::InvalidSettings(
            "webhook_url: must start with https://".into(),
        ));
    }
    Ok(url)
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped in text that is not markup.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn headline(alert: &Alert) -> String {
    let (icon, word) = match (alert.state, alert.severity) {
        (AlertState::Resolved, _) => (":white_check_mark:", "Resolved"),
        (AlertState::Test, _) => (":test_tube:", "Test"),
        (AlertState::Firing, Severity::Critical) => (":rotating_light:", "Critical"),
        (AlertState::Firing, Severity::Warning) => (":warning:", "Warning"),
        (AlertState::Firing, Severity::Info) => (":information_source:", "Info"),
    };
    format!("{icon} {word}: {}", alert.title)
}

/// The message body Slack receives.
pub fn message(
    alert: &Alert,
    settings_channel: Option<&str>,
    username: Option<&str>,
    mention: Option<&str>,
) -> Value {
    let mut fields =
        vec![json!({"type": "mrkdwn", "text": format!("*Rule*\n{}", escape(&alert.rule_name))})];
    if let Some(node) = &alert.node {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Node*\n{}", escape(node))}));
    }
    if let Some(target) = &alert.target {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Target*\n{}", escape(target))}));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": headline(alert), "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": escape(&alert.summary)}, "fields": fields}),
    ];
    let mut context = format!("alert {}", escape(&alert.id));
    if let Some(url) = &alert.url {
        context.push_str(&format!(" · <{url}|open in InfraPilot>"));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    let mut text = headline(alert);
    if alert.state == AlertState::Firing
        && alert.severity == Severity::Critical
        && let Some(m) = mention.filter(|m| !m.is_empty())
    {
        text = format!("{m} {text}");
    }
    let mut body = json!({"text": text, "blocks": blocks});
    if let Some(channel) = settings_channel.filter(|c| !c.is_empty()) {
        body["channel"] = json!(channel);
    }
    if let Some(name) = username.filter(|n| !n.is_empty()) {
        body["username"] = json!(name);
    }
    body
}

struct Slack;

impl AlertChannel for Slack {
    fn validate() -> Result<(), PluginError> {
        let _: Settings = settings()?;
        webhook_url().map(|_| ())
    }

    fn deliver(alert: Alert) -> Result<Delivery, PluginError> {
        let s: Settings = settings()?;
        let url = webhook_url()?;
        let body = message(
            &alert,
            s.channel.as_deref(),
            s.username.as_deref(),
            s.mention.as_deref(),
        );
        let response = RequestBuilder::post(&url)
            .json(&body)?
            .send()?
            .error_for_status()?;
        Ok(Delivery {
            detail: format!("HTTP {}", response.status),
        })
    }
}

infrapilot_plugin_sdk::export_alert_channel!(Slack);
