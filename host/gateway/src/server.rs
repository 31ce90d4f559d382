//! The mTLS gRPC listener agents connect to. TLS requires a client certificate signed by the host
//! CA; the session is then accepted only for the enrolled, unrevoked agent that holds exactly that
//! certificate (by SHA-256 fingerprint), so an unknown or revoked certificate gets no session.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use infrapilot_proto::v1::agent_gateway_server::{AgentGateway, AgentGatewayServer};
use infrapilot_proto::v1::{
    AgentMessage, CertificateRenewal, HostMessage, HostStats, SpoolAck, SpoolBatch, Welcome,
    agent_message, host_message,
};
use infrapilot_store::NewAuditEvent;
use infrapilot_store::{OrgId, Store};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::ca::{CertificateAuthority, fingerprint};
use crate::hub::{AgentHub, StreamItem};

/// How often agents are asked to send heartbeats.
pub const HEARTBEAT_SECONDS: u32 = 30;

pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Names and addresses agents use to reach the listener (the server certificate's SANs).
    pub hostnames: Vec<String>,
}

struct Gateway {
    store: Store,
    ca: Arc<CertificateAuthority>,
    hub: AgentHub,
}

type HostStream = Pin<Box<dyn Stream<Item = Result<HostMessage, Status>> + Send>>;

impl Gateway {
    /// The organisation and agent of the client certificate: the organisation it names (signed
    /// into it at enrollment) must hold an agent with this certificate's fingerprint — one
    /// enrolled elsewhere, or whose organisation was deleted, is refused.
    async fn identify(
        &self,
        request: &Request<Streaming<AgentMessage>>,
    ) -> Result<(OrgId, String), Status> {
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        let (org, named_agent) =
            crate::ca::certificate_identity(leaf.as_ref()).ok_or_else(|| {
                Status::permission_denied("the certificate names no organisation and agent")
            })?;
        let org = OrgId::parse(&org).ok_or_else(|| {
            Status::permission_denied("the certificate's organisation is not an id")
        })?;
        let fp = fingerprint(leaf.as_ref());
        let mut tx = self
            .store
            .read(&org)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let agent = tx
            .agent_by_fingerprint(&fp)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(|| Status::permission_denied("unknown agent certificate"))?;
        if agent.id != named_agent {
            return Err(Status::permission_denied(
                "the certificate names another agent",
            ));
        }
        if agent.revoked_at.is_some() {
            return Err(Status::permission_denied("this agent has been revoked"));
        }
        Ok((org, agent.id))
    }
}

async fn touch(store: &Store, org: &OrgId, agent_id: &str, version: Option<&str>) {
    let result = async {
        let mut tx = store.write(org).await?;
        tx.touch_agent(agent_id, version).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(agent_id, error = %e, "could not record agent activity");
    }
}

/// Records a heartbeat with the host statistics it carries (kept as JSON with the time they
/// arrived, for the node's capacity, and added into the node's minute and hour samples for the
/// Health page); an agent that sent none is only marked as heard from.
async fn record_heartbeat(hub: &AgentHub, org: &OrgId, agent_id: &str, stats: Option<&HostStats>) {
    let store = hub.store();
    let Some(s) = stats else {
        return touch(store, org, agent_id, None).await;
    };
    // What a node says about itself is bounded to what can be true: a share from 0 to 100 (or
    // none), no more memory or disk used than there is, counts that fit a browser's integers.
    let cap = |n: u64| n.min(1 << 53);
    let sample = infrapilot_store::NodeSample {
        cpu_percent: s
            .cpu_percent
            .filter(|c| c.is_finite())
            .map(|c| c.clamp(0.0, 100.0)),
        memory_used_bytes: cap(s.memory_used_bytes.min(s.memory_total_bytes)),
        memory_total_bytes: cap(s.memory_total_bytes),
        disk_used_bytes: cap(s.disk_used_bytes.min(s.disk_total_bytes)),
        disk_total_bytes: cap(s.disk_total_bytes),
    };
    let now = infrapilot_store::now_ms();
    let json = serde_json::json!({
        "cpu_percent": sample.cpu_percent,
        "memory_used_bytes": sample.memory_used_bytes,
        "memory_total_bytes": sample.memory_total_bytes,
        "disk_used_bytes": sample.disk_used_bytes,
        "disk_total_bytes": sample.disk_total_bytes,
        "containers_running": s.containers_running.min(s.containers_total),
        "containers_total": s.containers_total,
        "uptime_seconds": cap(s.uptime_seconds),
        "spooled_records": cap(s.spooled_events),
        "dropped_records": cap(s.dropped_events),
        "reported_at_ms": now,
    })
    .to_string();
    hub.set_node_stats(crate::hub::NodeStats {
        agent_id: agent_id.to_owned(),
        org_id: org.clone(),
        sample,
        cpu_average: None,
        containers_running: s.containers_running.min(s.containers_total),
        spooled: cap(s.spooled_events),
        dropped: cap(s.dropped_events),
    });
    let result = async {
        let mut tx = store.write(org).await?;
        tx.record_heartbeat(agent_id, &json).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(agent_id, error = %e, "could not record a heartbeat");
    }
    // Apart: a sample that cannot be stored does not cost the node its heartbeat (it would
    // show offline on other replicas).
    let result = async {
        let mut tx = store.write(org).await?;
        tx.record_node_sample(agent_id, now, &sample).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(agent_id, error = %e, "could not record a node sample");
    }
}

/// Signs a new certificate for the agent over the public key of its new CSR and makes it the
/// only one accepted from now on.
async fn rotate(
    store: &Store,
    ca: &CertificateAuthority,
    org: &OrgId,
    agent_id: &str,
    csr_pem: &str,
) -> Result<CertificateRenewal, Status> {
    let issued = ca
        .sign_agent_csr(csr_pem, org.as_str(), agent_id)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let stored = async {
        let mut tx = store.write(org).await?;
        if !tx
            .rotate_agent_certificate(
                agent_id,
                &issued.serial_hex,
                &issued.fingerprint_sha256,
                issued.not_after_ms,
            )
            .await?
        {
            return Ok(false);
        }
        tx.append_audit(NewAuditEvent {
            actor_id: None,
            actor: format!("agent:{agent_id}"),
            action: "agent.certificate_rotate".into(),
            target: format!("agent:{agent_id}"),
            ip: String::new(),
            outcome: "success".into(),
            detail: serde_json::json!({"certificate_serial": issued.serial_hex}),
        })
        .await?;
        tx.commit().await?;
        Ok::<bool, infrapilot_store::StoreError>(true)
    }
    .await
    .map_err(|e| Status::unavailable(e.to_string()))?;
    if !stored {
        return Err(Status::permission_denied("this agent has been revoked"));
    }
    tracing::info!(
        agent_id,
        serial = issued.serial_hex,
        "agent certificate rotated"
    );
    Ok(CertificateRenewal {
        certificate_pem: issued.pem,
        ca_certificate_pem: ca.cert_pem().to_owned(),
        certificate_expires_at: time::OffsetDateTime::from_unix_timestamp(
            issued.not_after_ms / 1000,
        )
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default(),
    })
}

/// Whether the agent may keep its session: `None` when it may, else the status that ends it.
/// Fails closed: when the database cannot say, the session ends as *unavailable* (the agent
/// reconnects and is checked again), never as *revoked* (which would stop the agent for good).
async fn revocation(store: &Store, org: &OrgId, agent_id: &str) -> Option<Status> {
    let found = async { store.read(org).await?.agent(agent_id).await }.await;
    match found {
        Ok(Some(agent)) if agent.revoked_at.is_none() => None,
        Ok(_) => Some(Status::permission_denied("this agent has been revoked")),
        Err(e) => {
            tracing::warn!(agent_id, error = %e, "could not check revocation; ending the session");
            Some(Status::unavailable(
                "the host could not check this agent; reconnect",
            ))
        }
    }
}

/// Largest message either side of a session accepts. A log page is capped well below it by the
/// agent (`LOG_PAGE_MAX_BYTES`); the margin is for protobuf framing and the rest of a result.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How often an open session re-reads its agent's revocation, besides heartbeats and the
/// immediate end the revoke route signals.
const REVOCATION_RECHECK: Duration = Duration::from_secs(5);

#[tonic::async_trait]
impl AgentGateway for Gateway {
    type SessionStream = HostStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        if self.hub.is_closing() {
            return Err(Status::unavailable("the host is shutting down"));
        }
        let (org_id, agent_id) = self.identify(&request).await?;
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let store = self.store.clone();
        let ca = self.ca.clone();
        let hub = self.hub.clone();
        let heartbeat_seconds = hub.heartbeat_seconds();
        // Two missed heartbeats (and a little slack) end the session: the agent is offline.
        let silence = Duration::from_secs(u64::from(heartbeat_seconds) * 2 + 5);
        tokio::spawn(async move {
            // The node counts as connected (commands go to it) once it said hello.
            let mut session: Option<(u64, crate::hub::SessionEnd)> = None;
            let mut last_revocation_check = tokio::time::Instant::now();
            let mut last_heartbeat_recorded: Option<tokio::time::Instant> = None;
            let mut spool_ingest: Option<tokio::sync::mpsc::Sender<SpoolBatch>> = None;
            let heartbeat_min_gap = Duration::from_millis(u64::from(heartbeat_seconds) * 500);
            loop {
                let ended = async {
                    match session.as_mut() {
                        Some((_, end)) => end.ended().await,
                        None => std::future::pending().await,
                    }
                };
                let next = tokio::select! {
                    reason = ended => {
                        tracing::info!(agent_id, reason, "the host ends the session");
                        let _ = tx.try_send(Err(Status::unavailable(reason)));
                        break;
                    }
                    next = tokio::time::timeout(silence, inbound.next()) => next,
                };
                let message = match next {
                    Ok(Some(Ok(message))) => message,
                    Ok(Some(Err(status))) => {
                        // After a decode error the stream's framing cannot be trusted: end the
                        // session (the agent reconnects). The agent keeps its messages far under
                        // the bound (a log page is at most 1 MiB), so this is not a viewer's lever.
                        tracing::warn!(agent_id, error = %status, "a bad message from the agent; ending the session");
                        break;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        tracing::warn!(
                            agent_id,
                            "no heartbeat for two intervals; ending the session"
                        );
                        let _ = tx
                            .send(Err(Status::deadline_exceeded("no heartbeat")))
                            .await;
                        break;
                    }
                };
                // Revocation ends a session at once (the revoke route signals it); this re-read
                // covers revocations made by another replica or straight in the database.
                if last_revocation_check.elapsed() >= REVOCATION_RECHECK
                    && !matches!(message.body, Some(agent_message::Body::Heartbeat(_)))
                {
                    last_revocation_check = tokio::time::Instant::now();
                    if let Some(status) = revocation(&store, &org_id, &agent_id).await {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                }
                match message.body {
                    Some(agent_message::Body::Hello(hello)) => {
                        if hello.agent_id != agent_id {
                            let _ = tx
                                .send(Err(Status::permission_denied(
                                    "hello names another agent than the certificate",
                                )))
                                .await;
                            break;
                        }
                        // Before the node counts as connected: a change made from now on is
                        // numbered above the proxy revision it serves.
                        if let Some(revision) = hello
                            .last_applied_config_revision
                            .parse::<i64>()
                            .ok()
                            .filter(|r| *r > 0)
                        {
                            hub.note_serving_revision(&org_id, &agent_id, revision)
                                .await;
                        }
                        touch(&store, &org_id, &agent_id, Some(&hello.version)).await;
                        if session.is_none() {
                            match hub.attach(&agent_id, tx.clone()) {
                                Some(attached) => session = Some(attached),
                                None => {
                                    let _ = tx
                                        .send(Err(Status::unavailable("the host is shutting down")))
                                        .await;
                                    break;
                                }
                            }
                        }
                        tracing::info!(agent_id, version = hello.version, "agent connected");
                        let welcome = HostMessage {
                            body: Some(host_message::Body::Welcome(Welcome {
                                agent_id: agent_id.clone(),
                                heartbeat_seconds,
                            })),
                        };
                        if tx.send(Ok(welcome)).await.is_err() {
                            break;
                        }
                        let (hub, org_id, agent_id) =
                            (hub.clone(), org_id.clone(), agent_id.clone());
                        tokio::spawn(async move { hub.resend_open(&org_id, &agent_id).await });
                    }
                    Some(agent_message::Body::Heartbeat(heartbeat)) => {
                        // A node sending heartbeats faster than half its interval gets no more
                        // database work for them (the silence deadline is already reset).
                        if last_heartbeat_recorded.is_some_and(|t| t.elapsed() < heartbeat_min_gap)
                        {
                            continue;
                        }
                        last_heartbeat_recorded = Some(tokio::time::Instant::now());
                        // Revocation also ends a session that is already open.
                        last_revocation_check = tokio::time::Instant::now();
                        if let Some(status) = revocation(&store, &org_id, &agent_id).await {
                            let _ = tx.send(Err(status)).await;
                            break;
                        }
                        record_heartbeat(&hub, &org_id, &agent_id, heartbeat.stats.as_ref()).await;
                    }
                    Some(agent_message::Body::RenewCertificate(request)) => {
                        let reply =
                            match rotate(&store, &ca, &org_id, &agent_id, &request.csr_pem).await {
                                Ok(renewal) => Ok(HostMessage {
                                    body: Some(host_message::Body::Certificate(renewal)),
                                }),
                                Err(status) => Err(status),
                            };
                        if tx.send(reply).await.is_err() {
                            break;
                        }
                    }
                    Some(agent_message::Body::Result(result)) => {
                        let (hub, org_id, agent_id) =
                            (hub.clone(), org_id.clone(), agent_id.clone());
                        tokio::spawn(
                            async move { hub.on_result(&org_id, &agent_id, result).await },
                        );
                    }
                    Some(agent_message::Body::DockerEvent(event)) => {
                        hub.on_event(&org_id, &agent_id, event).await;
                    }
                    Some(agent_message::Body::SpoolBatch(batch)) => {
                        // Stored by a task of the session's own, in order, so that a big batch
                        // never holds up command results and heartbeats behind it.
                        let ingest = spool_ingest.get_or_insert_with(|| {
                            spawn_spool_ingest(
                                hub.clone(),
                                org_id.clone(),
                                agent_id.clone(),
                                tx.clone(),
                            )
                        });
                        match ingest.try_send(batch) {
                            Ok(()) => {}
                            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                                let _ = tx
                                    .send(Err(Status::resource_exhausted(
                                        "more spool batches in flight than the host takes",
                                    )))
                                    .await;
                                break;
                            }
                            // The ingest task stopped after a batch it could not store.
                            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => break,
                        }
                    }
                    Some(agent_message::Body::ProxyStatus(status)) => {
                        hub.on_proxy_status(&org_id, &agent_id, &status.status_json)
                            .await;
                    }
                    Some(agent_message::Body::LogChunk(chunk)) => {
                        let id = chunk.stream_id.clone();
                        hub.on_stream_item(&agent_id, &id, StreamItem::Log(chunk))
                            .await;
                    }
                    Some(agent_message::Body::Progress(progress)) => {
                        let id = progress.stream_id.clone();
                        hub.on_stream_item(&agent_id, &id, StreamItem::Progress(progress.json))
                            .await;
                    }
                    Some(agent_message::Body::ExecOutput(output)) => {
                        let id = output.session_id.clone();
                        hub.on_stream_item(&agent_id, &id, StreamItem::Exec(output))
                            .await;
                    }
                    Some(agent_message::Body::Ack(_)) | None => {}
                }
            }
            if let Some((number, _)) = session {
                hub.detach(&agent_id, number);
            }
            tracing::info!(agent_id, "agent session ended");
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Spool batches a session may have waiting to be stored (the agent sends at most 4 before an
/// acknowledgement).
const SPOOL_BATCHES_QUEUED: usize = 8;

/// The task that stores a session's spool batches in order and acknowledges each after its
/// commit. After a batch it could not store it stores nothing more and ends the session: the
/// node sends everything unacknowledged again, in order.
fn spawn_spool_ingest(
    hub: AgentHub,
    org_id: OrgId,
    agent_id: String,
    tx: tokio::sync::mpsc::Sender<Result<HostMessage, Status>>,
) -> tokio::sync::mpsc::Sender<SpoolBatch> {
    let (batches, mut queued) = tokio::sync::mpsc::channel::<SpoolBatch>(SPOOL_BATCHES_QUEUED);
    tokio::spawn(async move {
        // After a batch the log sink did not take: (epoch, its first sequence). Later batches
        // are not stored (acknowledging them would skip it) until the node sends it again —
        // after its acknowledgement timeout — and the session stays up meanwhile (commands,
        // heartbeats): a sink outage is not a node outage.
        let mut resend_from: Option<(u64, u64)> = None;
        while let Some(batch) = queued.recv().await {
            let epoch = batch.epoch;
            let first = batch.records.iter().map(|r| r.seq).min();
            if let Some((failed_epoch, from)) = resend_from {
                if epoch == failed_epoch && first.is_none_or(|f| f > from) {
                    continue;
                }
                resend_from = None;
            }
            match hub.on_spool_batch(&org_id, &agent_id, batch).await {
                Ok(Some(through_seq)) => {
                    let ack = HostMessage {
                        body: Some(host_message::Body::SpoolAck(SpoolAck {
                            epoch,
                            through_seq,
                        })),
                    };
                    if tx.send(Ok(ack)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(crate::hub::BatchError::Sink(_)) => {
                    resend_from = Some((epoch, first.unwrap_or(0)));
                }
                Err(crate::hub::BatchError::Store(_)) => {
                    let _ = tx
                        .send(Err(Status::unavailable(
                            "the host could not store a batch of the spool; send it again",
                        )))
                        .await;
                    return;
                }
            }
        }
    });
    batches
}

/// Serves the gateway until `shutdown` completes.
pub async fn serve(
    store: Store,
    ca: Arc<CertificateAuthority>,
    hub: AgentHub,
    config: GatewayConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), crate::GatewayError> {
    let (cert_pem, key_pem) = ca.issue_server_certificate(&config.hostnames)?;
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert_pem, key_pem))
        .client_ca_root(Certificate::from_pem(ca.cert_pem()))
        .timeout(Duration::from_secs(10));
    let gateway = Gateway { store, ca, hub };
    Server::builder()
        .tls_config(tls)
        .map_err(|e| crate::GatewayError::Transport(e.to_string()))?
        .add_service(
            AgentGatewayServer::new(gateway)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_shutdown(config.listen, shutdown)
        .await
        .map_err(|e| crate::GatewayError::Transport(e.to_string()))
}
