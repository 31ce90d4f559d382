//! The runtime against a misbehaving plugin (plugins/testing/probe, built by
//! scripts/build-plugins.sh): runaway loops, memory bombs, traps, huge output and log floods
//! each end in an error for the operator, and the very next call is served. Capabilities:
//! undeclared hosts, private addresses (literal, resolved, or reached by redirect) and
//! ungranted capabilities are denied; credentials never follow a redirect to another origin and
//! https is never downgraded to http. All traffic stays on loopback.
//!
//! Contract versions: a channel built against the released 0.1.0 (plugins/testing/channel-v0-1)
//! and one built against 0.2.0 (the probe, through the SDK) run side by side in one runtime.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::response::{IntoResponse, Redirect};
use infrapilot_plugin_runtime::contract::http::{HttpError, Request, Response};
use infrapilot_plugin_runtime::contract::kv::KvError;
use infrapilot_plugin_runtime::contract::log::Level;
use infrapilot_plugin_runtime::contract::mail::{MailError, Message};
use infrapilot_plugin_runtime::contract::{Alert, AlertState, PluginError, Severity};
use infrapilot_plugin_runtime::egress::{EgressGuard, HttpEgress};
use infrapilot_plugin_runtime::runtime::RuntimeConfig;
use infrapilot_plugin_runtime::services::{BasicServices, HostServices};
use infrapilot_plugin_runtime::{
    AlertChannelPlugin, ContractVersion, HookError, Invocation, Manifest, Runtime, RuntimeError,
};
use infrapilot_plugin_types::capabilities::Capabilities;

mod common;
use common::{limits, plugin_files};

fn probe_files() -> (Vec<u8>, Manifest) {
    plugin_files("infrapilot_test_probe", "testing/probe")
}

struct Probe {
    _runtime: Runtime,
    plugin: AlertChannelPlugin,
    invocation: Invocation,
}

fn probe(egress_allow: &str, grant: Option<Capabilities>) -> Probe {
    let egress = HttpEgress::new(
        EgressGuard::parse_allow_list(egress_allow).unwrap(),
        1 << 20,
    )
    .unwrap();
    probe_with(grant, Arc::new(BasicServices::new(egress)))
}

fn probe_with(grant: Option<Capabilities>, services: Arc<dyn HostServices>) -> Probe {
    let (component, manifest) = probe_files();
    let runtime = Runtime::new(RuntimeConfig {
        limits: limits(),
        max_instances: 16,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let compiled = runtime.compile(&component).unwrap();
    let grant = grant.unwrap_or_else(|| manifest.capabilities.clone());
    let plugin = runtime
        .load::<AlertChannelPlugin>(&manifest, &compiled, &grant)
        .unwrap();
    Probe {
        _runtime: runtime,
        plugin,
        invocation: Invocation {
            settings: serde_json::json!({"note": "hello"}),
            secrets: HashMap::from([("token".to_owned(), "t0ken".to_owned())]),
            services,
        },
    }
}

fn alert(title: &str) -> Alert {
    Alert {
        id: "a1".into(),
        rule_id: "r1".into(),
        rule_name: "probe".into(),
        state: AlertState::Firing,
        severity: Severity::Info,
        title: title.into(),
        summary: String::new(),
        node: None,
        target: None,
        labels: vec![],
        started_at_unix_ms: 0,
        resolved_at_unix_ms: None,
        url: None,
    }
}

impl Probe {
    async fn run(&self, title: &str) -> Result<String, HookError> {
        self.plugin
            .deliver(&self.invocation, &alert(title))
            .await
            .map(|(d, _)| d.detail)
    }

    async fn still_serves(&self) {
        assert_eq!(
            self.run("ok").await.unwrap(),
            "ok",
            "the next call after a failure"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_hits_the_deadline_and_the_next_call_is_served() {
    let p = probe("", None);
    let started = Instant::now();
    let err = p.run("loop").await.unwrap_err();
    assert_eq!(
        err,
        HookError::Deadline {
            limit: Duration::from_millis(500)
        }
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    assert!(err.to_string().contains("deadline of 500 ms"), "{err}");
    p.still_serves().await;
}

/// One thread only: a looping plugin yields at every epoch tick, so it cannot hold the thread.
#[tokio::test(flavor = "current_thread")]
async fn a_loop_does_not_hold_up_other_calls() {
    let p = Arc::new(probe("", None));
    let looping = {
        let p = p.clone();
        tokio::spawn(async move { p.run("loop").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    p.still_serves().await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        looping.await.unwrap(),
        Err(HookError::Deadline { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_hits_the_memory_limit() {
    let p = probe("", None);
    let err = p.run("alloc").await.unwrap_err();
    assert_eq!(
        err,
        HookError::Memory {
            limit_bytes: 32 << 20
        }
    );
    assert!(err.to_string().contains("memory limit of 32 MiB"), "{err}");
    p.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_an_error_not_a_crash() {
    let p = probe("", None);
    let err = p.run("trap").await.unwrap_err();
    assert!(matches!(err, HookError::Trap(_)), "{err:?}");
    assert!(err.to_string().starts_with("the plugin crashed"), "{err}");
    p.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_output_and_log_floods_are_bounded() {
    let p = probe("", None);
    let err = p.run("huge-output").await.unwrap_err();
    assert_eq!(
        err,
        HookError::OutputTooLarge {
            size: 16 << 20,
            limit: 64 << 10
        }
    );
    p.still_serves().await;
    let (_, report) = p
        .plugin
        .deliver(&p.invocation, &alert("log-flood"))
        .await
        .unwrap();
    assert_eq!(report.log_lines, 50);
    assert_eq!(report.dropped_log_lines, 100_000 - 50);
}

async fn local_server() -> SocketAddr {
    async fn ok() -> impl IntoResponse {
        "served locally"
    }
    async fn redirect(Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
        Redirect::temporary(&q["to"])
    }
    async fn headers(headers: axum::http::HeaderMap) -> impl IntoResponse {
        let mut names: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        names.join(",")
    }
    let app = axum::Router::new()
        .route("/ok", axum::routing::get(ok))
        .route("/headers", axum::routing::get(headers))
        .route("/redirect", axum::routing::get(redirect));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn denied(result: Result<String, HookError>) -> String {
    match result {
        Err(HookError::Plugin(PluginError::Denied(why))) => why,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_is_limited_to_declared_hosts_and_public_addresses() {
    let server = local_server().await;
    let port = server.port();

    // Operator's allowance off: loopback is refused whether literal or resolved from a name.
    let strict = probe("", None);
    let why = denied(strict.run("fetch http://undeclared.example/").await);
    assert!(
        why.contains("undeclared.example is not among the hosts"),
        "{why}"
    );
    let why = denied(
        strict
            .run(&format!("fetch http://127.0.0.1:{port}/ok"))
            .await,
    );
    assert!(why.contains("loopback"), "{why}");
    let why = denied(
        strict
            .run(&format!("fetch http://localhost:{port}/ok"))
            .await,
    );
    assert!(
        why.contains("localhost resolves to") && why.contains("loopback"),
        "{why}"
    );
    let err = strict.run("fetch file:///etc/passwd").await.unwrap_err();
    assert!(
        err.to_string().contains("scheme file is not allowed"),
        "{err}"
    );

    // 127.0.0.1 allowed: the same request is served ...
    let relaxed = probe("127.0.0.1/32", None);
    assert_eq!(
        relaxed
            .run(&format!("fetch http://127.0.0.1:{port}/ok"))
            .await
            .unwrap(),
        "200 served locally"
    );
    // ... a redirect to an allowed, declared address is followed ...
    let to = format!("http://localhost:{port}/ok");
    assert_eq!(
        relaxed
            .run(&format!("fetch http://127.0.0.1:{port}/redirect?to={to}"))
            .await
            .unwrap(),
        "200 served locally"
    );
    // ... but a redirect to a declared host on a refused address is not, nor to an undeclared host.
    let to = format!("http://127.0.0.2:{port}/ok");
    let why = denied(
        relaxed
            .run(&format!("fetch http://127.0.0.1:{port}/redirect?to={to}"))
            .await,
    );
    assert!(why.contains("127.0.0.2 is a loopback address"), "{why}");
    let why = denied(
        relaxed
            .run(&format!(
                "fetch http://127.0.0.1:{port}/redirect?to=http://elsewhere.example/"
            ))
            .await,
    );
    assert!(why.contains("redirect refused: elsewhere.example"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_not_granted_are_denied_inside_the_host_functions() {
    // The operator grants log and config only.
    let grant = Capabilities {
        log: true,
        config: true,
        ..Capabilities::default()
    };
    let p = probe("127.0.0.1/32", Some(grant));
    assert_eq!(p.run("settings").await.unwrap(), r#"{"note":"hello"}"#);
    let why = denied(p.run("secret token").await);
    assert!(why.contains("capability secrets was not granted"), "{why}");
    let why = denied(p.run("fetch http://127.0.0.1:1/").await);
    assert!(why.contains("capability http was not granted"), "{why}");
    assert_eq!(
        p.run("clock").await.unwrap(),
        "0",
        "no clock without the grant"
    );
    assert_eq!(p.run("random").await.unwrap(), "[]");
    let err = p.run("kv").await.unwrap_err();
    assert!(
        err.to_string().contains("capability kv was not granted"),
        "{err}"
    );

    // Everything granted: the same calls work.
    let full = probe("127.0.0.1/32", None);
    assert_eq!(full.run("secret token").await.unwrap(), "t0ken");
    assert_eq!(full.run("kv").await.unwrap(), "1");
    assert_eq!(
        full.run("kv").await.unwrap(),
        "2",
        "key/value survives across calls"
    );
    assert!(full.run("clock").await.unwrap().parse::<u64>().unwrap() > 1_700_000_000_000);
    assert_eq!(full.run("random").await.unwrap().matches(',').count(), 15);
    let err = full.run("mail ops@example.com").await.unwrap_err();
    assert!(err.to_string().contains("no SMTP server"), "{err}");
    // Header injection through a recipient is refused before any mail code runs.
    let err = full
        .run("mail ops@example.com>\r\nBcc: all@example.com")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("to.0: not a plain e-mail address"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_do_not_follow_a_redirect_to_another_origin() {
    let port = local_server().await.port();
    let relaxed = probe("127.0.0.0/8", None);
    // Same origin: the plugin's headers are all sent on.
    let same = relaxed
        .run(&format!(
            "fetch-auth http://127.0.0.1:{port}/redirect?to=http://127.0.0.1:{port}/headers"
        ))
        .await
        .unwrap();
    assert!(
        same.contains("authorization") && same.contains("x-api-key"),
        "{same}"
    );
    // Another origin (another host name): only the harmless headers survive.
    let other = relaxed
        .run(&format!(
            "fetch-auth http://127.0.0.1:{port}/redirect?to=http://localhost:{port}/headers"
        ))
        .await
        .unwrap();
    assert!(other.starts_with("200 "), "{other}");
    assert!(other.contains("accept"), "{other}");
    assert!(
        !other.contains("authorization") && !other.contains("x-api-key"),
        "credentials crossed origins: {other}"
    );
}

/// Answers every https request with a redirect to plain http, and records what it was asked.
struct Downgrader {
    asked: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl HostServices for Downgrader {
    fn log(&self, _: &str, _: Level, _: &str) {}

    async fn http_fetch(
        &self,
        _plugin_id: &str,
        request: Request,
        _timeout: Duration,
    ) -> Result<Response, HttpError> {
        self.asked.lock().unwrap().push(request.url.clone());
        Ok(Response {
            status: 302,
            headers: vec![infrapilot_plugin_runtime::contract::Header {
                name: "location".into(),
                value: "http://b.allowed.test/plain".into(),
            }],
            body: Vec::new(),
        })
    }

    async fn send_mail(&self, _: &str, _: Message) -> Result<(), MailError> {
        Err(MailError::NotConfigured)
    }
    async fn kv_get(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(None)
    }
    async fn kv_set(&self, _: &str, _: &str, _: Vec<u8>) -> Result<(), KvError> {
        Ok(())
    }
    async fn kv_delete(&self, _: &str, _: &str) -> Result<(), KvError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_never_downgrades_https_to_http() {
    let services = Arc::new(Downgrader {
        asked: std::sync::Mutex::default(),
    });
    let p = probe_with(None, services.clone());
    let why = denied(p.run("fetch https://a.allowed.test/start").await);
    assert!(why.contains("downgrade https to http"), "{why}");
    assert_eq!(
        *services.asked.lock().unwrap(),
        ["https://a.allowed.test/start"],
        "the http target was never fetched"
    );
}

/// Two channels, one built against contract 0.1.0 and one against 0.2.0, loaded in the same
/// runtime: each is linked against its own version, receives the same alert field for field,
/// reaches the host's capabilities through its version's interfaces, and reports its errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_built_against_contracts_0_1_0_and_0_2_0_run_in_one_runtime() {
    let runtime = Runtime::new(RuntimeConfig {
        limits: limits(),
        max_instances: 16,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let load = |(component, manifest): (Vec<u8>, Manifest)| {
        let compiled = runtime.compile(&component).unwrap();
        let plugin = runtime
            .load::<AlertChannelPlugin>(&manifest, &compiled, &manifest.capabilities)
            .unwrap();
        (plugin, compiled, manifest)
    };
    let (old, old_component, old_manifest) = load(plugin_files(
        "infrapilot_test_channel_v0_1",
        "testing/channel-v0-1",
    ));
    let (new, _, new_manifest) = load(probe_files());
    assert_eq!(old_manifest.wit_version, "0.1.0");
    assert_eq!(new_manifest.wit_version, "0.2.0");
    assert_eq!(old.contract_version(), ContractVersion::V0_1_0);
    assert_eq!(new.contract_version(), ContractVersion::V0_2_0);

    let egress = HttpEgress::new(EgressGuard::parse_allow_list("").unwrap(), 1 << 20).unwrap();
    let invocation = |settings: serde_json::Value| Invocation {
        settings,
        secrets: HashMap::new(),
        services: Arc::new(BasicServices::new(egress.clone())),
    };
    let alert = Alert {
        id: "a-42".into(),
        rule_id: "r-7".into(),
        rule_name: "web down".into(),
        state: AlertState::Resolved,
        severity: Severity::Critical,
        title: "echo".into(),
        summary: "two\nlines".into(),
        node: Some("node-1".into()),
        target: None,
        labels: vec![
            ("kind".into(), "container_exit".into()),
            ("é".into(), "ü".into()),
        ],
        started_at_unix_ms: 1_700_000_000_000,
        resolved_at_unix_ms: Some(1_700_000_060_000),
        url: Some("https://pilot.example.com/alerts/history".into()),
    };
    let (old_delivery, old_report) = old
        .deliver(&invocation(serde_json::json!({"prefix": "v0.1"})), &alert)
        .await
        .unwrap();
    let (new_delivery, _) = new
        .deliver(&invocation(serde_json::json!({})), &alert)
        .await
        .unwrap();
    // "<who> at <clock>: <the alert as the plugin's bindings print it>"
    let (old_head, old_alert) = old_delivery.detail.split_once(": ").unwrap();
    let (new_head, new_alert) = new_delivery.detail.split_once(": ").unwrap();
    assert!(old_head.starts_with("v0.1 at 17"), "{old_head}");
    assert!(new_head.starts_with("probe at 17"), "{new_head}");
    assert_eq!(
        old_alert, new_alert,
        "both versions received the same alert"
    );
    // Field by field, as the plugin's own bindings print it: a field dropped or two swapped in a
    // conversion shows here.
    assert_eq!(
        old_alert,
        concat!(
            r#"Alert { id: "a-42", rule-id: "r-7", rule-name: "web down", "#,
            r#"state: AlertState::Resolved, severity: Severity::Critical, "#,
            r#"title: "echo", summary: "two\nlines", node: Some("node-1"), target: None, "#,
            r#"labels: [("kind", "container_exit"), ("é", "ü")], "#,
            r#"started-at-unix-ms: 1700000000000, resolved-at-unix-ms: Some(1700000060000), "#,
            r#"url: Some("https://pilot.example.com/alerts/history") }"#
        )
    );
    assert_eq!(
        old_report.log_lines, 1,
        "the 0.1.0 log import reached the host"
    );

    // A 0.1.0 plugin's expected error arrives as the version-neutral error.
    assert_eq!(
        old.validate(&invocation(serde_json::json!({})))
            .await
            .unwrap_err(),
        HookError::Plugin(PluginError::InvalidSettings("prefix: required".into()))
    );
    old.validate(&invocation(serde_json::json!({"prefix": "p"})))
        .await
        .unwrap();

    // The manifest must name the version the component was built against.
    let mut lying = old_manifest.clone();
    lying.wit_version = "0.2.0".into();
    let refused = runtime
        .load::<AlertChannelPlugin>(&lying, &old_component, &lying.capabilities)
        .err()
        .expect("a 0.1.0 component under a 0.2.0 manifest is refused");
    assert!(
        matches!(&refused, RuntimeError::VersionMismatch(m)
            if m.contains("built against contract 0.1.0") && m.contains("wit_version 0.2.0")),
        "{refused}"
    );
}

#[test]
fn the_runtime_links_every_version_a_manifest_may_name() {
    let linked: Vec<&str> = ContractVersion::ALL.iter().map(|v| v.as_str()).collect();
    assert_eq!(linked, infrapilot_plugin_runtime::SUPPORTED_WIT_VERSIONS);
}
