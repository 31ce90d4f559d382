//! ClickHouse log sink: the host's log lines in one ClickHouse table over its HTTP interface.
//!
//! The table (made by `prepare` when missing) is a `ReplacingMergeTree` partitioned by UTC day
//! and ordered by (organisation, time, node, sequence): a line the host writes twice (after a
//! crash between this sink's write and the host's own commit) is one row once merged, and every
//! read says `FINAL` so it is one row before that too. Works with ClickHouse 18.16 (Debian 12's)
//! and later: no query parameters (values are written as escaped literals), no `ILIKE`, no
//! tuple comparison, no case-insensitive regular expressions beyond ASCII.
//!
//! No request or answer outgrows the host's 1 MiB limits: writes go in INSERTs of at most
//! [`INSERT_BYTES`], and a page is read in two steps — the keys and sizes of its lines first,
//! then the lines in `RowBinary` (no escaping: a row takes its fields' bytes and a few more) in
//! chunks of at most [`CHUNK_BYTES`].

use infrapilot_plugin_sdk::sink::{
    ContainerCount, LogLine, LogQuery, LogSink, PluginError, ProxyCount, VolumeCount, config, http,
    settings,
};
use serde::{Deserialize, Deserializer, Serialize};

struct Sink;

/// Bytes of rows fetched per request (under the host's 1 MiB answer limit).
const CHUNK_BYTES: usize = 768 << 10;
/// Bytes of one INSERT's body (under the host's 1 MiB request limit).
const INSERT_BYTES: usize = 768 << 10;
/// Keys asked for in one `IN` list.
const CHUNK_KEYS: usize = 500;
/// The most lines a query may ask for (the world's limit).
const MAX_LIMIT: u32 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    url: String,
    #[serde(default = "default_database")]
    database: String,
    #[serde(default = "default_table")]
    table: String,
    #[serde(default)]
    user: Option<String>,
}

fn default_database() -> String {
    "default".into()
}

fn default_table() -> String {
    "infrapilot_logs".into()
}

/// The checked settings: the endpoint, the table's quoted name and the credentials.
struct Target {
    endpoint: String,
    table: String,
    user: Option<String>,
    password: Option<String>,
}

fn invalid(field: &str, why: &str) -> PluginError {
    PluginError::InvalidSettings(format!("{field}: {why}"))
}

fn identifier(field: &str, value: &str) -> Result<String, PluginError> {
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || value.len() > 64 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(invalid(
            field,
            "letters, digits and _ (not first), at most 64",
        ));
    }
    Ok(value.to_owned())
}

fn target() -> Result<Target, PluginError> {
    let s: Settings = settings()?;
    let url = s.url.trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| invalid("url", "must start with http:// or https://"))?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(invalid("url", "a host (and port), without a query"));
    }
    let database = identifier("database", &s.database)?;
    let table = identifier("table", &s.table)?;
    let password = match config::secret("password") {
        Ok(p) => Some(p),
        Err(config::ConfigError::NotSet(_)) => None,
        Err(config::ConfigError::Denied(why)) => return Err(PluginError::Denied(why)),
    };
    Ok(Target {
        endpoint: format!("{url}/"),
        table: format!("{database}.{table}"),
        user: s.user.filter(|u| !u.is_empty()),
        password,
    })
}

impl Target {
    /// Runs one statement (ClickHouse takes one a request); its answer's body.
    fn run(&self, url_query: &str, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        let mut headers = vec![];
        if let Some(user) = &self.user {
            headers.push(header("X-ClickHouse-User", user));
        }
        if let Some(password) = &self.password {
            headers.push(header("X-ClickHouse-Key", password));
        }
        let request = http::Request {
            method: http::Method::Post,
            url: format!("{}{url_query}", self.endpoint),
            headers,
            body: Some(body),
            timeout_ms: None,
        };
        let response = http::fetch(&request).map_err(|e| match e {
            http::HttpError::Denied(why) => PluginError::Denied(why),
            http::HttpError::InvalidRequest(why) if why.contains("body") => {
                PluginError::Failed(format!("a request to ClickHouse was refused: {why}"))
            }
            http::HttpError::InvalidRequest(why) => invalid("url", &why),
            http::HttpError::Timeout => {
                PluginError::Failed("ClickHouse did not answer in time".into())
            }
            http::HttpError::TooLarge => {
                PluginError::Failed("ClickHouse's answer was over the host's limit".into())
            }
            http::HttpError::Transport(why) => {
                PluginError::Failed(format!("ClickHouse could not be reached: {why}"))
            }
        })?;
        if response.status != 200 {
            let text = String::from_utf8_lossy(&response.body);
            let text: String = text.trim().chars().take(500).collect();
            return Err(PluginError::Failed(format!(
                "ClickHouse answered {}: {text}",
                response.status
            )));
        }
        Ok(response.body)
    }

    fn statement(&self, sql: &str) -> Result<Vec<u8>, PluginError> {
        self.run("", sql.as_bytes().to_vec())
    }

    /// A SELECT's rows (`FORMAT JSONEachRow` is added).
    fn rows<T: for<'de> Deserialize<'de>>(&self, sql: &str) -> Result<Vec<T>, PluginError> {
        let body = self.statement(&format!("{sql} FORMAT JSONEachRow"))?;
        let text = std::str::from_utf8(&body).map_err(|_| {
            PluginError::Failed("ClickHouse answered text that is not UTF-8".into())
        })?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| {
                    PluginError::Failed(format!(
                        "ClickHouse answered a row this sink cannot read: {e}"
                    ))
                })
            })
            .collect()
    }
}

/// Reads `RowBinary` rows of [`COLUMNS`].
struct RowBinary<'a> {
    bytes: &'a [u8],
}

impl RowBinary<'_> {
    fn broken() -> PluginError {
        PluginError::Failed("ClickHouse answered rows this sink cannot read".into())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PluginError> {
        if self.bytes.len() < n {
            return Err(Self::broken());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<usize, PluginError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(value).map_err(|_| Self::broken());
            }
        }
        Err(Self::broken())
    }

    fn string(&mut self) -> Result<String, PluginError> {
        let n = self.varint()?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Self::broken())
    }

    fn int64(&mut self) -> Result<i64, PluginError> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| Self::broken())?,
        ))
    }

    fn int32(&mut self) -> Result<i32, PluginError> {
        Ok(i32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| Self::broken())?,
        ))
    }

    fn null(&mut self) -> Result<bool, PluginError> {
        Ok(self.take(1)?[0] == 1)
    }

    fn row(&mut self) -> Result<Row, PluginError> {
        Ok(Row {
            org_id: self.string()?,
            agent_id: self.string()?,
            time_ns: self.int64()?,
            seq: self.int64()?,
            container_id: self.string()?,
            container_name: self.string()?,
            compose_project: self.string()?,
            stream: self.string()?,
            level: if self.null()? {
                None
            } else {
                Some(self.string()?)
            },
            line: self.string()?,
            proxy_host_id: if self.null()? {
                None
            } else {
                Some(self.string()?)
            },
            status: if self.null()? {
                None
            } else {
                Some(self.int32()?)
            },
        })
    }
}

fn header(
    name: &str,
    value: &str,
) -> infrapilot_plugin_sdk::log_sink::infrapilot::plugin::types::Header {
    infrapilot_plugin_sdk::log_sink::infrapilot::plugin::types::Header {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// A ClickHouse string literal: quotes and backslashes escaped, control characters as `\xNN`.
fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// What a row takes besides its fields' bytes, at most (lengths, numbers, null flags).
const ROW_OVERHEAD: usize = 64;

const TABLE_COLUMNS: &str = "org_id String, agent_id String, time_ns Int64, seq Int64, \
    container_id String, container_name String, compose_project String, stream String, \
    level Nullable(String), line String, proxy_host_id Nullable(String), status Nullable(Int32)";

const COLUMNS: &str = "org_id, agent_id, time_ns, seq, container_id, container_name, \
    compose_project, stream, level, line, proxy_host_id, status";

/// An `Int64` as ClickHouse writes it in JSON: quoted by default, a number when told not to.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(i64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(t) => t.parse().map_err(serde::de::Error::custom),
    }
}

/// A row as written (JSONEachRow) and read back (RowBinary).
#[derive(Serialize)]
struct Row {
    org_id: String,
    agent_id: String,
    time_ns: i64,
    seq: i64,
    container_id: String,
    container_name: String,
    compose_project: String,
    stream: String,
    level: Option<String>,
    line: String,
    proxy_host_id: Option<String>,
    status: Option<i32>,
}

impl From<LogLine> for Row {
    fn from(l: LogLine) -> Row {
        Row {
            org_id: l.org_id,
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
}

impl From<Row> for LogLine {
    fn from(r: Row) -> LogLine {
        LogLine {
            org_id: r.org_id,
            agent_id: r.agent_id,
            time_ns: r.time_ns,
            seq: r.seq,
            container_id: r.container_id,
            container_name: r.container_name,
            compose_project: r.compose_project,
            stream: r.stream,
            level: r.level,
            line: r.line,
            proxy_host_id: r.proxy_host_id,
            status: r.status,
        }
    }
}

/// A line's key and size (the first step of a page).
#[derive(Deserialize)]
struct Key {
    #[serde(deserialize_with = "int64")]
    time_ns: i64,
    agent_id: String,
    #[serde(deserialize_with = "int64")]
    seq: i64,
    #[serde(deserialize_with = "int64")]
    bytes: i64,
}

/// The WHERE clause of a query (organisation, filters, cursor), literals escaped.
fn conditions(q: &LogQuery, with_cursor: bool) -> String {
    let mut c = format!("org_id = {}", literal(&q.org_id));
    if let Some(agent) = &q.agent_id {
        c += &format!(" AND agent_id = {}", literal(agent));
    }
    if let Some(container) = &q.container {
        let v = literal(container);
        c += &format!(" AND (container_id = {v} OR container_name = {v})");
    }
    if let Some(project) = &q.compose_project {
        c += &format!(" AND compose_project = {}", literal(project));
    }
    if let Some(stream) = &q.stream {
        c += &format!(" AND stream = {}", literal(stream));
    }
    if let Some(host) = &q.proxy_host_id {
        c += &format!(" AND proxy_host_id = {}", literal(host));
    }
    if let Some((low, high)) = q.status {
        c += &format!(" AND status >= {low} AND status <= {high}");
    }
    if !q.levels.is_empty() {
        let alternatives: Vec<String> = q
            .levels
            .iter()
            .map(|l| {
                if l == "none" {
                    "level IS NULL".to_owned()
                } else {
                    format!("level = {}", literal(l))
                }
            })
            .collect();
        c += &format!(" AND ({})", alternatives.join(" OR "));
    }
    if let Some(since) = q.since_ns {
        c += &format!(" AND time_ns >= {since}");
    }
    if let Some(until) = q.until_ns {
        c += &format!(" AND time_ns < {until}");
    }
    if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
        // ASCII case folding for ASCII texts, per code point beyond (like the host's store;
        // not `match` with `(?i)`: 18.16 looks for the pattern's literal part case-sensitively
        // first).
        let search = if text.is_ascii() {
            "positionCaseInsensitive"
        } else {
            "positionCaseInsensitiveUTF8"
        };
        c += &format!(" AND {search}(line, {}) > 0", literal(text));
    }
    if with_cursor && let Some(after) = &q.after {
        let op = if q.oldest_first { ">" } else { "<" };
        let (t, a, s) = (after.time_ns, literal(&after.agent_id), after.seq);
        c += &format!(
            " AND (time_ns {op} {t} OR (time_ns = {t} AND (agent_id {op} {a} OR (agent_id = {a} AND seq {op} {s}))))"
        );
    }
    c
}

fn order(q: &LogQuery) -> &'static str {
    if q.oldest_first {
        "ORDER BY time_ns, agent_id, seq"
    } else {
        "ORDER BY time_ns DESC, agent_id DESC, seq DESC"
    }
}

#[derive(Deserialize)]
struct VolumeRow {
    #[serde(deserialize_with = "int64")]
    bucket: i64,
    lvl: String,
    #[serde(deserialize_with = "int64")]
    n: i64,
}

#[derive(Deserialize)]
struct ContainerRow {
    agent_id: String,
    container_name: String,
    #[serde(deserialize_with = "int64")]
    n: i64,
}

#[derive(Deserialize)]
struct ProxyRow {
    agent_id: String,
    proxy_host_id: String,
    #[serde(deserialize_with = "int64")]
    requests: i64,
    #[serde(deserialize_with = "int64")]
    errors: i64,
}

impl LogSink for Sink {
    fn prepare() -> Result<(), PluginError> {
        let t = target()?;
        t.statement(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({TABLE_COLUMNS}) ENGINE = ReplacingMergeTree \
             PARTITION BY toYYYYMMDD(toDateTime(intDiv(time_ns, 1000000000), 'UTC')) \
             ORDER BY (org_id, time_ns, agent_id, seq)",
            t.table
        ))?;
        // The table must have this sink's columns, of its types (rows are read in RowBinary),
        // and keep a line once (one made by someone else may not).
        let (database, table) = t.table.split_once('.').unwrap_or(("default", &t.table));
        let columns = t.statement(&format!(
            "SELECT name, type FROM system.columns WHERE database = {} AND table = {} FORMAT TSV",
            literal(database),
            literal(table)
        ))?;
        let columns = String::from_utf8_lossy(&columns);
        let found: Vec<(&str, &str)> = columns.lines().filter_map(|l| l.split_once('\t')).collect();
        for wanted in TABLE_COLUMNS.split(", ") {
            let (name, kind) = wanted.split_once(' ').unwrap_or((wanted, ""));
            if !found.contains(&(name, kind)) {
                return Err(invalid(
                    "table",
                    &format!("exists without this sink's column {name} {kind}"),
                ));
            }
        }
        let engine = t.statement(&format!(
            "SELECT engine, engine_full FROM system.tables WHERE database = {} AND name = {} FORMAT TSV",
            literal(database),
            literal(table)
        ))?;
        let engine = String::from_utf8_lossy(&engine).trim().to_owned();
        let (engine, full) = engine.split_once('\t').unwrap_or((&engine, ""));
        // Shared… and Replicated… variants keep a line once too; the key must be the line's.
        if !engine.ends_with("ReplacingMergeTree")
            || !full.contains("ORDER BY (org_id, time_ns, agent_id, seq)")
        {
            return Err(invalid(
                "table",
                &format!(
                    "exists as {engine}, not a ReplacingMergeTree ordered by (org_id, time_ns, agent_id, seq): a line written twice would be kept twice, or two lines once"
                ),
            ));
        }
        Ok(())
    }

    fn write(lines: Vec<LogLine>) -> Result<(), PluginError> {
        if lines.is_empty() {
            return Ok(());
        }
        let t = target()?;
        let query = format!(
            "?query={}",
            format!("INSERT INTO {} FORMAT JSONEachRow", t.table).replace(' ', "%20")
        );
        // INSERTs under the request limit (a line written again is kept once, so a failure
        // half-way is harmless: the host writes the whole batch again).
        let mut body: Vec<u8> = Vec::with_capacity(INSERT_BYTES);
        for line in lines {
            let row = serde_json::to_vec(&Row::from(line))
                .map_err(|e| PluginError::Failed(e.to_string()))?;
            if !body.is_empty() && body.len() + row.len() + 1 > INSERT_BYTES {
                t.run(&query, std::mem::take(&mut body))?;
            }
            body.extend_from_slice(&row);
            body.push(b'\n');
        }
        if !body.is_empty() {
            t.run(&query, body)?;
        }
        Ok(())
    }

    fn query(q: LogQuery) -> Result<Vec<LogLine>, PluginError> {
        let t = target()?;
        let limit = q.limit.clamp(1, MAX_LIMIT);
        let keys: Vec<Key> = t.rows(&format!(
            "SELECT time_ns, agent_id, seq, length(org_id) + length(agent_id) + length(container_id) \
             + length(container_name) + length(compose_project) + length(stream) + length(ifNull(level, '')) \
             + length(line) + length(ifNull(proxy_host_id, '')) AS bytes \
             FROM {} FINAL WHERE {} {} LIMIT {limit}",
            t.table,
            conditions(&q, true),
            order(&q)
        ))?;
        let mut lines: Vec<LogLine> = Vec::with_capacity(keys.len());
        let mut chunk: Vec<&Key> = vec![];
        let mut chunk_bytes = 0usize;
        let flush = |chunk: &mut Vec<&Key>, lines: &mut Vec<LogLine>| -> Result<(), PluginError> {
            if chunk.is_empty() {
                return Ok(());
            }
            let wanted: Vec<String> = chunk
                .iter()
                .map(|k| format!("({}, {}, {})", k.time_ns, literal(&k.agent_id), k.seq))
                .collect();
            let (first, last) = chunk.iter().fold((i64::MAX, i64::MIN), |(a, b), k| {
                (a.min(k.time_ns), b.max(k.time_ns))
            });
            let body = t.statement(&format!(
                "SELECT {COLUMNS} FROM {} FINAL WHERE org_id = {} AND time_ns >= {first} \
                 AND time_ns <= {last} AND (time_ns, agent_id, seq) IN ({}) FORMAT RowBinary",
                t.table,
                literal(&q.org_id),
                wanted.join(", ")
            ))?;
            let mut reader = RowBinary { bytes: &body };
            let mut rows = vec![];
            while !reader.bytes.is_empty() {
                rows.push(reader.row()?);
            }
            // In the keys' order.
            for key in chunk.iter() {
                if let Some(at) = rows.iter().position(|r| {
                    r.time_ns == key.time_ns && r.seq == key.seq && r.agent_id == key.agent_id
                }) {
                    lines.push(rows.swap_remove(at).into());
                }
            }
            chunk.clear();
            Ok(())
        };
        for key in &keys {
            let bytes = usize::try_from(key.bytes)
                .unwrap_or(usize::MAX)
                .saturating_add(ROW_OVERHEAD);
            if !chunk.is_empty()
                && (chunk_bytes.saturating_add(bytes) > CHUNK_BYTES || chunk.len() >= CHUNK_KEYS)
            {
                flush(&mut chunk, &mut lines)?;
                chunk_bytes = 0;
            }
            chunk.push(key);
            chunk_bytes = chunk_bytes.saturating_add(bytes);
        }
        flush(&mut chunk, &mut lines)?;
        Ok(lines)
    }

    fn volume(q: LogQuery, interval_ns: i64) -> Result<Vec<VolumeCount>, PluginError> {
        let t = target()?;
        let interval = interval_ns.max(1);
        let rows: Vec<VolumeRow> = t.rows(&format!(
            "SELECT intDiv(time_ns, {interval}) * {interval} AS bucket, ifNull(level, 'none') AS lvl, \
             count() AS n FROM {} FINAL WHERE {} GROUP BY bucket, lvl ORDER BY bucket, lvl",
            t.table,
            conditions(&q, false)
        ))?;
        Ok(rows
            .into_iter()
            .map(|r| VolumeCount {
                bucket_ns: r.bucket,
                level: r.lvl,
                count: r.n,
            })
            .collect())
    }

    fn count_by_container(
        org_id: String,
        since_ns: i64,
        until_ns: i64,
        level: String,
    ) -> Result<Vec<ContainerCount>, PluginError> {
        let t = target()?;
        let rows: Vec<ContainerRow> = t.rows(&format!(
            "SELECT agent_id, container_name, count() AS n FROM {} FINAL WHERE org_id = {} \
             AND time_ns >= {since_ns} AND time_ns < {until_ns} AND level = {} \
             GROUP BY agent_id, container_name ORDER BY agent_id, container_name",
            t.table,
            literal(&org_id),
            literal(&level)
        ))?;
        Ok(rows
            .into_iter()
            .map(|r| ContainerCount {
                agent_id: r.agent_id,
                container_name: r.container_name,
                count: r.n,
            })
            .collect())
    }

    fn proxy_status_counts(
        org_id: String,
        since_ns: i64,
        until_ns: i64,
    ) -> Result<Vec<ProxyCount>, PluginError> {
        let t = target()?;
        let rows: Vec<ProxyRow> = t.rows(&format!(
            "SELECT agent_id, assumeNotNull(proxy_host_id) AS proxy_host_id, count() AS requests, \
             countIf(status >= 500) AS errors FROM {} FINAL WHERE org_id = {} \
             AND time_ns >= {since_ns} AND time_ns < {until_ns} AND proxy_host_id IS NOT NULL \
             AND status IS NOT NULL GROUP BY agent_id, proxy_host_id ORDER BY agent_id, proxy_host_id",
            t.table,
            literal(&org_id)
        ))?;
        Ok(rows
            .into_iter()
            .map(|r| ProxyCount {
                agent_id: r.agent_id,
                proxy_host_id: r.proxy_host_id,
                requests: r.requests,
                errors: r.errors,
            })
            .collect())
    }

    fn drop_before(org_id: String, before_ns: i64) -> Result<(), PluginError> {
        let t = target()?;
        let condition = format!("org_id = {} AND time_ns < {before_ns}", literal(&org_id));
        // A mutation rewrites parts: only when something is due.
        let due = t.statement(&format!(
            "SELECT count() FROM (SELECT 1 FROM {} WHERE {condition} LIMIT 1) FORMAT TSV",
            t.table
        ))?;
        if String::from_utf8_lossy(&due).trim() == "0" {
            return Ok(());
        }
        t.statement(&format!("ALTER TABLE {} DELETE WHERE {condition}", t.table))?;
        Ok(())
    }
}

infrapilot_plugin_sdk::export_log_sink!(Sink);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_cannot_end_early() {
        assert_eq!(literal("a'b"), "'a\\'b'");
        assert_eq!(literal("a\\'b"), "'a\\\\\\'b'");
        assert_eq!(literal("x\ny"), "'x\\x0Ay'");
    }
}
