//! Alert rules: what fires, with parameters checked field by field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest window or duration a rule may use (a day).
pub const MAX_WINDOW_SECONDS: u32 = 86_400;

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
        assert!(RuleKind::parse("cpu_high").is_some());
        assert!(RuleKind::parse("nope").is_none());
    }
}
