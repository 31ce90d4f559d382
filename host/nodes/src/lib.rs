//! Node actions: every state-changing action on a node is a [`NodeAction`] and goes through
//! [`NodeActions::perform`], the one door where the checks run (each [`ActionGuard`]: the policy
//! engine and plan limits plug in here), the command goes out through the [`NodeRouter`], and the
//! audit event is written — whatever the outcome, denials included. Routes parse a request into
//! an action, call `perform` and map [`NodeActionError`]; they never send node commands that
//! change state themselves.
//!
//! Covered today: container start, stop, restart and remove ([`NodeActions::perform`]) and exec
//! sessions ([`NodeActions::open_exec`], [`NodeActions::exec_ended`]). Still sent by their routes
//! (to move here next): the proxy's revisions (staged in the transaction that changes the hosts
//! or a certificate, then dispatched).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use infrapilot_gateway::{DurableCommand, HubError, NodeRouter, StreamReceiver};
use infrapilot_proto::model::ActionOutcome;
use infrapilot_proto::v1::{ContainerAction, StartExec, command, container_action::Action};
use infrapilot_store::{AgentRow, NewAuditEvent, Store};
use serde_json::{Value, json};

/// Who asks for an action, as the audit trail and the node's command list name them.
#[derive(Debug, Clone)]
pub struct Actor {
    pub org_id: String,
    /// The user's id; `None` for the system or the command line.
    pub user_id: Option<String>,
    /// The user's e-mail address, or `cli`, `system` …
    pub label: String,
    /// Where the request came from (`local` for the command line).
    pub ip: String,
}

/// What can be done to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerVerb {
    Start,
    Stop,
    Restart,
    Remove,
}

impl ContainerVerb {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerVerb::Start => "start",
            ContainerVerb::Stop => "stop",
            ContainerVerb::Restart => "restart",
            ContainerVerb::Remove => "remove",
        }
    }

    fn wire(self) -> Action {
        match self {
            ContainerVerb::Start => Action::Start,
            ContainerVerb::Stop => Action::Stop,
            ContainerVerb::Restart => Action::Restart,
            ContainerVerb::Remove => Action::Remove,
        }
    }
}

/// A state-changing action on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    /// Start, stop, restart or remove a container (by id, id prefix or name; removal by full id).
    Container {
        container: String,
        verb: ContainerVerb,
        /// Seconds Docker waits for a stop before it kills (stop and restart).
        timeout_seconds: u32,
    },
    /// A command run in a container with a terminal (an exec session).
    Exec {
        /// The container's full id.
        container: String,
        /// Its name, for the audit trail.
        container_name: String,
        /// The program and its arguments.
        command: Vec<String>,
        cols: u16,
        rows: u16,
    },
}

impl NodeAction {
    /// The audit event's action: `container.stop` …
    pub fn audit_action(&self) -> String {
        match self {
            NodeAction::Container { verb, .. } => format!("container.{}", verb.as_str()),
            NodeAction::Exec { .. } => "container.exec_start".into(),
        }
    }

    /// The audit event's target: `container:<node id>/<container>` …
    pub fn audit_target(&self, node: &AgentRow) -> String {
        match self {
            NodeAction::Container { container, .. } | NodeAction::Exec { container, .. } => {
                format!("container:{}/{container}", node.id)
            }
        }
    }

    fn audit_detail(&self, node: &AgentRow) -> Value {
        match self {
            NodeAction::Container { container, .. } => {
                json!({"agent": node.name, "container": container})
            }
            NodeAction::Exec {
                container_name,
                command,
                ..
            } => json!({"agent": node.name, "container": container_name, "command": command}),
        }
    }
}

/// A check an action must pass before it reaches the node (policies, plan limits).
#[async_trait]
pub trait ActionGuard: Send + Sync {
    /// `Err(reason)` refuses the action; the reason is shown to the caller and audited.
    async fn check(
        &self,
        actor: &Actor,
        node: &AgentRow,
        action: &NodeAction,
    ) -> Result<(), String>;
}

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
pub enum NodeActionError {
    /// A guard refused it; nothing was sent.
    #[error("refused: {0}")]
    Refused(String),
    /// The node, or the way to it, failed (offline, timeout, Docker's own error …).
    #[error(transparent)]
    Node(#[from] HubError),
    /// The node answered something this host does not understand.
    #[error("the node's answer is not understood: {0}")]
    Answer(String),
}

/// What a container action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerActionDone {
    pub command_id: String,
    /// The container's full id.
    pub container: String,
    /// Its state afterwards (`None` after removal).
    pub state: Option<String>,
}

/// The door: checks, dispatch, audit.
#[derive(Clone)]
pub struct NodeActions {
    router: Arc<dyn NodeRouter>,
    store: Store,
    guards: Vec<Arc<dyn ActionGuard>>,
}

impl NodeActions {
    pub fn new(router: Arc<dyn NodeRouter>, store: Store) -> NodeActions {
        NodeActions {
            router,
            store,
            guards: Vec::new(),
        }
    }

    /// Adds a check every action must pass, after those added before.
    pub fn with_guard(mut self, guard: Arc<dyn ActionGuard>) -> NodeActions {
        self.guards.push(guard);
        self
    }

    /// Runs the guards; a refusal is audited and returned.
    async fn admit(
        &self,
        actor: &Actor,
        node: &AgentRow,
        action: &NodeAction,
    ) -> Result<(), NodeActionError> {
        for guard in &self.guards {
            if let Err(reason) = guard.check(actor, node, action).await {
                let mut detail = action.audit_detail(node);
                detail["reason"] = json!(reason);
                self.audit(actor, node, action, "denied", detail).await;
                return Err(NodeActionError::Refused(reason));
            }
        }
        Ok(())
    }

    /// Opens an exec session (`NodeAction::Exec`; any other action is refused) once the node
    /// confirmed it started: the session's id and its output stream. The start is audited
    /// (`container.exec_start`, with the outcome); call [`NodeActions::exec_ended`] when it ends.
    pub async fn open_exec(
        &self,
        actor: &Actor,
        node: &AgentRow,
        action: NodeAction,
        wait: Duration,
    ) -> Result<(String, StreamReceiver), NodeActionError> {
        let NodeAction::Exec {
            container,
            command,
            cols,
            rows,
            ..
        } = &action
        else {
            return Err(NodeActionError::Refused(
                "open_exec opens exec sessions only".into(),
            ));
        };
        self.admit(actor, node, &action).await?;
        let session_id = new_session_id();
        let result = self
            .router
            .open_stream(
                &node.id,
                &session_id,
                command::Kind::StartExec(StartExec {
                    session_id: session_id.clone(),
                    container: container.clone(),
                    command: command.clone(),
                    cols: u32::from(*cols),
                    rows: u32::from(*rows),
                }),
                wait,
            )
            .await;
        let mut detail = action.audit_detail(node);
        detail["session_id"] = json!(session_id);
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => {
                detail["error"] = json!(e.to_string());
                "failure"
            }
        };
        self.audit(actor, node, &action, outcome, detail).await;
        Ok((session_id, result?))
    }

    /// Records the end of an exec session (`container.exec_end`) and closes its stream.
    pub async fn exec_ended(&self, actor: &Actor, node: &AgentRow, session: ExecEnd<'_>) {
        self.router.close_stream(&node.id, session.session_id).await;
        let event = NewAuditEvent {
            actor_id: actor.user_id.clone(),
            actor: actor.label.clone(),
            action: "container.exec_end".into(),
            target: format!("container:{}/{}", node.id, session.container),
            ip: actor.ip.clone(),
            outcome: "success".into(),
            detail: json!({"agent": node.name, "container": session.container_name,
                "session_id": session.session_id, "exit_code": session.exit_code,
                "duration_ms": session.duration.as_millis() as u64,
                "closed_by_host": session.closed_by_host}),
        };
        self.record(&actor.org_id, event).await;
    }

    /// Performs a container action on `node` for `actor` and waits for the node's answer (an
    /// exec is refused here: [`NodeActions::open_exec`]). The same `idempotency_key` with the
    /// same action answers the first outcome (once per key).
    pub async fn perform(
        &self,
        actor: &Actor,
        node: &AgentRow,
        action: NodeAction,
        idempotency_key: Option<String>,
    ) -> Result<ContainerActionDone, NodeActionError> {
        if matches!(action, NodeAction::Exec { .. }) {
            return Err(NodeActionError::Refused(
                "an exec session is opened with open_exec".into(),
            ));
        }
        self.admit(actor, node, &action).await?;
        let result = self.send(actor, node, &action, idempotency_key).await;
        let mut detail = action.audit_detail(node);
        let outcome = match &result {
            Ok(done) => {
                detail["command_id"] = json!(done.command_id);
                "success"
            }
            Err(e) => {
                detail["error"] = json!(e.to_string());
                "failure"
            }
        };
        self.audit(actor, node, &action, outcome, detail).await;
        result
    }

    async fn send(
        &self,
        actor: &Actor,
        node: &AgentRow,
        action: &NodeAction,
        idempotency_key: Option<String>,
    ) -> Result<ContainerActionDone, NodeActionError> {
        match action {
            NodeAction::Container {
                container,
                verb,
                timeout_seconds,
            } => {
                let outcome = self
                    .router
                    .execute(
                        &actor.org_id,
                        DurableCommand {
                            agent_id: &node.id,
                            idempotency_key,
                            kind: verb.as_str(),
                            target: container,
                            requested_by: &actor.label,
                            body: command::Kind::ContainerAction(ContainerAction {
                                container: container.clone(),
                                action: verb.wire() as i32,
                                timeout_seconds: *timeout_seconds,
                            }),
                            expires_in: Duration::from_secs(u64::from(*timeout_seconds) + 60),
                            wait: Duration::from_secs(u64::from(*timeout_seconds) + 30),
                        },
                    )
                    .await?;
                let done: ActionOutcome = serde_json::from_slice(&outcome.payload_json)
                    .map_err(|e| NodeActionError::Answer(e.to_string()))?;
                Ok(ContainerActionDone {
                    command_id: outcome.command_id,
                    container: done.container,
                    state: done.state,
                })
            }
            NodeAction::Exec { .. } => unreachable!("perform refuses exec before sending"),
        }
    }

    /// Records the event in its own transaction: the action happened (or was refused) on the
    /// node whatever becomes of the caller's. A failure to record is logged.
    async fn audit(
        &self,
        actor: &Actor,
        node: &AgentRow,
        action: &NodeAction,
        outcome: &str,
        detail: Value,
    ) {
        let event = NewAuditEvent {
            actor_id: actor.user_id.clone(),
            actor: actor.label.clone(),
            action: action.audit_action(),
            target: action.audit_target(node),
            ip: actor.ip.clone(),
            outcome: outcome.to_owned(),
            detail,
        };
        self.record(&actor.org_id, event).await;
    }

    async fn record(&self, org_id: &str, event: NewAuditEvent) {
        let result = async {
            let mut tx = self.store.write(org_id).await?;
            tx.append_audit(event).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "could not record audit event");
        }
    }
}

/// How an exec session ended, for [`NodeActions::exec_ended`].
#[derive(Debug, Clone, Copy)]
pub struct ExecEnd<'a> {
    pub session_id: &'a str,
    /// The container's full id and its name.
    pub container: &'a str,
    pub container_name: &'a str,
    /// The process's exit code, when it ended by itself.
    pub exit_code: Option<i32>,
    pub duration: Duration,
    /// Why the host closed the terminal, if it did (revoked access, lifetime, shutdown).
    pub closed_by_host: Option<&'a str>,
}

fn new_session_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
