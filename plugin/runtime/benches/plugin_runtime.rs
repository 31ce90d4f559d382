//! Plugin runtime figures for docs/BENCHMARKS.md (prints percentiles; `harness = false`):
//!   1. instantiate the probe component from its `InstancePre` with the pooling allocator (and drop it);
//!   2. a host→plugin call with small arguments on a live instance (`validate()`, and `deliver()`
//!      of a small alert);
//!   3. a whole alert hook (instantiate + deliver + drop) from 80 concurrent callers;
//!   4. the plugin's share of a single sign-on login: `begin-login` then `complete-login` of the
//!      test provider (`plugins/testing/sso-test`), each a whole hook (instantiate + call + drop);
//!   5. the same for the real OIDC plugin (`plugins/oidc`): discovery, the JWKS, the token request
//!      and the RS256 check of a real ID token (made here with `openssl`), its HTTP answered from
//!      memory by the host services, so the figure is the plugin's own work without a network.
//!
//! Run: `scripts/build-plugins.sh && cargo bench -p infrapilot-plugin-runtime --bench plugin_runtime`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use infrapilot_plugin_runtime::HostServices;
use infrapilot_plugin_runtime::contract::http::{Header, HttpError, Method, Request, Response};
use infrapilot_plugin_runtime::contract::kv::KvError;
use infrapilot_plugin_runtime::contract::log::Level;
use infrapilot_plugin_runtime::contract::mail::{MailError, Message};
use infrapilot_plugin_runtime::contract::{
    Alert, AlertState, LoginCallback, LoginRequest, Severity,
};
use infrapilot_plugin_runtime::egress::{EgressGuard, HttpEgress};
use infrapilot_plugin_runtime::runtime::RuntimeConfig;
use infrapilot_plugin_runtime::services::BasicServices;
use infrapilot_plugin_runtime::{Invocation, Limits, Manifest, Runtime};

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
    println!(
        "| {label} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
        samples.len(),
        us(at(0.50)),
        us(at(0.90)),
        us(at(0.99)),
        us(*samples.last().unwrap())
    );
}

const BENCH_ISSUER: &str = "https://idp.bench";

/// An OpenID Provider answered from memory: discovery, the JWKS and the token endpoint (whose
/// ID token is signed by a fresh RSA key); everything else is `BasicServices`'.
struct CannedProvider {
    inner: BasicServices,
    discovery: Vec<u8>,
    jwks: Vec<u8>,
    tokens: Vec<u8>,
}

impl CannedProvider {
    fn new(nonce: &str) -> CannedProvider {
        let dir =
            std::env::temp_dir().join(format!("infrapilot-bench-oidc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key.pem");
        let openssl = |args: &[&str], input: Option<&[u8]>| -> Vec<u8> {
            use std::io::Write;
            let mut child = std::process::Command::new("openssl")
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("openssl (Debian package openssl)");
            if let Some(input) = input {
                child.stdin.take().unwrap().write_all(input).unwrap();
            }
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "openssl {args:?}");
            out.stdout
        };
        let key_path = key.to_str().unwrap();
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                key_path,
            ],
            None,
        );
        let modulus = String::from_utf8(openssl(
            &["rsa", "-in", key_path, "-noout", "-modulus"],
            None,
        ))
        .unwrap();
        let hex = modulus.trim().trim_start_matches("Modulus=");
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"alg": "RS256", "kid": "bench", "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": BENCH_ISSUER, "sub": "248289761001", "aud": "infrapilot",
            "iat": now, "exp": now + 24 * 3600, "nonce": nonce,
            "email": "jane@idp.bench", "email_verified": true, "name": "Jane Bench",
            "groups": ["devs", "ops"], "amr": ["pwd", "mfa"],
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = openssl(
            &["dgst", "-sha256", "-sign", key_path],
            Some(signing_input.as_bytes()),
        );
        let _ = std::fs::remove_dir_all(&dir);
        let id_token = format!("{signing_input}.{}", b64(&signature));
        CannedProvider {
            inner: BasicServices::new(HttpEgress::new(EgressGuard::default(), 1 << 20).unwrap()),
            discovery: serde_json::json!({
                "issuer": BENCH_ISSUER,
                "authorization_endpoint": format!("{BENCH_ISSUER}/authorize"),
                "token_endpoint": format!("{BENCH_ISSUER}/token"),
                "jwks_uri": format!("{BENCH_ISSUER}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            })
            .to_string()
            .into_bytes(),
            jwks: serde_json::json!({"keys": [{"kty": "RSA", "kid": "bench", "use": "sig",
                "alg": "RS256", "n": b64(&n), "e": "AQAB"}]})
            .to_string()
            .into_bytes(),
            tokens: serde_json::json!({"access_token": "bench-access", "token_type": "Bearer",
                "expires_in": 3600, "id_token": id_token})
            .to_string()
            .into_bytes(),
        }
    }
}

#[async_trait]
impl HostServices for CannedProvider {
    fn log(&self, plugin_id: &str, level: Level, message: &str) {
        self.inner.log(plugin_id, level, message);
    }

    async fn http_fetch(
        &self,
        _plugin_id: &str,
        request: Request,
        _timeout: Duration,
    ) -> Result<Response, HttpError> {
        let body = match (&request.method, request.url.as_str()) {
            (Method::Get, u) if u == format!("{BENCH_ISSUER}/.well-known/openid-configuration") => {
                &self.discovery
            }
            (Method::Get, u) if u == format!("{BENCH_ISSUER}/jwks") => &self.jwks,
            (Method::Post, u) if u == format!("{BENCH_ISSUER}/token") => &self.tokens,
            (method, url) => panic!("the bench provider has no {method:?} {url}"),
        };
        Ok(Response {
            status: 200,
            headers: vec![Header {
                name: "content-type".into(),
                value: "application/json".into(),
            }],
            body: body.clone(),
        })
    }

    async fn send_mail(&self, plugin_id: &str, message: Message) -> Result<(), MailError> {
        self.inner.send_mail(plugin_id, message).await
    }

    async fn kv_get(&self, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.kv_get(plugin_id, key).await
    }

    async fn kv_set(&self, plugin_id: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.inner.kv_set(plugin_id, key, value).await
    }

    async fn kv_delete(&self, plugin_id: &str, key: &str) -> Result<(), KvError> {
        self.inner.kv_delete(plugin_id, key).await
    }
}

fn alert() -> Alert {
    Alert {
        id: "a1".into(),
        rule_id: "r1".into(),
        rule_name: "bench".into(),
        state: AlertState::Firing,
        severity: Severity::Warning,
        title: "ok".into(),
        summary: "small".into(),
        node: None,
        target: None,
        labels: vec![],
        started_at_unix_ms: 0,
        resolved_at_unix_ms: None,
        url: None,
    }
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|_| root.join("target"));
    let component = std::fs::read(target.join("plugins/infrapilot_test_probe.wasm"))
        .expect("build the plugins first: scripts/build-plugins.sh");
    let manifest =
        Manifest::parse(&std::fs::read(root.join("plugins/testing/probe/manifest.json")).unwrap())
            .unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        limits: Limits::default(),
        max_instances: 256,
        cache_dir: None,
    })
    .unwrap();
    let compiled = runtime.compile(&component).unwrap();
    let plugin = runtime
        .load::<infrapilot_plugin_runtime::AlertChannelPlugin>(
            &manifest,
            &compiled,
            &manifest.capabilities,
        )
        .unwrap();
    let invocation = Invocation {
        settings: serde_json::json!({}),
        secrets: HashMap::new(),
        services: Arc::new(BasicServices::new(
            HttpEgress::new(EgressGuard::default(), 1 << 20).unwrap(),
        )),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| measurement | samples | p50 µs | p90 µs | p99 µs | max µs |");
    println!("|---|---|---|---|---|---|");
    rt.block_on(async {
        // 1. Instantiate from InstancePre (pooling) and drop.
        for _ in 0..2_000 {
            drop(plugin.session(&invocation).await.unwrap());
        }
        let mut samples = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let t = Instant::now();
            let session = plugin.session(&invocation).await.unwrap();
            samples.push(t.elapsed());
            drop(session);
        }
        percentiles("instantiate from InstancePre (pooling allocator)", samples);

        // 2. Calls on a live instance.
        let mut session = plugin.session(&invocation).await.unwrap();
        for _ in 0..10_000 {
            session.validate().await.unwrap().unwrap();
        }
        let mut samples = Vec::with_capacity(100_000);
        for _ in 0..100_000 {
            let t = Instant::now();
            session.validate().await.unwrap().unwrap();
            samples.push(t.elapsed());
        }
        percentiles("call `validate()` (no arguments, result back)", samples);
        let small = alert();
        let mut samples = Vec::with_capacity(100_000);
        for _ in 0..100_000 {
            let t = Instant::now();
            session.deliver(&small).await.unwrap().unwrap();
            samples.push(t.elapsed());
        }
        percentiles("call `deliver(alert)` (small record, string back)", samples);
        drop(session);

        // 3. Whole hook from 80 concurrent callers.
        let plugin = Arc::new(plugin);
        let invocation = Arc::new(invocation);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..80 {
            let (plugin, invocation) = (plugin.clone(), invocation.clone());
            tasks.push(tokio::spawn(async move {
                let small = alert();
                let mut samples = Vec::with_capacity(500);
                for _ in 0..500 {
                    let t = Instant::now();
                    plugin.deliver(&invocation, &small).await.unwrap();
                    samples.push(t.elapsed());
                }
                samples
            }));
        }
        let mut samples = Vec::new();
        for task in tasks {
            samples.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed();
        let calls = samples.len();
        percentiles(
            "whole hook (instantiate + deliver + drop), 80 concurrent callers",
            samples,
        );
        println!(
            "\n{calls} hooks in {:.2} s: {:.0} hooks/s on 2 worker threads",
            elapsed.as_secs_f64(),
            calls as f64 / elapsed.as_secs_f64()
        );

        // 4. A single sign-on login's plugin share.
        let sso_component = std::fs::read(target.join("plugins/infrapilot_test_sso.wasm"))
            .expect("build the plugins first: scripts/build-plugins.sh");
        let sso_manifest = Manifest::parse(
            &std::fs::read(root.join("plugins/testing/sso-test/manifest.json")).unwrap(),
        )
        .unwrap();
        let sso = runtime
            .load::<infrapilot_plugin_runtime::SsoProviderPlugin>(
                &sso_manifest,
                &runtime.compile(&sso_component).unwrap(),
                &sso_manifest.capabilities,
            )
            .unwrap();
        let sso_invocation = Invocation {
            settings: serde_json::json!({"issuer": "https://idp.test", "email_verified": true,
                                          "groups": ["devs", "ops"]}),
            secrets: HashMap::new(),
            services: Arc::new(BasicServices::new(
                HttpEgress::new(EgressGuard::default(), 1 << 20).unwrap(),
            )),
        };
        let request = LoginRequest {
            callback_url: "https://pilot.test/api/v1/auth/sso/x/callback".into(),
            state: "a".repeat(64),
            nonce: "b".repeat(64),
            code_challenge: "c".repeat(43),
        };
        let callback = LoginCallback {
            params: vec![
                ("code".into(), "good-sam".into()),
                ("state".into(), request.state.clone()),
            ],
            request: request.clone(),
            code_verifier: "d".repeat(64),
            context: Some(format!("ctx-{}", request.state)),
        };
        let login = async || {
            let t = Instant::now();
            sso.begin_login(&sso_invocation, &request)
                .await
                .unwrap()
                .unwrap();
            sso.complete_login(&sso_invocation, &callback)
                .await
                .unwrap()
                .unwrap();
            t.elapsed()
        };
        for _ in 0..1_000 {
            login().await;
        }
        let mut samples = Vec::with_capacity(10_000);
        for _ in 0..10_000 {
            samples.push(login().await);
        }
        percentiles(
            "SSO login's plugin share (begin-login + complete-login, each instantiate + call + drop)",
            samples,
        );

        // 5. The real OIDC plugin's share, its provider answered from memory.
        let oidc_component = std::fs::read(target.join("plugins/infrapilot_oidc.wasm"))
            .expect("build the plugins first: scripts/build-plugins.sh");
        let oidc_manifest =
            Manifest::parse(&std::fs::read(root.join("plugins/oidc/manifest.json")).unwrap())
                .unwrap();
        let oidc = runtime
            .load::<infrapilot_plugin_runtime::SsoProviderPlugin>(
                &oidc_manifest,
                &runtime.compile(&oidc_component).unwrap(),
                &oidc_manifest.capabilities,
            )
            .unwrap();
        let oidc_invocation = Invocation {
            settings: serde_json::json!({"preset": "generic", "issuer": BENCH_ISSUER,
                                          "client_id": "infrapilot"}),
            secrets: HashMap::new(),
            services: Arc::new(CannedProvider::new(&request.nonce)),
        };
        let oidc_callback = LoginCallback {
            params: vec![
                ("code".into(), "bench-code".into()),
                ("state".into(), request.state.clone()),
            ],
            request: request.clone(),
            code_verifier: "d".repeat(64),
            context: None,
        };
        // (begin-login, complete-login) of one login.
        let oidc_login = async || {
            let t = Instant::now();
            oidc.begin_login(&oidc_invocation, &request)
                .await
                .unwrap()
                .unwrap();
            let begun = t.elapsed();
            let t = Instant::now();
            let identity = oidc
                .complete_login(&oidc_invocation, &oidc_callback)
                .await
                .unwrap()
                .unwrap();
            let completed = t.elapsed();
            assert_eq!(identity.subject, "248289761001");
            (begun, completed)
        };
        for _ in 0..200 {
            oidc_login().await;
        }
        let (mut begins, mut completes, mut logins) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..2_000 {
            let (begun, completed) = oidc_login().await;
            begins.push(begun);
            completes.push(completed);
            logins.push(begun + completed);
        }
        percentiles("OIDC begin-login (discovery, JWKS; authorize URL)", begins);
        percentiles(
            "OIDC complete-login (discovery, JWKS, token request, RS256 ID token check)",
            completes,
        );
        percentiles(
            "OIDC plugin's share of a login (both hooks; HTTP answered from memory)",
            logins,
        );
    });
}
