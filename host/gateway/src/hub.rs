//! The agents connected to this host process, and the commands, log follows and exec sessions
//! in flight to them.
//!
//! Container actions are durable: stored (`agent_commands`) before they are sent, re-sent when the
//! agent reconnects until they expire, finished exactly once when a result arrives. The agent runs
//! each idempotency key once, so a re-delivered command does not run twice. Queries (list,
//! inspect, logs) are not stored. A command to an agent with no session here fails at once
//! ([`HubError::Offline`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infrapilot_identity::SecretBox;
use infrapilot_proto::v1::{
    Command, CommandResult, DockerEvent, ExecInput, ExecOutput, HostMessage, LogChunk, ResultAck,
    command, host_message,
};
use infrapilot_proto::v1::{SpoolBatch, spool_record};
use infrapilot_store::{
    LogLineRow, LogSink, NewCommand, NewDockerEvent, NewLogLine, OrgId, Store, now_ms,
};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("the agent is offline (no session with this host); the command was not sent")]
    Offline,
    #[error("the agent did not answer within {0} s")]
    Timeout(u64),
    #[error("the agent disconnected before it answered")]
    Disconnected,
    #[error("this idempotency key was used for a different command")]
    KeyReused,
    /// The node's own error, with its kind (not_found, conflict, invalid, expired,
    /// docker_unavailable, failed).
    #[error("{message}")]
    Agent { kind: String, message: String },
    #[error(transparent)]
    Store(#[from] infrapilot_store::StoreError),
    #[error("a command carrying secrets could not be sealed")]
    Sealing,
}

/// What the agent answered.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub command_id: String,
    pub payload_json: Vec<u8>,
}

/// Something streamed back for a log follow or an exec session.
#[derive(Debug)]
pub enum StreamItem {
    Log(LogChunk),
    Exec(ExecOutput),
    /// Progress of a long command (an image pull): one JSON object.
    Progress(Vec<u8>),
}

type Sender = mpsc::Sender<Result<HostMessage, Status>>;

struct Session {
    number: u64,
    tx: Sender,
    /// What the node's last heartbeat said (for Prometheus gauges).
    stats: Option<NodeStats>,
    /// The CPU figures of the last ten minutes' heartbeats (ms, percent).
    cpu_history: std::collections::VecDeque<(i64, f64)>,
    /// Set to the reason when the host ends the session (revocation, shutdown).
    end: tokio::sync::watch::Sender<Option<String>>,
}

/// The window of a node's average CPU (its score's figure).
pub const CPU_AVERAGE_WINDOW_MS: i64 = 10 * 60 * 1000;

/// A connected node's figures from its last heartbeat.
#[derive(Debug, Clone)]
pub struct NodeStats {
    pub agent_id: String,
    pub org_id: OrgId,
    pub sample: infrapilot_store::NodeSample,
    /// CPU averaged over the last ten minutes' heartbeats.
    pub cpu_average: Option<f64>,
    pub containers_running: u32,
    /// Spool records not acknowledged yet, and dropped past the bound since the agent started.
    pub spooled: u64,
    pub dropped: u64,
}

/// How a session learns that the host ended it: resolves with the reason.
pub struct SessionEnd(tokio::sync::watch::Receiver<Option<String>>);

impl SessionEnd {
    /// Waits until the host ends the session and returns why.
    pub async fn ended(&mut self) -> String {
        loop {
            if let Some(reason) = self.0.borrow_and_update().clone() {
                return reason;
            }
            if self.0.changed().await.is_err() {
                return "the host dropped the session".into();
            }
        }
    }
}

struct Waiter {
    agent_id: String,
    durable: bool,
    reply: oneshot::Sender<Result<Outcome, HubError>>,
}

struct Stream {
    agent_id: String,
    tx: mpsc::Sender<StreamItem>,
    overflowed: Arc<std::sync::atomic::AtomicBool>,
}

/// The receiving end of a log follow or exec session.
pub struct StreamReceiver {
    pub rx: mpsc::Receiver<StreamItem>,
    overflowed: Arc<std::sync::atomic::AtomicBool>,
}

impl StreamReceiver {
    /// A stream that has ended already (for routers that have nothing to send).
    pub fn ended() -> StreamReceiver {
        let (_, rx) = mpsc::channel(1);
        StreamReceiver {
            rx,
            overflowed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// The next item; `None` when the stream ended.
    pub async fn recv(&mut self) -> Option<StreamItem> {
        self.rx.recv().await
    }

    /// Whether the host dropped the stream because its reader did not keep up.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

/// Items buffered per stream; a reader that falls this far behind loses the stream (never the
/// node's session: the gateway never waits for a stream's reader).
pub const STREAM_BUFFER: usize = 1024;

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    waiters: HashMap<String, Vec<Waiter>>,
    streams: HashMap<String, Stream>,
    /// Set at shutdown: new sessions are refused.
    closing: bool,
}

/// Shared by the gRPC gateway (which feeds it) and the HTTP API (which asks it). Cheap to clone.
#[derive(Clone)]
pub struct AgentHub {
    store: Store,
    inner: Arc<Mutex<Inner>>,
    /// Lines just committed from the nodes' spools, for live log views in this process.
    live_lines: tokio::sync::broadcast::Sender<Arc<LiveLines>>,
    next_session: Arc<AtomicU64>,
    heartbeat_seconds: u32,
    secrets: Arc<SecretBox>,
    /// Where log lines go instead of the database, when the operator configured a sink.
    log_sink: Arc<std::sync::OnceLock<Arc<dyn LogSink>>>,
}

/// A line stamped further in the past than this (the host's default retention), or ahead of
/// now by more than [`MAX_LINE_AHEAD_NS`], is stored at the time it arrived: a node's clock (or
/// a hostile node) cannot make tables for days far from now.
const MAX_LINE_AGE_NS: i64 = 14 * 86_400 * 1_000_000_000;
const MAX_LINE_AHEAD_NS: i64 = 5 * 60 * 1_000_000_000;
const HOUR_NS: i64 = 3600 * 1_000_000_000;
/// A container's id, name and compose project are kept to this many bytes (a label can be of
/// any length; a log sink reads a line back whole).
const MAX_LABEL_BYTES: usize = 1024;

/// A line is kept to this many bytes (what agents send at most; a hostile node may send more).
const MAX_LINE_BYTES: usize = 16 << 10;

/// `text` cleaned ([`clean_text`]) and cut to `max` bytes on a character boundary.
fn bounded_text(text: &str, max: usize) -> String {
    let mut text = clean_text(text);
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

fn bounded_label(text: &str) -> String {
    bounded_text(text, MAX_LABEL_BYTES)
}

/// Why a spool batch was not stored (its cursor did not move).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(#[from] infrapilot_store::StoreError),
    /// The log sink did not take the lines: nothing was committed.
    #[error(transparent)]
    Sink(#[from] infrapilot_store::LogSinkError),
}

/// The log lines among `fresh`, as stored: text cleaned, the level detected, and lines of the
/// node's managed nginx read as requests to (and errors of) its proxy hosts.
async fn line_rows(
    tx: &mut infrapilot_store::Tx,
    agent_id: &str,
    fresh: &[&infrapilot_proto::v1::SpoolRecord],
    time_of: impl Fn(i64) -> i64,
) -> Result<Vec<LogLineRow>, infrapilot_store::StoreError> {
    let lines = fresh.iter().filter_map(|r| match &r.body {
        Some(spool_record::Body::LogLine(l)) => Some((r.seq as i64, l)),
        _ => None,
    });
    let proxy_hosts = if lines.clone().any(|(_, l)| l.proxy) {
        let hosts = tx.list_proxy_hosts(agent_id).await?;
        crate::proxy_lines::ProxyHosts::new(hosts.iter().map(|h| (h.id.as_str(), h.spec.as_str())))
    } else {
        Default::default()
    };
    Ok(lines
        .map(|(seq, l)| {
            // Text as the database takes it: valid UTF-8, no NUL (in every field: a label can
            // hold one too).
            let line = bounded_text(&String::from_utf8_lossy(&l.line), MAX_LINE_BYTES);
            let facts = l
                .proxy
                .then(|| crate::proxy_lines::read(&line, &proxy_hosts))
                .flatten();
            LogLineRow {
                agent_id: agent_id.to_owned(),
                time_ns: time_of(l.time_unix_ns),
                seq,
                container_id: bounded_label(&l.container_id),
                container_name: bounded_label(&l.container_name),
                compose_project: bounded_label(&l.compose_project),
                stream: if l.stream == "stderr" {
                    "stderr"
                } else {
                    "stdout"
                }
                .to_owned(),
                level: facts
                    .as_ref()
                    .and_then(|f| f.level)
                    .or_else(|| infrapilot_proto::model::detect_level(&line))
                    .map(str::to_owned),
                proxy_host_id: facts.as_ref().map(|f| f.proxy_host_id.clone()),
                status: facts.as_ref().and_then(|f| f.status),
                line,
            }
        })
        .collect())
}

/// Text as the database takes it (PostgreSQL refuses NUL).
fn clean_text(text: &str) -> String {
    text.replace('\0', "\u{fffd}")
}

/// Committed batches a live log view may fall behind before it is told it lost some.
const LIVE_LINES_BUFFER: usize = 256;

/// Lines of one organisation just stored (one spool batch's).
#[derive(Debug)]
pub struct LiveLines {
    pub org_id: OrgId,
    pub lines: Vec<infrapilot_store::LogLineRow>,
}

/// A stored command body that starts with this is sealed (see [`AgentHub::encode_sealed`]); a
/// plain body is a protobuf `Command`, whose first byte is never 0.
const SEALED_BODY: &[u8] = b"\0sealed\0";
const SEALED_BODY_PURPOSE: &str = "agent-command";

/// A durable command to send.
pub struct DurableCommand<'a> {
    pub agent_id: &'a str,
    /// Given by the caller (`Idempotency-Key`) or made up.
    pub idempotency_key: Option<String>,
    /// For the command list: e.g. `restart`.
    pub kind: &'a str,
    /// For the command list: e.g. the container id.
    pub target: &'a str,
    pub requested_by: &'a str,
    pub body: command::Kind,
    /// How long the agent has to start it (re-delivery stops after).
    pub expires_in: Duration,
    /// How long the caller waits for the result.
    pub wait: Duration,
    /// It carries credentials: stored sealed with the master key.
    pub seal: bool,
}

fn seal_body(secrets: &SecretBox, command: &Command) -> Result<Vec<u8>, HubError> {
    let sealed = secrets
        .seal(
            &format!("{SEALED_BODY_PURPOSE}:{}", command.command_id),
            &command.encode_to_vec(),
        )
        .map_err(|_| HubError::Sealing)?;
    Ok([SEALED_BODY, sealed.as_slice()].concat())
}

/// A stored body back to its command (plain or sealed).
fn open_body(secrets: &SecretBox, id: &str, body: &[u8]) -> Result<Command, String> {
    match body.strip_prefix(SEALED_BODY) {
        Some(sealed) => {
            let plain = secrets
                .open(&format!("{SEALED_BODY_PURPOSE}:{id}"), sealed)
                .map_err(|e| e.to_string())?;
            Command::decode(plain.as_slice()).map_err(|e| e.to_string())
        }
        None => Command::decode(body).map_err(|e| e.to_string()),
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn outcome_of(result: &CommandResult) -> Result<Outcome, HubError> {
    if result.ok {
        Ok(Outcome {
            command_id: result.command_id.clone(),
            payload_json: result.payload_json.clone(),
        })
    } else {
        Err(HubError::Agent {
            kind: if result.error_kind.is_empty() {
                "failed".into()
            } else {
                result.error_kind.clone()
            },
            message: result.error.clone(),
        })
    }
}

impl AgentHub {
    /// `secrets` seals the stored bodies of commands that carry secrets.
    pub fn new(store: Store, heartbeat_seconds: u32, secrets: Arc<SecretBox>) -> AgentHub {
        AgentHub {
            store,
            inner: Arc::new(Mutex::new(Inner::default())),
            live_lines: tokio::sync::broadcast::channel(LIVE_LINES_BUFFER).0,
            next_session: Arc::new(AtomicU64::new(1)),
            heartbeat_seconds,
            secrets,
            log_sink: Arc::default(),
        }
    }

    /// Sends the nodes' log lines to `sink` instead of the database from now on (set once, at
    /// start; `false` when one was set already).
    pub fn set_log_sink(&self, sink: Arc<dyn LogSink>) -> bool {
        self.log_sink.set(sink).is_ok()
    }

    /// The log sink lines go to, if the operator configured one.
    pub fn log_sink(&self) -> Option<Arc<dyn LogSink>> {
        self.log_sink.get().cloned()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Lines as they are stored, from now on (every organisation's: the reader filters).
    pub fn subscribe_lines(&self) -> tokio::sync::broadcast::Receiver<Arc<LiveLines>> {
        self.live_lines.subscribe()
    }

    /// The body to store for a command that carries secrets (an uploaded certificate's key):
    /// sealed with the host's master key, bound to the command's id. Opened only to be sent.
    pub fn encode_sealed(&self, command: &Command) -> Result<Vec<u8>, HubError> {
        seal_body(&self.secrets, command)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn heartbeat_seconds(&self) -> u32 {
        self.heartbeat_seconds
    }

    /// Whether the agent holds a session with this process.
    pub fn is_connected(&self, agent_id: &str) -> bool {
        self.lock().sessions.contains_key(agent_id)
    }

    fn sender(&self, agent_id: &str) -> Option<Sender> {
        self.lock().sessions.get(agent_id).map(|s| s.tx.clone())
    }

    /// A new session replaces an older one of the same agent (which is told to end). Returns
    /// the session's number and its end signal, or `None` while the host shuts down.
    pub(crate) fn attach(&self, agent_id: &str, tx: Sender) -> Option<(u64, SessionEnd)> {
        let number = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (end, end_rx) = tokio::sync::watch::channel(None);
        let mut inner = self.lock();
        if inner.closing {
            return None;
        }
        if let Some(old) = inner.sessions.insert(
            agent_id.to_owned(),
            Session {
                number,
                tx,
                end,
                stats: None,
                cpu_history: Default::default(),
            },
        ) {
            let _ = old.end.send(Some("replaced by a newer session".into()));
        }
        Some((number, SessionEnd(end_rx)))
    }

    /// Keeps what a connected node's heartbeat said (bounded to what can be true).
    pub(crate) fn set_node_stats(&self, mut stats: NodeStats) {
        let now = now_ms();
        if let Some(session) = self.lock().sessions.get_mut(&stats.agent_id) {
            let history = &mut session.cpu_history;
            if let Some(cpu) = stats.sample.cpu_percent {
                history.push_back((now, cpu));
            }
            while history
                .front()
                .is_some_and(|(at, _)| *at < now - CPU_AVERAGE_WINDOW_MS)
            {
                history.pop_front();
            }
            stats.cpu_average = (!history.is_empty()).then(|| {
                let sum: f64 = history.iter().map(|(_, c)| c).sum();
                (sum / history.len() as f64 * 10.0).round() / 10.0
            });
            session.stats = Some(stats);
        }
    }

    /// Nodes with a session to this host process.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// The last heartbeat figures of every node connected to this host process.
    pub fn node_stats(&self) -> Vec<NodeStats> {
        self.lock()
            .sessions
            .values()
            .filter_map(|s| s.stats.clone())
            .collect()
    }

    /// Ends the agent's session now (revocation): its stream closes with `reason`.
    pub fn end_session(&self, agent_id: &str, reason: &str) {
        if let Some(session) = self.lock().sessions.get(agent_id) {
            let _ = session.end.send(Some(reason.to_owned()));
        }
    }

    /// Shutdown: refuses new sessions and ends every open one (the built-in agent's first, so
    /// the host's own node does not hold the listener open).
    pub fn shut_down(&self, builtin_agent_id: Option<&str>) {
        let mut inner = self.lock();
        inner.closing = true;
        if let Some(id) = builtin_agent_id
            && let Some(session) = inner.sessions.get(id)
        {
            let _ = session.end.send(Some("the host is shutting down".into()));
        }
        for session in inner.sessions.values() {
            let _ = session.end.send(Some("the host is shutting down".into()));
        }
    }

    /// Whether [`AgentHub::shut_down`] was called.
    pub fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// The session ended: queries and streams to the agent fail; durable commands wait for the
    /// agent to come back (they are re-sent then).
    pub(crate) fn detach(&self, agent_id: &str, number: u64) {
        let mut inner = self.lock();
        if inner.sessions.get(agent_id).map(|s| s.number) != Some(number) {
            return;
        }
        inner.sessions.remove(agent_id);
        let mut failed = Vec::new();
        for (id, waiters) in inner.waiters.iter_mut() {
            let (keep, drop): (Vec<_>, Vec<_>) = waiters
                .drain(..)
                .partition(|w| w.agent_id != agent_id || w.durable);
            *waiters = keep;
            if !drop.is_empty() {
                failed.push((id.clone(), drop));
            }
        }
        inner.waiters.retain(|_, w| !w.is_empty());
        inner.streams.retain(|_, s| s.agent_id != agent_id);
        drop(inner);
        for (_, waiters) in failed {
            for w in waiters {
                let _ = w.reply.send(Err(HubError::Disconnected));
            }
        }
    }

    async fn send(&self, agent_id: &str, body: host_message::Body) -> Result<(), HubError> {
        let tx = self.sender(agent_id).ok_or(HubError::Offline)?;
        tx.send(Ok(HostMessage { body: Some(body) }))
            .await
            .map_err(|_| HubError::Offline)
    }

    fn wait_for(
        &self,
        command_id: &str,
        agent_id: &str,
        durable: bool,
    ) -> oneshot::Receiver<Result<Outcome, HubError>> {
        let (reply, rx) = oneshot::channel();
        self.lock()
            .waiters
            .entry(command_id.to_owned())
            .or_default()
            .push(Waiter {
                agent_id: agent_id.to_owned(),
                durable,
                reply,
            });
        rx
    }

    fn forget_waiters(&self, command_id: &str) {
        self.lock().waiters.remove(command_id);
    }

    async fn await_reply(
        &self,
        command_id: &str,
        rx: oneshot::Receiver<Result<Outcome, HubError>>,
        wait: Duration,
    ) -> Result<Outcome, HubError> {
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(HubError::Disconnected),
            Err(_) => {
                self.forget_waiters(command_id);
                Err(HubError::Timeout(wait.as_secs()))
            }
        }
    }

    /// Sends a query (not stored) and waits for its answer.
    pub async fn query(
        &self,
        agent_id: &str,
        body: command::Kind,
        wait: Duration,
    ) -> Result<Outcome, HubError> {
        let command_id = new_id();
        let rx = self.wait_for(&command_id, agent_id, false);
        let command = Command {
            command_id: command_id.clone(),
            idempotency_key: command_id.clone(),
            expires_at_unix_ms: now_ms() + wait.as_millis() as i64,
            kind: Some(body),
        };
        if let Err(e) = self
            .send(agent_id, host_message::Body::Command(command))
            .await
        {
            self.forget_waiters(&command_id);
            return Err(e);
        }
        self.await_reply(&command_id, rx, wait).await
    }

    /// Stores and sends a durable command (or joins the one with the same idempotency key) and
    /// waits for its result.
    pub async fn execute(
        &self,
        org_id: &OrgId,
        c: DurableCommand<'_>,
    ) -> Result<Outcome, HubError> {
        let key = c.idempotency_key.unwrap_or_else(new_id);
        let mut tx = self.store.write(org_id).await?;
        if let Some(existing) = tx.command_by_key(c.agent_id, &key).await? {
            drop(tx);
            if !self.same_request(&existing, c.kind, c.target, &c.body) {
                return Err(HubError::KeyReused);
            }
            return self.join(existing, c.wait).await;
        }
        if !self.is_connected(c.agent_id) {
            return Err(HubError::Offline);
        }
        let command_id = new_id();
        let command = Command {
            command_id: command_id.clone(),
            idempotency_key: key.clone(),
            expires_at_unix_ms: now_ms() + c.expires_in.as_millis() as i64,
            kind: Some(c.body),
        };
        let body = if c.seal {
            seal_body(&self.secrets, &command)?
        } else {
            command.encode_to_vec()
        };
        match tx
            .insert_command(&NewCommand {
                id: &command_id,
                agent_id: c.agent_id,
                idempotency_key: &key,
                kind: c.kind,
                target: c.target,
                body: &body,
                requested_by: c.requested_by,
                expires_at: command.expires_at_unix_ms,
            })
            .await?
        {
            Ok(()) => tx.commit().await?,
            Err(existing) => {
                drop(tx);
                let asked = command.kind.as_ref().expect("made above");
                if !self.same_request(&existing, c.kind, c.target, asked) {
                    return Err(HubError::KeyReused);
                }
                return self.join(existing, c.wait).await;
            }
        }
        let rx = self.wait_for(&command_id, c.agent_id, true);
        self.deliver(org_id, c.agent_id, command).await;
        self.await_reply(&command_id, rx, c.wait).await
    }

    /// Joins the command stored under `c`'s idempotency key, if any (see
    /// [`crate::NodeRouter::join_stored`]); nothing new is stored or sent.
    pub async fn join_stored(
        &self,
        org_id: &OrgId,
        c: DurableCommand<'_>,
    ) -> Option<Result<Outcome, HubError>> {
        let key = c.idempotency_key.as_deref()?;
        let existing = async {
            let mut tx = self.store.read(org_id).await?;
            let existing = tx.command_by_key(c.agent_id, key).await?;
            tx.commit().await?;
            Ok::<_, HubError>(existing)
        }
        .await;
        match existing {
            Err(e) => Some(Err(e)),
            Ok(None) => None,
            Ok(Some(existing)) if !self.same_request(&existing, c.kind, c.target, &c.body) => {
                Some(Err(HubError::KeyReused))
            }
            Ok(Some(existing)) => Some(self.join(existing, c.wait).await),
        }
    }

    /// Whether a stored command under the same idempotency key asked for what is asked now:
    /// the same kind, target and body (all of it — a create's whole spec, its registry
    /// credentials —, but where the caller follows a pull's progress and which container id a
    /// container action's target was read as, which differ per request). A body that cannot be
    /// read back counts as different.
    fn same_request(
        &self,
        existing: &infrapilot_store::CommandRow,
        kind: &str,
        target: &str,
        body: &command::Kind,
    ) -> bool {
        if existing.kind != kind || existing.target != target {
            return false;
        }
        let Ok(stored) = open_body(&self.secrets, &existing.id, &existing.body) else {
            return false;
        };
        let comparable = |kind: &command::Kind| {
            let mut kind = kind.clone();
            match &mut kind {
                command::Kind::CreateContainer(create) => create.progress_stream_id.clear(),
                // The container asked for is the target; the body names the one the policies
                // judged under that name, which a retry may read anew.
                command::Kind::ContainerAction(action) => action.container.clear(),
                _ => {}
            }
            kind
        };
        stored.kind.as_ref().map(comparable) == Some(comparable(body))
    }

    /// A durable command for the caller to store in its own transaction (so it commits with the
    /// change it carries, see [`infrapilot_store::Tx::insert_command`]) and then [`dispatch`](Self::dispatch).
    pub fn durable_command(
        body: command::Kind,
        idempotency_key: &str,
        expires_in: Duration,
    ) -> Command {
        Command {
            command_id: new_id(),
            idempotency_key: idempotency_key.to_owned(),
            expires_at_unix_ms: now_ms() + expires_in.as_millis() as i64,
            kind: Some(body),
        }
    }

    /// Sends a stored durable command if the agent holds a session here, and waits for its
    /// result. Offline: the command waits in the store and is sent when the agent says hello.
    pub async fn dispatch(
        &self,
        org_id: &OrgId,
        agent_id: &str,
        command: Command,
        wait: Duration,
    ) -> Result<Outcome, HubError> {
        if !self.is_connected(agent_id) {
            return Err(HubError::Offline);
        }
        let command_id = command.command_id.clone();
        let rx = self.wait_for(&command_id, agent_id, true);
        self.deliver(org_id, agent_id, command).await;
        self.await_reply(&command_id, rx, wait).await
    }

    /// Answers from a stored command: its result if finished, else waits for it.
    async fn join(
        &self,
        existing: infrapilot_store::CommandRow,
        wait: Duration,
    ) -> Result<Outcome, HubError> {
        match existing.state.as_str() {
            "succeeded" => Ok(Outcome {
                command_id: existing.id,
                payload_json: existing.result.unwrap_or_default().into_bytes(),
            }),
            "failed" | "expired" => {
                let (kind, message) = existing
                    .error
                    .unwrap_or_default()
                    .split_once('\u{1f}')
                    .map(|(k, m)| (k.to_owned(), m.to_owned()))
                    .unwrap_or_else(|| ("failed".into(), String::new()));
                Err(HubError::Agent {
                    kind: if existing.state == "expired" {
                        "expired".into()
                    } else {
                        kind
                    },
                    message,
                })
            }
            _ => {
                let rx = self.wait_for(&existing.id, &existing.agent_id, true);
                self.await_reply(&existing.id, rx, wait).await
            }
        }
    }

    async fn deliver(&self, org_id: &OrgId, agent_id: &str, command: Command) {
        let id = command.command_id.clone();
        if self
            .send(agent_id, host_message::Body::Command(command))
            .await
            .is_ok()
        {
            let counted = async {
                let mut tx = self.store.write(org_id).await?;
                tx.mark_command_delivered(&id).await?;
                tx.commit().await
            }
            .await;
            if let Err(e) = counted {
                tracing::warn!(command_id = id, error = %e, "could not count a delivery");
            }
        }
    }

    /// The agent said hello serving proxy revision `revision`: kept, so that the next revision
    /// made here is numbered above it even if this database is older than the node (restored
    /// from a backup).
    pub(crate) async fn note_serving_revision(
        &self,
        org_id: &OrgId,
        agent_id: &str,
        revision: i64,
    ) {
        let noted = async {
            let mut tx = self.store.write(org_id).await?;
            tx.note_proxy_serving_revision(agent_id, revision).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = noted {
            tracing::warn!(agent_id, error = %e, "could not note the node's proxy revision");
        }
    }

    /// The agent said hello: re-send its unfinished durable commands.
    pub(crate) async fn resend_open(&self, org_id: &OrgId, agent_id: &str) {
        let open = async {
            let mut tx = self.store.write(org_id).await?;
            let open = tx.open_commands(agent_id).await?;
            tx.commit().await?;
            Ok::<_, infrapilot_store::StoreError>(open)
        }
        .await;
        match open {
            Ok(open) => {
                for row in open {
                    match open_body(&self.secrets, &row.id, &row.body) {
                        Ok(command) => {
                            tracing::info!(
                                agent_id,
                                command_id = row.id,
                                "re-sending an unfinished command"
                            );
                            self.deliver(org_id, agent_id, command).await;
                        }
                        Err(e) => {
                            tracing::error!(command_id = row.id, error = %e, "stored command is corrupt")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(agent_id, error = %e, "could not load unfinished commands"),
        }
    }

    /// A result arrived: store it (durable commands, once), acknowledge it, wake the callers.
    pub(crate) async fn on_result(&self, org_id: &OrgId, agent_id: &str, result: CommandResult) {
        let stored = async {
            let mut tx = self.store.write(org_id).await?;
            let Some(row) = tx.command(&result.command_id).await? else {
                return Ok(());
            };
            if row.agent_id != agent_id {
                return Ok(());
            }
            let error = (!result.ok).then(|| {
                format!(
                    "{}\u{1f}{}",
                    if result.error_kind.is_empty() {
                        "failed"
                    } else {
                        &result.error_kind
                    },
                    result.error
                )
            });
            let payload = result
                .ok
                .then(|| String::from_utf8_lossy(&result.payload_json).into_owned());
            tx.finish_command(
                &result.command_id,
                result.ok,
                error.as_deref(),
                payload.as_deref(),
            )
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = stored {
            tracing::warn!(command_id = result.command_id, error = %e, "could not store a command result");
            return; // not acknowledged: the command is re-sent and answered from the agent's ledger
        }
        let _ = self
            .send(
                agent_id,
                host_message::Body::ResultAck(ResultAck {
                    command_id: result.command_id.clone(),
                }),
            )
            .await;
        let waiters = self
            .lock()
            .waiters
            .remove(&result.command_id)
            .unwrap_or_default();
        for w in waiters {
            if w.agent_id == agent_id {
                let _ = w.reply.send(outcome_of(&result));
            }
        }
    }

    pub(crate) async fn on_event(&self, org_id: &OrgId, agent_id: &str, event: DockerEvent) {
        let attributes = serde_json::to_string(&event.attributes).unwrap_or_else(|_| "{}".into());
        let stored = async {
            let mut tx = self.store.write(org_id).await?;
            tx.insert_docker_event(&NewDockerEvent {
                agent_id,
                time_ms: event.time_unix_ms,
                container_id: &event.container_id,
                container_name: &event.container_name,
                action: &event.action,
                exit_code: event.exit_code.map(i64::from),
                attributes: &attributes,
            })
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = stored {
            tracing::warn!(agent_id, error = %e, "could not store a Docker event");
        }
    }

    /// A batch from a node's spool: what this host has not stored yet (by agent, epoch and
    /// sequence) is stored in one transaction with the new cursor; returns the sequence the node
    /// may delete up to (`Ok(None)`: an empty batch). An error means the cursor did not move:
    /// nothing after it may be acknowledged before the node sends it again (a later batch
    /// acknowledged past a lost one would lose it).
    ///
    /// With a log sink its lines are written there first, outside the database's transaction
    /// (the sink keeps a line written twice once), then the cursor, Docker events and gaps are
    /// committed; a sink that fails leaves the cursor where it was.
    pub(crate) async fn on_spool_batch(
        &self,
        org_id: &OrgId,
        agent_id: &str,
        batch: SpoolBatch,
    ) -> Result<Option<u64>, BatchError> {
        let Ok(epoch) = i64::try_from(batch.epoch) else {
            return Ok(None);
        };
        let Some(through) = batch.records.iter().map(|r| r.seq).max() else {
            return Ok(None);
        };
        let now_ns = now_ms().saturating_mul(1_000_000);
        // A node's clock (or a hostile node) cannot make days far from now: such a line is
        // stored at the start of the hour it arrived in — the same time when the batch comes
        // again within the hour, so a log sink that took it before keeps it once (its key
        // holds the time).
        let arrived_hour = now_ns - now_ns.rem_euclid(HOUR_NS);
        let time_of = |ns: i64| {
            if (now_ns - MAX_LINE_AGE_NS..=now_ns + MAX_LINE_AHEAD_NS).contains(&ns) {
                ns
            } else {
                arrived_hour
            }
        };
        let days: std::collections::BTreeSet<i64> = batch
            .records
            .iter()
            .filter_map(|r| match &r.body {
                Some(spool_record::Body::LogLine(l)) => Some(time_of(l.time_unix_ns)),
                _ => None,
            })
            .collect();
        let sink = self.log_sink();
        // The days' tables are made in transactions of their own (on PostgreSQL a new
        // partition locks its parent until commit); a log sink keeps the lines instead.
        if sink.is_none() {
            self.store.prepare_log_days(days.into_iter()).await?;
        }
        let stored = async {
            let fresh_of = |committed: i64| -> Vec<&infrapilot_proto::v1::SpoolRecord> {
                batch
                    .records
                    .iter()
                    .filter(|r| i64::try_from(r.seq).is_ok_and(|seq| seq > committed))
                    .collect()
            };
            let written_to_sink = match &sink {
                Some(sink) => {
                    let mut tx = self.store.read(org_id).await?;
                    let committed = tx.spool_committed(agent_id, epoch).await?;
                    let rows = line_rows(&mut tx, agent_id, &fresh_of(committed), time_of).await?;
                    tx.commit().await?;
                    sink.write(org_id, &rows).await?;
                    Some(rows)
                }
                None => None,
            };
            let mut tx = self.store.write(org_id).await?;
            let committed = tx.spool_committed(agent_id, epoch).await?;
            let fresh = fresh_of(committed);
            let rows = match written_to_sink {
                Some(mut rows) => {
                    rows.retain(|r| r.seq > committed);
                    rows
                }
                None => {
                    let rows = line_rows(&mut tx, agent_id, &fresh, time_of).await?;
                    let lines: Vec<NewLogLine> = rows.iter().map(NewLogLine::from).collect();
                    tx.insert_log_lines(&lines).await?;
                    rows
                }
            };
            for record in &fresh {
                match &record.body {
                    Some(spool_record::Body::DockerEvent(event)) => {
                        let attributes = clean_text(
                            &serde_json::to_string(&event.attributes)
                                .unwrap_or_else(|_| "{}".into()),
                        );
                        tx.insert_docker_event(&NewDockerEvent {
                            agent_id,
                            time_ms: event.time_unix_ms,
                            container_id: &clean_text(&event.container_id),
                            container_name: &clean_text(&event.container_name),
                            action: &clean_text(&event.action),
                            exit_code: event.exit_code.map(i64::from),
                            attributes: &attributes,
                        })
                        .await?;
                    }
                    Some(spool_record::Body::Gap(gap)) => {
                        // Everything up to the cursor arrived (batches are stored in order): a
                        // node that dropped records it had already sent names them too, and
                        // they are not missing.
                        let first = (gap.first_seq.min(i64::MAX as u64) as i64).max(committed + 1);
                        let last = gap.last_seq.min(i64::MAX as u64) as i64;
                        if first <= last {
                            tx.insert_log_gap(agent_id, epoch, first, last).await?;
                        }
                    }
                    Some(spool_record::Body::LogLine(_)) | None => {}
                }
            }
            let last = fresh
                .iter()
                .map(|r| r.seq as i64)
                .max()
                .unwrap_or(committed);
            if last > committed {
                tx.set_spool_committed(agent_id, epoch, last).await?;
            }
            tx.commit().await?;
            if self.live_lines.receiver_count() > 0 && !rows.is_empty() {
                let _ = self.live_lines.send(Arc::new(LiveLines {
                    org_id: org_id.clone(),
                    lines: rows,
                }));
            }
            Ok::<_, BatchError>(())
        }
        .await;
        match stored {
            Ok(()) => Ok(Some(through)),
            Err(e) => {
                tracing::warn!(agent_id, error = %e, "could not store a spool batch; the node sends it again");
                Err(e)
            }
        }
    }

    /// The node reported its proxy (drift, certificates): kept as the latest status.
    pub(crate) async fn on_proxy_status(&self, org_id: &OrgId, agent_id: &str, json: &[u8]) {
        store_proxy_status(&self.store, org_id, agent_id, json).await;
    }

    pub(crate) async fn on_stream_item(&self, agent_id: &str, id: &str, item: StreamItem) {
        let tx = {
            let inner = self.lock();
            inner
                .streams
                .get(id)
                .filter(|s| s.agent_id == agent_id)
                .map(|s| (s.tx.clone(), s.overflowed.clone()))
        };
        let Some((tx, overflowed)) = tx else { return };
        // Never wait for a reader: a slow one loses its stream, not the node its session.
        match tx.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.lock().streams.remove(id);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                overflowed.store(true, Ordering::Relaxed);
                tracing::warn!(
                    agent_id,
                    stream = id,
                    "a stream's reader fell {STREAM_BUFFER} items behind; the stream is closed"
                );
                // Never wait on the agent's outbound channel from its own session loop.
                self.lock().streams.remove(id);
                if let Some(tx) = self.sender(agent_id) {
                    let _ = tx.try_send(Ok(HostMessage {
                        body: Some(host_message::Body::CancelStream(
                            infrapilot_proto::v1::CancelStream {
                                stream_id: id.to_owned(),
                            },
                        )),
                    }));
                }
            }
        }
    }

    /// Registers a stream for what the node sends about a command (its progress), without
    /// sending anything; [`AgentHub::close_stream`] ends it.
    pub fn watch_stream(&self, agent_id: &str, stream_id: &str) -> StreamReceiver {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let overflowed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.lock().streams.insert(
            stream_id.to_owned(),
            Stream {
                agent_id: agent_id.to_owned(),
                tx,
                overflowed: overflowed.clone(),
            },
        );
        StreamReceiver { rx, overflowed }
    }

    /// Opens a log follow or an exec session: registers the stream, sends the command, and
    /// returns the receiver once the agent confirmed it started.
    pub async fn open_stream(
        &self,
        agent_id: &str,
        stream_id: &str,
        body: command::Kind,
        wait: Duration,
    ) -> Result<StreamReceiver, HubError> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let overflowed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.lock().streams.insert(
            stream_id.to_owned(),
            Stream {
                agent_id: agent_id.to_owned(),
                tx,
                overflowed: overflowed.clone(),
            },
        );
        match self.query(agent_id, body, wait).await {
            Ok(_) => Ok(StreamReceiver { rx, overflowed }),
            Err(e) => {
                self.lock().streams.remove(stream_id);
                Err(e)
            }
        }
    }

    /// Ends a stream on both sides.
    pub async fn close_stream(&self, agent_id: &str, stream_id: &str) {
        self.lock().streams.remove(stream_id);
        let _ = self
            .send(
                agent_id,
                host_message::Body::CancelStream(infrapilot_proto::v1::CancelStream {
                    stream_id: stream_id.to_owned(),
                }),
            )
            .await;
    }

    pub async fn exec_input(&self, agent_id: &str, input: ExecInput) -> Result<(), HubError> {
        self.send(agent_id, host_message::Body::ExecInput(input))
            .await
    }
}

/// Stores a node's proxy status (a JSON `ProxyNodeStatus`); malformed reports are dropped.
pub async fn store_proxy_status(store: &Store, org_id: &OrgId, agent_id: &str, json: &[u8]) {
    let Ok(status) = serde_json::from_slice::<infrapilot_proto::model::ProxyNodeStatus>(json)
    else {
        tracing::warn!(agent_id, "dropped a malformed proxy status report");
        return;
    };
    let stored = async {
        let mut tx = store.write(org_id).await?;
        tx.set_proxy_status(
            agent_id,
            i64::try_from(status.revision).unwrap_or(i64::MAX),
            &serde_json::to_string(&status).unwrap_or_default(),
        )
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = stored {
        tracing::warn!(agent_id, error = %e, "could not store a proxy status report");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrapilot_proto::v1::{ApplyProxyConfig, ProxyFile};

    #[test]
    fn sealed_bodies_open_only_for_their_command() {
        let secrets = SecretBox::new(&[9u8; 32]).unwrap();
        let command = AgentHub::durable_command(
            command::Kind::ApplyProxyConfig(ApplyProxyConfig {
                revision: 3,
                shared: vec![ProxyFile {
                    path: "key.pem".into(),
                    contents: b"SECRET KEY MATERIAL".to_vec(),
                }],
                hosts: vec![],
            }),
            "k",
            Duration::from_secs(60),
        );
        let body = seal_body(&secrets, &command).unwrap();
        assert!(body.starts_with(SEALED_BODY));
        assert!(!body.windows(6).any(|w| w == b"SECRET"));
        assert_eq!(
            open_body(&secrets, &command.command_id, &body).unwrap(),
            command
        );
        // Bound to the command's id and to the master key.
        assert!(open_body(&secrets, "another-command", &body).is_err());
        let other = SecretBox::new(&[8u8; 32]).unwrap();
        assert!(open_body(&other, &command.command_id, &body).is_err());
        // A plain body still decodes.
        let plain = command.encode_to_vec();
        assert_eq!(
            open_body(&secrets, &command.command_id, &plain).unwrap(),
            command
        );
    }
}
