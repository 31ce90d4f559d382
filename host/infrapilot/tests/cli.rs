//! The binary's command line, run as a user would: `admin create-user` (password on stdin),
//! `audit verify` on an intact and on a tampered log, and refusal of bad input.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn infrapilot(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_infrapilot"))
        .args(args)
        .env("INFRAPILOT_DATA_DIR", data_dir)
        .env_remove("INFRAPILOT_DATABASE_URL")
        .env_remove("INFRAPILOT_CONFIG")
        .env("INFRAPILOT_LOG_LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run infrapilot");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn create_user_then_verify_then_detect_tampering() {
    let dir = std::env::temp_dir().join(format!("infrapilot-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let args = [
        "admin",
        "create-user",
        "--email",
        "Ops@Example.com",
        "--name",
        "Ops",
    ];
    let out = infrapilot(&dir, &args, "a long enough password\n");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ops@example.com"), "{}", text(&out));
    assert!(text(&out).contains("super_admin"));

    let again = infrapilot(&dir, &args, "a long enough password\n");
    assert!(!again.status.success(), "duplicate email refused");
    assert!(text(&again).contains("exists"), "{}", text(&again));

    let weak = infrapilot(
        &dir,
        &[
            "admin",
            "create-user",
            "--email",
            "x@example.com",
            "--name",
            "X",
            "--role",
            "viewer",
        ],
        "short\n",
    );
    assert!(!weak.status.success());
    assert!(text(&weak).contains("password"), "{}", text(&weak));
    let bad_role = infrapilot(
        &dir,
        &[
            "admin",
            "create-user",
            "--email",
            "y@example.com",
            "--name",
            "Y",
            "--role",
            "god",
        ],
        "a long enough password\n",
    );
    assert!(!bad_role.status.success());
    assert!(text(&bad_role).contains("role"), "{}", text(&bad_role));

    let ok = infrapilot(&dir, &["audit", "verify"], "");
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("1 events verified"), "{}", text(&ok));

    // Tamper with the database directly, as someone with file access would.
    let db = dir.join("infrapilot.db");
    let status = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE audit_events SET actor='nobody' WHERE seq=1\"); c.commit()")
        .arg(&db)
        .status()
        .expect("python3");
    assert!(status.success());
    let broken = infrapilot(&dir, &["audit", "verify"], "");
    assert_eq!(broken.status.code(), Some(1), "{}", text(&broken));
    assert!(
        text(&broken).contains("BROKEN at event 1"),
        "{}",
        text(&broken)
    );

    let bad_env = Command::new(env!("CARGO_BIN_EXE_infrapilot"))
        .args(["audit", "verify"])
        .env("INFRAPILOT_DATA_DIR", &dir)
        .env("INFRAPILOT_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!bad_env.status.success());
    assert!(text(&bad_env).contains("INFRAPILOT_LOG_FORMAT"));
    let _ = std::fs::remove_dir_all(&dir);
}
