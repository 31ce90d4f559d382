//! Authentication: who is calling (from a bearer access token or API token) and from where.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use infrapilot_identity::{Role, TokenKind, hash_token};
use infrapilot_store::{DEFAULT_ORG_ID, MembershipRow, OrgId};

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
    /// The role in `org_id` (`super_admin` for the host operator in every organisation).
    pub role: Role,
    pub org_id: OrgId,
    pub credential: Credential,
    /// When the presented credential expires (ms since the epoch): nothing it mints may outlive it.
    pub expires_at: i64,
}

impl Principal {
    /// The caller as services and the audit trail name them, in the request's organisation.
    pub fn actor(&self, client: &ClientInfo) -> infrapilot_store::Actor {
        infrapilot_store::Actor {
            org_id: self.org_id.clone(),
            user_id: Some(self.user_id.clone()),
            label: self.email.clone(),
            ip: client.ip.clone(),
            role: Some(self.role.to_string()),
        }
    }

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

/// The header that names the organisation a signed-in person acts in (WebSocket upgrades, which
/// cannot set headers from a browser, may send the subprotocol `org.<id>` instead). Without it a
/// session acts in the person's oldest membership. An API token acts in its own organisation.
pub const ORG_HEADER: &str = "x-infrapilot-org";

/// A signed-in person, before or without an organisation: what personal routes (the person's
/// organisations, accepting an invitation, `auth/me`) are given.
#[derive(Debug, Clone)]
pub struct Person {
    pub user_id: String,
    pub email: String,
    pub credential: Credential,
    pub expires_at: i64,
    /// Holds `super_admin` in the default organisation: runs the host (plugins, licence,
    /// organisations) and acts as `super_admin` in every organisation.
    pub host_operator: bool,
}

impl Person {
    /// The person as services name them, acting in `org`.
    pub fn actor(&self, client: &ClientInfo, org: OrgId) -> infrapilot_store::Actor {
        infrapilot_store::Actor {
            org_id: org,
            user_id: Some(self.user_id.clone()),
            label: self.email.clone(),
            ip: client.ip.clone(),
            role: None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Person {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Person>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("sign in first"))
    }
}

/// Who is calling: the person, and the organisation they act in with their role there (`None`
/// for a person who belongs to none and named none).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub person: Person,
    pub org: Option<(OrgId, Role)>,
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Authenticated>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("sign in first"))
    }
}

impl Authenticated {
    /// The caller as the account service names them for what they do to their own account:
    /// recorded in the organisation the request acts in, or the host's for a person in none.
    pub fn actor(&self, client: &ClientInfo) -> infrapilot_store::Actor {
        let org = self
            .org
            .as_ref()
            .map(|(org, _)| org.clone())
            .unwrap_or_else(OrgId::default_org);
        self.person.actor(client, org)
    }

    pub fn session_id(&self) -> Option<&str> {
        match &self.person.credential {
            Credential::Session(id) => Some(id),
            Credential::ApiToken(_) => None,
        }
    }

    /// The principal of an organisation route.
    pub fn principal(&self) -> Option<Principal> {
        let (org_id, role) = self.org.clone()?;
        Some(Principal {
            user_id: self.person.user_id.clone(),
            email: self.person.email.clone(),
            role,
            org_id,
            credential: self.person.credential.clone(),
            expires_at: self.person.expires_at,
        })
    }
}

fn bearer_secret(headers: &HeaderMap) -> Result<&str, ApiError> {
    match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= 128)
                .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))
        }
        None => websocket_protocol(headers, "bearer.")
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token")),
    }
}

/// The organisation a request names: `requested` (a route's own `{id}` under `/api/v1/orgs`),
/// else the header, else a WebSocket's `org.<id>` subprotocol. An id that is not a UUID names
/// no organisation anyone has: 404 like any other.
fn named_org(headers: &HeaderMap, requested: Option<&str>) -> Result<Option<OrgId>, ApiError> {
    let text = match requested {
        Some(id) => Some(id),
        None => match headers.get(ORG_HEADER) {
            Some(v) => Some(v.to_str().map_err(|_| org_not_found())?),
            None => websocket_protocol(headers, "org."),
        },
    };
    match text {
        None => Ok(None),
        Some(t) => OrgId::parse(t.trim()).map(Some).ok_or_else(|| {
            if requested.is_some() {
                ApiError::not_found("id", "no such organisation among yours")
            } else {
                org_not_found()
            }
        }),
    }
}

/// Whether these memberships make their person the host operator (`super_admin` in the default
/// organisation).
pub(crate) fn is_host_operator(memberships: &[MembershipRow]) -> bool {
    memberships
        .iter()
        .any(|m| m.org_id == DEFAULT_ORG_ID && m.role == Role::SuperAdmin.as_str())
}

/// The role a person with these memberships acts with in `org`: `super_admin` for the host
/// operator (in every organisation), else their membership's; `None` when they hold none there.
pub(crate) fn role_among(
    memberships: &[MembershipRow],
    org: &OrgId,
) -> Result<Option<Role>, ApiError> {
    if is_host_operator(memberships) {
        return Ok(Some(Role::SuperAdmin));
    }
    memberships
        .iter()
        .find(|m| m.org_id == org.as_str())
        .map(|m| parse_role(&m.role))
        .transpose()
}

/// Whether a session may act in `org`: always, unless the organisation requires single sign-on
/// and the session was not made by one of its providers (admins and the host operator keep
/// their local sign-in for break-glass).
fn session_may_act_in(
    owner: &infrapilot_store::SessionOwner,
    memberships: &[MembershipRow],
    org: &OrgId,
    role: Role,
) -> bool {
    sso_policy_allows(memberships, org, role, owner.sso_org_id.as_deref())
}

/// The single sign-on policy for a session (or socket) acting in `org` with `role`, made by
/// the single sign-on of `sso_org` if any.
pub(crate) fn sso_policy_allows(
    memberships: &[MembershipRow],
    org: &OrgId,
    role: Role,
    sso_org: Option<&str>,
) -> bool {
    let required = memberships
        .iter()
        .any(|m| m.org_id == org.as_str() && m.require_sso);
    !required || role >= Role::Admin || sso_org == Some(org.as_str())
}

fn sso_required(memberships: &[MembershipRow], org: &OrgId) -> ApiError {
    let name = memberships
        .iter()
        .find(|m| m.org_id == org.as_str())
        .map(|m| m.org_name.as_str())
        .unwrap_or("this organisation");
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "sso_required",
        format!("{name} requires single sign-on: sign out and use its sign-in button"),
    )
}

fn org_not_found() -> ApiError {
    ApiError::not_found(ORG_HEADER, "no such organisation among yours")
}

/// Resolves the bearer credential in `headers` to a live person and the organisation the request
/// acts in (`requested`: the `{id}` of an `/api/v1/orgs/{id}` route). Another organisation's id,
/// like an unknown one, answers 404.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    requested: Option<&str>,
) -> Result<Authenticated, ApiError> {
    let secret = bearer_secret(headers)?;
    let named = named_org(headers, requested)?;
    let hash = hash_token(secret);
    let mut lookup = state.store().lookup().await?;
    let authenticated = if secret.starts_with(TokenKind::Access.prefix()) {
        let owner = lookup
            .session(&hash)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the access token is invalid or expired"))?;
        let memberships = lookup.memberships(&owner.user_id).await?;
        let host_operator = is_host_operator(&memberships);
        let org = match named {
            Some(org) => {
                if host_operator && lookup.organization(&org).await?.is_none() {
                    return Err(org_not_found());
                }
                let role = role_among(&memberships, &org)?.ok_or_else(org_not_found)?;
                if !session_may_act_in(&owner, &memberships, &org, role) {
                    return Err(sso_required(&memberships, &org));
                }
                Some((org, role))
            }
            // The oldest membership the session may act in.
            None => {
                let mut acting = None;
                for m in &memberships {
                    let org = OrgId::parse(&m.org_id).ok_or_else(|| {
                        ApiError::internal("a membership's organisation id is not a UUID")
                    })?;
                    let role = role_among(&memberships, &org)?.ok_or_else(org_not_found)?;
                    if session_may_act_in(&owner, &memberships, &org, role) {
                        acting = Some((org, role));
                        break;
                    }
                }
                match (acting, memberships.first()) {
                    (Some(acting), _) => Some(acting),
                    (None, Some(first)) => {
                        let org = OrgId::parse(&first.org_id).unwrap_or_else(OrgId::default_org);
                        return Err(sso_required(&memberships, &org));
                    }
                    (None, None) => None,
                }
            }
        };
        Authenticated {
            person: Person {
                user_id: owner.user_id,
                email: owner.email,
                credential: Credential::Session(owner.session_id),
                expires_at: owner.expires_at,
                host_operator,
            },
            org,
        }
    } else if secret.starts_with(TokenKind::Api.prefix()) {
        let invalid = || ApiError::unauthorized("the API token is invalid, revoked or expired");
        let org = lookup.org_of_api_token(&hash).await?.ok_or_else(invalid)?;
        drop(lookup);
        if named.as_ref().is_some_and(|n| *n != org) {
            // A token acts in its own organisation only.
            return Err(org_not_found());
        }
        let mut tx = state.store().read(&org).await?;
        let (owner, creator_role) = tx.api_token_by_hash(&hash).await?.ok_or_else(invalid)?;
        let require_sso = tx.require_sso().await?;
        drop(tx);
        // A token never acts above its creator's current role.
        let role = parse_role(&owner.role)?.min(parse_role(&creator_role)?);
        // Under a single sign-on requirement only admins' tokens act: a member's token could
        // have been made from a password session, or outlive the provider that signed them in.
        if require_sso && parse_role(&creator_role)? < Role::Admin {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "sso_required",
                "this organisation requires single sign-on: only its admins' API tokens act in it",
            ));
        }
        Authenticated {
            person: Person {
                user_id: owner.user_id,
                email: owner.email,
                credential: Credential::ApiToken(owner.credential_id),
                expires_at: owner.expires_at,
                host_operator: org.is_default() && role == Role::SuperAdmin,
            },
            org: Some((org, role)),
        }
    } else {
        return Err(ApiError::unauthorized("unrecognised bearer token"));
    };
    Ok(authenticated)
}

/// Records an API token's use (bookkeeping only: off the request path, so that token calls
/// never queue on the write lock).
pub fn note_token_use(state: &AppState, authenticated: &Authenticated) {
    if let (Credential::ApiToken(id), Some((org, _))) =
        (&authenticated.person.credential, &authenticated.org)
    {
        let (store, org, id) = (state.store().clone(), org.clone(), id.clone());
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
}

/// Browsers cannot set headers on a WebSocket, so the token may travel as a subprotocol
/// `bearer.<token>` of a WebSocket upgrade (the way Kubernetes does it), and the organisation as
/// `org.<id>`.
fn websocket_protocol<'h>(headers: &'h HeaderMap, prefix: &str) -> Option<&'h str> {
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
        .find_map(|p| p.strip_prefix(prefix))
        .filter(|s| !s.is_empty() && s.len() <= 128)
}

fn parse_role(s: &str) -> Result<Role, ApiError> {
    Role::parse(s).ok_or_else(|| ApiError::internal(format!("unknown role {s:?} in the database")))
}
