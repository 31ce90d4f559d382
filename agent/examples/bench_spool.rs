//! Figures for the agent's spool (docs/BENCHMARKS.md): appending log lines, replaying them after
//! a restart, acknowledging, and the memory the agent process holds meanwhile.
//!
//! Run: `cargo run --release -p infrapilot-agent --example bench_spool` (the spool lives under
//! `BENCH_DIR`, default `/var/tmp`; `BENCH_LINES`, default 2,000,000 lines of ~120 bytes).

use std::time::Instant;

use infrapilot_agent::spool::{RecordKind, Spool};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let lines: u64 = std::env::var("BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let dir =
        std::path::Path::new(&base).join(format!("infrapilot-bench-spool-{}", std::process::id()));
    let bound = infrapilot_agent::spool::DEFAULT_BOUND_BYTES;
    let rss_start = rss_kib();

    let mut spool = Spool::open(&dir, bound).expect("open");
    let line = |n: u64| {
        format!(
            "{{\"ts\":\"2026-12-06T12:00:00.{n:09}Z\",\"stream\":\"stdout\",\"line\":\"GET /api/items/{n} 200 12ms\"}}"
        )
    };
    let t = Instant::now();
    let mut bytes = 0u64;
    for n in 0..lines {
        let l = line(n);
        bytes += l.len() as u64;
        spool
            .append(RecordKind::LogLine, l.as_bytes())
            .expect("append");
    }
    spool.sync().expect("sync");
    let append = t.elapsed();
    let on_disk = spool.bytes();
    let rss_full = rss_kib();
    drop(spool);

    let t = Instant::now();
    let spool = Spool::open(&dir, bound).expect("reopen");
    let reopen = t.elapsed();
    let rss_reopened = rss_kib();

    // Replay as the session would after a reconnect: batches of 1,000 from the first
    // unacknowledged record, each acknowledged before the next is read.
    let mut spool = spool;
    let t = Instant::now();
    let mut replayed = 0u64;
    loop {
        let batch = spool.unacknowledged(1000, 1 << 20).expect("read");
        let Some(last) = batch.last() else { break };
        replayed += batch.len() as u64;
        let last = last.seq;
        spool.ack(last).expect("ack");
        if replayed > lines * 2 {
            panic!("replay does not end");
        }
    }
    let replay = t.elapsed();
    let rss_end = rss_kib();
    let _ = std::fs::remove_dir_all(&dir);

    let per_s = |n: u64, d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!(
        "lines: {lines} ({:.1} MiB of payload), bound {} MiB, on disk after appending {:.1} MiB",
        bytes as f64 / 1048576.0,
        bound >> 20,
        on_disk as f64 / 1048576.0
    );
    println!(
        "append (each line its own record, one sync at the end): {:.2} s, {:.0} lines/s",
        append.as_secs_f64(),
        per_s(lines, append)
    );
    println!(
        "reopen a full spool (every record's checksum checked): {:.2} s",
        reopen.as_secs_f64()
    );
    println!(
        "replay in batches of 1,000 with an ack after each: {replayed} records in {:.2} s, {:.0} records/s",
        replay.as_secs_f64(),
        per_s(replayed, replay)
    );
    println!(
        "RSS KiB: start {rss_start}, spool full {rss_full}, after reopen {rss_reopened}, after replay {rss_end}"
    );
}
