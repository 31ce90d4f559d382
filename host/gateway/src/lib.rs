//! The agents' side of the host: the certificate authority that signs agent certificates, and
//! the mTLS gRPC listener agents hold their session on (`server`), and the hub through which the
//! API sends commands and opens log and exec streams to connected agents (`hub`), which the API
//! sees only as a [`NodeRouter`] (`router`).

pub mod ca;
pub mod hub;
pub mod proxy_lines;
pub mod router;
pub mod server;

use infrapilot_identity::SecretBox;
use infrapilot_store::{OrgId, Store};

pub use ca::{CaError, CertificateAuthority, IssuedCertificate};
pub use hub::{
    AgentHub, DurableCommand, HubError, LiveLines, Outcome, STREAM_BUFFER, SessionEnd, StreamItem,
    StreamReceiver, store_proxy_status,
};
pub use router::NodeRouter;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Store(#[from] infrapilot_store::StoreError),
    #[error("the CA key in the database cannot be opened with this master key: {0}")]
    Seal(#[from] infrapilot_identity::SecretError),
    #[error("the stored CA key is not UTF-8 PEM")]
    KeyEncoding,
    #[error("agent gateway: {0}")]
    Transport(String),
}

const CA_SEAL_PURPOSE: &str = "host-ca-key";

/// Loads the host CA from the database, creating it on first start. The private key is stored
/// sealed under the master key; several replicas sharing one database share one CA.
pub async fn load_or_create_ca(
    store: &Store,
    secrets: &SecretBox,
) -> Result<CertificateAuthority, GatewayError> {
    let mut tx = store.write(&OrgId::default_org()).await?;
    if let Some((cert_pem, sealed_key)) = tx.host_ca().await? {
        let key = secrets.open(CA_SEAL_PURPOSE, &sealed_key)?;
        let key_pem = String::from_utf8(key).map_err(|_| GatewayError::KeyEncoding)?;
        return Ok(CertificateAuthority::from_pem(&cert_pem, &key_pem)?);
    }
    let (ca, key_pem) = CertificateAuthority::generate("InfraPilot agent CA")?;
    let sealed = secrets.seal(CA_SEAL_PURPOSE, key_pem.as_bytes())?;
    tx.insert_host_ca(ca.cert_pem(), &sealed).await?;
    tx.commit().await?;
    Ok(ca)
}
