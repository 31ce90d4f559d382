//! Reading and verifying the audit trail.

use axum::Json;
use axum::extract::State;
use infrapilot_store::{AuditEvent, AuditFilter, ChainReport};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::validate;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Exact actor (an email, `anonymous` or `cli`).
    pub actor: Option<String>,
    /// Exact action, e.g. `user.create`.
    pub action: Option<String>,
    /// RFC 3339, inclusive.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(minimum = 1)]
    pub before_seq: Option<i64>,
    /// 1–500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventDto {
    pub seq: i64,
    pub id: String,
    pub at: String,
    pub actor_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub ip: String,
    pub outcome: String,
    pub detail: serde_json::Value,
    pub hash: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPageDto {
    pub events: Vec<AuditEventDto>,
    pub next_cursor: Option<i64>,
}

impl From<AuditEvent> for AuditEventDto {
    fn from(e: AuditEvent) -> AuditEventDto {
        AuditEventDto {
            seq: e.seq,
            id: e.id,
            at: validate::rfc3339(e.at),
            actor_id: e.actor_id,
            actor: e.actor,
            action: e.action,
            target: e.target,
            ip: e.ip,
            outcome: e.outcome,
            detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::String(e.detail)),
            hash: e.hash,
        }
    }
}

fn bounded(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(v) if v.len() > 256 => Err(ApiError::invalid(field, format!("{field} is too long"))),
        Some(v) if v.is_empty() => Ok(None),
        v => Ok(v),
    }
}

#[utoipa::path(get, operation_id = "list_audit_events", path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPageDto), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPageDto>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "limit must be between 1 and 500",
        ));
    }
    if q.before_seq.is_some_and(|s| s < 1) {
        return Err(ApiError::invalid(
            "before_seq",
            "before_seq must be positive",
        ));
    }
    let since = q
        .since
        .as_deref()
        .map(|s| validate::timestamp("since", s))
        .transpose()?;
    let until = q
        .until
        .as_deref()
        .map(|s| validate::timestamp("until", s))
        .transpose()?;
    let filter = AuditFilter {
        actor: bounded("actor", q.actor)?,
        action: bounded("action", q.action)?,
        since,
        until,
        before_seq: q.before_seq,
        limit,
    };
    let mut tx = state.store().read(&principal.org_id).await?;
    let page = tx.list_audit(&filter).await?;
    Ok(Json(AuditPageDto {
        events: page.events.into_iter().map(AuditEventDto::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, operation_id = "verify_audit_chain", path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, body = ChainReport)), security(("bearer" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<ChainReport>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    Ok(Json(tx.verify_audit_chain().await?))
}
