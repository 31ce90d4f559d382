//! The organisation's stored logs (issue 17): every container line of every node, as the nodes'
//! spools delivered them, filtered and paged; the same filters live over a WebSocket, as a CSV
//! export and as counts per interval and level; the gaps the nodes reported; the retention.

use axum::Json;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use infrapilot_identity::Role;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::audit_log::{self, Actor};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::socket_guard::SocketGuard;
use crate::socket_guard::send_text;
use crate::state::AppState;
use crate::validate::{self, rfc3339_ns, time_ns};
use infrapilot_store::{LogCursor, LogLineRow, LogQuery, OrgId};

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "none"];
/// The longest search text.
const MAX_TEXT: usize = 256;

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// A node (agent id).
    #[param(format = Uuid)]
    pub agent: Option<String>,
    /// A container id or name.
    #[param(pattern = "^([A-Za-z0-9][A-Za-z0-9_.-]{0,254})?$")]
    pub container: Option<String>,
    /// A compose project.
    #[param(pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{0,255}$")]
    pub project: Option<String>,
    /// Levels, comma-separated: error, warn, info, debug, none (lines without a level).
    #[param(pattern = "^((error|warn|info|debug|none)(,(error|warn|info|debug|none))*)?$")]
    pub level: Option<String>,
    /// stdout or stderr.
    #[param(pattern = "^(stdout|stderr)?$")]
    pub stream: Option<String>,
    /// A proxy host (its nginx access and error lines).
    #[param(format = Uuid)]
    pub proxy_host: Option<String>,
    /// HTTP status of nginx access lines: a code (`502`) or a class (`5xx`).
    #[param(pattern = "^([1-5]xx|[1-5][0-9][0-9])?$")]
    pub status: Option<String>,
    /// Text the line contains (case-insensitive, at most 256 characters).
    #[param(pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{0,256}$")]
    pub q: Option<String>,
    /// RFC 3339: lines at or after.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339: lines before.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// `newest` (default) or `oldest` first.
    #[param(pattern = "^(newest|oldest)?$")]
    pub order: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(
        pattern = "^(-?[0-9]{1,19}\\.-?[0-9]{1,19}\\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$"
    )]
    pub cursor: Option<String>,
    /// 1–1000, default 200.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct LogLineDto {
    /// RFC 3339 with nanoseconds.
    pub time: String,
    pub time_ns: i64,
    pub agent_id: String,
    /// The node's spool sequence of the line (gaps name these).
    pub seq: i64,
    pub container_id: String,
    pub container_name: String,
    pub compose_project: String,
    pub stream: String,
    pub level: Option<String>,
    pub line: String,
    /// A line of a node's managed nginx: the proxy host it belongs to.
    pub proxy_host_id: Option<String>,
    /// An nginx access line's HTTP status.
    pub status: Option<i32>,
}

#[derive(Serialize, ToSchema)]
pub struct LogGapDto {
    pub agent_id: String,
    /// The node's spool sequences it dropped before this host had them (one per record).
    pub first_seq: i64,
    pub last_seq: i64,
    pub recorded_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct LogPageDto {
    pub items: Vec<LogLineDto>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
    /// Records nodes dropped (their spool's bound reached) in the last 7 days, newest first.
    pub gaps: Vec<LogGapDto>,
}

impl From<LogLineRow> for LogLineDto {
    fn from(r: LogLineRow) -> LogLineDto {
        LogLineDto {
            time: rfc3339_ns(r.time_ns),
            time_ns: r.time_ns,
            agent_id: r.agent_id,
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

fn encode_cursor(c: &LogCursor) -> String {
    format!("{}.{}.{}", c.time_ns, c.seq, c.agent_id)
}

fn decode_cursor(raw: &str) -> ApiResult<LogCursor> {
    let bad = || ApiError::invalid("cursor", "cursor must be a next_cursor this API returned");
    // Numbers of up to 19 digits (the documented form) past i64's range mean its nearest end: a
    // position beyond every line, not an error.
    let number = |p: &str| {
        p.parse::<i128>()
            .ok()
            .map(|v| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    };
    let mut parts = raw.splitn(3, '.');
    let time_ns = parts.next().and_then(number).ok_or_else(bad)?;
    let seq = parts.next().and_then(number).ok_or_else(bad)?;
    let agent_id = parts.next().ok_or_else(bad)?;
    let agent_id = validate::uuid("cursor", agent_id).map_err(|_| bad())?;
    Ok(LogCursor {
        time_ns,
        agent_id,
        seq,
    })
}

fn short_text(field: &str, raw: &str, max: usize) -> ApiResult<String> {
    if raw.chars().count() > max || raw.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be at most {max} characters, without control characters"),
        ));
    }
    Ok(raw.to_owned())
}

/// The query as the store takes it, every field checked.
fn log_query(q: &LogsQuery) -> ApiResult<LogQuery> {
    let limit = q.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be 1–1000"));
    }
    let levels = match q.level.as_deref().filter(|l| !l.is_empty()) {
        None => vec![],
        Some(list) => list
            .split(',')
            .map(|l| {
                if LEVELS.contains(&l) {
                    Ok(l.to_owned())
                } else {
                    Err(ApiError::invalid(
                        "level",
                        "level must be a comma-separated list of error, warn, info, debug, none",
                    ))
                }
            })
            .collect::<ApiResult<Vec<_>>>()?,
    };
    let stream = match q.stream.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s @ ("stdout" | "stderr")) => Some(s.to_owned()),
        Some(_) => {
            return Err(ApiError::invalid(
                "stream",
                "stream must be stdout or stderr",
            ));
        }
    };
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let bad = || {
                ApiError::invalid(
                    "status",
                    "status must be an HTTP status (100–599) or a class such as 5xx",
                )
            };
            if let Some(class) = s.strip_suffix("xx") {
                let class: i32 = class.parse().map_err(|_| bad())?;
                if !(1..=5).contains(&class) {
                    return Err(bad());
                }
                Some((class * 100, class * 100 + 99))
            } else {
                let code: i32 = s.parse().map_err(|_| bad())?;
                if !(100..=599).contains(&code) {
                    return Err(bad());
                }
                Some((code, code))
            }
        }
    };
    let oldest_first = match q.order.as_deref().filter(|o| !o.is_empty()) {
        None | Some("newest") => false,
        Some("oldest") => true,
        Some(_) => return Err(ApiError::invalid("order", "order must be newest or oldest")),
    };
    // A range that selects nothing (since at or after until) answers nothing.
    let since_ns = q
        .since
        .as_deref()
        .map(|s| time_ns("since", s))
        .transpose()?;
    let until_ns = q
        .until
        .as_deref()
        .map(|s| time_ns("until", s))
        .transpose()?;
    let container = q
        .container
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| super::containers::container_ref_named("container", c))
        .transpose()?;
    Ok(LogQuery {
        agent_id: q
            .agent
            .as_deref()
            .map(|a| validate::uuid("agent", a))
            .transpose()?,
        container,
        compose_project: q
            .project
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(|p| short_text("project", p, 255))
            .transpose()?,
        levels,
        stream,
        proxy_host_id: q
            .proxy_host
            .as_deref()
            .map(|h| validate::uuid("proxy_host", h))
            .transpose()?,
        status,
        text: q
            .q
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| short_text("q", t, MAX_TEXT))
            .transpose()?,
        since_ns,
        until_ns,
        oldest_first,
        after: q
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(decode_cursor)
            .transpose()?,
        limit,
    })
}

/// Where log lines are read: the log sink when the operator configured one, else the database.
#[derive(Clone)]
pub struct LogLines {
    pub store: infrapilot_store::Store,
    pub sink: Option<std::sync::Arc<dyn infrapilot_store::LogSink>>,
}

impl LogLines {
    /// A page of `org`'s lines matching `query`.
    pub async fn page(&self, org: &OrgId, query: &LogQuery) -> Result<Vec<LogLineRow>, ApiError> {
        match &self.sink {
            Some(sink) => Ok(sink.query(org, query).await?),
            None => {
                let mut tx = self.store.read(org).await?;
                Ok(tx.query_logs(query).await?)
            }
        }
    }

    /// Lines per interval and level.
    pub async fn volume(
        &self,
        org: &OrgId,
        query: &LogQuery,
        interval_ns: i64,
    ) -> Result<Vec<(i64, String, i64)>, ApiError> {
        match &self.sink {
            Some(sink) => Ok(sink.volume(org, query, interval_ns).await?),
            None => {
                let mut tx = self.store.read(org).await?;
                Ok(tx.log_volume(query, interval_ns).await?)
            }
        }
    }
}

#[utoipa::path(get, path = "/api/v1/logs", operation_id = "list_logs", tag = "logs",
    params(LogsQuery),
    responses((status = 200, body = LogPageDto), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Json<LogPageDto>> {
    let mut query = log_query(&q)?;
    let limit = query.limit;
    // One more than asked tells whether there is a next page.
    query.limit = limit + 1;
    let mut rows = state.log_lines().page(&principal.org_id, &query).await?;
    let mut tx = state.store().read(&principal.org_id).await?;
    let gaps: Vec<_> = tx
        .log_gaps(infrapilot_store::now_ms() - 7 * 86_400_000, 100)
        .await?
        .into_iter()
        .filter(|g| query.agent_id.as_ref().is_none_or(|a| *a == g.agent_id))
        .collect();
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last()).flatten().map(|r| {
        encode_cursor(&LogCursor {
            time_ns: r.time_ns,
            agent_id: r.agent_id.clone(),
            seq: r.seq,
        })
    });
    Ok(Json(LogPageDto {
        items: rows.into_iter().map(LogLineDto::from).collect(),
        next_cursor,
        gaps: gaps
            .into_iter()
            .map(|g| LogGapDto {
                agent_id: g.agent_id,
                first_seq: g.first_seq,
                last_seq: g.last_seq,
                recorded_at: validate::rfc3339(g.recorded_at),
            })
            .collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VolumeQuery {
    /// Seconds per interval: 10–86400, default 60.
    #[param(minimum = 10, maximum = 86400)]
    pub interval: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct VolumeBucket {
    /// The interval's start (RFC 3339).
    pub start: String,
    pub error: i64,
    pub warn: i64,
    pub info: i64,
    pub debug: i64,
    /// Lines without a level.
    pub none: i64,
}

#[derive(Serialize, ToSchema)]
pub struct LogVolumeDto {
    pub interval_seconds: i64,
    pub since: String,
    pub until: String,
    /// Every interval from `since` to `until`, empty ones included.
    pub buckets: Vec<VolumeBucket>,
}

/// The longest an organisation may keep its lines (one organisation's retention decides when
/// whole days can be dropped for everyone).
const MAX_RETENTION_DAYS: i64 = 365;

/// The most intervals one volume answer has.
const MAX_BUCKETS: i64 = 1440;

#[utoipa::path(get, path = "/api/v1/logs/volume", operation_id = "log_volume", tag = "logs",
    description = "Lines per interval and level for the filters of `GET /api/v1/logs` (default: the last hour). An interval too short for the range is widened so that at most 1,440 cover it (`interval_seconds` says which).",
    params(LogsQuery, VolumeQuery),
    responses((status = 200, body = LogVolumeDto), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn volume(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<LogsQuery>,
    ApiQuery(v): ApiQuery<VolumeQuery>,
) -> ApiResult<Json<LogVolumeDto>> {
    let mut query = log_query(&q)?;
    let interval = v.interval.unwrap_or(60);
    if !(10..=86_400).contains(&interval) {
        return Err(ApiError::invalid(
            "interval",
            "interval must be 10–86400 seconds",
        ));
    }
    let now_ns = infrapilot_store::now_ms() * 1_000_000;
    // Times far out are kept where intervals can count them (1970 to 2262).
    let until = query.until_ns.unwrap_or(now_ns).clamp(0, i64::MAX / 2);
    let since = query
        .since_ns
        .unwrap_or_else(|| until.saturating_sub(3600 * 1_000_000_000))
        .clamp(0, i64::MAX / 2);
    // A range too long for the interval asked: the interval widens (whole seconds) so that at
    // most MAX_BUCKETS of them cover it; the answer says which was used.
    let span_s = (until - since).max(0) / 1_000_000_000;
    let interval = interval.max((span_s + MAX_BUCKETS - 1) / MAX_BUCKETS);
    let interval_ns = interval * 1_000_000_000;
    // Whole intervals: the first starts at or before `since`.
    let first = since.div_euclid(interval_ns) * interval_ns;
    let count = if since >= until {
        0
    } else {
        ((until - first + interval_ns - 1) / interval_ns).min(MAX_BUCKETS + 1)
    };
    query.since_ns = Some(first);
    query.until_ns = Some(until);
    let counts = state
        .log_lines()
        .volume(&principal.org_id, &query, interval_ns)
        .await?;
    let mut buckets: Vec<VolumeBucket> = (0..count)
        .map(|n| VolumeBucket {
            start: rfc3339_ns(first + n * interval_ns),
            error: 0,
            warn: 0,
            info: 0,
            debug: 0,
            none: 0,
        })
        .collect();
    for (start, level, n) in counts {
        let Some(bucket) = usize::try_from((start - first) / interval_ns)
            .ok()
            .and_then(|i| buckets.get_mut(i))
        else {
            continue;
        };
        match level.as_str() {
            "error" => bucket.error += n,
            "warn" => bucket.warn += n,
            "info" => bucket.info += n,
            "debug" => bucket.debug += n,
            _ => bucket.none += n,
        }
    }
    Ok(Json(LogVolumeDto {
        interval_seconds: interval,
        since: rfc3339_ns(first),
        until: rfc3339_ns(until),
        buckets,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Most lines in the file: 1–1,000,000, default 100,000.
    #[param(minimum = 1, maximum = 1000000)]
    pub max: Option<i64>,
}

/// A CSV cell (RFC 4180: always quoted, quotes doubled); one a spreadsheet would read as a
/// formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`.
fn csv_cell(text: &str) -> String {
    let neutral = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    format!("\"{}\"", neutral.replace('"', "\"\""))
}

fn csv_row(cells: &[&str]) -> String {
    let mut row = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    row.push_str("\r\n");
    row
}

const CSV_HEADER: [&str; 8] = [
    "time",
    "node",
    "container",
    "container_id",
    "project",
    "stream",
    "level",
    "line",
];

#[utoipa::path(get, path = "/api/v1/logs/export.csv", operation_id = "export_logs_csv", tag = "logs",
    description = "The lines `GET /api/v1/logs` shows for the same filters and order, as CSV (RFC 4180), streamed. Cells a spreadsheet would take for a formula start with `'`.",
    params(LogsQuery, ExportQuery),
    responses((status = 200, description = "CSV", content_type = "text/csv"), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn export_csv(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<LogsQuery>,
    ApiQuery(e): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let mut query = log_query(&q)?;
    let max = e.max.unwrap_or(100_000);
    if !(1..=1_000_000).contains(&max) {
        return Err(ApiError::invalid("max", "max must be 1–1000000"));
    }
    query.limit = 1000;
    // The first page is read before answering, so a database error is an error, not a cut file.
    let lines = state.log_lines();
    let first = lines.page(&principal.org_id, &query).await?;
    let org = principal.org_id.clone();
    struct Export {
        page: Vec<LogLineRow>,
        query: LogQuery,
        left: i64,
        header: bool,
    }
    let start = Export {
        page: first,
        query,
        left: max,
        header: true,
    };
    let body = futures_util::stream::unfold(Some(start), move |export| {
        let (lines, org) = (lines.clone(), org.clone());
        async move {
            let mut export = export?;
            let mut out = String::new();
            if export.header {
                export.header = false;
                out += &csv_row(&CSV_HEADER);
            }
            if export.page.is_empty() {
                return (!out.is_empty()).then_some((Ok::<_, std::io::Error>(out), None));
            }
            if export.left <= 0 {
                // More lines match than the file takes: it says so in its last row.
                out += &csv_row(&[
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "the export stopped at its maximum (max); narrow the filters or raise max for the rest",
                ]);
                return Some((Ok(out), None));
            }
            let take = export.page.len().min(export.left as usize);
            for row in &export.page[..take] {
                out += &csv_row(&[
                    &rfc3339_ns(row.time_ns),
                    &row.agent_id,
                    &row.container_name,
                    &row.container_id,
                    &row.compose_project,
                    &row.stream,
                    row.level.as_deref().unwrap_or(""),
                    &row.line,
                ]);
            }
            export.left -= take as i64;
            let last = &export.page[take - 1];
            export.query.after = Some(LogCursor {
                time_ns: last.time_ns,
                agent_id: last.agent_id.clone(),
                seq: last.seq,
            });
            let full_page = export.page.len() as i64 == export.query.limit;
            export.page = if full_page {
                match lines.page(&org, &export.query).await {
                    Ok(page) => page,
                    Err(e) => {
                        // Headers are gone: the file ends here, and says why.
                        tracing::warn!(error = ?e, "a log export stopped early");
                        out += &csv_row(&[
                            "",
                            "",
                            "",
                            "",
                            "",
                            "",
                            "error",
                            "the export stopped early: the log store did not answer",
                        ]);
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            Some((Ok(out), Some(export)))
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"logs.csv\"",
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct LogRetentionDto {
    /// Days this organisation keeps its lines: 1–365, or null for the host's default.
    #[schema(minimum = 1, maximum = 365)]
    pub retention_days: Option<i64>,
    /// The host's default (read only).
    #[serde(default)]
    pub default_days: i64,
    /// What applies (read only).
    #[serde(default)]
    pub effective_days: i64,
}

#[utoipa::path(get, path = "/api/v1/logs/retention", operation_id = "get_log_retention", tag = "logs",
    responses((status = 200, body = LogRetentionDto)), security(("bearer" = [])))]
pub async fn get_retention(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<LogRetentionDto>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    let days = tx.log_retention_days().await?;
    let default_days = state.settings().log_retention_days;
    Ok(Json(LogRetentionDto {
        retention_days: days,
        default_days,
        effective_days: days.unwrap_or(default_days),
    }))
}

#[utoipa::path(put, path = "/api/v1/logs/retention", operation_id = "set_log_retention", tag = "logs",
    request_body = LogRetentionDto,
    responses((status = 200, body = LogRetentionDto), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_retention(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(req): ApiJson<LogRetentionDto>,
) -> ApiResult<Json<LogRetentionDto>> {
    if req
        .retention_days
        .is_some_and(|d| !(1..=MAX_RETENTION_DAYS).contains(&d))
    {
        return Err(ApiError::invalid(
            "retention_days",
            format!(
                "retention_days must be 1–{MAX_RETENTION_DAYS}, or null for the host's default"
            ),
        ));
    }
    let mut tx = state.store().write(&principal.org_id).await?;
    let before = tx.log_retention_days().await?;
    tx.set_log_retention_days(req.retention_days).await?;
    audit_log::commit_success(
        tx,
        &Actor::user(&principal),
        &client.ip,
        "logs.retention_set",
        &format!("org:{}", principal.org_id),
        json!({"retention_days": req.retention_days, "previous_retention_days": before}),
    )
    .await?;
    let default_days = state.settings().log_retention_days;
    Ok(Json(LogRetentionDto {
        retention_days: req.retention_days,
        default_days,
        effective_days: req.retention_days.unwrap_or(default_days),
    }))
}

#[utoipa::path(get, path = "/api/v1/logs/stream", operation_id = "stream_logs", tag = "logs",
    description = "WebSocket (subprotocol `infrapilot.v1`; the access token as subprotocol `bearer.<token>`): lines as the host stores them, for the filters of `GET /api/v1/logs` (cursor and order aside), one JSON text frame per batch: `{\"lines\": [LogLine…]}`, or `{\"lagged\": n}` when the reader fell n batches behind.",
    params(LogsQuery),
    responses((status = 101, description = "Switching to WebSocket"), (status = 400, body = ErrorBody),
        (status = 426, body = ErrorBody, description = "Not a WebSocket upgrade")),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<LogsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let query = log_query(&q)?;
    let upgrade = upgrade.map_err(|_| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "this endpoint speaks WebSocket only",
        )
    })?;
    let lines = state.hub().subscribe_lines();
    let org = principal.org_id.clone();
    let guard = SocketGuard::organisation(state.clone(), principal, Role::Viewer);
    Ok(upgrade
        .protocols(["infrapilot.v1"])
        .max_message_size(4096)
        .on_upgrade(move |socket| pump_lines(socket, lines, org, query, guard)))
}

async fn pump_lines(
    mut socket: WebSocket,
    mut lines: tokio::sync::broadcast::Receiver<std::sync::Arc<infrapilot_gateway::LiveLines>>,
    org: infrapilot_store::OrgId,
    query: LogQuery,
    guard: SocketGuard,
) {
    let closing = guard.closing();
    tokio::pin!(closing);
    loop {
        tokio::select! {
            closing = &mut closing => {
                crate::socket_guard::close_socket(&mut socket, closing.code, &closing.reason).await;
                return;
            }
            batch = lines.recv() => match batch {
                Ok(batch) if batch.org_id == org => {
                    let matching: Vec<LogLineDto> = batch
                        .lines
                        .iter()
                        .filter(|l| query.matches(l))
                        .cloned()
                        .map(LogLineDto::from)
                        .collect();
                    if matching.is_empty() {
                        continue;
                    }
                    let text = json!({"lines": matching}).to_string();
                    if !send_text(&mut socket, text).await {
                        return;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    if !send_text(&mut socket, json!({"lagged": n}).to_string()).await {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> LogsQuery {
        LogsQuery::default()
    }

    #[test]
    fn bad_filters_name_their_field() {
        let field = |q: LogsQuery| log_query(&q).err().and_then(|e| e.field);
        assert_eq!(
            field(LogsQuery {
                limit: Some(0),
                ..query()
            })
            .as_deref(),
            Some("limit")
        );
        assert_eq!(
            field(LogsQuery {
                level: Some("error,fatal".into()),
                ..query()
            })
            .as_deref(),
            Some("level")
        );
        assert_eq!(
            field(LogsQuery {
                stream: Some("stdin".into()),
                ..query()
            })
            .as_deref(),
            Some("stream")
        );
        assert_eq!(
            field(LogsQuery {
                since: Some("yesterday".into()),
                ..query()
            })
            .as_deref(),
            Some("since")
        );
        assert_eq!(
            field(LogsQuery {
                cursor: Some("1.2".into()),
                ..query()
            })
            .as_deref(),
            Some("cursor")
        );
        assert_eq!(
            field(LogsQuery {
                q: Some("x".repeat(257)),
                ..query()
            })
            .as_deref(),
            Some("q")
        );
        assert_eq!(
            field(LogsQuery {
                container: Some("../etc".into()),
                ..query()
            })
            .as_deref(),
            Some("container")
        );
        assert_eq!(
            field(LogsQuery {
                agent: Some("nope".into()),
                ..query()
            })
            .as_deref(),
            Some("agent")
        );
        for bad in ["6xx", "99", "abc", "5x"] {
            let q = LogsQuery {
                status: Some(bad.into()),
                ..query()
            };
            assert_eq!(field(q).as_deref(), Some("status"), "{bad}");
        }
        let q = LogsQuery {
            proxy_host: Some("x".into()),
            ..query()
        };
        assert_eq!(field(q).as_deref(), Some("proxy_host"));
        let q = LogsQuery {
            status: Some("5xx".into()),
            ..query()
        };
        assert_eq!(log_query(&q).unwrap().status, Some((500, 599)));
        // An empty id is not a UUID; a range that selects nothing is not an error; times past
        // what nanoseconds reach are the nearest end.
        let q = LogsQuery {
            agent: Some(String::new()),
            ..query()
        };
        assert_eq!(field(q).as_deref(), Some("agent"));
        let q = LogsQuery {
            since: Some("2026-12-06T10:00:00Z".into()),
            until: Some("9999-12-06T09:00:00Z".into()),
            ..query()
        };
        assert_eq!(log_query(&q).unwrap().until_ns, Some(i64::MAX));
        let q = LogsQuery {
            level: Some("Error".into()),
            ..query()
        };
        assert_eq!(field(q).as_deref(), Some("level"));
        let ok = log_query(&LogsQuery {
            level: Some("error,warn".into()),
            order: Some("oldest".into()),
            ..query()
        })
        .unwrap();
        assert_eq!(ok.levels, vec!["error", "warn"]);
        assert!(ok.oldest_first);
        let cursor = LogCursor {
            time_ns: 5,
            seq: 7,
            agent_id: "00000000-0000-4000-8000-000000000001".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)).unwrap(), cursor);
        // 19 digits past i64 (the documented pattern allows them): the nearest end.
        let far = decode_cursor(
            "9999999999999999999.-9410389359990810540.00000000-0000-4000-8000-000000000001",
        )
        .unwrap();
        assert_eq!((far.time_ns, far.seq), (i64::MAX, i64::MIN));
        assert!(decode_cursor("1.2.not-a-uuid").is_err());
    }
}
