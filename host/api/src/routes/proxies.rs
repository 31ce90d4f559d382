//! Reverse proxy hosts of a node. Every change (create, update, delete, re-apply, rollback)
//! makes a revision of the node's whole configuration in one transaction with the hosts, the
//! durable apply command and the audit event; the command is then sent and awaited for a while.
//! A host's `apply_status` is read from its latest revision's stored result: `pending` until the
//! node answers, `applied`, or `failed` with nginx's own message. What failed keeps serving the
//! previous configuration on the node.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use infrapilot_nodes::{Admitted, ProxyApply, ProxyChange, StagedApply};
use infrapilot_plugin_host::PluginHostError;
use infrapilot_proto::model::{CertificateStatus, ProxyNodeStatus};
use infrapilot_proto::v1::{CheckProxyDrift, command};
use infrapilot_proxy::certificate::{CertificateFacts, uncovered};
use infrapilot_proxy::model::ProxySpec;
use infrapilot_proxy::{CertificateMaterial, RenderError, RevisionHost, host_status};
use infrapilot_store::{NewProxyRevision, ProxyHostRow, ProxyRevisionRow, Tx};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::audit_log::{self, Actor};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::validate;

/// How long a change waits for the node's answer before answering `pending`.
const APPLY_WAIT: Duration = Duration::from_secs(20);
/// How long an apply command stays deliverable to a node that is offline.
const APPLY_EXPIRES: Duration = Duration::from_secs(30 * 86_400);

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
}

fn parse_hosts(json_text: &str) -> Vec<RevisionHost> {
    serde_json::from_str(json_text).unwrap_or_default()
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

/// What a revision changes in the node's hosts.
pub(super) enum Change {
    Create {
        id: String,
        spec: ProxySpec,
    },
    Update {
        id: String,
        spec: ProxySpec,
    },
    Delete {
        id: String,
    },
    Reapply,
    Rollback {
        to: i64,
    },
    /// An uploaded certificate the node's hosts use was replaced.
    Certificate {
        id: String,
    },
}

impl Change {
    /// The change as the node-action guards see it (`deploys`: the hosts a rollback serves).
    fn as_node_action(&self, deploys: Option<serde_json::Value>) -> ApiResult<ProxyChange> {
        let kind = match self {
            Change::Create { .. } => "create",
            Change::Update { .. } => "update",
            Change::Delete { .. } => "delete",
            Change::Reapply => "reapply",
            Change::Rollback { .. } => "rollback",
            Change::Certificate { .. } => "certificate",
        };
        let (subject, spec) = match self {
            Change::Create { id, spec } | Change::Update { id, spec } => (
                Some(id.clone()),
                Some(serde_json::to_value(spec).map_err(ApiError::internal)?),
            ),
            Change::Delete { id } | Change::Certificate { id } => (Some(id.clone()), None),
            Change::Rollback { to } => (Some(to.to_string()), None),
            Change::Reapply => (None, None),
        };
        Ok(ProxyChange {
            kind: kind.to_owned(),
            subject,
            spec,
            hosts: deploys,
        })
    }

    fn reason(&self) -> String {
        match self {
            Change::Create { .. } => "create".into(),
            Change::Update { .. } => "update".into(),
            Change::Delete { .. } => "delete".into(),
            Change::Reapply => "reapply".into(),
            Change::Rollback { to } => format!("rollback:{to}"),
            Change::Certificate { .. } => "certificate".into(),
        }
    }
}

async fn put_host(tx: &mut Tx, agent_id: &str, id: &str, spec: &ProxySpec) -> ApiResult<()> {
    let text = serde_json::to_string(spec).map_err(ApiError::internal)?;
    if let Err(domain) = tx
        .put_proxy_host(agent_id, id, &text, &spec.domains)
        .await?
    {
        let i = spec.domains.iter().position(|d| *d == domain).unwrap_or(0);
        return Err(ApiError::conflict(format!(
            "{domain} is already served by another proxy host on this node"
        ))
        .with_field(format!("domains[{i}]")));
    }
    Ok(())
}

/// Checks that the uploaded certificate a host names exists and covers all its domains.
async fn check_certificate(tx: &mut Tx, spec: &ProxySpec) -> ApiResult<()> {
    let Some(cid) = spec.uploaded_certificate() else {
        return Ok(());
    };
    let row = tx
        .proxy_certificate(cid)
        .await?
        .ok_or_else(|| ApiError::not_found("tls.certificate_id", "no such uploaded certificate"))?;
    let facts: CertificateFacts = serde_json::from_str(&row.facts).map_err(ApiError::internal)?;
    if let Some((i, domain)) = uncovered(&facts.domains, &spec.domains) {
        return Err(ApiError::invalid(
            &format!("domains[{i}]"),
            format!(
                "{domain} is not covered by the certificate {} (it names {})",
                row.name,
                facts.domains.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The uploaded certificates `hosts` use, keys opened to be sent.
async fn certificate_material(
    state: &AppState,
    tx: &mut Tx,
    hosts: &[RevisionHost],
) -> ApiResult<HashMap<String, CertificateMaterial>> {
    let mut material = HashMap::new();
    for host in hosts {
        let Some(cid) = host.spec.uploaded_certificate() else {
            continue;
        };
        if material.contains_key(cid) {
            continue;
        }
        let row = tx.proxy_certificate(cid).await?.ok_or_else(|| {
            ApiError::conflict(format!(
                "the uploaded certificate {cid} of proxy host {} no longer exists",
                host.id
            ))
            .with_field("tls.certificate_id")
        })?;
        let key = state
            .secrets()
            .open(&certificate_seal_purpose(cid), &row.sealed_key)
            .map_err(ApiError::internal)?;
        let facts: CertificateFacts =
            serde_json::from_str(&row.facts).map_err(ApiError::internal)?;
        let ocsp_stapling =
            infrapilot_proxy::certificate::chain_ocsp_responder(&row.certificate_pem).is_some();
        material.insert(
            cid.to_owned(),
            CertificateMaterial {
                chain_pem: row.certificate_pem,
                key_pem: String::from_utf8(key).map_err(ApiError::internal)?,
                fingerprint_sha256: facts.fingerprint_sha256,
                ocsp_stapling,
            },
        );
    }
    Ok(material)
}

/// What an uploaded certificate's key is sealed for.
pub(super) fn certificate_seal_purpose(id: &str) -> String {
    format!("proxy-certificate:{id}")
}

/// Makes the change and a revision of the node's configuration in one transaction, then sends
/// it and waits a while for the node. Returns the revision number.
async fn commit_revision(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    agent_id: &str,
    change: Change,
) -> ApiResult<i64> {
    let org_id = principal.org_id.as_str();
    let admitted = admit(state, principal, client, agent_id, &change).await?;
    let mut tx = state.store().write(org_id).await?;
    let staged = stage_revision(
        state, &mut tx, principal, client, agent_id, change, admitted,
    )
    .await?;
    tx.commit().await?;
    let number = staged.number;
    dispatch_revision(state, org_id, staged).await;
    Ok(number)
}

/// Runs the node-action guards on `change` to `agent_id`'s proxy, before its transaction opens.
pub(super) async fn admit(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    agent_id: &str,
    change: &Change,
) -> ApiResult<Admitted> {
    let mut tx = state.store().read(&principal.org_id).await?;
    let node = tx
        .agent(agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such agent"))?;
    if node.revoked_at.is_some() {
        return Err(ApiError::conflict("the agent is revoked").with_field("id"));
    }
    // A rollback deploys an older revision's hosts: the guards see those.
    let deploys = match change {
        Change::Rollback { to } => {
            let old = tx
                .proxy_revision(agent_id, *to)
                .await?
                .ok_or_else(|| ApiError::not_found("number", "no such revision"))?;
            Some(serde_json::to_value(parse_hosts(&old.hosts)).map_err(ApiError::internal)?)
        }
        _ => None,
    };
    tx.commit().await?;
    state
        .node_actions()
        .admit_proxy_change(
            &super::containers::actor(principal, client),
            &node,
            change.as_node_action(deploys)?,
        )
        .await
        .map_err(|e| super::containers::node_action_error(e, "id"))
}

/// A revision written in a transaction, whose command is sent once it commits.
pub(super) struct StagedRevision {
    pub agent_id: String,
    pub number: i64,
    apply: StagedApply,
}

/// Sends a committed revision's command and waits a while for the node.
pub(super) async fn dispatch_revision(state: &AppState, org_id: &str, staged: StagedRevision) {
    // The outcome is stored with the command; offline nodes get it when they say hello.
    if let Err(e) = state
        .node_actions()
        .dispatch_staged(org_id, staged.apply, APPLY_WAIT)
        .await
    {
        tracing::info!(agent_id = staged.agent_id, revision = staged.number, error = %e, "proxy apply not answered yet");
    }
}

/// Re-applies a node's hosts because the uploaded certificate `certificate_id` changed, in the
/// caller's transaction.
pub(super) async fn stage_certificate_change(
    state: &AppState,
    tx: &mut Tx,
    principal: &Principal,
    client: &ClientInfo,
    agent_id: &str,
    certificate_id: &str,
    admitted: Admitted,
) -> ApiResult<StagedRevision> {
    let change = certificate_change(certificate_id);
    stage_revision(state, tx, principal, client, agent_id, change, admitted).await
}

/// The change a replaced certificate makes to the nodes whose hosts use it.
pub(super) fn certificate_change(certificate_id: &str) -> Change {
    Change::Certificate {
        id: certificate_id.to_owned(),
    }
}

/// Makes the change, renders the node's hosts into a revision and stores its apply command
/// and the audit event, all in `tx`.
async fn stage_revision(
    state: &AppState,
    tx: &mut Tx,
    principal: &Principal,
    client: &ClientInfo,
    agent_id: &str,
    change: Change,
    admitted: Admitted,
) -> ApiResult<StagedRevision> {
    let extensions = state.extensions()?;
    let org_id = principal.org_id.as_str();
    known_agent(tx, agent_id).await?;
    let reason = change.reason();
    let (action, target) = match &change {
        Change::Create { id, spec } => {
            check_certificate(tx, spec).await?;
            put_host(tx, agent_id, id, spec).await?;
            ("proxy.create", format!("proxy:{id}"))
        }
        Change::Update { id, spec } => {
            if tx.proxy_host(agent_id, id).await?.is_none() {
                return Err(ApiError::not_found("pid", "no such proxy host"));
            }
            check_certificate(tx, spec).await?;
            put_host(tx, agent_id, id, spec).await?;
            ("proxy.update", format!("proxy:{id}"))
        }
        Change::Delete { id } => {
            if !tx.delete_proxy_host(agent_id, id).await? {
                return Err(ApiError::not_found("pid", "no such proxy host"));
            }
            ("proxy.delete", format!("proxy:{id}"))
        }
        Change::Reapply => ("proxy.reapply", format!("agent:{agent_id}")),
        Change::Certificate { id } => ("proxy.certificate", format!("certificate:{id}")),
        Change::Rollback { to } => {
            let old = tx
                .proxy_revision(agent_id, *to)
                .await?
                .ok_or_else(|| ApiError::not_found("number", "no such revision"))?;
            for row in tx.list_proxy_hosts(agent_id).await? {
                tx.delete_proxy_host(agent_id, &row.id).await?;
            }
            for host in parse_hosts(&old.hosts) {
                put_host(tx, agent_id, &host.id, &host.spec).await?;
            }
            ("proxy.rollback", format!("agent:{agent_id}"))
        }
    };
    let mut hosts = Vec::new();
    for row in tx.list_proxy_hosts(agent_id).await? {
        hosts.push(RevisionHost {
            spec: serde_json::from_str(&row.spec).map_err(ApiError::internal)?,
            id: row.id,
        });
    }
    let previous = tx
        .list_proxy_revisions(agent_id, 1)
        .await?
        .first()
        .map(|r| parse_hosts(&r.hosts))
        .unwrap_or_default();
    // Above what the node last said it serves: a database restored from an older backup
    // would otherwise number revisions the node refuses as superseded.
    let node_serves = tx
        .proxy_status(agent_id)
        .await?
        .map(|s| s.revision)
        .unwrap_or(0);
    let number = tx
        .next_proxy_revision(agent_id)
        .await?
        .max(node_serves.saturating_add(1));
    let certificates = certificate_material(state, tx, &hosts).await?;
    let rendered = infrapilot_proxy::render(
        &extensions.plugins,
        &state.settings().proxy_backend,
        org_id,
        u64::try_from(number).unwrap_or_default(),
        &hosts,
        &previous,
        &certificates,
    )
    .await
    .map_err(render_error)?;
    if let Some((id, message)) = rendered.refused.first() {
        return Err(ApiError::invalid(
            "backend",
            format!("the proxy backend refused host {id}: {message}"),
        ));
    }
    // A command that carries an uploaded certificate's key is stored sealed.
    let Some(apply) = state
        .node_actions()
        .stage_proxy_apply(
            tx,
            admitted,
            ProxyApply {
                config: rendered.command,
                revision: number,
                seal: !certificates.is_empty(),
                requested_by: &principal.email,
                expires_in: APPLY_EXPIRES,
            },
        )
        .await
        .map_err(|e| super::containers::node_action_error(e, "id"))?
    else {
        return Err(ApiError::conflict(
            "another change to this node's proxy was made at the same time; try again",
        ));
    };
    tx.insert_proxy_revision(&NewProxyRevision {
        id: &uuid::Uuid::new_v4().to_string(),
        agent_id,
        number,
        hosts: &serde_json::to_string(&hosts).map_err(ApiError::internal)?,
        command_id: apply.command_id(),
        reason: &reason,
        created_by: &principal.email,
    })
    .await?;
    audit_log::success(
        tx,
        &Actor::user(principal),
        &client.ip,
        action,
        &target,
        json!({"agent_id": agent_id, "revision": number}),
    )
    .await?;
    Ok(StagedRevision {
        agent_id: agent_id.to_owned(),
        number,
        apply,
    })
}

async fn one(state: &AppState, org_id: &str, agent_id: &str, id: &str) -> ApiResult<ProxyDto> {
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
    commit_revision(
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
    let dto = one(&state, &principal.org_id, &agent_id, &pid).await?;
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
    commit_revision(
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
    one(&state, &principal.org_id, &agent_id, &pid)
        .await
        .map(Json)
}

#[utoipa::path(delete, path = "/api/v1/agents/{id}/proxies/{pid}", operation_id = "delete_proxy", tag = "proxies",
    params(("id" = uuid::Uuid, Path), ("pid" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path((id, pid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (agent_id, pid) = ids(&id, Some(&pid))?;
    let pid = pid.unwrap_or_default();
    commit_revision(
        &state,
        &principal,
        &client,
        &agent_id,
        Change::Delete { id: pid },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revision(
    state: &AppState,
    org_id: &str,
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
    let number = commit_revision(
        &state,
        &principal,
        &client,
        &agent_id,
        Change::Rollback { to },
    )
    .await?;
    revision(&state, &principal.org_id, &agent_id, number)
        .await
        .map(Json)
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
    let number = commit_revision(&state, &principal, &client, &agent_id, Change::Reapply).await?;
    revision(&state, &principal.org_id, &agent_id, number)
        .await
        .map(Json)
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
