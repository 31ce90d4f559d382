//! nginx proxy backend: renders the typed proxy model into
//!
//! - `nginx.conf`: the main configuration (events, http, rate-limit zones, the default server that
//!   answers unknown hosts with 404 and the revision at `/.well-known/infrapilot/revision`),
//!   including `hosts/*.conf` relative to itself, so a staged tree is tested exactly as it will run;
//! - `hosts/<id>.conf`: the server blocks of one host.
//!
//! The host validated every field, and this plugin checks again: every string it writes must
//! match the narrow alphabet of its place, or the host is refused (never escaped, never emitted).

use std::fmt::Write;

use infrapilot_plugin_sdk::proxy::{
    AccessRule, PluginError, ProxyBackend, ProxyHost, RenderedFile, SecurityHeaders, Upstream,
    UpstreamScheme,
};

struct Nginx;

fn refuse(field: &str, why: &str) -> PluginError {
    PluginError::Failed(format!("{field}: {why}"))
}

fn check(field: &str, value: &str, allowed: impl Fn(char) -> bool) -> Result<(), PluginError> {
    if value.is_empty() || value.len() > 1024 || !value.chars().all(allowed) {
        return Err(refuse(
            field,
            "contains characters nginx configuration may not carry",
        ));
    }
    Ok(())
}

fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*')
}

fn check_id(id: &str) -> Result<(), PluginError> {
    check("id", id, |c| c.is_ascii_alphanumeric() || c == '-')
}

fn check_path(field: &str, path: &str) -> Result<(), PluginError> {
    check(field, path, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '~')
    })?;
    if !path.starts_with('/') || path.contains("..") {
        return Err(refuse(field, "must be an absolute path without .."));
    }
    Ok(())
}

fn upstream_target(field: &str, u: &Upstream) -> Result<String, PluginError> {
    let scheme = match u.scheme {
        UpstreamScheme::Http => "http",
        UpstreamScheme::Https => "https",
    };
    if u.host.contains(':') {
        // An IPv6 address.
        check(field, &u.host, |c| {
            c.is_ascii_hexdigit() || c == ':' || c == '.'
        })?;
        return Ok(format!("{scheme}://[{}]:{}", u.host, u.port));
    }
    check(field, &u.host, host_char)?;
    if u.port == 0 {
        return Err(refuse(field, "port 0"));
    }
    Ok(format!("{scheme}://{}:{}", u.host, u.port))
}

fn zone_name(id: &str) -> String {
    format!("host_{}", id.replace('-', "_"))
}

fn proxy_location(
    out: &mut String,
    path: &str,
    target: &str,
    websockets: bool,
    https_upstream: bool,
) {
    let _ = writeln!(out, "    location {path} {{");
    let _ = writeln!(out, "        proxy_pass {target};");
    out.push_str("        proxy_set_header Host $host;\n");
    out.push_str("        proxy_set_header X-Real-IP $remote_addr;\n");
    out.push_str("        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n");
    out.push_str("        proxy_set_header X-Forwarded-Proto $scheme;\n");
    if websockets {
        out.push_str("        proxy_http_version 1.1;\n");
        out.push_str("        proxy_set_header Upgrade $http_upgrade;\n");
        out.push_str("        proxy_set_header Connection $connection_upgrade;\n");
        out.push_str("        proxy_read_timeout 1h;\n");
    }
    if https_upstream {
        out.push_str("        proxy_ssl_server_name on;\n");
    }
    out.push_str("    }\n");
}

fn headers(out: &mut String, h: &SecurityHeaders) -> Result<(), PluginError> {
    if let Some(age) = h.hsts_max_age_seconds {
        let sub = if h.hsts_include_subdomains {
            "; includeSubDomains"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "    add_header Strict-Transport-Security \"max-age={age}{sub}\" always;"
        );
    }
    if let Some(csp) = &h.content_security_policy {
        // CSP needs quotes around keywords ('self') and `;` between directives: inside a
        // double-quoted nginx string both are inert; `"`, `\`, `$` and braces are refused.
        check("headers.content_security_policy", csp, |c| {
            (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | '$' | '{' | '}')
        })?;
        let _ = writeln!(
            out,
            "    add_header Content-Security-Policy \"{csp}\" always;"
        );
    }
    if let Some(fo) = &h.frame_options {
        if fo != "DENY" && fo != "SAMEORIGIN" {
            return Err(refuse(
                "headers.frame_options",
                "must be DENY or SAMEORIGIN",
            ));
        }
        let _ = writeln!(out, "    add_header X-Frame-Options {fo} always;");
    }
    if h.content_type_nosniff {
        out.push_str("    add_header X-Content-Type-Options nosniff always;\n");
    }
    if let Some(rp) = &h.referrer_policy {
        check("headers.referrer_policy", rp, |c| {
            c.is_ascii_lowercase() || c == '-'
        })?;
        let _ = writeln!(out, "    add_header Referrer-Policy {rp} always;");
    }
    Ok(())
}

fn access(out: &mut String, rules: &[AccessRule]) -> Result<(), PluginError> {
    for (i, rule) in rules.iter().enumerate() {
        check(&format!("access[{i}].source"), &rule.source, |c| {
            c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/' | 'l')
        })?;
        let verb = if rule.allow { "allow" } else { "deny" };
        let _ = writeln!(out, "    {verb} {};", rule.source);
    }
    Ok(())
}

/// The body shared by the HTTP and HTTPS server blocks of a host.
fn server_body(out: &mut String, host: &ProxyHost) -> Result<(), PluginError> {
    if let Some(limit) = host.max_body_bytes {
        let _ = writeln!(out, "    client_max_body_size {limit};");
    }
    access(out, &host.access)?;
    headers(out, &host.headers)?;
    if let Some(rate) = &host.rate_limit {
        // nginx refuses `burst=0`; no burst is the same.
        if rate.burst > 0 {
            let _ = writeln!(
                out,
                "    limit_req zone={} burst={} nodelay;",
                zone_name(&host.id),
                rate.burst
            );
        } else {
            let _ = writeln!(out, "    limit_req zone={};", zone_name(&host.id));
        }
        out.push_str("    limit_req_status 429;\n");
    }
    // nginx picks the longest matching prefix whatever the order.
    for (i, loc) in host.locations.iter().enumerate() {
        check_path(&format!("locations[{i}].path"), &loc.path)?;
        if loc.path == "/" {
            return Err(refuse(
                &format!("locations[{i}].path"),
                "\"/\" is the host's own upstream",
            ));
        }
        let target = upstream_target(&format!("locations[{i}].upstream"), &loc.upstream)?;
        proxy_location(
            out,
            &loc.path,
            &target,
            loc.websockets,
            loc.upstream.scheme == UpstreamScheme::Https,
        );
    }
    let target = upstream_target("upstream", &host.upstream)?;
    proxy_location(
        out,
        "/",
        &target,
        host.websockets,
        host.upstream.scheme == UpstreamScheme::Https,
    );
    Ok(())
}

fn acme_location(out: &mut String, host: &ProxyHost) -> Result<(), PluginError> {
    if let Some(webroot) = &host.acme_webroot {
        check_path("acme_webroot", webroot)?;
        out.push_str("    location ^~ /.well-known/acme-challenge/ {\n");
        let _ = writeln!(out, "        root {webroot};");
        out.push_str("        default_type text/plain;\n");
        out.push_str("    }\n");
    }
    Ok(())
}

fn render_host(host: &ProxyHost) -> Result<Vec<RenderedFile>, PluginError> {
    check_id(&host.id)?;
    if host.domains.is_empty() {
        return Err(refuse("domains", "at least one domain"));
    }
    for (i, d) in host.domains.iter().enumerate() {
        check(&format!("domains[{i}]"), d, host_char)?;
    }
    let names = host.domains.join(" ");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Rendered by InfraPilot for proxy host {}; edits are reported as drift.",
        host.id
    );
    out.push_str("server {\n    listen 80;\n");
    let _ = writeln!(out, "    server_name {names};");
    // The access log names the proxy host (check_id keeps the id to safe characters).
    let _ = writeln!(out, "    set $infrapilot_proxy_host \"{}\";", host.id);
    acme_location(&mut out, host)?;
    match &host.tls {
        Some(tls) if tls.redirect_http => {
            out.push_str(
                "    location / {\n        return 301 https://$host$request_uri;\n    }\n",
            );
        }
        _ => server_body(&mut out, host)?,
    }
    out.push_str("}\n");
    if let Some(tls) = &host.tls {
        check_path("tls.certificate_path", &tls.certificate_path)?;
        check_path("tls.key_path", &tls.key_path)?;
        out.push_str("server {\n    listen 443 ssl;\n");
        let _ = writeln!(out, "    server_name {names};");
        let _ = writeln!(out, "    set $infrapilot_proxy_host \"{}\";", host.id);
        let _ = writeln!(out, "    ssl_certificate {};", tls.certificate_path);
        let _ = writeln!(out, "    ssl_certificate_key {};", tls.key_path);
        // OCSP stapling when the certificate names a responder (the host says so; ACME
        // issuers dropped OCSP). nginx fetches the answer itself and the client verifies it
        // against the issuer it already holds.
        if tls.ocsp_stapling {
            out.push_str("    ssl_stapling on;\n");
        }
        acme_location(&mut out, host)?;
        server_body(&mut out, host)?;
        out.push_str("}\n");
    }
    Ok(vec![RenderedFile {
        path: format!("hosts/{}.conf", host.id),
        contents: out,
    }])
}

/// The access log: a JSON object per request with the proxy host's id (`$infrapilot_proxy_host`,
/// set in each server block), status, method, path, request and upstream times, upstream
/// address and bytes sent.
const ACCESS_LOG_FORMAT: &str = concat!(
    "    log_format infrapilot_json escape=json '{\"infrapilot\":\"access\",",
    "\"proxy_host\":\"$infrapilot_proxy_host\",\"time\":\"$time_iso8601\",",
    "\"remote\":\"$remote_addr\",\"host\":\"$host\",\"method\":\"$request_method\",",
    "\"path\":\"$request_uri\",\"status\":$status,\"bytes\":$body_bytes_sent,",
    "\"request_time\":$request_time,\"upstream_time\":\"$upstream_response_time\",",
    "\"upstream\":\"$upstream_addr\",\"user_agent\":\"$http_user_agent\"}';\n"
);

/// The TLS 1.2 suites of Mozilla's intermediate configuration (without the DHE ones, which
/// would need a DH parameter file); TLS 1.3 suites are OpenSSL's, all AEAD.
const MOZILLA_INTERMEDIATE_CIPHERS: &str = "    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;\n";

fn render_shared(hosts: &[ProxyHost], revision: u64) -> Result<Vec<RenderedFile>, PluginError> {
    let mut out = String::new();
    out.push_str(
        "# Rendered by InfraPilot (infrapilot.proxy-nginx); edits are reported as drift.\n",
    );
    out.push_str("worker_processes auto;\npid /run/nginx.pid;\nerror_log stderr warn;\n\n");
    out.push_str("events {\n    worker_connections 1024;\n}\n\n");
    out.push_str("http {\n");
    out.push_str("    include /etc/nginx/mime.types;\n");
    out.push_str("    default_type application/octet-stream;\n");
    // One JSON object per request (escape=json), read by the host as a request to the proxy
    // host the server block names.
    out.push_str(ACCESS_LOG_FORMAT);
    out.push_str("    access_log /dev/stdout infrapilot_json;\n");
    out.push_str("    sendfile on;\n    keepalive_timeout 65;\n    server_tokens off;\n");
    out.push_str("    server_names_hash_bucket_size 128;\n");
    // TLS settings of the listening socket come from its default server: set them for all.
    // Mozilla's "intermediate" profile: TLS 1.2 with forward-secret AEAD suites only (no CBC,
    // CCM, CAMELLIA or ARIA that OpenSSL's default list offers), TLS 1.3, the modern curves,
    // and no session tickets (one ticket key would decrypt past sessions until nginx restarts).
    out.push_str("    ssl_protocols TLSv1.2 TLSv1.3;\n");
    out.push_str(MOZILLA_INTERMEDIATE_CIPHERS);
    out.push_str("    ssl_ecdh_curve X25519:prime256v1:secp384r1;\n");
    // The list holds strong suites only; the server's order puts AES-GCM (hardware) first and
    // scanners (testssl) flag a server without an order.
    out.push_str("    ssl_prefer_server_ciphers on;\n");
    out.push_str("    ssl_session_cache shared:infrapilot_tls:10m;\n");
    out.push_str("    ssl_session_timeout 1d;\n");
    out.push_str("    ssl_session_tickets off;\n");
    out.push_str("    map $http_upgrade $connection_upgrade {\n        default upgrade;\n        '' close;\n    }\n");
    for host in hosts {
        if let Some(rate) = &host.rate_limit {
            check_id(&host.id)?;
            let _ = writeln!(
                out,
                "    limit_req_zone $binary_remote_addr zone={}:1m rate={}r/s;",
                zone_name(&host.id),
                rate.requests_per_second.max(1)
            );
        }
    }
    out.push_str(
        "\n    # Unknown hosts: 404. The revision tells the node that a reload took effect.\n",
    );
    out.push_str("    server {\n        listen 80 default_server;\n        server_name _;\n");
    out.push_str("        set $infrapilot_proxy_host \"\";\n");
    out.push_str("        add_header X-InfraPilot-Default 1 always;\n");
    let _ = writeln!(
        out,
        "        location = /.well-known/infrapilot/revision {{\n            default_type text/plain;\n            return 200 \"{revision}\\n\";\n        }}"
    );
    out.push_str("        location / {\n            return 404;\n        }\n    }\n");
    if hosts.iter().any(|h| h.tls.is_some()) {
        out.push_str("    server {\n        listen 443 ssl default_server;\n        ssl_reject_handshake on;\n    }\n");
    }
    out.push_str("\n    include hosts/*.conf;\n}\n");
    Ok(vec![RenderedFile {
        path: "nginx.conf".into(),
        contents: out,
    }])
}

impl ProxyBackend for Nginx {
    fn render_host(host: ProxyHost) -> Result<Vec<RenderedFile>, PluginError> {
        render_host(&host)
    }

    fn render_shared(
        hosts: Vec<ProxyHost>,
        revision: u64,
    ) -> Result<Vec<RenderedFile>, PluginError> {
        render_shared(&hosts, revision)
    }
}

infrapilot_plugin_sdk::export_proxy_backend!(Nginx);
