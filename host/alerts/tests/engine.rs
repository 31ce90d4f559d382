//! The rules engine on both database backends: events from stored Docker events and node status,
//! cooldown folding, resolution, and the deliveries each transition queues.

use std::sync::Arc;

use infrapilot_alerts::{AlertEngine, EngineConfig};
use infrapilot_gateway::AgentHub;
use infrapilot_identity::SecretBox;
use infrapilot_licensing::HostEdition;
use infrapilot_plugin_host::{PluginHost, PluginHostConfig};
use infrapilot_plugin_types::bundle::SigningKey;
use infrapilot_store::testing::{TestDb, backends};
use infrapilot_store::{
    NewAgent, NewAlertRule, NewDockerEvent, NewEnrollmentToken, NewPlugin, Store, now_ms,
};

async fn setup(store: &Store) -> (String, String) {
    let mut tx = store
        .write(&infrapilot_store::OrgId::default_org())
        .await
        .unwrap();
    tx.insert_enrollment_token(&NewEnrollmentToken {
        id: "tok",
        token_hash: "h",
        name: "t",
        labels: "{}",
        max_uses: 1,
        expires_at: now_ms() + 60_000,
        created_by: "test",
    })
    .await
    .unwrap();
    let agent = uuid::Uuid::new_v4().to_string();
    tx.insert_agent(&NewAgent {
        id: &agent,
        name: "edge-1",
        labels: "{}",
        version: "0",
        enrollment_token_id: "tok",
        cert_serial: "1",
        cert_fingerprint: "f",
        cert_expires_at: now_ms() + 60_000,
        builtin: false,
    })
    .await
    .unwrap();
    tx.upsert_plugin(&NewPlugin {
        id: "infrapilot.webhook",
        version: "0.1.0",
        world: "alert-channel",
        edition: "community",
        manifest: b"{}",
        component: b"",
        component_sha256: "0",
        signed_by: None,
        first_party: true,
    })
    .await
    .unwrap();
    let channel = uuid::Uuid::new_v4().to_string();
    tx.insert_alert_channel(&channel, "infrapilot.webhook", "hook", "{}", None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (agent, channel)
}

async fn rule(store: &Store, name: &str, kind: &str, params: &str, channel: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let mut tx = store
        .write(&infrapilot_store::OrgId::default_org())
        .await
        .unwrap();
    tx.insert_alert_rule(&NewAlertRule {
        id: &id,
        name,
        kind,
        params,
        agent_id: None,
        severity: "warning",
        cooldown_seconds: 300,
        channel_ids: &format!("[\"{channel}\"]"),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn docker_event(store: &Store, agent: &str, action: &str, exit_code: Option<i64>, at: i64) {
    let mut tx = store
        .write(&infrapilot_store::OrgId::default_org())
        .await
        .unwrap();
    tx.insert_docker_event(&NewDockerEvent {
        agent_id: agent,
        time_ms: at,
        container_id: "c0ffee",
        container_name: "web",
        action,
        exit_code,
        attributes: "{}",
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn rules_fire_fold_and_resolve_on_both_backends() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let store = db.store.clone();
        let (agent, channel) = setup(&store).await;
        let plugins = PluginHost::new(
            store.clone(),
            PluginHostConfig {
                edition: HostEdition::Community,
                trusted_keys: Default::default(),
                allow_unsigned: false,
                egress: Default::default(),
                smtp: None,
                license_key: SigningKey::generate().unwrap().public_key(),
                runtime: Default::default(),
            },
        )
        .unwrap();
        let engine = AlertEngine::new(
            store.clone(),
            plugins,
            AgentHub::new(
                store.clone(),
                30,
                Arc::new(SecretBox::new(&[7u8; 32]).unwrap()),
            ),
            Arc::new(SecretBox::new(&[7u8; 32]).unwrap()),
            EngineConfig::default(),
        );
        let crash = rule(&store, "crash", "container_crashed", "{}", &channel).await;
        let looping = rule(
            &store,
            "loop",
            "restart_loop",
            r#"{"restarts":3,"window_seconds":60}"#,
            &channel,
        )
        .await;
        let offline = rule(&store, "offline", "node_offline", "{}", &channel).await;

        // Events before the engine's first run are history, not alerts.
        docker_event(&store, &agent, "die", Some(1), now_ms()).await;
        engine
            .evaluate(&infrapilot_store::OrgId::default_org())
            .await
            .unwrap();
        let events = |store: Store| async move {
            let mut tx = store
                .read(&infrapilot_store::OrgId::default_org())
                .await
                .unwrap();
            let e = tx.list_alert_events(None, 100).await.unwrap();
            tx.commit().await.unwrap();
            e
        };
        let now = events(store.clone()).await;
        assert_eq!(
            now.len(),
            1,
            "{backend:?}: only the node is offline: {now:?}"
        );
        assert_eq!(
            (now[0].rule_id.as_str(), now[0].target.as_str()),
            (offline.as_str(), format!("agent:{agent}").as_str())
        );

        // A crash fires; a start resolves it; a crash within the cooldown folds into it.
        let t = now_ms();
        docker_event(&store, &agent, "die", Some(137), t).await;
        engine
            .evaluate(&infrapilot_store::OrgId::default_org())
            .await
            .unwrap();
        docker_event(&store, &agent, "start", None, t + 10).await;
        engine
            .evaluate(&infrapilot_store::OrgId::default_org())
            .await
            .unwrap();
        docker_event(&store, &agent, "die", Some(1), t + 20).await;
        // A die right after a kill someone asked for is not a crash (counted nowhere).
        docker_event(&store, &agent, "kill", None, t + 30).await;
        docker_event(&store, &agent, "die", Some(143), t + 40).await;
        engine
            .evaluate(&infrapilot_store::OrgId::default_org())
            .await
            .unwrap();
        let all = events(store.clone()).await;
        let crashes: Vec<_> = all.iter().filter(|e| e.rule_id == crash).collect();
        assert_eq!(crashes.len(), 1, "{backend:?}: {all:?}");
        assert_eq!(crashes[0].state, "resolved");
        assert_eq!(
            crashes[0].occurrences, 2,
            "{backend:?}: the repeat folded, the asked-for stop not counted"
        );
        assert_eq!(crashes[0].target, format!("container:{agent}/web"));
        assert!(
            crashes[0].summary.contains("exited with code 137"),
            "{}",
            crashes[0].summary
        );

        // Three starts within the window: a restart loop.
        assert!(all.iter().all(|e| e.rule_id != looping));
        docker_event(&store, &agent, "start", None, t + 50).await;
        docker_event(&store, &agent, "start", None, t + 60).await;
        engine
            .evaluate(&infrapilot_store::OrgId::default_org())
            .await
            .unwrap();
        let all = events(store.clone()).await;
        let loops: Vec<_> = all.iter().filter(|e| e.rule_id == looping).collect();
        assert_eq!(loops.len(), 1, "{backend:?}: {all:?}");
        assert_eq!(loops[0].state, "firing");

        // The node is still offline after several evaluations: the same event, no occurrences added.
        let off: Vec<_> = all.iter().filter(|e| e.rule_id == offline).collect();
        assert_eq!(
            (off.len(), off[0].occurrences),
            (1, 1),
            "{backend:?}: {off:?}"
        );

        // Deliveries: one per transition per channel, due now.
        let mut tx = store
            .read(&infrapilot_store::OrgId::default_org())
            .await
            .unwrap();
        let ids: Vec<String> = all.iter().map(|e| e.id.clone()).collect();
        let deliveries = tx.alert_deliveries_of(&ids).await.unwrap();
        tx.commit().await.unwrap();
        let transitions: Vec<(&str, &str)> = deliveries
            .iter()
            .map(|d| {
                let rule = &all.iter().find(|e| e.id == d.event_id).unwrap().rule_id;
                let name = if *rule == crash {
                    "crash"
                } else if *rule == looping {
                    "loop"
                } else {
                    "offline"
                };
                (name, d.transition.as_str())
            })
            .collect();
        let mut sorted = transitions.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                ("crash", "firing"),
                ("crash", "resolved"),
                ("loop", "firing"),
                ("offline", "firing")
            ],
            "{backend:?}"
        );
        assert_eq!(store.due_alert_deliveries(50).await.unwrap().len(), 4);
        // Another worker claiming the same delivery loses.
        let d = &deliveries[0];
        let mut tx = store
            .write(&infrapilot_store::OrgId::default_org())
            .await
            .unwrap();
        let until = now_ms() + 60_000;
        assert!(
            tx.claim_alert_delivery(&d.id, d.next_attempt_at, until)
                .await
                .unwrap()
        );
        assert!(
            !tx.claim_alert_delivery(&d.id, d.next_attempt_at, until)
                .await
                .unwrap()
        );
        // A worker whose claim lapsed (another took it) records nothing.
        tx.record_alert_attempt(&d.id, until - 1, "delivered", now_ms(), None, Some("late"))
            .await
            .unwrap();
        assert_eq!(
            tx.alert_delivery(&d.id).await.unwrap().unwrap().state,
            "pending"
        );
        tx.commit().await.unwrap();
        assert_eq!(store.due_alert_deliveries(50).await.unwrap().len(), 3);

        // A deleted channel leaves the rules that named it, and evaluation goes on without it.
        let mut tx = store
            .write(&infrapilot_store::OrgId::default_org())
            .await
            .unwrap();
        tx.remove_channel_from_rules(&channel).await.unwrap();
        assert!(tx.delete_alert_channel(&channel).await.unwrap());
        let rules = tx.list_alert_rules().await.unwrap();
        assert!(rules.iter().all(|r| r.channel_ids == "[]"), "{rules:?}");
        tx.commit().await.unwrap();
        docker_event(&store, &agent, "start", None, t + 70).await;
        docker_event(&store, &agent, "die", Some(2), now_ms() + 700_000).await;
        engine
            .evaluate(&infrapilot_store::OrgId::default_org())
            .await
            .unwrap();
    }
}
