//! Authorization in one place: every route has a rule, and every route × role behaves as the
//! rule says.

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::TestApp;
use infrapilot_api::access::{ACCESS_RULES, Access};
use infrapilot_identity::Role;
use infrapilot_store::Backend;
use serde_json::json;

/// Every (method, path) the router serves, read from the OpenAPI document generated from the
/// same route registrations.
fn routes() -> BTreeSet<(String, String)> {
    let doc = infrapilot_api::openapi_document();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_has_exactly_one_rule_and_every_rule_a_route() {
    let served = routes();
    assert!(served.len() >= 25, "suspiciously few routes: {served:?}");
    let ruled: BTreeSet<(String, String)> = ACCESS_RULES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(ruled.len(), ACCESS_RULES.len(), "duplicate rules");
    let unruled: Vec<_> = served.difference(&ruled).collect();
    assert!(
        unruled.is_empty(),
        "routes without an access rule: {unruled:?}"
    );
    let stale: Vec<_> = ruled.difference(&served).collect();
    assert!(
        stale.is_empty(),
        "rules for routes that do not exist: {stale:?}"
    );
}

/// Path parameters are exactly the template's placeholders: a query struct documented as
/// `in: path` would tell clients to put `limit` into the URL path.
#[test]
fn every_path_parameter_is_in_its_template() {
    let doc = infrapilot_api::openapi_document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let placeholders: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, operation) in item.as_object().unwrap() {
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(declared, placeholders, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn every_route_by_every_role() {
    // One backend suffices: authorization does not depend on storage.
    let app = TestApp::new(Backend::Sqlite).await;
    let root = app.setup_admin().await;
    let mut tokens = vec![(Role::SuperAdmin, root.clone())];
    for role in [Role::Viewer, Role::Operator, Role::Admin] {
        tokens.push((role, app.user_with_role(&root, role.as_str()).await));
    }
    let callers: Vec<(Option<Role>, Option<String>)> = std::iter::once((None, None))
        .chain(tokens.iter().map(|(r, t)| (Some(*r), Some(t.clone()))))
        .collect();
    // Logging out ends the caller's session: test that route last.
    let mut rules: Vec<_> = ACCESS_RULES.to_vec();
    rules.sort_by_key(|(m, p, _)| (*p == "/api/v1/auth/logout", *m, *p));
    let mut checked = 0;
    for (method, path, access) in rules {
        // Placeholder ids are well-formed but unknown, so a permitted call ends in 404 at worst;
        // an organisation route names the callers' own (an unknown organisation is 404 for all).
        let concrete = if path.starts_with("/api/v1/orgs/{id}") {
            path.replace("{id}", infrapilot_store::DEFAULT_ORG_ID)
        } else {
            path.replace("{id}", "00000000-0000-0000-0000-0000000000ff")
        };
        for (role, token) in &callers {
            let body = (method != "GET" && method != "DELETE").then(|| json!({}));
            let reply = app.call(method, &concrete, token.as_deref(), body).await;
            let denied = matches!(
                reply.status,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            );
            // Every caller here holds an interactive session, so Interactive(min) is Role(min).
            let expectation = match (access, role) {
                // The metrics route is open at the access layer, but its handler answers only
                // loopback clients when no metrics token is configured (these come from 192.0.2.10).
                (Access::Public, _) if path == "/metrics" => "403",
                (Access::Public, _) => "allowed",
                (Access::Role(_) | Access::Interactive(_), None) => "401",
                (Access::Role(min) | Access::Interactive(min), Some(r)) if r.at_least(min) => {
                    "allowed"
                }
                (Access::Role(_) | Access::Interactive(_), Some(_)) => "403",
                (Access::Person | Access::PersonInteractive, None) => "401",
                (Access::Person | Access::PersonInteractive, Some(_)) => "allowed",
            };
            let ok = match expectation {
                // Permitted callers may still get 401 from the login routes for bad credentials,
                // but never from the access layer; those are public and called anonymously here.
                "allowed" => {
                    !denied || path.starts_with("/api/v1/auth/") && access == Access::Public
                }
                "401" => reply.status == StatusCode::UNAUTHORIZED,
                _ => reply.status == StatusCode::FORBIDDEN,
            };
            assert!(
                ok,
                "{method} {path} as {role:?}: expected {expectation}, got {} {:?}",
                reply.status, reply.body
            );
            assert!(
                reply.status != StatusCode::INTERNAL_SERVER_ERROR,
                "{method} {path} as {role:?}: 500"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, ACCESS_RULES.len() * 5);
}

#[tokio::test]
async fn a_route_without_a_rule_is_refused() {
    use axum::routing::get;
    use infrapilot_api::AppState;
    use infrapilot_identity::SecretBox;
    // Simulate a route someone forgot to put in the table: the middleware denies it.
    let db = infrapilot_store::testing::TestDb::new(Backend::Sqlite).await;
    let secrets = SecretBox::new(&[1u8; 32]).unwrap();
    let ca = infrapilot_gateway::load_or_create_ca(&db.store, &secrets)
        .await
        .unwrap();
    let state = AppState::new(db.store.clone(), secrets, ca, Default::default());
    let app = axum::Router::new()
        .route("/api/v1/forgotten", get(|| async { "secret data" }))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            infrapilot_api::access::authorize,
        ))
        .with_state(state);
    let response = tower::ServiceExt::oneshot(
        app,
        axum::http::Request::get("/api/v1/forgotten")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}
