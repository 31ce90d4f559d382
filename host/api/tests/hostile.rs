//! The hostile suite: what an attacker tried against the host, each as a test that failed before
//! its fix. Every test runs on SQLite and PostgreSQL (`backends()`); parallel cases use real
//! concurrency (a multi-threaded runtime, requests in flight at once). Cases that need a Docker
//! engine, an agent process or the binary live in `tests/system/tests/hostile.rs`.
//!
//! Extend it: one test per attack, named for what the attacker cannot do.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{ADMIN_EMAIL, PASSWORD, SETUP_CODE, TestApp, node_csr, test_settings};
use infrapilot_api::ApiSettings;
use infrapilot_store::DEFAULT_ORG_ID;
use infrapilot_store::testing::backends;
use serde_json::{Value, json};

/// Runs `n` copies of a call at once and returns their statuses.
async fn in_parallel<F, Fut>(app: &Arc<TestApp>, n: usize, call: F) -> Vec<StatusCode>
where
    F: Fn(Arc<TestApp>, usize) -> Fut,
    Fut: std::future::Future<Output = StatusCode> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        set.spawn(call(app.clone(), i));
    }
    let mut out = Vec::new();
    while let Some(status) = set.join_next().await {
        out.push(status.unwrap());
    }
    out
}

fn count(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

// ---- 1. claiming a fresh install -------------------------------------------------------------

#[tokio::test]
async fn a_fresh_install_cannot_be_claimed_without_the_setup_code() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let body = |code: &str| json!({"setup_code": code, "email": ADMIN_EMAIL, "password": PASSWORD, "name": "Root"});
        let status = app.call("GET", "/api/v1/setup", None, None).await;
        assert_eq!(status.body["needed"], true);
        assert!(
            status.body["setup_code_hint"].is_string(),
            "{:?}",
            status.body
        );
        // No code, a wrong code: refused, naming the field; nothing created.
        let r = app
            .post(
                "/api/v1/setup",
                None,
                json!({"email": ADMIN_EMAIL, "password": PASSWORD, "name": "Root"}),
            )
            .await;
        assert_eq!(
            (r.status, r.field()),
            (StatusCode::BAD_REQUEST, Some("setup_code"))
        );
        let r = app.post("/api/v1/setup", None, body("guess")).await;
        assert_eq!(
            (r.status, r.field()),
            (StatusCode::FORBIDDEN, Some("setup_code")),
            "{backend:?}"
        );
        // A DNS-rebinding page sends its own name as Host: refused before anything else.
        let r = app
            .call_with_headers(
                "POST",
                "/api/v1/setup",
                None,
                &[("host", "attacker.example:8080")],
                Some(body(SETUP_CODE)),
            )
            .await;
        assert_eq!(
            (r.status, r.field()),
            (StatusCode::MISDIRECTED_REQUEST, Some("host"))
        );
        let r = app
            .call_with_headers(
                "POST",
                "/api/v1/auth/login",
                None,
                &[("host", "rebind.attacker.example")],
                Some(json!({"email": ADMIN_EMAIL, "password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(
            app.call("GET", "/api/v1/setup", None, None).await.body["needed"],
            true,
            "still unclaimed"
        );
        // Loopback and IP names are this host's; the right code claims it.
        let r = app
            .call_with_headers(
                "POST",
                "/api/v1/setup",
                None,
                &[("host", "127.0.0.1:8080")],
                Some(body(SETUP_CODE)),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
}

#[tokio::test]
async fn setup_is_closed_when_the_host_has_no_setup_code() {
    let app =
        TestApp::with_settings(infrapilot_store::Backend::Sqlite, ApiSettings::default()).await;
    let r = app
        .post(
            "/api/v1/setup",
            None,
            json!({"setup_code": "", "email": ADMIN_EMAIL, "password": PASSWORD, "name": "Root"}),
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::FORBIDDEN, Some("setup_code"))
    );
}

#[tokio::test]
async fn configured_names_pass_the_host_check() {
    let app = TestApp::with_settings(
        infrapilot_store::Backend::Sqlite,
        ApiSettings {
            allowed_hosts: vec!["pilot.example.com".into()],
            public_url: Some("https://public.example.net".into()),
            ..test_settings()
        },
    )
    .await;
    app.setup_admin().await;
    for (host, ok) in [
        ("pilot.example.com", true),
        ("PILOT.example.com:443", true),
        ("public.example.net", true),
        ("localhost:8080", true),
        ("[::1]:8080", true),
        ("pilot.example.com.attacker.example", false),
        ("example.com", false),
    ] {
        let r = app
            .call_with_headers(
                "POST",
                "/api/v1/auth/login",
                None,
                &[("host", host)],
                Some(json!({"email": ADMIN_EMAIL, "password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status == StatusCode::OK, ok, "{host}: {:?}", r.body);
        if ok {
            // Token responses are never cached; over https the host says so (HSTS).
            assert_eq!(r.headers["cache-control"], "no-store");
            assert!(r.headers.contains_key("strict-transport-security"));
        }
    }
}

// ---- 2. API tokens and account management ------------------------------------------------------

async fn api_token(app: &TestApp, session: &str, role: &str, days: u32) -> (String, String) {
    let r = app
        .post(
            "/api/v1/tokens",
            Some(session),
            json!({"name": format!("t-{role}"), "role": role, "expires_in_days": days}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["secret"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn an_api_token_cannot_manage_its_owners_account() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let admin = app.setup_admin().await;
        let (_, token) = api_token(&app, &admin, "viewer", 30).await;
        let attempts: Vec<(&str, &str, Option<Value>)> = vec![
            ("POST", "/api/v1/auth/mfa/enroll", Some(json!({}))),
            (
                "POST",
                "/api/v1/auth/mfa/confirm",
                Some(json!({"code": "123456"})),
            ),
            (
                "POST",
                "/api/v1/auth/mfa/disable",
                Some(json!({"password": PASSWORD})),
            ),
            (
                "POST",
                "/api/v1/auth/mfa/backup-codes",
                Some(json!({"password": PASSWORD})),
            ),
            ("GET", "/api/v1/auth/mfa", None),
            (
                "PUT",
                "/api/v1/auth/password",
                Some(
                    json!({"current_password": PASSWORD, "new_password": "another long password"}),
                ),
            ),
            ("GET", "/api/v1/auth/sessions", None),
            (
                "DELETE",
                "/api/v1/auth/sessions/00000000-0000-0000-0000-000000000001",
                None,
            ),
            (
                "POST",
                "/api/v1/tokens",
                Some(json!({"name": "x", "role": "viewer", "expires_in_days": 1})),
            ),
        ];
        for (method, path, body) in attempts {
            let r = app.call(method, path, Some(&token), body).await;
            assert_eq!(
                (r.status, r.field()),
                (StatusCode::FORBIDDEN, Some("authorization")),
                "{method} {path} with an API token: {:?}",
                r.body
            );
        }
        // Reading is still what tokens are for.
        assert_eq!(
            app.get("/api/v1/auth/me", &token).await.status,
            StatusCode::OK
        );
        // The password did not change and no second factor was planted.
        app.login(ADMIN_EMAIL, PASSWORD).await;
        let mfa = app.get("/api/v1/auth/mfa", &admin).await;
        assert_eq!(mfa.body["enabled"], false, "{:?}", mfa.body);
    }
}

#[tokio::test]
async fn a_token_never_mints_a_token_that_outlives_it() {
    let app = TestApp::new(infrapilot_store::Backend::Sqlite).await;
    let admin = app.setup_admin().await;
    let (_, token) = api_token(&app, &admin, "admin", 1).await;
    // An enrollment token outliving the 1-day API token is refused, naming the field.
    let r = app
        .post(
            "/api/v1/enrollment-tokens",
            Some(&token),
            json!({"name": "n", "labels": {}, "max_uses": 1, "expires_in_hours": 48}),
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::BAD_REQUEST, Some("expires_in_hours"))
    );
    let r = app
        .post(
            "/api/v1/enrollment-tokens",
            Some(&token),
            json!({"name": "n", "labels": {}, "max_uses": 1, "expires_in_hours": 12}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn password_changes_and_resets_end_the_users_api_tokens() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let root = app.setup_admin().await;
        let (_, root_token) = api_token(&app, &root, "admin", 30).await;
        let r = app
            .call(
                "PUT",
                "/api/v1/auth/password",
                Some(&root),
                Some(json!({"current_password": PASSWORD, "new_password": "a brand new password"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        assert_eq!(
            app.get("/api/v1/auth/me", &root_token).await.status,
            StatusCode::UNAUTHORIZED
        );

        // An admin reset of another user's password ends that user's tokens too.
        let admin = app.user_with_role(&root, "admin").await;
        let (_, admin_token) = api_token(&app, &admin, "operator", 30).await;
        let users = app.get("/api/v1/users", &root).await;
        let admin_id = users
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == "admin@example.com")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/users/{admin_id}"),
                Some(&root),
                Some(json!({"password": "reset by the super admin"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(
            app.get("/api/v1/auth/me", &admin_token).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn an_admin_cannot_revoke_a_super_admins_token() {
    let app = TestApp::new(infrapilot_store::Backend::Sqlite).await;
    let root = app.setup_admin().await;
    let (root_token_id, root_token) = api_token(&app, &root, "viewer", 30).await;
    let admin = app.user_with_role(&root, "admin").await;
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{root_token_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::FORBIDDEN, Some("id")),
        "{:?}",
        r.body
    );
    assert_eq!(
        app.get("/api/v1/auth/me", &root_token).await.status,
        StatusCode::OK
    );
    // Its owner can.
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{root_token_id}"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_rechecks_are_throttled_like_login() {
    for backend in backends() {
        let app = Arc::new(TestApp::new(backend).await);
        let admin = app.setup_admin().await;
        // Parallel wrong confirmations on the MFA and password routes: at most the account's
        // limit (5) reach Argon2; the rest are 429.
        let statuses = in_parallel(&app, 20, {
            let admin = admin.clone();
            move |app, i| {
                let admin = admin.clone();
                async move {
                    let (method, path, body) = if i % 2 == 0 {
                        ("POST", "/api/v1/auth/mfa/backup-codes", json!({"password": "wrong password"}))
                    } else {
                        (
                            "PUT",
                            "/api/v1/auth/password",
                            json!({"current_password": "wrong password", "new_password": "x long password"}),
                        )
                    };
                    app.call(method, path, Some(&admin), Some(body)).await.status
                }
            }
        })
        .await;
        assert_eq!(count(&statuses, StatusCode::BAD_REQUEST), 5, "{statuses:?}");
        assert_eq!(
            count(&statuses, StatusCode::TOO_MANY_REQUESTS),
            15,
            "{statuses:?}"
        );
    }
}

// ---- 3. the login throttle under parallel load --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_passwords_get_no_more_tries_than_the_limit() {
    for backend in backends() {
        let app = Arc::new(TestApp::new(backend).await);
        app.setup_admin().await;
        let statuses = in_parallel(&app, 40, |app, _| async move {
            app.post(
                "/api/v1/auth/login",
                None,
                json!({"email": ADMIN_EMAIL, "password": "not the password"}),
            )
            .await
            .status
        })
        .await;
        assert_eq!(
            count(&statuses, StatusCode::UNAUTHORIZED),
            5,
            "{backend:?}: {statuses:?}"
        );
        assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 35);
        // The right password is refused too while the account is locked.
        let r = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": ADMIN_EMAIL, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers.contains_key("retry-after"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_argon2_work_is_bounded() {
    // One check at a time, and a flood of distinct accounts from distinct addresses (each under
    // its own throttle): the excess waits briefly, then gets 429 with Retry-After, never a pile
    // of hashes.
    let app = Arc::new(
        TestApp::with_settings(
            infrapilot_store::Backend::Sqlite,
            ApiSettings {
                max_anonymous_password_checks: 1,
                trusted_proxies: vec![infrapilot_api::state::IpNet::parse("192.0.2.0/24").unwrap()],
                ..test_settings()
            },
        )
        .await,
    );
    app.setup_admin().await;
    let statuses = in_parallel(&app, 120, |app, i| async move {
        let forwarded = format!("198.51.100.{}", i % 250);
        app.call_with_headers(
            "POST",
            "/api/v1/auth/login",
            None,
            &[("x-forwarded-for", &forwarded)],
            Some(
                json!({"email": format!("nobody{i}@example.com"), "password": "whatever password"}),
            ),
        )
        .await
        .status
    })
    .await;
    assert!(
        count(&statuses, StatusCode::TOO_MANY_REQUESTS) > 0,
        "{statuses:?}"
    );
    assert_eq!(
        count(&statuses, StatusCode::TOO_MANY_REQUESTS)
            + count(&statuses, StatusCode::UNAUTHORIZED),
        120
    );
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    // Untrusted: a client rotating X-Forwarded-For still shares one address key (limit 30).
    let untrusted = TestApp::with_settings(
        infrapilot_store::Backend::Sqlite,
        ApiSettings {
            ip_failures: 3,
            ..test_settings()
        },
    )
    .await;
    untrusted.setup_admin().await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let xff = format!("203.0.113.{i}");
        statuses.push(
            untrusted
                .call_with_headers(
                    "POST",
                    "/api/v1/auth/login",
                    None,
                    &[("x-forwarded-for", &xff)],
                    Some(
                        json!({"email": format!("u{i}@example.com"), "password": "wrong password"}),
                    ),
                )
                .await
                .status,
        );
    }
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // Trusted proxy (the test client's 192.0.2.10): each forwarded client has its own key.
    let trusted = TestApp::with_settings(
        infrapilot_store::Backend::Sqlite,
        ApiSettings {
            ip_failures: 3,
            trusted_proxies: vec![infrapilot_api::state::IpNet::parse("192.0.2.0/24").unwrap()],
            ..test_settings()
        },
    )
    .await;
    trusted.setup_admin().await;
    for i in 0..5 {
        let xff = format!("203.0.113.{i}");
        let r = trusted
            .call_with_headers(
                "POST",
                "/api/v1/auth/login",
                None,
                &[("x-forwarded-for", &xff)],
                Some(json!({"email": format!("u{i}@example.com"), "password": "wrong password"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{xff}");
    }
    // The audit trail names the forwarded client, not the proxy.
    let admin = trusted.login(ADMIN_EMAIL, PASSWORD).await;
    let audit = trusted
        .get("/api/v1/audit?action=auth.login&limit=50", &admin)
        .await;
    assert!(
        audit.raw.windows(11).any(|w| w == b"203.0.113.4"),
        "{:?}",
        audit.body
    );
}

// ---- 4. enrollment floods ------------------------------------------------------------------------

#[tokio::test]
async fn bogus_enrollments_are_throttled_and_audited_as_one_counted_event() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let admin = app.setup_admin().await;
        let before = app.audit_actions(&admin).await.len();
        let mut statuses = Vec::new();
        for i in 0..30 {
            // A broken CSR too: the token is checked first, so the answer is about the token.
            let r = app
                .post(
                    "/api/v1/agents/enroll",
                    None,
                    json!({"token": format!("ipe_bogus{i}"), "csr": "not a csr", "name": format!("n{i}"), "version": "1"}),
                )
                .await;
            if r.status == StatusCode::UNAUTHORIZED {
                assert_eq!(r.field(), Some("token"));
            }
            statuses.push(r.status);
        }
        assert_eq!(
            count(&statuses, StatusCode::UNAUTHORIZED),
            10,
            "{statuses:?}"
        );
        assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 20);
        let events = app.audit_actions(&admin).await;
        let failures = events[before..]
            .iter()
            .filter(|a| *a == "agent.enroll")
            .count();
        assert_eq!(
            failures, 2,
            "first failure and the throttle, not one per attempt: {events:?}"
        );
        let audit = app
            .get("/api/v1/audit?action=agent.enroll&limit=10", &admin)
            .await;
        assert!(
            audit
                .raw
                .windows(22)
                .any(|w| w == b"\"failures_from_address")
        );
        assert_eq!(
            app.get("/api/v1/audit/verify", &admin).await.body["ok"],
            true
        );
    }
}

// ---- 8. exec ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_operator_cannot_open_a_terminal() {
    let app = TestApp::new(infrapilot_store::Backend::Sqlite).await;
    let root = app.setup_admin().await;
    let operator = app.user_with_role(&root, "operator").await;
    let r = app
        .get(
            "/api/v1/agents/00000000-0000-0000-0000-0000000000ff/containers/abc/exec/ws",
            &operator,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(
        infrapilot_api::access::rule_for(
            &axum::http::Method::GET,
            "/api/v1/agents/{id}/containers/{cid}/exec/ws"
        ),
        Some(infrapilot_api::access::Access::Role(
            infrapilot_identity::Role::Admin
        ))
    );
}

// ---- 9. the install one-liner -------------------------------------------------------------------

#[tokio::test]
async fn the_install_command_pins_the_agent_checksum_and_warns_about_plain_http() {
    let agent_binary = std::env::temp_dir().join(format!("fake-agent-{}", uuid::Uuid::new_v4()));
    std::fs::write(&agent_binary, b"an agent binary").unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"an agent binary"))
    };
    for (public_url, warned) in [
        (Some("http://pilot.example.com"), true),
        (Some("https://pilot.example.com"), false),
        (None, false),
    ] {
        let app = TestApp::with_settings(
            infrapilot_store::Backend::Sqlite,
            ApiSettings {
                public_url: public_url.map(str::to_owned),
                agent_binary: Some(agent_binary.clone()),
                ..test_settings()
            },
        )
        .await;
        let admin = app.setup_admin().await;
        let (_, _) = app.enrollment_token(&admin, 1).await;
        let r = app
            .post(
                "/api/v1/enrollment-tokens",
                Some(&admin),
                json!({"name": "n", "labels": {}, "max_uses": 1, "expires_in_hours": 1}),
            )
            .await;
        let command = r.body["install_command"].as_str().unwrap();
        assert!(
            command.contains(&format!("INFRAPILOT_AGENT_SHA256='{digest}'")),
            "{command}"
        );
        assert_eq!(
            r.body["install_warning"].is_string(),
            warned,
            "{public_url:?}: {:?}",
            r.body
        );
        let sum = app
            .call("GET", "/downloads/infrapilot-agent.sha256", None, None)
            .await;
        assert_eq!(
            String::from_utf8(sum.raw).unwrap(),
            format!("{digest}  infrapilot-agent\n")
        );
    }
}

#[test]
fn the_installer_refuses_plain_http_off_loopback_before_downloading() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/install.sh");
    let run = |endpoint: &str, args: &[&str], sha: &str| {
        std::process::Command::new("sh")
            .arg(&script)
            .args(args)
            .env("INFRAPILOT_ENDPOINT", endpoint)
            .env("INFRAPILOT_AGENT_TOKEN", "ipe_x")
            .env("INFRAPILOT_AGENT_SHA256", sha)
            .output()
            .unwrap()
    };
    let sha = "a".repeat(64);
    let out = run("http://pilot.example.com", &[], &sha);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("plain http") && err.contains("--insecure-http"),
        "{err}"
    );
    assert!(
        !err.contains("downloading"),
        "refused before any download: {err}"
    );
    // A checksum that is not 64 hex digits is refused before anything runs.
    let out = run("https://pilot.example.com", &[], "deadbeef");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("INFRAPILOT_AGENT_SHA256"));
}

// ---- 10. alert channel settings -------------------------------------------------------------------

#[tokio::test]
async fn viewers_see_no_channel_settings_and_webhook_urls_and_headers_are_secret() {
    for backend in backends() {
        let (app, _) = TestApp::with_plugins(backend).await;
        let root = app.setup_admin().await;
        let bundle =
            std::fs::read(common::plugin_build().join("bundles/infrapilot_webhook.bundle"))
                .unwrap();
        let r = app
            .send_raw(
                "POST",
                "/api/v1/plugins",
                Some(&root),
                Some("application/x-tar"),
                bundle,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let r = app
            .post(
                "/api/v1/plugins/infrapilot.webhook/enable",
                Some(&root),
                json!({}),
            )
            .await;
        assert!(r.status.is_success(), "{:?}", r.body);
        let r = app
            .post(
                "/api/v1/alerts/channels",
                Some(&root),
                json!({"plugin": "infrapilot.webhook", "name": "ops",
                       "settings": {"url": "https://user:pw@hooks.example.com/T0K3N", "headers": {"Authorization": "Bearer s3cr3t"}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        let shown = String::from_utf8(r.raw).unwrap();
        assert!(
            !shown.contains("T0K3N") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        let admin_view = app
            .get(&format!("/api/v1/alerts/channels/{id}"), &root)
            .await;
        assert_eq!(admin_view.body["secrets_set"], json!(["headers", "url"]));
        let viewer = app.user_with_role(&root, "viewer").await;
        for path in [
            "/api/v1/alerts/channels".to_owned(),
            format!("/api/v1/alerts/channels/{id}"),
        ] {
            let r = app.get(&path, &viewer).await;
            assert_eq!(r.status, StatusCode::OK);
            let text = String::from_utf8(r.raw).unwrap();
            assert!(
                !text.contains("hooks.example.com") && !text.contains("secrets_set\":[\""),
                "{text}"
            );
        }
    }
}

// ---- 11. the smaller ones -------------------------------------------------------------------------

#[tokio::test]
async fn unknown_methods_share_one_metrics_label() {
    let mut app = TestApp::new(infrapilot_store::Backend::Sqlite).await;
    for i in 0..20 {
        let method = format!("BREW{i}");
        app.call(&method, "/healthz", None, None).await;
    }
    app.client_ip = "127.0.0.1".into();
    let text = String::from_utf8(app.call("GET", "/metrics", None, None).await.raw).unwrap();
    assert!(!text.contains("BREW"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_configured() {
    let mut app = TestApp::with_settings(
        infrapilot_store::Backend::Sqlite,
        ApiSettings {
            metrics_token: Some("a-metrics-token-of-some-length".into()),
            ..test_settings()
        },
    )
    .await;
    app.client_ip = "127.0.0.1".into();
    assert_eq!(
        app.call("GET", "/metrics", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .call_with_headers(
            "GET",
            "/metrics",
            None,
            &[("authorization", "Bearer a-metrics-token-of-some-length")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn every_answer_carries_the_hardening_headers() {
    let app = TestApp::new(infrapilot_store::Backend::Sqlite).await;
    let r = app.call("GET", "/api/v1/setup", None, None).await;
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("base-uri 'none'") && csp.contains("form-action 'self'"),
        "{csp}"
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    // Served over plain http (no https public URL): no HSTS.
    assert!(!r.headers.contains_key("strict-transport-security"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_super_admin_survives_parallel_demotions() {
    for backend in backends() {
        for round in 0..3 {
            let app = Arc::new(TestApp::new(backend).await);
            let root = app.setup_admin().await;
            app.user_with_role(&root, "super_admin").await;
            let users = app.get("/api/v1/users", &root).await;
            let ids: Arc<Vec<String>> = Arc::new(
                users
                    .body
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u["id"].as_str().unwrap().to_owned())
                    .collect(),
            );
            assert_eq!(ids.len(), 2);
            // Both super_admins demoted at the same moment: one of the two must fail (409 from
            // the invariant, or 403 once the caller itself was demoted), never both succeed.
            let root = Arc::new(root);
            let statuses = in_parallel(&app, 2, move |app, i| {
                let (ids, root) = (ids.clone(), root.clone());
                async move {
                    app.call(
                        "PATCH",
                        &format!("/api/v1/users/{}", ids[i]),
                        Some(&root),
                        Some(json!({"role": "admin"})),
                    )
                    .await
                    .status
                }
            })
            .await;
            assert_eq!(
                count(&statuses, StatusCode::OK),
                1,
                "{backend:?} #{round}: {statuses:?}"
            );
            let fresh = app.login(ADMIN_EMAIL, PASSWORD).await;
            let users = app.get("/api/v1/users", &fresh).await;
            let left = users
                .body
                .as_array()
                .unwrap()
                .iter()
                .filter(|u| u["role"] == "super_admin")
                .count();
            assert_eq!(left, 1, "{backend:?} #{round}");
        }
    }
}

// ---- 12. licence limits ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn licence_limits_hold_under_parallel_enrollment_and_user_creation() {
    for backend in backends() {
        let (app, vendor) = TestApp::with_plugins(backend).await;
        let app = Arc::new(app);
        let admin = app.setup_admin().await;
        let license = infrapilot_licensing::License {
            id: "lic-limits".into(),
            licensee: "Limits Ltd".into(),
            edition: "enterprise".into(),
            features: vec![],
            limits: [("nodes".to_owned(), 3), ("users".to_owned(), 4)].into(),
            issued_at: "2026-01-01T00:00:00Z".into(),
            expires_at: "2099-01-01T00:00:00Z".into(),
        }
        .issue(&vendor)
        .unwrap();
        app.put_license(&admin, &license).await;
        // The nodes limit holds per organisation: 50 parallel enrollments make exactly 3 in the
        // default organisation, and 3 more in Beta.
        let r = app
            .post("/api/v1/orgs", Some(&admin), json!({"name": "Beta"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let beta = r.body["id"].as_str().unwrap().to_owned();
        let (_, default_secret) = app.enrollment_token(&admin, 100).await;
        let r = app
            .call_with_headers(
                "POST",
                "/api/v1/enrollment-tokens",
                Some(&admin),
                &[("x-infrapilot-org", &beta)],
                Some(json!({"name": "beta", "max_uses": 100, "expires_in_hours": 1})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let beta_secret = r.body["secret"].as_str().unwrap().to_owned();
        for secret in [default_secret, beta_secret] {
            let secret = Arc::new(secret);
            let statuses = in_parallel(&app, 50, move |app, i| {
                let secret = secret.clone();
                async move {
                    app.post(
                        "/api/v1/agents/enroll",
                        None,
                        json!({"token": *secret, "csr": node_csr(), "name": format!("node-{i}"), "version": "1"}),
                    )
                    .await
                    .status
                }
            })
            .await;
            assert_eq!(
                count(&statuses, StatusCode::CREATED),
                3,
                "{backend:?}: {statuses:?}"
            );
            assert_eq!(
                count(&statuses, StatusCode::FORBIDDEN),
                47,
                "{backend:?}: {statuses:?}"
            );
        }
        for org in [DEFAULT_ORG_ID, beta.as_str()] {
            let r = app
                .call_with_headers(
                    "GET",
                    "/api/v1/agents",
                    Some(&admin),
                    &[("x-infrapilot-org", org)],
                    None,
                )
                .await;
            let enrolled = r
                .body
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["builtin"] != true)
                .count();
            assert_eq!(enrolled, 3, "{org}: {:?}", r.body);
        }
        let statuses = in_parallel(&app, 10, {
            let admin = admin.clone();
            move |app, i| {
                let admin = admin.clone();
                async move {
                    app.post(
                        "/api/v1/users",
                        Some(&admin),
                        json!({"email": format!("u{i}@example.com"), "password": PASSWORD, "name": "U", "role": "viewer"}),
                    )
                    .await
                    .status
                }
            }
        })
        .await;
        // 4 users allowed, the super_admin is one.
        assert_eq!(
            count(&statuses, StatusCode::CREATED),
            3,
            "{backend:?}: {statuses:?}"
        );
        let r = app
            .post(
                "/api/v1/users",
                Some(&admin),
                json!({"email": "over@example.com", "password": PASSWORD, "name": "U", "role": "viewer"}),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, Some("license_limit"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_member_limit_holds_per_organisation_under_parallel_additions() {
    for backend in backends() {
        let (app, vendor) = TestApp::with_plugins(backend).await;
        let app = Arc::new(app);
        let admin = app.setup_admin().await;
        let license = infrapilot_licensing::License {
            id: "lic-members".into(),
            licensee: "Members Ltd".into(),
            edition: "enterprise".into(),
            features: vec![],
            limits: [("members".to_owned(), 3)].into(),
            issued_at: "2026-01-01T00:00:00Z".into(),
            expires_at: "2099-01-01T00:00:00Z".into(),
        }
        .issue(&vendor)
        .unwrap();
        app.put_license(&admin, &license).await;
        // A person in the default organisation (2 of its 3), then Beta with its maker (1 of 3).
        let r = app
            .post(
                "/api/v1/users",
                Some(&admin),
                json!({"email": "outside@example.com", "password": PASSWORD, "name": "O", "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let r = app
            .post("/api/v1/orgs", Some(&admin), json!({"name": "Beta"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let beta = Arc::new(r.body["id"].as_str().unwrap().to_owned());
        let statuses = in_parallel(&app, 10, {
            let (admin, beta) = (admin.clone(), beta.clone());
            move |app, i| {
                let (admin, beta) = (admin.clone(), beta.clone());
                async move {
                    app.call_with_headers(
                        "POST",
                        "/api/v1/users",
                        Some(&admin),
                        &[("x-infrapilot-org", &beta)],
                        Some(json!({"email": format!("b{i}@example.com"), "password": PASSWORD, "name": "B", "role": "viewer"})),
                    )
                    .await
                    .status
                }
            }
        })
        .await;
        assert_eq!(
            count(&statuses, StatusCode::CREATED),
            2,
            "{backend:?}: {statuses:?}"
        );
        assert_eq!(
            count(&statuses, StatusCode::FORBIDDEN),
            8,
            "{backend:?}: {statuses:?}"
        );
        // Full: adding an existing person or accepting an invitation is refused too.
        let r = app
            .post(
                &format!("/api/v1/orgs/{beta}/members"),
                Some(&admin),
                json!({"email": "outside@example.com", "role": "viewer"}),
            )
            .await;
        assert_eq!(
            (r.status, r.code(), r.field()),
            (StatusCode::FORBIDDEN, Some("license_limit"), Some("email"))
        );
        let r = app
            .post(
                &format!("/api/v1/orgs/{beta}/invitations"),
                Some(&admin),
                json!({"email": "outside@example.com", "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let secret = r.body["token"].as_str().unwrap().to_owned();
        let outside = app.login("outside@example.com", PASSWORD).await;
        let r = app
            .call(
                "POST",
                &format!("/api/v1/invitations/{secret}/accept"),
                Some(&outside),
                None,
            )
            .await;
        assert_eq!(
            (r.status, r.code(), r.field()),
            (StatusCode::FORBIDDEN, Some("license_limit"), Some("token"))
        );
        // The invitation was not spent by the refusal.
        let r = app
            .get(&format!("/api/v1/orgs/{beta}/invitations"), &admin)
            .await;
        assert_eq!(r.body.as_array().unwrap().len(), 1, "{:?}", r.body);
    }
}
