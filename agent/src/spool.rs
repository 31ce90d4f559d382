//! The node's spool (issue 17): what the agent sends the host that must survive a disconnect, a
//! host outage or the agent's own crash — log lines and Docker events — waits here on disk until
//! the host says it committed it.
//!
//! Records get a per-agent sequence number, increasing without holes, and go into segment files
//! (`<first seq>.seg` in the spool directory) as `[length u32][crc32 u32][seq u64][kind u8]
//! [payload]` (little-endian; the checksum covers sequence, kind and payload). The host
//! acknowledges up to a sequence once it has stored everything up to it (`spool.ack`, replaced
//! atomically); segments entirely acknowledged are deleted, and after any reconnect or restart
//! the agent sends again from the first unacknowledged record — the host drops what it has by
//! (agent, sequence), so nothing is lost and nothing is counted twice.
//!
//! The spool is bounded (`bound_bytes`): when a new record would exceed it, the oldest segments
//! go even if unacknowledged, and a [`RecordKind::Gap`] record says exactly which sequences were
//! dropped, so the host can show the hole instead of hiding it. Opening a spool recovers from a
//! crash in the middle of a write: a torn or corrupt record ends its segment (what follows in that
//! segment is cut), and numbering continues after the last good record.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes before a record's payload: length, checksum, sequence, kind.
const HEADER: usize = 4 + 4 + 8 + 1;
/// A record's payload is at most this long (a log line is cut well before it).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The default bound of a spool.
pub const DEFAULT_BOUND_BYTES: u64 = 512 << 20;
const ACK_FILE: &str = "spool.ack";
const SEGMENT_SUFFIX: &str = ".seg";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a record of {0} bytes is longer than the spool takes ({MAX_PAYLOAD})")]
    TooLong(usize),
    #[error("the spool's bound ({bound} bytes) is smaller than two segments of {segment} bytes")]
    BoundTooSmall { bound: u64, segment: u64 },
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
    /// Records dropped by the bound before the host had them: the payload is
    /// `<first seq> <last seq>` in ASCII.
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

impl Record {
    /// For a [`RecordKind::Gap`]: the first and last dropped sequence.
    pub fn gap(&self) -> Option<(u64, u64)> {
        if self.kind != RecordKind::Gap {
            return None;
        }
        let text = std::str::from_utf8(&self.payload).ok()?;
        let (first, last) = text.split_once(' ')?;
        Some((first.parse().ok()?, last.parse().ok()?))
    }
}

#[derive(Debug)]
struct Segment {
    /// `<first seq>.seg`.
    path: PathBuf,
    /// The last record's sequence; one below the first while empty.
    last_seq: u64,
    bytes: u64,
}

/// An open spool (one per agent; not shared between processes).
pub struct Spool {
    dir: PathBuf,
    bound_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    writer: Option<File>,
    next_seq: u64,
    acked: u64,
    /// Where the last read ended: the next sequence, its segment and the byte it starts at.
    cursor: Option<(u64, PathBuf, u64)>,
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

/// Reads the good records of a segment from byte `offset` on, one at a time through a small
/// buffer (a segment is never held in memory whole), handing each with the offset after it to
/// `on_record` until it returns false. Returns the offset after the last good record read (a
/// torn or corrupt record, and everything after it, is not counted).
fn scan(
    path: &Path,
    offset: u64,
    limit: u64,
    mut on_record: impl FnMut(Record, u64) -> bool,
) -> Result<u64> {
    let mut file = File::open(path).map_err(io(path))?;
    if offset > 0 {
        file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    }
    let mut reader = std::io::BufReader::with_capacity(64 << 10, file.take(limit - offset));
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
        at += (HEADER + len) as u64;
        let record = Record {
            seq: u64::from_le_bytes(body[..8].try_into().expect("8 bytes")),
            kind,
            payload: body[9..].to_vec(),
        };
        if !on_record(record, at) {
            return Ok(at);
        }
    }
}

impl Spool {
    /// Opens (or makes) the spool in `dir`, bounded to `bound_bytes` on disk, recovering what a
    /// crash left: torn records cut, numbering continued after the last good one.
    pub fn open(dir: &Path, bound_bytes: u64) -> Result<Spool> {
        // Segments of an eighth of the bound (at most 16 MiB): dropping one for room loses
        // little, and acknowledged data goes soon.
        let segment_bytes = (bound_bytes / 8).min(16 << 20);
        if segment_bytes < (HEADER + 1) as u64 || bound_bytes < 2 * segment_bytes {
            return Err(SpoolError::BoundTooSmall {
                bound: bound_bytes,
                segment: segment_bytes,
            });
        }
        fs::create_dir_all(dir).map_err(io(dir))?;
        let acked = match fs::read_to_string(dir.join(ACK_FILE)) {
            Ok(text) => text.trim().parse().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(&dir.join(ACK_FILE))(e)),
        };
        let mut firsts: Vec<u64> = fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut segments = VecDeque::new();
        let mut expected: Option<u64> = None;
        for first in firsts {
            let path = dir.join(format!("{first:020}{SEGMENT_SUFFIX}"));
            let size = fs::metadata(&path).map_err(io(&path))?.len();
            let mut last = first.saturating_sub(1);
            let mut in_order = true;
            let good = scan(&path, 0, size, |r, _| {
                in_order = r.seq == last + 1;
                if in_order {
                    last = r.seq;
                }
                in_order
            })?;
            if !in_order || expected.is_some_and(|e| e != first) {
                // Not a continuation of what came before (a segment lost or made by hand): the
                // spool keeps what it has up to here and starts anew after it.
                fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            if good < size {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                file.set_len(good).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
            }
            expected = Some(last + 1);
            segments.push_back(Segment {
                path,
                last_seq: last,
                bytes: good,
            });
        }
        let next_seq = expected.unwrap_or(acked + 1).max(acked + 1);
        let mut spool = Spool {
            dir: dir.to_owned(),
            bound_bytes,
            segment_bytes,
            segments,
            writer: None,
            next_seq,
            acked,
            cursor: None,
        };
        spool.drop_acknowledged()?;
        Ok(spool)
    }

    /// The sequence the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The last sequence the host acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Bytes on disk now.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Appends a record; returns its sequence. When the bound would be exceeded, the oldest
    /// segments are dropped first and a gap record names what went unsent.
    pub fn append(&mut self, kind: RecordKind, payload: &[u8]) -> Result<u64> {
        if payload.len() > MAX_PAYLOAD {
            return Err(SpoolError::TooLong(payload.len()));
        }
        let size = (HEADER + payload.len()) as u64;
        let mut last_dropped = None;
        // Room for the record and for the gap record that may follow it.
        while self.bytes() + size + (HEADER as u64 + 41) > self.bound_bytes
            && self.segments.len() > 1
        {
            let oldest = self.segments.pop_front().expect("more than one segment");
            fs::remove_file(&oldest.path).map_err(io(&oldest.path))?;
            last_dropped = Some(oldest.last_seq);
        }
        // Everything unacknowledged up to the last dropped record is gone now (including what
        // earlier gap records named, if they went too): one gap record names it all, in order.
        if let Some(last) = last_dropped.filter(|last| *last > self.acked) {
            self.write_record(
                RecordKind::Gap,
                format!("{} {last}", self.acked + 1).as_bytes(),
            )?;
        }
        self.write_record(kind, payload)
    }

    fn write_record(&mut self, kind: RecordKind, payload: &[u8]) -> Result<u64> {
        let seq = self.next_seq;
        let encoded = encode(seq, kind, payload);
        let roll = match self.segments.back() {
            None => true,
            Some(last) => last.bytes > 0 && last.bytes + encoded.len() as u64 > self.segment_bytes,
        };
        if roll {
            self.writer = None;
            let path = self.dir.join(format!("{seq:020}{SEGMENT_SUFFIX}"));
            self.segments.push_back(Segment {
                path,
                last_seq: seq - 1,
                bytes: 0,
            });
        }
        let segment = self.segments.back_mut().expect("a segment to write to");
        if self.writer.is_none() {
            self.writer = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&segment.path)
                    .map_err(io(&segment.path))?,
            );
        }
        let writer = self.writer.as_mut().expect("opened above");
        writer.write_all(&encoded).map_err(io(&segment.path))?;
        segment.bytes += encoded.len() as u64;
        segment.last_seq = seq;
        self.next_seq = seq + 1;
        Ok(seq)
    }

    /// Forces what was appended to the disk (the page cache already survives the agent's own
    /// crash; this is for the machine's).
    pub fn sync(&mut self) -> Result<()> {
        if let (Some(writer), Some(segment)) = (&self.writer, self.segments.back()) {
            writer.sync_data().map_err(io(&segment.path))?;
        }
        Ok(())
    }

    /// Up to `max_records` records (and about `max_bytes` of payload) from sequence `from` on.
    /// Reading on from where the last read ended starts at that byte, not at the segment's
    /// beginning.
    pub fn read_from(
        &mut self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut cursor = None;
        for segment in self.segments.iter().filter(|s| s.last_seq >= from) {
            let offset = match &self.cursor {
                Some((seq, path, offset)) if *seq == from && *path == segment.path => *offset,
                _ => 0,
            };
            let mut full = false;
            scan(&segment.path, offset, segment.bytes, |r, after| {
                if r.seq < from {
                    return true;
                }
                if out.len() >= max_records || (bytes > 0 && bytes + r.payload.len() > max_bytes) {
                    full = true;
                    return false;
                }
                bytes += r.payload.len();
                cursor = Some((r.seq + 1, segment.path.clone(), after));
                out.push(r);
                true
            })?;
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
        self.acked = seq;
        let path = self.dir.join(ACK_FILE);
        let tmp = self.dir.join(format!("{ACK_FILE}.tmp"));
        {
            let mut file = File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(seq.to_string().as_bytes())
                .map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.drop_acknowledged()
    }

    fn drop_acknowledged(&mut self) -> Result<()> {
        // The newest segment stays (it is being written to).
        while self.segments.len() > 1
            && self
                .segments
                .front()
                .is_some_and(|s| s.last_seq <= self.acked)
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
        // A crash in the middle of record 21: half of it on disk.
        let torn = encode(21, RecordKind::LogLine, &line(21));
        append_raw(&last_segment, &torn[..torn.len() / 2]);
        let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
        assert_eq!(spool.next_seq(), 21);
        assert_eq!(spool.append(RecordKind::LogLine, &line(21)).unwrap(), 21);
        let all = spool.unacknowledged(100, 1 << 20).unwrap();
        assert_eq!(seqs(&all), (1..=21).collect::<Vec<_>>());
        assert_eq!(all[20].payload, line(21));
        drop(spool);
        // A flipped bit in record 5: it and what follows in the segment are cut.
        let mut bytes = fs::read(&last_segment).unwrap();
        let at = (0..4)
            .map(|n| encode(n + 1, RecordKind::LogLine, &line(n + 1)).len())
            .sum::<usize>();
        bytes[at + HEADER] ^= 0x20;
        fs::write(&last_segment, &bytes).unwrap();
        let mut spool = Spool::open(dir.path(), 64 << 10).unwrap();
        assert_eq!(
            seqs(&spool.unacknowledged(100, 1 << 20).unwrap()),
            vec![1, 2, 3, 4]
        );
        assert_eq!(spool.next_seq(), 5);
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
        assert!(kept.iter().any(|r| r.payload == line(2000)));
        // What the gaps name counts as handled; a restart keeps all of it.
        drop(spool);
        let mut spool = Spool::open(dir.path(), bound).unwrap();
        assert_eq!(spool.unacknowledged(100_000, 1 << 30).unwrap(), kept);
        assert!(
            Spool::open(dir.path(), 100).is_err(),
            "a bound below two segments"
        );
    }
}
