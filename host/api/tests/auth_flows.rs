//! Identity end to end through the router: setup, login, MFA (codes from `oathtool`), refresh
//! rotation and reuse detection, logout, throttling, users, API tokens, the audit trail.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{ADMIN_EMAIL, PASSWORD, TestApp, oathtool};
use infrapilot_api::ApiSettings;
use infrapilot_store::testing::backends;
use serde_json::json;

#[tokio::test]
async fn setup_once_then_login_refresh_logout() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        assert_eq!(
            app.call("GET", "/api/v1/setup", None, None).await.body["needed"],
            true
        );
        let admin = app.setup_admin().await;
        assert_eq!(
            app.call("GET", "/api/v1/setup", None, None).await.body["needed"],
            false
        );
        let again = app
            .post(
                "/api/v1/setup",
                None,
                json!({"setup_code": common::SETUP_CODE, "email": "x@example.com", "password": PASSWORD, "name": "X"}),
            )
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{backend:?}");

        let me = app.get("/api/v1/auth/me", &admin).await;
        assert_eq!(me.body["email"], ADMIN_EMAIL);
        assert_eq!(me.body["role"], "super_admin");

        // Refresh rotates both tokens.
        let login = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": ADMIN_EMAIL, "password": PASSWORD}),
            )
            .await;
        let refresh1 = login.body["refresh_token"].as_str().unwrap().to_owned();
        let r = app
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": refresh1}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let access2 = r.body["access_token"].as_str().unwrap().to_owned();
        let refresh2 = r.body["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(refresh1, refresh2);
        let old_access = login.body["access_token"].as_str().unwrap();
        assert_eq!(
            app.get("/api/v1/auth/me", old_access).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.get("/api/v1/auth/me", &access2).await.status,
            StatusCode::OK
        );

        // Reusing the spent refresh token ends the whole session.
        let reuse = app
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": refresh1}),
            )
            .await;
        assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            app.get("/api/v1/auth/me", &access2).await.status,
            StatusCode::UNAUTHORIZED
        );
        let after = app
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": refresh2}),
            )
            .await;
        assert_eq!(
            after.status,
            StatusCode::UNAUTHORIZED,
            "the rotated token died with the session"
        );

        // Sessions are listed and revocable; logout ends the current one.
        let sessions = app.get("/api/v1/auth/sessions", &admin).await;
        let list = sessions.body.as_array().unwrap();
        assert_eq!(list.len(), 1, "the revoked session is gone: {list:?}");
        assert_eq!(list[0]["current"], true);
        let other = app.login(ADMIN_EMAIL, PASSWORD).await;
        let sessions = app.get("/api/v1/auth/sessions", &admin).await;
        let other_id = sessions
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["current"] == false)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let del = app
            .call(
                "DELETE",
                &format!("/api/v1/auth/sessions/{other_id}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(del.status, StatusCode::NO_CONTENT);
        assert_eq!(
            app.get("/api/v1/auth/me", &other).await.status,
            StatusCode::UNAUTHORIZED
        );
        let out = app
            .call("POST", "/api/v1/auth/logout", Some(&admin), None)
            .await;
        assert_eq!(out.status, StatusCode::NO_CONTENT);
        assert_eq!(
            app.get("/api/v1/auth/me", &admin).await.status,
            StatusCode::UNAUTHORIZED
        );

        let admin = app.login(ADMIN_EMAIL, PASSWORD).await;
        let actions = app.audit_actions(&admin).await;
        for expected in [
            "setup.complete",
            "auth.login",
            "auth.refresh",
            "auth.refresh_reuse",
            "auth.session_revoke",
            "auth.logout",
        ] {
            assert!(
                actions.iter().any(|a| a == expected),
                "{backend:?}: {expected} missing from {actions:?}"
            );
        }
        let verify = app.get("/api/v1/audit/verify", &admin).await;
        assert_eq!(verify.body["ok"], true, "{:?}", verify.body);
    }
}

#[tokio::test]
async fn totp_mfa_agrees_with_oathtool() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let admin = app.setup_admin().await;
        let enroll = app
            .call("POST", "/api/v1/auth/mfa/enroll", Some(&admin), None)
            .await;
        assert_eq!(enroll.status, StatusCode::OK, "{:?}", enroll.body);
        let secret = enroll.body["secret"].as_str().unwrap().to_owned();
        assert!(
            enroll.body["otpauth_uri"]
                .as_str()
                .unwrap()
                .starts_with("otpauth://totp/InfraPilot:")
        );
        assert!(
            enroll.body["qr_svg_data_url"]
                .as_str()
                .unwrap()
                .starts_with("data:image/svg+xml;base64,")
        );

        let wrong = app
            .post(
                "/api/v1/auth/mfa/confirm",
                Some(&admin),
                json!({"code": "000000"}),
            )
            .await;
        if wrong.status != StatusCode::OK {
            assert_eq!(wrong.field(), Some("code"));
        }
        let confirm = app
            .post(
                "/api/v1/auth/mfa/confirm",
                Some(&admin),
                json!({"code": oathtool(&secret, 0)}),
            )
            .await;
        assert_eq!(
            confirm.status,
            StatusCode::OK,
            "{backend:?}: {:?}",
            confirm.body
        );
        let backup: Vec<String> = confirm.body["backup_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(backup.len(), 10);

        // Password alone no longer signs in.
        let login = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": ADMIN_EMAIL, "password": PASSWORD}),
            )
            .await;
        assert_eq!(login.body["mfa_required"], true, "{:?}", login.body);
        assert!(login.body.get("access_token").is_none());
        let mfa_token = login.body["mfa_token"].as_str().unwrap().to_owned();

        // The code used at enrolment cannot be replayed; the next step's code works.
        let replay = app
            .post(
                "/api/v1/auth/mfa/verify",
                None,
                json!({"mfa_token": mfa_token, "code": oathtool(&secret, 0)}),
            )
            .await;
        assert_eq!(
            replay.status,
            StatusCode::UNAUTHORIZED,
            "replayed code refused"
        );
        assert_eq!(replay.field(), Some("code"));
        let next = oathtool(&secret, 30);
        let ok = app
            .post(
                "/api/v1/auth/mfa/verify",
                None,
                json!({"mfa_token": mfa_token, "code": next}),
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{backend:?}: {:?}", ok.body);
        let token = ok.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(
            app.get("/api/v1/auth/me", &token).await.body["mfa_enabled"],
            true
        );
        let spent = app
            .post(
                "/api/v1/auth/mfa/verify",
                None,
                json!({"mfa_token": mfa_token, "code": next}),
            )
            .await;
        assert_eq!(
            spent.status,
            StatusCode::UNAUTHORIZED,
            "the challenge is single use"
        );

        // A backup code works once.
        for (attempt, expected) in [(1, StatusCode::OK), (2, StatusCode::UNAUTHORIZED)] {
            let login = app
                .post(
                    "/api/v1/auth/login",
                    None,
                    json!({"email": ADMIN_EMAIL, "password": PASSWORD}),
                )
                .await;
            let r = app
                .post(
                    "/api/v1/auth/mfa/verify",
                    None,
                    json!({"mfa_token": login.body["mfa_token"], "code": backup[0].to_uppercase()}),
                )
                .await;
            assert_eq!(
                r.status, expected,
                "backup code attempt {attempt}: {:?}",
                r.body
            );
        }
        let status = app.get("/api/v1/auth/mfa", &token).await;
        assert_eq!(status.body["backup_codes_remaining"], 9);

        // Disabling needs the password.
        let bad = app
            .post(
                "/api/v1/auth/mfa/disable",
                Some(&token),
                json!({"password": "wrong password!"}),
            )
            .await;
        assert_eq!(
            (bad.status, bad.field()),
            (StatusCode::BAD_REQUEST, Some("password"))
        );
        let off = app
            .post(
                "/api/v1/auth/mfa/disable",
                Some(&token),
                json!({"password": PASSWORD}),
            )
            .await;
        assert_eq!(off.status, StatusCode::NO_CONTENT);
        let login = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": ADMIN_EMAIL, "password": PASSWORD}),
            )
            .await;
        assert!(login.body["access_token"].is_string());

        let actions = app.audit_actions(&token).await;
        for expected in ["mfa.enroll_start", "mfa.enable", "mfa.disable"] {
            assert!(actions.iter().any(|a| a == expected), "{expected} missing");
        }
        // Disabling removes the seed.
        let stored = app
            .db
            .app_scalar("SELECT COALESCE(MAX(email), '') FROM users WHERE totp_secret IS NULL")
            .await;
        assert_eq!(stored, ADMIN_EMAIL, "disable cleared the sealed seed");
    }
}

#[tokio::test]
async fn login_is_throttled_per_account_and_per_address() {
    for backend in backends() {
        let settings = ApiSettings {
            account_failures: 3,
            ip_failures: 5,
            throttle_window: Duration::from_secs(60),
            ..common::test_settings()
        };
        let mut app = TestApp::with_settings(backend, settings).await;
        app.setup_admin().await;
        for _ in 0..3 {
            let r = app
                .post(
                    "/api/v1/auth/login",
                    None,
                    json!({"email": ADMIN_EMAIL, "password": "wrong password"}),
                )
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        let locked = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": ADMIN_EMAIL, "password": PASSWORD}),
            )
            .await;
        assert_eq!(
            locked.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{:?}",
            locked.body
        );
        assert!(locked.headers.contains_key("retry-after"));

        // Another address hammering other accounts is stopped by the per-address limit.
        app.client_ip = "198.51.100.7".into();
        for i in 0..5 {
            let r = app
                .post(
                    "/api/v1/auth/login",
                    None,
                    json!({"email": format!("nobody{i}@example.com"), "password": "x"}),
                )
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        let r = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "fresh@example.com", "password": "x"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

        let failures = app.db.app_scalar(
            "SELECT CAST(COUNT(*) AS TEXT) FROM audit_events WHERE action = 'auth.login' AND outcome = 'failure'",
        );
        assert_eq!(failures.await, "8", "each failed login is audited");
    }
}

#[tokio::test]
async fn users_crud_keeps_a_super_admin() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let root = app.setup_admin().await;
        let viewer = app.user_with_role(&root, "viewer").await;
        let admin = app.user_with_role(&root, "admin").await;

        let list = app.get("/api/v1/users", &admin).await;
        assert_eq!(list.body.as_array().unwrap().len(), 3);
        assert_eq!(
            app.get("/api/v1/users", &viewer).await.status,
            StatusCode::FORBIDDEN
        );
        let dup = app
            .post("/api/v1/users", Some(&root), json!({"email": "VIEWER@example.com", "password": PASSWORD, "name": "v", "role": "viewer"}))
            .await;
        assert_eq!(
            (dup.status, dup.field()),
            (StatusCode::CONFLICT, Some("email"))
        );

        let me = app.get("/api/v1/auth/me", &root).await;
        let root_id = me.body["id"].as_str().unwrap().to_owned();
        let demote = app
            .call(
                "PATCH",
                &format!("/api/v1/users/{root_id}"),
                Some(&root),
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(
            (demote.status, demote.code()),
            (StatusCode::CONFLICT, Some("last_super_admin"))
        );
        let delete_self = app
            .call(
                "DELETE",
                &format!("/api/v1/users/{root_id}"),
                Some(&root),
                None,
            )
            .await;
        assert_eq!(delete_self.status, StatusCode::CONFLICT);

        // Disabling a user ends their sessions at once.
        let viewer_id = app.get("/api/v1/auth/me", &viewer).await.body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/users/{viewer_id}"),
                Some(&root),
                Some(json!({"disabled": true, "name": "Vera", "role": "operator"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(
            (r.body["name"].as_str(), r.body["role"].as_str()),
            (Some("Vera"), Some("operator"))
        );
        assert_eq!(
            app.get("/api/v1/auth/me", &viewer).await.status,
            StatusCode::UNAUTHORIZED
        );
        let login = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "viewer@example.com", "password": PASSWORD}),
            )
            .await;
        assert_eq!(login.status, StatusCode::FORBIDDEN);

        let gone = app
            .call(
                "DELETE",
                &format!("/api/v1/users/{viewer_id}"),
                Some(&root),
                None,
            )
            .await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        let missing = app.get(&format!("/api/v1/users/{viewer_id}"), &root).await;
        assert_eq!(
            (missing.status, missing.field()),
            (StatusCode::NOT_FOUND, Some("id"))
        );

        // An admin may not manage users; the refusal is audited.
        let r = app
            .post("/api/v1/users", Some(&admin), json!({"email": "n@example.com", "password": PASSWORD, "name": "n", "role": "viewer"}))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let actions = app.audit_actions(&root).await;
        for expected in ["user.create", "user.update", "user.delete", "access.denied"] {
            assert!(
                actions.iter().any(|a| a == expected),
                "{expected} missing from {actions:?}"
            );
        }
    }
}

#[tokio::test]
async fn api_tokens_are_shown_once_bound_to_a_role_and_revocable() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let root = app.setup_admin().await;
        let admin = app.user_with_role(&root, "admin").await;
        let too_high = app
            .post(
                "/api/v1/tokens",
                Some(&admin),
                json!({"name": "ci", "role": "super_admin", "expires_in_days": 30}),
            )
            .await;
        assert_eq!(
            (too_high.status, too_high.field()),
            (StatusCode::BAD_REQUEST, Some("role"))
        );
        let bad_expiry = app
            .post(
                "/api/v1/tokens",
                Some(&admin),
                json!({"name": "ci", "role": "viewer", "expires_in_days": 0}),
            )
            .await;
        assert_eq!(bad_expiry.field(), Some("expires_in_days"));

        let created = app
            .post(
                "/api/v1/tokens",
                Some(&admin),
                json!({"name": "ci", "role": "viewer", "expires_in_days": 30}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let secret = created.body["secret"].as_str().unwrap().to_owned();
        let id = created.body["id"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("ipt_"));

        assert_eq!(
            app.get("/api/v1/auth/me", &secret).await.status,
            StatusCode::OK
        );
        assert_eq!(
            app.get("/api/v1/users", &secret).await.status,
            StatusCode::FORBIDDEN,
            "viewer token"
        );
        let listed = app.get("/api/v1/tokens", &admin).await;
        assert!(
            !listed
                .raw
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "secret never listed"
        );
        let stored = app.db.app_scalar("SELECT token_hash FROM api_tokens").await;
        assert_ne!(stored, secret, "only the hash is stored");

        let revoke = app
            .call(
                "DELETE",
                &format!("/api/v1/tokens/{id}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(revoke.status, StatusCode::NO_CONTENT);
        assert_eq!(
            app.get("/api/v1/auth/me", &secret).await.status,
            StatusCode::UNAUTHORIZED
        );
        let again = app
            .call(
                "DELETE",
                &format!("/api/v1/tokens/{id}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn password_change_ends_other_sessions() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let a = app.setup_admin().await;
        let b = app.login(ADMIN_EMAIL, PASSWORD).await;
        let wrong = app
            .call("PUT", "/api/v1/auth/password", Some(&a), Some(json!({"current_password": "nope nope nope", "new_password": "another long password"})))
            .await;
        assert_eq!(wrong.field(), Some("current_password"));
        let weak = app
            .call(
                "PUT",
                "/api/v1/auth/password",
                Some(&a),
                Some(json!({"current_password": PASSWORD, "new_password": "short"})),
            )
            .await;
        assert_eq!(weak.field(), Some("new_password"));
        let ok = app
            .call(
                "PUT",
                "/api/v1/auth/password",
                Some(&a),
                Some(
                    json!({"current_password": PASSWORD, "new_password": "another long password"}),
                ),
            )
            .await;
        assert_eq!(ok.status, StatusCode::NO_CONTENT);
        assert_eq!(app.get("/api/v1/auth/me", &a).await.status, StatusCode::OK);
        assert_eq!(
            app.get("/api/v1/auth/me", &b).await.status,
            StatusCode::UNAUTHORIZED
        );
        app.login(ADMIN_EMAIL, "another long password").await;
    }
}

#[tokio::test]
async fn audit_filters_and_verify_reports_tampering() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let root = app.setup_admin().await;
        app.user_with_role(&root, "viewer").await;
        let only_creates = app.get("/api/v1/audit?action=user.create", &root).await;
        let events = only_creates.body["events"].as_array().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["actor"], ADMIN_EMAIL);
        assert_eq!(events[0]["outcome"], "success");
        let by_actor = app
            .get("/api/v1/audit?actor=viewer@example.com", &root)
            .await;
        assert!(
            by_actor.body["events"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["actor"] == "viewer@example.com")
        );
        let future = app
            .get("/api/v1/audit?since=2999-01-01T00:00:00Z", &root)
            .await;
        assert!(future.body["events"].as_array().unwrap().is_empty());
        let page = app.get("/api/v1/audit?limit=2", &root).await;
        let cursor = page.body["next_cursor"].as_i64().expect("more pages");
        let page2 = app
            .get(&format!("/api/v1/audit?limit=2&before_seq={cursor}"), &root)
            .await;
        assert!(page2.body["events"][0]["seq"].as_i64().unwrap() < cursor);

        assert_eq!(
            app.get("/api/v1/audit/verify", &root).await.body["ok"],
            true
        );
        app.db
            .raw_execute("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2")
            .await;
        let report = app.get("/api/v1/audit/verify", &root).await;
        assert_eq!(report.body["ok"], false);
        assert_eq!(
            report.body["first_bad_event"]["seq"], 2,
            "{:?}",
            report.body
        );
    }
}
