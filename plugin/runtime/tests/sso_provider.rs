//! The `sso-provider` world (contract 0.2.0) through the runtime: a provider built with the SDK
//! (plugins/testing/sso-test, built by scripts/build-plugins.sh) checks its settings, starts a
//! login (redirect or posted form), turns a callback into an identity (every field of the
//! callback reaching it) and checks a directory password; its verdicts reach the host apart
//! from the runtime's failures; answers outside the world's limits are refused; it cannot be
//! loaded as another world, nor another world as it.

use std::collections::HashMap;
use std::sync::Arc;

use infrapilot_plugin_runtime::contract::{
    LoginCallback, LoginError, LoginMethod, LoginRequest, PluginError, PostForm,
};
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
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
    }
}

fn callback(params: &[(&str, &str)]) -> LoginCallback {
    LoginCallback {
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        request: request(),
        code_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
        context: Some("ctx-st-123".into()),
    }
}

fn load(runtime: &Runtime) -> SsoProviderPlugin {
    let (component, manifest) = plugin_files("infrapilot_test_sso", "testing/sso-test");
    assert_eq!(manifest.world.as_str(), "sso-provider");
    let compiled = runtime.compile(&component).unwrap();
    runtime.check_world(&manifest, &compiled).unwrap();
    runtime
        .load::<SsoProviderPlugin>(&manifest, &compiled, &manifest.capabilities)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_built_with_the_sdk_starts_logins_and_reports_identities() {
    let runtime = runtime();
    let provider = load(&runtime);
    let call = invocation(serde_json::json!({
        "issuer": "https://idp.test",
        "name": "Bob Builder",
        "email_verified": true,
        "groups": ["ops", "db-admins"],
    }));
    provider.validate(&call).await.unwrap();
    match provider
        .validate(&invocation(
            serde_json::json!({"issuer": "http://idp.test"}),
        ))
        .await
    {
        Err(HookError::Plugin(PluginError::InvalidSettings(m))) => {
            assert_eq!(m, "issuer: must be an https URL")
        }
        other => panic!("{other:?}"),
    }

    let start = provider
        .begin_login(&call, &request())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        start.method,
        LoginMethod::Redirect(
            "https://idp.test/authorize?redirect_uri=https://infrapilot.test/api/v1/sso/callback&state=st-123&nonce=n-456&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256".into()
        )
    );
    assert_eq!(start.context.as_deref(), Some("ctx-st-123"));
    let posted = provider
        .begin_login(
            &invocation(serde_json::json!({"issuer": "https://idp.test", "post": true})),
            &request(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        posted.method,
        LoginMethod::Post(PostForm {
            action: "https://idp.test/sso".into(),
            fields: vec![
                ("SAMLRequest".into(), "req-for-n-456".into()),
                ("RelayState".into(), "st-123".into()),
            ],
        })
    );

    let identity = provider
        .complete_login(
            &call,
            &callback(&[("code", "good-bob"), ("state", "st-123")]),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(identity.subject, "bob");
    assert_eq!(identity.issuer, "https://idp.test");
    assert_eq!(identity.email.as_deref(), Some("bob@example.com"));
    assert!(identity.email_verified);
    assert_eq!(identity.name.as_deref(), Some("Bob Builder"));
    assert_eq!(identity.groups, ["ops", "db-admins"]);
    // Every field of the callback reached the provider as it was sent.
    let echoed: HashMap<&str, &str> = identity
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        echoed,
        HashMap::from([
            (
                "callback_url",
                "https://infrapilot.test/api/v1/sso/callback"
            ),
            ("nonce", "n-456"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
            ),
            (
                "code_verifier",
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
            ),
            ("context", "ctx-st-123"),
        ])
    );

    // The provider's verdicts come back as its own, each kind apart.
    for (params, expected) in [
        (
            &[("code", "good-bob"), ("state", "forged")][..],
            LoginError::Rejected("state: does not match the login".into()),
        ),
        (
            &[("state", "st-123")][..],
            LoginError::Rejected("code: missing".into()),
        ),
        (
            &[("code", "down"), ("state", "st-123")][..],
            LoginError::Unavailable("the identity provider answered 503".into()),
        ),
    ] {
        let answer = provider
            .complete_login(&call, &callback(params))
            .await
            .unwrap();
        assert_eq!(answer, Err(expected), "{params:?}");
    }

    // Passwords: only a directory provider checks them.
    assert_eq!(
        provider
            .check_password(&call, "alice", "wonderland")
            .await
            .unwrap(),
        Err(LoginError::Unsupported)
    );
    let directory = invocation(serde_json::json!({"issuer": "ldap://dir.test", "directory": true}));
    let alice = provider
        .check_password(&directory, "alice", "wonderland")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (alice.subject.as_str(), alice.email_verified),
        ("alice", false)
    );
    for (username, password) in [("alice", ""), ("alice", "wrong")] {
        assert_eq!(
            provider
                .check_password(&directory, username, password)
                .await
                .unwrap(),
            Err(LoginError::Rejected("wrong username or password".into())),
            "{username:?} / {password:?}"
        );
    }

    // Settings the provider needs are its error, named.
    assert_eq!(
        provider
            .begin_login(&invocation(serde_json::json!({})), &request())
            .await
            .unwrap(),
        Err(LoginError::InvalidSettings("issuer: missing".into()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_outside_the_world_limits_are_refused() {
    let runtime = runtime();
    let provider = load(&runtime);
    let good = callback(&[("code", "good-bob"), ("state", "st-123")]);
    // Within the limit of groups, then one over.
    let at_limit =
        invocation(serde_json::json!({"issuer": "https://idp.test", "group_count": 256}));
    let identity = provider
        .complete_login(&at_limit, &good)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(identity.groups.len(), 256);
    let over = invocation(serde_json::json!({"issuer": "https://idp.test", "group_count": 257}));
    match provider.complete_login(&over, &good).await {
        Err(HookError::BadOutput(m)) => assert_eq!(m, "groups has 257 entries, more than 256"),
        other => panic!("{other:?}"),
    }
    // An empty group name, a subject with a newline, an issuer past its bound.
    for (settings, code, expected) in [
        (
            serde_json::json!({"issuer": "https://idp.test", "groups": ["ops", ""]}),
            "good-bob",
            "groups[] must be 1 to 256 bytes, not 0",
        ),
        (
            serde_json::json!({"issuer": "https://idp.test"}),
            "good-bob\nadmin",
            "subject contains control characters",
        ),
        (
            serde_json::json!({"issuer": format!("https://{}", "i".repeat(1100))}),
            "good-bob",
            "issuer must be 0 to 1024 bytes, not 1108",
        ),
    ] {
        let callback = callback(&[("code", code), ("state", "st-123")]);
        match provider
            .complete_login(&invocation(settings), &callback)
            .await
        {
            Err(HookError::BadOutput(m)) => assert_eq!(m, expected),
            other => panic!("{code}: {other:?}"),
        }
    }
    // Where the browser is sent: https, or http on loopback only.
    for (redirect, allowed) in [
        ("https://idp.test/authorize", true),
        ("http://127.0.0.1:9000/authorize", true),
        ("http://localhost/authorize", true),
        ("http://idp.test/authorize", false),
        ("http://localhost.evil.test/authorize", false),
        ("javascript:alert(1)", false),
        ("https://idp.test/\r\nSet-Cookie: x=1", false),
    ] {
        let settings = serde_json::json!({"issuer": "https://idp.test", "redirect": redirect});
        let answer = provider
            .begin_login(&invocation(settings), &request())
            .await;
        assert_eq!(answer.is_ok(), allowed, "{redirect}: {answer:?}");
        if !allowed {
            assert!(
                matches!(answer, Err(HookError::BadOutput(_))),
                "{redirect}: {answer:?}"
            );
        }
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
