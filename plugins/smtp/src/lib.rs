//! E-mail alert channel: the host sends the mail (its SMTP settings, lettre); the plugin writes it.

use infrapilot_plugin_sdk::channel::{
    Alert, AlertChannel, Delivery, PluginError, mail, settings, severity_name, state_name,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Settings {
    to: Vec<String>,
    #[serde(default = "default_prefix")]
    subject_prefix: String,
}

fn default_prefix() -> String {
    "[InfraPilot]".into()
}

fn checked() -> Result<Settings, PluginError> {
    let s: Settings = settings()?;
    if s.to.is_empty() {
        return Err(PluginError::InvalidSettings(
            "to: at least one recipient".into(),
        ));
    }
    for (i, address) in s.to.iter().enumerate() {
        let ok = address.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !address.chars().any(|c| {
                    c.is_whitespace() || c.is_control() || c == ',' || c == '<' || c == '>'
                })
        });
        if !ok {
            return Err(PluginError::InvalidSettings(format!(
                "to.{i}: not an e-mail address"
            )));
        }
    }
    if s.subject_prefix.chars().any(char::is_control) {
        return Err(PluginError::InvalidSettings(
            "subject_prefix: no control characters".into(),
        ));
    }
    Ok(s)
}

/// Subject and plain-text body.
pub fn render(prefix: &str, alert: &Alert) -> (String, String) {
    let state = state_name(alert.state).to_uppercase();
    let title: String = alert.title.chars().filter(|c| !c.is_control()).collect();
    let subject = format!("{prefix} {state}: {title}").trim().to_owned();
    let mut body = format!(
        "{title}\n\n{}\n\nState: {}\nSeverity: {}\nRule: {}\n",
        alert.summary,
        state_name(alert.state),
        severity_name(alert.severity),
        alert.rule_name
    );
    if let Some(node) = &alert.node {
        body.push_str(&format!("Node: {node}\n"));
    }
    if let Some(target) = &alert.target {
        body.push_str(&format!("Target: {target}\n"));
    }
    for (k, v) in &alert.labels {
        body.push_str(&format!("Label {k}: {v}\n"));
    }
    if let Some(url) = &alert.url {
        body.push_str(&format!("\n{url}\n"));
    }
    body.push_str(&format!("\nAlert id {}\n", alert.id));
    (subject, body)
}

struct Smtp;

impl AlertChannel for Smtp {
    fn validate() -> Result<(), PluginError> {
        checked().map(|_| ())
    }

    fn deliver(alert: Alert) -> Result<Delivery, PluginError> {
        let s = checked()?;
        let (subject, text_body) = render(&s.subject_prefix, &alert);
        mail::send(&mail::Message {
            to: s.to.clone(),
            subject,
            text_body,
            html_body: None,
        })?;
        Ok(Delivery {
            detail: format!("mailed to {} recipient(s)", s.to.len()),
        })
    }
}

infrapilot_plugin_sdk::export_alert_channel!(Smtp);
