//! Where log lines live when an operator outgrows the host's database: a log sink (a
//! `log-sink` plugin, e.g. ClickHouse). With one configured the host writes the lines its nodes
//! deliver there instead of into `log_lines` (spool cursors, gaps and Docker events stay in the
//! database) and answers the Logs page, its chart, the CSV export and the log alert rules from
//! it. The host passes the organisation of every call; the sink keeps each organisation's
//! lines apart.

use crate::{LogLineRow, LogQuery, OrgId};

/// A sink's failure (unreachable, refused, a broken answer): the host does not acknowledge
/// lines it could not write (the node sends them again), and a query answers 503.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the log sink {plugin}: {message}")]
pub struct LogSinkError {
    pub plugin: String,
    pub message: String,
}

/// Lines per node and container: (node, container name, count).
pub type ContainerCounts = Vec<(String, String, i64)>;
/// Access lines per node and proxy host: (node, proxy host, all, 5xx).
pub type ProxyCounts = Vec<(String, String, i64, i64)>;

/// A store for log lines outside the database. Writing the same line (organisation, node,
/// time, sequence) twice keeps it once: the host writes before it commits the node's cursor.
#[async_trait::async_trait]
pub trait LogSink: Send + Sync {
    /// The sink's name for messages (its plugin id).
    fn name(&self) -> &str;
    async fn write(&self, org: &OrgId, lines: &[LogLineRow]) -> Result<(), LogSinkError>;
    /// A page of `org`'s lines matching `query`, in its order.
    async fn query(&self, org: &OrgId, query: &LogQuery) -> Result<Vec<LogLineRow>, LogSinkError>;
    /// Lines per interval and level: (interval start, level or `none`, count).
    async fn volume(
        &self,
        org: &OrgId,
        query: &LogQuery,
        interval_ns: i64,
    ) -> Result<Vec<(i64, String, i64)>, LogSinkError>;
    /// Lines of `level` per node and container in `[since_ns, until_ns)`.
    async fn count_by_container(
        &self,
        org: &OrgId,
        since_ns: i64,
        until_ns: i64,
        level: &str,
    ) -> Result<ContainerCounts, LogSinkError>;
    /// Access lines per node and proxy host in `[since_ns, until_ns)`.
    async fn proxy_status_counts(
        &self,
        org: &OrgId,
        since_ns: i64,
        until_ns: i64,
    ) -> Result<ProxyCounts, LogSinkError>;
    /// Retention: removes `org`'s lines older than `before_ns`.
    async fn drop_before(&self, org: &OrgId, before_ns: i64) -> Result<(), LogSinkError>;
}
