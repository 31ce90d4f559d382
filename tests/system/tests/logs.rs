//! Unified logs through the node's spool (issue 17), on the real engine: a container writes
//! numbered lines while its agent is killed with SIGKILL and the host is killed and restarted;
//! at the end every line is stored exactly once. With a tiny spool bound and the host away, the
//! node drops old lines and the gap it records names exactly the sequences that are missing.
//! With the ClickHouse log sink the lines land in ClickHouse exactly once, through agent kills
//! and a ClickHouse outage the node's session outlives.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Every stored line matching `filter` (e.g. `container=<id>`), oldest first, through the
/// API's pages.
async fn stored_lines(admin: &Api, filter: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let mut path = format!("/api/v1/logs?{filter}&order=oldest&limit=1000");
        if !cursor.is_empty() {
            path += &format!("&cursor={cursor}");
        }
        let (status, page) = admin.call("GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return out,
        }
    }
}

/// The numbers of `n=<number>` lines, with how often each was stored.
fn numbers(lines: &[Value]) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        if let Some(n) = line["line"]
            .as_str()
            .and_then(|l| l.strip_prefix("n="))
            .and_then(|n| n.parse().ok())
        {
            *counts.entry(n).or_default() += 1;
        }
    }
    counts
}

/// A number from a seeded xorshift: the kill moments, reproducible from the printed seed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The chaos test of issue 17: a container writes about 1,000 numbered lines a second while its
/// agent is killed with SIGKILL `INFRAPILOT_CHAOS_KILLS` times (default 20) at random moments,
/// and the host is killed halfway and kept down for `INFRAPILOT_CHAOS_OUTAGE_SECONDS` (default
/// 60) while the kills go on; at the end every line is stored exactly once.
/// `scripts/chaos-logs.sh` runs the longer version (100 kills, a 10-minute outage).
#[tokio::test(flavor = "multi_thread")]
async fn lines_survive_agent_kills_and_a_host_restart_exactly_once() {
    let Some(docker) = docker().await else { return };
    let mut fx = Fixture::new(docker, "logs");
    let mut server = Server::start(false, 2).await;
    let admin = server.admin().await;
    let collect = fx.log_label();
    let only = [("INFRAPILOT_AGENT_LOG_LABEL", collect.as_str())];
    let (state, mut agent) = enrolled_agent_with(&server, &admin, "node-logs", &only).await;
    let agent_id = admin.online_agent("node-logs").await;
    let kills = env_number("INFRAPILOT_CHAOS_KILLS", 20);
    let outage = Duration::from_secs(env_number("INFRAPILOT_CHAOS_OUTAGE_SECONDS", 60));
    let mut seed = env_number(
        "INFRAPILOT_CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    eprintln!(
        "chaos: {kills} kills, {} s outage, seed {seed}",
        outage.as_secs()
    );
    // Written for the whole run: about 1,000 lines a second, then an error on stderr.
    let lines_total = 1000 * (kills * 2 + outage.as_secs() + 5);
    let script = format!(
        "i=0; while [ $i -lt {lines_total} ]; do echo \"n=$i\"; i=$((i+1)); \
         [ $((i % 100)) -eq 0 ] && sleep 0.1; done; echo 'ERROR disk on fire' >&2; sleep 3600"
    );
    let container = fx.run("writer", &script, &[], &[], None).await;
    let started = std::time::Instant::now();
    let mut host_back_at = None;
    for n in 0..kills {
        // 0.2–2 s apart, at random.
        let pause = 200 + next_random(&mut seed) % 1800;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        agent.kill().unwrap();
        agent.wait().unwrap();
        if n == kills / 2 {
            server.kill9();
            host_back_at = Some(std::time::Instant::now() + outage);
        }
        if host_back_at.is_some_and(|at| std::time::Instant::now() >= at) {
            server.restart().await;
            host_back_at = None;
        }
        tokio::time::sleep(Duration::from_millis(100 + next_random(&mut seed) % 400)).await;
        agent = run_agent(&state, &only);
    }
    if let Some(at) = host_back_at {
        tokio::time::sleep(at.saturating_duration_since(std::time::Instant::now())).await;
        server.restart().await;
    }
    eprintln!("chaos: done after {:.0} s", started.elapsed().as_secs_f64());
    let lines = eventually(
        "every numbered line stored",
        Duration::from_secs(240),
        || {
            let (admin, container) = (admin.clone(), container.clone());
            async move {
                let lines = stored_lines(&admin, &format!("container={container}")).await;
                let stderr = lines.iter().any(|l| l["stream"] == "stderr");
                (numbers(&lines).len() as u64 == lines_total && stderr).then_some(lines)
            }
        },
    )
    .await;
    let counts = numbers(&lines);
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        (0..lines_total).collect::<Vec<_>>()
    );
    assert_eq!(
        lines.len() as u64,
        lines_total + 1,
        "the numbered lines and the error"
    );
    // Oldest first means in the order written; each line carries its node and sequence.
    let order: Vec<u64> = numbers(&lines[..10]).keys().copied().collect();
    assert_eq!(order, (0..10).collect::<Vec<_>>());
    assert!(lines.iter().all(|l| l["agent_id"] == agent_id.as_str()));
    let seqs: BTreeSet<i64> = lines.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs.len(), lines.len(), "one sequence per line");

    // Filters: text (the trigram index), level, stream, newest first with pages.
    let (status, found) = admin
        .call(
            "GET",
            &format!("/api/v1/logs?container={container}&q=n%3D4242&limit=1000"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let mut texts: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    texts.sort();
    // Every line containing "n=4242": it, n=42420…, n=424200… as far as they were written.
    let mut expected: Vec<String> = (0..lines_total)
        .map(|n| format!("n={n}"))
        .filter(|t| t.starts_with("n=4242"))
        .collect();
    expected.sort();
    assert_eq!(texts, expected);
    let (_, errors) = admin
        .call(
            "GET",
            &format!("/api/v1/logs?agent={agent_id}&level=error"),
            None,
        )
        .await;
    assert_eq!(errors["items"].as_array().unwrap().len(), 1, "{errors}");
    assert_eq!(errors["items"][0]["line"], "ERROR disk on fire");
    assert_eq!(errors["items"][0]["stream"], "stderr");
    let (_, newest) = admin
        .call(
            "GET",
            &format!("/api/v1/logs?container={container}&stream=stdout&limit=3"),
            None,
        )
        .await;
    let newest: Vec<&str> = newest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    let last = |k: u64| format!("n={}", lines_total - k);
    assert_eq!(newest, vec![last(1), last(2), last(3)]);
    // The CSV export of exactly these filters, read with Python's csv module; cells a
    // spreadsheet would run as formulas are neutralised.
    let formulas = fx
        .run(
            "formulas",
            "printf '%s\\n' '=1+2' '+SUM(A1)' '-3' '@cmd' 'a,\"quoted\"' 'plain'; sleep 3600",
            &[],
            &[],
            None,
        )
        .await;
    eventually("the formula lines stored", Duration::from_secs(30), || {
        let (admin, formulas) = (admin.clone(), formulas.clone());
        async move {
            (stored_lines(&admin, &format!("container={formulas}"))
                .await
                .len()
                == 6)
                .then_some(())
        }
    })
    .await;
    let csv = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/logs/export.csv?container={formulas}&order=oldest",
            admin.base
        ))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().await.unwrap();
    let mut python = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys; print(json.dumps(list(csv.reader(sys.stdin))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(csv.as_bytes())
        .unwrap();
    let rows: Vec<Vec<String>> =
        serde_json::from_slice(&python.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(
        rows[0],
        [
            "time",
            "node",
            "container",
            "container_id",
            "project",
            "stream",
            "level",
            "line"
        ]
    );
    let cells: Vec<&str> = rows[1..].iter().map(|r| r[7].as_str()).collect();
    assert_eq!(
        cells,
        [
            "'=1+2",
            "'+SUM(A1)",
            "'-3",
            "'@cmd",
            "a,\"quoted\"",
            "plain"
        ]
    );
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.len() == 8 && (r[2] == formulas || r[3] == formulas) && r[1] == agent_id),
        "{rows:?}"
    );
    // The volume chart counts the same lines, by level.
    let since = lines[0]["time"].as_str().unwrap().to_owned();
    let (status, volume) = admin
        .call(
            "GET",
            &format!("/api/v1/logs/volume?container={container}&since={since}&interval=10"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{volume}");
    let buckets = volume["buckets"].as_array().unwrap();
    let count = |level: &str| {
        buckets
            .iter()
            .map(|b| b[level].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!(count("none"), lines_total as i64, "{volume}");
    assert_eq!(count("error"), 1);
    let (status, bad) = admin
        .call("GET", "/api/v1/logs/volume?interval=1", None)
        .await;
    assert_eq!(
        (status, bad["error"]["field"].as_str()),
        (400, Some("interval"))
    );
    // Retention: the organisation's own, or the host's default; bad values named.
    let (status, bad) = admin
        .call(
            "PUT",
            "/api/v1/logs/retention",
            Some(serde_json::json!({"retention_days": 0})),
        )
        .await;
    assert_eq!(
        (status, bad["error"]["field"].as_str()),
        (400, Some("retention_days"))
    );
    let (status, set) = admin
        .call(
            "PUT",
            "/api/v1/logs/retention",
            Some(serde_json::json!({"retention_days": 3})),
        )
        .await;
    assert_eq!(
        (status, set["effective_days"].as_i64()),
        (200, Some(3)),
        "{set}"
    );
    let (status, bad) = admin.call("GET", "/api/v1/logs?level=loud", None).await;
    assert_eq!(
        (status, bad["error"]["field"].as_str()),
        (400, Some("level"))
    );
    assert!(
        admin.get("/api/v1/logs").await["gaps"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was dropped"
    );
    drop(agent);
    fx.cleanup().await;
}

/// A ClickHouse of this test (`tests/peers/start-clickhouse.sh`), stopped on drop; it can be
/// killed and started again on the same data and port.
struct ClickHouse {
    dir: std::path::PathBuf,
    http: String,
    child: Option<std::process::Child>,
    first_pid: Option<String>,
}

impl ClickHouse {
    fn start() -> ClickHouse {
        let peer = common::Peer::start("start-clickhouse.sh");
        ClickHouse {
            http: peer.var("CH_HTTP"),
            first_pid: Some(peer.var("CH_PID")),
            dir: peer.dir,
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    fn kill(&mut self) {
        if let Some(pid) = self.first_pid.take() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    async fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("clickhouse-server")
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        eventually("ClickHouse back", Duration::from_secs(30), || {
            let url = format!("{}/ping", self.url());
            async move {
                reqwest::get(url)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await;
    }

    async fn scalar(&self, sql: &str) -> String {
        let r = reqwest::Client::new()
            .post(self.url())
            .body(sql.to_owned())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.text().await.unwrap().trim().to_owned()
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.kill();
        remove_unless_panicking(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_clickhouse_sink_a_nodes_lines_land_there_exactly_once() {
    let Some(docker) = docker().await else { return };
    let Some(build) = plugin_build() else { return };
    let mut clickhouse = ClickHouse::start();
    let mut fx = Fixture::new(docker, "logsink");
    let (bundles, keys) = (build.join("bundles"), build.join("dev-signing"));
    let mut server = Server::start_with(
        false,
        2,
        &[
            ("INFRAPILOT_PLUGIN_DIR", bundles.to_str().unwrap()),
            ("INFRAPILOT_PLUGIN_TRUSTED_KEYS", keys.to_str().unwrap()),
            ("INFRAPILOT_PLUGIN_EGRESS_ALLOW", "127.0.0.0/8"),
        ],
    )
    .await;
    let admin = server.admin().await;
    let (status, body) = admin
        .call("POST", "/api/v1/plugins/infrapilot.clickhouse/enable", None)
        .await;
    assert_eq!(status, 200, "{body}");
    // A sink the host cannot prepare stops the start, naming the setting.
    server.set_env("INFRAPILOT_LOG_SINK", "infrapilot.clickhouse");
    server.set_env(
        "INFRAPILOT_LOG_SINK_SETTINGS",
        &serde_json::json!({"url": clickhouse.url(), "table": "no-such-name"}).to_string(),
    );
    server.kill9();
    let refused = std::process::Command::new(bin("infrapilot"))
        .arg("serve")
        .env("INFRAPILOT_BUILTIN_AGENT", "false")
        .env("INFRAPILOT_PLUGIN_EGRESS_ALLOW", "127.0.0.0/8")
        .env("INFRAPILOT_DATA_DIR", &server.data_dir)
        .env("INFRAPILOT_LISTEN", "127.0.0.1:0")
        .env("INFRAPILOT_GRPC_LISTEN", "127.0.0.1:0")
        .env("INFRAPILOT_LOG_SINK", "infrapilot.clickhouse")
        .env(
            "INFRAPILOT_LOG_SINK_SETTINGS",
            serde_json::json!({"url": clickhouse.url(), "table": "no-such-name"}).to_string(),
        )
        .env_remove("INFRAPILOT_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("log_sink") && stderr.contains("settings.table"),
        "{stderr}"
    );
    server.set_env(
        "INFRAPILOT_LOG_SINK_SETTINGS",
        &serde_json::json!({"url": clickhouse.url()}).to_string(),
    );
    server.restart().await;

    let collect = fx.log_label();
    let only = [("INFRAPILOT_AGENT_LOG_LABEL", collect.as_str())];
    let (state, mut agent) = enrolled_agent_with(&server, &admin, "node-sink", &only).await;
    admin.online_agent("node-sink").await;
    let lines_total = 15_000u64;
    let script = format!(
        "i=0; while [ $i -lt {lines_total} ]; do echo \"n=$i\"; i=$((i+1)); \
         [ $((i % 100)) -eq 0 ] && sleep 0.1; done; sleep 3600"
    );
    let container = fx.run("writer", &script, &[], &[], None).await;
    let mut seed = 0x5eed_u64;
    for n in 0..4 {
        tokio::time::sleep(Duration::from_millis(500 + next_random(&mut seed) % 1500)).await;
        if n == 3 {
            // Last, ClickHouse away for ten seconds: the node keeps its lines, its session
            // stays, and what the sink did not take is sent again on that session (after the
            // node's acknowledgement timeout), not by a reconnect.
            clickhouse.kill();
            tokio::time::sleep(Duration::from_secs(10)).await;
            let agents = admin.get("/api/v1/agents").await;
            assert!(
                agents
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["name"] == "node-sink" && a["status"] == "online"),
                "a sink outage is not a node outage: {agents}"
            );
            clickhouse.restart().await;
            continue;
        }
        agent.kill().unwrap();
        agent.wait().unwrap();
        agent = run_agent(&state, &only);
    }
    let lines = eventually(
        "every numbered line in the sink",
        Duration::from_secs(240),
        || {
            let (admin, container) = (admin.clone(), container.clone());
            async move {
                let lines = stored_lines(&admin, &format!("container={container}")).await;
                (numbers(&lines).len() as u64 == lines_total).then_some(lines)
            }
        },
    )
    .await;
    let twice: Vec<_> = numbers(&lines)
        .into_iter()
        .filter(|(_, c)| *c > 1)
        .collect();
    assert!(twice.is_empty(), "shown more than once: {twice:?}");
    // They are in ClickHouse (kept once there too), read by the API from there.
    let stored: u64 = clickhouse
        .scalar(&format!(
            "SELECT count() FROM default.infrapilot_logs FINAL WHERE (container_id = '{container}' OR container_name = '{container}') AND line LIKE 'n=%'"
        ))
        .await
        .parse()
        .unwrap();
    assert_eq!(stored, lines_total);
    drop(agent);
    drop(state);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_spool_bound_the_dropped_sequences_are_named_exactly() {
    let Some(docker) = docker().await else { return };
    let mut fx = Fixture::new(docker, "gap");
    let mut server = Server::start(false, 2).await;
    let admin = server.admin().await;
    // A spool of 16 KiB: a few hundred lines. Its own containers only.
    let only = fx.log_label();
    let (_state, agent) = enrolled_agent_with(
        &server,
        &admin,
        "node-gap",
        &[
            ("INFRAPILOT_AGENT_SPOOL_BYTES", "16384"),
            ("INFRAPILOT_AGENT_LOG_LABEL", &only),
        ],
    )
    .await;
    let agent_id = admin.online_agent("node-gap").await;
    // The host away while the container writes far more than the spool holds.
    server.kill9();
    let container = fx
        .run(
            "flood",
            // Far more than the spool holds at once, then (the host back) ten more.
            "i=0; while [ $i -lt 3000 ]; do echo \"n=$i\"; i=$((i+1)); done; sleep 8; \
             while [ $i -lt 3010 ]; do echo \"n=$i\"; i=$((i+1)); done; sleep 3600",
            &[],
            &[],
            None,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.restart().await;
    let (all, gaps) = eventually("the rest delivered", Duration::from_secs(120), || {
        let (admin, agent_id) = (admin.clone(), agent_id.clone());
        async move {
            // Every line of the node.
            let lines = stored_lines(&admin, &format!("agent={agent_id}")).await;
            let gaps = admin.get("/api/v1/logs").await["gaps"].clone();
            let last = lines.iter().any(|l| l["line"] == "n=3009");
            (last && !gaps.as_array().unwrap().is_empty()).then_some((lines, gaps))
        }
    })
    .await;
    let lines: Vec<Value> = all
        .iter()
        .filter(|l| l["container_id"] == container.as_str())
        .cloned()
        .collect();
    let counts = numbers(&lines);
    assert!(counts.values().all(|c| *c == 1), "a line stored twice");
    assert!(counts.len() < 3010, "the bound dropped lines");
    let gaps: Vec<(i64, i64)> = gaps
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["first_seq"].as_i64().unwrap(),
                g["last_seq"].as_i64().unwrap(),
            )
        })
        .collect();
    let in_gap = |seq: i64| gaps.iter().any(|(a, b)| (*a..=*b).contains(&seq));
    let stored: BTreeSet<i64> = all.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    assert!(
        stored.iter().all(|s| !in_gap(*s)),
        "a stored line inside a gap: {gaps:?}"
    );
    let dropped: i64 = gaps.iter().map(|(a, b)| b - a + 1).sum();
    assert!(dropped > 0);
    // Lines of the flood missing between two stored ones (or before the first) are no more than
    // the sequences between them that a gap names: nothing went missing unannounced. (Other
    // records — other containers' lines, events, gap records — share the numbering, so "no more
    // than", not "as many as".)
    let mut by_number: Vec<(u64, i64)> = lines
        .iter()
        .map(|l| {
            let n = l["line"].as_str().unwrap()[2..].parse().unwrap();
            (n, l["seq"].as_i64().unwrap())
        })
        .collect();
    by_number.sort();
    let named_between = |from: i64, to: i64| (from..to).filter(|s| in_gap(*s)).count() as u64;
    let mut previous: Option<(u64, i64)> = None;
    for &(n, seq) in &by_number {
        let (missing, named) = match previous {
            None => (n, named_between(1, seq)),
            Some((pn, ps)) => (n - pn - 1, named_between(ps + 1, seq)),
        };
        assert!(
            missing <= named,
            "{missing} lines missing before n={n} (seq {seq}), gaps name {named} sequences there: {gaps:?}"
        );
        previous = Some((n, seq));
    }
    drop(agent);
    fx.cleanup().await;
}

/// The Health view (issue 17): the built-in node's heartbeats become a score with its reasons,
/// minute and hour samples for the charts and Prometheus gauges; the database and the host
/// process are shown to the host operator only; bad ranges are refused naming the field.
#[tokio::test(flavor = "multi_thread")]
async fn the_health_view_scores_nodes_and_keeps_their_heartbeats_for_charts() {
    let Some(_docker) = docker().await else {
        return;
    };
    let server = Server::start(true, 1).await;
    let admin = server.admin().await;
    let agent = admin.online_agent("local").await;
    let node_of = |health: &Value| {
        health["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == agent.as_str())
            .cloned()
    };
    let health = eventually(
        "a scored node with CPU and disk",
        Duration::from_secs(30),
        || {
            let admin = admin.clone();
            async move {
                let health = admin.get("/api/v1/health").await;
                let node = node_of(&health)?;
                (node["cpu_percent_10m"].is_number()
                    && node["host_stats"]["disk_total_bytes"].as_u64()? > 0)
                    .then_some(health)
            }
        },
    )
    .await;
    let node = node_of(&health).unwrap();
    assert_eq!(node["status"], "online", "{node}");
    let score = node["score"].as_u64().unwrap();
    let reasons = node["reasons"].as_array().unwrap();
    assert!(score <= 100);
    assert_eq!(
        score == 100,
        reasons.is_empty(),
        "points are taken off with a reason: {node}"
    );
    let stats = &node["host_stats"];
    assert!(
        stats["disk_used_bytes"].as_u64().unwrap() <= stats["disk_total_bytes"].as_u64().unwrap()
    );
    assert!(stats["memory_total_bytes"].as_u64().unwrap() > 0);
    let database = &health["database"];
    assert_eq!(database["backend"], "sqlite", "{health}");
    assert!(database["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(database["pool_max"].as_u64().unwrap() >= 1);
    let host = &health["host"];
    assert!(
        host["resident_memory_bytes"].as_u64().unwrap() > 1 << 20,
        "{host}"
    );
    assert!(host["threads"].as_u64().unwrap() >= 2);
    assert!(host["runtime_tasks"].as_u64().unwrap() >= 1);
    assert!(host["connected_nodes"].as_u64().unwrap() >= 1);

    // Minute samples (the default for the last hour), then hours.
    let samples = admin
        .get(&format!("/api/v1/health/nodes/{agent}/samples"))
        .await;
    assert_eq!(samples["resolution_seconds"], 60);
    let points = samples["points"].as_array().unwrap();
    assert!(!points.is_empty(), "{samples}");
    let last = points.last().unwrap();
    assert!(last["samples"].as_u64().unwrap() >= 1);
    assert!(last["memory_total_bytes"].as_u64().unwrap() > 0);
    assert!(last["disk_total_bytes"].as_u64().unwrap() > 0);
    let since = rfc3339_ago(3 * 24 * 3600);
    let hours = admin
        .get(&format!(
            "/api/v1/health/nodes/{agent}/samples?since={}",
            urlencode(&since)
        ))
        .await;
    assert_eq!(hours["resolution_seconds"], 3600, "three days: hours");
    assert!(!hours["points"].as_array().unwrap().is_empty());

    // Bad input names its field; an unknown node is not found.
    for (query, field) in [
        ("since=yesterday".to_owned(), "since"),
        ("resolution=day".to_owned(), "resolution"),
        ("until=soon".to_owned(), "until"),
    ] {
        let (status, body) = admin
            .call(
                "GET",
                &format!("/api/v1/health/nodes/{agent}/samples?{query}"),
                None,
            )
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{query}: {body}"
        );
    }
    // A range that selects nothing answers nothing; one longer than a resolution keeps is cut
    // to its last part (minutes: the last two days), and says so.
    let backwards = admin
        .get(&format!(
            "/api/v1/health/nodes/{agent}/samples?since={}&until={}",
            urlencode(&rfc3339_ago(0)),
            urlencode(&rfc3339_ago(3600))
        ))
        .await;
    assert_eq!(backwards["points"], serde_json::json!([]), "{backwards}");
    let cut = admin
        .get(&format!(
            "/api/v1/health/nodes/{agent}/samples?resolution=minute&since={}",
            urlencode(&since)
        ))
        .await;
    assert_eq!(cut["resolution_seconds"], 60);
    assert!(
        cut["since"].as_str().unwrap() > rfc3339_ago(2 * 24 * 3600 + 60).as_str(),
        "{cut}"
    );
    assert!(!cut["points"].as_array().unwrap().is_empty());
    let (status, _) = admin
        .call(
            "GET",
            "/api/v1/health/nodes/00000000-0000-4000-8000-000000000000/samples",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = admin
        .call("GET", "/api/v1/health/nodes/not-a-node/samples", None)
        .await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("id")));

    // A viewer sees the nodes, not the host's internals.
    let (viewer, _) = user(&admin, "viewer@example.com", "viewer").await;
    let seen = viewer.get("/api/v1/health").await;
    assert!(node_of(&seen).is_some());
    assert!(
        seen["database"].is_null() && seen["host"].is_null(),
        "{seen}"
    );

    // The same figures for Prometheus (a loopback client needs no token).
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for gauge in [
        format!("infrapilot_node_score{{agent_id=\"{agent}\""),
        format!("infrapilot_node_disk_total_bytes{{agent_id=\"{agent}\""),
        format!("infrapilot_node_cpu_percent{{agent_id=\"{agent}\""),
        "infrapilot_db_latency_seconds ".to_owned(),
        "infrapilot_process_resident_memory_bytes ".to_owned(),
        "infrapilot_runtime_alive_tasks ".to_owned(),
    ] {
        assert!(metrics.contains(&gauge), "no {gauge} in:\n{metrics}");
    }
}

/// Now less `seconds`, in RFC 3339.
fn rfc3339_ago(seconds: i64) -> String {
    (time::OffsetDateTime::now_utc() - time::Duration::seconds(seconds))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
