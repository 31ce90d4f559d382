//! API tokens for automation: shown once, stored hashed, bound to a role, expiring.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use infrapilot_identity::{Role, TokenKind, issue_token};
use infrapilot_store::{ApiTokenRow, NewApiToken, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::audit_log::{self, Actor};
use crate::auth::{ClientInfo, Credential, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::validate;

/// Longest lifetime a token may have.
const MAX_TOKEN_DAYS: u32 = 366;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub name: String,
    /// The role the token acts with; at most your own.
    pub role: String,
    /// Days until it expires, 1–366.
    pub expires_in_days: u32,
}

#[derive(Serialize, ToSchema)]
pub struct ApiTokenDto {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub last_used_at: Option<String>,
    pub revoked: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: ApiTokenDto,
    /// The secret, shown this once. Send it as `Authorization: Bearer <secret>`.
    pub secret: String,
}

impl From<ApiTokenRow> for ApiTokenDto {
    fn from(t: ApiTokenRow) -> ApiTokenDto {
        ApiTokenDto {
            id: t.id,
            name: t.name,
            role: Role::parse(&t.role).unwrap_or(Role::Viewer),
            created_by: t.user_id,
            created_at: validate::rfc3339(t.created_at),
            expires_at: validate::rfc3339(t.expires_at),
            last_used_at: t.last_used_at.map(validate::rfc3339),
            revoked: t.revoked_at.is_some(),
        }
    }
}

#[utoipa::path(get, operation_id = "list_api_tokens", path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<ApiTokenDto>)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Vec<ApiTokenDto>>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    Ok(Json(
        tx.list_api_tokens()
            .await?
            .into_iter()
            .map(ApiTokenDto::from)
            .collect(),
    ))
}

#[utoipa::path(post, operation_id = "create_api_token", path = "/api/v1/tokens", tag = "tokens", request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = validate::label("name", &req.name)?;
    let role = validate::role("role", &req.role)?;
    if !principal.role.at_least(role) {
        return Err(ApiError::invalid(
            "role",
            format!("role cannot exceed your own ({})", principal.role),
        ));
    }
    if req.expires_in_days == 0 || req.expires_in_days > MAX_TOKEN_DAYS {
        return Err(ApiError::invalid(
            "expires_in_days",
            format!("expires_in_days must be between 1 and {MAX_TOKEN_DAYS}"),
        ));
    }
    let expires_at = now_ms() + i64::from(req.expires_in_days) * 86_400_000;
    if matches!(principal.credential, Credential::ApiToken(_)) && expires_at > principal.expires_at
    {
        return Err(ApiError::invalid(
            "expires_in_days",
            "a token cannot mint a token that outlives it",
        ));
    }
    let issued = issue_token(TokenKind::Api)?;
    let id = uuid::Uuid::new_v4().to_string();
    let mut tx = state.store().write(&principal.org_id).await?;
    tx.insert_api_token(&NewApiToken {
        id: &id,
        user_id: &principal.user_id,
        name: &name,
        token_hash: &issued.hash,
        role: role.as_str(),
        expires_at,
    })
    .await?;
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "token.create",
        &format!("token:{id}"),
        json!({"name": name, "role": role.as_str(), "expires_in_days": req.expires_in_days}),
    )
    .await?;
    let row = tx
        .api_token(&id)
        .await?
        .ok_or_else(|| ApiError::internal("created token vanished"))?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: ApiTokenDto::from(row),
            secret: issued.secret,
        }),
    ))
}

#[utoipa::path(delete, operation_id = "revoke_api_token", path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = validate::uuid("id", &id)?;
    let mut tx = state.store().write(&principal.org_id).await?;
    // An admin manages tokens, but not a super_admin's: that would cut off the higher role.
    if let Some(token) = tx.api_token(&id).await?
        && principal.role != Role::SuperAdmin
        && tx
            .user_by_id(&token.user_id)
            .await?
            .is_some_and(|owner| owner.role == Role::SuperAdmin.as_str())
    {
        return Err(
            ApiError::forbidden("only a super_admin can revoke a super_admin's token")
                .with_field("id"),
        );
    }
    if !tx.revoke_api_token(&id).await? {
        return Err(ApiError::not_found("id", "no such active token"));
    }
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "token.revoke",
        &format!("token:{id}"),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
