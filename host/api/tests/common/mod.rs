//! A test harness: the real router over a real database (SQLite or PostgreSQL), called in-process.

#![allow(dead_code)]

pub mod peers;
pub mod sso;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use infrapilot_api::{ApiSettings, AppState, router};
use infrapilot_identity::SecretBox;
use infrapilot_licensing::HostEdition;
use infrapilot_plugin_host::{PluginHost, PluginHostConfig};
use infrapilot_plugin_runtime::TrustedKeys;
use infrapilot_plugin_runtime::egress::EgressGuard;
use infrapilot_plugin_runtime::runtime::RuntimeConfig;
use infrapilot_plugin_types::bundle::SigningKey;
use infrapilot_store::Backend;
use infrapilot_store::testing::TestDb;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The first-party plugin build (`scripts/build-plugins.sh`): components, `bundles/`, `dev-signing/`.
pub fn plugin_build() -> std::path::PathBuf {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target")
        })
        .join("plugins");
    assert!(
        dir.join("bundles/infrapilot_webhook.bundle").exists(),
        "no plugin bundles in {}: run scripts/build-plugins.sh first",
        dir.display()
    );
    dir
}

pub const ADMIN_EMAIL: &str = "root@example.com";
/// The setup code the test hosts are started with.
pub const SETUP_CODE: &str = "test-setup-code-0123456789";

/// The API's settings for tests: production defaults with a known setup code.
pub fn test_settings() -> ApiSettings {
    ApiSettings {
        setup_code: Some(SETUP_CODE.into()),
        ..ApiSettings::default()
    }
}
pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub db: TestDb,
    pub router: Router,
    pub client_ip: String,
    /// The state behind `router` (wiring the tests do themselves: a log sink …).
    pub state: AppState,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Reply {
    /// The `field` of an error reply.
    pub fn field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }

    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

impl TestApp {
    pub async fn new(backend: Backend) -> TestApp {
        TestApp::with_settings(backend, test_settings()).await
    }

    pub async fn with_settings(backend: Backend, settings: ApiSettings) -> TestApp {
        let db = TestDb::new(backend).await;
        let secrets = SecretBox::new(&[42u8; 32]).unwrap();
        let ca = infrapilot_gateway::load_or_create_ca(&db.store, &secrets)
            .await
            .unwrap();
        let state = AppState::new(db.store.clone(), secrets, ca, settings);
        TestApp {
            router: router(state.clone()),
            db,
            client_ip: "192.0.2.10".into(),
            state,
        }
    }

    /// With the plugin runtime: the first-party bundles (built by `scripts/build-plugins.sh`)
    /// installed and trusted by their development key, loopback allowed for plugin HTTP, and
    /// licences verified with the returned key.
    pub async fn with_plugins(backend: Backend) -> (TestApp, SigningKey) {
        let db = TestDb::new(backend).await;
        let secrets = SecretBox::new(&[42u8; 32]).unwrap();
        let ca = infrapilot_gateway::load_or_create_ca(&db.store, &secrets)
            .await
            .unwrap();
        let settings = ApiSettings {
            edition: HostEdition::Enterprise,
            ..test_settings()
        };
        let state = AppState::new(db.store.clone(), secrets, ca, settings);
        let build = plugin_build();
        let vendor = SigningKey::generate().unwrap();
        let plugins = PluginHost::new(
            db.store.clone(),
            PluginHostConfig {
                edition: HostEdition::Enterprise,
                trusted_keys: TrustedKeys::from_dir(&build.join("dev-signing")).unwrap(),
                allow_unsigned: false,
                egress: EgressGuard::parse_allow_list("127.0.0.0/8").unwrap(),
                smtp: None,
                license_key: vendor.public_key(),
                runtime: RuntimeConfig::default(),
            },
        )
        .unwrap();
        state.enable_plugins(plugins, infrapilot_alerts::EngineConfig::default());
        (
            TestApp {
                router: router(state.clone()),
                db,
                client_ip: "192.0.2.10".into(),
                state,
            },
            vendor,
        )
    }

    /// Sends raw bytes with the given content type.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        self.send_with_headers(method, path, token, content_type, &[], body)
            .await
    }

    /// A JSON call with extra request headers (`Host`, `X-Forwarded-For` …).
    pub async fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let (content_type, bytes) = match body {
            Some(b) => (Some("application/json"), b.to_string().into_bytes()),
            None => (None, Vec::new()),
        };
        self.send_with_headers(method, path, token, content_type, headers, bytes)
            .await
    }

    pub async fn send_with_headers(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(t) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        builder = builder.header(header::USER_AGENT, "infrapilot-tests");
        let mut request = builder.body(Body::from(body)).unwrap();
        let addr: SocketAddr = format!("{}:40000", self.client_ip).parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(addr));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            raw,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        match body {
            Some(b) => {
                self.send_raw(
                    method,
                    path,
                    token,
                    Some("application/json"),
                    b.to_string().into_bytes(),
                )
                .await
            }
            None => self.send_raw(method, path, token, None, Vec::new()).await,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call("POST", path, token, Some(body)).await
    }

    /// Completes first-run setup and returns the super_admin's access token.
    pub async fn setup_admin(&self) -> String {
        let r = self
            .post(
                "/api/v1/setup",
                None,
                json!({"setup_code": SETUP_CODE, "email": ADMIN_EMAIL, "password": PASSWORD, "name": "Root"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        self.login(ADMIN_EMAIL, PASSWORD).await
    }

    /// Logs in (no MFA) and returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {email}: {:?}", r.body);
        r.body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    /// Creates a user with `role` (as the given super_admin) and returns its access token.
    pub async fn user_with_role(&self, admin: &str, role: &str) -> String {
        let email = format!("{role}@example.com");
        let r = self
            .post(
                "/api/v1/users",
                Some(admin),
                json!({"email": email, "password": PASSWORD, "name": role, "role": role}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        self.login(&email, PASSWORD).await
    }

    /// Installs the first-party webhook channel plugin (as `operator`, the host operator) and
    /// enables it.
    pub async fn install_webhook(&self, operator: &str) {
        let bundle =
            std::fs::read(plugin_build().join("bundles/infrapilot_webhook.bundle")).unwrap();
        let r = self
            .send_raw(
                "POST",
                "/api/v1/plugins",
                Some(operator),
                Some("application/x-tar"),
                bundle,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let r = self
            .call(
                "POST",
                "/api/v1/plugins/infrapilot.webhook/enable",
                Some(operator),
                None,
            )
            .await;
        assert!(r.status.is_success(), "{:?}", r.body);
    }

    /// Packs a test plugin of the plugin build (`<crate>.wasm` with its manifest), signed with
    /// the development key the host trusts, then installs and enables it.
    pub async fn install_test_plugin(&self, operator: &str, crate_name: &str, id: &str) {
        let build = plugin_build();
        let manifest = std::fs::read(build.join(format!("{crate_name}.manifest.json"))).unwrap();
        let component = std::fs::read(build.join(format!("{crate_name}.wasm"))).unwrap();
        let key = SigningKey::from_pem(
            &std::fs::read_to_string(build.join("dev-signing/dev.key")).unwrap(),
        )
        .unwrap();
        let bundle = infrapilot_plugin_types::bundle::Bundle::new(manifest, component, Some(&key));
        let r = self
            .send_raw(
                "POST",
                "/api/v1/plugins",
                Some(operator),
                Some("application/x-tar"),
                bundle.to_tar(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let r = self
            .call(
                "POST",
                &format!("/api/v1/plugins/{id}/enable"),
                Some(operator),
                None,
            )
            .await;
        assert!(r.status.is_success(), "{:?}", r.body);
    }

    /// Installs a signed licence (`PUT /api/v1/license`) as `admin`; it must be accepted.
    pub async fn put_license(&self, admin: &str, license: &str) {
        let r = self
            .call(
                "PUT",
                "/api/v1/license",
                Some(admin),
                Some(serde_json::json!({"license": license})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }

    /// The actions of every audit event, oldest first.
    pub async fn audit_actions(&self, admin: &str) -> Vec<String> {
        let r = self.get("/api/v1/audit?limit=500", admin).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let mut actions: Vec<String> = r.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect();
        actions.reverse();
        actions
    }
}

/// `oathtool --totp -b SECRET [--now TIME]`: codes from an independent implementation.
pub fn oathtool(secret_base32: &str, offset_seconds: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset_seconds;
    let out = std::process::Command::new("oathtool")
        .arg("--totp")
        .arg("-b")
        .arg("--now")
        .arg(format!("@{now}"))
        .arg(secret_base32)
        .output()
        .expect(
            "oathtool must be installed (Debian package oathtool); scripts/test.sh installs it",
        );
    assert!(
        out.status.success(),
        "oathtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A CSR made the way a node makes it: a fresh key pair that never leaves the node.
pub fn node_csr() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(vec!["node.example".to_owned()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

impl TestApp {
    /// Creates an enrollment token (as `admin`) and returns its secret.
    pub async fn enrollment_token(&self, admin: &str, max_uses: i64) -> (String, String) {
        let r = self
            .post(
                "/api/v1/enrollment-tokens",
                Some(admin),
                json!({"name": "rollout", "labels": {"env": "test"}, "max_uses": max_uses, "expires_in_hours": 1}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        (
            r.body["id"].as_str().unwrap().to_owned(),
            r.body["secret"].as_str().unwrap().to_owned(),
        )
    }
}
