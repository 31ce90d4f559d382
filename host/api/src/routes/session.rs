//! Signing in and out: login, the MFA step, token refresh with rotation, logout, own sessions,
//! own profile and password.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use infrapilot_identity::{
    IssuedToken, ThrottleDecision, TokenKind, dummy_password_hash, hash_password, hash_token,
    issue_token, verify_password,
};
use infrapilot_store::{DEFAULT_ORG_ID, NewSession, Tx, UserRow, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::audit_log::{self, Actor};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::mfa::check_second_factor;
use crate::routes::users::UserDto;
use crate::state::AppState;
use crate::validate;

/// Checks a password on the blocking pool (Argon2 takes tens of milliseconds by design).
pub(crate) async fn password_matches(stored_hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&stored_hash, &password))
        .await
        .unwrap_or(false)
}

/// Like [`password_matches`], holding `turn` until the hash is done: a caller that hangs up
/// mid-check does not free its turn while Argon2 still runs.
async fn password_matches_in_turn(
    turn: tokio::sync::OwnedSemaphorePermit,
    stored_hash: String,
    password: String,
) -> bool {
    tokio::task::spawn_blocking(move || {
        let matched = verify_password(&stored_hash, &password);
        drop(turn);
        matched
    })
    .await
    .unwrap_or(false)
}

/// Hashes a new password on the blocking pool.
pub(crate) async fn new_password_hash(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

/// How long the second login step may take.
const MFA_CHALLENGE_TTL_MS: i64 = 5 * 60 * 1000;
/// Wrong codes accepted on one MFA challenge before it is void.
const MFA_MAX_ATTEMPTS: i64 = 5;

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
}

#[derive(Serialize, ToSchema)]
pub struct MfaRequired {
    pub mfa_required: bool,
    /// Pass to `POST /api/v1/auth/mfa/verify` with a code.
    pub mfa_token: String,
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

/// Counts a password (or code) attempt against the account and the client's address before the
/// check runs, so parallel attempts cannot all get under the limit. Refused with 429 once over.
pub(crate) fn count_attempt(
    state: &AppState,
    account_key: &str,
    client: &ClientInfo,
) -> ApiResult<()> {
    if let ThrottleDecision::Deny { retry_after } =
        state.account_throttle().try_attempt(account_key)
    {
        return Err(ApiError::too_many_attempts(retry_after.as_secs().max(1)));
    }
    if let ThrottleDecision::Deny { retry_after } =
        state.ip_throttle().try_attempt(&client.throttle_key())
    {
        state.account_throttle().forgive_one(account_key);
        return Err(ApiError::too_many_attempts(retry_after.as_secs().max(1)));
    }
    Ok(())
}

/// The attempt counted by [`count_attempt`] succeeded: the account's failures are cleared and
/// the address's count is taken back.
pub(crate) fn attempt_succeeded(state: &AppState, account_key: &str, client: &ClientInfo) {
    state.account_throttle().record_success(account_key);
    state.ip_throttle().forgive_one(&client.throttle_key());
}

/// The attempt counted by [`count_attempt`] never reached its check (the host was busy).
fn attempt_not_made(state: &AppState, account_key: &str, client: &ClientInfo) {
    state.account_throttle().forgive_one(account_key);
    state.ip_throttle().forgive_one(&client.throttle_key());
}

/// How long an anonymous password check waits for its turn before the caller gets 429.
const ANONYMOUS_CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A turn at Argon2 for a caller without credentials: at most
/// `max_anonymous_password_checks` run at once; the rest get 429 with `Retry-After`.
async fn anonymous_check_turn(state: &AppState) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    let semaphore = state.anonymous_password_checks().clone();
    match tokio::time::timeout(ANONYMOUS_CHECK_WAIT, semaphore.acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                "too many sign-ins at once; try again in a second",
            );
            e.retry_after_secs = Some(1);
            Err(e)
        }
    }
}

/// Re-checks the signed-in user's password (MFA changes, password change), throttled like
/// login: counted before Argon2 runs, per account and per address.
pub(crate) async fn recheck_password(
    state: &AppState,
    user: &UserRow,
    client: &ClientInfo,
    field: &str,
    password: String,
) -> ApiResult<()> {
    let key = user.email.clone();
    count_attempt(state, &key, client)?;
    if !password.is_empty()
        && password.len() <= 1024
        && password_matches(user.password_hash.clone(), password).await
    {
        attempt_succeeded(state, &key, client);
        Ok(())
    } else {
        Err(ApiError::invalid(field, format!("{field} is wrong")))
    }
}

async fn record_login_failure(state: &AppState, email: &str, client: &ClientInfo, reason: &str) {
    let target: String = format!("user:{}", email.chars().take(254).collect::<String>());
    let e = audit_log::event(
        &Actor::anonymous(),
        &client.ip,
        "auth.login",
        &target,
        "failure",
        json!({"reason": reason}),
    );
    audit_log::record_standalone(state, DEFAULT_ORG_ID, e).await;
}

/// Opens a session for `user` and returns its first token pair.
async fn start_session(
    state: &AppState,
    tx: &mut Tx,
    user: &UserRow,
    client: &ClientInfo,
) -> ApiResult<TokenPair> {
    let access = issue_token(TokenKind::Access)?;
    let refresh = issue_token(TokenKind::Refresh)?;
    let now = now_ms();
    let settings = state.settings();
    tx.insert_session(&NewSession {
        id: &uuid::Uuid::new_v4().to_string(),
        user_id: &user.id,
        access_hash: &access.hash,
        access_expires_at: now + settings.access_token_ttl.as_millis() as i64,
        refresh_hash: &refresh.hash,
        refresh_expires_at: now + settings.session_ttl.as_millis() as i64,
        ip: &client.ip,
        user_agent: &client.user_agent,
    })
    .await?;
    Ok(token_pair(state, access, refresh))
}

/// Opens the session of a completed login, records `auth.login` and commits.
async fn finish_login(
    state: &AppState,
    mut tx: Tx,
    user: &UserRow,
    client: &ClientInfo,
    detail: serde_json::Value,
) -> ApiResult<TokenPair> {
    let pair = start_session(state, &mut tx, user, client).await?;
    let target = format!("user:{}", user.id);
    let actor = Actor::of_user(user);
    audit_log::commit_success(tx, &actor, &client.ip, "auth.login", &target, detail).await?;
    Ok(pair)
}

fn token_pair(state: &AppState, access: IssuedToken, refresh: IssuedToken) -> TokenPair {
    TokenPair {
        access_token: access.secret,
        refresh_token: refresh.secret,
        token_type: "Bearer",
        expires_in: state.settings().access_token_ttl.as_secs(),
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
    count_attempt(&state, &email, &client)?;
    let turn = match anonymous_check_turn(&state).await {
        Ok(turn) => turn,
        Err(e) => {
            attempt_not_made(&state, &email, &client);
            return Err(e);
        }
    };
    // Look the user up and check the password outside the write lock: Argon2 is slow on purpose.
    let user = state
        .store()
        .read(DEFAULT_ORG_ID)
        .await?
        .user_by_email(&email)
        .await?;
    let stored_hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_password_hash().to_owned());
    let password_ok =
        password_matches_in_turn(turn, stored_hash, req.password).await && user.is_some();
    let user = match user {
        Some(u) if password_ok => u,
        _ => {
            record_login_failure(&state, &email, &client, "bad credentials").await;
            return Err(ApiError::unauthorized("email or password is wrong"));
        }
    };
    if user.disabled {
        record_login_failure(&state, &email, &client, "account disabled").await;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "account_disabled",
            "this account is disabled",
        ));
    }
    if user.totp_enabled {
        // The password was right, but the account's failures stand until the second factor is:
        // a known password must not reset the count between rounds of code guesses.
        state.account_throttle().forgive_one(&email);
        state.ip_throttle().forgive_one(&client.throttle_key());
    } else {
        attempt_succeeded(&state, &email, &client);
    }
    let mut tx = state.store().write(DEFAULT_ORG_ID).await?;
    if user.totp_enabled {
        let challenge = issue_token(TokenKind::MfaChallenge)?;
        tx.insert_mfa_challenge(&challenge.hash, &user.id, now_ms() + MFA_CHALLENGE_TTL_MS)
            .await?;
        tx.commit().await?;
        return Ok(Json(LoginResponse::Mfa(MfaRequired {
            mfa_required: true,
            mfa_token: challenge.secret,
        })));
    }
    let pair = finish_login(&state, tx, &user, &client, json!({"mfa": false})).await?;
    Ok(Json(LoginResponse::Tokens(pair)))
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
    let challenge_hash = hash_token(&req.mfa_token);
    let mut tx = state.store().write(DEFAULT_ORG_ID).await?;
    // Parallel codes on one challenge are checked one after another, so its attempt limit holds.
    tx.serialize(&format!("mfa:{challenge_hash}")).await?;
    let challenge = tx
        .mfa_challenge(&challenge_hash)
        .await?
        .filter(|c| c.expires_at > now_ms() && c.attempts < MFA_MAX_ATTEMPTS)
        .ok_or_else(|| {
            ApiError::unauthorized("the sign-in step expired; sign in again")
                .with_field("mfa_token")
        })?;
    let user = tx
        .user_by_id(&challenge.user_id)
        .await?
        .filter(|u| !u.disabled && u.totp_enabled)
        .ok_or_else(|| ApiError::unauthorized("sign in again").with_field("mfa_token"))?;
    count_attempt(&state, &user.email, &client)?;
    let method = match check_second_factor(&state, &mut tx, &user, &req.code).await? {
        Some(method) => method,
        None => {
            tx.count_mfa_attempt(&challenge_hash).await?;
            tx.commit().await?;
            record_login_failure(&state, &user.email, &client, "wrong MFA code").await;
            return Err(
                ApiError::unauthorized("the code is wrong or was used already").with_field("code"),
            );
        }
    };
    tx.delete_mfa_challenge(&challenge_hash).await?;
    let detail = json!({"mfa": true, "method": method});
    let pair = finish_login(&state, tx, &user, &client, detail).await?;
    attempt_succeeded(&state, &user.email, &client);
    Ok(Json(pair))
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
    let old_hash = hash_token(&req.refresh_token);
    let mut tx = state.store().write(DEFAULT_ORG_ID).await?;
    let invalid = || {
        ApiError::unauthorized("the session has ended; sign in again").with_field("refresh_token")
    };
    let row = tx.refresh_token(&old_hash).await?.ok_or_else(invalid)?;
    if row.revoked_at.is_some() || row.refresh_expires_at <= now_ms() {
        return Err(invalid());
    }
    let actor = Actor {
        id: Some(row.user_id.clone()),
        label: tx
            .user_by_id(&row.user_id)
            .await?
            .map(|u| u.email)
            .unwrap_or_else(|| row.user_id.clone()),
    };
    let access = issue_token(TokenKind::Access)?;
    let refresh = issue_token(TokenKind::Refresh)?;
    let access_expires = now_ms() + state.settings().access_token_ttl.as_millis() as i64;
    let rotated = row.used_at.is_none()
        && tx
            .rotate_session(
                &row.session_id,
                &old_hash,
                &refresh.hash,
                &access.hash,
                access_expires,
            )
            .await?;
    if !rotated {
        // A spent refresh token came back: someone holds a copy. End the whole session.
        tx.revoke_session(&row.user_id, &row.session_id, "refresh token reuse")
            .await?;
        tx.append_audit(audit_log::event(
            &actor,
            &client.ip,
            "auth.refresh_reuse",
            &format!("session:{}", row.session_id),
            "denied",
            json!({"session_revoked": true}),
        ))
        .await?;
        tx.commit().await?;
        return Err(invalid());
    }
    audit_log::commit_success(
        tx,
        &actor,
        &client.ip,
        "auth.refresh",
        &format!("session:{}", row.session_id),
        json!({}),
    )
    .await?;
    Ok(Json(token_pair(&state, access, refresh)))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
) -> ApiResult<StatusCode> {
    let Some(session_id) = principal.session_id() else {
        return Err(ApiError::invalid(
            "authorization",
            "API tokens are revoked under /api/v1/tokens, not logged out",
        ));
    };
    let mut tx = state.store().write(&principal.org_id).await?;
    tx.revoke_session(&principal.user_id, session_id, "logout")
        .await?;
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "auth.logout",
        &format!("session:{session_id}"),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = UserDto)), security(("bearer" = [])))]
pub async fn me(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<UserDto>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    let user = tx
        .user_by_id(&principal.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    Ok(Json(UserDto::from(user)))
}

#[utoipa::path(put, path = "/api/v1/auth/password", tag = "auth", request_body = ChangePasswordRequest,
    responses((status = 204), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn change_password(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    validate::new_password("new_password", &req.new_password)?;
    let user = state
        .store()
        .read(&principal.org_id)
        .await?
        .user_by_id(&principal.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    recheck_password(
        &state,
        &user,
        &client,
        "current_password",
        req.current_password,
    )
    .await?;
    let new_hash = new_password_hash(req.new_password).await?;
    let mut tx = state.store().write(&principal.org_id).await?;
    tx.set_password_hash(&user.id, &new_hash).await?;
    let ended = tx
        .revoke_user_sessions(&user.id, "password changed", principal.session_id())
        .await?;
    let tokens_revoked = tx.revoke_user_api_tokens(&user.id).await?;
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "auth.password_change",
        &format!("user:{}", user.id),
        json!({"other_sessions_revoked": ended, "api_tokens_revoked": tokens_revoked}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = "auth",
    responses((status = 200, body = Vec<SessionDto>)), security(("bearer" = [])))]
pub async fn list_sessions(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Vec<SessionDto>>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    let sessions = tx.list_sessions(&principal.user_id).await?;
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
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = validate::uuid("id", &id)?;
    let mut tx = state.store().write(&principal.org_id).await?;
    if !tx
        .revoke_session(&principal.user_id, &id, "revoked by user")
        .await?
    {
        return Err(ApiError::not_found("id", "no such active session of yours"));
    }
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "auth.session_revoke",
        &format!("session:{id}"),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
