//! The built-in agent: in community mode `serve` manages the local Docker engine through an
//! agent running inside the host process, over the same mTLS gRPC protocol on loopback as any
//! other node (one code path). It is enrolled automatically on first start (key made here,
//! certificate signed by the host CA, state in `<data_dir>/builtin-agent`, mode 0700/0600).

use std::net::SocketAddr;

use anyhow::Context;
use infrapilot_agent::state::Identity;
use infrapilot_agent::{StateDir, TrustMaterial};
use infrapilot_api::AppState;
use infrapilot_store::{NewAgent, NewAuditEvent, OrgId};
use rcgen::{CertificateParams, KeyPair};

const NAME: &str = "local";

/// Where the built-in agent dials: the gRPC listener over loopback.
fn loopback_endpoint(grpc_listen: SocketAddr) -> String {
    let ip = if grpc_listen.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        grpc_listen.ip().to_string()
    };
    if ip.contains(':') {
        format!("https://[{ip}]:{}", grpc_listen.port())
    } else {
        format!("https://{ip}:{}", grpc_listen.port())
    }
}

/// The built-in agent running in the background.
pub struct BuiltinAgent {
    pub agent_id: String,
    pub task: tokio::task::JoinHandle<()>,
}

/// Enrols the built-in agent if needed, then runs it in the background.
pub async fn start(
    state: &AppState,
    config: &crate::config::Config,
    grpc_listen: SocketAddr,
) -> anyhow::Result<BuiltinAgent> {
    let dir = StateDir::new(config.data_dir.join("builtin-agent"));
    let log_label = config.builtin_agent_log_label()?;
    let collect_logs = config.builtin_agent_logs;
    let spool_bound_bytes = config.builtin_agent_spool_bytes;
    let endpoint = loopback_endpoint(grpc_listen);
    if !usable(state, &dir, &endpoint).await? {
        enroll(state, &dir, &endpoint).await?;
    }
    let proxy = infrapilot_agent::proxy::ProxyOptions::from_env(dir.path())
        .map_err(|e| anyhow::anyhow!("built-in agent: {e}"))?;
    let agent_id = dir
        .load()
        .map(|trust| trust.identity.agent_id)
        .context("reading the built-in agent's identity")?;
    let task = tokio::spawn(async move {
        let options = infrapilot_agent::session::SessionOptions {
            max_backoff: std::time::Duration::from_secs(5),
            proxy: Some(proxy),
            spool_bound_bytes,
            collect_logs,
            log_label,
            ..Default::default()
        };
        if let Err(e) = infrapilot_agent::session::run(&dir, &options).await {
            tracing::error!(error = %e, "the built-in agent stopped; local containers are not managed");
        }
    });
    Ok(BuiltinAgent { agent_id, task })
}

/// The saved identity belongs to an enrolled, unrevoked built-in agent with this certificate.
async fn usable(state: &AppState, dir: &StateDir, endpoint: &str) -> anyhow::Result<bool> {
    let Ok(trust) = dir.load() else {
        return Ok(false);
    };
    let mut tx = state.store().read(&OrgId::default_org()).await?;
    let Some(agent) = tx.agent(&trust.identity.agent_id).await? else {
        return Ok(false);
    };
    let der = pem_der(&trust.certificate_pem);
    Ok(agent.builtin
        && agent.revoked_at.is_none()
        && trust.identity.grpc_endpoint == endpoint
        && der.is_some_and(|d| infrapilot_gateway::ca::fingerprint(&d) == agent.cert_fingerprint))
}

fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// Makes a key and certificate for the built-in agent: a new agent on first start, else a new
/// certificate for the existing one (its state directory was lost or moved).
async fn enroll(state: &AppState, dir: &StateDir, endpoint: &str) -> anyhow::Result<()> {
    let key = KeyPair::generate().context("making the built-in agent's key")?;
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .context("making the built-in agent's CSR")?;
    let mut tx = state.store().write(&OrgId::default_org()).await?;
    let existing = tx
        .list_agents()
        .await?
        .into_iter()
        .find(|a| a.builtin && a.revoked_at.is_none());
    let agent_id = existing
        .as_ref()
        .map(|a| a.id.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let issued = state
        .ca()
        .sign_agent_csr(&csr, infrapilot_store::DEFAULT_ORG_ID, &agent_id)
        .context("signing the built-in agent's certificate")?;
    let (action, name) = match &existing {
        Some(agent) => {
            tx.rotate_agent_certificate(
                &agent_id,
                &issued.serial_hex,
                &issued.fingerprint_sha256,
                issued.not_after_ms,
            )
            .await?;
            ("agent.certificate_rotate", agent.name.clone())
        }
        None => {
            let taken = tx.list_agents().await?.iter().any(|a| a.name == NAME);
            let name = if taken {
                format!("{NAME}-{}", &agent_id[..8])
            } else {
                NAME.to_owned()
            };
            tx.insert_agent(&NewAgent {
                id: &agent_id,
                name: &name,
                labels: r#"{"builtin":"true"}"#,
                version: env!("CARGO_PKG_VERSION"),
                enrollment_token_id: "",
                cert_serial: &issued.serial_hex,
                cert_fingerprint: &issued.fingerprint_sha256,
                cert_expires_at: issued.not_after_ms,
                builtin: true,
            })
            .await?;
            ("agent.enroll", name)
        }
    };
    tx.append_audit(NewAuditEvent {
        actor_id: None,
        actor: "system".into(),
        action: action.into(),
        target: format!("agent:{agent_id}"),
        ip: "local".into(),
        outcome: "success".into(),
        detail: serde_json::json!({"builtin": true, "certificate_serial": issued.serial_hex}),
    })
    .await?;
    let trust = TrustMaterial {
        identity: Identity {
            agent_id: agent_id.clone(),
            name,
            endpoint: String::new(),
            grpc_endpoint: endpoint.to_owned(),
            certificate_expires_at: infrapilot_api::validate::rfc3339(issued.not_after_ms),
        },
        key_pem: key.serialize_pem(),
        certificate_pem: issued.pem,
        ca_certificate_pem: state.ca().cert_pem().to_owned(),
    };
    // The state is written before the database commits: a crash in between leaves an unusable
    // state directory that the next start replaces, never an agent without its key.
    dir.save(&trust)?;
    tx.commit().await?;
    tracing::info!(agent_id, "enrolled the built-in agent");
    Ok(())
}
