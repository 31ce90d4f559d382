//! Authentication: who is calling (from a bearer access token or API token) and from where.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use infrapilot_identity::{Role, TokenKind, hash_token};
use infrapilot_store::DEFAULT_ORG_ID;

use crate::error::ApiError;
use crate::state::AppState;

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Session(String),
    ApiToken(String),
}

/// The authenticated caller of a protected route (put in place by [`crate::access::authorize`]).
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub org_id: String,
    pub credential: Credential,
    /// When the presented credential expires (ms since the epoch): nothing it mints may outlive it.
    pub expires_at: i64,
}

impl Principal {
    pub fn session_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::Session(id) => Some(id),
            Credential::ApiToken(_) => None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("sign in first"))
    }
}

/// The client's address and user agent, for audit events and throttling.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: String,
}

impl ClientInfo {
    fn from_parts(extensions: &axum::http::Extensions, headers: &HeaderMap) -> ClientInfo {
        let ip = extensions
            .get::<crate::edge::ClientAddress>()
            .map(|c| c.0.to_string())
            .or_else(|| {
                extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip().to_string())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect())
            .unwrap_or_default();
        ClientInfo { ip, user_agent }
    }

    /// The caller as the account service sees it.
    pub fn client(&self) -> infrapilot_accounts::Client {
        infrapilot_accounts::Client {
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            throttle_key: self.throttle_key(),
        }
    }

    /// The key the address throttles count under: the address, or its /64 for IPv6 (one
    /// subscriber usually holds a whole /64, so per-address keys would be free to rotate).
    pub fn throttle_key(&self) -> String {
        match self.ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            Ok(std::net::IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .map(|v4| v4.to_string())
                .unwrap_or_default(),
            _ => self.ip.clone(),
        }
    }

    pub fn from_request_ref(request: &Request) -> ClientInfo {
        ClientInfo::from_parts(request.extensions(), request.headers())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientInfo::from_parts(&parts.extensions, &parts.headers))
    }
}

/// Resolves the bearer credential in `headers` to a live principal.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let secret = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= 128)
                .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?
        }
        None => websocket_bearer(headers)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?,
    };
    let hash = hash_token(secret);
    let mut tx = state.store().read(DEFAULT_ORG_ID).await?;
    let principal = if secret.starts_with(TokenKind::Access.prefix()) {
        let owner = tx
            .session_by_access_hash(&hash)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the access token is invalid or expired"))?;
        Principal {
            role: parse_role(&owner.role)?,
            user_id: owner.user_id,
            email: owner.email,
            org_id: tx.org_id().to_owned(),
            expires_at: owner.expires_at,
            credential: Credential::Session(owner.credential_id),
        }
    } else if secret.starts_with(TokenKind::Api.prefix()) {
        let (owner, creator_role) = tx.api_token_by_hash(&hash).await?.ok_or_else(|| {
            ApiError::unauthorized("the API token is invalid, revoked or expired")
        })?;
        // A token never acts above its creator's current role.
        let role = parse_role(&owner.role)?.min(parse_role(&creator_role)?);
        Principal {
            role,
            user_id: owner.user_id,
            email: owner.email,
            org_id: tx.org_id().to_owned(),
            expires_at: owner.expires_at,
            credential: Credential::ApiToken(owner.credential_id),
        }
    } else {
        return Err(ApiError::unauthorized("unrecognised bearer token"));
    };
    drop(tx);
    if let Credential::ApiToken(id) = &principal.credential {
        // Bookkeeping only: kept off the request path so that token calls never queue on the
        // write lock.
        let (store, org, id) = (state.store().clone(), principal.org_id.clone(), id.clone());
        tokio::spawn(async move {
            let touched = async {
                let mut tx = store.write(&org).await?;
                tx.touch_api_token(&id).await?;
                tx.commit().await
            };
            if let Err(e) = touched.await {
                tracing::warn!(error = %e, "could not record API token use");
            }
        });
    }
    Ok(principal)
}

/// Browsers cannot set headers on a WebSocket, so the token may travel as a subprotocol
/// `bearer.<token>` of a WebSocket upgrade (the way Kubernetes does it).
fn websocket_bearer(headers: &HeaderMap) -> Option<&str> {
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix("bearer."))
        .filter(|s| !s.is_empty() && s.len() <= 128)
}

fn parse_role(s: &str) -> Result<Role, ApiError> {
    Role::parse(s).ok_or_else(|| ApiError::internal(format!("unknown role {s:?} in the database")))
}
