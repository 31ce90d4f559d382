//! The agent's command line refuses what it cannot do, with exit status ≠ 0 and a message that
//! names the problem. (Being an integration test of this package, it also makes
//! `cargo test --workspace` build the `infrapilot-agent` binary the system tests run.)

use std::process::{Command, Output};

fn agent(state_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infrapilot-agent"))
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .env_remove("INFRAPILOT_AGENT_ENDPOINT")
        .env_remove("INFRAPILOT_AGENT_TOKEN")
        .output()
        .expect("run infrapilot-agent")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn check_and_run_refuse_an_empty_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    for command in [&["check"][..], &["run", "--no-proxy"][..]] {
        let output = agent(dir.path(), command);
        assert!(!output.status.success(), "{command:?} succeeded");
        let message = stderr(&output);
        assert!(
            message.contains("no trust material") && message.contains("enroll"),
            "{command:?}: {message}"
        );
    }
}

#[test]
fn enroll_refuses_plain_http_to_a_remote_host_before_sending_the_token() {
    let dir = tempfile::tempdir().unwrap();
    // 192.0.2.1 (TEST-NET-1) is never reached: the refusal comes before any connection.
    let output = agent(
        dir.path(),
        &[
            "enroll",
            "--endpoint",
            "http://192.0.2.1:8080",
            "--token",
            "ipe_x",
        ],
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("plain http"), "{message}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a refused enrollment wrote state"
    );
}

#[test]
fn enroll_names_a_missing_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(
        dir.path(),
        &[
            "enroll",
            "--endpoint",
            "https://127.0.0.1:1",
            "--token",
            "ipe_x",
            "--ca-file",
            "/nonexistent/ca.pem",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--ca-file"), "{}", stderr(&output));
}
