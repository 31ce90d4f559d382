//! Plugins and alerting end to end with real components: the `infrapilot` binary with its
//! built-in agent on a real Docker engine, the first-party channel plugins as signed WebAssembly
//! bundles (built by `scripts/build-plugins.sh`), a local HTTP receiver for the webhook and Slack
//! payloads, and a real SMTP server (Python's aiosmtpd, Debian's python3-aiosmtpd).

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use common::{Api, Fixture, Server, SmtpServer, docker, eventually, plugin_build, temp_dir};
use hmac::{Hmac, KeyInit, Mac};
use infrapilot_licensing::License;
use infrapilot_plugin_runtime::Bundle;
use infrapilot_plugin_types::bundle::SigningKey;
use serde_json::{Value, json};
use sha2::Sha256;

#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// An HTTP server on loopback recording every request; `/fail…` answers 500.
#[derive(Clone)]
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let record = record.clone();
            async move {
                let path = uri.path().to_owned();
                let fail = path.starts_with("/fail");
                record.lock().unwrap().push(Received {
                    path,
                    headers,
                    body,
                });
                if fail {
                    (StatusCode::INTERNAL_SERVER_ERROR, "boom")
                } else {
                    (StatusCode::OK, "ok")
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, seen }
    }

    fn on(&self, path: &str) -> Vec<Received> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

fn verify_hmac(secret: &str, r: &Received) {
    let timestamp = r.header("x-infrapilot-timestamp");
    assert!(!timestamp.is_empty(), "timestamp header sent");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        r.header("x-infrapilot-signature"),
        expected,
        "HMAC over timestamp.body"
    );
}

async fn enable(admin: &Api, id: &str) {
    let (status, body) = admin
        .call("POST", &format!("/api/v1/plugins/{id}/enable"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], true);
}

async fn channel(admin: &Api, plugin: &str, name: &str, settings: Value) -> String {
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/alerts/channels",
            Some(json!({"plugin": plugin, "name": name, "settings": settings})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn send_test(admin: &Api, id: &str) -> Value {
    let (status, body) = admin
        .call("POST", &format!("/api/v1/alerts/channels/{id}/test"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn event_of<'a>(history: &'a Value, kind: &str, target_suffix: &str) -> Option<&'a Value> {
    history.as_array()?.iter().find(|e| {
        e["kind"] == kind
            && e["target"]
                .as_str()
                .is_some_and(|t| t.ends_with(target_suffix))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn channels_deliver_through_plugins_and_rules_fire_on_real_docker_events() {
    let Some(docker) = docker().await else { return };
    let Some(build) = plugin_build() else { return };
    let receiver = Receiver::start().await;
    let smtp = SmtpServer::start().await;
    let smtp_port = smtp.port.to_string();
    let bundles = build.join("bundles");
    let keys = build.join("dev-signing");
    let server = Server::start_with(
        true,
        30,
        &[
            ("INFRAPILOT_PLUGIN_DIR", bundles.to_str().unwrap()),
            ("INFRAPILOT_PLUGIN_TRUSTED_KEYS", keys.to_str().unwrap()),
            ("INFRAPILOT_PLUGIN_EGRESS_ALLOW", "127.0.0.0/8"),
            ("INFRAPILOT_SMTP_HOST", "127.0.0.1"),
            ("INFRAPILOT_SMTP_PORT", &smtp_port),
            ("INFRAPILOT_SMTP_SECURITY", "none"),
            ("INFRAPILOT_SMTP_FROM", "InfraPilot <alerts@example.com>"),
            ("INFRAPILOT_ALERT_TICK_SECONDS", "1"),
            ("INFRAPILOT_ALERT_RETRY_SECONDS", "1"),
        ],
    )
    .await;
    let admin = server.admin().await;
    admin.online_agent("local").await;

    // The shipped plugins are installed at start-up, signed by the trusted development key;
    // alert channels stay disabled until the operator enables them (the proxy backend, which
    // needs no grant beyond logging, is enabled). The sign-in providers (OIDC, LDAP, SAML) are
    // enterprise plugins, installed too (tests/e2e/sso.mjs uses them); so are the ClickHouse
    // log sink and the policy engines (templates, Rego).
    let plugins = admin.get("/api/v1/plugins").await;
    let ids: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "infrapilot.clickhouse",
            "infrapilot.ldap",
            "infrapilot.oidc",
            "infrapilot.policy-rego",
            "infrapilot.policy-templates",
            "infrapilot.proxy-nginx",
            "infrapilot.saml",
            "infrapilot.slack",
            "infrapilot.smtp",
            "infrapilot.webhook"
        ]
    );
    for p in plugins.as_array().unwrap() {
        if ["infrapilot.oidc", "infrapilot.ldap", "infrapilot.saml"]
            .contains(&p["id"].as_str().unwrap_or_default())
        {
            assert_eq!(
                (&p["world"], &p["edition"], &p["enabled"], &p["signed"]),
                (
                    &json!("sso-provider"),
                    &json!("enterprise"),
                    &json!(false),
                    &json!(true)
                ),
                "{p}"
            );
            continue;
        }
        // The policy engines need the enterprise feature `policies`.
        if ["infrapilot.policy-templates", "infrapilot.policy-rego"]
            .contains(&p["id"].as_str().unwrap_or_default())
        {
            assert_eq!(
                (
                    &p["world"],
                    &p["edition"],
                    &p["feature"],
                    &p["enabled"],
                    &p["signed"]
                ),
                (
                    &json!("policy-engine"),
                    &json!("enterprise"),
                    &json!("policies"),
                    &json!(false),
                    &json!(true)
                ),
                "{p}"
            );
            continue;
        }
        // The log sink is a community plugin, disabled until the operator enables it.
        if p["id"] == "infrapilot.clickhouse" {
            assert_eq!(
                (&p["world"], &p["edition"], &p["enabled"], &p["signed"]),
                (
                    &json!("log-sink"),
                    &json!("community"),
                    &json!(false),
                    &json!(true)
                ),
                "{p}"
            );
            continue;
        }
        let proxy = p["id"] == "infrapilot.proxy-nginx";
        assert_eq!(
            (&p["world"], &p["edition"], &p["enabled"], &p["signed"]),
            (
                &json!(if proxy {
                    "proxy-backend"
                } else {
                    "alert-channel"
                }),
                &json!("community"),
                &json!(proxy),
                &json!(true)
            ),
            "{p}"
        );
    }
    // A channel of a disabled plugin is refused.
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/alerts/channels",
            Some(json!({"plugin": "infrapilot.webhook", "name": "x", "settings": {"url": "http://127.0.0.1/"}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (409, Some("plugin")),
        "{body}"
    );
    for id in ["infrapilot.webhook", "infrapilot.slack", "infrapilot.smtp"] {
        enable(&admin, id).await;
    }

    // Settings are checked against the plugin's JSON Schema, errors naming the field.
    for (settings, field) in [
        (json!({}), "settings.url"),
        (json!({"url": 42}), "settings.url"),
        (json!({"url": "http://127.0.0.1/", "bogus": 1}), "settings"),
        (
            json!({"url": "http://127.0.0.1/", "headers": {"x": 1}}),
            "settings.headers.x",
        ),
    ] {
        let (status, body) = admin
            .call(
                "POST",
                "/api/v1/alerts/channels",
                Some(json!({"plugin": "infrapilot.webhook", "name": "bad", "settings": settings})),
            )
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}"
        );
    }
    // The plugin's own validate() refuses what the schema cannot express.
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/alerts/channels",
            Some(json!({"plugin": "infrapilot.slack", "name": "bad", "settings": {"webhook_url": "ftp://x"}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("settings")),
        "{body}"
    );

    // Webhook: JSON signed with HMAC-SHA256; the secret is write-only.
    let webhook = channel(
        &admin,
        "infrapilot.webhook",
        "ops hook",
        json!({"url": format!("{}/hook", receiver.url), "secret": "s3cret"}),
    )
    .await;
    let shown = admin
        .get(&format!("/api/v1/alerts/channels/{webhook}"))
        .await;
    // The URL is write-only too: it can carry credentials.
    assert_eq!(shown["secrets_set"], json!(["secret", "url"]), "{shown}");
    assert!(
        shown["settings"].get("secret").is_none() && shown["settings"].get("url").is_none(),
        "secrets never returned: {shown}"
    );
    assert!(!shown.to_string().contains("s3cret"));
    assert!(!shown.to_string().contains(&receiver.url));
    let test = send_test(&admin, &webhook).await;
    assert_eq!(
        (&test["delivered"], &test["detail"]),
        (&json!(true), &json!("HTTP 200")),
        "{test}"
    );
    let got = receiver.on("/hook");
    assert_eq!(got.len(), 1);
    verify_hmac("s3cret", &got[0]);
    let payload = got[0].json();
    assert_eq!(payload["event"], "alert.test", "{payload}");
    assert_eq!(payload["alert"]["state"], "test");

    // Slack: an incoming-webhook message with blocks.
    let slack = channel(
        &admin,
        "infrapilot.slack",
        "slack",
        json!({"webhook_url": format!("{}/slack", receiver.url), "channel": "#ops"}),
    )
    .await;
    assert_eq!(send_test(&admin, &slack).await["delivered"], true);
    let message = receiver.on("/slack")[0].json();
    assert_eq!(message["channel"], "#ops", "{message}");
    assert!(
        message["blocks"].as_array().is_some_and(|b| !b.is_empty()),
        "{message}"
    );
    assert!(
        message.to_string().contains("Test alert from InfraPilot"),
        "{message}"
    );

    // SMTP: through lettre and the host's SMTP settings to a real SMTP server.
    let mail = channel(
        &admin,
        "infrapilot.smtp",
        "mail",
        json!({"to": ["ops@example.com"], "subject_prefix": "[lab]"}),
    )
    .await;
    let test = send_test(&admin, &mail).await;
    assert_eq!(test["delivered"], true, "{test}");
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "one mail received");
    assert!(messages[0].contains("Subject: [lab]"), "{}", messages[0]);
    assert!(messages[0].contains("ops@example.com"));
    assert!(messages[0].contains("alerts@example.com"));

    // A channel whose endpoint fails: retried with backoff, the error kept.
    let failing = channel(
        &admin,
        "infrapilot.webhook",
        "failing",
        json!({"url": format!("{}/fail", receiver.url)}),
    )
    .await;
    let test = send_test(&admin, &failing).await;
    assert_eq!(test["delivered"], false);
    assert!(test["detail"].as_str().unwrap().contains("500"), "{test}");

    // Rules: bad input named by field.
    for (rule, field) in [
        (
            json!({"name": "r", "kind": "nope", "channel_ids": [webhook]}),
            "kind",
        ),
        (
            json!({"name": "r", "kind": "restart_loop", "params": {"restarts": 1}, "channel_ids": [webhook]}),
            "params.restarts",
        ),
        (
            json!({"name": "r", "kind": "cpu_high", "params": {}, "channel_ids": [webhook]}),
            "params.threshold_percent",
        ),
        (
            json!({"name": "r", "kind": "container_crashed", "channel_ids": []}),
            "channel_ids",
        ),
        (
            json!({"name": "r", "kind": "container_crashed", "channel_ids": [webhook], "cooldown_seconds": 99999999}),
            "cooldown_seconds",
        ),
        (
            json!({"name": "r", "kind": "container_crashed", "channel_ids": [webhook], "severity": "meh"}),
            "severity",
        ),
    ] {
        let (status, body) = admin.call("POST", "/api/v1/alerts/rules", Some(rule)).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}"
        );
    }
    // A well-formed id of a channel or node that does not exist: 404 naming the field.
    for (rule, field) in [
        (
            json!({"name": "r", "kind": "container_crashed", "channel_ids": [uuid::Uuid::new_v4().to_string()]}),
            "channel_ids.0",
        ),
        (
            json!({"name": "r", "kind": "container_crashed", "channel_ids": [webhook], "agent_id": uuid::Uuid::new_v4().to_string()}),
            "agent_id",
        ),
    ] {
        let (status, body) = admin.call("POST", "/api/v1/alerts/rules", Some(rule)).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (404, Some(field)),
            "{body}"
        );
    }

    let mut fx = Fixture::new(docker, "alerts");
    let crasher_name = format!("{}-crasher", fx.prefix);
    let looper_name = format!("{}-looper", fx.prefix);
    let burner_name = format!("{}-burner", fx.prefix);
    for rule in [
        json!({"name": "crash", "kind": "container_crashed", "params": {"container": crasher_name},
               "severity": "critical", "cooldown_seconds": 600, "channel_ids": [webhook, failing]}),
        json!({"name": "loop", "kind": "restart_loop", "params": {"restarts": 3, "window_seconds": 120},
               "cooldown_seconds": 600, "channel_ids": [webhook]}),
        json!({"name": "hot", "kind": "cpu_high", "params": {"container": burner_name, "threshold_percent": 30, "duration_seconds": 2},
               "channel_ids": [webhook]}),
    ] {
        let (status, body) = admin.call("POST", "/api/v1/alerts/rules", Some(rule)).await;
        assert_eq!(status, 201, "{body}");
    }
    // Let the engine take its starting point in the event stream.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A container that exits 1: firing, delivered to the webhook with the exit code.
    let crasher = fx.run("crasher", "sleep 1; exit 1", &[], &[], None).await;
    assert_eq!(crasher, crasher_name);
    let firing = eventually("crash alert delivered", Duration::from_secs(30), || {
        let receiver = receiver.clone();
        let crasher = crasher.clone();
        async move {
            receiver.on("/hook").into_iter().find(|r| {
                let p = r.json();
                p["event"] == "alert.firing" && p["alert"]["target"] == crasher.as_str()
            })
        }
    })
    .await;
    verify_hmac("s3cret", &firing);
    let alert = firing.json()["alert"].clone();
    assert_eq!(alert["severity"], "critical", "{alert}");
    assert!(
        alert["title"]
            .as_str()
            .unwrap()
            .contains("exited with code 1"),
        "{alert}"
    );
    assert_eq!(alert["node"], "local");

    // Started again: resolved (and its next exit folds into the same event: cooldown).
    docker_start(&fx, &crasher).await;
    eventually("crash alert resolved", Duration::from_secs(30), || {
        let receiver = receiver.clone();
        let crasher = crasher.clone();
        async move {
            receiver.on("/hook").into_iter().find(|r| {
                let p = r.json();
                p["event"] == "alert.resolved" && p["alert"]["target"] == crasher.as_str()
            })
        }
    })
    .await;
    let history = eventually(
        "the repeat counted within the cooldown",
        Duration::from_secs(30),
        || {
            let admin = admin.clone();
            let crasher = crasher.clone();
            async move {
                let h = admin.get("/api/v1/alerts/history").await;
                let e = event_of(&h, "container_crashed", &crasher)?;
                (e["occurrences"].as_i64()? >= 2).then(|| h.clone())
            }
        },
    )
    .await;
    let crash_events: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "container_crashed")
        .collect();
    assert_eq!(
        crash_events.len(),
        1,
        "one event within the cooldown: {history}"
    );
    let event = crash_events[0];
    assert_eq!(event["state"], "resolved", "{event}");
    assert!(event["resolved_at"].is_string());
    let deliveries = event["deliveries"].as_array().unwrap();
    let delivered = |channel: &str, transition: &str| {
        deliveries
            .iter()
            .find(|d| d["channel_id"] == channel && d["transition"] == transition)
            .cloned()
    };
    assert_eq!(delivered(&webhook, "firing").unwrap()["state"], "delivered");
    assert_eq!(
        delivered(&webhook, "resolved").unwrap()["state"],
        "delivered"
    );
    let firing_hooks = receiver
        .on("/hook")
        .iter()
        .filter(|r| {
            r.json()["event"] == "alert.firing" && r.json()["alert"]["target"] == crasher.as_str()
        })
        .count();
    assert_eq!(firing_hooks, 1, "notified once per cooldown");
    // The failing channel is retried with backoff and its error kept.
    let retried = eventually(
        "retries of the failing channel",
        Duration::from_secs(30),
        || {
            let admin = admin.clone();
            let (crasher, failing) = (crasher.clone(), failing.clone());
            async move {
                let h = admin.get("/api/v1/alerts/history").await;
                let e = event_of(&h, "container_crashed", &crasher)?;
                let d = e["deliveries"]
                    .as_array()?
                    .iter()
                    .find(|d| d["channel_id"] == failing.as_str() && d["transition"] == "firing")?
                    .clone();
                (d["attempts"].as_i64()? >= 2).then_some(d)
            }
        },
    )
    .await;
    assert!(
        retried["last_error"].as_str().unwrap().contains("500"),
        "{retried}"
    );
    assert_ne!(retried["state"], "delivered");
    assert!(receiver.on("/fail").len() >= 2);

    // A container restarting in a loop.
    let looper = fx.run_restarting("looper", "sleep 0.3; exit 1", 20).await;
    assert_eq!(looper, looper_name);
    let looping = eventually("restart-loop alert", Duration::from_secs(60), || {
        let receiver = receiver.clone();
        let looper = looper.clone();
        async move {
            receiver.on("/hook").into_iter().find(|r| {
                let p = r.json();
                p["event"] == "alert.firing"
                    && p["alert"]["target"] == looper.as_str()
                    && p["alert"]["labels"]["kind"] == "restart_loop"
            })
        }
    })
    .await;
    assert!(
        looping.json()["alert"]["title"]
            .as_str()
            .unwrap()
            .contains("started"),
        "{:?}",
        looping.json()
    );
    // The crash rule is limited to the crasher: the looper's exits do not fire it.
    let h = admin.get("/api/v1/alerts/history").await;
    assert!(event_of(&h, "container_crashed", &looper).is_none(), "{h}");

    // CPU over 30 % for 2 s.
    let burner = fx
        .run("burner", "while true; do :; done", &[], &[], None)
        .await;
    assert_eq!(burner, burner_name);
    eventually("cpu alert", Duration::from_secs(60), || {
        let admin = admin.clone();
        let burner = burner.clone();
        async move {
            let h = admin.get("/api/v1/alerts/history").await;
            event_of(&h, "cpu_high", &burner).cloned()
        }
    })
    .await;
    fx.cleanup().await;
    // Gone: the CPU alert resolves.
    eventually("cpu alert resolved", Duration::from_secs(60), || {
        let admin = admin.clone();
        let burner = burner.clone();
        async move {
            let h = admin.get("/api/v1/alerts/history").await;
            let e = event_of(&h, "cpu_high", &burner)?;
            (e["state"] == "resolved").then_some(())
        }
    })
    .await;
    // Channel and rule changes are audited.
    let audit = admin.get("/api/v1/audit?action=alert_channel.create").await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 4, "{audit}");
}

/// Memory over a share of the container's limit fires `memory_high` (on the real engine's
/// statistics, as `docker stats` computes them) and resolves when the container is gone.
#[tokio::test(flavor = "multi_thread")]
async fn memory_over_its_limit_share_fires_memory_high() {
    let Some(docker) = docker().await else { return };
    let Some(build) = plugin_build() else { return };
    let receiver = Receiver::start().await;
    let server = Server::start_with(
        true,
        30,
        &[
            (
                "INFRAPILOT_PLUGIN_DIR",
                build.join("bundles").to_str().unwrap(),
            ),
            (
                "INFRAPILOT_PLUGIN_TRUSTED_KEYS",
                build.join("dev-signing").to_str().unwrap(),
            ),
            ("INFRAPILOT_PLUGIN_EGRESS_ALLOW", "127.0.0.0/8"),
            ("INFRAPILOT_ALERT_TICK_SECONDS", "1"),
        ],
    )
    .await;
    let admin = server.admin().await;
    admin.online_agent("local").await;
    enable(&admin, "infrapilot.webhook").await;
    let hook = channel(
        &admin,
        "infrapilot.webhook",
        "memory",
        json!({"url": format!("{}/memory", receiver.url)}),
    )
    .await;
    let mut fx = Fixture::new(docker, "memalert");
    let hog_name = format!("{}-hog", fx.prefix);
    let calm_name = format!("{}-calm", fx.prefix);
    for (name, container) in [("hog", &hog_name), ("calm", &calm_name)] {
        let (status, body) = admin
            .call(
                "POST",
                "/api/v1/alerts/rules",
                Some(json!({"name": name, "kind": "memory_high", "channel_ids": [hook],
                            "params": {"container": container, "threshold_percent": 40, "duration_seconds": 2}})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // 40 MiB in /dev/shm (tmpfs, charged to the container) under a 64 MiB limit: over 60 %.
    let hog = fx
        .run_with_memory_limit(
            "hog",
            "/bin/busybox dd if=/dev/zero of=/dev/shm/fill bs=1048576 count=40 && exec sleep 600",
            64 << 20,
        )
        .await;
    assert_eq!(hog, hog_name);
    // The same limit, nearly idle: never fires.
    let calm = fx
        .run_with_memory_limit("calm", "exec sleep 600", 64 << 20)
        .await;
    let firing = eventually("memory alert delivered", Duration::from_secs(60), || {
        let receiver = receiver.clone();
        let hog = hog.clone();
        async move {
            receiver.on("/memory").into_iter().find(|r| {
                let p = r.json();
                p["event"] == "alert.firing" && p["alert"]["target"] == hog.as_str()
            })
        }
    })
    .await;
    let alert = firing.json()["alert"].clone();
    assert_eq!(alert["severity"], "warning", "{alert}");
    let history = admin.get("/api/v1/alerts/history").await;
    let event = event_of(&history, "memory_high", &hog).expect("a memory_high event");
    assert_eq!(event["state"], "firing", "{event}");
    assert!(
        event_of(&history, "memory_high", &calm).is_none(),
        "{history}"
    );
    fx.cleanup().await;
    eventually("memory alert resolved", Duration::from_secs(60), || {
        let admin = admin.clone();
        let hog = hog.clone();
        async move {
            let h = admin.get("/api/v1/alerts/history").await;
            (event_of(&h, "memory_high", &hog)?["state"] == "resolved").then_some(())
        }
    })
    .await;
}

async fn docker_start(fx: &Fixture, name: &str) {
    fx.docker
        .start_container(
            name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
}

/// Without the operator's allowance, plugins cannot reach loopback: the test is refused by the
/// egress guard before any packet is sent.
#[tokio::test(flavor = "multi_thread")]
async fn plugins_cannot_reach_private_addresses_unless_the_operator_allows_them() {
    let Some(build) = plugin_build() else { return };
    let receiver = Receiver::start().await;
    let server = Server::start_with(
        false,
        30,
        &[
            (
                "INFRAPILOT_PLUGIN_DIR",
                build.join("bundles").to_str().unwrap(),
            ),
            (
                "INFRAPILOT_PLUGIN_TRUSTED_KEYS",
                build.join("dev-signing").to_str().unwrap(),
            ),
        ],
    )
    .await;
    let admin = server.admin().await;
    enable(&admin, "infrapilot.webhook").await;
    let hook = channel(
        &admin,
        "infrapilot.webhook",
        "loopback",
        json!({"url": format!("{}/hook", receiver.url)}),
    )
    .await;
    let test = send_test(&admin, &hook).await;
    assert_eq!(test["delivered"], false, "{test}");
    let detail = test["detail"].as_str().unwrap();
    assert!(
        detail.contains("denied") && detail.contains("loopback"),
        "{detail}"
    );
    assert!(
        receiver.on("/hook").is_empty(),
        "nothing reached the receiver"
    );
    // A grant narrower than the manifest: the webhook may only reach hooks.example.com.
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/plugins/infrapilot.webhook/enable",
            Some(
                json!({"grants": {"log": true, "config": true, "secrets": true, "clock": true,
                                   "http": {"hosts": ["hooks.example.com"]}}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let test = send_test(&admin, &hook).await;
    assert!(
        test["detail"].as_str().unwrap().contains("not among"),
        "{test}"
    );
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/plugins/infrapilot.webhook/enable",
            Some(json!({"grants": {"http": {"hosts": ["bad host!"]}}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("grants.http.hosts.0")),
        "{body}"
    );
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/plugins/infrapilot.webhook/enable",
            Some(json!({"grants": {"filesystem": true}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Serde would read a struct from an array: only an object is a grant.
    for not_an_object in [json!([]), json!([true]), json!("log"), json!(1)] {
        let (status, body) = admin
            .call(
                "POST",
                "/api/v1/plugins/infrapilot.webhook/enable",
                Some(json!({ "grants": not_an_object })),
            )
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some("grants")),
            "{not_an_object}: {body}"
        );
    }
    // In use: uninstall refused until the channel is gone.
    let (status, _) = admin
        .call("DELETE", "/api/v1/plugins/infrapilot.webhook", None)
        .await;
    assert_eq!(status, 409);
    let (status, _) = admin
        .call("DELETE", &format!("/api/v1/alerts/channels/{hook}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = admin
        .call("DELETE", "/api/v1/plugins/infrapilot.webhook", None)
        .await;
    assert_eq!(status, 204);
    let ids: Vec<String> = admin
        .get("/api/v1/plugins")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!ids.contains(&"infrapilot.webhook".to_owned()), "{ids:?}");
}

/// Bundles: tampered or unsigned refused; an enterprise plugin refused without a licence, loaded
/// with one, refused again once it expired. The CLI lists what the API lists.
#[tokio::test(flavor = "multi_thread")]
async fn bundles_are_verified_and_enterprise_plugins_follow_the_licence() {
    let Some(build) = plugin_build() else { return };
    let receiver = Receiver::start().await;
    let publisher = SigningKey::generate().unwrap();
    let vendor = SigningKey::generate().unwrap();
    let keys = temp_dir("trusted");
    std::fs::write(
        keys.join("publisher.pub"),
        publisher.public_key_pem().unwrap(),
    )
    .unwrap();
    let vendor_pub = keys.join("vendor.pem.key");
    std::fs::write(&vendor_pub, vendor.public_key_pem().unwrap()).unwrap();
    let server = Server::start_with(
        false,
        30,
        &[
            ("INFRAPILOT_EDITION", "enterprise"),
            ("INFRAPILOT_PLUGIN_TRUSTED_KEYS", keys.to_str().unwrap()),
            (
                "INFRAPILOT_LICENSE_PUBLIC_KEY",
                vendor_pub.to_str().unwrap(),
            ),
            ("INFRAPILOT_PLUGIN_EGRESS_ALLOW", "127.0.0.1"),
        ],
    )
    .await;
    let admin = server.admin().await;
    let component = std::fs::read(build.join("infrapilot_webhook.wasm")).unwrap();
    let mut manifest: Value = serde_json::from_slice(
        &std::fs::read(build.join("infrapilot_webhook.manifest.json")).unwrap(),
    )
    .unwrap();
    manifest["id"] = json!("acme.pager");
    manifest["name"] = json!("Acme Pager");
    manifest["edition"] = json!("enterprise");
    manifest["feature"] = json!("pager");
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();

    // Tampered component, tampered manifest, unsigned, untrusted: refused, nothing installed.
    let signed = Bundle::new(manifest_bytes.clone(), component.clone(), Some(&publisher));
    let mut tampered = signed.clone();
    let at = tampered.component.len() / 2;
    tampered.component[at] ^= 0x55;
    let mut grown = manifest.clone();
    grown["capabilities"]["mail"] = json!(true);
    let mut tampered_manifest = signed.clone();
    tampered_manifest.manifest_bytes = serde_json::to_vec(&grown).unwrap();
    let stranger = SigningKey::generate().unwrap();
    for (bundle, expect) in [
        (tampered.to_tar(), "does not match"),
        (tampered_manifest.to_tar(), "does not match"),
        (
            Bundle::new(manifest_bytes.clone(), component.clone(), None).to_tar(),
            "not signed",
        ),
        (
            Bundle::new(manifest_bytes.clone(), component.clone(), Some(&stranger)).to_tar(),
            "not trusted",
        ),
        (b"not a tar file at all".to_vec(), "bundle"),
    ] {
        let (status, body) = admin.upload("/api/v1/plugins", bundle).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["field"], "bundle", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(expect),
            "{body}"
        );
    }
    assert_eq!(admin.get("/api/v1/plugins").await, json!([]));

    // Signed by the trusted publisher: installed, but an enterprise plugin without a licence
    // cannot be enabled.
    let (status, body) = admin.upload("/api/v1/plugins", signed.to_tar()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["edition"], &body["signed"], &body["entitled"]),
        (&json!("enterprise"), &json!(true), &json!(false)),
        "{body}"
    );
    let license = admin.get("/api/v1/license").await;
    assert_eq!(
        (&license["edition"], &license["valid"], &license["licensee"]),
        (&json!("enterprise"), &json!(false), &Value::Null),
        "{license}"
    );
    let (status, body) = admin
        .call("POST", "/api/v1/plugins/acme.pager/enable", None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("not_entitled")),
        "{body}"
    );

    // A licence signed by someone else, or without the feature, does not help.
    let issue = |key: &SigningKey, features: &[&str], expires: time::OffsetDateTime| {
        License {
            id: uuid::Uuid::new_v4().to_string(),
            licensee: "Acme Corp".into(),
            edition: "enterprise".into(),
            features: features.iter().map(|f| (*f).to_owned()).collect(),
            limits: Default::default(),
            issued_at: (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            expires_at: expires
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        }
        .issue(key)
        .unwrap()
    };
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let (status, body) = admin
        .call(
            "PUT",
            "/api/v1/license",
            Some(json!({"license": issue(&stranger, &["pager"], year)})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("license")),
        "{body}"
    );
    let (status, body) = admin
        .call(
            "PUT",
            "/api/v1/license",
            Some(json!({"license": issue(&vendor, &["sso"], year)})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = admin
        .call("POST", "/api/v1/plugins/acme.pager/enable", None)
        .await;
    assert_eq!(status, 403);

    // A licence naming the feature, valid for a few seconds: the plugin loads and delivers.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(8);
    let (status, body) = admin
        .call(
            "PUT",
            "/api/v1/license",
            Some(json!({"license": issue(&vendor, &["pager"], soon)})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["valid"], &body["licensee"], &body["features"]),
        (&json!(true), &json!("Acme Corp"), &json!(["pager"])),
        "{body}"
    );
    let (status, body) = admin
        .call("POST", "/api/v1/plugins/acme.pager/enable", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let pager = channel(
        &admin,
        "acme.pager",
        "pager",
        json!({"url": format!("{}/pager", receiver.url)}),
    )
    .await;
    assert_eq!(send_test(&admin, &pager).await["delivered"], true);
    assert_eq!(receiver.on("/pager").len(), 1);

    // The CLI prints what the API lists.
    let cli = Command::new(common::agent_bin().parent().unwrap().join("infrapilot"))
        .args(["plugin", "list", "--json"])
        .env("INFRAPILOT_DATA_DIR", &server.data_dir)
        .env("INFRAPILOT_EDITION", "enterprise")
        .env("INFRAPILOT_LICENSE_PUBLIC_KEY", &vendor_pub)
        .env_remove("INFRAPILOT_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let listed: Value = serde_json::from_slice(&cli.stdout).unwrap();
    // acme.pager is the webhook component under another id, with the webhook's version.
    let version = manifest["version"].clone();
    assert_eq!(
        listed,
        json!([{"id": "acme.pager", "version": version, "world": "alert-channel", "edition": "enterprise", "enabled": true, "signed": true}])
    );

    // Expired: refused at the next load, and the licence shows why.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let test = send_test(&admin, &pager).await;
    assert_eq!(test["delivered"], false, "{test}");
    assert!(
        test["detail"].as_str().unwrap().contains("expired"),
        "{test}"
    );
    assert_eq!(receiver.on("/pager").len(), 1, "nothing more delivered");
    let license = admin.get("/api/v1/license").await;
    assert_eq!(license["valid"], false, "{license}");
    assert!(
        license["problem"].as_str().unwrap().contains("expired"),
        "{license}"
    );
    // An expired licence cannot be installed either.
    let (status, body) = admin
        .call(
            "PUT",
            "/api/v1/license",
            Some(json!({"license": issue(&vendor, &["pager"], soon)})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("license")),
        "{body}"
    );
}

/// A new publisher key and a directory trusting it (for `INFRAPILOT_PLUGIN_TRUSTED_KEYS`).
fn trusted_publisher(name: &str) -> (SigningKey, common::TempDir) {
    let publisher = SigningKey::generate().unwrap();
    let keys = temp_dir(name);
    std::fs::write(
        keys.join("publisher.pub"),
        publisher.public_key_pem().unwrap(),
    )
    .unwrap();
    (publisher, keys)
}

/// Installs the built plugin `crate_name` (component and manifest from `build`), signed by
/// `publisher`.
async fn upload_signed(
    admin: &Api,
    build: &std::path::Path,
    publisher: &SigningKey,
    crate_name: &str,
) {
    let bundle = Bundle::new(
        std::fs::read(build.join(format!("{crate_name}.manifest.json"))).unwrap(),
        std::fs::read(build.join(format!("{crate_name}.wasm"))).unwrap(),
        Some(publisher),
    );
    let (status, body) = admin.upload("/api/v1/plugins", bundle.to_tar()).await;
    assert_eq!(status, 201, "{crate_name}: {body}");
}

/// A runaway plugin (endless loop, allocation bomb, trap, huge output) behind "Send test": the
/// operator sees why it failed, and the host answers the next request at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_runaway_plugin_fails_its_call_and_the_host_keeps_serving() {
    let Some(build) = plugin_build() else { return };
    let (publisher, keys) = trusted_publisher("probe-keys");
    let server = Server::start_with(
        false,
        30,
        &[
            ("INFRAPILOT_PLUGIN_TRUSTED_KEYS", keys.to_str().unwrap()),
            ("INFRAPILOT_PLUGIN_HOOK_TIMEOUT_SECONDS", "1"),
        ],
    )
    .await;
    let admin = server.admin().await;
    upload_signed(&admin, &build, &publisher, "infrapilot_test_probe").await;
    enable(&admin, "infrapilot.test-probe").await;
    for (note, expected) in [
        ("loop", "deadline"),
        ("alloc", "memory limit"),
        ("trap", "crashed (trap"),
        ("huge-output", "more than the limit"),
        ("ok", "ok"),
    ] {
        let id = channel(&admin, "infrapilot.test-probe", note, json!({"note": note})).await;
        let started = std::time::Instant::now();
        let test = send_test(&admin, &id).await;
        let detail = test["detail"].as_str().unwrap();
        assert!(detail.contains(expected), "{note}: {detail}");
        assert_eq!(test["delivered"], note == "ok", "{note}: {test}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{note}: stopped in time ({:?})",
            started.elapsed()
        );
        // The host serves the next request right away.
        let t = std::time::Instant::now();
        let health = reqwest::get(format!("{}/healthz", server.base))
            .await
            .unwrap();
        assert!(health.status().is_success());
        assert_eq!(
            admin.get("/api/v1/plugins").await[0]["id"],
            "infrapilot.test-probe"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{note}: next requests took {:?}",
            t.elapsed()
        );
    }
}

/// One host serves a channel built against the released contract 0.1.0 and one built against
/// 0.2.0 side by side: both install, validate their settings and deliver "Send test".
#[tokio::test(flavor = "multi_thread")]
async fn channels_built_against_two_contract_versions_serve_in_one_host() {
    let Some(build) = plugin_build() else { return };
    let (publisher, keys) = trusted_publisher("versions-keys");
    let server = Server::start_with(
        false,
        30,
        &[("INFRAPILOT_PLUGIN_TRUSTED_KEYS", keys.to_str().unwrap())],
    )
    .await;
    let admin = server.admin().await;
    for (crate_name, id) in [
        (
            "infrapilot_test_channel_v0_1",
            "infrapilot.test-channel-v0-1",
        ),
        ("infrapilot_test_probe", "infrapilot.test-probe"),
    ] {
        upload_signed(&admin, &build, &publisher, crate_name).await;
        enable(&admin, id).await;
    }
    // The 0.1.0 plugin's own settings check runs (it needs a prefix) and names the field.
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/alerts/channels",
            Some(json!({"plugin": "infrapilot.test-channel-v0-1", "name": "old", "settings": {}})),
        )
        .await;
    assert!((400..500).contains(&status), "{status}: {body}");
    assert!(body.to_string().contains("prefix"), "{body}");

    let old = channel(
        &admin,
        "infrapilot.test-channel-v0-1",
        "old",
        json!({"prefix": "v0.1"}),
    )
    .await;
    let new = channel(
        &admin,
        "infrapilot.test-probe",
        "new",
        json!({"note": "echo"}),
    )
    .await;
    let (old_test, new_test) = (send_test(&admin, &old).await, send_test(&admin, &new).await);
    assert_eq!(old_test["delivered"], true, "{old_test}");
    assert_eq!(new_test["delivered"], true, "{new_test}");
    let old_detail = old_test["detail"].as_str().unwrap();
    let new_detail = new_test["detail"].as_str().unwrap();
    assert!(old_detail.starts_with("v0.1 at "), "{old_detail}");
    assert!(new_detail.starts_with("probe at "), "{new_detail}");
    for detail in [old_detail, new_detail] {
        assert!(detail.contains("AlertState::Test"), "{detail}");
        assert!(detail.contains("Test alert from InfraPilot to"), "{detail}");
    }
}

/// A node that stops sending heartbeats fires `node_offline`; when it is back the alert resolves.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_goes_silent_fires_node_offline_and_resolves_when_back() {
    let Some(_docker) = docker().await else {
        return;
    };
    let Some(build) = plugin_build() else { return };
    let receiver = Receiver::start().await;
    let server = Server::start_with(
        false,
        1,
        &[
            (
                "INFRAPILOT_PLUGIN_DIR",
                build.join("bundles").to_str().unwrap(),
            ),
            (
                "INFRAPILOT_PLUGIN_TRUSTED_KEYS",
                build.join("dev-signing").to_str().unwrap(),
            ),
            ("INFRAPILOT_PLUGIN_EGRESS_ALLOW", "127.0.0.1"),
            ("INFRAPILOT_ALERT_TICK_SECONDS", "1"),
        ],
    )
    .await;
    let admin = server.admin().await;
    let (state, mut agent) = common::enrolled_agent(&server, &admin, "edge-7").await;
    admin.online_agent("edge-7").await;
    // Its heartbeats' host statistics are kept: memory from /proc, CPU since the previous one.
    let stats = eventually(
        "host statistics from heartbeats",
        Duration::from_secs(20),
        || {
            let admin = admin.clone();
            async move {
                let agents = admin.get("/api/v1/agents").await;
                let node = agents
                    .as_array()?
                    .iter()
                    .find(|a| a["name"] == "edge-7")?
                    .clone();
                // CPU comes with the second heartbeat (a share between two samples).
                (node["host_stats"]["memory_total_bytes"]
                    .as_u64()
                    .is_some_and(|m| m > 0)
                    && node["host_stats"]["cpu_percent"].is_f64())
                .then_some(node["host_stats"].clone())
            }
        },
    )
    .await;
    assert!(
        stats["memory_used_bytes"].as_u64().unwrap()
            <= stats["memory_total_bytes"].as_u64().unwrap(),
        "{stats}"
    );
    assert!(
        (0.0..=100.0).contains(&stats["cpu_percent"].as_f64().unwrap()),
        "{stats}"
    );
    assert!(
        stats["reported_at"].as_str().unwrap().ends_with('Z'),
        "{stats}"
    );
    enable(&admin, "infrapilot.webhook").await;
    let hook = channel(
        &admin,
        "infrapilot.webhook",
        "nodes",
        json!({"url": format!("{}/nodes", receiver.url)}),
    )
    .await;
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/alerts/rules",
            Some(json!({"name": "offline", "kind": "node_offline", "severity": "critical", "channel_ids": [hook]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(receiver.on("/nodes").is_empty(), "online: nothing fires");

    agent.kill().unwrap();
    agent.wait().unwrap();
    let firing = eventually("node offline alert", Duration::from_secs(30), || {
        let receiver = receiver.clone();
        async move {
            receiver
                .on("/nodes")
                .into_iter()
                .find(|r| r.json()["event"] == "alert.firing")
        }
    })
    .await;
    let alert = firing.json()["alert"].clone();
    assert_eq!(
        (&alert["node"], &alert["severity"]),
        (&json!("edge-7"), &json!("critical")),
        "{alert}"
    );
    assert!(
        alert["title"]
            .as_str()
            .unwrap()
            .contains("node edge-7 is offline"),
        "{alert}"
    );

    let log = std::fs::File::create(state.with_extension("log2")).unwrap();
    let mut again = Command::new(common::agent_bin())
        .arg("--state-dir")
        .arg(&state)
        .args(["run", "--heartbeat-seconds", "1"])
        .stderr(log)
        .spawn()
        .map(common::KillOnDrop)
        .unwrap();
    eventually("node offline resolved", Duration::from_secs(30), || {
        let receiver = receiver.clone();
        async move {
            receiver
                .on("/nodes")
                .into_iter()
                .find(|r| r.json()["event"] == "alert.resolved")
        }
    })
    .await;
    let history = admin.get("/api/v1/alerts/history").await;
    let event = &history[0];
    assert_eq!(
        (&event["kind"], &event["state"]),
        (&json!("node_offline"), &json!("resolved")),
        "{history}"
    );
    let _ = again.kill();
    let _ = again.wait();
}

/// The development switch admits an unsigned bundle, and says so wherever plugins are listed.
#[tokio::test(flavor = "multi_thread")]
async fn the_development_switch_admits_unsigned_bundles_marked_unsigned() {
    let Some(build) = plugin_build() else { return };
    let server =
        Server::start_with(false, 30, &[("INFRAPILOT_ALLOW_UNSIGNED_PLUGINS", "true")]).await;
    let admin = server.admin().await;
    let unsigned = Bundle::new(
        std::fs::read(build.join("infrapilot_webhook.manifest.json")).unwrap(),
        std::fs::read(build.join("infrapilot_webhook.wasm")).unwrap(),
        None,
    );
    let (status, body) = admin.upload("/api/v1/plugins", unsigned.to_tar()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["signed"], &body["signed_by"]),
        (&json!(false), &Value::Null),
        "{body}"
    );
    // Even under the switch, a component that is not a component is refused.
    let garbage = Bundle::new(
        std::fs::read(build.join("infrapilot_webhook.manifest.json")).unwrap(),
        b"\0asm not really".to_vec(),
        None,
    );
    let (status, body) = admin.upload("/api/v1/plugins", garbage.to_tar()).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("bundle")),
        "{body}"
    );
    let audit = admin.get("/api/v1/audit?action=plugin.install").await;
    assert_eq!(
        audit["events"][0]["detail"]["signed_by"],
        Value::Null,
        "{audit}"
    );
}
