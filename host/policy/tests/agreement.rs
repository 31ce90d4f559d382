//! The two first-party engines agree: the templates plugin and the Rego plugin (with the
//! templates written in Rego, `plugins/policy-rego/examples/`) reach the same verdict on every
//! case of a corpus of Docker create bodies — every spelling of root, privilege and the host's
//! sensitive paths Docker accepts (`Binds`, `Mounts`, `Devices`, `VolumesFrom`, key case,
//! `CAP_` prefixes, `:` and `=` in security options) — after the host's normalisation. Each case
//! also names the verdict expected, so both engines agreeing on nothing would fail.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use infrapilot_plugin_runtime::contract::policy_model::{Action, Policy, Request};
use infrapilot_plugin_runtime::egress::{EgressGuard, HttpEgress};
use infrapilot_plugin_runtime::runtime::RuntimeConfig;
use infrapilot_plugin_runtime::services::BasicServices;
use infrapilot_plugin_runtime::{Invocation, Manifest, PolicyEnginePlugin, Runtime};
use infrapilot_policy::guard::to_model;
use infrapilot_policy::normalise;
use serde_json::{Value, json};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(runtime: &Runtime, crate_name: &str, dir: &str) -> PolicyEnginePlugin {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(|d| root().join(d))
        .unwrap_or_else(|_| root().join("target"));
    let component = std::fs::read(target.join(format!("plugins/{crate_name}.wasm")))
        .expect("build the plugins first: scripts/build-plugins.sh");
    let manifest = Manifest::parse(
        &std::fs::read(root().join(format!("plugins/{dir}/manifest.json"))).unwrap(),
    )
    .unwrap();
    let compiled = runtime.compile(&component).unwrap();
    runtime
        .load::<PolicyEnginePlugin>(&manifest, &compiled, &manifest.capabilities)
        .unwrap()
}

fn invocation() -> Invocation {
    Invocation {
        settings: json!({}),
        secrets: HashMap::new(),
        services: Arc::new(BasicServices::new(
            HttpEgress::new(EgressGuard::default(), 1 << 20).unwrap(),
        )),
    }
}

const KINDS: [&str; 3] = ["no_root_containers", "no_privileged", "no_sensitive_mounts"];

fn rego(kind: &str) -> Policy {
    let module =
        std::fs::read_to_string(root().join(format!("plugins/policy-rego/examples/{kind}.rego")))
            .unwrap();
    Policy {
        id: kind.into(),
        name: kind.into(),
        policy_type: "rego".into(),
        conditions: json!({"module": module}).to_string(),
    }
}

fn template(kind: &str) -> Policy {
    Policy {
        id: kind.into(),
        name: kind.into(),
        policy_type: kind.into(),
        conditions: "{}".into(),
    }
}

/// A create body: a non-root container with one harmless bind, changed by `change`.
fn body(change: impl FnOnce(&mut Value)) -> Value {
    let mut b = json!({"Image": "app:1", "User": "1000:1000",
        "HostConfig": {"Binds": ["/srv/app:/data:ro"]}});
    change(&mut b);
    b
}

async fn broken(
    engine: &PolicyEnginePlugin,
    policies: &[Policy],
    request: &Request,
) -> BTreeSet<String> {
    engine
        .evaluate(&invocation(), policies, request)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.policy_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_templates_and_their_rego_versions_agree_on_every_case() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let templates = load(&runtime, "infrapilot_policy_templates", "policy-templates");
    let rego_engine = load(&runtime, "infrapilot_policy_rego", "policy-rego");
    let template_policies: Vec<Policy> = KINDS.iter().map(|k| template(k)).collect();
    let rego_policies: Vec<Policy> = KINDS.iter().map(|k| rego(k)).collect();
    for p in &rego_policies {
        rego_engine.check(&invocation(), p).await.unwrap();
    }

    let root = "no_root_containers";
    let privileged = "no_privileged";
    let mounts = "no_sensitive_mounts";
    let mut cases: Vec<(String, Value, Vec<&str>)> = vec![
        ("harmless".into(), body(|_| {}), vec![]),
        (
            "named volume".into(),
            body(|b| b["HostConfig"]["Binds"] = json!(["etc:/etc"])),
            vec![],
        ),
        (
            "tmpfs".into(),
            body(|b| b["HostConfig"]["Tmpfs"] = json!({"/run": ""})),
            vec![],
        ),
        (
            "harmless capability".into(),
            body(|b| b["HostConfig"]["CapAdd"] = json!(["NET_BIND_SERVICE"])),
            vec![],
        ),
        (
            "privileged".into(),
            body(|b| b["HostConfig"]["Privileged"] = json!(true)),
            vec![privileged],
        ),
        (
            "privileged, lower-case keys".into(),
            body(|b| {
                b.as_object_mut().unwrap().remove("HostConfig");
                b["hostconfig"] = json!({"privileged": true});
            }),
            vec![privileged],
        ),
        (
            "privileged, Go's ſ folding".into(),
            body(|b| {
                b.as_object_mut().unwrap().remove("HostConfig");
                b["HoſtConfig"] = json!({"Privileged": true});
            }),
            vec![privileged],
        ),
        (
            "volumes-from".into(),
            body(|b| b["HostConfig"]["VolumesFrom"] = json!(["other:ro"])),
            vec![mounts],
        ),
        (
            "device".into(),
            body(
                |b| b["HostConfig"]["Devices"] = json!([{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}]),
            ),
            vec![privileged, mounts],
        ),
    ];
    for user in [
        "",
        "0",
        "root",
        "0:0",
        "root:root",
        "00",
        "+0",
        "-0",
        " 0 ",
        "0:1000",
    ] {
        cases.push((
            format!("user {user:?}"),
            body(|b| b["User"] = json!(user)),
            vec![root],
        ));
    }
    cases.push((
        "no User at all".into(),
        body(|b| {
            b.as_object_mut().unwrap().remove("User");
        }),
        vec![root],
    ));
    cases.push((
        "lower-case user key".into(),
        body(|b| {
            b.as_object_mut().unwrap().remove("User");
            b["user"] = json!("0");
        }),
        vec![root],
    ));
    for user in ["nobody", "rootless", "app:0", "www-data"] {
        cases.push((
            format!("named user {user:?} (its uid is the image's)"),
            body(|b| b["User"] = json!(user)),
            vec![root],
        ));
    }
    for (label, change, expected) in [
        (
            "joins another container's pid namespace",
            json!({"PidMode": "container:exporter"}),
            vec![privileged],
        ),
        (
            "joins another container's network",
            json!({"NetworkMode": "container:exporter"}),
            vec![privileged],
        ),
        (
            "inline seccomp profile",
            json!({"SecurityOpt": ["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"]}),
            vec![privileged],
        ),
        (
            "SELinux type spc_t",
            json!({"SecurityOpt": ["label=type:spc_t"]}),
            vec![privileged],
        ),
        (
            "bare disable",
            json!({"SecurityOpt": ["disable"]}),
            vec![privileged],
        ),
        (
            "no masked paths",
            json!({"MaskedPaths": []}),
            vec![privileged],
        ),
        (
            "device cgroup rule",
            json!({"DeviceCgroupRules": ["b *:* rwm"]}),
            vec![privileged],
        ),
        (
            "legacy Capabilities",
            json!({"Capabilities": ["SYS_ADMIN"]}),
            vec![privileged],
        ),
        (
            "SYS_TIME",
            json!({"CapAdd": ["SYS_TIME"]}),
            vec![privileged],
        ),
        (
            "a volume binding / through the local driver",
            json!({"Mounts": [{"Type": "volume", "Source": "rootfs", "Target": "/host", "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/"}}}}]}),
            vec![mounts],
        ),
        (
            "the agent's state",
            json!({"Binds": ["/var/lib/infrapilot-agent:/x"]}),
            vec![mounts],
        ),
        (
            "/usr/local",
            json!({"Binds": ["/usr/local:/x"]}),
            vec![mounts],
        ),
    ] {
        let change = change.clone();
        cases.push((
            label.to_owned(),
            body(move |b| {
                for (k, v) in change.as_object().unwrap() {
                    b["HostConfig"][k] = v.clone();
                }
                if change.get("Binds").is_none() && change.get("Mounts").is_some() {
                    b["HostConfig"].as_object_mut().unwrap().remove("Binds");
                }
            }),
            expected,
        ));
    }
    for user in ["1000", "1000:0", "65534:65534"] {
        cases.push((
            format!("user {user:?}"),
            body(|b| b["User"] = json!(user)),
            vec![],
        ));
    }
    for cap in [
        "ALL",
        "all",
        "CAP_SYS_ADMIN",
        "cap_sys_admin",
        "sys_admin",
        " SYS_ADMIN ",
        "SYS_PTRACE",
        "CAP_BPF",
    ] {
        cases.push((
            format!("cap {cap:?}"),
            body(|b| b["HostConfig"]["CapAdd"] = json!([cap])),
            vec![privileged],
        ));
    }
    for (key, value) in [
        ("PidMode", "host"),
        ("IpcMode", "host"),
        ("NetworkMode", "host"),
        ("UTSMode", "host"),
        ("UsernsMode", "host"),
        ("PidMode", "HOST"),
    ] {
        cases.push((
            format!("{key}={value}"),
            body(|b| b["HostConfig"][key] = json!(value)),
            vec![privileged],
        ));
    }
    for opt in [
        "seccomp=unconfined",
        "seccomp:unconfined",
        "SECCOMP=UNCONFINED",
        "apparmor=unconfined",
        "apparmor:unconfined",
        "label=disable",
        "label:disable",
        "systempaths=unconfined",
    ] {
        cases.push((
            format!("security opt {opt}"),
            body(|b| b["HostConfig"]["SecurityOpt"] = json!([opt])),
            vec![privileged],
        ));
    }
    for source in [
        "/",
        "/etc",
        "/etc/",
        "//etc",
        "/./etc",
        "/var/../etc",
        "/etc/ssl",
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/var/run",
        "/run",
        "/var/lib/docker",
        "/var",
        "/proc",
        "/sys/fs",
        "/root",
        "/../../etc",
        "/dev/sda",
    ] {
        cases.push((
            format!("bind {source}"),
            body(|b| b["HostConfig"]["Binds"] = json!([format!("{source}:/host")])),
            vec![mounts],
        ));
        cases.push((
            format!("mount {source}"),
            body(|b| {
                b["HostConfig"]["Mounts"] =
                    json!([{"Type": "bind", "Source": source, "Target": "/host"}])
            }),
            vec![mounts],
        ));
    }
    for source in ["/srv", "/etcetera", "/var/lib/dockerish", "/home/app"] {
        cases.push((
            format!("bind {source}"),
            body(|b| b["HostConfig"]["Binds"] = json!([format!("{source}:/host")])),
            vec![],
        ));
    }
    cases.push((
        "the host's cgroup namespace (Docker's default on cgroup v1)".into(),
        body(|b| b["HostConfig"]["CgroupnsMode"] = json!("host")),
        vec![],
    ));
    assert!(cases.len() >= 70, "{}", cases.len());

    for action in [
        Action::ContainerCreate,
        Action::ContainerStart,
        Action::ContainerRunning,
        Action::ContainerStop,
    ] {
        for (label, body, expected) in &cases {
            let mut container =
                to_model(normalise(body).unwrap_or_else(|e| panic!("{label}: {e}")));
            container.name = "case".into();
            let request = Request {
                action,
                actor: "alice".into(),
                actor_role: "operator".into(),
                node_id: "n1".into(),
                node_name: "edge-1".into(),
                node_labels: vec![],
                container: Some(container),
                command: vec![],
                proxy_hosts: vec![],
                certificate: None,
                now_unix_ms: 1_800_000_000_000,
            };
            let by_templates = broken(&templates, &template_policies, &request).await;
            let by_rego = broken(&rego_engine, &rego_policies, &request).await;
            assert_eq!(
                by_templates, by_rego,
                "{action:?} {label}: the engines disagree"
            );
            // Stopping is not what these policies are about.
            let expected: BTreeSet<String> = if action == Action::ContainerStop {
                BTreeSet::new()
            } else {
                expected.iter().map(|s| (*s).to_owned()).collect()
            };
            assert_eq!(by_templates, expected, "{action:?} {label}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rego_module_is_checked_naming_the_field() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let engine = load(&runtime, "infrapilot_policy_rego", "policy-rego");
    let policy = |conditions: Value| Policy {
        id: "p".into(),
        name: "p".into(),
        policy_type: "rego".into(),
        conditions: conditions.to_string(),
    };
    for (conditions, field) in [
        (json!({}), "conditions.module"),
        (json!({"module": ""}), "conditions.module"),
        (
            json!({"module": "package x\ndeny contains msg if {"}),
            "conditions.module",
        ),
        (
            json!({"module": "package x\nallow := true"}),
            "conditions.module",
        ),
        (
            json!({"module": "package x\ndeny contains 1 if true", "extra": 1}),
            "conditions.extra",
        ),
    ] {
        match engine
            .check(&invocation(), &policy(conditions.clone()))
            .await
        {
            Err(infrapilot_plugin_runtime::HookError::Plugin(
                infrapilot_plugin_runtime::contract::PluginError::InvalidSettings(m),
            )) => assert!(m.starts_with(field), "{conditions}: {m}"),
            other => panic!("{conditions}: {other:?}"),
        }
    }
    // A module that names the node's labels and the actor works on them.
    let module = r#"package custom
deny contains msg if {
	input.action == "container.exec"
	input.node.labels.env == "production"
	input.actor_role != "admin"
	msg := sprintf("%s may not open a terminal on %s", [input.actor, input.node.name])
}"#;
    let p = policy(json!({"module": module}));
    engine.check(&invocation(), &p).await.unwrap();
    let mut request = Request {
        action: Action::ContainerExec,
        actor: "bob".into(),
        actor_role: "operator".into(),
        node_id: "n1".into(),
        node_name: "edge-1".into(),
        node_labels: vec![("env".into(), "production".into())],
        container: None,
        command: vec!["/bin/sh".into()],
        proxy_hosts: vec![],
        certificate: None,
        now_unix_ms: 0,
    };
    let findings = engine
        .evaluate(&invocation(), std::slice::from_ref(&p), &request)
        .await
        .unwrap();
    assert_eq!(
        findings[0].reasons,
        ["bob may not open a terminal on edge-1"]
    );
    request.actor_role = "admin".into();
    assert!(
        engine
            .evaluate(&invocation(), &[p], &request)
            .await
            .unwrap()
            .is_empty()
    );
}
