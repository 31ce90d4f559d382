//! Enrollment: a key pair made here, a CSR sent with the one-time token, a certificate back.

use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde::{Deserialize, Serialize};

use crate::state::{Identity, StateDir, StateError, TrustMaterial};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("endpoint: {0}")]
    Endpoint(String),
    #[error("could not make the key pair or CSR: {0}")]
    Key(#[from] rcgen::Error),
    #[error("could not reach the host at {endpoint}: {source}")]
    Unreachable {
        endpoint: String,
        source: reqwest::Error,
    },
    #[error("the host refused the enrollment ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the host's answer is not an enrollment response: {0}")]
    BadResponse(String),
    #[error("--ca-file: {0}")]
    CaFile(String),
    #[error(transparent)]
    State(#[from] StateError),
}

pub struct EnrollOptions<'a> {
    /// The host, `https://…` (plain `http://` only to a loopback address).
    pub endpoint: &'a str,
    pub token: &'a str,
    pub name: &'a str,
    /// PEM of a CA to trust for the host's HTTPS certificate, besides the system's.
    pub host_ca_pem: Option<&'a [u8]>,
    /// Accept plain http to a non-loopback host (`--insecure-http`): the token crosses the
    /// network in clear.
    pub allow_insecure_http: bool,
}

#[derive(Serialize)]
struct EnrollRequest<'a> {
    token: &'a str,
    csr: &'a str,
    name: &'a str,
    version: &'a str,
}

#[derive(Deserialize)]
struct EnrollResponse {
    agent_id: String,
    certificate: String,
    ca_certificate: String,
    certificate_expires_at: String,
    grpc_endpoint: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

/// Checks the endpoint: https, or http to loopback only (the token must not cross a network in clear).
fn endpoint_url(raw: &str, allow_insecure_http: bool) -> Result<url::Url, EnrollError> {
    let url = url::Url::parse(raw).map_err(|e| EnrollError::Endpoint(format!("{raw:?}: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" if allow_insecure_http => {
            eprintln!(
                "WARNING: {raw} is plain http and not loopback: the enrollment token crosses the network unencrypted (--insecure-http)"
            );
            Ok(url)
        }
        "http" => Err(EnrollError::Endpoint(
            "plain http is allowed only to a loopback address; use https".into(),
        )),
        other => Err(EnrollError::Endpoint(format!(
            "unsupported scheme {other:?}"
        ))),
    }
}

/// Enrols this node and stores its trust material in `state`.
pub async fn enroll(
    options: &EnrollOptions<'_>,
    state: &StateDir,
) -> Result<Identity, EnrollError> {
    let base = endpoint_url(options.endpoint, options.allow_insecure_http)?;
    let url = base
        .join("api/v1/agents/enroll")
        .map_err(|e| EnrollError::Endpoint(e.to_string()))?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, options.name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?.pem()?;

    let mut client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = options.host_ca_pem {
        let cert =
            reqwest::Certificate::from_pem(pem).map_err(|e| EnrollError::CaFile(e.to_string()))?;
        client = client.add_root_certificate(cert);
    }
    let client = client.build().map_err(|e| EnrollError::Unreachable {
        endpoint: base.to_string(),
        source: e,
    })?;
    let response = client
        .post(url)
        .json(&EnrollRequest {
            token: options.token,
            csr: &csr,
            name: options.name,
            version: env!("CARGO_PKG_VERSION"),
        })
        .send()
        .await
        .map_err(|e| EnrollError::Unreachable {
            endpoint: base.to_string(),
            source: e,
        })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| EnrollError::Unreachable {
            endpoint: base.to_string(),
            source: e,
        })?;
    if !status.is_success() {
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(EnrollError::Refused {
            status: status.as_u16(),
            message,
        });
    }
    let answer: EnrollResponse =
        serde_json::from_slice(&body).map_err(|e| EnrollError::BadResponse(e.to_string()))?;
    let identity = Identity {
        agent_id: answer.agent_id,
        name: options.name.to_owned(),
        endpoint: base.to_string(),
        grpc_endpoint: answer.grpc_endpoint,
        certificate_expires_at: answer.certificate_expires_at,
    };
    state.save(&TrustMaterial {
        identity: identity.clone(),
        key_pem: key.serialize_pem(),
        certificate_pem: answer.certificate,
        ca_certificate_pem: answer.ca_certificate,
    })?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert!(endpoint_url("https://pilot.example.com", false).is_ok());
        assert!(endpoint_url("http://127.0.0.1:8080", false).is_ok());
        assert!(endpoint_url("http://localhost:8080", false).is_ok());
        assert!(
            endpoint_url("http://pilot.example.com", false).is_err(),
            "token in clear"
        );
        assert!(
            endpoint_url("http://pilot.example.com", true).is_ok(),
            "explicit opt-in"
        );
        assert!(endpoint_url("ftp://x", false).is_err());
        assert!(endpoint_url("not a url", false).is_err());
    }
}
