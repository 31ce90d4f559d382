//! The `sso-provider` world (contract 0.2.0) through the runtime: a provider built with the SDK
//! (plugins/testing/sso-test, built by scripts/build-plugins.sh) starts a login, turns a callback
//! into an identity and checks a directory password; its refusals reach the host as the
//! plugin's errors; it cannot be loaded as another world, nor another world as it.

use std::collections::HashMap;
use std::sync::Arc;

use infrapilot_plugin_runtime::contract::{LoginCallback, LoginRequest, PluginError};
use infrapilot_plugin_runtime::egress::{EgressGuard, HttpEgress};
use infrapilot_plugin_runtime::runtime::RuntimeConfig;
use infrapilot_plugin_runtime::services::BasicServices;
use infrapilot_plugin_runtime::{
    AlertChannelPlugin, HookError, Invocation, Runtime, RuntimeError, SsoProviderPlugin,
};

mod common;
use common::{limits, plugin_files};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        limits: limits(),
        max_instances: 8,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn invocation(settings: serde_json::Value) -> Invocation {
    let egress = HttpEgress::new(EgressGuard::parse_allow_list("").unwrap(), 1 << 20).unwrap();
    Invocation {
        settings,
        secrets: HashMap::new(),
        services: Arc::new(BasicServices::new(egress)),
    }
}

fn request() -> LoginRequest {
    LoginRequest {
        callback_url: "https://infrapilot.test/api/v1/sso/callback".into(),
        state: "st-123".into(),
        nonce: "n-456".into(),
        pkce_verifier: "v".repeat(43),
    }
}

fn callback(params: &[(&str, &str)]) -> LoginCallback {
    LoginCallback {
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        request: request(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_built_with_the_sdk_starts_logins_and_reports_identities() {
    let runtime = runtime();
    let (component, manifest) = plugin_files("infrapilot_test_sso", "testing/sso-test");
    assert_eq!(manifest.world.as_str(), "sso-provider");
    let compiled = runtime.compile(&component).unwrap();
    runtime.check_world(&manifest, &compiled).unwrap();
    let provider = runtime
        .load::<SsoProviderPlugin>(&manifest, &compiled, &manifest.capabilities)
        .unwrap();
    let call = invocation(serde_json::json!({
        "issuer": "https://idp.test",
        "groups": ["ops", "db-admins"],
    }));

    let redirect = provider.begin_login(&call, &request()).await.unwrap();
    assert_eq!(
        redirect.url,
        "https://idp.test/authorize?redirect_uri=https://infrapilot.test/api/v1/sso/callback&state=st-123&nonce=n-456&verifier_chars=43"
    );

    let identity = provider
        .complete_login(
            &call,
            &callback(&[("code", "good-bob"), ("state", "st-123")]),
        )
        .await
        .unwrap();
    assert_eq!(identity.subject, "bob");
    assert_eq!(identity.issuer, "https://idp.test");
    assert_eq!(identity.email.as_deref(), Some("bob@example.com"));
    assert!(identity.email_verified);
    assert_eq!(identity.groups, ["ops", "db-admins"]);

    // The provider's refusals come back as its own errors, nothing else.
    for (params, expected) in [
        (
            &[("code", "good-bob"), ("state", "forged")][..],
            "state: does not match the login",
        ),
        (&[("state", "st-123")][..], "code: missing"),
        (
            &[("code", "evil"), ("state", "st-123")][..],
            "code: refused by the identity provider",
        ),
    ] {
        match provider.complete_login(&call, &callback(params)).await {
            Err(HookError::Plugin(PluginError::Failed(message))) => {
                assert_eq!(message, expected)
            }
            other => panic!("{params:?}: {other:?}"),
        }
    }

    let alice = provider
        .check_password(&call, "alice", "wonderland")
        .await
        .unwrap();
    assert_eq!(alice.subject, "alice");
    for (username, password) in [("alice", ""), ("alice", "wrong"), ("*)(uid=*", "x")] {
        assert!(
            matches!(
                provider.check_password(&call, username, password).await,
                Err(HookError::Plugin(PluginError::Failed(_)))
            ),
            "{username:?} / {password:?} was accepted"
        );
    }

    // Settings the provider needs are its error, named.
    match provider
        .begin_login(&invocation(serde_json::json!({})), &request())
        .await
    {
        Err(HookError::Plugin(PluginError::InvalidSettings(m))) => assert_eq!(m, "issuer: missing"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn worlds_do_not_load_as_each_other() {
    let runtime = runtime();
    let (sso, sso_manifest) = plugin_files("infrapilot_test_sso", "testing/sso-test");
    let (channel, channel_manifest) = plugin_files("infrapilot_test_probe", "testing/probe");
    let sso = runtime.compile(&sso).unwrap();
    let channel = runtime.compile(&channel).unwrap();

    // The manifest names the world: asking for another is refused before linking.
    let as_channel = runtime
        .load::<AlertChannelPlugin>(&sso_manifest, &sso, &sso_manifest.capabilities)
        .err()
        .expect("an sso provider loaded as an alert channel");
    assert!(
        matches!(
            as_channel,
            RuntimeError::WorldMismatch {
                world: "alert-channel",
                ..
            }
        ),
        "{as_channel:?}"
    );
    // A manifest that lies about its component's world does not link.
    let mut lying = channel_manifest.clone();
    lying.world = sso_manifest.world;
    let linked = runtime
        .load::<SsoProviderPlugin>(&lying, &channel, &lying.capabilities)
        .err()
        .expect("an alert channel linked as an sso provider");
    assert!(
        matches!(
            linked,
            RuntimeError::WorldMismatch {
                world: "sso-provider",
                ..
            }
        ),
        "{linked:?}"
    );
    assert!(runtime.check_world(&lying, &channel).is_err());
}
