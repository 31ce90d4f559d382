//! The host's log sink through a `log-sink` plugin ([`PluginLogSink`]): the operator names the
//! plugin and its settings in the host's configuration; the settings are checked against the
//! plugin's schema at start and the plugin prepares its store (`prepare`) then — or, when the
//! store is away at start, before the first call that finds it back (a log store outage does
//! not keep the host from starting; settings the plugin calls invalid do). Every call loads the
//! plugin through the registry, so disabling it (or a licence that ends) stops writes and
//! queries — the nodes keep their lines in their spools meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use infrapilot_plugin_runtime::contract::PluginError;
use infrapilot_plugin_runtime::contract::log_model;
use infrapilot_plugin_runtime::{HookError, Invocation, LogSinkPlugin};
use infrapilot_store::{
    ContainerCounts, LogLineRow, LogQuery, LogSink, LogSinkError, OrgId, ProxyCounts,
};

use crate::PluginHost;

/// A log sink plugin with its settings.
pub struct PluginLogSink {
    host: PluginHost,
    id: String,
    settings: serde_json::Value,
    secrets: HashMap<String, String>,
    /// Whether `prepare` succeeded (the store's tables exist).
    prepared: AtomicBool,
}

impl PluginHost {
    /// The log sink plugin `id` with `settings` (checked against its schema; `writeOnly`
    /// fields are its secrets), prepared if its store answers: its tables made. Refused when
    /// the plugin is not installed, enabled and entitled, or the settings are invalid.
    pub async fn log_sink(
        &self,
        id: &str,
        settings: serde_json::Value,
    ) -> Result<PluginLogSink, LogSinkError> {
        let error = |message: String| LogSinkError {
            plugin: id.to_owned(),
            message,
        };
        let (_, manifest) = self
            .plugin::<LogSinkPlugin>(id)
            .await
            .map_err(|e| error(e.to_string()))?;
        crate::settings::validate(&manifest.settings_schema, &settings)
            .map_err(|e| error(e.to_string()))?;
        let split = crate::settings::split(&settings, &manifest.secret_fields());
        let secrets = split
            .secrets
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Null => None,
                other => Some((k, other.to_string())),
            })
            .collect();
        let sink = PluginLogSink {
            host: self.clone(),
            id: id.to_owned(),
            settings: serde_json::Value::Object(split.plain),
            secrets,
            prepared: AtomicBool::new(false),
        };
        match sink.plugin().await {
            Ok(_) => Ok(sink),
            Err(e) if e.invalid_settings => Err(e.error),
            Err(e) => {
                tracing::warn!(error = %e.error, "the log sink is not ready; it is prepared again before its next use");
                Ok(sink)
            }
        }
    }
}

/// Why a sink could not be used; `invalid_settings` when the plugin says its settings are wrong.
struct Unusable {
    error: LogSinkError,
    invalid_settings: bool,
}

impl PluginLogSink {
    fn error(&self, e: impl std::fmt::Display) -> LogSinkError {
        LogSinkError {
            plugin: self.id.clone(),
            message: e.to_string(),
        }
    }

    /// The plugin, ready to call (prepared first if it was not yet).
    async fn plugin(&self) -> Result<(LogSinkPlugin, Invocation), Unusable> {
        let unusable = |e: String, invalid_settings: bool| Unusable {
            error: self.error(e),
            invalid_settings,
        };
        let (plugin, _) = self
            .host
            .plugin::<LogSinkPlugin>(&self.id)
            .await
            .map_err(|e| unusable(e.to_string(), false))?;
        let invocation = Invocation {
            settings: self.settings.clone(),
            secrets: self.secrets.clone(),
            services: self.host.services(&OrgId::default_org()),
        };
        if !self.prepared.load(Ordering::Acquire) {
            match plugin.prepare(&invocation).await {
                Ok(()) => self.prepared.store(true, Ordering::Release),
                Err(e) => {
                    // Settings the plugin calls wrong, or a capability the operator did not
                    // grant, will not mend by waiting.
                    let invalid = matches!(
                        e,
                        HookError::Plugin(PluginError::InvalidSettings(_) | PluginError::Denied(_))
                    );
                    return Err(unusable(e.to_string(), invalid));
                }
            }
        }
        Ok((plugin, invocation))
    }

    /// A call's failure; a store that lost the sink's table (ClickHouse's UNKNOWN_TABLE, code
    /// 60) is prepared again before the next call.
    fn failed(&self, e: HookError) -> LogSinkError {
        if e.to_string().contains("Code: 60,") {
            self.prepared.store(false, Ordering::Release);
        }
        self.error(e)
    }

    /// The plugin for a call.
    async fn ready(&self) -> Result<(LogSinkPlugin, Invocation), LogSinkError> {
        self.plugin().await.map_err(|e| e.error)
    }
}

fn line_out(org: &OrgId, l: &LogLineRow) -> log_model::LogLine {
    log_model::LogLine {
        org_id: org.as_str().to_owned(),
        agent_id: l.agent_id.clone(),
        time_ns: l.time_ns,
        seq: l.seq,
        container_id: l.container_id.clone(),
        container_name: l.container_name.clone(),
        compose_project: l.compose_project.clone(),
        stream: l.stream.clone(),
        level: l.level.clone(),
        line: l.line.clone(),
        proxy_host_id: l.proxy_host_id.clone(),
        status: l.status,
    }
}

fn line_in(l: log_model::LogLine) -> LogLineRow {
    LogLineRow {
        agent_id: l.agent_id,
        time_ns: l.time_ns,
        seq: l.seq,
        container_id: l.container_id,
        container_name: l.container_name,
        compose_project: l.compose_project,
        stream: l.stream,
        level: l.level,
        line: l.line,
        proxy_host_id: l.proxy_host_id,
        status: l.status,
    }
}

fn query_out(org: &OrgId, q: &LogQuery) -> log_model::LogQuery {
    log_model::LogQuery {
        org_id: org.as_str().to_owned(),
        agent_id: q.agent_id.clone(),
        container: q.container.clone(),
        compose_project: q.compose_project.clone(),
        levels: q.levels.clone(),
        stream: q.stream.clone(),
        proxy_host_id: q.proxy_host_id.clone(),
        status: q.status,
        text: q.text.clone().filter(|t| !t.is_empty()),
        since_ns: q.since_ns,
        until_ns: q.until_ns,
        oldest_first: q.oldest_first,
        after: q.after.as_ref().map(|c| log_model::LogCursor {
            time_ns: c.time_ns,
            agent_id: c.agent_id.clone(),
            seq: c.seq,
        }),
        limit: q.limit.clamp(1, 10_000) as u32,
    }
}

#[async_trait::async_trait]
impl LogSink for PluginLogSink {
    fn name(&self) -> &str {
        &self.id
    }

    async fn write(&self, org: &OrgId, lines: &[LogLineRow]) -> Result<(), LogSinkError> {
        if lines.is_empty() {
            return Ok(());
        }
        let (plugin, invocation) = self.ready().await?;
        let lines: Vec<_> = lines.iter().map(|l| line_out(org, l)).collect();
        plugin
            .write(&invocation, &lines)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn query(&self, org: &OrgId, query: &LogQuery) -> Result<Vec<LogLineRow>, LogSinkError> {
        let (plugin, invocation) = self.ready().await?;
        let lines = plugin
            .query(&invocation, &query_out(org, query))
            .await
            .map_err(|e| self.failed(e))?;
        Ok(lines.into_iter().map(line_in).collect())
    }

    async fn volume(
        &self,
        org: &OrgId,
        query: &LogQuery,
        interval_ns: i64,
    ) -> Result<Vec<(i64, String, i64)>, LogSinkError> {
        let (plugin, invocation) = self.ready().await?;
        let query = LogQuery {
            after: None,
            ..query.clone()
        };
        let counts = plugin
            .volume(&invocation, &query_out(org, &query), interval_ns.max(1))
            .await
            .map_err(|e| self.failed(e))?;
        Ok(counts
            .into_iter()
            .map(|c| (c.bucket_ns, c.level, c.count))
            .collect())
    }

    async fn count_by_container(
        &self,
        org: &OrgId,
        since_ns: i64,
        until_ns: i64,
        level: &str,
    ) -> Result<ContainerCounts, LogSinkError> {
        let (plugin, invocation) = self.ready().await?;
        let counts = plugin
            .count_by_container(&invocation, org.as_str(), since_ns, until_ns, level)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(counts
            .into_iter()
            .map(|c| (c.agent_id, c.container_name, c.count))
            .collect())
    }

    async fn proxy_status_counts(
        &self,
        org: &OrgId,
        since_ns: i64,
        until_ns: i64,
    ) -> Result<ProxyCounts, LogSinkError> {
        let (plugin, invocation) = self.ready().await?;
        let counts = plugin
            .proxy_status_counts(&invocation, org.as_str(), since_ns, until_ns)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(counts
            .into_iter()
            .map(|c| (c.agent_id, c.proxy_host_id, c.requests, c.errors))
            .collect())
    }

    async fn drop_before(&self, org: &OrgId, before_ns: i64) -> Result<(), LogSinkError> {
        let (plugin, invocation) = self.ready().await?;
        plugin
            .drop_before(&invocation, org.as_str(), before_ns)
            .await
            .map_err(|e| self.failed(e))
    }
}
