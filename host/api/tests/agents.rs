//! Enrollment: tokens (expiry, max uses, labels, revocation) exchanged once with a CSR for a
//! certificate signed by the host CA; agents listed and revoked.

mod common;

use axum::http::StatusCode;
use common::{TestApp, node_csr};
use infrapilot_store::testing::backends;
use serde_json::json;

#[tokio::test]
async fn enrollment_tokens_are_spent_expire_and_revoke() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let root = app.setup_admin().await;
        let viewer = app.user_with_role(&root, "viewer").await;
        let (token_id, secret) = app.enrollment_token(&root, 2).await;
        assert!(secret.starts_with("ipe_"));

        let enroll = |name: &str, token: &str| json!({"token": token, "csr": node_csr(), "name": name, "version": "0.1.0"});
        let r = app
            .post("/api/v1/agents/enroll", None, enroll("node-1", &secret))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{backend:?}: {:?}", r.body);
        assert!(
            r.body["certificate"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(
            r.body["ca_certificate"]
                .as_str()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        let agent_id = r.body["agent_id"].as_str().unwrap().to_owned();

        // A name taken: refused, and the token's use is not spent.
        let dup = app
            .post("/api/v1/agents/enroll", None, enroll("node-1", &secret))
            .await;
        assert_eq!(
            (dup.status, dup.field()),
            (StatusCode::CONFLICT, Some("name"))
        );
        let r = app
            .post("/api/v1/agents/enroll", None, enroll("node-2", &secret))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "second use: {:?}", r.body);
        // Used up.
        let r = app
            .post("/api/v1/agents/enroll", None, enroll("node-3", &secret))
            .await;
        assert_eq!(
            (r.status, r.field()),
            (StatusCode::UNAUTHORIZED, Some("token"))
        );
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("used up")
        );

        // Expired.
        let (expiring_id, expiring) = app.enrollment_token(&root, 5).await;
        app.db
            .raw_execute(&format!(
                "UPDATE enrollment_tokens SET expires_at = 1 WHERE id = '{expiring_id}'"
            ))
            .await;
        let r = app
            .post("/api/v1/agents/enroll", None, enroll("node-4", &expiring))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("expired")
        );

        // Revoked.
        let (revoked_id, revoked) = app.enrollment_token(&root, 5).await;
        let del = app
            .call(
                "DELETE",
                &format!("/api/v1/enrollment-tokens/{revoked_id}"),
                Some(&root),
                None,
            )
            .await;
        assert_eq!(del.status, StatusCode::NO_CONTENT);
        let r = app
            .post("/api/v1/agents/enroll", None, enroll("node-5", &revoked))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("revoked")
        );
        let unknown = app
            .post(
                "/api/v1/agents/enroll",
                None,
                enroll("node-6", "ipe_nothing"),
            )
            .await;
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);

        // Token list shows states and never the secret.
        let list = app.get("/api/v1/enrollment-tokens", &root).await;
        let states: Vec<&str> = list
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["state"].as_str().unwrap())
            .collect();
        assert!(
            states.contains(&"used_up")
                && states.contains(&"expired")
                && states.contains(&"revoked"),
            "{states:?}"
        );
        assert!(!String::from_utf8_lossy(&list.raw).contains(&secret));
        let one = list
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == token_id.as_str())
            .unwrap();
        assert_eq!(
            (one["uses"].as_i64(), one["labels"]["env"].as_str()),
            (Some(2), Some("test"))
        );

        // Agents: listed with the token's labels; viewers may read; revocation is for admins.
        let agents = app.get("/api/v1/agents", &viewer).await;
        let names: Vec<&str> = agents
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["node-1", "node-2"]);
        let a = app
            .get(&format!("/api/v1/agents/{agent_id}"), &viewer)
            .await;
        assert_eq!(
            (a.body["status"].as_str(), a.body["labels"]["env"].as_str()),
            (Some("offline"), Some("test"))
        );
        let path = format!("/api/v1/agents/{agent_id}/revoke");
        assert_eq!(
            app.call("POST", &path, Some(&viewer), None).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            app.call("POST", &path, Some(&root), None).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            app.call("POST", &path, Some(&root), None).await.status,
            StatusCode::CONFLICT
        );
        assert_eq!(
            app.get(&format!("/api/v1/agents/{agent_id}"), &root)
                .await
                .body["revoked"],
            true
        );

        let actions = app.audit_actions(&root).await;
        for expected in [
            "enrollment_token.create",
            "enrollment_token.revoke",
            "agent.enroll",
            "agent.revoke",
        ] {
            assert!(actions.iter().any(|x| x == expected), "{expected} missing");
        }
    }
}

#[tokio::test]
async fn enrollment_refuses_bad_input() {
    let app = TestApp::new(infrapilot_store::Backend::Sqlite).await;
    let root = app.setup_admin().await;
    let (_, secret) = app.enrollment_token(&root, 100).await;
    let csr = node_csr();
    let cases = [
        (
            json!({"token": secret, "csr": "not a csr", "name": "n", "version": "1"}),
            "csr",
        ),
        (
            json!({"token": secret, "csr": csr.replace("MII", "MIX"), "name": "n", "version": "1"}),
            "csr",
        ),
        (
            json!({"token": secret, "csr": csr, "name": "bad name; rm -rf /", "version": "1"}),
            "name",
        ),
        (
            json!({"token": secret, "csr": csr, "name": "-leading", "version": "1"}),
            "name",
        ),
        (
            json!({"token": secret, "csr": csr, "name": "x".repeat(64), "version": "1"}),
            "name",
        ),
        (
            json!({"token": secret, "csr": csr, "name": "n\u{202e}", "version": "1"}),
            "name",
        ),
        (
            json!({"token": secret, "csr": csr, "name": "n", "version": "1\n2"}),
            "version",
        ),
        (
            json!({"token": "not-a-token", "csr": csr, "name": "n", "version": "1"}),
            "token",
        ),
    ];
    for (body, field) in cases {
        let r = app.post("/api/v1/agents/enroll", None, body.clone()).await;
        assert!(r.status.is_client_error(), "{body}: {}", r.status);
        assert_eq!(r.field(), Some(field), "{body}: {:?}", r.body);
    }
    let token_cases = [
        (
            json!({"name": "t", "max_uses": 0, "expires_in_hours": 1}),
            "max_uses",
        ),
        (
            json!({"name": "t", "max_uses": 1, "expires_in_hours": 100000}),
            "expires_in_hours",
        ),
        (
            json!({"name": "t", "labels": {"Bad Key": "v"}, "max_uses": 1, "expires_in_hours": 1}),
            "labels.Bad Key",
        ),
        (
            json!({"name": "t", "labels": {"k": "v\u{0}"}, "max_uses": 1, "expires_in_hours": 1}),
            "labels.k",
        ),
        (
            json!({"name": "t", "labels": {"k": 5}, "max_uses": 1, "expires_in_hours": 1}),
            "labels.k",
        ),
        (
            json!({"name": "", "max_uses": 1, "expires_in_hours": 1}),
            "name",
        ),
    ];
    for (body, field) in token_cases {
        let r = app
            .post("/api/v1/enrollment-tokens", Some(&root), body.clone())
            .await;
        assert!(r.status.is_client_error(), "{body}: {}", r.status);
        assert_eq!(r.field(), Some(field), "{body}: {:?}", r.body);
    }
    for path in [
        "/api/v1/agents/nope",
        "/api/v1/agents/00000000-0000-0000-0000-0000000000ee",
    ] {
        let r = app.get(path, &root).await;
        assert!(r.status.is_client_error());
        assert_eq!(r.field(), Some("id"));
    }
    assert!(
        app.get("/api/v1/agents", &root)
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing half-enrolled"
    );
}
