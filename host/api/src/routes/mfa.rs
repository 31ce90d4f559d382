//! TOTP enrolment, confirmation, disabling and backup codes for the signed-in user.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use infrapilot_identity::{TotpEnrollment, backup_code_hash, generate_backup_codes, verify_totp};
use infrapilot_store::{Tx, UserRow};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::audit_log::{self, Actor};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::session::recheck_password;
use crate::state::AppState;

/// The purpose TOTP seeds are sealed under.
const TOTP_SEAL_PURPOSE: &str = "totp-seed";

#[derive(Serialize, ToSchema)]
pub struct MfaStatus {
    pub enabled: bool,
    /// An enrolment was started but not confirmed yet.
    pub pending: bool,
    pub backup_codes_remaining: i64,
}

#[derive(Serialize, ToSchema)]
pub struct MfaEnrollResponse {
    /// `otpauth://totp/…` for authenticator apps.
    pub otpauth_uri: String,
    /// The seed in base32, for typing into an app by hand.
    pub secret: String,
    /// The URI as an SVG QR code in a `data:` URL.
    pub qr_svg_data_url: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaConfirmRequest {
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct BackupCodes {
    /// Shown once. Each works once in place of a TOTP code.
    pub backup_codes: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordConfirmation {
    pub password: String,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn open_seed(state: &AppState, user: &UserRow) -> ApiResult<Option<Vec<u8>>> {
    match &user.totp_secret {
        None => Ok(None),
        Some(sealed) => state
            .secrets()
            .open(TOTP_SEAL_PURPOSE, sealed)
            .map(Some)
            .map_err(ApiError::internal),
    }
}

/// Checks a TOTP code (not replayable) or a backup code (single use) for `user` within `tx`.
/// Returns which kind matched.
pub(crate) async fn check_second_factor(
    state: &AppState,
    tx: &mut Tx,
    user: &UserRow,
    code: &str,
) -> ApiResult<Option<&'static str>> {
    let code = code.trim();
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        let Some(seed) = open_seed(state, user)? else {
            return Ok(None);
        };
        return match verify_totp(&seed, code, unix_now(), user.totp_last_step) {
            Some(step) => {
                tx.set_totp_last_step(&user.id, step).await?;
                Ok(Some("totp"))
            }
            None => Ok(None),
        };
    }
    if tx
        .consume_backup_code(&user.id, &backup_code_hash(code))
        .await?
    {
        return Ok(Some("backup_code"));
    }
    Ok(None)
}

async fn current_user(tx: &mut Tx, principal: &Principal) -> ApiResult<UserRow> {
    tx.user_by_id(&principal.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))
}

#[utoipa::path(get, operation_id = "mfa_status", path = "/api/v1/auth/mfa", tag = "mfa",
    responses((status = 200, body = MfaStatus)), security(("bearer" = [])))]
pub async fn status(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<MfaStatus>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    let user = current_user(&mut tx, &principal).await?;
    Ok(Json(MfaStatus {
        enabled: user.totp_enabled,
        pending: !user.totp_enabled && user.totp_secret.is_some(),
        backup_codes_remaining: tx.remaining_backup_codes(&user.id).await?,
    }))
}

#[utoipa::path(post, operation_id = "mfa_enroll", path = "/api/v1/auth/mfa/enroll", tag = "mfa",
    responses((status = 200, body = MfaEnrollResponse), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn enroll(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
) -> ApiResult<Json<MfaEnrollResponse>> {
    let mut tx = state.store().write(&principal.org_id).await?;
    let user = current_user(&mut tx, &principal).await?;
    if user.totp_enabled {
        return Err(ApiError::conflict(
            "MFA is already on; disable it first to enrol a new authenticator",
        ));
    }
    let enrollment = TotpEnrollment::generate(&user.email).map_err(ApiError::internal)?;
    let sealed = state
        .secrets()
        .seal(TOTP_SEAL_PURPOSE, &enrollment.secret)
        .map_err(ApiError::internal)?;
    tx.set_pending_totp(&user.id, &sealed).await?;
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "mfa.enroll_start",
        &format!("user:{}", user.id),
        json!({}),
    )
    .await?;
    Ok(Json(MfaEnrollResponse {
        otpauth_uri: enrollment.otpauth_uri,
        secret: enrollment.secret_base32,
        qr_svg_data_url: enrollment.qr_data_url,
    }))
}

#[utoipa::path(post, operation_id = "mfa_confirm", path = "/api/v1/auth/mfa/confirm", tag = "mfa", request_body = MfaConfirmRequest,
    responses((status = 200, body = BackupCodes), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn confirm(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(req): ApiJson<MfaConfirmRequest>,
) -> ApiResult<Json<BackupCodes>> {
    let mut tx = state.store().write(&principal.org_id).await?;
    let user = current_user(&mut tx, &principal).await?;
    if user.totp_enabled {
        return Err(ApiError::conflict("MFA is already on"));
    }
    let seed = open_seed(&state, &user)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "start an enrolment first (POST /api/v1/auth/mfa/enroll)",
        )
    })?;
    let step = verify_totp(&seed, &req.code, unix_now(), None).ok_or_else(|| {
        ApiError::invalid(
            "code",
            "the code does not match; check the time on your device",
        )
    })?;
    tx.enable_totp(&user.id, step).await?;
    let (codes, hashes) = generate_backup_codes()?;
    tx.replace_backup_codes(&user.id, &hashes).await?;
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "mfa.enable",
        &format!("user:{}", user.id),
        json!({"backup_codes": codes.len()}),
    )
    .await?;
    Ok(Json(BackupCodes {
        backup_codes: codes,
    }))
}

async fn check_password(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    password: String,
) -> ApiResult<UserRow> {
    let user = current_user(&mut state.store().read(&principal.org_id).await?, principal).await?;
    recheck_password(state, &user, client, "password", password).await?;
    Ok(user)
}

#[utoipa::path(post, operation_id = "mfa_disable", path = "/api/v1/auth/mfa/disable", tag = "mfa", request_body = PasswordConfirmation,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(req): ApiJson<PasswordConfirmation>,
) -> ApiResult<StatusCode> {
    let user = check_password(&state, &principal, &client, req.password).await?;
    if !user.totp_enabled && user.totp_secret.is_none() {
        return Err(ApiError::conflict("MFA is not on"));
    }
    let mut tx = state.store().write(&principal.org_id).await?;
    tx.disable_totp(&user.id).await?;
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "mfa.disable",
        &format!("user:{}", user.id),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/backup-codes", tag = "mfa", request_body = PasswordConfirmation,
    responses((status = 200, body = BackupCodes), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn regenerate_backup_codes(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(req): ApiJson<PasswordConfirmation>,
) -> ApiResult<Json<BackupCodes>> {
    let user = check_password(&state, &principal, &client, req.password).await?;
    if !user.totp_enabled {
        return Err(ApiError::conflict("MFA is not on"));
    }
    let (codes, hashes) = generate_backup_codes()?;
    let mut tx = state.store().write(&principal.org_id).await?;
    tx.replace_backup_codes(&user.id, &hashes).await?;
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "mfa.backup_codes_regenerate",
        &format!("user:{}", user.id),
        json!({}),
    )
    .await?;
    Ok(Json(BackupCodes {
        backup_codes: codes,
    }))
}
