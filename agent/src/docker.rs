//! The node's Docker engine, through bollard (the Engine API over the local socket; never the
//! docker CLI or a shell): container list with live CPU/memory samples, inspect, actions, logs
//! (pages and follows), exec sessions with a TTY, and the event feed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, RestartContainerOptions, StartContainerOptions, StatsOptions,
    StopContainerOptions,
};
use futures_util::StreamExt;
use infrapilot_proto::model::{
    ActionOutcome, COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, ContainerDetail, ContainerList,
    ContainerSummary, EnvVar, LogLine, LogPage, MountInfo, NetworkAttachment, PortMapping,
    detect_level,
};
use infrapilot_proto::v1::{DockerEvent, FetchLogs, container_action::Action};
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

/// Bytes of log messages in one page (the session's message bound is 16 MiB).
pub const LOG_PAGE_MAX_BYTES: usize = 1024 * 1024;
/// What a line costs besides its message (timestamp, stream, framing), for the page bound.
const LOG_LINE_OVERHEAD_BYTES: usize = 48;

/// An error as the host shows it: a kind it maps to an HTTP status, and Docker's own message.
/// The host path a named volume binds through its driver's `device` option, if any.
async fn volume_device(docker: &Docker, name: &str) -> Option<String> {
    let volume = docker.inspect_volume(name).await.ok()?;
    volume
        .options
        .get("device")
        .filter(|d| d.starts_with('/'))
        .cloned()
}

/// The host paths among `paths` that lead elsewhere through a symbolic link: given → real.
fn real_paths(paths: impl IntoIterator<Item = String>) -> BTreeMap<String, String> {
    paths
        .into_iter()
        .filter_map(|given| {
            let real = std::fs::canonicalize(&given).ok()?;
            let real = real.to_string_lossy().into_owned();
            let lexical = std::path::Path::new(&given)
                .components()
                .collect::<std::path::PathBuf>()
                .to_string_lossy()
                .into_owned();
            (real != lexical).then_some((given, real))
        })
        .collect()
}

/// The label a created container carries: the idempotency key of the command that made it.
pub const CREATE_KEY_LABEL: &str = "io.infrapilot.create-key";
/// And the SHA-256 of the body it was created from.
pub const CREATE_SPEC_LABEL: &str = "io.infrapilot.create-spec";

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DockerError {
    /// not_found, conflict, invalid, docker_unavailable or failed.
    pub kind: &'static str,
    pub message: String,
}

impl DockerError {
    fn new(kind: &'static str, message: impl Into<String>) -> DockerError {
        DockerError {
            kind,
            message: message.into(),
        }
    }
}

impl From<bollard::errors::Error> for DockerError {
    fn from(e: bollard::errors::Error) -> DockerError {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code,
                message,
            } => {
                let kind = match status_code {
                    404 => "not_found",
                    409 => "conflict",
                    400 => "invalid",
                    _ => "failed",
                };
                DockerError::new(kind, message)
            }
            E::IOError { err } => DockerError::new(
                "docker_unavailable",
                format!("the Docker engine is unreachable: {err}"),
            ),
            E::HyperResponseError { err } => DockerError::new(
                "docker_unavailable",
                format!("the Docker engine is unreachable: {err}"),
            ),
            other => DockerError::new("failed", other.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, DockerError>;

#[derive(Clone, Copy)]
struct CpuSample {
    total: u64,
    system: u64,
    online: u32,
}

#[derive(Clone, Copy, Default)]
struct StatSample {
    cpu_percent: Option<f64>,
    memory_bytes: Option<u64>,
    memory_limit_bytes: Option<u64>,
}

#[derive(Default)]
struct Samples {
    by_container: HashMap<String, (StatSample, Option<CpuSample>)>,
    /// When someone last asked for stats; sampling stops a minute after.
    wanted_at: Option<Instant>,
}

/// The local Docker engine. Cheap to clone.
#[derive(Clone)]
pub struct DockerNode {
    client: Arc<OnceCell<Docker>>,
    samples: Arc<Mutex<Samples>>,
    wake_sampler: Arc<tokio::sync::Notify>,
}

impl Default for DockerNode {
    fn default() -> Self {
        Self::new()
    }
}

const SAMPLE_EVERY: Duration = Duration::from_secs(2);
const SAMPLE_FOR: Duration = Duration::from_secs(60);

fn rfc3339_from_secs(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn rfc3339_from_ns(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Docker's zero time means "never".
fn docker_time(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty() && !t.starts_with("0001-01-01"))
}

fn health_from_status(status: &str) -> Option<String> {
    for h in ["unhealthy", "healthy", "health: starting"] {
        if status.contains(&format!("({h})")) {
            return Some(h.trim_start_matches("health: ").to_owned());
        }
    }
    None
}

impl DockerNode {
    /// The engine at `DOCKER_HOST`, else the local socket. Connects on first use, so an agent
    /// starts (and reports the error) while Docker is down.
    pub fn new() -> DockerNode {
        let node = DockerNode {
            client: Arc::new(OnceCell::new()),
            samples: Arc::new(Mutex::new(Samples::default())),
            wake_sampler: Arc::new(tokio::sync::Notify::new()),
        };
        tokio::spawn(node.clone().sample_stats());
        node
    }

    /// The connected client (for the proxy module).
    pub(crate) async fn client(&self) -> Result<Docker> {
        self.docker().await.cloned()
    }

    async fn docker(&self) -> Result<&Docker> {
        self.client
            .get_or_try_init(|| async {
                let docker = Docker::connect_with_local_defaults()?;
                // The engine may speak an older API (Debian 12: 1.41) than bollard's default.
                Ok::<_, DockerError>(docker.negotiate_version().await?)
            })
            .await
    }

    fn summary(&self, c: bollard::models::ContainerSummary) -> ContainerSummary {
        let labels = c.labels.unwrap_or_default();
        let id = c.id.unwrap_or_default();
        let status = c.status.unwrap_or_default();
        let health = c
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| s == "healthy" || s == "unhealthy" || s == "starting")
            .or_else(|| health_from_status(&status));
        let state = c.state.map(|s| s.to_string()).unwrap_or_default();
        let sample = if state == "running" {
            self.samples
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .by_container
                .get(&id)
                .map(|(s, _)| *s)
                .unwrap_or_default()
        } else {
            StatSample::default()
        };
        let mut ports: Vec<PortMapping> = c
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| PortMapping {
                private_port: p.private_port,
                public_port: p.public_port,
                ip: p.ip.filter(|ip| !ip.is_empty()),
                protocol: p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into()),
            })
            .collect();
        ports.sort_by(|a, b| {
            (a.private_port, &a.protocol, &a.ip).cmp(&(b.private_port, &b.protocol, &b.ip))
        });
        ports.dedup();
        let mut networks: Vec<String> = c
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default();
        networks.sort();
        ContainerSummary {
            name: c
                .names
                .unwrap_or_default()
                .first()
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default(),
            image: c.image.unwrap_or_default(),
            state,
            status,
            created_at: rfc3339_from_secs(c.created.unwrap_or_default()),
            ports,
            networks,
            compose_project: labels.get(COMPOSE_PROJECT_LABEL).cloned(),
            compose_service: labels.get(COMPOSE_SERVICE_LABEL).cloned(),
            health,
            cpu_percent: sample.cpu_percent,
            memory_bytes: sample.memory_bytes,
            memory_limit_bytes: sample.memory_limit_bytes,
            id,
        }
    }

    pub async fn list(&self, all: bool, with_stats: bool) -> Result<ContainerList> {
        let docker = self.docker().await?;
        let containers = docker
            .list_containers(Some(ListContainersOptions {
                all,
                ..Default::default()
            }))
            .await?;
        if with_stats {
            let first = {
                let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
                let first = samples.wanted_at.is_none_or(|t| t.elapsed() > SAMPLE_FOR);
                samples.wanted_at = Some(Instant::now());
                first
            };
            if first {
                self.wake_sampler.notify_one();
            }
        }
        Ok(ContainerList::new(
            containers.into_iter().map(|c| self.summary(c)).collect(),
        ))
    }

    /// Samples CPU and memory of running containers every 2 s while someone looks at them.
    async fn sample_stats(self) {
        loop {
            let wanted = {
                let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
                samples.wanted_at.is_some_and(|t| t.elapsed() < SAMPLE_FOR)
            };
            if !wanted {
                self.wake_sampler.notified().await;
                continue;
            }
            if let Err(e) = self.sample_once().await {
                eprintln!("container stats: {e}");
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }

    async fn sample_once(&self) -> Result<()> {
        let docker = self.docker().await?;
        let running = docker
            .list_containers(Some(ListContainersOptions::default()))
            .await?;
        let ids: Vec<String> = running.into_iter().filter_map(|c| c.id).collect();
        let mut fresh = HashMap::new();
        for id in ids {
            let mut stream = docker.stats(
                &id,
                Some(StatsOptions {
                    stream: false,
                    one_shot: true,
                }),
            );
            let Some(Ok(stats)) = stream.next().await else {
                continue;
            };
            let cpu = stats.cpu_stats.as_ref().map(|c| CpuSample {
                total: c
                    .cpu_usage
                    .as_ref()
                    .and_then(|u| u.total_usage)
                    .unwrap_or(0),
                system: c.system_cpu_usage.unwrap_or(0),
                online: c.online_cpus.unwrap_or(1).max(1),
            });
            let memory = stats.memory_stats.as_ref();
            let cache = memory
                .and_then(|m| m.stats.as_ref())
                // As `docker stats` does: cgroup v1 total_inactive_file, v2 inactive_file.
                .and_then(|s| {
                    s.get("total_inactive_file")
                        .or_else(|| s.get("inactive_file"))
                        .copied()
                })
                .unwrap_or(0);
            let previous = {
                let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
                samples.by_container.get(&id).and_then(|(_, cpu)| *cpu)
            };
            let cpu_percent = match (previous, cpu) {
                (Some(before), Some(now)) if now.system > before.system => Some(
                    now.total.saturating_sub(before.total) as f64
                        / (now.system - before.system) as f64
                        * f64::from(now.online)
                        * 100.0,
                ),
                _ => None,
            };
            let sample = StatSample {
                cpu_percent: cpu_percent.map(|p| (p * 100.0).round() / 100.0),
                memory_bytes: memory
                    .and_then(|m| m.usage)
                    .map(|u| u.saturating_sub(cache)),
                memory_limit_bytes: memory.and_then(|m| m.limit),
            };
            fresh.insert(id, (sample, cpu));
        }
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_container = fresh;
        Ok(())
    }

    /// Creates a container as [`CreateContainer`] says: the image pulled unless present (or
    /// always), each pull message handed to `progress`; created from the host's body with the
    /// command's key as a label; connected to its networks; started. A container of the same
    /// name carrying the same key is an earlier run of this command, finished here.
    pub async fn create(
        &self,
        request: &infrapilot_proto::v1::CreateContainer,
        key: &str,
        mut progress: impl FnMut(serde_json::Value),
    ) -> Result<ActionOutcome> {
        let docker = self.docker().await?;
        let mut body: bollard::models::ContainerCreateBody =
            serde_json::from_slice(&request.spec_json)
                .map_err(|e| DockerError::new("invalid", format!("the container spec: {e}")))?;
        let image = body
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| DockerError::new("invalid", "the container spec names no image"))?;
        // The key and what was asked: an earlier run is only the same command with the same body.
        let spec_hash = {
            use sha2::Digest;
            sha2::Sha256::digest(&request.spec_json)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let labels = body.labels.get_or_insert_with(Default::default);
        labels.insert(CREATE_KEY_LABEL.to_owned(), key.to_owned());
        labels.insert(CREATE_SPEC_LABEL.to_owned(), spec_hash.clone());

        // An earlier run of this command (the node restarted mid-way): take what it made.
        if let Ok(existing) = docker
            .inspect_container(&request.name, None::<InspectContainerOptions>)
            .await
            // Docker also matches id prefixes: only the container of exactly this name counts.
            && existing.name.as_deref().map(|n| n.trim_start_matches('/')) == Some(request.name.as_str())
        {
            let labels = existing.config.as_ref().and_then(|c| c.labels.as_ref());
            let same = labels
                .and_then(|l| l.get(CREATE_KEY_LABEL))
                .is_some_and(|k| k == key)
                && labels
                    .and_then(|l| l.get(CREATE_SPEC_LABEL))
                    .is_some_and(|h| *h == spec_hash);
            if !same {
                return Err(DockerError::new(
                    "conflict",
                    format!("a container named {} exists", request.name),
                ));
            }
            let id = existing.id.unwrap_or_else(|| request.name.clone());
            return self.finish_create(docker, &id, request).await;
        }

        // A bind or device through a symbolic link would reach another place than the policies
        // judged: refused, naming the real path.
        if let Some(host) = &body.host_config {
            let binds = host
                .mounts
                .iter()
                .flatten()
                .filter(|m| m.typ == Some(bollard::models::MountType::BIND))
                .filter_map(|m| m.source.clone());
            let devices = host
                .devices
                .iter()
                .flatten()
                .filter_map(|d| d.path_on_host.clone());
            let through_links = real_paths(binds.chain(devices));
            if let Some((given, real)) = through_links.iter().next() {
                return Err(DockerError::new(
                    "invalid",
                    format!(
                        "mounts: {given} leads through a symbolic link to {real} on the node; give the real path"
                    ),
                ));
            }
            // A named volume that binds a host path would mount what the policies judged as a
            // volume: mount the path as a bind instead, where it is judged as one.
            let volumes = host
                .mounts
                .iter()
                .flatten()
                .filter(|m| m.typ == Some(bollard::models::MountType::VOLUME))
                .filter_map(|m| m.source.clone());
            for name in volumes {
                if let Some(device) = volume_device(docker, &name).await {
                    return Err(DockerError::new(
                        "invalid",
                        format!(
                            "mounts: volume {name} binds {device} on the node; mount that path as a bind instead"
                        ),
                    ));
                }
            }
        }

        let present = docker.inspect_image(&image).await.is_ok();
        if request.always_pull || !present {
            let credentials = request
                .auth
                .as_ref()
                .map(|a| bollard::auth::DockerCredentials {
                    username: Some(a.username.clone()),
                    password: Some(a.password.clone()),
                    serveraddress: (!a.server.is_empty()).then(|| a.server.clone()),
                    ..Default::default()
                });
            let options = bollard::query_parameters::CreateImageOptionsBuilder::new()
                .from_image(&image)
                .build();
            let mut pull = docker.create_image(Some(options), None, credentials);
            while let Some(item) = pull.next().await {
                let info = item.map_err(|e| match e {
                    bollard::errors::Error::DockerStreamError { error } => {
                        DockerError::new("pull_failed", format!("pulling {image}: {error}"))
                    }
                    other => {
                        let e = DockerError::from(other);
                        DockerError::new(
                            if e.kind == "not_found" {
                                "pull_failed"
                            } else {
                                e.kind
                            },
                            format!("pulling {image}: {}", e.message),
                        )
                    }
                })?;
                let detail = info.progress_detail.unwrap_or_default();
                progress(serde_json::json!({
                    "status": info.status.unwrap_or_default(),
                    "layer": info.id,
                    "current": detail.current,
                    "total": detail.total,
                }));
            }
        }
        progress(serde_json::json!({"status": "creating"}));
        let options = bollard::query_parameters::CreateContainerOptionsBuilder::new()
            .name(&request.name)
            .build();
        let created = docker.create_container(Some(options), body).await?;
        match self.finish_create(docker, &created.id, request).await {
            Ok(done) => Ok(done),
            Err(e) => {
                // Not left half made: a retry (with the same key or not) starts from nothing.
                let _ = docker
                    .remove_container(
                        &created.id,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: false,
                            link: false,
                        }),
                    )
                    .await;
                Err(e)
            }
        }
    }

    /// Connects a created container to its networks (those it is not on yet) and starts it.
    async fn finish_create(
        &self,
        docker: &Docker,
        id: &str,
        request: &infrapilot_proto::v1::CreateContainer,
    ) -> Result<ActionOutcome> {
        let current = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        let joined: Vec<String> = current
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default();
        for network in request.networks.iter().filter(|n| !joined.contains(n)) {
            docker
                .connect_network(
                    network,
                    bollard::models::NetworkConnectRequest {
                        container: id.to_owned(),
                        endpoint_config: None,
                    },
                )
                .await
                .map_err(|e| {
                    let e = DockerError::from(e);
                    DockerError::new(
                        e.kind,
                        format!("connecting to network {network}: {}", e.message),
                    )
                })?;
        }
        if request.start {
            match docker
                .start_container(id, None::<StartContainerOptions>)
                .await
            {
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304, ..
                }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let after = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        Ok(ActionOutcome {
            container: after.id.unwrap_or_else(|| id.to_owned()),
            state: after.state.and_then(|s| s.status).map(|s| s.to_string()),
        })
    }

    /// Docker's inspect answer as it is (its own field names), without the environment (which
    /// may hold secrets and is no policy's business).
    pub async fn inspect_raw(&self, container: &str) -> Result<serde_json::Value> {
        let docker = self.docker().await?;
        let mut c = docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await?;
        if let Some(config) = c.config.as_mut() {
            config.env = None;
        }
        // Where its binds and devices really are on this node: a path through a symbolic link
        // reaches another place than it reads (judged by the host as both).
        let mut sources: Vec<String> = Vec::new();
        if let Some(host) = &c.host_config {
            for bind in host.binds.iter().flatten() {
                if let Some(source) = bind.split(':').next().filter(|s| s.starts_with('/')) {
                    sources.push(source.to_owned());
                }
            }
            for m in host.mounts.iter().flatten() {
                if let Some(source) = m.source.as_ref().filter(|s| s.starts_with('/')) {
                    sources.push(source.clone());
                }
            }
            for d in host.devices.iter().flatten() {
                sources.extend(d.path_on_host.clone());
            }
        }
        for m in c.mounts.iter().flatten() {
            if let Some(source) = m.source.as_ref().filter(|s| s.starts_with('/')) {
                sources.push(source.clone());
            }
        }
        let real = real_paths(sources);
        // Named volumes whose driver binds a host path (`device`): that path is what they mount.
        let mut volume_devices = BTreeMap::new();
        let names = c
            .mounts
            .iter()
            .flatten()
            .filter(|m| m.typ.as_deref() == Some("volume"))
            .filter_map(|m| m.name.clone());
        for name in names {
            if let Some(device) = volume_device(docker, &name).await {
                volume_devices.insert(name, device);
            }
        }
        let mut value = serde_json::to_value(&c).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("InfraPilotRealPaths".into(), serde_json::json!(real));
            object.insert(
                "InfraPilotVolumeDevices".into(),
                serde_json::json!(volume_devices),
            );
        }
        Ok(value)
    }

    pub async fn inspect(&self, container: &str) -> Result<ContainerDetail> {
        let docker = self.docker().await?;
        let c = docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await?;
        let config = c.config.unwrap_or_default();
        let state = c.state.unwrap_or_default();
        let labels: BTreeMap<String, String> =
            config.labels.unwrap_or_default().into_iter().collect();
        let env = config
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => EnvVar {
                    name: k.to_owned(),
                    value: Some(v.to_owned()),
                },
                None => EnvVar {
                    name: kv,
                    value: None,
                },
            })
            .collect();
        let mounts = c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| MountInfo {
                kind: m.typ.map(|t| t.to_string()).unwrap_or_default(),
                name: m.name.filter(|n| !n.is_empty()),
                source: m.source.unwrap_or_default(),
                destination: m.destination.unwrap_or_default(),
                mode: m.mode.unwrap_or_default(),
                read_only: !m.rw.unwrap_or(true),
            })
            .collect();
        let settings = c.network_settings.unwrap_or_default();
        let mut networks: Vec<NetworkAttachment> = settings
            .networks
            .unwrap_or_default()
            .into_iter()
            .map(|(name, e)| NetworkAttachment {
                name,
                ip_address: e.ip_address.unwrap_or_default(),
                gateway: e.gateway.unwrap_or_default(),
                mac_address: e.mac_address.unwrap_or_default(),
                aliases: e.aliases.unwrap_or_default(),
            })
            .collect();
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        let mut ports = Vec::new();
        for (spec, bindings) in settings.ports.unwrap_or_default() {
            let (port, protocol) = spec.split_once('/').unwrap_or((spec.as_str(), "tcp"));
            let Ok(private_port) = port.parse::<u16>() else {
                continue;
            };
            match bindings.filter(|b| !b.is_empty()) {
                None => ports.push(PortMapping {
                    private_port,
                    public_port: None,
                    ip: None,
                    protocol: protocol.to_owned(),
                }),
                Some(bindings) => {
                    for b in bindings {
                        ports.push(PortMapping {
                            private_port,
                            public_port: b.host_port.and_then(|p| p.parse().ok()),
                            ip: b.host_ip.filter(|ip| !ip.is_empty()),
                            protocol: protocol.to_owned(),
                        });
                    }
                }
            }
        }
        ports.sort_by(|a, b| (a.private_port, &a.protocol).cmp(&(b.private_port, &b.protocol)));
        let restart_policy = c
            .host_config
            .as_ref()
            .and_then(|h| h.restart_policy.as_ref())
            .map(|p| {
                let name = p
                    .name
                    .map(|n| n.to_string())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "no".into());
                match p.maximum_retry_count {
                    Some(n) if n > 0 && name == "on-failure" => format!("{name}:{n}"),
                    _ => name,
                }
            })
            .unwrap_or_else(|| "no".into());
        let status_word = state.status.map(|s| s.to_string()).unwrap_or_default();
        let started_at = docker_time(state.started_at);
        let finished_at = docker_time(state.finished_at);
        let status = match status_word.as_str() {
            "running" => format!("running since {}", started_at.clone().unwrap_or_default()),
            "exited" => format!("exited ({})", state.exit_code.unwrap_or_default()),
            other => other.to_owned(),
        };
        Ok(ContainerDetail {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            image: config.image.unwrap_or_default(),
            image_id: c.image.unwrap_or_default(),
            state: status_word.clone(),
            status,
            created_at: c.created.map(|d| d.to_string()).unwrap_or_default(),
            exit_code: (status_word != "running" && started_at.is_some())
                .then_some(state.exit_code)
                .flatten(),
            started_at,
            finished_at,
            restart_count: c.restart_count.unwrap_or_default(),
            health: state
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| s != "none" && !s.is_empty()),
            command: config.cmd.unwrap_or_default(),
            entrypoint: config.entrypoint.unwrap_or_default(),
            working_dir: config.working_dir.unwrap_or_default(),
            user: config.user.unwrap_or_default(),
            hostname: config.hostname.unwrap_or_default(),
            restart_policy,
            compose_project: labels.get(COMPOSE_PROJECT_LABEL).cloned(),
            compose_service: labels.get(COMPOSE_SERVICE_LABEL).cloned(),
            labels,
            env,
            mounts,
            networks,
            ports,
        })
    }

    pub async fn act(
        &self,
        container: &str,
        action: Action,
        timeout_seconds: u32,
    ) -> Result<ActionOutcome> {
        let docker = self.docker().await?;
        let t = Some(i32::try_from(timeout_seconds).unwrap_or(i32::MAX));
        let done = match action {
            Action::Start => docker
                .start_container(container, None::<StartContainerOptions>)
                .await
                .map(|_| ()),
            Action::Stop => docker
                .stop_container(
                    container,
                    Some(StopContainerOptions {
                        t,
                        ..Default::default()
                    }),
                )
                .await
                .map(|_| ()),
            Action::Restart => docker
                .restart_container(
                    container,
                    Some(RestartContainerOptions {
                        t,
                        ..Default::default()
                    }),
                )
                .await
                .map(|_| ()),
            Action::Remove => {
                docker
                    .remove_container(
                        container,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: false,
                            link: false,
                        }),
                    )
                    .await?;
                return Ok(ActionOutcome {
                    container: container.to_owned(),
                    state: None,
                });
            }
            Action::Unspecified => return Err(DockerError::new("invalid", "no action given")),
        };
        match done {
            Ok(()) => {}
            // 304: already started / already stopped — the wanted state holds.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(e.into()),
        }
        let after = docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await?;
        Ok(ActionOutcome {
            container: after.id.unwrap_or_else(|| container.to_owned()),
            state: after.state.and_then(|s| s.status).map(|s| s.to_string()),
        })
    }

    fn logs_options(request: &FetchLogs, tail: String, follow: bool) -> LogsOptions {
        let secs = |ns: i64| i32::try_from(ns / 1_000_000_000).unwrap_or(i32::MAX);
        LogsOptions {
            follow,
            stdout: request.stream != "stderr",
            stderr: request.stream != "stdout",
            since: if request.since_unix_ns > 0 {
                secs(request.since_unix_ns)
            } else {
                0
            },
            // Docker's bound is in whole seconds: round up, then filter exactly.
            until: if request.until_unix_ns > 0 {
                secs(request.until_unix_ns) + 1
            } else {
                0
            },
            timestamps: true,
            tail,
        }
    }

    /// A page of lines, oldest first: the last `tail` lines before `until` that match, at most
    /// [`LOG_PAGE_MAX_BYTES`] of them (older ones are on the next page).
    pub async fn logs_page(&self, request: &FetchLogs) -> Result<LogPage> {
        let docker = self.docker().await?;
        let want = request.tail.clamp(1, 5000) as usize;
        let filtered = !request.query.is_empty() || request.until_unix_ns > 0;
        let window = if filtered {
            (want * 10 + 1000).min(50_000)
        } else {
            want + 1
        };
        let mut stream = docker.logs(
            &request.container,
            Some(Self::logs_options(request, window.to_string(), false)),
        );
        let query = request.query.to_lowercase();
        let mut lines: std::collections::VecDeque<(i64, LogLine)> = Default::default();
        let mut bytes = 0usize;
        let mut cut_for_size = false;
        let mut seen = 0usize;
        while let Some(item) = stream.next().await {
            let output = item?;
            seen += 1;
            let Some((ns, line)) = parse_log_output(output) else {
                continue;
            };
            if request.until_unix_ns > 0 && ns >= request.until_unix_ns {
                continue;
            }
            if request.since_unix_ns > 0 && ns < request.since_unix_ns {
                continue;
            }
            if !query.is_empty() && !line.message.to_lowercase().contains(&query) {
                continue;
            }
            bytes += line.message.len() + LOG_LINE_OVERHEAD_BYTES;
            lines.push_back((ns, line));
            // Keep the newest lines that fit one page: a page never nears the message bound.
            while lines.len() > want + 1 {
                if let Some((_, dropped)) = lines.pop_front() {
                    bytes -= dropped.message.len() + LOG_LINE_OVERHEAD_BYTES;
                }
            }
            while bytes > LOG_PAGE_MAX_BYTES && lines.len() > 1 {
                if let Some((_, dropped)) = lines.pop_front() {
                    bytes -= dropped.message.len() + LOG_LINE_OVERHEAD_BYTES;
                    cut_for_size = true;
                }
            }
        }
        let more = lines.len() > want || seen >= window || cut_for_size;
        if lines.len() > want {
            lines.drain(..lines.len() - want);
        }
        let next_cursor = if more {
            lines.front().map(|(ns, _)| ns.to_string())
        } else {
            None
        };
        Ok(LogPage {
            lines: lines.into_iter().map(|(_, l)| l).collect(),
            next_cursor,
        })
    }

    /// Follows a container's log; each line goes to `sink` until it closes or Docker ends.
    pub async fn follow_logs(
        &self,
        request: FetchLogs,
        sink: impl Fn(i64, LogLine) -> bool + Send,
    ) -> Result<()> {
        let docker = self.docker().await?;
        // Fail fast on an unknown container, before the caller is told the follow started.
        docker
            .inspect_container(&request.container, None::<InspectContainerOptions>)
            .await?;
        let tail = request.tail.min(5000).to_string();
        let mut stream = docker.logs(
            &request.container,
            Some(Self::logs_options(&request, tail, true)),
        );
        while let Some(item) = stream.next().await {
            if let Some((ns, line)) = parse_log_output(item?)
                && !sink(ns, line)
            {
                break;
            }
        }
        Ok(())
    }

    /// Every container: id, name, compose project, whether it runs, and its labels.
    pub async fn all_containers(
        &self,
    ) -> Result<Vec<(String, String, String, bool, HashMap<String, String>)>> {
        let docker = self.docker().await?;
        let containers = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default();
                let project = c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(COMPOSE_PROJECT_LABEL).cloned())
                    .unwrap_or_default();
                let running = c.state.map(|s| s.to_string()).as_deref() == Some("running");
                Some((c.id?, name, project, running, c.labels.unwrap_or_default()))
            })
            .collect())
    }

    /// Whether a container is running now (unknown to Docker: not running).
    pub async fn is_running(&self, container: &str) -> bool {
        let Ok(docker) = self.docker().await else {
            return false;
        };
        docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state?.running)
            .unwrap_or(false)
    }

    /// Follows a container's whole log from `since_ns` on (from its beginning when 0), each
    /// line (time, stream, bytes without the newline) to `sink` until it returns false or the
    /// log ends (the container stopped).
    pub async fn follow_raw_logs(
        &self,
        container: &str,
        since_ns: i64,
        mut sink: impl FnMut(i64, &'static str, Vec<u8>) -> bool + Send,
    ) -> Result<()> {
        let docker = self.docker().await?;
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            // Whole seconds, inclusive: the caller skips what it had.
            since: i32::try_from(since_ns.max(0) / 1_000_000_000).unwrap_or(i32::MAX),
            timestamps: true,
            tail: "all".into(),
            ..Default::default()
        };
        let mut stream = docker.logs(container, Some(options));
        let mut read = 0u32;
        while let Some(item) = stream.next().await {
            // A container that floods its log does not starve the agent's other work.
            read = read.wrapping_add(1);
            if read.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
            let (stream_name, bytes) = match item? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    ("stdout", message)
                }
                LogOutput::StdErr { message } => ("stderr", message),
                LogOutput::StdIn { .. } => continue,
            };
            let Some(space) = bytes.iter().position(|b| *b == b' ') else {
                continue;
            };
            let Some(ns) = std::str::from_utf8(&bytes[..space]).ok().and_then(|stamp| {
                time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
                    .ok()
            }) else {
                continue;
            };
            let mut line = bytes[space + 1..].to_vec();
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            if !sink(ns.unix_timestamp_nanos() as i64, stream_name, line) {
                break;
            }
        }
        Ok(())
    }

    /// Checks that a container exists (and returns its full id).
    pub async fn resolve(&self, container: &str) -> Result<String> {
        let docker = self.docker().await?;
        let c = docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await?;
        Ok(c.id.unwrap_or_default())
    }

    /// Starts an exec session with a TTY and returns its halves.
    pub async fn start_exec(
        &self,
        container: &str,
        command: Vec<String>,
        cols: u16,
        rows: u16,
    ) -> Result<ExecSession> {
        let docker = self.docker().await?.clone();
        let command = if command.is_empty() {
            vec!["/bin/sh".to_owned()]
        } else {
            command
        };
        let exec = docker
            .create_exec(
                container,
                CreateExecOptions {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(true),
                    cmd: Some(command),
                    env: Some(vec!["TERM=xterm-256color".to_owned()]),
                    ..Default::default()
                },
            )
            .await?;
        let started = docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: true,
                    output_capacity: None,
                }),
            )
            .await?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(DockerError::new(
                "failed",
                "Docker detached the exec session",
            ));
        };
        let session = ExecSession {
            control: ExecControl {
                docker,
                exec_id: exec.id,
            },
            output,
            input,
        };
        if cols > 0 && rows > 0 {
            session.control.resize(cols, rows).await;
        }
        Ok(session)
    }

    /// Docker events of containers, forwarded to `sink` as they happen (reconnecting if the
    /// engine restarts; `subscribed` is called each time the feed is (re)opened, since events
    /// in between are not replayed). Runs until the sink is closed.
    pub async fn watch_events(&self, sink: impl Fn(DockerEvent) -> bool, subscribed: impl Fn()) {
        loop {
            let docker = match self.docker().await {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("docker events: {e}");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            };
            let mut filters = HashMap::new();
            filters.insert("type".to_owned(), vec!["container".to_owned()]);
            filters.insert(
                "event".to_owned(),
                [
                    "create",
                    "start",
                    "stop",
                    "die",
                    "kill",
                    "oom",
                    "restart",
                    "destroy",
                    "pause",
                    "unpause",
                    "health_status",
                ]
                .map(String::from)
                .to_vec(),
            );
            let mut stream = docker.events(Some(EventsOptions {
                filters: Some(filters),
                ..Default::default()
            }));
            subscribed();
            while let Some(item) = stream.next().await {
                let Ok(event) = item else { break };
                let actor = event.actor.unwrap_or_default();
                let mut attributes = actor.attributes.unwrap_or_default();
                let action = event.action.unwrap_or_default();
                // "health_status: healthy" → action health_status, attribute health_status=healthy.
                let action = match action.split_once(": ") {
                    Some((name, value)) => {
                        attributes.insert(name.to_owned(), value.to_owned());
                        name.to_owned()
                    }
                    None => action,
                };
                let exit_code = attributes.get("exitCode").and_then(|c| c.parse().ok());
                let message = DockerEvent {
                    time_unix_ms: event
                        .time_nano
                        .map(|n| n / 1_000_000)
                        .or(event.time.map(|s| s * 1000))
                        .unwrap_or_default(),
                    container_id: actor.id.unwrap_or_default(),
                    container_name: attributes.get("name").cloned().unwrap_or_default(),
                    action,
                    exit_code,
                    attributes: attributes.into_iter().collect(),
                };
                if !sink(message) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Docker's data root (`docker info`), where images and containers take disk space.
    pub async fn data_root(&self) -> Option<String> {
        let docker = self.docker().await.ok()?;
        docker.info().await.ok()?.docker_root_dir
    }

    /// Containers running and in total, for heartbeats.
    pub async fn counts(&self) -> Option<(u32, u32)> {
        let docker = self.docker().await.ok()?;
        let all = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .ok()?;
        let running = all
            .iter()
            .filter(|c| c.state.map(|s| s.to_string()).as_deref() == Some("running"))
            .count();
        Some((running as u32, all.len() as u32))
    }
}

/// One exec session's halves: terminal output, and input with resize.
pub struct ExecSession {
    pub control: ExecControl,
    pub output: std::pin::Pin<
        Box<
            dyn futures_util::Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>>
                + Send,
        >,
    >,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// Resizes and inspects an exec session.
#[derive(Clone)]
pub struct ExecControl {
    docker: Docker,
    exec_id: String,
}

impl ExecControl {
    pub async fn resize(&self, cols: u16, rows: u16) {
        let _ = self
            .docker
            .resize_exec(
                &self.exec_id,
                ResizeExecOptions {
                    height: rows,
                    width: cols,
                },
            )
            .await;
    }

    /// The exit code once the process ended.
    pub async fn exit_code(&self) -> Option<i64> {
        for _ in 0..20 {
            match self.docker.inspect_exec(&self.exec_id).await {
                Ok(info) if info.running == Some(false) => return info.exit_code,
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => return None,
            }
        }
        None
    }
}

impl ExecSession {
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.input.write_all(data).await?;
        self.input.flush().await
    }
}

/// Splits Docker's `<RFC 3339 nanos> <message>` (logs with timestamps) into time and line.
fn parse_log_output(output: LogOutput) -> Option<(i64, LogLine)> {
    let (stream, bytes) = match output {
        LogOutput::StdOut { message } => ("stdout", message),
        LogOutput::StdErr { message } => ("stderr", message),
        LogOutput::Console { message } => ("stdout", message),
        LogOutput::StdIn { .. } => return None,
    };
    let text = String::from_utf8_lossy(&bytes);
    let (stamp, message) = text.split_once(' ').unwrap_or((&text, ""));
    let ns = time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos() as i64)?;
    let message = message.trim_end_matches(['\n', '\r']).to_owned();
    Some((
        ns,
        LogLine {
            time: rfc3339_from_ns(ns),
            stream: stream.to_owned(),
            level: detect_level(&message).map(str::to_owned),
            message,
        },
    ))
}
