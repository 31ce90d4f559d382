//! Test harness with real components: the `infrapilot` binary as a separate process (SQLite, its
//! built-in agent or none), `infrapilot-agent` processes, and a real Docker engine (`DOCKER_HOST`,
//! started by `scripts/start-docker.sh`; test containers come from the locally imported image
//! `infrapilot-test/busybox:latest`, made with bollard here, never a shell).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, LogsOptions, RemoveContainerOptions,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

pub const IMAGE: &str = "infrapilot-test/busybox:latest";

/// The Docker engine for the tests, or `None` (skip) outside CI when there is none.
pub async fn docker() -> Option<Docker> {
    let reachable = async {
        let d = Docker::connect_with_local_defaults().ok()?;
        let d = d.negotiate_version().await.ok()?;
        d.inspect_image(IMAGE).await.ok()?;
        Some(d)
    }
    .await;
    if reachable.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true but no Docker engine with {IMAGE} at DOCKER_HOST: run scripts/start-docker.sh"
        );
        eprintln!(
            "skipping: no Docker engine with {IMAGE} (run scripts/start-docker.sh and set DOCKER_HOST)"
        );
    }
    reachable
}

/// A binary of the workspace, from the target directory this test runs from
/// (`target/debug/deps/<test>` → `target/debug/<name>`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p infrapilot -p infrapilot-agent, or cargo test --workspace)",
        path.display()
    );
    path
}

pub fn agent_bin() -> PathBuf {
    bin("infrapilot-agent")
}

/// A port free now, for something that binds it later (an agent's nginx, a server): taken
/// below the kernel's ephemeral range (32768–60999 here), so that an outgoing connection's
/// source port cannot take it in between, as `bind(0)`'s ports could (seen in CI: "port is
/// already allocated" when Docker published the nginx port).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Spread over the range by process, walked in order within it.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = 12_000u16;
    let seed = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(step.wrapping_mul(7)) % span);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// The label every fixture container carries (its value the fixture's prefix). Test agents
/// collect the logs of containers with the label they are given only, and by default of none
/// ([`NO_LOGS_LABEL`]): else every node of every test running at once would store every test's
/// log floods (hundreds of MB each).
pub const FIXTURE_LABEL: &str = "infrapilot.test.fixture";

/// The log filter test agents get unless a test asks for its fixture's: no container carries it
/// (the managed nginx is collected regardless).
pub const NO_LOGS_LABEL: &str = "infrapilot.test.fixture=-";

/// A test's directory (and the `<dir>.log` beside it), removed when dropped unless the test is
/// failing (then kept to read).
pub struct TempDir(PathBuf);

impl TempDir {
    /// The path, no longer removed on drop (its owner removes it).
    pub fn into_kept(self) -> PathBuf {
        let path = self.0.clone();
        std::mem::forget(self);
        path
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        remove_unless_panicking(&self.0);
    }
}

pub fn temp_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("ipt-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// Removes a test's directory and its `.log` unless the test is failing.
pub fn remove_unless_panicking(dir: &Path) {
    if !std::thread::panicking() {
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_file(dir.with_extension("log"));
        let _ = std::fs::remove_file(dir.with_extension("log2"));
    }
}

/// `infrapilot serve` as a separate process.
pub struct Server {
    pub base: String,
    pub data_dir: PathBuf,
    pub http_port: u16,
    pub grpc_port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Server {
    pub async fn start(builtin_agent: bool, heartbeat_seconds: u32) -> Server {
        Server::start_with(builtin_agent, heartbeat_seconds, &[]).await
    }

    /// Like [`Server::start`], with more `INFRAPILOT_*` settings.
    pub async fn start_with(
        builtin_agent: bool,
        heartbeat_seconds: u32,
        extra_env: &[(&str, &str)],
    ) -> Server {
        let mut server = Server {
            data_dir: temp_dir("host").into_kept(),
            http_port: free_port(),
            grpc_port: free_port(),
            base: String::new(),
            env: vec![
                ("INFRAPILOT_BUILTIN_AGENT".into(), builtin_agent.to_string()),
                (
                    "INFRAPILOT_HEARTBEAT_SECONDS".into(),
                    heartbeat_seconds.to_string(),
                ),
                ("INFRAPILOT_LOG_LEVEL".into(), "info".into()),
                (
                    "INFRAPILOT_BUILTIN_AGENT_LOG_LABEL".into(),
                    NO_LOGS_LABEL.into(),
                ),
            ],
            child: None,
        };
        server.base = format!("http://127.0.0.1:{}", server.http_port);
        // Mailed links name the configured public URL (required in the SaaS edition).
        server
            .env
            .push(("INFRAPILOT_PUBLIC_URL".into(), server.base.clone()));
        server.env.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("serve.log"))
            .unwrap();
        let child = Command::new(bin("infrapilot"))
            .arg("serve")
            .env("INFRAPILOT_DATA_DIR", &self.data_dir)
            .env("INFRAPILOT_LISTEN", format!("127.0.0.1:{}", self.http_port))
            .env(
                "INFRAPILOT_GRPC_LISTEN",
                format!("127.0.0.1:{}", self.grpc_port),
            )
            .env("INFRAPILOT_GRPC_HOSTNAMES", "127.0.0.1")
            .env_remove("INFRAPILOT_DATABASE_URL")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.base)).await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the server did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("serve.log")).unwrap_or_default()
    }

    /// The server's SQLite database (to look at what it stored).
    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self.data_dir.join("infrapilot.db").display())
    }

    /// SIGTERM, then waits up to `limit` for the process to exit; its exit status, or `None` if
    /// it was still running (then it is killed).
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        // Held so that a failing step below still kills it.
        let mut child = KillOnDrop(self.child.take()?);
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        None
    }

    /// SIGKILL: no graceful anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// Sets an `INFRAPILOT_*` setting for the next (re)start.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_owned(), value.to_owned()));
    }

    /// The one-time setup code the server wrote to its data directory at first start.
    pub fn setup_code(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("setup-code"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_default()
    }

    /// First-run setup and a signed-in admin.
    pub async fn admin(&self) -> Api {
        let api = Api {
            base: self.base.clone(),
            token: String::new(),
        };
        let code = self.setup_code();
        api.call(
            "POST",
            "/api/v1/setup",
            Some(json!({"setup_code": code, "email": "admin@example.com", "password": "a long password", "name": "Admin"})),
        )
        .await;
        api.login("admin@example.com", "a long password").await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        remove_unless_panicking(&self.data_dir);
    }
}

/// A signed-in API client.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn login(&self, email: &str, password: &str) -> Api {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/auth/login",
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "login failed: {body}");
        Api {
            base: self.base.clone(),
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .unwrap();
        let mut request = client.request(method.parse().unwrap(), format!("{}{path}", self.base));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POSTs raw bytes (a plugin bundle).
    pub async fn upload(&self, path: &str, bytes: Vec<u8>) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/x-tar")
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Waits until the agent named `name` is online; returns its id.
    pub async fn online_agent(&self, name: &str) -> String {
        let started = Instant::now();
        loop {
            let agents = self.get("/api/v1/agents").await;
            if let Some(a) = agents
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == name && a["status"] == "online")
            {
                return a["id"].as_str().unwrap().to_owned();
            }
            // Generous: six system tests run at once on two cores, and an agent's first connect
            // waits for its process to start (seen at 30 s once in CI, under that load).
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "agent {name} did not come online: {agents}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Containers made for one test, removed with it.
pub struct Fixture {
    pub docker: Docker,
    pub prefix: String,
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Fixture {
    pub fn new(docker: Docker, tag: &str) -> Fixture {
        Fixture {
            docker,
            prefix: format!(
                "ipt-{tag}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            ),
            containers: Vec::new(),
            networks: Vec::new(),
        }
    }

    /// The log filter (`key=value`) under which an agent collects this fixture's containers'
    /// logs: `INFRAPILOT_AGENT_LOG_LABEL` or `INFRAPILOT_BUILTIN_AGENT_LOG_LABEL`.
    pub fn log_label(&self) -> String {
        format!("{FIXTURE_LABEL}={}", self.prefix)
    }

    /// Removes this container (and network) with the fixture's own.
    pub fn track(&mut self, container: &str, network: Option<&str>) {
        self.containers.push(container.to_owned());
        self.networks.extend(network.map(str::to_owned));
    }

    pub async fn network(&mut self) -> String {
        let name = format!("{}-net", self.prefix);
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        self.networks.push(name.clone());
        name
    }

    /// Creates and starts a container running `script` under busybox sh.
    pub async fn run(
        &mut self,
        name: &str,
        script: &str,
        labels: &[(&str, &str)],
        env: &[&str],
        network: Option<&str>,
    ) -> String {
        self.run_with(name, script, labels, env, network, None)
            .await
    }

    /// Like [`Fixture::run`], restarted by Docker on failure up to `restarts` times.
    pub async fn run_restarting(&mut self, name: &str, script: &str, restarts: i64) -> String {
        self.run_with(name, script, &[], &[], None, Some(restarts))
            .await
    }

    /// Creates and starts a container under a memory limit (bytes).
    pub async fn run_with_memory_limit(&mut self, name: &str, script: &str, memory: i64) -> String {
        self.run_configured(name, script, &[], &[], None, None, Some(memory))
            .await
    }

    async fn run_with(
        &mut self,
        name: &str,
        script: &str,
        labels: &[(&str, &str)],
        env: &[&str],
        network: Option<&str>,
        restarts: Option<i64>,
    ) -> String {
        self.run_configured(name, script, labels, env, network, restarts, None)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_configured(
        &mut self,
        name: &str,
        script: &str,
        labels: &[(&str, &str)],
        env: &[&str],
        network: Option<&str>,
        restarts: Option<i64>,
        memory: Option<i64>,
    ) -> String {
        let full = format!("{}-{name}", self.prefix);
        let mut labels: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.insert(FIXTURE_LABEL.into(), self.prefix.clone());
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(full.clone()),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some(IMAGE.into()),
                    cmd: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
                    labels: Some(labels),
                    env: Some(env.iter().map(|e| (*e).to_owned()).collect()),
                    host_config: Some(HostConfig {
                        network_mode: network.map(str::to_owned),
                        memory,
                        restart_policy: restarts.map(|n| bollard::models::RestartPolicy {
                            name: Some(bollard::models::RestartPolicyNameEnum::ON_FAILURE),
                            maximum_retry_count: Some(n),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        self.containers.push(full.clone());
        self.docker
            .start_container(
                &full,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .unwrap();
        full
    }

    pub async fn state(&self, name: &str) -> Option<String> {
        self.docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.status)
            .map(|s| s.to_string())
    }

    /// The container's whole log (stdout), through Docker directly.
    pub async fn log_text(&self, name: &str) -> String {
        let mut stream = self.docker.logs(
            name,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: "all".into(),
                ..Default::default()
            }),
        );
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&chunk.to_string());
        }
        text
    }

    pub async fn cleanup(&self) {
        for c in &self.containers {
            let _ = self
                .docker
                .remove_container(
                    c,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
        }
        for n in &self.networks {
            let _ = self.docker.remove_network(n).await;
        }
    }
}

impl Drop for Fixture {
    /// Removes the containers even when the test failed half-way.
    fn drop(&mut self) {
        let (docker, containers, networks) = (
            self.docker.clone(),
            std::mem::take(&mut self.containers),
            std::mem::take(&mut self.networks),
        );
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                for c in &containers {
                    let _ = docker
                        .remove_container(
                            c,
                            Some(RemoveContainerOptions {
                                force: true,
                                ..Default::default()
                            }),
                        )
                        .await;
                }
                for n in &networks {
                    let _ = docker.remove_network(n).await;
                }
            });
        })
        .join();
    }
}

/// Polls `check` until it returns `Some`, or fails with `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn state_dir_of(dir: &Path) -> PathBuf {
    dir.join("agent-state")
}

/// A user of the admin's organisation with this role, signed in; and their id.
pub async fn user(admin: &Api, email: &str, role: &str) -> (Api, String) {
    let (status, body) = admin
        .call(
            "POST",
            "/api/v1/users",
            Some(
                json!({"email": email, "password": "a long password", "name": role, "role": role}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        admin.login(email, "a long password").await,
        body["id"].as_str().unwrap().to_owned(),
    )
}

/// A separate agent process enrolled with a token, heartbeating every second: its state
/// directory, then the process (bound in this order, `let (state, agent) = …` drops the process
/// first: a directory is removed after the agent writing into it is gone).
pub async fn enrolled_agent(server: &Server, admin: &Api, name: &str) -> (TempDir, KillOnDrop) {
    enrolled_agent_with(server, admin, name, &[]).await
}

/// Like [`enrolled_agent`], with more `INFRAPILOT_AGENT_*` settings for `run`.
pub async fn enrolled_agent_with(
    server: &Server,
    admin: &Api,
    name: &str,
    env: &[(&str, &str)],
) -> (TempDir, KillOnDrop) {
    let (status, token) = admin
        .call(
            "POST",
            "/api/v1/enrollment-tokens",
            Some(json!({"name": name, "max_uses": 1, "expires_in_hours": 1})),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let state = temp_dir("agent");
    let out = std::process::Command::new(agent_bin())
        .arg("--state-dir")
        .arg(&state)
        .args(["enroll", "--endpoint", &server.base, "--name", name])
        .env("INFRAPILOT_AGENT_TOKEN", token["secret"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agent = run_agent(&state, env);
    (state, agent)
}

/// Runs an enrolled agent from its state directory (again, after a kill), its stderr appended
/// to `<state>.log`.
pub fn run_agent(state: &std::path::Path, env: &[(&str, &str)]) -> KillOnDrop {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.with_extension("log"))
        .unwrap();
    std::process::Command::new(agent_bin())
        .arg("--state-dir")
        .arg(state)
        .args(["run", "--heartbeat-seconds", "1"])
        .env("INFRAPILOT_AGENT_LOG_LABEL", NO_LOGS_LABEL)
        .envs(env.iter().copied())
        .stderr(log)
        .spawn()
        .map(KillOnDrop)
        .unwrap()
}

/// A child process killed and reaped when dropped: a failing test leaves no process behind.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first-party plugin build output: components, `bundles/`, `dev-signing/`.
pub fn plugin_build() -> Option<PathBuf> {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("plugins");
    if dir.join("bundles/infrapilot_webhook.bundle").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI=true but no plugin bundles in {}: run scripts/build-plugins.sh",
        dir.display()
    );
    eprintln!("skipping: no plugin bundles (run scripts/build-plugins.sh)");
    None
}

/// A WebSocket to `path` on the server, authenticated the browser's way (subprotocol
/// `bearer.<token>`), with the `infrapilot.v1` protocol agreed.
pub async fn websocket(
    server: &Server,
    api: &Api,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("{}{path}", server.base.replacen("http://", "ws://", 1));
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("infrapilot.v1, bearer.{}", api.token)
            .parse()
            .unwrap(),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "infrapilot.v1"
    );
    socket
}

/// aiosmtpd writing each message into a maildir.
pub struct SmtpServer {
    pub port: u16,
    /// Killed with the server (and at once if it never starts listening); before its maildir
    /// goes (fields drop in this order).
    _child: KillOnDrop,
    pub maildir: TempDir,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let port = free_port();
        let maildir = temp_dir("maildir");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(KillOnDrop)
            .expect("python3-aiosmtpd is installed (apt-get install python3-aiosmtpd)");
        eventually("aiosmtpd listening", Duration::from_secs(15), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        SmtpServer {
            port,
            maildir,
            _child: child,
        }
    }

    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }
}

/// A peer started by one of `tests/peers/start-*.sh`: its work directory and the variables its
/// `env` file names (`NAME=value` separated by spaces).
pub struct Peer {
    pub dir: PathBuf,
    env: String,
}

impl Peer {
    /// Runs `tests/peers/<script>`, which prints the peer's work directory.
    pub fn start(script: &str) -> Peer {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../peers/{script}"));
        let out = Command::new("bash").arg(path).output().unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        let env = std::fs::read_to_string(dir.join("env")).unwrap();
        Peer { dir, env }
    }

    /// The value of `name` in the peer's `env` file.
    pub fn var(&self, name: &str) -> String {
        self.env
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} is not in {}/env", self.dir.display()))
            .to_owned()
    }
}
