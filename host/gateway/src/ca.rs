//! The host's certificate authority: it signs the client certificates agents present on the mTLS
//! gRPC stream. Only the public key is taken from an agent's CSR; every other field of the
//! certificate is ours, so a CSR cannot ask for CA rights or another identity.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("the certificate signing request is not valid PEM or its signature does not verify")]
    InvalidCsr,
    #[error("certificate operation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the system random source failed")]
    Random,
}

/// How long agent certificates live; agents rotate them well before expiry.
pub const AGENT_CERT_DAYS: i64 = 30;
/// How long the CA itself lives.
pub const CA_YEARS: i64 = 10;

/// A certificate issued to an agent.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub pem: String,
    pub serial_hex: String,
    /// SHA-256 of the DER, hex: how the gateway recognises the certificate at the handshake.
    pub fingerprint_sha256: String,
    /// Unix milliseconds.
    pub not_after_ms: i64,
}

pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| CaError::Random)?;
    bytes[0] &= 0x7f; // a positive INTEGER
    Ok(SerialNumber::from_slice(&bytes))
}

impl CertificateAuthority {
    /// A new CA; returns it with its private key in PKCS#8 PEM (for sealed storage).
    pub fn generate(common_name: &str) -> Result<(CertificateAuthority, String), CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "InfraPilot");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365 * CA_YEARS);
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        let ca = CertificateAuthority::from_pem(&cert.pem(), &key_pem)?;
        Ok((ca, key_pem))
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CertificateAuthority, CaError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate agents trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs a client certificate for `agent_id` of `org_id` over the public key of `csr_pem`.
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        org_id: &str,
        agent_id: &str,
    ) -> Result<IssuedCertificate, CaError> {
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|_| CaError::InvalidCsr)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, agent_id);
        dn.push(DnType::OrganizationName, org_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            format!("urn:infrapilot:org:{org_id}:agent:{agent_id}").try_into()?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(AGENT_CERT_DAYS);
        let serial = random_serial()?;
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(IssuedCertificate {
            pem: cert.pem(),
            serial_hex,
            fingerprint_sha256: fingerprint(cert.der()),
            not_after_ms: (params.not_after.unix_timestamp_nanos() / 1_000_000) as i64,
        })
    }
}

/// The organisation and agent an agent certificate names in its URI subject alternative name
/// (`urn:infrapilot:org:<org>:agent:<agent>`, written by [`CertificateAuthority::sign_agent_csr`]).
/// `None` for a certificate that does not parse or names none.
pub fn certificate_identity(der: &[u8]) -> Option<(String, String)> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => {
            let rest = uri.strip_prefix("urn:infrapilot:org:")?;
            let (org, agent) = rest.split_once(":agent:")?;
            Some((org.to_owned(), agent.to_owned()))
        }
        _ => None,
    })
}

impl CertificateAuthority {
    /// A server certificate for the gRPC listener, valid for `hostnames` (DNS names or IPs).
    /// Returns the certificate and its private key, both PEM.
    pub fn issue_server_certificate(
        &self,
        hostnames: &[String],
    ) -> Result<(String, String), CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hostnames.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "InfraPilot agent gateway");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(365);
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// SHA-256 of a DER certificate, hex: the key under which agents are recognised.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn signs_only_the_public_key_of_a_csr() {
        let (ca, key_pem) = CertificateAuthority::generate("test CA").unwrap();
        let reloaded = CertificateAuthority::from_pem(ca.cert_pem(), &key_pem).unwrap();

        // A hostile CSR asks to be a CA and to be named "admin".
        let agent_key = KeyPair::generate().unwrap();
        let mut wish = CertificateParams::new(vec!["admin.example.com".to_owned()]).unwrap();
        wish.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = wish.serialize_request(&agent_key).unwrap().pem().unwrap();

        let issued = reloaded.sign_agent_csr(&csr, "org-1", "agent-7").unwrap();
        let der = ::pem::parse(&issued.pem).unwrap();
        let (_, cert) = X509Certificate::from_der(der.contents()).unwrap();
        assert!(!cert.is_ca(), "CA rights are never granted");
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, "agent-7");
        assert_eq!(
            cert.public_key().raw,
            agent_key.subject_public_key_info().as_slice()
        );
        let ca_der = ::pem::parse(ca.cert_pem()).unwrap();
        let (_, ca_cert) = X509Certificate::from_der(ca_der.contents()).unwrap();
        cert.verify_signature(Some(ca_cert.public_key()))
            .expect("signed by the CA");
        assert_eq!(issued.fingerprint_sha256.len(), 64);

        assert!(matches!(
            ca.sign_agent_csr(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
                "o",
                "a"
            ),
            Err(CaError::InvalidCsr)
        ));
    }
}
