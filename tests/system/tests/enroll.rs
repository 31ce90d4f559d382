//! A real agent process enrolling with a real host (router on a loopback port, SQLite):
//! tokens used up, expired or revoked are refused; the key stays on the node with mode 0600;
//! without trust material the agent refuses to start.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use infrapilot_api::{ApiSettings, AppState};
use infrapilot_identity::SecretBox;
use infrapilot_store::Backend;
use infrapilot_store::testing::TestDb;
use serde_json::{Value, json};

struct Host {
    base: String,
    grpc_url: String,
    db: TestDb,
    admin: String,
}

async fn host() -> Host {
    let db = TestDb::new(Backend::Sqlite).await;
    let secrets = SecretBox::new(&[9u8; 32]).unwrap();
    let ca = infrapilot_gateway::load_or_create_ca(&db.store, &secrets)
        .await
        .unwrap();
    let grpc_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let grpc_url = format!("https://127.0.0.1:{grpc_port}");
    let settings = ApiSettings {
        agent_grpc_url: grpc_url.clone(),
        setup_code: Some("enroll-test-setup-code".into()),
        ..ApiSettings::default()
    };
    let state = AppState::new(db.store.clone(), secrets, ca, settings);
    let (store, ca, hub) = (db.store.clone(), state.ca_handle(), state.hub().clone());
    tokio::spawn(async move {
        let config = infrapilot_gateway::server::GatewayConfig {
            listen: format!("127.0.0.1:{grpc_port}").parse().unwrap(),
            hostnames: vec!["127.0.0.1".into()],
        };
        infrapilot_gateway::server::serve(store, ca, hub, config, std::future::pending())
            .await
            .unwrap();
    });
    let app = infrapilot_api::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let http = Http(base.clone());
    http.post(
        "/api/v1/setup",
        None,
        json!({"setup_code": "enroll-test-setup-code", "email": "a@example.com", "password": "a long password", "name": "A"}),
    )
    .await;
    let login = http
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "a@example.com", "password": "a long password"}),
        )
        .await;
    let admin = login["access_token"].as_str().unwrap().to_owned();
    Host {
        base,
        grpc_url,
        db,
        admin,
    }
}

/// A tiny HTTP client over the test's own runtime (the agent under test uses its own).
struct Http(String);

impl Http {
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.0))
            .json(&body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null)
    }
}

async fn token(host: &Host, max_uses: i64) -> (String, String) {
    let r = Http(host.base.clone())
        .post(
            "/api/v1/enrollment-tokens",
            Some(&host.admin),
            json!({"name": "t", "max_uses": max_uses, "expires_in_hours": 1}),
        )
        .await;
    (
        r["id"].as_str().unwrap().to_owned(),
        r["secret"].as_str().unwrap().to_owned(),
    )
}

async fn agent(state: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(common::agent_bin())
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("INFRAPILOT_AGENT_TOKEN")
        .output()
        .await
        .unwrap()
}

async fn enroll(host: &Host, state: &Path, token: &str, name: &str) -> Output {
    tokio::process::Command::new(common::agent_bin())
        .arg("--state-dir")
        .arg(state)
        .args(["enroll", "--endpoint", &host.base, "--name", name])
        .env("INFRAPILOT_AGENT_TOKEN", token)
        .output()
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_agent_process_enrolls_and_fails_closed() {
    let host = host().await;
    let dir = std::env::temp_dir().join(format!("infrapilot-agent-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("node-1");

    // No trust material: refuse.
    let check = agent(&state, &["check"]).await;
    assert!(!check.status.success());
    assert!(text(&check).contains("enrol first"), "{}", text(&check));

    let (_, one_use) = token(&host, 1).await;
    let out = enroll(&host, &state, &one_use, "node-1").await;
    assert!(out.status.success(), "{}", text(&out));
    for file in ["agent.key", "agent.crt", "ca.crt", "agent.json"] {
        let mode = std::fs::metadata(state.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let key = std::fs::read_to_string(state.join("agent.key")).unwrap();
    assert!(key.contains("PRIVATE KEY"));
    // The private key never left the node: the host stores only the certificate's fingerprint.
    let stored = host
        .db
        .app_scalar("SELECT cert_fingerprint FROM agents")
        .await;
    assert_eq!(stored.len(), 64);
    let check = agent(&state, &["check"]).await;
    assert!(check.status.success(), "{}", text(&check));

    // Used up.
    let out = enroll(&host, &dir.join("node-2"), &one_use, "node-2").await;
    assert!(!out.status.success());
    assert!(text(&out).contains("used up"), "{}", text(&out));
    assert!(
        !dir.join("node-2").join("agent.key").exists(),
        "nothing written on refusal"
    );

    // Expired.
    let (expired_id, expired) = token(&host, 5).await;
    host.db
        .raw_execute(&format!(
            "UPDATE enrollment_tokens SET expires_at = 1 WHERE id = '{expired_id}'"
        ))
        .await;
    let out = enroll(&host, &dir.join("node-3"), &expired, "node-3").await;
    assert!(!out.status.success());
    assert!(text(&out).contains("expired"), "{}", text(&out));

    // Revoked.
    let (revoked_id, revoked) = token(&host, 5).await;
    let status = reqwest::Client::new()
        .delete(format!(
            "{}/api/v1/enrollment-tokens/{revoked_id}",
            host.base
        ))
        .bearer_auth(&host.admin)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);
    let out = enroll(&host, &dir.join("node-4"), &revoked, "node-4").await;
    assert!(!out.status.success());
    assert!(text(&out).contains("revoked"), "{}", text(&out));

    // Loosened permissions: the agent refuses to use the key.
    std::fs::set_permissions(
        state.join("agent.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let check = agent(&state, &["check"]).await;
    assert!(!check.status.success());
    assert!(text(&check).contains("0600"), "{}", text(&check));

    // A token must not cross the network in clear.
    let clear = tokio::process::Command::new(common::agent_bin())
        .arg("--state-dir")
        .arg(dir.join("node-6"))
        .args([
            "enroll",
            "--endpoint",
            "http://pilot.example.com",
            "--name",
            "n",
        ])
        .env("INFRAPILOT_AGENT_TOKEN", "ipe_x")
        .output()
        .await
        .unwrap();
    assert!(!clear.status.success());
    assert!(text(&clear).contains("loopback"), "{}", text(&clear));
    let _ = std::fs::remove_dir_all(&dir);
}

async fn agents(host: &Host) -> Value {
    reqwest::Client::new()
        .get(format!("{}/api/v1/agents", host.base))
        .bearer_auth(&host.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the agent list until `check` holds (10 s at most).
async fn wait_for(host: &Host, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let list = agents(host).await;
        if check(&list) {
            return list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}: {}", agents(host).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_holds_an_mtls_session_until_revoked() {
    let host = host().await;
    let dir = std::env::temp_dir().join(format!("infrapilot-agent-session-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("node");

    // Without trust material `run` refuses to start.
    let refused = agent(&state, &["run"]).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("refusing to start"),
        "{}",
        text(&refused)
    );

    let (_, secret) = token(&host, 1).await;
    let out = enroll(&host, &state, &secret, "node-a").await;
    assert!(out.status.success(), "{}", text(&out));
    let identity: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("agent.json")).unwrap()).unwrap();
    assert_eq!(identity["grpc_endpoint"], host.grpc_url.as_str());

    let mut running = tokio::process::Command::new(common::agent_bin())
        .arg("--state-dir")
        .arg(&state)
        .args(["run", "--heartbeat-seconds", "1"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let list = wait_for(&host, "the agent online", |l| l[0]["status"] == "online").await;
    let first_seen = list[0]["last_seen_at"].as_str().unwrap().to_owned();
    wait_for(&host, "a heartbeat", |l| {
        l[0]["last_seen_at"].as_str() != Some(first_seen.as_str())
    })
    .await;

    // Revoked: the open session ends at the next heartbeat, and the agent stops (fail closed).
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let status = reqwest::Client::new()
        .post(format!("{}/api/v1/agents/{id}/revoke", host.base))
        .bearer_auth(&host.admin)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);
    let exit = tokio::time::timeout(std::time::Duration::from_secs(10), running.wait())
        .await
        .expect("the revoked agent stops")
        .unwrap();
    assert!(!exit.success());
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(running.stderr.as_mut().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("revoked"), "{stderr}");

    // And a new connection is refused outright.
    let again = agent(&state, &["run", "--heartbeat-seconds", "1"]).await;
    assert!(!again.status.success());
    assert!(text(&again).contains("revoked"), "{}", text(&again));
    let _ = std::fs::remove_dir_all(&dir);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_over_the_stream_and_the_old_one_dies() {
    let host = host().await;
    let dir = std::env::temp_dir().join(format!("infrapilot-agent-rotate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("node");
    let (_, secret) = token(&host, 1).await;
    let out = enroll(&host, &state, &secret, "node-r").await;
    assert!(out.status.success(), "{}", text(&out));
    let before = dir.join("before");
    copy_dir(&state, &before);
    let old_cert = std::fs::read_to_string(state.join("agent.crt")).unwrap();
    let old_fp = host
        .db
        .app_scalar("SELECT cert_fingerprint FROM agents")
        .await;

    // Certificates live 30 days: renewing within 31 days means at once.
    let mut running = tokio::process::Command::new(common::agent_bin())
        .arg("--state-dir")
        .arg(&state)
        .args([
            "run",
            "--heartbeat-seconds",
            "1",
            "--renew-within-days",
            "31",
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut rotated = false;
    for _ in 0..100 {
        let fp = host
            .db
            .app_scalar("SELECT cert_fingerprint FROM agents")
            .await;
        let cert = std::fs::read_to_string(state.join("agent.crt")).unwrap_or_default();
        if fp != old_fp && cert != old_cert {
            rotated = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(rotated, "the certificate was not rotated");
    running.kill().await.unwrap();
    let mode = std::fs::metadata(state.join("agent.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // The new certificate opens a session; the old one is refused.
    let mut renewed = tokio::process::Command::new(common::agent_bin())
        .arg("--state-dir")
        .arg(&state)
        .args([
            "run",
            "--heartbeat-seconds",
            "1",
            "--renew-within-days",
            "0",
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let seen = host
        .db
        .app_scalar("SELECT COALESCE(CAST(last_seen_at AS TEXT), '') FROM agents")
        .await;
    let mut advanced = false;
    for _ in 0..100 {
        let now = host
            .db
            .app_scalar("SELECT COALESCE(CAST(last_seen_at AS TEXT), '') FROM agents")
            .await;
        if now != seen {
            advanced = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(advanced, "the rotated certificate did not open a session");
    renewed.kill().await.unwrap();
    let old = agent(
        &before,
        &[
            "run",
            "--heartbeat-seconds",
            "1",
            "--renew-within-days",
            "0",
        ],
    )
    .await;
    assert!(!old.status.success());
    assert!(
        text(&old).contains("unknown agent certificate"),
        "{}",
        text(&old)
    );
    let rotations = host
        .db
        .app_scalar("SELECT CAST(COUNT(*) AS TEXT) FROM audit_events WHERE action = 'agent.certificate_rotate'")
        .await;
    assert_eq!(rotations, "1");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Opens a TLS connection to the gateway with `certificate_pem`/`key_pem` as the client identity,
/// sends the HTTP/2 preface and reads the server's first bytes: `Ok` when the server accepted the
/// client certificate, `Err` with the TLS error when it did not.
async fn handshake(
    grpc_url: &str,
    ca_pem: &str,
    certificate_pem: &str,
    key_pem: &str,
) -> Result<usize, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(certificate_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let address = grpc_url.trim_start_matches("https://");
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut buffer = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buffer)).await {
        Ok(Ok(0)) => Err("the server closed the connection".into()),
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_a_foreign_ca_is_refused_at_the_handshake() {
    let host = host().await;
    let dir = std::env::temp_dir().join(format!("infrapilot-agent-foreign-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("node");
    let (_, secret) = token(&host, 1).await;
    let out = enroll(&host, &state, &secret, "node-f").await;
    assert!(out.status.success(), "{}", text(&out));
    let read = |name: &str| std::fs::read_to_string(state.join(name)).unwrap();
    let (key_pem, genuine_pem, host_ca_pem) =
        (read("agent.key"), read("agent.crt"), read("ca.crt"));

    // An impostor CA with the host CA's own name signs a certificate for the same agent id and
    // organisation over the same node key: everything matches except the issuer's key.
    let agent_id = host.db.app_scalar("SELECT id FROM agents").await;
    let org_id = host.db.app_scalar("SELECT org_id FROM agents").await;
    let (foreign_ca, _) =
        infrapilot_gateway::CertificateAuthority::generate("InfraPilot agent CA").unwrap();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let forged = foreign_ca.sign_agent_csr(&csr, &org_id, &agent_id).unwrap();

    // Control: the genuine certificate completes the handshake and the server speaks HTTP/2.
    let genuine = handshake(&host.grpc_url, &host_ca_pem, &genuine_pem, &key_pem).await;
    assert!(
        genuine.is_ok(),
        "the genuine certificate was refused: {genuine:?}"
    );
    // The forged one is refused by TLS itself, before any gRPC message: the issuer's name
    // matches, its signature does not (rustls answers with a decrypt_error alert).
    let refused = handshake(&host.grpc_url, &host_ca_pem, &forged.pem, &key_pem).await;
    let error = refused.expect_err("a certificate from a foreign CA was accepted");
    assert!(
        error.contains("received fatal alert: DecryptError"),
        "unexpected refusal: {error}"
    );
    // A foreign CA under another name is not even found as an issuer.
    let (stranger_ca, _) =
        infrapilot_gateway::CertificateAuthority::generate("Stranger CA").unwrap();
    let stranger = stranger_ca
        .sign_agent_csr(&csr, &org_id, &agent_id)
        .unwrap();
    let refused = handshake(&host.grpc_url, &host_ca_pem, &stranger.pem, &key_pem).await;
    let error = refused.expect_err("a certificate from an unknown CA was accepted");
    assert!(
        error.contains("received fatal alert: UnknownCA"),
        "unexpected refusal: {error}"
    );

    // The real agent process with the forged certificate never gets a session.
    let impostor = dir.join("impostor");
    copy_dir(&state, &impostor);
    std::fs::write(impostor.join("agent.crt"), &forged.pem).unwrap();
    let mut running = tokio::process::Command::new(common::agent_bin())
        .arg("--state-dir")
        .arg(&impostor)
        .args(["run", "--heartbeat-seconds", "1"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.kill().await.unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(running.stderr.as_mut().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(!stderr.contains("connected to the host"), "{stderr}");
    assert!(stderr.contains("session ended"), "{stderr}");
    let list = agents(&host).await;
    assert_eq!(list[0]["status"], "offline", "{list}");
    assert!(list[0]["last_seen_at"].is_null(), "{list}");
    let _ = std::fs::remove_dir_all(&dir);
}
