//! The isolation matrix, on both backends: organisation A (the default) holds data in its tenant
//! tables — an agent, a proxy host, an uploaded certificate, an alert channel and rule, API and
//! enrollment tokens, members, an invitation — and every route of the API is called by each role
//! of organisation B (admin, operator, viewer) with A's ids in its path. Nothing of A's answers
//! (never 2xx with an A id in the path; 404 rather than 403 for an id that is A's), no body B
//! receives names any of A's ids, and afterwards every tenant table holds the same rows of A as
//! before, A's audit chain has not grown, and its tokens and agent are as they were.

mod common;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use common::{PASSWORD, TestApp};
use infrapilot_api::access::ACCESS_RULES;
use infrapilot_store::testing::backends;
use infrapilot_store::{DEFAULT_ORG_ID, NewAgent, OrgId, TENANT_TABLES};
use serde_json::json;

const AGENT: &str = "aaaaaaaa-0000-4000-8000-00000000a6e7";
const PROXY: &str = "aaaaaaaa-0000-4000-8000-0000000000a1";

/// A's rows in every tenant table, and the fields a change would move.
async fn signature(app: &TestApp) -> BTreeMap<String, String> {
    let mut rows = BTreeMap::new();
    for table in TENANT_TABLES {
        let n = app
            .db
            .owner_count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE org_id = '{DEFAULT_ORG_ID}'"
            ))
            .await;
        rows.insert(table.to_string(), n.to_string());
    }
    for (name, sql) in [
        (
            "revoked tokens",
            "SELECT COUNT(*) FROM api_tokens WHERE revoked_at IS NOT NULL",
        ),
        (
            "revoked enrollment tokens",
            "SELECT COUNT(*) FROM enrollment_tokens WHERE revoked_at IS NOT NULL",
        ),
        (
            "enrollment uses",
            "SELECT CAST(COALESCE(SUM(uses), 0) AS BIGINT) FROM enrollment_tokens",
        ),
        (
            "revoked agents",
            "SELECT COUNT(*) FROM agents WHERE revoked_at IS NOT NULL",
        ),
        (
            "channel updates",
            "SELECT COALESCE(MAX(updated_at), 0) FROM alert_channels",
        ),
        (
            "rule updates",
            "SELECT COALESCE(MAX(updated_at), 0) FROM alert_rules",
        ),
        (
            "enabled rules",
            "SELECT COUNT(*) FROM alert_rules WHERE enabled",
        ),
        (
            "proxy updates",
            "SELECT COALESCE(MAX(updated_at), 0) FROM proxy_hosts",
        ),
        (
            "certificate updates",
            "SELECT COALESCE(MAX(updated_at), 0) FROM proxy_certificates",
        ),
        (
            "admins",
            "SELECT COUNT(*) FROM memberships WHERE role IN ('admin', 'super_admin')",
        ),
        (
            "closed invitations",
            "SELECT COUNT(*) FROM invitations WHERE revoked_at IS NOT NULL OR accepted_at IS NOT NULL",
        ),
    ] {
        let value = app
            .db
            .owner_count(&format!(
                "{sql}{} org_id = '{DEFAULT_ORG_ID}'",
                if sql.contains(" WHERE ") {
                    " AND"
                } else {
                    " WHERE"
                }
            ))
            .await;
        rows.insert(name.to_owned(), value.to_string());
    }
    let names = app
        .db
        .owner_text(&format!(
            "SELECT name FROM organizations WHERE id = '{DEFAULT_ORG_ID}'"
        ))
        .await;
    rows.insert("organisation name".into(), names);
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn organisation_b_reaches_nothing_of_organisation_a() {
    for backend in backends() {
        Box::pin(matrix(backend)).await;
    }
}

async fn matrix(backend: infrapilot_store::Backend) {
    let (app, _vendor) = TestApp::with_plugins(backend).await;
    let root = app.setup_admin().await;

    // ----- organisation A (the default) and its data -----
    let mut tx = app.db.store.write(&OrgId::default_org()).await.unwrap();
    tx.insert_agent(&NewAgent {
        id: AGENT,
        name: "a-node",
        labels: "{}",
        version: "0.1.0",
        enrollment_token_id: "none",
        cert_serial: "01",
        cert_fingerprint: "a-fingerprint",
        cert_expires_at: i64::MAX,
        builtin: false,
    })
    .await
    .unwrap();
    let spec = r#"{"domains":["a.test"],"upstream":{"host":"10.0.0.1","port":80}}"#;
    tx.put_proxy_host(AGENT, PROXY, spec, &["a.test".to_owned()])
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    let (a_enrollment, _) = app.enrollment_token(&root, 3).await;
    let r = app
        .post(
            "/api/v1/tokens",
            Some(&root),
            json!({"name": "a-ci", "role": "viewer", "expires_in_days": 1}),
        )
        .await;
    let a_token = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            "/api/v1/users",
            Some(&root),
            json!({"email": "a-member@example.com", "password": PASSWORD, "name": "A", "role": "operator"}),
        )
        .await;
    let a_member = r.body["id"].as_str().unwrap().to_owned();
    app.install_webhook(&root).await;
    let r = app
        .post(
            "/api/v1/alerts/channels",
            Some(&root),
            json!({"plugin": "infrapilot.webhook", "name": "a-hook", "settings": {"url": "http://127.0.0.1:9/hook", "secret": "x"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let a_channel = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            "/api/v1/alerts/rules",
            Some(&root),
            json!({"name": "a-crash", "kind": "container_crashed", "channel_ids": [a_channel]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let a_rule = r.body["id"].as_str().unwrap().to_owned();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let r = app
        .post(
            "/api/v1/proxy-certificates",
            Some(&root),
            json!({"name": "a-cert", "certificate_pem": cert.pem(), "private_key_pem": key.serialize_pem()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let a_certificate = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/api/v1/orgs/{DEFAULT_ORG_ID}/invitations"),
            Some(&root),
            json!({"email": "a-invitee@example.com", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let a_invitation = r.body["id"].as_str().unwrap().to_owned();
    let a_invitation_secret = r.body["token"].as_str().unwrap().to_owned();
    app.install_test_plugin(&root, "infrapilot_test_sso", "infrapilot.test-sso")
        .await;
    let r = app
        .post(
            "/api/v1/sso/providers",
            Some(&root),
            json!({"plugin": "infrapilot.test-sso", "name": "a-idp", "settings": {"issuer": "https://idp.a.test"},
                   "group_roles": [{"group": "a-admins", "role": "admin"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let a_provider = r.body["id"].as_str().unwrap().to_owned();

    // ----- organisation B and one person of each role -----
    let r = app
        .post("/api/v1/orgs", Some(&root), json!({"name": "B"}))
        .await;
    let b = r.body["id"].as_str().unwrap().to_owned();
    let mut callers = Vec::new();
    for role in ["admin", "operator", "viewer"] {
        let email = format!("b-{role}@example.com");
        let r = app
            .call_with_headers(
                "POST",
                "/api/v1/users",
                Some(&root),
                &[("x-infrapilot-org", &b)],
                Some(json!({"email": email, "password": PASSWORD, "name": role, "role": role})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        callers.push((role, app.login(&email, PASSWORD).await));
    }
    // The operator leaves B: only B's own people act there.
    let root_id = app.get("/api/v1/auth/me", &root).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/orgs/{b}/members/{root_id}"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);

    let a_ids = [
        AGENT.to_owned(),
        PROXY.to_owned(),
        a_enrollment.clone(),
        a_token.clone(),
        a_member.clone(),
        a_channel.clone(),
        a_rule.clone(),
        a_certificate.clone(),
        a_invitation.clone(),
        a_provider.clone(),
    ];
    let before = signature(&app).await;
    let a_events_before = app
        .db
        .owner_count(&format!(
            "SELECT COUNT(*) FROM audit_events WHERE org_id = '{DEFAULT_ORG_ID}'"
        ))
        .await;

    let mut calls = 0;
    for (method, route, _) in ACCESS_RULES {
        if route.starts_with("/api/v1/setup") || *route == "/api/v1/auth/logout" {
            continue;
        }
        let id = if route.starts_with("/api/v1/orgs/{id}") {
            DEFAULT_ORG_ID
        } else if route.starts_with("/api/v1/agents/{id}") {
            AGENT
        } else if route.starts_with("/api/v1/alerts/channels/{id}") {
            &a_channel
        } else if route.starts_with("/api/v1/alerts/rules/{id}") {
            &a_rule
        } else if route.starts_with("/api/v1/tokens/{id}") {
            &a_token
        } else if route.starts_with("/api/v1/enrollment-tokens/{id}") {
            &a_enrollment
        } else if route.starts_with("/api/v1/users/{id}") {
            &a_member
        } else if route.starts_with("/api/v1/sso/providers/{id}")
            || route.starts_with("/api/v1/auth/sso/{id}")
        {
            &a_provider
        } else {
            "infrapilot.webhook"
        };
        let path = route
            .replace("{id}", id)
            .replace("{pid}", PROXY)
            .replace(
                "{cid}",
                if route.starts_with("/api/v1/proxy-certificates") {
                    &a_certificate
                } else {
                    "a-container"
                },
            )
            .replace("{uid}", &a_member)
            .replace("{iid}", &a_invitation)
            .replace("{token}", &a_invitation_secret)
            .replace("{project}", "a-stack")
            .replace("{number}", "1");
        let names_a = path != *route && !route.starts_with("/api/v1/plugins/");
        // The sign-in page's SSO routes are public and name their organisation: B asks in its own.
        let path = if route.starts_with("/api/v1/auth/sso/") {
            format!("{path}?org={b}")
        } else {
            path
        };
        for (role, token) in &callers {
            let body = (*method != "GET").then(|| json!({}));
            let r = app.call(method, &path, Some(token), body).await;
            calls += 1;
            assert_ne!(
                r.status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{method} {path} as B {role}: {:?}",
                r.body
            );
            if names_a {
                assert!(
                    !r.status.is_success(),
                    "{backend:?}: {method} {path} as B {role} succeeded with A's ids: {:?}",
                    r.body
                );
                if r.status == StatusCode::FORBIDDEN {
                    // Only the route's role refusal, the same for any id: an A id itself answers
                    // like an unknown one.
                    let mut unknown = path.clone();
                    for a_id in &a_ids {
                        unknown =
                            unknown.replace(a_id.as_str(), "00000000-0000-4000-8000-0000000000ff");
                    }
                    unknown =
                        unknown.replace(DEFAULT_ORG_ID, "00000000-0000-4000-8000-0000000000fe");
                    let probe = app
                        .call(
                            method,
                            &unknown,
                            Some(token),
                            (*method != "GET").then(|| json!({})),
                        )
                        .await;
                    assert_eq!(
                        probe.status,
                        StatusCode::FORBIDDEN,
                        "{method} {path} as B {role}: 403 for A's id but {} for an unknown one ({:?})",
                        probe.status,
                        r.body
                    );
                }
            }
            let text = String::from_utf8_lossy(&r.raw);
            for a_id in &a_ids {
                assert!(
                    !text.contains(a_id.as_str())
                        || path.contains(a_id.as_str()) && !r.status.is_success(),
                    "{backend:?}: {method} {path} as B {role} answered with A's id {a_id}: {text}"
                );
            }
        }
    }
    assert!(calls > 200, "only {calls} calls");

    assert_eq!(
        signature(&app).await,
        before,
        "{backend:?}: A's data changed"
    );
    let a_events_after = app
        .db
        .owner_count(&format!(
            "SELECT COUNT(*) FROM audit_events WHERE org_id = '{DEFAULT_ORG_ID}'"
        ))
        .await;
    assert_eq!(
        a_events_after, a_events_before,
        "{backend:?}: B's calls wrote into A's audit chain"
    );
}
