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
    /// Seconds between agent heartbeats; two missed ones mark an agent offline.
    pub heartbeat_seconds: u32,
    /// The host's URL as nodes reach it (for the install one-liner); default: from the request.
    pub public_url: Option<String>,
    /// The agent binary served to installers; default: `infrapilot-agent` next to this binary.
    pub agent_binary: Option<PathBuf>,
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
            heartbeat_seconds: 30,
            public_url: None,
            agent_binary: None,
        }
    }
}

impl Config {
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
            self.builtin_agent = match v.as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => bail!("INFRAPILOT_BUILTIN_AGENT must be true or false, not {v:?}"),
            };
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
        if let Some(url) = &self.public_url {
            let parsed =
                url::Url::parse(url).with_context(|| format!("public_url: not a URL: {url:?}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                bail!("public_url must be an http(s) URL with a host, not {url:?}");
            }
        }
        if self.database_max_connections == 0 || self.database_max_connections > 1000 {
            bail!("database_max_connections must be between 1 and 1000");
        }
        Ok(())
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
    }
}
