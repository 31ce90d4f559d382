//! `infrapilot`: the control-plane binary. Command-line parsing and wiring only; the work is in
//! the `infrapilot-*` library crates.

mod builtin_agent;
mod config;
mod http_server;
mod license_cli;
mod plugin_cli;

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Parser, Subcommand};
use infrapilot_api::audit_log::Actor;
use infrapilot_api::routes::users::{NewUserInput, create_user};
use infrapilot_api::{ApiSettings, AppState};
use infrapilot_identity::SecretBox;
use infrapilot_store::{OrgId, Store, redact_url};

use crate::config::{Config, LogFormat};

#[derive(Parser)]
#[command(
    name = "infrapilot",
    version,
    about = "InfraPilot control plane for Docker hosts"
)]
struct Cli {
    /// TOML configuration file; environment variables INFRAPILOT_* override it.
    #[arg(long, global = true, env = "INFRAPILOT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (HTTP API and dashboard).
    Serve,
    /// Administrative tasks on the database.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print the OpenAPI 3 document of the HTTP API (the dashboard's types are generated from it).
    Openapi,
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Licences: issue (with a private key file), verify, show the installed one, make keys.
    License {
        #[command(subcommand)]
        command: license_cli::LicenseCommand,
    },
    /// Plugins: list, install a bundle, enable (with a grant), disable, uninstall.
    Plugin {
        #[command(subcommand)]
        command: plugin_cli::PluginCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user. The password is read from standard input (one line).
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// super_admin, admin, operator or viewer.
        #[arg(long, default_value = "super_admin")]
        role: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain; exit status 1 names the first bad event.
    Verify,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        println!(
            "{}",
            serde_json::to_string_pretty(&infrapilot_api::openapi_document())?
        );
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    if let Command::License { command } = cli.command {
        return license_cli::run(command, &config.data_dir);
    }
    init_tracing(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Admin {
                command: AdminCommand::CreateUser { email, name, role },
            } => admin_create_user(config, email, name, role).await,
            Command::Audit {
                command: AuditCommand::Verify,
            } => audit_verify(config).await,
            Command::Plugin { command } => {
                let store = open_store(&config).await?;
                let result = plugin_cli::run(command, &config, &store).await;
                store.close().await;
                result
            }
            Command::Openapi | Command::License { .. } => Ok(()),
        }
    });
    // Never wait on a blocking task (an Argon2 hash, a file read) that outlives the work.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let url = config.database_url();
    Store::connect(&url, config.database_max_connections)
        .await
        .with_context(|| format!("opening database {}", redact_url(&url)))
}

/// The master key that seals secrets at rest: `INFRAPILOT_SECRET_KEY`, else a key file in the
/// data directory, created (mode 0600) on first start.
fn master_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let decode = |text: &str, source: &str| -> anyhow::Result<Vec<u8>> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .with_context(|| format!("{source}: not base64"))?;
        if key.len() != 32 {
            bail!("{source}: the key must be 32 bytes, found {}", key.len());
        }
        Ok(key)
    };
    if let Ok(text) = std::env::var("INFRAPILOT_SECRET_KEY") {
        return decode(&text, "INFRAPILOT_SECRET_KEY");
    }
    let path = data_dir.join("secret.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => decode(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = infrapilot_identity::random_bytes::<32>()?;
            let text = base64::engine::general_purpose::STANDARD.encode(key);
            write_private_file(&path, text.as_bytes())?;
            tracing::info!(path = %path.display(), "created a new master key; back it up with the database");
            Ok(key.to_vec())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// The data directory and the SQLite database hold every secret: owner-only (0700/0600).
fn restrict_data_dir(config: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let private = |path: &Path, mode: u32| -> anyhow::Result<()> {
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("restricting {} to mode {mode:o}", path.display()))?;
        }
        Ok(())
    };
    private(&config.data_dir, 0o700)?;
    if let Some(file) = config
        .database_url()
        .strip_prefix("sqlite://")
        .map(|rest| rest.split('?').next().unwrap_or(rest).to_owned())
    {
        for suffix in ["", "-wal", "-shm"] {
            private(Path::new(&format!("{file}{suffix}")), 0o600)?;
        }
    }
    Ok(())
}

/// The one-time code that claims a fresh install: made at each start while no user exists,
/// printed in the log and written to `<data_dir>/setup-code` (0600). `None` once claimed.
async fn setup_code(store: &Store, data_dir: &Path) -> anyhow::Result<Option<(String, PathBuf)>> {
    let path = data_dir.join("setup-code");
    let users = store
        .read(&OrgId::default_org())
        .await?
        .count_users()
        .await?;
    if users > 0 {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    let bytes = infrapilot_identity::random_bytes::<15>()?;
    let code = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let _ = std::fs::remove_file(&path);
    write_private_file(&path, format!("{code}\n").as_bytes())?;
    tracing::warn!(
        setup_code = %code,
        file = %path.display(),
        "this install is unclaimed: open the dashboard and enter this setup code to create the first administrator (or run `infrapilot admin create-user`)"
    );
    Ok(Some((code, path)))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    if let Err(e) = restrict_data_dir(&config) {
        // A volume the process does not own: serve anyway, loudly.
        tracing::warn!(error = %e, "could not make the data directory owner-only (0700/0600); it holds every secret");
    }
    if config.public_url.is_none() && config.allowed_hosts.is_empty() {
        tracing::warn!(
            "neither public_url nor allowed_hosts is set: sign-in answers only to IP addresses and localhost; set INFRAPILOT_PUBLIC_URL (or INFRAPILOT_ALLOWED_HOSTS) to the name you browse to"
        );
    }
    let secrets = SecretBox::new(&master_key(&config.data_dir)?)?;
    let ca = infrapilot_gateway::load_or_create_ca(&store, &secrets)
        .await
        .context("loading the agent CA")?;
    let settings = ApiSettings {
        agent_grpc_url: config.grpc_url(),
        heartbeat_seconds: config.heartbeat_seconds,
        public_url: config.public_url.clone(),
        proxy_backend: config.proxy_backend.clone(),
        agent_binary: config.agent_binary.clone().or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("infrapilot-agent")))
        }),
        setup_code: None,
        setup_code_file: None,
        allowed_hosts: config.allowed_hosts.clone(),
        trusted_proxies: config.trusted_proxy_nets()?,
        metrics_token: config.metrics_token.clone(),
        socket_max_lifetime: std::time::Duration::from_secs(
            config.socket_max_lifetime_seconds.into(),
        ),
        socket_recheck: std::time::Duration::from_secs(config.heartbeat_seconds.into()),
        log_retention_days: config.log_retention_days.into(),
        edition: config.edition()?,
        rate_limits: infrapilot_api::rate_limit::RateLimits {
            per_organisation: Some(config.api_rate_per_org).filter(|n| *n > 0),
            per_credential: Some(config.api_rate_per_credential).filter(|n| *n > 0),
            ..Default::default()
        },
        ..ApiSettings::default()
    };
    let settings = match setup_code(&store, &config.data_dir).await? {
        Some((code, file)) => ApiSettings {
            setup_code: Some(code),
            setup_code_file: Some(file),
            ..settings
        },
        None => settings,
    };
    let state = AppState::new(store.clone(), secrets, ca, settings);
    let plugins = plugin_cli::plugin_host(&config, &store)?;
    if let Err(e) = plugins
        .import_license_file(&config.data_dir.join("license.lic"))
        .await
    {
        tracing::warn!(error = %e, "the licence file in the data directory was not installed");
    }
    if let Some(dir) = &config.plugin_dir {
        plugins.install_shipped(dir).await;
    }
    let alerts = state.enable_plugins(
        plugins.clone(),
        infrapilot_alerts::EngineConfig {
            tick: std::time::Duration::from_secs(config.alert_tick_seconds.into()),
            retry_base: std::time::Duration::from_secs(config.alert_retry_seconds.into()),
            heartbeat_seconds: config.heartbeat_seconds,
            public_url: config.public_url.clone(),
            ..infrapilot_alerts::EngineConfig::default()
        },
    );
    // A log sink: checked and prepared now (a wrong one stops the start, naming the setting),
    // then the nodes' lines go there instead of the database.
    let log_sink = match &config.log_sink {
        Some(id) => {
            let sink = plugins
                .log_sink(id, config.log_sink_settings()?)
                .await
                .map_err(|e| anyhow::anyhow!("log_sink: {e}"))?;
            tracing::info!(plugin = %id, "log lines go to the log sink");
            let sink: std::sync::Arc<dyn infrapilot_store::LogSink> = std::sync::Arc::new(sink);
            state.hub().set_log_sink(sink.clone());
            Some(sink)
        }
        None => None,
    };
    let alert_loop = alerts.spawn();
    // The database's latency for /metrics, measured in the background (a scrape never waits on
    // the pool).
    tokio::spawn(infrapilot_api::metrics::measure_database_latency(
        state.clone(),
        std::time::Duration::from_secs(15),
    ));
    // Log retention: every hour, lines past their organisation's retention go (whole days
    // where no organisation keeps them); so do the nodes' old samples.
    {
        let store = store.clone();
        let log_sink = log_sink.clone();
        let default_days = i64::from(config.log_retention_days);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                every.tick().await;
                let now_ns = infrapilot_store::now_ms().saturating_mul(1_000_000);
                if let Some(sink) = &log_sink {
                    match store.log_retention_cutoffs(default_days, now_ns).await {
                        Ok(cutoffs) => {
                            for (org, before_ns) in cutoffs {
                                // Whole days: at most one deletion (a ClickHouse mutation,
                                // which rewrites parts) per organisation a day.
                                let before_ns =
                                    before_ns - before_ns.rem_euclid(86_400_000_000_000);
                                if let Err(e) = sink.drop_before(&org, before_ns).await {
                                    tracing::warn!(error = %e, org = %org.as_str(), "log sink retention failed; tried again in an hour");
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "log sink retention failed; tried again in an hour")
                        }
                    }
                }
                match store.apply_log_retention(default_days, now_ns).await {
                    Ok(report) if report != Default::default() => {
                        tracing::info!(
                            days_dropped = report.days_dropped,
                            lines_deleted = report.lines_deleted,
                            days_optimized = report.days_optimized,
                            "log retention applied"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "log retention failed; tried again in an hour")
                    }
                }
                // The nodes' samples: minutes kept two days, hours ninety.
                if let Err(e) = store.apply_node_sample_retention_now().await {
                    tracing::warn!(error = %e, "node sample retention failed; tried again in an hour");
                }
            }
        });
    }
    // The audit of running containers against the enabled policies (age, healthcheck, root,
    // mounts …): what already runs is recorded as `container.running` violations.
    if let Ok(extensions) = state.extensions() {
        let store = store.clone();
        let engines = extensions.policy_engines.clone();
        let router = state.nodes().clone();
        let every = std::time::Duration::from_secs(config.policy_audit_seconds.into());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            // Not at start: nodes are still saying hello.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match infrapilot_policy::running::audit_running(&store, &engines, &router).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        violations = n,
                        "the audit of running containers recorded violations"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "the audit of running containers failed; tried again later")
                    }
                }
            }
        });
    }
    let grpc_listen: SocketAddr = config.grpc_listen.parse()?;
    let mut hostnames = config.grpc_hostnames.clone();
    if !hostnames.iter().any(|h| h == "127.0.0.1") {
        // The built-in agent dials the listener over loopback.
        hostnames.push("127.0.0.1".into());
    }
    let gateway_config = infrapilot_gateway::server::GatewayConfig {
        listen: grpc_listen,
        hostnames,
    };
    let (stop_gateway, gateway_stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = {
        let (store, ca, hub) = (store.clone(), state.ca_handle(), state.hub().clone());
        tokio::spawn(async move {
            let stopped = async {
                let _ = gateway_stopped.await;
            };
            let result =
                infrapilot_gateway::server::serve(store, ca, hub, gateway_config, stopped).await;
            if let Err(e) = &result {
                tracing::error!(error = %e, "the agent gateway stopped; agents cannot connect");
            }
            result
        })
    };
    tracing::info!(listen = %config.grpc_listen, url = %config.grpc_url(), "agent gateway (mTLS gRPC) is serving");
    let builtin = if config.builtin_agent {
        Some(
            builtin_agent::start(&state, &config, grpc_listen)
                .await
                .context("starting the built-in agent")?,
        )
    } else {
        None
    };
    let builtin_id = builtin.as_ref().map(|b| b.agent_id.clone());
    let app = infrapilot_api::router(state.clone());
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let metrics_server = match &config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics_listen: listening on {addr}"))?;
            tracing::info!(listen = %addr, "serving /metrics on its own listener");
            let app = infrapilot_api::metrics_router(state.clone());
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }))
        }
        None => None,
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        database = %redact_url(&config.database_url()),
        "InfraPilot is serving"
    );
    let grace = std::time::Duration::from_secs(config.shutdown_grace_seconds.into());
    let limits = http_server::Limits {
        max_connections: config.max_connections as usize,
        header_read_timeout: std::time::Duration::from_secs(
            config.header_read_timeout_seconds.into(),
        ),
        shutdown_grace: grace,
    };
    let stopping = {
        let state = state.clone();
        async move {
            shutdown_signal().await;
            // Sockets close and agent sessions end (the built-in agent's first), so nothing
            // holds a connection open while in-flight requests finish.
            state.begin_shutdown(builtin_id.as_deref());
        }
    };
    http_server::serve(listener, app, limits, stopping).await;
    alert_loop.abort();
    if let Some(builtin) = builtin {
        builtin.task.abort();
    }
    if let Some(metrics) = metrics_server {
        metrics.abort();
    }
    let _ = stop_gateway.send(());
    match tokio::time::timeout(grace, gateway).await {
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "agent gateway failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "agent gateway task failed"),
        Ok(Ok(Ok(()))) => {}
        Err(_) => tracing::warn!("agent sessions still open after the grace period; closing them"),
    }
    tracing::info!("shutting down: closing the database");
    if tokio::time::timeout(std::time::Duration::from_secs(5), store.close())
        .await
        .is_err()
    {
        tracing::warn!("the database did not close in time");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

async fn admin_create_user(
    config: Config,
    email: String,
    name: String,
    role: String,
) -> anyhow::Result<()> {
    if std::io::stdin().is_terminal() {
        eprint!("Password for {email}: ");
    }
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let input = NewUserInput::validate(&email, &password, &name, &role)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let store = open_store(&config).await?;
    let user = create_user(&store, &Actor::cli(), "local", input, false)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    println!(
        "created user {} <{}> with role {}",
        user.id, user.email, user.role
    );
    store.close().await;
    Ok(())
}

async fn audit_verify(config: Config) -> anyhow::Result<()> {
    // Every organisation's chain, each in its own tenant transaction.
    let store = open_store(&config).await?;
    let mut checked = 0;
    let orgs = store.organization_ids().await?;
    for org in &orgs {
        let report = store.read(org).await?.verify_audit_chain().await?;
        if let Some(bad) = report.first_bad_event {
            store.close().await;
            println!(
                "audit chain BROKEN at event {}{}: {} (organisation {org})",
                bad.seq,
                bad.id.map(|id| format!(" ({id})")).unwrap_or_default(),
                bad.reason
            );
            println!("{} events before it verified", report.checked);
            std::process::exit(1);
        }
        checked += report.checked;
    }
    store.close().await;
    if orgs.len() > 1 {
        println!(
            "audit chain OK: {checked} events verified in {} organisations",
            orgs.len()
        );
    } else {
        println!("audit chain OK: {checked} events verified");
    }
    Ok(())
}
