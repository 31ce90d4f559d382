//! The rules engine and the delivery worker.
//!
//! Every tick, for each organisation: read the Docker events stored since the engine's cursor
//! (container crashed, restart loop), sample CPU and memory of running containers on nodes
//! connected to this process (over threshold for a duration), and look at node status (offline).
//! A condition opens an event (firing) unless one is open for the same rule and target or the
//! rule's cooldown since the last one has not passed (then the occurrence is counted on it); the
//! condition clearing resolves it. Each transition queues one delivery per channel of the rule;
//! the worker delivers through the channel's plugin and retries failures with exponential backoff.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infrapilot_gateway::AgentHub;
use infrapilot_identity::SecretBox;
use infrapilot_plugin_host::PluginHost;
use infrapilot_plugin_runtime::contract::{Alert, AlertState, Severity as WitSeverity};
use infrapilot_plugin_runtime::runtime::Invocation;
use infrapilot_proto::model::ContainerList;
use infrapilot_proto::v1::{ListContainers, command};
use infrapilot_store::{
    AgentRow, AlertChannelRow, AlertEventRow, AlertRuleRow, DockerEventRow, OrgId, Store,
    StoreError, Tx, now_ms,
};

use crate::rules::{RuleKind, RuleParams, Severity};

/// Tunables, with production defaults.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How often rules are evaluated and due deliveries sent.
    pub tick: Duration,
    /// Delay before the first retry; doubled after each failure.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Attempts before a delivery is marked failed.
    pub max_attempts: i64,
    /// Agents' heartbeat interval (two missed ones mean offline).
    pub heartbeat_seconds: u32,
    /// The dashboard's URL, for links in alerts.
    pub public_url: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            tick: Duration::from_secs(5),
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(15 * 60),
            max_attempts: 6,
            heartbeat_seconds: 30,
            public_url: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("channel {0} not found")]
    NoChannel(String),
    #[error("{0}")]
    Plugin(String),
    #[error("the channel's secrets cannot be opened: {0}")]
    Secrets(String),
    #[error(transparent)]
    LogSink(#[from] infrapilot_store::LogSinkError),
}

/// Where the log rules count lines: the log sink when the operator configured one, else the
/// database (in a read transaction: on SQLite the writer is not held while lines are counted).
enum LogCounts<'a> {
    Sink(&'a OrgId, Arc<dyn infrapilot_store::LogSink>),
    Database(infrapilot_store::Tx),
}

impl LogCounts<'_> {
    async fn by_container(
        &mut self,
        since_ns: i64,
        until_ns: i64,
        level: &str,
    ) -> Result<infrapilot_store::ContainerCounts, AlertError> {
        Ok(match self {
            LogCounts::Sink(org_id, sink) => {
                sink.count_by_container(org_id, since_ns, until_ns, level)
                    .await?
            }
            LogCounts::Database(reads) => {
                reads
                    .count_log_lines_by_container(since_ns, until_ns, level)
                    .await?
            }
        })
    }

    async fn proxy_statuses(
        &mut self,
        since_ns: i64,
        until_ns: i64,
    ) -> Result<infrapilot_store::ProxyCounts, AlertError> {
        Ok(match self {
            LogCounts::Sink(org_id, sink) => {
                sink.proxy_status_counts(org_id, since_ns, until_ns).await?
            }
            LogCounts::Database(reads) => reads.proxy_status_counts(since_ns, until_ns).await?,
        })
    }
}

/// How long a worker holds a delivery before another may retry it.
const DELIVERY_LEASE_MS: i64 = 120_000;
/// Docker events read per organisation and tick.
const EVENTS_PER_TICK: i64 = 500;
/// A `die` this soon after a `kill` of the same container was asked for (stop, restart, kill).
const KILL_GRACE_MS: i64 = 30_000;

struct Inner {
    store: Store,
    plugins: PluginHost,
    hub: AgentHub,
    secrets: Arc<SecretBox>,
    config: EngineConfig,
    /// Since when a (rule, target) has been over its threshold, for CPU and memory rules.
    over_since: Mutex<HashMap<(String, String), i64>>,
}

/// The alerting engine; cheap to clone.
#[derive(Clone)]
pub struct AlertEngine {
    inner: Arc<Inner>,
}

/// The outcome of a "send test".
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestOutcome {
    pub delivered: bool,
    /// What the channel reported ("HTTP 200", "250 queued …"), or why it failed.
    pub detail: String,
}

/// The secrets of a channel sealed for storage (purpose bound to the channel id).
pub fn seal_channel_secrets(
    secrets: &SecretBox,
    channel_id: &str,
    values: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<Vec<u8>>, AlertError> {
    if values.is_empty() {
        return Ok(None);
    }
    let text = serde_json::to_vec(values).map_err(|e| AlertError::Secrets(e.to_string()))?;
    secrets
        .seal(&format!("alert-channel:{channel_id}"), &text)
        .map(Some)
        .map_err(|e| AlertError::Secrets(e.to_string()))
}

/// Opens the sealed secrets of a channel.
pub fn open_channel_secrets(
    secrets: &SecretBox,
    channel: &AlertChannelRow,
) -> Result<serde_json::Map<String, serde_json::Value>, AlertError> {
    let Some(sealed) = &channel.secrets else {
        return Ok(Default::default());
    };
    let bytes = secrets
        .open(&format!("alert-channel:{}", channel.id), sealed)
        .map_err(|e| AlertError::Secrets(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| AlertError::Secrets(e.to_string()))
}

fn wit_severity(s: &str) -> WitSeverity {
    match Severity::parse(s) {
        Some(Severity::Info) => WitSeverity::Info,
        Some(Severity::Critical) => WitSeverity::Critical,
        _ => WitSeverity::Warning,
    }
}

/// Whether a repeated condition is a new occurrence or the same one still holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Count,
    Ongoing,
}

fn container_target(agent_id: &str, name: &str) -> String {
    format!("container:{agent_id}/{name}")
}

fn matches_container(params: &RuleParams, name: &str) -> bool {
    params.container.as_deref().is_none_or(|c| c == name)
}

fn rule_params(rule: &AlertRuleRow) -> RuleParams {
    serde_json::from_str(&rule.params).unwrap_or_default()
}

fn rule_channels(rule: &AlertRuleRow) -> Vec<String> {
    serde_json::from_str(&rule.channel_ids).unwrap_or_default()
}

impl AlertEngine {
    pub fn new(
        store: Store,
        plugins: PluginHost,
        hub: AgentHub,
        secrets: Arc<SecretBox>,
        config: EngineConfig,
    ) -> AlertEngine {
        AlertEngine {
            inner: Arc::new(Inner {
                store,
                plugins,
                hub,
                secrets,
                config,
                over_since: Mutex::default(),
            }),
        }
    }

    pub fn secrets(&self) -> &SecretBox {
        &self.inner.secrets
    }

    pub fn plugins(&self) -> &PluginHost {
        &self.inner.plugins
    }

    /// Runs the engine until the task is dropped.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(engine.inner.config.tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                engine.tick().await;
            }
        })
    }

    /// One evaluation of every organisation, then the due deliveries.
    pub async fn tick(&self) {
        match self.inner.store.organization_ids().await {
            Ok(orgs) => {
                for org in orgs {
                    if let Err(e) = self.evaluate(&org).await {
                        tracing::warn!(org = %org, error = %e, "alert evaluation failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "alert evaluation: no organisations"),
        }
        if let Err(e) = self.deliver_due().await {
            tracing::warn!(error = %e, "alert deliveries failed");
        }
    }

    /// Evaluates the rules of one organisation.
    pub async fn evaluate(&self, org_id: &OrgId) -> Result<(), AlertError> {
        let (rules, agents) = {
            let mut tx = self.inner.store.read(org_id).await?;
            let rules: Vec<AlertRuleRow> = tx
                .list_alert_rules()
                .await?
                .into_iter()
                .filter(|r| r.enabled)
                .collect();
            let agents = tx.list_agents().await?;
            tx.commit().await?;
            (rules, agents)
        };
        // Each part on its own: a failure in one (logged) does not hold up the others.
        let results = [
            ("docker events", self.evaluate_events(org_id, &rules).await),
            (
                "node status",
                self.evaluate_nodes(org_id, &rules, &agents).await,
            ),
            ("usage", self.evaluate_usage(org_id, &rules, &agents).await),
            (
                "certificates",
                self.evaluate_certificates(org_id, &rules, &agents).await,
            ),
            ("logs", self.evaluate_logs(org_id, &rules).await),
            ("policies", self.evaluate_policies(org_id, &rules).await),
        ];
        let mut first_error = None;
        for (part, result) in results {
            if let Err(e) = result {
                tracing::warn!(org = %org_id, part, error = %e, "alert evaluation failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn evaluate_events(
        &self,
        org_id: &OrgId,
        rules: &[AlertRuleRow],
    ) -> Result<(), AlertError> {
        let mut tx = self.inner.store.write(org_id).await?;
        let cursor = tx.alert_cursor().await?;
        let Some(seen) = cursor else {
            // First run: start from now, not from the stored history.
            let last = tx.last_docker_event_id().await?;
            tx.advance_alert_cursor(None, last).await?;
            tx.commit().await?;
            return Ok(());
        };
        let events = tx.docker_events_after(seen, EVENTS_PER_TICK).await?;
        let Some(last) = events.last().map(|e| e.id) else {
            return Ok(());
        };
        for event in &events {
            for rule in rules {
                self.apply_event(&mut tx, rule, event).await?;
            }
        }
        if tx.advance_alert_cursor(Some(seen), last).await? {
            tx.commit().await?;
        }
        // else another replica processed these events first: roll back ours.
        Ok(())
    }

    async fn apply_event(
        &self,
        tx: &mut Tx,
        rule: &AlertRuleRow,
        event: &DockerEventRow,
    ) -> Result<(), AlertError> {
        if rule
            .agent_id
            .as_deref()
            .is_some_and(|a| a != event.agent_id)
        {
            return Ok(());
        }
        let params = rule_params(rule);
        if !matches_container(&params, &event.container_name) {
            return Ok(());
        }
        let target = container_target(&event.agent_id, &event.container_name);
        match (RuleKind::parse(&rule.kind), event.action.as_str()) {
            (Some(RuleKind::ContainerCrashed), "die") => {
                let code = event.exit_code.unwrap_or(0);
                if code == 0 {
                    return Ok(());
                }
                let asked = tx
                    .count_container_events(
                        &event.agent_id,
                        &event.container_id,
                        "kill",
                        event.time_ms - KILL_GRACE_MS,
                        event.time_ms,
                    )
                    .await?;
                if asked > 0 {
                    return Ok(());
                }
                let summary = format!("{} exited with code {code}", event.container_name);
                self.fire(tx, rule, &target, &summary, event.time_ms, Repeat::Count)
                    .await
            }
            (Some(RuleKind::ContainerCrashed), "start") => {
                self.resolve(tx, rule, &target, event.time_ms).await
            }
            (Some(RuleKind::RestartLoop), "start") => {
                let window = i64::from(params.window_seconds.unwrap_or(300));
                let limit = i64::from(params.restarts.unwrap_or(3));
                let starts = tx
                    .count_container_events(
                        &event.agent_id,
                        &event.container_id,
                        "start",
                        event.time_ms - window * 1000,
                        event.time_ms,
                    )
                    .await?;
                if starts >= limit {
                    let summary = format!(
                        "{} started {starts} times within {window} s (limit {limit})",
                        event.container_name
                    );
                    self.fire(tx, rule, &target, &summary, event.time_ms, Repeat::Count)
                        .await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Node status, and restart loops that calmed down.
    async fn evaluate_nodes(
        &self,
        org_id: &OrgId,
        rules: &[AlertRuleRow],
        agents: &[AgentRow],
    ) -> Result<(), AlertError> {
        let relevant = rules.iter().any(|r| {
            matches!(
                RuleKind::parse(&r.kind),
                Some(RuleKind::NodeOffline | RuleKind::RestartLoop)
            )
        });
        if !relevant {
            return Ok(());
        }
        let now = now_ms();
        let window_ms = i64::from(self.inner.config.heartbeat_seconds) * 2 * 1000 + 5_000;
        let mut tx = self.inner.store.write(org_id).await?;
        for rule in rules {
            match RuleKind::parse(&rule.kind) {
                Some(RuleKind::NodeOffline) => {
                    for agent in agents.iter().filter(|a| a.revoked_at.is_none()) {
                        if rule.agent_id.as_deref().is_some_and(|a| a != agent.id) {
                            continue;
                        }
                        let online = self.inner.hub.is_connected(&agent.id)
                            || agent.last_seen_at.is_some_and(|t| now - t < window_ms);
                        let target = format!("agent:{}", agent.id);
                        if online {
                            self.resolve(&mut tx, rule, &target, now).await?;
                        } else {
                            let summary = format!(
                                "node {} is offline (last heard from {})",
                                agent.name,
                                agent
                                    .last_seen_at
                                    .map(|t| format!("{} s ago", (now - t) / 1000))
                                    .unwrap_or_else(|| "never".into())
                            );
                            self.fire(&mut tx, rule, &target, &summary, now, Repeat::Ongoing)
                                .await?;
                        }
                    }
                }
                Some(RuleKind::RestartLoop) => {
                    let params = rule_params(rule);
                    let window = i64::from(params.window_seconds.unwrap_or(300));
                    let limit = i64::from(params.restarts.unwrap_or(3));
                    for open in tx.firing_alert_events(&rule.id).await? {
                        let Some((agent_id, name)) = open
                            .target
                            .strip_prefix("container:")
                            .and_then(|t| t.split_once('/'))
                        else {
                            continue;
                        };
                        let recent = tx.list_docker_events(agent_id, None, Some(name), 1).await?;
                        let starts = match recent.first() {
                            Some(e) => {
                                tx.count_container_events(
                                    agent_id,
                                    &e.container_id,
                                    "start",
                                    now - window * 1000,
                                    i64::MAX,
                                )
                                .await?
                            }
                            None => 0,
                        };
                        if starts < limit {
                            self.resolve(&mut tx, rule, &open.target, now).await?;
                        }
                    }
                }
                _ => {}
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Error spikes in containers' logs, and 5xx rates of proxy hosts from their nginx access
    /// lines, over the stored logs (issue 17).
    async fn evaluate_logs(
        &self,
        org_id: &OrgId,
        rules: &[AlertRuleRow],
    ) -> Result<(), AlertError> {
        let of_kind = |kind: RuleKind| -> Vec<&AlertRuleRow> {
            rules
                .iter()
                .filter(|r| RuleKind::parse(&r.kind) == Some(kind))
                .collect()
        };
        let (spikes, rates) = (
            of_kind(RuleKind::LogErrorSpike),
            of_kind(RuleKind::ProxyErrorRate),
        );
        if spikes.is_empty() && rates.is_empty() {
            return Ok(());
        }
        const MINUTE_NS: i64 = 60 * 1_000_000_000;
        let now = now_ms();
        let now_ns = now.saturating_mul(1_000_000);
        // Counted first; the write transaction below only fires and resolves.
        let mut reads = match self.inner.hub.log_sink() {
            Some(sink) => LogCounts::Sink(org_id, sink),
            None => LogCounts::Database(self.inner.store.read(org_id).await?),
        };
        let mut last_minute = Vec::new();
        let mut baselines: HashMap<u32, HashMap<(String, String), i64>> = HashMap::new();
        if !spikes.is_empty() {
            last_minute = reads
                .by_container(now_ns - MINUTE_NS, now_ns, "error")
                .await?;
            for rule in &spikes {
                let minutes = rule_params(rule).baseline_minutes.unwrap_or(30).max(1);
                if let std::collections::hash_map::Entry::Vacant(slot) = baselines.entry(minutes) {
                    let before = reads
                        .by_container(
                            now_ns - MINUTE_NS * (i64::from(minutes) + 1),
                            now_ns - MINUTE_NS,
                            "error",
                        )
                        .await?;
                    slot.insert(before.into_iter().map(|(a, c, n)| ((a, c), n)).collect());
                }
            }
        }
        let mut windows: HashMap<u32, Vec<(String, String, i64, i64)>> = HashMap::new();
        for rule in &rates {
            let window = rule_params(rule).window_seconds.unwrap_or(300);
            if let std::collections::hash_map::Entry::Vacant(slot) = windows.entry(window) {
                let counts = reads
                    .proxy_statuses(now_ns - i64::from(window) * 1_000_000_000, now_ns)
                    .await?;
                slot.insert(counts);
            }
        }
        drop(reads);
        let mut tx = self.inner.store.write(org_id).await?;
        if !spikes.is_empty() {
            for rule in spikes {
                let params = rule_params(rule);
                let minutes = params.baseline_minutes.unwrap_or(30).max(1);
                let baseline = &baselines[&minutes];
                let min_errors = i64::from(params.min_errors.unwrap_or(10));
                let factor = params.factor.unwrap_or(3.0);
                let mut spiking = HashSet::new();
                for (agent, container, n) in &last_minute {
                    if rule.agent_id.as_deref().is_some_and(|a| a != agent)
                        || !matches_container(&params, container)
                    {
                        continue;
                    }
                    let per_minute = baseline
                        .get(&(agent.clone(), container.clone()))
                        .copied()
                        .unwrap_or(0) as f64
                        / f64::from(minutes);
                    if *n >= min_errors && *n as f64 >= factor * per_minute {
                        let target = container_target(agent, container);
                        let summary = format!(
                            "{container}: {n} error lines in the last minute (baseline {per_minute:.1} a minute over {minutes} min)"
                        );
                        self.fire(&mut tx, rule, &target, &summary, now, Repeat::Ongoing)
                            .await?;
                        spiking.insert(target);
                    }
                }
                for open in tx.firing_alert_events(&rule.id).await? {
                    if !spiking.contains(&open.target) {
                        self.resolve(&mut tx, rule, &open.target, now).await?;
                    }
                }
            }
        }
        for rule in rates {
            let params = rule_params(rule);
            let window = params.window_seconds.unwrap_or(300);
            let threshold = params.threshold_percent.unwrap_or(5.0);
            let min_requests = i64::from(params.min_requests.unwrap_or(20));
            let mut failing = HashSet::new();
            for (agent, host, all, errors) in &windows[&window] {
                if rule.agent_id.as_deref().is_some_and(|a| a != agent)
                    || params.proxy_host.as_deref().is_some_and(|h| h != host)
                {
                    continue;
                }
                let share = *errors as f64 * 100.0 / (*all).max(1) as f64;
                if *all >= min_requests && share > threshold {
                    let name = tx
                        .proxy_host(agent, host)
                        .await?
                        .and_then(|h| serde_json::from_str::<serde_json::Value>(&h.spec).ok())
                        .and_then(|spec| spec["domains"][0].as_str().map(str::to_owned))
                        .unwrap_or_else(|| host.clone());
                    let target = format!("proxy:{agent}/{host}");
                    let summary = format!(
                        "{name}: {share:.1} % of {all} requests answered 5xx in the last {window} s (over {threshold} %)"
                    );
                    self.fire(&mut tx, rule, &target, &summary, now, Repeat::Ongoing)
                        .await?;
                    failing.insert(target);
                }
            }
            for open in tx.firing_alert_events(&rule.id).await? {
                if !failing.contains(&open.target) {
                    self.resolve(&mut tx, rule, &open.target, now).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Proxy certificates as the nodes last reported them: fires when one expires within the
    /// rule's days (or has expired), resolves when it was renewed or its host is gone.
    /// Policy engines that could not decide (their block policies failed closed), from the
    /// violations recorded with an engine error within each rule's window.
    async fn evaluate_policies(
        &self,
        org_id: &OrgId,
        rules: &[AlertRuleRow],
    ) -> Result<(), AlertError> {
        let policy_rules: Vec<&AlertRuleRow> = rules
            .iter()
            .filter(|r| RuleKind::parse(&r.kind) == Some(RuleKind::PolicyEngineFailed))
            .collect();
        if policy_rules.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.inner.store.write(org_id).await?;
        for rule in policy_rules {
            let window = i64::from(rule_params(rule).window_seconds.unwrap_or(300));
            let failures = tx.engine_failures_since(now - window * 1000).await?;
            let target = "policies".to_owned();
            match failures.first() {
                Some((count, last_error)) if *count > 0 => {
                    let summary = format!(
                        "a policy engine could not decide {count} time(s) in the last {window} s (block policies refuse what they cannot judge): {last_error}"
                    );
                    self.fire(&mut tx, rule, &target, &summary, now, Repeat::Ongoing)
                        .await?;
                }
                _ => self.resolve(&mut tx, rule, &target, now).await?,
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn evaluate_certificates(
        &self,
        org_id: &OrgId,
        rules: &[AlertRuleRow],
        agents: &[AgentRow],
    ) -> Result<(), AlertError> {
        let cert_rules: Vec<&AlertRuleRow> = rules
            .iter()
            .filter(|r| RuleKind::parse(&r.kind) == Some(RuleKind::CertificateExpiring))
            .collect();
        if cert_rules.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.inner.store.write(org_id).await?;
        let reports = tx.list_proxy_status().await?;
        for rule in cert_rules {
            let days = i64::from(rule_params(rule).days.unwrap_or(14));
            let mut seen = Vec::new();
            for (agent_id, row) in &reports {
                if rule.agent_id.as_deref().is_some_and(|a| a != agent_id) {
                    continue;
                }
                let node = agents
                    .iter()
                    .find(|a| &a.id == agent_id)
                    .map(|a| a.name.as_str())
                    .unwrap_or("?");
                let Ok(status) =
                    serde_json::from_str::<infrapilot_proto::model::ProxyNodeStatus>(&row.status)
                else {
                    continue;
                };
                for cert in &status.certificates {
                    let target = format!("certificate:{agent_id}/{}", cert.host_id);
                    seen.push(target.clone());
                    let Ok(not_after) = time::OffsetDateTime::parse(
                        &cert.not_after,
                        &time::format_description::well_known::Rfc3339,
                    ) else {
                        continue;
                    };
                    let left_ms = (not_after.unix_timestamp() * 1000) - now;
                    if left_ms < days * 86_400_000 {
                        let when = if left_ms <= 0 {
                            "has expired".to_owned()
                        } else {
                            format!("expires in {} days", left_ms / 86_400_000)
                        };
                        let error = cert
                            .error
                            .as_ref()
                            .map(|e| format!("; last renewal failed: {e}"))
                            .unwrap_or_default();
                        let summary = format!(
                            "the certificate of {} on node {node} {when} ({}){error}",
                            cert.domains.join(", "),
                            cert.not_after
                        );
                        self.fire(&mut tx, rule, &target, &summary, now, Repeat::Ongoing)
                            .await?;
                    } else {
                        self.resolve(&mut tx, rule, &target, now).await?;
                    }
                }
            }
            for open in tx.firing_alert_events(&rule.id).await? {
                if !seen.contains(&open.target) {
                    self.resolve(&mut tx, rule, &open.target, now).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// CPU and memory of running containers on nodes connected to this process.
    async fn evaluate_usage(
        &self,
        org_id: &OrgId,
        rules: &[AlertRuleRow],
        agents: &[AgentRow],
    ) -> Result<(), AlertError> {
        let usage_rules: Vec<&AlertRuleRow> = rules
            .iter()
            .filter(|r| {
                matches!(
                    RuleKind::parse(&r.kind),
                    Some(RuleKind::CpuHigh | RuleKind::MemoryHigh)
                )
            })
            .collect();
        if usage_rules.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        for agent in agents {
            if agent.revoked_at.is_some() || !self.inner.hub.is_connected(&agent.id) {
                continue;
            }
            let rules_here: Vec<&&AlertRuleRow> = usage_rules
                .iter()
                .filter(|r| r.agent_id.as_deref().is_none_or(|a| a == agent.id))
                .collect();
            if rules_here.is_empty() {
                continue;
            }
            let outcome = match self
                .inner
                .hub
                .query(
                    &agent.id,
                    command::Kind::ListContainers(ListContainers {
                        include_stopped: false,
                        with_stats: true,
                    }),
                    Duration::from_secs(10),
                )
                .await
            {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(agent = %agent.id, error = %e, "no usage sample");
                    continue;
                }
            };
            let Ok(list) = serde_json::from_slice::<ContainerList>(&outcome.payload_json) else {
                continue;
            };
            let mut tx = self.inner.store.write(org_id).await?;
            let mut sampled: HashSet<String> = HashSet::new();
            for rule in &rules_here {
                let params = rule_params(rule);
                let kind = RuleKind::parse(&rule.kind);
                let threshold = params.threshold_percent.unwrap_or(100.0);
                let duration_ms = i64::from(params.duration_seconds.unwrap_or(60)) * 1000;
                for c in &list.containers {
                    if !matches_container(&params, &c.name) {
                        continue;
                    }
                    let value = match kind {
                        Some(RuleKind::CpuHigh) => c.cpu_percent,
                        _ => match (c.memory_bytes, c.memory_limit_bytes) {
                            (Some(used), Some(limit)) if limit > 0 => {
                                Some(used as f64 * 100.0 / limit as f64)
                            }
                            _ => None,
                        },
                    };
                    let Some(value) = value else { continue };
                    let target = container_target(&agent.id, &c.name);
                    sampled.insert(target.clone());
                    let key = (rule.id.clone(), target.clone());
                    if value > threshold {
                        let since = {
                            let mut over = self.inner.over_since.lock().expect("not poisoned");
                            *over.entry(key).or_insert(now)
                        };
                        if now - since >= duration_ms {
                            let what = if kind == Some(RuleKind::CpuHigh) {
                                "CPU"
                            } else {
                                "memory"
                            };
                            let summary = format!(
                                "{} {what} at {value:.1} % (over {threshold} % for {} s)",
                                c.name,
                                (now - since) / 1000
                            );
                            self.fire(&mut tx, rule, &target, &summary, now, Repeat::Ongoing)
                                .await?;
                        }
                    } else {
                        self.inner
                            .over_since
                            .lock()
                            .expect("not poisoned")
                            .remove(&key);
                        self.resolve(&mut tx, rule, &target, now).await?;
                    }
                }
                // Containers that stopped running are no longer over anything: their clocks stop
                // (a later spike starts a new duration) and their alerts resolve.
                {
                    let prefix = format!("container:{}/", agent.id);
                    let mut over = self.inner.over_since.lock().expect("not poisoned");
                    over.retain(|(rule_id, target), _| {
                        rule_id != &rule.id
                            || !target.starts_with(&prefix)
                            || sampled.contains(target)
                    });
                }
                // Containers that stopped running are no longer over anything.
                for open in tx.firing_alert_events(&rule.id).await? {
                    if open.target.starts_with(&format!("container:{}/", agent.id))
                        && !sampled.contains(&open.target)
                    {
                        self.resolve(&mut tx, rule, &open.target, now).await?;
                    }
                }
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Opens an event (with deliveries) unless one is open or the cooldown has not passed.
    /// A discrete occurrence (a crash, a start) is counted on the open or cooling event; a
    /// condition that simply still holds (offline, over a threshold) is not.
    async fn fire(
        &self,
        tx: &mut Tx,
        rule: &AlertRuleRow,
        target: &str,
        summary: &str,
        at: i64,
        repeat: Repeat,
    ) -> Result<(), AlertError> {
        if let Some(latest) = tx.latest_alert_event(&rule.id, target).await? {
            let cooling = latest.fired_at + rule.cooldown_seconds * 1000 > at;
            if latest.state == "firing" || cooling {
                if repeat == Repeat::Count {
                    tx.count_alert_occurrence(&latest.id).await?;
                }
                return Ok(());
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        if !tx
            .insert_alert_event(&id, &rule.id, target, &rule.severity, summary, at)
            .await?
        {
            return Ok(());
        }
        tracing::info!(rule = %rule.name, target, summary, "alert firing");
        for channel in self.existing_channels(tx, rule).await? {
            tx.insert_alert_delivery(&uuid::Uuid::new_v4().to_string(), &id, &channel, "firing")
                .await?;
        }
        Ok(())
    }

    /// The rule's channels that still exist.
    async fn existing_channels(
        &self,
        tx: &mut Tx,
        rule: &AlertRuleRow,
    ) -> Result<Vec<String>, AlertError> {
        let mut out = Vec::new();
        for id in rule_channels(rule) {
            if tx.alert_channel(&id).await?.is_some() {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Resolves the open event of a rule and target, if any.
    async fn resolve(
        &self,
        tx: &mut Tx,
        rule: &AlertRuleRow,
        target: &str,
        at: i64,
    ) -> Result<(), AlertError> {
        let Some(latest) = tx.latest_alert_event(&rule.id, target).await? else {
            return Ok(());
        };
        if latest.state != "firing" || !tx.resolve_alert_event(&latest.id, at).await? {
            return Ok(());
        }
        tracing::info!(rule = %rule.name, target, "alert resolved");
        for channel in self.existing_channels(tx, rule).await? {
            tx.insert_alert_delivery(
                &uuid::Uuid::new_v4().to_string(),
                &latest.id,
                &channel,
                "resolved",
            )
            .await?;
        }
        Ok(())
    }

    /// Sends every due delivery once (successes recorded, failures rescheduled with backoff).
    pub async fn deliver_due(&self) -> Result<usize, AlertError> {
        let due = self.inner.store.due_alert_deliveries(50).await?;
        let mut sent = 0;
        for d in due {
            let mut tx = self.inner.store.write(&d.org_id).await?;
            // Held longer than a plugin call may take, so no other worker sends it meanwhile.
            let lease = DELIVERY_LEASE_MS
                .max(self.inner.plugins.hook_deadline().as_millis() as i64 * 2 + 10_000);
            let claimed_until = now_ms() + lease;
            if !tx
                .claim_alert_delivery(&d.id, d.next_attempt_at, claimed_until)
                .await?
            {
                continue;
            }
            tx.commit().await?;
            let result = self
                .deliver_one(&d.org_id, &d.event_id, &d.channel_id, &d.transition)
                .await;
            let mut tx = self.inner.store.write(&d.org_id).await?;
            match result {
                Ok(detail) => {
                    tx.record_alert_attempt(
                        &d.id,
                        claimed_until,
                        "delivered",
                        now_ms(),
                        None,
                        Some(&detail),
                    )
                    .await?;
                    sent += 1;
                }
                Err(error) => {
                    let attempts = d.attempts + 1;
                    let (state, next) = if attempts >= self.inner.config.max_attempts {
                        ("failed", now_ms())
                    } else {
                        let backoff = self
                            .inner
                            .config
                            .retry_base
                            .saturating_mul(1 << (attempts - 1).min(20) as u32)
                            .min(self.inner.config.retry_max);
                        ("pending", now_ms() + backoff.as_millis() as i64)
                    };
                    tracing::warn!(delivery = %d.id, attempts, error = %error, "alert delivery failed");
                    tx.record_alert_attempt(&d.id, claimed_until, state, next, Some(&error), None)
                        .await?;
                }
            }
            tx.commit().await?;
        }
        Ok(sent)
    }

    async fn deliver_one(
        &self,
        org_id: &OrgId,
        event_id: &str,
        channel_id: &str,
        transition: &str,
    ) -> Result<String, String> {
        let loaded = async {
            let mut tx = self.inner.store.read(org_id).await?;
            let event = tx.alert_event(event_id).await?;
            let channel = tx.alert_channel(channel_id).await?;
            let rule = match &event {
                Some(e) => tx.alert_rule(&e.rule_id).await?,
                None => None,
            };
            let agents = tx.list_agents().await?;
            tx.commit().await?;
            Ok::<_, StoreError>((event, channel, rule, agents))
        }
        .await
        .map_err(|e| e.to_string())?;
        let (Some(event), Some(channel), Some(rule), agents) = loaded else {
            return Err("the event, its rule or the channel no longer exists".into());
        };
        if !channel.enabled {
            return Err(format!("channel {} is disabled", channel.name));
        }
        let state = if transition == "resolved" {
            AlertState::Resolved
        } else {
            AlertState::Firing
        };
        let alert = self.alert_of(&event, &rule, state, &agents);
        self.send(org_id, &channel, &alert).await
    }

    fn alert_of(
        &self,
        event: &AlertEventRow,
        rule: &AlertRuleRow,
        state: AlertState,
        agents: &[AgentRow],
    ) -> Alert {
        let (node, target) = match event.target.split_once(':') {
            Some(("agent", id)) => (
                agents.iter().find(|a| a.id == id).map(|a| a.name.clone()),
                None,
            ),
            Some(("container", rest)) => {
                let (agent_id, name) = rest.split_once('/').unwrap_or((rest, ""));
                (
                    agents
                        .iter()
                        .find(|a| a.id == agent_id)
                        .map(|a| a.name.clone()),
                    Some(name.to_owned()),
                )
            }
            _ => (None, Some(event.target.clone())),
        };
        let title = match state {
            AlertState::Resolved => format!("Resolved: {}", event.summary),
            _ => event.summary.clone(),
        };
        let mut summary = format!("Rule: {} ({})", rule.name, rule.kind);
        if let Some(node) = &node {
            summary.push_str(&format!("\nNode: {node}"));
        }
        if event.occurrences > 1 {
            summary.push_str(&format!("\nOccurrences: {}", event.occurrences));
        }
        Alert {
            id: event.id.clone(),
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
            state,
            severity: wit_severity(&event.severity),
            title,
            summary,
            node,
            target,
            labels: vec![("kind".into(), rule.kind.clone())],
            started_at_unix_ms: event.fired_at.max(0) as u64,
            resolved_at_unix_ms: event.resolved_at.map(|t| t.max(0) as u64),
            url: self
                .inner
                .config
                .public_url
                .as_ref()
                .map(|u| format!("{}/alerts/history", u.trim_end_matches('/'))),
        }
    }

    /// Calls the channel's plugin; `Ok(detail)` or the error shown to the operator.
    async fn send(
        &self,
        org_id: &OrgId,
        channel: &AlertChannelRow,
        alert: &Alert,
    ) -> Result<String, String> {
        let invocation = self
            .invocation(org_id, channel)
            .map_err(|e| e.to_string())?;
        let (plugin, _) = self
            .inner
            .plugins
            .alert_channel(&channel.plugin_id)
            .await
            .map_err(|e| e.to_string())?;
        plugin
            .deliver(&invocation, alert)
            .await
            .map(|(delivery, _)| delivery.detail)
            .map_err(|e| e.to_string())
    }

    /// What a call of the channel's plugin runs with.
    pub fn invocation(
        &self,
        org_id: &OrgId,
        channel: &AlertChannelRow,
    ) -> Result<Invocation, AlertError> {
        let settings: serde_json::Value =
            serde_json::from_str(&channel.settings).unwrap_or_else(|_| serde_json::json!({}));
        let secrets = open_channel_secrets(&self.inner.secrets, channel)?
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Null => None,
                other => Some((k, other.to_string())),
            })
            .collect();
        Ok(Invocation {
            settings,
            secrets,
            services: self.inner.plugins.services(org_id),
        })
    }

    /// "Send test": delivers a test alert through a channel now.
    pub async fn send_test(&self, org_id: &OrgId, channel: &AlertChannelRow) -> TestOutcome {
        let now = now_ms();
        let alert = Alert {
            id: format!("test-{}", uuid::Uuid::new_v4()),
            rule_id: "test".into(),
            rule_name: "Test".into(),
            state: AlertState::Test,
            severity: WitSeverity::Info,
            title: format!("Test alert from InfraPilot to {}", channel.name),
            summary: "If you can read this, the channel works.".into(),
            node: None,
            target: None,
            labels: vec![("kind".into(), "test".into())],
            started_at_unix_ms: now.max(0) as u64,
            resolved_at_unix_ms: None,
            url: None,
        };
        match self.send(org_id, channel, &alert).await {
            Ok(detail) => TestOutcome {
                delivered: true,
                detail,
            },
            Err(detail) => TestOutcome {
                delivered: false,
                detail,
            },
        }
    }
}
