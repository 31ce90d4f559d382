//! Outbound HTTP for plugins. Names are resolved by the host, and every address is checked at
//! dial time: private, loopback, link-local, multicast and other special ranges are refused unless
//! the operator allows them (`INFRAPILOT_PLUGIN_EGRESS_ALLOW`). IP literals in URLs get the same
//! check. No redirects are followed here (the runtime follows them, checking each hop).

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::contract::Header;
use crate::contract::http::{HttpError, Method, Request, Response};

/// Largest response body handed to a plugin.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Headers a plugin may not set: the host owns framing and routing.
const FORBIDDEN_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "proxy-authorization",
    "proxy-connection",
];

/// The address rule: special-purpose ranges are refused unless listed in `allow`.
#[derive(Debug, Clone, Default)]
pub struct EgressGuard {
    allow: Vec<IpNet>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DeniedAddress(String);

impl EgressGuard {
    pub fn new(allow: Vec<IpNet>) -> EgressGuard {
        EgressGuard { allow }
    }

    /// `"127.0.0.0/8, 10.1.2.3"` → guard; names the bad entry.
    pub fn parse_allow_list(list: &str) -> Result<EgressGuard, String> {
        let mut allow = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not an IP address or CIDR"))?;
            allow.push(net);
        }
        Ok(EgressGuard { allow })
    }

    /// `Err` with the kind of range when `ip` may not be reached ("loopback", "private" …).
    pub fn refused_kind(&self, ip: IpAddr) -> Option<&'static str> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        special_range(ip)
    }

    /// `Err` with the reason when `ip` may not be reached.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match special_range(ip) {
            Some(kind) => Err(format!(
                "{ip} is a {kind} address; plugins may not reach it (the operator can allow it with INFRAPILOT_PLUGIN_EGRESS_ALLOW)"
            )),
            None => Ok(()),
        }
    }
}

fn special_range(ip: IpAddr) -> Option<&'static str> {
    const V4: &[(&str, &str)] = &[
        ("0.0.0.0/8", "this-network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    ];
    const V6: &[(&str, &str)] = &[
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "local NAT64"),
        ("100::/64", "discard"),
        ("2001::/32", "Teredo"),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("fc00::/7", "private (unique local)"),
        ("fec0::/10", "site-local"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    ];
    let table = if ip.is_ipv4() { V4 } else { V6 };
    table
        .iter()
        .find(|(net, _)| net.parse::<IpNet>().is_ok_and(|n| n.contains(&ip)))
        .map(|(_, kind)| *kind)
}

/// Resolves with the system resolver and refuses the name when any address is forbidden
/// (so a name cannot mix a public and a private address).
struct GuardedResolver(Arc<EgressGuard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn StdError + Send + Sync> { Box::new(e) })?
                .collect();
            for addr in &addrs {
                guard
                    .check(addr.ip())
                    .map_err(|why| -> Box<dyn StdError + Send + Sync> {
                        Box::new(DeniedAddress(format!("{host} resolves to {why}")))
                    })?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client plugins use.
#[derive(Clone)]
pub struct HttpEgress {
    client: reqwest::Client,
    guard: Arc<EgressGuard>,
    max_response_bytes: usize,
}

impl HttpEgress {
    pub fn new(guard: EgressGuard, max_response_bytes: usize) -> Result<HttpEgress, String> {
        let guard = Arc::new(guard);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("InfraPilot-plugin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpEgress {
            client,
            guard,
            max_response_bytes,
        })
    }

    pub fn guard(&self) -> &EgressGuard {
        &self.guard
    }

    /// One exchange (no redirects), bounded by `timeout` and the response size limit.
    pub async fn fetch(&self, request: Request, timeout: Duration) -> Result<Response, HttpError> {
        let url = url::Url::parse(&request.url)
            .map_err(|e| HttpError::InvalidRequest(format!("url: {e}")))?;
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.guard.check(ip.into()).map_err(HttpError::Denied)?,
            Some(url::Host::Ipv6(ip)) => self.guard.check(ip.into()).map_err(HttpError::Denied)?,
            Some(url::Host::Domain(_)) => {}
            None => return Err(HttpError::InvalidRequest("url: no host".into())),
        }
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for Header { name, value } in &request.headers {
            let lower = name.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
                return Err(HttpError::InvalidRequest(format!(
                    "header {name}: set by the host"
                )));
            }
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpError::InvalidRequest(format!("header {name:?}: invalid name")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| HttpError::InvalidRequest(format!("header {name}: invalid value")))?;
            headers.append(name, value);
        }
        let mut builder = self
            .client
            .request(method, url)
            .headers(headers)
            .timeout(timeout);
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let exchange = async {
            let mut response = builder.send().await.map_err(|e| map_error(&e))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .filter_map(|(n, v)| {
                    Some(Header {
                        name: n.as_str().to_owned(),
                        value: v.to_str().ok()?.to_owned(),
                    })
                })
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| map_error(&e))? {
                if body.len() + chunk.len() > self.max_response_bytes {
                    return Err(HttpError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Response {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout)?
    }
}

fn map_error(e: &reqwest::Error) -> HttpError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(denied) = s.downcast_ref::<DeniedAddress>() {
            return HttpError::Denied(denied.0.clone());
        }
        source = s.source();
    }
    if e.is_timeout() {
        return HttpError::Timeout;
    }
    // Without the URL: it may carry a secret (a Slack webhook URL is one), and the text travels
    // to delivery records and the dashboard.
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if let Some(url) = e.url() {
        text = text
            .replace(&format!(" for url ({url})"), "")
            .replace(url.as_str(), "<url>");
    }
    HttpError::Transport(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_ranges_are_refused_unless_allowed() {
        let guard = EgressGuard::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
        ] {
            assert!(guard.check(ip.parse().unwrap()).is_err(), "{ip}");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(guard.check(ip.parse().unwrap()).is_ok(), "{ip}");
        }
        let guard = EgressGuard::parse_allow_list("127.0.0.0/8, 10.9.9.9").unwrap();
        assert!(guard.check("127.0.0.2".parse().unwrap()).is_ok());
        assert!(guard.check("10.9.9.9".parse().unwrap()).is_ok());
        assert!(guard.check("10.9.9.10".parse().unwrap()).is_err());
        assert!(EgressGuard::parse_allow_list("10.0.0.0/33").is_err());
    }
}
