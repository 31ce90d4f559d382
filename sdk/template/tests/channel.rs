//! Runs the built component (dist/my_channel.wasm) against the recording fake host.

use infrapilot_plugin_testing::{FakeHost, HookError, PluginError, TestPlugin, sample_alert};
use serde_json::json;

fn plugin(host: FakeHost) -> TestPlugin {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    TestPlugin::load(dir.join("dist/my_channel.wasm"), dir.join("manifest.json"), host).unwrap()
}

#[tokio::test]
async fn pushes_the_alert_to_the_topic() {
    let host = FakeHost::new();
    let delivery = plugin(host.clone())
        .deliver(
            json!({"server": "https://push.example", "topic": "ops"}),
            &[("token", "tk_123")],
            &sample_alert(),
        )
        .await
        .unwrap();
    assert_eq!(delivery.detail, "HTTP 200");
    let request = &host.requests()[0];
    assert_eq!(request.url, "https://push.example/ops");
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.clone())
    };
    assert_eq!(header("Title").as_deref(), Some("web-1 exited with code 1"));
    assert_eq!(header("Priority").as_deref(), Some("5"));
    assert_eq!(header("Authorization").as_deref(), Some("Bearer tk_123"));
    assert!(host.logs().iter().any(|(_, line)| line.contains("pushed alert al-0001")));
}

#[tokio::test]
async fn a_bad_topic_is_named() {
    let err = plugin(FakeHost::new())
        .validate(json!({"topic": "no spaces"}), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HookError::Plugin(PluginError::InvalidSettings(m)) if m.starts_with("topic:")),
        "{err:?}"
    );
}
