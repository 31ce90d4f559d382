//! The node's reverse proxy: a managed nginx container and the atomic apply of rendered
//! configuration trees.
//!
//! Layout of the proxy directory (bind-mounted at [`PROXY_MOUNT`] in the container):
//!
//! ```text
//! trees/rev-<N>/nginx.conf, hosts/<id>.conf   one complete, tested tree per revision
//! trees/.staging-<N>/                         a tree being written and tested
//! current -> trees/rev-<N>                    what nginx runs (`nginx -c current/nginx.conf`)
//! applied.json                                the last applied revision: files and hashes, hosts
//! acme/  certs/                               ACME webroot, certificates
//! ```
//!
//! An apply writes a staging tree, runs `nginx -t` on it inside the container (includes are
//! relative to the tested nginx.conf, so the test covers exactly that tree), leaves out hosts whose
//! files fail and tests again, renames it into place, swaps `current` with one `rename`, reloads
//! nginx and checks through nginx that the new revision answers. Any failure after the swap puts
//! the previous tree back. `current` therefore always names a complete tree that passed
//! `nginx -t`; killed at any point, the agent re-applies `applied.json`'s tree when it starts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, HostConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkDisconnectRequest, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, InspectNetworkOptions,
    KillContainerOptions, LogsOptions, StartContainerOptions,
};
use futures_util::StreamExt;
use infrapilot_proto::model::{ApplyReport, HostApplyResult, PROXY_MOUNT, ProxyNodeStatus};
use infrapilot_proto::v1::{
    AgentMessage, ApplyProxyConfig, ProxyFile, ProxyHostConfig, ProxyStatus, agent_message,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::certs::{AcmeOptions, CertStore};
use crate::docker::{DockerError, DockerNode};

/// How the agent runs its nginx. From the environment (`INFRAPILOT_AGENT_*`), see [`ProxyOptions::from_env`].
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The proxy directory on the node (mounted into the container).
    pub dir: PathBuf,
    pub image: String,
    pub container: String,
    /// The container's own network (nginx always has one, so publishing works).
    pub network: String,
    pub http_port: u16,
    pub https_port: u16,
    /// Address the ports are published on.
    pub bind_address: String,
    /// How long a reload has to take effect and each changed host to answer.
    pub verify_timeout: Duration,
    pub acme: AcmeOptions,
    /// How often the node reports drift and certificates to the host unasked.
    pub status_every: Duration,
}

impl ProxyOptions {
    /// `INFRAPILOT_AGENT_NGINX_IMAGE` (default `nginx:stable`), `INFRAPILOT_AGENT_HTTP_PORT` (80),
    /// `INFRAPILOT_AGENT_HTTPS_PORT` (443), `INFRAPILOT_AGENT_PROXY_BIND` (0.0.0.0),
    /// `INFRAPILOT_AGENT_NGINX_CONTAINER` (`infrapilot-nginx`), `INFRAPILOT_AGENT_PROXY_DIR`
    /// (`<state dir>/proxy`). A port that does not parse is an error naming the variable.
    pub fn from_env(state_dir: &Path) -> Result<ProxyOptions, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let port = |name: &str, default: u16| -> Result<u16, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{name}: {v:?} is not a port (1-65535)")),
            }
        };
        let seconds = |name: &str, default: u64| -> Result<u64, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= 10 * 365 * 86_400)
                    .ok_or_else(|| format!("{name}: {v:?} is not a whole number")),
            }
        };
        let container = var("INFRAPILOT_AGENT_NGINX_CONTAINER")
            .unwrap_or_else(|| "infrapilot-nginx".to_owned());
        if !container
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(format!(
                "INFRAPILOT_AGENT_NGINX_CONTAINER: {container:?} is not a container name"
            ));
        }
        Ok(ProxyOptions {
            dir: var("INFRAPILOT_AGENT_PROXY_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| state_dir.join("proxy")),
            image: var("INFRAPILOT_AGENT_NGINX_IMAGE").unwrap_or_else(|| "nginx:stable".into()),
            network: container.clone(),
            container,
            http_port: port("INFRAPILOT_AGENT_HTTP_PORT", 80)?,
            https_port: port("INFRAPILOT_AGENT_HTTPS_PORT", 443)?,
            bind_address: var("INFRAPILOT_AGENT_PROXY_BIND").unwrap_or_else(|| "0.0.0.0".into()),
            verify_timeout: Duration::from_secs(10),
            acme: AcmeOptions {
                directory: var("INFRAPILOT_AGENT_ACME_DIRECTORY")
                    .unwrap_or_else(|| AcmeOptions::default().directory),
                ca_file: var("INFRAPILOT_AGENT_ACME_CA_FILE").map(PathBuf::from),
                email: var("INFRAPILOT_AGENT_ACME_EMAIL"),
                renew_before: Duration::from_secs(
                    seconds("INFRAPILOT_AGENT_ACME_RENEW_DAYS", 30)? * 86_400,
                ),
                check_every: Duration::from_secs(
                    seconds("INFRAPILOT_AGENT_ACME_CHECK_SECONDS", 12 * 3600)?.max(1),
                ),
                trust_file: var("INFRAPILOT_AGENT_TLS_TRUST_FILE").map(PathBuf::from),
            },
            status_every: Duration::from_secs(
                seconds("INFRAPILOT_AGENT_PROXY_STATUS_SECONDS", 300)?.max(1),
            ),
        })
    }
}

/// What was last applied, kept on the node (`applied.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    revision: u64,
    /// Relative path → SHA-256 of the files in the tree.
    files: BTreeMap<String, String>,
    /// Host id → its files (relative paths).
    hosts: BTreeMap<String, Vec<String>>,
    /// Host id → the containers it proxies to.
    containers: BTreeMap<String, Vec<String>>,
    /// Networks nginx joined for upstreams.
    networks: Vec<String>,
    /// [`config_digest`] of the applied revision.
    #[serde(default)]
    digest: String,
    /// Hosts served over HTTPS with an ACME certificate: id → domains.
    #[serde(default)]
    acme: BTreeMap<String, Vec<String>>,
    /// HTTPS hosts with an uploaded certificate (id → domains): reported, never renewed.
    #[serde(default)]
    uploaded: BTreeMap<String, Vec<String>>,
    report: Option<ApplyReport>,
}

/// The proxy of this node. Applies are serialised.
pub struct Proxy {
    docker: DockerNode,
    options: ProxyOptions,
    certs: CertStore,
    lock: Mutex<()>,
    /// Where unasked status reports go (the agent's outbox).
    reports: std::sync::Mutex<Option<tokio::sync::mpsc::Sender<AgentMessage>>>,
}

fn failure(kind: &'static str, message: impl Into<String>) -> DockerError {
    DockerError {
        kind,
        message: message.into(),
    }
}

fn io(what: &str, e: std::io::Error) -> DockerError {
    failure("failed", format!("{what}: {e}"))
}

fn sha256(bytes: &[u8]) -> String {
    hex_encode(&Sha256::digest(bytes))
}

/// What a revision holds, for telling a re-delivery of it from another revision with the same
/// number (made by a host whose database was restored from an older backup).
fn config_digest(config: &ApplyProxyConfig) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(&config.revision.to_le_bytes());
    for f in &config.shared {
        field(f.path.as_bytes());
        field(&f.contents);
    }
    for host in &config.hosts {
        field(host.id.as_bytes());
        for f in &host.files {
            field(f.path.as_bytes());
            field(&f.contents);
        }
        for c in &host.containers {
            field(c.as_bytes());
        }
        if let Some(tls) = &host.tls {
            field(tls.mode.as_bytes());
            field(tls.fingerprint_sha256.as_bytes());
        }
    }
    hex_encode(&h.finalize())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A relative path of safe characters without `..`.
fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 255
        && !path.starts_with('/')
        && path.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
}

/// The configuration nginx starts with before the host sent any: unknown hosts get 404.
const BOOTSTRAP_CONF: &str = "worker_processes 1;\npid /run/nginx.pid;\nerror_log stderr warn;\n\
events { worker_connections 256; }\n\
http {\n    server_tokens off;\n    server {\n        listen 80 default_server;\n        server_name _;\n\
        add_header X-InfraPilot-Default 1 always;\n\
        location = /.well-known/infrapilot/revision { default_type text/plain; return 200 \"0\\n\"; }\n\
        location / { return 404; }\n    }\n}\n";

fn tree_name(revision: u64) -> String {
    format!("rev-{revision:012}")
}

impl Proxy {
    pub fn new(docker: DockerNode, options: ProxyOptions) -> Proxy {
        Proxy {
            certs: CertStore::new(&options.dir, options.acme.clone()),
            docker,
            options,
            lock: Mutex::new(()),
            reports: std::sync::Mutex::new(None),
        }
    }

    /// Sends status reports (drift, certificates) to this outbox from now on.
    pub fn report_to(&self, outbox: tokio::sync::mpsc::Sender<AgentMessage>) {
        *self.reports.lock().unwrap_or_else(|e| e.into_inner()) = Some(outbox);
    }

    pub fn options(&self) -> &ProxyOptions {
        &self.options
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.options.dir.join(relative)
    }

    fn container_path(&self, relative: &str) -> String {
        format!("{PROXY_MOUNT}/{relative}")
    }

    fn load_applied(&self) -> Applied {
        std::fs::read(self.path("applied.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The revision this node serves (0: none), for the hello.
    pub fn serving_revision(&self) -> u64 {
        self.load_applied().revision
    }

    fn save_applied(&self, applied: &Applied) -> Result<(), DockerError> {
        let tmp = self.path("applied.json.tmp");
        let bytes = serde_json::to_vec_pretty(applied).unwrap_or_default();
        write_synced(&tmp, &bytes).map_err(|e| io("applied.json", e))?;
        std::fs::rename(&tmp, self.path("applied.json")).map_err(|e| io("applied.json", e))
    }

    /// Creates the directory layout and a bootstrap tree when there is none.
    fn prepare_dir(&self) -> Result<(), DockerError> {
        use std::os::unix::fs::PermissionsExt;
        for d in [
            "",
            "trees",
            "acme",
            "acme/.well-known/acme-challenge",
            "certs",
        ] {
            let p = self.path(d);
            std::fs::create_dir_all(&p).map_err(|e| io(&p.display().to_string(), e))?;
        }
        // nginx workers read the ACME webroot as an unprivileged user.
        for d in [
            "",
            "trees",
            "acme",
            "acme/.well-known",
            "acme/.well-known/acme-challenge",
        ] {
            let _ = std::fs::set_permissions(self.path(d), std::fs::Permissions::from_mode(0o755));
        }
        let _ =
            std::fs::set_permissions(self.path("certs"), std::fs::Permissions::from_mode(0o700));
        if std::fs::symlink_metadata(self.path("current")).is_err() {
            let tree = format!("trees/{}", tree_name(0));
            std::fs::create_dir_all(self.path(&format!("{tree}/hosts")))
                .map_err(|e| io("bootstrap tree", e))?;
            write_synced(
                &self.path(&format!("{tree}/nginx.conf")),
                BOOTSTRAP_CONF.as_bytes(),
            )
            .map_err(|e| io("bootstrap tree", e))?;
            self.point_current(&tree)?;
        }
        Ok(())
    }

    /// Atomically points `current` at `tree` (relative to the proxy directory).
    fn point_current(&self, tree: &str) -> Result<(), DockerError> {
        let tmp = self.path("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(tree, &tmp).map_err(|e| io("current", e))?;
        std::fs::rename(&tmp, self.path("current")).map_err(|e| io("current", e))?;
        sync_dir(&self.options.dir);
        Ok(())
    }

    fn current_tree(&self) -> Option<String> {
        std::fs::read_link(self.path("current"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    async fn docker(&self) -> Result<Docker, DockerError> {
        self.docker.client().await
    }

    /// Creates the nginx container (and its network) if missing and starts it.
    /// Creates the nginx container if it is missing and starts it if it is not running — after
    /// joining it to a network of each of `upstreams` (the containers the served tree proxies
    /// to: nginx resolves their names at start and refuses to start without them).
    pub async fn ensure_container(&self, upstreams: &[String]) -> Result<(), DockerError> {
        self.prepare_dir()?;
        let docker = self.docker().await?;
        let o = &self.options;
        if docker
            .inspect_network(&o.network, None::<InspectNetworkOptions>)
            .await
            .is_err()
        {
            docker
                .create_network(NetworkCreateRequest {
                    name: o.network.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(HashMap::from([(
                        "io.infrapilot.managed".to_owned(),
                        "proxy".to_owned(),
                    )])),
                    ..Default::default()
                })
                .await?;
        }
        let existing = docker
            .inspect_container(&o.container, None::<InspectContainerOptions>)
            .await;
        let running = match existing {
            Ok(c) => c.state.and_then(|s| s.running).unwrap_or(false),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                let dir = std::fs::canonicalize(&o.dir).map_err(|e| io("proxy directory", e))?;
                let bindings = |port: u16| {
                    Some(vec![PortBinding {
                        host_ip: Some(o.bind_address.clone()),
                        host_port: Some(port.to_string()),
                    }])
                };
                let body = ContainerCreateBody {
                    image: Some(o.image.clone()),
                    cmd: Some(vec![
                        "nginx".into(),
                        "-c".into(),
                        self.container_path("current/nginx.conf"),
                        "-g".into(),
                        "daemon off;".into(),
                    ]),
                    labels: Some(HashMap::from([(
                        "io.infrapilot.managed".to_owned(),
                        "proxy".to_owned(),
                    )])),
                    exposed_ports: Some(vec!["80/tcp".to_owned(), "443/tcp".to_owned()]),
                    host_config: Some(HostConfig {
                        binds: Some(vec![format!("{}:{PROXY_MOUNT}", dir.display())]),
                        port_bindings: Some(HashMap::from([
                            ("80/tcp".to_owned(), bindings(o.http_port)),
                            ("443/tcp".to_owned(), bindings(o.https_port)),
                        ])),
                        restart_policy: Some(RestartPolicy {
                            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                            maximum_retry_count: None,
                        }),
                        network_mode: Some(o.network.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                docker
                    .create_container(
                        Some(
                            CreateContainerOptionsBuilder::new()
                                .name(&o.container)
                                .build(),
                        ),
                        body,
                    )
                    .await
                    .map_err(|e| {
                        failure(
                            "failed",
                            format!(
                                "could not create the nginx container from {}: {}",
                                o.image,
                                DockerError::from(e)
                            ),
                        )
                    })?;
                false
            }
            Err(e) => return Err(e.into()),
        };
        if !running {
            if let Err(e) = self.attach_networks(upstreams).await {
                eprintln!("proxy: joining upstream networks before starting nginx: {e}");
            }
            docker
                .start_container(&o.container, None::<StartContainerOptions>)
                .await?;
            self.wait_answering(Duration::from_secs(10)).await;
        }
        Ok(())
    }

    /// Waits (bounded) until nginx answers at all.
    async fn wait_answering(&self, within: Duration) {
        let client = Self::http_client();
        let url = format!("{}/.well-known/infrapilot/revision", self.verify_base());
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if client
                .get(&url)
                .header("host", "infrapilot-verify.invalid")
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs a command in the nginx container: (exit code, output).
    async fn exec(&self, cmd: Vec<String>) -> Result<(i64, String), DockerError> {
        let docker = self.docker().await?;
        let exec = docker
            .create_exec(
                &self.options.container,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd),
                    ..Default::default()
                },
            )
            .await?;
        let mut output = String::new();
        if let StartExecResults::Attached {
            output: mut out, ..
        } = docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await?
        {
            while let Some(chunk) = out.next().await {
                match chunk {
                    Ok(c) => output.push_str(&String::from_utf8_lossy(&c.into_bytes())),
                    Err(_) => break,
                }
                if output.len() > 64 << 10 {
                    break;
                }
            }
        }
        let code = docker.inspect_exec(&exec.id).await?.exit_code.unwrap_or(-1);
        Ok((code, output))
    }

    async fn nginx_test(&self, tree: &str) -> Result<Result<(), String>, DockerError> {
        let conf = self.container_path(&format!("{tree}/nginx.conf"));
        let (code, output) = self
            .exec(vec![
                "nginx".into(),
                "-t".into(),
                "-q".into(),
                "-c".into(),
                conf,
            ])
            .await?;
        Ok(if code == 0 {
            Ok(())
        } else {
            Err(output.trim().to_owned())
        })
    }

    /// Asks the nginx master to reload (SIGHUP through the engine, what `nginx -s reload` sends,
    /// without an exec that parses the configuration once more). The tree was tested already; a
    /// master that cannot apply it keeps its workers, which [`Self::wait_serving`] notices.
    async fn nginx_reload(&self) -> Result<Result<(), String>, DockerError> {
        let docker = self.docker().await?;
        docker
            .kill_container(
                &self.options.container,
                Some(KillContainerOptions {
                    signal: "HUP".into(),
                }),
            )
            .await?;
        Ok(Ok(()))
    }

    /// nginx's own complaints (`[emerg]`, `[alert]`, `[crit]`) logged since `since` (unix
    /// seconds): why a reload did not take.
    async fn nginx_complaints(&self, since: i64) -> Option<String> {
        let docker = self.docker().await.ok()?;
        let mut logs = docker.logs(
            &self.options.container,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                since: since as i32,
                tail: "200".into(),
                ..Default::default()
            }),
        );
        let mut lines = Vec::new();
        while let Some(Ok(chunk)) = logs.next().await {
            let text = String::from_utf8_lossy(&chunk.into_bytes()).into_owned();
            lines.extend(
                text.lines()
                    .filter(|l| {
                        l.contains("[emerg]") || l.contains("[alert]") || l.contains("[crit]")
                    })
                    .map(str::to_owned),
            );
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// Where this node's nginx answers on `port` (the published port on the bind address).
    fn local_addr(&self, port: u16) -> Result<std::net::SocketAddr, DockerError> {
        match self.options.bind_address.as_str() {
            "0.0.0.0" | "" => format!("127.0.0.1:{port}"),
            "::" => format!("[::1]:{port}"),
            a if a.contains(':') => format!("[{a}]:{port}"),
            a => format!("{a}:{port}"),
        }
        .parse()
        .map_err(|e| failure("invalid", format!("INFRAPILOT_AGENT_PROXY_BIND: {e}")))
    }

    /// A kept-alive connection that one of the running workers answered: when the workers of
    /// the previous configuration shut down after a reload, they close it. Until then they may
    /// still accept new connections and answer with the old configuration.
    async fn sentinel(&self) -> Option<tokio::net::TcpStream> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.local_addr(self.options.http_port).ok()?;
        let mut stream =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                .await
                .ok()?
                .ok()?;
        stream
            .write_all(b"GET /.well-known/infrapilot/revision HTTP/1.1\r\nHost: infrapilot-verify.invalid\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        (n > 0).then_some(stream)
    }

    /// Waits (bounded) until the old workers closed the sentinel connection.
    async fn old_workers_gone(stream: Option<tokio::net::TcpStream>, within: Duration) {
        use tokio::io::AsyncReadExt;
        let Some(mut stream) = stream else { return };
        let mut buf = [0u8; 2048];
        let _ = tokio::time::timeout(within, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }

    fn verify_base(&self) -> String {
        let host = match self.options.bind_address.as_str() {
            "0.0.0.0" | "" => "127.0.0.1",
            "::" => "[::1]",
            a if a.contains(':') => return format!("http://[{a}]:{}", self.options.http_port),
            a => a,
        };
        format!("http://{host}:{}", self.options.http_port)
    }

    /// The client of the checks through nginx, made once (building one loads the TLS roots).
    fn http_client() -> reqwest::Client {
        static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
        CLIENT
            .get_or_init(|| {
                // A fresh connection per request: a kept-alive one may still reach an old worker.
                reqwest::Client::builder()
                    .no_proxy()
                    .pool_max_idle_per_host(0)
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(Duration::from_secs(2))
                    .build()
                    .unwrap_or_default()
            })
            .clone()
    }

    /// Waits until nginx's default server answers `revision`.
    async fn wait_serving(&self, revision: u64, within: Duration) -> Result<(), String> {
        let client = Self::http_client();
        let url = format!("{}/.well-known/infrapilot/revision", self.verify_base());
        let deadline = Instant::now() + within;
        loop {
            let last = match client
                .get(&url)
                .header("host", "infrapilot-verify.invalid")
                .send()
                .await
            {
                Ok(r) => {
                    let body = r.text().await.unwrap_or_default();
                    if body.trim() == revision.to_string() {
                        return Ok(());
                    }
                    format!("nginx still serves revision {}", body.trim())
                }
                Err(e) => format!("nginx did not answer on {url}: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Checks that a host's own server block answers (not the default server).
    async fn verify_host(&self, host: &ProxyHostConfig, within: Duration) -> Result<(), String> {
        let Some(domain) = host.domains.first() else {
            return Ok(());
        };
        let name = domain.replace('*', "verify");
        let client = Self::http_client();
        let url = format!("{}/", self.verify_base());
        let deadline = Instant::now() + within;
        loop {
            let last = match client.get(&url).header("host", &name).send().await {
                Ok(r) if r.headers().get("x-infrapilot-default").is_none() => return Ok(()),
                Ok(_) => format!("{name} is answered by the default server, not its own"),
                Err(e) => format!("{name} did not answer through nginx: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Joins nginx to a network of each upstream container; returns the networks joined.
    async fn attach_networks(&self, containers: &[String]) -> Result<Vec<String>, String> {
        let docker = self.docker().await.map_err(|e| e.message)?;
        let nginx = docker
            .inspect_container(&self.options.container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| DockerError::from(e).message)?;
        let mut joined = networks_of(nginx);
        let mut used = Vec::new();
        for name in containers {
            let c = docker
                .inspect_container(name, None::<InspectContainerOptions>)
                .await
                .map_err(|e| {
                    format!(
                        "upstream container {name}: {}",
                        DockerError::from(e).message
                    )
                })?;
            let networks = networks_of(c);
            if let Some(shared) = networks.iter().find(|n| joined.contains(n)) {
                used.push(shared.clone());
                continue;
            }
            let mut refused = Vec::new();
            let mut candidate = None;
            for net in &networks {
                let info = docker
                    .inspect_network(net, None::<InspectNetworkOptions>)
                    .await
                    .map_err(|e| format!("network {net}: {}", DockerError::from(e).message))?;
                let driver = info.driver.unwrap_or_default();
                if let Some(why) = unjoinable(net, &driver, info.scope.as_deref()) {
                    refused.push(why);
                } else if candidate.is_none() {
                    candidate = Some(net.clone());
                }
            }
            let Some(net) = candidate else {
                return Err(if refused.is_empty() {
                    format!("upstream container {name} is on no network nginx can join")
                } else {
                    format!(
                        "upstream container {name} is on no network nginx can join: {}",
                        refused.join(", ")
                    )
                });
            };
            docker
                .connect_network(
                    &net,
                    NetworkConnectRequest {
                        container: self.options.container.clone(),
                        endpoint_config: None,
                    },
                )
                .await
                .map_err(|e| {
                    format!(
                        "connecting nginx to {net}: {}",
                        DockerError::from(e).message
                    )
                })?;
            joined.push(net.clone());
            used.push(net);
        }
        Ok(used)
    }

    /// Leaves the networks no host uses any more.
    async fn detach_unused(&self, keep: &[String]) {
        let Ok(docker) = self.docker().await else {
            return;
        };
        let Ok(nginx) = docker
            .inspect_container(&self.options.container, None::<InspectContainerOptions>)
            .await
        else {
            return;
        };
        let joined = networks_of(nginx);
        for net in joined {
            if net == self.options.network || keep.contains(&net) {
                continue;
            }
            let _ = docker
                .disconnect_network(
                    &net,
                    NetworkDisconnectRequest {
                        container: self.options.container.clone(),
                        force: Some(true),
                    },
                )
                .await;
        }
    }

    /// Applies a revision (see the module documentation).
    pub async fn apply(
        self: &Arc<Self>,
        config: &ApplyProxyConfig,
    ) -> Result<ApplyReport, DockerError> {
        let _guard = self.lock.lock().await;
        let started = Instant::now();
        let applied = self.load_applied();
        let digest = config_digest(config);
        if config.revision == applied.revision
            && applied.digest == digest
            && let Some(report) = applied.report.clone()
        {
            return Ok(report);
        }
        if config.revision <= applied.revision {
            return Ok(ApplyReport {
                revision: config.revision,
                state: "superseded".into(),
                error: Some(format!(
                    "the node already serves revision {}{}",
                    applied.revision,
                    if config.revision == applied.revision {
                        " (another configuration with the same number)"
                    } else {
                        ""
                    }
                )),
                hosts: Vec::new(),
                serving_revision: applied.revision,
                duration_ms: 0,
            });
        }
        for (i, f) in config.shared.iter().enumerate() {
            if !safe_relative(&f.path) || f.path.starts_with("hosts/") {
                return Err(failure(
                    "invalid",
                    format!("shared[{i}].path: {:?} is not allowed", f.path),
                ));
            }
        }
        for h in &config.hosts {
            if !safe_relative(&format!("hosts/{}.conf", h.id)) {
                return Err(failure(
                    "invalid",
                    format!("host id {:?} is not allowed", h.id),
                ));
            }
            for f in &h.files {
                if !safe_relative(&f.path) || !f.path.starts_with("hosts/") {
                    return Err(failure(
                        "invalid",
                        format!("host {}: file {:?} is not allowed", h.id, f.path),
                    ));
                }
            }
        }
        let served_upstreams: Vec<String> =
            applied.containers.values().flatten().cloned().collect();
        self.ensure_container(&served_upstreams).await?;

        // Networks first: a host whose upstream nginx cannot reach is left out.
        let mut excluded: BTreeMap<String, String> = BTreeMap::new();
        let mut networks = Vec::new();
        for h in &config.hosts {
            if h.containers.is_empty() {
                continue;
            }
            match self.attach_networks(&h.containers).await {
                Ok(n) => networks.extend(n),
                Err(e) => {
                    excluded.insert(h.id.clone(), e);
                }
            }
        }
        networks.sort();
        networks.dedup();
        // HTTPS hosts need a certificate file pair before nginx -t: the uploaded one, the
        // issued one, or a placeholder until the ACME server issued one.
        let mut acme = BTreeMap::new();
        let mut uploaded = BTreeMap::new();
        for h in &config.hosts {
            let Some(tls) = h.tls.as_ref().filter(|_| !excluded.contains_key(&h.id)) else {
                continue;
            };
            if tls.mode == "uploaded" {
                match self.certs.install_uploaded(&h.id, &h.domains, tls) {
                    Ok(()) => {
                        uploaded.insert(h.id.clone(), h.domains.clone());
                    }
                    Err(e) => {
                        excluded.insert(h.id.clone(), e);
                    }
                }
                continue;
            }
            match self.certs.ensure_placeholder(&h.id, &h.domains) {
                Ok(()) => {
                    acme.insert(h.id.clone(), h.domains.clone());
                }
                Err(e) => {
                    excluded.insert(h.id.clone(), e);
                }
            }
        }

        let staging = format!("trees/.staging-{}", config.revision);
        let final_tree = format!("trees/{}", tree_name(config.revision));
        let _ = std::fs::remove_dir_all(self.path(&staging));
        let _ = std::fs::remove_dir_all(self.path(&final_tree));
        // A file the served tree holds with the same contents is hard-linked, not written again
        // (its contents are compared, so a file edited on the node is written afresh).
        let served = self.current_tree();
        let write = |files: &[ProxyFile]| -> Result<(), DockerError> {
            for f in files {
                let p = self.path(&format!("{staging}/{}", f.path));
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| io("staging tree", e))?;
                }
                if let Some(tree) = &served {
                    let old = self.path(&format!("{tree}/{}", f.path));
                    if std::fs::read(&old).is_ok_and(|b| b == f.contents)
                        && std::fs::hard_link(&old, &p).is_ok()
                    {
                        continue;
                    }
                }
                std::fs::write(&p, &f.contents).map_err(|e| io("staging tree", e))?;
            }
            Ok(())
        };
        std::fs::create_dir_all(self.path(&format!("{staging}/hosts")))
            .map_err(|e| io("staging tree", e))?;
        write(&config.shared)?;
        for h in &config.hosts {
            if !excluded.contains_key(&h.id) {
                write(&h.files)?;
            }
        }

        // Test; leave out each host nginx names, until the tree passes or the fault is shared.
        let staging_prefix = self.container_path(&format!("{staging}/hosts/"));
        let mut attempts = config.hosts.len() + 1;
        loop {
            match self.nginx_test(&staging).await? {
                Ok(()) => break,
                Err(output) => {
                    let culprit = config.hosts.iter().find(|h| {
                        !excluded.contains_key(&h.id)
                            && output.contains(&format!("{staging_prefix}{}.conf", h.id))
                    });
                    attempts -= 1;
                    match culprit {
                        Some(h) if attempts > 0 => {
                            for f in &h.files {
                                let _ = std::fs::remove_file(
                                    self.path(&format!("{staging}/{}", f.path)),
                                );
                            }
                            excluded
                                .insert(h.id.clone(), output.replace(&staging_prefix, "hosts/"));
                        }
                        _ => {
                            let _ = std::fs::remove_dir_all(self.path(&staging));
                            return Ok(self.failed(config, &applied, output, started));
                        }
                    }
                }
            }
        }
        // One flush of the file system for the whole tree (not one per file) before it can be
        // swapped in: a power cut never leaves `current` on a half-written tree.
        sync_filesystem(&self.options.dir);
        std::fs::rename(self.path(&staging), self.path(&final_tree)).map_err(|e| io("tree", e))?;
        sync_dir(&self.path("trees"));

        let previous = self.current_tree();
        let sentinel = self.sentinel().await;
        self.point_current(&final_tree)?;
        let signalled_at = crate::certs::now_secs();
        let reloaded = match self.nginx_reload().await {
            Ok(Ok(())) => {
                Self::old_workers_gone(sentinel, Duration::from_secs(3)).await;
                match self
                    .wait_serving(config.revision, self.options.verify_timeout)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) => Err(match self.nginx_complaints(signalled_at).await {
                        Some(complaints) => format!("{e}\n{complaints}"),
                        None => e,
                    }),
                }
            }
            Ok(Err(output)) => Err(output),
            Err(e) => Err(e.message),
        };
        let mut verified = reloaded;
        if verified.is_ok() {
            for h in config
                .hosts
                .iter()
                .filter(|h| h.changed && !excluded.contains_key(&h.id))
            {
                if let Err(e) = self.verify_host(h, self.options.verify_timeout).await {
                    verified = Err(e);
                    break;
                }
            }
        }
        if let Err(error) = verified {
            if let Some(previous) = previous {
                self.point_current(&previous)?;
                let _ = self.nginx_reload().await;
            }
            let _ = std::fs::remove_dir_all(self.path(&final_tree));
            return Ok(self.failed(config, &applied, error, started));
        }

        let mut files = BTreeMap::new();
        let mut hosts = BTreeMap::new();
        let mut containers = BTreeMap::new();
        for f in &config.shared {
            files.insert(f.path.clone(), sha256(&f.contents));
        }
        for h in config
            .hosts
            .iter()
            .filter(|h| !excluded.contains_key(&h.id))
        {
            for f in &h.files {
                files.insert(f.path.clone(), sha256(&f.contents));
            }
            hosts.insert(
                h.id.clone(),
                h.files.iter().map(|f| f.path.clone()).collect(),
            );
            containers.insert(h.id.clone(), h.containers.clone());
        }
        let report = ApplyReport {
            revision: config.revision,
            state: "applied".into(),
            error: None,
            hosts: config
                .hosts
                .iter()
                .map(|h| HostApplyResult {
                    id: h.id.clone(),
                    state: if excluded.contains_key(&h.id) {
                        "failed"
                    } else {
                        "applied"
                    }
                    .into(),
                    error: excluded.get(&h.id).cloned(),
                })
                .collect(),
            serving_revision: config.revision,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        self.save_applied(&Applied {
            revision: config.revision,
            digest,
            files,
            hosts,
            containers,
            networks: networks.clone(),
            acme: acme
                .into_iter()
                .filter(|(id, _)| !excluded.contains_key(id))
                .collect(),
            uploaded: uploaded
                .into_iter()
                .filter(|(id, _)| !excluded.contains_key(id))
                .collect(),
            report: Some(report.clone()),
        })?;
        let kept: Vec<String> = config
            .hosts
            .iter()
            .filter(|h| h.tls.is_some())
            .map(|h| h.id.clone())
            .collect();
        // Tidying up (networks no host uses, old trees), issuing what is missing and the report
        // follow in the background, under the lock and against what is applied by then.
        let this = self.clone();
        tokio::spawn(async move {
            {
                let _guard = this.lock.lock().await;
                this.detach_unused(&this.load_applied().networks).await;
                let current = this.current_tree().unwrap_or_default();
                let tidy = this.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    tidy.prune_trees(&current, previous.as_deref());
                    tidy.certs.prune(&kept);
                })
                .await;
            }
            this.renew_due().await
        });
        Ok(report)
    }

    fn failed(
        &self,
        config: &ApplyProxyConfig,
        applied: &Applied,
        error: String,
        started: Instant,
    ) -> ApplyReport {
        ApplyReport {
            revision: config.revision,
            state: "failed".into(),
            error: Some(error.clone()),
            hosts: config
                .hosts
                .iter()
                .map(|h| HostApplyResult {
                    id: h.id.clone(),
                    state: "failed".into(),
                    error: Some(error.clone()),
                })
                .collect(),
            serving_revision: applied.revision,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// Keeps the current and the previous tree.
    fn prune_trees(&self, current: &str, previous: Option<&str>) {
        let Ok(entries) = std::fs::read_dir(self.path("trees")) else {
            return;
        };
        for e in entries.flatten() {
            let name = format!("trees/{}", e.file_name().to_string_lossy());
            if name != current && Some(name.as_str()) != previous {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Compares the served tree with `applied.json` (hashes of every file, and where `current`
    /// points) and reports the certificates with their TLS scores. Repair is a new revision from
    /// the host (re-apply), which rewrites the tree.
    pub async fn status(&self) -> Result<ProxyNodeStatus, DockerError> {
        let applied = {
            let _guard = self.lock.lock().await;
            self.load_applied()
        };
        let mut drifted = Vec::new();
        if applied.revision > 0 {
            let tree = format!("trees/{}", tree_name(applied.revision));
            if self.current_tree().as_deref() != Some(tree.as_str()) {
                drifted.push("current".to_owned());
            }
            let root = self.path(&tree);
            let mut on_disk = BTreeMap::new();
            collect_files(&root, &root, &mut on_disk);
            for (path, hash) in &applied.files {
                match on_disk.get(path) {
                    Some(h) if h == hash => {}
                    _ => drifted.push(path.clone()),
                }
            }
            for path in on_disk.keys() {
                if !applied.files.contains_key(path) {
                    drifted.push(path.clone());
                }
            }
        }
        let drifted_hosts = applied
            .hosts
            .iter()
            .filter(|(_, files)| files.iter().any(|f| drifted.contains(f)))
            .map(|(id, _)| id.clone())
            .collect();
        let mut certificates = Vec::new();
        let https = self.local_addr(self.options.https_port)?;
        for (id, domains) in applied.acme.iter().chain(&applied.uploaded) {
            let Some(facts) = self.certs.facts(id) else {
                continue;
            };
            // A name to ask for by SNI: the first that is not a wildcard, else one the wildcard
            // covers.
            let name = domains
                .iter()
                .find(|d| !d.starts_with("*."))
                .cloned()
                .or_else(|| domains.first().map(|d| d.replacen('*', "probe", 1)))
                .unwrap_or_default();
            // Right after a reload old workers may still present the previous certificate:
            // score what the file holds, so wait (briefly) until nginx presents it.
            let mut tries = 0;
            let score = loop {
                let score = crate::tls_probe::score(
                    https,
                    &name,
                    self.options.acme.trust_file.as_deref(),
                    facts.not_after,
                    self.options.acme.renew_before,
                )
                .await;
                tries += 1;
                if score.leaf.as_deref() == Some(facts.leaf.as_slice()) || tries >= 30 {
                    break score;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            certificates.extend(self.certs.status(id, (score.score, score.reasons)));
        }
        Ok(ProxyNodeStatus {
            revision: applied.revision,
            drifted_files: drifted,
            drifted_hosts,
            certificates,
        })
    }

    /// Sends the status to the host (if a session is up; otherwise the next one gets a fresh one).
    pub async fn report(&self) {
        let Some(outbox) = self
            .reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return;
        };
        match self.status().await {
            Ok(status) => {
                let message = AgentMessage {
                    body: Some(agent_message::Body::ProxyStatus(ProxyStatus {
                        status_json: serde_json::to_vec(&status).unwrap_or_default(),
                    })),
                };
                let _ = outbox.try_send(message);
            }
            Err(e) => eprintln!("proxy: status: {e}"),
        }
    }

    /// Issues or renews the certificates that are due (placeholders, expiring within the
    /// renewal window), reloads nginx with them, and reports.
    pub async fn renew_due(self: &Arc<Self>) {
        let applied = {
            let _guard = self.lock.lock().await;
            self.load_applied()
        };
        let mut renewed = false;
        for (id, domains) in &applied.acme {
            if !self.certs.due(id) {
                continue;
            }
            match self.certs.issue(id, domains).await {
                Ok(()) => renewed = true,
                Err(e) => eprintln!("proxy: certificate for {}: {e}", domains.join(", ")),
            }
        }
        if renewed && let Err(e) = self.reload_current().await {
            eprintln!("proxy: reload with new certificates: {e}");
        }
        self.report().await;
    }

    /// Tests the served tree as it is (new certificate files) and reloads nginx.
    async fn reload_current(&self) -> Result<(), String> {
        let _guard = self.lock.lock().await;
        self.nginx_test("current").await.map_err(|e| e.message)??;
        self.nginx_reload().await.map_err(|e| e.message)?
    }

    /// Runs for the agent's life: renews certificates every `check_every` and reports the
    /// status every `status_every`, whether or not the host is reachable.
    pub async fn maintain(self: Arc<Self>) {
        let mut last_check = std::time::Instant::now();
        loop {
            tokio::time::sleep(self.options.status_every.min(self.options.acme.check_every)).await;
            if last_check.elapsed() >= self.options.acme.check_every {
                last_check = std::time::Instant::now();
                self.renew_due().await;
            } else {
                self.report().await;
            }
        }
    }

    /// At start: puts nginx back on the last applied tree (a kill between swap and record may
    /// have left `current` on an unrecorded one), re-creates the container if it is gone,
    /// re-joins the upstream networks and reloads. Without the host.
    pub async fn restore(&self) -> Result<u64, DockerError> {
        let _guard = self.lock.lock().await;
        let applied = self.load_applied();
        if applied.revision == 0 {
            return Ok(0);
        }
        let tree = format!("trees/{}", tree_name(applied.revision));
        if !self.path(&tree).is_dir() {
            return Err(failure(
                "failed",
                format!("the applied tree {tree} is missing"),
            ));
        }
        if self.current_tree().as_deref() != Some(tree.as_str()) {
            self.point_current(&tree)?;
        }
        // Stale staging trees of an interrupted apply.
        if let Ok(entries) = std::fs::read_dir(self.path("trees")) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(".staging-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let containers: Vec<String> = applied.containers.values().flatten().cloned().collect();
        self.ensure_container(&containers).await?;
        if let Err(e) = self.attach_networks(&containers).await {
            eprintln!("proxy: re-joining upstream networks: {e}");
        }
        match self.nginx_reload().await? {
            Ok(()) => {}
            Err(e) => return Err(failure("failed", e)),
        }
        self.wait_serving(applied.revision, self.options.verify_timeout)
            .await
            .map_err(|e| failure("failed", e))?;
        Ok(applied.revision)
    }
}

/// The networks a container is attached to.
fn networks_of(container: bollard::models::ContainerInspectResponse) -> Vec<String> {
    container
        .network_settings
        .and_then(|n| n.networks)
        .map(|n| n.into_keys().collect())
        .unwrap_or_default()
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(root, &p, out);
        } else if let (Ok(rel), Ok(bytes)) = (p.strip_prefix(root), std::fs::read(&p)) {
            out.insert(rel.to_string_lossy().into_owned(), sha256(&bytes));
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Flushes the file system holding `dir` (syncfs): one call for a whole tree of files.
fn sync_filesystem(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = rustix::fs::syncfs(&d);
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Why nginx may not join the network `net` (with its `driver` and `scope`) to reach an
/// upstream, or `None` when it may: the host's namespace and `none` cannot be shared, overlay
/// (swarm) networks are not supported, and names do not resolve on Docker's default bridge.
fn unjoinable(net: &str, driver: &str, scope: Option<&str>) -> Option<String> {
    if matches!(net, "host" | "none") || driver == "host" || driver == "null" {
        Some(format!("{net} (the {driver} network cannot be shared)"))
    } else if driver == "overlay" || scope == Some("swarm") {
        Some(format!("{net} (overlay networks are not supported)"))
    } else if net == "bridge" {
        Some(format!(
            "{net} (container names do not resolve on Docker's default bridge; put the container on a user-defined network)"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nginx_joins_only_user_defined_local_networks() {
        assert_eq!(super::unjoinable("web-net", "bridge", Some("local")), None);
        assert_eq!(
            super::unjoinable("macvlan-net", "macvlan", Some("local")),
            None
        );
        for (net, driver, scope, why) in [
            ("host", "host", Some("local"), "cannot be shared"),
            ("none", "null", Some("local"), "cannot be shared"),
            ("my-host", "host", Some("local"), "cannot be shared"),
            (
                "mesh",
                "overlay",
                Some("swarm"),
                "overlay networks are not supported",
            ),
            (
                "ingress",
                "overlay",
                None,
                "overlay networks are not supported",
            ),
            (
                "plugin-net",
                "weave",
                Some("swarm"),
                "overlay networks are not supported",
            ),
            ("bridge", "bridge", Some("local"), "default bridge"),
        ] {
            let refused = super::unjoinable(net, driver, scope).expect(net);
            assert!(
                refused.starts_with(net) && refused.contains(why),
                "{refused}"
            );
        }
    }
}
