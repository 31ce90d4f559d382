//! Side-by-side figures for docs/BENCHMARKS.md (run by scripts/bench-containers.sh, which starts
//! the host, Docker and the containers): container list through the API vs `docker ps`, restart
//! through the API vs `docker restart`, and the delay from a container writing a log line to a
//! WebSocket client receiving it. Needs BENCH_BASE, BENCH_TOKEN, BENCH_AGENT, BENCH_RESTART
//! (a container that stops promptly) and BENCH_LOGGER (a container printing a line every 50 ms).

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

fn row(what: &str, api: &mut [f64], cli: &mut [f64]) {
    let (a50, c50) = (percentile(api, 0.5), percentile(cli, 0.5));
    println!(
        "| {what} | {} | {a50:.1} | {:.1} | {c50:.1} | {:.1} | {:.2}× |",
        api.len(),
        percentile(api, 0.95),
        percentile(cli, 0.95),
        a50 / c50
    );
}

#[tokio::main]
async fn main() {
    let base = var("BENCH_BASE");
    let token = var("BENCH_TOKEN");
    let agent = var("BENCH_AGENT");
    let restart_target = var("BENCH_RESTART");
    let logger = var("BENCH_LOGGER");
    let client = reqwest::Client::new();
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let list_url = format!("{base}/api/v1/agents/{agent}/containers");

    // Warm both paths.
    for _ in 0..3 {
        let r = client
            .get(&list_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        r.bytes().await.unwrap();
        Command::new("docker").args(["ps", "-a"]).output().unwrap();
    }
    let (mut api, mut cli) = (Vec::new(), Vec::new());
    for _ in 0..50 {
        let t = Instant::now();
        let r = client
            .get(&list_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
        api.push(ms(t));
        let t = Instant::now();
        let out = Command::new("docker").args(["ps", "-a"]).output().unwrap();
        assert!(out.status.success());
        cli.push(ms(t));
    }
    println!(
        "| operation | runs | API p50 ms | API p95 ms | docker CLI p50 ms | CLI p95 ms | API / CLI (p50) |"
    );
    println!("|---|---|---|---|---|---|---|");
    row("list containers", &mut api, &mut cli);

    let restart_url = format!("{base}/api/v1/agents/{agent}/containers/{restart_target}/restart");
    let (mut api, mut cli) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let t = Instant::now();
        let r = client
            .post(&restart_url)
            .bearer_auth(&token)
            .json(&serde_json::json!({"timeout_seconds": 10}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        api.push(ms(t));
        let t = Instant::now();
        let out = Command::new("docker")
            .args(["restart", "-t", "10", &restart_target])
            .output()
            .unwrap();
        assert!(out.status.success());
        cli.push(ms(t));
    }
    row("restart container", &mut api, &mut cli);

    // Log line: Docker's timestamp (when the line left the container) to receipt here.
    let url = format!(
        "{}/api/v1/agents/{agent}/containers/{logger}/logs/ws?tail=0",
        base.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("infrapilot.v1, bearer.{token}").parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut delays = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_secs(2), socket.next()).await
        {
            let line: serde_json::Value = serde_json::from_str(&text).unwrap();
            let written = unix_ns(line["time"].as_str().unwrap());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as i128;
            delays.push((now - written) as f64 / 1e6);
        }
    }
    let n = delays.len();
    println!();
    println!(
        "| log line, container write → WebSocket client | lines | p50 ms | p95 ms | p99 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| follow over WebSocket (a line every 50 ms, 20 s) | {n} | {:.1} | {:.1} | {:.1} | {:.1} |",
        percentile(&mut delays, 0.5),
        percentile(&mut delays, 0.95),
        percentile(&mut delays, 0.99),
        percentile(&mut delays, 1.0)
    );
}

/// RFC 3339 with nanoseconds → Unix nanoseconds.
fn unix_ns(text: &str) -> i128 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp_nanos()
}
