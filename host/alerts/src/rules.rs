//! Alert rules: what fires, with parameters checked field by field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest window or duration a rule may use (a day).
pub const MAX_WINDOW_SECONDS: u32 = 86_400;
/// Longest baseline of `log_error_spike` and window of `proxy_error_rate`: they count stored
/// lines at every evaluation.
pub const MAX_BASELINE_MINUTES: u32 = 240;
pub const MAX_RATE_WINDOW_SECONDS: u32 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A container exited with a non-zero code (not after a stop or kill someone asked for).
    ContainerCrashed,
    /// A container started `restarts` times or more within `window_seconds`.
    RestartLoop,
    /// CPU % (of one core) over `threshold_percent` for `duration_seconds`.
    CpuHigh,
    /// Memory % of its limit over `threshold_percent` for `duration_seconds`.
    MemoryHigh,
    /// A node stopped sending heartbeats.
    NodeOffline,
    /// A proxy host's certificate expires within `days` (default 14), as its node reports it.
    CertificateExpiring,
    /// A container's error lines in the last minute reach `min_errors` and `factor` times its
    /// average per minute over the `baseline_minutes` before.
    LogErrorSpike,
    /// The share of 5xx answers of a proxy host over `window_seconds` exceeds
    /// `threshold_percent` (with at least `min_requests` requests), from its nginx access log.
    ProxyErrorRate,
    /// A policy engine failed, timed out or was missing for a policy within `window_seconds`
    /// (default 300): its block policies refused actions without a verdict (fail closed).
    PolicyEngineFailed,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::ContainerCrashed => "container_crashed",
            RuleKind::RestartLoop => "restart_loop",
            RuleKind::CpuHigh => "cpu_high",
            RuleKind::MemoryHigh => "memory_high",
            RuleKind::NodeOffline => "node_offline",
            RuleKind::CertificateExpiring => "certificate_expiring",
            RuleKind::LogErrorSpike => "log_error_spike",
            RuleKind::ProxyErrorRate => "proxy_error_rate",
            RuleKind::PolicyEngineFailed => "policy_engine_failed",
        }
    }

    pub fn parse(s: &str) -> Option<RuleKind> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

/// Parameters of a rule, by kind; unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleParams {
    /// Only containers with this exact name (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u32>,
    /// certificate_expiring: days before expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    /// log_error_spike: error lines in a minute before it can fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_errors: Option<u32>,
    /// log_error_spike: how many times the baseline the last minute must reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// log_error_spike: the minutes before the last one whose average is the baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_minutes: Option<u32>,
    /// proxy_error_rate: requests in the window before it can fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
    /// proxy_error_rate: only this proxy host (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_host: Option<String>,
}

impl RuleParams {
    /// The parameters set, by name.
    fn present(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut note = |set: bool, name: &'static str| {
            if set {
                out.push(name);
            }
        };
        note(self.container.is_some(), "container");
        note(self.restarts.is_some(), "restarts");
        note(self.window_seconds.is_some(), "window_seconds");
        note(self.threshold_percent.is_some(), "threshold_percent");
        note(self.duration_seconds.is_some(), "duration_seconds");
        note(self.days.is_some(), "days");
        note(self.min_errors.is_some(), "min_errors");
        note(self.factor.is_some(), "factor");
        note(self.baseline_minutes.is_some(), "baseline_minutes");
        note(self.min_requests.is_some(), "min_requests");
        note(self.proxy_host.is_some(), "proxy_host");
        out
    }
}

impl RuleKind {
    /// The parameters a rule of this kind takes.
    fn parameters(self) -> &'static [&'static str] {
        match self {
            RuleKind::ContainerCrashed => &["container"],
            RuleKind::RestartLoop => &["container", "restarts", "window_seconds"],
            RuleKind::CpuHigh | RuleKind::MemoryHigh => {
                &["container", "threshold_percent", "duration_seconds"]
            }
            RuleKind::NodeOffline => &[],
            RuleKind::CertificateExpiring => &["days"],
            RuleKind::LogErrorSpike => &["container", "min_errors", "factor", "baseline_minutes"],
            RuleKind::ProxyErrorRate => &[
                "proxy_host",
                "threshold_percent",
                "window_seconds",
                "min_requests",
            ],
            RuleKind::PolicyEngineFailed => &["window_seconds"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

/// A rule problem naming its field (`params.restarts` …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> RuleError {
    RuleError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Checks `params` (a JSON object) for `kind`, filling in defaults.
pub fn check_params(kind: RuleKind, params: &Value) -> Result<RuleParams, RuleError> {
    let params = if params.is_null() {
        Value::Object(Default::default())
    } else {
        params.clone()
    };
    let mut p: RuleParams = serde_path_error(params)?;
    if let Some(name) = &p.container {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(invalid(
                "params.container",
                "a container name: 1–128 letters, digits, '_', '.' or '-'",
            ));
        }
    }
    // Every parameter set must be one of the kind's.
    if let Some(other) = p
        .present()
        .into_iter()
        .find(|name| !kind.parameters().contains(name))
    {
        return Err(invalid(
            &format!("params.{other}"),
            format!("not a parameter of {}", kind.as_str()),
        ));
    }
    let refuse = |field: &str, present: bool| {
        if present {
            Err(invalid(
                &format!("params.{field}"),
                format!("not a parameter of {}", kind.as_str()),
            ))
        } else {
            Ok(())
        }
    };
    match kind {
        RuleKind::ContainerCrashed => {
            refuse("days", p.days.is_some())?;
            refuse("restarts", p.restarts.is_some())?;
            refuse("window_seconds", p.window_seconds.is_some())?;
            refuse("threshold_percent", p.threshold_percent.is_some())?;
            refuse("duration_seconds", p.duration_seconds.is_some())?;
        }
        RuleKind::RestartLoop => {
            refuse("days", p.days.is_some())?;
            refuse("threshold_percent", p.threshold_percent.is_some())?;
            refuse("duration_seconds", p.duration_seconds.is_some())?;
            let restarts = p.restarts.unwrap_or(3);
            if !(2..=1000).contains(&restarts) {
                return Err(invalid("params.restarts", "between 2 and 1000"));
            }
            let window = p.window_seconds.unwrap_or(300);
            if !(10..=MAX_WINDOW_SECONDS).contains(&window) {
                return Err(invalid(
                    "params.window_seconds",
                    format!("between 10 and {MAX_WINDOW_SECONDS}"),
                ));
            }
            p.restarts = Some(restarts);
            p.window_seconds = Some(window);
        }
        RuleKind::CpuHigh | RuleKind::MemoryHigh => {
            refuse("days", p.days.is_some())?;
            refuse("restarts", p.restarts.is_some())?;
            refuse("window_seconds", p.window_seconds.is_some())?;
            let max = if kind == RuleKind::CpuHigh {
                25_600.0
            } else {
                100.0
            };
            let threshold = p
                .threshold_percent
                .ok_or_else(|| invalid("params.threshold_percent", "required"))?;
            if !threshold.is_finite() || threshold <= 0.0 || threshold > max {
                return Err(invalid(
                    "params.threshold_percent",
                    format!("greater than 0 and at most {max}"),
                ));
            }
            let duration = p.duration_seconds.unwrap_or(60);
            if duration > MAX_WINDOW_SECONDS {
                return Err(invalid(
                    "params.duration_seconds",
                    format!("at most {MAX_WINDOW_SECONDS}"),
                ));
            }
            p.duration_seconds = Some(duration);
        }
        RuleKind::NodeOffline => {
            refuse("days", p.days.is_some())?;
            refuse("container", p.container.is_some())?;
            refuse("restarts", p.restarts.is_some())?;
            refuse("window_seconds", p.window_seconds.is_some())?;
            refuse("threshold_percent", p.threshold_percent.is_some())?;
            refuse("duration_seconds", p.duration_seconds.is_some())?;
        }
        RuleKind::CertificateExpiring => {
            refuse("container", p.container.is_some())?;
            refuse("restarts", p.restarts.is_some())?;
            refuse("window_seconds", p.window_seconds.is_some())?;
            refuse("threshold_percent", p.threshold_percent.is_some())?;
            refuse("duration_seconds", p.duration_seconds.is_some())?;
            let days = p.days.unwrap_or(14);
            if !(1..=3650).contains(&days) {
                return Err(invalid("params.days", "between 1 and 3650"));
            }
            p.days = Some(days);
        }
        RuleKind::LogErrorSpike => {
            let min_errors = p.min_errors.unwrap_or(10);
            if !(1..=1_000_000).contains(&min_errors) {
                return Err(invalid("params.min_errors", "between 1 and 1000000"));
            }
            let factor = p.factor.unwrap_or(3.0);
            if !factor.is_finite() || !(1.0..=1000.0).contains(&factor) {
                return Err(invalid("params.factor", "between 1 and 1000"));
            }
            let baseline = p.baseline_minutes.unwrap_or(30);
            if !(5..=MAX_BASELINE_MINUTES).contains(&baseline) {
                return Err(invalid(
                    "params.baseline_minutes",
                    format!("between 5 and {MAX_BASELINE_MINUTES}"),
                ));
            }
            p.min_errors = Some(min_errors);
            p.factor = Some(factor);
            p.baseline_minutes = Some(baseline);
        }
        RuleKind::PolicyEngineFailed => {
            let window = p.window_seconds.unwrap_or(300);
            if !(30..=MAX_RATE_WINDOW_SECONDS).contains(&window) {
                return Err(invalid(
                    "params.window_seconds",
                    format!("between 30 and {MAX_RATE_WINDOW_SECONDS}"),
                ));
            }
            p.window_seconds = Some(window);
        }
        RuleKind::ProxyErrorRate => {
            if let Some(host) = &p.proxy_host {
                // Kept in the form the host's ids have (lower-case, hyphenated).
                let id = uuid::Uuid::try_parse(host)
                    .ok()
                    .filter(|_| host.len() == 36)
                    .ok_or_else(|| invalid("params.proxy_host", "a proxy host's id (a UUID)"))?;
                p.proxy_host = Some(id.hyphenated().to_string());
            }
            let threshold = p.threshold_percent.unwrap_or(5.0);
            if !threshold.is_finite() || threshold <= 0.0 || threshold > 100.0 {
                return Err(invalid(
                    "params.threshold_percent",
                    "greater than 0 and at most 100",
                ));
            }
            let window = p.window_seconds.unwrap_or(300);
            if !(30..=MAX_RATE_WINDOW_SECONDS).contains(&window) {
                return Err(invalid(
                    "params.window_seconds",
                    format!("between 30 and {MAX_RATE_WINDOW_SECONDS}"),
                ));
            }
            let min_requests = p.min_requests.unwrap_or(20);
            if !(1..=1_000_000).contains(&min_requests) {
                return Err(invalid("params.min_requests", "between 1 and 1000000"));
            }
            p.threshold_percent = Some(threshold);
            p.window_seconds = Some(window);
            p.min_requests = Some(min_requests);
        }
    }
    Ok(p)
}

fn serde_path_error(params: Value) -> Result<RuleParams, RuleError> {
    if !params.is_object() {
        return Err(invalid("params", "must be an object"));
    }
    serde_path_to_error::deserialize::<_, RuleParams>(params).map_err(|e| {
        let path = e.path().to_string();
        let text = e.inner().to_string();
        let field = if path.is_empty() || path == "." {
            // An unknown field is reported at the object; serde names it in backticks.
            text.split('`')
                .nth(1)
                .filter(|f| !f.contains(' '))
                .map(|f| format!("params.{f}"))
                .unwrap_or_else(|| "params".into())
        } else {
            format!("params.{path}")
        };
        invalid(&field, text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_errors_name_fields() {
        let p = check_params(RuleKind::RestartLoop, &json!({})).unwrap();
        assert_eq!((p.restarts, p.window_seconds), (Some(3), Some(300)));
        assert_eq!(
            check_params(RuleKind::RestartLoop, &json!({"restarts": 1}))
                .unwrap_err()
                .field,
            "params.restarts"
        );
        assert_eq!(
            check_params(RuleKind::CpuHigh, &json!({}))
                .unwrap_err()
                .field,
            "params.threshold_percent"
        );
        assert_eq!(
            check_params(RuleKind::MemoryHigh, &json!({"threshold_percent": 101}))
                .unwrap_err()
                .field,
            "params.threshold_percent"
        );
        assert_eq!(
            check_params(RuleKind::ContainerCrashed, &json!({"bogus": 1}))
                .unwrap_err()
                .field,
            "params.bogus"
        );
        assert_eq!(
            check_params(RuleKind::ContainerCrashed, &json!({"container": "a;b"}))
                .unwrap_err()
                .field,
            "params.container"
        );
        assert_eq!(
            check_params(RuleKind::NodeOffline, &json!({"restarts": 3}))
                .unwrap_err()
                .field,
            "params.restarts"
        );
        assert_eq!(
            check_params(RuleKind::CpuHigh, &json!({"threshold_percent": "x"}))
                .unwrap_err()
                .field,
            "params.threshold_percent"
        );
        let spike = check_params(RuleKind::LogErrorSpike, &json!({})).unwrap();
        assert_eq!(
            (spike.min_errors, spike.baseline_minutes),
            (Some(10), Some(30))
        );
        for (kind, params, field) in [
            (
                RuleKind::LogErrorSpike,
                json!({"factor": 0.5}),
                "params.factor",
            ),
            (RuleKind::LogErrorSpike, json!({"days": 3}), "params.days"),
            (
                RuleKind::ProxyErrorRate,
                json!({"proxy_host": "x"}),
                "params.proxy_host",
            ),
            (
                RuleKind::ProxyErrorRate,
                json!({"threshold_percent": 120}),
                "params.threshold_percent",
            ),
            (
                RuleKind::ProxyErrorRate,
                json!({"container": "web"}),
                "params.container",
            ),
            (
                RuleKind::CpuHigh,
                json!({"threshold_percent": 50, "min_errors": 3}),
                "params.min_errors",
            ),
        ] {
            assert_eq!(
                check_params(kind, &params).unwrap_err().field,
                field,
                "{params}"
            );
        }
        assert!(RuleKind::parse("cpu_high").is_some());
        assert!(RuleKind::parse("nope").is_none());
    }
}
