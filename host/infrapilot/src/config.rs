//! Configuration: built-in defaults, then a TOML file, then `INFRAPILOT_*` environment variables.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port of the HTTP server.
    pub listen: String,
    /// Where the SQLite database and the master key live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: `sqlite://<data_dir>/infrapilot.db`.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `infrapilot=debug,tower_http=info`.
    pub log_level: String,
    /// Address of the agents' mTLS gRPC listener.
    pub grpc_listen: String,
    /// Names and addresses agents reach the gRPC listener by (its certificate's SANs).
    pub grpc_hostnames: Vec<String>,
    /// The URL agents are told to connect to; default `https://<first hostname>:<grpc port>`.
    pub grpc_url: Option<String>,
    /// Run the built-in agent (manages the local Docker engine through the same protocol).
    pub builtin_agent: bool,
    /// The built-in agent collects the containers' logs (its own nginx's always, when on).
    pub builtin_agent_logs: bool,
    /// The built-in agent collects the logs of containers with this label only (`key=value`).
    pub builtin_agent_log_label: Option<String>,
    /// The bound of the built-in agent's on-disk spool, in bytes.
    pub builtin_agent_spool_bytes: u64,
    /// Seconds between agent heartbeats; two missed ones mark an agent offline.
    pub heartbeat_seconds: u32,
    /// The host's URL as nodes reach it (for the install one-liner); default: from the request.
    pub public_url: Option<String>,
    /// The agent binary served to installers; default: `infrapilot-agent` next to this binary.
    pub agent_binary: Option<PathBuf>,
    /// `community`, `enterprise` (enterprise plugins need a licence) or `saas` (all features).
    pub edition: String,
    /// API requests a minute per organisation (0: no limit).
    pub api_rate_per_org: u32,
    /// API requests a minute per API token or session (0: no limit).
    pub api_rate_per_credential: u32,
    /// Plugin bundles (`*.bundle`) installed at start-up if missing or of another version.
    pub plugin_dir: Option<PathBuf>,
    /// A directory of trusted publisher public keys (`*.pub`/`*.pem`).
    pub plugin_trusted_keys: Option<PathBuf>,
    /// The development switch: install unsigned or untrusted plugin bundles (marked unsigned).
    pub allow_unsigned_plugins: bool,
    /// CIDRs plugins may reach despite the private-range guard, comma-separated.
    pub plugin_egress_allow: String,
    /// The key that verifies licences; default: the vendor key built into the binary.
    pub license_public_key: Option<PathBuf>,
    /// SMTP server for plugin mail (unset: plugins get `not-configured`).
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    /// `none`, `starttls` or `tls`.
    pub smtp_security: String,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    pub smtp_from: String,
    /// Wall-clock limit of one plugin call (a hook), in seconds.
    pub plugin_hook_timeout_seconds: u32,
    /// Seconds between evaluations of the alert rules (and sends of due deliveries).
    pub alert_tick_seconds: u32,
    /// Seconds before the first retry of a failed delivery (doubled each time).
    pub alert_retry_seconds: u32,
    /// Days the nodes' log lines are kept, unless an organisation sets its own.
    pub log_retention_days: u32,
    /// Seconds between audits of the running containers against the enabled policies.
    pub policy_audit_seconds: u32,
    /// A `log-sink` plugin (e.g. `infrapilot.clickhouse`, installed and enabled) that stores
    /// the nodes' log lines instead of the database; unset: the database.
    pub log_sink: Option<String>,
    /// The log sink's settings as a JSON object (its manifest's schema; `writeOnly` fields
    /// such as a password are its secrets).
    pub log_sink_settings: Option<String>,
    /// The plugin (a `proxy-backend` component) that renders proxy hosts for the nodes.
    pub proxy_backend: String,
    /// Host names the public browser routes answer to besides IP literals, `localhost` and the
    /// public URL's host (DNS rebinding guard).
    pub allowed_hosts: Vec<String>,
    /// Addresses/CIDRs of reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Bearer token `/metrics` requires on the main listener (else loopback clients only).
    pub metrics_token: Option<String>,
    /// A separate address serving `/metrics` alone, without a token (a private network).
    pub metrics_listen: Option<String>,
    /// How long shutdown waits for in-flight requests before it exits anyway.
    pub shutdown_grace_seconds: u32,
    /// Longest life of a WebSocket (log follow, terminal).
    pub socket_max_lifetime_seconds: u32,
    /// Connections the HTTP listener serves at once; more wait in the kernel's backlog.
    pub max_connections: u32,
    /// Time a client has to send a request's headers (slow clients are cut off).
    pub header_read_timeout_seconds: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "0.0.0.0:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 8,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            grpc_listen: "0.0.0.0:8443".into(),
            grpc_hostnames: vec!["localhost".into(), "127.0.0.1".into()],
            grpc_url: None,
            builtin_agent: true,
            builtin_agent_logs: true,
            builtin_agent_log_label: None,
            builtin_agent_spool_bytes: infrapilot_agent::spool::DEFAULT_BOUND_BYTES,
            heartbeat_seconds: 30,
            public_url: None,
            agent_binary: None,
            edition: "community".into(),
            api_rate_per_org: 6000,
            api_rate_per_credential: 1200,
            plugin_dir: None,
            plugin_trusted_keys: None,
            allow_unsigned_plugins: false,
            plugin_egress_allow: String::new(),
            license_public_key: None,
            smtp_host: None,
            smtp_port: 25,
            smtp_security: "starttls".into(),
            smtp_username: None,
            smtp_password: None,
            smtp_from: "InfraPilot <infrapilot@localhost>".into(),
            plugin_hook_timeout_seconds: 15,
            alert_tick_seconds: 5,
            alert_retry_seconds: 10,
            log_retention_days: 14,
            policy_audit_seconds: 900,
            log_sink: None,
            log_sink_settings: None,
            proxy_backend: infrapilot_proxy::DEFAULT_BACKEND.into(),
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            metrics_token: None,
            metrics_listen: None,
            shutdown_grace_seconds: 10,
            socket_max_lifetime_seconds: 12 * 3600,
            max_connections: 1024,
            header_read_timeout_seconds: 10,
        }
    }
}

impl Config {
    /// The trusted proxies as address ranges.
    pub fn trusted_proxy_nets(&self) -> anyhow::Result<Vec<infrapilot_api::state::IpNet>> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                infrapilot_api::state::IpNet::parse(p)
                    .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))
            })
            .collect()
    }

    /// The built-in agent's log label filter, parsed.
    pub fn builtin_agent_log_label(&self) -> anyhow::Result<Option<(String, String)>> {
        self.builtin_agent_log_label
            .as_deref()
            .map(infrapilot_agent::shipper::parse_log_label)
            .transpose()
            .map_err(|e| anyhow::anyhow!("builtin_agent_log_label: {e}"))
    }

    /// The log sink's settings: a JSON object (`{}` when unset).
    pub fn log_sink_settings(&self) -> anyhow::Result<serde_json::Value> {
        let Some(text) = &self.log_sink_settings else {
            return Ok(serde_json::json!({}));
        };
        if self.log_sink.is_none() {
            bail!("log_sink_settings: set, but no log_sink names the plugin they are for");
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) if value.is_object() => Ok(value),
            Ok(_) => bail!("log_sink_settings: must be a JSON object"),
            Err(e) => bail!("log_sink_settings: not JSON: {e}"),
        }
    }

    /// Loads the file (if any) and applies the environment on top.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        config.check()?;
        Ok(config)
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = var("INFRAPILOT_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = var("INFRAPILOT_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("INFRAPILOT_DATABASE_URL").filter(|v| !v.is_empty()) {
            self.database_url = Some(v);
        }
        if let Some(v) = var("INFRAPILOT_DATABASE_MAX_CONNECTIONS") {
            self.database_max_connections = v.parse().with_context(|| {
                format!("INFRAPILOT_DATABASE_MAX_CONNECTIONS: not a number: {v:?}")
            })?;
        }
        if let Some(v) = var("INFRAPILOT_LOG_FORMAT") {
            self.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => bail!("INFRAPILOT_LOG_FORMAT must be text or json, not {v:?}"),
            };
        }
        if let Some(v) = var("INFRAPILOT_LOG_LEVEL") {
            self.log_level = v;
        }
        if let Some(v) = var("INFRAPILOT_GRPC_LISTEN") {
            self.grpc_listen = v;
        }
        if let Some(v) = var("INFRAPILOT_GRPC_HOSTNAMES") {
            self.grpc_hostnames = v
                .split(',')
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .collect();
        }
        if let Some(v) = var("INFRAPILOT_GRPC_URL").filter(|v| !v.is_empty()) {
            self.grpc_url = Some(v);
        }
        if let Some(v) = var("INFRAPILOT_BUILTIN_AGENT") {
            self.builtin_agent = boolean("INFRAPILOT_BUILTIN_AGENT", &v)?;
        }
        if let Some(v) = var("INFRAPILOT_BUILTIN_AGENT_LOGS") {
            self.builtin_agent_logs = boolean("INFRAPILOT_BUILTIN_AGENT_LOGS", &v)?;
        }
        if let Some(v) = var("INFRAPILOT_BUILTIN_AGENT_LOG_LABEL").filter(|v| !v.is_empty()) {
            self.builtin_agent_log_label = Some(v);
        }
        if let Some(v) = var("INFRAPILOT_BUILTIN_AGENT_SPOOL_BYTES") {
            self.builtin_agent_spool_bytes = v.parse().with_context(|| {
                format!("INFRAPILOT_BUILTIN_AGENT_SPOOL_BYTES: not a number: {v:?}")
            })?;
        }
        if let Some(v) = var("INFRAPILOT_HEARTBEAT_SECONDS") {
            self.heartbeat_seconds = v
                .parse()
                .with_context(|| format!("INFRAPILOT_HEARTBEAT_SECONDS: not a number: {v:?}"))?;
        }
        if let Some(v) = var("INFRAPILOT_PUBLIC_URL").filter(|v| !v.is_empty()) {
            self.public_url = Some(v);
        }
        if let Some(v) = var("INFRAPILOT_AGENT_BINARY").filter(|v| !v.is_empty()) {
            self.agent_binary = Some(PathBuf::from(v));
        }
        if let Some(v) = var("INFRAPILOT_API_RATE_PER_ORG") {
            self.api_rate_per_org = v
                .parse()
                .with_context(|| format!("INFRAPILOT_API_RATE_PER_ORG: not a number: {v:?}"))?;
        }
        if let Some(v) = var("INFRAPILOT_API_RATE_PER_TOKEN") {
            self.api_rate_per_credential = v
                .parse()
                .with_context(|| format!("INFRAPILOT_API_RATE_PER_TOKEN: not a number: {v:?}"))?;
        }
        if let Some(v) = var("INFRAPILOT_EDITION") {
            self.edition = v;
        }
        if let Some(v) = var("INFRAPILOT_PLUGIN_DIR").filter(|v| !v.is_empty()) {
            self.plugin_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = var("INFRAPILOT_PLUGIN_TRUSTED_KEYS").filter(|v| !v.is_empty()) {
            self.plugin_trusted_keys = Some(PathBuf::from(v));
        }
        if let Some(v) = var("INFRAPILOT_ALLOW_UNSIGNED_PLUGINS") {
            self.allow_unsigned_plugins = boolean("INFRAPILOT_ALLOW_UNSIGNED_PLUGINS", &v)?;
        }
        if let Some(v) = var("INFRAPILOT_PLUGIN_EGRESS_ALLOW") {
            self.plugin_egress_allow = v;
        }
        if let Some(v) = var("INFRAPILOT_LICENSE_PUBLIC_KEY").filter(|v| !v.is_empty()) {
            self.license_public_key = Some(PathBuf::from(v));
        }
        if let Some(v) = var("INFRAPILOT_SMTP_HOST").filter(|v| !v.is_empty()) {
            self.smtp_host = Some(v);
        }
        if let Some(v) = var("INFRAPILOT_SMTP_PORT") {
            self.smtp_port = v
                .parse()
                .with_context(|| format!("INFRAPILOT_SMTP_PORT: not a port: {v:?}"))?;
        }
        if let Some(v) = var("INFRAPILOT_SMTP_SECURITY") {
            self.smtp_security = v;
        }
        if let Some(v) = var("INFRAPILOT_SMTP_USERNAME").filter(|v| !v.is_empty()) {
            self.smtp_username = Some(v);
        }
        if let Some(v) = var("INFRAPILOT_SMTP_PASSWORD").filter(|v| !v.is_empty()) {
            self.smtp_password = Some(v);
        }
        if let Some(v) = var("INFRAPILOT_SMTP_FROM") {
            self.smtp_from = v;
        }
        if let Some(v) = var("INFRAPILOT_PLUGIN_HOOK_TIMEOUT_SECONDS") {
            self.plugin_hook_timeout_seconds = v.parse().with_context(|| {
                format!("INFRAPILOT_PLUGIN_HOOK_TIMEOUT_SECONDS: not a number: {v:?}")
            })?;
        }
        if let Some(v) = var("INFRAPILOT_ALERT_TICK_SECONDS") {
            self.alert_tick_seconds = v
                .parse()
                .with_context(|| format!("INFRAPILOT_ALERT_TICK_SECONDS: not a number: {v:?}"))?;
        }
        if let Some(v) = var("INFRAPILOT_LOG_RETENTION_DAYS") {
            self.log_retention_days = v
                .parse()
                .with_context(|| format!("INFRAPILOT_LOG_RETENTION_DAYS: not a number: {v:?}"))?;
        }
        if let Some(v) = var("INFRAPILOT_POLICY_AUDIT_SECONDS") {
            self.policy_audit_seconds = v
                .parse()
                .with_context(|| format!("INFRAPILOT_POLICY_AUDIT_SECONDS: not a number: {v:?}"))?;
        }
        if let Some(v) = var("INFRAPILOT_LOG_SINK") {
            self.log_sink = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = var("INFRAPILOT_LOG_SINK_SETTINGS") {
            self.log_sink_settings = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = var("INFRAPILOT_PROXY_BACKEND") {
            self.proxy_backend = v;
        }
        let list = |v: String| -> Vec<String> {
            v.split(',')
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .collect()
        };
        if let Some(v) = var("INFRAPILOT_ALLOWED_HOSTS") {
            self.allowed_hosts = list(v);
        }
        if let Some(v) = var("INFRAPILOT_TRUSTED_PROXIES") {
            self.trusted_proxies = list(v);
        }
        if let Some(v) = var("INFRAPILOT_METRICS_TOKEN").filter(|v| !v.is_empty()) {
            self.metrics_token = Some(v);
        }
        if let Some(v) = var("INFRAPILOT_METRICS_LISTEN").filter(|v| !v.is_empty()) {
            self.metrics_listen = Some(v);
        }
        let number = |name: &str, v: String| -> anyhow::Result<u32> {
            v.parse()
                .with_context(|| format!("{name}: not a number: {v:?}"))
        };
        if let Some(v) = var("INFRAPILOT_SHUTDOWN_GRACE_SECONDS") {
            self.shutdown_grace_seconds = number("INFRAPILOT_SHUTDOWN_GRACE_SECONDS", v)?;
        }
        if let Some(v) = var("INFRAPILOT_SOCKET_MAX_LIFETIME_SECONDS") {
            self.socket_max_lifetime_seconds = number("INFRAPILOT_SOCKET_MAX_LIFETIME_SECONDS", v)?;
        }
        if let Some(v) = var("INFRAPILOT_MAX_CONNECTIONS") {
            self.max_connections = number("INFRAPILOT_MAX_CONNECTIONS", v)?;
        }
        if let Some(v) = var("INFRAPILOT_HEADER_READ_TIMEOUT_SECONDS") {
            self.header_read_timeout_seconds = number("INFRAPILOT_HEADER_READ_TIMEOUT_SECONDS", v)?;
        }
        if let Some(v) = var("INFRAPILOT_ALERT_RETRY_SECONDS") {
            self.alert_retry_seconds = v
                .parse()
                .with_context(|| format!("INFRAPILOT_ALERT_RETRY_SECONDS: not a number: {v:?}"))?;
        }
        Ok(())
    }

    fn check(&self) -> anyhow::Result<()> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| format!("listen: not an address:port: {:?}", self.listen))?;
        self.grpc_listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| format!("grpc_listen: not an address:port: {:?}", self.grpc_listen))?;
        if self.grpc_hostnames.is_empty() {
            bail!("grpc_hostnames must name at least one host agents connect to");
        }
        if !(1..=3600).contains(&self.heartbeat_seconds) {
            bail!("heartbeat_seconds must be between 1 and 3600");
        }
        self.builtin_agent_log_label()?;
        if self.builtin_agent_spool_bytes < infrapilot_agent::spool::MIN_BOUND_BYTES {
            bail!(
                "builtin_agent_spool_bytes must be at least {}",
                infrapilot_agent::spool::MIN_BOUND_BYTES
            );
        }
        if let Some(url) = &self.public_url {
            let parsed =
                url::Url::parse(url).with_context(|| format!("public_url: not a URL: {url:?}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                bail!("public_url must be an http(s) URL with a host, not {url:?}");
            }
        }
        self.trusted_proxy_nets()?;
        for host in &self.allowed_hosts {
            if host.is_empty()
                || host.len() > 253
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
            {
                bail!("allowed_hosts: {host:?} is not a host name");
            }
        }
        if let Some(token) = &self.metrics_token
            && token.len() < 16
        {
            bail!("metrics_token must be at least 16 characters");
        }
        if let Some(addr) = &self.metrics_listen {
            addr.parse::<std::net::SocketAddr>()
                .with_context(|| format!("metrics_listen: not an address:port: {addr:?}"))?;
        }
        if !(1..=3600).contains(&self.shutdown_grace_seconds) {
            bail!("shutdown_grace_seconds must be between 1 and 3600");
        }
        if !(1..=7 * 24 * 3600).contains(&self.socket_max_lifetime_seconds) {
            bail!("socket_max_lifetime_seconds must be between 1 and 604800");
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            bail!("max_connections must be between 1 and 1000000");
        }
        if !(1..=3600).contains(&self.header_read_timeout_seconds) {
            bail!("header_read_timeout_seconds must be between 1 and 3600");
        }
        if self.database_max_connections == 0 || self.database_max_connections > 1000 {
            bail!("database_max_connections must be between 1 and 1000");
        }
        if self.edition()? == infrapilot_licensing::HostEdition::Saas && self.public_url.is_none() {
            bail!(
                "public_url (INFRAPILOT_PUBLIC_URL) is required in the SaaS edition: sign-up and invitation mails link to this host, and a link must not come from a request's Host header"
            );
        }
        infrapilot_plugin_runtime::egress::EgressGuard::parse_allow_list(&self.plugin_egress_allow)
            .map_err(|e| anyhow::anyhow!("plugin_egress_allow: {e}"))?;
        self.smtp_security
            .parse::<infrapilot_plugin_host::SmtpSecurity>()
            .map_err(|e| anyhow::anyhow!("smtp_security: {e}"))?;
        if self.proxy_backend.is_empty()
            || self.proxy_backend.len() > 128
            || !self
                .proxy_backend
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            bail!(
                "proxy_backend must be a plugin id (a-z, 0-9, '.', '_', '-'), not {:?}",
                self.proxy_backend
            );
        }
        if !(1..=300).contains(&self.plugin_hook_timeout_seconds) {
            bail!("plugin_hook_timeout_seconds must be between 1 and 300");
        }
        if !(1..=3600).contains(&self.alert_tick_seconds) {
            bail!("alert_tick_seconds must be between 1 and 3600");
        }
        self.log_sink_settings()?;
        if !(10..=86_400).contains(&self.policy_audit_seconds) {
            bail!("policy_audit_seconds must be between 10 and 86400");
        }
        if !(1..=3650).contains(&self.log_retention_days) {
            bail!("log_retention_days must be between 1 and 3650");
        }
        if !(1..=86_400).contains(&self.alert_retry_seconds) {
            bail!("alert_retry_seconds must be between 1 and 86400");
        }
        Ok(())
    }

    pub fn edition(&self) -> anyhow::Result<infrapilot_licensing::HostEdition> {
        self.edition
            .parse()
            .map_err(|e| anyhow::anyhow!("edition (INFRAPILOT_EDITION): {e}"))
    }

    /// The host's SMTP settings for plugin mail, when a server is configured.
    pub fn smtp(&self) -> Option<infrapilot_plugin_host::SmtpSettings> {
        let host = self.smtp_host.clone()?;
        Some(infrapilot_plugin_host::SmtpSettings {
            host,
            port: self.smtp_port,
            security: self
                .smtp_security
                .parse()
                .unwrap_or(infrapilot_plugin_host::SmtpSecurity::StartTls),
            username: self.smtp_username.clone(),
            password: self.smtp_password.clone(),
            from: self.smtp_from.clone(),
        })
    }

    pub fn grpc_url(&self) -> String {
        self.grpc_url.clone().unwrap_or_else(|| {
            let port = self.grpc_listen.rsplit(':').next().unwrap_or("8443");
            format!("https://{}:{port}", self.grpc_hostnames[0])
        })
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", self.data_dir.join("infrapilot.db").display())
        })
    }
}

fn boolean(name: &str, v: &str) -> anyhow::Result<bool> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => bail!("{name} must be true or false, not {v:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_values() {
        let mut c: Config =
            toml::from_str("listen = \"127.0.0.1:9000\"\nlog_format = \"json\"").unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        c.apply_env(|k| match k {
            "INFRAPILOT_LISTEN" => Some("127.0.0.1:9001".into()),
            "INFRAPILOT_DATA_DIR" => Some("/tmp/x".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9001");
        assert_eq!(c.database_url(), "sqlite:///tmp/x/infrapilot.db");
        c.check().unwrap();
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(
            toml::from_str::<Config>("listne = \"x\"").is_err(),
            "unknown keys refused"
        );
        let mut c = Config::default();
        assert!(
            c.apply_env(|k| (k == "INFRAPILOT_LOG_FORMAT").then(|| "xml".into()))
                .is_err()
        );
        c.listen = "nonsense".into();
        assert!(c.check().is_err());
        let c = Config {
            edition: "gold".into(),
            ..Config::default()
        };
        assert!(c.check().unwrap_err().to_string().contains("edition"));
        let c = Config {
            plugin_egress_allow: "127.0.0.0/8, nope".into(),
            ..Config::default()
        };
        assert!(
            c.check()
                .unwrap_err()
                .to_string()
                .contains("plugin_egress_allow")
        );
        for (name, value, field) in [
            (
                "INFRAPILOT_BUILTIN_AGENT_LOG_LABEL",
                "no-equals-sign",
                "builtin_agent_log_label",
            ),
            (
                "INFRAPILOT_BUILTIN_AGENT_LOG_LABEL",
                "=value",
                "builtin_agent_log_label",
            ),
            (
                "INFRAPILOT_BUILTIN_AGENT_SPOOL_BYTES",
                "100",
                "builtin_agent_spool_bytes",
            ),
        ] {
            let mut c = Config::default();
            c.apply_env(|k| (k == name).then(|| value.into())).unwrap();
            let error = c.check().unwrap_err().to_string();
            assert!(error.contains(field), "{name}={value}: {error}");
        }
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "INFRAPILOT_BUILTIN_AGENT_LOG_LABEL" => Some("team=web".into()),
            "INFRAPILOT_BUILTIN_AGENT_LOGS" => Some("false".into()),
            _ => None,
        })
        .unwrap();
        c.check().unwrap();
        assert_eq!(
            c.builtin_agent_log_label().unwrap(),
            Some(("team".into(), "web".into()))
        );
        assert!(!c.builtin_agent_logs);
        assert!(
            Config::default()
                .apply_env(|k| (k == "INFRAPILOT_BUILTIN_AGENT_SPOOL_BYTES").then(|| "lots".into()))
                .is_err()
        );
    }
}
