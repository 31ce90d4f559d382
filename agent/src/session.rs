//! The agent's session with the host: one outbound mTLS gRPC stream, hello, heartbeats,
//! reconnection with exponential backoff and jitter. A host that refuses the certificate
//! (revoked or unknown agent) stops the agent: it never runs without trust.

use std::time::Duration;

use infrapilot_proto::v1::agent_gateway_client::AgentGatewayClient;
use std::sync::Arc;

use infrapilot_proto::v1::{
    AgentMessage, CertificateRenewalRequest, Heartbeat, Hello, HostStats, agent_message,
    host_message,
};
use rcgen::{CertificateParams, KeyPair};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::docker::DockerNode;
use crate::executor::Executor;
use crate::ledger::Ledger;
use crate::shipper::{LogCollector, Shipper};
use crate::state::{StateDir, StateError, TrustMaterial};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the host refused this agent: {0}")]
    Refused(String),
    #[error("the saved gRPC endpoint is not usable: {0}")]
    Endpoint(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the spool: {0}")]
    Spool(#[from] crate::shipper::ShipperError),
}

/// Why one session ended (and whether to try again).
enum Ended {
    Retry(String),
    Refused(String),
}

pub struct SessionOptions {
    /// Overrides the host's heartbeat interval (tests); `None` follows the host.
    pub heartbeat: Option<Duration>,
    pub max_backoff: Duration,
    /// Rotate the certificate when it expires within this long.
    pub renew_within: Duration,
    /// The managed nginx (none: this agent does not run a proxy).
    pub proxy: Option<crate::proxy::ProxyOptions>,
    /// The on-disk spool's bound (logs and events waiting for the host).
    pub spool_bound_bytes: u64,
    /// Follow every container's log into the spool.
    pub collect_logs: bool,
    /// Only the logs of containers with this label (key, value).
    pub log_label: Option<(String, String)>,
}

impl Default for SessionOptions {
    fn default() -> SessionOptions {
        SessionOptions {
            heartbeat: None,
            max_backoff: Duration::from_secs(60),
            renew_within: Duration::from_secs(10 * 24 * 3600),
            proxy: None,
            spool_bound_bytes: crate::spool::DEFAULT_BOUND_BYTES,
            collect_logs: true,
            log_label: None,
        }
    }
}

fn jitter(max_ms: u64) -> Duration {
    let mut b = [0u8; 8];
    let r = getrandom::fill(&mut b)
        .map(|_| u64::from_le_bytes(b))
        .unwrap_or(0);
    Duration::from_millis(if max_ms == 0 { 0 } else { r % max_ms })
}

/// Runs sessions until the host refuses the agent. Trust material is re-read for every
/// session, so a rotated certificate is used from the next connection on. Commands run on the
/// local Docker engine; what the agent sends (results, events, log lines) waits in one outbox
/// across reconnects.
pub async fn run(state: &StateDir, options: &SessionOptions) -> Result<(), SessionError> {
    let ledger = Ledger::open(Some(StateDir::new(state.path())))?;
    let (outbox, mut outbox_rx) = mpsc::channel::<AgentMessage>(1024);
    let docker = DockerNode::new();
    let proxy = options
        .proxy
        .clone()
        .map(|o| Arc::new(crate::proxy::Proxy::new(docker.clone(), o)));
    if let Some(proxy) = proxy.clone() {
        proxy.report_to(outbox.clone());
        // The node serves its last applied configuration whether or not the host is reachable,
        // and renews its certificates itself.
        tokio::spawn(async move {
            match proxy.restore().await {
                Ok(0) => {}
                Ok(revision) => {
                    eprintln!("proxy: serving revision {revision} again");
                    proxy.renew_due().await;
                }
                Err(e) => eprintln!("proxy: could not restore the last applied revision: {e}"),
            }
            proxy.maintain().await;
        });
    }
    let executor = Executor::new(docker, proxy, ledger, outbox.clone());
    // Logs and events wait in the spool until the host has committed them.
    let shipper = Shipper::open(&state.path().join("spool"), options.spool_bound_bytes)?;
    {
        let docker = executor.docker().clone();
        let collector = LogCollector::new(
            docker.clone(),
            shipper.clone(),
            options.proxy.as_ref().map(|p| p.container.clone()),
            options.log_label.clone(),
        );
        let shipper = shipper.clone();
        let collect_logs = options.collect_logs;
        if collect_logs {
            // Again and again: a container started before the event feed was watched is found
            // by the next look (every 30 s: a look is a call to the engine, and the idle agent
            // should cost next to nothing).
            let collector = collector.clone();
            tokio::spawn(async move {
                loop {
                    collector.follow_running().await;
                    tokio::time::sleep(FOLLOW_RUNNING_EVERY).await;
                }
            });
        }
        tokio::spawn(async move {
            docker
                .watch_events(
                    |event| {
                        if let Err(e) = shipper.docker_event(&event) {
                            eprintln!("docker events: could not spool an event: {e}");
                        }
                        if collect_logs {
                            collector.on_event(&event);
                        }
                        true
                    },
                    // The feed (re)opened (the engine restarted): containers started meanwhile
                    // are found now, not at the next periodic look.
                    || {
                        if collect_logs {
                            let collector = collector.clone();
                            tokio::spawn(async move { collector.follow_running().await });
                        }
                    },
                )
                .await;
        });
    }
    let mut backoff = Duration::from_millis(500);
    loop {
        let trust = state.load()?;
        let channel = channel(&trust)?;
        let started = std::time::Instant::now();
        let ended = session(
            channel,
            state,
            &trust,
            options,
            &executor,
            &shipper,
            &mut outbox_rx,
        )
        .await;
        executor.cancel_all();
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        match ended {
            Ended::Refused(reason) => return Err(SessionError::Refused(reason)),
            Ended::Retry(reason) => {
                let wait = backoff + jitter(backoff.as_millis() as u64 / 2);
                eprintln!(
                    "session ended ({reason}); reconnecting in {:.1} s",
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(options.max_backoff);
            }
        }
    }
}

fn channel(trust: &TrustMaterial) -> Result<Channel, SessionError> {
    let url = url::Url::parse(&trust.identity.grpc_endpoint)
        .map_err(|e| SessionError::Endpoint(e.to_string()))?;
    if url.scheme() != "https" {
        return Err(SessionError::Endpoint(
            "the gRPC endpoint must be https".into(),
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| SessionError::Endpoint("no host in the gRPC endpoint".into()))?
        .trim_matches(['[', ']'])
        .to_owned();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&trust.ca_certificate_pem))
        .identity(Identity::from_pem(&trust.certificate_pem, &trust.key_pem))
        .domain_name(host);
    Ok(Channel::from_shared(trust.identity.grpc_endpoint.clone())
        .map_err(|e| SessionError::Endpoint(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .tls_config(tls)
        .map_err(|e| SessionError::Endpoint(e.to_string()))?
        .connect_lazy())
}

fn expires_within(trust: &TrustMaterial, window: Duration) -> bool {
    let format = &time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(&trust.identity.certificate_expires_at, format) {
        Ok(expiry) => expiry - time::OffsetDateTime::now_utc() < window,
        // Unknown expiry: renew, which also repairs the record.
        Err(_) => true,
    }
}

/// Spool batches sent before the host acknowledges the first of them.
const SPOOL_BATCHES_IN_FLIGHT: usize = 4;
/// How often the agent looks for running containers whose logs it does not follow yet.
const FOLLOW_RUNNING_EVERY: Duration = Duration::from_secs(30);
/// A batch not acknowledged within this long is sent again (with all after it).
const SPOOL_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest message either side of a session accepts (the host's bound is the same).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

async fn session(
    channel: Channel,
    state: &StateDir,
    trust: &TrustMaterial,
    options: &SessionOptions,
    executor: &Arc<Executor>,
    shipper: &Arc<Shipper>,
    outbox: &mut mpsc::Receiver<AgentMessage>,
) -> Ended {
    let mut pending_key: Option<KeyPair> = None;
    // The same bound as the gateway's (infrapilot_gateway::server::MAX_MESSAGE_BYTES).
    let mut client = AgentGatewayClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let hello = AgentMessage {
        body: Some(agent_message::Body::Hello(Hello {
            agent_id: trust.identity.agent_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: executor.capabilities(),
            completed_idempotency_keys: executor.completed_keys(),
            last_applied_config_revision: executor
                .serving_revision()
                .map(|r| r.to_string())
                .unwrap_or_default(),
        })),
    };
    if tx.send(hello).await.is_err() {
        return Ended::Retry("internal channel closed".into());
    }
    let mut inbound = match client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) if refused(&status) => return Ended::Refused(status.message().to_owned()),
        Err(status) => return Ended::Retry(status.to_string()),
    };
    // Spool batches sent and not acknowledged yet (their last sequences): at most a few at once,
    // and after a reconnect everything unacknowledged is sent again.
    let mut in_flight: std::collections::VecDeque<u64> = Default::default();
    // When the oldest batch in flight was sent: unanswered for long (the host could not store
    // it), everything unacknowledged is sent again.
    let mut oldest_sent = tokio::time::Instant::now();
    let mut sent_through = shipper.acked();
    shipper.wake.notify_one();
    let mut interval = options.heartbeat.unwrap_or(Duration::from_secs(30));
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            message = inbound.next() => match message {
                None => return Ended::Retry("the host closed the stream".into()),
                Some(Err(status)) if refused(&status) => return Ended::Refused(status.message().to_owned()),
                Some(Err(status)) => return Ended::Retry(status.to_string()),
                Some(Ok(message)) => {
                    match message.body {
                        Some(host_message::Body::Welcome(welcome)) => {
                            eprintln!("connected to the host as {}", welcome.agent_id);
                            if options.heartbeat.is_none() && welcome.heartbeat_seconds > 0 {
                                interval = Duration::from_secs(u64::from(welcome.heartbeat_seconds));
                            }
                            // The first heartbeat a second after the welcome (the host has the
                            // node's figures at once, not an interval later), then every interval.
                            ticker = tokio::time::interval_at(
                                tokio::time::Instant::now() + Duration::from_secs(1).min(interval),
                                interval,
                            );
                            if expires_within(trust, options.renew_within) {
                                match renewal_request() {
                                    Ok((key, request)) => {
                                        pending_key = Some(key);
                                        if tx.send(request).await.is_err() {
                                            return Ended::Retry("the stream closed".into());
                                        }
                                    }
                                    Err(e) => eprintln!("could not make a renewal CSR: {e}"),
                                }
                            }
                        }
                        Some(host_message::Body::Command(command)) => executor.handle(command),
                        Some(host_message::Body::ExecInput(input)) => executor.exec_input(input).await,
                        Some(host_message::Body::CancelStream(cancel)) => executor.cancel(&cancel.stream_id),
                        Some(host_message::Body::SpoolAck(ack)) => {
                            // Disk writes and fsyncs off the session's thread.
                            let acked = {
                                let shipper = shipper.clone();
                                tokio::task::spawn_blocking(move || shipper.ack(ack.epoch, ack.through_seq)).await
                            };
                            if let Ok(Err(e)) = acked {
                                eprintln!("spool: could not record the host's acknowledgement: {e}");
                            }
                            while in_flight.front().is_some_and(|last| *last <= ack.through_seq) {
                                in_flight.pop_front();
                                oldest_sent = tokio::time::Instant::now();
                            }
                            shipper.wake.notify_one();
                        }
                        Some(host_message::Body::Certificate(renewal)) => {
                            let Some(key) = pending_key.take() else { continue };
                            let mut renewed = trust.clone();
                            renewed.key_pem = key.serialize_pem();
                            renewed.certificate_pem = renewal.certificate_pem;
                            renewed.ca_certificate_pem = renewal.ca_certificate_pem;
                            renewed.identity.certificate_expires_at = renewal.certificate_expires_at;
                            match state.save(&renewed) {
                                Ok(()) => eprintln!(
                                    "certificate rotated; valid until {}",
                                    renewed.identity.certificate_expires_at
                                ),
                                Err(e) => eprintln!("could not store the rotated certificate: {e}"),
                            }
                        }
                        _ => {}
                    }
                }
            },
            Some(outgoing) = outbox.recv() => {
                if tx.send(outgoing).await.is_err() {
                    return Ended::Retry("the stream closed".into());
                }
            }
            _ = shipper.wake.notified(), if in_flight.len() < SPOOL_BATCHES_IN_FLIGHT => {
                let read = {
                    let shipper = shipper.clone();
                    tokio::task::spawn_blocking(move || shipper.batch_after(sent_through)).await
                };
                match read.unwrap_or_else(|e| Err(crate::shipper::ShipperError::Positions { path: Default::default(), reason: e.to_string() })) {
                    Ok(Some((batch, last))) if batch.records.is_empty() => {
                        // Nothing in it could be read back (an undecodable record): the next
                        // batch's acknowledgement covers it.
                        sent_through = last;
                        shipper.wake.notify_one();
                    }
                    Ok(Some((batch, last))) => {
                        sent_through = last;
                        if in_flight.is_empty() {
                            oldest_sent = tokio::time::Instant::now();
                        }
                        in_flight.push_back(last);
                        let message = AgentMessage { body: Some(agent_message::Body::SpoolBatch(batch)) };
                        if tx.send(message).await.is_err() {
                            return Ended::Retry("the stream closed".into());
                        }
                        // There may be more waiting.
                        shipper.wake.notify_one();
                    }
                    Ok(None) => {}
                    Err(e) => eprintln!("spool: could not read a batch: {e}"),
                }
            }
            _ = ticker.tick() => {
                if !in_flight.is_empty() && oldest_sent.elapsed() > SPOOL_ACK_TIMEOUT {
                    in_flight.clear();
                    sent_through = shipper.acked();
                    shipper.wake.notify_one();
                }
                let mut stats = host_stats(executor).await;
                (stats.spooled_events, stats.dropped_events) = shipper.counts();
                let beat = AgentMessage {
                    body: Some(agent_message::Body::Heartbeat(Heartbeat { stats: Some(stats) })),
                };
                if tx.send(beat).await.is_err() {
                    return Ended::Retry("the stream closed".into());
                }
            }
        }
    }
}

/// A fresh key pair (kept until the host answers) and the request carrying its CSR.
fn renewal_request() -> Result<(KeyPair, AgentMessage), rcgen::Error> {
    let key = KeyPair::generate()?;
    let csr = CertificateParams::default()
        .serialize_request(&key)?
        .pem()?;
    let message = AgentMessage {
        body: Some(agent_message::Body::RenewCertificate(
            CertificateRenewalRequest { csr_pem: csr },
        )),
    };
    Ok((key, message))
}

fn refused(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
    )
}

/// The aggregate CPU line of /proc/stat: (busy, total) jiffies since boot.
fn cpu_jiffies(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is within user and nice).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// CPU busy between two /proc/stat samples, percent of all cores.
fn cpu_percent(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return 0.0;
    }
    let busy = after.0.saturating_sub(before.0).min(total);
    (busy as f64 * 100.0 / total as f64 * 10.0).round() / 10.0
}

/// The previous heartbeat's CPU sample, for the share busy since then.
static LAST_CPU_SAMPLE: std::sync::Mutex<Option<(u64, u64)>> = std::sync::Mutex::new(None);

/// CPU since the previous heartbeat, memory and uptime from /proc, and the container counts.
async fn host_stats(executor: &Executor) -> HostStats {
    let cpu = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| cpu_jiffies(&s))
        .and_then(|now| {
            let mut last = LAST_CPU_SAMPLE.lock().unwrap_or_else(|e| e.into_inner());
            let percent = last.map(|before| cpu_percent(before, now));
            *last = Some(now);
            percent
        });
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    let total = field("MemTotal:");
    let available = field("MemAvailable:");
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split('.').next().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    let (running, all) = executor.docker().counts().await.unwrap_or((0, 0));
    let (disk_used, disk_total) = disk_usage(executor).await.unwrap_or((0, 0));
    HostStats {
        cpu_percent: cpu,
        memory_used_bytes: total.saturating_sub(available),
        memory_total_bytes: total,
        containers_running: running,
        containers_total: all,
        uptime_seconds: uptime,
        disk_used_bytes: disk_used,
        disk_total_bytes: disk_total,
        ..Default::default()
    }
}

/// Docker's data root, once Docker has named it (until then, and where that path is not
/// visible to the agent, the filesystem of `/`).
static DATA_ROOT: std::sync::Mutex<Option<std::path::PathBuf>> = std::sync::Mutex::new(None);

/// Bytes used and in total on the filesystem of Docker's data root, as `df` counts them: the
/// blocks reserved for root are in neither (so the share used is what `df` shows).
async fn disk_usage(executor: &Executor) -> Option<(u64, u64)> {
    let known = DATA_ROOT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let root = match known {
        Some(root) => root,
        None => match executor
            .docker()
            .data_root()
            .await
            .map(std::path::PathBuf::from)
        {
            Some(root) if root.is_dir() => {
                *DATA_ROOT.lock().unwrap_or_else(|e| e.into_inner()) = Some(root.clone());
                root
            }
            _ => "/".into(),
        },
    };
    let fs = rustix::fs::statvfs(&root).ok()?;
    let used = fs
        .f_blocks
        .saturating_sub(fs.f_bfree)
        .saturating_mul(fs.f_frsize);
    let available = fs.f_bavail.saturating_mul(fs.f_frsize);
    Some((used, used.saturating_add(available)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_share_between_two_proc_stat_samples() {
        let before = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\n";
        let after = "cpu  250 0 150 950 150 0 0 0 0 0\ncpu0 1 1 1 1 1 1 1 1 1 1\n";
        let (a, b) = (
            super::cpu_jiffies(before).unwrap(),
            super::cpu_jiffies(after).unwrap(),
        );
        assert_eq!(a, (200, 1000));
        assert_eq!(b, (400, 1500));
        // 200 busy of 500 jiffies.
        assert_eq!(super::cpu_percent(a, b), 40.0);
        assert_eq!(super::cpu_percent(b, b), 0.0);
        assert_eq!(super::cpu_jiffies("intr 1 2 3"), None);
    }
}
