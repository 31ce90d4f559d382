//! The node's spool (issue 17): what the agent sends the host that must survive a disconnect, a
//! host outage or the agent's own crash — log lines and Docker events — waits here on disk until
//! the host says it committed it.
//!
//! Records get a per-agent sequence number, increasing without holes, and go into segment files
//! (`<first seq, 20 digits>.seg` in the spool directory) as `[length u32][crc32 u32][seq u64]
//! [kind u8][payload]` (little-endian; the checksum covers sequence, kind and payload). A segment
//! holds consecutive sequences only: a record that does not follow the last one starts a new
//! segment. The host acknowledges up to a sequence once it has stored everything up to it
//! (`spool.ack`, replaced atomically); segments entirely acknowledged are deleted, and after any
//! reconnect or restart the agent sends again from the first unacknowledged record — the host
//! drops what it has by (agent, spool epoch, sequence), so nothing is lost and nothing is counted
//! twice. Only records forced to disk are read out for sending, so a sequence the host may have
//! seen is never given to another record after a power loss; the epoch (`spool.id`, random,
//! made with the spool) keeps a spool made anew (its directory lost) apart from the old one.
//!
//! The spool is bounded (`bound_bytes`): when a new record would exceed it, the oldest segments
//! go even if unacknowledged, and a [`RecordKind::Gap`] record says exactly which sequences were
//! dropped, so the host can show the hole instead of hiding it. Opening a spool recovers from a
//! crash in the middle of a write: a torn, corrupt or out-of-order record ends its segment (what
//! follows in that segment is cut), numbering continues after the last good record, and
//! sequences missing at the front or between segments (a crash between the bound's deletion
//! and its gap record, a segment removed by hand) are named by a gap record. Recovery never
//! deletes a segment with data: one overlapping an earlier one is set aside as `.overlap`.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes before a record's payload: length, checksum, sequence, kind.
const HEADER: usize = 4 + 4 + 8 + 1;
/// A record's payload is at most this long (a log line is cut well before it), and at most what
/// fits in a segment beside a gap record.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The default bound of a spool.
pub const DEFAULT_BOUND_BYTES: u64 = 512 << 20;
/// The smallest bound a spool takes (segments of 1 KiB).
pub const MIN_BOUND_BYTES: u64 = 8 << 10;
/// The largest gap record: two 20-digit numbers and a space.
const GAP_RECORD: u64 = (HEADER + 41) as u64;
const ACK_FILE: &str = "spool.ack";
const ID_FILE: &str = "spool.id";
const LOCK_FILE: &str = "spool.lock";
const SEGMENT_SUFFIX: &str = ".seg";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a record of {len} bytes is longer than the spool takes ({max})")]
    TooLong { len: usize, max: usize },
    #[error("the spool's bound ({bound} bytes) is below the smallest it takes ({MIN_BOUND_BYTES})")]
    BoundTooSmall { bound: u64 },
    #[error("spool {path} is not usable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("spool {0} is in use by another process")]
    Locked(PathBuf),
    #[error("the spool stopped taking records after a write it could not undo: {0}")]
    Failed(String),
}

type Result<T> = std::result::Result<T, SpoolError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A container's or nginx's log line (the payload is the sender's encoding of it).
    LogLine,
    /// A Docker event.
    DockerEvent,
    /// Records dropped before the host had them: the payload is `<first seq> <last seq>` in
    /// ASCII.
    Gap,
}

impl RecordKind {
    fn byte(self) -> u8 {
        match self {
            RecordKind::LogLine => 1,
            RecordKind::DockerEvent => 2,
            RecordKind::Gap => 3,
        }
    }

    fn from_byte(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::LogLine),
            2 => Some(RecordKind::DockerEvent),
            3 => Some(RecordKind::Gap),
            _ => None,
        }
    }
}

/// One record as the spool gives it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub kind: RecordKind,
    pub payload: Vec<u8>,
}

fn parse_gap(payload: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (first, last) = text.split_once(' ')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

impl Record {
    /// For a [`RecordKind::Gap`]: the first and last dropped sequence.
    pub fn gap(&self) -> Option<(u64, u64)> {
        if self.kind != RecordKind::Gap {
            return None;
        }
        parse_gap(&self.payload)
    }
}

#[derive(Debug)]
struct Segment {
    /// `<first seq>.seg`.
    path: PathBuf,
    first_seq: u64,
    /// The last record's sequence; `first_seq - 1` while empty.
    last_seq: u64,
    bytes: u64,
    /// Holds a gap record.
    holds_gap: bool,
}

/// An open spool (one per agent; a lock file keeps a second process out).
pub struct Spool {
    dir: PathBuf,
    epoch: u64,
    bound_bytes: u64,
    segment_bytes: u64,
    max_payload: usize,
    segments: VecDeque<Segment>,
    writer: Option<File>,
    next_seq: u64,
    acked: u64,
    /// The last sequence the gap records in the spool name (gaps follow on from each other).
    named_through: u64,
    /// Records up to here are on disk for sure (read out for sending only up to here).
    synced: u64,
    /// Set when a write failed and could not be undone: the spool takes nothing more.
    failed: Option<String>,
    /// Where the last read ended: the next sequence, its segment and the byte it starts at.
    cursor: Option<(u64, PathBuf, u64)>,
    _lock: File,
}

fn encode(seq: u64, kind: RecordKind, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(9 + payload.len());
    body.extend_from_slice(&seq.to_le_bytes());
    body.push(kind.byte());
    body.extend_from_slice(payload);
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// What [`scan`] does after a record.
enum Scan {
    Next,
    Stop,
}

/// Reads the good records of a segment from byte `offset` on, one at a time through a small
/// buffer (a segment is never held in memory whole), handing each (sequence, kind, payload and
/// the offset after it) to `on_record` until it says stop. Returns the offset after the last
/// good record read (a torn or corrupt record, and everything after it, is not counted).
fn scan(
    path: &Path,
    offset: u64,
    limit: u64,
    mut on_record: impl FnMut(u64, RecordKind, &[u8], u64) -> Scan,
) -> Result<u64> {
    let mut file = File::open(path).map_err(io(path))?;
    if offset > 0 {
        file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    }
    let mut reader =
        std::io::BufReader::with_capacity(64 << 10, file.take(limit.saturating_sub(offset)));
    let mut at = offset;
    let mut header = [0u8; HEADER];
    let mut body = Vec::new();
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(at),
            Err(e) => return Err(io(path)(e)),
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_PAYLOAD {
            return Ok(at);
        }
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        body.clear();
        body.extend_from_slice(&header[8..]);
        body.resize(9 + len, 0);
        match reader.read_exact(&mut body[9..]) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(at),
            Err(e) => return Err(io(path)(e)),
        }
        if crc32fast::hash(&body) != crc {
            return Ok(at);
        }
        let Some(kind) = RecordKind::from_byte(body[8]) else {
            return Ok(at);
        };
        let seq = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
        let after = at + (HEADER + len) as u64;
        match on_record(seq, kind, &body[9..], after) {
            Scan::Next => at = after,
            Scan::Stop => return Ok(at),
        }
    }
}

/// `<20 digits>.seg` → the first sequence; anything else is not a segment.
fn segment_first_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|first| *first > 0)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Writes `text` to `name` in `dir` atomically (a temporary file forced to disk, then renamed,
/// the directory forced too).
pub(crate) fn replace_file(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(text.as_ref()).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

/// A number kept in a spool file; a file that is there but not a number is an error (guessing
/// could give a sequence to two records).
fn read_number(dir: &Path, name: &str) -> Result<Option<u64>> {
    let path = dir.join(name);
    match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| SpoolError::Corrupt {
                path,
                reason: format!("{name} does not hold a number"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

impl Spool {
    /// Opens (or makes) the spool in `dir`, bounded to `bound_bytes` on disk, recovering what a
    /// crash left: torn records cut, numbering continued after the last good one, missing
    /// sequences named by a gap record.
    pub fn open(dir: &Path, bound_bytes: u64) -> Result<Spool> {
        if bound_bytes < MIN_BOUND_BYTES {
            return Err(SpoolError::BoundTooSmall { bound: bound_bytes });
        }
        // Segments of an eighth of the bound (at most 16 MiB): dropping one for room loses
        // little, and acknowledged data goes soon.
        let segment_bytes = (bound_bytes / 8).min(16 << 20);
        let max_payload = (segment_bytes - HEADER as u64 - GAP_RECORD).min(MAX_PAYLOAD as u64);
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir.to_owned())),
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let acked = read_number(dir, ACK_FILE)?.unwrap_or(0);
        if acked == u64::MAX {
            return Err(SpoolError::Corrupt {
                path: dir.join(ACK_FILE),
                reason: "the acknowledgement is at the end of the numbering".into(),
            });
        }
        let mut firsts: Vec<u64> = fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|entry| segment_first_seq(&entry.ok()?.file_name().into_string().ok()?))
            .collect();
        firsts.sort_unstable();
        let epoch = match read_number(dir, ID_FILE)? {
            Some(epoch) => epoch,
            None if firsts.is_empty() && acked == 0 => {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes).map_err(|e| SpoolError::Corrupt {
                    path: dir.join(ID_FILE),
                    reason: format!("no randomness for the spool's epoch: {e}"),
                })?;
                // Never 0, which the host reads as "no spool".
                let epoch = (u64::from_le_bytes(bytes) >> 1).max(1);
                replace_file(dir, ID_FILE, epoch.to_string())?;
                epoch
            }
            None => {
                return Err(SpoolError::Corrupt {
                    path: dir.join(ID_FILE),
                    reason: "the spool has records but its epoch file is gone".into(),
                });
            }
        };
        let mut segments: VecDeque<Segment> = VecDeque::new();
        // Gap records already written (what they name needs no second one).
        let mut named: Vec<(u64, u64)> = Vec::new();
        // Records cut from the newest segment with data may have been sent before (a bit
        // flipped after they were): the highest sequence they may have had. A cut in an older
        // segment shows as a hole before the next one.
        let mut cut_through: Option<u64> = None;
        for first in firsts {
            let path = dir.join(format!("{first:020}{SEGMENT_SUFFIX}"));
            if segments.back().is_some_and(|s| first <= s.last_seq) {
                // Overlaps what came before (made by hand, or a clock of numbers gone back):
                // set aside, never read, never deleted.
                let aside = dir.join(format!("{first:020}{SEGMENT_SUFFIX}.overlap"));
                fs::rename(&path, &aside).map_err(io(&path))?;
                continue;
            }
            let size = fs::metadata(&path).map_err(io(&path))?.len();
            let mut last = first - 1;
            let mut holds_gap = false;
            let good = scan(&path, 0, size, |seq, kind, payload, _| {
                if seq != last.wrapping_add(1) {
                    return Scan::Stop;
                }
                last = seq;
                if kind == RecordKind::Gap
                    && let Some(range) = parse_gap(payload)
                {
                    named.push(range);
                    holds_gap = true;
                }
                Scan::Next
            })?;
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            if good < size {
                file.set_len(good).map_err(io(&path))?;
                // The cut bytes held at most this many records: their sequences are never
                // given again, and a gap names them.
                let cut_records = (size - good).div_ceil(HEADER as u64);
                cut_through = Some(last.saturating_add(cut_records));
            }
            // Whatever the agent wrote before it stopped is made durable before any of it is
            // sent again.
            file.sync_all().map_err(io(&path))?;
            if good == 0 {
                drop(file);
                fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            if good == size {
                cut_through = None;
            }
            segments.push_back(Segment {
                path,
                first_seq: first,
                last_seq: last,
                bytes: good,
                holds_gap,
            });
        }
        let used_through = segments
            .back()
            .map(|s| s.last_seq)
            .into_iter()
            .chain(cut_through)
            .fold(acked, u64::max);
        if used_through == u64::MAX {
            return Err(SpoolError::Corrupt {
                path: dir.to_owned(),
                reason: "the numbering reached its end".into(),
            });
        }
        let next_seq = used_through + 1;
        // Sequences after the acknowledgement that no segment holds: lost before they were sent
        // (the bound's deletion without its gap record, a segment removed by hand).
        let mut missing = Vec::new();
        let mut expected = acked + 1;
        for segment in &segments {
            if segment.first_seq > expected {
                missing.push((expected, segment.first_seq - 1));
            }
            expected = expected.max(segment.last_seq + 1);
        }
        if expected < next_seq {
            missing.push((expected, next_seq - 1));
        }
        let mut spool = Spool {
            dir: dir.to_owned(),
            epoch,
            bound_bytes,
            segment_bytes,
            max_payload: max_payload as usize,
            segments,
            writer: None,
            next_seq,
            acked,
            named_through: named.iter().map(|(_, last)| *last).max().unwrap_or(0),
            synced: next_seq - 1,
            failed: None,
            cursor: None,
            _lock: lock,
        };
        spool.drop_acknowledged()?;
        for (first, last) in missing {
            if !named.iter().any(|(a, b)| *a <= first && last <= *b) {
                spool.write_record(RecordKind::Gap, format!("{first} {last}").as_bytes())?;
            }
        }
        Ok(spool)
    }

    /// This spool's epoch: with the agent, the key the host keeps sequences under.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sequence the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The last sequence the host acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The longest payload this spool takes.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Bytes on disk now.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Appends a record; returns its sequence. When the bound would be exceeded, the oldest
    /// segments are dropped first and a gap record names what went unsent.
    pub fn append(&mut self, kind: RecordKind, payload: &[u8]) -> Result<u64> {
        if let Some(reason) = &self.failed {
            return Err(SpoolError::Failed(reason.clone()));
        }
        if payload.len() > self.max_payload {
            return Err(SpoolError::TooLong {
                len: payload.len(),
                max: self.max_payload,
            });
        }
        let size = (HEADER + payload.len()) as u64;
        let mut last_dropped = None;
        let mut dropped_a_gap = false;
        // Room for the record and for the gap record that may come before it.
        while self.bytes() + size + GAP_RECORD > self.bound_bytes && self.segments.len() > 1 {
            let oldest = self.segments.pop_front().expect("more than one segment");
            fs::remove_file(&oldest.path).map_err(io(&oldest.path))?;
            last_dropped = Some(oldest.last_seq);
            dropped_a_gap |= oldest.holds_gap;
        }
        // What went unsent is named by a gap record following on from the last one; if a gap
        // record went too, what it named is named again (from the acknowledgement on).
        if let Some(last) = last_dropped {
            let from = if dropped_a_gap {
                self.acked
            } else {
                self.acked.max(self.named_through)
            } + 1;
            if from <= last {
                self.write_record(RecordKind::Gap, format!("{from} {last}").as_bytes())?;
            }
        }
        self.write_record(kind, payload)
    }

    fn write_record(&mut self, kind: RecordKind, payload: &[u8]) -> Result<u64> {
        let seq = self.next_seq;
        let encoded = encode(seq, kind, payload);
        let roll = match self.segments.back() {
            None => true,
            Some(last) => {
                last.last_seq + 1 != seq
                    || (last.bytes > 0 && last.bytes + encoded.len() as u64 > self.segment_bytes)
            }
        };
        if roll {
            if let (Some(writer), Some(last)) = (self.writer.take(), self.segments.back()) {
                writer.sync_data().map_err(io(&last.path))?;
                self.synced = self.synced.max(last.last_seq);
            }
            let path = self.dir.join(format!("{seq:020}{SEGMENT_SUFFIX}"));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            sync_dir(&self.dir)?;
            self.writer = Some(file);
            self.segments.push_back(Segment {
                path,
                first_seq: seq,
                last_seq: seq - 1,
                bytes: 0,
                holds_gap: false,
            });
        }
        let segment = self.segments.back_mut().expect("a segment to write to");
        if self.writer.is_none() {
            self.writer = Some(
                OpenOptions::new()
                    .append(true)
                    .open(&segment.path)
                    .map_err(io(&segment.path))?,
            );
        }
        let writer = self.writer.as_mut().expect("opened above");
        if let Err(e) = writer.write_all(&encoded) {
            // Part of the record may be on disk (a full disk): cut it, so the segment ends at
            // its last whole record; if even that fails, take nothing more.
            if let Err(cut) = writer.set_len(segment.bytes) {
                self.failed = Some(format!("{}: {e}; then {cut}", segment.path.display()));
            }
            return Err(io(&segment.path)(e));
        }
        segment.bytes += encoded.len() as u64;
        segment.last_seq = seq;
        if kind == RecordKind::Gap
            && let Some((_, last)) = parse_gap(payload)
        {
            segment.holds_gap = true;
            self.named_through = self.named_through.max(last);
        }
        self.next_seq = seq + 1;
        Ok(seq)
    }

    /// Forces what was appended to the disk (the page cache already survives the agent's own
    /// crash; this is for the machine's). Reads for sending do it first.
    pub fn sync(&mut self) -> Result<()> {
        if self.synced + 1 >= self.next_seq {
            return Ok(());
        }
        if let (Some(writer), Some(segment)) = (&self.writer, self.segments.back()) {
            writer.sync_data().map_err(io(&segment.path))?;
        }
        self.synced = self.next_seq - 1;
        Ok(())
    }

    /// Up to `max_records` records (and about `max_bytes` of payload) from sequence `from` on,
    /// forced to disk first. Reading on from where the last read ended starts at that byte, not
    /// at the segment's beginning.
    pub fn read_from(
        &mut self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>> {
        self.sync()?;
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut cursor = None;
        for segment in self.segments.iter().filter(|s| s.last_seq >= from) {
            let offset = match &self.cursor {
                Some((seq, path, offset)) if *seq == from && *path == segment.path => *offset,
                _ => 0,
            };
            let mut full = false;
            scan(
                &segment.path,
                offset,
                segment.bytes,
                |seq, kind, payload, after| {
                    if seq < from {
                        return Scan::Next;
                    }
                    if out.len() >= max_records || (bytes > 0 && bytes + payload.len() > max_bytes)
                    {
                        full = true;
                        return Scan::Stop;
                    }
                    bytes += payload.len();
                    cursor = Some((seq + 1, segment.path.clone(), after));
                    out.push(Record {
                        seq,
                        kind,
                        payload: payload.to_vec(),
                    });
                    Scan::Next
                },
            )?;
            if full {
                break;
            }
        }
        if cursor.is_some() {
            self.cursor = cursor;
        }
        Ok(out)
    }

    /// The records the host has not acknowledged yet (from the first on).
    pub fn unacknowledged(&mut self, max_records: usize, max_bytes: usize) -> Result<Vec<Record>> {
        self.read_from(self.acked + 1, max_records, max_bytes)
    }

    /// The host committed everything up to `seq`: remembered (atomically), and segments it
    /// covers deleted. An acknowledgement for a sequence not written yet, or older than the
    /// last one, changes nothing.
    pub fn ack(&mut self, seq: u64) -> Result<()> {
        if seq <= self.acked || seq >= self.next_seq {
            return Ok(());
        }
        replace_file(&self.dir, ACK_FILE, seq.to_string())?;
        self.acked = seq;
        self.drop_acknowledged()
    }

    fn drop_acknowledged(&mut self) -> Result<()> {
        // The segment being written to stays.
        while self
            .segments
            .front()
            .is_some_and(|s| s.last_seq <= self.acked)
            && (self.segments.len() > 1 || self.writer.is_none())
        {
            let done = self.segments.pop_front().expect("checked above");
            fs::remove_file(&done.path).map_err(io(&done.path))?;
        }
        Ok(())
    }

    /// The segment files, oldest first (for tests and the agent's status).
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }
}

/// Appends raw bytes to a segment file (tests of crash recovery use it to tear a record).
#[cfg(test)]
fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: u64) -> Vec<u8> {
        format!("line {n}").into_bytes()
    }

    fn seqs(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn records_are_numbered_read_back_and_acknowledged_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
        for n in 1..=1000 {
            assert_eq!(spool.append(RecordKind::LogLine, &line(n)).unwrap(), n);
        }
        let segments = spool.segment_paths().len();
        assert!(segments > 2, "{segments} segments");
        let first = spool.unacknowledged(10, 1 << 20).unwrap();
        assert_eq!(seqs(&first), (1..=10).collect::<Vec<_>>());
        assert_eq!(first[3].payload, line(4));
        spool.ack(900).unwrap();
        assert!(spool.segment_paths().len() < segments);
        let rest = spool.unacknowledged(1000, 1 << 20).unwrap();
        assert_eq!(seqs(&rest), (901..=1000).collect::<Vec<_>>());
        // Acknowledgements that go back, or ahead of what was written, change nothing.
        spool.ack(10).unwrap();
        spool.ack(5000).unwrap();
        assert_eq!(spool.acked(), 900);
    }

    #[test]
    fn batches_read_on_from_where_the_last_ended_and_any_sequence_can_be_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
        for n in 1..=1000 {
            spool.append(RecordKind::LogLine, &line(n)).unwrap();
        }
        let mut seen = Vec::new();
        loop {
            let batch = spool.unacknowledged(7, 1 << 20).unwrap();
            let Some(last) = batch.last().map(|r| r.seq) else {
                break;
            };
            for r in &batch {
                assert_eq!(r.payload, line(r.seq));
            }
            seen.extend(seqs(&batch));
            spool.ack(last).unwrap();
        }
        assert_eq!(seen, (1..=1000).collect::<Vec<_>>());
        // Not where the last read ended: read from the segment's start.
        let again = spool.read_from(995, 100, 1 << 20).unwrap();
        assert_eq!(seqs(&again), (995..=1000).collect::<Vec<_>>());
        // A payload bound stops a batch (but never before its first record).
        let one = spool.read_from(998, 100, 1).unwrap();
        assert_eq!(seqs(&one), vec![998]);
    }

    #[test]
    fn a_restart_continues_the_numbering_and_resends_from_the_acknowledgement() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
            for n in 1..=500 {
                spool.append(RecordKind::LogLine, &line(n)).unwrap();
            }
            spool.ack(123).unwrap();
        }
        let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
        assert_eq!(spool.acked(), 123);
        assert_eq!(spool.next_seq(), 501);
        let again = spool.unacknowledged(10_000, 1 << 20).unwrap();
        assert_eq!(seqs(&again), (124..=500).collect::<Vec<_>>());
        assert_eq!(spool.append(RecordKind::DockerEvent, b"{}").unwrap(), 501);
        // Everything acknowledged, then a restart: the numbering still goes on.
        spool.ack(501).unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
        assert_eq!(spool.next_seq(), 502);
        assert!(spool.unacknowledged(10, 1 << 20).unwrap().is_empty());
    }

    #[test]
    fn a_torn_or_corrupt_record_ends_its_segment_at_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let last_segment = {
            let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
            for n in 1..=20 {
                spool.append(RecordKind::LogLine, &line(n)).unwrap();
            }
            spool.segment_paths().last().unwrap().clone()
        };
        // A crash in the middle of record 21: half of it on disk. Its sequence is never given
        // again (it may have been a line the host saw); a gap names it.
        let torn = encode(21, RecordKind::LogLine, &line(21));
        append_raw(&last_segment, &torn[..torn.len() / 2]);
        let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
        assert_eq!(spool.next_seq(), 23, "21 cut, 22 the gap record");
        assert_eq!(spool.append(RecordKind::LogLine, &line(21)).unwrap(), 23);
        let all = spool.unacknowledged(100, 1 << 20).unwrap();
        assert_eq!(seqs(&all), (1..=20).chain([22, 23]).collect::<Vec<_>>());
        assert_eq!(all[20].gap(), Some((21, 21)));
        assert_eq!(all[21].payload, line(21));
        drop(spool);
        // A flipped bit in record 5: it and what follows in the segment are cut, and none of
        // their sequences comes back.
        let mut bytes = fs::read(&last_segment).unwrap();
        let at = (0..4)
            .map(|n| encode(n + 1, RecordKind::LogLine, &line(n + 1)).len())
            .sum::<usize>();
        bytes[at + HEADER] ^= 0x20;
        fs::write(&last_segment, &bytes).unwrap();
        let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
        let all = spool.unacknowledged(100, 1 << 20).unwrap();
        // 21's gap record and the line after it began a segment of their own (22 does not
        // follow 20); the cut 5..=20 is a hole before it, named by a gap of its own.
        assert_eq!(seqs(&all), vec![1, 2, 3, 4, 22, 23, 24]);
        assert_eq!(all[6].gap(), Some((5, 21)));
        assert!(spool.next_seq() > 23);
    }

    #[test]
    fn an_acknowledgement_ahead_of_the_data_never_reuses_a_sequence() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
            for n in 1..=10 {
                spool.append(RecordKind::LogLine, &line(n)).unwrap();
            }
        }
        // The host had acknowledged up to 50 (data lost with the machine, or a restored
        // backup): nothing up to 50 is numbered again, now or after the next restart.
        fs::write(dir.path().join(ACK_FILE), "50").unwrap();
        let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
        assert_eq!(spool.next_seq(), 51);
        assert!(spool.unacknowledged(100, 1 << 20).unwrap().is_empty());
        assert!(spool.segment_paths().is_empty(), "acknowledged data stays");
        assert_eq!(spool.append(RecordKind::LogLine, &line(51)).unwrap(), 51);
        drop(spool);
        let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
        let again = spool.unacknowledged(100, 1 << 20).unwrap();
        assert_eq!(seqs(&again), vec![51]);
        assert_eq!(spool.append(RecordKind::LogLine, &line(52)).unwrap(), 52);
    }

    fn filled(dir: &Path, lines: u64) -> Vec<PathBuf> {
        let mut spool = Spool::open(dir, 64 << 10).unwrap();
        for n in 1..=lines {
            spool.append(RecordKind::LogLine, &line(n)).unwrap();
        }
        spool.segment_paths()
    }

    fn first_of(path: &Path) -> u64 {
        segment_first_seq(path.file_name().unwrap().to_str().unwrap()).unwrap()
    }

    #[test]
    fn a_segment_lost_in_the_middle_is_named_by_one_gap_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let segments = filled(dir.path(), 2000);
        assert!(segments.len() > 3);
        let (hole_first, hole_last) = (first_of(&segments[1]), first_of(&segments[2]) - 1);
        fs::remove_file(&segments[1]).unwrap();
        for _ in 0..2 {
            // Twice: the gap written at the first open is not written again.
            let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
            let all = spool.unacknowledged(10_000, 1 << 30).unwrap();
            let lines: Vec<u64> = all
                .iter()
                .filter(|r| r.kind == RecordKind::LogLine)
                .map(|r| r.seq)
                .collect();
            let expected: Vec<u64> = (1..hole_first).chain(hole_last + 1..=2000).collect();
            assert_eq!(lines, expected);
            let gaps: Vec<_> = all.iter().filter_map(Record::gap).collect();
            assert_eq!(gaps, vec![(hole_first, hole_last)]);
            assert_eq!(spool.next_seq(), 2002);
        }
    }

    #[test]
    fn records_lost_at_the_front_without_their_gap_get_one_at_open() {
        // The agent killed between the bound's deletion of the oldest segment and its gap record.
        let dir = tempfile::tempdir().unwrap();
        let segments = filled(dir.path(), 2000);
        let lost_last = first_of(&segments[1]) - 1;
        fs::remove_file(&segments[0]).unwrap();
        let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
        let all = spool.unacknowledged(10_000, 1 << 30).unwrap();
        assert_eq!(all[0].seq, lost_last + 1);
        assert_eq!(all.last().unwrap().gap(), Some((1, lost_last)));
        // Acknowledged up to the middle of what was lost: the gap names only the rest.
        drop(spool);
        let dir = tempfile::tempdir().unwrap();
        let segments = filled(dir.path(), 2000);
        let lost_last = first_of(&segments[1]) - 1;
        fs::write(dir.path().join(ACK_FILE), "10").unwrap();
        fs::remove_file(&segments[0]).unwrap();
        let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
        let all = spool.unacknowledged(10_000, 1 << 30).unwrap();
        assert_eq!(all.last().unwrap().gap(), Some((11, lost_last)));
    }

    #[test]
    fn files_that_are_not_the_spools_own_are_refused_or_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let segments = filled(dir.path(), 2000);
        // Names not of 20 digits are not segments (and are not touched).
        fs::write(dir.path().join("1.seg"), b"junk").unwrap();
        fs::write(dir.path().join("abc.seg"), b"junk").unwrap();
        // A copy of a segment under a name inside an earlier one's range: set aside, not read.
        let inside = first_of(&segments[1]) + 3;
        let overlap = dir.path().join(format!("{inside:020}.seg"));
        fs::copy(&segments[2], &overlap).unwrap();
        {
            let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
            let all = spool.unacknowledged(10_000, 1 << 30).unwrap();
            assert_eq!(seqs(&all), (1..=2000).collect::<Vec<_>>());
            // A second process on the same spool is refused.
            assert!(matches!(
                Spool::open(dir.path(), 64 << 10),
                Err(SpoolError::Locked(_))
            ));
            // A payload that would not fit in a segment beside a gap record.
            let too_long = vec![b'x'; spool.max_payload() + 1];
            assert!(matches!(
                spool.append(RecordKind::LogLine, &too_long),
                Err(SpoolError::TooLong { .. })
            ));
        }
        assert!(dir.path().join("1.seg").exists() && dir.path().join("abc.seg").exists());
        assert!(!overlap.exists());
        assert!(
            dir.path()
                .join(format!("{inside:020}.seg.overlap"))
                .exists()
        );
        // An acknowledgement that is not a number, or records without their epoch: an error,
        // never a guess.
        fs::write(dir.path().join(ACK_FILE), "12x").unwrap();
        assert!(matches!(
            Spool::open(dir.path(), 64 << 10),
            Err(SpoolError::Corrupt { .. })
        ));
        fs::write(dir.path().join(ACK_FILE), "12").unwrap();
        let epoch = Spool::open(dir.path(), 64 << 10).unwrap().epoch();
        assert_eq!(Spool::open(dir.path(), 64 << 10).unwrap().epoch(), epoch);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Spool::open(other.path(), 64 << 10).unwrap().epoch(), epoch);
        fs::remove_file(dir.path().join(ID_FILE)).unwrap();
        assert!(matches!(
            Spool::open(dir.path(), 64 << 10),
            Err(SpoolError::Corrupt { .. })
        ));
    }

    #[test]
    fn the_bound_drops_the_oldest_and_a_gap_names_exactly_what_went() {
        let dir = tempfile::tempdir().unwrap();
        let bound = 16 << 10;
        let mut spool = Spool::open(dir.path(), bound).unwrap();
        let mut seq_of_line = Vec::new();
        for n in 1..=2000u64 {
            seq_of_line.push((n, spool.append(RecordKind::LogLine, &line(n)).unwrap()));
            assert!(spool.bytes() <= bound, "{} bytes after {n}", spool.bytes());
        }
        let kept = spool.unacknowledged(100_000, 1 << 30).unwrap();
        let gaps: Vec<(u64, u64)> = kept.iter().filter_map(Record::gap).collect();
        assert!(!gaps.is_empty(), "no gap recorded");
        let in_gap = |seq: u64| gaps.iter().any(|(a, b)| (*a..=*b).contains(&seq));
        // Every line is either still in the spool under its sequence, or its sequence is named
        // by a gap — never both, never neither.
        for (n, seq) in &seq_of_line {
            let kept_here = kept
                .iter()
                .any(|r| r.seq == *seq && r.kind == RecordKind::LogLine && r.payload == line(*n));
            assert!(
                kept_here != in_gap(*seq),
                "line {n} (seq {seq}): kept {kept_here}, in a gap {}",
                in_gap(*seq)
            );
        }
        assert!(in_gap(1), "the oldest went");
        // Each gap follows on from the one before it, or (when that one's record was dropped
        // too) starts again at the acknowledgement.
        for pair in gaps.windows(2) {
            assert!(
                pair[1].0 == pair[0].1 + 1 || pair[1].0 == 1,
                "gaps {:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
        assert!(kept.iter().any(|r| r.payload == line(2000)));
        // What the gaps name counts as handled; a restart keeps all of it.
        drop(spool);
        let mut spool = Spool::open(dir.path(), bound).unwrap();
        assert_eq!(spool.unacknowledged(100_000, 1 << 30).unwrap(), kept);
        drop(spool);
        assert!(matches!(
            Spool::open(dir.path(), 100),
            Err(SpoolError::BoundTooSmall { .. })
        ));
    }
}
