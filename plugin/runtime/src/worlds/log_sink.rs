//! World `log-sink` (from contract 0.2.0): its handle ([`LogSinkPlugin`]) and the dispatch of
//! its calls to the contract version the component was built against. The host decides the
//! organisation of every call; a sink's answer naming another organisation, or more lines than
//! asked for, is a broken plugin (`HookError::BadOutput`), never shown.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::contract::PluginError;
use crate::contract::log_model::{ContainerCount, LogLine, LogQuery, ProxyCount, VolumeCount};
use crate::runtime::{HookError, HostState, Invocation, PluginCore, WorldPlugin};
use crate::versions::ContractVersion;
use infrapilot_plugin_types::manifest::World;

/// What a sink may answer, at most.
pub mod limits {
    /// A query's lines, all fields counted (a page of 10,000 lines of 16 KiB fits twice over
    /// in a few: pages are usually 200).
    pub const ANSWER_BYTES: usize = 64 << 20;
    /// Rows of a volume or count answer.
    pub const COUNT_ROWS: usize = 100_000;
}

/// A loaded log sink, ready to be called concurrently (each call in a fresh instance under the
/// hook deadline).
#[derive(Clone)]
pub struct LogSinkPlugin {
    core: PluginCore,
    pre: SinkPre,
}

impl LogSinkPlugin {
    /// Checks the settings and the store, and makes its tables.
    pub async fn prepare(&self, invocation: &Invocation) -> Result<(), HookError> {
        self.call(invocation, async |instance, store| {
            instance.prepare(store).await
        })
        .await
    }

    /// Stores `lines` (idempotent by organisation, node, time and sequence).
    pub async fn write(&self, invocation: &Invocation, lines: &[LogLine]) -> Result<(), HookError> {
        self.call(invocation, async |instance, store| {
            instance.write(store, lines).await
        })
        .await
    }

    /// A page of the organisation's lines matching `query`.
    pub async fn query(
        &self,
        invocation: &Invocation,
        query: &LogQuery,
    ) -> Result<Vec<LogLine>, HookError> {
        let lines = self
            .call(invocation, async |instance, store| {
                instance.query(store, query).await
            })
            .await?;
        check_lines(query, &lines).map_err(HookError::BadOutput)?;
        Ok(lines)
    }

    /// Lines per interval and level.
    pub async fn volume(
        &self,
        invocation: &Invocation,
        query: &LogQuery,
        interval_ns: i64,
    ) -> Result<Vec<VolumeCount>, HookError> {
        let counts = self
            .call(invocation, async |instance, store| {
                instance.volume(store, query, interval_ns).await
            })
            .await?;
        check_rows(counts.len())?;
        Ok(counts)
    }

    /// Lines of `level` per node and container.
    pub async fn count_by_container(
        &self,
        invocation: &Invocation,
        org_id: &str,
        since_ns: i64,
        until_ns: i64,
        level: &str,
    ) -> Result<Vec<ContainerCount>, HookError> {
        let counts = self
            .call(invocation, async |instance, store| {
                instance
                    .count_by_container(store, org_id, since_ns, until_ns, level)
                    .await
            })
            .await?;
        check_rows(counts.len())?;
        Ok(counts)
    }

    /// Access lines and 5xx lines per proxy host.
    pub async fn proxy_status_counts(
        &self,
        invocation: &Invocation,
        org_id: &str,
        since_ns: i64,
        until_ns: i64,
    ) -> Result<Vec<ProxyCount>, HookError> {
        let counts = self
            .call(invocation, async |instance, store| {
                instance
                    .proxy_status_counts(store, org_id, since_ns, until_ns)
                    .await
            })
            .await?;
        check_rows(counts.len())?;
        Ok(counts)
    }

    /// Removes the organisation's lines older than `before_ns`.
    pub async fn drop_before(
        &self,
        invocation: &Invocation,
        org_id: &str,
        before_ns: i64,
    ) -> Result<(), HookError> {
        self.call(invocation, async |instance, store| {
            instance.drop_before(store, org_id, before_ns).await
        })
        .await
    }

    /// One call in a fresh instance under the hook deadline; the plugin's error is a
    /// [`HookError::Plugin`].
    async fn call<T>(
        &self,
        invocation: &Invocation,
        run: impl AsyncFnOnce(&Sink, &mut Store<HostState>) -> wasmtime::Result<Result<T, PluginError>>,
    ) -> Result<T, HookError> {
        let mut store = self.core.store(invocation);
        let outcome = tokio::time::timeout(self.core.call_deadline(), async {
            let instance = self.pre.instantiate(&mut store).await?;
            run(&instance, &mut store).await
        })
        .await;
        self.core.settle(&store, outcome)
    }
}

fn check_rows(rows: usize) -> Result<(), HookError> {
    if rows > limits::COUNT_ROWS {
        return Err(HookError::BadOutput(format!(
            "{rows} counts, more than {}",
            limits::COUNT_ROWS
        )));
    }
    Ok(())
}

/// A page holds at most `limit` lines, all of the query's organisation, within the size limit.
fn check_lines(query: &LogQuery, lines: &[LogLine]) -> Result<(), String> {
    if lines.len() > query.limit as usize {
        return Err(format!(
            "{} lines, more than the {} asked for",
            lines.len(),
            query.limit
        ));
    }
    if lines.iter().any(|l| l.org_id != query.org_id) {
        return Err("a line of another organisation than the query's".into());
    }
    let size: usize = lines
        .iter()
        .map(|l| {
            l.line.len()
                + l.agent_id.len()
                + l.container_id.len()
                + l.container_name.len()
                + l.compose_project.len()
                + 64
        })
        .sum();
    if size > limits::ANSWER_BYTES {
        return Err(format!(
            "the answer takes {size} bytes, more than {}",
            limits::ANSWER_BYTES
        ));
    }
    Ok(())
}

impl crate::runtime::sealed::Sealed for LogSinkPlugin {}

impl WorldPlugin for LogSinkPlugin {
    const WORLD: World = World::LogSink;

    fn from_linked(
        core: PluginCore,
        version: ContractVersion,
        pre: InstancePre<HostState>,
    ) -> wasmtime::Result<LogSinkPlugin> {
        Ok(LogSinkPlugin {
            core,
            pre: SinkPre::new(version, pre)?,
        })
    }
}

/// A linked sink of some version (the world exists from 0.2.0).
#[derive(Clone)]
pub(crate) enum SinkPre {
    V0_2_0(crate::versions::v0_2_0::log_sink::LogSinkPre<HostState>),
}

/// An instance of a sink of some version.
pub(crate) enum Sink {
    V0_2_0(crate::versions::v0_2_0::log_sink::LogSink),
}

impl SinkPre {
    pub(crate) fn new(
        version: ContractVersion,
        pre: InstancePre<HostState>,
    ) -> wasmtime::Result<SinkPre> {
        match version {
            ContractVersion::V0_2_0 => Ok(SinkPre::V0_2_0(
                crate::versions::v0_2_0::log_sink::LogSinkPre::new(pre)?,
            )),
            other => Err(wasmtime::format_err!(
                "contract {other} has no world log-sink"
            )),
        }
    }

    pub(crate) async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Sink> {
        Ok(match self {
            SinkPre::V0_2_0(pre) => Sink::V0_2_0(pre.instantiate_async(store).await?),
        })
    }
}

use crate::versions::v0_2_0 as v2;

type Answer<T> = wasmtime::Result<Result<T, PluginError>>;

impl Sink {
    pub(crate) async fn prepare(&self, store: &mut Store<HostState>) -> Answer<()> {
        match self {
            Sink::V0_2_0(i) => v2::sink_prepare(i, store).await,
        }
    }

    pub(crate) async fn write(
        &self,
        store: &mut Store<HostState>,
        lines: &[LogLine],
    ) -> Answer<()> {
        match self {
            Sink::V0_2_0(i) => v2::sink_write(i, store, lines).await,
        }
    }

    pub(crate) async fn query(
        &self,
        store: &mut Store<HostState>,
        query: &LogQuery,
    ) -> Answer<Vec<LogLine>> {
        match self {
            Sink::V0_2_0(i) => v2::sink_query(i, store, query).await,
        }
    }

    pub(crate) async fn volume(
        &self,
        store: &mut Store<HostState>,
        query: &LogQuery,
        interval_ns: i64,
    ) -> Answer<Vec<VolumeCount>> {
        match self {
            Sink::V0_2_0(i) => v2::sink_volume(i, store, query, interval_ns).await,
        }
    }

    pub(crate) async fn count_by_container(
        &self,
        store: &mut Store<HostState>,
        org_id: &str,
        since_ns: i64,
        until_ns: i64,
        level: &str,
    ) -> Answer<Vec<ContainerCount>> {
        match self {
            Sink::V0_2_0(i) => {
                v2::sink_count_by_container(i, store, org_id, since_ns, until_ns, level).await
            }
        }
    }

    pub(crate) async fn proxy_status_counts(
        &self,
        store: &mut Store<HostState>,
        org_id: &str,
        since_ns: i64,
        until_ns: i64,
    ) -> Answer<Vec<ProxyCount>> {
        match self {
            Sink::V0_2_0(i) => {
                v2::sink_proxy_status_counts(i, store, org_id, since_ns, until_ns).await
            }
        }
    }

    pub(crate) async fn drop_before(
        &self,
        store: &mut Store<HostState>,
        org_id: &str,
        before_ns: i64,
    ) -> Answer<()> {
        match self {
            Sink::V0_2_0(i) => v2::sink_drop_before(i, store, org_id, before_ns).await,
        }
    }
}
