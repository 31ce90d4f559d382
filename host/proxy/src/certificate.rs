//! Uploaded certificates: a PEM chain and its private key, checked before anything is stored —
//! every block parses, the chain is the leaf first and each certificate is signed by the next,
//! the key is the leaf's, the leaf has not expired — and the facts the dashboard shows (names,
//! issuer, validity, fingerprint). What is kept and sent to the node is re-encoded from the
//! parsed DER, never the text as uploaded.

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use crate::model::FieldError;

/// Largest accepted PEM text (either field).
pub const MAX_PEM_BYTES: usize = 64 * 1024;
/// Most certificates in one chain.
pub const MAX_CHAIN: usize = 8;

/// The OCSP responder the leaf of a stored chain (PEM, leaf first) names, if any. Read from the
/// chain itself, so certificates uploaded before the facts recorded it are stapled too.
pub fn chain_ocsp_responder(chain_pem: &str) -> Option<String> {
    let blocks = pem_blocks("certificate_pem", chain_pem).ok()?;
    let (_, der) = blocks.first()?;
    let (_, leaf) = X509Certificate::from_der(der).ok()?;
    ocsp_responder(&leaf)
}

/// The first OCSP responder URL in the certificate's Authority Information Access extension.
fn ocsp_responder(cert: &X509Certificate) -> Option<String> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => {
                aia.accessdescs.iter().find_map(|d| {
                    match (
                        &d.access_location,
                        d.access_method == OID_PKIX_ACCESS_DESCRIPTOR_OCSP,
                    ) {
                        (GeneralName::URI(uri), true) => Some((*uri).to_owned()),
                        _ => None,
                    }
                })
            }
            _ => None,
        })
}

/// What the dashboard shows of an uploaded certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateFacts {
    /// The DNS names of the leaf (subjectAltName, else its common name), lower-cased.
    pub domains: Vec<String>,
    /// The issuer's common name (or whole name).
    pub issuer: String,
    pub subject: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the leaf certificate (DER), lower-case hex.
    pub fingerprint_sha256: String,
    /// Certificates in the chain, the leaf included.
    pub chain_length: usize,
    /// The OCSP responder the leaf names (Authority Information Access), if any: nginx staples
    /// its answers. (Absent in facts stored before it was recorded.)
    #[serde(default)]
    pub ocsp_responder: Option<String>,
}

/// A certificate chain and key that passed every check, re-encoded.
#[derive(Debug, Clone)]
pub struct CheckedCertificate {
    pub chain_pem: String,
    pub key_pem: String,
    pub facts: CertificateFacts,
}

fn refuse(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn pem_blocks(field: &str, text: &str) -> Result<Vec<(String, Vec<u8>)>, FieldError> {
    if text.len() > MAX_PEM_BYTES {
        return Err(refuse(
            field,
            format!("is longer than {MAX_PEM_BYTES} bytes"),
        ));
    }
    if !text.is_ascii() {
        return Err(refuse(field, "must be PEM text (ASCII)"));
    }
    let mut blocks = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let block = block.map_err(|e| refuse(field, format!("is not valid PEM: {e}")))?;
        blocks.push((block.label, block.contents));
    }
    if blocks.is_empty() {
        return Err(refuse(field, "holds no PEM block (-----BEGIN …-----)"));
    }
    Ok(blocks)
}

fn name_of(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| name.to_string())
}

fn encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Checks an uploaded chain (`certificate_pem`: the leaf first, then the certificates that
/// issued it) and its key (`private_key_pem`: PKCS#8, PKCS#1 RSA or SEC1 EC, unencrypted) at
/// `now` (unix seconds). Errors name the field.
pub fn check_upload(
    certificate_pem: &str,
    private_key_pem: &str,
    now: i64,
) -> Result<CheckedCertificate, FieldError> {
    const CERT: &str = "certificate_pem";
    const KEY: &str = "private_key_pem";
    let blocks = pem_blocks(CERT, certificate_pem)?;
    if let Some((label, _)) = blocks.iter().find(|(l, _)| l != "CERTIFICATE") {
        return Err(refuse(
            CERT,
            format!(
                "holds a {label} block; give only CERTIFICATE blocks here (the key goes in {KEY})"
            ),
        ));
    }
    if blocks.len() > MAX_CHAIN {
        return Err(refuse(
            CERT,
            format!("at most {MAX_CHAIN} certificates in a chain"),
        ));
    }
    let mut chain = Vec::with_capacity(blocks.len());
    for (i, (_, der)) in blocks.iter().enumerate() {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| {
            refuse(
                CERT,
                format!("certificate {} is not an X.509 certificate: {e}", i + 1),
            )
        })?;
        if !rest.is_empty() {
            return Err(refuse(
                CERT,
                format!("certificate {} has trailing bytes", i + 1),
            ));
        }
        chain.push(cert);
    }
    for (i, pair) in chain.windows(2).enumerate() {
        let (child, parent) = (&pair[0], &pair[1]);
        if child.issuer().as_raw() != parent.subject().as_raw()
            || child.verify_signature(Some(parent.public_key())).is_err()
        {
            return Err(refuse(
                CERT,
                format!(
                    "certificate {} was not issued by certificate {}: give the leaf first, then the certificates that issued it, in order",
                    i + 1,
                    i + 2
                ),
            ));
        }
    }
    let leaf = &chain[0];
    // A lone self-signed certificate may carry CA rights (`openssl req -x509` adds them); in a
    // chain, a CA first means the server's certificate is missing or out of place.
    if leaf.is_ca() && chain.len() > 1 {
        return Err(refuse(
            CERT,
            "the first certificate is a CA certificate; give the server's certificate first",
        ));
    }
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    if not_after <= now {
        return Err(refuse(
            CERT,
            format!("the certificate expired at {}", leaf.validity().not_after),
        ));
    }
    let mut domains: Vec<String> = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(d) = name {
                domains.push(d.to_ascii_lowercase());
            }
        }
    }
    if domains.is_empty()
        && let Some(cn) = leaf
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
    {
        domains.push(cn.to_ascii_lowercase());
    }
    if domains.is_empty() {
        return Err(refuse(
            CERT,
            "the certificate names no DNS name (subjectAltName or common name)",
        ));
    }

    let keys = pem_blocks(KEY, private_key_pem)?;
    if keys.len() != 1 {
        return Err(refuse(KEY, "give exactly one private key"));
    }
    let (label, der) = &keys[0];
    let key = match label.as_str() {
        "PRIVATE KEY" => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone())),
        "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der.clone())),
        "EC PRIVATE KEY" => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der.clone())),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(refuse(
                KEY,
                "is encrypted; give the key without a passphrase (it is encrypted at rest here)",
            ));
        }
        other => {
            return Err(refuse(
                KEY,
                format!("holds a {other} block, not a private key"),
            ));
        }
    };
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|_| {
        refuse(
            KEY,
            "is not a supported private key (RSA, ECDSA P-256/P-384/P-521 or Ed25519)",
        )
    })?;
    let public = signing
        .public_key()
        .ok_or_else(|| refuse(KEY, "its public key cannot be derived"))?;
    if public.as_ref() != leaf.public_key().raw {
        return Err(refuse(
            KEY,
            "does not belong to the certificate (their public keys differ)",
        ));
    }

    use sha2::Digest as _;
    let facts = CertificateFacts {
        domains,
        issuer: name_of(leaf.issuer()),
        subject: name_of(leaf.subject()),
        not_before,
        not_after,
        fingerprint_sha256: hex::encode(sha2::Sha256::digest(&blocks[0].1)),
        chain_length: chain.len(),
        ocsp_responder: ocsp_responder(leaf),
    };
    Ok(CheckedCertificate {
        chain_pem: blocks
            .iter()
            .map(|(_, der)| encode("CERTIFICATE", der))
            .collect(),
        key_pem: encode(label, der),
        facts,
    })
}

/// Whether a certificate name (`example.com`, `*.example.com`) covers the host name `domain`.
/// A wildcard covers one label; a wildcard domain is covered only by the same wildcard.
pub fn covers(certificate_name: &str, domain: &str) -> bool {
    if certificate_name == domain {
        return true;
    }
    match certificate_name.strip_prefix("*.") {
        Some(parent) if !domain.starts_with("*.") => domain
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        _ => false,
    }
}

/// The first of `domains` none of `names` covers.
pub fn uncovered<'a>(names: &[String], domains: &'a [String]) -> Option<(usize, &'a str)> {
    domains
        .iter()
        .enumerate()
        .find(|(_, d)| !names.iter().any(|n| covers(n, d)))
        .map(|(i, d)| (i, d.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(covers("*.example.com", "*.example.com"));
        assert!(!covers("a.example.com", "*.example.com"));
        assert!(covers("example.com", "example.com"));
        let names = vec!["example.com".to_owned(), "*.example.com".to_owned()];
        let domains = vec!["example.com".to_owned(), "x.example.org".to_owned()];
        assert_eq!(uncovered(&names, &domains), Some((1, "x.example.org")));
    }
}
