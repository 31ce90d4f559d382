//! Certificates of the node's proxy hosts: `certs/<host id>/fullchain.pem`, `privkey.pem` (0600)
//! and `meta.json` in the proxy directory. Until the ACME server issued one, a host has a
//! short-lived self-signed placeholder, so its configuration always passes `nginx -t`. Issuance
//! and renewal are ACME HTTP-01 (instant-acme): the token is served by nginx from the webroot.
//! The node does this itself, host or no host. The TLS health score comes from a real handshake
//! with the node's nginx.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use infrapilot_proto::model::CertificateStatus;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use serde::{Deserialize, Serialize};

/// How the node obtains certificates (`INFRAPILOT_AGENT_ACME_*`).
#[derive(Debug, Clone)]
pub struct AcmeOptions {
    /// The ACME directory URL (default: Let's Encrypt).
    pub directory: String,
    /// A PEM CA to trust for the ACME server's own HTTPS (test servers such as pebble).
    pub ca_file: Option<PathBuf>,
    /// Contact address for the ACME account.
    pub email: Option<String>,
    /// Renew this long before expiry (default 30 days).
    pub renew_before: Duration,
    /// How often certificates are checked for renewal (default 12 h).
    pub check_every: Duration,
    /// Extra PEM roots the TLS score trusts besides the public ones (a private or test CA).
    pub trust_file: Option<PathBuf>,
}

impl Default for AcmeOptions {
    fn default() -> AcmeOptions {
        AcmeOptions {
            directory: "https://acme-v02.api.letsencrypt.org/directory".into(),
            ca_file: None,
            email: None,
            renew_before: Duration::from_secs(30 * 86_400),
            check_every: Duration::from_secs(12 * 3600),
            trust_file: None,
        }
    }
}

/// What the node knows about a host's certificate besides the PEM files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CertMeta {
    /// `acme`, `placeholder` or `uploaded`.
    pub source: String,
    pub domains: Vec<String>,
    pub error: Option<String>,
    /// Unix seconds of the last issuance attempt.
    pub last_attempt: i64,
    /// `uploaded`: SHA-256 of the leaf, as the host named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// Facts read from a certificate chain.
#[derive(Debug, Clone)]
pub struct ChainFacts {
    /// The leaf certificate (DER).
    pub leaf: Vec<u8>,
    pub not_after: i64,
    pub issuer: String,
    pub self_signed: bool,
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The first certificate of a PEM chain: expiry and issuer.
pub fn chain_facts(pem: &[u8]) -> Option<ChainFacts> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = block.parse_x509().ok()?;
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_owned();
    Some(ChainFacts {
        leaf: block.contents.clone(),
        not_after: cert.validity().not_after.timestamp(),
        self_signed: cert.issuer() == cert.subject(),
        issuer,
    })
}

pub struct CertStore {
    dir: PathBuf,
    webroot: PathBuf,
    options: AcmeOptions,
    account: tokio::sync::Mutex<Option<Arc<Account>>>,
}

fn write_private(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl CertStore {
    /// `proxy_dir` holds `certs/` and the webroot `acme/`.
    pub fn new(proxy_dir: &Path, options: AcmeOptions) -> CertStore {
        CertStore {
            dir: proxy_dir.join("certs"),
            webroot: proxy_dir.join("acme/.well-known/acme-challenge"),
            options,
            account: tokio::sync::Mutex::new(None),
        }
    }

    pub fn options(&self) -> &AcmeOptions {
        &self.options
    }

    fn host_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn meta(&self, id: &str) -> Option<CertMeta> {
        std::fs::read(self.host_dir(id).join("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    fn save_meta(&self, id: &str, meta: &CertMeta) -> std::io::Result<()> {
        write_private(
            &self.host_dir(id).join("meta.json"),
            &serde_json::to_vec(meta).unwrap_or_default(),
            0o600,
        )
    }

    pub fn facts(&self, id: &str) -> Option<ChainFacts> {
        chain_facts(&std::fs::read(self.host_dir(id).join("fullchain.pem")).ok()?)
    }

    /// Makes sure the host has a certificate file pair for `domains`: the one it has if it covers
    /// them, else a self-signed placeholder (valid 7 days) until the ACME server issues one.
    pub fn ensure_placeholder(&self, id: &str, domains: &[String]) -> Result<(), String> {
        let dir = self.host_dir(id);
        let current = self.meta(id);
        let usable = current.as_ref().is_some_and(|m| m.domains == domains)
            && dir.join("fullchain.pem").is_file()
            && dir.join("privkey.pem").is_file();
        if usable {
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("certs/{id}: {e}"))?;
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(domains.to_vec()).map_err(|e| e.to_string())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "InfraPilot placeholder");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(7);
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        write_private(
            &dir.join("privkey.pem"),
            key.serialize_pem().as_bytes(),
            0o600,
        )
        .map_err(|e| format!("certs/{id}: {e}"))?;
        write_private(&dir.join("fullchain.pem"), cert.pem().as_bytes(), 0o644)
            .map_err(|e| format!("certs/{id}: {e}"))?;
        self.save_meta(
            id,
            &CertMeta {
                source: "placeholder".into(),
                domains: domains.to_vec(),
                error: current.and_then(|m| m.error),
                last_attempt: 0,
                fingerprint: None,
            },
        )
        .map_err(|e| format!("certs/{id}: {e}"))
    }

    /// Writes the user's uploaded certificate for a host unless the node holds it already (same
    /// fingerprint). The host checked the chain and the key; the node checks the fingerprint is
    /// what it names and the files are a pair nginx can load (`nginx -t` follows).
    pub fn install_uploaded(
        &self,
        id: &str,
        domains: &[String],
        tls: &infrapilot_proto::v1::ProxyTls,
    ) -> Result<(), String> {
        let fingerprint = tls.fingerprint_sha256.as_str();
        if fingerprint.len() != 64 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the uploaded certificate has no valid fingerprint".into());
        }
        let dir = self.host_dir(id);
        let current = self.meta(id);
        let held = current.as_ref().is_some_and(|m| {
            m.source == "uploaded"
                && m.fingerprint.as_deref() == Some(fingerprint)
                && m.domains == domains
        }) && dir.join("fullchain.pem").is_file()
            && dir.join("privkey.pem").is_file();
        if held {
            return Ok(());
        }
        let facts = chain_facts(&tls.certificate_pem)
            .ok_or_else(|| "the uploaded certificate cannot be read".to_owned())?;
        use sha2::Digest as _;
        let leaf_digest: String = sha2::Sha256::digest(&facts.leaf)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if leaf_digest != fingerprint.to_ascii_lowercase() {
            return Err("the uploaded certificate does not match its fingerprint".into());
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("certs/{id}: {e}"))?;
        write_private(&dir.join("privkey.pem"), &tls.private_key_pem, 0o600)
            .map_err(|e| format!("certs/{id}: {e}"))?;
        write_private(&dir.join("fullchain.pem"), &tls.certificate_pem, 0o644)
            .map_err(|e| format!("certs/{id}: {e}"))?;
        self.save_meta(
            id,
            &CertMeta {
                source: "uploaded".into(),
                domains: domains.to_vec(),
                error: None,
                last_attempt: 0,
                fingerprint: Some(fingerprint.to_owned()),
            },
        )
        .map_err(|e| format!("certs/{id}: {e}"))
    }

    /// Whether the host needs an ACME certificate now (placeholder, or expiring within the
    /// renewal window).
    pub fn due(&self, id: &str) -> bool {
        let Some(meta) = self.meta(id) else {
            return true;
        };
        if meta.source != "acme" {
            return true;
        }
        match self.facts(id) {
            Some(f) => f.not_after - now_secs() < self.options.renew_before.as_secs() as i64,
            None => true,
        }
    }

    async fn account(&self) -> Result<Arc<Account>, String> {
        let mut cached = self.account.lock().await;
        if let Some(a) = cached.as_ref() {
            return Ok(a.clone());
        }
        let builder = || match &self.options.ca_file {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        };
        let path = self.dir.join("acme-account.json");
        let account = match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<AccountCredentials>(&b).ok())
        {
            Some(credentials) => builder()
                .map_err(|e| e.to_string())?
                .from_credentials(credentials)
                .await
                .map_err(|e| format!("ACME account: {e}"))?,
            None => {
                let contact = self.options.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, credentials) = builder()
                    .map_err(|e| e.to_string())?
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.options.directory.clone(),
                        None,
                    )
                    .await
                    .map_err(|e| format!("ACME account at {}: {e}", self.options.directory))?;
                std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
                write_private(
                    &path,
                    &serde_json::to_vec(&credentials).map_err(|e| e.to_string())?,
                    0o600,
                )
                .map_err(|e| format!("ACME account: {e}"))?;
                account
            }
        };
        let account = Arc::new(account);
        *cached = Some(account.clone());
        Ok(account)
    }

    /// Issues (or renews) the host's certificate over HTTP-01 and installs it. The error is the
    /// ACME server's own message; it is also kept in the host's meta.
    pub async fn issue(&self, id: &str, domains: &[String]) -> Result<(), String> {
        let result = self.order(id, domains).await;
        let mut meta = self.meta(id).unwrap_or_default();
        meta.last_attempt = now_secs();
        match &result {
            Ok(()) => {
                meta.source = "acme".into();
                meta.domains = domains.to_vec();
                meta.error = None;
                meta.fingerprint = None;
            }
            Err(e) => meta.error = Some(e.clone()),
        }
        let _ = self.save_meta(id, &meta);
        result
    }

    async fn order(&self, id: &str, domains: &[String]) -> Result<(), String> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> =
            domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| format!("ACME order: {e}"))?;
        let mut tokens = Vec::new();
        let outcome = async {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.map_err(|e| format!("ACME authorization: {e}"))?;
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => return Err(format!("ACME authorization is {other:?}")),
                }
                let mut challenge = authz
                    .challenge(ChallengeType::Http01)
                    .ok_or("the ACME server offered no HTTP-01 challenge")?;
                let token = challenge.token.clone();
                if token.is_empty()
                    || !token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err("the ACME server sent a malformed token".to_owned());
                }
                std::fs::create_dir_all(&self.webroot).map_err(|e| e.to_string())?;
                write_private(
                    &self.webroot.join(&token),
                    challenge.key_authorization().as_str().as_bytes(),
                    0o644,
                )
                .map_err(|e| format!("ACME webroot: {e}"))?;
                tokens.push(token);
                challenge
                    .set_ready()
                    .await
                    .map_err(|e| format!("ACME challenge: {e}"))?;
            }
            let retries = RetryPolicy::default().timeout(Duration::from_secs(60));
            let status = order
                .poll_ready(&retries)
                .await
                .map_err(|e| format!("ACME validation: {e}"))?;
            if status != OrderStatus::Ready {
                let problem = order
                    .state()
                    .error
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                return Err(format!("ACME order is {status:?} {problem}")
                    .trim()
                    .to_owned());
            }
            let key = KeyPair::generate().map_err(|e| e.to_string())?;
            let mut params = CertificateParams::new(domains.to_vec()).map_err(|e| e.to_string())?;
            params.distinguished_name = DistinguishedName::new();
            let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
            order
                .finalize_csr(csr.der())
                .await
                .map_err(|e| format!("ACME finalize: {e}"))?;
            let chain = order
                .poll_certificate(&retries)
                .await
                .map_err(|e| format!("ACME certificate: {e}"))?;
            chain_facts(chain.as_bytes()).ok_or("the ACME server returned no certificate")?;
            let dir = self.host_dir(id);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            write_private(
                &dir.join("privkey.pem"),
                key.serialize_pem().as_bytes(),
                0o600,
            )
            .map_err(|e| e.to_string())?;
            write_private(&dir.join("fullchain.pem"), chain.as_bytes(), 0o644)
                .map_err(|e| e.to_string())?;
            Ok(())
        }
        .await;
        for token in tokens {
            let _ = std::fs::remove_file(self.webroot.join(token));
        }
        outcome
    }

    /// The certificate of each host, with its TLS score.
    pub fn status(&self, id: &str, score: (u8, Vec<String>)) -> Option<CertificateStatus> {
        // The probe ran against what nginx serves; the facts are of the file.
        let meta = self.meta(id)?;
        let facts = self.facts(id)?;
        Some(CertificateStatus {
            host_id: id.to_owned(),
            source: meta.source,
            domains: meta.domains,
            issuer: facts.issuer,
            not_after: rfc3339(facts.not_after),
            error: meta.error,
            tls_score: score.0,
            tls_reasons: score.1,
        })
    }

    /// Removes the certificates of hosts that are gone.
    pub fn prune(&self, keep: &[String]) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && !keep.contains(&name) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
