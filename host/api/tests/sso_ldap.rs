//! Directory sign-in against a real OpenLDAP (`tests/peers/start-slapd.sh`: slapd with StartTLS,
//! LDAPS and memberOf, the unauthenticated-bind trap left on) through the real `infrapilot.ldap`
//! plugin and the host's `ldap` capability: a provider saved only when its service account
//! binds, a login with the role from the directory's groups, a wrong and an empty password, an
//! injection string as the username, a person moved out of the mapped group, a group search
//! instead of memberOf, LDAPS, and a directory whose certificate is not trusted.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use axum::http::StatusCode;
use common::TestApp;
use infrapilot_plugin_runtime::contract::ldap::{Credentials, LdapError, Server};
use infrapilot_plugin_runtime::directory::DirectoryEgress;
use infrapilot_plugin_runtime::egress::EgressGuard;
use infrapilot_store::testing::backends;
use serde_json::{Value, json};

const PLUGIN: &str = "infrapilot.ldap";
const BASE: &str = "dc=example,dc=test";

/// A slapd of this test, stopped on drop.
struct Slapd {
    dir: PathBuf,
    port: u16,
    tls_port: u16,
    ca_pem: String,
}

impl Slapd {
    fn start() -> Slapd {
        let started = common::peers::start("start-slapd.sh", &[], &[]);
        let (dir, var) = (started.dir.clone(), |name: &str| started.var(name));
        Slapd {
            port: var("LDAP_PORT").parse().unwrap(),
            tls_port: var("LDAPS_PORT").parse().unwrap(),
            ca_pem: std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
            dir,
        }
    }

    /// Runs an LDIF change as the directory's administrator.
    fn modify(&self, ldif: &str) {
        let path = self.dir.join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        let out = Command::new("ldapmodify")
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", self.port)])
            .args(["-D", &format!("cn=admin,{BASE}"), "-w", "adminpw", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("slapd.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn settings(slapd: &Slapd) -> Value {
    json!({
        "url": format!("ldap://127.0.0.1:{}", slapd.port),
        "ca_pem": slapd.ca_pem,
        "bind_dn": format!("cn=reader,ou=services,{BASE}"),
        "bind_password": "readerpw",
        "user_base": format!("ou=people,{BASE}"),
        "group_base": format!("ou=groups,{BASE}"),
        "emails_verified": true,
    })
}

async fn licensed_app(backend: infrapilot_store::Backend) -> (TestApp, String, String) {
    common::sso::licensed_app(backend, "infrapilot_ldap", PLUGIN).await
}

/// A directory sign-in: the status and the body.
async fn sign_in(
    app: &TestApp,
    org: &str,
    provider: &str,
    username: &str,
    password: &str,
) -> common::Reply {
    app.post(
        &format!("/api/v1/auth/sso/{provider}/password?org={org}"),
        None,
        json!({"username": username, "password": password}),
    )
    .await
}

async fn role_after_sign_in(app: &TestApp, org: &str, provider: &str, who: &str) -> String {
    let r = sign_in(app, org, provider, who, &format!("{who}pw")).await;
    assert_eq!(r.status, StatusCode::OK, "{who}: {:?}", r.body);
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    let me = app.get("/api/v1/auth/me", &token).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    me.body["role"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn people_sign_in_with_their_directory_password_and_groups_give_their_role() {
    let slapd = Slapd::start();
    for backend in backends() {
        let (app, admin, org) = licensed_app(backend).await;
        let body = |settings: Value| {
            json!({"plugin": PLUGIN, "name": "Corp directory", "settings": settings,
                "group_roles": [{"group": "admins", "role": "admin"},
                                {"group": "devs", "role": "operator"}]})
        };
        // Saved only when the service account binds; settings problems name their field.
        let mut wrong_password = settings(&slapd);
        wrong_password["bind_password"] = json!("not-it");
        let mut plain_http = settings(&slapd);
        plain_http["url"] = json!("http://127.0.0.1:1");
        let mut no_placeholder = settings(&slapd);
        no_placeholder["user_filter"] = json!("(uid=alice)");
        for (bad, field) in [
            (wrong_password, "settings.bind_dn"),
            (plain_http, "settings.url"),
            (no_placeholder, "settings.user_filter"),
        ] {
            common::sso::provider_refused(&app, &admin, body(bad), field).await;
        }
        let r = app
            .post(
                "/api/v1/sso/providers",
                Some(&admin),
                body(settings(&slapd)),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let provider = r.body["id"].as_str().unwrap().to_owned();
        assert!(
            r.body["settings"].get("bind_password").is_none(),
            "{:?}",
            r.body
        );

        // The sign-in page shows a username and password form for it.
        let r = app
            .call(
                "GET",
                &format!("/api/v1/auth/sso/providers?org={org}"),
                None,
                None,
            )
            .await;
        assert_eq!(
            r.body,
            json!([{"id": provider, "name": "Corp directory", "login": "password"}])
        );
        // It has no redirect to start.
        let r = app
            .call(
                "GET",
                &format!("/api/v1/auth/sso/{provider}/start?org={org}"),
                None,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert!(
            r.headers["location"]
                .to_str()
                .unwrap()
                .contains("sso_error"),
            "{:?}",
            r.headers
        );

        // alice (admins, devs) is an admin; bob (devs) an operator; JIT made both.
        assert_eq!(
            role_after_sign_in(&app, &org, &provider, "alice").await,
            "admin"
        );
        assert_eq!(
            role_after_sign_in(&app, &org, &provider, "bob").await,
            "operator"
        );
        // The second sign-in is the same person.
        assert_eq!(
            role_after_sign_in(&app, &org, &provider, "bob").await,
            "operator"
        );
        let users = app.get("/api/v1/users", &admin).await;
        let emails: Vec<&str> = users.body["users"]
            .as_array()
            .or(users.body.as_array())
            .unwrap()
            .iter()
            .filter_map(|u| u["email"].as_str())
            .collect();
        assert_eq!(
            emails.iter().filter(|e| **e == "bob@example.test").count(),
            1,
            "{emails:?}"
        );

        // A wrong password, an unknown person, injection strings: the same refusal.
        for (username, password) in [
            ("alice", "wrong"),
            ("nobody", "alicepw"),
            ("*", "alicepw"),
            ("alice)(uid=*", "alicepw"),
            ("*)(|(uid=*", "alicepw"),
            ("al*", "alicepw"),
            ("alice\\2a", "alicepw"),
        ] {
            let r = sign_in(&app, &org, &provider, username, password).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{username}: {:?}",
                r.body
            );
            assert_eq!(r.body["error"]["message"], "wrong username or password");
        }
        // An empty password never reaches the directory (which would take it as anonymous).
        for (username, password, field) in [
            ("alice", "", "password"),
            ("", "alicepw", "username"),
            ("   ", "alicepw", "username"),
        ] {
            let r = sign_in(&app, &org, &provider, username, password).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
            assert_eq!(r.field(), Some(field), "{:?}", r.body);
        }
        let audit = app.get("/api/v1/audit?limit=500", &admin).await;
        let failures = audit.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "sso.login" && e["outcome"] == "failure")
            .count();
        assert!(failures >= 7, "{failures} failures audited");
        let events = audit.body["events"].as_array().unwrap();
        let successes = events
            .iter()
            .filter(|e| e["action"] == "sso.login" && e["outcome"] == "success")
            .count();
        assert!(successes >= 3, "{successes} successes audited");
        assert!(
            events.iter().any(
                |e| e["action"] == "auth.login" && e["detail"]["provider"] == provider.as_str()
            ),
            "the session's auth.login names the provider"
        );

        // Moved out of the admins group in the directory: an operator at the next sign-in.
        slapd.modify(&format!(
            "dn: cn=admins,ou=groups,{BASE}\nchangetype: modify\nadd: member\nmember: uid=bob,ou=people,{BASE}\n"
        ));
        assert_eq!(
            role_after_sign_in(&app, &org, &provider, "bob").await,
            "admin"
        );
        slapd.modify(&format!(
            "dn: cn=admins,ou=groups,{BASE}\nchangetype: modify\ndelete: member\nmember: uid=bob,ou=people,{BASE}\n"
        ));
        assert_eq!(
            role_after_sign_in(&app, &org, &provider, "bob").await,
            "operator"
        );

        // Without a groups base DN, groups are reported by DN only: a rule naming "admins"
        // no longer matches (a group of that name elsewhere in the directory must not either).
        let mut no_base = settings(&slapd);
        no_base.as_object_mut().unwrap().remove("group_base");
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/sso/providers/{provider}"),
                Some(&admin),
                Some(json!({"settings": no_base, "group_roles": [
                    {"group": "admins", "role": "admin"},
                    {"group": format!("cn=devs,ou=groups,{BASE}"), "role": "viewer"}]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(
            role_after_sign_in(&app, &org, &provider, "alice").await,
            "viewer"
        );
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/sso/providers/{provider}"),
                Some(&admin),
                Some(json!({"group_roles": [{"group": "admins", "role": "admin"},
                                            {"group": "devs", "role": "operator"}]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

        // Groups by a group search instead of memberOf, over LDAPS.
        let mut search = settings(&slapd);
        search["url"] = json!(format!("ldaps://127.0.0.1:{}", slapd.tls_port));
        search["group_lookup"] = json!("group_search");
        search["group_base"] = json!(format!("ou=groups,{BASE}"));
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/sso/providers/{provider}"),
                Some(&admin),
                Some(json!({"settings": search})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(
            role_after_sign_in(&app, &org, &provider, "alice").await,
            "admin"
        );
        assert_eq!(
            role_after_sign_in(&app, &org, &provider, "bob").await,
            "operator"
        );

        // A directory whose certificate is not trusted is not saved: the service account cannot
        // bind over TLS it cannot verify.
        let mut untrusted = search.clone();
        untrusted["ca_pem"] = json!(null);
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/sso/providers/{provider}"),
                Some(&admin),
                Some(json!({"settings": untrusted})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.field(), Some("settings.url"), "{:?}", r.body);
        // Another organisation's sign-in page does not offer this provider.
        let other = app
            .post("/api/v1/orgs", Some(&admin), json!({"name": "Other"}))
            .await;
        assert_eq!(other.status, StatusCode::CREATED, "{:?}", other.body);
        let other = other.body["id"].as_str().unwrap().to_owned();
        let r = sign_in(&app, &other, &provider, "alice", "alicepw").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);

        // A second factor: a directory reports none, so only this host's TOTP can be required;
        // bob sets his up at that sign-in.
        let provider_path = format!("/api/v1/sso/providers/{provider}");
        let patch = |body: Value| app.call("PATCH", &provider_path, Some(&admin), Some(body));
        let r = patch(json!({"mfa": "idp"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.field(), Some("mfa"), "{:?}", r.body);
        let r = patch(json!({"mfa": "local"})).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let r = sign_in(&app, &org, &provider, "bob", "bobpw").await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["mfa_required"], true, "{:?}", r.body);
        assert!(r.body.get("access_token").is_none(), "{:?}", r.body);
        let secret = r.body["enrollment"]["secret"].as_str().unwrap().to_owned();
        let verified = app
            .post(
                "/api/v1/auth/mfa/verify",
                None,
                json!({"mfa_token": r.body["mfa_token"], "code": common::oathtool(&secret, 0)}),
            )
            .await;
        assert_eq!(verified.status, StatusCode::OK, "{:?}", verified.body);
        assert!(
            verified.body["backup_codes"].is_array(),
            "{:?}",
            verified.body
        );
        let me = app
            .get(
                "/api/v1/auth/me",
                verified.body["access_token"].as_str().unwrap(),
            )
            .await;
        assert_eq!(me.body["role"], "operator", "{:?}", me.body);
        // A wrong directory password never reaches the second step.
        let r = sign_in(&app, &org, &provider, "bob", "wrong").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        assert!(r.body.get("mfa_token").is_none(), "{:?}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_never_sends_an_empty_password_to_a_directory_that_would_accept_it() {
    let slapd = Slapd::start();
    // This slapd takes a DN with an empty password as an anonymous bind (the RFC 4513 trap).
    let out = Command::new("ldapwhoami")
        .args([
            "-x",
            "-ZZ",
            "-H",
            &format!("ldap://127.0.0.1:{}", slapd.port),
        ])
        .args(["-D", &format!("uid=alice,ou=people,{BASE}"), "-w", ""])
        .env("LDAPTLS_CACERT", slapd.dir.join("ca.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "anonymous");

    let directory = DirectoryEgress::new(EgressGuard::parse_allow_list("127.0.0.0/8").unwrap());
    let server = Server {
        url: format!("ldap://127.0.0.1:{}", slapd.port),
        ca_pem: Some(slapd.ca_pem.clone()),
        timeout_ms: None,
    };
    let bind = |password: &str| Credentials {
        dn: format!("uid=alice,ou=people,{BASE}"),
        password: password.into(),
    };
    let timeout = Duration::from_secs(5);
    let e = directory
        .bind(&server, &bind(""), timeout)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, LdapError::InvalidRequest(t) if t.starts_with("credentials.password")),
        "{e:?}"
    );
    assert_eq!(
        directory.bind(&server, &bind("wrong"), timeout).await,
        Err(LdapError::InvalidCredentials)
    );
    directory
        .bind(&server, &bind("alicepw"), timeout)
        .await
        .unwrap();
    // StartTLS is not optional: without the CA the TLS handshake fails.
    let untrusted = Server {
        ca_pem: None,
        ..server.clone()
    };
    let e = directory
        .bind(&untrusted, &bind("alicepw"), timeout)
        .await
        .unwrap_err();
    assert!(matches!(e, LdapError::Transport(_)), "{e:?}");
    // The address rule holds for directories too.
    let guarded = DirectoryEgress::new(EgressGuard::default());
    let e = guarded
        .bind(&server, &bind("alicepw"), timeout)
        .await
        .unwrap_err();
    assert!(matches!(e, LdapError::Denied(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organisation_can_require_single_sign_on_and_a_deleted_provider_signs_its_people_out() {
    let slapd = Slapd::start();
    for backend in backends() {
        let (app, admin, org) = licensed_app(backend).await;
        let policy = |required: bool| json!({"require_sso": required});
        // Not without a provider: its members would have no way in.
        let r = app
            .call(
                "PUT",
                "/api/v1/sso/policy",
                Some(&admin),
                Some(policy(true)),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.field(), Some("require_sso"));
        let r = app
            .post(
                "/api/v1/sso/providers",
                Some(&admin),
                json!({"plugin": PLUGIN, "name": "Corp directory", "settings": settings(&slapd),
                    "group_roles": [{"group": "devs", "role": "operator"}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let provider = r.body["id"].as_str().unwrap().to_owned();
        // A local member, signed in before the policy.
        let r = app
            .post(
                "/api/v1/users",
                Some(&admin),
                json!({"email": "carol@local.test", "password": "carol-password-1", "name": "Carol", "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let carol = app.login("carol@local.test", "carol-password-1").await;
        // An admin's API token, and one of an admin demoted since: under the policy only
        // admins' tokens act.
        let r = app
            .post(
                "/api/v1/users",
                Some(&admin),
                json!({"email": "dave@local.test", "password": "dave-password-1", "name": "Dave", "role": "admin"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let dave_id = r.body["id"].as_str().unwrap().to_owned();
        let dave = app.login("dave@local.test", "dave-password-1").await;
        let mut tokens = Vec::new();
        for who in [&admin, &dave] {
            let r = app
                .post(
                    "/api/v1/tokens",
                    Some(who),
                    json!({"name": "ci", "role": "viewer", "expires_in_days": 1}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            tokens.push(r.body["secret"].as_str().unwrap().to_owned());
        }
        let (admin_token, dave_token) = (tokens[0].clone(), tokens[1].clone());
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/users/{dave_id}"),
                Some(&admin),
                Some(json!({"role": "viewer"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(
            app.get("/api/v1/agents", &dave_token).await.status,
            StatusCode::OK
        );
        let bob = sign_in(&app, &org, &provider, "bob", "bobpw").await;
        assert_eq!(bob.status, StatusCode::OK, "{:?}", bob.body);
        let bob = bob.body["access_token"].as_str().unwrap().to_owned();

        let r = app
            .call(
                "PUT",
                "/api/v1/sso/policy",
                Some(&admin),
                Some(policy(true)),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(
            app.get("/api/v1/sso/policy", &admin).await.body,
            policy(true)
        );
        // Carol's local session cannot act in the organisation any more, nor can she sign in
        // with her password again.
        let r = app.get("/api/v1/agents", &carol).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        assert_eq!(r.body["error"]["code"], "sso_required");
        let r = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "carol@local.test", "password": "carol-password-1"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        assert_eq!(r.body["error"]["code"], "sso_required");
        let r = app.get("/api/v1/agents", &dave_token).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        assert_eq!(r.body["error"]["code"], "sso_required");
        assert_eq!(
            app.get("/api/v1/agents", &admin_token).await.status,
            StatusCode::OK
        );
        // The admin keeps the local sign-in (break-glass); bob's single sign-on session works.
        assert_eq!(
            app.get("/api/v1/agents", &admin).await.status,
            StatusCode::OK
        );
        app.login(common::ADMIN_EMAIL, common::PASSWORD).await;
        assert_eq!(app.get("/api/v1/agents", &bob).await.status, StatusCode::OK);
        // Its last provider stays while the organisation requires it …
        let path = format!("/api/v1/sso/providers/{provider}");
        let r = app.call("DELETE", &path, Some(&admin), None).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
        let r = app
            .call(
                "PATCH",
                &path,
                Some(&admin),
                Some(json!({"enabled": false})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
        assert_eq!(app.get("/api/v1/agents", &bob).await.status, StatusCode::OK);
        // … and once it is not required, deleting it ends the sessions it made.
        let r = app
            .call(
                "PUT",
                "/api/v1/sso/policy",
                Some(&admin),
                Some(policy(false)),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(
            app.get("/api/v1/agents", &carol).await.status,
            StatusCode::OK
        );
        // Turning the provider off ends the sessions it made.
        let r = app
            .call(
                "PATCH",
                &path,
                Some(&admin),
                Some(json!({"enabled": false})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let r = app.get("/api/v1/agents", &bob).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        let r = app
            .call("PATCH", &path, Some(&admin), Some(json!({"enabled": true})))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let bob = sign_in(&app, &org, &provider, "bob", "bobpw").await;
        assert_eq!(bob.status, StatusCode::OK, "{:?}", bob.body);
        let bob = bob.body["access_token"].as_str().unwrap().to_owned();
        let r = app.call("DELETE", &path, Some(&admin), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        let r = app.get("/api/v1/agents", &bob).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        assert_eq!(
            app.get("/api/v1/agents", &carol).await.status,
            StatusCode::OK
        );
        let actions = app.audit_actions(&admin).await;
        assert!(
            actions.iter().any(|a| a == "sso_policy.update"),
            "{actions:?}"
        );
    }
}
