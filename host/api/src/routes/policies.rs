//! Policies (issue 18): the organisation's policies, the types the enabled policy engines offer
//! (with the JSON Schema of their conditions, from which the dashboard builds its form), the
//! violations found, and a dry run of a policy against what runs now. A policy is checked by its
//! engine before it is saved: conditions it cannot read are refused naming the field.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use infrapilot_plugin_host::{EngineError, LoadedEngine, PolicyEngines};
use infrapilot_plugin_runtime::HookError;
use infrapilot_plugin_runtime::contract::PluginError;
use infrapilot_plugin_runtime::contract::policy_model::Policy;
use infrapilot_store::{NewPolicy, OrgId, PolicyRow, ViolationFilter, ViolationRow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::audit_log::{self, Actor};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::validate;

/// Conditions of one policy, at most (a Rego module included).
const MAX_CONDITIONS_BYTES: usize = 64 << 10;

type Labels = BTreeMap<String, String>;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// 1–64 characters, unique in the organisation.
    pub name: String,
    /// A template id (`no_root_containers`, `no_privileged`, `no_sensitive_mounts`,
    /// `require_restart_policy`, `require_healthcheck`, `require_ssl`, `no_exec_production`,
    /// `max_container_age`) or `rego`: a type an enabled policy engine offers
    /// (`GET /api/v1/policies/types`).
    pub policy_type: String,
    /// The type's conditions (an object; its JSON Schema is in the type). Default `{}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub conditions: Option<Value>,
    /// `block` (refuse the action), `warn` (do it, with a warning) or `audit` (record only).
    pub action: String,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The policy applies to nodes carrying every one of these labels (default: all nodes).
    #[serde(default)]
    pub node_labels: Labels,
}

#[derive(Serialize, ToSchema)]
pub struct PolicyDto {
    pub id: String,
    pub name: String,
    pub policy_type: String,
    #[schema(value_type = Object)]
    pub conditions: Value,
    pub action: String,
    pub enabled: bool,
    pub node_labels: Labels,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct PolicyTypeDto {
    pub id: String,
    pub title: String,
    pub description: String,
    /// JSON Schema of the conditions.
    #[schema(value_type = Object)]
    pub conditions_schema: Value,
    /// The plugin that evaluates it.
    pub engine: String,
}

#[derive(Serialize, ToSchema)]
pub struct ViolationDto {
    pub id: String,
    pub policy_id: String,
    /// The policy's name when the violation was recorded.
    pub policy_name: String,
    /// The action: `container.start`, `proxy.update`, `container.running` (the periodic audit) …
    pub action: String,
    /// What it was about: `container:<node id>/<container>`, `proxy:<id>` …
    pub resource: String,
    pub agent_id: Option<String>,
    /// `block`, `warn` or `audit`.
    pub decision: String,
    pub reasons: Vec<String>,
    pub actor: String,
    /// Set when the policy's engine could not decide (block policies then refuse).
    pub engine_error: Option<String>,
    pub audit_event_id: Option<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ViolationPage {
    pub items: Vec<ViolationDto>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ViolationQuery {
    #[param(
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    pub policy_id: Option<String>,
    /// `block`, `warn` or `audit`.
    #[param(pattern = "^(block|warn|audit)?$")]
    pub decision: Option<String>,
    /// e.g. `container.start`.
    #[param(max_length = 256)]
    pub action: Option<String>,
    #[param(
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    pub agent_id: Option<String>,
    /// RFC 3339, inclusive.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = "^([0-9]{1,19}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    pub cursor: Option<String>,
    /// 1–500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct DryRunFinding {
    pub agent_id: String,
    pub node: String,
    pub container: String,
    pub reasons: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DryRunNodeError {
    pub agent_id: String,
    pub node: String,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct DryRunResult {
    /// Nodes the policy applies to that were read.
    pub nodes: usize,
    /// Running containers judged.
    pub containers: usize,
    /// Running containers not judged (over the limit of one pass).
    pub skipped: usize,
    /// The running containers the policy would find, with why.
    pub findings: Vec<DryRunFinding>,
    /// Nodes (or containers) that could not be read.
    pub errors: Vec<DryRunNodeError>,
}

fn dto(row: PolicyRow) -> PolicyDto {
    PolicyDto {
        conditions: serde_json::from_str(&row.conditions).unwrap_or_else(|_| json!({})),
        node_labels: serde_json::from_str(&row.node_labels).unwrap_or_default(),
        id: row.id,
        name: row.name,
        policy_type: row.policy_type,
        action: row.action,
        enabled: row.enabled,
        created_by: row.created_by,
        created_at: validate::rfc3339(row.created_at),
        updated_at: validate::rfc3339(row.updated_at),
    }
}

fn violation_dto(v: ViolationRow) -> ViolationDto {
    ViolationDto {
        reasons: serde_json::from_str(&v.reasons).unwrap_or_default(),
        id: v.id,
        policy_id: v.policy_id,
        policy_name: v.policy_name,
        action: v.action,
        resource: v.resource,
        agent_id: v.agent_id,
        decision: v.decision,
        actor: v.actor,
        engine_error: v.engine_error,
        audit_event_id: v.audit_event_id,
        created_at: validate::rfc3339(v.created_at),
    }
}

fn engines(state: &AppState) -> ApiResult<&PolicyEngines> {
    Ok(&state.extensions()?.policy_engines)
}

fn engines_unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "policy engines unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "policy_engine_unavailable",
        "the policy engines could not be reached; try again",
    )
}

/// A checked policy, ready to store.
struct Checked {
    name: String,
    policy_type: String,
    conditions: String,
    action: String,
    enabled: bool,
    node_labels: String,
}

/// Checks every field, the conditions by the type's engine (its message names the field).
async fn check(
    state: &AppState,
    org_id: &OrgId,
    id: &str,
    req: PolicyRequest,
) -> ApiResult<Checked> {
    let name = validate::label("name", &req.name)?;
    let policy_type = req.policy_type.trim().to_owned();
    if policy_type.is_empty()
        || policy_type.len() > 64
        || !policy_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
    {
        return Err(ApiError::invalid(
            "policy_type",
            "policy_type must be 1–64 of a-z, 0-9, '_', '.', '-' (GET /api/v1/policies/types lists them)",
        ));
    }
    let action = match req.action.as_str() {
        a @ ("block" | "warn" | "audit") => a.to_owned(),
        _ => {
            return Err(ApiError::invalid(
                "action",
                "action must be block, warn or audit",
            ));
        }
    };
    let conditions = req.conditions.unwrap_or_else(|| json!({}));
    if !conditions.is_object() {
        return Err(ApiError::invalid(
            "conditions",
            "conditions must be an object",
        ));
    }
    let conditions = conditions.to_string();
    if conditions.len() > MAX_CONDITIONS_BYTES {
        return Err(ApiError::invalid(
            "conditions",
            format!("conditions take at most {MAX_CONDITIONS_BYTES} bytes"),
        ));
    }
    super::agents::check_labels_at("node_labels", &req.node_labels)?;
    let node_labels = serde_json::to_string(&req.node_labels).map_err(ApiError::internal)?;

    let engines = engines(state)?;
    let loaded = engines.loaded().await.map_err(engines_unavailable)?;
    let engine = engine_for(&loaded, &policy_type)?;
    let policy = Policy {
        id: id.to_owned(),
        name: name.clone(),
        policy_type: policy_type.clone(),
        conditions: conditions.clone(),
    };
    match engines.check(org_id, engine, &policy).await {
        Ok(()) => {}
        Err(EngineError::Hook {
            error: HookError::Plugin(PluginError::InvalidSettings(message)),
            ..
        }) => {
            let field = message
                .split_once(':')
                .map(|(f, _)| f.trim())
                .filter(|f| f.starts_with("conditions") && !f.contains(' '))
                .unwrap_or("conditions")
                .to_owned();
            return Err(ApiError::invalid(&field, message));
        }
        Err(e) => return Err(engines_unavailable(e)),
    }
    Ok(Checked {
        name,
        policy_type,
        conditions,
        action,
        enabled: req.enabled.unwrap_or(true),
        node_labels,
    })
}

fn engine_for<'a>(loaded: &'a [LoadedEngine], policy_type: &str) -> ApiResult<&'a LoadedEngine> {
    PolicyEngines::engine_of(loaded, policy_type).ok_or_else(|| {
        let offered: Vec<&str> = loaded
            .iter()
            .flat_map(|e| e.types.iter().map(|t| t.id.as_str()))
            .collect();
        let hint = if offered.is_empty() {
            "no policy engine is enabled (the policy templates plugin needs the enterprise feature `policies`)".to_owned()
        } else {
            format!("the enabled engines offer {}", offered.join(", "))
        };
        ApiError::invalid(
            "policy_type",
            format!("no enabled policy engine evaluates policies of type {policy_type:?}: {hint}"),
        )
    })
}

fn conflict_on_name(name: &str) -> impl Fn(infrapilot_store::StoreError) -> ApiError + '_ {
    move |e| {
        if e.is_unique_violation() {
            ApiError::conflict(format!("a policy named {name:?} exists")).with_field("name")
        } else {
            e.into()
        }
    }
}

#[utoipa::path(get, path = "/api/v1/policies", operation_id = "list_policies", tag = "policies",
    responses((status = 200, body = [PolicyDto])), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Vec<PolicyDto>>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    let rows = tx.list_policies(false).await?;
    tx.commit().await?;
    Ok(Json(rows.into_iter().map(dto).collect()))
}

#[utoipa::path(post, path = "/api/v1/policies", operation_id = "create_policy", tag = "policies",
    request_body = PolicyRequest,
    responses((status = 201, body = PolicyDto), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(req): ApiJson<PolicyRequest>,
) -> ApiResult<(StatusCode, Json<PolicyDto>)> {
    let id = uuid::Uuid::new_v4().to_string();
    let p = check(&state, &principal.org_id, &id, req).await?;
    let mut tx = state.store().write(&principal.org_id).await?;
    let inserted = tx
        .insert_policy(&NewPolicy {
            id: &id,
            name: &p.name,
            policy_type: &p.policy_type,
            conditions: &p.conditions,
            action: &p.action,
            enabled: p.enabled,
            node_labels: &p.node_labels,
            created_by: &principal.email,
        })
        .await
        .map_err(conflict_on_name(&p.name))?;
    if !inserted {
        return Err(
            ApiError::conflict(format!("a policy named {:?} exists", p.name)).with_field("name"),
        );
    }
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "policy.create",
        &format!("policy:{id}"),
        json!({"name": p.name, "policy_type": p.policy_type, "action": p.action,
            "enabled": p.enabled, "conditions": serde_json::from_str::<Value>(&p.conditions).unwrap_or_default(),
            "node_labels": serde_json::from_str::<Value>(&p.node_labels).unwrap_or_default()}),
    )
    .await?;
    let row = tx
        .policy(&id)
        .await?
        .ok_or_else(|| ApiError::internal("created policy vanished"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(dto(row))))
}

#[utoipa::path(get, path = "/api/v1/policies/{id}", operation_id = "get_policy", tag = "policies",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = PolicyDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<PolicyDto>> {
    let id = validate::uuid("id", &id)?;
    let mut tx = state.store().read(&principal.org_id).await?;
    let row = tx
        .policy(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such policy"))?;
    tx.commit().await?;
    Ok(Json(dto(row)))
}

#[utoipa::path(put, path = "/api/v1/policies/{id}", operation_id = "update_policy", tag = "policies",
    params(("id" = uuid::Uuid, Path)), request_body = PolicyRequest,
    responses((status = 200, body = PolicyDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PolicyRequest>,
) -> ApiResult<Json<PolicyDto>> {
    let id = validate::uuid("id", &id)?;
    {
        let mut tx = state.store().read(&principal.org_id).await?;
        let exists = tx.policy(&id).await?.is_some();
        tx.commit().await?;
        if !exists {
            return Err(ApiError::not_found("id", "no such policy"));
        }
    }
    let p = check(&state, &principal.org_id, &id, req).await?;
    let mut tx = state.store().write(&principal.org_id).await?;
    let before = tx
        .policy(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such policy"))?;
    tx.update_policy(&NewPolicy {
        id: &id,
        name: &p.name,
        policy_type: &p.policy_type,
        conditions: &p.conditions,
        action: &p.action,
        enabled: p.enabled,
        node_labels: &p.node_labels,
        created_by: &before.created_by,
    })
    .await
    .map_err(conflict_on_name(&p.name))?;
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "policy.update",
        &format!("policy:{id}"),
        json!({"name": p.name, "policy_type": p.policy_type, "action": p.action,
            "enabled": p.enabled, "was": {"name": before.name, "policy_type": before.policy_type,
            "action": before.action, "enabled": before.enabled,
            "conditions": serde_json::from_str::<Value>(&before.conditions).unwrap_or_default(),
            "node_labels": serde_json::from_str::<Value>(&before.node_labels).unwrap_or_default()},
            "conditions": serde_json::from_str::<Value>(&p.conditions).unwrap_or_default(),
            "node_labels": serde_json::from_str::<Value>(&p.node_labels).unwrap_or_default()}),
    )
    .await?;
    let row = tx
        .policy(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such policy"))?;
    tx.commit().await?;
    Ok(Json(dto(row)))
}

#[utoipa::path(delete, path = "/api/v1/policies/{id}", operation_id = "delete_policy", tag = "policies",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = validate::uuid("id", &id)?;
    let mut tx = state.store().write(&principal.org_id).await?;
    let row = tx
        .policy(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such policy"))?;
    tx.delete_policy(&id).await?;
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "policy.delete",
        &format!("policy:{id}"),
        json!({"name": row.name, "policy_type": row.policy_type, "action": row.action}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/policies/types", operation_id = "list_policy_types", tag = "policies",
    responses((status = 200, body = [PolicyTypeDto]), (status = 503, body = ErrorBody)), security(("bearer" = [])))]
pub async fn types(State(state): State<AppState>) -> ApiResult<Json<Vec<PolicyTypeDto>>> {
    let loaded = engines(&state)?
        .loaded()
        .await
        .map_err(engines_unavailable)?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for engine in &loaded {
        for t in engine.types.iter() {
            // The first engine declaring a type evaluates it.
            if seen.insert(t.id.clone()) {
                out.push(PolicyTypeDto {
                    id: t.id.clone(),
                    title: t.title.clone(),
                    description: t.description.clone(),
                    conditions_schema: serde_json::from_str(&t.conditions_schema)
                        .unwrap_or_else(|_| json!({"type": "object"})),
                    engine: engine.plugin_id.clone(),
                });
            }
        }
    }
    Ok(Json(out))
}

fn bounded(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(v) if v.len() > 256 => Err(ApiError::invalid(field, format!("{field} is too long"))),
        Some(v) if v.is_empty() => Ok(None),
        v => Ok(v),
    }
}

#[utoipa::path(get, path = "/api/v1/policies/violations", operation_id = "list_policy_violations", tag = "policies",
    params(ViolationQuery),
    responses((status = 200, body = ViolationPage), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn violations(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ViolationQuery>,
) -> ApiResult<Json<ViolationPage>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "limit must be between 1 and 500",
        ));
    }
    let decision = bounded("decision", q.decision)?;
    if decision
        .as_deref()
        .is_some_and(|d| !matches!(d, "block" | "warn" | "audit"))
    {
        return Err(ApiError::invalid(
            "decision",
            "decision must be block, warn or audit",
        ));
    }
    let policy_id = q
        .policy_id
        .filter(|p| !p.is_empty())
        .map(|p| validate::uuid("policy_id", &p))
        .transpose()?;
    let agent_id = q
        .agent_id
        .filter(|p| !p.is_empty())
        .map(|p| validate::uuid("agent_id", &p))
        .transpose()?;
    let before = match q.cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let parsed = c.split_once('_').and_then(|(at, id)| {
                Some((at.parse::<i64>().ok()?, validate::uuid("cursor", id).ok()?))
            });
            Some(parsed.ok_or_else(|| {
                ApiError::invalid("cursor", "cursor must be a next_cursor of a previous page")
            })?)
        }
    };
    let filter = ViolationFilter {
        policy_id,
        decision,
        action: bounded("action", q.action)?,
        agent_id,
        since: q
            .since
            .as_deref()
            .map(|s| validate::timestamp("since", s))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|s| validate::timestamp("until", s))
            .transpose()?,
        before,
        limit,
    };
    let mut tx = state.store().read(&principal.org_id).await?;
    let (rows, next) = tx.list_violations(&filter).await?;
    tx.commit().await?;
    Ok(Json(ViolationPage {
        items: rows.into_iter().map(violation_dto).collect(),
        next_cursor: next.map(|(at, id)| format!("{at}_{id}")),
    }))
}

#[utoipa::path(post, path = "/api/v1/policies/dry-run", operation_id = "dry_run_policy", tag = "policies",
    request_body = PolicyRequest,
    responses((status = 200, body = DryRunResult), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn dry_run(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(req): ApiJson<PolicyRequest>,
) -> ApiResult<Json<DryRunResult>> {
    let id = uuid::Uuid::new_v4().to_string();
    let p = check(&state, &principal.org_id, &id, req).await?;
    let row = PolicyRow {
        id,
        name: p.name,
        policy_type: p.policy_type,
        conditions: p.conditions,
        action: p.action,
        enabled: true,
        node_labels: p.node_labels,
        created_by: principal.email.clone(),
        created_at: 0,
        updated_at: 0,
    };
    let row_type = row.policy_type.clone();
    let mut tx = state.store().read(&principal.org_id).await?;
    let nodes = tx.list_agents().await?;
    tx.commit().await?;
    let report = infrapilot_policy::running::check_running(
        engines(&state)?,
        state.nodes(),
        &principal.org_id,
        &nodes,
        &[row],
        &principal.email,
    )
    .await;
    // It reads every running container's configuration: on the record, like a search of logs.
    let mut tx = state.store().write(&principal.org_id).await?;
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "policy.dry_run",
        "policies",
        json!({"policy_type": row_type, "nodes": report.nodes, "containers": report.containers,
            "findings": report.findings.len()}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(DryRunResult {
        nodes: report.nodes,
        containers: report.containers,
        skipped: report.skipped,
        findings: report
            .findings
            .into_iter()
            .map(|f| DryRunFinding {
                agent_id: f.agent_id,
                node: f.node,
                container: f.container,
                reasons: f.reasons,
            })
            .collect(),
        errors: report
            .errors
            .into_iter()
            .map(|e| DryRunNodeError {
                agent_id: e.agent_id,
                node: e.node,
                message: e.message,
            })
            .collect(),
    }))
}
