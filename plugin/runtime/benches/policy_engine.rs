//! Policy evaluation figures for docs/BENCHMARKS.md (prints percentiles; `harness = false`): one
//! evaluation of a container start against the eight templates of `plugins/policy-templates`
//! (all on, default conditions), plugin call included — the request's conversion to the
//! component's types, the call into a warm instance, the findings' check — from one caller and
//! from 8 concurrent callers.
//!
//! Run: `scripts/build-plugins.sh && cargo bench -p infrapilot-plugin-runtime --bench policy_engine`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use infrapilot_plugin_runtime::contract::policy_model::{
    Action, Container, Mount, MountKind, Policy, Request,
};
use infrapilot_plugin_runtime::egress::{EgressGuard, HttpEgress};
use infrapilot_plugin_runtime::runtime::RuntimeConfig;
use infrapilot_plugin_runtime::services::BasicServices;
use infrapilot_plugin_runtime::{Invocation, Limits, Manifest, PolicyEnginePlugin, Runtime};

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

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|_| root.join("target"));
    let component = std::fs::read(target.join("plugins/infrapilot_policy_templates.wasm"))
        .expect("build the plugins first: scripts/build-plugins.sh");
    let manifest = Manifest::parse(
        &std::fs::read(root.join("plugins/policy-templates/manifest.json")).unwrap(),
    )
    .unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        limits: Limits::default(),
        max_instances: 256,
        cache_dir: None,
    })
    .unwrap();
    let compiled = runtime.compile(&component).unwrap();
    let engine = runtime
        .load::<PolicyEnginePlugin>(&manifest, &compiled, &manifest.capabilities)
        .unwrap();
    let invocation = Invocation {
        settings: serde_json::json!({}),
        secrets: HashMap::new(),
        services: Arc::new(BasicServices::new(
            HttpEgress::new(EgressGuard::default(), 1 << 20).unwrap(),
        )),
    };
    let policies: Arc<Vec<Policy>> = Arc::new(
        [
            "no_root_containers",
            "no_privileged",
            "no_sensitive_mounts",
            "require_restart_policy",
            "require_healthcheck",
            "require_ssl",
            "no_exec_production",
            "max_container_age",
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| Policy {
            id: format!("0195f0c2-7d1e-7000-8000-00000000000{i}"),
            name: t.replace('_', " "),
            policy_type: (*t).into(),
            conditions: "{}".into(),
        })
        .collect(),
    );
    let mount = |source: &str, target: &str| Mount {
        kind: MountKind::Bind,
        source: source.into(),
        target: target.into(),
        read_only: true,
    };
    // A container that breaks two of them (root, no healthcheck): findings are built too.
    let request = Arc::new(Request {
        action: Action::ContainerStart,
        actor: "alice@example.com".into(),
        actor_role: "operator".into(),
        node_id: "0195f0c2-7d1e-7000-8000-0000000000aa".into(),
        node_name: "edge-1".into(),
        node_labels: vec![
            ("env".into(), "production".into()),
            ("region".into(), "eu".into()),
        ],
        container: Some(Container {
            name: "shop-web-1".into(),
            image: "registry.example.com/shop/web:2.14.1".into(),
            user: String::new(),
            runs_as_root: true,
            capabilities: vec!["NET_BIND_SERVICE".into()],
            mounts: vec![
                mount("/srv/shop/static", "/usr/share/nginx/html"),
                mount("/srv/shop/conf", "/etc/nginx/conf.d"),
            ],
            restart_policy: "unless-stopped".into(),
            healthcheck: false,
            labels: vec![
                ("com.docker.compose.project".into(), "shop".into()),
                ("com.docker.compose.service".into(), "web".into()),
            ],
            created_at_unix_ms: Some(1_799_000_000_000),
            ..Container::default()
        }),
        command: vec![],
        proxy_hosts: vec![],
        certificate: None,
        now_unix_ms: 1_800_000_000_000,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    println!("| measurement | samples | p50 µs | p90 µs | p99 µs | max µs |");
    println!("|---|---|---|---|---|---|");
    rt.block_on(async {
        for _ in 0..2_000 {
            let findings = engine
                .evaluate(&invocation, &policies, &request)
                .await
                .unwrap();
            assert_eq!(findings.len(), 2);
        }
        let mut samples = Vec::with_capacity(50_000);
        for _ in 0..50_000 {
            let started = Instant::now();
            let findings = engine
                .evaluate(&invocation, &policies, &request)
                .await
                .unwrap();
            samples.push(started.elapsed());
            assert_eq!(findings.len(), 2);
        }
        percentiles(
            "one evaluation, 8 templates on, plugin call included (1 caller)",
            samples,
        );
        let mut samples = Vec::with_capacity(50_000);
        for _ in 0..50_000 {
            let started = Instant::now();
            let findings = engine.evaluate(&invocation, &[], &request).await.unwrap();
            samples.push(started.elapsed());
            assert!(findings.is_empty());
        }
        percentiles(
            "the same call with no policy (the call's own cost)",
            samples,
        );

        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (engine, invocation, policies, request) = (
                engine.clone(),
                invocation.clone(),
                policies.clone(),
                request.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut samples = Vec::with_capacity(5_000);
                for _ in 0..5_000 {
                    let started = Instant::now();
                    let findings = engine
                        .evaluate(&invocation, &policies, &request)
                        .await
                        .unwrap();
                    samples.push(started.elapsed());
                    assert_eq!(findings.len(), 2);
                }
                samples
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        percentiles(
            "one evaluation, 8 templates on (8 concurrent callers, 2 threads)",
            all,
        );
    });
}
