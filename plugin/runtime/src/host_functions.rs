//! The host side of the WIT host interfaces. Every function checks the plugin's effective
//! capabilities first (denied by default), then delegates to [`crate::HostServices`].

use std::time::{Duration, Instant};

use crate::bindings::alert_channel::infrapilot::plugin as wit;
use crate::bindings::http::{HttpError, Method, Request, Response};
use crate::bindings::kv::KvError;
use crate::bindings::mail::{MailError, Message};
use crate::runtime::HostState;

/// Redirects followed per request, each hop checked like the first.
const MAX_REDIRECTS: usize = 5;
const MAX_LOG_MESSAGE_BYTES: usize = 4096;
const MAX_REQUEST_BODY_BYTES: usize = 1 << 20;
const MAX_KV_KEY_BYTES: usize = 256;
const MAX_KV_VALUE_BYTES: usize = 64 << 10;
const MAX_RANDOM_BYTES: u32 = 4096;
/// Headers kept when a redirect leaves the origin; every other header is dropped.
const SAFE_CROSS_ORIGIN_HEADERS: [&str; 4] =
    ["accept", "accept-language", "content-type", "user-agent"];

/// A plain `local@domain` address: no display name, comments, quotes, spaces or control characters.
fn plain_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    (3..=254).contains(&address.len())
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && address.chars().all(|c| {
            c.is_ascii_graphic()
                && !matches!(
                    c,
                    '<' | '>' | '(' | ')' | ',' | ';' | ':' | '"' | '[' | ']' | '\\'
                )
        })
}

fn denied(capability: &str) -> String {
    format!("capability {capability} was not granted to this plugin")
}

impl wit::types::Host for HostState {}
impl wit::alerts::Host for HostState {}
impl crate::bindings::proxy_backend::infrapilot::plugin::proxy_model::Host for HostState {}

impl wit::log::Host for HostState {
    async fn log(&mut self, level: wit::log::Level, message: String) {
        if !self.caps.log {
            self.denials += 1;
            return;
        }
        if self.log_lines >= self.limits.max_log_lines {
            self.dropped_log_lines += 1;
            return;
        }
        self.log_lines += 1;
        // Control characters (newlines, ANSI escapes) would let a plugin forge log lines.
        let mut message: String = message
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect();
        if message.len() > MAX_LOG_MESSAGE_BYTES {
            let mut cut = MAX_LOG_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        self.services.log(&self.plugin_id, level, &message);
    }
}

fn redirect_target(base: &url::Url, response: &Response) -> Option<Result<url::Url, HttpError>> {
    if !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("location"))?;
    Some(base.join(&location.value).map_err(|e| {
        HttpError::Transport(format!(
            "redirect to an invalid location {:?}: {e}",
            location.value
        ))
    }))
}

impl HostState {
    /// Checks a URL against the scheme rules and the plugin's hosts.
    fn check_url(&self, raw: &str) -> Result<url::Url, HttpError> {
        let url =
            url::Url::parse(raw).map_err(|e| HttpError::InvalidRequest(format!("url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidRequest(format!(
                "url: scheme {} is not allowed (http or https)",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpError::InvalidRequest(
                "url: credentials in the URL are not allowed; use a header".into(),
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| HttpError::InvalidRequest("url: no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']');
        if !self.caps.allows_host(host) {
            return Err(HttpError::Denied(format!(
                "{host} is not among the hosts this plugin may reach"
            )));
        }
        Ok(url)
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

impl wit::http::Host for HostState {
    async fn fetch(&mut self, request: Request) -> Result<Response, HttpError> {
        if self.caps.http.is_none() {
            self.denials += 1;
            return Err(HttpError::Denied(denied("http")));
        }
        if request
            .body
            .as_ref()
            .is_some_and(|b| b.len() > MAX_REQUEST_BODY_BYTES)
        {
            return Err(HttpError::InvalidRequest("body: larger than 1 MiB".into()));
        }
        let mut request = request;
        let mut url = self
            .check_url(&request.url)
            .inspect_err(|_| self.denials += 1)?;
        for hop in 0..=MAX_REDIRECTS {
            let remaining = self.remaining();
            if remaining.is_zero() {
                return Err(HttpError::Timeout);
            }
            let asked = request
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms)))
                .unwrap_or(self.limits.http_timeout);
            let timeout = asked.min(self.limits.http_timeout).min(remaining);
            let response = self
                .services
                .http_fetch(&self.plugin_id, request.clone(), timeout)
                .await?;
            let Some(next) = redirect_target(&url, &response) else {
                return Ok(response);
            };
            if hop == MAX_REDIRECTS {
                return Err(HttpError::Transport(format!(
                    "more than {MAX_REDIRECTS} redirects"
                )));
            }
            let next = self
                .check_url(next?.as_str())
                .map_err(|e| match e {
                    HttpError::Denied(why) => HttpError::Denied(format!("redirect refused: {why}")),
                    other => other,
                })
                .inspect_err(|_| self.denials += 1)?;
            if response.status == 303
                || (matches!(response.status, 301 | 302) && request.method == Method::Post)
            {
                request.method = Method::Get;
                request.body = None;
            }
            if url.scheme() == "https" && next.scheme() == "http" {
                return Err(HttpError::Denied(format!(
                    "redirect refused: {next} would downgrade https to http"
                )));
            }
            if next.origin() != url.origin() {
                // Credentials and keys are for the origin the plugin named, not where it is sent.
                request.headers.retain(|h| {
                    SAFE_CROSS_ORIGIN_HEADERS
                        .iter()
                        .any(|safe| h.name.eq_ignore_ascii_case(safe))
                });
            }
            request.url = next.to_string();
            url = next;
        }
        unreachable!("the loop returns on its last hop")
    }
}

impl wit::mail::Host for HostState {
    async fn send(&mut self, message: Message) -> Result<(), MailError> {
        if !self.caps.mail {
            self.denials += 1;
            return Err(MailError::Denied(denied("mail")));
        }
        if message.to.is_empty() || message.to.len() > 50 {
            return Err(MailError::InvalidMessage("to: 1–50 recipients".into()));
        }
        if let Some((i, _)) = message
            .to
            .iter()
            .enumerate()
            .find(|(_, a)| !plain_address(a))
        {
            return Err(MailError::InvalidMessage(format!(
                "to.{i}: not a plain e-mail address"
            )));
        }
        if message.subject.chars().any(char::is_control) || message.subject.len() > 250 {
            return Err(MailError::InvalidMessage(
                "subject: at most 250 characters, no control characters".into(),
            ));
        }
        if message.text_body.len() + message.html_body.as_ref().map_or(0, String::len) > 1 << 20 {
            return Err(MailError::InvalidMessage("body: larger than 1 MiB".into()));
        }
        self.services.send_mail(&self.plugin_id, message).await
    }
}

impl wit::kv::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        self.check_kv(&key, 0)?;
        self.services.kv_get(&self.plugin_id, &key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        self.check_kv(&key, value.len())?;
        self.services.kv_set(&self.plugin_id, &key, value).await
    }

    async fn delete(&mut self, key: String) -> Result<(), KvError> {
        self.check_kv(&key, 0)?;
        self.services.kv_delete(&self.plugin_id, &key).await
    }
}

impl HostState {
    fn check_kv(&mut self, key: &str, value_len: usize) -> Result<(), KvError> {
        if !self.caps.kv {
            self.denials += 1;
            return Err(KvError::Denied(denied("kv")));
        }
        if key.is_empty() || key.len() > MAX_KV_KEY_BYTES || value_len > MAX_KV_VALUE_BYTES {
            return Err(KvError::TooLarge);
        }
        Ok(())
    }
}

impl wit::config::Host for HostState {
    async fn settings(&mut self) -> String {
        if !self.caps.config {
            self.denials += 1;
            return "{}".into();
        }
        self.settings_json.clone()
    }

    async fn secret(&mut self, name: String) -> Result<String, wit::config::ConfigError> {
        if !self.caps.secrets {
            self.denials += 1;
            return Err(wit::config::ConfigError::Denied(denied("secrets")));
        }
        match self.secrets.get(&name) {
            Some(value) if !value.is_empty() => Ok(value.clone()),
            _ => Err(wit::config::ConfigError::NotSet(name)),
        }
    }
}

impl wit::clock::Host for HostState {
    async fn now_unix_ms(&mut self) -> u64 {
        if !self.caps.clock {
            self.denials += 1;
            return 0;
        }
        self.services.now_unix_ms()
    }
}

impl wit::random::Host for HostState {
    async fn fill(&mut self, len: u32) -> Vec<u8> {
        if !self.caps.random {
            self.denials += 1;
            return Vec::new();
        }
        let mut bytes = vec![0u8; len.min(MAX_RANDOM_BYTES) as usize];
        if getrandom::fill(&mut bytes).is_err() {
            return Vec::new();
        }
        bytes
    }
}
