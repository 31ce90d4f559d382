//! What commands return, as JSON in `CommandResult.payload_json`: the container views the agent
//! builds from Docker and the host serves as they are (with `openapi`, they carry OpenAPI schemas).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// The compose labels Docker Compose puts on the containers it creates.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PortMapping {
    pub private_port: u16,
    pub public_port: Option<u16>,
    pub ip: Option<String>,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub image: String,
    /// Docker's state: `running`, `exited`, `created`, `paused`, `restarting`, `removing`, `dead`.
    pub state: String,
    /// Docker's human text, e.g. `Up 3 minutes`.
    pub status: String,
    pub created_at: String,
    pub ports: Vec<PortMapping>,
    pub networks: Vec<String>,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    /// `healthy`, `unhealthy` or `starting`; null without a health check.
    pub health: Option<String>,
    /// Share of one core in percent (200 = two cores busy); null until sampled or when stopped.
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StackSummary {
    /// The compose project.
    pub name: String,
    pub containers: u32,
    pub running: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ContainerList {
    pub containers: Vec<ContainerSummary>,
    /// Compose projects among the containers, by name.
    pub stacks: Vec<StackSummary>,
}

impl ContainerList {
    /// Builds the list with its compose stacks, ordered by stack then name.
    pub fn new(mut containers: Vec<ContainerSummary>) -> ContainerList {
        containers.sort_by(|a, b| {
            (
                a.compose_project.as_deref().unwrap_or("\u{10FFFF}"),
                &a.name,
            )
                .cmp(&(
                    b.compose_project.as_deref().unwrap_or("\u{10FFFF}"),
                    &b.name,
                ))
        });
        let mut stacks: BTreeMap<&str, StackSummary> = BTreeMap::new();
        for c in &containers {
            if let Some(project) = c.compose_project.as_deref() {
                let stack = stacks.entry(project).or_insert_with(|| StackSummary {
                    name: project.to_owned(),
                    containers: 0,
                    running: 0,
                });
                stack.containers += 1;
                if c.state == "running" {
                    stack.running += 1;
                }
            }
        }
        let stacks = stacks.into_values().collect();
        ContainerList { containers, stacks }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EnvVar {
    pub name: String,
    /// Null where masked.
    pub value: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MountInfo {
    /// `bind`, `volume`, `tmpfs`, `npipe`, `cluster`.
    pub kind: String,
    pub name: Option<String>,
    pub source: String,
    pub destination: String,
    pub mode: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NetworkAttachment {
    pub name: String,
    pub ip_address: String,
    pub gateway: String,
    pub mac_address: String,
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ContainerDetail {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub state: String,
    /// E.g. `running since 2026-11-22T10:00:00Z` or `exited (137)`.
    pub status: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i64>,
    pub restart_count: i64,
    pub health: Option<String>,
    pub command: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    /// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    pub restart_policy: String,
    pub labels: BTreeMap<String, String>,
    /// Names in order; the host masks the values unless an admin reveals them.
    pub env: Vec<EnvVar>,
    pub mounts: Vec<MountInfo>,
    pub networks: Vec<NetworkAttachment>,
    pub ports: Vec<PortMapping>,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
}

/// What a start, stop, restart or remove left behind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionOutcome {
    /// The container's full id.
    pub container: String,
    /// Its state afterwards (null after removal).
    pub state: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LogLine {
    /// RFC 3339 with nanoseconds (Docker's timestamp).
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// `error`, `warn`, `info`, `debug`; null when none is recognised.
    pub level: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LogPage {
    /// Oldest first.
    pub lines: Vec<LogLine>,
    /// Pass as `cursor` for the page of older lines; null at the start of the log.
    pub next_cursor: Option<String>,
}

/// The level of a log line: a JSON object's `level`/`lvl`/`severity` field, logfmt's
/// `level=`, or a common marker such as `ERROR`, `[warn]`, `W1122`.
pub fn detect_level(message: &str) -> Option<&'static str> {
    let trimmed = message.trim_start();
    if trimmed.starts_with('{')
        && let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(trimmed)
    {
        for key in ["level", "lvl", "severity", "log.level", "levelname"] {
            if let Some(serde_json::Value::String(level)) = fields.get(key) {
                return normalize_level(level);
            }
        }
        return None;
    }
    if let Some(pos) = message.find("level=") {
        let rest = &message[pos + 6..];
        let word: String = rest
            .trim_start_matches('"')
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if let Some(level) = normalize_level(&word) {
            return Some(level);
        }
    }
    // Look at the first few words only: a message that merely mentions "error" later is not one.
    for word in message
        .split(|c: char| c.is_whitespace() || "[]():|<>".contains(c))
        .filter(|w| !w.is_empty())
        .take(6)
    {
        if let Some(level) = normalize_level(word) {
            return Some(level);
        }
    }
    None
}

fn normalize_level(word: &str) -> Option<&'static str> {
    match word.to_ascii_lowercase().as_str() {
        "error" | "err" | "fatal" | "panic" | "critical" | "crit" | "emerg" | "alert" | "e" => {
            Some("error")
        }
        "warn" | "warning" | "w" => Some("warn"),
        "info" | "notice" | "i" => Some("info"),
        "debug" | "trace" | "d" => Some("debug"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_from_json_logfmt_and_text() {
        assert_eq!(detect_level(r#"{"level":"WARN","msg":"x"}"#), Some("warn"));
        assert_eq!(detect_level(r#"{"severity":"error"}"#), Some("error"));
        assert_eq!(detect_level(r#"{"msg":"no level"}"#), None);
        assert_eq!(detect_level("time=1 level=debug msg=hi"), Some("debug"));
        assert_eq!(
            detect_level("2026/11/22 10:00:00 [error] 7#7: open() failed"),
            Some("error")
        );
        assert_eq!(detect_level("INFO starting server"), Some("info"));
        assert_eq!(detect_level("hello world"), None);
        assert_eq!(
            detect_level("request finished, one two three four five error"),
            None
        );
    }

    #[test]
    fn stacks_are_counted_by_compose_project() {
        let c = |name: &str, project: Option<&str>, state: &str| ContainerSummary {
            id: name.into(),
            name: name.into(),
            image: "i".into(),
            state: state.into(),
            status: String::new(),
            created_at: String::new(),
            ports: vec![],
            networks: vec![],
            compose_project: project.map(Into::into),
            compose_service: None,
            health: None,
            cpu_percent: None,
            memory_bytes: None,
            memory_limit_bytes: None,
        };
        let list = ContainerList::new(vec![
            c("z", None, "running"),
            c("b", Some("shop"), "exited"),
            c("a", Some("shop"), "running"),
        ]);
        let names: Vec<_> = list.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "z"]);
        assert_eq!(list.stacks.len(), 1);
        assert_eq!((list.stacks[0].containers, list.stacks[0].running), (2, 1));
    }
}

/// Where the agent mounts its proxy directory inside the nginx container. Certificates live in
/// `certs/<host id>/` and the ACME HTTP-01 webroot in `acme/` below it.
pub const PROXY_MOUNT: &str = "/etc/infrapilot";
/// The ACME webroot inside the nginx container.
pub const PROXY_ACME_WEBROOT: &str = "/etc/infrapilot/acme";

/// What became of one proxy host in an apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HostApplyResult {
    pub id: String,
    /// `applied` or `failed` (left out of the tree; the rest applied).
    pub state: String,
    /// nginx's or Docker's own message when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The result of an `ApplyProxyConfig` command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApplyReport {
    pub revision: u64,
    /// `applied` (possibly without some hosts, see `hosts`), `failed` (the previous tree keeps
    /// serving) or `superseded` (the node already serves a newer revision).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub hosts: Vec<HostApplyResult>,
    /// The revision the node serves after this apply.
    pub serving_revision: u64,
    pub duration_ms: u64,
}

/// A proxy host's certificate as the node holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CertificateStatus {
    pub host_id: String,
    /// `acme` (issued by the ACME server) or `placeholder` (self-signed until issuance).
    pub source: String,
    pub domains: Vec<String>,
    /// The issuer's common name.
    pub issuer: String,
    /// RFC 3339.
    pub not_after: String,
    /// The last issuance or renewal failure (the ACME server's own message), if the last try failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// 0–100, and what took points off (protocols, ciphers, chain, expiry, HSTS).
    pub tls_score: u8,
    pub tls_reasons: Vec<String>,
}

/// The node's proxy as it is: the result of `CheckProxyDrift` and the `ProxyStatus` message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProxyNodeStatus {
    /// The revision the node serves (0: none yet).
    pub revision: u64,
    /// Files that differ from what was applied, are missing or were added (relative paths).
    pub drifted_files: Vec<String>,
    /// Proxy hosts whose files drifted.
    pub drifted_hosts: Vec<String>,
    #[serde(default)]
    pub certificates: Vec<CertificateStatus>,
}
