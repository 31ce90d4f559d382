//! Authorization in one place: every route's minimum role, next to the router.
//!
//! The [`authorize`] middleware looks each request up here by its matched route template and
//! method. A route with no rule is refused for everyone (deny by default); a test walks the
//! router and fails if any route lacks a rule.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use infrapilot_identity::Role;

use crate::auth::{ClientInfo, Credential, authenticate};
use crate::error::ApiError;
use crate::state::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// A signed-in user or API token with at least this role.
    Role(Role),
    /// A signed-in user (an interactive session, never an API token) with at least this role:
    /// managing one's own account (password, MFA, sessions) and minting API tokens.
    Interactive(Role),
    /// A signed-in person in no particular organisation (session or API token): their own
    /// organisations, their profile. The handler gets a [`crate::auth::Person`].
    Person,
    /// A signed-in person's interactive session, in no particular organisation: making an
    /// organisation, accepting an invitation.
    PersonInteractive,
}

use Access::{Interactive as I, Person as P, PersonInteractive as PI, Public, Role as R};
use Role::{Admin, Operator, SuperAdmin, Viewer};

/// `(method, route template, access)` for every route the API serves.
pub const ACCESS_RULES: &[(&str, &str, Access)] = &[
    // health and documents
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/metrics", Public),
    ("GET", "/api/v1/openapi.json", Public),
    // first run
    ("GET", "/api/v1/setup", Public),
    ("POST", "/api/v1/setup", Public),
    // signing up (SaaS edition) and in
    ("POST", "/api/v1/signup", Public),
    ("POST", "/api/v1/signup/verify", Public),
    ("POST", "/api/v1/auth/login", Public),
    ("POST", "/api/v1/auth/mfa/verify", Public),
    ("POST", "/api/v1/auth/refresh", Public),
    ("GET", "/api/v1/auth/sso/providers", Public),
    ("GET", "/api/v1/auth/sso/{id}/start", Public),
    ("GET", "/api/v1/auth/sso/{id}/callback", Public),
    ("POST", "/api/v1/auth/sso/{id}/callback", Public),
    ("POST", "/api/v1/auth/sso/exchange", Public),
    ("POST", "/api/v1/auth/sso/{id}/password", Public),
    ("GET", "/api/v1/auth/sso/{id}/metadata", Public),
    // one's own account (also for a person who belongs to no organisation)
    ("POST", "/api/v1/auth/logout", PI),
    ("GET", "/api/v1/auth/me", P),
    ("PUT", "/api/v1/auth/password", PI),
    ("GET", "/api/v1/auth/sessions", PI),
    ("DELETE", "/api/v1/auth/sessions/{id}", PI),
    ("GET", "/api/v1/auth/mfa", PI),
    ("POST", "/api/v1/auth/mfa/enroll", PI),
    ("POST", "/api/v1/auth/mfa/confirm", PI),
    ("POST", "/api/v1/auth/mfa/disable", PI),
    ("POST", "/api/v1/auth/mfa/backup-codes", PI),
    // users
    ("GET", "/api/v1/users", R(Admin)),
    // Making or changing accounts (passwords, roles) needs a signed-in session: a stolen
    // token must not mint itself a user.
    ("POST", "/api/v1/users", I(SuperAdmin)),
    ("GET", "/api/v1/users/{id}", R(Admin)),
    ("PATCH", "/api/v1/users/{id}", I(SuperAdmin)),
    ("DELETE", "/api/v1/users/{id}", I(SuperAdmin)),
    ("DELETE", "/api/v1/users/{id}/mfa", I(SuperAdmin)),
    // API tokens
    ("GET", "/api/v1/tokens", R(Admin)),
    ("POST", "/api/v1/tokens", I(Admin)),
    ("DELETE", "/api/v1/tokens/{id}", R(Admin)),
    // nodes
    ("GET", "/api/v1/enrollment-tokens", R(Admin)),
    ("POST", "/api/v1/enrollment-tokens", R(Admin)),
    ("DELETE", "/api/v1/enrollment-tokens/{id}", R(Admin)),
    // the installer and the agent binary it downloads (verified by its SHA-256)
    ("GET", "/install.sh", Public),
    ("GET", "/downloads/infrapilot-agent", Public),
    ("GET", "/downloads/infrapilot-agent.sha256", Public),
    // the enrollment token in the body is the credential
    ("POST", "/api/v1/agents/enroll", Public),
    ("GET", "/api/v1/agents", R(Viewer)),
    ("GET", "/api/v1/agents/{id}", R(Viewer)),
    ("POST", "/api/v1/agents/{id}/revoke", R(Admin)),
    // containers on a node
    ("GET", "/api/v1/agents/{id}/containers", R(Viewer)),
    ("POST", "/api/v1/agents/{id}/containers", R(Operator)),
    ("GET", "/api/v1/agents/{id}/containers/{cid}", R(Viewer)),
    ("DELETE", "/api/v1/agents/{id}/containers/{cid}", R(Admin)),
    (
        "POST",
        "/api/v1/agents/{id}/containers/{cid}/env/reveal",
        R(Admin),
    ),
    (
        "POST",
        "/api/v1/agents/{id}/containers/{cid}/start",
        R(Operator),
    ),
    (
        "POST",
        "/api/v1/agents/{id}/containers/{cid}/stop",
        R(Operator),
    ),
    (
        "POST",
        "/api/v1/agents/{id}/containers/{cid}/restart",
        R(Operator),
    ),
    (
        "POST",
        "/api/v1/agents/{id}/stacks/{project}/start",
        R(Operator),
    ),
    (
        "POST",
        "/api/v1/agents/{id}/stacks/{project}/stop",
        R(Operator),
    ),
    (
        "POST",
        "/api/v1/agents/{id}/stacks/{project}/restart",
        R(Operator),
    ),
    (
        "GET",
        "/api/v1/agents/{id}/containers/{cid}/logs",
        R(Viewer),
    ),
    (
        "GET",
        "/api/v1/agents/{id}/containers/{cid}/logs/ws",
        R(Viewer),
    ),
    (
        "GET",
        "/api/v1/agents/{id}/containers/{cid}/exec/ws",
        // A terminal reads what env/reveal guards (admin), and more: admin only.
        R(Admin),
    ),
    ("GET", "/api/v1/agents/{id}/events", R(Viewer)),
    ("GET", "/api/v1/agents/{id}/commands", R(Viewer)),
    // logs of the organisation's nodes
    ("GET", "/api/v1/logs", R(Viewer)),
    ("GET", "/api/v1/logs/volume", R(Viewer)),
    ("GET", "/api/v1/logs/export.csv", R(Viewer)),
    ("GET", "/api/v1/logs/stream", R(Viewer)),
    ("GET", "/api/v1/logs/retention", R(Viewer)),
    ("PUT", "/api/v1/logs/retention", R(Admin)),
    // the nodes' health (the database and host process for the host operator only)
    ("GET", "/api/v1/health", R(Viewer)),
    ("GET", "/api/v1/health/nodes/{id}/samples", R(Viewer)),
    // plugins (host-wide: the operator's) and the licence
    ("GET", "/api/v1/plugins", R(Viewer)),
    ("POST", "/api/v1/plugins", R(SuperAdmin)),
    ("GET", "/api/v1/plugins/{id}", R(Viewer)),
    ("DELETE", "/api/v1/plugins/{id}", R(SuperAdmin)),
    ("POST", "/api/v1/plugins/{id}/enable", R(SuperAdmin)),
    ("POST", "/api/v1/plugins/{id}/disable", R(SuperAdmin)),
    ("GET", "/api/v1/license", R(Viewer)),
    ("PUT", "/api/v1/license", R(SuperAdmin)),
    // alerting
    // reverse proxy hosts of a node
    ("GET", "/api/v1/agents/{id}/proxies", R(Viewer)),
    ("POST", "/api/v1/agents/{id}/proxies", R(Admin)),
    ("GET", "/api/v1/agents/{id}/proxies/{pid}", R(Viewer)),
    ("PUT", "/api/v1/agents/{id}/proxies/{pid}", R(Admin)),
    ("DELETE", "/api/v1/agents/{id}/proxies/{pid}", R(Admin)),
    ("GET", "/api/v1/agents/{id}/proxies/revisions", R(Viewer)),
    (
        "POST",
        "/api/v1/agents/{id}/proxies/revisions/{number}/rollback",
        R(Admin),
    ),
    ("POST", "/api/v1/agents/{id}/proxies/reapply", R(Admin)),
    ("GET", "/api/v1/agents/{id}/proxies/drift", R(Operator)),
    ("GET", "/api/v1/proxy-certificates", R(Viewer)),
    ("POST", "/api/v1/proxy-certificates", R(Admin)),
    ("GET", "/api/v1/proxy-certificates/{cid}", R(Viewer)),
    ("PUT", "/api/v1/proxy-certificates/{cid}", R(Admin)),
    ("DELETE", "/api/v1/proxy-certificates/{cid}", R(Admin)),
    ("GET", "/api/v1/sso/providers", R(Admin)),
    ("POST", "/api/v1/sso/providers", R(Admin)),
    ("GET", "/api/v1/sso/providers/{id}", R(Admin)),
    ("PATCH", "/api/v1/sso/providers/{id}", R(Admin)),
    ("DELETE", "/api/v1/sso/providers/{id}", R(Admin)),
    ("GET", "/api/v1/sso/policy", R(Admin)),
    ("PUT", "/api/v1/sso/policy", R(Admin)),
    ("GET", "/api/v1/alerts/channels", R(Viewer)),
    ("POST", "/api/v1/alerts/channels", R(Admin)),
    ("GET", "/api/v1/alerts/channels/{id}", R(Viewer)),
    ("PATCH", "/api/v1/alerts/channels/{id}", R(Admin)),
    ("DELETE", "/api/v1/alerts/channels/{id}", R(Admin)),
    ("POST", "/api/v1/alerts/channels/{id}/test", R(Admin)),
    ("GET", "/api/v1/policies", R(Viewer)),
    ("POST", "/api/v1/policies", R(Admin)),
    ("GET", "/api/v1/policies/types", R(Viewer)),
    ("GET", "/api/v1/policies/violations", R(Viewer)),
    ("POST", "/api/v1/policies/dry-run", R(Admin)),
    ("GET", "/api/v1/policies/{id}", R(Viewer)),
    ("PUT", "/api/v1/policies/{id}", R(Admin)),
    ("DELETE", "/api/v1/policies/{id}", R(Admin)),
    ("GET", "/api/v1/alerts/rules", R(Viewer)),
    ("POST", "/api/v1/alerts/rules", R(Admin)),
    ("PATCH", "/api/v1/alerts/rules/{id}", R(Admin)),
    ("DELETE", "/api/v1/alerts/rules/{id}", R(Admin)),
    ("GET", "/api/v1/alerts/history", R(Viewer)),
    // audit
    ("GET", "/api/v1/audit", R(Admin)),
    ("GET", "/api/v1/audit/verify", R(Admin)),
    // reference data for forms
    ("GET", "/api/v1/roles", R(Viewer)),
    // organisations: the `{id}` in the path is the organisation the request acts in
    ("GET", "/api/v1/orgs", P),
    ("POST", "/api/v1/orgs", PI),
    ("GET", "/api/v1/orgs/{id}", R(Viewer)),
    ("PUT", "/api/v1/orgs/{id}", I(Admin)),
    ("DELETE", "/api/v1/orgs/{id}", I(Admin)),
    ("GET", "/api/v1/orgs/{id}/members", R(Viewer)),
    ("POST", "/api/v1/orgs/{id}/members", I(Admin)),
    ("PUT", "/api/v1/orgs/{id}/members/{uid}", I(Admin)),
    ("DELETE", "/api/v1/orgs/{id}/members/{uid}", I(Viewer)),
    ("DELETE", "/api/v1/orgs/{id}/members/{uid}/mfa", I(Admin)),
    ("GET", "/api/v1/orgs/{id}/invitations", R(Admin)),
    ("POST", "/api/v1/orgs/{id}/invitations", I(Admin)),
    ("DELETE", "/api/v1/orgs/{id}/invitations/{iid}", I(Admin)),
    ("POST", "/api/v1/invitations/{token}/accept", PI),
];

/// Routes whose path names the organisation they act in (`/api/v1/orgs/{id}…`): that id, not the
/// `X-InfraPilot-Org` header, chooses it.
const ORG_PATH_PREFIX: &str = "/api/v1/orgs/{id}";

/// The rule for a route template and method, if there is one.
pub fn rule_for(method: &Method, route: &str) -> Option<Access> {
    ACCESS_RULES
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == route)
        .map(|(_, _, access)| *access)
}

/// Enforces [`ACCESS_RULES`] before any handler runs, and hands handlers the [`crate::auth::Principal`].
pub async fn authorize(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = matched.as_ref().map(|m| m.as_str()).unwrap_or("");
    let allowed: Vec<&str> = ACCESS_RULES
        .iter()
        .filter(|(_, p, _)| *p == route)
        .map(|(m, _, _)| *m)
        .collect();
    // HEAD is answered like GET (axum sends the headers only).
    let method = if request.method() == Method::HEAD {
        Method::GET
    } else {
        request.method().clone()
    };
    if !allowed.is_empty() && !allowed.contains(&method.as_str()) {
        // A route that exists, asked with a method it does not have.
        let mut response = ApiError::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{route} answers {}", allowed.join(", ")),
        )
        .into_response();
        if let Ok(value) = axum::http::HeaderValue::from_str(&allowed.join(", ")) {
            response
                .headers_mut()
                .insert(axum::http::header::ALLOW, value);
        }
        return response;
    }
    let Some(access) = rule_for(&method, route) else {
        tracing::error!(route, method = %request.method(), "route has no access rule; refused");
        return ApiError::forbidden("this route has no access rule").into_response();
    };
    let (required, interactive) = match access {
        Access::Public => return next.run(request).await,
        Access::Role(role) => (Some(role), false),
        Access::Interactive(role) => (Some(role), true),
        Access::Person => (None, false),
        Access::PersonInteractive => (None, true),
    };
    let requested = route
        .starts_with(ORG_PATH_PREFIX)
        .then(|| request.uri().path().split('/').nth(4))
        .flatten()
        .map(str::to_owned);
    let authenticated = match authenticate(&state, request.headers(), requested.as_deref()).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    // Counted before anything of the request is written (a denial's audit event, a token's
    // last use), so an organisation over its share costs the others nothing.
    if let Err(e) = state.request_limiter().check(&authenticated) {
        return e.into_response();
    }
    crate::auth::note_token_use(&state, &authenticated);
    if interactive && !matches!(authenticated.person.credential, Credential::Session(_)) {
        return ApiError::forbidden(
            "this route needs a signed-in session; API tokens cannot manage accounts or mint tokens",
        )
        .with_field("authorization")
        .into_response();
    }
    let Some(required) = required else {
        request
            .extensions_mut()
            .insert(authenticated.person.clone());
        request.extensions_mut().insert(authenticated);
        return next.run(request).await;
    };
    let Some(principal) = authenticated.principal() else {
        return ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "no_organisation",
            "you belong to no organisation yet: make one or accept an invitation",
        )
        .into_response();
    };
    if !principal.role.at_least(required) {
        if request.method() != Method::GET {
            let client = ClientInfo::from_request_ref(&request);
            crate::audit_log::record_denied(
                &state,
                &principal,
                &client,
                request.method().as_str(),
                route,
                required,
            )
            .await;
        }
        return ApiError::forbidden(format!(
            "this action needs the {required} role; you have {}",
            principal.role
        ))
        .into_response();
    }
    request.extensions_mut().insert(authenticated.person);
    request.extensions_mut().insert(principal);
    next.run(request).await
}
