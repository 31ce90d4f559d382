//! The OIDC plugin's GitHub preset (OAuth 2.0 without an ID token) against a stand-in for GitHub
//! on loopback — GitHub itself cannot be reached from the tests — that speaks GitHub's documented
//! wire format: the token endpoint (form in, JSON out, HTTP 200 with an `error` for a bad code;
//! the client secret and the PKCE verifier checked), and the REST API's `/user`, `/user/emails`,
//! `/user/orgs`, `/user/teams` behind the access token (a GitHub Enterprise Server layout:
//! `/api/v3`). What is shown: the login through the host with PKCE, organisations and teams as
//! groups, a team taken away at GitHub takes the role away, a used code refused, an unverified
//! primary email makes no account, the allowed organisations.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use common::TestApp;
use common::sso::{callback, exchange, sso_error, start};
use infrapilot_store::testing::backends;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const PLUGIN: &str = "infrapilot.oidc";
const CLIENT_ID: &str = "gh-client";
const CLIENT_SECRET: &str = "gh-secret";

#[derive(Clone)]
struct Account {
    id: u64,
    login: &'static str,
    email: &'static str,
    verified: bool,
    orgs: Vec<&'static str>,
    teams: Vec<(&'static str, &'static str)>,
}

#[derive(Default)]
struct GitHubState {
    /// Codes GitHub issued: (account login, PKCE challenge, redirect URI).
    codes: HashMap<String, (String, String, String)>,
    accounts: HashMap<String, Account>,
}

type Shared = Arc<Mutex<GitHubState>>;

async fn token(State(gh): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Json<Value> {
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let refused = Json(json!({
        "error": "bad_verification_code",
        "error_description": "The code passed is incorrect or expired.",
    }));
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return Json(json!({"error": "incorrect_client_credentials"}));
    }
    // A code is good once, for the redirect URI and the PKCE challenge it was issued with.
    let Some((login, challenge, redirect)) = gh.lock().unwrap().codes.remove(&field("code")) else {
        return refused;
    };
    let verifier_challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(field("code_verifier").as_bytes()));
    if verifier_challenge != challenge || field("redirect_uri") != redirect {
        return refused;
    }
    Json(
        json!({"access_token": format!("gho_{login}"), "token_type": "bearer", "scope": "read:org,read:user,user:email"}),
    )
}

fn account(gh: &Shared, headers: &HeaderMap) -> Result<Account, StatusCode> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer gho_"))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    gh.lock()
        .unwrap()
        .accounts
        .get(token)
        .cloned()
        .ok_or(StatusCode::UNAUTHORIZED)
}

async fn user(State(gh): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, StatusCode> {
    let a = account(&gh, &headers)?;
    Ok(Json(
        json!({"id": a.id, "login": a.login, "name": null, "email": null, "type": "User"}),
    ))
}

async fn emails(State(gh): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, StatusCode> {
    let a = account(&gh, &headers)?;
    Ok(Json(json!([
        {"email": format!("{}@users.noreply.github.com", a.login), "primary": false, "verified": true, "visibility": null},
        {"email": a.email, "primary": true, "verified": a.verified, "visibility": "private"},
    ])))
}

async fn orgs(State(gh): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, StatusCode> {
    let a = account(&gh, &headers)?;
    Ok(Json(Value::Array(
        a.orgs
            .iter()
            .enumerate()
            .map(|(i, o)| json!({"login": o, "id": i + 1}))
            .collect(),
    )))
}

async fn teams(State(gh): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, StatusCode> {
    let a = account(&gh, &headers)?;
    Ok(Json(Value::Array(
        a.teams
            .iter()
            .map(|(org, slug)| json!({"slug": slug, "name": slug, "organization": {"login": org}}))
            .collect(),
    )))
}

async fn github() -> (String, Shared) {
    let state: Shared = Arc::default();
    let app = Router::new()
        .route("/login/oauth/access_token", post(token))
        .route("/api/v3/user", get(user))
        .route("/api/v3/user/emails", get(emails))
        .route("/api/v3/user/orgs", get(orgs))
        .route("/api/v3/user/teams", get(teams))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

/// A login of `login` at GitHub through the host: where the host sends the browser back, and
/// the browser's cookie.
async fn github_login(app: &TestApp, gh: &Shared, provider: &str, login: &str) -> (String, String) {
    let browser = start(app, provider).await;
    assert_eq!(browser.param("client_id"), CLIENT_ID);
    assert_eq!(browser.param("code_challenge_method"), "S256");
    let code = format!("code-{login}-{}", browser.param("state"));
    gh.lock().unwrap().codes.insert(
        code.clone(),
        (
            login.to_owned(),
            browser.param("code_challenge"),
            browser.param("redirect_uri"),
        ),
    );
    let location = callback(
        app,
        provider,
        Some(&browser.cookie),
        &[("code", &code), ("state", &browser.param("state"))],
    )
    .await;
    (location, browser.cookie)
}

async fn role_after_login(app: &TestApp, gh: &Shared, provider: &str, login: &str) -> Value {
    let (location, cookie) = github_login(app, gh, provider, login).await;
    let code = location
        .strip_prefix("/login/sso#")
        .unwrap_or_else(|| panic!("no code: {location}"));
    let (status, body) = exchange(app, &cookie, code).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let me = app
        .get("/api/v1/auth/me", body["access_token"].as_str().unwrap())
        .await;
    me.body["role"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn github_organisations_and_teams_are_groups_and_only_verified_emails_make_accounts() {
    for backend in backends() {
        let (gh_url, gh) = github().await;
        {
            let mut state = gh.lock().unwrap();
            state.accounts.insert(
                "octo".into(),
                Account {
                    id: 583231,
                    login: "octo",
                    email: "octo@acme.example",
                    verified: true,
                    orgs: vec!["acme"],
                    teams: vec![("acme", "ops")],
                },
            );
            state.accounts.insert(
                "unverified".into(),
                Account {
                    id: 9001,
                    login: "unverified",
                    email: "claims@acme.example",
                    verified: false,
                    orgs: vec!["acme"],
                    teams: vec![],
                },
            );
        }
        let (app, admin, _) = common::sso::licensed_app(backend, "infrapilot_oidc", PLUGIN).await;
        let settings = json!({"preset": "github", "github_url": gh_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "allowed_organizations": "ACME"});
        let body = |settings: Value| {
            json!({"plugin": PLUGIN, "name": "GitHub", "settings": settings,
                "group_roles": [{"group": "acme", "role": "viewer"}, {"group": "acme/ops", "role": "admin"}]})
        };
        // The client secret and the allowed organisations are required (anyone can have a
        // GitHub account).
        for field in ["client_secret", "allowed_organizations"] {
            let mut without = settings.clone();
            without.as_object_mut().unwrap().remove(field);
            let expected = format!("settings.{field}");
            common::sso::provider_refused(&app, &admin, body(without), &expected).await;
        }
        let r = app
            .post(
                "/api/v1/sso/providers",
                Some(&admin),
                body(settings.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let provider = r.body["id"].as_str().unwrap().to_owned();

        // octo is in acme and its ops team: an admin.
        assert_eq!(
            role_after_login(&app, &gh, &provider, "octo").await,
            "admin"
        );
        let users = app.get("/api/v1/users", &admin).await;
        assert!(
            users.body.to_string().contains("octo@acme.example"),
            "{:?}",
            users.body
        );
        // A code GitHub does not know (or one used already) is refused.
        let browser = start(&app, &provider).await;
        let location = callback(
            &app,
            &provider,
            Some(&browser.cookie),
            &[("code", "made-up"), ("state", &browser.param("state"))],
        )
        .await;
        let why = sso_error(&location);
        assert!(
            why.contains("GitHub refused the code (bad_verification_code)"),
            "{why}"
        );

        // Taken off the ops team at GitHub: a viewer at the next login.
        gh.lock()
            .unwrap()
            .accounts
            .get_mut("octo")
            .unwrap()
            .teams
            .clear();
        assert_eq!(
            role_after_login(&app, &gh, &provider, "octo").await,
            "viewer"
        );

        // An unverified primary email is not vouched for: no account is made.
        let (location, _) = github_login(&app, &gh, &provider, "unverified").await;
        let why = sso_error(&location);
        assert!(why.contains("does not vouch"), "{why}");

        // Only members of the allowed organisations sign in.
        let mut elsewhere = settings.clone();
        elsewhere["allowed_organizations"] = json!("other-org, another acme/ops");
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/sso/providers/{provider}"),
                Some(&admin),
                Some(json!({"settings": elsewhere})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let (location, _) = github_login(&app, &gh, &provider, "octo").await;
        let why = sso_error(&location);
        assert!(
            why.contains("not a member of other-org, another, acme/ops"),
            "{why}"
        );
    }
}
