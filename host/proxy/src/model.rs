//! The typed proxy host and its validation. Every string that can reach a configuration file is
//! checked against the narrow alphabet of its place (RFC 1123 names, Docker container names, IP
//! addresses and CIDRs, URL path prefixes, enumerations); nothing is escaped, anything else is
//! refused with the path of the field. [`ProxySpec::validated`] also normalises (lower-case
//! domains, canonical addresses), so what is stored is what is rendered.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most domains one host may answer.
pub const MAX_DOMAINS: usize = 50;
/// Most custom locations per host.
pub const MAX_LOCATIONS: usize = 30;
/// Most access rules per host.
pub const MAX_ACCESS_RULES: usize = 100;
/// Largest accepted request body limit (64 GiB).
pub const MAX_BODY_BYTES: u64 = 64 << 30;
/// Longest Content-Security-Policy header a host may send (what the nginx backend writes).
pub const MAX_CSP_HEADER_BYTES: usize = 1024;
/// Longest HSTS max-age (two years).
pub const MAX_HSTS_SECONDS: u32 = 63_072_000;

/// A field that failed validation: its path (`domains[0]`, `upstream.port`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// A proxy host as the API takes it and the store keeps it. Its OpenAPI schema is written out
/// in [`crate::schema`], which states the rules [`ProxySpec::validated`] applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    /// Host names this host answers (RFC 1123; a leading `*.` for a wildcard), at least one.
    pub domains: Vec<String>,
    pub upstream: UpstreamSpec,
    /// Pass WebSocket upgrades to the upstream.
    #[serde(default)]
    pub websockets: bool,
    /// Path prefixes sent to other upstreams.
    #[serde(default)]
    pub locations: Vec<LocationSpec>,
    #[serde(default)]
    pub headers: HeadersSpec,
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    /// Largest request body in bytes (nginx's default of 1 MiB when absent; 0 = unlimited).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Allow/deny rules by client address, in order (nginx semantics: first match wins).
    #[serde(default)]
    pub access: Vec<AccessSpec>,
    /// HTTPS for this host.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
}

/// HTTPS: a certificate issued and renewed by the node over ACME HTTP-01 (`acme`), or one the
/// user uploaded (`uploaded`, with `certificate_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// `acme` (Let's Encrypt or the node's configured ACME server) or `uploaded`.
    pub mode: String,
    /// With `uploaded`: the id of an uploaded certificate (`/api/v1/proxy/certificates`) that
    /// covers every domain of the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
    /// Answer plain HTTP with a redirect to HTTPS (default true).
    #[serde(default = "yes")]
    pub redirect_http: bool,
}

fn yes() -> bool {
    true
}

/// Where requests go: a container on this node (`container`) or an address (`host`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// A container name on this node; nginx joins one of its networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// An IP address or host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub port: u16,
    /// `http` (default) or `https`.
    #[serde(default = "http")]
    pub scheme: String,
}

fn http() -> String {
    "http".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationSpec {
    /// A path prefix: `/api/`.
    pub path: String,
    pub upstream: UpstreamSpec,
    #[serde(default)]
    pub websockets: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadersSpec {
    /// Strict-Transport-Security (sent on HTTPS only by browsers' rules).
    #[serde(default)]
    pub hsts: Option<HstsSpec>,
    /// Content-Security-Policy as directives; keyword sources are written without quotes
    /// (`self`, `none`, `unsafe-inline` …) and quoted when rendered.
    #[serde(default)]
    pub content_security_policy: Vec<CspDirective>,
    /// X-Frame-Options: `DENY` or `SAMEORIGIN`.
    #[serde(default)]
    pub frame_options: Option<String>,
    /// X-Content-Type-Options: nosniff.
    #[serde(default)]
    pub content_type_nosniff: bool,
    /// Referrer-Policy, e.g. `strict-origin-when-cross-origin`.
    #[serde(default)]
    pub referrer_policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HstsSpec {
    pub max_age_seconds: u32,
    #[serde(default)]
    pub include_subdomains: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CspDirective {
    /// e.g. `default-src`, `img-src`, `frame-ancestors`.
    pub name: String,
    #[serde(default)]
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Requests per second per client address (1–100000).
    pub requests_per_second: u32,
    /// Requests above the rate admitted at once (0–100000).
    #[serde(default)]
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessSpec {
    /// `allow` or `deny`.
    pub action: String,
    /// An IPv4/IPv6 address, a CIDR, or `all`.
    pub source: String,
}

pub(crate) const CSP_DIRECTIVES: &[&str] = &[
    "default-src",
    "script-src",
    "script-src-elem",
    "script-src-attr",
    "style-src",
    "style-src-elem",
    "style-src-attr",
    "img-src",
    "font-src",
    "connect-src",
    "media-src",
    "object-src",
    "frame-src",
    "child-src",
    "worker-src",
    "manifest-src",
    "base-uri",
    "form-action",
    "frame-ancestors",
    "upgrade-insecure-requests",
    "block-all-mixed-content",
];

const CSP_KEYWORDS: &[&str] = &[
    "self",
    "none",
    "unsafe-inline",
    "unsafe-eval",
    "strict-dynamic",
    "unsafe-hashes",
    "report-sample",
    "wasm-unsafe-eval",
];

pub(crate) const REFERRER_POLICIES: &[&str] = &[
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
];

/// One RFC 1123 label: 1–63 of `a-z 0-9 -`, not starting or ending with `-`.
fn label_ok(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// A host name per RFC 1123 (ASCII; internationalised names in their `xn--` form), lower-cased.
/// With `wildcard`, a leading `*.` label is allowed.
pub fn host_name(field: &str, raw: &str, wildcard: bool) -> Result<String, FieldError> {
    if raw.is_empty() {
        return Err(refuse(field, "must not be empty"));
    }
    if !raw.is_ascii() {
        return Err(refuse(
            field,
            "must be ASCII (write internationalised names in their xn-- form)",
        ));
    }
    let name = raw.to_ascii_lowercase();
    if name.len() > 253 {
        return Err(refuse(field, "is longer than 253 characters"));
    }
    let rest = match name.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        Some(_) => return Err(refuse(field, "may not be a wildcard")),
        None => name.as_str(),
    };
    let labels: Vec<&str> = rest.split('.').collect();
    for label in &labels {
        if label.len() > 63 {
            return Err(refuse(field, "has a label longer than 63 characters"));
        }
        if !label_ok(label) {
            return Err(refuse(
                field,
                "must be a host name: labels of letters, digits and inner hyphens, separated by dots",
            ));
        }
    }
    // No top-level domain starts with a digit (this also keeps `10.0.0.300` from passing as a
    // name); a single label such as a container alias (`2fauth`) only must not be a number.
    match labels.as_slice() {
        [single] if single.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(refuse(field, "must not be a number"));
        }
        [_, .., last] if !last.starts_with(|c: char| c.is_ascii_lowercase()) => {
            return Err(refuse(
                field,
                "the last label must start with a letter (no numeric top-level domain)",
            ));
        }
        _ => {}
    }
    if name.starts_with("*.") && labels.len() < 2 {
        return Err(refuse(
            field,
            "a wildcard needs a parent domain (*.example.com)",
        ));
    }
    Ok(name)
}

/// A Docker container name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 characters.
pub fn container_name(field: &str, raw: &str) -> Result<String, FieldError> {
    let name = raw.strip_prefix('/').unwrap_or(raw);
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(refuse(
            field,
            "must be a container name: a letter or digit, then letters, digits, _ . or -",
        ));
    }
    Ok(name.to_owned())
}

/// A certificate id: a UUID as the API made it (lower-case).
fn certificate_id(field: &str, raw: &str) -> Result<String, FieldError> {
    let ok = raw.len() == 36
        && raw.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if !ok {
        return Err(refuse(field, "must be the id of an uploaded certificate"));
    }
    Ok(raw.to_ascii_lowercase())
}

/// An IP address (canonical form) or a host name.
fn address(field: &str, raw: &str) -> Result<String, FieldError> {
    if let Ok(ip) = raw.parse::<IpAddr>() {
        if ip.is_unspecified() {
            return Err(refuse(field, "must not be the unspecified address"));
        }
        return Ok(ip.to_string());
    }
    if let Some(inner) = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']'))
        && let Ok(IpAddr::V6(ip)) = inner.parse::<IpAddr>()
    {
        if ip.is_unspecified() {
            return Err(refuse(field, "must not be the unspecified address"));
        }
        return Ok(ip.to_string());
    }
    host_name(field, raw, false)
}

fn upstream(prefix: &str, u: &UpstreamSpec) -> Result<UpstreamSpec, FieldError> {
    let (container, host) = match (&u.container, &u.host) {
        (Some(c), None) => (
            Some(container_name(&format!("{prefix}.container"), c)?),
            None,
        ),
        (None, Some(h)) => (None, Some(address(&format!("{prefix}.host"), h)?)),
        _ => {
            return Err(refuse(
                prefix,
                "give exactly one of container (a container on this node) or host (an address)",
            ));
        }
    };
    if u.port == 0 {
        return Err(refuse(format!("{prefix}.port"), "must be 1-65535"));
    }
    let scheme = u.scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(refuse(format!("{prefix}.scheme"), "must be http or https"));
    }
    Ok(UpstreamSpec {
        container,
        host,
        port: u.port,
        scheme,
    })
}

/// A location path prefix: `/` then `A-Z a-z 0-9 / _ . ~ -`, no `..` or `//`.
fn location_path(field: &str, raw: &str) -> Result<String, FieldError> {
    let ok = raw.starts_with('/')
        && raw.len() > 1
        && raw.len() <= 200
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'~' | b'-'))
        && !raw.contains("..")
        && !raw.contains("//");
    if !ok {
        return Err(refuse(
            field,
            "must be a path prefix other than /: letters, digits and / _ . ~ -, without .. or //",
        ));
    }
    Ok(raw.to_owned())
}

fn csp_source(field: &str, raw: &str) -> Result<String, FieldError> {
    let lower = raw.to_ascii_lowercase();
    if CSP_KEYWORDS.contains(&lower.as_str()) {
        return Ok(lower);
    }
    // Scheme sources (`https:`, `data:`) and host sources (`https://*.example.com:443/path`).
    let ok = !raw.is_empty()
        && raw.len() <= 200
        && raw.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'*' | b':' | b'/' | b'_')
        })
        && raw
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'*');
    if !ok {
        return Err(refuse(
            field,
            format!(
                "must be a keyword ({}) or a scheme or host source",
                CSP_KEYWORDS.join(", ")
            ),
        ));
    }
    Ok(lower)
}

fn access_source(field: &str, raw: &str) -> Result<String, FieldError> {
    if raw == "all" {
        return Ok(raw.to_owned());
    }
    let (ip, prefix) = match raw.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (raw, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| refuse(field, "must be an IP address, a CIDR (10.0.0.0/8) or all"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix {
        None => Ok(ip.to_string()),
        Some(p) => {
            let bits: u8 = p
                .parse()
                .ok()
                .filter(|b| *b <= max && p.bytes().all(|c| c.is_ascii_digit()) && p.len() <= 3)
                .ok_or_else(|| refuse(field, format!("the prefix length must be 0-{max}")))?;
            Ok(format!("{ip}/{bits}"))
        }
    }
}

impl utoipa::PartialSchema for ProxySpec {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        // A placeholder in the derived document: the API replaces it with the full schema of
        // `crate::schema::proxy_spec` (utoipa's types cannot hold `if`/`then`/`not`).
        utoipa::openapi::ObjectBuilder::new()
            .description(Some("See the document's full ProxySpec schema."))
            .into()
    }
}

impl ToSchema for ProxySpec {}

impl ProxySpec {
    /// Checks every field; returns the normalised host or the first field at fault.
    pub fn validated(&self) -> Result<ProxySpec, FieldError> {
        if self.domains.is_empty() {
            return Err(refuse("domains", "at least one domain"));
        }
        if self.domains.len() > MAX_DOMAINS {
            return Err(refuse("domains", format!("at most {MAX_DOMAINS} domains")));
        }
        let mut domains = Vec::with_capacity(self.domains.len());
        for (i, d) in self.domains.iter().enumerate() {
            let field = format!("domains[{i}]");
            let d = host_name(&field, d, true)?;
            if domains.contains(&d) {
                return Err(refuse(field, format!("{d} is listed twice")));
            }
            domains.push(d);
        }
        let up = upstream("upstream", &self.upstream)?;
        if self.locations.len() > MAX_LOCATIONS {
            return Err(refuse(
                "locations",
                format!("at most {MAX_LOCATIONS} locations"),
            ));
        }
        let mut locations: Vec<LocationSpec> = Vec::with_capacity(self.locations.len());
        for (i, l) in self.locations.iter().enumerate() {
            let path = location_path(&format!("locations[{i}].path"), &l.path)?;
            if locations.iter().any(|o| o.path == path) {
                return Err(refuse(format!("locations[{i}].path"), "is listed twice"));
            }
            locations.push(LocationSpec {
                path,
                upstream: upstream(&format!("locations[{i}].upstream"), &l.upstream)?,
                websockets: l.websockets,
            });
        }
        let h = &self.headers;
        if let Some(hsts) = &h.hsts
            && hsts.max_age_seconds > MAX_HSTS_SECONDS
        {
            return Err(refuse(
                "headers.hsts.max_age_seconds",
                format!("at most {MAX_HSTS_SECONDS} (two years)"),
            ));
        }
        if h.content_security_policy.len() > 30 {
            return Err(refuse(
                "headers.content_security_policy",
                "at most 30 directives",
            ));
        }
        let mut csp = Vec::with_capacity(h.content_security_policy.len());
        for (i, d) in h.content_security_policy.iter().enumerate() {
            let name = d.name.to_ascii_lowercase();
            if !CSP_DIRECTIVES.contains(&name.as_str()) {
                return Err(refuse(
                    format!("headers.content_security_policy[{i}].name"),
                    "is not a known directive",
                ));
            }
            if d.sources.len() > 30 {
                return Err(refuse(
                    format!("headers.content_security_policy[{i}].sources"),
                    "at most 30 sources",
                ));
            }
            let mut sources = Vec::with_capacity(d.sources.len());
            for (j, s) in d.sources.iter().enumerate() {
                sources.push(csp_source(
                    &format!("headers.content_security_policy[{i}].sources[{j}]"),
                    s,
                )?);
            }
            csp.push(CspDirective { name, sources });
        }
        let frame_options = match h.frame_options.as_deref().map(str::to_ascii_uppercase) {
            None => None,
            Some(v) if v == "DENY" || v == "SAMEORIGIN" => Some(v),
            Some(_) => {
                return Err(refuse(
                    "headers.frame_options",
                    "must be DENY or SAMEORIGIN",
                ));
            }
        };
        let referrer_policy = match h.referrer_policy.as_deref().map(str::to_ascii_lowercase) {
            None => None,
            Some(v) if REFERRER_POLICIES.contains(&v.as_str()) => Some(v),
            Some(_) => {
                return Err(refuse(
                    "headers.referrer_policy",
                    format!("must be one of {}", REFERRER_POLICIES.join(", ")),
                ));
            }
        };
        if let Some(r) = &self.rate_limit {
            if r.requests_per_second == 0 || r.requests_per_second > 100_000 {
                return Err(refuse("rate_limit.requests_per_second", "must be 1-100000"));
            }
            if r.burst > 100_000 {
                return Err(refuse("rate_limit.burst", "must be 0-100000"));
            }
        }
        if let Some(b) = self.max_body_bytes
            && b > MAX_BODY_BYTES
        {
            return Err(refuse(
                "max_body_bytes",
                format!("at most {MAX_BODY_BYTES}"),
            ));
        }
        if self.access.len() > MAX_ACCESS_RULES {
            return Err(refuse(
                "access",
                format!("at most {MAX_ACCESS_RULES} rules"),
            ));
        }
        let mut access = Vec::with_capacity(self.access.len());
        for (i, a) in self.access.iter().enumerate() {
            let action = a.action.to_ascii_lowercase();
            if action != "allow" && action != "deny" {
                return Err(refuse(
                    format!("access[{i}].action"),
                    "must be allow or deny",
                ));
            }
            access.push(AccessSpec {
                action,
                source: access_source(&format!("access[{i}].source"), &a.source)?,
            });
        }
        let tls = match &self.tls {
            None => None,
            Some(t) => {
                let mode = t.mode.to_ascii_lowercase();
                let certificate_id = match (mode.as_str(), &t.certificate_id) {
                    ("acme", None) => None,
                    ("acme", Some(_)) => {
                        return Err(refuse(
                            "tls.certificate_id",
                            "is only for mode uploaded (acme certificates are the node's own)",
                        ));
                    }
                    ("uploaded", Some(id)) => Some(certificate_id("tls.certificate_id", id)?),
                    ("uploaded", None) => {
                        return Err(refuse(
                            "tls.certificate_id",
                            "give the id of an uploaded certificate",
                        ));
                    }
                    _ => {
                        return Err(refuse(
                            "tls.mode",
                            "must be acme (issued and renewed by the node) or uploaded",
                        ));
                    }
                };
                if mode == "acme"
                    && let Some(i) = domains.iter().position(|d| d.starts_with("*."))
                {
                    return Err(refuse(
                        format!("domains[{i}]"),
                        "a wildcard needs an ACME DNS-01 challenge, which HTTP-01 cannot do: upload a wildcard certificate (tls.mode uploaded)",
                    ));
                }
                Some(TlsSpec {
                    mode,
                    certificate_id,
                    redirect_http: t.redirect_http,
                })
            }
        };
        let spec = ProxySpec {
            tls,
            domains,
            upstream: up,
            websockets: self.websockets,
            locations,
            headers: HeadersSpec {
                hsts: h.hsts.clone(),
                content_security_policy: csp,
                frame_options,
                content_type_nosniff: h.content_type_nosniff,
                referrer_policy,
            },
            rate_limit: self.rate_limit.clone(),
            max_body_bytes: self.max_body_bytes,
            access,
        };
        // The backend refuses a header value longer than this.
        if let Some(header) = spec.csp_header()
            && header.len() > MAX_CSP_HEADER_BYTES
        {
            return Err(refuse(
                "headers.content_security_policy",
                format!(
                    "the header would be {} characters long; at most {MAX_CSP_HEADER_BYTES}",
                    header.len()
                ),
            ));
        }
        Ok(spec)
    }

    /// The uploaded certificate this host serves, if any.
    pub fn uploaded_certificate(&self) -> Option<&str> {
        self.tls.as_ref().and_then(|t| t.certificate_id.as_deref())
    }

    /// Containers on this node the host sends requests to.
    pub fn containers(&self) -> Vec<String> {
        let mut c: Vec<String> = std::iter::once(&self.upstream)
            .chain(self.locations.iter().map(|l| &l.upstream))
            .filter_map(|u| u.container.clone())
            .collect();
        c.sort();
        c.dedup();
        c
    }

    /// The Content-Security-Policy header value (keywords quoted, directives joined by `; `).
    pub fn csp_header(&self) -> Option<String> {
        let csp = &self.headers.content_security_policy;
        if csp.is_empty() {
            return None;
        }
        Some(
            csp.iter()
                .map(|d| {
                    let mut parts = vec![d.name.clone()];
                    parts.extend(d.sources.iter().map(|s| {
                        if CSP_KEYWORDS.contains(&s.as_str()) {
                            format!("'{s}'")
                        } else {
                            s.clone()
                        }
                    }));
                    parts.join(" ")
                })
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}
