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
    let (status, policy) = admin
        .call(
            "POST",
            "/api/v1/policies",
            Some(
                json!({"name": "No root", "policy_type": "no_root_containers",
                "action": "warn", "conditions": {}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{policy}");
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
    // Stopping is not what the policy is about.
    let (status, body) = admin
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/containers/{web}/stop"),
            Some(json!({"timeout_seconds": 1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["warnings"], json!([]));

    // Both decisions on the violations page, newest first, with filters and pages.
    let page = admin.get("/api/v1/policies/violations").await;
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
        .get("/api/v1/policies/violations?decision=block")
        .await;
    assert_eq!(blocked["items"].as_array().unwrap().len(), 1, "{blocked}");
    let first = admin.get("/api/v1/policies/violations?limit=1").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = admin
        .get(&format!(
            "/api/v1/policies/violations?limit=1&cursor={cursor}"
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

    // A dry run of another template against what runs now: a container with the host's /etc
    // (spelt with a dot and a doubled slash) is found.
    let privileged = format!("{}-etc", fx.prefix);
    fx.docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(privileged.clone()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(common::IMAGE.into()),
                cmd: Some(vec!["/bin/sh".into(), "-c".into(), "sleep 3600".into()]),
                host_config: Some(HostConfig {
                    binds: Some(vec!["/./etc//:/host-etc:ro".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fx.track(&privileged, None);
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
        admin.get("/api/v1/policies/violations").await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Without its engine, a block policy fails closed, and the failure is recorded.
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
    fx.cleanup().await;
    drop(server);
}
