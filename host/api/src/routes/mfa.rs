//! TOTP enrolment, confirmation, disabling and backup codes for the signed-in user: the account
//! service's workflows ([`infrapilot_accounts::AccountService`]); these routes call it and map
//! its errors.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Authenticated, ClientInfo};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

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

impl From<infrapilot_identity::TotpEnrollment> for MfaEnrollResponse {
    fn from(enrollment: infrapilot_identity::TotpEnrollment) -> Self {
        MfaEnrollResponse {
            otpauth_uri: enrollment.otpauth_uri,
            secret: enrollment.secret_base32,
            qr_svg_data_url: enrollment.qr_data_url,
        }
    }
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

#[utoipa::path(get, operation_id = "mfa_status", path = "/api/v1/auth/mfa", tag = "mfa",
    responses((status = 200, body = MfaStatus)), security(("bearer" = [])))]
pub async fn status(
    State(state): State<AppState>,
    principal: Authenticated,
    client: ClientInfo,
) -> ApiResult<Json<MfaStatus>> {
    let status = state
        .accounts()
        .mfa_status(&principal.actor(&client))
        .await?;
    Ok(Json(MfaStatus {
        enabled: status.enabled,
        pending: status.pending,
        backup_codes_remaining: status.backup_codes_remaining,
    }))
}

#[utoipa::path(post, operation_id = "mfa_enroll", path = "/api/v1/auth/mfa/enroll", tag = "mfa",
    responses((status = 200, body = MfaEnrollResponse), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn enroll(
    State(state): State<AppState>,
    principal: Authenticated,
    client: ClientInfo,
) -> ApiResult<Json<MfaEnrollResponse>> {
    let enrollment = state
        .accounts()
        .start_mfa_enrollment(&principal.actor(&client))
        .await?;
    Ok(Json(MfaEnrollResponse::from(enrollment)))
}

#[utoipa::path(post, operation_id = "mfa_confirm", path = "/api/v1/auth/mfa/confirm", tag = "mfa", request_body = MfaConfirmRequest,
    responses((status = 200, body = BackupCodes), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn confirm(
    State(state): State<AppState>,
    principal: Authenticated,
    client: ClientInfo,
    ApiJson(req): ApiJson<MfaConfirmRequest>,
) -> ApiResult<Json<BackupCodes>> {
    let codes = state
        .accounts()
        .confirm_mfa(&principal.actor(&client), &req.code)
        .await?;
    Ok(Json(BackupCodes {
        backup_codes: codes,
    }))
}

#[utoipa::path(post, operation_id = "mfa_disable", path = "/api/v1/auth/mfa/disable", tag = "mfa", request_body = PasswordConfirmation,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    principal: Authenticated,
    client: ClientInfo,
    ApiJson(req): ApiJson<PasswordConfirmation>,
) -> ApiResult<StatusCode> {
    state
        .accounts()
        .disable_mfa(&principal.actor(&client), &client.client(), req.password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/backup-codes", tag = "mfa", request_body = PasswordConfirmation,
    responses((status = 200, body = BackupCodes), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn regenerate_backup_codes(
    State(state): State<AppState>,
    principal: Authenticated,
    client: ClientInfo,
    ApiJson(req): ApiJson<PasswordConfirmation>,
) -> ApiResult<Json<BackupCodes>> {
    let codes = state
        .accounts()
        .regenerate_backup_codes(&principal.actor(&client), &client.client(), req.password)
        .await?;
    Ok(Json(BackupCodes {
        backup_codes: codes,
    }))
}
