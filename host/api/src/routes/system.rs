//! Health, readiness, metrics, the OpenAPI document and reference data.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use infrapilot_identity::Role;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// The OpenAPI document, fixed once the router is built.
pub(crate) static OPENAPI_JSON: OnceLock<String> = OnceLock::new();

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub status: &'static str,
    pub database: &'static str,
    pub backend: &'static str,
}

#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let backend = match state.store().backend() {
        infrapilot_store::Backend::Sqlite => "sqlite",
        infrapilot_store::Backend::Postgres => "postgres",
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store().ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(Readiness {
                status: "ready",
                database: "reachable",
                backend,
            }),
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "not_ready",
                database: "unreachable",
                backend,
            }),
        ),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "system",
    description = "Loopback clients only, unless a metrics token is configured (then `Authorization: Bearer <metrics token>`); `metrics_listen` serves it on a separate address.",
    responses((status = 200, description = "Prometheus text exposition format"), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn metrics(
    state: State<AppState>,
    client: Option<axum::Extension<crate::edge::ClientAddress>>,
    headers: axum::http::HeaderMap,
) -> Response {
    crate::metrics::metrics_handler(state, client, headers).await
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "This OpenAPI 3 document")))]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.get().cloned().unwrap_or_default(),
    )
        .into_response()
}

#[derive(Serialize, ToSchema)]
pub struct RoleInfo {
    pub id: &'static str,
    pub description: &'static str,
}

#[utoipa::path(get, path = "/api/v1/roles", tag = "users",
    responses((status = 200, body = Vec<RoleInfo>)), security(("bearer" = [])))]
pub async fn roles() -> Json<Vec<RoleInfo>> {
    Json(
        Role::ALL
            .iter()
            .rev()
            .map(|r| RoleInfo {
                id: r.as_str(),
                description: match r {
                    Role::SuperAdmin => "everything, including users and organisation settings",
                    Role::Admin => "manage nodes, proxies, alerts and tokens; read the audit log",
                    Role::Operator => "operate containers and proxies",
                    Role::Viewer => "read-only",
                },
            })
            .collect(),
    )
}
