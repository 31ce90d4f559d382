//! Container operations end to end against a real Docker engine: browser-facing API → host
//! process → agent (built-in, or a separate `infrapilot-agent` process) → Docker, and back.

mod common;

use std::time::{Duration, Instant};

use common::{Fixture, Server, docker, enrolled_agent, eventually, websocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";

fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn container_operations_through_the_builtin_agent() {
    let Some(docker) = docker().await else { return };
    let mut fx = Fixture::new(docker, "ops");
    let server = Server::start(true, 30).await;
    let admin = server.admin().await;
    let id = admin.online_agent("local").await;
    let agents = admin.get("/api/v1/agents").await;
    assert_eq!(agents[0]["builtin"], true, "{agents}");

    let net = fx.network().await;
    let project = format!("{}-shop", fx.prefix);
    let web = fx
        .run(
            "web",
            "i=0; while true; do echo \"INFO tick $i\"; echo \"ERROR failed $i\" >&2; i=$((i+1)); sleep 0.2; done",
            &[(COMPOSE_PROJECT, &project), (COMPOSE_SERVICE, "web")],
            &["API_SECRET=hunter2", "MODE=prod"],
            Some(&net),
        )
        .await;
    let db = fx
        .run(
            "db",
            "trap 'exit 3' TERM; while true; do sleep 0.2; done",
            &[(COMPOSE_PROJECT, &project), (COMPOSE_SERVICE, "db")],
            &[],
            Some(&net),
        )
        .await;
    let lone = fx
        .run("lone", "while true; do sleep 1; done", &[], &[], Some(&net))
        .await;

    // List: state, image, networks, compose grouping, then live CPU and memory samples.
    let base = format!("/api/v1/agents/{id}");
    let list = admin.get(&format!("{base}/containers")).await;
    let w = find(&list, &web).expect("web listed");
    assert_eq!(w["state"], "running");
    assert_eq!(w["image"], common::IMAGE);
    assert_eq!(w["compose_project"], project.as_str());
    assert_eq!(w["compose_service"], "web");
    assert_eq!(w["networks"], json!([net]));
    assert!(find(&list, &lone).unwrap()["compose_project"].is_null());
    let stack = list["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == project.as_str())
        .expect("stack listed");
    assert_eq!(
        (stack["containers"].as_u64(), stack["running"].as_u64()),
        (Some(2), Some(2))
    );
    let sampled = eventually("CPU and memory samples", Duration::from_secs(15), || {
        let admin = admin.clone();
        let (base, web) = (base.clone(), web.clone());
        async move {
            let list = admin.get(&format!("{base}/containers")).await;
            let w = find(&list, &web)?.clone();
            (w["memory_bytes"].is_u64() && w["cpu_percent"].is_number()).then_some(w)
        }
    })
    .await;
    assert!(sampled["memory_limit_bytes"].as_u64().unwrap() > 0);

    // Detail by name: env names with masked values; an admin reveal shows them and is audited.
    let detail = admin.get(&format!("{base}/containers/{web}")).await;
    assert_eq!(detail["name"], web.as_str());
    let env = detail["env"].as_array().unwrap();
    let secret = env
        .iter()
        .find(|v| v["name"] == "API_SECRET")
        .expect("env name shown");
    assert!(secret["value"].is_null(), "values are masked: {detail}");
    assert_eq!(detail["networks"][0]["name"], net.as_str());
    let (status, revealed) = admin
        .call("POST", &format!("{base}/containers/{web}/env/reveal"), None)
        .await;
    assert_eq!(status, 200, "{revealed}");
    assert!(
        revealed["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "API_SECRET" && v["value"] == "hunter2")
    );
    let audit = admin.get("/api/v1/audit?action=container.env_reveal").await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 1, "{audit}");
    // The id (and an id prefix) works as well as the name.
    let full_id = detail["id"].as_str().unwrap();
    assert_eq!(
        admin
            .get(&format!("{base}/containers/{}", &full_id[..12]))
            .await["name"],
        web.as_str()
    );

    // Stop (exit code and die event recorded), start, restart.
    let (status, stopped) = admin
        .call(
            "POST",
            &format!("{base}/containers/{db}/stop"),
            Some(json!({"timeout_seconds": 5})),
        )
        .await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["state"], "exited");
    assert_eq!(fx.state(&db).await.as_deref(), Some("exited"));
    let die = eventually(
        "the die event with its exit code",
        Duration::from_secs(10),
        || {
            let admin = admin.clone();
            let (base, db) = (base.clone(), db.clone());
            async move {
                let events = admin.get(&format!("{base}/events?container={db}")).await;
                events["events"]
                    .as_array()?
                    .iter()
                    .find(|e| e["action"] == "die")
                    .cloned()
            }
        },
    )
    .await;
    assert_eq!(die["exit_code"], 3, "{die}");
    let (status, started) = admin
        .call("POST", &format!("{base}/containers/{db}/start"), None)
        .await;
    assert_eq!(
        (status, started["state"].as_str()),
        (200, Some("running")),
        "{started}"
    );
    let before = fx
        .docker
        .inspect_container(
            &lone,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    let (status, restarted) = admin
        .call(
            "POST",
            &format!("{base}/containers/{lone}/restart"),
            Some(json!({"timeout_seconds": 1})),
        )
        .await;
    assert_eq!(status, 200, "{restarted}");
    let after = fx
        .docker
        .inspect_container(
            &lone,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    assert_ne!(
        before.state.unwrap().started_at,
        after.state.unwrap().started_at,
        "restarted for real"
    );

    // Stack-wide stop and start.
    let (status, result) = admin
        .call(
            "POST",
            &format!("{base}/stacks/{project}/stop"),
            Some(json!({"timeout_seconds": 2})),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["results"].as_array().unwrap().len(), 2, "{result}");
    assert_eq!(fx.state(&web).await.as_deref(), Some("exited"));
    assert_eq!(fx.state(&db).await.as_deref(), Some("exited"));
    let (status, result) = admin
        .call("POST", &format!("{base}/stacks/{project}/start"), None)
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(fx.state(&web).await.as_deref(), Some("running"));
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Logs: tail, stream marking, levels, search, and a cursor to strictly older lines.
    let page = admin
        .get(&format!("{base}/containers/{web}/logs?tail=4"))
        .await;
    let lines = page["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 4, "{page}");
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "stderr" && l["level"] == "error")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "stdout" && l["level"] == "info")
    );
    let cursor = page["next_cursor"]
        .as_str()
        .expect("older lines exist")
        .to_owned();
    let older = admin
        .get(&format!(
            "{base}/containers/{web}/logs?tail=4&cursor={cursor}"
        ))
        .await;
    let first_time = lines[0]["time"].as_str().unwrap();
    for l in older["lines"].as_array().unwrap() {
        assert!(
            l["time"].as_str().unwrap() < first_time,
            "older page overlaps: {older}"
        );
    }
    let errors = admin
        .get(&format!(
            "{base}/containers/{web}/logs?tail=5&q=failed&stream=stderr"
        ))
        .await;
    let errors = errors["lines"].as_array().unwrap();
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .all(|l| l["stream"] == "stderr" && l["message"].as_str().unwrap().contains("failed"))
    );

    // Delete: the confirmation must match; running needs force; then it is gone.
    let (status, body) = admin
        .call(
            "DELETE",
            &format!("{base}/containers/{lone}"),
            Some(json!({"confirm_name": "something-else"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("confirm_name")),
        "{body}"
    );
    let (status, body) = admin
        .call(
            "DELETE",
            &format!("{base}/containers/{lone}"),
            Some(json!({"confirm_name": lone})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("container_running")),
        "{body}"
    );
    assert_eq!(
        fx.state(&lone).await.as_deref(),
        Some("running"),
        "a refused delete changes nothing"
    );
    let (status, body) = admin
        .call(
            "DELETE",
            &format!("{base}/containers/{lone}"),
            Some(json!({"confirm_name": lone, "force": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fx.state(&lone).await, None);
    let (status, _) = admin
        .call("GET", &format!("{base}/containers/{lone}"), None)
        .await;
    assert_eq!(status, 404);

    // Bad input.
    let unknown_agent = uuid::Uuid::new_v4();
    for (path, want) in [
        (format!("/api/v1/agents/{unknown_agent}/containers"), 404),
        ("/api/v1/agents/not-a-uuid/containers".to_owned(), 400),
        (format!("{base}/containers/no-such-container-here"), 404),
        (format!("{base}/containers/bad%20name!"), 400),
        (format!("{base}/containers/{web}/logs?tail=0"), 400),
        (format!("{base}/containers/{web}/logs?cursor=abc"), 400),
        (format!("{base}/containers/{web}/logs?since=yesterday"), 400),
        (format!("{base}/containers?all=maybe"), 400),
    ] {
        let (status, body) = admin.call("GET", &path, None).await;
        assert_eq!(status, want, "GET {path}: {body}");
        assert!(
            body["error"]["field"].is_string(),
            "names the field: {body}"
        );
    }
    let (status, body) = admin
        .call(
            "POST",
            &format!("{base}/containers/{web}/stop"),
            Some(json!({"timeout_seconds": 100000})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("timeout_seconds"))
    );
    let (status, _) = admin
        .call(
            "POST",
            &format!("{base}/containers/no-such-container-here/restart"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = admin
        .call(
            "DELETE",
            &format!("{base}/containers/{web}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("confirm_name"))
    );

    // Every state-changing container route left an audit event, and a command record.
    for action in [
        "container.start",
        "container.stop",
        "container.restart",
        "container.remove",
        "container.env_reveal",
    ] {
        let audit = admin.get(&format!("/api/v1/audit?action={action}")).await;
        let events = audit["events"].as_array().unwrap();
        assert!(
            events
                .iter()
                .any(|e| e["outcome"] == "success" && e["actor"] == "admin@example.com"),
            "{action}: {audit}"
        );
    }
    let refused = admin.get("/api/v1/audit?action=container.restart").await;
    assert!(
        refused["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "failure"),
        "failed actions are audited too"
    );
    let commands = admin.get(&format!("{base}/commands")).await;
    assert!(
        commands["commands"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "succeeded" || c["state"] == "failed")
    );
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn live_logs_and_an_exec_terminal_over_websockets() {
    let Some(docker) = docker().await else { return };
    let mut fx = Fixture::new(docker, "ws");
    let server = Server::start(true, 30).await;
    let admin = server.admin().await;
    let id = admin.online_agent("local").await;
    let net = fx.network().await;
    let app = fx
        .run(
            "app",
            "i=0; while true; do echo \"{\\\"level\\\":\\\"warn\\\",\\\"n\\\":$i}\"; i=$((i+1)); sleep 0.1; done",
            &[],
            &[],
            Some(&net),
        )
        .await;
    let base = format!("/api/v1/agents/{id}/containers/{app}");

    // Without a token the upgrade is refused before it happens.
    let url = format!(
        "{}{base}/logs/ws",
        server.base.replacen("http://", "ws://", 1)
    );
    assert!(tokio_tungstenite::connect_async(url).await.is_err());

    let mut logs = websocket(&server, &admin, &format!("{base}/logs/ws?tail=2")).await;
    let mut seen = Vec::new();
    let started = Instant::now();
    while seen.len() < 8 && started.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_secs(5), logs.next()).await
        {
            seen.push(serde_json::from_str::<Value>(&text).unwrap());
        }
    }
    assert!(seen.len() >= 8, "live lines arrive: {seen:?}");
    assert!(
        seen.iter()
            .all(|l| l["stream"] == "stdout" && l["level"] == "warn")
    );
    let numbers: Vec<i64> = seen
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l["message"].as_str().unwrap()).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, none lost: {numbers:?}"
    );
    logs.close(None).await.unwrap();

    // Exec with a TTY: input, output, resize, exit code; audited start and end.
    let mut term = websocket(
        &server,
        &admin,
        &format!("{base}/exec/ws?command=/bin/sh&cols=100&rows=30"),
    )
    .await;
    let send = |v: Value| Message::Text(v.to_string().into());
    term.send(send(json!({"type": "resize", "cols": 120, "rows": 40})))
        .await
        .unwrap();
    term.send(send(
        json!({"type": "input", "data": "echo hello-$((6*7))\n"}),
    ))
    .await
    .unwrap();
    term.send(send(json!({"type": "input", "data": "stty size\n"})))
        .await
        .unwrap();
    term.send(send(json!({"type": "input", "data": "exit 7\n"})))
        .await
        .unwrap();
    let mut output = String::new();
    let mut exit = None;
    let started = Instant::now();
    while exit.is_none() && started.elapsed() < Duration::from_secs(15) {
        match tokio::time::timeout(Duration::from_secs(5), term.next()).await {
            Ok(Some(Ok(Message::Binary(data)))) => output.push_str(&String::from_utf8_lossy(&data)),
            Ok(Some(Ok(Message::Text(text)))) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] == "exit" {
                    exit = v["exit_code"].as_i64();
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    assert!(output.contains("hello-42"), "terminal output: {output:?}");
    assert!(output.contains("40 120"), "resized to 120x40: {output:?}");
    assert_eq!(exit, Some(7), "exit code reported: {output:?}");
    eventually("exec audit events", Duration::from_secs(5), || {
        let admin = admin.clone();
        async move {
            let start = admin.get("/api/v1/audit?action=container.exec_start").await;
            let end = admin.get("/api/v1/audit?action=container.exec_end").await;
            let end = end["events"].as_array()?.first()?.clone();
            (start["events"].as_array()?.len() == 1 && end["detail"]["exit_code"] == 7)
                .then_some(())
        }
    })
    .await;

    // An exec into a stopped container is refused before the upgrade.
    fx.docker
        .stop_container(
            &app,
            None::<bollard::query_parameters::StopContainerOptions>,
        )
        .await
        .unwrap();
    let url = format!(
        "{}{base}/exec/ws",
        server.base.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("infrapilot.v1, bearer.{}", admin.token)
            .parse()
            .unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 409)
        }
        other => panic!("expected 409, got {:?}", other.map(|(_, r)| r.status())),
    }
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_killed_and_restarted_the_agent_reconnects_and_a_replayed_command_runs_once() {
    let Some(docker) = docker().await else { return };
    let mut fx = Fixture::new(docker, "replay");
    let mut server = Server::start(false, 2).await;
    let admin = server.admin().await;
    let (_state, mut agent) = enrolled_agent(&server, &admin, "node-a").await;
    let id = admin.online_agent("node-a").await;
    let net = fx.network().await;
    // Ignores SIGTERM, so a restart waits out its stop timeout: time to kill the host mid-command.
    let slow = fx
        .run(
            "slow",
            "echo started; trap '' TERM; while true; do sleep 1; done",
            &[],
            &[],
            Some(&net),
        )
        .await;
    let path = format!("/api/v1/agents/{id}/containers/{slow}/restart");
    let request = {
        let (admin, path) = (admin.clone(), path.clone());
        tokio::spawn(async move {
            admin
                .call_with(
                    "POST",
                    &path,
                    Some(json!({"timeout_seconds": 4})),
                    &[("Idempotency-Key", "restart-once-1")],
                )
                .await
        })
    };
    eventually(
        "the command to be delivered",
        Duration::from_secs(10),
        || {
            let admin = admin.clone();
            let id = id.clone();
            async move {
                let c = admin.get(&format!("/api/v1/agents/{id}/commands")).await;
                (c["commands"][0]["state"] == "delivered").then_some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill9();
    let _ = request.await; // the caller saw the connection drop
    // The control plane is gone; the node's containers are not.
    assert_eq!(fx.state(&slow).await.as_deref(), Some("running"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().await;
    let admin = admin.clone();
    admin.online_agent("node-a").await;
    let command = eventually(
        "the re-delivered command to finish",
        Duration::from_secs(30),
        || {
            let admin = admin.clone();
            let id = id.clone();
            async move {
                let c = admin.get(&format!("/api/v1/agents/{id}/commands")).await;
                let c = c["commands"][0].clone();
                (c["state"] == "succeeded").then_some(c)
            }
        },
    )
    .await;
    assert_eq!(
        command["deliveries"], 2,
        "delivered before and after the restart: {command}"
    );
    // Asking again with the same key answers with the same command, and nothing runs again.
    let (status, again) = admin
        .call_with(
            "POST",
            &path,
            Some(json!({"timeout_seconds": 4})),
            &[("Idempotency-Key", "restart-once-1")],
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["command_id"], command["id"]);
    let (status, reused) = admin
        .call_with(
            "POST",
            &format!("/api/v1/agents/{id}/containers/{slow}/stop"),
            None,
            &[("Idempotency-Key", "restart-once-1")],
        )
        .await;
    assert_eq!(
        (status, reused["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let starts = fx.log_text(&slow).await.matches("started").count();
    assert_eq!(starts, 2, "the first start plus exactly one restart");

    // The agent process dies: it shows offline, and commands fail clearly instead of hanging.
    agent.kill().unwrap();
    agent.wait().unwrap();
    eventually("the agent to show offline", Duration::from_secs(15), || {
        let admin = admin.clone();
        let id = id.clone();
        async move {
            let a = admin.get(&format!("/api/v1/agents/{id}")).await;
            (a["status"] == "offline").then_some(())
        }
    })
    .await;
    let (status, body) = admin.call("POST", &path, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("agent_offline")),
        "{body}"
    );
    fx.cleanup().await;
}
