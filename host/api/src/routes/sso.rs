//! Single sign-on: an organisation's providers (instances of sso-provider plugins with their
//! settings and group → role mapping, for its admins) and the login through them.
//!
//! The host keeps everything security-critical. A login's `state`, nonce and PKCE verifier are
//! single use, expire after ten minutes and are bound to the browser that started it (a sealed,
//! HttpOnly cookie holds the login's secret); the plugin only builds the way to the identity
//! provider and checks its answer. The callback hands the dashboard a one-time code (in the URL
//! fragment), which it exchanges for a session from the same browser.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use infrapilot_accounts::LoginOutcome;
use infrapilot_accounts::sso::{
    GroupRole, RoleMapping, SsoIdentity, SsoMfa, SsoProvider, second_factor_reported,
};
use infrapilot_identity::{Role, hash_token, random_bytes};
use infrapilot_plugin_host::settings;
use infrapilot_plugin_runtime::{
    Invocation, SsoLogin, SsoProviderPlugin,
    contract::{LoginCallback, LoginError, LoginMethod, LoginRequest},
};
use infrapilot_store::{NewSsoLogin, NewSsoProvider, OrgId, SsoProviderRow, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::audit_log::{self, Actor};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::session::{LoginResponse, login_response};
use crate::state::AppState;
use crate::validate;

/// The cookie that binds a login to the browser that started it: over https a `__Host-` cookie
/// (no subdomain can set or shadow it) sent on the identity provider's cross-site POST too;
/// over plain http (loopback) a `SameSite=Lax` one.
const COOKIE: &str = "infrapilot_sso";
const SECURE_COOKIE: &str = "__Host-infrapilot_sso";

const LOGIN_TTL_MS: i64 = 10 * 60 * 1000;
/// How long the dashboard has to exchange the callback's one-time code for a session.
const EXCHANGE_TTL_MS: i64 = 60 * 1000;
const MAX_RULES: usize = 100;
const MAX_GROUP_CHARS: usize = 256;
const MAX_ACR_VALUES: usize = 20;

// ---- DTOs ---------------------------------------------------------------------------------

/// A provider as the sign-in page shows it.
#[derive(Serialize, ToSchema)]
pub struct LoginProviderDto {
    pub id: String,
    pub name: String,
    /// `redirect`: a button that goes to the identity provider (`/start`); `password`: a
    /// username and password form posted to `/password` (a directory such as LDAP).
    pub login: String,
}

/// A directory sign-in (providers whose `login` is `password`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordLoginRequest {
    /// The directory username as the person types it (the host escapes it for the directory).
    #[schema(min_length = 1, max_length = 256)]
    pub username: String,
    #[schema(min_length = 1, max_length = 1024)]
    pub password: String,
}

#[derive(Serialize, Deserialize, Clone, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRoleDto {
    /// A group name exactly as the identity provider reports it.
    #[schema(min_length = 1, max_length = 256)]
    pub group: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProviderRequest {
    /// The sso-provider plugin's id, e.g. `infrapilot.oidc`.
    #[schema(pattern = "^[a-z0-9.-]{3,64}$")]
    pub plugin: String,
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// Settings per the plugin's JSON Schema; secret (`writeOnly`) fields are stored sealed and
    /// never returned.
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Group → role rules: a person gets the highest role of their mapped groups.
    #[serde(default)]
    pub group_roles: Vec<GroupRoleDto>,
    /// The role of a person none of whose groups is mapped; absent: such a login is refused.
    pub default_role: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// What a login needs besides the identity provider's word: `none` (default), `idp` (the
    /// identity provider must report a second factor: OIDC `amr`/`acr`, SAML's authentication
    /// context) or `local` (this host's TOTP after the identity provider; a person without one
    /// enrols it at that sign-in).
    #[serde(default = "no_mfa")]
    pub mfa: String,
    /// Under `idp`: further `acr` values (or SAML authentication context classes) that count as
    /// a second factor, besides the built-in multi-factor ones (e.g. Keycloak's level `2`).
    #[serde(default)]
    #[schema(max_items = 20)]
    pub mfa_acr_values: Vec<String>,
}

fn enabled_by_default() -> bool {
    true
}

fn no_mfa() -> String {
    SsoMfa::None.as_str().to_owned()
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProviderRequest {
    pub name: Option<String>,
    /// Replaces the settings; a secret field left out keeps its stored value, `null` clears it.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
    pub group_roles: Option<Vec<GroupRoleDto>>,
    /// A role, or `null` to refuse people without a mapped group.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub default_role: Option<Option<String>>,
    pub enabled: Option<bool>,
    /// `none`, `idp` or `local` (see the create request).
    pub mfa: Option<String>,
    pub mfa_acr_values: Option<Vec<String>>,
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Serialize, ToSchema)]
pub struct ProviderDto {
    pub id: String,
    pub plugin: String,
    pub name: String,
    /// The non-secret settings.
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Secret fields that have a value (their values are write-only).
    pub secrets_set: Vec<String>,
    pub group_roles: Vec<GroupRoleDto>,
    pub default_role: Option<String>,
    pub enabled: bool,
    /// `none`, `idp` or `local`: what a login needs besides the identity provider's word.
    pub mfa: String,
    pub mfa_acr_values: Vec<String>,
    /// The redirect (assertion consumer) URL to register at the identity provider.
    pub callback_url: String,
    /// A SAML provider's service-provider metadata (its entity id is this URL): what the
    /// identity provider is configured with.
    pub saml_metadata_url: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrgQuery {
    /// The organisation whose providers are meant; absent: the host's default organisation.
    pub org: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// The one-time code from the callback's redirect (its URL fragment).
    pub code: String,
}

// ---- helpers ------------------------------------------------------------------------------

fn random_hex() -> ApiResult<String> {
    Ok(hex::encode(
        random_bytes::<32>().map_err(|e| ApiError::internal(e.to_string()))?,
    ))
}

/// RFC 7636 S256: BASE64URL(SHA-256(verifier)) without padding.
fn code_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn org_of(query: &OrgQuery) -> ApiResult<OrgId> {
    match query.org.as_deref() {
        None | Some("") => Ok(OrgId::default_org()),
        Some(raw) => {
            OrgId::parse(raw).ok_or_else(|| ApiError::not_found("org", "no such organisation"))
        }
    }
}

fn seal_purpose(provider_id: &str) -> String {
    format!("sso-provider:{provider_id}")
}

fn seal_secrets(
    state: &AppState,
    provider_id: &str,
    secrets: &Map<String, Value>,
) -> ApiResult<Option<Vec<u8>>> {
    if secrets.is_empty() {
        return Ok(None);
    }
    let text = Value::Object(secrets.clone()).to_string();
    state
        .secrets()
        .seal(&seal_purpose(provider_id), text.as_bytes())
        .map(Some)
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn open_secrets(state: &AppState, row: &SsoProviderRow) -> ApiResult<Map<String, Value>> {
    let Some(sealed) = &row.secrets else {
        return Ok(Map::new());
    };
    let text = state
        .secrets()
        .open(&seal_purpose(&row.id), sealed)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match serde_json::from_slice(&text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::internal(
            "a provider's sealed secrets are not a JSON object",
        )),
    }
}

/// A SAML provider's entity id: its metadata URL, next to its callback (`acs_url`), naming
/// its organisation unless it is the default one.
fn saml_entity_id(acs_url: &str, org: &OrgId) -> String {
    let base = acs_url.strip_suffix("/callback").unwrap_or(acs_url);
    if org.is_default() {
        format!("{base}/metadata")
    } else {
        format!("{base}/metadata?org={org}")
    }
}

/// The host as the SAML service provider of `row` (a provider whose plugin uses the `saml`
/// capability has keys), answering at `acs_url`.
fn saml_service_provider(
    state: &AppState,
    org: &OrgId,
    row: &SsoProviderRow,
    acs_url: &str,
) -> ApiResult<Option<infrapilot_saml::ServiceProvider>> {
    let (Some(sealed), Some(cert_pem)) = (&row.sp_key, &row.sp_cert) else {
        return Ok(None);
    };
    let key_pem = state
        .secrets()
        .open(&sp_key_purpose(&row.id), sealed)
        .ok()
        .and_then(|k| String::from_utf8(k).ok())
        .ok_or_else(|| ApiError::internal("a SAML provider's key does not open"))?;
    // Fixed when the provider was made; a request's Host header never changes them.
    let acs_url = row.sp_acs_url.clone().unwrap_or_else(|| acs_url.to_owned());
    Ok(Some(infrapilot_saml::ServiceProvider {
        entity_id: row
            .sp_entity_id
            .clone()
            .unwrap_or_else(|| saml_entity_id(&acs_url, org)),
        acs_url,
        key_pem,
        cert_pem: cert_pem.clone(),
    }))
}

fn sp_key_purpose(provider_id: &str) -> String {
    format!("sso-sp-key:{provider_id}")
}

/// What a call of the provider's plugin runs with; `acs_url` is where the identity provider
/// answers (SAML providers need it).
fn invocation(
    state: &AppState,
    org: &OrgId,
    row: &SsoProviderRow,
    acs_url: Option<&str>,
) -> ApiResult<Invocation> {
    let settings: Value = serde_json::from_str(&row.settings).unwrap_or_else(|_| json!({}));
    let secrets = open_secrets(state, row)?
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Null => None,
            other => Some((k, other.to_string())),
        })
        .collect();
    let saml = match acs_url {
        Some(acs_url) => saml_service_provider(state, org, row, acs_url)?,
        None => None,
    };
    Ok(Invocation {
        settings,
        secrets,
        services: state.extensions()?.plugins.sso_services(org, saml),
    })
}

async fn provider_plugin_manifest(
    state: &AppState,
    plugin_id: &str,
) -> ApiResult<infrapilot_plugin_runtime::Manifest> {
    let (_, manifest) = state
        .extensions()?
        .plugins
        .plugin::<SsoProviderPlugin>(plugin_id)
        .await
        .map_err(|e| ApiError::from(e).with_field("plugin"))?;
    Ok(manifest)
}

async fn provider_plugin(state: &AppState, plugin_id: &str) -> ApiResult<SsoProviderPlugin> {
    let (plugin, _) = state
        .extensions()?
        .plugins
        .plugin::<SsoProviderPlugin>(plugin_id)
        .await
        .map_err(|e| ApiError::from(e).with_field("plugin"))?;
    Ok(plugin)
}

fn member_role(field: &str, raw: &str) -> ApiResult<Role> {
    match Role::parse(raw) {
        Some(role) if role != Role::SuperAdmin => Ok(role),
        _ => Err(ApiError::invalid(
            field,
            format!("{field} must be admin, operator or viewer"),
        )),
    }
}

/// The mapping rules, checked: each group named once, roles of a membership only.
fn checked_rules(rules: &[GroupRoleDto]) -> ApiResult<Vec<GroupRole>> {
    if rules.len() > MAX_RULES {
        return Err(ApiError::invalid(
            "group_roles",
            format!("at most {MAX_RULES} rules"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let field = format!("group_roles[{i}].group");
            let n = rule.group.chars().count();
            if n == 0 || n > MAX_GROUP_CHARS || rule.group.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    &field,
                    format!("{field} must be 1 to {MAX_GROUP_CHARS} printable characters"),
                ));
            }
            if !seen.insert(rule.group.clone()) {
                return Err(ApiError::invalid(
                    &field,
                    format!("{field}: {:?} is mapped twice", rule.group),
                ));
            }
            let role = member_role(&format!("group_roles[{i}].role"), &rule.role)?;
            Ok(GroupRole {
                group: rule.group.clone(),
                role: role.as_str().to_owned(),
            })
        })
        .collect()
}

/// The MFA policy, checked against what the provider's plugin can report: a directory (a
/// password provider) reports no second factor, so `idp` would refuse everyone.
fn checked_mfa(raw: &str, manifest: &infrapilot_plugin_runtime::Manifest) -> ApiResult<SsoMfa> {
    let mfa = SsoMfa::parse(raw).ok_or_else(|| {
        ApiError::invalid(
            "mfa",
            format!("mfa must be one of {}", SsoMfa::ALL.join(", ")),
        )
    })?;
    if mfa == SsoMfa::IdentityProvider && manifest.sso_login == Some(SsoLogin::Password) {
        return Err(ApiError::invalid(
            "mfa",
            "a directory reports no second factor: use local (this host's TOTP) or none",
        ));
    }
    Ok(mfa)
}

/// Whether `new` asks more of a login than the stored policy did (none < idp < local; idp and
/// local ask different things, so either change from the other tightens).
fn mfa_tightened(stored: &str, new: SsoMfa) -> bool {
    match SsoMfa::parse(stored) {
        Some(old) => old != new && new != SsoMfa::None,
        None => false,
    }
}

/// `acr` values that name a single factor (Keycloak's levels 0 and 1, SAML's password classes):
/// never accepted as meaning a second one.
const SINGLE_FACTOR_ACR_VALUES: &[&str] = &[
    "0",
    "1",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:Password",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:InternetProtocol",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:InternetProtocolPassword",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PreviousSession",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:Kerberos",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:X509",
];

/// Extra multi-factor `acr` values: at most 20, each 1–256 printable characters, each once.
fn checked_acr_values(values: &[String]) -> ApiResult<Vec<String>> {
    if values.len() > MAX_ACR_VALUES {
        return Err(ApiError::invalid(
            "mfa_acr_values",
            format!("at most {MAX_ACR_VALUES} values"),
        ));
    }
    let mut checked: Vec<String> = Vec::new();
    for (i, raw) in values.iter().enumerate() {
        let value = raw.trim();
        let field = format!("mfa_acr_values[{i}]");
        if value.is_empty() || value.chars().count() > 256 || value.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                &field,
                "each value must be 1 to 256 printable characters",
            ));
        }
        if SINGLE_FACTOR_ACR_VALUES.contains(&value) {
            return Err(ApiError::invalid(
                &field,
                format!("{value} names a single factor, not a second one"),
            ));
        }
        if checked.iter().any(|v| v == value) {
            return Err(ApiError::invalid(
                &field,
                format!("{value} is listed twice"),
            ));
        }
        checked.push(value.to_owned());
    }
    Ok(checked)
}

fn stored_acr_values(row: &SsoProviderRow) -> Vec<String> {
    serde_json::from_str(&row.mfa_acr_values).unwrap_or_default()
}

fn stored_rules(row: &SsoProviderRow) -> Vec<GroupRole> {
    serde_json::from_str(&row.group_roles).unwrap_or_default()
}

/// Where the identity provider sends the browser back: one URL per provider, so an answer meant
/// for one provider is never taken for a login at another (the mix-up attack).
fn callback_url(state: &AppState, headers: &HeaderMap, provider_id: &str) -> String {
    format!(
        "{}/api/v1/auth/sso/{provider_id}/callback",
        crate::routes::install::public_base(state, headers)
    )
}

fn provider_dto(
    state: &AppState,
    headers: &HeaderMap,
    org: &OrgId,
    row: SsoProviderRow,
) -> ProviderDto {
    let mut secrets_set: Vec<String> = open_secrets(state, &row)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    secrets_set.sort();
    ProviderDto {
        mfa_acr_values: stored_acr_values(&row),
        settings: serde_json::from_str(&row.settings).unwrap_or_else(|_| json!({})),
        group_roles: stored_rules(&row)
            .into_iter()
            .map(|r| GroupRoleDto {
                group: r.group,
                role: r.role,
            })
            .collect(),
        callback_url: row
            .sp_acs_url
            .clone()
            .unwrap_or_else(|| callback_url(state, headers, &row.id)),
        saml_metadata_url: row.sp_cert.as_ref().map(|_| {
            row.sp_entity_id
                .clone()
                .unwrap_or_else(|| saml_entity_id(&callback_url(state, headers, &row.id), org))
        }),
        secrets_set,
        id: row.id,
        plugin: row.plugin_id,
        name: row.name,
        default_role: row.default_role,
        enabled: row.enabled,
        mfa: row.mfa,
        created_at: validate::rfc3339(row.created_at),
        updated_at: validate::rfc3339(row.updated_at),
    }
}

/// Checks settings against the plugin's schema and its own `validate`; returns the plain
/// settings (JSON text) and the sealed secrets.
async fn checked_settings(
    state: &AppState,
    org: &OrgId,
    plugin_id: &str,
    provider_id: &str,
    value: &Value,
    saml: &SamlKeys,
) -> ApiResult<(String, Option<Vec<u8>>)> {
    let extensions = state.extensions()?;
    let (plugin, manifest) = extensions
        .plugins
        .plugin::<SsoProviderPlugin>(plugin_id)
        .await
        .map_err(|e| ApiError::from(e).with_field("plugin"))?;
    if !value.is_object() {
        return Err(ApiError::invalid("settings", "settings must be an object"));
    }
    settings::validate(&manifest.settings_schema, value)
        .map_err(|e| ApiError::invalid(&e.field, e.message))?;
    let split = settings::split(value, &manifest.secret_fields());
    let sealed = seal_secrets(state, provider_id, &split.secrets)?;
    let plain = Value::Object(split.plain).to_string();
    let probe = SsoProviderRow {
        id: provider_id.to_owned(),
        plugin_id: plugin_id.to_owned(),
        name: String::new(),
        settings: plain.clone(),
        secrets: sealed.clone(),
        group_roles: "[]".into(),
        default_role: None,
        enabled: true,
        created_at: 0,
        updated_at: 0,
        sp_key: saml.sealed_key.clone(),
        sp_cert: saml.cert_pem.clone(),
        sp_entity_id: saml.entity_id.clone(),
        sp_acs_url: saml.cert_pem.as_ref().map(|_| saml.acs_url.clone()),
        mfa: no_mfa(),
        mfa_acr_values: "[]".into(),
    };
    plugin
        .validate(&invocation(state, org, &probe, Some(&saml.acs_url))?)
        .await
        .map_err(|e| match &e {
            infrapilot_plugin_runtime::HookError::Plugin(
                infrapilot_plugin_runtime::contract::PluginError::InvalidSettings(message),
            ) => ApiError::invalid(&settings_field(&manifest, message), e.to_string()),
            infrapilot_plugin_runtime::HookError::Plugin(_) => {
                ApiError::invalid("settings", e.to_string())
            }
            other => ApiError::new(StatusCode::BAD_GATEWAY, "plugin_failed", other.to_string())
                .with_field("plugin"),
        })?;
    Ok((plain, sealed))
}

/// `settings.<name>` when a plugin's message names one of its settings first (`url: …`), as
/// the contract asks; else `settings`.
fn settings_field(manifest: &infrapilot_plugin_runtime::Manifest, message: &str) -> String {
    let named = message.split_once(':').map(|(name, _)| name.trim());
    match named {
        Some(name)
            if manifest
                .settings_schema
                .get("properties")
                .and_then(|p| p.get(name))
                .is_some() =>
        {
            format!("settings.{name}")
        }
        _ => "settings".into(),
    }
}

/// A SAML provider's service-provider key (sealed) and certificate, and where it answers.
struct SamlKeys {
    sealed_key: Option<Vec<u8>>,
    cert_pem: Option<String>,
    entity_id: Option<String>,
    acs_url: String,
}

impl SamlKeys {
    /// New keys when `manifest`'s plugin uses the `saml` capability (none otherwise).
    async fn for_new_provider(
        state: &AppState,
        manifest: &infrapilot_plugin_runtime::Manifest,
        org: &OrgId,
        provider_id: &str,
        acs_url: String,
    ) -> ApiResult<SamlKeys> {
        if !manifest.capabilities.saml {
            return Ok(SamlKeys {
                sealed_key: None,
                cert_pem: None,
                entity_id: None,
                acs_url,
            });
        }
        let (key_pem, cert_pem) = tokio::task::spawn_blocking(|| {
            infrapilot_saml::generate_keys("InfraPilot single sign-on")
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let sealed = state
            .secrets()
            .seal(&sp_key_purpose(provider_id), key_pem.as_bytes())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(SamlKeys {
            sealed_key: Some(sealed),
            cert_pem: Some(cert_pem),
            entity_id: Some(saml_entity_id(&acs_url, org)),
            acs_url,
        })
    }

    fn of(row: &SsoProviderRow, acs_url: String) -> SamlKeys {
        SamlKeys {
            sealed_key: row.sp_key.clone(),
            cert_pem: row.sp_cert.clone(),
            entity_id: row.sp_entity_id.clone(),
            acs_url: row.sp_acs_url.clone().unwrap_or(acs_url),
        }
    }
}

fn name_conflict(name: &str) -> impl Fn(infrapilot_store::StoreError) -> ApiError + '_ {
    move |e| {
        if e.is_unique_violation() {
            ApiError::conflict(format!("a provider named {name:?} exists")).with_field("name")
        } else {
            e.into()
        }
    }
}

async fn provider_row(state: &AppState, org: &OrgId, id: &str) -> ApiResult<SsoProviderRow> {
    let id = validate::uuid("id", id)?;
    let mut tx = state.store().read(org).await?;
    let row = tx.sso_provider(&id).await?;
    tx.commit().await?;
    row.ok_or_else(|| ApiError::not_found("id", "no such provider"))
}

// ---- providers (organisation admins) -------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/sso/providers", operation_id = "list_sso_providers", tag = "sso",
    responses((status = 200, body = Vec<ProviderDto>)), security(("bearer" = [])))]
pub async fn list_providers(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<ProviderDto>>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    let rows = tx.list_sso_providers().await?;
    tx.commit().await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| provider_dto(&state, &headers, &principal.org_id, r))
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/sso/providers", operation_id = "create_sso_provider", tag = "sso",
    request_body = CreateProviderRequest,
    responses((status = 201, body = ProviderDto), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_provider(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateProviderRequest>,
) -> ApiResult<(StatusCode, Json<ProviderDto>)> {
    let name = validate::label("name", &req.name)?;
    let plugin = req.plugin.trim();
    if plugin.is_empty() || plugin.len() > 64 {
        return Err(ApiError::invalid("plugin", "plugin must be a plugin id"));
    }
    let rules = checked_rules(&req.group_roles)?;
    let default_role = req
        .default_role
        .as_deref()
        .map(|r| member_role("default_role", r))
        .transpose()?;
    let acr_values = checked_acr_values(&req.mfa_acr_values)?;
    let id = uuid::Uuid::new_v4().to_string();
    let manifest = provider_plugin_manifest(&state, plugin).await?;
    let mfa = checked_mfa(&req.mfa, &manifest)?;
    let acr_json =
        serde_json::to_string(&acr_values).map_err(|e| ApiError::internal(e.to_string()))?;
    let saml = SamlKeys::for_new_provider(
        &state,
        &manifest,
        &principal.org_id,
        &id,
        callback_url(&state, &headers, &id),
    )
    .await?;
    let (plain, sealed) =
        checked_settings(&state, &principal.org_id, plugin, &id, &req.settings, &saml).await?;
    let rules_json =
        serde_json::to_string(&rules).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut tx = state.store().write(&principal.org_id).await?;
    tx.insert_sso_provider(&NewSsoProvider {
        id: &id,
        plugin_id: plugin,
        name: &name,
        settings: &plain,
        secrets: sealed.as_deref(),
        group_roles: &rules_json,
        default_role: default_role.map(|r| r.as_str()),
        enabled: req.enabled,
        mfa: mfa.as_str(),
        mfa_acr_values: &acr_json,
    })
    .await
    .map_err(name_conflict(&name))?;
    if let (Some(key), Some(cert), Some(entity_id)) =
        (&saml.sealed_key, &saml.cert_pem, &saml.entity_id)
    {
        tx.set_sso_service_provider(&id, key, cert, entity_id, &saml.acs_url)
            .await?;
    }
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "sso_provider.create",
        &format!("sso_provider:{id}"),
        json!({"plugin": plugin, "name": name, "group_roles": rules,
            "default_role": default_role.map(|r| r.as_str()),
            "mfa": mfa.as_str(), "mfa_acr_values": acr_values}),
    )
    .await?;
    let row = tx
        .sso_provider(&id)
        .await?
        .ok_or_else(|| ApiError::internal("the new provider vanished"))?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(provider_dto(&state, &headers, &principal.org_id, row)),
    ))
}

#[utoipa::path(get, path = "/api/v1/sso/providers/{id}", operation_id = "get_sso_provider", tag = "sso",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ProviderDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_provider(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<ProviderDto>> {
    let row = provider_row(&state, &principal.org_id, &id).await?;
    Ok(Json(provider_dto(&state, &headers, &principal.org_id, row)))
}

#[utoipa::path(patch, path = "/api/v1/sso/providers/{id}", operation_id = "update_sso_provider", tag = "sso",
    params(("id" = uuid::Uuid, Path)), request_body = UpdateProviderRequest,
    responses((status = 200, body = ProviderDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_provider(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateProviderRequest>,
) -> ApiResult<Json<ProviderDto>> {
    let row = provider_row(&state, &principal.org_id, &id).await?;
    let name = match &req.name {
        Some(n) => validate::label("name", n)?,
        None => row.name.clone(),
    };
    let rules = match &req.group_roles {
        Some(rules) => checked_rules(rules)?,
        None => stored_rules(&row),
    };
    let default_role = match &req.default_role {
        Some(Some(r)) => Some(member_role("default_role", r)?.as_str().to_owned()),
        Some(None) => None,
        None => row.default_role.clone(),
    };
    let mfa = match &req.mfa {
        Some(raw) => checked_mfa(
            raw,
            &provider_plugin_manifest(&state, &row.plugin_id).await?,
        )?,
        None => SsoMfa::parse(&row.mfa).unwrap_or(SsoMfa::Local),
    };
    let acr_values = match &req.mfa_acr_values {
        Some(values) => checked_acr_values(values)?,
        None => stored_acr_values(&row),
    };
    let acr_json =
        serde_json::to_string(&acr_values).map_err(|e| ApiError::internal(e.to_string()))?;
    let (plain, sealed) = match &req.settings {
        None => (row.settings.clone(), row.secrets.clone()),
        Some(new) => {
            let Some(new_object) = new.as_object() else {
                return Err(ApiError::invalid("settings", "settings must be an object"));
            };
            // Secret fields left out keep their stored values while the rest of the settings
            // stay as they were; changed settings (another issuer, client, tenant) need the
            // secrets sent again, so a stored secret never goes to a server it was not given for.
            // `null` clears a secret.
            let (_, manifest) = state
                .extensions()?
                .plugins
                .plugin::<SsoProviderPlugin>(&row.plugin_id)
                .await
                .map_err(|e| ApiError::from(e).with_field("plugin"))?;
            let secret_fields = manifest.secret_fields();
            let stored_plain: Map<String, Value> =
                serde_json::from_str(&row.settings).unwrap_or_default();
            let new_plain: Map<String, Value> = new_object
                .iter()
                .filter(|(k, _)| !secret_fields.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut merged = new_object.clone();
            if new_plain == stored_plain {
                for (k, v) in open_secrets(&state, &row)? {
                    merged.entry(k).or_insert(v);
                }
            }
            merged.retain(|_, v| !v.is_null());
            checked_settings(
                &state,
                &principal.org_id,
                &row.plugin_id,
                &row.id,
                &Value::Object(merged),
                &SamlKeys::of(&row, callback_url(&state, &headers, &row.id)),
            )
            .await?
        }
    };
    let enabled = req.enabled.unwrap_or(row.enabled);
    let rules_json =
        serde_json::to_string(&rules).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut tx = state.store().write(&principal.org_id).await?;
    let mut sessions_ended = 0;
    if row.enabled && !enabled {
        keep_a_provider_while_required(&mut tx, &row.id, "enabled").await?;
        sessions_ended = tx.revoke_sso_sessions(&row.id).await?;
    } else if mfa_tightened(&row.mfa, mfa) {
        // Sessions this provider made without the second factor now required end.
        sessions_ended = tx.revoke_sso_sessions(&row.id).await?;
    }
    tx.update_sso_provider(&NewSsoProvider {
        id: &row.id,
        plugin_id: &row.plugin_id,
        name: &name,
        settings: &plain,
        secrets: sealed.as_deref(),
        group_roles: &rules_json,
        default_role: default_role.as_deref(),
        enabled,
        mfa: mfa.as_str(),
        mfa_acr_values: &acr_json,
    })
    .await
    .map_err(name_conflict(&name))?;
    // Mapping changes are audited with the whole mapping before and after.
    audit_log::success(
        &mut tx,
        &Actor::user(&principal),
        &client.ip,
        "sso_provider.update",
        &format!("sso_provider:{}", row.id),
        json!({
            "name": name,
            "enabled": enabled,
            "settings_changed": req.settings.is_some(),
            "settings": serde_json::from_str::<Value>(&plain).unwrap_or(Value::Null),
            "previous_settings": serde_json::from_str::<Value>(&row.settings).unwrap_or(Value::Null),
            "group_roles": rules,
            "previous_group_roles": stored_rules(&row),
            "default_role": default_role,
            "previous_default_role": row.default_role,
            "mfa": mfa.as_str(),
            "previous_mfa": row.mfa,
            "mfa_acr_values": acr_values,
            "previous_mfa_acr_values": stored_acr_values(&row),
            "sessions_ended": sessions_ended,
        }),
    )
    .await?;
    let updated = tx
        .sso_provider(&row.id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such provider"))?;
    tx.commit().await?;
    Ok(Json(provider_dto(
        &state,
        &headers,
        &principal.org_id,
        updated,
    )))
}

#[utoipa::path(delete, path = "/api/v1/sso/providers/{id}", operation_id = "delete_sso_provider", tag = "sso",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_provider(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = validate::uuid("id", &id)?;
    let mut tx = state.store().write(&principal.org_id).await?;
    if tx.sso_provider(&id).await?.is_none() {
        return Err(ApiError::not_found("id", "no such provider"));
    }
    keep_a_provider_while_required(&mut tx, &id, "id").await?;
    // Whoever it signed in is signed out: it vouches for no one any more.
    let sessions_ended = tx.revoke_sso_sessions(&id).await?;
    if !tx.delete_sso_provider(&id).await? {
        return Err(ApiError::not_found("id", "no such provider"));
    }
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "sso_provider.delete",
        &format!("sso_provider:{id}"),
        json!({"sessions_ended": sessions_ended}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// While the organisation requires single sign-on, its last enabled provider stays (its
/// members would have no way in): 409 naming `field`.
async fn keep_a_provider_while_required(
    tx: &mut infrapilot_store::Tx,
    provider_id: &str,
    field: &str,
) -> ApiResult<()> {
    if !tx.require_sso().await? {
        return Ok(());
    }
    let others = tx
        .list_sso_providers()
        .await?
        .into_iter()
        .filter(|p| p.enabled && p.id != provider_id)
        .count();
    if others == 0 {
        return Err(ApiError::conflict(
            "the organisation requires single sign-on and this is its last enabled provider; stop requiring single sign-on first",
        )
        .with_field(field));
    }
    Ok(())
}

/// The organisation's single sign-on policy.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoPolicyDto {
    /// Members below admin must sign in through one of the organisation's providers: their
    /// password sign-in is refused and sessions not made by its single sign-on cannot act in
    /// it. Admins keep their local sign-in (and second factor) for break-glass.
    pub require_sso: bool,
}

#[utoipa::path(get, path = "/api/v1/sso/policy", operation_id = "get_sso_policy", tag = "sso",
    responses((status = 200, body = SsoPolicyDto)), security(("bearer" = [])))]
pub async fn get_policy(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<SsoPolicyDto>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    let require_sso = tx.require_sso().await?;
    tx.commit().await?;
    Ok(Json(SsoPolicyDto { require_sso }))
}

#[utoipa::path(put, path = "/api/v1/sso/policy", operation_id = "set_sso_policy", tag = "sso",
    request_body = SsoPolicyDto,
    responses((status = 200, body = SsoPolicyDto), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_policy(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(req): ApiJson<SsoPolicyDto>,
) -> ApiResult<Json<SsoPolicyDto>> {
    let mut tx = state.store().write(&principal.org_id).await?;
    let before = tx.require_sso().await?;
    if req.require_sso && !tx.list_sso_providers().await?.iter().any(|p| p.enabled) {
        return Err(ApiError::invalid(
            "require_sso",
            "add and enable a single sign-on provider first (its members would have no way in)",
        ));
    }
    tx.set_require_sso(req.require_sso).await?;
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "sso_policy.update",
        &format!("org:{}", principal.org_id),
        json!({"require_sso": req.require_sso, "previous_require_sso": before}),
    )
    .await?;
    Ok(Json(SsoPolicyDto {
        require_sso: req.require_sso,
    }))
}

// ---- the login ----------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/auth/sso/{id}/metadata", operation_id = "sso_saml_metadata", tag = "sso",
    params(("id" = uuid::Uuid, Path), OrgQuery),
    responses((status = 200, description = "The SAML service-provider metadata of the provider", content_type = "application/samlmetadata+xml"),
        (status = 404, body = ErrorBody)))]
pub async fn saml_metadata(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<OrgQuery>,
) -> ApiResult<Response> {
    let id = validate::uuid("id", &id)?;
    let org = org_of(&query)?;
    let row = provider_row(&state, &org, &id).await?;
    let Some(cert_pem) = row.sp_cert.clone() else {
        return Err(ApiError::not_found("id", "this provider does not use SAML"));
    };
    let acs_url = row
        .sp_acs_url
        .clone()
        .unwrap_or_else(|| callback_url(&state, &headers, &row.id));
    let xml = infrapilot_saml::sp_metadata(&infrapilot_saml::ServiceProvider {
        entity_id: row
            .sp_entity_id
            .clone()
            .unwrap_or_else(|| saml_entity_id(&acs_url, &org)),
        acs_url,
        key_pem: String::new(),
        cert_pem,
    })
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/samlmetadata+xml")
        .body(Body::from(xml))
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[utoipa::path(get, path = "/api/v1/auth/sso/providers", operation_id = "list_login_providers", tag = "sso",
    params(OrgQuery),
    responses((status = 200, body = Vec<LoginProviderDto>), (status = 404, body = ErrorBody)))]
pub async fn login_providers(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<OrgQuery>,
) -> ApiResult<Json<Vec<LoginProviderDto>>> {
    let org = org_of(&query)?;
    let mut tx = state.store().read(&org).await?;
    let rows = tx.list_sso_providers().await?;
    tx.commit().await?;
    let mut providers = Vec::new();
    for row in rows.into_iter().filter(|r| r.enabled) {
        // A provider whose plugin is gone or broken shows no button (its start would fail).
        let Some(login) = login_kind(&state, &row.plugin_id).await else {
            continue;
        };
        providers.push(LoginProviderDto {
            id: row.id,
            name: row.name,
            login: match login {
                SsoLogin::Redirect => "redirect".into(),
                SsoLogin::Password => "password".into(),
            },
        });
    }
    Ok(Json(providers))
}

/// How a provider's plugin signs people in, per its manifest; `None` when it is not installed.
async fn login_kind(state: &AppState, plugin_id: &str) -> Option<SsoLogin> {
    let (manifest, _) = state
        .extensions()
        .ok()?
        .plugins
        .manifest(plugin_id)
        .await
        .ok()?;
    Some(manifest.sso_login.unwrap_or(SsoLogin::Redirect))
}

#[utoipa::path(post, path = "/api/v1/auth/sso/{id}/password", operation_id = "sso_password_login", tag = "sso",
    params(("id" = uuid::Uuid, Path), OrgQuery),
    request_body = PasswordLoginRequest,
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn password_login(
    State(state): State<AppState>,
    client: ClientInfo,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<OrgQuery>,
    ApiJson(req): ApiJson<PasswordLoginRequest>,
) -> ApiResult<Response> {
    let id = validate::uuid("id", &id)?;
    let org = org_of(&query)?;
    let username = req.username.trim().to_owned();
    if username.is_empty() || username.chars().count() > 256 || username.contains('\0') {
        return Err(ApiError::invalid(
            "username",
            "enter your directory username",
        ));
    }
    // Never sent: an empty password is an unauthenticated bind, which many directories accept.
    if req.password.is_empty() || req.password.len() > 1024 {
        return Err(ApiError::invalid("password", "enter your password"));
    }
    let row = provider_row(&state, &org, &id).await?;
    if !row.enabled {
        return Err(ApiError::not_found("id", "no such provider"));
    }
    let (plugin, manifest) = state
        .extensions()?
        .plugins
        .plugin::<SsoProviderPlugin>(&row.plugin_id)
        .await
        .map_err(|e| ApiError::from(e).with_field("id"))?;
    if manifest.sso_login != Some(SsoLogin::Password) {
        return Err(ApiError::invalid(
            "id",
            "this provider signs in at its identity provider; use its button",
        ));
    }
    let accounts = state.accounts();
    let attempt = accounts.count_directory_attempt(&row.id, &username, &client.client())?;
    let answer = plugin
        .check_password(
            &invocation(&state, &org, &row, None)?,
            &username,
            &req.password,
        )
        .await;
    let unavailable = |why: String| {
        accounts.directory_attempt_not_made(&attempt, &client.client());
        tracing::warn!(provider = %row.id, error = %why, "directory sign-in failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "directory_unavailable",
            "the directory could not check the password; try again later",
        )
    };
    let identity = match answer {
        Ok(Ok(identity)) => identity,
        Ok(Err(LoginError::Rejected(why))) => {
            audit_log::record_standalone(
                &state,
                &org,
                audit_log::event(
                    &Actor::anonymous(),
                    &client.ip,
                    "sso.login",
                    &format!("sso_provider:{}", row.id),
                    "failure",
                    json!({"provider": row.id, "provider_name": row.name,
                        "username": username, "reason": why}),
                ),
            )
            .await;
            return Err(ApiError::unauthorized("wrong username or password").with_field("password"));
        }
        Ok(Err(LoginError::Unsupported)) => {
            accounts.directory_attempt_not_made(&attempt, &client.client());
            return Err(ApiError::invalid(
                "id",
                "this provider does not check passwords",
            ));
        }
        Ok(Err(e)) => return Err(unavailable(login_error_text(&e))),
        Err(e) => return Err(unavailable(e.to_string())),
    };
    accounts.directory_attempt_succeeded(&attempt, &client.client());
    let provider = sso_provider(&row);
    let identity = sso_identity(identity);
    let max_members =
        crate::license_limits::limit(&state, crate::license_limits::Limited::Members).await?;
    let signed_in = accounts
        .sso_sign_in(&org, &provider, &identity, max_members, &client.client())
        .await?;
    let tx = state.store().write(&org).await?;
    let outcome = accounts
        .finish_sso_login(
            tx,
            &signed_in.user,
            &client.client(),
            json!({"sso": true, "provider": row.id}),
            &org,
            &row.id,
            second_factor_reported(&identity, &provider.mfa_acr_values),
        )
        .await?;
    session_response(outcome, None)
}

/// A new session's tokens (or the second step the provider's MFA policy asks for), never
/// cached; `cookie` set alongside (the login's, cleared).
fn session_response(outcome: LoginOutcome, cookie: Option<String>) -> ApiResult<Response> {
    let body = serde_json::to_vec(&login_response(outcome))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(cookie) = cookie {
        response = response.header(header::SET_COOKIE, cookie);
    }
    response
        .body(Body::from(body))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The provider as the accounts workflow sees it: its id, name and mapping.
fn sso_provider(row: &SsoProviderRow) -> SsoProvider {
    SsoProvider {
        id: row.id.clone(),
        name: row.name.clone(),
        mapping: RoleMapping {
            rules: stored_rules(row),
            default_role: row.default_role.as_deref().and_then(Role::parse),
        },
        // An unknown stored policy asks the most of a login.
        mfa: SsoMfa::parse(&row.mfa).unwrap_or(SsoMfa::Local),
        mfa_acr_values: stored_acr_values(row),
    }
}

fn sso_identity(identity: infrapilot_plugin_runtime::contract::Identity) -> SsoIdentity {
    SsoIdentity {
        subject: identity.subject,
        issuer: identity.issuer,
        email: identity.email,
        email_verified: identity.email_verified,
        name: identity.name,
        groups: identity.groups,
        attributes: identity.attributes,
    }
}

/// What the cookie carries, sealed: where the login lives and the browser's secret for it.
#[derive(Serialize, Deserialize)]
struct LoginCookie {
    org: String,
    login: String,
    secret: String,
}

const COOKIE_PURPOSE: &str = "sso-login-cookie";

fn secure_host(state: &AppState, headers: &HeaderMap) -> bool {
    crate::routes::install::public_base(state, headers).starts_with("https://")
}

fn cookie_header(state: &AppState, headers: &HeaderMap, value: &str, max_age_secs: i64) -> String {
    if secure_host(state, headers) {
        format!(
            "{SECURE_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=None; Max-Age={max_age_secs}"
        )
    } else {
        format!(
            "{COOKIE}={value}; Path=/api/v1/auth/sso; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}"
        )
    }
}

/// The login this browser started: its one login cookie, opened. Two cookies of that name (one
/// planted beside the host's) count as none.
fn read_cookie(state: &AppState, headers: &HeaderMap) -> Option<LoginCookie> {
    let name = if secure_host(state, headers) {
        SECURE_COOKIE
    } else {
        COOKIE
    };
    let prefix = format!("{name}=");
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter_map(|pair| pair.strip_prefix(prefix.as_str()));
    let raw = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let sealed = hex::decode(raw).ok()?;
    let text = state.secrets().open(COOKIE_PURPOSE, &sealed).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The cookie that carries why the last login failed to the sign-in page: set by this host only
/// (a link cannot put words on the sign-in page), readable by the dashboard, gone in a minute.
pub const ERROR_COOKIE: &str = "infrapilot_sso_error";

/// The dashboard's sign-in page, told that single sign-on failed and why.
fn to_sign_in_with_error(message: &str) -> Response {
    let encoded: String = form_urlencoded::byte_serialize(message.as_bytes()).collect();
    redirect(
        "/login?sso_error=1",
        Some(format!(
            "{ERROR_COOKIE}={encoded}; Path=/; SameSite=Lax; Max-Age=60"
        )),
    )
}

fn redirect(location: &str, cookie: Option<String>) -> Response {
    let mut response = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(cookie) = cookie {
        response = response.header(header::SET_COOKIE, cookie);
    }
    response
        .body(Body::empty())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A page that posts `fields` to `action` (SAML's HTTP-POST binding), allowed by its own CSP.
fn post_form(action: &str, fields: &[(String, String)], cookie: String) -> ApiResult<Response> {
    let url = url_origin(action).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "plugin_failed",
            "the provider's form action is not an http(s) URL",
        )
        .with_field("plugin")
    })?;
    let nonce = random_hex()?;
    let inputs: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape_html(k),
                escape_html(v)
            )
        })
        .collect();
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Signing in…</title></head><body>\
         <form id=\"sso\" method=\"post\" action=\"{}\">{inputs}<noscript><button type=\"submit\">Continue</button></noscript></form>\
         <script nonce=\"{nonce}\">document.getElementById('sso').submit()</script></body></html>",
        escape_html(action)
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(
            header::CONTENT_SECURITY_POLICY,
            format!("default-src 'none'; script-src 'nonce-{nonce}'; form-action {url}; frame-ancestors 'none'; base-uri 'none'"),
        )
        .header(header::SET_COOKIE, cookie)
        .body(Body::from(body))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `scheme://host[:port]` of an http(s) URL.
fn url_origin(raw: &str) -> Option<String> {
    let (scheme, rest) = raw.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty()
        || !authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

fn login_error_text(e: &LoginError) -> String {
    match e {
        LoginError::Rejected(why) => format!("the identity provider's answer was refused: {why}"),
        LoginError::Unsupported => "this provider does not sign in that way".into(),
        LoginError::Unavailable(why) => {
            format!("the identity provider could not be reached: {why}")
        }
        LoginError::InvalidSettings(why) => format!("the provider is misconfigured: {why}"),
    }
}

#[utoipa::path(get, path = "/api/v1/auth/sso/{id}/start", operation_id = "start_sso_login", tag = "sso",
    params(("id" = uuid::Uuid, Path), OrgQuery),
    responses((status = 303, description = "To the identity provider (or back to the sign-in page with `sso_error`)"),
        (status = 200, description = "A form that posts to the identity provider", content_type = "text/html"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn start_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<OrgQuery>,
) -> ApiResult<Response> {
    let id = validate::uuid("id", &id)?;
    let org = org_of(&query)?;
    // Started from this host's sign-in page (or typed in), never by another site's link: a
    // link that signs a visitor in as someone else (login CSRF) starts nothing.
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Ok(to_sign_in_with_error(
            "start single sign-on from this host's sign-in page",
        ));
    }
    if !state.request_limiter().allow_sso_start(&client.ip) {
        return Ok(to_sign_in_with_error(
            "too many sign-ins from this address; wait a minute",
        ));
    }
    let row = provider_row(&state, &org, &id).await?;
    if !row.enabled {
        return Err(ApiError::not_found("id", "no such provider"));
    }
    let plugin = provider_plugin(&state, &row.plugin_id).await?;
    let login_id = uuid::Uuid::new_v4().to_string();
    let (state_value, nonce, verifier, browser) =
        (random_hex()?, random_hex()?, random_hex()?, random_hex()?);
    let request = LoginRequest {
        callback_url: callback_url(&state, &headers, &row.id),
        state: state_value.clone(),
        nonce: nonce.clone(),
        code_challenge: code_challenge(&verifier),
    };
    let start = match plugin
        .begin_login(
            &invocation(&state, &org, &row, Some(&request.callback_url))?,
            &request,
        )
        .await
    {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => return Ok(to_sign_in_with_error(&login_error_text(&e))),
        Err(e) => {
            tracing::warn!(provider = %row.id, error = %e, "sso begin-login failed");
            return Ok(to_sign_in_with_error(
                "the sign-in provider failed; try again later",
            ));
        }
    };
    let secrets = state.secrets();
    let sealed_verifier = secrets
        .seal(&format!("sso-login:{login_id}"), verifier.as_bytes())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let sealed_context = start
        .context
        .as_deref()
        .map(|c| secrets.seal(&format!("sso-context:{login_id}"), c.as_bytes()))
        .transpose()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut tx = state.store().write(&org).await?;
    tx.insert_sso_login(&NewSsoLogin {
        id: &login_id,
        provider_id: &row.id,
        state_hash: &hash_token(&state_value),
        browser_hash: &hash_token(&browser),
        nonce: &nonce,
        code_verifier: &sealed_verifier,
        context: sealed_context.as_deref(),
        callback_url: &request.callback_url,
        expires_at: now_ms() + LOGIN_TTL_MS,
    })
    .await?;
    tx.commit().await?;
    let cookie_value = serde_json::to_vec(&LoginCookie {
        org: org.to_string(),
        login: login_id,
        secret: browser,
    })
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let sealed_cookie = secrets
        .seal(COOKIE_PURPOSE, &cookie_value)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let cookie = cookie_header(
        &state,
        &headers,
        &hex::encode(sealed_cookie),
        LOGIN_TTL_MS / 1000,
    );
    match start.method {
        LoginMethod::Redirect(url) => {
            if url_origin(&url).is_none() {
                return Ok(to_sign_in_with_error(
                    "the provider built no usable sign-in URL",
                ));
            }
            Ok(redirect(&url, Some(cookie)))
        }
        LoginMethod::Post(form) => post_form(&form.action, &form.fields, cookie),
    }
}

#[utoipa::path(get, path = "/api/v1/auth/sso/{id}/callback", operation_id = "sso_callback", tag = "sso",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 303, description = "To the dashboard with a one-time code, or to the sign-in page (`sso_error`)"),
        (status = 400, body = ErrorBody)))]
pub async fn callback_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    let id = match validate::uuid("id", &id) {
        Ok(id) => id,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    let params: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    callback(state, headers, client, id, params).await
}

#[utoipa::path(post, path = "/api/v1/auth/sso/{id}/callback", operation_id = "sso_callback_post", tag = "sso",
    params(("id" = uuid::Uuid, Path)),
    request_body(content = Option<String>, content_type = "application/x-www-form-urlencoded",
        description = "The identity provider's answer (SAML HTTP-POST binding, OIDC form_post)"),
    responses((status = 303, description = "To the dashboard with a one-time code, or to the sign-in page (`sso_error`)"),
        (status = 400, body = ErrorBody)))]
pub async fn callback_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let id = match validate::uuid("id", &id) {
        Ok(id) => id,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    callback(state, headers, client, id, params).await
}

async fn callback(
    state: AppState,
    headers: HeaderMap,
    client: ClientInfo,
    provider_id: String,
    params: Vec<(String, String)>,
) -> Response {
    match complete(&state, &headers, &client, &provider_id, params).await {
        Ok(code) => redirect(&format!("/login/sso#{code}"), None),
        Err(message) => to_sign_in_with_error(&message),
    }
}

/// The callback's work: the login it belongs to (this browser's, unused, in time), the
/// provider's verdict, the person; a one-time code for the dashboard. `Err`: what to tell the
/// person (details go to the log and the audit trail).
async fn complete(
    state: &AppState,
    headers: &HeaderMap,
    client: &ClientInfo,
    provider_id: &str,
    params: Vec<(String, String)>,
) -> Result<String, String> {
    const NOT_STARTED_HERE: &str = "this sign-in was not started in this browser, or took longer than ten minutes; start again";
    let internal = |e: ApiError| {
        tracing::error!(error = %e.message, "sso callback failed");
        "the sign-in failed on this host; try again".to_owned()
    };
    let cookie = read_cookie(state, headers).ok_or(NOT_STARTED_HERE)?;
    let org = OrgId::parse(&cookie.org).ok_or(NOT_STARTED_HERE)?;
    let given_state = params
        .iter()
        .find(|(k, _)| k == "state" || k == "RelayState")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut tx = state
        .store()
        .write(&org)
        .await
        .map_err(|e| internal(e.into()))?;
    let login = tx
        .sso_login(&cookie.login)
        .await
        .map_err(|e| internal(e.into()))?
        .ok_or(NOT_STARTED_HERE)?;
    if login.browser_hash != hash_token(&cookie.secret) {
        return Err(NOT_STARTED_HERE.into());
    }
    // An answer sent to another provider's callback, or for another login, is not this login's:
    // refused before the login is spent or the provider is called (so a forged link cannot end
    // a sign-in in progress, and no provider sees another's code).
    if login.provider_id != provider_id {
        return Err(
            "the identity provider's answer came to another provider's callback; start again"
                .into(),
        );
    }
    if login.state_hash != hash_token(&given_state) {
        return Err(
            "the identity provider's answer belongs to another sign-in; start again".into(),
        );
    }
    // Spent whatever follows: a callback is good for one try.
    let fresh = tx
        .spend_sso_login(&login.id)
        .await
        .map_err(|e| internal(e.into()))?;
    tx.commit().await.map_err(|e| internal(e.into()))?;
    if !fresh {
        return Err("this sign-in was used already or has expired; start again".into());
    }
    let row = provider_row(state, &org, &login.provider_id)
        .await
        .map_err(|_| "this sign-in provider is gone".to_owned())?;
    if !row.enabled {
        return Err("this sign-in provider is turned off".into());
    }
    if let Some((_, error)) = params.iter().find(|(k, _)| k == "error") {
        // Only the error code (RFC 6749 4.1.2.1: ASCII, no free text) reaches the sign-in page.
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(format!(
            "the identity provider refused the sign-in ({code})"
        ));
    }
    let secrets = state.secrets();
    let verifier = secrets
        .open(&format!("sso-login:{}", login.id), &login.code_verifier)
        .ok()
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or_else(|| internal(ApiError::internal("a login's verifier does not open")))?;
    let context = match &login.context {
        None => None,
        Some(sealed) => Some(
            secrets
                .open(&format!("sso-context:{}", login.id), sealed)
                .ok()
                .and_then(|v| String::from_utf8(v).ok())
                .ok_or_else(|| internal(ApiError::internal("a login's context does not open")))?,
        ),
    };
    let callback = LoginCallback {
        params,
        request: LoginRequest {
            callback_url: login.callback_url.clone(),
            state: given_state,
            nonce: login.nonce.clone(),
            code_challenge: code_challenge(&verifier),
        },
        code_verifier: verifier,
        context,
    };
    let plugin = provider_plugin(state, &row.plugin_id)
        .await
        .map_err(internal)?;
    let invocation = invocation(state, &org, &row, Some(&login.callback_url)).map_err(internal)?;
    let identity = match plugin.complete_login(&invocation, &callback).await {
        Ok(Ok(identity)) => identity,
        Ok(Err(e)) => {
            let text = login_error_text(&e);
            audit_log::record_standalone(
                state,
                &org,
                audit_log::event(
                    &Actor::anonymous(),
                    &client.ip,
                    "sso.login",
                    &format!("sso_provider:{}", row.id),
                    "failure",
                    json!({"provider": row.id, "provider_name": row.name, "reason": text}),
                ),
            )
            .await;
            return Err(text);
        }
        Err(e) => {
            tracing::warn!(provider = %row.id, error = %e, "sso complete-login failed");
            return Err("the sign-in provider failed; try again later".into());
        }
    };
    let provider = sso_provider(&row);
    let identity = sso_identity(identity);
    let max_members = crate::license_limits::limit(state, crate::license_limits::Limited::Members)
        .await
        .map_err(internal)?;
    let signed_in = state
        .accounts()
        .sso_sign_in(&org, &provider, &identity, max_members, &client.client())
        .await
        .map_err(|e| ApiError::from(e).message)?;
    let code = random_hex().map_err(internal)?;
    let mut tx = state
        .store()
        .write(&org)
        .await
        .map_err(|e| internal(e.into()))?;
    tx.finish_sso_login(
        &login.id,
        &signed_in.user.id,
        &hash_token(&code),
        now_ms() + EXCHANGE_TTL_MS,
        second_factor_reported(&identity, &provider.mfa_acr_values),
    )
    .await
    .map_err(|e| internal(e.into()))?;
    tx.commit().await.map_err(|e| internal(e.into()))?;
    Ok(code)
}

#[utoipa::path(post, path = "/api/v1/auth/sso/exchange", operation_id = "exchange_sso_code", tag = "sso",
    request_body = ExchangeRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody)))]
pub async fn exchange(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    ApiJson(req): ApiJson<ExchangeRequest>,
) -> ApiResult<Response> {
    let refused = || {
        ApiError::unauthorized(
            "this sign-in code was used, expired or belongs to another browser; sign in again",
        )
        .with_field("code")
    };
    let cookie = read_cookie(&state, &headers).ok_or_else(refused)?;
    let org = OrgId::parse(&cookie.org).ok_or_else(refused)?;
    let mut tx = state.store().write(&org).await?;
    let login = tx.sso_login(&cookie.login).await?.ok_or_else(refused)?;
    if login.browser_hash != hash_token(&cookie.secret) {
        return Err(refused());
    }
    let user_id = tx
        .spend_sso_exchange(&login.id, &hash_token(req.code.trim()))
        .await?
        .ok_or_else(refused)?;
    let user = tx.user_by_id(&user_id).await?.ok_or_else(refused)?;
    let outcome = state
        .accounts()
        .finish_sso_login(
            tx,
            &user,
            &client.client(),
            json!({"sso": true, "provider": login.provider_id}),
            &org,
            &login.provider_id,
            login.second_factor,
        )
        .await?;
    // The login is over: the browser forgets it.
    session_response(outcome, Some(cookie_header(&state, &headers, "", 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636_s256() {
        // RFC 7636, appendix B.
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn only_http_urls_have_an_origin() {
        assert_eq!(
            url_origin("https://idp.example/sso?x=1").as_deref(),
            Some("https://idp.example")
        );
        assert_eq!(
            url_origin("http://127.0.0.1:8080/a").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(url_origin("javascript:alert(1)"), None);
        assert_eq!(url_origin("https://evil.example'; script-src *"), None);
        assert_eq!(url_origin("https:///path"), None);
    }
}
