//! `infrapilot plugin list|install|enable|disable|uninstall`: the plugin registry from the shell
//! (on the host's database, like `admin`; each change is audited as the `cli` actor).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use infrapilot_api::audit_log::{self, Actor};
use infrapilot_plugin_host::{Audit, Installed, PluginHost, PluginHostConfig, PluginInfo};
use infrapilot_plugin_runtime::egress::EgressGuard;
use infrapilot_plugin_runtime::runtime::RuntimeConfig;
use infrapilot_plugin_runtime::{Capabilities, Limits, TrustedKeys};
use infrapilot_store::{OrgId, Store};
use serde_json::json;

use crate::config::Config;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// List installed plugins: id, version, world, edition, enabled, signed.
    List {
        /// Print JSON (the same fields as GET /api/v1/plugins).
        #[arg(long)]
        json: bool,
    },
    /// Install (or upgrade) a plugin bundle file.
    Install {
        bundle: PathBuf,
    },
    /// Enable a plugin, granting what its manifest requests unless --grants says otherwise.
    Enable {
        id: String,
        /// The grant as JSON, e.g. '{"log":true,"http":{"hosts":["hooks.slack.com"]}}'.
        #[arg(long)]
        grants: Option<String>,
    },
    Disable {
        id: String,
    },
    /// Remove a plugin (refused while alert channels use it).
    Uninstall {
        id: String,
    },
}

/// The plugin host as `serve` builds it from the configuration.
pub fn plugin_host(config: &Config, store: &Store) -> anyhow::Result<PluginHost> {
    let trusted_keys = match &config.plugin_trusted_keys {
        Some(dir) => TrustedKeys::from_dir(dir)
            .with_context(|| format!("plugin_trusted_keys {}", dir.display()))?,
        None => TrustedKeys::default(),
    };
    let egress = EgressGuard::parse_allow_list(&config.plugin_egress_allow)
        .map_err(|e| anyhow::anyhow!("plugin_egress_allow: {e}"))?;
    PluginHost::new(
        store.clone(),
        PluginHostConfig {
            edition: config.edition()?,
            trusted_keys,
            allow_unsigned: config.allow_unsigned_plugins,
            egress,
            smtp: config.smtp(),
            license_key: crate::license_cli::public_key(config.license_public_key.as_deref())?,
            runtime: RuntimeConfig {
                cache_dir: Some(config.data_dir.join("plugin-cache")),
                limits: Limits {
                    hook_deadline: std::time::Duration::from_secs(
                        config.plugin_hook_timeout_seconds.into(),
                    ),
                    ..Limits::default()
                },
                ..RuntimeConfig::default()
            },
        },
    )
    .map_err(|e| anyhow::anyhow!("starting the plugin runtime: {e}"))
}

fn print_table(plugins: &[PluginInfo]) {
    println!(
        "{:<32} {:<10} {:<14} {:<10} {:<8} {:<6}",
        "ID", "VERSION", "WORLD", "EDITION", "ENABLED", "SIGNED"
    );
    for p in plugins {
        println!(
            "{:<32} {:<10} {:<14} {:<10} {:<8} {:<6}",
            p.id, p.version, p.world, p.edition, p.enabled, p.signed
        );
    }
}

/// The audit event of a command-line action, committed with the change (actor `cli`).
fn audit<T>(
    action: &'static str,
    detail: impl FnOnce(&T) -> (String, serde_json::Value) + Send + 'static,
) -> Audit<'static, T> {
    Audit::new(OrgId::default_org(), move |outcome: &T| {
        let (target, detail) = detail(outcome);
        audit_log::event(&Actor::cli(), "local", action, &target, "success", detail)
    })
}

pub async fn run(command: PluginCommand, config: &Config, store: &Store) -> anyhow::Result<()> {
    let host = plugin_host(config, store)?;
    match command {
        PluginCommand::List { json } => {
            let plugins = host.list().await?;
            if json {
                let rows: Vec<_> = plugins
                    .iter()
                    .map(|p| {
                        json!({"id": p.id, "version": p.version, "world": p.world, "edition": p.edition,
                               "enabled": p.enabled, "signed": p.signed})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&plugins);
            }
        }
        PluginCommand::Install { bundle } => {
            let bytes =
                std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
            let installed = host
                .install(
                    &bytes,
                    false,
                    Audit::new(OrgId::default_org(), |i: &Installed| {
                        let p = &i.plugin;
                        audit_log::event(
                            &Actor::cli(),
                            "local",
                            if i.upgraded { "plugin.upgrade" } else { "plugin.install" },
                            &format!("plugin:{}", p.id),
                            "success",
                            json!({"version": p.version, "signed_by": p.signed_by, "sha256": p.component_sha256}),
                        )
                    }),
                )
                .await?;
            let p = &installed.plugin;
            println!(
                "{} {} {} ({}, {}); enable it with `infrapilot plugin enable {}`",
                if installed.upgraded {
                    "upgraded"
                } else {
                    "installed"
                },
                p.id,
                p.version,
                p.world,
                if p.signed { "signed" } else { "UNSIGNED" },
                p.id
            );
        }
        PluginCommand::Enable { id, grants } => {
            let grants: Capabilities = match grants {
                Some(text) => {
                    serde_json::from_str(&text).context("--grants: not a capability set")?
                }
                None => host.manifest(&id).await?.0.capabilities,
            };
            let info = host
                .enable(
                    &id,
                    Some(grants),
                    audit("plugin.enable", |p: &PluginInfo| {
                        (format!("plugin:{}", p.id), json!({"granted": p.granted}))
                    }),
                )
                .await?;
            println!("enabled {id}; granted: {}", info.granted.names().join(", "));
        }
        PluginCommand::Disable { id } => {
            host.disable(
                &id,
                audit("plugin.disable", |p: &PluginInfo| {
                    (format!("plugin:{}", p.id), json!({}))
                }),
            )
            .await?;
            println!("disabled {id}");
        }
        PluginCommand::Uninstall { id } => {
            host.uninstall(
                &id,
                audit("plugin.uninstall", |p: &PluginInfo| {
                    (format!("plugin:{}", p.id), json!({}))
                }),
            )
            .await?;
            println!("uninstalled {id}");
        }
    }
    Ok(())
}
