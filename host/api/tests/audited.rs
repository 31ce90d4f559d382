//! Every state-changing route writes an audit event: a scripted scenario calls each one
//! successfully and checks that the chain grew, and the test fails if a state-changing route in the
//! role table is not in the scenario.

mod common;

use std::collections::BTreeSet;

use common::{ADMIN_EMAIL, PASSWORD, TestApp, oathtool, plugin_build};
use infrapilot_api::access::ACCESS_RULES;
use infrapilot_store::testing::backends;
use serde_json::{Value, json};

/// The newest audit event of any organisation (an organisation's own changes are in its own
/// chain): its id and action, or empty strings.
async fn newest_event(app: &TestApp) -> (String, String) {
    let newest = |column: &str| {
        format!(
            "SELECT COALESCE((SELECT {column} FROM audit_events ORDER BY at DESC, seq DESC LIMIT 1), '')"
        )
    };
    (
        app.db.owner_text(&newest("id")).await,
        app.db.owner_text(&newest("action")).await,
    )
}

/// One successful call that must append an audit event with `action` (in any organisation's
/// chain); records the route as covered.
#[allow(clippy::too_many_arguments)]
async fn step_once(
    app: &TestApp,
    covered: &mut BTreeSet<(String, String)>,
    backend: infrapilot_store::Backend,
    (method, route): (&str, &str),
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    action: &str,
) -> common::Reply {
    let (before, _) = newest_event(app).await;
    let reply = app.call(method, path, token, body).await;
    assert!(
        reply.status.is_success(),
        "{backend:?} {method} {path}: {} {:?}",
        reply.status,
        reply.body
    );
    let (after, newest) = newest_event(app).await;
    assert_ne!(after, before, "{method} {route} wrote no audit event");
    assert_eq!(newest, action, "{method} {route}");
    covered.insert((method.to_string(), route.to_string()));
    reply
}

#[tokio::test]
async fn every_state_changing_route_is_audited() {
    for backend in backends() {
        // On the heap: the scenario's future is larger than a test thread's stack.
        Box::pin(scenario(backend)).await;
    }
}

async fn scenario(backend: infrapilot_store::Backend) {
    {
        let (app, vendor) = TestApp::with_plugins(backend).await;
        let mut covered = BTreeSet::new();

        // Runs one successful call and checks that it appended an audit event with `action`.
        macro_rules! step {
            ($method:expr, $route:expr, $path:expr, $token:expr, $body:expr, $action:expr) => {{
                let path: String = ($path).to_string();
                let body: Option<Value> = $body;
                Box::pin(step_once(
                    &app,
                    &mut covered,
                    backend,
                    ($method, $route),
                    &path,
                    $token,
                    body,
                    $action,
                ))
                .await
            }};
        }

        step!(
            "POST",
            "/api/v1/setup",
            "/api/v1/setup",
            None,
            Some(
                json!({"setup_code": common::SETUP_CODE, "email": ADMIN_EMAIL, "password": PASSWORD, "name": "Root"})
            ),
            "setup.complete"
        );
        let login = step!(
            "POST",
            "/api/v1/auth/login",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": ADMIN_EMAIL, "password": PASSWORD})),
            "auth.login"
        );
        let refresh_token = login.body["refresh_token"].as_str().unwrap().to_owned();
        let r = step!(
            "POST",
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh_token})),
            "auth.refresh"
        );
        let root = r.body["access_token"].as_str().unwrap().to_owned();
        let t = Some(root.as_str());

        let user = step!(
            "POST",
            "/api/v1/users",
            "/api/v1/users",
            t,
            Some(
                json!({"email": "u@example.com", "password": PASSWORD, "name": "U", "role": "viewer"})
            ),
            "user.create"
        );
        let uid = user.body["id"].as_str().unwrap().to_owned();
        step!(
            "PATCH",
            "/api/v1/users/{id}",
            format!("/api/v1/users/{uid}"),
            t,
            Some(json!({"role": "operator"})),
            "user.update"
        );
        // The host operator resets the user's second factor.
        let user_token = app.login("u@example.com", PASSWORD).await;
        let enroll = app
            .post("/api/v1/auth/mfa/enroll", Some(&user_token), json!({}))
            .await;
        let user_secret = enroll.body["secret"].as_str().unwrap().to_owned();
        let r = app
            .post(
                "/api/v1/auth/mfa/confirm",
                Some(&user_token),
                json!({"code": oathtool(&user_secret, 0)}),
            )
            .await;
        assert_eq!(r.status, axum::http::StatusCode::OK, "{:?}", r.body);
        step!(
            "DELETE",
            "/api/v1/users/{id}/mfa",
            format!("/api/v1/users/{uid}/mfa"),
            t,
            None,
            "mfa.reset"
        );
        step!(
            "DELETE",
            "/api/v1/users/{id}",
            format!("/api/v1/users/{uid}"),
            t,
            None,
            "user.delete"
        );

        let token = step!(
            "POST",
            "/api/v1/tokens",
            "/api/v1/tokens",
            t,
            Some(json!({"name": "ci", "role": "viewer", "expires_in_days": 1})),
            "token.create"
        );
        let tid = token.body["id"].as_str().unwrap().to_owned();
        step!(
            "DELETE",
            "/api/v1/tokens/{id}",
            format!("/api/v1/tokens/{tid}"),
            t,
            None,
            "token.revoke"
        );

        let enroll = step!(
            "POST",
            "/api/v1/auth/mfa/enroll",
            "/api/v1/auth/mfa/enroll",
            t,
            None,
            "mfa.enroll_start"
        );
        let secret = enroll.body["secret"].as_str().unwrap().to_owned();
        step!(
            "POST",
            "/api/v1/auth/mfa/confirm",
            "/api/v1/auth/mfa/confirm",
            t,
            Some(json!({"code": oathtool(&secret, 0)})),
            "mfa.enable"
        );
        step!(
            "POST",
            "/api/v1/auth/mfa/backup-codes",
            "/api/v1/auth/mfa/backup-codes",
            t,
            Some(json!({"password": PASSWORD})),
            "mfa.backup_codes_regenerate"
        );
        let challenge = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": ADMIN_EMAIL, "password": PASSWORD}),
            )
            .await;
        let second = step!(
            "POST",
            "/api/v1/auth/mfa/verify",
            "/api/v1/auth/mfa/verify",
            None,
            Some(json!({"mfa_token": challenge.body["mfa_token"], "code": oathtool(&secret, 30)})),
            "auth.login"
        );
        let other = second.body["access_token"].as_str().unwrap().to_owned();
        step!(
            "POST",
            "/api/v1/auth/mfa/disable",
            "/api/v1/auth/mfa/disable",
            t,
            Some(json!({"password": PASSWORD})),
            "mfa.disable"
        );

        let enrollment = step!(
            "POST",
            "/api/v1/enrollment-tokens",
            "/api/v1/enrollment-tokens",
            t,
            Some(json!({"name": "n", "max_uses": 1, "expires_in_hours": 1})),
            "enrollment_token.create"
        );
        let secret_token = enrollment.body["secret"].as_str().unwrap().to_owned();
        let eid = enrollment.body["id"].as_str().unwrap().to_owned();
        let agent = step!(
            "POST",
            "/api/v1/agents/enroll",
            "/api/v1/agents/enroll",
            None,
            Some(
                json!({"token": secret_token, "csr": common::node_csr(), "name": "n1", "version": "1"})
            ),
            "agent.enroll"
        );
        let aid = agent.body["agent_id"].as_str().unwrap().to_owned();
        step!(
            "POST",
            "/api/v1/agents/{id}/revoke",
            format!("/api/v1/agents/{aid}/revoke"),
            t,
            None,
            "agent.revoke"
        );
        step!(
            "DELETE",
            "/api/v1/enrollment-tokens/{id}",
            format!("/api/v1/enrollment-tokens/{eid}"),
            t,
            None,
            "enrollment_token.revoke"
        );

        let sessions = app.get("/api/v1/auth/sessions", &root).await;
        let sid = sessions
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["current"] == false)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        step!(
            "DELETE",
            "/api/v1/auth/sessions/{id}",
            format!("/api/v1/auth/sessions/{sid}"),
            t,
            None,
            "auth.session_revoke"
        );
        let _ = other;
        // Plugins, the licence and alerting (t is still a super_admin's token).
        let bundle =
            std::fs::read(plugin_build().join("bundles/infrapilot_webhook.bundle")).unwrap();
        let (before, _) = newest_event(&app).await;
        let reply = app
            .send_raw(
                "POST",
                "/api/v1/plugins",
                t,
                Some("application/x-tar"),
                bundle,
            )
            .await;
        assert_eq!(reply.status.as_u16(), 201, "{:?}", reply.body);
        assert_ne!(newest_event(&app).await.0, before, "plugin install audited");
        covered.insert(("POST".to_string(), "/api/v1/plugins".to_string()));
        let p = "/api/v1/plugins/infrapilot.webhook";
        step!(
            "POST",
            "/api/v1/plugins/{id}/disable",
            format!("{p}/disable"),
            t,
            None,
            "plugin.disable"
        );
        step!(
            "POST",
            "/api/v1/plugins/{id}/enable",
            format!("{p}/enable"),
            t,
            None,
            "plugin.enable"
        );
        let license = infrapilot_licensing::License {
            id: "lic-audit".into(),
            licensee: "Audit Ltd".into(),
            edition: "enterprise".into(),
            features: vec!["pager".into(), "policies".into()],
            limits: Default::default(),
            issued_at: "2026-01-01T00:00:00Z".into(),
            expires_at: "2099-01-01T00:00:00Z".into(),
        }
        .issue(&vendor)
        .unwrap();
        step!(
            "PUT",
            "/api/v1/license",
            "/api/v1/license",
            t,
            Some(json!({"license": license})),
            "license.install"
        );
        let channel = step!(
            "POST",
            "/api/v1/alerts/channels",
            "/api/v1/alerts/channels",
            t,
            Some(
                json!({"plugin": "infrapilot.webhook", "name": "hook", "settings": {"url": "http://127.0.0.1:9/hook", "secret": "x"}})
            ),
            "alert_channel.create"
        );
        let c = format!(
            "/api/v1/alerts/channels/{}",
            channel.body["id"].as_str().unwrap()
        );
        step!(
            "PATCH",
            "/api/v1/alerts/channels/{id}",
            c,
            t,
            Some(json!({"name": "hook 2"})),
            "alert_channel.update"
        );
        step!(
            "POST",
            "/api/v1/alerts/channels/{id}/test",
            format!("{c}/test"),
            t,
            None,
            "alert_channel.test"
        );
        let rule = step!(
            "POST",
            "/api/v1/alerts/rules",
            "/api/v1/alerts/rules",
            t,
            Some(
                json!({"name": "crash", "kind": "container_crashed", "channel_ids": [channel.body["id"]]})
            ),
            "alert_rule.create"
        );
        let r = format!("/api/v1/alerts/rules/{}", rule.body["id"].as_str().unwrap());
        step!(
            "PATCH",
            "/api/v1/alerts/rules/{id}",
            r,
            t,
            Some(json!({"enabled": false})),
            "alert_rule.update"
        );
        step!(
            "DELETE",
            "/api/v1/alerts/rules/{id}",
            r,
            t,
            None,
            "alert_rule.delete"
        );
        step!(
            "DELETE",
            "/api/v1/alerts/channels/{id}",
            c,
            t,
            None,
            "alert_channel.delete"
        );
        // Policies, with the templates engine.
        app.install_test_plugin(
            &root,
            "infrapilot_policy_templates",
            "infrapilot.policy-templates",
        )
        .await;
        let policy = step!(
            "POST",
            "/api/v1/policies",
            "/api/v1/policies",
            t,
            Some(json!({"name": "no root", "policy_type": "no_root_containers", "action": "warn"})),
            "policy.create"
        );
        let policy_path = format!("/api/v1/policies/{}", policy.body["id"].as_str().unwrap());
        step!(
            "PUT",
            "/api/v1/policies/{id}",
            policy_path,
            t,
            Some(
                json!({"name": "no root", "policy_type": "no_root_containers", "action": "block"})
            ),
            "policy.update"
        );
        step!(
            "POST",
            "/api/v1/policies/dry-run",
            "/api/v1/policies/dry-run",
            t,
            Some(json!({"name": "age", "policy_type": "max_container_age", "action": "audit"})),
            "policy.dry_run"
        );
        step!(
            "DELETE",
            "/api/v1/policies/{id}",
            policy_path,
            t,
            None,
            "policy.delete"
        );
        // An uploaded proxy certificate (a self-signed leaf is a whole chain).
        let upload = || {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["audited.test".to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            json!({"name": "audited", "certificate_pem": cert.pem(), "private_key_pem": key.serialize_pem()})
        };
        let certificate = step!(
            "POST",
            "/api/v1/proxy-certificates",
            "/api/v1/proxy-certificates",
            t,
            Some(upload()),
            "proxy_certificate.upload"
        );
        let pc = format!(
            "/api/v1/proxy-certificates/{}",
            certificate.body["id"].as_str().unwrap()
        );
        step!(
            "PUT",
            "/api/v1/proxy-certificates/{cid}",
            pc,
            t,
            Some(upload()),
            "proxy_certificate.replace"
        );
        step!(
            "DELETE",
            "/api/v1/proxy-certificates/{cid}",
            pc,
            t,
            None,
            "proxy_certificate.delete"
        );
        step!(
            "DELETE",
            "/api/v1/plugins/{id}",
            p,
            t,
            None,
            "plugin.uninstall"
        );

        // Organisations (the host operator makes one: this host runs the enterprise edition).
        let org = step!(
            "POST",
            "/api/v1/orgs",
            "/api/v1/orgs",
            t,
            Some(json!({"name": "Audited"})),
            "org.create"
        );
        let oid = org.body["id"].as_str().unwrap().to_owned();
        step!(
            "PUT",
            "/api/v1/orgs/{id}",
            format!("/api/v1/orgs/{oid}"),
            t,
            Some(json!({"name": "Audited too"})),
            "org.update"
        );
        let member = app
            .post(
                "/api/v1/users",
                t,
                json!({"email": "m@example.com", "password": PASSWORD, "name": "M", "role": "viewer"}),
            )
            .await;
        let mid = member.body["id"].as_str().unwrap().to_owned();
        step!(
            "POST",
            "/api/v1/orgs/{id}/members",
            format!("/api/v1/orgs/{oid}/members"),
            t,
            Some(json!({"email": "m@example.com", "role": "viewer"})),
            "org.member_add"
        );
        step!(
            "PUT",
            "/api/v1/orgs/{id}/members/{uid}",
            format!("/api/v1/orgs/{oid}/members/{mid}"),
            t,
            Some(json!({"role": "operator"})),
            "org.member_role"
        );
        step!(
            "DELETE",
            "/api/v1/orgs/{id}/members/{uid}",
            format!("/api/v1/orgs/{oid}/members/{mid}"),
            t,
            None,
            "org.member_remove"
        );
        // Back in the default organisation only: its admin resets m's second factor.
        let member_token = app.login("m@example.com", PASSWORD).await;
        let enroll = app
            .post("/api/v1/auth/mfa/enroll", Some(&member_token), json!({}))
            .await;
        let member_secret = enroll.body["secret"].as_str().unwrap().to_owned();
        let r = app
            .post(
                "/api/v1/auth/mfa/confirm",
                Some(&member_token),
                json!({"code": oathtool(&member_secret, 0)}),
            )
            .await;
        assert_eq!(r.status, axum::http::StatusCode::OK, "{:?}", r.body);
        let home = app.get("/api/v1/auth/me", &root).await.body["org_id"]
            .as_str()
            .unwrap()
            .to_owned();
        step!(
            "DELETE",
            "/api/v1/orgs/{id}/members/{uid}/mfa",
            format!("/api/v1/orgs/{home}/members/{mid}/mfa"),
            t,
            None,
            "mfa.reset"
        );
        let invitation = step!(
            "POST",
            "/api/v1/orgs/{id}/invitations",
            format!("/api/v1/orgs/{oid}/invitations"),
            t,
            Some(json!({"email": "someone@example.com", "role": "viewer"})),
            "org.invite"
        );
        let iid = invitation.body["id"].as_str().unwrap().to_owned();
        step!(
            "DELETE",
            "/api/v1/orgs/{id}/invitations/{iid}",
            format!("/api/v1/orgs/{oid}/invitations/{iid}"),
            t,
            None,
            "org.invitation_revoke"
        );
        let invitation = app
            .post(
                &format!("/api/v1/orgs/{oid}/invitations"),
                t,
                json!({"email": "m@example.com", "role": "viewer"}),
            )
            .await;
        let secret = invitation.body["token"].as_str().unwrap().to_owned();
        let m = app.login("m@example.com", PASSWORD).await;
        step!(
            "POST",
            "/api/v1/invitations/{token}/accept",
            format!("/api/v1/invitations/{secret}/accept"),
            Some(m.as_str()),
            None,
            "org.invitation_accept"
        );
        step!(
            "DELETE",
            "/api/v1/orgs/{id}",
            format!("/api/v1/orgs/{oid}"),
            t,
            Some(json!({"confirm_name": "Audited too"})),
            "org.delete"
        );

        step!(
            "PUT",
            "/api/v1/sso/policy",
            "/api/v1/sso/policy",
            t,
            Some(json!({"require_sso": false})),
            "sso_policy.update"
        );
        step!(
            "PUT",
            "/api/v1/logs/retention",
            "/api/v1/logs/retention",
            t,
            Some(json!({"retention_days": 30})),
            "logs.retention_set"
        );
        step!(
            "PUT",
            "/api/v1/auth/password",
            "/api/v1/auth/password",
            t,
            Some(json!({"current_password": PASSWORD, "new_password": "a different password"})),
            "auth.password_change"
        );
        step!(
            "POST",
            "/api/v1/auth/logout",
            "/api/v1/auth/logout",
            t,
            None,
            "auth.logout"
        );

        let mutating: BTreeSet<(String, String)> = ACCESS_RULES
            .iter()
            .filter(|(m, _, _)| *m != "GET")
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        // Container actions need a node with a Docker engine: their audit events are checked by
        // tests/system/tests/containers.rs and tests/system/tests/proxy.rs against a real engine and nginx.
        for (m, p, _) in ACCESS_RULES {
            if *m != "GET"
                && p.starts_with("/api/v1/agents/{id}/")
                && *p != "/api/v1/agents/{id}/revoke"
            {
                covered.insert((m.to_string(), p.to_string()));
            }
        }
        // Sign-up needs the SaaS edition and the mailed link: tests/system/tests/organisations.rs
        // checks its `signup` and `signup.verify` events with a real SMTP server.
        for route in ["/api/v1/signup", "/api/v1/signup/verify"] {
            covered.insert(("POST".to_string(), route.to_string()));
        }
        // Single sign-on needs a provider plugin: tests/sso.rs checks `sso_provider.create`,
        // `.update`, `.delete`, `sso.login` (the callback, both outcomes) and the `auth.login` of
        // the code exchange.
        for (method, route) in [
            ("POST", "/api/v1/sso/providers"),
            ("PATCH", "/api/v1/sso/providers/{id}"),
            ("DELETE", "/api/v1/sso/providers/{id}"),
            ("POST", "/api/v1/auth/sso/{id}/callback"),
            ("POST", "/api/v1/auth/sso/exchange"),
            // tests/sso_ldap.rs: `sso.login` both ways and the `auth.login` of a directory sign-in.
            ("POST", "/api/v1/auth/sso/{id}/password"),
        ] {
            covered.insert((method.to_string(), route.to_string()));
        }
        let missing: Vec<_> = mutating.difference(&covered).collect();
        assert!(
            missing.is_empty(),
            "state-changing routes not shown to be audited: {missing:?}"
        );

        let admin = app.login(ADMIN_EMAIL, "a different password").await;
        assert_eq!(
            app.get("/api/v1/audit/verify", &admin).await.body["ok"],
            true
        );
    }
}
