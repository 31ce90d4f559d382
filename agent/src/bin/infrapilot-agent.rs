//! `infrapilot-agent`: the node agent's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use infrapilot_agent::{EnrollOptions, StateDir, enroll};

#[derive(Parser)]
#[command(name = "infrapilot-agent", version, about = "InfraPilot node agent")]
struct Cli {
    /// Where the key, certificates and identity live (mode 0700/0600).
    #[arg(
        long,
        global = true,
        env = "INFRAPILOT_AGENT_STATE_DIR",
        default_value = "/var/lib/infrapilot-agent"
    )]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrol this node with a one-time token from the dashboard.
    Enroll {
        /// The host, e.g. https://pilot.example.com
        #[arg(long, env = "INFRAPILOT_AGENT_ENDPOINT")]
        endpoint: String,
        /// The enrollment token (ipe_…). Prefer the environment variable to keep it out of `ps`.
        #[arg(long, env = "INFRAPILOT_AGENT_TOKEN", hide_env_values = true)]
        token: String,
        /// This node's name (default: the hostname).
        #[arg(long)]
        name: Option<String>,
        /// A PEM CA certificate to trust for the host's HTTPS, besides the system's.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Accept a plain http:// host that is not loopback: the token crosses the network
        /// unencrypted. Refused without this flag.
        #[arg(long)]
        insecure_http: bool,
    },
    /// Check the trust material: exit 0 if the agent could start, else name what is missing.
    Check,
    /// Hold the session with the host (outbound only). Refuses to start without trust material.
    Run {
        /// Heartbeat interval in seconds (default: what the host asks for, 30 s).
        #[arg(long, env = "INFRAPILOT_AGENT_HEARTBEAT_SECONDS")]
        heartbeat_seconds: Option<u64>,
        /// Rotate the certificate when it expires within this many days.
        #[arg(long, default_value_t = 10)]
        renew_within_days: u64,
        /// Do not manage an nginx reverse proxy on this node (proxy commands are refused).
        #[arg(long, env = "INFRAPILOT_AGENT_NO_PROXY")]
        no_proxy: bool,
        /// The bound of the on-disk spool of logs and events waiting for the host, in bytes
        /// (at least 8192); past it the oldest go, and the host is told which.
        #[arg(long, env = "INFRAPILOT_AGENT_SPOOL_BYTES", default_value_t = infrapilot_agent::spool::DEFAULT_BOUND_BYTES,
              value_parser = clap::value_parser!(u64).range(infrapilot_agent::spool::MIN_BOUND_BYTES..))]
        spool_bytes: u64,
        /// Do not collect the containers' logs (events are still sent).
        #[arg(long, env = "INFRAPILOT_AGENT_NO_LOGS")]
        no_logs: bool,
        /// Collect the logs of containers with this label only (`key=value`).
        #[arg(long, env = "INFRAPILOT_AGENT_LOG_LABEL", value_parser = infrapilot_agent::shipper::parse_log_label)]
        log_label: Option<(String, String)>,
    },
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let state = StateDir::new(&cli.state_dir);
    match cli.command {
        Command::Enroll {
            endpoint,
            token,
            name,
            ca_file,
            insecure_http,
        } => {
            let ca = match ca_file.map(std::fs::read).transpose() {
                Ok(ca) => ca,
                Err(e) => {
                    eprintln!("error: --ca-file: {e}");
                    return ExitCode::from(2);
                }
            };
            let name = name.unwrap_or_else(hostname);
            let options = EnrollOptions {
                endpoint: &endpoint,
                token: &token,
                name: &name,
                host_ca_pem: ca.as_deref(),
                allow_insecure_http: insecure_http,
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(enroll(&options, &state)) {
                Ok(identity) => {
                    println!(
                        "enrolled as {} ({}); certificate valid until {}; state in {}",
                        identity.name,
                        identity.agent_id,
                        identity.certificate_expires_at,
                        state.path().display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            heartbeat_seconds,
            renew_within_days,
            no_proxy,
            spool_bytes,
            no_logs,
            log_label,
        } => {
            if let Err(e) = state.load() {
                eprintln!("error: refusing to start: {e}");
                return ExitCode::FAILURE;
            }
            let proxy = if no_proxy {
                None
            } else {
                match infrapilot_agent::proxy::ProxyOptions::from_env(state.path()) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                }
            };
            let options = infrapilot_agent::session::SessionOptions {
                heartbeat: heartbeat_seconds.map(|s| std::time::Duration::from_secs(s.max(1))),
                renew_within: std::time::Duration::from_secs(renew_within_days * 24 * 3600),
                proxy,
                spool_bound_bytes: spool_bytes,
                collect_logs: !no_logs,
                log_label,
                ..Default::default()
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(infrapilot_agent::session::run(&state, &options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check => match state.load() {
            Ok(trust) => {
                println!(
                    "trust material OK: agent {} for {}",
                    trust.identity.agent_id, trust.identity.endpoint
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
