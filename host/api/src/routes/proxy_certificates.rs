//! Certificates users upload for proxy hosts (`tls.mode: "uploaded"`), per organisation. The
//! chain and key are checked before anything is stored (see
//! [`infrapilot_proxy::certificate::check_upload`]); the key is sealed at rest and never
//! returned. Replacing a certificate re-applies every node whose hosts use it, in the same
//! transaction; one in use cannot be deleted.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use infrapilot_proxy::ProxySpec;
use infrapilot_proxy::certificate::{CertificateFacts, check_upload, uncovered};
use infrapilot_store::{NewProxyCertificate, ProxyCertificateRow, Tx};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::proxies::{
    admit, certificate_change, certificate_seal_purpose, dispatch_revision,
    stage_certificate_change,
};
use crate::audit_log::{self, Actor};
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

/// A proxy host that serves a certificate.
#[derive(Serialize, ToSchema)]
pub struct CertificateUse {
    pub agent_id: String,
    pub proxy_id: String,
    pub domains: Vec<String>,
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
}

/// Which hosts of the organisation use each certificate.
async fn uses(tx: &mut Tx) -> ApiResult<BTreeMap<String, Vec<CertificateUse>>> {
    let mut by_certificate: BTreeMap<String, Vec<CertificateUse>> = BTreeMap::new();
    for row in tx.list_org_proxy_hosts().await? {
        let spec: ProxySpec = serde_json::from_str(&row.spec).map_err(ApiError::internal)?;
        if let Some(cid) = spec.uploaded_certificate() {
            by_certificate
                .entry(cid.to_owned())
                .or_default()
                .push(CertificateUse {
                    agent_id: row.agent_id,
                    proxy_id: row.id,
                    domains: spec.domains.clone(),
                });
        }
    }
    Ok(by_certificate)
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
    })
}

async fn one(state: &AppState, org_id: &str, id: &str) -> ApiResult<CertificateDto> {
    let mut tx = state.store().read(org_id).await?;
    let row = tx
        .proxy_certificate(id)
        .await?
        .ok_or_else(|| ApiError::not_found("cid", "no such certificate"))?;
    let mut uses = uses(&mut tx).await?;
    tx.commit().await?;
    dto(row, uses.remove(id).unwrap_or_default())
}

/// Checks an upload and seals its key for `id`.
fn checked(
    state: &AppState,
    id: &str,
    upload: &CertificateUpload,
) -> ApiResult<(String, CertificateFacts, String, Vec<u8>)> {
    let name = validate::display_name("name", &upload.name)?;
    let now = infrapilot_store::now_ms() / 1000;
    let checked = check_upload(&upload.certificate_pem, &upload.private_key_pem, now)
        .map_err(|e| ApiError::invalid(&e.field, e.message))?;
    let sealed = state
        .secrets()
        .seal(&certificate_seal_purpose(id), checked.key_pem.as_bytes())
        .map_err(ApiError::internal)?;
    Ok((name, checked.facts, checked.chain_pem, sealed))
}

async fn put(
    tx: &mut Tx,
    principal: &Principal,
    id: &str,
    name: &str,
    facts: &CertificateFacts,
    chain_pem: &str,
    sealed: &[u8],
) -> ApiResult<()> {
    let facts_json = serde_json::to_string(facts).map_err(ApiError::internal)?;
    tx.put_proxy_certificate(&NewProxyCertificate {
        id,
        name,
        facts: &facts_json,
        certificate_pem: chain_pem,
        sealed_key: sealed,
        created_by: &principal.email,
    })
    .await?
    .map_err(|()| ApiError::conflict("another certificate has this name").with_field("name"))
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
    let (name, facts, chain_pem, sealed) = checked(&state, &id, &upload)?;
    let mut tx = state.store().write(&principal.org_id).await?;
    put(&mut tx, &principal, &id, &name, &facts, &chain_pem, &sealed).await?;
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "proxy_certificate.upload",
        &format!("certificate:{id}"),
        json!({"name": name, "domains": facts.domains, "fingerprint_sha256": facts.fingerprint_sha256}),
    )
    .await?;
    tx.commit().await?;
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
    let (name, facts, chain_pem, sealed) = checked(&state, &id, &upload)?;
    // The nodes whose hosts use it pass the node-action guards before the transaction opens.
    let mut read = state.store().read(&principal.org_id).await?;
    let mut users: Vec<String> = uses(&mut read)
        .await?
        .remove(&id)
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.agent_id)
        .collect();
    read.commit().await?;
    users.sort_unstable();
    users.dedup();
    let mut admitted = HashMap::new();
    for agent_id in users {
        let pass = admit(
            &state,
            &principal,
            &client,
            &agent_id,
            &certificate_change(&id),
        )
        .await?;
        admitted.insert(agent_id, pass);
    }
    let mut tx = state.store().write(&principal.org_id).await?;
    tx.proxy_certificate(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("cid", "no such certificate"))?;
    let used_by = uses(&mut tx).await?.remove(&id).unwrap_or_default();
    for u in &used_by {
        if let Some((_, domain)) = uncovered(&facts.domains, &u.domains) {
            return Err(ApiError::invalid(
                "certificate_pem",
                format!(
                    "the new certificate does not cover {domain}, which proxy host {} serves with it (it names {})",
                    u.proxy_id,
                    facts.domains.join(", ")
                ),
            ));
        }
    }
    put(&mut tx, &principal, &id, &name, &facts, &chain_pem, &sealed).await?;
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "proxy_certificate.replace",
        &format!("certificate:{id}"),
        json!({"name": name, "domains": facts.domains, "fingerprint_sha256": facts.fingerprint_sha256}),
    )
    .await?;
    let mut agents: Vec<&str> = used_by.iter().map(|u| u.agent_id.as_str()).collect();
    agents.sort_unstable();
    agents.dedup();
    let mut staged = Vec::with_capacity(agents.len());
    for agent_id in agents {
        let Some(pass) = admitted.remove(agent_id) else {
            return Err(ApiError::conflict(
                "the proxy hosts using this certificate changed while it was being replaced; try again",
            )
            .with_field("cid"));
        };
        staged.push(
            stage_certificate_change(&state, &mut tx, &principal, &client, agent_id, &id, pass)
                .await?,
        );
    }
    tx.commit().await?;
    for revision in staged {
        dispatch_revision(&state, &principal.org_id, revision).await;
    }
    one(&state, &principal.org_id, &id).await.map(Json)
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
    let mut tx = state.store().write(&principal.org_id).await?;
    if let Some(first) = uses(&mut tx)
        .await?
        .remove(&id)
        .and_then(|u| u.into_iter().next())
    {
        return Err(ApiError::conflict(format!(
            "proxy host {} ({}) serves this certificate; change its TLS first",
            first.proxy_id,
            first.domains.join(", ")
        ))
        .with_field("cid"));
    }
    if !tx.delete_proxy_certificate(&id).await? {
        return Err(ApiError::not_found("cid", "no such certificate"));
    }
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "proxy_certificate.delete",
        &format!("certificate:{id}"),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
