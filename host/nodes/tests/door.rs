//! The node-action door: a guard's refusal stops an action before anything reaches the node,
//! and every outcome — refused, failed on the node, done — is in the audit trail with the actor.
//! The store is a real database (SQLite, and PostgreSQL when configured); the node side is a
//! router that records what it was asked and answers as an agent would (the real agent and hub
//! are exercised by tests/system/tests/containers.rs through the API).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use infrapilot_gateway::{DurableCommand, HubError, NodeRouter, Outcome, StreamReceiver};
use infrapilot_nodes::{
    ActionGuard, Actor, ContainerActionDone, ContainerCommand, ContainerVerb, ExecRequest,
    Findings, NodeAction, NodeActionError, NodeActions, ProxyApply, ProxyChange, Refusal,
};
use infrapilot_proto::v1::{Command, ExecInput, command};
use infrapilot_store::testing::{TestDb, backends};
use infrapilot_store::{AgentRow, AuditFilter};

/// A durable command as sent: node, idempotency key, body, expiry, wait.
type Sent = (String, Option<String>, command::Kind, Duration, Duration);

/// Records the durable commands it is given; answers the container action like the agent does,
/// or with the agent error `fail_with` (kind, message).
#[derive(Default)]
struct RecordingNode {
    executed: Mutex<Vec<Sent>>,
    streams_opened: Mutex<Vec<command::Kind>>,
    fail_with: Option<(&'static str, &'static str)>,
    /// Answer this payload instead of the agent's usual one.
    answer: Option<&'static [u8]>,
}

#[async_trait]
impl NodeRouter for RecordingNode {
    fn heartbeat_seconds(&self) -> u32 {
        30
    }
    fn is_connected(&self, _: &str) -> bool {
        true
    }
    fn end_session(&self, _: &str, _: &str) {}
    fn encode_sealed(&self, _: &Command) -> Result<Vec<u8>, HubError> {
        Err(HubError::Sealing)
    }
    async fn query(&self, _: &str, _: command::Kind, _: Duration) -> Result<Outcome, HubError> {
        Err(HubError::Offline)
    }
    async fn execute(
        &self,
        _: &infrapilot_store::OrgId,
        c: DurableCommand<'_>,
    ) -> Result<Outcome, HubError> {
        self.executed.lock().unwrap().push((
            c.agent_id.to_owned(),
            c.idempotency_key.clone(),
            c.body.clone(),
            c.expires_in,
            c.wait,
        ));
        if let Some((kind, message)) = self.fail_with {
            return Err(HubError::Agent {
                kind: kind.into(),
                message: message.into(),
            });
        }
        Ok(Outcome {
            command_id: "cmd-1".into(),
            payload_json: self
                .answer
                .unwrap_or(br#"{"container":"f00dfeed","state":"exited"}"#)
                .to_vec(),
        })
    }
    /// A command sent before under the same key is joined (answered as the agent did).
    async fn join_stored(
        &self,
        _: &infrapilot_store::OrgId,
        c: DurableCommand<'_>,
    ) -> Option<Result<Outcome, HubError>> {
        let key = c.idempotency_key.as_ref()?;
        let executed = self.executed.lock().unwrap();
        executed
            .iter()
            .any(|sent| sent.1.as_ref() == Some(key))
            .then(|| {
                Ok(Outcome {
                    command_id: "cmd-1".into(),
                    payload_json: br#"{"container":"f00dfeed","state":"exited"}"#.to_vec(),
                })
            })
    }
    async fn dispatch(
        &self,
        _: &infrapilot_store::OrgId,
        _: &str,
        _: Command,
        _: Duration,
    ) -> Result<Outcome, HubError> {
        Err(HubError::Offline)
    }
    fn watch_stream(&self, _: &str, _: &str) -> StreamReceiver {
        StreamReceiver::ended()
    }
    /// Records the stream asked for; the node is offline.
    async fn open_stream(
        &self,
        _: &str,
        _: &str,
        body: command::Kind,
        _: Duration,
    ) -> Result<StreamReceiver, HubError> {
        self.streams_opened.lock().unwrap().push(body);
        Err(HubError::Offline)
    }
    async fn close_stream(&self, _: &str, _: &str) {}
    async fn exec_input(&self, _: &str, _: ExecInput) -> Result<(), HubError> {
        Err(HubError::Offline)
    }
}

/// Refuses to stop containers whose name starts with `db`, and shells in any container.
struct NoStoppingDatabases;

#[async_trait]
impl ActionGuard for NoStoppingDatabases {
    async fn check(
        &self,
        _: &Actor,
        _: &AgentRow,
        action: &NodeAction,
    ) -> Result<Findings, Refusal> {
        match action {
            NodeAction::Container(ContainerCommand {
                container,
                verb: ContainerVerb::Stop,
                ..
            }) if container.starts_with("db") => {
                Err(format!("{container} may not be stopped").into())
            }
            NodeAction::Exec(ExecRequest { command, .. }) if command[0] == "/bin/sh" => {
                Err("no shells".into())
            }
            NodeAction::Proxy(ProxyChange {
                spec: Some(spec), ..
            }) if spec["domains"][0] == "blocked.example.com" => {
                Err("blocked.example.com may not be served".into())
            }
            _ => Ok(Findings::default()),
        }
    }
}

fn node() -> AgentRow {
    AgentRow {
        id: "6f1c2a9e-0000-4000-8000-000000000001".into(),
        name: "node-1".into(),
        labels: "{}".into(),
        version: "0.1.0".into(),
        cert_serial: String::new(),
        cert_fingerprint: String::new(),
        cert_expires_at: 0,
        enrolled_at: 0,
        last_seen_at: None,
        revoked_at: None,
        builtin: false,
        host_stats: None,
    }
}

fn actor() -> Actor {
    Actor {
        org_id: infrapilot_store::OrgId::default_org(),
        user_id: Some("user-1".into()),
        label: "ops@example.com".into(),
        ip: "192.0.2.7".into(),
        role: None,
    }
}

fn stop(container: &str) -> ContainerCommand {
    ContainerCommand {
        container: container.into(),
        verb: ContainerVerb::Stop,
        timeout_seconds: 10,
    }
}

/// The audit events, oldest first, as (action, target, outcome, detail JSON).
async fn audit(db: &TestDb) -> Vec<(String, String, String, serde_json::Value, String)> {
    let mut tx = db
        .store
        .read(&infrapilot_store::OrgId::default_org())
        .await
        .unwrap();
    let page = tx
        .list_audit(&AuditFilter {
            actor: None,
            action: None,
            since: None,
            until: None,
            before_seq: None,
            limit: 100,
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    page.events
        .into_iter()
        .rev()
        .map(|e| {
            (
                e.action,
                e.target,
                e.outcome,
                serde_json::from_str(&e.detail).unwrap(),
                format!("{} {} {:?}", e.actor, e.ip, e.actor_id),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_refused_action_never_reaches_the_node_and_every_outcome_is_audited() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let node_side = Arc::new(RecordingNode::default());
        let door = NodeActions::new(node_side.clone(), db.store.clone())
            .with_guard(Arc::new(NoStoppingDatabases));

        let refused = door
            .perform(&actor(), &node(), stop("db-main"), Some("k1".into()))
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, NodeActionError::Refused(r) if r.reason == "db-main may not be stopped"),
            "{refused:?}"
        );
        assert!(
            node_side.executed.lock().unwrap().is_empty(),
            "nothing sent"
        );

        let done = door
            .perform(&actor(), &node(), stop("web"), Some("k2".into()))
            .await
            .unwrap();
        assert_eq!(
            done,
            ContainerActionDone {
                command_id: "cmd-1".into(),
                container: "f00dfeed".into(),
                state: Some("exited".into()),
                warnings: vec![],
            }
        );
        let sent = node_side.executed.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, node().id);
        // The wire command: the verb, the container and Docker's stop timeout; the command stays
        // deliverable for a minute past that timeout and is awaited 30 s past it.
        assert!(
            matches!(&sent[0].2, command::Kind::ContainerAction(a)
                if a.container == "web"
                    && a.action == infrapilot_proto::v1::container_action::Action::Stop as i32
                    && a.timeout_seconds == 10),
            "{:?}",
            sent[0].2
        );
        assert_eq!(
            (sent[0].3, sent[0].4),
            (Duration::from_secs(70), Duration::from_secs(40))
        );
        assert_eq!(
            sent[0].1.as_deref(),
            Some("k2"),
            "the idempotency key travels"
        );

        let events = audit(&db).await;
        assert_eq!(events.len(), 2, "{backend:?}: {events:?}");
        let target = format!("container:{}/db-main", node().id);
        assert_eq!(
            (&events[0].0[..], &events[0].1[..], &events[0].2[..]),
            ("container.stop", &target[..], "denied")
        );
        assert_eq!(events[0].3["reason"], "db-main may not be stopped");
        assert_eq!(events[1].2, "success");
        assert_eq!(events[1].3["command_id"], "cmd-1");
        assert_eq!(events[1].3["agent"], "node-1");
        for event in &events {
            assert_eq!(event.4, "ops@example.com 192.0.2.7 Some(\"user-1\")");
        }
    }
}

#[tokio::test]
async fn a_failure_on_the_node_is_returned_typed_and_audited_as_a_failure() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let node_side = Arc::new(RecordingNode {
            fail_with: Some(("not_found", "no such container: ghost")),
            ..RecordingNode::default()
        });
        let door = NodeActions::new(node_side, db.store.clone());
        let error = door
            .perform(&actor(), &node(), stop("ghost"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, NodeActionError::Node(HubError::Agent { kind, .. }) if kind == "not_found"),
            "{error:?}"
        );
        let events = audit(&db).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].2, "failure");
        assert_eq!(events[0].3["error"], "no such container: ghost");
    }
}

#[tokio::test]
async fn exec_sessions_pass_the_same_door() {
    let db = TestDb::new(infrapilot_store::Backend::Sqlite).await;
    let node_side = Arc::new(RecordingNode::default());
    let door = NodeActions::new(node_side.clone(), db.store.clone())
        .with_guard(Arc::new(NoStoppingDatabases));
    let exec = |program: &str| ExecRequest {
        container: "f00dfeed".into(),
        container_name: "web".into(),
        command: vec![program.into(), "-l".into()],
        cols: 80,
        rows: 24,
    };
    let wait = Duration::from_secs(1);
    let Err(refused) = door
        .open_exec(&actor(), &node(), exec("/bin/sh"), wait)
        .await
    else {
        panic!("a shell was opened")
    };
    assert!(matches!(&refused, NodeActionError::Refused(r) if r.reason == "no shells"));
    assert!(
        node_side.streams_opened.lock().unwrap().is_empty(),
        "nothing sent"
    );

    let Err(offline) = door.open_exec(&actor(), &node(), exec("ls"), wait).await else {
        panic!("an offline node opened a stream")
    };
    assert!(matches!(offline, NodeActionError::Node(HubError::Offline)));
    let opened = node_side.streams_opened.lock().unwrap().clone();
    assert!(
        matches!(&opened[..], [command::Kind::StartExec(s)] if s.container == "f00dfeed" && s.command == ["ls", "-l"]),
        "{opened:?}"
    );

    let events = audit(&db).await;
    let outcomes: Vec<_> = events
        .iter()
        .map(|e| (e.0.as_str(), e.2.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("container.exec_start", "denied"),
            ("container.exec_start", "failure")
        ]
    );
    assert_eq!(events[1].3["command"], serde_json::json!(["ls", "-l"]));
    assert_eq!(events[1].3["container"], "web");
    assert!(events[1].3["session_id"].as_str().unwrap().len() == 36);
}

/// The action ran on the node but its answer is garbled: the caller gets a typed error, and the
/// audit trail says it happened, with the command's id.
#[tokio::test]
async fn an_answer_not_understood_is_still_audited_as_done() {
    let db = TestDb::new(infrapilot_store::Backend::Sqlite).await;
    let node_side = Arc::new(RecordingNode {
        answer: Some(b"not json"),
        ..RecordingNode::default()
    });
    let door = NodeActions::new(node_side, db.store.clone());
    let error = door
        .perform(&actor(), &node(), stop("web"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, NodeActionError::Answer { command_id, .. } if command_id == "cmd-1"),
        "{error:?}"
    );
    let events = audit(&db).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].2, "success");
    assert_eq!(events[0].3["command_id"], "cmd-1");
    assert!(
        events[0].3["answer_error"]
            .as_str()
            .unwrap()
            .contains("expected")
    );
}

/// A proxy change passes the guards before its transaction opens: a refusal is audited on its own
/// and nothing is stored; an admission is good for its node only.
#[tokio::test]
async fn proxy_changes_are_admitted_before_their_transaction() {
    let db = TestDb::new(infrapilot_store::Backend::Sqlite).await;
    let door = NodeActions::new(Arc::new(RecordingNode::default()), db.store.clone())
        .with_guard(Arc::new(NoStoppingDatabases));
    let change = |domain: &str| ProxyChange {
        kind: "create".into(),
        subject: Some("p-1".into()),
        spec: Some(serde_json::json!({"domains": [domain]})),
        hosts: None,
    };
    let refused = door
        .admit_proxy_change(&actor(), &node(), change("blocked.example.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, NodeActionError::Refused(r) if r.reason.contains("may not be served"))
    );
    let admitted = door
        .admit_proxy_change(&actor(), &node(), change("ok.example.com"))
        .await
        .unwrap();
    let events = audit(&db).await;
    assert_eq!(
        events.len(),
        1,
        "only the refusal is audited by the door: {events:?}"
    );
    assert_eq!(
        (&events[0].0[..], &events[0].1[..], &events[0].2[..]),
        ("proxy.create", "proxy:p-1", "denied")
    );

    // The admission is used up storing the apply command, which the door builds for that node.
    let mut tx = db
        .store
        .write(&infrapilot_store::OrgId::default_org())
        .await
        .unwrap();
    db_agent(&mut tx).await;
    let staged = door
        .stage_proxy_apply(
            &mut tx,
            admitted,
            ProxyApply {
                config: Default::default(),
                revision: 3,
                seal: false,
                requested_by: "ops@example.com",
                expires_in: Duration::from_secs(60),
            },
        )
        .await
        .unwrap()
        .expect("stored");
    let stored = tx.command(staged.command_id()).await.unwrap().unwrap();
    assert_eq!(
        (&stored.agent_id[..], &stored.kind[..], &stored.target[..]),
        (&node().id[..], "proxy.apply", "revision:3")
    );
    tx.commit().await.unwrap();
}

/// Stores `node()` as an enrolled agent (commands reference their agent).
async fn db_agent(tx: &mut infrapilot_store::Tx) {
    let n = node();
    tx.insert_agent(&infrapilot_store::NewAgent {
        id: &n.id,
        name: &n.name,
        labels: "{}",
        version: "0.1.0",
        enrollment_token_id: "",
        cert_serial: "01",
        cert_fingerprint: "ab",
        cert_expires_at: 0,
        builtin: false,
    })
    .await
    .unwrap();
}

/// A guard that never decides (a policy engine that hangs).
struct Undecided;

#[async_trait]
impl ActionGuard for Undecided {
    fn name(&self) -> &str {
        "the policy engine"
    }

    async fn check(&self, _: &Actor, _: &AgentRow, _: &NodeAction) -> Result<Findings, Refusal> {
        std::future::pending::<()>().await;
        Ok(Findings::default())
    }
}

#[tokio::test]
async fn a_guard_that_does_not_decide_in_time_refuses_the_action() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let node_side = Arc::new(RecordingNode::default());
        let door = NodeActions::new(node_side.clone(), db.store.clone())
            .with_guard(Arc::new(Undecided))
            .with_guard_deadline(Duration::from_millis(200));

        let started = std::time::Instant::now();
        let failed = door
            .perform(&actor(), &node(), stop("web"), None)
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{backend:?}: waited {:?}",
            started.elapsed()
        );
        assert!(
            matches!(&failed, NodeActionError::GuardFailed { guard, .. } if guard == "the policy engine"),
            "{backend:?}: {failed:?}"
        );
        assert!(
            node_side.executed.lock().unwrap().is_empty(),
            "{backend:?}: the action reached the node"
        );
        let events = audit(&db).await;
        assert_eq!(events.len(), 1, "{backend:?}: {events:?}");
        assert_eq!(events[0].2, "denied");
        assert_eq!(
            events[0].3["reason"],
            "the policy engine did not decide within 200ms; the action was not done"
        );
        assert_eq!(events[0].3["guard"], "the policy engine");
    }
}

/// A guard with a bug.
struct Panicking;

#[async_trait]
impl ActionGuard for Panicking {
    fn name(&self) -> &str {
        "plan limits"
    }

    async fn check(&self, _: &Actor, _: &AgentRow, _: &NodeAction) -> Result<Findings, Refusal> {
        panic!("index out of bounds");
    }
}

#[tokio::test]
async fn a_guard_that_fails_refuses_the_action_and_the_refusal_is_audited() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let node_side = Arc::new(RecordingNode::default());
        let door =
            NodeActions::new(node_side.clone(), db.store.clone()).with_guard(Arc::new(Panicking));
        let failed = door
            .perform(&actor(), &node(), stop("web"), None)
            .await
            .unwrap_err();
        assert_eq!(
            failed.to_string(),
            "plan limits failed while checking; the action was not done",
            "{backend:?}"
        );
        assert!(node_side.executed.lock().unwrap().is_empty(), "{backend:?}");
        let events = audit(&db).await;
        assert_eq!(events.len(), 1, "{backend:?}: {events:?}");
        assert_eq!(
            (&events[0].2[..], &events[0].3["guard"]),
            ("denied", &serde_json::json!("plan limits"))
        );
    }
}

/// Warns about stopping `web`, audits stopping `cache`, blocks stopping `db`: what a policy
/// guard answers.
struct Policies;

fn finding(policy: &str, action: &str, container: &str) -> Findings {
    Findings {
        notices: vec![infrapilot_nodes::Notice {
            policy_id: format!("{policy}-id"),
            name: policy.into(),
            action: action.into(),
            reasons: vec![format!("{container} is special")],
        }],
        violations: vec![infrapilot_store::NewViolation {
            policy_id: format!("{policy}-id"),
            policy_name: policy.into(),
            action: "container.stop".into(),
            resource: format!("container:{container}"),
            agent_id: Some(node().id),
            decision: action.into(),
            reasons: vec![format!("{container} is special")],
            actor: "ops@example.com".into(),
            engine_error: None,
        }],
        judged_container: None,
    }
}

#[async_trait]
impl ActionGuard for Policies {
    async fn check(
        &self,
        _: &Actor,
        _: &AgentRow,
        action: &NodeAction,
    ) -> Result<Findings, Refusal> {
        let NodeAction::Container(c) = action else {
            return Ok(Findings::default());
        };
        match c.container.as_str() {
            "web" => Ok(finding("careful", "warn", "web")),
            "cache" => Ok(finding("watched", "audit", "cache")),
            "db" => Err(Refusal {
                reason: "policy careful-db refuses it".into(),
                findings: finding("careful-db", "block", "db"),
                unreachable: None,
            }),
            _ => Ok(Findings::default()),
        }
    }
}

#[tokio::test]
async fn warnings_come_back_with_the_result_and_violations_are_committed_with_the_audit_event() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let node_side = Arc::new(RecordingNode::default());
        let door =
            NodeActions::new(node_side.clone(), db.store.clone()).with_guard(Arc::new(Policies));
        let done = door
            .perform(&actor(), &node(), stop("web"), None)
            .await
            .unwrap();
        assert_eq!(done.warnings.len(), 1, "{backend:?}");
        assert_eq!(done.warnings[0].name, "careful");
        let done = door
            .perform(&actor(), &node(), stop("cache"), None)
            .await
            .unwrap();
        assert!(done.warnings.is_empty(), "audit policies are recorded only");
        let refused = door
            .perform(&actor(), &node(), stop("db"), None)
            .await
            .unwrap_err();
        let NodeActionError::Refused(refusal) = refused else {
            panic!("{backend:?}: {refused:?}")
        };
        assert_eq!(refusal.findings.blocks().len(), 1);
        assert_eq!(node_side.executed.lock().unwrap().len(), 2);

        let events = audit(&db).await;
        let outcomes: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
        assert_eq!(outcomes, ["success", "success", "denied"], "{backend:?}");
        assert_eq!(events[0].3["policies"][0]["action"], "warn");
        assert_eq!(events[2].3["policies"][0]["name"], "careful-db");

        let mut tx = db
            .store
            .read(&infrapilot_store::OrgId::default_org())
            .await
            .unwrap();
        let (violations, next) = tx
            .list_violations(&infrapilot_store::ViolationFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(next.is_none());
        let mut decisions: Vec<&str> = violations.iter().map(|v| v.decision.as_str()).collect();
        decisions.sort();
        assert_eq!(decisions, ["audit", "block", "warn"], "{backend:?}");
        assert!(
            violations.iter().all(|v| v.audit_event_id.is_some()),
            "{backend:?}: each violation names its audit event"
        );
    }
}

/// Judges the container named in the action as the one with id `.0` (what a policy guard reads
/// from the node by name).
struct Judges(&'static str);

#[async_trait]
impl ActionGuard for Judges {
    async fn check(&self, _: &Actor, _: &AgentRow, _: &NodeAction) -> Result<Findings, Refusal> {
        Ok(Findings {
            judged_container: Some(self.0.repeat(64 / self.0.len())),
            ..Findings::default()
        })
    }
}

#[tokio::test]
async fn the_action_goes_to_the_container_the_guards_judged_not_to_the_name() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let node_side = Arc::new(RecordingNode::default());
        let door =
            NodeActions::new(node_side.clone(), db.store.clone()).with_guard(Arc::new(Judges("a")));
        door.perform(&actor(), &node(), stop("web"), None)
            .await
            .unwrap();
        {
            let executed = node_side.executed.lock().unwrap();
            let command::Kind::ContainerAction(sent) = &executed[0].2 else {
                panic!("{backend:?}: {:?}", executed[0].2)
            };
            assert_eq!(sent.container, "a".repeat(64), "{backend:?}");
        }
        let events = audit(&db).await;
        assert_eq!(events[0].3["container"], "web", "{backend:?}");
        // The audit names what the node acted on, as it answered.
        assert_eq!(events[0].3["container_id"], "f00dfeed", "{backend:?}");

        // Two guards that read the name as two different containers: the name moved in
        // between, so neither judgement holds and nothing is sent.
        let node_side = Arc::new(RecordingNode::default());
        let door = NodeActions::new(node_side.clone(), db.store.clone())
            .with_guard(Arc::new(Judges("a")))
            .with_guard(Arc::new(Judges("b")));
        let refused = door
            .perform(&actor(), &node(), stop("web"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, NodeActionError::Refused(r) if r.reason.contains("changed while")),
            "{backend:?}: {refused:?}"
        );
        assert!(node_side.executed.lock().unwrap().is_empty(), "{backend:?}");

        // A guard that found no such container: nothing is sent (a container made under the
        // name meanwhile was not judged), and the caller hears what the node would say.
        let node_side = Arc::new(RecordingNode::default());
        let door = NodeActions::new(node_side.clone(), db.store.clone())
            .with_guard(Arc::new(FindsNothing));
        let missing = door
            .perform(&actor(), &node(), stop("web"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&missing, NodeActionError::Node(HubError::Agent { kind, .. }) if kind == "not_found"),
            "{backend:?}: {missing:?}"
        );
        assert!(node_side.executed.lock().unwrap().is_empty(), "{backend:?}");

        // A retry of a command sent before under its Idempotency-Key joins it, even with the
        // container gone since: nothing new is sent, the first outcome comes back.
        let first = NodeActions::new(node_side.clone(), db.store.clone());
        first
            .perform(&actor(), &node(), stop("web"), Some("stop-once".into()))
            .await
            .unwrap();
        let retried = door
            .perform(&actor(), &node(), stop("web"), Some("stop-once".into()))
            .await
            .unwrap();
        assert_eq!(retried.command_id, "cmd-1", "{backend:?}");
        assert_eq!(node_side.executed.lock().unwrap().len(), 1, "{backend:?}");
        let events = audit(&db).await;
        let last = events.last().unwrap();
        assert_eq!(
            (last.2.as_str(), &last.3["joined"]),
            ("success", &serde_json::json!(true)),
            "{backend:?}"
        );
        let missing_event = &events[events.len() - 3];
        assert_eq!(missing_event.2, "failure", "{backend:?}: {missing_event:?}");
    }
}

/// Reads no container under the name asked for.
struct FindsNothing;

#[async_trait]
impl ActionGuard for FindsNothing {
    async fn check(&self, _: &Actor, _: &AgentRow, _: &NodeAction) -> Result<Findings, Refusal> {
        Err(Refusal {
            reason: "no such container: web".into(),
            findings: Findings::default(),
            unreachable: Some(infrapilot_nodes::Unreachable::NotFound),
        })
    }
}
