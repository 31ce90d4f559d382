//! The hostile suite's system half (the in-process half is `host/api/tests/hostile.rs`): attacks
//! that need the `infrapilot` binary, agent processes and a real Docker engine — sockets that
//! outlive revocation, a viewer knocking a node offline with one log request or a socket that
//! never reads, a `serve` that would not stop, and the data directory's permissions.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{
    Api, Fixture, Server, docker, enrolled_agent, enrolled_agent_with, eventually, user, websocket,
};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads until the server closes the socket; returns the close frame's reason.
async fn close_reason(socket: &mut Socket, limit: Duration) -> Option<String> {
    let started = Instant::now();
    while started.elapsed() < limit {
        match tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Some(frame.map(|f| f.reason.to_string()).unwrap_or_default());
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(Some(Err(_))) | Ok(None) => return Some(String::new()),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn open_sockets_close_on_logout_demotion_disable_and_node_revocation() {
    let Some(docker) = docker().await else { return };
    let mut fx = Fixture::new(docker, "wsrevoke");
    // Heartbeats every 2 s: sockets re-check their caller at least that often.
    let server = Server::start(false, 2).await;
    let admin = server.admin().await;
    let (_state, mut agent) = enrolled_agent(&server, &admin, "node-ws").await;
    let id = admin.online_agent("node-ws").await;
    let app = fx
        .run(
            "ticker",
            "while true; do echo tick; sleep 0.2; done",
            &[],
            &[],
            None,
        )
        .await;
    let base = format!("/api/v1/agents/{id}/containers/{app}");

    // Logout ends the viewer's log socket.
    let (viewer, _) = user(&admin, "viewer@example.com", "viewer").await;
    let mut logs = websocket(&server, &viewer, &format!("{base}/logs/ws?tail=1")).await;
    let (status, _) = viewer.call("POST", "/api/v1/auth/logout", None).await;
    assert_eq!(status, 204);
    let reason = close_reason(&mut logs, Duration::from_secs(10)).await;
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("session")),
        "closed after logout: {reason:?}"
    );

    // Demotion below admin ends a terminal.
    let (second, second_id) = user(&admin, "second@example.com", "admin").await;
    let mut term = websocket(&server, &second, &format!("{base}/exec/ws")).await;
    let (status, body) = admin
        .call(
            "PATCH",
            &format!("/api/v1/users/{second_id}"),
            Some(json!({"role": "operator"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let reason = close_reason(&mut term, Duration::from_secs(10)).await;
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("admin role")),
        "closed after demotion: {reason:?}"
    );
    // The terminal's end is audited with the reason the host closed it.
    eventually(
        "exec_end with the host's reason",
        Duration::from_secs(5),
        || {
            let admin = admin.clone();
            async move {
                let end = admin.get("/api/v1/audit?action=container.exec_end").await;
                let e = end["events"].as_array()?.first()?.clone();
                e["detail"]["closed_by_host"]
                    .as_str()?
                    .contains("admin role")
                    .then_some(())
            }
        },
    )
    .await;

    // A disabled user's socket ends.
    let (third, third_id) = user(&admin, "third@example.com", "viewer").await;
    let mut logs = websocket(&server, &third, &format!("{base}/logs/ws?tail=1")).await;
    admin
        .call(
            "PATCH",
            &format!("/api/v1/users/{third_id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert!(
        close_reason(&mut logs, Duration::from_secs(10))
            .await
            .is_some()
    );

    // Revoking the node ends its session at once, and every socket on it.
    let mut logs = websocket(&server, &admin, &format!("{base}/logs/ws?tail=1")).await;
    let revoked_at = Instant::now();
    let (status, _) = admin
        .call("POST", &format!("/api/v1/agents/{id}/revoke"), None)
        .await;
    assert_eq!(status, 204);
    assert!(
        close_reason(&mut logs, Duration::from_secs(10))
            .await
            .is_some()
    );
    eventually("the revoked node offline", Duration::from_secs(10), || {
        let admin = admin.clone();
        let id = id.clone();
        async move {
            let a = admin.get(&format!("/api/v1/agents/{id}")).await;
            (a["status"] != "online").then_some(())
        }
    })
    .await;
    assert!(
        revoked_at.elapsed() < Duration::from_secs(4),
        "ended at revocation, not at a later heartbeat"
    );
    let _ = agent.kill();
    let _ = agent.wait();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_lives_no_longer_than_its_maximum_lifetime() {
    let Some(docker) = docker().await else { return };
    let mut fx = Fixture::new(docker, "wslife");
    let server =
        Server::start_with(true, 30, &[("INFRAPILOT_SOCKET_MAX_LIFETIME_SECONDS", "2")]).await;
    let admin = server.admin().await;
    let id = admin.online_agent("local").await;
    let app = fx
        .run(
            "ticker",
            "while true; do echo tick; sleep 0.2; done",
            &[],
            &[],
            None,
        )
        .await;
    let mut logs = websocket(
        &server,
        &admin,
        &format!("/api/v1/agents/{id}/containers/{app}/logs/ws?tail=1"),
    )
    .await;
    let opened = Instant::now();
    let reason = close_reason(&mut logs, Duration::from_secs(10)).await;
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("maximum lifetime")),
        "{reason:?}"
    );
    assert!(opened.elapsed() >= Duration::from_millis(1900));
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_cannot_knock_a_node_offline_with_logs() {
    let Some(docker) = docker().await else { return };
    let mut fx = Fixture::new(docker, "logflood");
    let server = Server::start(false, 2).await;
    let admin = server.admin().await;
    // The node stores its floods too (the spool and the host's ingest in the path).
    let collect = fx.log_label();
    let (_state, mut agent) = enrolled_agent_with(
        &server,
        &admin,
        "node-logs",
        &[("INFRAPILOT_AGENT_LOG_LABEL", &collect)],
    )
    .await;
    let id = admin.online_agent("node-logs").await;
    let (viewer, _) = user(&admin, "viewer@example.com", "viewer").await;
    // 6,000 lines of 16,000 bytes: a 5,000-line page would be 80 MB, far over a gRPC frame.
    let big = fx
        .run(
            "big",
            "line=$(head -c 16000 /dev/zero | tr '\\0' x); i=0; while [ $i -lt 6000 ]; do echo \"$i $line\"; i=$((i+1)); done; sleep 3600",
            &[],
            &[],
            None,
        )
        .await;
    let base = format!("/api/v1/agents/{id}/containers/{big}");
    eventually("the big log written", Duration::from_secs(60), || {
        let viewer = viewer.clone();
        let base = base.clone();
        async move {
            let page = viewer.get(&format!("{base}/logs?tail=1")).await;
            page["lines"].as_array()?.first()?["message"]
                .as_str()?
                .starts_with("5999 ")
                .then_some(())
        }
    })
    .await;
    let (status, page) = viewer
        .call("GET", &format!("{base}/logs?tail=5000"), None)
        .await;
    assert_eq!(status, 200, "{page}");
    let lines = page["lines"].as_array().unwrap();
    let bytes: usize = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap().len())
        .sum();
    assert!(bytes <= 1024 * 1024, "a page is capped by bytes: {bytes}");
    assert!(lines.len() > 10 && lines.len() < 5000, "{}", lines.len());
    assert!(
        page["next_cursor"].is_string(),
        "older lines are on the next page"
    );
    assert!(
        lines.last().unwrap()["message"]
            .as_str()
            .unwrap()
            .starts_with("5999 ")
    );
    // The node kept its session: still online, still answering.
    let agent_now = admin.get(&format!("/api/v1/agents/{id}")).await;
    assert_eq!(agent_now["status"], "online", "{agent_now}");
    let (status, _) = viewer
        .call("GET", &format!("/api/v1/agents/{id}/containers"), None)
        .await;
    assert_eq!(status, 200);

    // A log socket that never reads does not block the node: other calls keep answering.
    let flood = fx
        .run(
            "flood",
            "line=$(head -c 2000 /dev/zero | tr '\\0' y); while true; do echo \"$line\"; done",
            &[],
            &[],
            None,
        )
        .await;
    let _stalled = websocket(
        &server,
        &viewer,
        &format!("/api/v1/agents/{id}/containers/{flood}/logs/ws?tail=0"),
    )
    .await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        let asked = Instant::now();
        let (status, _) = viewer
            .call("GET", &format!("/api/v1/agents/{id}/containers"), None)
            .await;
        assert_eq!(status, 200);
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "the node stalled behind a socket that never reads"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let agent_now = admin.get(&format!("/api/v1/agents/{id}")).await;
    assert_eq!(agent_now["status"], "online");
    let _ = agent.kill();
    let _ = agent.wait();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_stops_on_sigterm_with_agents_and_a_log_socket_open() {
    let Some(docker) = docker().await else { return };
    let mut fx = Fixture::new(docker, "stop");
    let mut server =
        Server::start_with(true, 30, &[("INFRAPILOT_SHUTDOWN_GRACE_SECONDS", "5")]).await;
    let admin = server.admin().await;
    let local = admin.online_agent("local").await;
    let (_state, mut remote) = enrolled_agent(&server, &admin, "node-stop").await;
    admin.online_agent("node-stop").await;
    let app = fx
        .run(
            "ticker",
            "while true; do echo tick; sleep 0.2; done",
            &[],
            &[],
            None,
        )
        .await;
    let mut logs = websocket(
        &server,
        &admin,
        &format!("/api/v1/agents/{local}/containers/{app}/logs/ws?tail=1"),
    )
    .await;
    let asked = Instant::now();
    let status = server.terminate(Duration::from_secs(15));
    let took = asked.elapsed();
    let log = server.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "serve exits 0 on SIGTERM within the bound (status {status:?} after {took:?}): {log}"
    );
    assert!(took < Duration::from_secs(12), "{took:?}");
    assert!(log.contains("shutdown signal received"), "{log}");
    let reason = close_reason(&mut logs, Duration::from_secs(2)).await;
    assert!(reason.is_some(), "the log socket was closed");
    // The remote agent notices and keeps retrying; it is not left hanging on a dead stream.
    assert!(remote.try_wait().unwrap().is_none());
    let _ = remote.kill();
    let _ = remote.wait();
    let _ = local;
    fx.cleanup().await;
}

#[tokio::test]
async fn the_data_directory_and_database_are_owner_only_and_setup_needs_the_printed_code() {
    let server = Server::start(false, 30).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.data_dir), 0o700);
    assert_eq!(mode(&server.data_dir.join("infrapilot.db")), 0o600);
    let code_file = server.data_dir.join("setup-code");
    assert_eq!(mode(&code_file), 0o600);
    let code = server.setup_code();
    assert!(code.len() >= 20, "{code}");
    assert!(
        server.log().contains(&code),
        "the code is in the server log"
    );
    let anonymous = Api {
        base: server.base.clone(),
        token: String::new(),
    };
    let (status, body) = anonymous
        .call(
            "POST",
            "/api/v1/setup",
            Some(json!({"setup_code": "wrong", "email": "a@example.com", "password": "a long password", "name": "A"})),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (403, &json!("setup_code"))
    );
    server.admin().await;
    assert!(
        !code_file.exists(),
        "the code is gone once the install is claimed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_cut_off_and_oversized_socket_messages_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(docker) = docker().await else { return };
    let mut fx = Fixture::new(docker, "slow");
    let server =
        Server::start_with(true, 30, &[("INFRAPILOT_HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    // Slow loris: headers that never finish. The host hangs up after the header timeout.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(8), tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the connection was closed (or answered 408), not held open"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A terminal refuses a client message over 64 KiB.
    let admin = server.admin().await;
    let id = admin.online_agent("local").await;
    let app = fx
        .run("sh", "while true; do sleep 1; done", &[], &[], None)
        .await;
    let mut term = websocket(
        &server,
        &admin,
        &format!("/api/v1/agents/{id}/containers/{app}/exec/ws"),
    )
    .await;
    let huge = json!({"type": "input", "data": "x".repeat(200 * 1024)}).to_string();
    let _ = futures_util::SinkExt::send(&mut term, Message::Text(huge.into())).await;
    assert!(
        close_reason(&mut term, Duration::from_secs(10))
            .await
            .is_some(),
        "the oversized message ended the socket"
    );
    fx.cleanup().await;
}
