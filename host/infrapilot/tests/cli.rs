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
        .env_remove("INFRAPILOT_LICENSE_PUBLIC_KEY")
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

#[test]
fn licences_are_issued_with_a_key_file_and_verified_offline() {
    let dir = std::env::temp_dir().join(format!("infrapilot-license-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();

    let out = infrapilot(
        &dir,
        &["license", "keygen", "--out", &path("issuer.pem")],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("issuer.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let again = infrapilot(
        &dir,
        &["license", "keygen", "--out", &path("issuer.pem")],
        "",
    );
    assert!(
        !again.status.success(),
        "an existing key is not overwritten"
    );

    let issue = |expires: &str, out: &str| {
        infrapilot(
            &dir,
            &[
                "license",
                "issue",
                "--key",
                &path("issuer.pem"),
                "--licensee",
                "Acme Corp",
                "--features",
                "sso,pager",
                "--expires",
                expires,
                "--limit",
                "nodes=50",
                "--out",
                &path(out),
            ],
            "",
        )
    };
    let out = issue("2099-01-01", "valid.lic");
    assert!(out.status.success(), "{}", text(&out));
    let verify = |file: &str, key: Option<&str>| {
        let mut args = vec!["license".to_owned(), "verify".to_owned(), path(file)];
        if let Some(k) = key {
            args.extend(["--public-key".to_owned(), path(k)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        infrapilot(&dir, &args, "")
    };
    let ok = verify("valid.lic", Some("issuer.pub"));
    assert!(ok.status.success(), "{}", text(&ok));
    let shown = text(&ok);
    assert!(
        shown.contains("status:    valid")
            && shown.contains("features:  sso, pager")
            && shown.contains("nodes=50"),
        "{shown}"
    );

    // The vendor key built into the binary did not sign it.
    let foreign = verify("valid.lic", None);
    assert!(!foreign.status.success());
    assert!(
        text(&foreign).contains("signature does not match"),
        "{}",
        text(&foreign)
    );

    // One changed byte in the payload: refused.
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("valid.lic")).unwrap()).unwrap();
    let payload = file["payload"].as_str().unwrap().to_owned();
    let flipped = if payload.starts_with('e') {
        payload.replacen('e', "f", 1)
    } else {
        format!("e{}", &payload[1..])
    };
    file["payload"] = flipped.into();
    std::fs::write(dir.join("tampered.lic"), file.to_string()).unwrap();
    let tampered = verify("tampered.lic", Some("issuer.pub"));
    assert!(!tampered.status.success(), "{}", text(&tampered));

    // The CLI will not issue a licence that is already expired ...
    let past = issue("2026-01-01T00:00:00Z", "expired.lic");
    assert!(!past.status.success());
    assert!(text(&past).contains("expires_at"), "{}", text(&past));
    // ... but one that was valid and has run out is reported as expired.
    let key = infrapilot_plugin_types::bundle::SigningKey::from_pem(
        &std::fs::read_to_string(dir.join("issuer.pem")).unwrap(),
    )
    .unwrap();
    let old = infrapilot_licensing::License {
        id: "old".into(),
        licensee: "Acme Corp".into(),
        edition: "enterprise".into(),
        features: vec!["sso".into()],
        limits: Default::default(),
        issued_at: "2025-01-01T00:00:00Z".into(),
        expires_at: "2026-01-01T00:00:00Z".into(),
    };
    std::fs::write(dir.join("expired.lic"), old.issue(&key).unwrap()).unwrap();
    let expired = verify("expired.lic", Some("issuer.pub"));
    assert!(!expired.status.success());
    assert!(text(&expired).contains("EXPIRED"), "{}", text(&expired));

    // Bad input names the option.
    let bad = issue("next tuesday", "bad.lic");
    assert!(!bad.status.success());
    assert!(text(&bad).contains("--expires"), "{}", text(&bad));
    let _ = std::fs::remove_dir_all(&dir);
}
