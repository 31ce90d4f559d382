//! The TLS health score of a proxy host: a real handshake with the node's nginx (SNI = the host's
//! first domain), then a request for its headers. 100 minus what is wrong, with the reasons:
//! protocol below TLS 1.3, a cipher suite without forward secrecy, a chain the public roots (and
//! the configured extra roots) do not trust, expiry near or past, HSTS missing or short — and,
//! probed with hand-built ClientHellos offering nothing else ([`crate::tls_hello`]), weak suite
//! classes (CBC, CCM, CAMELLIA, ARIA, static RSA), TLS 1.0/1.1, and session tickets.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Six months: the HSTS max-age below which a host loses points.
const HSTS_MIN_SECONDS: u64 = 15_552_000;

/// Accepts any chain (the score reports trust separately).
#[derive(Debug)]
struct AnyChain(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyChain {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(extra: Option<&Path>) -> RootCertStore {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra
        && let Ok(pem) = std::fs::read(path)
    {
        use rustls::pki_types::pem::PemObject;
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            let _ = roots.add(cert);
        }
    }
    roots
}

fn verify_chain(
    chain: &[CertificateDer<'static>],
    name: &str,
    extra_roots: Option<&Path>,
) -> Result<(), String> {
    let (leaf, intermediates) = chain.split_first().ok_or("no certificate presented")?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(extra_roots)),
        provider(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let server = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(leaf, intermediates, &server, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn handshake(
    config: ClientConfig,
    addr: SocketAddr,
    name: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let server = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let tcp = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(
        Duration::from_secs(3),
        TlsConnector::from(Arc::new(config)).connect(server, tcp),
    )
    .await
    .map_err(|_| "handshake timed out".to_owned())?
    .map_err(|e| e.to_string())
}

/// A host's score, its reasons, and the leaf certificate nginx presented (DER).
pub struct Score {
    pub score: u8,
    pub reasons: Vec<String>,
    pub leaf: Option<Vec<u8>>,
}

/// Scores the host that answers `name` on `addr`; `not_after` is its certificate's expiry (Unix
/// seconds) and `renew_before` the renewal window.
pub async fn score(
    addr: SocketAddr,
    name: &str,
    extra_roots: Option<&Path>,
    not_after: i64,
    renew_before: Duration,
) -> Score {
    let fail = |reason: String| Score {
        score: 0,
        reasons: vec![reason],
        leaf: None,
    };
    let mut score: i32 = 100;
    let mut reasons = Vec::new();
    let provider = provider();
    let open = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyChain(provider.clone())))
                .with_no_client_auth()
        });
    let Ok(open) = open else {
        return fail("the TLS client could not be configured".into());
    };
    let mut stream = match handshake(open, addr, name).await {
        Ok(s) => s,
        Err(e) => return fail(format!("handshake failed: {e}")),
    };
    let (_, session) = stream.get_ref();
    let chain: Vec<CertificateDer<'static>> = session
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    let leaf = chain.first().map(|c| c.as_ref().to_vec());
    match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => {}
        Some(v) => {
            score -= 10;
            reasons.push(format!("protocols: negotiated {v:?}, not TLS 1.3"));
        }
        None => {}
    }
    if let Some(suite) = session.negotiated_cipher_suite() {
        let name = format!("{:?}", suite.suite());
        if !(name.starts_with("TLS13_") || name.contains("ECDHE")) {
            score -= 20;
            reasons.push(format!("ciphers: {name} has no forward secrecy"));
        }
    }
    // HSTS from the host's own answer.
    let request = format!("HEAD / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    let mut head = Vec::new();
    if stream.write_all(request.as_bytes()).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            let mut buf = [0u8; 4096];
            while head.len() < 16 << 10 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        })
        .await;
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let hsts = head
        .lines()
        .find_map(|l| l.strip_prefix("strict-transport-security:"))
        .map(str::trim);
    match hsts {
        None => {
            score -= 15;
            reasons.push("HSTS: no Strict-Transport-Security header".into());
        }
        Some(value) => {
            let age = value
                .split(';')
                .find_map(|p| p.trim().strip_prefix("max-age="))
                .and_then(|a| a.trim_matches('"').parse::<u64>().ok())
                .unwrap_or(0);
            if age < HSTS_MIN_SECONDS {
                score -= 5;
                reasons.push(format!("HSTS: max-age {age} is under six months"));
            }
        }
    }
    use crate::tls_hello::{Answer, GOOD_SUITES, LEGACY_SUITES, Version, WEAK_CLASSES, offer};
    for class in WEAK_CLASSES {
        if let Ok(Answer::Accepted { suite, .. }) =
            offer(addr, name, Version::Tls12, class.suites, false).await
        {
            score -= 10;
            reasons.push(format!(
                "ciphers: accepts {} suites (chose 0x{suite:04X} when offered only those)",
                class.name
            ));
        }
    }
    for (version, label) in [(Version::Tls10, "TLS 1.0"), (Version::Tls11, "TLS 1.1")] {
        if let Ok(Answer::Accepted { .. }) = offer(addr, name, version, LEGACY_SUITES, false).await
        {
            score -= 15;
            reasons.push(format!("protocols: accepts {label}"));
        }
    }
    if let Ok(Answer::Accepted { ticket: true, .. }) =
        offer(addr, name, Version::Tls12, GOOD_SUITES, true).await
    {
        score -= 5;
        reasons.push(
            "session tickets: on (one ticket key decrypts past sessions until nginx restarts)"
                .into(),
        );
    }
    // Chain: the certificates this very connection presented, verified against the public roots
    // and the configured extra roots (a second connection could reach another worker).
    if let Err(e) = verify_chain(&chain, name, extra_roots) {
        score -= 40;
        reasons.push(format!("chain: not trusted ({e})"));
    }
    let left = not_after - crate::certs::now_secs();
    if left <= 0 {
        score = 0;
        reasons.push("expiry: the certificate has expired".into());
    } else if left < 7 * 86_400 {
        score -= 30;
        reasons.push(format!("expiry: {} days left", left / 86_400));
    } else if left < renew_before.as_secs() as i64 {
        score -= 10;
        reasons.push(format!("expiry: {} days left (renewal due)", left / 86_400));
    }
    Score {
        score: score.clamp(0, 100) as u8,
        reasons,
        leaf,
    }
}
