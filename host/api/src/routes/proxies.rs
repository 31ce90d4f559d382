//! Reverse proxy hosts of a node. Every change (create, update, delete, re-apply, rollback)
//! goes through the proxy service ([`infrapilot_proxy::service`]), which makes a revision of the
//! node's whole configuration in one transaction with the hosts, the durable apply command and
//! the audit event, then sends the command and waits for it a while; these routes parse, call it
//! and map its errors.
//! A host's `apply_status` is read from its latest revision's stored result: `pending` until the
//! node answers, `applied`, or `failed` with nginx's own message. What failed keeps serving the
//! previous configuration on the node.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use infrapilot_plugin_host::PluginHostError;
use infrapilot_proto::model::{CertificateStatus, ProxyNodeStatus};
use infrapilot_proto::v1::{CheckProxyDrift, command};
use infrapilot_proxy::model::ProxySpec;
use infrapilot_proxy::service::{Change, ProxyServiceError, parse_hosts};
use infrapilot_proxy::{RenderError, host_status};
use infrapilot_store::{ProxyHostRow, ProxyRevisionRow, Tx};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody, PolicyNotice};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::validate;

#[derive(Serialize, ToSchema)]
pub struct ProxyDto {
    pub id: String,
    pub agent_id: String,
    #[serde(flatten)]
    pub spec: ProxySpec,
    /// `pending`, `applied` or `failed`.
    pub apply_status: String,
    /// Why the apply failed: nginx's or the node's own message.
    pub error: Option<String>,
    /// The revision the status is about.
    pub revision: i64,
    /// The files of this host on the node differ from what was applied (last drift check).
    pub drift: bool,
    /// The certificate the node holds for this host (HTTPS hosts), with its TLS health score.
    pub certificate: Option<CertificateStatus>,
    pub created_at: String,
    pub updated_at: String,
    /// After a change: what warn policies said about it (it was made).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<PolicyNotice>,
}

/// What warn policies said about a change that has no other answer.
#[derive(Serialize, ToSchema)]
pub struct PolicyWarnings {
    pub warnings: Vec<PolicyNotice>,
}

fn notices(warnings: Vec<infrapilot_nodes::Notice>) -> Vec<PolicyNotice> {
    warnings.into_iter().map(Into::into).collect()
}

#[derive(Serialize, ToSchema)]
pub struct RevisionDto {
    pub number: i64,
    /// create, update, delete, reapply or rollback:<n>.
    pub reason: String,
    pub created_by: String,
    pub created_at: String,
    /// `pending`, `applied`, `failed` or `superseded`.
    pub state: String,
    pub error: Option<String>,
    /// Hosts in this revision.
    pub hosts: usize,
    /// Hosts the node left out (their files failed `nginx -t` or their upstream is unreachable).
    pub failed_hosts: Vec<String>,
    pub duration_ms: Option<u64>,
    /// After a rollback or re-apply: what warn policies said about it (it was done).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<PolicyNotice>,
}

fn revision_dto(r: ProxyRevisionRow) -> RevisionDto {
    let report = r
        .command_result
        .as_deref()
        .and_then(|t| serde_json::from_str::<infrapilot_proto::model::ApplyReport>(t).ok());
    let (state, error) = match r.command_state.as_deref() {
        Some("succeeded") => match &report {
            Some(rep) => (rep.state.clone(), rep.error.clone()),
            None => (
                "failed".into(),
                Some("the node's report could not be read".into()),
            ),
        },
        Some("failed") | Some("expired") => (
            "failed".into(),
            r.command_error.as_deref().map(|e| {
                e.split_once('\u{1f}')
                    .map(|(_, m)| m)
                    .unwrap_or(e)
                    .to_owned()
            }),
        ),
        _ => ("pending".into(), None),
    };
    RevisionDto {
        number: r.number,
        reason: r.reason,
        created_by: r.created_by,
        created_at: validate::rfc3339(r.created_at),
        state,
        error,
        hosts: parse_hosts(&r.hosts).len(),
        failed_hosts: report
            .as_ref()
            .map(|rep| {
                rep.hosts
                    .iter()
                    .filter(|h| h.state != "applied")
                    .map(|h| h.id.clone())
                    .collect()
            })
            .unwrap_or_default(),
        duration_ms: report.map(|rep| rep.duration_ms),
        warnings: Vec::new(),
    }
}

fn proxy_dto(
    row: ProxyHostRow,
    latest: Option<&ProxyRevisionRow>,
    node: &ProxyNodeStatus,
) -> ApiResult<ProxyDto> {
    let spec: ProxySpec = serde_json::from_str(&row.spec).map_err(ApiError::internal)?;
    let status = match latest {
        Some(r) => host_status(
            &row.id,
            r.number,
            r.command_state.as_deref(),
            r.command_result.as_deref(),
            r.command_error.as_deref(),
        ),
        None => host_status(&row.id, 0, None, None, None),
    };
    Ok(ProxyDto {
        drift: node.drifted_hosts.contains(&row.id),
        certificate: node
            .certificates
            .iter()
            .find(|c| c.host_id == row.id)
            .cloned(),
        id: row.id,
        agent_id: row.agent_id,
        spec,
        apply_status: status.state,
        error: status.error,
        revision: status.revision,
        created_at: validate::rfc3339(row.created_at),
        updated_at: validate::rfc3339(row.updated_at),
        warnings: Vec::new(),
    })
}

/// The node's last reported proxy status (drift, certificates).
async fn node_status(tx: &mut Tx, agent_id: &str) -> ApiResult<ProxyNodeStatus> {
    Ok(tx
        .proxy_status(agent_id)
        .await?
        .and_then(|s| serde_json::from_str(&s.status).ok())
        .unwrap_or_default())
}

async fn known_agent(tx: &mut Tx, agent_id: &str) -> ApiResult<()> {
    let agent = tx
        .agent(agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such agent"))?;
    if agent.revoked_at.is_some() {
        return Err(ApiError::conflict("the agent is revoked").with_field("id"));
    }
    Ok(())
}

fn spec_error(e: infrapilot_proxy::FieldError) -> ApiError {
    ApiError::invalid(&e.field, e.message)
}

fn render_error(e: RenderError) -> ApiError {
    match e {
        RenderError::Plugin(
            PluginHostError::NotInstalled(_)
            | PluginHostError::Disabled(_)
            | PluginHostError::NotEntitled { .. }
            | PluginHostError::WrongWorld { .. },
        ) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "proxy_backend_unavailable",
            format!("the proxy backend cannot render: {e}"),
        )
        .with_field("backend"),
        RenderError::Plugin(p) => ApiError::from(p),
        RenderError::Hook(h) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "proxy_backend_failed",
            format!("the proxy backend failed: {h}"),
        )
        .with_field("backend"),
    }
}

/// The proxy workflow's refusals as the API answers them, each naming its field.
impl From<ProxyServiceError> for ApiError {
    fn from(e: ProxyServiceError) -> ApiError {
        let message = e.to_string();
        match e {
            ProxyServiceError::NoSuchNode => ApiError::not_found("id", message),
            ProxyServiceError::NodeRevoked => ApiError::conflict(message).with_field("id"),
            ProxyServiceError::NoSuchHost => ApiError::not_found("pid", message),
            ProxyServiceError::NoSuchRevision => ApiError::not_found("number", message),
            ProxyServiceError::NoSuchCertificate => ApiError::not_found("cid", message),
            ProxyServiceError::NoSuchUploadedCertificate => {
                ApiError::not_found("tls.certificate_id", message)
            }
            ProxyServiceError::DomainTaken { index, .. } => {
                ApiError::conflict(message).with_field(format!("domains[{index}]"))
            }
            ProxyServiceError::NotCovered { index, .. } => {
                ApiError::invalid(&format!("domains[{index}]"), message)
            }
            ProxyServiceError::ReplacementNotCovered { .. } => {
                ApiError::invalid("certificate_pem", message)
            }
            ProxyServiceError::CertificateGone { .. } => {
                ApiError::conflict(message).with_field("tls.certificate_id")
            }
            ProxyServiceError::CertificateInUse { .. }
            | ProxyServiceError::CertificateUsersChanged => {
                ApiError::conflict(message).with_field("cid")
            }
            ProxyServiceError::CertificateNameTaken => {
                ApiError::conflict(message).with_field("name")
            }
            ProxyServiceError::NoRuntime => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "plugins_unavailable",
                message,
            ),
            ProxyServiceError::Render(e) => render_error(e),
            ProxyServiceError::BackendRefused { .. } => ApiError::invalid("backend", message),
            ProxyServiceError::ConcurrentChange => ApiError::conflict(message),
            ProxyServiceError::Action(e) => super::containers::node_action_error(e, "id"),
            ProxyServiceError::Store(e) => ApiError::from(e),
            ProxyServiceError::Internal(m) => ApiError::internal(m),
        }
    }
}

/// Makes `change` to `agent_id`'s hosts through the proxy service; the revision's number and
/// what warn policies said.
async fn commit_revision(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    agent_id: &str,
    change: Change,
) -> ApiResult<infrapilot_proxy::service::Changed> {
    Ok(state
        .proxy_service()
        .change(
            &super::containers::actor(principal, client),
            agent_id,
            change,
        )
        .await?)
}

async fn one(
    state: &AppState,
    org_id: &infrapilot_store::OrgId,
    agent_id: &str,
    id: &str,
) -> ApiResult<ProxyDto> {
    let mut tx = state.store().read(org_id).await?;
    let row = tx
        .proxy_host(agent_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("pid", "no such proxy host"))?;
    let latest = tx.list_proxy_revisions(agent_id, 1).await?;
    let node = node_status(&mut tx, agent_id).await?;
    tx.commit().await?;
    proxy_dto(row, latest.first(), &node)
}

fn ids(agent: &str, pid: Option<&str>) -> ApiResult<(String, Option<String>)> {
    Ok((
        validate::uuid("id", agent)?,
        pid.map(|p| validate::uuid("pid", p)).transpose()?,
    ))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}/proxies", operation_id = "list_proxies", tag = "proxies",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Vec<ProxyDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<ProxyDto>>> {
    let (agent_id, _) = ids(&id, None)?;
    let mut tx = state.store().read(&principal.org_id).await?;
    tx.agent(&agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such agent"))?;
    let rows = tx.list_proxy_hosts(&agent_id).await?;
    let latest = tx.list_proxy_revisions(&agent_id, 1).await?;
    let node = node_status(&mut tx, &agent_id).await?;
    tx.commit().await?;
    rows.into_iter()
        .map(|r| proxy_dto(r, latest.first(), &node))
        .collect::<ApiResult<Vec<_>>>()
        .map(Json)
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/proxies", operation_id = "create_proxy", tag = "proxies",
    params(("id" = uuid::Uuid, Path)), request_body = ProxySpec,
    responses((status = 201, body = ProxyDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<ProxySpec>,
) -> ApiResult<(StatusCode, Json<ProxyDto>)> {
    let (agent_id, _) = ids(&id, None)?;
    let spec = spec.validated().map_err(spec_error)?;
    let pid = uuid::Uuid::new_v4().to_string();
    let changed = commit_revision(
        &state,
        &principal,
        &client,
        &agent_id,
        Change::Create {
            id: pid.clone(),
            spec,
        },
    )
    .await?;
    let mut dto = one(&state, &principal.org_id, &agent_id, &pid).await?;
    dto.warnings = notices(changed.warnings);
    Ok((StatusCode::CREATED, Json(dto)))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}/proxies/{pid}", operation_id = "get_proxy", tag = "proxies",
    params(("id" = uuid::Uuid, Path), ("pid" = uuid::Uuid, Path)),
    responses((status = 200, body = ProxyDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, pid)): Path<(String, String)>,
) -> ApiResult<Json<ProxyDto>> {
    let (agent_id, pid) = ids(&id, Some(&pid))?;
    let pid = pid.unwrap_or_default();
    one(&state, &principal.org_id, &agent_id, &pid)
        .await
        .map(Json)
}

#[utoipa::path(put, path = "/api/v1/agents/{id}/proxies/{pid}", operation_id = "update_proxy", tag = "proxies",
    params(("id" = uuid::Uuid, Path), ("pid" = uuid::Uuid, Path)), request_body = ProxySpec,
    responses((status = 200, body = ProxyDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path((id, pid)): Path<(String, String)>,
    ApiJson(spec): ApiJson<ProxySpec>,
) -> ApiResult<Json<ProxyDto>> {
    let (agent_id, pid) = ids(&id, Some(&pid))?;
    let pid = pid.unwrap_or_default();
    let spec = spec.validated().map_err(spec_error)?;
    let changed = commit_revision(
        &state,
        &principal,
        &client,
        &agent_id,
        Change::Update {
            id: pid.clone(),
            spec,
        },
    )
    .await?;
    let mut dto = one(&state, &principal.org_id, &agent_id, &pid).await?;
    dto.warnings = notices(changed.warnings);
    Ok(Json(dto))
}

#[utoipa::path(delete, path = "/api/v1/agents/{id}/proxies/{pid}", operation_id = "delete_proxy", tag = "proxies",
    params(("id" = uuid::Uuid, Path), ("pid" = uuid::Uuid, Path)),
    responses((status = 204), (status = 200, body = PolicyWarnings, description = "deleted, with what warn policies said"),
        (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path((id, pid)): Path<(String, String)>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let (agent_id, pid) = ids(&id, Some(&pid))?;
    let pid = pid.unwrap_or_default();
    let changed = commit_revision(
        &state,
        &principal,
        &client,
        &agent_id,
        Change::Delete { id: pid },
    )
    .await?;
    if changed.warnings.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(PolicyWarnings {
        warnings: notices(changed.warnings),
    })
    .into_response())
}

async fn revision(
    state: &AppState,
    org_id: &infrapilot_store::OrgId,
    agent_id: &str,
    number: i64,
) -> ApiResult<RevisionDto> {
    let mut tx = state.store().read(org_id).await?;
    let row = tx
        .proxy_revision(agent_id, number)
        .await?
        .ok_or_else(|| ApiError::not_found("number", "no such revision"))?;
    tx.commit().await?;
    Ok(revision_dto(row))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}/proxies/revisions", operation_id = "list_proxy_revisions", tag = "proxies",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Vec<RevisionDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn revisions(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<RevisionDto>>> {
    let (agent_id, _) = ids(&id, None)?;
    let mut tx = state.store().read(&principal.org_id).await?;
    tx.agent(&agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such agent"))?;
    let rows = tx.list_proxy_revisions(&agent_id, 100).await?;
    tx.commit().await?;
    Ok(Json(rows.into_iter().map(revision_dto).collect()))
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/proxies/revisions/{number}/rollback", operation_id = "rollback_proxies", tag = "proxies",
    params(("id" = uuid::Uuid, Path), ("number" = i64, Path, minimum = 1)),
    responses((status = 200, body = RevisionDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn rollback(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path((id, number)): Path<(String, String)>,
) -> ApiResult<Json<RevisionDto>> {
    let (agent_id, _) = ids(&id, None)?;
    let to: i64 = number
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::invalid("number", "number must be a revision number"))?;
    let changed = commit_revision(
        &state,
        &principal,
        &client,
        &agent_id,
        Change::Rollback { to },
    )
    .await?;
    let mut dto = revision(&state, &principal.org_id, &agent_id, changed.revision).await?;
    dto.warnings = notices(changed.warnings);
    Ok(Json(dto))
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/proxies/reapply", operation_id = "reapply_proxies", tag = "proxies",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = RevisionDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn reapply(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<Json<RevisionDto>> {
    let (agent_id, _) = ids(&id, None)?;
    let changed = commit_revision(&state, &principal, &client, &agent_id, Change::Reapply).await?;
    let mut dto = revision(&state, &principal.org_id, &agent_id, changed.revision).await?;
    dto.warnings = notices(changed.warnings);
    Ok(Json(dto))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}/proxies/drift", operation_id = "check_proxy_drift", tag = "proxies",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ProxyNodeStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
/// Asks the node now: drift of its files against the applied revision, and its certificates
/// with their TLS scores. The answer is also kept as the node's latest status.
pub async fn drift(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<ProxyNodeStatus>> {
    let (agent_id, _) = ids(&id, None)?;
    {
        let mut tx = state.store().read(&principal.org_id).await?;
        known_agent(&mut tx, &agent_id).await?;
        tx.commit().await?;
    }
    let outcome = state
        .nodes()
        .query(
            &agent_id,
            command::Kind::CheckProxyDrift(CheckProxyDrift {}),
            Duration::from_secs(15),
        )
        .await
        .map_err(|e| super::containers::hub_error(e, "id"))?;
    let status: ProxyNodeStatus =
        serde_json::from_slice(&outcome.payload_json).map_err(ApiError::internal)?;
    infrapilot_gateway::store_proxy_status(
        state.store(),
        &principal.org_id,
        &agent_id,
        &outcome.payload_json,
    )
    .await;
    Ok(Json(status))
}
