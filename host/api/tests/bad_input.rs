//! Bad input against every JSON endpoint: missing fields, wrong types, unknown fields, invalid
//! UTF-8, oversized and empty bodies, wrong content type, malformed ids and query parameters.
//! Each must be a 4xx naming the field, and change nothing.

mod common;

use axum::http::StatusCode;
use common::{PASSWORD, TestApp};
use infrapilot_store::testing::backends;
use serde_json::{Value, json};

/// (method, path, a valid body, who calls it)
fn endpoints() -> Vec<(&'static str, &'static str, Value, Caller)> {
    use Caller::*;
    vec![
        (
            "POST",
            "/api/v1/auth/login",
            json!({"email": "a@example.com", "password": "x"}),
            Anonymous,
        ),
        (
            "POST",
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": "ipm_x", "code": "123456"}),
            Anonymous,
        ),
        (
            "POST",
            "/api/v1/auth/refresh",
            json!({"refresh_token": "ipr_x"}),
            Anonymous,
        ),
        (
            "PUT",
            "/api/v1/auth/password",
            json!({"current_password": PASSWORD, "new_password": "a new long password"}),
            Root,
        ),
        (
            "POST",
            "/api/v1/auth/mfa/confirm",
            json!({"code": "123456"}),
            Root,
        ),
        (
            "POST",
            "/api/v1/auth/mfa/disable",
            json!({"password": PASSWORD}),
            Root,
        ),
        (
            "POST",
            "/api/v1/auth/mfa/backup-codes",
            json!({"password": PASSWORD}),
            Root,
        ),
        (
            "POST",
            "/api/v1/users",
            json!({"email": "n@example.com", "password": PASSWORD, "name": "N", "role": "viewer"}),
            Root,
        ),
        (
            "PATCH",
            "/api/v1/users/{root}",
            json!({"name": "Root"}),
            Root,
        ),
        (
            "POST",
            "/api/v1/tokens",
            json!({"name": "ci", "role": "viewer", "expires_in_days": 7}),
            Root,
        ),
    ]
}

#[derive(Clone, Copy)]
enum Caller {
    Anonymous,
    Root,
}

fn first_field(valid: &Value) -> (String, Value) {
    let (k, v) = valid.as_object().unwrap().iter().next().unwrap();
    (k.clone(), v.clone())
}

fn wrong_type(v: &Value) -> Value {
    match v {
        Value::String(_) => json!(12345),
        Value::Number(_) => json!("seven"),
        Value::Bool(_) => json!("yes"),
        _ => json!(true),
    }
}

#[tokio::test]
async fn every_json_endpoint_refuses_bad_input_naming_the_field() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let root = app.setup_admin().await;
        let root_id = app.get("/api/v1/auth/me", &root).await.body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let users_before = app
            .get("/api/v1/users", &root)
            .await
            .body
            .as_array()
            .unwrap()
            .len();
        let mut cases = 0;
        for (method, path, valid, caller) in endpoints() {
            let path = path.replace("{root}", &root_id);
            let token = match caller {
                Caller::Anonymous => None,
                Caller::Root => Some(root.as_str()),
            };
            let (first, first_value) = first_field(&valid);
            let mut bad: Vec<(String, Vec<u8>, Option<&str>, &str)> = Vec::new();
            let mut push =
                |name: String, body: Vec<u8>, ct: Option<&'static str>, field: &'static str| {
                    bad.push((name, body, ct, field));
                };
            let json_ct = Some("application/json");
            // Unknown field.
            let mut with_extra = valid.clone();
            with_extra["is_admin"] = json!(true);
            push(
                "unknown field".into(),
                with_extra.to_string().into_bytes(),
                json_ct,
                "is_admin",
            );
            // Wrong type of the first field.
            let mut wrong = valid.clone();
            wrong[&first] = wrong_type(&first_value);
            let first_static: &'static str = Box::leak(first.clone().into_boxed_str());
            push(
                "wrong type".into(),
                wrong.to_string().into_bytes(),
                json_ct,
                first_static,
            );
            // Missing required field (PATCH bodies have only optional fields).
            if method != "PATCH" {
                let mut missing = valid.clone();
                missing.as_object_mut().unwrap().remove(&first);
                push(
                    "missing field".into(),
                    missing.to_string().into_bytes(),
                    json_ct,
                    first_static,
                );
            }
            // Invalid UTF-8 inside a JSON string.
            if first_value.is_string() {
                let mut raw = valid.clone();
                raw[&first] = json!("@@");
                let mut bytes = raw.to_string().into_bytes();
                let at = bytes.windows(2).position(|w| w == b"@@").unwrap();
                bytes[at] = 0xff;
                bytes[at + 1] = 0xfe;
                push("invalid utf-8".into(), bytes, json_ct, first_static);
            }
            push("not json".into(), b"{email: nope".to_vec(), json_ct, "body");
            push("json array".into(), b"[1,2,3]".to_vec(), json_ct, "body");
            push("empty body".into(), Vec::new(), json_ct, "body");
            push(
                "oversized body".into(),
                vec![b' '; 70 * 1024],
                json_ct,
                "body",
            );
            push(
                "text/plain".into(),
                valid.to_string().into_bytes(),
                Some("text/plain"),
                "content-type",
            );
            push(
                "no content type".into(),
                valid.to_string().into_bytes(),
                None,
                "content-type",
            );

            for (name, body, ct, field) in bad {
                let r = app.send_raw(method, &path, token, ct, body).await;
                assert!(
                    r.status.is_client_error(),
                    "{backend:?} {method} {path} {name}: status {} {:?}",
                    r.status,
                    r.body
                );
                assert_eq!(
                    r.field(),
                    Some(field),
                    "{backend:?} {method} {path} {name}: {:?}",
                    r.body
                );
                assert!(
                    r.body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty())
                );
                cases += 1;
            }
        }
        assert!(cases >= 90, "only {cases} cases");

        // Validation of values, per field.
        let value_cases = [
            (
                "POST",
                "/api/v1/users",
                json!({"email": "not-an-email", "password": PASSWORD, "name": "N", "role": "viewer"}),
                "email",
            ),
            (
                "POST",
                "/api/v1/users",
                json!({"email": "n@example.com", "password": "short", "name": "N", "role": "viewer"}),
                "password",
            ),
            (
                "POST",
                "/api/v1/users",
                json!({"email": "n@example.com", "password": PASSWORD, "name": "  ", "role": "viewer"}),
                "name",
            ),
            (
                "POST",
                "/api/v1/users",
                json!({"email": "n@example.com", "password": PASSWORD, "name": "N\u{1b}[31m", "role": "viewer"}),
                "name",
            ),
            (
                "POST",
                "/api/v1/users",
                json!({"email": "n@example.com", "password": PASSWORD, "name": "N", "role": "root"}),
                "role",
            ),
            (
                "POST",
                "/api/v1/users",
                json!({"email": "a".repeat(300) + "@example.com", "password": PASSWORD, "name": "N", "role": "viewer"}),
                "email",
            ),
            (
                "POST",
                "/api/v1/tokens",
                json!({"name": "", "role": "viewer", "expires_in_days": 7}),
                "name",
            ),
            (
                "POST",
                "/api/v1/tokens",
                json!({"name": "t", "role": "viewer", "expires_in_days": 10000}),
                "expires_in_days",
            ),
            (
                "POST",
                "/api/v1/tokens",
                json!({"name": "t", "role": "viewer", "expires_in_days": -1}),
                "expires_in_days",
            ),
            (
                "PATCH",
                "/api/v1/users/not-a-uuid",
                json!({"name": "x"}),
                "id",
            ),
            (
                "PATCH",
                "/api/v1/users/00000000-0000-0000-0000-0000000000aa",
                json!({"role": "emperor"}),
                "role",
            ),
        ];
        for (method, path, body, field) in value_cases {
            let r = app
                .call(method, path, Some(&root), Some(body.clone()))
                .await;
            assert!(
                r.status.is_client_error(),
                "{method} {path} {body}: {} {:?}",
                r.status,
                r.body
            );
            assert_eq!(
                r.field(),
                Some(field),
                "{method} {path} {body}: {:?}",
                r.body
            );
        }
        for (path, field) in [
            ("/api/v1/users/123", "id"),
            ("/api/v1/users/00000000-0000-0000-0000-0000000000aa", "id"),
            ("/api/v1/audit?limit=0", "limit"),
            ("/api/v1/audit?limit=abc", "limit"),
            ("/api/v1/audit?since=yesterday", "since"),
            ("/api/v1/audit?until=2026-13-45T00:00:00Z", "until"),
            ("/api/v1/audit?before_seq=-4", "before_seq"),
            ("/api/v1/audit?colour=red", "colour"),
        ] {
            let r = app.get(path, &root).await;
            assert!(r.status.is_client_error(), "{path}: {}", r.status);
            assert_eq!(r.field(), Some(field), "{path}: {:?}", r.body);
        }
        for path in [
            "/api/v1/tokens/zzz",
            "/api/v1/users/zzz",
            "/api/v1/auth/sessions/zzz",
        ] {
            let r = app.call("DELETE", path, Some(&root), None).await;
            assert_eq!(
                (r.status, r.field()),
                (StatusCode::BAD_REQUEST, Some("id")),
                "{path}"
            );
        }
        let unknown_api = app.get("/api/v1/nothing-here", &root).await;
        assert_eq!(unknown_api.status, StatusCode::NOT_FOUND);
        assert!(unknown_api.body["error"]["code"].is_string());

        // Nothing was half-applied: one user still, and the chain is intact.
        let users_after = app
            .get("/api/v1/users", &root)
            .await
            .body
            .as_array()
            .unwrap()
            .len();
        assert_eq!(users_before, users_after, "{backend:?}");
        assert_eq!(
            app.get("/api/v1/audit/verify", &root).await.body["ok"],
            true
        );
    }
}

#[tokio::test]
async fn hostile_bearer_tokens_are_401_not_500() {
    let app = TestApp::new(infrapilot_store::Backend::Sqlite).await;
    app.setup_admin().await;
    let long = "ipa_".to_owned() + &"A".repeat(5000);
    for token in [
        "",
        "ipa_",
        "garbage",
        "ipa_' OR 1=1 --",
        long.as_str(),
        "ipt_\u{202e}x",
    ] {
        let r = app.get("/api/v1/auth/me", token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
    let r = app
        .send_raw("GET", "/api/v1/auth/me", None, None, Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers.get("www-authenticate").unwrap(),
        "Bearer realm=\"infrapilot\""
    );
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let mut app = TestApp::new(infrapilot_store::Backend::Sqlite).await;
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!(r.body["status"], "ok");
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(
        (r.status, r.body["database"].as_str()),
        (StatusCode::OK, Some("reachable"))
    );
    let r = app.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(
        r.body["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    assert!(r.body["paths"]["/api/v1/users/{id}"]["patch"].is_object());
    // Without a metrics token, only loopback clients read the metrics.
    let refused = app.call("GET", "/metrics", None, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    app.client_ip = "127.0.0.1".into();
    let metrics = app.call("GET", "/metrics", None, None).await;
    let text = String::from_utf8(metrics.raw).unwrap();
    assert!(
        text.contains(
            "infrapilot_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("infrapilot_http_request_duration_seconds_bucket"));
    assert!(text.contains("infrapilot_db_pool_connections{state=\"max\"} 4"));
    app.db.store.close().await;
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}
