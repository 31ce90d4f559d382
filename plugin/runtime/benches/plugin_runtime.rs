//! Plugin runtime figures for docs/BENCHMARKS.md (prints percentiles; `harness = false`):
//!   1. instantiate the probe component from its `InstancePre` with the pooling allocator (and drop it);
//!   2. a host→plugin call with small arguments on a live instance (`validate()`, and `deliver()`
//!      of a small alert);
//!   3. a whole alert hook (instantiate + deliver + drop) from 80 concurrent callers;
//!   4. the plugin's share of a single sign-on login: `begin-login` then `complete-login` of the
//!      test provider (`plugins/testing/sso-test`), each a whole hook (instantiate + call + drop).
//!
//! Run: `scripts/build-plugins.sh && cargo bench -p infrapilot-plugin-runtime --bench plugin_runtime`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    });
}
