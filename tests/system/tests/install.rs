//! The one-line installer, run for real: `/install.sh` from the host, the agent binary and its
//! checksum from the host, enrollment with the token from the environment, then the agent runs
//! (in the foreground: no systemd here) and its node comes online.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, eventually, temp_dir};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn the_one_liner_installs_enrolls_and_runs_the_agent() {
    let server = Server::start(false, 2).await;
    let admin = server.admin().await;
    let (status, token) = admin
        .call(
            "POST",
            "/api/v1/enrollment-tokens",
            Some(json!({"name": "installer", "max_uses": 2, "expires_in_hours": 1})),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let secret = token["secret"].as_str().unwrap();
    let line = token["install_command"].as_str().unwrap();
    // The agent's SHA-256 travels in the line itself (not fetched from the same origin).
    let served = std::fs::read(common::agent_bin()).unwrap();
    let pinned = sha256_hex(&served);
    assert_eq!(
        line,
        format!(
            "curl -fsSL --proto '=https,http' '{0}/install.sh' | sudo INFRAPILOT_ENDPOINT='{0}' INFRAPILOT_AGENT_TOKEN='{secret}' INFRAPILOT_AGENT_SHA256='{pinned}' sh",
            server.base
        )
    );
    assert!(
        token["install_warning"].is_null(),
        "loopback http is fine: {token}"
    );

    let script = reqwest::get(format!("{}/install.sh", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(script.starts_with("#!/bin/sh"));
    let sum = reqwest::get(format!("{}/downloads/infrapilot-agent.sha256", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(sum.split_whitespace().nth(1), Some("infrapilot-agent"));

    let dir = temp_dir("install");
    std::fs::write(dir.join("install.sh"), &script).unwrap();
    let run = |token: &str, extra: &[&str]| {
        let mut command = Command::new("sh");
        command
            .arg(dir.join("install.sh"))
            .args(["--prefix", dir.join("bin").to_str().unwrap()])
            .args(["--state-dir", dir.join("state").to_str().unwrap()])
            .args(["--config-dir", dir.join("etc").to_str().unwrap()])
            .args(extra)
            .env("INFRAPILOT_ENDPOINT", &server.base)
            .env("INFRAPILOT_AGENT_TOKEN", token)
            .env("INFRAPILOT_AGENT_SHA256", &pinned)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };

    // A hostile token is data: it reaches the host as a (refused) token and runs nothing.
    let marker = dir.join("pwned");
    let hostile = format!(
        "ipe_x'; touch {0}; echo '$(touch {0})`touch {0}`",
        marker.display()
    );
    let out = run(&hostile, &["--name", "hostile"]).output().unwrap();
    assert!(!out.status.success(), "a bad token fails the install");
    assert!(!marker.exists(), "the token was evaluated as shell code");

    // A binary that is not the pinned one (a tampered download) is refused before anything runs.
    let tampered_prefix = dir.join("tampered-bin");
    let out = run(
        secret,
        &[
            "--name",
            "tampered",
            "--prefix",
            tampered_prefix.to_str().unwrap(),
        ],
    )
    .env("INFRAPILOT_AGENT_SHA256", "0".repeat(64))
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !tampered_prefix.join("infrapilot-agent").exists(),
        "nothing was installed"
    );

    // The real install, in the foreground.
    let mut child = run(secret, &["--foreground", "--name", "installed-node"])
        .spawn()
        .map(common::KillOnDrop)
        .unwrap();
    let id = admin.online_agent("installed-node").await;
    let installed = std::fs::read(dir.join("bin/infrapilot-agent")).unwrap();
    assert_eq!(
        sha256_hex(&installed),
        sum.split_whitespace().next().unwrap(),
        "the installed binary is the one the checksum names"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("state/agent.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let env = std::fs::read_to_string(dir.join("etc/agent.env")).unwrap();
    assert!(!env.contains(secret), "the token is not kept on the node");
    child.kill().unwrap();
    child.wait().unwrap();
    eventually("the node to go offline", Duration::from_secs(15), || {
        let admin = admin.clone();
        let id = id.clone();
        async move {
            (admin.get(&format!("/api/v1/agents/{id}")).await["status"] == "offline").then_some(())
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
