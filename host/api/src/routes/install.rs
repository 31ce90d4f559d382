//! The one-line installer: `/install.sh` (a fixed script: the host and token reach it as
//! environment, never as interpolated shell code), the agent binary and its SHA-256.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

const SCRIPT: &str = include_str!("../../assets/install.sh");

/// The host's URL for installers: the configured public URL, else the request's own host.
pub fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.settings().public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost:8080");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// Whether `base` (a URL this host built) is plain http to something other than loopback: the
/// token and the binary would cross a network in clear.
pub fn is_insecure_base(base: &str) -> bool {
    let Some(rest) = base.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// The warning shown with a one-liner whose URL is plain http off loopback.
pub const INSECURE_INSTALL_WARNING: &str = "this host's URL is plain http and not loopback: the enrollment token and the agent binary would cross the network unencrypted. Set INFRAPILOT_PUBLIC_URL to an https URL; the installer refuses this URL unless you add --insecure-http yourself";

/// The copyable one-liner for an enrollment token. Every value is single-quoted; none can
/// contain a quote (URL characters checked above; tokens are base64url; the checksum is hex).
/// The agent's SHA-256 travels in the line itself, so a tampered download from the same origin
/// is refused.
pub fn install_command(base: &str, token: &str, agent_sha256: Option<&str>) -> String {
    let checksum = agent_sha256
        .map(|sum| format!(" INFRAPILOT_AGENT_SHA256='{sum}'"))
        .unwrap_or_default();
    // An https base never falls back to http (nor follows a redirect there).
    let protocols = if base.starts_with("https://") {
        "=https"
    } else {
        "=https,http"
    };
    format!(
        "curl -fsSL --proto '{protocols}' '{base}/install.sh' | sudo INFRAPILOT_ENDPOINT='{base}' INFRAPILOT_AGENT_TOKEN='{token}'{checksum} sh"
    )
}

#[utoipa::path(get, path = "/install.sh", operation_id = "install_script", tag = "agents",
    responses((status = 200, description = "The agent installer (POSIX sh)", content_type = "text/x-shellscript")))]
pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn binary(state: &AppState) -> ApiResult<Vec<u8>> {
    let path = state.settings().agent_binary.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "agent_binary_missing",
            "this host has no agent binary to serve (set INFRAPILOT_AGENT_BINARY)",
        )
    })?;
    tokio::fs::read(&path).await.map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "agent_binary_missing",
            format!(
                "the agent binary is not at {} (set INFRAPILOT_AGENT_BINARY)",
                path.display()
            ),
        )
    })
}

#[utoipa::path(get, path = "/downloads/infrapilot-agent", operation_id = "download_agent", tag = "agents",
    responses((status = 200, description = "The agent binary (Linux x86_64)", content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody)))]
pub async fn download(State(state): State<AppState>) -> ApiResult<Response> {
    let bytes = binary(&state).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"infrapilot-agent\"",
            ),
        ],
        Body::from(bytes),
    )
        .into_response())
}

#[utoipa::path(get, path = "/downloads/infrapilot-agent.sha256", operation_id = "download_agent_checksum", tag = "agents",
    responses((status = 200, description = "`<sha256 hex>  infrapilot-agent`", content_type = "text/plain"),
        (status = 404, body = ErrorBody)))]
pub async fn checksum(State(state): State<AppState>) -> ApiResult<Response> {
    // Hashed once per file version (size and modification time), not per request.
    let sum = state.agent_binary_sha256().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "agent_binary_missing",
            "this host has no agent binary to serve (set INFRAPILOT_AGENT_BINARY)",
        )
    })?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{sum}  infrapilot-agent\n"),
    )
        .into_response())
}
