//! The first-party alert channels (plugins/webhook, slack, smtp), built to components by
//! scripts/build-plugins.sh, run in the real runtime against the recording fake host.

use hmac::{Hmac, Mac};
use infrapilot_plugin_testing::{
    AlertState, FakeHost, HookError, PluginError, Severity, TestPlugin, http, sample_alert,
};
use serde_json::{Value, json};
use sha2::Sha256;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(plugin: &str, host: FakeHost) -> TestPlugin {
    // Where scripts/build-plugins.sh put the components: <target dir>/plugins.
    let target = match std::env::var("CARGO_TARGET_DIR") {
        Ok(dir) => root().join(dir),
        Err(_) => root().join("target"),
    };
    let crate_name = format!("infrapilot_{plugin}");
    TestPlugin::load(
        target.join("plugins").join(format!("{crate_name}.wasm")),
        root().join("plugins").join(plugin).join("manifest.json"),
        host,
    )
    .unwrap()
}

fn header<'a>(request: &'a http::Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

#[tokio::test]
async fn webhook_posts_json_signed_with_hmac_sha256() {
    let host = FakeHost::new().at_unix_ms(1_767_225_612_345);
    let plugin = load("webhook", host.clone());
    let settings = json!({"url": "https://receiver.example/hook", "headers": {"X-Team": "ops"}});
    let delivery = plugin
        .deliver(settings.clone(), &[("secret", "s3cret")], &sample_alert())
        .await
        .unwrap();
    assert_eq!(delivery.detail, "HTTP 200");

    let requests = host.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, http::Method::Post);
    assert_eq!(request.url, "https://receiver.example/hook");
    assert_eq!(header(request, "content-type"), Some("application/json"));
    assert_eq!(header(request, "x-team"), Some("ops"));
    let body = request.body.clone().unwrap();
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["event"], "alert.firing");
    assert_eq!(payload["alert"]["title"], "web-1 exited with code 1");
    assert_eq!(payload["alert"]["severity"], "critical");
    assert_eq!(payload["alert"]["labels"]["env"], "prod");

    // The receiver's check: HMAC-SHA256(secret, "<timestamp>.<body>").
    assert_eq!(
        header(request, "x-infrapilot-timestamp"),
        Some("1767225612")
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(b"1767225612.");
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        header(request, "x-infrapilot-signature"),
        Some(expected.as_str())
    );

    // Without a secret there is no signature.
    plugin
        .deliver(settings, &[], &sample_alert())
        .await
        .unwrap();
    assert_eq!(header(&host.requests()[1], "x-infrapilot-signature"), None);

    // Since 0.1.1 the URL and the headers are secrets (they can carry credentials).
    plugin
        .deliver(
            json!({}),
            &[
                ("url", "https://receiver.example/secret-hook"),
                ("headers", r#"{"Authorization": "Bearer t0ken"}"#),
            ],
            &sample_alert(),
        )
        .await
        .unwrap();
    let request = &host.requests()[2];
    assert_eq!(request.url, "https://receiver.example/secret-hook");
    assert_eq!(header(request, "authorization"), Some("Bearer t0ken"));
}

#[tokio::test]
async fn webhook_reports_failures_and_bad_settings() {
    let host = FakeHost::new().respond(|_| {
        Ok(http::Response {
            status: 503,
            headers: vec![],
            body: b"maintenance".to_vec(),
        })
    });
    let plugin = load("webhook", host);
    let failed = plugin
        .deliver(json!({"url": "https://r.example/"}), &[], &sample_alert())
        .await
        .unwrap_err();
    assert_eq!(
        failed,
        HookError::Plugin(PluginError::Failed("HTTP 503: maintenance".into()))
    );
    for (settings, field) in [
        (json!({}), "url"),
        (json!({"url": "ftp://r.example/"}), "url"),
        (
            json!({"url": "https://r.example/", "headers": {"Host": "x"}}),
            "headers.Host",
        ),
        (
            json!({"url": "https://r.example/", "headers": {"Bad Name": "x"}}),
            "headers.Bad Name",
        ),
    ] {
        match plugin.validate(settings.clone(), &[]).await {
            Err(HookError::Plugin(PluginError::InvalidSettings(m))) => {
                assert!(m.contains(field), "{settings}: {m}")
            }
            other => panic!("{settings}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn slack_sends_block_kit_and_mentions_on_critical() {
    let host = FakeHost::new();
    let plugin = load("slack", host.clone());
    let settings = json!({"channel": "#ops", "mention": "<!here>"});
    let url = ("webhook_url", "https://hooks.slack.example/services/T/B/X");
    let mut alert = sample_alert();
    alert.summary = "a <b> & c".into();
    plugin
        .deliver(settings.clone(), &[url], &alert)
        .await
        .unwrap();
    let request = &host.requests()[0];
    assert_eq!(request.url, url.1);
    let body: Value = serde_json::from_slice(request.body.as_ref().unwrap()).unwrap();
    assert_eq!(body["channel"], "#ops");
    assert!(
        body["text"].as_str().unwrap().starts_with("<!here> "),
        "{body}"
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert!(
        blocks[0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("Critical: web-1 exited with code 1")
    );
    assert_eq!(blocks[1]["text"]["text"], "a &lt;b&gt; &amp; c");
    assert_eq!(blocks[1]["fields"][1]["text"], "*Node*\nnode-a");

    // Resolved: no mention.
    alert.state = AlertState::Resolved;
    alert.severity = Severity::Critical;
    plugin
        .deliver(settings.clone(), &[url], &alert)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(host.requests()[1].body.as_ref().unwrap()).unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with(":white_check_mark: Resolved"),
        "{body}"
    );

    // The webhook URL is a secret: missing, it names the field.
    let err = plugin.validate(settings, &[]).await.unwrap_err();
    assert_eq!(
        err,
        HookError::Plugin(PluginError::InvalidSettings("webhook_url: not set".into()))
    );
}

#[tokio::test]
async fn smtp_writes_the_mail_and_the_host_sends_it() {
    let host = FakeHost::new();
    let plugin = load("smtp", host.clone());
    let settings =
        json!({"to": ["ops@example.com", "oncall@example.com"], "subject_prefix": "[prod]"});
    let delivery = plugin
        .deliver(settings.clone(), &[], &sample_alert())
        .await
        .unwrap();
    assert_eq!(delivery.detail, "mailed to 2 recipient(s)");
    let mail = &host.mails()[0];
    assert_eq!(mail.to, vec!["ops@example.com", "oncall@example.com"]);
    assert_eq!(mail.subject, "[prod] FIRING: web-1 exited with code 1");
    assert!(
        mail.text_body.contains("Node: node-a"),
        "{}",
        mail.text_body
    );

    let err = plugin
        .validate(json!({"to": ["not-an-address"]}), &[])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HookError::Plugin(PluginError::InvalidSettings(
            "to.0: not an e-mail address".into()
        ))
    );
    let unconfigured = load("smtp", FakeHost::new().without_mail());
    let err = unconfigured
        .deliver(settings, &[], &sample_alert())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HookError::Plugin(PluginError::Failed(
            "no SMTP server is configured on the host".into()
        ))
    );
}
