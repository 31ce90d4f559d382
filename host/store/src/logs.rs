//! Unified logs (issue 17): lines the nodes' spools deliver, the spool cursors that make a
//! delivery count once, the gaps the nodes report, and the queries of the Logs page.
//!
//! SQLite keeps one table per UTC day (`log_lines_<yyyymmdd>` with its FTS5 trigram index
//! `log_text_<yyyymmdd>`, filled a batch at a time by `insert_log_lines`, emptied by a delete
//! trigger; merged into one segment once the day is over), listed in `log_days`; PostgreSQL one
//! table partitioned by day with a trigram index (searched through `log_text_matches`). Either way retention drops whole days, and a query
//! walks the days newest (or oldest) first, stopping when its page is full.

use crate::{Backend, OrgId, Result, Store, Tx, TxInner, now_ms};

const DAY_NS: i64 = 86_400_000_000_000;

/// A line as delivered by a node.
#[derive(Debug, Clone)]
pub struct NewLogLine<'a> {
    pub agent_id: &'a str,
    pub time_ns: i64,
    pub seq: i64,
    pub container_id: &'a str,
    pub container_name: &'a str,
    pub compose_project: &'a str,
    pub stream: &'a str,
    pub level: Option<&'a str>,
    pub line: &'a str,
    /// A line of the node's managed nginx: its proxy host.
    pub proxy_host_id: Option<&'a str>,
    /// An nginx access line's HTTP status.
    pub status: Option<i32>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct LogLineRow {
    pub agent_id: String,
    pub time_ns: i64,
    pub seq: i64,
    pub container_id: String,
    pub container_name: String,
    pub compose_project: String,
    pub stream: String,
    pub level: Option<String>,
    pub line: String,
    pub proxy_host_id: Option<String>,
    pub status: Option<i32>,
}

impl<'a> From<&'a LogLineRow> for NewLogLine<'a> {
    fn from(r: &'a LogLineRow) -> NewLogLine<'a> {
        NewLogLine {
            agent_id: &r.agent_id,
            time_ns: r.time_ns,
            seq: r.seq,
            container_id: &r.container_id,
            container_name: &r.container_name,
            compose_project: &r.compose_project,
            stream: &r.stream,
            level: r.level.as_deref(),
            line: &r.line,
            proxy_host_id: r.proxy_host_id.as_deref(),
            status: r.status,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct LogGapRow {
    pub agent_id: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub recorded_at: i64,
}

/// Where a page ended: the last line's time, node and sequence (lines sort by these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    pub time_ns: i64,
    pub agent_id: String,
    pub seq: i64,
}

/// What the Logs page asks for. Empty filters match everything.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub agent_id: Option<String>,
    /// A container's id or name.
    pub container: Option<String>,
    pub compose_project: Option<String>,
    /// Any of these levels (`error`, `warn`, `info`, `debug`; `none` for lines without one).
    pub levels: Vec<String>,
    pub stream: Option<String>,
    /// Lines of this proxy host.
    pub proxy_host_id: Option<String>,
    /// HTTP statuses of access lines: `[low, high]` inclusive.
    pub status: Option<(i32, i32)>,
    /// Text the line contains (case-insensitive).
    pub text: Option<String>,
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    pub oldest_first: bool,
    pub after: Option<LogCursor>,
    pub limit: i64,
}

/// The UTC day of a time, as yyyymmdd (proleptic Gregorian; H. Hinnant's civil_from_days).
pub fn day_of(time_ns: i64) -> i64 {
    let days = time_ns.div_euclid(DAY_NS);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    y * 10_000 + m * 100 + d
}

/// Day tables made before their text index was filled a batch at a time had it kept by an
/// insert trigger: with both, a line would be indexed twice. Dropped at start.
pub(crate) async fn drop_sqlite_insert_triggers(pool: &sqlx::SqlitePool) -> Result<()> {
    let days: Vec<i64> = sqlx::query_scalar("SELECT day FROM log_days")
        .fetch_all(pool)
        .await?;
    for day in days {
        sqlx::query(sql(format!("DROP TRIGGER IF EXISTS log_lines_{day}_added")))
            .execute(pool)
            .await?;
    }
    Ok(())
}

fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

/// A value bound to a built query.
enum Bind {
    Int(i64),
    Text(String),
}

/// `text` (three characters or more) as an FTS5 query of the trigram index that every line
/// containing it matches: its trigrams side by side and its last one, each a quoted term,
/// ANDed. The index keeps no positions (`detail=none`), so it narrows the lines down and a
/// LIKE on the line decides.
fn fts_trigrams(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let term = |at: usize| {
        let gram: String = chars[at..at + 3].iter().collect();
        format!("\"{}\"", gram.replace('"', "\"\""))
    };
    let mut starts: Vec<usize> = (0..chars.len().saturating_sub(2)).step_by(3).collect();
    if chars.len() >= 3 && !(chars.len() - 3).is_multiple_of(3) {
        starts.push(chars.len() - 3);
    }
    let mut terms: Vec<String> = Vec::new();
    for term in starts.into_iter().map(term) {
        if !terms.contains(&term) {
            terms.push(term);
        }
    }
    terms.join(" AND ")
}

/// `text` as a case-insensitive regular expression matching it anywhere (SQLite's REGEXP, for
/// texts beyond ASCII: LIKE folds ASCII letters only).
fn regexp_anywhere(text: &str) -> String {
    format!("(?i){}", regex::escape(text))
}

/// `text` as a LIKE pattern matching it anywhere (`\` escapes).
fn like_anywhere(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

impl LogQuery {
    /// The WHERE clause (after `org_id = $1`) and its values; `fts` names the day's FTS table
    /// on SQLite.
    fn conditions(&self, backend: Backend, fts: Option<&str>) -> (String, Vec<Bind>) {
        let mut clause = String::new();
        let mut binds = vec![];
        let next = |binds: &mut Vec<Bind>, value: Bind| {
            binds.push(value);
            format!("${}", binds.len() + 1)
        };
        if let Some(agent) = &self.agent_id {
            let p = next(&mut binds, Bind::Text(agent.clone()));
            clause += &format!(" AND agent_id = {p}");
        }
        if let Some(container) = &self.container {
            let p = next(&mut binds, Bind::Text(container.clone()));
            let q = next(&mut binds, Bind::Text(container.clone()));
            clause += &format!(" AND (container_id = {p} OR container_name = {q})");
        }
        if let Some(project) = &self.compose_project {
            let p = next(&mut binds, Bind::Text(project.clone()));
            clause += &format!(" AND compose_project = {p}");
        }
        if let Some(stream) = &self.stream {
            let p = next(&mut binds, Bind::Text(stream.clone()));
            clause += &format!(" AND stream = {p}");
        }
        if let Some(host) = &self.proxy_host_id {
            let p = next(&mut binds, Bind::Text(host.clone()));
            clause += &format!(" AND proxy_host_id = {p}");
        }
        if let Some((low, high)) = self.status {
            let a = next(&mut binds, Bind::Int(i64::from(low)));
            let b = next(&mut binds, Bind::Int(i64::from(high)));
            clause += &format!(" AND status BETWEEN {a} AND {b}");
        }
        if !self.levels.is_empty() {
            let mut alternatives = vec![];
            for level in &self.levels {
                if level == "none" {
                    alternatives.push("level IS NULL".to_owned());
                } else {
                    let p = next(&mut binds, Bind::Text(level.clone()));
                    alternatives.push(format!("level = {p}"));
                }
            }
            clause += &format!(" AND ({})", alternatives.join(" OR "));
        }
        if let Some(since) = self.since_ns {
            let p = next(&mut binds, Bind::Int(since));
            clause += &format!(" AND time_ns >= {p}");
        }
        if let Some(until) = self.until_ns {
            let p = next(&mut binds, Bind::Int(until));
            clause += &format!(" AND time_ns < {p}");
        }
        if let Some(after) = &self.after {
            let t = next(&mut binds, Bind::Int(after.time_ns));
            let a = next(&mut binds, Bind::Text(after.agent_id.clone()));
            let s = next(&mut binds, Bind::Int(after.seq));
            let op = if self.oldest_first { ">" } else { "<" };
            clause += &format!(" AND (time_ns, agent_id, seq) {op} ({t}, {a}, {s})");
        }
        if let Some(text) = self.text.as_deref().filter(|t| !t.is_empty()) {
            match (backend, fts) {
                // The trigram index narrows substrings of three characters or more down; the
                // line decides (LIKE for ASCII texts, a case-insensitive REGEXP beyond).
                (Backend::Sqlite, fts) => {
                    if let Some(fts) = fts.filter(|_| text.chars().count() >= 3) {
                        let m = next(&mut binds, Bind::Text(fts_trigrams(text)));
                        clause +=
                            &format!(" AND id IN (SELECT rowid FROM {fts} WHERE {fts} MATCH {m})");
                    }
                    if text.is_ascii() {
                        let p = next(&mut binds, Bind::Text(like_anywhere(text)));
                        clause += &format!(" AND line LIKE {p} ESCAPE '\\'");
                    } else {
                        let p = next(&mut binds, Bind::Text(regexp_anywhere(text)));
                        clause += &format!(" AND line REGEXP {p}");
                    }
                }
                (Backend::Postgres, _) => {
                    let p = next(&mut binds, Bind::Text(like_anywhere(text)));
                    clause += &format!(" AND line ILIKE {p} ESCAPE '\\'");
                }
            }
        }
        (clause, binds)
    }

    /// Whether a line matches the query's filters (cursor and order aside), as the database
    /// would answer (text case-insensitive): for lines not read from the database (live).
    pub fn matches(&self, row: &LogLineRow) -> bool {
        let text_ok = match self.text.as_deref().filter(|t| !t.is_empty()) {
            None => true,
            Some(text) => row.line.to_lowercase().contains(&text.to_lowercase()),
        };
        let level_ok = self.levels.is_empty()
            || self.levels.iter().any(|l| match &row.level {
                None => l == "none",
                Some(level) => l == level,
            });
        self.agent_id.as_ref().is_none_or(|a| *a == row.agent_id)
            && self
                .container
                .as_ref()
                .is_none_or(|c| *c == row.container_id || *c == row.container_name)
            && self
                .compose_project
                .as_ref()
                .is_none_or(|p| *p == row.compose_project)
            && self.stream.as_ref().is_none_or(|s| *s == row.stream)
            && self
                .proxy_host_id
                .as_ref()
                .is_none_or(|h| row.proxy_host_id.as_ref() == Some(h))
            && self
                .status
                .is_none_or(|(low, high)| row.status.is_some_and(|s| (low..=high).contains(&s)))
            && self.since_ns.is_none_or(|t| row.time_ns >= t)
            && self.until_ns.is_none_or(|t| row.time_ns < t)
            && level_ok
            && text_ok
    }

    fn order(&self) -> &'static str {
        if self.oldest_first {
            " ORDER BY time_ns, agent_id, seq"
        } else {
            " ORDER BY time_ns DESC, agent_id DESC, seq DESC"
        }
    }
}

/// The lines a rare search text is in (PostgreSQL), as column arrays.
#[derive(Default)]
struct TextKeys {
    times: Vec<i64>,
    agents: Vec<String>,
    seqs: Vec<i64>,
}

impl TextKeys {
    /// The condition naming these lines, its arrays bound from parameter `first` on.
    fn condition(first: usize) -> String {
        format!(
            " AND (time_ns, agent_id, seq) IN (SELECT * FROM UNNEST(${first}::bigint[], ${}::text[], ${}::bigint[]))",
            first + 1,
            first + 2
        )
    }
}

/// Fewer lines than this holding a search text in the range (PostgreSQL): the query starts from
/// them (the function that finds them fetches rows, so a common text must stop it early).
const POSTGRES_SELECTIVE_MATCHES: i64 = 1000;

/// Fewer lines than this holding a search text's trigrams in a day: the query starts from them.
const SELECTIVE_MATCHES: i64 = 5000;

/// FTS5's `automerge` and `crisismerge` for the day tables' text indexes: segments merge only
/// when 64 of a level pile up (less merging while lines pour in; a finished day is merged into
/// one by `optimize`, see [`Store::apply_log_retention`]).
const FTS_AUTOMERGE: i64 = 0;
const FTS_CRISISMERGE: i64 = 64;

/// Rows in one INSERT on PostgreSQL (the columns as arrays).
const POSTGRES_ROWS_PER_INSERT: usize = 5000;

const LINE_COLUMNS: &str = "agent_id, time_ns, seq, container_id, container_name, compose_project, \
     stream, level, line, proxy_host_id, status";

macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut q = $query;
        for b in $binds {
            q = match b {
                Bind::Int(v) => q.bind(*v),
                Bind::Text(v) => q.bind(v.clone()),
            };
        }
        q
    }};
}

impl Tx {
    fn backend(&self) -> Backend {
        match self.inner {
            TxInner::Sqlite(_) => Backend::Sqlite,
            TxInner::Postgres(_) => Backend::Postgres,
        }
    }

    /// The last sequence of an agent's spool epoch stored here (0: none). Holds the cursor
    /// until the transaction ends: a second delivery of the same batch (a reconnect while the
    /// first is still being stored, another replica) waits, then finds it stored.
    pub async fn spool_committed(&mut self, agent_id: &str, epoch: i64) -> Result<i64> {
        let org = self.org_id.clone();
        if let TxInner::Postgres(c) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))")
                .bind(format!("spool:{agent_id}"))
                .bind(epoch)
                .execute(&mut **c)
                .await?;
        }
        let seq: Option<i64> = on_tx!(self, c => sqlx::query_scalar(
            "SELECT committed_seq FROM spool_cursors WHERE org_id = $1 AND agent_id = $2 AND epoch = $3",
        )
        .bind(&org)
        .bind(agent_id)
        .bind(epoch)
        .fetch_optional(&mut **c)
        .await)?;
        Ok(seq.unwrap_or(0))
    }

    /// Records that an agent's spool epoch is stored up to `seq` (never moves back).
    pub async fn set_spool_committed(
        &mut self,
        agent_id: &str,
        epoch: i64,
        seq: i64,
    ) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO spool_cursors (org_id, agent_id, epoch, committed_seq, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (agent_id, epoch) DO UPDATE SET \
             committed_seq = CASE WHEN excluded.committed_seq > spool_cursors.committed_seq \
             THEN excluded.committed_seq ELSE spool_cursors.committed_seq END, updated_at = excluded.updated_at \
             WHERE spool_cursors.org_id = excluded.org_id",
        )
        .bind(&org)
        .bind(agent_id)
        .bind(epoch)
        .bind(seq)
        .bind(now_ms())
        .execute(&mut **c)
        .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records sequences a node dropped before delivering them.
    pub async fn insert_log_gap(
        &mut self,
        agent_id: &str,
        epoch: i64,
        first_seq: i64,
        last_seq: i64,
    ) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO log_gaps (org_id, agent_id, epoch, first_seq, last_seq, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&org)
        .bind(agent_id)
        .bind(epoch)
        .bind(first_seq)
        .bind(last_seq)
        .bind(now_ms())
        .execute(&mut **c)
        .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Gaps recorded since `since_ms`, newest first.
    pub async fn log_gaps(&mut self, since_ms: i64, limit: i64) -> Result<Vec<LogGapRow>> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_as::<_, LogGapRow>(
            "SELECT agent_id, first_seq, last_seq, recorded_at FROM log_gaps \
             WHERE org_id = $1 AND recorded_at >= $2 ORDER BY recorded_at DESC, id DESC LIMIT $3",
        )
        .bind(&org)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&mut **c)
        .await)?)
    }

    /// Makes the day's table (and index) if it is not there yet.
    async fn ensure_log_day(&mut self, day: i64, day_start_ns: i64) -> Result<()> {
        match &mut self.inner {
            TxInner::Sqlite(c) => {
                let known: Option<i64> =
                    sqlx::query_scalar("SELECT day FROM log_days WHERE day = $1")
                        .bind(day)
                        .fetch_optional(&mut **c)
                        .await?;
                if known.is_some() {
                    return Ok(());
                }
                let statements = [
                    format!(
                        "CREATE TABLE IF NOT EXISTS log_lines_{day} (id INTEGER PRIMARY KEY, \
                         org_id TEXT NOT NULL, agent_id TEXT NOT NULL, time_ns INTEGER NOT NULL, \
                         seq INTEGER NOT NULL, container_id TEXT NOT NULL, container_name TEXT NOT NULL, \
                         compose_project TEXT NOT NULL, stream TEXT NOT NULL, level TEXT, line TEXT NOT NULL, \
                         proxy_host_id TEXT, status INTEGER)"
                    ),
                    format!(
                        "CREATE INDEX IF NOT EXISTS log_lines_{day}_org_time ON log_lines_{day} (org_id, time_ns)"
                    ),
                    format!(
                        "CREATE INDEX IF NOT EXISTS log_lines_{day}_proxy_host ON log_lines_{day} \
                         (org_id, proxy_host_id, time_ns) WHERE proxy_host_id IS NOT NULL"
                    ),
                    // Filled by `insert_log_lines` one statement a batch (an insert trigger, a
                    // statement a row, made ingest three times slower). Which lines hold a
                    // trigram, not where (`detail=none`: a LIKE on the line decides; indexing
                    // 1.6 times faster, half the size); no per-row sizes (`columnsize=0`: nothing
                    // here ranks); merges only when a level fills (`automerge` 0).
                    format!(
                        "CREATE VIRTUAL TABLE IF NOT EXISTS log_text_{day} USING fts5(line, \
                         content='log_lines_{day}', content_rowid='id', tokenize='trigram', \
                         detail=none, columnsize=0)"
                    ),
                    format!(
                        "INSERT INTO log_text_{day} (log_text_{day}, rank) VALUES ('automerge', {FTS_AUTOMERGE})"
                    ),
                    format!(
                        "INSERT INTO log_text_{day} (log_text_{day}, rank) VALUES ('crisismerge', {FTS_CRISISMERGE})"
                    ),
                    format!(
                        "CREATE TRIGGER IF NOT EXISTS log_lines_{day}_removed AFTER DELETE ON log_lines_{day} \
                         BEGIN INSERT INTO log_text_{day} (log_text_{day}, rowid, line) \
                         VALUES ('delete', old.id, old.line); END"
                    ),
                ];
                for statement in statements {
                    sqlx::query(sql(statement)).execute(&mut **c).await?;
                }
                sqlx::query("INSERT INTO log_days (day) VALUES ($1) ON CONFLICT (day) DO NOTHING")
                    .bind(day)
                    .execute(&mut **c)
                    .await?;
            }
            TxInner::Postgres(c) => {
                sqlx::query("SELECT ensure_log_day($1)")
                    .bind(day_start_ns)
                    .execute(&mut **c)
                    .await?;
            }
        }
        Ok(())
    }

    /// Stores lines (in this organisation): many rows a statement (a day's lines as one JSON
    /// array on SQLite, thousands of rows as column arrays on PostgreSQL), each day's lines in
    /// its table, in the order given.
    pub async fn insert_log_lines(&mut self, lines: &[NewLogLine<'_>]) -> Result<()> {
        let org = self.org_id.clone();
        let mut days = std::collections::BTreeSet::new();
        for line in lines {
            let day = day_of(line.time_ns);
            if days.insert(day) {
                self.ensure_log_day(day, line.time_ns.div_euclid(DAY_NS) * DAY_NS)
                    .await?;
            }
        }
        match &mut self.inner {
            TxInner::Postgres(c) => {
                for chunk in lines.chunks(POSTGRES_ROWS_PER_INSERT) {
                    fn column<'a>(
                        chunk: &[NewLogLine<'a>],
                        f: impl Fn(&NewLogLine<'a>) -> &'a str,
                    ) -> Vec<&'a str> {
                        chunk.iter().map(f).collect()
                    }
                    sqlx::query(
                        "INSERT INTO log_lines (org_id, agent_id, time_ns, seq, container_id, \
                         container_name, compose_project, stream, level, line, proxy_host_id, status) \
                         SELECT $1, * FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], $5::text[], \
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int4[])",
                    )
                    .bind(&org)
                    .bind(column(chunk, |l| l.agent_id))
                    .bind(chunk.iter().map(|l| l.time_ns).collect::<Vec<_>>())
                    .bind(chunk.iter().map(|l| l.seq).collect::<Vec<_>>())
                    .bind(column(chunk, |l| l.container_id))
                    .bind(column(chunk, |l| l.container_name))
                    .bind(column(chunk, |l| l.compose_project))
                    .bind(column(chunk, |l| l.stream))
                    .bind(chunk.iter().map(|l| l.level).collect::<Vec<_>>())
                    .bind(column(chunk, |l| l.line))
                    .bind(chunk.iter().map(|l| l.proxy_host_id).collect::<Vec<_>>())
                    .bind(chunk.iter().map(|l| l.status).collect::<Vec<_>>())
                    .execute(&mut **c)
                    .await?;
                }
            }
            TxInner::Sqlite(c) => {
                for day in days {
                    let of_day: Vec<&NewLogLine<'_>> =
                        lines.iter().filter(|l| day_of(l.time_ns) == day).collect();
                    let last_id: i64 = sqlx::query_scalar(sql(format!(
                        "SELECT COALESCE(MAX(id), 0) FROM log_lines_{day}"
                    )))
                    .fetch_one(&mut **c)
                    .await?;
                    // The day's lines as one JSON array of rows, one parameter: sqlx looks each
                    // parameter up by name, and a statement of thousands of them spent most of
                    // its time there.
                    let rows: Vec<_> = of_day
                        .iter()
                        .map(|l| {
                            (
                                l.agent_id,
                                l.time_ns,
                                l.seq,
                                l.container_id,
                                l.container_name,
                                l.compose_project,
                                l.stream,
                                l.level,
                                l.line,
                                l.proxy_host_id,
                                l.status,
                            )
                        })
                        .collect();
                    // Tuples are JSON arrays; a string cannot fail to serialise.
                    let rows = serde_json::to_string(&rows).unwrap_or_default();
                    sqlx::query(sql(format!(
                        "INSERT INTO log_lines_{day} (org_id, {LINE_COLUMNS}) SELECT $1, \
                         value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                         value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, \
                         value ->> 10 FROM json_each($2) ORDER BY key"
                    )))
                    .bind(&org)
                    .bind(rows)
                    .execute(&mut **c)
                    .await?;
                    // The day's text index, for the lines just added (in this transaction).
                    sqlx::query(sql(format!(
                        "INSERT INTO log_text_{day} (rowid, line) \
                         SELECT id, line FROM log_lines_{day} WHERE id > $1"
                    )))
                    .bind(last_id)
                    .execute(&mut **c)
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// The days that hold lines, in the query's order and range.
    async fn log_days(&mut self, query: &LogQuery) -> Result<Vec<i64>> {
        let TxInner::Sqlite(c) = &mut self.inner else {
            return Ok(vec![]);
        };
        let mut days: Vec<i64> = sqlx::query_scalar("SELECT day FROM log_days ORDER BY day")
            .fetch_all(&mut **c)
            .await?;
        let first = query.since_ns.map(day_of).unwrap_or(i64::MIN);
        let last = query
            .until_ns
            .map(|u| day_of(u.saturating_sub(1)))
            .unwrap_or(i64::MAX);
        days.retain(|d| (first..=last).contains(d));
        if !query.oldest_first {
            days.reverse();
        }
        Ok(days)
    }

    /// A page of lines matching `query` (at most `query.limit`), in its order.
    pub async fn query_logs(&mut self, query: &LogQuery) -> Result<Vec<LogLineRow>> {
        let org = self.org_id.clone();
        let limit = query.limit.clamp(1, 10_000);
        match self.backend() {
            Backend::Postgres => {
                let keys = self.postgres_text_keys(query).await?;
                if keys.as_ref().is_some_and(|k| k.times.is_empty()) {
                    return Ok(vec![]);
                }
                let (mut clause, binds) = query.conditions(Backend::Postgres, None);
                if keys.is_some() {
                    clause += &TextKeys::condition(binds.len() + 2);
                }
                let statement = format!(
                    "SELECT {LINE_COLUMNS} FROM log_lines WHERE org_id = $1{clause}{} LIMIT {limit}",
                    query.order()
                );
                let TxInner::Postgres(c) = &mut self.inner else {
                    unreachable!()
                };
                let q = sqlx::query_as::<_, LogLineRow>(sql(statement)).bind(&org);
                let mut q = bind_all!(q, &binds);
                if let Some(keys) = keys {
                    q = q.bind(keys.times).bind(keys.agents).bind(keys.seqs);
                }
                Ok(q.fetch_all(&mut **c).await?)
            }
            Backend::Sqlite => {
                let mut out = Vec::new();
                for day in self.log_days(query).await? {
                    let fts = format!("log_text_{day}");
                    let org_condition = self.sqlite_org_condition(query, &fts).await?;
                    let (clause, binds) = query.conditions(Backend::Sqlite, Some(&fts));
                    let statement = format!(
                        "SELECT {LINE_COLUMNS} FROM log_lines_{day} WHERE {org_condition}{clause}{} LIMIT {}",
                        query.order(),
                        limit - out.len() as i64
                    );
                    let TxInner::Sqlite(c) = &mut self.inner else {
                        unreachable!()
                    };
                    let q = sqlx::query_as::<_, LogLineRow>(sql(statement)).bind(&org);
                    out.extend(bind_all!(q, &binds).fetch_all(&mut **c).await?);
                    if out.len() as i64 >= limit {
                        break;
                    }
                }
                Ok(out)
            }
        }
    }

    /// On PostgreSQL, the keys (time, agent, sequence) of the lines holding the query's text
    /// when fewer than [`POSTGRES_SELECTIVE_MATCHES`] in its time range do, found through the trigram
    /// index by `log_text_matches` (migration 0017: below the tenant policy the index cannot be
    /// used); `None` without a text or when it is common (an ordered scan finds a page sooner).
    async fn postgres_text_keys(&mut self, query: &LogQuery) -> Result<Option<TextKeys>> {
        let Some(text) = query.text.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let TxInner::Postgres(c) = &mut self.inner else {
            return Ok(None);
        };
        let rows: Vec<(i64, String, i64)> =
            sqlx::query_as("SELECT time_ns, agent_id, seq FROM log_text_matches($1, $2, $3, $4)")
                .bind(like_anywhere(text))
                .bind(query.since_ns.unwrap_or(i64::MIN))
                .bind(query.until_ns.unwrap_or(i64::MAX))
                .bind(POSTGRES_SELECTIVE_MATCHES as i32)
                .fetch_all(&mut **c)
                .await?;
        if rows.len() as i64 >= POSTGRES_SELECTIVE_MATCHES {
            return Ok(None);
        }
        let mut keys = TextKeys::default();
        for (time, agent, seq) in rows {
            keys.times.push(time);
            keys.agents.push(agent);
            keys.seqs.push(seq);
        }
        Ok(Some(keys))
    }

    /// `org_id = $1`, or — when the query's text is rare in the day's text index (fewer than
    /// [`SELECTIVE_MATCHES`] lines hold its trigrams) — `+org_id = $1`, which keeps SQLite off
    /// the (organisation, time) index so that it starts from the few matching lines instead of
    /// walking the whole day in time order testing each. (The day's index is every
    /// organisation's: another organisation's many matches choose the walk, which is slower,
    /// never wrong; only the plan is chosen by them, the rows are this organisation's.)
    async fn sqlite_org_condition(&mut self, query: &LogQuery, fts: &str) -> Result<&'static str> {
        let Some(text) = query.text.as_deref().filter(|t| t.chars().count() >= 3) else {
            return Ok("org_id = $1");
        };
        let TxInner::Sqlite(c) = &mut self.inner else {
            return Ok("org_id = $1");
        };
        let candidates: i64 = sqlx::query_scalar(sql(format!(
            "SELECT COUNT(*) FROM (SELECT rowid FROM {fts} WHERE {fts} MATCH $1 LIMIT {SELECTIVE_MATCHES})"
        )))
        .bind(fts_trigrams(text))
        .fetch_one(&mut **c)
        .await?;
        Ok(if candidates < SELECTIVE_MATCHES {
            "+org_id = $1"
        } else {
            "org_id = $1"
        })
    }

    /// Lines per interval and level (`none` for lines without one) matching `query` (its
    /// order, cursor and limit aside), for the volume chart: (interval start, level, count),
    /// by interval then level.
    pub async fn log_volume(
        &mut self,
        query: &LogQuery,
        interval_ns: i64,
    ) -> Result<Vec<(i64, String, i64)>> {
        let org = self.org_id.clone();
        let query = LogQuery {
            after: None,
            ..query.clone()
        };
        let interval_ns = interval_ns.max(1);
        let mut counts: std::collections::BTreeMap<(i64, String), i64> = Default::default();
        let select = |table: &str, org_condition: &str, clause: &str| {
            format!(
                "SELECT (time_ns / {interval_ns}) * {interval_ns} AS bucket, COALESCE(level, 'none') AS lvl, \
                 COUNT(*) AS n FROM {table} WHERE {org_condition}{clause} GROUP BY bucket, lvl"
            )
        };
        match self.backend() {
            Backend::Postgres => {
                let keys = self.postgres_text_keys(&query).await?;
                let (mut clause, binds) = query.conditions(Backend::Postgres, None);
                if keys.is_some() {
                    clause += &TextKeys::condition(binds.len() + 2);
                }
                let TxInner::Postgres(c) = &mut self.inner else {
                    unreachable!()
                };
                let q = sqlx::query_as::<_, (i64, String, i64)>(sql(select(
                    "log_lines",
                    "org_id = $1",
                    &clause,
                )))
                .bind(&org);
                let mut q = bind_all!(q, &binds);
                if let Some(keys) = keys {
                    q = q.bind(keys.times).bind(keys.agents).bind(keys.seqs);
                }
                for (bucket, level, n) in q.fetch_all(&mut **c).await? {
                    *counts.entry((bucket, level)).or_default() += n;
                }
            }
            Backend::Sqlite => {
                for day in self.log_days(&query).await? {
                    let fts = format!("log_text_{day}");
                    let org_condition = self.sqlite_org_condition(&query, &fts).await?;
                    let (clause, binds) = query.conditions(Backend::Sqlite, Some(&fts));
                    let TxInner::Sqlite(c) = &mut self.inner else {
                        unreachable!()
                    };
                    let q = sqlx::query_as::<_, (i64, String, i64)>(sql(select(
                        &format!("log_lines_{day}"),
                        org_condition,
                        &clause,
                    )))
                    .bind(&org);
                    for (bucket, level, n) in bind_all!(q, &binds).fetch_all(&mut **c).await? {
                        *counts.entry((bucket, level)).or_default() += n;
                    }
                }
            }
        }
        Ok(counts
            .into_iter()
            .map(|((bucket, level), n)| (bucket, level, n))
            .collect())
    }

    /// Runs `select` (with `{table}` for the table and `$1` org, `$2` since, `$3` until) over
    /// the days of `[since_ns, until_ns)`, merging the rows' counts by key (the columns before
    /// the last ones `counts` names).
    async fn grouped_counts<const N: usize>(
        &mut self,
        since_ns: i64,
        until_ns: i64,
        select: &str,
    ) -> Result<Vec<(String, String, [i64; N])>> {
        let org = self.org_id.clone();
        let tables = match self.backend() {
            Backend::Postgres => vec!["log_lines".to_owned()],
            Backend::Sqlite => {
                let range = LogQuery {
                    since_ns: Some(since_ns),
                    until_ns: Some(until_ns),
                    oldest_first: true,
                    ..Default::default()
                };
                self.log_days(&range)
                    .await?
                    .into_iter()
                    .map(|d| format!("log_lines_{d}"))
                    .collect()
            }
        };
        let mut merged: std::collections::BTreeMap<(String, String), [i64; N]> = Default::default();
        for table in tables {
            let statement = select.replace("{table}", &table);
            let rows: Vec<(String, String, i64, i64)> = on_tx!(self, c => sqlx::query_as(sql(statement))
                .bind(&org)
                .bind(since_ns)
                .bind(until_ns)
                .fetch_all(&mut **c)
                .await)?;
            for (a, b, x, y) in rows {
                let entry = merged.entry((a, b)).or_insert([0; N]);
                entry[0] += x;
                if N > 1 {
                    entry[N - 1] += y;
                }
            }
        }
        Ok(merged.into_iter().map(|((a, b), n)| (a, b, n)).collect())
    }

    /// Lines of `level` per node and container in `[since_ns, until_ns)`.
    pub async fn count_log_lines_by_container(
        &mut self,
        since_ns: i64,
        until_ns: i64,
        level: &str,
    ) -> Result<Vec<(String, String, i64)>> {
        if !["error", "warn", "info", "debug"].contains(&level) {
            return Ok(vec![]);
        }
        let select = format!(
            "SELECT agent_id, container_name, COUNT(*), CAST(0 AS BIGINT) FROM {{table}} WHERE org_id = $1 \
             AND time_ns >= $2 AND time_ns < $3 AND level = '{level}' GROUP BY agent_id, container_name"
        );
        Ok(self
            .grouped_counts::<1>(since_ns, until_ns, &select)
            .await?
            .into_iter()
            .map(|(agent, container, [n])| (agent, container, n))
            .collect())
    }

    /// Access lines per proxy host in `[since_ns, until_ns)`: (node, proxy host, all, 5xx).
    pub async fn proxy_status_counts(
        &mut self,
        since_ns: i64,
        until_ns: i64,
    ) -> Result<Vec<(String, String, i64, i64)>> {
        let select = "SELECT agent_id, proxy_host_id, COUNT(*), \
             COALESCE(SUM(CASE WHEN status >= 500 THEN 1 ELSE 0 END), 0) FROM {table} \
             WHERE org_id = $1 AND time_ns >= $2 AND time_ns < $3 AND proxy_host_id IS NOT NULL \
             AND status IS NOT NULL GROUP BY agent_id, proxy_host_id";
        Ok(self
            .grouped_counts::<2>(since_ns, until_ns, select)
            .await?
            .into_iter()
            .map(|(agent, host, [all, errors])| (agent, host, all, errors))
            .collect())
    }

    /// This organisation's retention in days (`None`: the host's default).
    pub async fn log_retention_days(&mut self) -> Result<Option<i64>> {
        let org = self.org_id.clone();
        let days: Option<i64> = on_tx!(self, c => sqlx::query_scalar(
            "SELECT CAST(retention_days AS BIGINT) FROM log_settings WHERE org_id = $1",
        )
        .bind(&org)
        .fetch_optional(&mut **c)
        .await)?;
        Ok(days)
    }

    /// Sets this organisation's retention in days (`None`: back to the host's default).
    pub async fn set_log_retention_days(&mut self, days: Option<i64>) -> Result<()> {
        let org = self.org_id.clone();
        match days {
            Some(days) => {
                on_tx!(self, c => sqlx::query(
                    "INSERT INTO log_settings (org_id, retention_days) VALUES ($1, $2) \
                     ON CONFLICT (org_id) DO UPDATE SET retention_days = excluded.retention_days",
                )
                .bind(&org)
                .bind(days as i32)
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected()))?;
            }
            None => {
                on_tx!(self, c => sqlx::query("DELETE FROM log_settings WHERE org_id = $1")
                    .bind(&org)
                    .execute(&mut **c)
                    .await
                    .map(|r| r.rows_affected()))?;
            }
        }
        Ok(())
    }

    /// Deletes this organisation's lines older than `before_ns` (its retention), and its gaps
    /// recorded before `before_ms`; the number of lines deleted.
    async fn delete_log_lines_before(&mut self, before_ns: i64, before_ms: i64) -> Result<u64> {
        let org = self.org_id.clone();
        let mut deleted = 0;
        on_tx!(self, c => sqlx::query("DELETE FROM log_gaps WHERE org_id = $1 AND recorded_at < $2")
            .bind(&org)
            .bind(before_ms)
            .execute(&mut **c)
            .await
            .map(|r| r.rows_affected()))?;
        match self.backend() {
            Backend::Postgres => {
                deleted += on_tx!(self, c => sqlx::query(
                    "DELETE FROM log_lines WHERE org_id = $1 AND time_ns < $2",
                )
                .bind(&org)
                .bind(before_ns)
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected()))?;
            }
            Backend::Sqlite => {
                let older = LogQuery {
                    until_ns: Some(before_ns),
                    oldest_first: true,
                    ..Default::default()
                };
                for day in self.log_days(&older).await? {
                    let statement =
                        format!("DELETE FROM log_lines_{day} WHERE org_id = $1 AND time_ns < $2");
                    deleted += on_tx!(self, c => sqlx::query(sql(statement))
                        .bind(&org)
                        .bind(before_ns)
                        .execute(&mut **c)
                        .await
                        .map(|r| r.rows_affected()))?;
                }
            }
        }
        Ok(deleted)
    }

    /// Deletes this organisation's lines (its deletion).
    pub(crate) async fn delete_log_lines(&mut self) -> Result<()> {
        let org = self.org_id.clone();
        match self.backend() {
            Backend::Postgres => {
                on_tx!(self, c => sqlx::query("DELETE FROM log_lines WHERE org_id = $1")
                    .bind(&org)
                    .execute(&mut **c)
                    .await.map(|r| r.rows_affected()))?;
            }
            Backend::Sqlite => {
                let all = LogQuery {
                    oldest_first: true,
                    ..Default::default()
                };
                for day in self.log_days(&all).await? {
                    let statement = format!("DELETE FROM log_lines_{day} WHERE org_id = $1");
                    on_tx!(self, c => sqlx::query(sql(statement)).bind(&org).execute(&mut **c).await.map(|r| r.rows_affected()))?;
                }
            }
        }
        Ok(())
    }
}

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Whole days dropped (no organisation keeps lines that old).
    pub days_dropped: u64,
    /// Lines deleted one by one (organisations that keep less than the longest).
    pub lines_deleted: u64,
    /// Finished days whose text index was merged into one segment (SQLite).
    pub days_optimized: u64,
}

impl Store {
    /// Makes the tables of the days of these times, each in a transaction of its own (before
    /// lines of them are stored: on PostgreSQL a new partition locks its parent until commit).
    pub async fn prepare_log_days(&self, times: impl Iterator<Item = i64>) -> Result<()> {
        let days: std::collections::BTreeSet<i64> =
            times.map(|t| t.div_euclid(DAY_NS) * DAY_NS).collect();
        // Yesterday and later are remembered once made (retention never drops them: it keeps
        // at least one whole day).
        let recent = (now_ms().saturating_mul(1_000_000)).div_euclid(DAY_NS) * DAY_NS - DAY_NS;
        for start in days {
            let known = self
                .known_log_days
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&start);
            if known {
                continue;
            }
            let mut tx = self.write(&OrgId::default_org()).await?;
            tx.ensure_log_day(day_of(start), start).await?;
            tx.commit().await?;
            if start >= recent {
                self.known_log_days
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(start);
            }
        }
        Ok(())
    }

    /// Where each organisation's retention (`default_days` where it set none) begins: lines
    /// before it go (the log sink's retention).
    pub async fn log_retention_cutoffs(
        &self,
        default_days: i64,
        now_ns: i64,
    ) -> Result<Vec<(OrgId, i64)>> {
        let mut cutoffs = vec![];
        for org in self.organization_ids().await? {
            let mut tx = self.read(&org).await?;
            let days = tx.log_retention_days().await?.unwrap_or(default_days);
            tx.commit().await?;
            cutoffs.push((org, now_ns.saturating_sub(days.saturating_mul(DAY_NS))));
        }
        Ok(cutoffs)
    }

    /// Applies every organisation's log retention (`default_days` where it set none): lines
    /// older than an organisation keeps are deleted, and days older than every organisation
    /// keeps are dropped whole. The system path: each organisation in a transaction of its own.
    pub async fn apply_log_retention(
        &self,
        default_days: i64,
        now_ns: i64,
    ) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        let mut longest = default_days;
        for org in self.organization_ids().await? {
            let mut tx = self.write(&org).await?;
            let days = tx.log_retention_days().await?.unwrap_or(default_days);
            longest = longest.max(days);
            let before_ns = now_ns.saturating_sub(days.saturating_mul(DAY_NS));
            report.lines_deleted += tx
                .delete_log_lines_before(before_ns, before_ns / 1_000_000)
                .await?;
            tx.commit().await?;
        }
        // Days that end before the longest retention's start.
        let before_ns = now_ns.saturating_sub(longest.saturating_mul(DAY_NS));
        let first_kept_day = day_of(before_ns);
        let mut tx = self.write(&OrgId::default_org()).await?;
        match &mut tx.inner {
            TxInner::Sqlite(c) => {
                let days: Vec<i64> = sqlx::query_scalar("SELECT day FROM log_days WHERE day < $1")
                    .bind(first_kept_day)
                    .fetch_all(&mut **c)
                    .await?;
                for day in days {
                    for statement in [
                        format!("DROP TABLE IF EXISTS log_text_{day}"),
                        format!("DROP TABLE IF EXISTS log_lines_{day}"),
                    ] {
                        sqlx::query(sql(statement)).execute(&mut **c).await?;
                    }
                    sqlx::query("DELETE FROM log_days WHERE day = $1")
                        .bind(day)
                        .execute(&mut **c)
                        .await?;
                    report.days_dropped += 1;
                }
                // Days that are over: their text index merged into one segment (ingest leaves
                // up to 64 a level; a search probes each).
                let today = day_of(now_ns);
                let finished: Vec<i64> =
                    sqlx::query_scalar("SELECT day FROM log_days WHERE day < $1 AND optimized = 0")
                        .bind(today)
                        .fetch_all(&mut **c)
                        .await?;
                for day in finished {
                    sqlx::query(sql(format!(
                        "INSERT INTO log_text_{day} (log_text_{day}) VALUES ('optimize')"
                    )))
                    .execute(&mut **c)
                    .await?;
                    sqlx::query("UPDATE log_days SET optimized = 1 WHERE day = $1")
                        .bind(day)
                        .execute(&mut **c)
                        .await?;
                    report.days_optimized += 1;
                }
            }
            TxInner::Postgres(c) => {
                let dropped: i32 = sqlx::query_scalar("SELECT drop_log_days_before($1)")
                    .bind(before_ns.div_euclid(DAY_NS) * DAY_NS)
                    .fetch_one(&mut **c)
                    .await?;
                report.days_dropped += dropped.max(0) as u64;
            }
        }
        tx.commit().await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_of_times() {
        assert_eq!(day_of(0), 19_700_101);
        // 2026-12-06T16:45:06Z.
        assert_eq!(day_of(1_796_575_506 * 1_000_000_000), 20_261_206);
        assert_eq!(day_of(1_796_601_599_999_999_999), 20_261_206);
        assert_eq!(day_of(1_796_601_600_000_000_000), 20_261_207);
        // 2028-02-29 (a leap day).
        assert_eq!(day_of(1_835_395_200 * 1_000_000_000), 20_280_229);
        assert_eq!(day_of(-1), 19_691_231);
    }

    #[test]
    fn search_text_is_quoted_not_interpreted() {
        assert_eq!(fts_trigrams("a\"b OR c"), r#""a""b" AND " OR" AND "R c""#);
        assert_eq!(fts_trigrams("abcdef"), r#""abc" AND "def""#);
        assert_eq!(fts_trigrams("abcdefg"), r#""abc" AND "def" AND "efg""#);
        assert_eq!(fts_trigrams("äöü"), r#""äöü""#);
        assert_eq!(like_anywhere("50%_\\"), "%50\\%\\_\\\\%");
    }
}
