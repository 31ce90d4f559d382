//! Single sign-on with OpenID Connect: the authorization-code flow with PKCE (S256), run by the
//! `openidconnect` crate over the host's HTTP capability. The host hands over the `state`, nonce
//! and PKCE challenge of each login and keeps them (single use, bound to the browser); this plugin
//! discovers the provider, builds the authorization URL, exchanges the code with the verifier,
//! and checks the ID token (signature against the provider's keys, issuer, audience, expiry and
//! nonce, with the host's clock). It reports groups; the host maps them to roles.
//!
//! Presets: `generic` (any issuer), `entra` (Microsoft Entra ID: the tenant's v2.0 issuer;
//! groups from the `groups` claim), `google` (Google Workspace: the `hd` claim must be the
//! configured domain), `github` (GitHub or GitHub Enterprise Server: OAuth 2.0 without an ID
//! token, see [`github`]).

mod github;

use base64::Engine;
use infrapilot_plugin_sdk::sso::{
    Identity, LoginCallback, LoginError, LoginMethod, LoginRequest, LoginStart, PluginError,
    SsoProvider, clock, config, http, jws, random,
};
use infrapilot_plugin_sdk::sso_provider::infrapilot::plugin::types::Header;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Settings {
    #[serde(default = "generic")]
    preset: String,
    issuer: Option<String>,
    tenant: Option<String>,
    client_id: String,
    #[serde(default = "default_scopes")]
    scopes: String,
    #[serde(default = "default_groups_claim")]
    groups_claim: String,
    hosted_domain: Option<String>,
    github_url: Option<String>,
    /// Microsoft Graph's base URL, for Entra's group overage (and for any provider whose ID
    /// tokens use `_claim_names` for groups, when set).
    graph_url: Option<String>,
    /// GitHub: only members of one of these organisations sign in (space or comma separated).
    allowed_organizations: Option<String>,
}

fn generic() -> String {
    "generic".into()
}

fn default_scopes() -> String {
    "openid email profile".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

impl Settings {
    fn load() -> Result<Settings, String> {
        serde_json::from_str(&config::settings()).map_err(|e| format!("settings: {e}"))
    }

    /// The issuer the preset implies.
    fn issuer(&self) -> Result<String, String> {
        match self.preset.as_str() {
            "entra" => {
                let tenant = self
                    .tenant
                    .as_deref()
                    .filter(|t| {
                        !t.is_empty()
                            && t.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                    })
                    .ok_or("tenant: the directory (tenant) id or domain of Entra ID")?;
                Ok(format!("https://login.microsoftonline.com/{tenant}/v2.0"))
            }
            "google" => Ok("https://accounts.google.com".into()),
            "generic" => self
                .issuer
                .clone()
                .filter(|i| !i.is_empty())
                .ok_or_else(|| "issuer: the OpenID Provider's issuer URL".into()),
            "github" => Ok(github::GitHub::new(self.github_url.as_deref())?
                .issuer()
                .to_owned()),
            other => Err(format!(
                "preset: {other:?} is not generic, entra, google or github"
            )),
        }
    }

    /// Where to ask for the groups of an overage: Graph for the entra preset (or the
    /// `graph_url` setting, https or loopback http), none otherwise.
    fn graph_for_overage(&self) -> Option<String> {
        let configured = self
            .graph_url
            .as_deref()
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| {
                u.starts_with("https://")
                    || u.starts_with("http://127.0.0.1:")
                    || u.starts_with("http://localhost:")
            });
        match (self.preset.as_str(), configured) {
            (_, Some(url)) => Some(url),
            ("entra", None) => Some("https://graph.microsoft.com".into()),
            _ => None,
        }
    }

    fn github(&self) -> Option<Result<github::GitHub, String>> {
        (self.preset == "github").then(|| github::GitHub::new(self.github_url.as_deref()))
    }

    fn allowed_organizations(&self) -> Vec<String> {
        self.allowed_organizations
            .as_deref()
            .unwrap_or_default()
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|o| !o.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    }

    fn client_secret(&self) -> Option<ClientSecret> {
        config::secret("client_secret").ok().map(ClientSecret::new)
    }
}

/// An issuer URL fit for trust: https, or http to loopback (a test provider on this machine).
fn checked_issuer(raw: &str) -> Result<IssuerUrl, String> {
    let url = IssuerUrl::new(raw.to_owned()).map_err(|e| format!("issuer: {e}"))?;
    let parsed = url.url();
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err("issuer: must be an https URL".into()),
    }
}

// ---- the host's HTTP capability as openidconnect's client --------------------------------

#[derive(Debug)]
struct HostHttpError(String);

impl std::fmt::Display for HostHttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostHttpError {}

/// Requests go through the host (its egress rules, limits and timeouts); redirects are not
/// followed, as openidconnect asks of its clients.
struct HostHttp;

impl openidconnect::SyncHttpClient for HostHttp {
    type Error = HostHttpError;

    fn call(
        &self,
        request: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, HostHttpError> {
        let method = match *request.method() {
            ::http::Method::GET => http::Method::Get,
            ::http::Method::POST => http::Method::Post,
            ref other => {
                return Err(HostHttpError(format!(
                    "method {other} is not used by OpenID Connect"
                )));
            }
        };
        let headers = request
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                v.to_str().ok().map(|v| Header {
                    name: k.as_str().to_owned(),
                    value: v.to_owned(),
                })
            })
            .collect();
        let body = request.body();
        let response = http::fetch(&http::Request {
            method,
            url: request.uri().to_string(),
            headers,
            body: (!body.is_empty()).then(|| body.clone()),
            timeout_ms: None,
        })
        .map_err(|e| HostHttpError(format!("{e:?}")))?;
        let mut builder = ::http::Response::builder().status(response.status);
        for header in &response.headers {
            builder = builder.header(header.name.as_str(), header.value.as_str());
        }
        builder
            .body(response.body)
            .map_err(|e| HostHttpError(e.to_string()))
    }
}

// ---- randomness and time from the host ---------------------------------------------------------

/// openidconnect draws random numbers through rand (getrandom 0.2), which has no source on
/// wasm32-unknown-unknown: the host's `random` capability is that source.
fn host_random(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    for chunk in buf.chunks_mut(4096) {
        let bytes = random::fill(chunk.len() as u32);
        if bytes.len() != chunk.len() {
            return Err(getrandom::Error::UNSUPPORTED);
        }
        chunk.copy_from_slice(&bytes);
    }
    Ok(())
}
getrandom::register_custom_getrandom!(host_random);

// ---- the provider ---------------------------------------------------------------------------

fn unavailable(e: impl std::fmt::Display) -> LoginError {
    LoginError::Unavailable(e.to_string())
}

/// The client for the provider's discovered endpoints, its key set (JSON) for the host's
/// signature check, and the algorithms it signs ID tokens with.
struct Discovered {
    client: CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    jwks: String,
    id_token_algs: Vec<String>,
}

fn client(settings: &Settings, redirect: &str) -> Result<Discovered, LoginError> {
    let issuer = settings.issuer().map_err(LoginError::InvalidSettings)?;
    let issuer = checked_issuer(&issuer).map_err(LoginError::InvalidSettings)?;
    let metadata = CoreProviderMetadata::discover(&issuer, &HostHttp).map_err(unavailable)?;
    // The code, the secret and the keys travel to the endpoints discovery names: they are as
    // protected as the issuer (https, or the issuer's own loopback http).
    let issuer_scheme = issuer.url().scheme().to_owned();
    let endpoints = [
        Some(metadata.authorization_endpoint().url()),
        metadata.token_endpoint().map(|t| t.url()),
        Some(metadata.jwks_uri().url()),
    ];
    for url in endpoints.into_iter().flatten() {
        let same_http_host = issuer_scheme == "http" && url.host_str() == issuer.url().host_str();
        if url.scheme() != "https" && !same_http_host {
            return Err(LoginError::Rejected(format!(
                "the provider's discovery names a plain http endpoint ({url})"
            )));
        }
    }
    let redirect = RedirectUrl::new(redirect.to_owned())
        .map_err(|e| LoginError::InvalidSettings(format!("callback URL: {e}")))?;
    let jwks = serde_json::to_string(metadata.jwks()).map_err(unavailable)?;
    let id_token_algs = metadata
        .id_token_signing_alg_values_supported()
        .iter()
        .filter_map(|alg| serde_json::to_value(alg).ok()?.as_str().map(str::to_owned))
        .collect();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(settings.client_id.clone()),
        settings.client_secret(),
    )
    .set_redirect_uri(redirect);
    Ok(Discovered {
        client,
        jwks,
        id_token_algs,
    })
}

struct OidcProvider;

impl SsoProvider for OidcProvider {
    fn validate() -> Result<(), PluginError> {
        let settings = Settings::load().map_err(PluginError::InvalidSettings)?;
        if let Some(github) = settings.github() {
            github.map_err(PluginError::InvalidSettings)?;
            if settings.client_id.trim().is_empty() {
                return Err(PluginError::InvalidSettings("client_id: required".into()));
            }
            if settings.client_secret().is_none() {
                return Err(PluginError::InvalidSettings(
                    "client_secret: GitHub's OAuth apps need their client secret".into(),
                ));
            }
            // Anyone can have a GitHub account: the organisations whose members may sign in
            // are required.
            if settings.allowed_organizations().is_empty() {
                return Err(PluginError::InvalidSettings(
                    "allowed_organizations: the GitHub organisations whose members may sign in"
                        .into(),
                ));
            }
            return Ok(());
        }
        let issuer = settings.issuer().map_err(PluginError::InvalidSettings)?;
        checked_issuer(&issuer).map_err(PluginError::InvalidSettings)?;
        if settings.client_id.trim().is_empty() {
            return Err(PluginError::InvalidSettings("client_id: required".into()));
        }
        if !settings.scopes.split_whitespace().any(|s| s == "openid") {
            return Err(PluginError::InvalidSettings(
                "scopes: must include openid".into(),
            ));
        }
        if settings.preset == "google"
            && settings.hosted_domain.as_deref().is_none_or(str::is_empty)
        {
            return Err(PluginError::InvalidSettings(
                "hosted_domain: the Google Workspace domain whose accounts may sign in".into(),
            ));
        }
        Ok(())
    }

    fn begin_login(request: LoginRequest) -> Result<LoginStart, LoginError> {
        let settings = Settings::load().map_err(LoginError::InvalidSettings)?;
        if let Some(github) = settings.github() {
            let github = github.map_err(LoginError::InvalidSettings)?;
            let url = github.authorize_url(
                &settings.client_id,
                &request,
                "read:user user:email read:org",
            )?;
            return Ok(LoginStart {
                method: LoginMethod::Redirect(url),
                context: None,
            });
        }
        let client = client(&settings, &request.callback_url)?.client;
        let (state, nonce) = (request.state.clone(), request.nonce.clone());
        let mut authorize = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        );
        for scope in settings
            .scopes
            .split_whitespace()
            .filter(|s| *s != "openid")
        {
            authorize = authorize.add_scope(Scope::new(scope.to_owned()));
        }
        // The host holds the verifier; the plugin sends its S256 challenge.
        authorize = authorize
            .add_extra_param("code_challenge", request.code_challenge.clone())
            .add_extra_param("code_challenge_method", "S256");
        if settings.preset == "google"
            && let Some(domain) = &settings.hosted_domain
        {
            authorize = authorize.add_extra_param("hd", domain.clone());
        }
        let (url, _, _) = authorize.url();
        Ok(LoginStart {
            method: LoginMethod::Redirect(url.to_string()),
            context: None,
        })
    }

    fn complete_login(callback: LoginCallback) -> Result<Identity, LoginError> {
        let settings = Settings::load().map_err(LoginError::InvalidSettings)?;
        let param = |name: &str| {
            callback
                .params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let code = param("code")
            .ok_or_else(|| LoginError::Rejected("the answer carries no code".into()))?;
        if let Some(github) = settings.github() {
            let github = github.map_err(LoginError::InvalidSettings)?;
            let secret = settings
                .client_secret()
                .ok_or_else(|| LoginError::InvalidSettings("client_secret: not set".into()))?;
            let token = github.exchange(
                &settings.client_id,
                secret.secret(),
                &code,
                &callback.code_verifier,
                &callback.request.callback_url,
            )?;
            let identity = github.identity(&token)?;
            let allowed = settings.allowed_organizations();
            if allowed.is_empty()
                || !identity
                    .groups
                    .iter()
                    .any(|g| !g.contains('/') && allowed.contains(&g.to_ascii_lowercase()))
            {
                return Err(LoginError::Rejected(format!(
                    "the GitHub account is not a member of {}",
                    allowed.join(", ")
                )));
            }
            return Ok(identity);
        }
        let Discovered {
            client,
            jwks,
            id_token_algs,
        } = client(&settings, &callback.request.callback_url)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| LoginError::InvalidSettings(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(callback.code_verifier.clone()))
            .request(&HostHttp)
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    LoginError::Rejected(format!("the token endpoint refused the code: {r}"))
                }
                other => unavailable(other),
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| LoginError::Rejected("the token response has no ID token".into()))?;
        // The signature is checked by the host, natively (an RSA check in WebAssembly would be
        // most of a login's time): the key the token names from the provider's set, an
        // asymmetric algorithm that key suits. The claims are checked here, below.
        // Only an algorithm the provider's discovery lists for ID tokens.
        let alg = id_token
            .signing_alg()
            .ok()
            .and_then(|alg| serde_json::to_value(alg).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if !id_token_algs.contains(&alg) {
            return Err(LoginError::Rejected(format!(
                "the ID token does not hold: it is signed with {alg:?}, which the provider does not list for ID tokens ({})",
                id_token_algs.join(", ")
            )));
        }
        jws::verify(&id_token.to_string(), &jwks)
            .map_err(|e| LoginError::Rejected(format!("the ID token does not hold: {e}")))?;
        let now_ms = clock::now_unix_ms();
        let verifier = client
            .id_token_verifier()
            .insecure_disable_signature_check()
            .set_time_fn(move || {
                chrono::DateTime::from_timestamp_millis(now_ms as i64).unwrap_or_default()
            });
        let claims = id_token
            .claims(&verifier, &Nonce::new(callback.request.nonce.clone()))
            .map_err(|e| LoginError::Rejected(format!("the ID token does not hold: {e}")))?;
        // What the signature covers, read again for the claims the core types leave out.
        let payload = signed_payload(&id_token.to_string())?;
        if settings.preset == "google" {
            let expected = settings.hosted_domain.as_deref().unwrap_or_default();
            if payload.get("hd").and_then(Value::as_str) != Some(expected) {
                return Err(LoginError::Rejected(format!(
                    "the account is not one of the Google Workspace domain {expected}"
                )));
            }
        }
        let mut groups: Vec<String> = match payload.get(settings.groups_claim.as_str()) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if let Some(graph) = settings.graph_for_overage()
            && group_overage(&payload, &settings.groups_claim)
        {
            // Too many groups for the token (Entra's overage: `_claim_names` points at a
            // source instead): Microsoft Graph lists them for the signed-in person.
            groups = entra_groups(&graph, tokens.access_token().secret())?;
        }
        let mut attributes = Vec::new();
        for name in ["amr", "acr", "auth_time"] {
            if let Some(value) = payload.get(name) {
                attributes.push((name.to_owned(), value.to_string()));
            }
        }
        Ok(Identity {
            subject: claims.subject().to_string(),
            issuer: claims.issuer().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            groups,
            attributes,
        })
    }

    fn check_password(_username: String, _password: String) -> Result<Identity, LoginError> {
        Err(LoginError::Unsupported)
    }
}

/// Whether the ID token says the groups claim did not fit (`_claim_names` names it, or Entra's
/// `hasgroups`).
fn group_overage(payload: &Value, groups_claim: &str) -> bool {
    payload
        .get("_claim_names")
        .and_then(|names| names.get(groups_claim))
        .is_some()
        || payload.get("hasgroups").and_then(Value::as_bool) == Some(true)
}

/// The ids of every group (transitive) of the person the access token is for, from Microsoft
/// Graph's `getMemberObjects` (the app needs the delegated permission GroupMember.Read.All).
fn entra_groups(graph: &str, access_token: &str) -> Result<Vec<String>, LoginError> {
    let response = http::fetch(&http::Request {
        method: http::Method::Post,
        url: format!("{graph}/v1.0/me/getMemberObjects"),
        headers: vec![
            Header {
                name: "authorization".into(),
                value: format!("Bearer {access_token}"),
            },
            Header {
                name: "content-type".into(),
                value: "application/json".into(),
            },
        ],
        body: Some(br#"{"securityEnabledOnly":false}"#.to_vec()),
        timeout_ms: None,
    })
    .map_err(|e| LoginError::Unavailable(format!("Microsoft Graph: {e:?}")))?;
    if response.status != 200 {
        return Err(LoginError::Unavailable(format!(
            "Microsoft Graph answered {} for the groups (the app needs GroupMember.Read.All)",
            response.status
        )));
    }
    let answer: Value = serde_json::from_slice(&response.body)
        .map_err(|e| LoginError::Unavailable(format!("Microsoft Graph: {e}")))?;
    Ok(answer
        .get("value")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// The JSON payload of a compact JWS whose signature was checked already.
fn signed_payload(jwt: &str) -> Result<Value, LoginError> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| LoginError::Rejected("the ID token is not a compact JWS".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| LoginError::Rejected("the ID token's payload is not base64url".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| LoginError::Rejected(format!("the ID token's payload: {e}")))
}

infrapilot_plugin_sdk::export_sso_provider!(OidcProvider);
