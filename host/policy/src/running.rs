//! Policies against what runs now: the containers running on an organisation's nodes, each
//! judged as the `container.running` action. The dry run of a policy (before it is turned on)
//! and the periodic audit of running containers both come here; only the audit records what it
//! finds.

use std::sync::Arc;
use std::time::Duration;

use infrapilot_gateway::NodeRouter;
use infrapilot_plugin_host::PolicyEngines;
use infrapilot_plugin_runtime::contract::policy_model::{Action, Request};
use infrapilot_proto::model::ContainerList;
use infrapilot_proto::v1::{InspectContainer, ListContainers, command};
use infrapilot_store::{AgentRow, OrgId, PolicyRow};
use serde::Serialize;
use serde_json::Value;

use crate::guard::{Context, applies_to, decide, labels, to_model};
use crate::normalise::normalise;

/// How long one node may take to list or describe its containers.
const NODE_WAIT: Duration = Duration::from_secs(10);
/// Containers judged in one pass, at most (the rest are counted as skipped).
pub const MAX_CONTAINERS: usize = 2_000;

/// What one container broke.
#[derive(Debug, Clone, Serialize)]
pub struct RunningFinding {
    pub agent_id: String,
    pub node: String,
    pub container: String,
    /// `container:<node id>/<name>`.
    pub resource: String,
    pub policy_id: String,
    pub policy: String,
    /// `block`, `warn` or `audit` (what the policy would do to an action).
    pub action: String,
    pub reasons: Vec<String>,
}

/// A node that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct NodeError {
    pub agent_id: String,
    pub node: String,
    pub message: String,
}

/// The result of one pass over the running containers.
#[derive(Debug, Default, Serialize)]
pub struct RunningReport {
    pub nodes: usize,
    pub containers: usize,
    /// Running containers past [`MAX_CONTAINERS`], not judged.
    pub skipped: usize,
    pub findings: Vec<RunningFinding>,
    pub errors: Vec<NodeError>,
    /// The violations to record (the periodic audit records them; a dry run does not).
    #[serde(skip)]
    pub violations: Vec<infrapilot_store::NewViolation>,
}

/// Judges every running container of `nodes` (not revoked) against `policies` (each on the
/// nodes its labels select).
pub async fn check_running(
    engines: &PolicyEngines,
    router: &Arc<dyn NodeRouter>,
    org_id: &OrgId,
    nodes: &[AgentRow],
    policies: &[PolicyRow],
    actor: &str,
) -> RunningReport {
    let mut report = RunningReport::default();
    for node in nodes.iter().filter(|n| n.revoked_at.is_none()) {
        let node_labels = labels(&node.labels);
        let applicable: Vec<PolicyRow> = policies
            .iter()
            .filter(|p| applies_to(p, &node_labels))
            .cloned()
            .collect();
        if applicable.is_empty() {
            continue;
        }
        report.nodes += 1;
        let error = |message: String| NodeError {
            agent_id: node.id.clone(),
            node: node.name.clone(),
            message,
        };
        let list = match query(
            router,
            &node.id,
            command::Kind::ListContainers(ListContainers {
                include_stopped: false,
                with_stats: false,
            }),
        )
        .await
        .and_then(|v| serde_json::from_value::<ContainerList>(v).map_err(|e| e.to_string()))
        {
            Ok(list) => list,
            Err(e) => {
                report.errors.push(error(e));
                continue;
            }
        };
        for summary in list.containers.iter().filter(|c| c.state == "running") {
            if report.containers >= MAX_CONTAINERS {
                report.skipped += 1;
                continue;
            }
            let inspected = query(
                router,
                &node.id,
                command::Kind::InspectContainer(InspectContainer {
                    container: summary.id.clone(),
                    raw: true,
                }),
            )
            .await
            .and_then(|v| normalise(&v).map_err(|e| e.to_string()));
            let container = match inspected {
                Ok(c) => to_model(c),
                Err(e) => {
                    report
                        .errors
                        .push(error(format!("container {}: {e}", summary.name)));
                    continue;
                }
            };
            report.containers += 1;
            let resource = format!("container:{}/{}", node.id, summary.name);
            let request = Request {
                action: Action::ContainerRunning,
                actor: actor.to_owned(),
                actor_role: String::new(),
                node_id: node.id.clone(),
                node_name: node.name.clone(),
                node_labels: node_labels.clone().into_iter().collect(),
                container: Some(container),
                command: Vec::new(),
                proxy_hosts: Vec::new(),
                certificate: None,
                now_unix_ms: crate::guard::now_ms(),
            };
            let context = Context {
                actor: actor.to_owned(),
                resource: resource.clone(),
                agent_id: Some(node.id.clone()),
            };
            let decision = decide(engines, org_id, &applicable, &request, &context).await;
            for notice in &decision.findings.notices {
                report.findings.push(RunningFinding {
                    agent_id: node.id.clone(),
                    node: node.name.clone(),
                    container: summary.name.clone(),
                    resource: resource.clone(),
                    policy_id: notice.policy_id.clone(),
                    policy: notice.name.clone(),
                    action: notice.action.clone(),
                    reasons: notice.reasons.clone(),
                });
            }
            report.violations.extend(decision.findings.violations);
        }
    }
    report
}

async fn query(
    router: &Arc<dyn NodeRouter>,
    agent_id: &str,
    body: command::Kind,
) -> Result<Value, String> {
    let outcome = router
        .query(agent_id, body, NODE_WAIT)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&outcome.payload_json).map_err(|e| e.to_string())
}

/// How long a running container's violation of a policy is not recorded again.
pub const AUDIT_REPEAT_MS: i64 = 24 * 3600 * 1000;

/// The periodic audit: every organisation's running containers against its enabled policies;
/// what they break is recorded as `container.running` violations (decision `audit`: nothing was
/// refused), at most once a day per container and policy. Returns the violations recorded.
pub async fn audit_running(
    store: &infrapilot_store::Store,
    engines: &PolicyEngines,
    router: &Arc<dyn NodeRouter>,
) -> Result<usize, infrapilot_store::StoreError> {
    let mut recorded = 0;
    for org in store.organization_ids().await? {
        // One organisation's failure does not hold up the others.
        match audit_organisation(store, engines, router, &org).await {
            Ok(n) => recorded += n,
            Err(e) => {
                tracing::warn!(org = %org.as_str(), error = %e, "the audit of running containers failed for an organisation")
            }
        }
    }
    Ok(recorded)
}

async fn audit_organisation(
    store: &infrapilot_store::Store,
    engines: &PolicyEngines,
    router: &Arc<dyn NodeRouter>,
    org: &OrgId,
) -> Result<usize, infrapilot_store::StoreError> {
    {
        let org = org.clone();
        let (policies, nodes) = {
            let mut tx = store.read(&org).await?;
            let policies = tx.list_policies(true).await?;
            let nodes = if policies.is_empty() {
                Vec::new()
            } else {
                tx.list_agents().await?
            };
            tx.commit().await?;
            (policies, nodes)
        };
        if policies.is_empty() {
            return Ok(0);
        }
        let report = check_running(engines, router, &org, &nodes, &policies, "system").await;
        for e in &report.errors {
            tracing::warn!(org = %org.as_str(), node = e.node, error = e.message, "the audit of running containers could not read a node");
        }
        let mut tx = store.write(&org).await?;
        let since = crate::guard::now_ms() - AUDIT_REPEAT_MS;
        let mut fresh = Vec::new();
        for mut v in report.violations {
            // An engine failure is recorded each time (the alert rule counts them); a finding
            // once a day.
            if v.engine_error.is_some()
                || !tx
                    .violation_seen_since(&v.policy_id, &v.resource, &v.action, since)
                    .await?
            {
                v.decision = "audit".into();
                fresh.push(v);
            }
        }
        tx.insert_violations(&fresh, None).await?;
        tx.commit().await?;
        Ok(fresh.len())
    }
}
