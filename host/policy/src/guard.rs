//! The decision point: [`PolicyGuard`] is the node-action door's guard for policies. For every
//! action on a node it reads the organisation's enabled policies that apply to the node (its
//! labels carry every label of the policy's `node_labels`), and when there are any it builds the
//! normalised request — the container's effective configuration read from the node (Docker's
//! inspect answer through [`crate::normalise`]), the proxy hosts the change deploys — and asks
//! each policy's engine. A finding of a block policy refuses the action (nothing reaches the
//! node), of a warn policy comes back with the result, of an audit policy is only recorded; every
//! finding is a violation committed with the action's audit event. An engine that fails, times
//! out, or does not exist for a policy's type decides like a finding for block policies (fail
//! closed) and is recorded with its error.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use infrapilot_gateway::{HubError, NodeRouter};
use infrapilot_nodes::{
    ActionGuard, Actor, ContainerVerb, Findings, NodeAction, Notice, ProxyChange, Refusal,
    Unreachable,
};
use infrapilot_plugin_host::PolicyEngines;
use infrapilot_plugin_runtime::contract::policy_model::{
    self as model, Action, Container, Policy, ProxyHost, Request,
};
use infrapilot_proto::v1::{InspectContainer, command};
use infrapilot_store::{AgentRow, NewViolation, OrgId, PolicyRow, Store};
use serde_json::Value;

use crate::normalise::{EffectiveContainer, MountKind, normalise, normalise_inspect};

/// How long reading a container's configuration from its node may take (well within the door's
/// guard deadline, so a slow node is a recorded failure, not a guard timeout).
const INSPECT_WAIT: Duration = Duration::from_secs(3);

/// Why a request could not be built.
enum RequestError {
    /// The action cannot happen anyway (no such container, the node away): no decision, and
    /// nothing is sent.
    Moot(Unreachable, String),
    /// What the action is about could not be read: block policies fail closed.
    Unreadable(String),
}

/// The policies' guard at the node-action door.
pub struct PolicyGuard {
    store: Store,
    /// Set once the host's plugin runtime starts (after the door is built); until then, and on
    /// a host without it, policies cannot be evaluated and block policies fail closed.
    engines: Arc<OnceLock<PolicyEngines>>,
    router: Arc<dyn NodeRouter>,
}

impl PolicyGuard {
    pub fn new(
        store: Store,
        engines: Arc<OnceLock<PolicyEngines>>,
        router: Arc<dyn NodeRouter>,
    ) -> PolicyGuard {
        PolicyGuard {
            store,
            engines,
            router,
        }
    }

    /// The container's effective configuration, read from its node, and its full id.
    async fn inspect(
        &self,
        node: &AgentRow,
        container: &str,
    ) -> Result<(Container, String), RequestError> {
        let outcome = self
            .router
            .query(
                &node.id,
                command::Kind::InspectContainer(InspectContainer {
                    container: container.to_owned(),
                    raw: true,
                }),
                INSPECT_WAIT,
            )
            .await
            .map_err(|e| match e {
                HubError::Offline | HubError::Disconnected => {
                    RequestError::Moot(Unreachable::Offline, "the node is not connected".into())
                }
                HubError::Agent {
                    ref kind,
                    ref message,
                } if kind == "not_found" => {
                    RequestError::Moot(Unreachable::NotFound, message.clone())
                }
                other => RequestError::Unreadable(other.to_string()),
            })?;
        let body: Value = serde_json::from_slice(&outcome.payload_json)
            .map_err(|e| RequestError::Unreadable(format!("the node's answer is not JSON: {e}")))?;
        let effective =
            normalise_inspect(&body).map_err(|e| RequestError::Unreadable(e.to_string()))?;
        let id = body
            .get("Id")
            .and_then(Value::as_str)
            .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| RequestError::Unreadable("the node's answer has no full id".into()))?;
        Ok((to_model(effective), id.to_owned()))
    }

    /// The proxy hosts a change deploys.
    async fn proxy_hosts(
        &self,
        org_id: &OrgId,
        node: &AgentRow,
        change: &ProxyChange,
    ) -> Result<Vec<ProxyHost>, String> {
        let stored = async |id: Option<&str>| -> Result<Vec<ProxyHost>, String> {
            let mut tx = self.store.read(org_id).await.map_err(|e| e.to_string())?;
            let rows = tx
                .list_proxy_hosts(&node.id)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            rows.into_iter()
                .filter(|r| id.is_none_or(|id| r.id == id))
                .map(|r| {
                    let spec: Value = serde_json::from_str(&r.spec)
                        .map_err(|e| format!("proxy host {} is not readable: {e}", r.id))?;
                    Ok(proxy_host(&r.id, &spec))
                })
                .collect()
        };
        match change.kind.as_str() {
            "create" | "update" => Ok(change
                .spec
                .iter()
                .map(|spec| proxy_host(change.subject.as_deref().unwrap_or(""), spec))
                .collect()),
            "rollback" => Ok(change
                .hosts
                .as_ref()
                .and_then(Value::as_array)
                .map(|hosts| {
                    hosts
                        .iter()
                        .map(|h| proxy_host(h["id"].as_str().unwrap_or(""), &h["spec"]))
                        .collect()
                })
                .unwrap_or_default()),
            "delete" => stored(change.subject.as_deref()).await,
            "reapply" => stored(None).await,
            _ => Ok(Vec::new()),
        }
    }

    /// The request for `action`, with what it needs read from the node or the store, and the
    /// full id of the container read from the node (the one judged).
    async fn request(
        &self,
        actor: &Actor,
        role: &str,
        node: &AgentRow,
        action: &NodeAction,
    ) -> Result<(Request, Option<String>), RequestError> {
        let mut request = Request {
            action: action_kind(action),
            actor: actor.label.clone(),
            actor_role: role.to_owned(),
            node_id: node.id.clone(),
            node_name: node.name.clone(),
            node_labels: labels(&node.labels).into_iter().collect(),
            container: None,
            command: Vec::new(),
            proxy_hosts: Vec::new(),
            certificate: None,
            now_unix_ms: now_ms(),
        };
        let mut judged = None;
        match action {
            NodeAction::Container(c) => {
                request.container = match self.inspect(node, &c.container).await {
                    Ok((container, id)) => {
                        judged = Some(id);
                        Some(container)
                    }
                    // Stopping never waits for a readable configuration (an emergency stop
                    // goes ahead, judged without it); removing does (it cannot be undone).
                    Err(RequestError::Unreadable(_)) if c.verb == ContainerVerb::Stop => None,
                    Err(e) => return Err(e),
                };
            }
            NodeAction::Create(c) => {
                // What the node will create is the body itself; the name travels apart.
                let mut effective =
                    normalise(&c.body).map_err(|e| RequestError::Unreadable(e.to_string()))?;
                effective.name = c.name.clone();
                request.container = Some(to_model(effective));
            }
            NodeAction::Exec(e) => {
                let (container, id) = self.inspect(node, &e.container).await?;
                request.container = Some(container);
                judged = Some(id);
                request.command = e.command.clone();
            }
            NodeAction::Proxy(change) => {
                if change.kind == "certificate" {
                    request.certificate = change.subject.clone();
                }
                request.proxy_hosts = self
                    .proxy_hosts(&actor.org_id, node, change)
                    .await
                    .map_err(RequestError::Unreadable)?;
            }
        }
        Ok((request, judged))
    }

    /// The organisation's enabled policies that apply to `node`, and the actor's role.
    async fn applicable(
        &self,
        actor: &Actor,
        node: &AgentRow,
    ) -> Result<(Vec<PolicyRow>, String), String> {
        let mut tx = self
            .store
            .read(&actor.org_id)
            .await
            .map_err(|e| e.to_string())?;
        let policies = tx.list_policies(true).await.map_err(|e| e.to_string())?;
        // The role the request carries (an API token's may be narrower than its owner's);
        // the membership's for a person's request that carries none.
        let role = match (&actor.role, &actor.user_id, policies.is_empty()) {
            (_, _, true) => String::new(),
            (Some(role), _, false) => role.clone(),
            (None, Some(user), false) => tx
                .user_by_id(user)
                .await
                .map_err(|e| e.to_string())?
                .map(|u| u.role)
                .unwrap_or_default(),
            (None, None, false) => String::new(),
        };
        tx.commit().await.map_err(|e| e.to_string())?;
        let node_labels = labels(&node.labels);
        let policies = policies
            .into_iter()
            .filter(|p| applies_to(p, &node_labels))
            .collect();
        Ok((policies, role))
    }
}

#[async_trait]
impl ActionGuard for PolicyGuard {
    fn name(&self) -> &str {
        "the policy engine"
    }

    async fn check(
        &self,
        actor: &Actor,
        node: &AgentRow,
        action: &NodeAction,
    ) -> Result<Findings, Refusal> {
        let (policies, role) = self.applicable(actor, node).await.map_err(|e| Refusal {
            reason: format!("the policies could not be read: {e}"),
            findings: Findings::default(),
            unreachable: None,
        })?;
        if policies.is_empty() {
            return Ok(Findings::default());
        }
        let context = Context {
            actor: actor.label.clone(),
            resource: action.audit_target(node),
            agent_id: Some(node.id.clone()),
        };
        let Some(engines) = self.engines.get() else {
            let failure = "this host runs without the plugin runtime";
            return Decision::failed_all(&policies, failure, &context, action_kind(action))
                .into_result();
        };
        let (request, judged) = match self.request(actor, &role, node, action).await {
            Ok(answer) => answer,
            // Nothing to judge, so nothing is sent (a container made under that name meanwhile
            // was not judged): answered as the node would have answered.
            Err(RequestError::Moot(unreachable, reason)) => {
                return Err(Refusal {
                    reason,
                    findings: Findings::default(),
                    unreachable: Some(unreachable),
                });
            }
            Err(RequestError::Unreadable(e)) => {
                // Without the request no engine can decide: block policies fail closed, the
                // others are recorded as not evaluated.
                let failure = format!("what the action is about could not be read: {e}");
                let decision =
                    Decision::failed_all(&policies, &failure, &context, action_kind(action));
                return decision.into_result();
            }
        };
        let mut findings = decide(engines, &actor.org_id, &policies, &request, &context)
            .await
            .into_result()?;
        findings.judged_container = judged;
        Ok(findings)
    }
}

/// Who and what a decision is recorded about.
pub struct Context {
    pub actor: String,
    pub resource: String,
    pub agent_id: Option<String>,
}

/// What the policies decided about one request.
#[derive(Debug, Default)]
pub struct Decision {
    pub findings: Findings,
}

impl Decision {
    fn add(
        &mut self,
        policy: &PolicyRow,
        reasons: Vec<String>,
        engine_error: Option<String>,
        c: &Context,
        action: Action,
    ) {
        self.findings.notices.push(Notice {
            policy_id: policy.id.clone(),
            name: policy.name.clone(),
            action: policy.action.clone(),
            reasons: reasons.clone(),
        });
        self.findings.violations.push(NewViolation {
            policy_id: policy.id.clone(),
            policy_name: policy.name.clone(),
            action: action.as_str().to_owned(),
            resource: c.resource.clone(),
            agent_id: c.agent_id.clone(),
            decision: policy.action.clone(),
            reasons,
            actor: c.actor.clone(),
            engine_error,
        });
    }

    /// Every policy failed with `error` (no request could be built).
    fn failed_all(policies: &[PolicyRow], error: &str, c: &Context, action: Action) -> Decision {
        let mut decision = Decision::default();
        for p in policies {
            decision.add(
                p,
                vec![not_evaluated(p, error)],
                Some(error.to_owned()),
                c,
                action,
            );
        }
        decision
    }

    /// Whether a block policy found something.
    pub fn blocked(&self) -> bool {
        !self.findings.blocks().is_empty()
    }

    fn into_result(self) -> Result<Findings, Refusal> {
        let blocks = self.findings.blocks();
        if blocks.is_empty() {
            return Ok(self.findings);
        }
        let reason = blocks
            .iter()
            .map(|n| format!("{}: {}", n.name, n.reasons.join("; ")))
            .collect::<Vec<_>>()
            .join(" | ");
        Err(Refusal {
            reason: format!("refused by policy {reason}"),
            findings: self.findings,
            unreachable: None,
        })
    }
}

fn not_evaluated(policy: &PolicyRow, error: &str) -> String {
    if policy.action == "block" {
        format!("the policy could not be evaluated, so it refuses (fail closed): {error}")
    } else {
        format!("the policy could not be evaluated: {error}")
    }
}

/// Asks each policy's engine about `request`.
pub async fn decide(
    engines: &PolicyEngines,
    org_id: &OrgId,
    policies: &[PolicyRow],
    request: &Request,
    context: &Context,
) -> Decision {
    let mut decision = Decision::default();
    let loaded = match engines.loaded().await {
        Ok(loaded) => loaded,
        Err(e) => {
            let error = format!("the policy engines could not be listed: {e}");
            for p in policies {
                decision.add(
                    p,
                    vec![not_evaluated(p, &error)],
                    Some(error.clone()),
                    context,
                    request.action,
                );
            }
            alert_engine_failure(org_id, &error);
            return decision;
        }
    };
    // Policies by engine (index into `loaded`), in the order given.
    let mut groups: BTreeMap<usize, Vec<&PolicyRow>> = BTreeMap::new();
    for p in policies {
        match loaded
            .iter()
            .position(|e| e.types.iter().any(|t| t.id == p.policy_type))
        {
            Some(i) => groups.entry(i).or_default().push(p),
            None => {
                let error = format!(
                    "no enabled policy engine evaluates policies of type {}",
                    p.policy_type
                );
                decision.add(
                    p,
                    vec![not_evaluated(p, &error)],
                    Some(error.clone()),
                    context,
                    request.action,
                );
                alert_engine_failure(org_id, &error);
            }
        }
    }
    for (i, group) in groups {
        let engine = &loaded[i];
        let given: Vec<Policy> = group
            .iter()
            .map(|p| Policy {
                id: p.id.clone(),
                name: p.name.clone(),
                policy_type: p.policy_type.clone(),
                conditions: p.conditions.clone(),
            })
            .collect();
        match engines.evaluate(org_id, engine, &given, request).await {
            Ok(findings) => {
                for finding in findings {
                    if let Some(p) = group.iter().find(|p| p.id == finding.policy_id) {
                        decision.add(p, finding.reasons, None, context, request.action);
                    }
                }
            }
            Err(e) => {
                let error = e.to_string();
                alert_engine_failure(org_id, &error);
                for p in group {
                    decision.add(
                        p,
                        vec![not_evaluated(p, &error)],
                        Some(error.clone()),
                        context,
                        request.action,
                    );
                }
            }
        }
    }
    decision
}

/// An engine failure is logged; the alert engine's `policy_engine_failed` rule reads the
/// violations recorded with their engine error.
fn alert_engine_failure(org_id: &OrgId, error: &str) {
    tracing::error!(org = %org_id, error, "a policy engine failed; block policies fail closed");
}

/// Whether `policy` applies to a node with `node_labels`: every one of its labels is there.
pub fn applies_to(policy: &PolicyRow, node_labels: &BTreeMap<String, String>) -> bool {
    labels(&policy.node_labels)
        .iter()
        .all(|(k, v)| node_labels.get(k) == Some(v))
}

/// A JSON object of string labels (anything else in it is ignored; unreadable text is none).
pub fn labels(json_text: &str) -> BTreeMap<String, String> {
    serde_json::from_str::<BTreeMap<String, Value>>(json_text)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
        .collect()
}

/// The closed set of actions, from the door's.
pub fn action_kind(action: &NodeAction) -> Action {
    match action {
        NodeAction::Container(c) => match c.verb {
            ContainerVerb::Start => Action::ContainerStart,
            ContainerVerb::Stop => Action::ContainerStop,
            ContainerVerb::Restart => Action::ContainerRestart,
            ContainerVerb::Remove => Action::ContainerRemove,
        },
        NodeAction::Create(_) => Action::ContainerCreate,
        NodeAction::Exec(_) => Action::ContainerExec,
        NodeAction::Proxy(change) => match change.kind.as_str() {
            "create" => Action::ProxyCreate,
            "update" => Action::ProxyUpdate,
            "delete" => Action::ProxyDelete,
            "rollback" => Action::ProxyRollback,
            "reapply" => Action::ProxyReapply,
            // "certificate", and any kind added to the door later: the most guarded proxy
            // action, never none.
            _ => Action::CertificateChange,
        },
    }
}

/// A proxy host as policies see it, from its spec (the API's `ProxySpec` JSON).
fn proxy_host(id: &str, spec: &Value) -> ProxyHost {
    let tls = spec.get("tls").filter(|t| t.is_object());
    // nginx's first matching rule wins: the host is restricted when a deny of everyone comes
    // before any allow of everyone.
    let mut access_restricted = false;
    for rule in spec["access"].as_array().into_iter().flatten() {
        let source = rule["source"].as_str().unwrap_or_default();
        let everyone = source == "all" || source.ends_with("/0");
        match (rule["action"].as_str(), everyone) {
            // An allow of every address of one family: public (an IPv6 /0 beside an IPv4 one
            // makes it everyone).
            (Some("allow"), true) => break,
            (Some("deny"), true) => {
                access_restricted = true;
                break;
            }
            _ => {}
        }
    }
    ProxyHost {
        id: id.to_owned(),
        domains: spec["domains"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(str::to_owned))
            .collect(),
        tls: tls.is_some(),
        redirect_http: tls.is_some_and(|t| t["redirect_http"].as_bool().unwrap_or(true)),
        access_restricted,
    }
}

/// The host's normalised container in the contract's types.
pub fn to_model(c: EffectiveContainer) -> Container {
    Container {
        name: c.name,
        image: c.image,
        user: c.user,
        runs_as_root: c.runs_as_root,
        privileged: c.privileged,
        capabilities: c.capabilities.into_iter().collect(),
        all_capabilities: c.all_capabilities,
        host_namespaces: c.host_namespaces.into_iter().collect(),
        joins_containers: c.joins_containers.into_iter().collect(),
        seccomp_unconfined: c.seccomp_unconfined,
        apparmor_unconfined: c.apparmor_unconfined,
        selinux_disabled: c.selinux_disabled,
        system_paths_unconfined: c.system_paths_unconfined,
        mounts: c
            .mounts
            .into_iter()
            .map(|m| model::Mount {
                kind: match m.kind {
                    MountKind::Bind => model::MountKind::Bind,
                    MountKind::Volume => model::MountKind::Volume,
                    MountKind::Tmpfs => model::MountKind::Tmpfs,
                    MountKind::Device => model::MountKind::Device,
                    MountKind::VolumesFrom => model::MountKind::VolumesFrom,
                },
                source: m.source,
                target: m.target,
                read_only: m.read_only,
            })
            .collect(),
        restart_policy: c.restart_policy.unwrap_or_else(|| "no".into()),
        healthcheck: c.healthcheck,
        labels: c.labels.into_iter().collect(),
        created_at_unix_ms: c.created_at_unix_ms,
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
