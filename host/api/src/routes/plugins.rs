//! Plugins (install, enable with a grant, disable, uninstall) and the licence.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use infrapilot_plugin_host::{Audit, LicenseStatus, PluginHostError, PluginInfo};
use infrapilot_plugin_runtime::Capabilities;
use infrapilot_plugin_types::bundle::MAX_BUNDLE_BYTES;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::audit_log::{self, Actor};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiJsonOrEmpty};
use crate::state::AppState;
use crate::validate;

/// An installed plugin.
#[derive(Serialize, ToSchema)]
pub struct PluginDto {
    /// `publisher.name`.
    pub id: String,
    pub name: String,
    pub version: String,
    /// `alert-channel`, `proxy-backend` …
    pub world: String,
    /// `community` or `enterprise`.
    pub edition: String,
    pub enabled: bool,
    /// Signed by a trusted publisher key (false: installed under the development switch).
    pub signed: bool,
    pub signed_by: Option<String>,
    /// Built from `plugins/` and shipped with the host.
    pub first_party: bool,
    pub description: String,
    pub publisher: String,
    /// The licence feature an enterprise plugin needs.
    pub feature: Option<String>,
    /// Whether the edition and licence let it run now.
    pub entitled: bool,
    pub entitlement_error: Option<String>,
    /// Capabilities the manifest requests.
    #[schema(value_type = Object)]
    pub requested: Value,
    /// Capabilities it has: the request ∩ the operator's grant.
    #[schema(value_type = Object)]
    pub granted: Value,
    /// JSON Schema of its settings (`writeOnly` fields are secrets).
    #[schema(value_type = Object)]
    pub settings_schema: Value,
    /// Sign-in providers: `redirect` (to the identity provider) or `password` (a directory).
    pub sso_login: Option<String>,
    pub component_sha256: String,
    pub installed_at: String,
    pub updated_at: String,
}

impl From<PluginInfo> for PluginDto {
    fn from(p: PluginInfo) -> PluginDto {
        PluginDto {
            requested: serde_json::to_value(&p.requested).unwrap_or_default(),
            granted: serde_json::to_value(&p.granted).unwrap_or_default(),
            id: p.id,
            name: p.name,
            version: p.version,
            world: p.world,
            edition: p.edition,
            enabled: p.enabled,
            signed: p.signed,
            signed_by: p.signed_by,
            first_party: p.first_party,
            description: p.description,
            publisher: p.publisher,
            feature: p.feature,
            entitled: p.entitled,
            entitlement_error: p.entitlement_error,
            settings_schema: p.settings_schema,
            sso_login: p.sso_login.map(|l| match l {
                infrapilot_plugin_runtime::SsoLogin::Redirect => "redirect".into(),
                infrapilot_plugin_runtime::SsoLogin::Password => "password".into(),
            }),
            component_sha256: p.component_sha256,
            installed_at: validate::rfc3339(p.installed_at),
            updated_at: validate::rfc3339(p.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct InstalledDto {
    #[serde(flatten)]
    pub plugin: PluginDto,
    /// An earlier version was replaced.
    pub upgraded: bool,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableRequest {
    /// The operator's grant (same shape as the manifest's `capabilities`); absent: grant what
    /// the manifest requests.
    #[schema(value_type = Option<Object>)]
    pub grants: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct LicenseDto {
    /// `community`, `enterprise` or `saas`.
    pub edition: String,
    pub valid: bool,
    pub licensee: Option<String>,
    pub features: Vec<String>,
    #[schema(value_type = Object)]
    pub limits: Value,
    pub expires_at: Option<String>,
    pub issued_at: Option<String>,
    /// Why the licence is not valid.
    pub problem: Option<String>,
}

impl From<LicenseStatus> for LicenseDto {
    fn from(l: LicenseStatus) -> LicenseDto {
        LicenseDto {
            edition: serde_json::to_value(l.edition)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            valid: l.valid,
            licensee: l.licensee,
            features: l.features,
            limits: serde_json::to_value(l.limits).unwrap_or_default(),
            expires_at: l.expires_at,
            issued_at: l.issued_at,
            problem: l.problem,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadLicenseRequest {
    /// The licence file's text (what `infrapilot license issue` wrote).
    pub license: String,
}

impl From<PluginHostError> for ApiError {
    fn from(e: PluginHostError) -> ApiError {
        match e {
            PluginHostError::Bundle(infrapilot_plugin_runtime::BundleError::Manifest(m)) => {
                ApiError::invalid(&format!("manifest.{}", m.field), m.to_string())
            }
            PluginHostError::Bundle(b) => ApiError::invalid("bundle", b.to_string()),
            PluginHostError::Component(_) => ApiError::invalid("bundle", e.to_string()),
            PluginHostError::NotInstalled(_) => ApiError::not_found("id", e.to_string()),
            PluginHostError::Disabled(_) | PluginHostError::InUse { .. } => {
                ApiError::conflict(e.to_string())
            }
            PluginHostError::WrongWorld { .. } => ApiError::invalid("plugin", e.to_string()),
            PluginHostError::NotEntitled { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "not_entitled", e.to_string())
                    .with_field("license")
            }
            PluginHostError::Grant { field, message } => {
                ApiError::invalid(&format!("grants.{field}"), message)
            }
            PluginHostError::License(m) => ApiError::invalid("license", m),
            PluginHostError::Store(s) => ApiError::from(s),
        }
    }
}

/// The audit event of a plain plugin action, committed with the change in the host's chain
/// (plugins are the host's, not one organisation's).
fn plugin_audit<'a>(
    actor: &'a Actor,
    client: &'a ClientInfo,
    action: &'static str,
) -> Audit<'a, PluginInfo> {
    Audit::new(
        infrapilot_store::OrgId::default_org(),
        move |p: &PluginInfo| {
            audit_log::event(
                actor,
                &client.ip,
                action,
                &format!("plugin:{}", p.id),
                "success",
                json!({}),
            )
        },
    )
}

/// A plugin id from the path: the manifest's id syntax, checked before any lookup.
fn plugin_id(raw: &str) -> ApiResult<String> {
    let ok = (3..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !ok {
        return Err(ApiError::invalid("id", "not a plugin id"));
    }
    Ok(raw.to_owned())
}

#[utoipa::path(get, path = "/api/v1/plugins", operation_id = "list_plugins", tag = "plugins",
    responses((status = 200, body = Vec<PluginDto>)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<PluginDto>>> {
    let plugins = state.extensions()?.plugins.list().await?;
    Ok(Json(plugins.into_iter().map(PluginDto::from).collect()))
}

#[utoipa::path(get, path = "/api/v1/plugins/{id}", operation_id = "get_plugin", tag = "plugins",
    params(("id" = String, Path, pattern = "^[a-z0-9.-]{3,64}$", description = "Plugin id (the manifest's `id`)")),
    responses((status = 200, body = PluginDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PluginDto>> {
    let id = plugin_id(&id)?;
    Ok(Json(state.extensions()?.plugins.get(&id).await?.into()))
}

#[utoipa::path(post, path = "/api/v1/plugins", operation_id = "install_plugin", tag = "plugins",
    request_body(content = Vec<u8>, content_type = "application/x-tar", description = "A plugin bundle (manifest.json, plugin.wasm, signature.json)"),
    responses((status = 201, body = InstalledDto), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn install(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    request: Request,
) -> ApiResult<(StatusCode, Json<InstalledDto>)> {
    let bytes = axum::body::to_bytes(request.into_body(), MAX_BUNDLE_BYTES as usize)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a bundle is at most {MAX_BUNDLE_BYTES} bytes"),
            )
            .with_field("bundle")
        })?;
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            "bundle",
            "the request body is empty; send the bundle file",
        ));
    }
    let extensions = state.extensions()?;
    let actor = Actor::user(&principal);
    let installed = extensions
        .plugins
        .install(
            &bytes,
            false,
            Audit::new(infrapilot_store::OrgId::default_org(), |i: &infrapilot_plugin_host::Installed| {
                let p = &i.plugin;
                audit_log::event(
                    &actor,
                    &client.ip,
                    if i.upgraded { "plugin.upgrade" } else { "plugin.install" },
                    &format!("plugin:{}", p.id),
                    "success",
                    json!({"version": p.version, "world": p.world, "edition": p.edition, "signed_by": p.signed_by, "sha256": p.component_sha256}),
                )
            }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(InstalledDto {
            upgraded: installed.upgraded,
            plugin: installed.plugin.into(),
        }),
    ))
}

/// Parses a grant, naming the field at fault. Only an object is a grant (serde would also read a
/// struct from a JSON array: `[]` must not pass as "no capabilities").
fn parse_grants(value: Value) -> ApiResult<Capabilities> {
    if !value.is_object() {
        return Err(ApiError::invalid(
            "grants",
            "grants must be an object, shaped like the manifest's capabilities",
        ));
    }
    serde_path_to_error::deserialize::<_, Capabilities>(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path.is_empty() || path == "." {
            "grants".to_owned()
        } else {
            format!("grants.{path}")
        };
        ApiError::invalid(&field, e.into_inner().to_string())
    })
}

#[utoipa::path(post, path = "/api/v1/plugins/{id}/enable", operation_id = "enable_plugin", tag = "plugins",
    params(("id" = String, Path, pattern = "^[a-z0-9.-]{3,64}$", description = "Plugin id (the manifest's `id`)")), request_body(content = Option<EnableRequest>, description = "Optional: without a body the manifest's request is granted"),
    responses((status = 200, body = PluginDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn enable(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
    ApiJsonOrEmpty(req): ApiJsonOrEmpty<EnableRequest>,
) -> ApiResult<Json<PluginDto>> {
    let id = plugin_id(&id)?;
    let plugins = &state.extensions()?.plugins;
    let grants = match req.grants {
        Some(v) => parse_grants(v)?,
        None => plugins.manifest(&id).await?.0.capabilities,
    };
    let actor = Actor::user(&principal);
    let info = plugins
        .enable(
            &id,
            Some(grants),
            Audit::new(infrapilot_store::OrgId::default_org(), |p: &PluginInfo| {
                audit_log::event(
                    &actor,
                    &client.ip,
                    "plugin.enable",
                    &format!("plugin:{}", p.id),
                    "success",
                    json!({"granted": p.granted}),
                )
            }),
        )
        .await?;
    Ok(Json(info.into()))
}

#[utoipa::path(post, path = "/api/v1/plugins/{id}/disable", operation_id = "disable_plugin", tag = "plugins",
    params(("id" = String, Path, pattern = "^[a-z0-9.-]{3,64}$", description = "Plugin id (the manifest's `id`)")),
    responses((status = 200, body = PluginDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<Json<PluginDto>> {
    let id = plugin_id(&id)?;
    let actor = Actor::user(&principal);
    let info = state
        .extensions()?
        .plugins
        .disable(&id, plugin_audit(&actor, &client, "plugin.disable"))
        .await?;
    Ok(Json(info.into()))
}

#[utoipa::path(delete, path = "/api/v1/plugins/{id}", operation_id = "uninstall_plugin", tag = "plugins",
    params(("id" = String, Path, pattern = "^[a-z0-9.-]{3,64}$", description = "Plugin id (the manifest's `id`)")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn uninstall(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = plugin_id(&id)?;
    let actor = Actor::user(&principal);
    state
        .extensions()?
        .plugins
        .uninstall(&id, plugin_audit(&actor, &client, "plugin.uninstall"))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/license", operation_id = "get_license", tag = "plugins",
    responses((status = 200, body = LicenseDto)), security(("bearer" = [])))]
pub async fn license(State(state): State<AppState>) -> ApiResult<Json<LicenseDto>> {
    Ok(Json(
        state.extensions()?.plugins.license_status().await?.into(),
    ))
}

#[utoipa::path(put, path = "/api/v1/license", operation_id = "upload_license", tag = "plugins",
    request_body = UploadLicenseRequest,
    responses((status = 200, body = LicenseDto), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn upload_license(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(req): ApiJson<UploadLicenseRequest>,
) -> ApiResult<Json<LicenseDto>> {
    let plugins = &state.extensions()?.plugins;
    let actor = Actor::user(&principal);
    plugins
        .install_license(
            &req.license,
            Audit::new(infrapilot_store::OrgId::default_org(), |l: &infrapilot_licensing::License| {
                audit_log::event(
                    &actor,
                    &client.ip,
                    "license.install",
                    &format!("license:{}", l.id),
                    "success",
                    json!({"licensee": l.licensee, "features": l.features, "expires_at": l.expires_at}),
                )
            }),
        )
        .await?;
    Ok(Json(plugins.license_status().await?.into()))
}
