//! The Health page's figures (issue 17): each node's state with a score and the reasons for
//! it, the nodes' CPU, memory and disk over time (minute and hour samples from heartbeats), and
//! — for the host's operator — the database's latency and pool and the host process itself.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use infrapilot_identity::Role;
use infrapilot_store::{NodeSamplePoint, SAMPLE_HOUR, SAMPLE_MINUTE, now_ms};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::routes::agents::{AgentDto, HostStatsDto};
use crate::state::AppState;
use crate::validate::{self, time_ns};

/// The window the score's CPU figure averages over.
const CPU_WINDOW_MS: i64 = infrapilot_gateway::hub::CPU_AVERAGE_WINDOW_MS;

#[derive(Serialize, ToSchema)]
pub struct HealthDto {
    /// Every enrolled node of the organisation (revoked ones left out), worst score first.
    pub nodes: Vec<NodeHealthDto>,
    /// The database (the host operator only; others get none).
    pub database: Option<DatabaseHealthDto>,
    /// The host process answering (the host operator only).
    pub host: Option<HostProcessDto>,
}

#[derive(Serialize, ToSchema)]
pub struct NodeHealthDto {
    pub id: String,
    pub name: String,
    /// `online` or `offline`.
    pub status: &'static str,
    /// 0 (offline, or everything wrong) to 100 (nothing wrong).
    pub score: u8,
    /// What took points off, worst first; empty at 100.
    pub reasons: Vec<String>,
    /// CPU averaged over the last ten minutes' heartbeats (percent of all cores).
    pub cpu_percent_10m: Option<f64>,
    /// The last heartbeat's figures.
    pub host_stats: Option<HostStatsDto>,
    pub last_seen_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DatabaseHealthDto {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// A `SELECT 1` round trip through the pool, in milliseconds (the best of three); none when
    /// the database did not answer within a second.
    pub latency_ms: Option<f64>,
    pub pool_size: u32,
    pub pool_idle: u32,
    pub pool_max: u32,
}

#[derive(Serialize, ToSchema)]
pub struct HostProcessDto {
    pub version: &'static str,
    /// Resident memory of the host process.
    pub resident_memory_bytes: u64,
    /// Operating-system threads of the host process.
    pub threads: u64,
    /// Tasks alive on the async runtime (requests, sessions, background work).
    pub runtime_tasks: u64,
    pub uptime_seconds: u64,
    /// Nodes with a session to this host process.
    pub connected_nodes: u64,
}

/// What took points off a node's score.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScoreInput {
    pub online: bool,
    pub cpu_percent: Option<f64>,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub dropped_records: u64,
    pub spooled_records: u64,
}

/// Spool records waiting past which a node is behind on sending its logs.
const SPOOL_BACKLOG: u64 = 100_000;

/// A node's score (0–100) and why it is not 100, worst first. The `infrapilot_node_score`
/// gauge is this score too, over the figures its host process holds: CPU averaged over the
/// heartbeats of the node's current session in the last ten minutes (the API averages the
/// stored minute samples of the last ten minutes, whichever replica received them).
pub fn score(input: &ScoreInput) -> (u8, Vec<String>) {
    if !input.online {
        return (0, vec!["offline: no heartbeat from the node".into()]);
    }
    let mut penalties: Vec<(u8, String)> = Vec::new();
    let share = |used: u64, total: u64| (total > 0).then(|| used as f64 * 100.0 / total as f64);
    let mut level = |what: &str, percent: Option<f64>, over: &str| {
        if let Some(p) = percent {
            // Whole percent, rounded down: the figure never reads as the next tier.
            let shown = p.floor();
            if p >= 90.0 {
                penalties.push((30, format!("{what} at {shown}% {over}(90% or more)")));
            } else if p >= 80.0 {
                penalties.push((10, format!("{what} at {shown}% {over}(80% or more)")));
            }
        }
    };
    level(
        "CPU",
        input.cpu_percent,
        "averaged over the last 10 minutes ",
    );
    level(
        "memory",
        share(input.memory_used_bytes, input.memory_total_bytes),
        "",
    );
    level(
        "disk",
        share(input.disk_used_bytes, input.disk_total_bytes),
        "",
    );
    if input.dropped_records > 0 {
        penalties.push((
            10,
            format!(
                "{} log records dropped past the spool's bound since the agent started",
                input.dropped_records
            ),
        ));
    }
    if input.spooled_records > SPOOL_BACKLOG {
        penalties.push((
            10,
            format!(
                "{} log records waiting to be sent to the host",
                input.spooled_records
            ),
        ));
    }
    penalties.sort_by_key(|p| std::cmp::Reverse(p.0));
    let lost: u32 = penalties.iter().map(|(p, _)| u32::from(*p)).sum();
    (
        100u32.saturating_sub(lost) as u8,
        penalties.into_iter().map(|(_, r)| r).collect(),
    )
}

/// The average CPU of minute samples (weighted by the heartbeats that carried a CPU figure).
fn average_cpu(points: &[NodeSamplePoint]) -> Option<f64> {
    let (sum, n) = points
        .iter()
        .filter_map(|p| {
            p.cpu_percent
                .map(|c| (c * p.cpu_samples as f64, p.cpu_samples))
        })
        .fold((0.0, 0i64), |(s, n), (c, k)| (s + c, n + k));
    (n > 0).then(|| ((sum / n as f64) * 10.0).round() / 10.0)
}

#[utoipa::path(get, path = "/api/v1/health", operation_id = "health", tag = "health",
    description = "Each node's state, score (0–100) and the reasons for it; for the host operator also the database's latency and pool and the host process.",
    responses((status = 200, body = HealthDto)), security(("bearer" = [])))]
pub async fn health(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<HealthDto>> {
    let now = now_ms();
    let mut tx = state.store().read(&principal.org_id).await?;
    let agents = tx.list_agents().await?;
    let mut nodes = Vec::new();
    for row in agents.into_iter().filter(|a| a.revoked_at.is_none()) {
        let recent = tx
            .node_samples(&row.id, SAMPLE_MINUTE, now - CPU_WINDOW_MS, now + 1)
            .await?;
        let agent = AgentDto::of(row, &state);
        let cpu = average_cpu(&recent);
        let stats = agent.host_stats.as_ref();
        let (score, reasons) = score(&ScoreInput {
            online: agent.status == "online",
            cpu_percent: cpu,
            memory_used_bytes: stats.map_or(0, |s| s.memory_used_bytes),
            memory_total_bytes: stats.map_or(0, |s| s.memory_total_bytes),
            disk_used_bytes: stats.map_or(0, |s| s.disk_used_bytes),
            disk_total_bytes: stats.map_or(0, |s| s.disk_total_bytes),
            dropped_records: stats.map_or(0, |s| s.dropped_records),
            spooled_records: stats.map_or(0, |s| s.spooled_records),
        });
        nodes.push(NodeHealthDto {
            id: agent.id,
            name: agent.name,
            status: agent.status,
            score,
            reasons,
            cpu_percent_10m: cpu,
            host_stats: agent.host_stats,
            last_seen_at: agent.last_seen_at,
        });
    }
    tx.commit().await?;
    nodes.sort_by(|a, b| a.score.cmp(&b.score).then_with(|| a.name.cmp(&b.name)));
    let operator = principal.role.at_least(Role::SuperAdmin);
    let (database, host) = if operator {
        (
            Some(database_health(&state).await),
            Some(host_process(&state)),
        )
    } else {
        (None, None)
    };
    Ok(Json(HealthDto {
        nodes,
        database,
        host,
    }))
}

/// The best of three `SELECT 1` round trips; none when the database does not answer all three
/// within a second (a busy pool must not hold the caller).
pub async fn database_latency(store: &infrapilot_store::Store) -> Option<Duration> {
    let measure = async {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            store.ping().await.ok()?;
            best = best.min(started.elapsed());
        }
        Some(best)
    };
    tokio::time::timeout(Duration::from_secs(1), measure)
        .await
        .ok()
        .flatten()
}

async fn database_health(state: &AppState) -> DatabaseHealthDto {
    let latency = database_latency(state.store()).await;
    let pool = state.store().pool_stats();
    DatabaseHealthDto {
        backend: match state.store().backend() {
            infrapilot_store::Backend::Sqlite => "sqlite",
            infrapilot_store::Backend::Postgres => "postgres",
        },
        latency_ms: latency.map(|l| (l.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0),
        pool_size: pool.size,
        pool_idle: pool.idle,
        pool_max: pool.max,
    }
}

/// This process's resident memory and threads (from `/proc/self/status`).
pub fn process_memory_and_threads() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

fn host_process(state: &AppState) -> HostProcessDto {
    let (rss, threads) = process_memory_and_threads();
    HostProcessDto {
        version: env!("CARGO_PKG_VERSION"),
        resident_memory_bytes: rss,
        threads,
        runtime_tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks() as u64,
        uptime_seconds: state.metrics().uptime().as_secs(),
        connected_nodes: state.hub().session_count() as u64,
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SamplesQuery {
    /// RFC 3339: buckets starting at or after (default: an hour before `until`).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339: buckets starting before (default: now).
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// `minute` (kept 2 days: a range is cut to the last 2 days) or `hour` (kept 90 days: a
    /// range is cut to 90 days before `until`); default: minutes for a range within the last 2
    /// days, else hours.
    #[param(pattern = "^(minute|hour)?$")]
    pub resolution: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NodeSamplesDto {
    pub resolution_seconds: i64,
    pub since: String,
    pub until: String,
    /// Buckets with at least one heartbeat, oldest first (a missing bucket: no heartbeat).
    pub points: Vec<NodeSampleDto>,
}

#[derive(Serialize, ToSchema)]
pub struct NodeSampleDto {
    /// The bucket's start.
    pub at: String,
    /// Heartbeats averaged.
    pub samples: i64,
    pub cpu_percent: Option<f64>,
    pub cpu_max_percent: Option<f64>,
    pub memory_used_bytes: f64,
    pub memory_total_bytes: i64,
    pub disk_used_bytes: f64,
    pub disk_total_bytes: i64,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

#[utoipa::path(get, path = "/api/v1/health/nodes/{id}/samples", operation_id = "node_samples", tag = "health",
    description = "A node's CPU, memory and disk over time: averages per minute or per hour of its heartbeats.",
    params(("id" = String, Path, format = Uuid, description = "The node (agent id)"), SamplesQuery),
    responses((status = 200, body = NodeSamplesDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn node_samples(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SamplesQuery>,
) -> ApiResult<Json<NodeSamplesDto>> {
    let until = match &q.until {
        Some(raw) => time_ns("until", raw)? / 1_000_000,
        None => now_ms(),
    };
    let since = match &q.since {
        Some(raw) => time_ns("since", raw)? / 1_000_000,
        None => until.saturating_sub(3600 * 1000),
    };
    let span = until.saturating_sub(since);
    // Minutes are kept two days: a range reaching further back is drawn from hours.
    let minutes_kept_since = now_ms().saturating_sub(2 * DAY_MS);
    let resolution = match q.resolution.as_deref() {
        Some("minute") => SAMPLE_MINUTE,
        Some("hour") => SAMPLE_HOUR,
        None | Some("") if span <= 2 * DAY_MS && since >= minutes_kept_since => SAMPLE_MINUTE,
        None | Some("") => SAMPLE_HOUR,
        Some(_) => {
            return Err(ApiError::invalid(
                "resolution",
                "resolution must be minute or hour",
            ));
        }
    };
    // A range longer than the resolution keeps is cut to its last part (minutes: the last two
    // days; hours: ninety days before `until`); `since` in the answer says where it starts. A
    // range that selects nothing answers nothing.
    let since = if resolution == SAMPLE_MINUTE {
        since
            .max(until.saturating_sub(2 * DAY_MS))
            .max(minutes_kept_since)
    } else {
        since.max(until.saturating_sub(90 * DAY_MS))
    };
    if uuid::Uuid::try_parse(&id).is_err() {
        return Err(ApiError::invalid("id", "id must be an agent id (a UUID)"));
    }
    let mut tx = state.store().read(&principal.org_id).await?;
    tx.agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such node"))?;
    let points = if since < until {
        tx.node_samples(&id, resolution, since, until).await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    Ok(Json(NodeSamplesDto {
        resolution_seconds: resolution,
        since: validate::rfc3339(since),
        until: validate::rfc3339(until),
        points: points
            .into_iter()
            .map(|p| NodeSampleDto {
                at: validate::rfc3339(p.at_ms),
                samples: p.samples,
                cpu_percent: p.cpu_percent.map(|c| (c * 10.0).round() / 10.0),
                cpu_max_percent: p.cpu_max_percent,
                memory_used_bytes: p.memory_used_bytes.round(),
                memory_total_bytes: p.memory_total_bytes,
                disk_used_bytes: p.disk_used_bytes.round(),
                disk_total_bytes: p.disk_total_bytes,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_node_scores_100_and_each_problem_takes_points_with_a_reason() {
        let healthy = ScoreInput {
            online: true,
            cpu_percent: Some(12.0),
            memory_used_bytes: 4,
            memory_total_bytes: 10,
            disk_used_bytes: 1,
            disk_total_bytes: 10,
            ..Default::default()
        };
        assert_eq!(score(&healthy), (100, vec![]));
        assert_eq!(score(&ScoreInput::default()).0, 0);
        let busy = ScoreInput {
            cpu_percent: Some(95.0),
            disk_used_bytes: 85,
            disk_total_bytes: 100,
            dropped_records: 7,
            ..healthy
        };
        let (points, reasons) = score(&busy);
        assert_eq!(points, 50);
        assert_eq!(reasons.len(), 3);
        assert!(reasons[0].starts_with("CPU at 95%"), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.starts_with("disk at 85%")));
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with("7 log records dropped"))
        );
        let everything = ScoreInput {
            cpu_percent: Some(100.0),
            memory_used_bytes: 10,
            disk_used_bytes: 10,
            dropped_records: 1,
            spooled_records: SPOOL_BACKLOG + 1,
            ..healthy
        };
        assert_eq!(score(&everything).0, 0);
    }

    #[test]
    fn cpu_averages_weigh_buckets_by_their_heartbeats() {
        let point = |samples, cpu: Option<f64>| NodeSamplePoint {
            at_ms: 0,
            samples,
            cpu_samples: if cpu.is_some() { samples } else { 0 },
            cpu_percent: cpu,
            cpu_max_percent: cpu,
            memory_used_bytes: 0.0,
            memory_total_bytes: 0,
            disk_used_bytes: 0.0,
            disk_total_bytes: 0,
        };
        assert_eq!(
            average_cpu(&[point(1, Some(10.0)), point(3, Some(50.0)), point(2, None)]),
            Some(40.0)
        );
        assert_eq!(average_cpu(&[point(2, None)]), None);
    }
}
