//! Containers on a node, through its agent: list, detail, environment reveal, start / stop /
//! restart / delete, compose stack actions, logs (pages and a live WebSocket follow), exec
//! terminals over WebSocket, the node's Docker events and its command history.
//!
//! Queries go to the agent and back; actions are durable commands with an idempotency key (an
//! `Idempotency-Key` header makes a retried request return the first result instead of acting
//! twice). A node without a session with this host answers 409 `agent_offline`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use infrapilot_gateway::{HubError, StreamItem, StreamReceiver};
use infrapilot_identity::Role;
use infrapilot_proto::model::{
    ContainerDetail, ContainerList, EnvVar, LogLine, LogPage, detect_level,
};
use infrapilot_proto::v1::{FetchLogs, InspectContainer, ListContainers, command, log_chunk};
use infrapilot_store::AgentRow;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::audit_log::{self, Actor};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiQuery};
use crate::socket_guard::{SOCKET_SEND_TIMEOUT, SocketGuard, close_socket, send_text};
use crate::state::AppState;
use crate::validate;
use infrapilot_nodes::{
    ContainerCommand, ContainerVerb, ExecRequest, ExecSession, NodeActionError,
};

const QUERY_WAIT: Duration = Duration::from_secs(20);
const DEFAULT_STOP_TIMEOUT: u32 = 10;
const MAX_STOP_TIMEOUT: u32 = 600;

// ----- DTOs -----

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Include stopped containers (default true).
    pub all: Option<bool>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Seconds Docker waits after SIGTERM before SIGKILL (stop, restart); 0–600, default 10.
    #[schema(maximum = 600)]
    pub timeout_seconds: Option<u32>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteContainerRequest {
    /// The container's name, typed again as confirmation.
    pub confirm_name: String,
    /// Remove even if running (default false: a running container is refused).
    #[serde(default)]
    pub force: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ContainerActionResult {
    /// The durable command that carried the action (see `/agents/{id}/commands`).
    pub command_id: String,
    /// The container's id.
    pub container: String,
    /// `start`, `stop`, `restart` or `remove`.
    pub action: String,
    /// The state afterwards (null after removal).
    pub state: Option<String>,
    /// What warn policies said about the action (it was done).
    pub warnings: Vec<crate::error::PolicyNotice>,
}

#[derive(Serialize, ToSchema)]
pub struct StackError {
    pub container: String,
    /// The error's code, as a single action would answer it (`policy_violation` …).
    pub code: String,
    pub message: String,
    /// The policies that refused the action (`policy_violation`), else empty.
    pub policies: Vec<crate::error::PolicyNotice>,
}

#[derive(Serialize, ToSchema)]
pub struct StackActionResult {
    pub stack: String,
    pub action: String,
    pub results: Vec<ContainerActionResult>,
    pub errors: Vec<StackError>,
}

#[derive(Serialize, ToSchema)]
pub struct RevealedEnv {
    pub env: Vec<EnvVar>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Lines per page, 1–5000 (default 200).
    #[param(minimum = 1, maximum = 5000)]
    pub tail: Option<u32>,
    /// RFC 3339: only lines at or after.
    pub since: Option<String>,
    /// RFC 3339: only lines before.
    pub until: Option<String>,
    /// A page's `next_cursor`: the lines before it.
    pub cursor: Option<String>,
    /// Case-insensitive text the lines must contain (searched within the newest 10 × tail + 1000 lines).
    pub q: Option<String>,
    /// `stdout` or `stderr` (default both).
    pub stream: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FollowQuery {
    /// Lines of history first, 0–5000 (default 100).
    #[param(minimum = 0, maximum = 5000)]
    pub tail: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExecQuery {
    /// The program and its arguments, separated by spaces (no shell), default `/bin/sh`.
    pub command: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub cols: Option<u16>,
    #[param(minimum = 1, maximum = 1000)]
    pub rows: Option<u16>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// 1–500, default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// An event id: only older events.
    pub before: Option<i64>,
    /// A container id or name.
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")]
    pub container: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DockerEventDto {
    pub id: i64,
    pub time: String,
    pub container_id: String,
    pub container_name: String,
    /// die, oom, restart, health_status, start, stop, kill, create, destroy, pause, unpause.
    pub action: String,
    pub exit_code: Option<i64>,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
pub struct DockerEventList {
    pub events: Vec<DockerEventDto>,
}

#[derive(Serialize, ToSchema)]
pub struct AgentCommandDto {
    pub id: String,
    pub idempotency_key: String,
    pub kind: String,
    pub target: String,
    /// `pending`, `delivered`, `succeeded`, `failed` or `expired`.
    pub state: String,
    /// How many times it was sent (more than 1 after a reconnect; it still ran once).
    pub deliveries: i64,
    pub error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub requested_by: String,
}

#[derive(Serialize, ToSchema)]
pub struct AgentCommandList {
    pub commands: Vec<AgentCommandDto>,
}

// ----- helpers -----

/// The agent, or 400 (malformed id) / 404 (unknown) / 409 (revoked).
pub(super) async fn agent(
    state: &AppState,
    principal: &Principal,
    raw_id: &str,
) -> ApiResult<AgentRow> {
    let id = validate::uuid("id", raw_id)?;
    let agent = state
        .store()
        .read(&principal.org_id)
        .await?
        .agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such agent"))?;
    if agent.revoked_at.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "agent_revoked",
            "the agent has been revoked",
        )
        .with_field("id"));
    }
    Ok(agent)
}

/// A container id (or prefix) or name as Docker accepts them.
fn container_ref(raw: &str) -> ApiResult<String> {
    container_ref_named("cid", raw)
}

/// A container id (or prefix) or name as Docker accepts them, in field `field`.
pub(crate) fn container_ref_named(field: &str, raw: &str) -> ApiResult<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 255
        && raw
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "{field} must be a container id or name: letters, digits, '_', '.', '-' (1–255)"
            ),
        ))
    }
}

pub(crate) fn hub_error(e: HubError, field: &str) -> ApiError {
    match e {
        HubError::Offline => ApiError::new(
            StatusCode::CONFLICT,
            "agent_offline",
            "the agent is offline: it has no session with this host, so nothing was sent",
        )
        .with_field("id"),
        HubError::Timeout(secs) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "agent_timeout",
            format!("the agent did not answer within {secs} s"),
        ),
        HubError::Disconnected => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "agent_disconnected",
            "the agent disconnected before it answered",
        ),
        HubError::KeyReused => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        )
        .with_field("Idempotency-Key"),
        HubError::Agent { kind, message } => match kind.as_str() {
            "not_found" => ApiError::not_found(field, message),
            "conflict" => {
                ApiError::new(StatusCode::CONFLICT, "docker_conflict", message).with_field(field)
            }
            "invalid" => ApiError::invalid(field, message),
            "expired" => ApiError::new(StatusCode::CONFLICT, "command_expired", message),
            "docker_unavailable" => {
                ApiError::new(StatusCode::BAD_GATEWAY, "docker_unavailable", message)
            }
            _ => ApiError::new(StatusCode::BAD_GATEWAY, "docker_error", message),
        },
        HubError::Store(e) => e.into(),
        HubError::Sealing => ApiError::internal("a command carrying secrets could not be sealed"),
    }
}

fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(payload)
        .map_err(|e| ApiError::internal(format!("the agent's answer is not understood: {e}")))
}

async fn query<T: serde::de::DeserializeOwned>(
    state: &AppState,
    agent_id: &str,
    body: command::Kind,
    field: &str,
) -> ApiResult<T> {
    let outcome = state
        .nodes()
        .query(agent_id, body, QUERY_WAIT)
        .await
        .map_err(|e| hub_error(e, field))?;
    decode(&outcome.payload_json)
}

async fn inspect(state: &AppState, agent_id: &str, cid: &str) -> ApiResult<ContainerDetail> {
    query(
        state,
        agent_id,
        command::Kind::InspectContainer(InspectContainer {
            container: cid.to_owned(),
            raw: false,
        }),
        "cid",
    )
    .await
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().filter(|k| {
        !k.is_empty()
            && k.len() <= 128
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
    });
    match key {
        Some(k) => Ok(Some(k.to_owned())),
        None => Err(ApiError::invalid(
            "Idempotency-Key",
            "Idempotency-Key must be 1–128 characters: letters, digits, '_', '.', ':', '-'",
        )),
    }
}

struct ActionContext<'a> {
    state: &'a AppState,
    principal: &'a Principal,
    client: &'a ClientInfo,
    agent: &'a AgentRow,
}

/// The caller as node actions and the audit trail name them.
pub(super) fn actor(principal: &Principal, client: &ClientInfo) -> infrapilot_nodes::Actor {
    infrapilot_nodes::Actor {
        org_id: principal.org_id.clone(),
        user_id: Some(principal.user_id.clone()),
        label: principal.email.clone(),
        ip: client.ip.clone(),
        role: Some(principal.role.to_string()),
    }
}

/// A node action's failure as the API answers it; `field` names what the node could not find.
pub(super) fn node_action_error(e: NodeActionError, field: &str) -> ApiError {
    match e {
        NodeActionError::Refused(refusal) => {
            let blocks = refusal.findings.blocks();
            if blocks.is_empty() {
                ApiError::new(StatusCode::FORBIDDEN, "action_refused", refusal.reason)
            } else {
                let mut e =
                    ApiError::new(StatusCode::FORBIDDEN, "policy_violation", refusal.reason);
                e.policies = Some(blocks.into_iter().map(Into::into).collect());
                e
            }
        }
        e @ NodeActionError::GuardFailed { .. } => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "guard_unavailable",
                e.to_string(),
            );
            e.retry_after_secs = Some(infrapilot_nodes::GUARD_DEADLINE.as_secs());
            e
        }
        NodeActionError::Node(e) => hub_error(e, field),
        NodeActionError::Answer { message, .. } => {
            ApiError::internal(format!("the agent's answer is not understood: {message}"))
        }
    }
}

/// One container action through the node-action door (checks, durable command, audit).
async fn act(
    ctx: &ActionContext<'_>,
    container: &str,
    verb: ContainerVerb,
    timeout_seconds: u32,
    key: Option<String>,
) -> ApiResult<ContainerActionResult> {
    let command = ContainerCommand {
        container: container.to_owned(),
        verb,
        timeout_seconds,
    };
    let done = ctx
        .state
        .node_actions()
        .perform(&actor(ctx.principal, ctx.client), ctx.agent, command, key)
        .await
        .map_err(|e| node_action_error(e, "cid"))?;
    Ok(ContainerActionResult {
        command_id: done.command_id,
        container: done.container,
        action: verb.as_str().to_owned(),
        state: done.state,
        warnings: done.warnings.into_iter().map(Into::into).collect(),
    })
}

fn stop_timeout(body: &ActionRequest) -> ApiResult<u32> {
    let t = body.timeout_seconds.unwrap_or(DEFAULT_STOP_TIMEOUT);
    if t > MAX_STOP_TIMEOUT {
        return Err(ApiError::invalid(
            "timeout_seconds",
            format!("timeout_seconds must be 0–{MAX_STOP_TIMEOUT}"),
        ));
    }
    Ok(t)
}

// ----- handlers -----

#[utoipa::path(get, path = "/api/v1/agents/{id}/containers", operation_id = "list_containers", tag = "containers",
    params(("id" = uuid::Uuid, Path), ListQuery),
    responses((status = 200, body = ContainerList), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ContainerList>> {
    let agent = agent(&state, &principal, &id).await?;
    let list: ContainerList = query(
        &state,
        &agent.id,
        command::Kind::ListContainers(ListContainers {
            include_stopped: q.all.unwrap_or(true),
            with_stats: true,
        }),
        "id",
    )
    .await?;
    Ok(Json(list))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}/containers/{cid}", operation_id = "get_container", tag = "containers",
    params(("id" = uuid::Uuid, Path), ("cid" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$", description = "Container id, id prefix or name")),
    responses((status = 200, body = ContainerDetail), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn detail(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, cid)): Path<(String, String)>,
) -> ApiResult<Json<ContainerDetail>> {
    let agent = agent(&state, &principal, &id).await?;
    let cid = container_ref(&cid)?;
    let mut detail = inspect(&state, &agent.id, &cid).await?;
    for var in &mut detail.env {
        var.value = None;
    }
    Ok(Json(detail))
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/containers/{cid}/env/reveal", operation_id = "reveal_container_env", tag = "containers",
    params(("id" = uuid::Uuid, Path), ("cid" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$", description = "Container id, id prefix or name")),
    responses((status = 200, body = RevealedEnv), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reveal_env(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path((id, cid)): Path<(String, String)>,
) -> ApiResult<Json<RevealedEnv>> {
    let agent = agent(&state, &principal, &id).await?;
    let cid = container_ref(&cid)?;
    let detail = inspect(&state, &agent.id, &cid).await?;
    let names: Vec<&str> = detail.env.iter().map(|v| v.name.as_str()).collect();
    let event = audit_log::event(
        &Actor::user(&principal),
        &client.ip,
        "container.env_reveal",
        &format!("container:{}/{}", agent.id, detail.id),
        "success",
        json!({"agent": agent.name, "container": detail.name, "variables": names}),
    );
    audit_log::record_standalone(&state, &principal.org_id, event).await;
    Ok(Json(RevealedEnv { env: detail.env }))
}

async fn container_action(
    state: AppState,
    principal: Principal,
    client: ClientInfo,
    headers: HeaderMap,
    (id, cid): (String, String),
    body: ActionRequest,
    verb: ContainerVerb,
) -> ApiResult<Json<ContainerActionResult>> {
    let agent = agent(&state, &principal, &id).await?;
    let cid = container_ref(&cid)?;
    let timeout = stop_timeout(&body)?;
    let key = idempotency_key(&headers)?;
    let ctx = ActionContext {
        state: &state,
        principal: &principal,
        client: &client,
        agent: &agent,
    };
    Ok(Json(act(&ctx, &cid, verb, timeout, key).await?))
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/containers/{cid}/start", operation_id = "start_container", tag = "containers",
    params(("id" = uuid::Uuid, Path), ("cid" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$", description = "Container id, id prefix or name"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[A-Za-z0-9_.:-]{1,128}$", description = "Makes a retry safe: the same key with the same request answers the first outcome; with a different request, 422")),
    request_body(content = Option<ActionRequest>),
    responses((status = 200, body = ContainerActionResult), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    headers: HeaderMap,
    Path(ids): Path<(String, String)>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ActionRequest>,
) -> ApiResult<Json<ContainerActionResult>> {
    container_action(
        state,
        principal,
        client,
        headers,
        ids,
        body,
        ContainerVerb::Start,
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/containers/{cid}/stop", operation_id = "stop_container", tag = "containers",
    params(("id" = uuid::Uuid, Path), ("cid" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$", description = "Container id, id prefix or name"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[A-Za-z0-9_.:-]{1,128}$", description = "Makes a retry safe: the same key with the same request answers the first outcome; with a different request, 422")),
    request_body(content = Option<ActionRequest>),
    responses((status = 200, body = ContainerActionResult), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stop(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    headers: HeaderMap,
    Path(ids): Path<(String, String)>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ActionRequest>,
) -> ApiResult<Json<ContainerActionResult>> {
    container_action(
        state,
        principal,
        client,
        headers,
        ids,
        body,
        ContainerVerb::Stop,
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/containers/{cid}/restart", operation_id = "restart_container", tag = "containers",
    params(("id" = uuid::Uuid, Path), ("cid" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$", description = "Container id, id prefix or name"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[A-Za-z0-9_.:-]{1,128}$", description = "Makes a retry safe: the same key with the same request answers the first outcome; with a different request, 422")),
    request_body(content = Option<ActionRequest>),
    responses((status = 200, body = ContainerActionResult), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn restart(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    headers: HeaderMap,
    Path(ids): Path<(String, String)>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ActionRequest>,
) -> ApiResult<Json<ContainerActionResult>> {
    container_action(
        state,
        principal,
        client,
        headers,
        ids,
        body,
        ContainerVerb::Restart,
    )
    .await
}

#[utoipa::path(delete, path = "/api/v1/agents/{id}/containers/{cid}", operation_id = "delete_container", tag = "containers",
    params(("id" = uuid::Uuid, Path), ("cid" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$", description = "Container id, id prefix or name"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[A-Za-z0-9_.:-]{1,128}$", description = "Makes a retry safe: the same key with the same request answers the first outcome; with a different request, 422")),
    request_body = DeleteContainerRequest,
    responses((status = 200, body = ContainerActionResult), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    headers: HeaderMap,
    Path((id, cid)): Path<(String, String)>,
    ApiJson(body): ApiJson<DeleteContainerRequest>,
) -> ApiResult<Json<ContainerActionResult>> {
    let agent = agent(&state, &principal, &id).await?;
    let cid = container_ref(&cid)?;
    let key = idempotency_key(&headers)?;
    let detail = inspect(&state, &agent.id, &cid).await?;
    if body.confirm_name != detail.name {
        return Err(ApiError::invalid(
            "confirm_name",
            "confirm_name must be the container's name exactly",
        ));
    }
    if detail.state == "running" && !body.force {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "container_running",
            "the container is running: stop it first, or pass \"force\": true",
        )
        .with_field("force"));
    }
    let ctx = ActionContext {
        state: &state,
        principal: &principal,
        client: &client,
        agent: &agent,
    };
    // By full id, so the name cannot have moved to another container in between.
    Ok(Json(
        act(&ctx, &detail.id, ContainerVerb::Remove, 0, key).await?,
    ))
}

async fn stack_action(
    state: AppState,
    principal: Principal,
    client: ClientInfo,
    (id, project): (String, String),
    body: ActionRequest,
    verb: ContainerVerb,
) -> ApiResult<Json<StackActionResult>> {
    let agent = agent(&state, &principal, &id).await?;
    let project = container_ref(&project).map_err(|_| {
        ApiError::invalid(
            "project",
            "project must be a compose project name: letters, digits, '_', '.', '-'",
        )
    })?;
    let timeout = stop_timeout(&body)?;
    let list: ContainerList = query(
        &state,
        &agent.id,
        command::Kind::ListContainers(ListContainers {
            include_stopped: true,
            with_stats: false,
        }),
        "id",
    )
    .await?;
    let mut members: Vec<_> = list
        .containers
        .into_iter()
        .filter(|c| c.compose_project.as_deref() == Some(project.as_str()))
        .collect();
    if members.is_empty() {
        return Err(ApiError::not_found(
            "project",
            "no containers belong to this compose project",
        ));
    }
    // Stop in reverse order of start.
    if verb == ContainerVerb::Stop {
        members.reverse();
    }
    let ctx = ActionContext {
        state: &state,
        principal: &principal,
        client: &client,
        agent: &agent,
    };
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for c in members {
        match act(&ctx, &c.id, verb, timeout, None).await {
            Ok(r) => results.push(r),
            Err(e) => errors.push(StackError {
                container: c.name,
                code: e.code.to_owned(),
                message: e.message,
                policies: e.policies.unwrap_or_default(),
            }),
        }
    }
    Ok(Json(StackActionResult {
        stack: project,
        action: verb.as_str().to_owned(),
        results,
        errors,
    }))
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/stacks/{project}/start", operation_id = "start_stack", tag = "containers",
    params(("id" = uuid::Uuid, Path), ("project" = String, Path)), request_body(content = Option<ActionRequest>),
    responses((status = 200, body = StackActionResult), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn start_stack(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(ids): Path<(String, String)>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ActionRequest>,
) -> ApiResult<Json<StackActionResult>> {
    stack_action(state, principal, client, ids, body, ContainerVerb::Start).await
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/stacks/{project}/stop", operation_id = "stop_stack", tag = "containers",
    params(("id" = uuid::Uuid, Path), ("project" = String, Path)), request_body(content = Option<ActionRequest>),
    responses((status = 200, body = StackActionResult), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn stop_stack(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(ids): Path<(String, String)>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ActionRequest>,
) -> ApiResult<Json<StackActionResult>> {
    stack_action(state, principal, client, ids, body, ContainerVerb::Stop).await
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/stacks/{project}/restart", operation_id = "restart_stack", tag = "containers",
    params(("id" = uuid::Uuid, Path), ("project" = String, Path)), request_body(content = Option<ActionRequest>),
    responses((status = 200, body = StackActionResult), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn restart_stack(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(ids): Path<(String, String)>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ActionRequest>,
) -> ApiResult<Json<StackActionResult>> {
    stack_action(state, principal, client, ids, body, ContainerVerb::Restart).await
}

fn ns_of(field: &str, raw: &str) -> ApiResult<i64> {
    Ok(validate::timestamp(field, raw)?.saturating_mul(1_000_000))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}/containers/{cid}/logs", operation_id = "container_logs", tag = "containers",
    params(("id" = uuid::Uuid, Path), ("cid" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$", description = "Container id, id prefix or name"), LogQuery),
    responses((status = 200, body = LogPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn logs(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, cid)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<Json<LogPage>> {
    let agent = agent(&state, &principal, &id).await?;
    let cid = container_ref(&cid)?;
    let tail = q.tail.unwrap_or(200);
    if !(1..=5000).contains(&tail) {
        return Err(ApiError::invalid("tail", "tail must be 1–5000"));
    }
    let stream = q.stream.unwrap_or_default();
    if !["", "stdout", "stderr"].contains(&stream.as_str()) {
        return Err(ApiError::invalid(
            "stream",
            "stream must be stdout or stderr",
        ));
    }
    let query_text = q.q.unwrap_or_default();
    if query_text.len() > 256 {
        return Err(ApiError::invalid("q", "q must be at most 256 characters"));
    }
    let since = q.since.as_deref().map(|s| ns_of("since", s)).transpose()?;
    let mut until = q.until.as_deref().map(|s| ns_of("until", s)).transpose()?;
    if let Some(cursor) = q.cursor.as_deref() {
        let ns = cursor
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ApiError::invalid("cursor", "cursor must be a next_cursor value"))?;
        until = Some(until.map_or(ns, |u| u.min(ns)));
    }
    let page: LogPage = query(
        &state,
        &agent.id,
        command::Kind::FetchLogs(FetchLogs {
            stream_id: String::new(),
            container: cid,
            tail,
            since_unix_ns: since.unwrap_or(0),
            until_unix_ns: until.unwrap_or(0),
            follow: false,
            query: query_text,
            stream,
        }),
        "cid",
    )
    .await?;
    Ok(Json(page))
}

use crate::validate::rfc3339_ns;

#[utoipa::path(get, path = "/api/v1/agents/{id}/containers/{cid}/logs/ws", operation_id = "follow_container_logs", tag = "containers",
    description = "WebSocket (subprotocol `infrapilot.v1`; the access token as subprotocol `bearer.<token>`): one `LogLine` JSON text frame per line.",
    params(("id" = uuid::Uuid, Path), ("cid" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$", description = "Container id, id prefix or name"), FollowQuery),
    responses((status = 101, description = "Switching to WebSocket"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn follow_logs(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, cid)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<FollowQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let agent = agent(&state, &principal, &id).await?;
    let cid = container_ref(&cid)?;
    let tail = q.tail.unwrap_or(100);
    if tail > 5000 {
        return Err(ApiError::invalid("tail", "tail must be 0–5000"));
    }
    let upgrade = upgrade.map_err(|_| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "this endpoint speaks WebSocket only",
        )
    })?;
    let stream_id = uuid::Uuid::new_v4().to_string();
    let rx = state
        .nodes()
        .open_stream(
            &agent.id,
            &stream_id,
            command::Kind::FetchLogs(FetchLogs {
                stream_id: stream_id.clone(),
                container: cid,
                tail,
                follow: true,
                ..Default::default()
            }),
            QUERY_WAIT,
        )
        .await
        .map_err(|e| hub_error(e, "cid"))?;
    let hub = state.nodes().clone();
    let guard = SocketGuard::new(state.clone(), principal, Role::Viewer, agent.id.clone());
    Ok(upgrade
        .protocols(["infrapilot.v1"])
        .max_message_size(MAX_SOCKET_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            pump_logs(socket, rx, guard).await;
            hub.close_stream(&agent.id, &stream_id).await;
        }))
}

/// Largest message a client may send on a socket (terminal input, resize).
const MAX_SOCKET_MESSAGE_BYTES: usize = 64 * 1024;

/// The close of a stream the hub ended: the reader fell behind, or the node went away.
fn ended_stream(rx: &StreamReceiver) -> (u16, &'static str) {
    if rx.overflowed() {
        (
            1013,
            "you fell too far behind the stream; it was dropped, open it again",
        )
    } else {
        (1011, "the agent disconnected")
    }
}

async fn pump_logs(mut socket: WebSocket, mut rx: StreamReceiver, guard: SocketGuard) {
    let closing = guard.closing();
    tokio::pin!(closing);
    loop {
        tokio::select! {
            closing = &mut closing => {
                close_socket(&mut socket, closing.code, &closing.reason).await;
                return;
            }
            item = rx.recv() => match item {
                Some(StreamItem::Log(chunk)) if chunk.end => {
                    let reason = if chunk.error.is_empty() { "the log ended".to_owned() } else { chunk.error };
                    close_socket(&mut socket, 1000, &reason).await;
                    return;
                }
                Some(StreamItem::Log(chunk)) => {
                    let message = String::from_utf8_lossy(&chunk.data).into_owned();
                    let line = LogLine {
                        time: rfc3339_ns(chunk.time_unix_ns),
                        stream: if chunk.stream == log_chunk::Stream::Stderr as i32 { "stderr" } else { "stdout" }.to_owned(),
                        level: detect_level(&message).map(str::to_owned),
                        message,
                    };
                    let text = serde_json::to_string(&line).unwrap_or_default();
                    // A reader that stops reading is dropped, not waited for.
                    if !send_text(&mut socket, text).await {
                        return;
                    }
                }
                Some(StreamItem::Exec(_) | StreamItem::Progress(_)) => {}
                None => {
                    let (code, reason) = ended_stream(&rx);
                    close_socket(&mut socket, code, reason).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ExecClientMessage {
    Input { data: String },
    Resize { cols: u16, rows: u16 },
}

#[utoipa::path(get, path = "/api/v1/agents/{id}/containers/{cid}/exec/ws", operation_id = "exec_container", tag = "containers",
    description = "WebSocket terminal (subprotocol `infrapilot.v1`; token as subprotocol `bearer.<token>`). Client text frames: `{\"type\":\"input\",\"data\"}`, `{\"type\":\"resize\",\"cols\",\"rows\"}`. Server: binary frames of terminal output, then `{\"type\":\"exit\",\"exit_code\"}`. Audited (start and end).",
    params(("id" = uuid::Uuid, Path), ("cid" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$", description = "Container id, id prefix or name"), ExecQuery),
    responses((status = 101, description = "Switching to WebSocket"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn exec(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path((id, cid)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ExecQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let agent = agent(&state, &principal, &id).await?;
    let cid = container_ref(&cid)?;
    let command_text = q.command.unwrap_or_else(|| "/bin/sh".to_owned());
    let argv: Vec<String> = command_text.split_whitespace().map(str::to_owned).collect();
    if argv.is_empty() || argv.len() > 32 || command_text.len() > 1024 {
        return Err(ApiError::invalid(
            "command",
            "command must be a program and up to 31 arguments (at most 1024 characters)",
        ));
    }
    let (cols, rows) = (q.cols.unwrap_or(80), q.rows.unwrap_or(24));
    if !(1..=1000).contains(&cols) || !(1..=1000).contains(&rows) {
        return Err(ApiError::invalid("cols", "cols and rows must be 1–1000"));
    }
    let upgrade = upgrade.map_err(|_| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "this endpoint speaks WebSocket only",
        )
    })?;
    let detail = inspect(&state, &agent.id, &cid).await?;
    let actor = actor(&principal, &client);
    let exec = ExecRequest {
        container: detail.id.clone(),
        container_name: detail.name.clone(),
        command: argv,
        cols,
        rows,
    };
    let (session, rx) = state
        .node_actions()
        .open_exec(&actor, &agent, exec, QUERY_WAIT)
        .await
        .map_err(|e| node_action_error(e, "cid"))?;
    let guard = SocketGuard::new(
        state.clone(),
        principal.clone(),
        Role::Admin,
        agent.id.clone(),
    );
    Ok(upgrade
        .protocols(["infrapilot.v1"])
        .max_message_size(MAX_SOCKET_MESSAGE_BYTES)
        .on_upgrade(move |mut socket| async move {
            // What warn policies said, before the terminal's first byte.
            if !session.warnings.is_empty() {
                let message = session
                    .warnings
                    .iter()
                    .map(|w| format!("{}: {}", w.name, w.reasons.join("; ")))
                    .collect::<Vec<_>>()
                    .join(" | ");
                let text =
                    json!({"type": "warning", "message": message, "policies": session.warnings})
                        .to_string();
                let _ = socket.send(Message::Text(text.into())).await;
            }
            let (exit_code, closed_by_host) = pump_exec(socket, rx, &session, guard).await;
            session.end(exit_code, closed_by_host.as_deref()).await;
        }))
}

/// Shuttles terminal bytes both ways; returns the exit code if the process ended, and why the
/// host closed the terminal if it did (revoked access, lifetime, shutdown).
async fn pump_exec(
    mut socket: WebSocket,
    mut rx: StreamReceiver,
    session: &ExecSession,
    guard: SocketGuard,
) -> (Option<i32>, Option<String>) {
    let closing = guard.closing();
    tokio::pin!(closing);
    let mut closed_by_host = None;
    loop {
        tokio::select! {
            closing = &mut closing => {
                // The process is told to end first: a client that stopped reading cannot keep it.
                let _ = session.hang_up().await;
                let text = json!({"type": "error", "message": closing.reason}).to_string();
                send_text(&mut socket, text).await;
                close_socket(&mut socket, closing.code, &closing.reason).await;
                closed_by_host = Some(closing.reason);
                break;
            }
            item = rx.recv() => match item {
                Some(StreamItem::Exec(out)) if out.exited => {
                    let text = json!({"type": "exit", "exit_code": out.exit_code}).to_string();
                    send_text(&mut socket, text).await;
                    close_socket(&mut socket, 1000, "the process exited").await;
                    return (Some(out.exit_code), None);
                }
                Some(StreamItem::Exec(out)) => {
                    match tokio::time::timeout(SOCKET_SEND_TIMEOUT, socket.send(Message::Binary(out.data.into()))).await {
                        Ok(Ok(())) => {}
                        _ => break,
                    }
                }
                Some(StreamItem::Log(_) | StreamItem::Progress(_)) => {}
                None => {
                    let (code, reason) = ended_stream(&rx);
                    let text = json!({"type": "error", "message": reason}).to_string();
                    send_text(&mut socket, text).await;
                    close_socket(&mut socket, code, reason).await;
                    return (None, Some(reason.to_owned()));
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let sent = match serde_json::from_str::<ExecClientMessage>(&text) {
                        Ok(ExecClientMessage::Input { data }) => session.write(data.into_bytes()).await,
                        Ok(ExecClientMessage::Resize { cols, rows }) => session.resize(cols, rows).await,
                        Err(e) => {
                            let text = json!({"type": "error", "message": format!("unrecognised message: {e}")}).to_string();
                            if !send_text(&mut socket, text).await {
                                break;
                            }
                            continue;
                        }
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Binary(data))) => {
                    if session.write(data.to_vec()).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = session.hang_up().await;
    (None, closed_by_host)
}

#[utoipa::path(get, path = "/api/v1/agents/{id}/events", operation_id = "list_docker_events", tag = "containers",
    params(("id" = uuid::Uuid, Path), EventQuery),
    responses((status = 200, body = DockerEventList), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<DockerEventList>> {
    let id = validate::uuid("id", &id)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be 1–500"));
    }
    if let Some(c) = q.container.as_deref() {
        container_ref(c).map_err(|_| {
            ApiError::invalid("container", "container must be a container id or name")
        })?;
    }
    let mut tx = state.store().read(&principal.org_id).await?;
    tx.agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such agent"))?;
    let rows = tx
        .list_docker_events(&id, q.before, q.container.as_deref(), limit)
        .await?;
    Ok(Json(DockerEventList {
        events: rows
            .into_iter()
            .map(|e| DockerEventDto {
                id: e.id,
                time: validate::rfc3339(e.time_ms),
                container_id: e.container_id,
                container_name: e.container_name,
                action: e.action,
                exit_code: e.exit_code,
                attributes: serde_json::from_str(&e.attributes).unwrap_or_default(),
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}/commands", operation_id = "list_agent_commands", tag = "containers",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = AgentCommandList), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn commands(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<AgentCommandList>> {
    let id = validate::uuid("id", &id)?;
    let mut tx = state.store().read(&principal.org_id).await?;
    tx.agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such agent"))?;
    let rows = tx.list_commands(&id, 100).await?;
    Ok(Json(AgentCommandList {
        commands: rows
            .into_iter()
            .map(|c| AgentCommandDto {
                error: c.error.map(|e| {
                    e.split_once('\u{1f}')
                        .map(|(_, m)| m.to_owned())
                        .unwrap_or(e)
                }),
                id: c.id,
                idempotency_key: c.idempotency_key,
                kind: c.kind,
                target: c.target,
                state: c.state,
                deliveries: c.deliveries,
                created_at: validate::rfc3339(c.created_at),
                finished_at: c.finished_at.map(validate::rfc3339),
                requested_by: c.requested_by,
            })
            .collect(),
    }))
}
