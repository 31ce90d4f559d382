//! Reverse proxy hosts: the typed model and its validation ([`model`]), rendering a node's hosts
//! through its proxy-backend plugin into an `ApplyProxyConfig` command, and the apply status of
//! a host derived from the stored result of its revision's command; [`service`] is the workflow
//! that changes a node's hosts (a revision staged, sealed and dispatched through the node-action
//! door), which routes and jobs call.
//!
//! The backend is a WebAssembly component behind the `proxy-backend` world: the host never writes
//! nginx syntax itself, and a second backend is another plugin id.

pub mod certificate;
pub mod model;
pub mod schema;
pub mod service;

use infrapilot_plugin_host::{PluginHost, PluginHostError};
use infrapilot_plugin_runtime::contract::{
    AccessRule, Location, ProxyHost, RateLimit, SecurityHeaders, Tls, Upstream, UpstreamScheme,
};
use infrapilot_plugin_runtime::{HookError, Invocation};
use infrapilot_proto::model::{ApplyReport, PROXY_ACME_WEBROOT, PROXY_MOUNT};
use infrapilot_proto::v1::{ApplyProxyConfig, ProxyFile, ProxyHostConfig, ProxyTls};
use serde::{Deserialize, Serialize};

pub use model::{FieldError, ProxySpec};

/// The first-party nginx backend.
/// The HSTS max-age a TLS host sends unless its spec says otherwise (a year).
pub const DEFAULT_HSTS_SECONDS: u32 = 31_536_000;

pub const DEFAULT_BACKEND: &str = "infrapilot.proxy-nginx";

/// One host as a revision keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionHost {
    pub id: String,
    pub spec: ProxySpec,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Plugin(#[from] PluginHostError),
    #[error("the proxy backend failed: {0}")]
    Hook(HookError),
}

fn wit_upstream(u: &model::UpstreamSpec) -> Upstream {
    Upstream {
        scheme: if u.scheme == "https" {
            UpstreamScheme::Https
        } else {
            UpstreamScheme::Http
        },
        host: u
            .container
            .clone()
            .or_else(|| u.host.clone())
            .unwrap_or_default(),
        port: u.port,
    }
}

/// The WIT model of a validated host.
/// `ocsp_stapling`: its certificate names an OCSP responder (only uploaded ones do: ACME
/// issuers dropped OCSP).
pub fn to_wit(id: &str, spec: &ProxySpec, ocsp_stapling: bool) -> ProxyHost {
    ProxyHost {
        id: id.to_owned(),
        domains: spec.domains.clone(),
        upstream: wit_upstream(&spec.upstream),
        websockets: spec.websockets,
        locations: spec
            .locations
            .iter()
            .map(|l| Location {
                path: l.path.clone(),
                upstream: wit_upstream(&l.upstream),
                websockets: l.websockets,
            })
            .collect(),
        tls: spec.tls.as_ref().map(|t| Tls {
            certificate_path: format!("{PROXY_MOUNT}/certs/{id}/fullchain.pem"),
            key_path: format!("{PROXY_MOUNT}/certs/{id}/privkey.pem"),
            redirect_http: t.redirect_http,
            ocsp_stapling,
        }),
        headers: SecurityHeaders {
            // On by default for a TLS host (a year); `hsts: {max_age_seconds: 0}` turns it off.
            hsts_max_age_seconds: match (&spec.headers.hsts, &spec.tls) {
                (Some(h), _) if h.max_age_seconds == 0 => None,
                (Some(h), _) => Some(h.max_age_seconds),
                (None, Some(_)) => Some(DEFAULT_HSTS_SECONDS),
                (None, None) => None,
            },
            hsts_include_subdomains: spec
                .headers
                .hsts
                .as_ref()
                .is_some_and(|h| h.include_subdomains),
            content_security_policy: spec.csp_header(),
            frame_options: spec.headers.frame_options.clone(),
            content_type_nosniff: spec.headers.content_type_nosniff,
            referrer_policy: spec.headers.referrer_policy.clone(),
        },
        rate_limit: spec.rate_limit.as_ref().map(|r| RateLimit {
            requests_per_second: r.requests_per_second,
            burst: r.burst,
        }),
        max_body_bytes: spec.max_body_bytes,
        access: spec
            .access
            .iter()
            .map(|a| AccessRule {
                allow: a.action == "allow",
                source: a.source.clone(),
            })
            .collect(),
        acme_webroot: Some(PROXY_ACME_WEBROOT.to_owned()),
    }
}

/// An uploaded certificate as the node needs it: the chain and the key (opened from the sealed
/// store only to be sent), and the leaf's fingerprint.
#[derive(Debug, Clone)]
pub struct CertificateMaterial {
    pub chain_pem: String,
    pub key_pem: String,
    pub fingerprint_sha256: String,
    /// The leaf names an OCSP responder: the backend staples its answers.
    pub ocsp_stapling: bool,
}

/// A node's configuration, rendered: the command to send, and the hosts the backend refused
/// (left out of the command; id → the backend's message).
pub struct RenderedRevision {
    pub command: ApplyProxyConfig,
    pub refused: Vec<(String, String)>,
}

/// Renders every host of a node with the backend `backend_id`. `previous` is the last revision's
/// hosts: a host whose spec did not change is not re-verified by the node. `certificates` holds
/// the uploaded certificates the hosts name (by id); one that is missing refuses the host.
pub async fn render(
    plugins: &PluginHost,
    backend_id: &str,
    org_id: &infrapilot_store::OrgId,
    revision: u64,
    hosts: &[RevisionHost],
    previous: &[RevisionHost],
    certificates: &std::collections::HashMap<String, CertificateMaterial>,
) -> Result<RenderedRevision, RenderError> {
    let (backend, _) = plugins.proxy_backend(backend_id).await?;
    let invocation = Invocation {
        settings: serde_json::json!({}),
        secrets: Default::default(),
        services: plugins.services(org_id),
    };
    let wit: Vec<ProxyHost> = hosts
        .iter()
        .map(|h| {
            let staple = h
                .spec
                .uploaded_certificate()
                .and_then(|cid| certificates.get(cid))
                .is_some_and(|m| m.ocsp_stapling);
            to_wit(&h.id, &h.spec, staple)
        })
        .collect();
    let rendered = backend
        .render(&invocation, &wit, revision)
        .await
        .map_err(RenderError::Hook)?;
    let mut command = ApplyProxyConfig {
        revision,
        shared: rendered
            .shared
            .into_iter()
            .map(|f| ProxyFile {
                path: f.path,
                contents: f.contents.into_bytes(),
            })
            .collect(),
        hosts: Vec::with_capacity(hosts.len()),
    };
    let mut refused = Vec::new();
    for (host, files) in hosts.iter().zip(rendered.hosts) {
        let files = match files {
            Ok(files) => files,
            Err(e) => {
                refused.push((host.id.clone(), e.to_string()));
                continue;
            }
        };
        let tls = match &host.spec.tls {
            None => None,
            Some(t) => match host.spec.uploaded_certificate() {
                None => Some(ProxyTls {
                    mode: t.mode.clone(),
                    ..Default::default()
                }),
                Some(cid) => match certificates.get(cid) {
                    Some(m) => Some(ProxyTls {
                        mode: t.mode.clone(),
                        certificate_pem: m.chain_pem.clone().into_bytes(),
                        private_key_pem: m.key_pem.clone().into_bytes(),
                        fingerprint_sha256: m.fingerprint_sha256.clone(),
                    }),
                    None => {
                        refused.push((
                            host.id.clone(),
                            format!("the uploaded certificate {cid} does not exist"),
                        ));
                        continue;
                    }
                },
            },
        };
        command.hosts.push(ProxyHostConfig {
            id: host.id.clone(),
            domains: host.spec.domains.clone(),
            files: files
                .into_iter()
                .map(|f| ProxyFile {
                    path: f.path,
                    contents: f.contents.into_bytes(),
                })
                .collect(),
            containers: host.spec.containers(),
            changed: !previous.contains(host),
            tls,
        });
    }
    Ok(RenderedRevision { command, refused })
}

/// A host's apply status: `pending`, `applied` or `failed` (with nginx's or the node's error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplyStatus {
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The revision this status is about.
    pub revision: i64,
}

/// The status of host `id` in a revision, from its command's state and stored result, and the
/// hosts the backend refused when rendering it (kept in the command result by the caller).
pub fn host_status(
    id: &str,
    revision: i64,
    command_state: Option<&str>,
    command_result: Option<&str>,
    command_error: Option<&str>,
) -> ApplyStatus {
    let status = |state: &str, error: Option<String>| ApplyStatus {
        state: state.to_owned(),
        error,
        revision,
    };
    match command_state {
        Some("succeeded") => {
            let Some(report) =
                command_result.and_then(|r| serde_json::from_str::<ApplyReport>(r).ok())
            else {
                return status("failed", Some("the node's report could not be read".into()));
            };
            match report.state.as_str() {
                "applied" => match report.hosts.iter().find(|h| h.id == id) {
                    Some(h) if h.state == "applied" => status("applied", None),
                    Some(h) => status("failed", h.error.clone()),
                    None => status(
                        "failed",
                        Some("the proxy backend could not render this host".into()),
                    ),
                },
                // The node serves a newer revision than this one, the latest the database
                // knows: the database is older than the node (restored from a backup).
                "superseded" => status(
                    "failed",
                    Some(format!(
                        "{}; re-apply to make this configuration the node's",
                        report
                            .error
                            .unwrap_or_else(|| "the node serves a newer revision".into())
                    )),
                ),
                _ => status("failed", report.error),
            }
        }
        Some("failed") | Some("expired") => status(
            "failed",
            Some(
                command_error
                    .map(|e| {
                        e.split_once('\u{1f}')
                            .map(|(_, m)| m)
                            .unwrap_or(e)
                            .to_owned()
                    })
                    .unwrap_or_else(|| "the apply failed".into()),
            ),
        ),
        _ => status("pending", None),
    }
}
