//! Policies end to end (issue 18): the host binary with the first-party templates plugin, an
//! enterprise licence with the `policies` feature, the built-in agent and a real Docker engine.
//! A template in warn lets a restart through with the warning in the answer; in block the same
//! restart is refused with 403 `policy_violation` naming the policy and Docker never restarts
//! the container; both decisions are on the violations page; conditions are checked by the
//! engine naming the field; a dry run finds what runs now; without its engine a block policy
//! fails closed.

mod common;

use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};
use common::{Api, Fixture, Server, docker, plugin_build, temp_dir};
use infrapilot_licensing::License;
use infrapilot_plugin_types::SigningKey;
use serde_json::{Value, json};

async fn licensed_server(builtin_agent: bool) -> Option<(Server, Api)> {
    let build = plugin_build()?;
    let vendor = SigningKey::generate().unwrap();
    let keys = temp_dir("policy-keys");
    let vendor_pub = keys.join("vendor.pem.key");
    std::fs::write(&vendor_pub, vendor.public_key_pem().unwrap()).unwrap();
    let (bundles, trusted) = (build.join("bundles"), build.join("dev-signing"));
    let server = Server::start_with(
        builtin_agent,
        30,
        &[
            ("INFRAPILOT_EDITION", "enterprise"),
            ("INFRAPILOT_POLICY_AUDIT_SECONDS", "10"),
            ("INFRAPILOT_PLUGIN_DIR", bundles.to_str().unwrap()),
            ("INFRAPILOT_PLUGIN_TRUSTED_KEYS", trusted.to_str().unwrap()),
            (
                "INFRAPILOT_LICENSE_PUBLIC_KEY",
                vendor_pub.to_str().unwrap(),
            ),
        ],
    )
    .await;
    let admin = server.admin().await;
    let license = License {
        id: uuid::Uuid::new_v4().to_string(),
        licensee: "Policy Corp".into(),
        edition: "enterprise".into(),
        features: vec!["policies".into()],
        limits: Default::default(),
        issued_at: "2026-01-01T00:00:00Z".into(),
        expires_at: "2099-01-01T00:00:00Z".into(),
    }
    .issue(&vendor)
    .unwrap();
    let (status, body) = admin
        .call("PUT", "/api/v1/license", Some(json!({"license": license})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/plugins/infrapilot.policy-templates/enable",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    Some((server, admin))
}

/// Docker's own record of when the container last started.
async fn started_at(fx: &Fixture, name: &str) -> String {
    fx.docker
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap()
        .state
        .unwrap()
        .started_at
        .unwrap()
}

/// Creates a policy; its answer.
async fn new_policy(admin: &Api, body: Value) -> Value {
    let (status, policy) = admin.call("POST", "/api/v1/policies", Some(body)).await;
    assert_eq!(status, 201, "{policy}");
    policy
}

fn field(body: &Value) -> Option<&str> {
    body["error"]["field"].as_str()
}

#[tokio::test(flavor = "multi_thread")]
async fn warn_then_block_a_restart_of_a_root_container_and_see_both_violations() {
    let Some(docker) = docker().await else { return };
    let Some((server, admin)) = licensed_server(true).await else {
        return;
    };
    let mut fx = Fixture::new(docker, "policy");
    let agent = admin.online_agent("local").await;
    let web = fx
        .run("web", "while true; do sleep 1; done", &[], &[], None)
        .await;

    // The engine's types, with their conditions' schemas.
    let types = admin.get("/api/v1/policies/types").await;
    let ids: Vec<&str> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 8, "{types}");
    assert!(ids.contains(&"no_root_containers") && ids.contains(&"max_container_age"));
    assert_eq!(types[0]["engine"], "infrapilot.policy-templates");
    assert_eq!(types[0]["conditions_schema"]["type"], "object");

    // Conditions are checked by the engine, naming the field; bad fields by the host.
    for (body, expect) in [
        (
            json!({"name": "age", "policy_type": "max_container_age", "action": "block",
                "conditions": {"max_age_days": 0}}),
            "conditions.max_age_days",
        ),
        (
            json!({"name": "age", "policy_type": "max_container_age", "action": "block",
                "conditions": {"max_age": 3}}),
            "conditions.max_age",
        ),
        (
            json!({"name": "x", "policy_type": "no_such_template", "action": "block"}),
            "policy_type",
        ),
        (
            json!({"name": "x", "policy_type": "no_root_containers", "action": "deny"}),
            "action",
        ),
        (
            json!({"name": "x", "policy_type": "no_root_containers", "action": "block",
                "conditions": []}),
            "conditions",
        ),
        (
            json!({"name": "x", "policy_type": "no_root_containers", "action": "block",
                "node_labels": {"Bad Key": "x"}}),
            "node_labels.Bad Key",
        ),
        (
            json!({"name": "", "policy_type": "no_root_containers", "action": "block"}),
            "name",
        ),
    ] {
        let (status, reply) = admin
            .call("POST", "/api/v1/policies", Some(body.clone()))
            .await;
        assert_eq!(
            (status, field(&reply)),
            (400, Some(expect)),
            "{body}: {reply}"
        );
    }
    assert_eq!(admin.get("/api/v1/policies").await, json!([]));

    // Warn: the restart is done, the warning comes back with it.
    let policy = new_policy(
        &admin,
        json!({"name": "No root", "policy_type": "no_root_containers",
                "action": "warn", "conditions": {}}),
    )
    .await;
    let policy_id = policy["id"].as_str().unwrap().to_owned();
    let before = started_at(&fx, &web).await;
    let (status, done) = admin
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/containers/{web}/restart"),
            Some(json!({"timeout_seconds": 1})),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        done["warnings"][0]["policy_id"],
        policy_id.as_str(),
        "{done}"
    );
    assert_eq!(done["warnings"][0]["action"], "warn");
    assert!(
        done["warnings"][0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("root"),
        "{done}"
    );
    let after_warn = started_at(&fx, &web).await;
    assert_ne!(before, after_warn, "a warned restart happens");

    // Block: refused, naming the policy and why; Docker is not touched.
    let mut update = policy.clone();
    for k in ["id", "created_by", "created_at", "updated_at"] {
        update.as_object_mut().unwrap().remove(k);
    }
    update["action"] = json!("block");
    let (status, body) = admin
        .call(
            "PUT",
            &format!("/api/v1/policies/{policy_id}"),
            Some(update),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, refused) = admin
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/containers/{web}/restart"),
            Some(json!({"timeout_seconds": 1})),
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "policy_violation", "{refused}");
    assert_eq!(
        refused["error"]["policies"][0]["policy_id"],
        policy_id.as_str()
    );
    assert_eq!(refused["error"]["policies"][0]["name"], "No root");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("No root"),
        "{refused}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        started_at(&fx, &web).await,
        after_warn,
        "a blocked restart never reaches Docker"
    );
    // A policy of one's own in Rego, audit only: stops are recorded, not refused or warned.
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/plugins/infrapilot.policy-rego/enable",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A policy sees the role the request acts with: an admin's API token made with the
    // operator role is an operator, whatever its owner's membership.
    let module = r#"package custom.roles
deny contains msg if {
	input.action == "container.stop"
	input.actor_role == "operator"
	msg := "operators stop nothing"
}"#;
    let roles = new_policy(
        &admin,
        json!({"name": "Roles", "policy_type": "rego", "action": "block",
                "conditions": {"module": module}}),
    )
    .await;
    let (status, token) = admin
        .call(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "ops", "role": "operator", "expires_in_days": 1})),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let operator = common::Api {
        base: admin.base.clone(),
        token: token["secret"].as_str().unwrap().to_owned(),
    };
    let (status, refused) = operator
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/containers/{web}/stop"),
            Some(json!({"timeout_seconds": 1})),
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(
        refused["error"]["policies"][0]["name"], "Roles",
        "{refused}"
    );
    assert_eq!(
        refused["error"]["policies"][0]["reasons"][0], "operators stop nothing",
        "{refused}"
    );
    let (status, _) = admin
        .call(
            "DELETE",
            &format!("/api/v1/policies/{}", roles["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let module = r#"package custom.stops
deny contains msg if {
	input.action == "container.stop"
	msg := sprintf("%s stopped by %s on %s", [input.container.name, input.actor, input.node.name])
}"#;
    let (status, bad) = admin
        .call(
            "POST",
            "/api/v1/policies",
            Some(
                json!({"name": "Stops", "policy_type": "rego", "action": "audit",
                "conditions": {"module": "package custom.stops
deny contains msg if {"}}),
            ),
        )
        .await;
    assert_eq!(
        (status, field(&bad)),
        (400, Some("conditions.module")),
        "{bad}"
    );
    let rego = new_policy(
        &admin,
        json!({"name": "Stops", "policy_type": "rego", "action": "audit",
                "conditions": {"module": module}}),
    )
    .await;
    // Stopping is not what the template is about; the Rego policy records it.
    let (status, body) = admin
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/containers/{web}/stop"),
            Some(json!({"timeout_seconds": 1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["warnings"], json!([]));
    let audited = admin
        .get(&format!(
            "/api/v1/policies/violations?policy_id={}",
            rego["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(audited["items"][0]["decision"], "audit", "{audited}");
    assert_eq!(audited["items"][0]["action"], "container.stop", "{audited}");
    assert_eq!(
        audited["items"][0]["reasons"][0],
        format!("{web} stopped by admin@example.com on local").as_str(),
        "{audited}"
    );
    let (status, _) = admin
        .call(
            "DELETE",
            &format!("/api/v1/policies/{}", rego["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 204);

    // Proxy changes pass the same policies: plain HTTP on a public host, blocked then warned.
    let tls_policy = new_policy(
        &admin,
        json!({"name": "TLS", "policy_type": "require_ssl", "action": "block"}),
    )
    .await;
    let proxies = format!("/api/v1/agents/{agent}/proxies");
    let plain =
        json!({"domains": ["plain.example.test"], "upstream": {"host": "127.0.0.1", "port": 9}});
    let (status, refused) = admin.call("POST", &proxies, Some(plain.clone())).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "policy_violation");
    assert!(
        refused["error"]["policies"][0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("plain.example.test"),
        "{refused}"
    );
    assert_eq!(admin.get(&proxies).await, json!([]), "nothing was made");
    let tls_id = tls_policy["id"].as_str().unwrap();
    let mut as_warn = tls_policy.clone();
    for k in ["id", "created_by", "created_at", "updated_at"] {
        as_warn.as_object_mut().unwrap().remove(k);
    }
    as_warn["action"] = json!("warn");
    let (status, body) = admin
        .call("PUT", &format!("/api/v1/policies/{tls_id}"), Some(as_warn))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, made) = admin.call("POST", &proxies, Some(plain)).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["warnings"][0]["name"], "TLS", "{made}");
    let (status, deleted) = admin
        .call(
            "DELETE",
            &format!("{proxies}/{}", made["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        status, 204,
        "deleting is not what require_ssl is about: {deleted}"
    );
    let (status, _) = admin
        .call("DELETE", &format!("/api/v1/policies/{tls_id}"), None)
        .await;
    assert_eq!(status, 204);

    // Both decisions on the violations page, newest first, with filters and pages.
    let page = admin
        .get(&format!(
            "/api/v1/policies/violations?policy_id={policy_id}"
        ))
        .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    assert_eq!(
        (&items[0]["decision"], &items[1]["decision"]),
        (&json!("block"), &json!("warn")),
        "{page}"
    );
    for item in items {
        assert_eq!(item["policy_id"], policy_id.as_str());
        assert_eq!(item["action"], "container.restart");
        assert_eq!(
            item["resource"],
            format!("container:{agent}/{web}").as_str(),
            "{item}"
        );
        assert_eq!(item["actor"], "admin@example.com");
        assert!(item["reasons"][0].as_str().unwrap().contains("root"));
        assert!(item["created_at"].as_str().unwrap().ends_with('Z'));
        assert!(item["audit_event_id"].is_string(), "{item}");
    }
    let blocked = admin
        .get(&format!(
            "/api/v1/policies/violations?decision=block&policy_id={policy_id}"
        ))
        .await;
    assert_eq!(blocked["items"].as_array().unwrap().len(), 1, "{blocked}");
    let first = admin
        .get(&format!(
            "/api/v1/policies/violations?limit=1&policy_id={policy_id}"
        ))
        .await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = admin
        .get(&format!(
            "/api/v1/policies/violations?limit=1&policy_id={policy_id}&cursor={cursor}"
        ))
        .await;
    assert_eq!(second["items"][0]["decision"], "warn", "{second}");
    assert!(second["next_cursor"].is_null());
    let (status, body) = admin
        .call("GET", "/api/v1/policies/violations?decision=allow", None)
        .await;
    assert_eq!((status, field(&body)), (400, Some("decision")));
    let (status, body) = admin
        .call("GET", "/api/v1/policies/violations?cursor=nonsense", None)
        .await;
    assert_eq!((status, field(&body)), (400, Some("cursor")));

    // The refusal is in the audit trail with the policy.
    let audit = admin
        .get("/api/v1/audit?action=container.restart&limit=10")
        .await;
    let denied = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["outcome"] == "denied")
        .expect("the refusal is audited");
    assert_eq!(
        denied["detail"]["policies"][0]["name"], "No root",
        "{denied}"
    );

    // No such container while policies apply: nothing was judged, nothing is sent, the answer
    // is the node's own (404 naming the container).
    let (status, missing) = admin
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/containers/{}-nope/start", fx.prefix),
            None,
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    // A compose stack's restart passes the same door: the refusal of its member names the
    // policy, as a single action's does.
    let project = format!("{}-stack", fx.prefix);
    let member = fx
        .run(
            "member",
            "while true; do sleep 1; done",
            &[("com.docker.compose.project", project.as_str())],
            &[],
            None,
        )
        .await;
    let member_started = started_at(&fx, &member).await;
    let (status, stack) = admin
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/stacks/{project}/restart"),
            Some(json!({"timeout_seconds": 1})),
        )
        .await;
    assert_eq!(status, 200, "{stack}");
    assert_eq!(stack["errors"][0]["container"], member.as_str(), "{stack}");
    assert_eq!(stack["errors"][0]["code"], "policy_violation", "{stack}");
    assert_eq!(
        stack["errors"][0]["policies"][0]["policy_id"],
        policy_id.as_str(),
        "{stack}"
    );
    assert_eq!(started_at(&fx, &member).await, member_started);

    let recorded = admin.get("/api/v1/policies/violations?limit=500").await["items"]
        .as_array()
        .unwrap()
        .len();
    // A dry run of another template against what runs now: a container with the host's /etc
    // (spelt with a dot and a doubled slash) is found.
    let privileged = format!("{}-etc", fx.prefix);
    create_outside(
        &mut fx,
        &privileged,
        None,
        &["/bin/sh", "-c", "sleep 3600"],
        vec!["/./etc//:/host-etc:ro".into()],
    )
    .await;
    fx.docker
        .start_container(&privileged, None::<StartContainerOptions>)
        .await
        .unwrap();
    let (status, dry) = admin
        .call(
            "POST",
            "/api/v1/policies/dry-run",
            Some(json!({"name": "No host mounts", "policy_type": "no_sensitive_mounts", "action": "block"})),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    let found: Vec<&str> = dry["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["container"].as_str().unwrap())
        .collect();
    assert!(found.contains(&privileged.as_str()), "{dry}");
    assert!(
        dry["findings"][0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("/etc"),
        "{dry}"
    );
    assert!(!found.contains(&web.as_str()), "{dry}");
    assert!(dry["containers"].as_u64().unwrap() >= 1, "{dry}");
    // A dry run records nothing.
    assert_eq!(
        admin.get("/api/v1/policies/violations?limit=500").await["items"]
            .as_array()
            .unwrap()
            .len(),
        recorded
    );

    // Without its engine, a block policy fails closed, the failure is recorded and alerts.
    let (status, body) = admin
        .call("POST", "/api/v1/plugins/infrapilot.webhook/enable", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, channel) = admin
        .call(
            "POST",
            "/api/v1/alerts/channels",
            Some(json!({"plugin": "infrapilot.webhook", "name": "ops",
                "settings": {"url": "http://127.0.0.1:9/hook", "secret": "x"}})),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let (status, rule) = admin
        .call(
            "POST",
            "/api/v1/alerts/rules",
            Some(
                json!({"name": "engine down", "kind": "policy_engine_failed",
                "channel_ids": [channel["id"]]}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{rule}");
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/plugins/infrapilot.policy-templates/disable",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, refused) = admin
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/containers/{web}/start"),
            None,
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "policy_violation", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fail closed"),
        "{refused}"
    );
    assert_eq!(fx.state(&web).await.as_deref(), Some("exited"));
    let failed = admin
        .get("/api/v1/policies/violations?action=container.start")
        .await;
    assert!(
        failed["items"][0]["engine_error"]
            .as_str()
            .unwrap()
            .contains("no enabled policy engine"),
        "{failed}"
    );
    let fired = common::eventually("the engine failure alert", Duration::from_secs(30), || {
        let admin = admin.clone();
        async move {
            let history = admin.get("/api/v1/alerts/history").await;
            history
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["kind"] == "policy_engine_failed" && e["target"] == "policies")
                .cloned()
        }
    })
    .await;
    assert!(
        fired["summary"]
            .as_str()
            .unwrap()
            .contains("could not decide"),
        "{fired}"
    );

    // Deleting the policy lets the start through.
    let (status, _) = admin
        .call("DELETE", &format!("/api/v1/policies/{policy_id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = admin
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/containers/{web}/start"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The periodic audit records what already runs (every 10 s here), once a day per container.
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/plugins/infrapilot.policy-templates/enable",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let health = new_policy(
        &admin,
        json!({"name": "Healthchecks", "policy_type": "require_healthcheck", "action": "block"}),
    )
    .await;
    let query = format!(
        "/api/v1/policies/violations?action=container.running&policy_id={}",
        health["id"].as_str().unwrap()
    );
    let found = common::eventually(
        "the audit of running containers",
        Duration::from_secs(40),
        || {
            let (admin, query, web) = (admin.clone(), query.clone(), web.clone());
            async move {
                let page = admin.get(&query).await;
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| {
                        v["resource"]
                            .as_str()
                            .unwrap_or_default()
                            .ends_with(&format!("/{web}"))
                    })
                    .then_some(page)
            }
        },
    )
    .await;
    let item = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| {
            v["resource"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{web}"))
        })
        .unwrap()
        .clone();
    assert_eq!(
        (&item["decision"], &item["actor"]),
        (&json!("audit"), &json!("system")),
        "nothing was refused: {item}"
    );
    assert_eq!(item["reasons"][0], "has no healthcheck");
    // Other tests' containers on this engine may be found meanwhile: count this one's.
    let of_web = |page: &Value| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| {
                v["resource"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with(&format!("/{web}"))
            })
            .count()
    };
    assert_eq!(of_web(&found), 1);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        of_web(&admin.get(&query).await),
        1,
        "recorded once, not at every audit"
    );
    fx.cleanup().await;
    drop(server);
}

/// A throw-away registry (Debian's docker-registry) on loopback.
struct Registry {
    port: String,
    pid: String,
}

impl Registry {
    fn start() -> Registry {
        let peer = common::Peer::start("start-registry.sh");
        Registry {
            port: peer.var("REG_PORT"),
            pid: peer.var("REG_PID"),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg(&self.pid).status();
    }
}

/// Creates a container in Docker directly, outside InfraPilot (not started), tracked by the
/// fixture: the test image running `cmd` as `user`, with `binds`.
async fn create_outside(
    fx: &mut Fixture,
    name: &str,
    user: Option<&str>,
    cmd: &[&str],
    binds: Vec<String>,
) {
    fx.docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_owned()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(common::IMAGE.into()),
                user: user.map(str::to_owned),
                cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
                host_config: Some(HostConfig {
                    binds: Some(binds),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fx.track(name, None);
}

/// Builds an image with a layer of its own (random bytes on the test image), pushes it to the
/// registry and removes it from the engine, so that creating from it pulls; its reference.
async fn push_unique_image(fx: &mut Fixture, registry: &Registry) -> String {
    use bollard::query_parameters::{
        CommitContainerOptions, PushImageOptions, RemoveImageOptions, WaitContainerOptions,
    };
    use futures_util::StreamExt;
    let builder = format!("{}-builder", fx.prefix);
    create_outside(
        fx,
        &builder,
        None,
        &["/bin/sh", "-c", "head -c 600000 /dev/urandom > /blob"],
        vec![],
    )
    .await;
    fx.docker
        .start_container(&builder, None::<StartContainerOptions>)
        .await
        .unwrap();
    let _ = fx
        .docker
        .wait_container(&builder, None::<WaitContainerOptions>)
        .next()
        .await;
    let repo = format!("127.0.0.1:{}/test/app", registry.port);
    fx.docker
        .commit_container(
            CommitContainerOptions {
                container: Some(builder.clone()),
                repo: Some(repo.clone()),
                tag: Some("1".into()),
                ..Default::default()
            },
            bollard::models::ContainerConfig::default(),
        )
        .await
        .unwrap();
    let mut push = fx.docker.push_image(
        &repo,
        Some(PushImageOptions {
            tag: Some("1".into()),
            ..Default::default()
        }),
        None,
    );
    while let Some(item) = push.next().await {
        item.expect("the push to the local registry");
    }
    let reference = format!("{repo}:1");
    fx.docker
        .remove_image(
            &reference,
            Some(RemoveImageOptions {
                force: true,
                ..Default::default()
            }),
            None,
        )
        .await
        .unwrap();
    reference
}

/// The names of the engine's containers (all states).
async fn container_names(fx: &Fixture) -> Vec<String> {
    fx.docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .map(|n| n.trim_start_matches('/').to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_are_created_from_a_spec_and_no_spelling_gets_a_blocked_one_past_the_policies() {
    let Some(docker) = docker().await else { return };
    let Some((server, admin)) = licensed_server(true).await else {
        return;
    };
    let registry = Registry::start();
    let mut fx = Fixture::new(docker, "create");
    let agent = admin.online_agent("local").await;
    let create_path = format!("/api/v1/agents/{agent}/containers");
    let reference = push_unique_image(&mut fx, &registry).await;

    // Pulled from the registry with progress, created and started.
    let name = format!("{}-app", fx.prefix);
    fx.track(&name, None);
    let response = reqwest::Client::new()
        .post(format!("{}{create_path}", server.base))
        .bearer_auth(&admin.token)
        .header("accept", "application/x-ndjson")
        .json(
            &json!({"name": name, "image": reference, "user": "1000:1000",
            "command": ["/bin/sleep", "3600"], "restart_policy": "unless-stopped",
            "labels": {"team": "shop"}, "env": {"MODE": "prod"},
            "healthcheck": {"test": ["CMD-SHELL", "true"], "interval_seconds": 30}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let statuses: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["progress"]["status"].as_str())
        .collect();
    assert!(
        statuses.iter().any(|s| s.starts_with("Pulling from")),
        "{text}"
    );
    assert!(
        statuses
            .iter()
            .any(|s| *s == "Pull complete" || *s == "Download complete"),
        "{text}"
    );
    let result = &lines.last().unwrap()["result"];
    assert_eq!(result["state"], "running", "{text}");
    assert_eq!(result["name"], name.as_str());
    let inspected = fx
        .docker
        .inspect_container(
            &name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    let config = inspected.config.unwrap();
    assert_eq!(config.image.as_deref(), Some(reference.as_str()));
    assert_eq!(config.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        config.labels.unwrap().get("team").map(String::as_str),
        Some("shop")
    );
    assert_eq!(
        inspected
            .host_config
            .unwrap()
            .restart_policy
            .unwrap()
            .name
            .map(|n| n.to_string())
            .as_deref(),
        Some("unless-stopped")
    );

    // The same Idempotency-Key answers the first outcome; nothing new is made.
    let key = [("idempotency-key", "create-once-1")];
    let again = format!("{}-once", fx.prefix);
    fx.track(&again, None);
    let spec = json!({"name": again, "image": common::IMAGE, "user": "1000",
        "command": ["/bin/sleep", "3600"]});
    let (status, first) = admin
        .call_with("POST", &create_path, Some(spec.clone()), &key)
        .await;
    assert_eq!(status, 201, "{first}");
    let (status, second) = admin
        .call_with("POST", &create_path, Some(spec.clone()), &key)
        .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(first["container"], second["container"]);
    // The same key with another spec (here: another user) is another request, refused.
    let mut other = spec.clone();
    other["user"] = json!("2000");
    let (status, reused) = admin
        .call_with("POST", &create_path, Some(other), &key)
        .await;
    assert_eq!(
        (status, reused["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{reused}"
    );
    // The same name without the key is Docker's conflict, named.
    let (status, conflict) = admin.call("POST", &create_path, Some(spec)).await;
    assert_eq!(
        (status, conflict["error"]["code"].as_str()),
        (409, Some("docker_conflict")),
        "{conflict}"
    );

    // Registry credentials travel in a command stored sealed.
    let sealed_name = format!("{}-sealed", fx.prefix);
    fx.track(&sealed_name, None);
    let (status, body) = admin
        .call(
            "POST",
            &create_path,
            Some(
                json!({"name": sealed_name, "image": reference, "user": "1000",
                "command": ["/bin/sleep", "3600"], "pull": "always",
                "registry_auth": {"username": "robot", "password": "registry-secret-4711"}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let store = infrapilot_store::Store::connect(&server.database_url(), 2)
        .await
        .unwrap();
    let mut tx = store
        .read(&infrapilot_store::OrgId::default_org())
        .await
        .unwrap();
    let command = tx
        .command(body["command_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert!(command.body.starts_with(b"\0sealed\0"));
    assert!(
        !command
            .body
            .windows(b"registry-secret-4711".len())
            .any(|w| w == b"registry-secret-4711")
    );
    let audit = admin
        .get("/api/v1/audit?action=container.create&limit=20")
        .await;
    assert!(
        !audit.to_string().contains("registry-secret-4711"),
        "{audit}"
    );

    // A pull that fails names the image.
    let (status, body) = admin
        .call(
            "POST",
            &create_path,
            Some(json!({"name": format!("{}-nope", fx.prefix),
                "image": format!("127.0.0.1:{}/test/missing:1", registry.port)})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), field(&body)),
        (422, Some("image_pull_failed"), Some("image")),
        "{body}"
    );

    // The policies, blocking.
    for (name, policy_type) in [
        ("No root", "no_root_containers"),
        ("No privileged", "no_privileged"),
        ("No host mounts", "no_sensitive_mounts"),
    ] {
        let (status, body) = admin
            .call(
                "POST",
                "/api/v1/policies",
                Some(json!({"name": name, "policy_type": policy_type, "action": "block"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // A well-behaved spec still passes (the policies do not refuse everything).
    let fine = format!("{}-fine", fx.prefix);
    fx.track(&fine, None);
    let base = |name: &str| {
        json!({"name": name, "image": common::IMAGE, "user": "1000:1000",
            "command": ["/bin/sleep", "3600"], "start": false})
    };
    let (status, body) = admin.call("POST", &create_path, Some(base(&fine))).await;
    assert_eq!(status, 201, "{body}");

    // Asked as a stream, a refusal is still the 403, before any line.
    let streamed = reqwest::Client::new()
        .post(format!("{}{create_path}", server.base))
        .bearer_auth(&admin.token)
        .header("accept", "application/x-ndjson")
        .json(&json!({"name": format!("{}-streamed", fx.prefix), "image": common::IMAGE}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status().as_u16(), 403);
    let body: Value = streamed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "policy_violation", "{body}");

    // The bypass corpus: every spelling of root, privilege and the host's sensitive paths,
    // and bodies that are not a spec at all. None may create a container.
    let mut cases: Vec<(String, Value)> = Vec::new();
    let prefix = fx.prefix.clone();
    let mut case = |label: &str, change: &dyn Fn(&mut Value)| {
        let name = format!("{prefix}-c{}", cases.len());
        let mut body = base(&name);
        change(&mut body);
        cases.push((label.to_owned(), body));
    };
    for user in [
        "",
        "0",
        "00",
        "root",
        "0:0",
        "root:root",
        "0:1000",
        "+0",
        "-0",
        "000:0",
    ] {
        case(&format!("user {user:?}"), &|b| b["user"] = json!(user));
    }
    case("no user (the image's: root)", &|b| {
        b.as_object_mut().unwrap().remove("user");
    });
    case("user null", &|b| b["user"] = Value::Null);
    case("privileged", &|b| b["privileged"] = json!(true));
    for cap in [
        "ALL",
        "all",
        "SYS_ADMIN",
        "sys_admin",
        "CAP_SYS_ADMIN",
        "cap_sys_admin",
        "SYS_MODULE",
        "SYS_PTRACE",
    ] {
        case(&format!("cap_add {cap}"), &|b| b["cap_add"] = json!([cap]));
    }
    case("network_mode host", &|b| b["network_mode"] = json!("host"));
    case("pid_mode host", &|b| b["pid_mode"] = json!("host"));
    case("ipc_mode host", &|b| b["ipc_mode"] = json!("host"));
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
        case(&format!("security_opt {opt}"), &|b| {
            b["security_opt"] = json!([opt])
        });
    }
    case("device /dev/sda", &|b| {
        b["devices"] = json!([{"host_path": "/dev/sda"}])
    });
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
        "/sys/kernel",
        "/root",
        "/../../etc",
    ] {
        case(
            &format!("bind {source}"),
            &|b| b["mounts"] = json!([{"type": "bind", "source": source, "target": "/host"}]),
        );
    }
    // Not a spec: refused before any policy.
    case("Docker's own HostConfig", &|b| {
        b["HostConfig"] = json!({"Privileged": true})
    });
    case("mixed-case key", &|b| b["Privileged"] = json!(true));
    case("mixed-case key for user", &|b| {
        b["User"] = json!("0");
        b.as_object_mut().unwrap().remove("user");
    });
    case("binds as raw strings", &|b| {
        b["binds"] = json!(["/etc:/host"])
    });
    case(
        "volume mount of a host path",
        &|b| b["mounts"] = json!([{"type": "volume", "source": "/etc", "target": "/host"}]),
    );
    // A path through a symbolic link on the node: the agent refuses it (the policies judged
    // the path as written).
    let link = format!("/tmp/{}-link", fx.prefix);
    let _ = std::fs::remove_file(&link);
    // A named volume that binds /etc through the local driver: refused at create (mount the
    // path as a bind), and an existing container using it is judged on /etc.
    let volume = format!("{}-etcvol", fx.prefix);
    fx.docker
        .create_volume(bollard::models::VolumeCreateRequest {
            name: Some(volume.clone()),
            driver: Some("local".into()),
            driver_opts: Some(
                [("type", "none"), ("o", "bind"), ("device", "/etc")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut through_volume = base(&format!("{}-vol", fx.prefix));
    through_volume["mounts"] = json!([{"type": "volume", "source": volume, "target": "/host"}]);
    let (status, refused) = admin.call("POST", &create_path, Some(through_volume)).await;
    assert_eq!(
        (status, field(&refused)),
        (400, Some("mounts")),
        "{refused}"
    );
    let vol_user = format!("{}-voluser", fx.prefix);
    create_outside(
        &mut fx,
        &vol_user,
        Some("1000"),
        &["/bin/sleep", "3600"],
        vec![format!("{volume}:/host:ro")],
    )
    .await;
    let (status, refused) = admin
        .call("POST", &format!("{create_path}/{vol_user}/start"), None)
        .await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/etc"),
        "{refused}"
    );
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    {
        let link = link.clone();
        case("bind through a symbolic link to /etc", &move |b| {
            b["mounts"] = json!([{"type": "bind", "source": link, "target": "/host"}])
        });
    }
    case(
        "unknown mount type",
        &|b| b["mounts"] = json!([{"type": "npipe", "source": "/etc", "target": "/host"}]),
    );
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let mut passed = Vec::new();
    for (label, body) in &cases {
        let (status, reply) = admin.call("POST", &create_path, Some(body.clone())).await;
        if status == 201 || status / 100 == 2 {
            passed.push(format!("{label}: {reply}"));
        } else {
            assert!(status == 403 || status == 400, "{label}: {status} {reply}");
            if status == 403 {
                assert_eq!(
                    reply["error"]["code"], "policy_violation",
                    "{label}: {reply}"
                );
            }
        }
    }
    // Bodies that are no JSON object at all, or far too large, or an unknown action.
    let raw = reqwest::Client::new();
    for (label, content) in [
        ("empty body", String::new()),
        ("null", "null".to_owned()),
        ("array", "[]".to_owned()),
        ("truncated", "{\"name\": \"x\", \"image\"".to_owned()),
        (
            "oversized",
            format!(
                "{{\"name\": \"big\", \"image\": \"a\", \"command\": [\"{}\"]}}",
                "x".repeat(3 << 20)
            ),
        ),
    ] {
        let sent = raw
            .post(format!("{}{create_path}", server.base))
            .bearer_auth(&admin.token)
            .header("content-type", "application/json")
            .body(content)
            .send()
            .await;
        match sent {
            Ok(r) => assert!(
                (400..500).contains(&r.status().as_u16()),
                "{label}: {}",
                r.status()
            ),
            // The host answered 413 and closed before the whole body was sent.
            Err(e) => assert!(label == "oversized", "{label}: {e}"),
        }
    }
    let (status, _) = admin
        .call("POST", &format!("{create_path}/{fine}/frobnicate"), None)
        .await;
    assert!(status == 404 || status == 405, "unknown action: {status}");
    assert!(passed.is_empty(), "let through: {passed:#?}");
    // A container made outside InfraPilot with a bind through that link: its start is judged on
    // where the link leads.
    let linked = format!("{}-linked", fx.prefix);
    create_outside(
        &mut fx,
        &linked,
        Some("1000"),
        &["/bin/sleep", "3600"],
        vec![format!("{link}:/host:ro")],
    )
    .await;
    let (status, refused) = admin
        .call("POST", &format!("{create_path}/{linked}/start"), None)
        .await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/etc"),
        "{refused}"
    );
    assert_eq!(fx.state(&linked).await.as_deref(), Some("created"));
    let _ = std::fs::remove_file(&link);
    let names = container_names(&fx).await;
    for (label, body) in &cases {
        let name = body["name"].as_str().unwrap();
        assert!(
            !names.iter().any(|n| n == name),
            "{label}: {name} exists in Docker"
        );
    }
    // Every refusal by a policy is a violation of the create.
    let violations = admin
        .get("/api/v1/policies/violations?action=container.create&decision=block&limit=500")
        .await;
    assert!(
        violations["items"].as_array().unwrap().len() >= 40,
        "{violations}"
    );
    fx.cleanup().await;
    let _ = fx
        .docker
        .remove_volume(
            &volume,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await;
    let _ = fx
        .docker
        .remove_image(
            &reference,
            Some(bollard::query_parameters::RemoveImageOptions {
                force: true,
                ..Default::default()
            }),
            None,
        )
        .await;
    drop(server);
}
