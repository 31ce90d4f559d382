//! Creating a container on a node from a typed spec (issue 18). Every field is checked here and
//! the spec is turned into Docker's create body by this module alone — no raw Docker JSON
//! passes through — so what the policies judge (the body, normalised) is exactly what the node
//! creates. The node pulls the image unless present, creates, connects the networks and starts;
//! with `Accept: application/x-ndjson` the answer streams the pull's progress, one JSON object
//! per line, and ends with `{"result": …}` or `{"error": …}`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use infrapilot_gateway::{HubError, StreamItem};
use infrapilot_nodes::{CreateRequest, NodeActionError, RegistryCredentials};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::containers::{actor, agent, idempotency_key, node_action_error};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody, PolicyNotice};
use crate::extract::ApiJson;
use crate::state::AppState;

/// How long a create may take on the node, pull included.
const CREATE_WAIT: Duration = Duration::from_secs(600);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub container_port: u16,
    /// Published on the node at this port (0 or absent: any free port); not published when
    /// `publish` is false.
    pub host_port: Option<u16>,
    /// `tcp` (default) or `udp`.
    pub protocol: Option<String>,
    /// The node's address to publish on (default all).
    pub host_ip: Option<String>,
    /// Default true.
    pub publish: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// An absolute host path (bind) or a volume name (volume); none for tmpfs.
    pub source: Option<String>,
    /// An absolute path in the container.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub host_path: String,
    pub container_path: Option<String>,
    /// Any of `r`, `w`, `m` (default `rwm`).
    pub permissions: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckSpec {
    /// `["CMD", "program", "arg" …]`, `["CMD-SHELL", "command"]` or `["NONE"]`.
    pub test: Vec<String>,
    pub interval_seconds: Option<u32>,
    pub timeout_seconds: Option<u32>,
    pub retries: Option<u32>,
    pub start_period_seconds: Option<u32>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuthSpec {
    pub username: String,
    /// Write-only: stored sealed with the command, never shown or audited.
    pub password: String,
    /// The registry (`host[:port]`); the image's when absent.
    pub server: Option<String>,
}

/// A container to create. Everything a policy must be able to refuse is here by name.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// 1–128 of letters, digits, `_`, `.`, `-`, starting with a letter or digit.
    pub name: String,
    /// `[registry/]repository[:tag][@digest]`; `:latest` when neither tag nor digest.
    pub image: String,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// `user[:group]`, names or numbers (empty or absent: the image's).
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// `no` (default), `always`, `unless-stopped` or `on-failure`.
    pub restart_policy: Option<String>,
    pub healthcheck: Option<HealthcheckSpec>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Networks it joins (the first at creation, the others right after).
    #[serde(default)]
    pub networks: Vec<String>,
    /// `bridge`, `host`, `none` or `container:<name>` (instead of `networks`).
    pub network_mode: Option<String>,
    /// `host` or `container:<name>`.
    pub pid_mode: Option<String>,
    /// `private`, `shareable`, `none`, `host` or `container:<name>`.
    pub ipc_mode: Option<String>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// Docker's `--security-opt` values (`no-new-privileges`, `seccomp=unconfined` …).
    #[serde(default)]
    pub security_opt: Vec<String>,
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    /// Memory limit in bytes (at least 6 MiB).
    pub memory_bytes: Option<i64>,
    /// CPU limit in cores (0.01–1024).
    pub cpus: Option<f64>,
    /// Start it once created (default true).
    pub start: Option<bool>,
    /// `missing` (default: pull when the node lacks the image) or `always`.
    pub pull: Option<String>,
    pub registry_auth: Option<RegistryAuthSpec>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedContainer {
    /// The durable command that carried it.
    pub command_id: String,
    /// The container's id.
    pub container: String,
    pub name: String,
    pub state: Option<String>,
    /// What warn policies said about it (it was created).
    pub warnings: Vec<PolicyNotice>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, message)
}

/// Docker's own name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn docker_name(field: &str, raw: &str, max: usize) -> ApiResult<String> {
    let ok = !raw.is_empty()
        && raw.len() <= max
        && raw.starts_with(|c: char| c.is_ascii_alphanumeric())
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(invalid(
            field,
            format!(
                "{field} must be 1–{max} of letters, digits, '_', '.', '-', starting with a letter or digit"
            ),
        ));
    }
    Ok(raw.to_owned())
}

/// An image reference, with `:latest` added when it has neither tag nor digest.
fn image_ref(raw: &str) -> ApiResult<String> {
    let r = raw.trim();
    let ok = !r.is_empty()
        && r.len() <= 512
        && r.starts_with(|c: char| c.is_ascii_alphanumeric())
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@+".contains(c))
        && !r.contains("//")
        && !r.ends_with(['/', ':', '@']);
    if !ok {
        return Err(invalid(
            "image",
            "image must be a reference like registry.example.com:5000/team/app:1.2 (letters, digits, '.', '_', '-', '/', ':', '@')",
        ));
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    Ok(if last.contains(':') || r.contains('@') {
        r.to_owned()
    } else {
        format!("{r}:latest")
    })
}

fn text(field: &str, raw: &str, max: usize) -> ApiResult<String> {
    if raw.len() > max || raw.contains('\0') {
        return Err(invalid(
            field,
            format!("{field} must be at most {max} bytes without NUL"),
        ));
    }
    Ok(raw.to_owned())
}

fn args(field: &str, raw: &[String]) -> ApiResult<Vec<String>> {
    if raw.len() > 256 {
        return Err(invalid(
            field,
            format!("{field} takes at most 256 arguments"),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, a)| text(&format!("{field}.{i}"), a, 8192))
        .collect()
}

fn absolute(field: &str, raw: &str) -> ApiResult<String> {
    let path = text(field, raw, 4096)?;
    if !path.starts_with('/') {
        return Err(invalid(field, format!("{field} must be an absolute path")));
    }
    Ok(infrapilot_policy::normalise::normalise_host_path(&path))
}

/// `host`, `container:<name>`, or one of `plain`.
fn mode(field: &str, raw: &str, plain: &[&str]) -> ApiResult<String> {
    if let Some(other) = raw.strip_prefix("container:") {
        docker_name(field, other, 128)?;
        return Ok(raw.to_owned());
    }
    if raw == "host" || plain.contains(&raw) {
        return Ok(raw.to_owned());
    }
    Err(invalid(
        field,
        format!(
            "{field} must be {}host or container:<name>",
            plain.iter().map(|p| format!("{p}, ")).collect::<String>()
        ),
    ))
}

fn capability(field: &str, raw: &str) -> ApiResult<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(invalid(
            field,
            format!("{field} must be a capability name like NET_ADMIN or ALL"),
        ));
    }
    Ok(raw.to_ascii_uppercase())
}

fn seconds_ns(field: &str, s: Option<u32>) -> ApiResult<Option<i64>> {
    match s {
        None => Ok(None),
        Some(0) => Err(invalid(field, format!("{field} must be at least 1"))),
        Some(s) if s > 86_400 => Err(invalid(field, format!("{field} must be at most 86400"))),
        Some(s) => Ok(Some(i64::from(s) * 1_000_000_000)),
    }
}

/// The checked spec as Docker's create body, with the request for the door.
fn build(spec: ContainerSpec) -> ApiResult<CreateRequest> {
    let name = docker_name("name", &spec.name, 128)?;
    let image = image_ref(&spec.image)?;
    let mut body = Map::new();
    body.insert("Image".into(), json!(image));
    if let Some(cmd) = &spec.command {
        body.insert("Cmd".into(), json!(args("command", cmd)?));
    }
    if let Some(entrypoint) = &spec.entrypoint {
        body.insert("Entrypoint".into(), json!(args("entrypoint", entrypoint)?));
    }
    if spec.env.len() > 256 {
        return Err(invalid("env", "at most 256 variables"));
    }
    let mut env = Vec::new();
    for (k, v) in &spec.env {
        let field = format!("env.{}", k.chars().take(64).collect::<String>());
        let ok = !k.is_empty()
            && k.len() <= 256
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(invalid(
                &field,
                "variable names are letters, digits and '_', not starting with a digit",
            ));
        }
        env.push(format!("{k}={}", text(&field, v, 32 << 10)?));
    }
    body.insert("Env".into(), json!(env));
    if let Some(user) = spec.user.as_deref().filter(|u| !u.is_empty()) {
        let ok = user.len() <= 64
            && user.split(':').count() <= 2
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-:".contains(c));
        if !ok {
            return Err(invalid(
                "user",
                "user must be user[:group], names or numbers",
            ));
        }
        body.insert("User".into(), json!(user));
    }
    if let Some(dir) = spec.working_dir.as_deref().filter(|d| !d.is_empty()) {
        body.insert("WorkingDir".into(), json!(absolute("working_dir", dir)?));
    }
    if spec.labels.len() > 128 {
        return Err(invalid("labels", "at most 128 labels"));
    }
    let mut labels = Map::new();
    for (k, v) in &spec.labels {
        let field = format!("labels.{}", k.chars().take(64).collect::<String>());
        if k.is_empty() || k.starts_with("io.infrapilot.") {
            return Err(invalid(
                &field,
                "label keys are not empty and io.infrapilot.* is reserved",
            ));
        }
        text(&field, k, 256)?;
        labels.insert(k.clone(), json!(text(&field, v, 4096)?));
    }
    body.insert("Labels".into(), Value::Object(labels));

    let mut host = Map::new();
    // Ports.
    let mut exposed = Map::new();
    let mut bindings: Map<String, Value> = Map::new();
    if spec.ports.len() > 128 {
        return Err(invalid("ports", "at most 128 ports"));
    }
    for (i, p) in spec.ports.iter().enumerate() {
        let field = format!("ports.{i}");
        if p.container_port == 0 {
            return Err(invalid(
                &format!("{field}.container_port"),
                "container_port must be 1–65535",
            ));
        }
        let protocol = match p.protocol.as_deref().unwrap_or("tcp") {
            proto @ ("tcp" | "udp") => proto,
            _ => {
                return Err(invalid(
                    &format!("{field}.protocol"),
                    "protocol must be tcp or udp",
                ));
            }
        };
        let key = format!("{}/{protocol}", p.container_port);
        exposed.insert(key.clone(), json!({}));
        if p.publish.unwrap_or(true) {
            let host_ip = match &p.host_ip {
                None => String::new(),
                Some(ip) => ip
                    .parse::<IpAddr>()
                    .map_err(|_| {
                        invalid(&format!("{field}.host_ip"), "host_ip must be an IP address")
                    })?
                    .to_string(),
            };
            let binding = json!({"HostIp": host_ip,
                "HostPort": p.host_port.filter(|p| *p > 0).map(|p| p.to_string()).unwrap_or_default()});
            match bindings.get_mut(&key) {
                Some(Value::Array(list)) => list.push(binding),
                _ => {
                    bindings.insert(key, json!([binding]));
                }
            }
        }
    }
    if !exposed.is_empty() {
        body.insert("ExposedPorts".into(), Value::Object(exposed));
        host.insert("PortBindings".into(), Value::Object(bindings));
    }
    // Mounts.
    if spec.mounts.len() > 64 {
        return Err(invalid("mounts", "at most 64 mounts"));
    }
    let mut mounts = Vec::new();
    for (i, m) in spec.mounts.iter().enumerate() {
        let field = format!("mounts.{i}");
        let target = absolute(&format!("{field}.target"), &m.target)?;
        let source = match (m.kind.as_str(), m.source.as_deref()) {
            ("bind", Some(s)) => absolute(&format!("{field}.source"), s)?,
            ("volume", Some(s)) => docker_name(&format!("{field}.source"), s, 255)?,
            ("tmpfs", None) => String::new(),
            ("tmpfs", Some(_)) => {
                return Err(invalid(
                    &format!("{field}.source"),
                    "a tmpfs mount has no source",
                ));
            }
            ("bind" | "volume", None) => {
                return Err(invalid(
                    &format!("{field}.source"),
                    "a bind or volume mount needs a source",
                ));
            }
            _ => {
                return Err(invalid(
                    &format!("{field}.type"),
                    "type must be bind, volume or tmpfs",
                ));
            }
        };
        let mut mount = json!({"Type": m.kind, "Target": target, "ReadOnly": m.read_only});
        if !source.is_empty() {
            mount["Source"] = json!(source);
        }
        mounts.push(mount);
    }
    if !mounts.is_empty() {
        host.insert("Mounts".into(), json!(mounts));
    }
    // Restart policy.
    match spec.restart_policy.as_deref().unwrap_or("no") {
        p @ ("no" | "always" | "unless-stopped" | "on-failure") => {
            host.insert("RestartPolicy".into(), json!({"Name": p}));
        }
        _ => {
            return Err(invalid(
                "restart_policy",
                "restart_policy must be no, always, unless-stopped or on-failure",
            ));
        }
    }
    // Healthcheck.
    if let Some(h) = &spec.healthcheck {
        let ok = match h.test.first().map(String::as_str) {
            Some("NONE") => h.test.len() == 1,
            Some("CMD") => h.test.len() >= 2,
            Some("CMD-SHELL") => h.test.len() == 2,
            _ => false,
        };
        if !ok {
            return Err(invalid(
                "healthcheck.test",
                "test must be [\"CMD\", program, args…], [\"CMD-SHELL\", command] or [\"NONE\"]",
            ));
        }
        let mut check = Map::new();
        check.insert("Test".into(), json!(args("healthcheck.test", &h.test)?));
        for (name, key, value) in [
            (
                "healthcheck.interval_seconds",
                "Interval",
                h.interval_seconds,
            ),
            ("healthcheck.timeout_seconds", "Timeout", h.timeout_seconds),
            (
                "healthcheck.start_period_seconds",
                "StartPeriod",
                h.start_period_seconds,
            ),
        ] {
            if let Some(ns) = seconds_ns(name, value)? {
                check.insert(key.into(), json!(ns));
            }
        }
        if let Some(r) = h.retries {
            if r > 100 {
                return Err(invalid(
                    "healthcheck.retries",
                    "retries must be at most 100",
                ));
            }
            check.insert("Retries".into(), json!(r));
        }
        body.insert("Healthcheck".into(), Value::Object(check));
    }
    // Networks and namespaces.
    if spec.networks.len() > 16 {
        return Err(invalid("networks", "at most 16 networks"));
    }
    let networks = spec
        .networks
        .iter()
        .enumerate()
        .map(|(i, n)| docker_name(&format!("networks.{i}"), n, 128))
        .collect::<ApiResult<Vec<_>>>()?;
    match (&spec.network_mode, networks.first()) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "network_mode",
                "give networks or network_mode, not both",
            ));
        }
        (Some(m), None) => {
            host.insert(
                "NetworkMode".into(),
                json!(mode("network_mode", m, &["bridge", "none", "default"])?),
            );
        }
        (None, Some(first)) => {
            host.insert("NetworkMode".into(), json!(first));
        }
        (None, None) => {}
    }
    if let Some(m) = &spec.pid_mode {
        host.insert("PidMode".into(), json!(mode("pid_mode", m, &[])?));
    }
    if let Some(m) = &spec.ipc_mode {
        host.insert(
            "IpcMode".into(),
            json!(mode("ipc_mode", m, &["private", "shareable", "none"])?),
        );
    }
    host.insert("Privileged".into(), json!(spec.privileged));
    for (field, list, key) in [
        ("cap_add", &spec.cap_add, "CapAdd"),
        ("cap_drop", &spec.cap_drop, "CapDrop"),
    ] {
        if list.len() > 64 {
            return Err(invalid(
                field,
                format!("{field} takes at most 64 capabilities"),
            ));
        }
        let caps = list
            .iter()
            .enumerate()
            .map(|(i, c)| capability(&format!("{field}.{i}"), c))
            .collect::<ApiResult<Vec<_>>>()?;
        if !caps.is_empty() {
            host.insert(key.into(), json!(caps));
        }
    }
    if spec.security_opt.len() > 16 {
        return Err(invalid("security_opt", "at most 16 options"));
    }
    let security = spec
        .security_opt
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let field = format!("security_opt.{i}");
            let o = text(&field, o, 256)?;
            let (key, value) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
            let ok = match key.trim().to_ascii_lowercase().as_str() {
                "no-new-privileges" => ["", "true", "false"].contains(&value.trim()),
                // Docker takes a seccomp profile as inline JSON only: not from here.
                "seccomp" => !value.is_empty() && !value.trim_start().starts_with('{'),
                "apparmor" | "label" | "systempaths" => !value.is_empty(),
                _ => false,
            };
            if !ok {
                return Err(invalid(
                    &field,
                    "security_opt takes no-new-privileges[=true|false], seccomp=unconfined, apparmor=<profile>, label=<disable|user:…|role:…|type:…|level:…> or systempaths=unconfined",
                ));
            }
            Ok(o)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    if !security.is_empty() {
        host.insert("SecurityOpt".into(), json!(security));
    }
    if spec.devices.len() > 32 {
        return Err(invalid("devices", "at most 32 devices"));
    }
    let mut devices = Vec::new();
    for (i, d) in spec.devices.iter().enumerate() {
        let field = format!("devices.{i}");
        let host_path = absolute(&format!("{field}.host_path"), &d.host_path)?;
        let container_path = match &d.container_path {
            Some(p) => absolute(&format!("{field}.container_path"), p)?,
            None => host_path.clone(),
        };
        let permissions = d.permissions.clone().unwrap_or_else(|| "rwm".into());
        if permissions.is_empty() || !permissions.chars().all(|c| "rwm".contains(c)) {
            return Err(invalid(
                &format!("{field}.permissions"),
                "permissions are any of r, w, m",
            ));
        }
        devices.push(
            json!({"PathOnHost": host_path, "PathInContainer": container_path,
            "CgroupPermissions": permissions}),
        );
    }
    if !devices.is_empty() {
        host.insert("Devices".into(), json!(devices));
    }
    if let Some(m) = spec.memory_bytes {
        if m < 6 << 20 {
            return Err(invalid(
                "memory_bytes",
                "memory_bytes must be at least 6 MiB",
            ));
        }
        host.insert("Memory".into(), json!(m));
    }
    if let Some(c) = spec.cpus {
        if !(0.01..=1024.0).contains(&c) || !c.is_finite() {
            return Err(invalid("cpus", "cpus must be 0.01–1024"));
        }
        host.insert("NanoCpus".into(), json!((c * 1e9).round() as i64));
    }
    body.insert("HostConfig".into(), Value::Object(host));

    let always_pull = match spec.pull.as_deref().unwrap_or("missing") {
        "missing" => false,
        "always" => true,
        _ => return Err(invalid("pull", "pull must be missing or always")),
    };
    let credentials = match spec.registry_auth {
        None => None,
        Some(a) => {
            if a.username.is_empty() || a.username.len() > 256 {
                return Err(invalid(
                    "registry_auth.username",
                    "username must be 1–256 bytes",
                ));
            }
            text("registry_auth.password", &a.password, 4096)?;
            let server = a.server.unwrap_or_default();
            text("registry_auth.server", &server, 256)?;
            Some(RegistryCredentials {
                username: a.username,
                password: a.password,
                server,
            })
        }
    };
    let body = Value::Object(body);
    // The host's normalisation must read what it built (a policy judges it).
    infrapilot_policy::normalise(&body).map_err(ApiError::internal)?;
    Ok(CreateRequest {
        name,
        image,
        body,
        networks,
        start: spec.start.unwrap_or(true),
        always_pull,
        credentials,
    })
}

fn create_error(e: NodeActionError) -> ApiError {
    match e {
        NodeActionError::Node(HubError::Agent { kind, message })
            if kind == "invalid" && message.starts_with("mounts:") =>
        {
            ApiError::invalid("mounts", message)
        }
        NodeActionError::Node(HubError::Agent { kind, message }) if kind == "pull_failed" => {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "image_pull_failed",
                message,
            )
            .with_field("image")
        }
        other => node_action_error(other, "name"),
    }
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/containers", operation_id = "create_container", tag = "containers",
    params(("id" = uuid::Uuid, Path)),
    request_body = ContainerSpec,
    responses((status = 201, body = CreatedContainer),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "refused by a policy: `policy_violation` with `policies`"),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody, description = "the image could not be pulled")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(spec): ApiJson<ContainerSpec>,
) -> ApiResult<Response> {
    let node = agent(&state, &principal, &id).await?;
    let key = idempotency_key(&headers)?;
    let request = build(spec)?;
    let name = request.name.clone();
    let who = actor(&principal, &client);
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/x-ndjson"));
    if !streaming {
        let done = state
            .node_actions()
            .create(&who, &node, request, key, None, CREATE_WAIT)
            .await
            .map_err(create_error)?;
        return Ok((
            StatusCode::CREATED,
            Json(CreatedContainer {
                command_id: done.command_id,
                container: done.container,
                name,
                state: done.state,
                warnings: done.warnings.into_iter().map(Into::into).collect(),
            }),
        )
            .into_response());
    }
    // Streamed: the policies first (a refusal is the 403 like any other), then progress lines
    // while the node pulls, then the result or the error.
    let admitted = state
        .node_actions()
        .admit_create(&who, &node, request)
        .await
        .map_err(create_error)?;
    let stream_id = uuid::Uuid::new_v4().to_string();
    let mut progress = state.nodes().watch_stream(&node.id, &stream_id);
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(256);
    let task_state = state.clone();
    tokio::spawn(async move {
        let create = task_state.node_actions().create_admitted(
            admitted,
            key,
            Some(stream_id.clone()),
            CREATE_WAIT,
        );
        tokio::pin!(create);
        let result = loop {
            tokio::select! {
                result = &mut create => break result,
                item = progress.recv() => {
                    if let Some(StreamItem::Progress(line)) = item {
                        let line = String::from_utf8_lossy(&line).into_owned();
                        // A client that stops reading loses progress lines, never holds up the
                        // create (its audit event comes with the result).
                        let _ = tx.try_send(format!("{{\"progress\":{line}}}\n"));
                    }
                }
            }
        };
        task_state.nodes().close_stream(&node.id, &stream_id).await;
        let last = match result {
            Ok(done) => json!({"result": CreatedContainer {
                command_id: done.command_id,
                container: done.container,
                name,
                state: done.state,
                warnings: done.warnings.into_iter().map(Into::into).collect(),
            }}),
            Err(e) => {
                let e = create_error(e);
                json!({"error": {"status": e.status.as_u16(), "code": e.code, "message": e.message,
                    "field": e.field, "policies": e.policies}})
            }
        };
        let _ = tx.send(format!("{last}\n")).await;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(line), rx))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}
