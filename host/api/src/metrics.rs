//! Prometheus metrics: HTTP requests by route and status, latency, database pool.

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

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    pool: Family<PoolLabels, Gauge>,
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
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            pool,
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
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
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
    exposition(&state)
}

/// The metrics in the OpenMetrics text format.
pub fn exposition(state: &AppState) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().encode(state),
    )
        .into_response()
}
