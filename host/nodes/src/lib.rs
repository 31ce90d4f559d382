//! Node actions: every state-changing action on a node is a [`NodeAction`] and goes through
//! [`NodeActions::perform`], the one door where the checks run (each [`ActionGuard`]: the policy
//! engine and plan limits plug in here), the command goes out through the [`NodeRouter`], and the
//! audit event is written — whatever the outcome, denials included. Routes parse a request into
//! an action, call `perform` and map [`NodeActionError`]; they never send node commands that
//! change state themselves.
//!
//! Covered today: container start, stop, restart and remove. Still sent by their routes (to move
//! here next): exec sessions, and the proxy's revisions (staged in the transaction that changes
//! the hosts or a certificate, then dispatched).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use infrapilot_gateway::{DurableCommand, HubError, NodeRouter};
use infrapilot_proto::model::ActionOutcome;
use infrapilot_proto::v1::{ContainerAction, command, container_action::Action};
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
}

impl NodeAction {
    /// The audit event's action: `container.stop` …
    pub fn audit_action(&self) -> String {
        match self {
            NodeAction::Container { verb, .. } => format!("container.{}", verb.as_str()),
        }
    }

    /// The audit event's target: `container:<node id>/<container>` …
    pub fn audit_target(&self, node: &AgentRow) -> String {
        match self {
            NodeAction::Container { container, .. } => format!("container:{}/{container}", node.id),
        }
    }

    fn audit_detail(&self, node: &AgentRow) -> Value {
        match self {
            NodeAction::Container { container, .. } => {
                json!({"agent": node.name, "container": container})
            }
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

    /// Performs `action` on `node` for `actor` and waits for the node's answer. The same
    /// `idempotency_key` with the same action answers the first outcome (once per key).
    pub async fn perform(
        &self,
        actor: &Actor,
        node: &AgentRow,
        action: NodeAction,
        idempotency_key: Option<String>,
    ) -> Result<ContainerActionDone, NodeActionError> {
        for guard in &self.guards {
            if let Err(reason) = guard.check(actor, node, &action).await {
                let mut detail = action.audit_detail(node);
                detail["reason"] = json!(reason);
                self.audit(actor, node, &action, "denied", detail).await;
                return Err(NodeActionError::Refused(reason));
            }
        }
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
        let result = async {
            let mut tx = self.store.write(&actor.org_id).await?;
            tx.append_audit(event).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "could not record audit event");
        }
    }
}
