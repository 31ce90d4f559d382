//! What every request passes before its route: the client's real address (honouring only the
//! configured trusted proxies), the `Host` check that stops DNS rebinding on the public browser
//! routes, and the response headers that keep tokens out of caches.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// The client's address as the host decided it (see [`client_address`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

/// Decides the client's address: the peer's, unless the peer is a trusted proxy, in which case
/// the right-most address of `X-Forwarded-For` that is not itself a trusted proxy. From anyone
/// else the header is ignored (a client cannot pick its own throttle key).
pub async fn client_address(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(peer) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    {
        let client = resolve_client(peer, &request, &state.settings().trusted_proxies);
        request.extensions_mut().insert(ClientAddress(client));
    }
    next.run(request).await
}

fn resolve_client(peer: IpAddr, request: &Request, trusted: &[crate::state::IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let entries: Vec<String> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .collect();
    // Right to left: each trusted hop vouches for the address before it.
    let mut client = peer;
    for entry in entries.iter().rev() {
        match parse_forwarded_address(entry) {
            Ok(ip) if !is_trusted(ip) => return ip,
            Ok(ip) => client = ip,
            Err(_) => return client,
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`, `[v6]:p`).
fn parse_forwarded_address(entry: &str) -> Result<IpAddr, ()> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest
            .split(']')
            .next()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .ok_or(());
    }
    entry
        .rsplit_once(':')
        .and_then(|(a, _)| a.parse::<IpAddr>().ok())
        .ok_or(())
}

/// Routes a browser reaches without credentials, whose `Host` must be one of this host's names
/// (and everything under `/api/v1/auth/sso/`: its redirect URIs and cookies follow the `Host`).
const BROWSER_PUBLIC_ROUTES: &[&str] = &[
    "/metrics",
    "/api/v1/setup",
    "/api/v1/auth/login",
    "/api/v1/auth/mfa/verify",
    "/api/v1/auth/refresh",
];

/// Whether `host` (a `Host` header value) names this host: an IP literal, `localhost`, the
/// public URL's host or one of the configured names. A DNS-rebinding page sends its own name.
pub fn host_allowed(state: &AppState, host: &str) -> bool {
    let name = if let Some(v6) = host.strip_prefix('[') {
        // `[addr]` or `[addr]:port`, nothing else after the bracket.
        return match v6.split_once(']') {
            Some((addr, rest)) => {
                addr.parse::<std::net::Ipv6Addr>().is_ok()
                    && (rest.is_empty()
                        || rest
                            .strip_prefix(':')
                            .is_some_and(|p| p.parse::<u16>().is_ok()))
            }
            None => false,
        };
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.parse::<std::net::Ipv4Addr>().is_ok() || name == "localhost" {
        return true;
    }
    let settings = state.settings();
    let public = settings
        .public_url
        .as_deref()
        .and_then(|u| u.split("://").nth(1))
        .map(|rest| {
            let authority = rest.split('/').next().unwrap_or("");
            authority
                .rsplit_once(':')
                .map_or(authority, |(h, _)| h)
                .to_ascii_lowercase()
        });
    public.as_deref() == Some(name.as_str())
        || settings
            .allowed_hosts
            .iter()
            .any(|h| h.trim_end_matches('.').eq_ignore_ascii_case(&name))
}

/// Refuses the public browser routes under a `Host` that is not this host's (DNS rebinding), and
/// marks every API answer uncacheable (tokens travel in bodies).
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let is_api = path.starts_with("/api/");
    // The Host header, or the request line's authority (absolute-form requests).
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    if (BROWSER_PUBLIC_ROUTES.contains(&path) || path.starts_with("/api/v1/auth/sso/"))
        && let Some(host) = host
    {
        let ok = host_allowed(&state, &host);
        if !ok {
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "unknown_host",
                "this host does not answer to that name; add it to allowed_hosts (INFRAPILOT_ALLOWED_HOSTS) or use the public URL",
            )
            .with_field("host")
            .into_response();
        }
    }
    let https = state
        .settings()
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if is_api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::IpNet;
    use axum::body::Body;

    fn request(xff: &[&str]) -> Request {
        let mut b = axum::http::Request::builder().uri("/");
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn forwarded_for_is_honoured_only_from_trusted_proxies() {
        let trusted = vec![IpNet::parse("10.0.0.0/8").unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer cannot choose its address.
        assert_eq!(
            resolve_client(ip("203.0.113.9"), &request(&["1.2.3.4"]), &trusted),
            ip("203.0.113.9")
        );
        // Through a trusted proxy: the right-most untrusted address (a client-supplied prefix
        // is ignored).
        assert_eq!(
            resolve_client(
                ip("10.0.0.2"),
                &request(&["6.6.6.6, 198.51.100.7, 10.0.0.3"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            resolve_client(ip("10.0.0.2"), &request(&[]), &trusted),
            ip("10.0.0.2")
        );
    }
}
