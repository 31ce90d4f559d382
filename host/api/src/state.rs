//! Shared state of the HTTP API.

use std::sync::Arc;
use std::time::Duration;

use infrapilot_alerts::{AlertEngine, EngineConfig};
use infrapilot_gateway::{AgentHub, CertificateAuthority, NodeRouter};
use infrapilot_identity::{LoginThrottle, SecretBox};
use infrapilot_nodes::NodeActions;
use infrapilot_plugin_host::{PluginHost, PolicyEngines};
use infrapilot_store::Store;

use crate::metrics::Metrics;

/// Tunables of the API, with production defaults.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Lifetime of an access token.
    pub access_token_ttl: Duration,
    /// Lifetime of a session (its refresh tokens).
    pub session_ttl: Duration,
    /// Failed logins per account within `throttle_window` before it is locked for a while.
    pub account_failures: usize,
    /// Failed logins per client address within `throttle_window`.
    pub ip_failures: usize,
    pub throttle_window: Duration,
    /// Where agents open their mTLS gRPC session (told to them at enrollment).
    pub agent_grpc_url: String,
    /// How often agents send heartbeats; two missed ones mark an agent offline.
    pub heartbeat_seconds: u32,
    /// The host's URL as nodes reach it, for the install one-liner (default: from the request).
    pub public_url: Option<String>,
    /// The agent binary served at `/downloads/infrapilot-agent`.
    pub agent_binary: Option<std::path::PathBuf>,
    /// The plugin id of the proxy backend that renders the nodes' proxy hosts.
    pub proxy_backend: String,
    /// The one-time code that claims a fresh install (`POST /api/v1/setup`). `None`: setup
    /// through the API is closed (use `infrapilot admin create-user`).
    pub setup_code: Option<String>,
    /// The file holding the setup code, removed once the install is claimed.
    pub setup_code_file: Option<std::path::PathBuf>,
    /// Host names (besides IP literals and `localhost`) that browser-facing public routes
    /// answer to; another `Host` is refused (DNS rebinding). The public URL's host is added.
    pub allowed_hosts: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client (the last untrusted address is the
    /// client); from anyone else the header is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Anonymous password checks (Argon2) running at once; more get 429 with `Retry-After`.
    pub max_anonymous_password_checks: usize,
    /// How often an open WebSocket re-checks its caller (session, token, role, agent).
    pub socket_recheck: Duration,
    /// Longest life of a WebSocket (log follow, terminal).
    pub socket_max_lifetime: Duration,
    /// Bearer token that `/metrics` requires (`None`: the route is open, for a separate listener).
    pub metrics_token: Option<String>,
    /// Enrollment attempts with a wrong token per client address within `throttle_window`.
    pub enroll_failures: usize,
    /// Days log lines are kept where an organisation set none.
    pub log_retention_days: i64,
    /// The host's edition: how many organisations it runs, and who makes them.
    pub edition: infrapilot_licensing::HostEdition,
    /// API requests a minute per organisation and per credential (429 beyond).
    pub rate_limits: crate::rate_limit::RateLimits,
}

/// An address range (`10.0.0.0/8`, `192.0.2.7`), for the trusted-proxy list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    network: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: std::net::IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0–{max}"))?,
            None => max,
        };
        Ok(IpNet { network, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl Default for ApiSettings {
    fn default() -> ApiSettings {
        ApiSettings {
            access_token_ttl: Duration::from_secs(15 * 60),
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            account_failures: 5,
            ip_failures: 30,
            throttle_window: Duration::from_secs(15 * 60),
            agent_grpc_url: "https://localhost:8443".into(),
            heartbeat_seconds: 30,
            public_url: None,
            proxy_backend: infrapilot_proxy::DEFAULT_BACKEND.into(),
            agent_binary: None,
            setup_code: None,
            setup_code_file: None,
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            max_anonymous_password_checks: 4,
            socket_recheck: Duration::from_secs(30),
            socket_max_lifetime: Duration::from_secs(12 * 3600),
            metrics_token: None,
            enroll_failures: 10,
            log_retention_days: 14,
            edition: infrapilot_licensing::HostEdition::Community,
            rate_limits: crate::rate_limit::RateLimits::default(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    ca: Arc<CertificateAuthority>,
    secrets: Arc<SecretBox>,
    settings: ApiSettings,
    account_throttle: LoginThrottle,
    ip_throttle: LoginThrottle,
    metrics: Metrics,
    hub: AgentHub,
    /// How routes reach nodes: the hub, seen through its trait.
    nodes: Arc<dyn NodeRouter>,
    /// The one door for state-changing actions on nodes (checks, dispatch, audit).
    node_actions: NodeActions,
    /// The policy engines the door's policy guard asks (set with the plugin host).
    policy_engines: Arc<std::sync::OnceLock<PolicyEngines>>,
    enroll_throttle: LoginThrottle,
    /// Bounds the Argon2 work anonymous callers can cause at once.
    anonymous_password_checks: Arc<tokio::sync::Semaphore>,
    /// Flips to true when the host starts shutting down (open sockets close).
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The SHA-256 of the served agent binary, with the size and mtime it was computed for.
    agent_binary_sha256: std::sync::Mutex<Option<(u64, std::time::SystemTime, String)>>,
    /// Installed plugins and the alerting engine, when the host runs them.
    extensions: std::sync::OnceLock<Extensions>,
    /// Request rate limits per organisation and per credential.
    request_limiter: crate::rate_limit::RequestLimiter,
}

/// The plugin host and the alerting engine (set once at start-up).
#[derive(Clone)]
pub struct Extensions {
    pub plugins: PluginHost,
    pub alerts: AlertEngine,
    pub policy_engines: PolicyEngines,
}

impl AppState {
    pub fn new(
        store: Store,
        secrets: SecretBox,
        ca: CertificateAuthority,
        settings: ApiSettings,
    ) -> AppState {
        let secrets = Arc::new(secrets);
        let hub = AgentHub::new(store.clone(), settings.heartbeat_seconds, secrets.clone());
        let request_limiter = crate::rate_limit::RequestLimiter::new(settings.rate_limits);
        let nodes: Arc<dyn NodeRouter> = Arc::new(hub.clone());
        let policy_engines = Arc::new(std::sync::OnceLock::new());
        let node_actions = NodeActions::new(nodes.clone(), store.clone()).with_guard(Arc::new(
            infrapilot_policy::PolicyGuard::new(
                store.clone(),
                policy_engines.clone(),
                nodes.clone(),
            ),
        ));
        AppState {
            inner: Arc::new(Inner {
                ca: Arc::new(ca),
                account_throttle: LoginThrottle::new(
                    settings.account_failures,
                    settings.throttle_window,
                ),
                ip_throttle: LoginThrottle::new(settings.ip_failures, settings.throttle_window),
                metrics: Metrics::new(),
                enroll_throttle: LoginThrottle::new(
                    settings.enroll_failures,
                    settings.throttle_window,
                ),
                anonymous_password_checks: Arc::new(tokio::sync::Semaphore::new(
                    settings.max_anonymous_password_checks.max(1),
                )),
                shutdown: tokio::sync::watch::channel(false).0,
                agent_binary_sha256: std::sync::Mutex::new(None),
                hub: hub.clone(),
                node_actions,
                policy_engines,
                nodes,
                store,
                secrets,
                settings,
                extensions: std::sync::OnceLock::new(),
                request_limiter,
            }),
        }
    }

    /// Installs the plugin host and builds the alerting engine on this state's agent hub.
    /// Returns the engine (to spawn); a second call keeps the first.
    pub fn enable_plugins(&self, plugins: PluginHost, config: EngineConfig) -> AlertEngine {
        let alerts = AlertEngine::new(
            self.inner.store.clone(),
            plugins.clone(),
            self.inner.hub.clone(),
            self.inner.secrets.clone(),
            config,
        );
        let policy_engines = PolicyEngines::new(plugins.clone());
        let _ = self.inner.policy_engines.set(policy_engines.clone());
        let _ = self.inner.extensions.set(Extensions {
            plugins,
            alerts,
            policy_engines,
        });
        self.extensions()
            .map(|e| e.alerts.clone())
            .expect("just set")
    }

    /// The account workflows: sign-in, MFA, sessions, passwords.
    pub fn accounts(&self) -> infrapilot_accounts::AccountService<'_> {
        infrapilot_accounts::AccountService {
            store: self.store(),
            secrets: self.secrets(),
            account_throttle: self.account_throttle(),
            ip_throttle: self.ip_throttle(),
            anonymous_checks: self.anonymous_password_checks(),
            access_token_ttl: self.settings().access_token_ttl,
            session_ttl: self.settings().session_ttl,
        }
    }

    /// The organisation workflows; how many organisations the host's edition allows.
    pub fn organisations(&self) -> infrapilot_accounts::Organisations {
        use infrapilot_accounts::OrgCreation;
        use infrapilot_licensing::HostEdition;
        let creation = match self.settings().edition {
            HostEdition::Community => OrgCreation::Single,
            HostEdition::Enterprise => OrgCreation::ByHostOperator,
            HostEdition::Saas => OrgCreation::ByAnyone,
        };
        infrapilot_accounts::Organisations::new(self.store().clone(), creation)
    }

    /// The proxy workflow: revisions of a node's hosts, uploaded certificates.
    pub fn proxy_service(&self) -> infrapilot_proxy::service::ProxyService<'_> {
        infrapilot_proxy::service::ProxyService {
            store: self.store(),
            secrets: self.secrets(),
            plugins: self.inner.extensions.get().map(|e| &e.plugins),
            backend_id: &self.settings().proxy_backend,
            actions: self.node_actions(),
        }
    }

    /// The plugin host and alerting engine; 503 when the host runs without them.
    pub fn extensions(&self) -> Result<&Extensions, crate::error::ApiError> {
        self.inner.extensions.get().ok_or_else(|| {
            crate::error::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "plugins_unavailable",
                "this host runs without the plugin runtime",
            )
        })
    }

    pub fn request_limiter(&self) -> &crate::rate_limit::RequestLimiter {
        &self.inner.request_limiter
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The CA that signs agent certificates.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.inner.ca
    }

    /// A shared handle on the CA, for the agent gateway.
    pub fn ca_handle(&self) -> Arc<CertificateAuthority> {
        self.inner.ca.clone()
    }

    /// The hub itself, for wiring (the gateway listener, the alert engine, shutdown). Routes
    /// use [`AppState::nodes`].
    pub fn hub(&self) -> &AgentHub {
        &self.inner.hub
    }

    /// Where the organisations' log lines are read: the log sink the operator configured, or
    /// the database.
    pub fn log_lines(&self) -> crate::routes::logs::LogLines {
        crate::routes::logs::LogLines {
            store: self.inner.store.clone(),
            sink: self.inner.hub.log_sink(),
        }
    }

    /// How routes and services reach nodes.
    pub fn nodes(&self) -> &Arc<dyn NodeRouter> {
        &self.inner.nodes
    }

    /// Where every state-changing action on a node goes ([`NodeActions::perform`]).
    pub fn node_actions(&self) -> &NodeActions {
        &self.inner.node_actions
    }

    pub fn secrets(&self) -> &SecretBox {
        &self.inner.secrets
    }

    pub fn settings(&self) -> &ApiSettings {
        &self.inner.settings
    }

    pub fn account_throttle(&self) -> &LoginThrottle {
        &self.inner.account_throttle
    }

    pub fn ip_throttle(&self) -> &LoginThrottle {
        &self.inner.ip_throttle
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn enroll_throttle(&self) -> &LoginThrottle {
        &self.inner.enroll_throttle
    }

    pub fn anonymous_password_checks(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.inner.anonymous_password_checks
    }

    /// Starts the shutdown: open sockets close and agent sessions end.
    pub fn begin_shutdown(&self, builtin_agent_id: Option<&str>) {
        self.inner.shutdown.send_replace(true);
        self.inner.hub.shut_down(builtin_agent_id);
    }

    /// Resolves once [`AppState::begin_shutdown`] was called.
    pub fn shutdown_started(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    /// The served agent binary's SHA-256 (hex), hashed once per version of the file.
    pub fn agent_binary_sha256(&self) -> Option<String> {
        let path = self.inner.settings.agent_binary.as_ref()?;
        let meta = std::fs::metadata(path).ok()?;
        let (len, modified) = (meta.len(), meta.modified().ok()?);
        let mut cached = self
            .inner
            .agent_binary_sha256
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((l, m, sum)) = cached.as_ref()
            && *l == len
            && *m == modified
        {
            return Some(sum.clone());
        }
        let bytes = std::fs::read(path).ok()?;
        use sha2::Digest;
        let sum = hex::encode(sha2::Sha256::digest(&bytes));
        *cached = Some((len, modified, sum.clone()));
        Some(sum)
    }
}
