//! The organisation's stored logs (issue 17): every container line of every node, as the nodes'
//! spools delivered them, filtered and paged; and the gaps the nodes reported.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::validate;
use infrapilot_store::{LogCursor, LogQuery};

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "none"];
/// The longest search text.
const MAX_TEXT: usize = 256;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// A node (agent id).
    pub agent: Option<String>,
    /// A container id or name.
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")]
    pub container: Option<String>,
    /// A compose project.
    pub project: Option<String>,
    /// Levels, comma-separated: error, warn, info, debug, none (lines without a level).
    pub level: Option<String>,
    /// stdout or stderr.
    pub stream: Option<String>,
    /// Text the line contains (case-insensitive, at most 256 characters).
    pub q: Option<String>,
    /// RFC 3339: lines at or after.
    pub since: Option<String>,
    /// RFC 3339: lines before.
    pub until: Option<String>,
    /// `newest` (default) or `oldest` first.
    pub order: Option<String>,
    /// `next_cursor` of the previous page.
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

fn rfc3339_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn time_ns(field: &str, raw: &str) -> ApiResult<i64> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("{field} must be an RFC 3339 time such as 2026-01-31T12:00:00Z"),
            )
        })
}

fn encode_cursor(c: &LogCursor) -> String {
    format!("{}.{}.{}", c.time_ns, c.seq, c.agent_id)
}

fn decode_cursor(raw: &str) -> ApiResult<LogCursor> {
    let bad = || ApiError::invalid("cursor", "cursor must be a next_cursor this API returned");
    let mut parts = raw.splitn(3, '.');
    let time_ns = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let seq = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
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
                let l = l.trim().to_ascii_lowercase();
                if LEVELS.contains(&l.as_str()) {
                    Ok(l)
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
    let oldest_first = match q.order.as_deref() {
        None | Some("newest") => false,
        Some("oldest") => true,
        Some(_) => return Err(ApiError::invalid("order", "order must be newest or oldest")),
    };
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
    if let (Some(since), Some(until)) = (since_ns, until_ns)
        && since >= until
    {
        return Err(ApiError::invalid("until", "until must be after since"));
    }
    let container = match q.container.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let ok = c.len() <= 255
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch));
            if !ok {
                return Err(ApiError::invalid(
                    "container",
                    "container must be a container id or name",
                ));
            }
            Some(c.to_owned())
        }
    };
    Ok(LogQuery {
        agent_id: q
            .agent
            .as_deref()
            .filter(|a| !a.is_empty())
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
        text: q
            .q
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| short_text("q", t, MAX_TEXT))
            .transpose()?,
        since_ns,
        until_ns,
        oldest_first,
        after: q.cursor.as_deref().map(decode_cursor).transpose()?,
        limit,
    })
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
    let mut tx = state.store().read(&principal.org_id).await?;
    let mut rows = tx.query_logs(&query).await?;
    let gaps = tx
        .log_gaps(infrapilot_store::now_ms() - 7 * 86_400_000, 100)
        .await?;
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
        items: rows
            .into_iter()
            .map(|r| LogLineDto {
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
            })
            .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> LogsQuery {
        LogsQuery {
            agent: None,
            container: None,
            project: None,
            level: None,
            stream: None,
            q: None,
            since: None,
            until: None,
            order: None,
            cursor: None,
            limit: None,
        }
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
        assert_eq!(
            field(LogsQuery {
                since: Some("2026-12-06T10:00:00Z".into()),
                until: Some("2026-12-06T09:00:00Z".into()),
                ..query()
            })
            .as_deref(),
            Some("until")
        );
        let ok = log_query(&LogsQuery {
            level: Some("Error, warn".into()),
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
    }
}
