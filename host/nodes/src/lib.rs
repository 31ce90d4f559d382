//! Node actions: every state-changing action on a node is a [`NodeAction`] and goes through
//! [`NodeActions`], the one door where the checks run (each [`ActionGuard`]: the policy engine's
//! guard; plan limits are to plug in here), the command goes out through the
//! [`NodeRouter`], and the audit event is written (denied, failed or done; a failure to write it
//! is logged). Routes parse a request into a [`ContainerCommand`], an [`ExecRequest`] or a
//! [`ProxyChange`], call the door and map [`NodeActionError`].
//!
//! Covered: container start, stop, restart and remove ([`NodeActions::perform`]); exec sessions
//! ([`NodeActions::open_exec`]: the [`ExecSession`] it returns carries the terminal's input and
//! its end); and the proxy's revisions, which are made in the transaction that changes the hosts
//! or a certificate: [`NodeActions::admit_proxy_change`] runs the guards before that transaction
//! opens (so a refusal is audited on its own, and SQLite's single writer is never waited for
//! twice), its [`Admitted`] proof is used up to store the apply command in the transaction
//! ([`NodeActions::stage_proxy_apply`], which builds the command itself), and
//! [`NodeActions::dispatch_staged`] sends that [`StagedApply`] once committed.
//! The proxy's own audit event (`proxy.create` …) is written by the proxy workflow in that
//! transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::FutureExt;
use infrapilot_gateway::Outcome;
use infrapilot_gateway::{AgentHub, DurableCommand, HubError, NodeRouter, StreamReceiver};
use infrapilot_proto::model::ActionOutcome;
use infrapilot_proto::v1::{
    ApplyProxyConfig, Command, ContainerAction, ExecInput, StartExec, command,
    container_action::Action,
};
use infrapilot_store::{
    AgentRow, NewAuditEvent, NewCommand, NewViolation, OrgId, Store, StoreError, Tx,
};
use serde::Serialize;
use serde_json::{Value, json};

/// Who asks for an action (the store's audit actor).
pub use infrapilot_store::Actor;

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

/// A container action: start, stop, restart or remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCommand {
    /// Id, id prefix or name (removal: the full id, so the name cannot move in between).
    pub container: String,
    pub verb: ContainerVerb,
    /// Seconds Docker waits for a stop before it kills (stop and restart).
    pub timeout_seconds: u32,
}

/// A command to run in a container with a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The container's full id.
    pub container: String,
    /// Its name, for the audit trail.
    pub container_name: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    pub cols: u16,
    pub rows: u16,
}

/// A change to a node's reverse proxy: a new revision of its whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyChange {
    /// What changes: `create`, `update`, `delete`, `reapply`, `rollback`, `certificate`.
    pub kind: String,
    /// The proxy host it is about (create, update, delete), or the certificate (certificate).
    pub subject: Option<String>,
    /// The host's new settings (create, update), as the API's `ProxySpec` JSON.
    pub spec: Option<Value>,
    /// What a rollback deploys: the target revision's hosts (`[{"id", "spec"}]`).
    pub hosts: Option<Value>,
}

/// Credentials for an image's registry; never printed, never audited, stored sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
    /// The registry (host[:port]); the image's when empty.
    pub server: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// A container to create from a checked spec.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub name: String,
    /// The image reference, with its tag or digest.
    pub image: String,
    /// Docker's create body (configuration at the top, `HostConfig` inside), built by the host
    /// from a spec checked field by field; what the guards judge and the node creates.
    pub body: Value,
    /// Networks it joins after it is created.
    pub networks: Vec<String>,
    pub start: bool,
    pub always_pull: bool,
    pub credentials: Option<RegistryCredentials>,
}

/// A create that passed the guards; only [`NodeActions::admit_create`] makes one.
#[derive(Debug)]
pub struct AdmittedCreate {
    actor: Actor,
    node: AgentRow,
    action: NodeAction,
    findings: Findings,
}

/// A state-changing action on one node, as the guards and the audit trail see it.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeAction {
    Container(ContainerCommand),
    Create(CreateRequest),
    Exec(ExecRequest),
    Proxy(ProxyChange),
}

/// Proof that a proxy change on a node passed the guards; only [`NodeActions`] makes one, and
/// storing the change's apply command uses it up.
#[derive(Debug)]
pub struct Admitted {
    node_id: String,
    findings: Findings,
}

impl Admitted {
    /// What warn policies said about the change (shown with its result).
    pub fn warnings(&self) -> Vec<Notice> {
        self.findings.warnings()
    }
}

/// What [`NodeActions::stage_proxy_apply`] stores.
#[derive(Debug)]
pub struct ProxyApply<'a> {
    /// The rendered configuration.
    pub config: ApplyProxyConfig,
    /// Its revision number.
    pub revision: i64,
    /// It carries an uploaded certificate's key: stored sealed with the master key.
    pub seal: bool,
    pub requested_by: &'a str,
    /// How long it stays deliverable to an offline node.
    pub expires_in: Duration,
}

/// A proxy apply command stored in a transaction, to send once it commits; only
/// [`NodeActions::stage_proxy_apply`] makes one.
#[derive(Debug)]
pub struct StagedApply {
    node_id: String,
    command: Command,
}

impl StagedApply {
    pub fn command_id(&self) -> &str {
        &self.command.command_id
    }
}

impl NodeAction {
    /// The audit event's action: `container.stop` …
    pub fn audit_action(&self) -> String {
        match self {
            NodeAction::Container(c) => format!("container.{}", c.verb.as_str()),
            NodeAction::Create(_) => "container.create".into(),
            NodeAction::Exec(_) => "container.exec_start".into(),
            NodeAction::Proxy(change) => format!("proxy.{}", change.kind),
        }
    }

    /// The audit event's target: `container:<node id>/<container>` …
    pub fn audit_target(&self, node: &AgentRow) -> String {
        match self {
            NodeAction::Container(ContainerCommand { container, .. })
            | NodeAction::Exec(ExecRequest { container, .. })
            | NodeAction::Create(CreateRequest {
                name: container, ..
            }) => {
                format!("container:{}/{container}", node.id)
            }
            NodeAction::Proxy(ProxyChange {
                kind,
                subject: Some(subject),
                ..
            }) if kind == "certificate" => format!("certificate:{subject}"),
            NodeAction::Proxy(ProxyChange {
                subject: Some(subject),
                ..
            }) => format!("proxy:{subject}"),
            NodeAction::Proxy(_) => format!("agent:{}", node.id),
        }
    }

    fn audit_detail(&self, node: &AgentRow) -> Value {
        match self {
            NodeAction::Container(c) => json!({"agent": node.name, "container": c.container}),
            NodeAction::Create(c) => json!({"agent": node.name, "container": c.name,
                "image": c.image, "networks": c.networks, "start": c.start,
                "registry_credentials": c.credentials.is_some()}),
            NodeAction::Exec(e) => {
                json!({"agent": node.name, "container": e.container_name, "command": e.command})
            }
            NodeAction::Proxy(_) => json!({"agent_id": node.id, "agent": node.name}),
        }
    }
}

/// A policy an action broke, as the caller is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub policy_id: String,
    pub name: String,
    /// What the policy does: `block`, `warn` or `audit`.
    pub action: String,
    pub reasons: Vec<String>,
}

/// What a guard found about an action: notices for the caller, violations for the record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    pub notices: Vec<Notice>,
    /// Committed with the action's audit event.
    pub violations: Vec<NewViolation>,
    /// The full id of the container a guard judged, read from the node by the name or id prefix
    /// asked for: the action goes to that container, so a name moved to another container
    /// between the check and the action is not acted on.
    pub judged_container: Option<String>,
}

impl Findings {
    /// Adds what another guard found; `Err` when the two judged different containers (the name
    /// moved while they checked).
    fn extend(&mut self, other: Findings) -> Result<(), String> {
        self.notices.extend(other.notices);
        self.violations.extend(other.violations);
        match (&self.judged_container, other.judged_container) {
            (Some(mine), Some(theirs)) if *mine != theirs => {
                return Err(format!(
                    "the container changed while the action was checked ({mine} then {theirs})"
                ));
            }
            (None, Some(theirs)) => self.judged_container = Some(theirs),
            _ => {}
        }
        Ok(())
    }

    /// The notices of warn policies (audit ones are recorded only).
    pub fn warnings(&self) -> Vec<Notice> {
        self.notices
            .iter()
            .filter(|n| n.action == "warn")
            .cloned()
            .collect()
    }

    /// The notices of block policies.
    pub fn blocks(&self) -> Vec<Notice> {
        self.notices
            .iter()
            .filter(|n| n.action == "block")
            .cloned()
            .collect()
    }
}

/// A guard's refusal: why, and what it found (the block policies among its notices).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: String,
    pub findings: Findings,
    /// The guard could not read what the action is about because it is not there: the caller
    /// is answered as the node would have answered (no such container, node offline).
    pub unreachable: Option<Unreachable>,
}

/// Why what an action is about could not be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// The node has no such container.
    NotFound,
    /// The node is not connected.
    Offline,
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal {
            reason,
            findings: Findings::default(),
            unreachable: None,
        }
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Refusal {
        Refusal::from(reason.to_owned())
    }
}

/// A check an action must pass before it reaches the node (policies, plan limits).
#[async_trait]
pub trait ActionGuard: Send + Sync {
    /// What the guard is, for messages and the audit trail ("policy engine", "plan limits").
    fn name(&self) -> &str {
        "a guard"
    }

    /// `Err` refuses the action; its reason is shown to the caller and audited. What an
    /// admitted action's check found (warnings, violations) goes with its result and its audit
    /// event. A check that takes longer than the door's guard deadline refuses too (deny by
    /// default).
    async fn check(
        &self,
        actor: &Actor,
        node: &AgentRow,
        action: &NodeAction,
    ) -> Result<Findings, Refusal>;
}

/// How long one guard may take to decide before the action is refused without its answer.
pub const GUARD_DEADLINE: Duration = Duration::from_secs(5);

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
pub enum NodeActionError {
    /// A guard refused it; nothing was sent.
    #[error("refused: {}", .0.reason)]
    Refused(Refusal),
    /// A guard could not decide (no answer within the deadline, or it failed); the action was
    /// refused without its answer and nothing was sent.
    #[error("{guard} {cause}; the action was not done")]
    GuardFailed { guard: String, cause: String },
    /// The node, or the way to it, failed (offline, timeout, Docker's own error …).
    #[error(transparent)]
    Node(#[from] HubError),
    /// The node did the action (command `command_id`) but answered something this host does
    /// not understand.
    #[error("the node's answer is not understood: {message}")]
    Answer { command_id: String, message: String },
}

/// What a container action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerActionDone {
    pub command_id: String,
    /// The container's full id.
    pub container: String,
    /// Its state afterwards (`None` after removal).
    pub state: Option<String>,
    /// What warn policies said about it.
    pub warnings: Vec<Notice>,
}

/// The door: checks, dispatch, audit.
#[derive(Clone)]
pub struct NodeActions {
    router: Arc<dyn NodeRouter>,
    store: Store,
    guards: Vec<Arc<dyn ActionGuard>>,
    guard_deadline: Duration,
}

impl NodeActions {
    pub fn new(router: Arc<dyn NodeRouter>, store: Store) -> NodeActions {
        NodeActions {
            router,
            store,
            guards: Vec::new(),
            guard_deadline: GUARD_DEADLINE,
        }
    }

    /// How long each guard may take (default [`GUARD_DEADLINE`]).
    pub fn with_guard_deadline(mut self, deadline: Duration) -> NodeActions {
        self.guard_deadline = deadline;
        self
    }

    /// Adds a check every action must pass, after those added before.
    pub fn with_guard(mut self, guard: Arc<dyn ActionGuard>) -> NodeActions {
        self.guards.push(guard);
        self
    }

    /// Runs the guards; a refusal is audited (with the violations found) and returned.
    async fn admit(
        &self,
        actor: &Actor,
        node: &AgentRow,
        action: &NodeAction,
    ) -> Result<Findings, NodeActionError> {
        let mut found = Findings::default();
        for guard in &self.guards {
            // A guard that panics refuses like one that does not answer (deny by default); it
            // is dropped mid-check when its time is up, so guards must be cancel-safe.
            let check = std::panic::AssertUnwindSafe(guard.check(actor, node, action));
            let decided = tokio::time::timeout(self.guard_deadline, check.catch_unwind()).await;
            let refusal = match decided {
                Ok(Ok(Ok(findings))) => match found.extend(findings) {
                    Ok(()) => continue,
                    Err(moved) => NodeActionError::Refused(Refusal {
                        reason: moved,
                        findings: found.clone(),
                        unreachable: None,
                    }),
                },
                Ok(Ok(Err(refusal))) => {
                    let _ = found.extend(refusal.findings.clone());
                    match refusal.unreachable {
                        Some(Unreachable::NotFound) => NodeActionError::Node(HubError::Agent {
                            kind: "not_found".into(),
                            message: refusal.reason,
                        }),
                        Some(Unreachable::Offline) => NodeActionError::Node(HubError::Offline),
                        None => NodeActionError::Refused(Refusal {
                            reason: refusal.reason,
                            findings: found.clone(),
                            unreachable: None,
                        }),
                    }
                }
                Ok(Err(_)) => NodeActionError::GuardFailed {
                    guard: guard.name().to_owned(),
                    cause: "failed while checking".into(),
                },
                Err(_) => NodeActionError::GuardFailed {
                    guard: guard.name().to_owned(),
                    cause: format!("did not decide within {:?}", self.guard_deadline),
                },
            };
            let mut detail = action.audit_detail(node);
            add_policies(&mut detail, &found);
            // What the action is about is not there (no such container, the node away): a
            // failure, as the node's own answer would have been, not a denial.
            if let NodeActionError::Node(e) = &refusal {
                detail["error"] = json!(e.to_string());
                self.audit(actor, node, action, "failure", detail, &found.violations)
                    .await;
                return Err(refusal);
            }
            detail["guard"] = json!(guard.name());
            detail["reason"] = json!(match &refusal {
                NodeActionError::Refused(refusal) => refusal.reason.clone(),
                other => other.to_string(),
            });
            self.audit(actor, node, action, "denied", detail, &found.violations)
                .await;
            return Err(refusal);
        }
        Ok(found)
    }

    /// Runs the guards on a proxy change before the transaction that makes it opens; a refusal
    /// is audited (`proxy.<kind>`, denied) and returned.
    pub async fn admit_proxy_change(
        &self,
        actor: &Actor,
        node: &AgentRow,
        change: ProxyChange,
    ) -> Result<Admitted, NodeActionError> {
        let findings = self.admit(actor, node, &NodeAction::Proxy(change)).await?;
        Ok(Admitted {
            node_id: node.id.clone(),
            findings,
        })
    }

    /// Stores the apply command of an admitted proxy change in the caller's transaction (the
    /// proof is used up), with the policy violations found about it (the change's own audit
    /// event is written by the caller in the same transaction): a `proxy.apply` command for the admitted node carrying `apply`, sealed
    /// with the master key when `seal` (it carries an uploaded certificate's key), under an
    /// idempotency key unique to this revision. `Ok(None)` when another change to the node's
    /// proxy took the revision meanwhile. Send it with [`NodeActions::dispatch_staged`] once the
    /// transaction commits.
    pub async fn stage_proxy_apply(
        &self,
        tx: &mut Tx,
        admitted: Admitted,
        apply: ProxyApply<'_>,
    ) -> Result<Option<StagedApply>, NodeActionError> {
        let ProxyApply {
            config,
            revision,
            seal,
            requested_by,
            expires_in,
        } = apply;
        // Unique per revision made, not per number: a node that holds the result of another
        // "revision 7" (from before a database restore) must not answer with it.
        let key = format!(
            "proxy-revision:{revision}:{}",
            uuid::Uuid::new_v4().simple()
        );
        let command =
            AgentHub::durable_command(command::Kind::ApplyProxyConfig(config), &key, expires_in);
        let body = if seal {
            self.router.encode_sealed(&command)?
        } else {
            prost::Message::encode_to_vec(&command)
        };
        let inserted = tx
            .insert_command(&NewCommand {
                id: &command.command_id,
                agent_id: &admitted.node_id,
                idempotency_key: &key,
                kind: "proxy.apply",
                target: &format!("revision:{revision}"),
                body: &body,
                requested_by,
                expires_at: command.expires_at_unix_ms,
            })
            .await
            .map_err(|e: StoreError| NodeActionError::Node(e.into()))?;
        if inserted.is_ok() {
            tx.insert_violations(&admitted.findings.violations, None)
                .await
                .map_err(|e: StoreError| NodeActionError::Node(e.into()))?;
        }
        Ok(inserted.is_ok().then_some(StagedApply {
            node_id: admitted.node_id,
            command,
        }))
    }

    /// Sends a staged apply once its transaction committed, and waits up to `wait` for the node
    /// (its outcome is stored with the command either way; an offline node gets it when it says
    /// hello).
    pub async fn dispatch_staged(
        &self,
        org_id: &OrgId,
        staged: StagedApply,
        wait: Duration,
    ) -> Result<Outcome, HubError> {
        self.router
            .dispatch(org_id, &staged.node_id, staged.command, wait)
            .await
    }

    /// Opens an exec session once the node confirmed it started: the session (terminal input,
    /// end) and its output. The start is audited (`container.exec_start`, with its outcome); the
    /// end when [`ExecSession::end`] is called, or when the session is dropped without it.
    pub async fn open_exec(
        &self,
        actor: &Actor,
        node: &AgentRow,
        exec: ExecRequest,
        wait: Duration,
    ) -> Result<(ExecSession, StreamReceiver), NodeActionError> {
        let action = NodeAction::Exec(exec);
        let findings = self.admit(actor, node, &action).await?;
        let NodeAction::Exec(exec) = action else {
            unreachable!("built above")
        };
        let session_id = uuid::Uuid::new_v4().to_string();
        let result = self
            .router
            .open_stream(
                &node.id,
                &session_id,
                command::Kind::StartExec(StartExec {
                    session_id: session_id.clone(),
                    container: findings
                        .judged_container
                        .clone()
                        .unwrap_or_else(|| exec.container.clone()),
                    command: exec.command.clone(),
                    cols: u32::from(exec.cols),
                    rows: u32::from(exec.rows),
                }),
                wait,
            )
            .await;
        let action = NodeAction::Exec(exec);
        let mut detail = action.audit_detail(node);
        detail["session_id"] = json!(session_id);
        add_policies(&mut detail, &findings);
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => {
                detail["error"] = json!(e.to_string());
                "failure"
            }
        };
        self.audit(actor, node, &action, outcome, detail, &findings.violations)
            .await;
        let output = result?;
        let NodeAction::Exec(exec) = action else {
            unreachable!("built above")
        };
        let session = ExecSession {
            door: self.clone(),
            actor: actor.clone(),
            node: node.clone(),
            exec,
            session_id,
            started: Instant::now(),
            ended: false,
            warnings: findings.warnings(),
        };
        Ok((session, output))
    }

    /// Performs a container action on `node` for `actor` and waits for the node's answer. The
    /// same `idempotency_key` with the same action answers the first outcome (once per key).
    pub async fn perform(
        &self,
        actor: &Actor,
        node: &AgentRow,
        command: ContainerCommand,
        idempotency_key: Option<String>,
    ) -> Result<ContainerActionDone, NodeActionError> {
        let action = NodeAction::Container(command);
        let NodeAction::Container(command) = &action else {
            unreachable!("built above")
        };
        // A retry of a command stored under its Idempotency-Key joins it: nothing new is sent
        // (the guards judged it when it was sent), though the node may be away or the
        // container gone since.
        let joined = match &idempotency_key {
            Some(_) => {
                self.router
                    .join_stored(
                        &actor.org_id,
                        container_command(
                            actor,
                            node,
                            command,
                            &command.container,
                            idempotency_key.clone(),
                        ),
                    )
                    .await
            }
            None => None,
        };
        let was_joined = joined.is_some();
        let (findings, result) = match joined {
            Some(joined) => (
                Findings::default(),
                joined.map_err(NodeActionError::from).and_then(action_done),
            ),
            None => {
                let findings = self.admit(actor, node, &action).await?;
                // To the container the guards judged, by its full id (not the name, which may
                // have moved); the command is listed (and a retry matched) by what was asked.
                let judged = findings
                    .judged_container
                    .as_deref()
                    .unwrap_or(&command.container);
                let sent = self
                    .router
                    .execute(
                        &actor.org_id,
                        container_command(actor, node, command, judged, idempotency_key),
                    )
                    .await
                    .map_err(NodeActionError::from)
                    .and_then(action_done)
                    .map(|mut done| {
                        done.warnings = findings.warnings();
                        done
                    });
                (findings, sent)
            }
        };
        let mut detail = action.audit_detail(node);
        add_policies(&mut detail, &findings);
        if was_joined {
            detail["joined"] = json!(true);
        }
        let outcome = match &result {
            Ok(done) => {
                detail["command_id"] = json!(done.command_id);
                // What the node acted on (a joined retry: what the first request's did).
                detail["container_id"] = json!(done.container);
                "success"
            }
            // It happened on the node; only its answer is not understood.
            Err(NodeActionError::Answer {
                command_id,
                message,
            }) => {
                detail["command_id"] = json!(command_id);
                detail["answer_error"] = json!(message);
                "success"
            }
            Err(e) => {
                detail["error"] = json!(e.to_string());
                "failure"
            }
        };
        self.audit(actor, node, &action, outcome, detail, &findings.violations)
            .await;
        result
    }

    /// Creates a container on `node` for `actor` (pull, create, networks, start) and waits for
    /// the node's answer, up to `wait` (pulls take a while); progress of the pull goes to
    /// `progress_stream` (see [`NodeRouter::watch_stream`]). The same `idempotency_key` with the
    /// same container answers the first outcome. Registry credentials travel in a command
    /// stored sealed.
    pub async fn create(
        &self,
        actor: &Actor,
        node: &AgentRow,
        create: CreateRequest,
        idempotency_key: Option<String>,
        progress_stream: Option<String>,
        wait: Duration,
    ) -> Result<ContainerActionDone, NodeActionError> {
        let admitted = self.admit_create(actor, node, create).await?;
        self.create_admitted(admitted, idempotency_key, progress_stream, wait)
            .await
    }

    /// Runs the guards on a create (a refusal is audited and returned): what
    /// [`NodeActions::create_admitted`] then sends — so a caller can answer a refusal before it
    /// starts streaming the pull's progress.
    pub async fn admit_create(
        &self,
        actor: &Actor,
        node: &AgentRow,
        create: CreateRequest,
    ) -> Result<AdmittedCreate, NodeActionError> {
        let action = NodeAction::Create(create);
        let findings = self.admit(actor, node, &action).await?;
        Ok(AdmittedCreate {
            actor: actor.clone(),
            node: node.clone(),
            action,
            findings,
        })
    }

    /// Sends an admitted create and audits its outcome (see [`NodeActions::create`]).
    pub async fn create_admitted(
        &self,
        admitted: AdmittedCreate,
        idempotency_key: Option<String>,
        progress_stream: Option<String>,
        wait: Duration,
    ) -> Result<ContainerActionDone, NodeActionError> {
        let AdmittedCreate {
            actor,
            node,
            action,
            findings,
        } = admitted;
        let (actor, node) = (&actor, &node);
        let NodeAction::Create(create) = &action else {
            unreachable!("made by admit_create")
        };
        let body = command::Kind::CreateContainer(infrapilot_proto::v1::CreateContainer {
            name: create.name.clone(),
            spec_json: create.body.to_string().into_bytes(),
            networks: create.networks.clone(),
            start: create.start,
            always_pull: create.always_pull,
            auth: create
                .credentials
                .as_ref()
                .map(|c| infrapilot_proto::v1::RegistryAuth {
                    username: c.username.clone(),
                    password: c.password.clone(),
                    server: c.server.clone(),
                }),
            progress_stream_id: progress_stream.unwrap_or_default(),
        });
        let result = self
            .router
            .execute(
                &actor.org_id,
                DurableCommand {
                    agent_id: &node.id,
                    idempotency_key,
                    kind: "create",
                    target: &create.name,
                    requested_by: &actor.label,
                    body,
                    expires_in: wait + Duration::from_secs(60),
                    wait,
                    seal: create.credentials.is_some(),
                },
            )
            .await
            .map_err(NodeActionError::from)
            .and_then(action_done)
            .map(|mut done| {
                done.warnings = findings.warnings();
                done
            });
        let mut detail = action.audit_detail(node);
        add_policies(&mut detail, &findings);
        let outcome = match &result {
            Ok(done) => {
                detail["command_id"] = json!(done.command_id);
                detail["container_id"] = json!(done.container);
                "success"
            }
            Err(NodeActionError::Answer {
                command_id,
                message,
            }) => {
                detail["command_id"] = json!(command_id);
                detail["answer_error"] = json!(message);
                "success"
            }
            Err(e) => {
                detail["error"] = json!(e.to_string());
                "failure"
            }
        };
        self.audit(actor, node, &action, outcome, detail, &findings.violations)
            .await;
        result
    }

    /// Records the event, with the policy violations found about the action, in its own
    /// transaction: the action happened (or was refused) on the node whatever becomes of the
    /// caller's. A failure to record is logged.
    async fn audit(
        &self,
        actor: &Actor,
        node: &AgentRow,
        action: &NodeAction,
        outcome: &str,
        detail: Value,
        violations: &[NewViolation],
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
        if let Err(e) = self
            .store
            .record_audit_with_violations(&actor.org_id, event, violations)
            .await
        {
            tracing::error!(error = %e, "could not record audit event");
        }
    }

    async fn record(&self, org_id: &OrgId, event: NewAuditEvent) {
        if let Err(e) = self.store.record_audit(org_id, event).await {
            tracing::error!(error = %e, "could not record audit event");
        }
    }
}

/// An open exec session: the terminal's input goes through it, and its end is audited
/// (`container.exec_end`) by [`ExecSession::end`] — or, if it is dropped without that (a client
/// that never finished the WebSocket upgrade), in the background with the reason.
pub struct ExecSession {
    /// What warn policies said about the session.
    pub warnings: Vec<Notice>,
    door: NodeActions,
    actor: Actor,
    node: AgentRow,
    exec: ExecRequest,
    session_id: String,
    started: Instant,
    ended: bool,
}

impl ExecSession {
    pub fn id(&self) -> &str {
        &self.session_id
    }

    async fn input(
        &self,
        data: Vec<u8>,
        cols: u16,
        rows: u16,
        close: bool,
    ) -> Result<(), HubError> {
        self.door
            .router
            .exec_input(
                &self.node.id,
                ExecInput {
                    session_id: self.session_id.clone(),
                    data,
                    cols: u32::from(cols),
                    rows: u32::from(rows),
                    close,
                },
            )
            .await
    }

    /// Keystrokes (or pasted bytes) for the process.
    pub async fn write(&self, data: Vec<u8>) -> Result<(), HubError> {
        self.input(data, 0, 0, false).await
    }

    /// The terminal's new size (each clamped to 1–1000).
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), HubError> {
        self.input(Vec::new(), cols.clamp(1, 1000), rows.clamp(1, 1000), false)
            .await
    }

    /// Tells the process its terminal closed (the node ends it).
    pub async fn hang_up(&self) -> Result<(), HubError> {
        self.input(Vec::new(), 0, 0, true).await
    }

    /// Closes the stream and audits the end: the exit code when the process ended by itself,
    /// or why the host closed the terminal.
    pub async fn end(mut self, exit_code: Option<i32>, closed_by_host: Option<&str>) {
        self.ended = true;
        finish(
            &self.door,
            &self.actor,
            &self.node,
            &self.exec,
            &self.session_id,
            self.started,
            exit_code,
            closed_by_host,
        )
        .await;
    }
}

impl Drop for ExecSession {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                session_id = self.session_id,
                "an exec session was dropped outside a runtime; its end is not audited"
            );
            return;
        };
        let (door, actor, node, exec) = (
            self.door.clone(),
            self.actor.clone(),
            self.node.clone(),
            self.exec.clone(),
        );
        let (session_id, started) = (self.session_id.clone(), self.started);
        runtime.spawn(async move {
            let session = ExecSession {
                warnings: Vec::new(),
                door: door.clone(),
                actor: actor.clone(),
                node: node.clone(),
                exec: exec.clone(),
                session_id: session_id.clone(),
                started,
                ended: true,
            };
            let _ = session.hang_up().await;
            let reason = "the session was abandoned before its terminal opened";
            finish(
                &door,
                &actor,
                &node,
                &exec,
                &session_id,
                started,
                None,
                Some(reason),
            )
            .await;
        });
    }
}

/// The durable command of a container action, listed under the container asked for and sent
/// to `judged` (its full id when a guard read it).
fn container_command<'a>(
    actor: &'a Actor,
    node: &'a AgentRow,
    command: &'a ContainerCommand,
    judged: &str,
    idempotency_key: Option<String>,
) -> DurableCommand<'a> {
    let ContainerCommand {
        container,
        verb,
        timeout_seconds,
    } = command;
    DurableCommand {
        agent_id: &node.id,
        idempotency_key,
        kind: verb.as_str(),
        target: container,
        requested_by: &actor.label,
        body: command::Kind::ContainerAction(ContainerAction {
            container: judged.to_owned(),
            action: verb.wire() as i32,
            timeout_seconds: *timeout_seconds,
        }),
        expires_in: Duration::from_secs(u64::from(*timeout_seconds) + 60),
        wait: Duration::from_secs(u64::from(*timeout_seconds) + 30),
        seal: false,
    }
}

/// A container action's outcome as the node answered it.
fn action_done(outcome: Outcome) -> Result<ContainerActionDone, NodeActionError> {
    let done: ActionOutcome =
        serde_json::from_slice(&outcome.payload_json).map_err(|e| NodeActionError::Answer {
            command_id: outcome.command_id.clone(),
            message: e.to_string(),
        })?;
    Ok(ContainerActionDone {
        command_id: outcome.command_id,
        container: done.container,
        state: done.state,
        warnings: Vec::new(),
    })
}

/// The policies that found something, in an audit event's detail.
fn add_policies(detail: &mut Value, findings: &Findings) {
    if !findings.notices.is_empty() {
        detail["policies"] = json!(findings.notices);
    }
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    door: &NodeActions,
    actor: &Actor,
    node: &AgentRow,
    exec: &ExecRequest,
    session_id: &str,
    started: Instant,
    exit_code: Option<i32>,
    closed_by_host: Option<&str>,
) {
    door.router.close_stream(&node.id, session_id).await;
    let event = NewAuditEvent {
        actor_id: actor.user_id.clone(),
        actor: actor.label.clone(),
        action: "container.exec_end".into(),
        target: format!("container:{}/{}", node.id, exec.container),
        ip: actor.ip.clone(),
        outcome: "success".into(),
        detail: json!({"agent": node.name, "container": exec.container_name,
            "session_id": session_id, "exit_code": exit_code,
            "duration_ms": started.elapsed().as_millis() as u64,
            "closed_by_host": closed_by_host}),
    };
    door.record(&actor.org_id, event).await;
}
