//! Signing in and out: login, the MFA step, token refresh with rotation, logout, own sessions,
//! own profile and password. The workflows are the account service's
//! ([`infrapilot_accounts::AccountService`]); these routes parse, call it and map its errors.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use infrapilot_accounts::organisations::OrgCreation;
use infrapilot_accounts::{self as accounts, LoginOutcome};
use infrapilot_identity::{Role, TokenKind};
use infrapilot_store::OrgId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Authenticated, ClientInfo};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::mfa::MfaEnrollResponse;
use crate::routes::users::UserDto;
use crate::state::AppState;
use crate::validate;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 1024)]
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// After a sign-in step that enrolled the person's first authenticator: their backup
    /// codes, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_codes: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct MfaRequired {
    pub mfa_required: bool,
    /// Pass to `POST /api/v1/auth/mfa/verify` with a code.
    pub mfa_token: String,
    /// Present when the sign-in requires this host's second factor and the person has none
    /// yet (a single sign-on provider's `local` MFA policy): the authenticator to set up; the
    /// code passed to `/auth/mfa/verify` confirms it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<MfaEnrollResponse>,
}

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    Tokens(TokenPair),
    Mfa(MfaRequired),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaVerifyRequest {
    #[schema(min_length = 1, max_length = 128)]
    pub mfa_token: String,
    /// A 6-digit TOTP code or a backup code.
    #[schema(min_length = 1, max_length = 32, pattern = "\\S")]
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(max_length = 128, pattern = "^ipr_")]
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionDto {
    pub id: String,
    pub ip: String,
    pub user_agent: String,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
    /// Whether this is the session making the request.
    pub current: bool,
}

pub(crate) fn token_pair(pair: accounts::TokenPair) -> TokenPair {
    TokenPair {
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        token_type: "Bearer",
        expires_in: pair.expires_in,
        backup_codes: None,
    }
}

/// A sign-in's answer: a session, or the second step.
pub(crate) fn login_response(outcome: LoginOutcome) -> LoginResponse {
    match outcome {
        LoginOutcome::Signed(pair) => LoginResponse::Tokens(token_pair(pair)),
        LoginOutcome::MfaRequired {
            mfa_token,
            enrollment,
        } => LoginResponse::Mfa(MfaRequired {
            mfa_required: true,
            mfa_token,
            enrollment: enrollment.map(MfaEnrollResponse::from),
        }),
    }
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let email = validate::email("email", &req.email)?;
    if req.password.is_empty() {
        return Err(ApiError::invalid("password", "password must not be empty"));
    }
    if req.password.chars().count() > 1024 {
        return Err(ApiError::invalid("password", "password is too long"));
    }
    let outcome = state
        .accounts()
        .login(&email, req.password, &client.client())
        .await?;
    Ok(Json(login_response(outcome)))
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/verify", tag = "auth", request_body = MfaVerifyRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorBody)))]
pub async fn mfa_verify(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(req): ApiJson<MfaVerifyRequest>,
) -> ApiResult<Json<TokenPair>> {
    if req.mfa_token.is_empty() || req.mfa_token.chars().count() > 128 {
        return Err(ApiError::invalid(
            "mfa_token",
            "mfa_token is missing or malformed",
        ));
    }
    if req.code.trim().is_empty() || req.code.chars().count() > 32 {
        return Err(ApiError::invalid(
            "code",
            "code must be a 6-digit code or a backup code",
        ));
    }
    let verified = state
        .accounts()
        .verify_mfa(&req.mfa_token, &req.code, &client.client())
        .await?;
    Ok(Json(TokenPair {
        backup_codes: verified.backup_codes,
        ..token_pair(verified.pair)
    }))
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenPair>> {
    if !req.refresh_token.starts_with(TokenKind::Refresh.prefix())
        || req.refresh_token.chars().count() > 128
    {
        return Err(ApiError::invalid(
            "refresh_token",
            "refresh_token is malformed",
        ));
    }
    let pair = state
        .accounts()
        .refresh(&req.refresh_token, &client.client())
        .await?;
    Ok(Json(token_pair(pair)))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn logout(
    State(state): State<AppState>,
    principal: Authenticated,
    client: ClientInfo,
) -> ApiResult<StatusCode> {
    let Some(session_id) = principal.session_id() else {
        return Err(ApiError::invalid(
            "authorization",
            "API tokens are revoked under /api/v1/tokens, not logged out",
        ));
    };
    state
        .accounts()
        .logout(&principal.actor(&client), session_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in person, as the dashboard needs them: their role in the organisation the request
/// acts in and what they may do on this host.
#[derive(Serialize, ToSchema)]
pub struct MeDto {
    #[serde(flatten)]
    pub user: UserDto,
    /// The organisation the request acted in (chosen by `X-InfraPilot-Org`, else the oldest
    /// membership); absent for a person who belongs to none.
    pub org_id: Option<String>,
    /// Holds `super_admin` in the default organisation: runs plugins, the licence and every
    /// organisation.
    pub host_operator: bool,
    /// Whether `POST /api/v1/orgs` is open to this person (the edition runs many organisations,
    /// and in the enterprise edition only the host operator makes them).
    pub can_create_organisations: bool,
}

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = MeDto)), security(("bearer" = [])))]
pub async fn me(
    State(state): State<AppState>,
    authenticated: Authenticated,
) -> ApiResult<Json<MeDto>> {
    // The person, with their role in the organisation the request acts in (`viewer` for a
    // person who belongs to none yet).
    let mut tx = state.store().read(&OrgId::default_org()).await?;
    let mut user = tx
        .person_by_id(&authenticated.person.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    user.role = authenticated
        .org
        .as_ref()
        .map_or(Role::Viewer, |(_, role)| *role)
        .as_str()
        .to_owned();
    let host_operator = authenticated.person.host_operator;
    let can_create_organisations = match state.organisations().creation() {
        OrgCreation::Single => false,
        OrgCreation::ByHostOperator => host_operator,
        OrgCreation::ByAnyone => true,
    };
    Ok(Json(MeDto {
        user: UserDto::from(user),
        org_id: authenticated.org.as_ref().map(|(org, _)| org.to_string()),
        host_operator,
        can_create_organisations,
    }))
}

#[utoipa::path(put, path = "/api/v1/auth/password", tag = "auth", request_body = ChangePasswordRequest,
    responses((status = 204), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn change_password(
    State(state): State<AppState>,
    principal: Authenticated,
    client: ClientInfo,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    validate::new_password("new_password", &req.new_password)?;
    state
        .accounts()
        .change_password(
            &principal.actor(&client),
            &client.client(),
            req.current_password,
            req.new_password,
            principal.session_id(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = "auth",
    responses((status = 200, body = Vec<SessionDto>)), security(("bearer" = [])))]
pub async fn list_sessions(
    State(state): State<AppState>,
    principal: Authenticated,
) -> ApiResult<Json<Vec<SessionDto>>> {
    // Sessions are personal: any transaction reads them.
    let mut tx = state.store().read(&OrgId::default_org()).await?;
    let sessions = tx.list_sessions(&principal.person.user_id).await?;
    let current = principal.session_id();
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionDto {
                current: Some(s.id.as_str()) == current,
                id: s.id,
                ip: s.ip,
                user_agent: s.user_agent,
                created_at: validate::rfc3339(s.created_at),
                last_used_at: validate::rfc3339(s.last_used_at),
                expires_at: validate::rfc3339(s.refresh_expires_at),
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/auth/sessions/{id}", tag = "auth",
    params(("id" = uuid::Uuid, Path, description = "session id")),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke_session(
    State(state): State<AppState>,
    principal: Authenticated,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = validate::uuid("id", &id)?;
    state
        .accounts()
        .revoke_session(&principal.actor(&client), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
