//! Figures for the log store (docs/BENCHMARKS.md, issue 17): ingest in spool-sized batches
//! (one transaction each, as the gateway stores them), then searches over what was stored —
//! text through the trigram index, a level, a container, the newest page — p50/p95/max.
//!
//! Run: `cargo run --release -p infrapilot-store --example bench_logs`
//! (`BENCH_LINES`, default 1,000,000; `BENCH_DATABASE_URL` for PostgreSQL, default a SQLite
//! file under `BENCH_DIR`, default `/var/tmp`).

use std::time::{Duration, Instant};

use infrapilot_store::{LogQuery, NewLogLine, OrgId, Store};

const BATCH: usize = 2000;
const DAY_NS: i64 = 86_400_000_000_000;

/// CPU time this process has used (user + system), from /proc/self/stat (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces), from the 3rd on.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are the 14th and 15th fields: 12th and 13th after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A line like a web service's: mostly requests, some warnings and errors, a unique id in each;
/// four of all `lines` carry a rare word (`canary-0` and `canary-1` once on each day).
fn line(n: u64, lines: u64) -> (String, Option<&'static str>) {
    for quarter in [1u64, 3] {
        let at = lines / 4 * quarter;
        if n == at + 5 || n == at + 6 {
            return (
                format!("WARN canary-{} seen at {n}", n - at - 5),
                Some("warn"),
            );
        }
    }
    match n % 50 {
        0 => (
            format!("ERROR payment {n} failed: upstream timed out after 30s order=ord-{n:x}"),
            Some("error"),
        ),
        1..=3 => (
            format!("WARN slow query took 1.{n}s table=orders id={n}"),
            Some("warn"),
        ),
        _ => (
            format!(
                "INFO GET /api/items/{n} 200 12ms user=u{} trace={n:016x}",
                n % 977
            ),
            Some("info"),
        ),
    }
}

#[tokio::main]
async fn main() {
    let lines: u64 = std::env::var("BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let dir =
        std::path::Path::new(&base).join(format!("infrapilot-bench-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.join("bench.db").display()));
    let store = Store::connect(&url, 4).await.expect("connect");
    let org = OrgId::default_org();
    let agent = "00000000-0000-4000-8000-0000000000aa";
    let containers: Vec<String> = (0..20).map(|i| format!("svc-{i}")).collect();
    // Spread over two days (partitions), about now.
    let start_ns = (infrapilot_store::now_ms() * 1_000_000) - DAY_NS;
    let step_ns = (2 * DAY_NS - 1_000_000_000) / lines.max(1) as i64;

    let t = Instant::now();
    let cpu_before = cpu_seconds();
    let mut seq = 0i64;
    let mut n = 0u64;
    while n < lines {
        let count = BATCH.min((lines - n) as usize);
        let texts: Vec<(String, Option<&str>)> =
            (n..n + count as u64).map(|i| line(i, lines)).collect();
        let times: Vec<i64> = (n..n + count as u64)
            .map(|i| start_ns + i as i64 * step_ns)
            .collect();
        store
            .prepare_log_days(times.iter().copied())
            .await
            .expect("days");
        let batch: Vec<NewLogLine> = texts
            .iter()
            .zip(&times)
            .enumerate()
            .map(|(i, ((text, level), time))| {
                seq += 1;
                let c = &containers[(n as usize + i) % containers.len()];
                NewLogLine {
                    agent_id: agent,
                    time_ns: *time,
                    seq,
                    container_id: c,
                    container_name: c,
                    compose_project: "shop",
                    stream: if level == &Some("error") {
                        "stderr"
                    } else {
                        "stdout"
                    },
                    level: *level,
                    line: text,
                    proxy_host_id: None,
                    status: None,
                }
            })
            .collect();
        let mut tx = store.write(&org).await.expect("tx");
        tx.insert_log_lines(&batch).await.expect("insert");
        tx.set_spool_committed(agent, 1, seq).await.expect("cursor");
        tx.commit().await.expect("commit");
        n += count as u64;
    }
    let ingest = t.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "ingest: {lines} lines in {:.1} s = {:.0} lines/s (batches of {BATCH}, one transaction each, trigram indexed); \
         {cpu:.1} CPU-s in this process = {:.0} lines per CPU-second (making the lines included; \
         a PostgreSQL server's own CPU not counted)",
        ingest.as_secs_f64(),
        lines as f64 / ingest.as_secs_f64(),
        lines as f64 / cpu.max(0.001)
    );

    if url.starts_with("postgres") {
        // What autovacuum does within a minute of a partition's first rows (the planner
        // otherwise takes the fresh partitions for empty and picks the time index).
        let pool = sqlx::PgPool::connect(&url).await.expect("pg");
        sqlx::query("ANALYZE log_lines")
            .execute(&pool)
            .await
            .expect("analyze");
        pool.close().await;
    }

    type Search = (&'static str, Box<dyn Fn(u64) -> LogQuery>);
    let searches: Vec<Search> = vec![
        (
            "text (a unique order id, trigram index)",
            Box::new(move |i| LogQuery {
                text: Some(format!("order=ord-{:x}", (i * 7919 * 50) % lines)),
                limit: 200,
                ..Default::default()
            }),
        ),
        (
            "text (a rare word, once a day, trigram index)",
            Box::new(|i| LogQuery {
                text: Some(format!("canary-{}", i % 2)),
                limit: 200,
                ..Default::default()
            }),
        ),
        (
            "text (a common word, first page)",
            Box::new(|_| LogQuery {
                text: Some("timed out".into()),
                limit: 200,
                ..Default::default()
            }),
        ),
        (
            "level = error, newest page",
            Box::new(|_| LogQuery {
                levels: vec!["error".into()],
                limit: 200,
                ..Default::default()
            }),
        ),
        (
            "one container, newest page",
            Box::new(|i| LogQuery {
                container: Some(format!("svc-{}", i % 20)),
                limit: 200,
                ..Default::default()
            }),
        ),
        (
            "newest page, no filter",
            Box::new(|_| LogQuery {
                limit: 200,
                ..Default::default()
            }),
        ),
    ];
    for (what, query) in &searches {
        let mut took = Vec::new();
        let mut found = 0;
        for i in 0..40u64 {
            let q = query(i);
            let t = Instant::now();
            let mut tx = store.read(&org).await.expect("tx");
            found += tx.query_logs(&q).await.expect("query").len();
            drop(tx);
            took.push(t.elapsed());
        }
        took.sort();
        println!(
            "search {what}: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} lines found in 40 queries)",
            percentile(&took, 0.5).as_secs_f64() * 1000.0,
            percentile(&took, 0.95).as_secs_f64() * 1000.0,
            took.last().unwrap().as_secs_f64() * 1000.0,
            found
        );
    }
    store.close().await;
    if url.starts_with("sqlite:") {
        let size: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        println!(
            "database on disk: {:.0} MiB",
            size as f64 / (1 << 20) as f64
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
