//! The `policy-engine` world (contract 0.2.0) through the runtime, with the first-party
//! templates plugin (plugins/policy-templates, built by scripts/build-plugins.sh): its eight
//! policy types with their conditions schemas, conditions checked naming the field, each
//! template's verdicts on canonical requests, and warm instances serving concurrent callers.

use std::collections::HashMap;
use std::sync::Arc;

use infrapilot_plugin_runtime::contract::PluginError;
use infrapilot_plugin_runtime::contract::policy_model::{
    Action, Container, Mount, MountKind, Policy, ProxyHost, Request,
};
use infrapilot_plugin_runtime::egress::{EgressGuard, HttpEgress};
use infrapilot_plugin_runtime::runtime::RuntimeConfig;
use infrapilot_plugin_runtime::services::BasicServices;
use infrapilot_plugin_runtime::{
    HookError, Invocation, LogSinkPlugin, PolicyEnginePlugin, Runtime, RuntimeError,
};

mod common;
use common::{limits, plugin_files};

fn invocation() -> Invocation {
    let egress = HttpEgress::new(EgressGuard::parse_allow_list("").unwrap(), 1 << 20).unwrap();
    Invocation {
        settings: serde_json::json!({}),
        secrets: HashMap::new(),
        services: Arc::new(BasicServices::new(egress)),
    }
}

fn load() -> (Runtime, PolicyEnginePlugin) {
    let runtime = Runtime::new(RuntimeConfig {
        limits: limits(),
        max_instances: 16,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let (component, manifest) = plugin_files("infrapilot_policy_templates", "policy-templates");
    assert_eq!(manifest.world.as_str(), "policy-engine");
    let compiled = runtime.compile(&component).unwrap();
    runtime.check_world(&manifest, &compiled).unwrap();
    let engine = runtime
        .load::<PolicyEnginePlugin>(&manifest, &compiled, &manifest.capabilities)
        .unwrap();
    // Not a log sink, whatever it is asked.
    assert!(matches!(
        runtime.load::<LogSinkPlugin>(&manifest, &compiled, &manifest.capabilities),
        Err(RuntimeError::WorldMismatch { .. })
    ));
    (runtime, engine)
}

fn policy(id: &str, policy_type: &str, conditions: &str) -> Policy {
    Policy {
        id: id.into(),
        name: id.into(),
        policy_type: policy_type.into(),
        conditions: conditions.into(),
    }
}

fn safe_container() -> Container {
    Container {
        name: "web".into(),
        image: "nginx:1".into(),
        user: "1000:1000".into(),
        runs_as_root: false,
        restart_policy: "unless-stopped".into(),
        healthcheck: true,
        mounts: vec![Mount {
            kind: MountKind::Bind,
            source: "/srv/web".into(),
            target: "/usr/share/nginx/html".into(),
            read_only: true,
        }],
        created_at_unix_ms: Some(NOW - 86_400_000),
        ..Container::default()
    }
}

const NOW: i64 = 1_800_000_000_000;

fn request(action: Action, container: Option<Container>) -> Request {
    Request {
        action,
        actor: "alice".into(),
        actor_role: "admin".into(),
        node_id: "n1".into(),
        node_name: "edge-1".into(),
        node_labels: vec![("env".into(), "Production".into())],
        container,
        command: vec![],
        proxy_hosts: vec![],
        certificate: None,
        now_unix_ms: NOW,
    }
}

fn all_templates() -> Vec<Policy> {
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
    .map(|t| policy(&format!("p-{t}"), t, "{}"))
    .collect()
}

/// The ids of the policies `request` breaks, sorted.
async fn broken(
    engine: &PolicyEnginePlugin,
    policies: &[Policy],
    request: &Request,
) -> Vec<String> {
    let mut ids: Vec<String> = engine
        .evaluate(&invocation(), policies, request)
        .await
        .unwrap()
        .into_iter()
        .map(|f| {
            assert!(!f.reasons.is_empty());
            f.policy_id
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn the_templates_plugin_lists_its_types_and_checks_conditions_naming_the_field() {
    let (_runtime, engine) = load();
    let types = engine.policy_types(&invocation()).await.unwrap();
    let ids: Vec<&str> = types.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "no_root_containers",
            "no_privileged",
            "no_sensitive_mounts",
            "require_restart_policy",
            "require_healthcheck",
            "require_ssl",
            "no_exec_production",
            "max_container_age"
        ]
    );
    for t in &types {
        let schema: serde_json::Value = serde_json::from_str(&t.conditions_schema).unwrap();
        assert_eq!(schema["type"], "object", "{}", t.id);
        assert_eq!(schema["additionalProperties"], false, "{}", t.id);
    }
    for p in all_templates() {
        engine.check(&invocation(), &p).await.unwrap();
    }
    for (policy_type, conditions, field) in [
        (
            "max_container_age",
            r#"{"max_age_days": 0}"#,
            "conditions.max_age_days",
        ),
        (
            "max_container_age",
            r#"{"max_age_days": "30"}"#,
            "conditions.max_age_days",
        ),
        (
            "max_container_age",
            r#"{"max_age": 30}"#,
            "conditions.max_age",
        ),
        (
            "no_sensitive_mounts",
            r#"{"paths": ["etc"]}"#,
            "conditions.paths[0]",
        ),
        (
            "no_privileged",
            r#"{"denied_capabilities": ["SYS ADMIN"]}"#,
            "conditions.denied_capabilities[0]",
        ),
        (
            "require_restart_policy",
            r#"{"allowed": ["no"]}"#,
            "conditions.allowed[0]",
        ),
        (
            "require_restart_policy",
            r#"{"allowed": []}"#,
            "conditions.allowed",
        ),
        ("no_exec_production", r#"{"label": ""}"#, "conditions.label"),
        ("no_root_containers", r#"[]"#, "conditions"),
        ("no_root_containers", r#"{"#, "conditions"),
        ("frobnicate", "{}", "policy_type"),
    ] {
        match engine
            .check(&invocation(), &policy("x", policy_type, conditions))
            .await
        {
            Err(HookError::Plugin(PluginError::InvalidSettings(message))) => {
                assert!(
                    message.starts_with(field),
                    "{policy_type} {conditions}: {message}"
                )
            }
            other => panic!("{policy_type} {conditions}: {other:?}"),
        }
    }
    // Evaluating a policy the engine cannot read fails (the host fails closed).
    let bad = [policy(
        "bad",
        "max_container_age",
        r#"{"max_age_days": -1}"#,
    )];
    assert!(matches!(
        engine
            .evaluate(
                &invocation(),
                &bad,
                &request(Action::ContainerStart, Some(safe_container()))
            )
            .await,
        Err(HookError::Plugin(PluginError::InvalidSettings(_)))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_template_judges_the_canonical_request() {
    let (_runtime, engine) = load();
    let all = all_templates();
    let start = |c: Container| request(Action::ContainerStart, Some(c));

    // A well-behaved container breaks nothing, on every container action.
    for action in [
        Action::ContainerCreate,
        Action::ContainerStart,
        Action::ContainerRestart,
        Action::ContainerRunning,
        Action::ContainerStop,
        Action::ContainerRemove,
    ] {
        assert_eq!(
            broken(&engine, &all, &request(action, Some(safe_container()))).await,
            Vec::<String>::new(),
            "{action:?}"
        );
    }

    let mut root = safe_container();
    root.user = "0:0".into();
    root.runs_as_root = true;
    assert_eq!(
        broken(&engine, &all, &start(root.clone())).await,
        ["p-no_root_containers"]
    );
    // Stopping or removing a root container is not what the policy is about.
    assert!(
        broken(&engine, &all, &request(Action::ContainerStop, Some(root)))
            .await
            .is_empty()
    );

    for change in [
        |c: &mut Container| c.privileged = true,
        |c: &mut Container| c.all_capabilities = true,
        |c: &mut Container| c.capabilities = vec!["SYS_ADMIN".into()],
        |c: &mut Container| c.host_namespaces = vec!["pid".into()],
        |c: &mut Container| c.seccomp_unconfined = true,
        |c: &mut Container| c.apparmor_unconfined = true,
        |c: &mut Container| c.selinux_disabled = true,
        |c: &mut Container| c.system_paths_unconfined = true,
        |c: &mut Container| {
            c.mounts.push(Mount {
                kind: MountKind::Device,
                source: "/dev/sda".into(),
                target: "/dev/sda".into(),
                read_only: false,
            })
        },
    ] {
        let mut c = safe_container();
        change(&mut c);
        let ids = broken(&engine, &all, &start(c.clone())).await;
        assert!(
            ids.contains(&"p-no_privileged".to_owned()),
            "{c:?}: {ids:?}"
        );
    }
    let mut harmless_cap = safe_container();
    harmless_cap.capabilities = vec!["NET_BIND_SERVICE".into()];
    assert!(broken(&engine, &all, &start(harmless_cap)).await.is_empty());

    for (source, sensitive) in [
        ("/var/run/docker.sock", true),
        ("/run/docker.sock", true),
        ("/var/run", true),
        ("/", true),
        ("/etc", true),
        ("/etc/ssl/certs", true),
        ("/var", true),
        ("/var/lib/docker/volumes", true),
        ("/srv/data", false),
        ("/etcetera", false),
        ("/var/lib/dockerish", false),
    ] {
        let mut c = safe_container();
        c.mounts.push(Mount {
            kind: MountKind::Bind,
            source: source.into(),
            target: "/x".into(),
            read_only: true,
        });
        let ids = broken(&engine, &all, &start(c)).await;
        assert_eq!(
            ids.contains(&"p-no_sensitive_mounts".to_owned()),
            sensitive,
            "{source}: {ids:?}"
        );
    }
    let mut volumes_from = safe_container();
    volumes_from.mounts = vec![Mount {
        kind: MountKind::VolumesFrom,
        source: "other".into(),
        target: String::new(),
        read_only: false,
    }];
    assert_eq!(
        broken(&engine, &all, &start(volumes_from.clone())).await,
        ["p-no_sensitive_mounts"]
    );
    let allowing = [policy(
        "v",
        "no_sensitive_mounts",
        r#"{"allow_volumes_from": true}"#,
    )];
    assert!(
        broken(&engine, &allowing, &start(volumes_from))
            .await
            .is_empty()
    );

    let mut no_restart = safe_container();
    no_restart.restart_policy = "no".into();
    assert_eq!(
        broken(&engine, &all, &start(no_restart.clone())).await,
        ["p-require_restart_policy"]
    );
    let only_always = [policy(
        "r",
        "require_restart_policy",
        r#"{"allowed": ["always"]}"#,
    )];
    assert_eq!(
        broken(&engine, &only_always, &start(safe_container())).await,
        ["r"]
    );

    let mut unhealthy = safe_container();
    unhealthy.healthcheck = false;
    assert_eq!(
        broken(&engine, &all, &start(unhealthy)).await,
        ["p-require_healthcheck"]
    );

    let mut old = safe_container();
    old.created_at_unix_ms = Some(NOW - 31 * 86_400_000);
    assert_eq!(
        broken(&engine, &all, &start(old.clone())).await,
        ["p-max_container_age"]
    );
    let ninety = [policy("a", "max_container_age", r#"{"max_age_days": 90}"#)];
    assert!(broken(&engine, &ninety, &start(old)).await.is_empty());

    // Exec on a node labelled env=Production (any case); not elsewhere.
    let exec = request(Action::ContainerExec, Some(safe_container()));
    assert_eq!(broken(&engine, &all, &exec).await, ["p-no_exec_production"]);
    let mut staging = exec.clone();
    staging.node_labels = vec![("env".into(), "staging".into())];
    assert!(broken(&engine, &all, &staging).await.is_empty());

    // Proxy hosts: plain HTTP on a public host is refused, on a restricted one only if asked.
    let host = |tls: bool, redirect: bool, restricted: bool| ProxyHost {
        id: "h1".into(),
        domains: vec!["app.example.com".into()],
        tls,
        redirect_http: redirect,
        access_restricted: restricted,
    };
    let mut proxy = request(Action::ProxyCreate, None);
    proxy.proxy_hosts = vec![host(false, false, false)];
    assert_eq!(broken(&engine, &all, &proxy).await, ["p-require_ssl"]);
    proxy.proxy_hosts = vec![host(false, false, true)];
    assert!(broken(&engine, &all, &proxy).await.is_empty());
    let strict = [policy(
        "s",
        "require_ssl",
        r#"{"include_restricted": true, "require_redirect": true}"#,
    )];
    assert_eq!(broken(&engine, &strict, &proxy).await, ["s"]);
    proxy.proxy_hosts = vec![host(true, false, false)];
    assert_eq!(broken(&engine, &strict, &proxy).await, ["s"]);
    proxy.proxy_hosts = vec![host(true, true, false)];
    assert!(broken(&engine, &strict, &proxy).await.is_empty());
    proxy.action = Action::ProxyDelete;
    proxy.proxy_hosts = vec![host(false, false, false)];
    assert!(broken(&engine, &all, &proxy).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_instances_serve_concurrent_callers_with_the_same_verdicts() {
    let (_runtime, engine) = load();
    let all = Arc::new(all_templates());
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (engine, all) = (engine.clone(), all.clone());
        tasks.push(tokio::spawn(async move {
            for j in 0..50 {
                let mut c = safe_container();
                c.runs_as_root = (i + j) % 2 == 0;
                let ids = broken(&engine, &all, &request(Action::ContainerStart, Some(c))).await;
                assert_eq!(ids.len(), usize::from((i + j) % 2 == 0), "{ids:?}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prepared_set_is_used_only_for_the_policies_it_was_prepared_from() {
    let (_runtime, engine) = load();
    let mut old = safe_container();
    old.created_at_unix_ms = Some(NOW - 40 * 86_400_000);
    let start = request(Action::ContainerStart, Some(old));
    let age = |days: u32| {
        vec![policy(
            "p-age",
            "max_container_age",
            &format!(r#"{{"max_age_days": {days}}}"#),
        )]
    };
    // The same policies again and again (the warm instance's set), then changed conditions,
    // then the first ones once more, interleaved with another organisation's: each answer is
    // its own policies', never a set prepared from others.
    for _ in 0..3 {
        assert_eq!(broken(&engine, &age(30), &start).await, ["p-age"]);
    }
    assert!(broken(&engine, &age(60), &start).await.is_empty());
    for round in 0..20 {
        let (policies, expect): (Vec<Policy>, &[&str]) = match round % 4 {
            0 => (age(30), &["p-age"]),
            1 => (age(60), &[]),
            2 => (all_templates(), &["p-max_container_age"]),
            _ => (vec![], &[]),
        };
        assert_eq!(broken(&engine, &policies, &start).await, expect, "{round}");
    }
    // The same id with another type is another policy.
    let renamed = vec![policy("p-age", "require_healthcheck", "{}")];
    assert!(broken(&engine, &renamed, &start).await.is_empty());
    // A set that cannot be prepared fails the call and leaves nothing behind.
    let bad = age(0);
    assert!(matches!(
        engine.evaluate(&invocation(), &bad, &start).await,
        Err(HookError::Plugin(PluginError::InvalidSettings(m))) if m.contains("conditions.max_age_days")
    ));
    assert_eq!(broken(&engine, &age(30), &start).await, ["p-age"]);
}
