//! Nodes: enrollment tokens, enrollment (token + CSR → certificate) and the agent list.
//! The mTLS gRPC stream that agents open with their certificate arrives with the agent itself.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use infrapilot_identity::{ThrottleDecision, TokenKind, hash_token, issue_token};
use infrapilot_store::{AgentRow, EnrollmentTokenRow, NewAgent, NewEnrollmentToken, OrgId, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::audit_log::{self, Actor};
use crate::auth::{ClientInfo, Credential, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::validate;

pub(crate) const MAX_LABELS: usize = 20;
const MAX_TOKEN_USES: i64 = 1_000;
const MAX_TOKEN_HOURS: i64 = 24 * 30;

type Labels = BTreeMap<String, String>;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentTokenRequest {
    /// What the token is for, e.g. `web servers rollout`.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// Labels every agent enrolled with this token gets, e.g. `{"env": "prod"}`.
    #[serde(default)]
    pub labels: Labels,
    /// How many agents may enrol with it, 1–1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_uses: i64,
    /// Hours until it expires, 1–720.
    #[schema(minimum = 1, maximum = 720)]
    pub expires_in_hours: i64,
}

#[derive(Serialize, ToSchema)]
pub struct EnrollmentTokenDto {
    pub id: String,
    pub name: String,
    pub labels: Labels,
    pub max_uses: i64,
    pub uses: i64,
    pub expires_at: String,
    pub created_at: String,
    pub revoked: bool,
    /// `active`, `expired`, `used_up` or `revoked`.
    pub state: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedEnrollmentToken {
    #[serde(flatten)]
    pub token: EnrollmentTokenDto,
    /// The secret, shown this once; give it to `infrapilot-agent enroll --token`.
    pub secret: String,
    /// The one-line install command for a node (contains the secret and the agent's SHA-256).
    pub install_command: String,
    /// Set when the command's URL is plain http off loopback (the installer refuses it unless
    /// run with `--insecure-http`).
    pub install_warning: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The enrollment token's secret.
    pub token: String,
    /// A PKCS#10 certificate signing request in PEM, made on the node (its key never leaves it).
    pub csr: String,
    /// The node's name: letters, digits, `.`, `_`, `-`; 1–63 characters; unique.
    pub name: String,
    /// The agent's version.
    pub version: String,
}

#[derive(Serialize, ToSchema)]
pub struct EnrollResponse {
    pub agent_id: String,
    /// The agent's client certificate (PEM), signed by the host CA.
    pub certificate: String,
    /// The host CA certificate (PEM): the agent trusts only this for the host.
    pub ca_certificate: String,
    pub certificate_expires_at: String,
    /// Where to open the mTLS gRPC session.
    pub grpc_endpoint: String,
}

#[derive(Serialize, ToSchema)]
pub struct AgentDto {
    pub id: String,
    pub name: String,
    /// `online` or `offline`.
    pub status: &'static str,
    pub version: String,
    pub labels: Labels,
    pub revoked: bool,
    pub enrolled_at: String,
    pub last_seen_at: Option<String>,
    pub certificate_expires_at: String,
    /// The agent inside the host process (community mode).
    pub builtin: bool,
    /// The host statistics of the node's last heartbeat (none before the first one).
    pub host_stats: Option<HostStatsDto>,
}

/// What a node reported about itself with its last heartbeat.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct HostStatsDto {
    /// CPU busy since the node's previous heartbeat, percent of all its cores (0–100); none
    /// before its second heartbeat.
    pub cpu_percent: Option<f64>,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub containers_running: u32,
    pub containers_total: u32,
    pub uptime_seconds: u64,
    /// The filesystem of the node's Docker data root (0 from agents older than this field).
    #[serde(default)]
    pub disk_used_bytes: u64,
    #[serde(default)]
    pub disk_total_bytes: u64,
    /// Log lines and events in the node's spool not acknowledged by the host yet.
    #[serde(default)]
    pub spooled_records: u64,
    /// Records the node's spool dropped past its bound since the agent started.
    #[serde(default)]
    pub dropped_records: u64,
    /// When the host received them (RFC 3339).
    #[serde(default)]
    pub reported_at: String,
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    reported_at_ms: i64,
}

pub(crate) fn parse_host_stats(text: Option<&str>) -> Option<HostStatsDto> {
    let mut stats: HostStatsDto = serde_json::from_str(text?)
        .inspect_err(|e| tracing::warn!(error = %e, "stored host statistics are not readable"))
        .ok()?;
    stats.reported_at = validate::rfc3339(stats.reported_at_ms);
    Some(stats)
}

fn parse_labels(text: &str) -> Labels {
    serde_json::from_str(text).unwrap_or_default()
}

impl From<EnrollmentTokenRow> for EnrollmentTokenDto {
    fn from(t: EnrollmentTokenRow) -> EnrollmentTokenDto {
        let state = if t.revoked_at.is_some() {
            "revoked"
        } else if t.uses >= t.max_uses {
            "used_up"
        } else if t.expires_at <= now_ms() {
            "expired"
        } else {
            "active"
        };
        EnrollmentTokenDto {
            labels: parse_labels(&t.labels),
            id: t.id,
            name: t.name,
            max_uses: t.max_uses,
            uses: t.uses,
            expires_at: validate::rfc3339(t.expires_at),
            created_at: validate::rfc3339(t.created_at),
            revoked: t.revoked_at.is_some(),
            state,
        }
    }
}

impl AgentDto {
    /// Online: a session with this process, or (another replica's session) heard from within
    /// two heartbeat intervals. Two missed heartbeats end a session, so either way a silent
    /// agent turns offline after two intervals.
    pub(crate) fn of(a: AgentRow, state: &AppState) -> AgentDto {
        let window_ms = i64::from(state.settings().heartbeat_seconds) * 2 * 1000 + 5_000;
        let online = a.revoked_at.is_none()
            && (state.nodes().is_connected(&a.id)
                || a.last_seen_at.is_some_and(|t| now_ms() - t < window_ms));
        AgentDto {
            host_stats: parse_host_stats(a.host_stats.as_deref()),
            builtin: a.builtin,
            labels: parse_labels(&a.labels),
            id: a.id,
            name: a.name,
            status: if online { "online" } else { "offline" },
            version: a.version,
            revoked: a.revoked_at.is_some(),
            enrolled_at: validate::rfc3339(a.enrolled_at),
            last_seen_at: a.last_seen_at.map(validate::rfc3339),
            certificate_expires_at: validate::rfc3339(a.cert_expires_at),
        }
    }
}

/// Labels: at most 20; keys `[a-z0-9][a-z0-9._/-]*` up to 63; values up to 63 printable characters.
fn check_labels(labels: &Labels) -> ApiResult<()> {
    check_labels_at("labels", labels)
}

/// [`check_labels`] for a field named `name`.
pub(crate) fn check_labels_at(name: &str, labels: &Labels) -> ApiResult<()> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::invalid(
            name,
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    for (key, value) in labels {
        let key_ok = !key.is_empty()
            && key.len() <= 63
            && key.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._/-".contains(c));
        let field = format!("{name}.{}", key.chars().take(63).collect::<String>());
        if !key_ok {
            return Err(ApiError::invalid(
                &field,
                "label keys are 1–63 of a-z, 0-9, '.', '_', '/', '-', starting with a letter or digit",
            ));
        }
        if value.chars().count() > 63 || value.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                &field,
                "label values are at most 63 characters without control characters",
            ));
        }
    }
    Ok(())
}

/// A node name: 1–63 of letters, digits, `.`, `_`, `-`, starting with a letter or digit.
fn check_node_name(raw: &str) -> ApiResult<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 63
        && raw.starts_with(|c: char| c.is_ascii_alphanumeric())
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
    if !ok {
        return Err(ApiError::invalid(
            "name",
            "name must be 1–63 letters, digits, '.', '_' or '-', starting with a letter or digit",
        ));
    }
    Ok(raw.to_owned())
}

#[utoipa::path(get, path = "/api/v1/enrollment-tokens", operation_id = "list_enrollment_tokens", tag = "agents",
    responses((status = 200, body = Vec<EnrollmentTokenDto>)), security(("bearer" = [])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Vec<EnrollmentTokenDto>>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    Ok(Json(
        tx.list_enrollment_tokens()
            .await?
            .into_iter()
            .map(EnrollmentTokenDto::from)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/enrollment-tokens", operation_id = "create_enrollment_token", tag = "agents",
    request_body = CreateEnrollmentTokenRequest,
    responses((status = 201, body = CreatedEnrollmentToken), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<CreateEnrollmentTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedEnrollmentToken>)> {
    let name = validate::label("name", &req.name)?;
    check_labels(&req.labels)?;
    if !(1..=MAX_TOKEN_USES).contains(&req.max_uses) {
        return Err(ApiError::invalid(
            "max_uses",
            format!("max_uses must be between 1 and {MAX_TOKEN_USES}"),
        ));
    }
    if !(1..=MAX_TOKEN_HOURS).contains(&req.expires_in_hours) {
        return Err(ApiError::invalid(
            "expires_in_hours",
            format!("expires_in_hours must be between 1 and {MAX_TOKEN_HOURS}"),
        ));
    }
    let expires_at = now_ms() + req.expires_in_hours * 3_600_000;
    if matches!(principal.credential, Credential::ApiToken(_)) && expires_at > principal.expires_at
    {
        return Err(ApiError::invalid(
            "expires_in_hours",
            "an API token cannot mint an enrollment token that outlives it",
        ));
    }
    let issued = issue_token(TokenKind::Enrollment)?;
    let id = uuid::Uuid::new_v4().to_string();
    let labels = serde_json::to_string(&req.labels).map_err(ApiError::internal)?;
    let mut tx = state.store().write(&principal.org_id).await?;
    tx.insert_enrollment_token(&NewEnrollmentToken {
        id: &id,
        token_hash: &issued.hash,
        name: &name,
        labels: &labels,
        max_uses: req.max_uses,
        expires_at,
        created_by: &principal.user_id,
    })
    .await?;
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "enrollment_token.create",
        &format!("enrollment_token:{id}"),
        json!({"name": name, "max_uses": req.max_uses, "expires_in_hours": req.expires_in_hours}),
    )
    .await?;
    let row = tx
        .enrollment_token(&id)
        .await?
        .ok_or_else(|| ApiError::internal("created enrollment token vanished"))?;
    tx.commit().await?;
    let base = crate::routes::install::public_base(&state, &headers);
    Ok((
        StatusCode::CREATED,
        Json(CreatedEnrollmentToken {
            token: EnrollmentTokenDto::from(row),
            install_command: crate::routes::install::install_command(
                &base,
                &issued.secret,
                state.agent_binary_sha256().as_deref(),
            ),
            install_warning: crate::routes::install::is_insecure_base(&base)
                .then(|| crate::routes::install::INSECURE_INSTALL_WARNING.to_owned()),
            secret: issued.secret,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/enrollment-tokens/{id}", operation_id = "revoke_enrollment_token", tag = "agents",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = validate::uuid("id", &id)?;
    let mut tx = state.store().write(&principal.org_id).await?;
    if !tx.revoke_enrollment_token(&id).await? {
        return Err(ApiError::not_found("id", "no such active enrollment token"));
    }
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "enrollment_token.revoke",
        &format!("enrollment_token:{id}"),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/agents/enroll", operation_id = "enroll_agent", tag = "agents",
    request_body = EnrollRequest,
    responses((status = 201, body = EnrollResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn enroll(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> ApiResult<(StatusCode, Json<EnrollResponse>)> {
    // Throttled per address before anything else: a flood of bogus tokens costs neither a
    // signature nor an audit event per attempt.
    let throttle_key = format!("enroll:{}", client.throttle_key());
    // Only bad tokens count (a fleet enrolling in parallel from one NAT address is not an
    // attack); each costs a hash lookup at most, since the token is checked before anything else.
    if let ThrottleDecision::Deny { retry_after } = state.enroll_throttle().check(&throttle_key) {
        return Err(ApiError::too_many_attempts(retry_after.as_secs().max(1)));
    }
    if !req.token.starts_with(TokenKind::Enrollment.prefix()) || req.token.len() > 128 {
        enroll_failure(
            &state,
            None,
            &client,
            &throttle_key,
            &req.name,
            "malformed token",
        )
        .await;
        return Err(ApiError::unauthorized("the enrollment token is malformed").with_field("token"));
    }
    let name = check_node_name(&req.name)?;
    if req.version.is_empty()
        || req.version.len() > 32
        || !req.version.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(ApiError::invalid(
            "version",
            "version must be 1–32 printable ASCII characters",
        ));
    }
    if req.csr.len() > 16 * 1024 {
        return Err(ApiError::invalid("csr", "csr is too large"));
    }
    // The organisation is the token's (found through the system path by the token's hash
    // alone); everything else happens in a transaction of that organisation.
    let token_hash = hash_token(&req.token);
    let Some(org_id) = state
        .store()
        .lookup()
        .await?
        .org_of_enrollment_token(&token_hash)
        .await?
    else {
        let reason = "unknown enrollment token";
        enroll_failure(&state, None, &client, &throttle_key, &name, reason).await;
        return Err(ApiError::unauthorized(reason).with_field("token"));
    };
    let agent_id = uuid::Uuid::new_v4().to_string();
    // The token is checked (and taken) first; the CSR is signed only for a good one. Anything
    // refused after this rolls back, so the token's use is not spent.
    let nodes = crate::license_limits::Limited::Nodes;
    let max_nodes = crate::license_limits::limit(&state, nodes).await?;
    let mut tx = state.store().write(&org_id).await?;
    let token = match tx.consume_enrollment_token(&token_hash).await? {
        Ok(token) => token,
        Err(reason) => {
            drop(tx);
            enroll_failure(&state, Some(&org_id), &client, &throttle_key, &name, reason).await;
            return Err(ApiError::unauthorized(reason).with_field("token"));
        }
    };
    crate::license_limits::check(&mut tx, nodes, max_nodes, "token").await?;
    let issued = state
        .ca()
        .sign_agent_csr(&req.csr, org_id.as_str(), &agent_id)
        .map_err(|e| ApiError::invalid("csr", e.to_string()))?;
    tx.insert_agent(&NewAgent {
        id: &agent_id,
        name: &name,
        labels: &token.labels,
        version: &req.version,
        enrollment_token_id: &token.id,
        cert_serial: &issued.serial_hex,
        cert_fingerprint: &issued.fingerprint_sha256,
        cert_expires_at: issued.not_after_ms,
        builtin: false,
    })
    .await
    .map_err(|e| {
        if e.is_unique_violation() {
            ApiError::conflict("a node with this name is enrolled already").with_field("name")
        } else {
            e.into()
        }
    })?;
    let actor = Actor {
        id: None,
        label: format!("enrollment_token:{}", token.id),
    };
    audit_log::commit_success(
        tx,
        &actor,
        &client.ip,
        "agent.enroll",
        &format!("agent:{agent_id}"),
        json!({"name": name, "version": req.version, "certificate_serial": issued.serial_hex}),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(EnrollResponse {
            agent_id,
            certificate: issued.pem,
            ca_certificate: state.ca().cert_pem().to_owned(),
            certificate_expires_at: validate::rfc3339(issued.not_after_ms),
            grpc_endpoint: state.settings().agent_grpc_url.clone(),
        }),
    ))
}

/// A refused enrollment: counted against the address; audited once when an address starts
/// failing and once when it reaches the throttle (with the count), not once per attempt.
async fn enroll_failure(
    state: &AppState,
    org: Option<&OrgId>,
    client: &ClientInfo,
    throttle_key: &str,
    name: &str,
    reason: &str,
) {
    let throttle = state.enroll_throttle();
    throttle.record_failure(throttle_key);
    let failures = throttle.failures(throttle_key);
    let limit = state.settings().enroll_failures;
    if failures != 1 && failures != limit {
        return;
    }
    let target: String = name.chars().take(64).collect();
    let event = audit_log::event(
        &Actor::anonymous(),
        &client.ip,
        "agent.enroll",
        &format!("agent:{target}"),
        "failure",
        json!({"reason": reason, "failures_from_address": failures, "throttled": failures >= limit}),
    );
    // In the token's organisation when it is known (revoked, expired, used up); the host's
    // chain for a token no organisation has.
    let chain = org.cloned().unwrap_or_else(OrgId::default_org);
    audit_log::record_standalone(state, &chain, event).await;
}

#[utoipa::path(get, path = "/api/v1/agents", operation_id = "list_agents", tag = "agents",
    responses((status = 200, body = Vec<AgentDto>)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Vec<AgentDto>>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    Ok(Json(
        tx.list_agents()
            .await?
            .into_iter()
            .map(|a| AgentDto::of(a, &state))
            .collect(),
    ))
}

async fn find(
    state: &AppState,
    org_id: &infrapilot_store::OrgId,
    raw_id: &str,
) -> ApiResult<AgentRow> {
    let id = validate::uuid("id", raw_id)?;
    state
        .store()
        .read(org_id)
        .await?
        .agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such agent"))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}", operation_id = "get_agent", tag = "agents",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = AgentDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<AgentDto>> {
    Ok(Json(AgentDto::of(
        find(&state, &principal.org_id, &id).await?,
        &state,
    )))
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/revoke", operation_id = "revoke_agent", tag = "agents",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let agent = find(&state, &principal.org_id, &id).await?;
    let mut tx = state.store().write(&principal.org_id).await?;
    if !tx.revoke_agent(&agent.id).await? {
        return Err(ApiError::conflict("the agent is revoked already").with_field("id"));
    }
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "agent.revoke",
        &format!("agent:{}", agent.id),
        json!({"name": agent.name, "certificate_serial": agent.cert_serial}),
    )
    .await?;
    // The node's open session (and every stream on it) ends now, not at its next heartbeat.
    state
        .nodes()
        .end_session(&agent.id, "this agent has been revoked");
    Ok(StatusCode::NO_CONTENT)
}
