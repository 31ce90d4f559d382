//! Shipping logs and events through the spool (issue 17): every running container's log is
//! followed into the node's [`Spool`](crate::spool::Spool), Docker events go there too, and the
//! session sends what the host has not acknowledged.
//!
//! Where each container's log was read up to, per stream (the time of the last line taken, and
//! how many lines with exactly that time were taken — Docker's `since` is in whole seconds and
//! inclusive; each stream is stamped in order, stdout and stderr not with each other)
//! survives restarts without counting a line twice: the positions file is rewritten (atomically,
//! after the spool is forced to disk) before the spool deletes anything — when the host
//! acknowledges, and when a segment is closed (only closed segments are dropped by the bound) —
//! and at start the positions are carried forward over the records still in the spool. So a
//! line is either in the spool, or at or before its container's saved position, and a line read
//! again after a crash is recognised and skipped.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infrapilot_proto::v1::{
    ContainerLogLine, DockerEvent, SpoolBatch, SpoolGap, SpoolRecord, spool_record,
};
use prost::Message;

use crate::docker::DockerNode;
use crate::spool::{Record, RecordKind, Spool, SpoolError};

/// A line longer than this is cut (the rest of it is not kept).
pub const MAX_LINE_BYTES: usize = 16 << 10;
/// Records in one batch to the host, and about how much payload.
const BATCH_RECORDS: usize = 2000;
const BATCH_BYTES: usize = 256 << 10;
const POSITIONS_FILE: &str = "log-positions.json";

#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("{path}: {reason}")]
    Positions { path: PathBuf, reason: String },
}

/// A log label filter as `key=value` (the key not empty; the value may be).
pub fn parse_log_label(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("not a label as key=value: {raw:?}")),
    }
}

/// How far a container's log was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The time of the last line taken (ns since the epoch).
    pub ns: i64,
    /// Lines with exactly that time already taken.
    pub taken_at_ns: u32,
}

impl Position {
    /// Whether a line read (again) from Docker at `ns` is already taken; `seen_at_ns` counts the
    /// lines with the position's time met so far in this read.
    fn covers(&self, ns: i64, seen_at_ns: &mut u32) -> bool {
        if ns < self.ns {
            return true;
        }
        if ns == self.ns {
            *seen_at_ns += 1;
            return *seen_at_ns <= self.taken_at_ns;
        }
        false
    }

    fn advance(&mut self, ns: i64) {
        if ns == self.ns {
            self.taken_at_ns += 1;
        } else if ns > self.ns {
            *self = Position { ns, taken_at_ns: 1 };
        }
    }
}

struct State {
    spool: Spool,
    /// By `<container id>/<stream>`.
    positions: BTreeMap<String, Position>,
    dir: PathBuf,
    /// Segments closed so far (a new one means the positions are saved again).
    segments_seen: PathBuf,
    /// Records dropped past the bound since the agent started.
    dropped: u64,
}

/// The node's spool with the read positions of container logs (one per agent).
pub struct Shipper {
    state: Mutex<State>,
    /// Woken when there is something (more) to send.
    pub(crate) wake: tokio::sync::Notify,
}

fn position_key(container_id: &str, stream: &str) -> String {
    format!("{container_id}/{stream}")
}

fn positions_error(path: &Path, reason: impl ToString) -> ShipperError {
    ShipperError::Positions {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The positions file: where each container's log was taken up to, counting every record of
/// the spool up to `through_seq` (the records after it are replayed over it at start).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct SavedPositions {
    through_seq: u64,
    containers: BTreeMap<String, Position>,
}

impl State {
    fn save_positions(&mut self) -> Result<(), ShipperError> {
        // What the positions say was taken must be on disk in the spool first.
        self.spool.sync()?;
        let saved = SavedPositions {
            through_seq: self.spool.next_seq() - 1,
            containers: self.positions.clone(),
        };
        let text = serde_json::to_vec(&saved)
            .map_err(|e| positions_error(&self.dir.join(POSITIONS_FILE), e))?;
        crate::spool::replace_file(&self.dir, POSITIONS_FILE, text)?;
        Ok(())
    }

    /// After an append: a closed segment may be dropped by the bound later, so the positions
    /// covering it are saved now.
    fn after_append(&mut self) -> Result<(), ShipperError> {
        let newest = self.spool.segment_paths().pop().unwrap_or_default();
        if newest != self.segments_seen {
            self.segments_seen = newest;
            self.save_positions()?;
        }
        Ok(())
    }
}

impl Shipper {
    /// Opens the spool under `dir` (bounded to `bound_bytes`) and the saved positions, carried
    /// forward over what the spool still holds.
    pub fn open(dir: &Path, bound_bytes: u64) -> Result<Arc<Shipper>, ShipperError> {
        let mut spool = Spool::open(dir, bound_bytes)?;
        let positions_path = dir.join(POSITIONS_FILE);
        let saved: SavedPositions = match std::fs::read(&positions_path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| positions_error(&positions_path, e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SavedPositions::default(),
            Err(e) => return Err(positions_error(&positions_path, e)),
        };
        let mut positions = saved.containers;
        // Lines spooled after the positions were saved move them on.
        let mut from = saved.through_seq.max(spool.acked()) + 1;
        loop {
            let batch = spool.read_from(from, 10_000, 8 << 20)?;
            let Some(last) = batch.last().map(|r| r.seq) else {
                break;
            };
            for record in batch.iter().filter(|r| r.kind == RecordKind::LogLine) {
                if let Ok(line) = ContainerLogLine::decode(record.payload.as_slice()) {
                    positions
                        .entry(position_key(&line.container_id, &line.stream))
                        .or_default()
                        .advance(line.time_unix_ns);
                }
            }
            from = last + 1;
        }
        let segments_seen = spool.segment_paths().pop().unwrap_or_default();
        Ok(Arc::new(Shipper {
            state: Mutex::new(State {
                spool,
                positions,
                dir: dir.to_owned(),
                segments_seen,
                dropped: 0,
            }),
            wake: tokio::sync::Notify::new(),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn epoch(&self) -> u64 {
        self.state().spool.epoch()
    }

    /// Where a container's stream (`stdout`, `stderr`) was taken up to.
    pub fn position(&self, container_id: &str, stream: &str) -> Option<Position> {
        self.state()
            .positions
            .get(&position_key(container_id, stream))
            .copied()
    }

    /// Whether any of a container's log was taken.
    pub fn has_position(&self, container_id: &str) -> bool {
        ["stdout", "stderr"]
            .iter()
            .any(|s| self.position(container_id, s).is_some())
    }

    fn append(
        &self,
        kind: RecordKind,
        payload: &[u8],
        taken: Option<(&str, i64)>,
    ) -> Result<(), ShipperError> {
        let mut state = self.state();
        let before = state.spool.next_seq();
        state.spool.append(kind, payload)?;
        // A gap record written before this one: what it names was dropped.
        let written = state.spool.next_seq() - before;
        if written > 1 {
            let dropped = state
                .spool
                .read_from(before, 1, 64)
                .ok()
                .and_then(|r| r.first().and_then(Record::gap))
                .map(|(a, b)| b - a + 1)
                .unwrap_or(0);
            state.dropped += dropped;
        }
        if let Some((container, ns)) = taken {
            state
                .positions
                .entry(container.to_owned())
                .or_default()
                .advance(ns);
        }
        state.after_append()?;
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// Spools a container's log line (and moves its position). A line longer than
    /// [`MAX_LINE_BYTES`], or than the spool takes, is cut.
    pub fn log_line(&self, mut line: ContainerLogLine) -> Result<(), ShipperError> {
        line.line.truncate(MAX_LINE_BYTES);
        let max = self.state().spool.max_payload();
        let mut encoded = line.encode_to_vec();
        if encoded.len() > max {
            let over = encoded.len() - max;
            let keep = line.line.len().saturating_sub(over + 8);
            line.line.truncate(keep);
            encoded = line.encode_to_vec();
        }
        let key = position_key(&line.container_id, &line.stream);
        self.append(
            RecordKind::LogLine,
            &encoded,
            Some((&key, line.time_unix_ns)),
        )
    }

    /// Spools a Docker event.
    pub fn docker_event(&self, event: &DockerEvent) -> Result<(), ShipperError> {
        self.append(RecordKind::DockerEvent, &event.encode_to_vec(), None)
    }

    /// The next batch to send: records after `sent_through` (none: nothing waits).
    /// Returns it with the last sequence it covers.
    pub fn batch_after(
        &self,
        sent_through: u64,
    ) -> Result<Option<(SpoolBatch, u64)>, ShipperError> {
        let mut state = self.state();
        let from = sent_through.max(state.spool.acked()) + 1;
        let records = state.spool.read_from(from, BATCH_RECORDS, BATCH_BYTES)?;
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(None);
        };
        let records = records
            .into_iter()
            .filter_map(|r| {
                let body = match r.kind {
                    RecordKind::LogLine => spool_record::Body::LogLine(
                        ContainerLogLine::decode(r.payload.as_slice()).ok()?,
                    ),
                    RecordKind::DockerEvent => spool_record::Body::DockerEvent(
                        DockerEvent::decode(r.payload.as_slice()).ok()?,
                    ),
                    RecordKind::Gap => {
                        let (first_seq, last_seq) = r.gap()?;
                        spool_record::Body::Gap(SpoolGap {
                            first_seq,
                            last_seq,
                        })
                    }
                };
                Some(SpoolRecord {
                    seq: r.seq,
                    body: Some(body),
                })
            })
            .collect();
        Ok(Some((
            SpoolBatch {
                epoch: state.spool.epoch(),
                records,
            },
            last,
        )))
    }

    /// The host committed the epoch's records up to `seq`.
    pub fn ack(&self, epoch: u64, seq: u64) -> Result<(), ShipperError> {
        let mut state = self.state();
        if epoch != state.spool.epoch() || seq <= state.spool.acked() {
            return Ok(());
        }
        state.save_positions()?;
        state.spool.ack(seq)?;
        Ok(())
    }

    /// A container removed: its position goes (lines of it still in the spool bring it back
    /// at a restart, which is harmless).
    pub fn forget(&self, container_id: &str) {
        let mut state = self.state();
        for stream in ["stdout", "stderr"] {
            state.positions.remove(&position_key(container_id, stream));
        }
    }

    pub fn acked(&self) -> u64 {
        self.state().spool.acked()
    }

    /// Records waiting for the host's acknowledgement, and records dropped past the bound since
    /// the agent started.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state();
        (
            state.spool.next_seq() - 1 - state.spool.acked(),
            state.dropped,
        )
    }
}

/// Follows the log of every running container into the spool, and of every container that
/// starts from now on (`on_event` is fed the node's Docker events).
pub struct LogCollector {
    docker: DockerNode,
    shipper: Arc<Shipper>,
    following: Mutex<HashSet<String>>,
    /// The name of the node's managed nginx container (its lines are marked `proxy`).
    proxy_container: Option<String>,
    /// Only containers with this label (`key`, `value`) are followed (all when none).
    only_label: Option<(String, String)>,
    /// Stopped containers whose log was read to its end since the agent started.
    drained: Mutex<HashSet<String>>,
}

impl LogCollector {
    pub fn new(
        docker: DockerNode,
        shipper: Arc<Shipper>,
        proxy_container: Option<String>,
        only_label: Option<(String, String)>,
    ) -> Arc<LogCollector> {
        Arc::new(LogCollector {
            docker,
            shipper,
            following: Mutex::new(HashSet::new()),
            proxy_container,
            only_label,
            drained: Mutex::new(HashSet::new()),
        })
    }

    /// Starts following every running container, and reads to its end the log of each stopped
    /// one that was being followed (it may have written more while the agent was down).
    pub async fn follow_running(self: &Arc<Self>) {
        match self.docker.all_containers().await {
            Ok(containers) => {
                for (id, name, project, running, labels) in containers {
                    if !self.wanted(&name, &labels) {
                        continue;
                    }
                    if !running
                        && (!self.shipper.has_position(&id)
                            || !self
                                .drained
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(id.clone()))
                    {
                        continue;
                    }
                    self.follow(id, name, project);
                }
            }
            Err(e) => eprintln!("logs: could not list the containers: {e}"),
        }
    }

    /// A Docker event: a container that starts is followed.
    pub fn on_event(self: &Arc<Self>, event: &DockerEvent) {
        if event.action == "destroy" {
            self.shipper.forget(&event.container_id);
        }
        if event.action == "start" && self.wanted(&event.container_name, &event.attributes) {
            let project = event
                .attributes
                .get("com.docker.compose.project")
                .cloned()
                .unwrap_or_default();
            self.follow(
                event.container_id.clone(),
                event.container_name.clone(),
                project,
            );
        }
    }

    /// Whether a container of this name with these labels (Docker events carry them as
    /// attributes) is followed: the managed nginx always is (its lines are the proxy hosts'
    /// requests), any other container if it carries the label asked for (or none was).
    fn wanted<'a>(
        &self,
        name: &str,
        labels: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> bool {
        if self.is_proxy(name) {
            return true;
        }
        let Some((key, value)) = &self.only_label else {
            return true;
        };
        labels.into_iter().any(|(k, v)| k == key && v == value)
    }

    fn is_proxy(&self, name: &str) -> bool {
        self.proxy_container
            .as_deref()
            .is_some_and(|p| p == name.trim_start_matches('/'))
    }

    fn follow(self: &Arc<Self>, id: String, name: String, project: String) {
        {
            let mut following = self.following.lock().unwrap_or_else(|e| e.into_inner());
            if !following.insert(id.clone()) {
                return;
            }
        }
        let collector = self.clone();
        let proxy = self.is_proxy(&name);
        tokio::spawn(async move {
            loop {
                let stdout = collector.shipper.position(&id, "stdout");
                let stderr = collector.shipper.position(&id, "stderr");
                // From the earlier of the two streams' positions (a stream never taken has
                // nothing before the other's).
                let since = stdout
                    .iter()
                    .chain(&stderr)
                    .map(|p| p.ns)
                    .min()
                    .unwrap_or(0);
                let mut seen_at_ns = [0u32; 2];
                let shipper = collector.shipper.clone();
                let result = collector
                    .docker
                    .follow_raw_logs(&id, since, |ns, stream, line| {
                        let (position, seen) = if stream == "stderr" {
                            (stderr.unwrap_or_default(), &mut seen_at_ns[1])
                        } else {
                            (stdout.unwrap_or_default(), &mut seen_at_ns[0])
                        };
                        if position.covers(ns, seen) {
                            return true;
                        }
                        let record = ContainerLogLine {
                            container_id: id.clone(),
                            container_name: name.clone(),
                            stream: stream.to_owned(),
                            time_unix_ns: ns,
                            line,
                            compose_project: project.clone(),
                            proxy,
                        };
                        match shipper.log_line(record) {
                            Ok(()) => true,
                            Err(e) => {
                                eprintln!("logs: could not spool a line of {id}: {e}");
                                false
                            }
                        }
                    })
                    .await;
                if let Err(e) = &result {
                    eprintln!("logs: following {id} ended: {e}");
                }
                // The stream ends when the container stops; if it still runs (Docker restarted,
                // a spool error), follow again from the position.
                tokio::time::sleep(Duration::from_millis(500)).await;
                if !collector.docker.is_running(&id).await {
                    break;
                }
            }
            collector
                .following
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
    }
}
