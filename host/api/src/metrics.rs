//! Prometheus metrics: HTTP requests by route and status, latency, the database's pool and
//! latency, the host process, and the figures of the nodes connected to this process (the Health
//! page's, issue 17).

use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    agent_id: String,
    org_id: String,
}

/// A node's figures, one gauge family each (label sets of nodes no longer connected go).
struct NodeGauges {
    cpu: Family<NodeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    memory_used: Family<NodeLabels, Gauge>,
    memory_total: Family<NodeLabels, Gauge>,
    disk_used: Family<NodeLabels, Gauge>,
    disk_total: Family<NodeLabels, Gauge>,
    spooled: Family<NodeLabels, Gauge>,
    dropped: Family<NodeLabels, Gauge>,
    score: Family<NodeLabels, Gauge>,
}

/// The host process and its database.
struct HostGauges {
    resident_memory: Gauge,
    threads: Gauge,
    runtime_tasks: Gauge,
    db_latency: Gauge<f64, std::sync::atomic::AtomicU64>,
}

pub struct Metrics {
    /// Held from setting the gauges until they are encoded: two scrapes at once must not clear
    /// each other's node series.
    registry: Mutex<Registry>,
    /// The database's last measured latency (ns; `u64::MAX` before the first or when it did not
    /// answer), measured by [`measure_database_latency`] in the background, never by a scrape.
    db_latency_ns: std::sync::atomic::AtomicU64,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    pool: Family<PoolLabels, Gauge>,
    nodes: NodeGauges,
    host: HostGauges,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
        });
        let pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "infrapilot_http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "infrapilot_http_request_duration_seconds",
            "HTTP request latency by method and route",
            latency.clone(),
        );
        registry.register(
            "infrapilot_db_pool_connections",
            "Database pool connections by state (idle, in_use, max)",
            pool.clone(),
        );
        let nodes = NodeGauges {
            cpu: Family::default(),
            memory_used: Family::default(),
            memory_total: Family::default(),
            disk_used: Family::default(),
            disk_total: Family::default(),
            spooled: Family::default(),
            dropped: Family::default(),
            score: Family::default(),
        };
        for (name, help, family) in [
            (
                "infrapilot_node_memory_used_bytes",
                "Memory in use on the node (last heartbeat)",
                &nodes.memory_used,
            ),
            (
                "infrapilot_node_memory_total_bytes",
                "Memory of the node",
                &nodes.memory_total,
            ),
            (
                "infrapilot_node_disk_used_bytes",
                "Disk in use on the filesystem of the node's Docker data root",
                &nodes.disk_used,
            ),
            (
                "infrapilot_node_disk_total_bytes",
                "Size of the filesystem of the node's Docker data root",
                &nodes.disk_total,
            ),
            (
                "infrapilot_node_spool_records",
                "Log lines and events in the node's spool not acknowledged yet",
                &nodes.spooled,
            ),
            (
                "infrapilot_node_spool_dropped_records",
                "Records the node's spool dropped past its bound since the agent started",
                &nodes.dropped,
            ),
            (
                "infrapilot_node_score",
                "The node's health score, 0-100 (the Health page's)",
                &nodes.score,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "infrapilot_node_cpu_percent",
            "CPU busy on the node, percent of all cores, averaged over the last 10 minutes",
            nodes.cpu.clone(),
        );
        let host = HostGauges {
            resident_memory: Gauge::default(),
            threads: Gauge::default(),
            runtime_tasks: Gauge::default(),
            db_latency: Gauge::default(),
        };
        for (name, help, gauge) in [
            (
                "infrapilot_process_resident_memory_bytes",
                "Resident memory of the host process",
                &host.resident_memory,
            ),
            (
                "infrapilot_process_threads",
                "Operating-system threads of the host process",
                &host.threads,
            ),
            (
                "infrapilot_runtime_alive_tasks",
                "Tasks alive on the host process's async runtime",
                &host.runtime_tasks,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "infrapilot_db_latency_seconds",
            "A SELECT 1 round trip through the database pool (best of three, measured every 15 s; NaN when it did not answer within a second)",
            host.db_latency.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            pool,
            nodes,
            host,
            started: Instant::now(),
            db_latency_ns: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }

    /// The database's latency as last measured in the background.
    pub fn db_latency(&self) -> Option<std::time::Duration> {
        let ns = self
            .db_latency_ns
            .load(std::sync::atomic::Ordering::Relaxed);
        (ns != u64::MAX).then(|| std::time::Duration::from_nanos(ns))
    }

    /// Since the host process started (this registry was made at start-up).
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Sets the node gauges from the heartbeats of the nodes connected to this process.
    fn set_nodes(&self, state: &AppState) {
        let n = &self.nodes;
        for family in [
            &n.memory_used,
            &n.memory_total,
            &n.disk_used,
            &n.disk_total,
            &n.spooled,
            &n.dropped,
            &n.score,
        ] {
            family.clear();
        }
        n.cpu.clear();
        for node in state.hub().node_stats() {
            let labels = NodeLabels {
                agent_id: node.agent_id.clone(),
                org_id: node.org_id.to_string(),
            };
            let s = &node.sample;
            if let Some(cpu) = node.cpu_average {
                n.cpu.get_or_create(&labels).set(cpu);
            }
            n.memory_used
                .get_or_create(&labels)
                .set(as_i64(s.memory_used_bytes));
            n.memory_total
                .get_or_create(&labels)
                .set(as_i64(s.memory_total_bytes));
            n.disk_used
                .get_or_create(&labels)
                .set(as_i64(s.disk_used_bytes));
            n.disk_total
                .get_or_create(&labels)
                .set(as_i64(s.disk_total_bytes));
            n.spooled.get_or_create(&labels).set(as_i64(node.spooled));
            n.dropped.get_or_create(&labels).set(as_i64(node.dropped));
            let (score, _) = crate::routes::health::score(&crate::routes::health::ScoreInput {
                online: true,
                cpu_percent: node.cpu_average,
                memory_used_bytes: s.memory_used_bytes,
                memory_total_bytes: s.memory_total_bytes,
                disk_used_bytes: s.disk_used_bytes,
                disk_total_bytes: s.disk_total_bytes,
                dropped_records: node.dropped,
                spooled_records: node.spooled,
            });
            n.score.get_or_create(&labels).set(i64::from(score));
        }
    }

    fn observe(&self, method: &str, route: &str, status: StatusCode, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status: status.as_u16(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    fn encode(&self, state: &AppState) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        self.set_nodes(state);
        let db_latency = self.db_latency();
        let (rss, threads) = crate::routes::health::process_memory_and_threads();
        self.host.resident_memory.set(as_i64(rss));
        self.host.threads.set(as_i64(threads));
        self.host.runtime_tasks.set(as_i64(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as u64,
        ));
        self.host
            .db_latency
            .set(db_latency.map_or(f64::NAN, |d| d.as_secs_f64()));
        let stats = state.store().pool_stats();
        let set = |name, v: u32| {
            self.pool
                .get_or_create(&PoolLabels { state: name })
                .set(i64::from(v));
        };
        set("idle", stats.idle);
        set("in_use", stats.size.saturating_sub(stats.idle));
        set("max", stats.max);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Records every request under its route template (never the raw path, so ids do not explode
/// the label set).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state.metrics().observe(
        &method,
        &route,
        response.status(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The method as a label: the standard ones by name, anything else as `other` (a client must
/// not grow the series without bound).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `/metrics` on the main listener: with a metrics token configured, only with
/// `Authorization: Bearer <metrics_token>`; without one, only to loopback clients (serve it to
/// others on the separate `metrics_listen` address, see [`crate::metrics_router`]).
pub async fn metrics_handler(
    State(state): State<AppState>,
    client: Option<axum::Extension<crate::edge::ClientAddress>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if state.settings().metrics_token.is_none() {
        // A proxy on the same machine makes every client look local: a forwarded request is
        // not a loopback client.
        let forwarded = ["x-forwarded-for", "forwarded", "x-real-ip"]
            .iter()
            .any(|h| headers.contains_key(*h));
        let loopback = !forwarded && client.is_none_or(|c| c.0.0.to_canonical().is_loopback());
        if !loopback {
            return crate::error::ApiError::forbidden(
                "/metrics answers loopback clients only; set metrics_token (INFRAPILOT_METRICS_TOKEN) or metrics_listen (INFRAPILOT_METRICS_LISTEN)",
            )
            .into_response();
        }
    }
    if let Some(expected) = &state.settings().metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        use sha2::Digest;
        let same =
            sha2::Sha256::digest(presented.as_bytes()) == sha2::Sha256::digest(expected.as_bytes());
        if !same {
            return crate::error::ApiError::unauthorized(
                "/metrics needs Authorization: Bearer <metrics token>",
            )
            .into_response();
        }
    }
    exposition(&state).await
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The metrics in the OpenMetrics text format.
pub async fn exposition(state: &AppState) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().encode(state),
    )
        .into_response()
}

/// Measures the database's latency every `every` for `/metrics` (NaN there while it does not
/// answer within a second). Runs until the process ends.
pub async fn measure_database_latency(state: AppState, every: std::time::Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let latency = crate::routes::health::database_latency(state.store()).await;
        state.metrics().db_latency_ns.store(
            latency.map_or(u64::MAX, |l| {
                l.as_nanos().min(u128::from(u64::MAX - 1)) as u64
            }),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}
