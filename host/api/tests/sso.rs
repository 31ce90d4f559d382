//! Single sign-on through the host: providers (an organisation's admins configure a plugin and
//! its group → role mapping), and logins with the test provider plugin (a real WebAssembly
//! component whose "identity provider" is its settings; the real OpenID Provider, SAML IdP and
//! LDAP directory are in the system and browser tests). What is checked here is the host's half:
//! the login bound to the browser and used once, the state, JIT provisioning keyed by (provider,
//! subject), the mapping re-applied at each login, the one-time code, the audit trail.

mod common;

use std::sync::Arc;

use axum::http::{StatusCode, header};
use common::{ADMIN_EMAIL, TestApp};
use infrapilot_store::testing::backends;
use serde_json::{Value, json};

const PLUGIN: &str = "infrapilot.test-sso";

use common::sso::{callback, exchange, sso_error, start};

/// A fresh login at `provider` answered with `code` by the identity provider, from the browser
/// that started it: where the host sends that browser (see [`callback`]).
async fn answer(app: &TestApp, provider: &str, code: &str) -> String {
    let browser = start(app, provider).await;
    callback(
        app,
        provider,
        Some(&browser.cookie),
        &[("code", code), ("state", &browser.param("state"))],
    )
    .await
}

/// A whole login of `subject`: the access token.
async fn sign_in(app: &TestApp, provider: &str, subject: &str) -> String {
    let body = exchanged(app, provider, subject).await;
    body["access_token"].as_str().unwrap().to_owned()
}

async fn provider(app: &TestApp, admin: &str, body: Value) -> String {
    let r = app.post("/api/v1/sso/providers", Some(admin), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

fn test_idp(groups: &[&str]) -> Value {
    json!({"issuer": "https://idp.test", "email_verified": true, "name": "Sam Single", "groups": groups})
}

#[tokio::test(flavor = "multi_thread")]
async fn providers_are_configured_by_admins_with_checked_settings_and_mapping() {
    for backend in backends() {
        let (app, _) = TestApp::with_plugins(backend).await;
        let admin = app.setup_admin().await;
        app.install_test_plugin(&admin, "infrapilot_test_sso", PLUGIN)
            .await;
        let body = |settings: Value, rules: Value| json!({"plugin": PLUGIN, "name": "Test IdP", "settings": settings, "group_roles": rules});
        for (bad, field) in [
            (
                body(
                    test_idp(&[]),
                    json!([{"group": "root", "role": "super_admin"}]),
                ),
                "group_roles[0].role",
            ),
            (
                body(
                    test_idp(&[]),
                    json!([{"group": "a", "role": "viewer"}, {"group": "a", "role": "admin"}]),
                ),
                "group_roles[1].group",
            ),
            (
                body(test_idp(&[]), json!([{"group": "", "role": "viewer"}])),
                "group_roles[0].group",
            ),
            (
                body(json!({"issuer": "http://plain.test"}), json!([])),
                "settings.issuer",
            ),
            (body(json!({}), json!([])), "settings.issuer"),
        ] {
            common::sso::provider_refused(&app, &admin, bad, field).await;
        }
        let r = app
            .post(
                "/api/v1/sso/providers",
                Some(&admin),
                json!({"plugin": "infrapilot.webhook", "name": "x", "settings": {}}),
            )
            .await;
        assert_eq!(r.field(), Some("plugin"), "{:?}", r.body);
        let id = provider(
            &app,
            &admin,
            body(
                test_idp(&["devs"]),
                json!([{"group": "devs", "role": "operator"}]),
            ),
        )
        .await;
        let r = app
            .get(&format!("/api/v1/sso/providers/{id}"), &admin)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["group_roles"][0]["role"], "operator");
        assert!(
            r.body["callback_url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/api/v1/auth/sso/{id}/callback")),
            "{:?}",
            r.body
        );
        let r = app
            .post(
                "/api/v1/sso/providers",
                Some(&admin),
                body(test_idp(&[]), json!([])),
            )
            .await;
        assert_eq!((r.status, r.field()), (StatusCode::CONFLICT, Some("name")));
        // A secret is write-only, kept while the rest of the settings stay, and dropped when they
        // change without it (a stored secret never goes to a server it was not given for).
        let patch = |body: Value| {
            let (app, admin, path) = (&app, &admin, format!("/api/v1/sso/providers/{id}"));
            async move {
                let r = app.call("PATCH", &path, Some(admin), Some(body)).await;
                assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
                r.body
            }
        };
        let with_secret = json!({"issuer": "https://idp.test", "email_verified": true, "name": "Sam Single",
                                 "groups": ["devs"], "client_secret": "s3cret"});
        let body = patch(json!({"settings": with_secret})).await;
        assert_eq!(body["secrets_set"], json!(["client_secret"]));
        assert!(!body.to_string().contains("s3cret"), "{body}");
        let body = patch(json!({"settings": test_idp(&["devs"])})).await;
        assert_eq!(
            body["secrets_set"],
            json!(["client_secret"]),
            "same settings keep it"
        );
        let body = patch(json!({"name": "Test IdP"})).await;
        assert_eq!(body["secrets_set"], json!(["client_secret"]));
        let body = patch(json!({"settings": {"issuer": "https://elsewhere.test"}})).await;
        assert_eq!(body["secrets_set"], json!([]), "another issuer drops it");
        let body = patch(json!({"settings": test_idp(&["devs"])})).await;
        assert_eq!(body["secrets_set"], json!([]));

        // The sign-in page lists enabled providers without credentials; a disabled one is not
        // listed and cannot start a login.
        let r = app
            .call("GET", "/api/v1/auth/sso/providers", None, None)
            .await;
        assert_eq!(
            r.body,
            json!([{"id": id, "name": "Test IdP", "login": "redirect"}])
        );
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/sso/providers/{id}"),
                Some(&admin),
                Some(json!({"enabled": false})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let r = app
            .call("GET", "/api/v1/auth/sso/providers", None, None)
            .await;
        assert_eq!(r.body, json!([]));
        let r = app
            .call("GET", &format!("/api/v1/auth/sso/{id}/start"), None, None)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let actions = app.audit_actions(&admin).await;
        assert!(actions.contains(&"sso_provider.create".to_owned()));
        assert!(actions.contains(&"sso_provider.update".to_owned()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_is_bound_to_its_browser_used_once_and_maps_groups_to_roles() {
    for backend in backends() {
        let (app, _) = TestApp::with_plugins(backend).await;
        let admin = app.setup_admin().await;
        app.install_test_plugin(&admin, "infrapilot_test_sso", PLUGIN)
            .await;
        let id = provider(
            &app,
            &admin,
            json!({"plugin": PLUGIN, "name": "Test IdP", "settings": test_idp(&["devs"]),
                   "group_roles": [{"group": "devs", "role": "operator"}, {"group": "ops", "role": "admin"}]}),
        )
        .await;

        // The provider's URL carries the host's state, nonce and S256 challenge, never the verifier.
        let browser = start(&app, &id).await;
        assert_eq!(browser.param("state").len(), 64);
        assert_eq!(browser.param("code_challenge").len(), 43);
        assert!(
            browser
                .param("redirect_uri")
                .ends_with(&format!("/api/v1/auth/sso/{id}/callback")),
            "one callback per provider"
        );
        let state = browser.param("state");
        let good = [("code", "good-sam"), ("state", state.as_str())];

        // Another browser (no cookie, or another login's cookie) cannot finish it.
        let location = callback(&app, &id, None, &good).await;
        assert!(
            sso_error(&location).contains("not started in this browser"),
            "{location}"
        );
        let other = start(&app, &id).await;
        let location = callback(&app, &id, Some(&other.cookie), &good).await;
        assert!(
            sso_error(&location).contains("another sign-in"),
            "{location}"
        );
        // A forged answer does not end the other login: its own answer still works.
        let location = callback(
            &app,
            &id,
            Some(&other.cookie),
            &[("code", "good-sam"), ("state", &other.param("state"))],
        )
        .await;
        assert!(location.starts_with("/login/sso#"), "{location}");
        // An answer that reaches another provider's callback (the mix-up attack: a hostile
        // provider relays its login to an honest one) is refused before anyone sees the code.
        let second = provider(
            &app,
            &admin,
            json!({"plugin": PLUGIN, "name": "Second IdP", "settings": test_idp(&["devs"]),
                   "group_roles": [{"group": "devs", "role": "operator"}]}),
        )
        .await;
        let location = callback(&app, &second, Some(&browser.cookie), &good).await;
        assert!(
            sso_error(&location).contains("another provider's callback"),
            "{location}"
        );
        // Another site's link starts no login (login CSRF), and a planted second cookie beside
        // the host's makes the login nobody's.
        let r = app
            .call_with_headers(
                "GET",
                &format!("/api/v1/auth/sso/{id}/start"),
                None,
                &[("sec-fetch-site", "cross-site")],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.headers[header::LOCATION], "/login?sso_error=1");
        let doubled = format!("{}; {}", other.cookie, browser.cookie);
        let location = callback(&app, &id, Some(&doubled), &good).await;
        assert!(
            sso_error(&location).contains("not started in this browser"),
            "{location}"
        );
        // A tampered cookie is no cookie.
        let tampered = format!("{}00", browser.cookie);
        let location = callback(&app, &id, Some(&tampered), &good).await;
        assert!(sso_error(&location).contains("not started in this browser"));

        // The real answer: a one-time code for the dashboard, in the fragment.
        let location = callback(&app, &id, Some(&browser.cookie), &good).await;
        let code = location
            .strip_prefix("/login/sso#")
            .expect(&location)
            .to_owned();
        // Replayed, the same answer is refused.
        let location = callback(&app, &id, Some(&browser.cookie), &good).await;
        assert!(sso_error(&location).contains("used already"), "{location}");
        // The code works from this browser only, once.
        let (status, _) = exchange(&app, &other.cookie, &code).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = exchange(&app, &browser.cookie, "0".repeat(64).as_str()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:?}");
        let (status, body) = exchange(&app, &browser.cookie, &code).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        let token = body["access_token"].as_str().unwrap().to_owned();
        let (status, _) = exchange(&app, &browser.cookie, &code).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a code is spent once");

        // Just in time: Sam exists now, an operator through `devs`, with no usable password.
        let me = app.get("/api/v1/auth/me", &token).await;
        assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
        assert_eq!(me.body["email"], "sam@example.com");
        assert_eq!(me.body["name"], "Sam Single");
        assert_eq!(me.body["role"], "operator");
        let r = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "sam@example.com", "password": "!sso-only"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);

        // The provider says no: refused, audited, nothing made.
        let location = answer(&app, &id, "forged").await;
        assert!(sso_error(&location).contains("refused"), "{location}");

        // The mapping follows the identity provider at each login: in `ops`, Sam is an admin;
        // in no mapped group and without a default role, Sam is refused.
        let set_groups = |groups: &[&str]| {
            let (app, admin, path) = (&app, &admin, format!("/api/v1/sso/providers/{id}"));
            let body = json!({"settings": test_idp(groups)});
            async move {
                let r = app.call("PATCH", &path, Some(admin), Some(body)).await;
                assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            }
        };
        set_groups(&["devs", "ops"]).await;
        let token = sign_in(&app, &id, "sam").await;
        assert_eq!(
            app.get("/api/v1/auth/me", &token).await.body["role"],
            "admin"
        );
        set_groups(&["devs"]).await;
        let token = sign_in(&app, &id, "sam").await;
        assert_eq!(
            app.get("/api/v1/auth/me", &token).await.body["role"],
            "operator"
        );
        set_groups(&["marketing"]).await;
        let location = answer(&app, &id, "good-sam").await;
        assert!(
            sso_error(&location).contains("none of your groups"),
            "{location}"
        );
        // A default role lets them in as that.
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/sso/providers/{id}"),
                Some(&admin),
                Some(json!({"default_role": "viewer"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let token = sign_in(&app, &id, "sam").await;
        assert_eq!(
            app.get("/api/v1/auth/me", &token).await.body["role"],
            "viewer"
        );

        // An existing account's email is never taken over by a provider's claim.
        let admin_subject = ADMIN_EMAIL.split('@').next().unwrap();
        let location = answer(&app, &id, &format!("good-{admin_subject}")).await;
        assert!(
            sso_error(&location).contains("exists already"),
            "{location}"
        );

        // Sam's address is the provider's word only: an invitation to it, in another
        // organisation, cannot be accepted by Sam's account.
        let r = app
            .post("/api/v1/orgs", Some(&admin), json!({"name": "Other"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let other_org = r.body["id"].as_str().unwrap().to_owned();
        let r = app
            .post(
                &format!("/api/v1/orgs/{other_org}/invitations"),
                Some(&admin),
                json!({"email": "sam@example.com", "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let invitation = r.body["token"].as_str().unwrap().to_owned();
        let sam = sign_in(&app, &id, "sam").await;
        let r = app
            .call(
                "POST",
                &format!("/api/v1/invitations/{invitation}/accept"),
                Some(&sam),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::GONE, "{:?}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not verified")
        );

        // The provider repointed at another identity provider vouches for no one it made.
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/sso/providers/{id}"),
                Some(&admin),
                Some(json!({"settings": {"issuer": "https://elsewhere.test", "email_verified": true, "groups": ["devs"]}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let location = answer(&app, &id, "good-sam").await;
        assert!(
            sso_error(&location).contains("another identity provider"),
            "{location}"
        );

        let r = app
            .get("/api/v1/audit?action=sso.login&limit=100", &admin)
            .await;
        let outcomes: Vec<&str> = r.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["outcome"].as_str().unwrap())
            .collect();
        assert!(
            outcomes.contains(&"success") && outcomes.contains(&"failure"),
            "{outcomes:?}"
        );
        // The session itself starts with the code exchange, audited as a sign-in through SSO.
        let r = app
            .get("/api/v1/audit?action=auth.login&limit=100", &admin)
            .await;
        assert!(
            r.body["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["detail"]["sso"] == true && e["actor"] == "sam@example.com"),
            "{:?}",
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_first_logins_of_one_subject_make_one_person() {
    for backend in backends() {
        let (app, _) = TestApp::with_plugins(backend).await;
        let app = Arc::new(app);
        let admin = app.setup_admin().await;
        app.install_test_plugin(&admin, "infrapilot_test_sso", PLUGIN)
            .await;
        let id = provider(
            &app,
            &admin,
            json!({"plugin": PLUGIN, "name": "Test IdP", "settings": test_idp(&["devs"]),
                   "group_roles": [{"group": "devs", "role": "viewer"}]}),
        )
        .await;
        let mut logins = Vec::new();
        for _ in 0..20 {
            logins.push(start(&app, &id).await);
        }
        let tasks: Vec<_> = logins
            .into_iter()
            .map(|browser| {
                let (app, id) = (app.clone(), id.clone());
                tokio::spawn(async move {
                    callback(
                        &app,
                        &id,
                        Some(&browser.cookie),
                        &[("code", "good-twin"), ("state", &browser.param("state"))],
                    )
                    .await
                })
            })
            .collect();
        for task in tasks {
            let location = task.await.unwrap();
            assert!(
                location.starts_with("/login/sso#"),
                "{backend:?}: {location}"
            );
        }
        assert_eq!(
            app.db
                .owner_count("SELECT COUNT(*) FROM users WHERE email = 'twin@example.com'")
                .await,
            1
        );
        assert_eq!(
            app.db
                .owner_count("SELECT COUNT(*) FROM sso_identities WHERE subject = 'twin'")
                .await,
            1
        );
    }
}

/// A whole login of `subject` up to the exchange: its answer (tokens, or the second step).
async fn exchanged(app: &TestApp, provider: &str, subject: &str) -> Value {
    let browser = start(app, provider).await;
    let location = callback(
        app,
        provider,
        Some(&browser.cookie),
        &[
            ("code", &format!("good-{subject}")),
            ("state", &browser.param("state")),
        ],
    )
    .await;
    let code = location
        .strip_prefix("/login/sso#")
        .unwrap_or_else(|| panic!("no code: {location}"));
    let (status, body) = exchange(app, &browser.cookie, code).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    body
}

async fn patch_provider(app: &TestApp, admin: &str, id: &str, body: Value) -> common::Reply {
    app.call(
        "PATCH",
        &format!("/api/v1/sso/providers/{id}"),
        Some(admin),
        Some(body),
    )
    .await
}

async fn verify(app: &TestApp, mfa_token: &str, code: &str) -> common::Reply {
    app.post(
        "/api/v1/auth/mfa/verify",
        None,
        json!({"mfa_token": mfa_token, "code": code}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_requires_a_second_factor_from_the_identity_provider_or_this_host() {
    for backend in backends() {
        let (app, _) = TestApp::with_plugins(backend).await;
        let admin = app.setup_admin().await;
        app.install_test_plugin(&admin, "infrapilot_test_sso", PLUGIN)
            .await;
        let with = |extra: Value| {
            let mut body = json!({"plugin": PLUGIN, "name": "Test IdP",
                "settings": test_idp(&["devs"]),
                "group_roles": [{"group": "devs", "role": "operator"}]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            body
        };
        // The policy and the extra acr values are checked, naming the field.
        for (extra, field) in [
            (json!({"mfa": "always"}), "mfa"),
            (json!({"mfa": ""}), "mfa"),
            (json!({"mfa_acr_values": [" "]}), "mfa_acr_values[0]"),
            (json!({"mfa_acr_values": ["2", "2"]}), "mfa_acr_values[1]"),
            (json!({"mfa_acr_values": ["a\nb"]}), "mfa_acr_values[0]"),
            // Single-factor levels never count as a second factor.
            (json!({"mfa_acr_values": ["2", "1"]}), "mfa_acr_values[1]"),
            (
                json!({"mfa_acr_values": ["urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"]}),
                "mfa_acr_values[0]",
            ),
            (
                json!({"mfa_acr_values": vec!["x"; 21].iter().enumerate().map(|(i, _)| i.to_string()).collect::<Vec<_>>()}),
                "mfa_acr_values",
            ),
        ] {
            let r = app
                .post("/api/v1/sso/providers", Some(&admin), with(extra.clone()))
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{extra}: {:?}", r.body);
            assert_eq!(r.field(), Some(field), "{extra}: {:?}", r.body);
        }

        // `idp`: a login the identity provider reports no second factor for is refused.
        let mut settings = test_idp(&["devs"]);
        settings["amr"] = json!(["pwd"]);
        let id = provider(
            &app,
            &admin,
            with(json!({"mfa": "idp", "settings": settings})),
        )
        .await;
        let r = app
            .get(&format!("/api/v1/sso/providers/{id}"), &admin)
            .await;
        assert_eq!(r.body["mfa"], "idp");
        assert_eq!(r.body["mfa_acr_values"], json!([]));
        let location = answer(&app, &id, "good-mia").await;
        assert!(sso_error(&location).contains("second factor"), "{location}");
        assert_eq!(
            app.db
                .owner_count("SELECT COUNT(*) FROM users WHERE email = 'mia@example.com'")
                .await,
            0,
            "no one is made by a refused login"
        );
        // With `mfa` in `amr`, the login goes through.
        settings["amr"] = json!(["pwd", "mfa"]);
        let r = patch_provider(&app, &admin, &id, json!({"settings": settings})).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let body = exchanged(&app, &id, "mia").await;
        assert!(body["access_token"].is_string(), "{body:?}");
        // An `acr` counts when it is a multi-factor class or one of the provider's own values.
        settings.as_object_mut().unwrap().remove("amr");
        settings["acr"] = json!("2");
        let r = patch_provider(&app, &admin, &id, json!({"settings": settings})).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let location = answer(&app, &id, "good-mia").await;
        assert!(sso_error(&location).contains("second factor"), "{location}");
        let r = patch_provider(&app, &admin, &id, json!({"mfa_acr_values": ["2"]})).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["mfa_acr_values"], json!(["2"]));
        let body = exchanged(&app, &id, "mia").await;
        let idp_session = body["access_token"].as_str().unwrap().to_owned();

        // `local`: after the identity provider, this host's TOTP; a person without one enrols
        // it in that step. Tightening the policy ends the sessions made without it.
        let r = patch_provider(&app, &admin, &id, json!({"mfa": "local"})).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let r = app.get("/api/v1/auth/me", &idp_session).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        // A set-up replaced by a newer one (another sign-in) no longer confirms anything.
        let stale = exchanged(&app, &id, "mia").await;
        let stale_secret = stale["enrollment"]["secret"].as_str().unwrap().to_owned();
        let step = exchanged(&app, &id, "mia").await;
        assert_eq!(step["mfa_required"], true, "{step:?}");
        assert!(step.get("access_token").is_none(), "{step:?}");
        let secret = step["enrollment"]["secret"].as_str().unwrap().to_owned();
        assert_ne!(secret, stale_secret);
        let r = verify(
            &app,
            stale["mfa_token"].as_str().unwrap(),
            &common::oathtool(&stale_secret, 0),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        assert_eq!(r.field(), Some("mfa_token"), "{:?}", r.body);
        assert!(
            step["enrollment"]["otpauth_uri"]
                .as_str()
                .unwrap()
                .starts_with("otpauth://totp/"),
            "{step:?}"
        );
        let mfa_token = step["mfa_token"].as_str().unwrap().to_owned();
        let r = verify(&app, &mfa_token, "000000").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        assert_eq!(r.field(), Some("code"));
        let r = verify(&app, &mfa_token, &common::oathtool(&secret, 0)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let token = r.body["access_token"].as_str().unwrap().to_owned();
        let backup_codes: Vec<String> = r.body["backup_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert!(backup_codes.len() >= 8, "{:?}", r.body);
        // The step is spent; the session is the provider's (its policy and revocation apply).
        let again = verify(&app, &mfa_token, &common::oathtool(&secret, 30)).await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{:?}", again.body);
        let r = app.get("/api/v1/auth/mfa", &token).await;
        assert_eq!(r.body["enabled"], true, "{:?}", r.body);
        let r = app.get("/api/v1/auth/me", &token).await;
        assert_eq!(r.body["role"], "operator", "{:?}", r.body);
        assert_eq!(
            app.db
                .owner_count(&format!(
                    "SELECT COUNT(*) FROM sessions WHERE sso_provider_id = '{id}' AND revoked_at IS NULL"
                ))
                .await,
            1,
            "this one (those under `idp` ended when the policy tightened)"
        );

        // The next login asks for the code of the enrolled authenticator (or a backup code).
        let step = exchanged(&app, &id, "mia").await;
        assert_eq!(step["mfa_required"], true, "{step:?}");
        assert!(step.get("enrollment").is_none(), "{step:?}");
        let mfa_token = step["mfa_token"].as_str().unwrap().to_owned();
        let r = verify(&app, &mfa_token, &backup_codes[0]).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert!(r.body.get("backup_codes").is_none(), "{:?}", r.body);
        let mia_session = r.body["access_token"].as_str().unwrap().to_owned();

        // A lost authenticator: the host operator resets it (never their own); mia's sessions
        // end and her next sign-in sets up a new one.
        let mia = app.get("/api/v1/auth/me", &mia_session).await.body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let me = app.get("/api/v1/auth/me", &admin).await.body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/users/{me}/mfa"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.field(), Some("id"));
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/users/{mia}/mfa"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/users/{mia}/mfa"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
        let r = app.get("/api/v1/auth/me", &mia_session).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        let step = exchanged(&app, &id, "mia").await;
        let secret = step["enrollment"]["secret"].as_str().unwrap().to_owned();
        let r = verify(
            &app,
            step["mfa_token"].as_str().unwrap(),
            &common::oathtool(&secret, 0),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let backup_codes: Vec<String> = r.body["backup_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();

        // A provider turned off between the two steps opens no session.
        let step = exchanged(&app, &id, "mia").await;
        let mfa_token = step["mfa_token"].as_str().unwrap().to_owned();
        let r = patch_provider(&app, &admin, &id, json!({"enabled": false})).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let r = verify(&app, &mfa_token, &backup_codes[1]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        assert_eq!(
            app.db
                .owner_count(&format!(
                    "SELECT COUNT(*) FROM sessions WHERE sso_provider_id = '{id}' AND revoked_at IS NULL"
                ))
                .await,
            0
        );

        // The organisation's admin resets it too (mia belongs to this organisation only), but
        // never their own there.
        let org = app.get("/api/v1/auth/me", &admin).await.body["org_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/orgs/{org}/members/{me}/mfa"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.field(), Some("uid"));
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/orgs/{org}/members/{mia}/mfa"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        let members = app
            .get(&format!("/api/v1/orgs/{org}/members"), &admin)
            .await;
        let mia_row = members
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["user_id"] == mia.as_str())
            .cloned()
            .unwrap();
        assert_eq!(mia_row["mfa_enabled"], false, "{mia_row:?}");

        let actions = app.audit_actions(&admin).await;
        for action in [
            "mfa.enroll_start",
            "mfa.enable",
            "mfa.reset",
            "auth.mfa_verify",
        ] {
            assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
        }
        assert!(
            actions.iter().filter(|a| *a == "sso.login").count() >= 6,
            "{actions:?}"
        );
    }
}
