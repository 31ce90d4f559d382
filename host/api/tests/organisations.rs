//! Organisations on both backends: the edition's limit, the organisation of a request (from the
//! credential, the `X-InfraPilot-Org` header or the `/orgs/{id}` path; another organisation's ids
//! answer 404), members and their roles, invitations (single use, bound to the email, expiring),
//! and deleting an organisation with everything it holds.

mod common;

use axum::http::StatusCode;
use common::{ADMIN_EMAIL, PASSWORD, TestApp, test_settings};
use infrapilot_api::ApiSettings;
use infrapilot_licensing::HostEdition;
use infrapilot_store::testing::backends;
use infrapilot_store::{Backend, DEFAULT_ORG_ID};
use serde_json::{Value, json};

const ORG_HEADER: &str = "x-infrapilot-org";

async fn enterprise(backend: Backend) -> TestApp {
    TestApp::with_settings(
        backend,
        ApiSettings {
            edition: HostEdition::Enterprise,
            ..test_settings()
        },
    )
    .await
}

impl TestApp {
    async fn in_org(
        &self,
        method: &str,
        path: &str,
        token: &str,
        org: &str,
        body: Option<Value>,
    ) -> common::Reply {
        self.call_with_headers(method, path, Some(token), &[(ORG_HEADER, org)], body)
            .await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_community_edition_runs_one_organisation() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let admin = app.setup_admin().await;
        let r = app
            .post("/api/v1/orgs", Some(&admin), json!({"name": "Second"}))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{backend:?}: {:?}", r.body);
        assert_eq!(r.field(), Some("edition"));
        assert_eq!(r.code(), Some("edition_limit"));
        let r = app.get("/api/v1/orgs", &admin).await;
        assert_eq!(r.status, StatusCode::OK);
        let orgs = r.body.as_array().unwrap();
        assert_eq!(orgs.len(), 1, "{:?}", r.body);
        assert_eq!(orgs[0]["id"], DEFAULT_ORG_ID);
        assert_eq!(orgs[0]["role"], "super_admin");
        // What the dashboard is told: no second organisation to offer, no sign-up page.
        let r = app.get("/api/v1/auth/me", &admin).await;
        assert_eq!(r.body["org_id"], DEFAULT_ORG_ID, "{:?}", r.body);
        assert_eq!(r.body["host_operator"], true);
        assert_eq!(r.body["can_create_organisations"], false);
        let r = app.call("GET", "/api/v1/setup", None, None).await;
        assert_eq!(r.body["signup_open"], false, "{:?}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn organisations_members_and_invitations_stay_apart() {
    for backend in backends() {
        let app = enterprise(backend).await;
        let root = app.setup_admin().await;

        // Only the host operator makes organisations in the enterprise edition; names are checked.
        let r = app
            .post("/api/v1/orgs", Some(&root), json!({"name": "  "}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.field(), Some("name"));
        let r = app
            .post("/api/v1/orgs", Some(&root), json!({"name": "Beta"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{backend:?}: {:?}", r.body);
        let beta = r.body["id"].as_str().unwrap().to_owned();
        assert_eq!(r.body["role"], "super_admin");

        // A user made in Beta acts in Beta (their only membership) and sees nothing else.
        let r = app
            .in_org(
                "POST",
                "/api/v1/users",
                &root,
                &beta,
                Some(json!({"email": "bob@example.com", "password": PASSWORD, "name": "Bob", "role": "admin"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let bob_id = r.body["id"].as_str().unwrap().to_owned();
        let r = app
            .in_org(
                "POST",
                "/api/v1/users",
                &root,
                &beta,
                Some(json!({"email": "eve@example.com", "password": PASSWORD, "name": "Eve", "role": "super_admin"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.field(), Some("role"));
        let bob = app.login("bob@example.com", PASSWORD).await;
        let r = app
            .post("/api/v1/orgs", Some(&bob), json!({"name": "Mine"}))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        let r = app.get("/api/v1/orgs", &bob).await;
        let orgs: Vec<&str> = r
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap())
            .collect();
        assert_eq!(orgs, vec![beta.as_str()]);

        // Default's data is invisible to Bob and answers 404, by header, path or id.
        let (default_token, _) = app.enrollment_token(&root, 1).await;
        let r = app.get("/api/v1/enrollment-tokens", &bob).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.as_array().unwrap().len(), 0, "{:?}", r.body);
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/enrollment-tokens/{default_token}"),
                Some(&bob),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
        let r = app.get("/api/v1/enrollment-tokens", &root).await;
        assert_eq!(r.body[0]["revoked"], false, "{:?}", r.body);
        let r = app
            .in_org("GET", "/api/v1/agents", &bob, DEFAULT_ORG_ID, None)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
        assert_eq!(r.field(), Some(ORG_HEADER));
        let r = app
            .in_org("GET", "/api/v1/agents", &bob, "not-an-id", None)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
        let r = app
            .get(&format!("/api/v1/orgs/{DEFAULT_ORG_ID}/members"), &bob)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
        let r = app.get("/api/v1/audit?limit=500", &bob).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        for event in r.body["events"].as_array().unwrap() {
            assert!(
                !event["action"].as_str().unwrap().starts_with("setup"),
                "Beta's audit shows the host's events: {event}"
            );
        }

        // An API token of Beta acts in Beta only.
        let r = app
            .post(
                "/api/v1/tokens",
                Some(&bob),
                json!({"name": "ci", "role": "viewer", "expires_in_days": 1}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let bob_api = r.body["secret"].as_str().unwrap().to_owned();
        let r = app.get("/api/v1/enrollment-tokens", &bob_api).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "viewer token: {:?}",
            r.body
        );
        let r = app.get(&format!("/api/v1/orgs/{beta}"), &bob_api).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["name"], "Beta");
        let r = app
            .get(&format!("/api/v1/orgs/{DEFAULT_ORG_ID}"), &bob_api)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
        let r = app.get("/api/v1/orgs", &bob_api).await;
        let listed: Vec<&str> = r
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            listed,
            vec![beta.as_str()],
            "a token lists its own organisation only"
        );
        let r = app.get("/api/v1/orgs/not-a-uuid", &bob).await;
        assert_eq!(
            (r.status, r.field()),
            (StatusCode::NOT_FOUND, Some("id")),
            "{:?}",
            r.body
        );
        // Only the host operator adds an existing account directly; an admin invites.
        let r = app
            .post(
                &format!("/api/v1/orgs/{beta}/members"),
                Some(&bob),
                json!({"email": "root@example.com", "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        let r = app
            .in_org("GET", "/api/v1/agents", &bob_api, DEFAULT_ORG_ID, None)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);

        // The host operator acts in Beta too, and sees both organisations.
        let r = app.get("/api/v1/orgs", &root).await;
        assert_eq!(r.body.as_array().unwrap().len(), 2, "{:?}", r.body);
        let r = app
            .get(&format!("/api/v1/orgs/{beta}/members"), &root)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let members: Vec<&str> = r
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["email"].as_str().unwrap())
            .collect();
        assert!(members.contains(&"bob@example.com"), "{members:?}");

        // Invitations: the role at most the inviter's; shown once; bound to the email.
        let invite = |email: &str, role: &str| {
            let (app, bob, beta) = (&app, &bob, &beta);
            let body = json!({"email": email, "role": role});
            async move {
                app.post(&format!("/api/v1/orgs/{beta}/invitations"), Some(bob), body)
                    .await
            }
        };
        let r = invite("carol@example.com", "super_admin").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.field(), Some("role"));
        let r = invite("bob@example.com", "viewer").await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
        assert_eq!(r.field(), Some("email"));
        let r = invite("carol@example.com", "operator").await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let carol_invitation = r.body["token"].as_str().unwrap().to_owned();
        // No public URL configured: nothing is mailed (a link from the Host header could point
        // anywhere); the sender copies the link.
        assert_eq!(r.body["mailed"], false, "{:?}", r.body);
        assert!(
            r.body["mail_error"]
                .as_str()
                .unwrap()
                .contains("INFRAPILOT_PUBLIC_URL"),
            "{:?}",
            r.body
        );
        assert!(
            r.body["accept_url"]
                .as_str()
                .unwrap()
                .ends_with(&carol_invitation)
        );
        let r = app
            .get(&format!("/api/v1/orgs/{beta}/invitations"), &bob)
            .await;
        assert_eq!(r.body.as_array().unwrap().len(), 1, "{:?}", r.body);
        assert!(
            !r.raw
                .windows(carol_invitation.len())
                .any(|w| w == carol_invitation.as_bytes())
        );

        // Carol has an account in the default organisation; Dave does too.
        for name in ["carol", "dave"] {
            let r = app
                .post(
                    "/api/v1/users",
                    Some(&root),
                    json!({"email": format!("{name}@example.com"), "password": PASSWORD, "name": name, "role": "viewer"}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        }
        let carol = app.login("carol@example.com", PASSWORD).await;
        let dave = app.login("dave@example.com", PASSWORD).await;
        let accept = |token: &str, who: &str| {
            let (app, path, who) = (
                &app,
                format!("/api/v1/invitations/{token}/accept"),
                who.to_owned(),
            );
            async move { app.call("POST", &path, Some(&who), None).await }
        };
        let r = accept(&carol_invitation, &dave).await;
        assert_eq!(r.status, StatusCode::GONE, "another email: {:?}", r.body);
        let r = accept(&carol_invitation, &carol).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["id"], beta.as_str());
        assert_eq!(r.body["role"], "operator");
        let r = accept(&carol_invitation, &carol).await;
        assert_eq!(r.status, StatusCode::GONE, "reused: {:?}", r.body);
        let r = accept("ipi_not-a-real-invitation", &carol).await;
        assert_eq!(r.status, StatusCode::GONE, "{:?}", r.body);
        // Carol now has two organisations; without a header she acts in her oldest.
        let r = app.get("/api/v1/orgs", &carol).await;
        assert_eq!(r.body.as_array().unwrap().len(), 2, "{:?}", r.body);
        let r = app
            .in_org("GET", "/api/v1/auth/me", &carol, &beta, None)
            .await;
        assert_eq!(r.body["role"], "operator", "{:?}", r.body);
        assert_eq!(r.body["org_id"], beta.as_str());
        // Enterprise: only the host operator makes organisations.
        assert_eq!(r.body["host_operator"], false);
        assert_eq!(r.body["can_create_organisations"], false);
        let r = app.get("/api/v1/auth/me", &carol).await;
        assert_eq!(r.body["role"], "viewer", "{:?}", r.body);
        assert_ne!(
            r.body["org_id"],
            beta.as_str(),
            "the oldest membership: {:?}",
            r.body
        );
        let r = app.get("/api/v1/auth/me", &root).await;
        assert_eq!(r.body["can_create_organisations"], true, "{:?}", r.body);

        // An expired invitation is refused.
        let r = invite("dave@example.com", "viewer").await;
        let dave_invitation = r.body["token"].as_str().unwrap().to_owned();
        app.db
            .raw_execute("UPDATE invitations SET expires_at = 1 WHERE email = 'dave@example.com'")
            .await;
        let r = accept(&dave_invitation, &dave).await;
        assert_eq!(r.status, StatusCode::GONE, "expired: {:?}", r.body);

        // An invitation is worth what its sender may grant when it is accepted: Bob invites an
        // admin, is demoted, and the invitation no longer makes one.
        let r = invite("dave@example.com", "admin").await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let dave_invitation = r.body["token"].as_str().unwrap().to_owned();
        let set_bob = |role: &str| {
            let (app, root, path) = (&app, &root, format!("/api/v1/orgs/{beta}/members/{bob_id}"));
            let body = json!({ "role": role });
            async move { app.call("PUT", &path, Some(root), Some(body)).await }
        };
        assert_eq!(set_bob("operator").await.status, StatusCode::OK);
        let r = accept(&dave_invitation, &dave).await;
        assert_eq!(r.status, StatusCode::GONE, "sender demoted: {:?}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("may no longer grant"),
            "{:?}",
            r.body
        );
        assert_eq!(set_bob("admin").await.status, StatusCode::OK);
        let r = app.get("/api/v1/orgs", &dave).await;
        assert!(
            !r.body
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["id"] == beta.as_str()),
            "{:?}",
            r.body
        );

        // Roles: not above one's own; the last admin stays. The operator, admin of Beta since
        // making it, leaves it first.
        let root_id = app.get("/api/v1/auth/me", &root).await.body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // A default-organisation admin cannot remove the host operator.
        let r = app
            .post(
                "/api/v1/users",
                Some(&root),
                json!({"email": "deputy@example.com", "password": PASSWORD, "name": "Deputy", "role": "admin"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let deputy = app.login("deputy@example.com", PASSWORD).await;
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/orgs/{DEFAULT_ORG_ID}/members/{root_id}"),
                Some(&deputy),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        let r = app.get("/api/v1/orgs", &root).await;
        assert_eq!(
            r.body.as_array().unwrap().len(),
            2,
            "still the host operator: {:?}",
            r.body
        );
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/orgs/{beta}/members/{root_id}"),
                Some(&root),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        let carol_id = {
            let r = app.get(&format!("/api/v1/orgs/{beta}/members"), &bob).await;
            r.body
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["email"] == "carol@example.com")
                .unwrap()["user_id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let r = app
            .in_org(
                "PUT",
                &format!("/api/v1/orgs/{beta}/members/{bob_id}"),
                &bob,
                &beta,
                Some(json!({"role": "viewer"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "last admin: {:?}", r.body);
        assert_eq!(r.field(), Some("role"));
        let r = app
            .call(
                "PUT",
                &format!("/api/v1/orgs/{beta}/members/{carol_id}"),
                Some(&carol),
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "operator promotes: {:?}",
            r.body
        );
        let r = app
            .call(
                "PUT",
                &format!("/api/v1/orgs/{beta}/members/{carol_id}"),
                Some(&bob),
                Some(json!({"role": "viewer"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["role"], "viewer");
        // Accounts are the host operator's to change: Beta's admin manages members only.
        let r = app
            .in_org(
                "PATCH",
                &format!("/api/v1/users/{carol_id}"),
                &bob,
                &beta,
                Some(json!({"password": "a brand new password"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        // The users route keeps an admin too, as the members route does.
        for body in [json!({"role": "viewer"}), json!({"disabled": true})] {
            let r = app
                .in_org(
                    "PATCH",
                    &format!("/api/v1/users/{bob_id}"),
                    &root,
                    &beta,
                    Some(body.clone()),
                )
                .await;
            assert_eq!(r.status, StatusCode::CONFLICT, "{body}: {:?}", r.body);
            assert_eq!(r.code(), Some("last_admin"));
        }
        let r = app
            .in_org(
                "DELETE",
                &format!("/api/v1/users/{bob_id}"),
                &root,
                &beta,
                None,
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::CONFLICT, Some("last_admin"))
        );
        // Disabled from another organisation, Bob would be disabled in Beta too, its last admin.
        let r = app
            .post(
                &format!("/api/v1/orgs/{DEFAULT_ORG_ID}/members"),
                Some(&root),
                json!({"email": "bob@example.com", "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/users/{bob_id}"),
                Some(&root),
                Some(json!({"disabled": true})),
            )
            .await;
        assert_eq!(
            (r.status, r.code(), r.field()),
            (StatusCode::CONFLICT, Some("last_admin"), Some("disabled")),
            "{:?}",
            r.body
        );
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/orgs/{DEFAULT_ORG_ID}/members/{bob_id}"),
                Some(&root),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        // Deleting her as a user of Beta removes her from Beta only: her session and her other
        // organisation stay.
        let r = app
            .in_org(
                "DELETE",
                &format!("/api/v1/users/{carol_id}"),
                &root,
                &beta,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        let r = app.get("/api/v1/orgs", &carol).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "her session survived: {:?}",
            r.body
        );
        assert_eq!(r.body.as_array().unwrap().len(), 1, "{:?}", r.body);
        // Added back by the host operator, Carol leaves Beta by herself; her account and default
        // membership stay.
        let r = app
            .post(
                &format!("/api/v1/orgs/{beta}/members"),
                Some(&root),
                json!({"email": "carol@example.com", "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/orgs/{beta}/members/{carol_id}"),
                Some(&carol),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        let r = app.get("/api/v1/orgs", &carol).await;
        assert_eq!(r.body.as_array().unwrap().len(), 1, "{:?}", r.body);

        // Deleting Beta needs its name; then its data and memberships are gone.
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/orgs/{beta}"),
                Some(&bob),
                Some(json!({"confirm_name": "beta"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.field(), Some("confirm_name"));
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/orgs/{DEFAULT_ORG_ID}"),
                Some(&root),
                Some(json!({"confirm_name": "Default"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
        let r = app
            .call(
                "DELETE",
                &format!("/api/v1/orgs/{beta}"),
                Some(&bob),
                Some(json!({"confirm_name": "Beta"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        let r = app.get("/api/v1/orgs", &bob).await;
        assert_eq!(r.body.as_array().unwrap().len(), 0, "{:?}", r.body);
        let r = app.get("/api/v1/agents", &bob).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        assert_eq!(r.code(), Some("no_organisation"));
        // Their own account is still theirs: sessions, MFA, signing out.
        let r = app.get("/api/v1/auth/sessions", &bob).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let r = app.get("/api/v1/auth/mfa", &bob).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let r = app.get("/api/v1/enrollment-tokens", &bob_api).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "token of a deleted organisation: {:?}",
            r.body
        );
        for table in infrapilot_store::TENANT_TABLES {
            let left = app
                .db
                .owner_count(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE org_id = '{beta}'"
                ))
                .await;
            assert_eq!(left, 0, "{table} keeps rows of the deleted organisation");
        }
        assert_eq!(
            app.db
                .owner_count(&format!(
                    "SELECT COUNT(*) FROM organizations WHERE id = '{beta}'"
                ))
                .await,
            0
        );
        assert_eq!(
            app.db
                .owner_count("SELECT COUNT(*) FROM users WHERE email = 'bob@example.com'")
                .await,
            1,
            "a person stays when their organisation goes"
        );
        let actions = app.audit_actions(&root).await;
        assert!(actions.contains(&"org.delete".to_owned()), "{actions:?}");
        let _ = ADMIN_EMAIL;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_per_organisation_and_per_credential() {
    let app = TestApp::with_settings(
        Backend::Sqlite,
        ApiSettings {
            edition: HostEdition::Enterprise,
            rate_limits: infrapilot_api::rate_limit::RateLimits {
                per_organisation: Some(6),
                per_credential: Some(4),
                sso_starts_per_address: None,
            },
            ..test_settings()
        },
    )
    .await;
    let root = app.setup_admin().await;
    let r = app
        .post("/api/v1/orgs", Some(&root), json!({"name": "Beta"}))
        .await;
    let beta = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .in_org(
            "POST",
            "/api/v1/users",
            &root,
            &beta,
            Some(json!({"email": "bob@example.com", "password": PASSWORD, "name": "Bob", "role": "admin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let bob = app.login("bob@example.com", PASSWORD).await;
    let r = app
        .post(
            "/api/v1/tokens",
            Some(&bob),
            json!({"name": "ci", "role": "viewer", "expires_in_days": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let bob_api = r.body["secret"].as_str().unwrap().to_owned();
    // Bob's session made one request (the token) of its 4; three more pass, the fifth is refused.
    for n in 0..3 {
        let r = app.get("/api/v1/agents", &bob).await;
        assert_eq!(r.status, StatusCode::OK, "request {n}: {:?}", r.body);
    }
    let r = app.get("/api/v1/agents", &bob).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    assert_eq!(r.code(), Some("rate_limited"));
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Beta has spent 5 of its 6 (the operator's request in Beta counts too; the refused one does
    // not): Bob's API token gets one more, then the organisation is over.
    for n in 0..1 {
        let r = app.get("/api/v1/agents", &bob_api).await;
        assert_eq!(r.status, StatusCode::OK, "token request {n}: {:?}", r.body);
    }
    let r = app.get("/api/v1/agents", &bob_api).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("organisation"),
        "{:?}",
        r.body
    );
    // The default organisation is not slowed by Beta.
    for _ in 0..2 {
        let r = app.get("/api/v1/agents", &root).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_used_in_another_organisation_is_not_uninstalled() {
    for backend in backends() {
        let (app, _vendor) = TestApp::with_plugins(backend).await;
        let root = app.setup_admin().await;
        app.install_webhook(&root).await;
        let r = app
            .post("/api/v1/orgs", Some(&root), json!({"name": "Beta"}))
            .await;
        let beta = r.body["id"].as_str().unwrap().to_owned();
        // A channel of Beta's only.
        let r = app
            .in_org(
                "POST",
                "/api/v1/alerts/channels",
                &root,
                &beta,
                Some(json!({"plugin": "infrapilot.webhook", "name": "beta-hook", "settings": {"url": "http://127.0.0.1:9/hook", "secret": "x"}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let r = app
            .call(
                "DELETE",
                "/api/v1/plugins/infrapilot.webhook",
                Some(&root),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{backend:?}: {:?}", r.body);
        let r = app.get("/api/v1/plugins/infrapilot.webhook", &root).await;
        assert_eq!(r.status, StatusCode::OK, "still installed: {:?}", r.body);
    }
}
