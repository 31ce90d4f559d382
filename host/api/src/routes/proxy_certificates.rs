//! Certificates users upload for proxy hosts (`tls.mode: "uploaded"`), per organisation. The
//! chain and key are checked before anything is stored (see
//! [`infrapilot_proxy::certificate::check_upload`]); the key is sealed at rest and never
//! returned. Replacing a certificate re-applies every node whose hosts use it, in the same
//! transaction; one in use cannot be deleted. The changes are the proxy service's
//! ([`infrapilot_proxy::service`]); these routes parse, call it and map its errors.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use infrapilot_proxy::certificate::{CertificateFacts, check_upload};
pub use infrapilot_proxy::service::CertificateUse;
use infrapilot_proxy::service::{self, CertificateUpload as CheckedUpload};
use infrapilot_store::{ProxyCertificateRow, Tx};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::containers::actor;
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::validate;

/// An upload: a PEM chain (the leaf first) and its unencrypted private key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateUpload {
    /// A name to pick it by, unique in the organisation (1–100 characters).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// PEM: the server's certificate, then the certificates that issued it.
    pub certificate_pem: String,
    /// PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), unencrypted. Write-only.
    #[schema(write_only)]
    pub private_key_pem: String,
}

#[derive(Serialize, ToSchema)]
pub struct CertificateDto {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub facts: CertificateFacts,
    /// RFC 3339 of `not_after`.
    pub expires_at: String,
    pub used_by: Vec<CertificateUse>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    /// What warn policies said about re-applying the nodes that use it (a replacement's
    /// answer; empty otherwise).
    pub warnings: Vec<crate::error::PolicyNotice>,
}

/// Which hosts of the organisation use each certificate.
async fn uses(tx: &mut Tx) -> ApiResult<BTreeMap<String, Vec<CertificateUse>>> {
    Ok(service::certificate_uses(tx).await?)
}

fn dto(row: ProxyCertificateRow, used_by: Vec<CertificateUse>) -> ApiResult<CertificateDto> {
    let facts: CertificateFacts = serde_json::from_str(&row.facts).map_err(ApiError::internal)?;
    Ok(CertificateDto {
        expires_at: validate::rfc3339(facts.not_after.saturating_mul(1000)),
        id: row.id,
        name: row.name,
        facts,
        used_by,
        created_by: row.created_by,
        created_at: validate::rfc3339(row.created_at),
        updated_at: validate::rfc3339(row.updated_at),
        warnings: Vec::new(),
    })
}

async fn one(
    state: &AppState,
    org_id: &infrapilot_store::OrgId,
    id: &str,
) -> ApiResult<CertificateDto> {
    let mut tx = state.store().read(org_id).await?;
    let row = tx
        .proxy_certificate(id)
        .await?
        .ok_or_else(|| ApiError::not_found("cid", "no such certificate"))?;
    let mut uses = uses(&mut tx).await?;
    tx.commit().await?;
    dto(row, uses.remove(id).unwrap_or_default())
}

/// Checks an upload: its name, and its chain and key (sealed by the service when stored).
fn checked(upload: &CertificateUpload) -> ApiResult<CheckedUpload> {
    let name = validate::display_name("name", &upload.name)?;
    let now = infrapilot_store::now_ms() / 1000;
    let checked = check_upload(&upload.certificate_pem, &upload.private_key_pem, now)
        .map_err(|e| ApiError::invalid(&e.field, e.message))?;
    Ok(CheckedUpload { name, checked })
}

fn id_param(raw: &str) -> ApiResult<String> {
    validate::uuid("cid", raw)
}

#[utoipa::path(get, path = "/api/v1/proxy-certificates", operation_id = "list_proxy_certificates", tag = "proxies",
    responses((status = 200, body = Vec<CertificateDto>)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Vec<CertificateDto>>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    let rows = tx.list_proxy_certificates().await?;
    let mut uses = uses(&mut tx).await?;
    tx.commit().await?;
    rows.into_iter()
        .map(|r| {
            let used = uses.remove(&r.id).unwrap_or_default();
            dto(r, used)
        })
        .collect::<ApiResult<Vec<_>>>()
        .map(Json)
}

#[utoipa::path(post, path = "/api/v1/proxy-certificates", operation_id = "upload_proxy_certificate", tag = "proxies",
    request_body = CertificateUpload,
    responses((status = 201, body = CertificateDto), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(upload): ApiJson<CertificateUpload>,
) -> ApiResult<(StatusCode, Json<CertificateDto>)> {
    let id = uuid::Uuid::new_v4().to_string();
    let upload = checked(&upload)?;
    state
        .proxy_service()
        .upload_certificate(&actor(&principal, &client), &id, upload)
        .await?;
    let dto = one(&state, &principal.org_id, &id).await?;
    Ok((StatusCode::CREATED, Json(dto)))
}

#[utoipa::path(get, path = "/api/v1/proxy-certificates/{cid}", operation_id = "get_proxy_certificate", tag = "proxies",
    params(("cid" = uuid::Uuid, Path)),
    responses((status = 200, body = CertificateDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(cid): Path<String>,
) -> ApiResult<Json<CertificateDto>> {
    let id = id_param(&cid)?;
    one(&state, &principal.org_id, &id).await.map(Json)
}

#[utoipa::path(put, path = "/api/v1/proxy-certificates/{cid}", operation_id = "replace_proxy_certificate", tag = "proxies",
    params(("cid" = uuid::Uuid, Path)), request_body = CertificateUpload,
    responses((status = 200, body = CertificateDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
/// Replaces the chain and key (a renewed certificate) and re-applies every node whose hosts use
/// it, in one transaction: the new certificate must cover all their domains.
pub async fn replace(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(cid): Path<String>,
    ApiJson(upload): ApiJson<CertificateUpload>,
) -> ApiResult<Json<CertificateDto>> {
    let id = id_param(&cid)?;
    let upload = checked(&upload)?;
    let warnings = state
        .proxy_service()
        .replace_certificate(&actor(&principal, &client), &id, upload)
        .await?;
    let mut dto = one(&state, &principal.org_id, &id).await?;
    dto.warnings = warnings.into_iter().map(Into::into).collect();
    Ok(Json(dto))
}

#[utoipa::path(delete, path = "/api/v1/proxy-certificates/{cid}", operation_id = "delete_proxy_certificate", tag = "proxies",
    params(("cid" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(cid): Path<String>,
) -> ApiResult<StatusCode> {
    let id = id_param(&cid)?;
    state
        .proxy_service()
        .delete_certificate(&actor(&principal, &client), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
