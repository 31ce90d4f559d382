//! A browser's side of a redirect sign-in, for the single sign-on tests: start (the login
//! cookie and where the provider is asked), the identity provider's redirect back, the one-time
//! code exchange.

use axum::http::{StatusCode, header};
use serde_json::{Value, json};

use super::TestApp;

/// A login as a browser makes it: start (the cookie and the provider's URL), then what the
/// identity provider would send back.
pub struct Browser {
    pub cookie: String,
    /// Where the host sent the browser (the identity provider's URL with its query).
    pub location: String,
    /// The query of the URL the provider was sent to.
    pub authorize: Vec<(String, String)>,
}

impl Browser {
    pub fn param(&self, name: &str) -> String {
        self.authorize
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

pub async fn start(app: &TestApp, provider: &str) -> Browser {
    let r = app
        .call(
            "GET",
            &format!("/api/v1/auth/sso/{provider}/start"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{:?}", r.body);
    let location = r.headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(
        (location.starts_with("https://") || location.starts_with("http://127.0.0.1:"))
            && (location.contains("/authorize?") || location.contains("SAMLRequest=")),
        "{location}"
    );
    let set_cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert!(set_cookie.contains("Max-Age=600"), "{set_cookie}");
    let query = location.split_once('?').unwrap().1;
    Browser {
        location: location.clone(),
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
        authorize: form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
    }
}

/// The identity provider's redirect back, with `cookie` (or none): the redirect's Location, or
/// `error: <why>` when it goes to the sign-in page with the host's error cookie.
pub async fn callback(
    app: &TestApp,
    provider: &str,
    cookie: Option<&str>,
    query: &[(&str, &str)],
) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    let r = app
        .call_with_headers(
            "GET",
            &format!("/api/v1/auth/sso/{provider}/callback?{query}"),
            None,
            &headers,
            None,
        )
        .await;
    landing(&r)
}

/// Where a callback sends the browser: the redirect's Location, or `error: <why>` when it goes
/// to the sign-in page with the host's error cookie.
pub fn landing(r: &super::Reply) -> String {
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{:?}", r.body);
    let location = r.headers[header::LOCATION].to_str().unwrap().to_owned();
    if location != "/login?sso_error=1" {
        return location;
    }
    // The reason travels in a cookie of the host's, never in the URL (a link could carry any text).
    let set = r.headers[header::SET_COOKIE].to_str().unwrap();
    let value = set
        .strip_prefix("infrapilot_sso_error=")
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no error cookie: {set}"));
    let encoded = format!("m={value}");
    let (_, message) = form_urlencoded::parse(encoded.as_bytes()).next().unwrap();
    format!("error: {message}")
}

/// Why a login failed (see [`callback`]).
pub fn sso_error(location: &str) -> String {
    location
        .strip_prefix("error: ")
        .unwrap_or_else(|| panic!("not an error redirect: {location}"))
        .to_owned()
}

pub async fn exchange(app: &TestApp, cookie: &str, code: &str) -> (StatusCode, Value) {
    let r = app
        .call_with_headers(
            "POST",
            "/api/v1/auth/sso/exchange",
            None,
            &[("cookie", cookie)],
            Some(json!({ "code": code })),
        )
        .await;
    (r.status, r.body)
}

/// A host with plugins, an administrator, a licence with the `sso` feature and the plugin of
/// `crate_name` (built by `scripts/build-plugins.sh`) installed as `plugin_id`: the app, the
/// administrator's token and their organisation's id.
pub async fn licensed_app(
    backend: infrapilot_store::Backend,
    crate_name: &str,
    plugin_id: &str,
) -> (TestApp, String, String) {
    let (app, vendor) = TestApp::with_plugins(backend).await;
    let admin = app.setup_admin().await;
    let license = infrapilot_licensing::License {
        id: "lic-sso".into(),
        licensee: "Single Sign-On Ltd".into(),
        edition: "enterprise".into(),
        features: vec!["sso".into()],
        limits: Default::default(),
        issued_at: "2026-01-01T00:00:00Z".into(),
        expires_at: "2099-01-01T00:00:00Z".into(),
    }
    .issue(&vendor)
    .unwrap();
    app.put_license(&admin, &license).await;
    app.install_test_plugin(&admin, crate_name, plugin_id).await;
    let org = app.get("/api/v1/auth/me", &admin).await.body["org_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (app, admin, org)
}

/// Creates a provider from `body` as `admin`, which must be refused with 400 naming `field`.
pub async fn provider_refused(
    app: &TestApp,
    admin: &str,
    body: Value,
    field: &str,
) -> super::Reply {
    let r = app.post("/api/v1/sso/providers", Some(admin), body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(r.field(), Some(field), "{:?}", r.body);
    r
}
