//! The HTTP API of the InfraPilot host: axum routes, authentication, the role table
//! ([`access::ACCESS_RULES`]), the OpenAPI document, metrics and the embedded dashboard.

pub mod access;
pub mod audit_log;
pub mod auth;
pub mod edge;
pub mod error;
pub mod extract;
pub mod license_limits;
pub mod metrics;
pub mod rate_limit;
pub mod routes;
pub mod socket_guard;
pub mod state;
pub mod validate;
pub mod web;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::from_fn_with_state;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, ApiResult};
pub use state::{ApiSettings, AppState};

/// The complete router of the host, ready to serve.
pub fn router(state: AppState) -> Router {
    let router = routes::api_routes().split_for_parts().0;
    let _ = routes::system::OPENAPI_JSON.set(openapi_document().to_string());
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    router
        .route_layer(from_fn_with_state(state.clone(), access::authorize))
        .fallback(web::static_handler)
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(from_fn_with_state(state.clone(), edge::guard))
        .layer(from_fn_with_state(state.clone(), edge::client_address))
        .layer(DefaultBodyLimit::max(extract::MAX_JSON_BODY))
        // A body trickled in slowly (slow POST) is cut off.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            std::time::Duration::from_secs(30),
        ))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header(header::REFERRER_POLICY, "no-referrer"))
        .layer(header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                tracing::debug_span!(
                    "request",
                    method = %request.method(),
                    path = %loggable_path(request.uri().path()),
                )
            }),
        )
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
        }))
        .with_state(state)
}

/// A request path fit for logs: a secret in the path (an invitation token, by the contract's
/// `POST /api/v1/invitations/{token}/accept`) is replaced by its placeholder; queries are left out.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/api/v1/invitations/") {
        Some(rest) if !rest.is_empty() => {
            let tail = rest.split_once('/').map_or("", |(_, tail)| tail);
            std::borrow::Cow::Owned(format!("/api/v1/invitations/{{token}}/{tail}"))
        }
        _ => std::borrow::Cow::Borrowed(path),
    }
}

/// `/metrics` alone, open, for the separate `metrics_listen` address (a private network).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(state): State<AppState>| async move {
                metrics::exposition(&state).await
            }),
        )
        .with_state(state)
}

/// The OpenAPI document of every route, with every rule the server applies to its input.
pub fn openapi_document() -> serde_json::Value {
    let mut openapi = routes::api_routes().split_for_parts().1;
    routes::complete_document(&mut openapi);
    let mut doc = serde_json::to_value(&openapi).expect("the OpenAPI document is JSON");
    routes::document_rules::apply(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn invitation_tokens_stay_out_of_logged_paths() {
        assert_eq!(
            loggable_path("/api/v1/invitations/ipi_secret-token/accept"),
            "/api/v1/invitations/{token}/accept"
        );
        assert_eq!(
            loggable_path("/api/v1/invitations/ipi_secret-token"),
            "/api/v1/invitations/{token}/"
        );
        assert_eq!(loggable_path("/api/v1/agents/x"), "/api/v1/agents/x");
    }
}
