//! Shared state of the HTTP API.

use std::sync::Arc;
use std::time::Duration;

use infrapilot_alerts::{AlertEngine, EngineConfig};
use infrapilot_gateway::{AgentHub, CertificateAuthority};
use infrapilot_identity::{LoginThrottle, SecretBox};
use infrapilot_plugin_host::PluginHost;
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
    /// Installed plugins and the alerting engine, when the host runs them.
    extensions: std::sync::OnceLock<Extensions>,
}

/// The plugin host and the alerting engine (set once at start-up).
#[derive(Clone)]
pub struct Extensions {
    pub plugins: PluginHost,
    pub alerts: AlertEngine,
}

impl AppState {
    pub fn new(
        store: Store,
        secrets: SecretBox,
        ca: CertificateAuthority,
        settings: ApiSettings,
    ) -> AppState {
        let secrets = Arc::new(secrets);
        AppState {
            inner: Arc::new(Inner {
                ca: Arc::new(ca),
                account_throttle: LoginThrottle::new(
                    settings.account_failures,
                    settings.throttle_window,
                ),
                ip_throttle: LoginThrottle::new(settings.ip_failures, settings.throttle_window),
                metrics: Metrics::new(),
                hub: AgentHub::new(store.clone(), settings.heartbeat_seconds, secrets.clone()),
                store,
                secrets,
                settings,
                extensions: std::sync::OnceLock::new(),
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
        let _ = self.inner.extensions.set(Extensions { plugins, alerts });
        self.extensions()
            .map(|e| e.alerts.clone())
            .expect("just set")
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

    /// The agents connected to this process.
    pub fn hub(&self) -> &AgentHub {
        &self.inner.hub
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
}
