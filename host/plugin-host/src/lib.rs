//! Installed plugins, as the running host sees them.
//!
//! - the registry: bundles verified against the operator's trusted keys (or admitted unsigned
//!   under the development switch), stored in the database with the component bytes so every
//!   replica loads the same plugin; enable (with the operator's grant), disable, uninstall;
//! - entitlements: the host edition and the installed licence decide whether an enterprise plugin
//!   may be enabled and, at every load, whether it may still run (expiry);
//! - loaded plugins cached per process by component hash and grant, re-checked against the
//!   database on each use so that replicas follow each other's changes;
//! - [`services::StoreServices`]: what host functions delegate to.

pub mod log_sink;
pub mod mailer;
pub mod policy_engines;
pub mod services;
pub mod settings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use infrapilot_licensing::{Entitlements, HostEdition, License};
use infrapilot_plugin_runtime::egress::{DEFAULT_MAX_RESPONSE_BYTES, EgressGuard, HttpEgress};
use infrapilot_plugin_runtime::runtime::RuntimeConfig;
use infrapilot_plugin_runtime::{
    AlertChannelPlugin, Bundle, BundleError, Capabilities, Edition, HostServices, Manifest,
    ProxyBackendPlugin, Runtime, TrustedKeys, World, WorldPlugin,
};
use infrapilot_plugin_types::bundle::PublicKey;
use infrapilot_store::{NewAuditEvent, NewPlugin, OrgId, PluginRow, Store, StoreError};
use serde::Serialize;

pub use log_sink::PluginLogSink;
pub use mailer::{Mailer, SmtpSecurity, SmtpSettings};
pub use policy_engines::{EngineError, LoadedEngine, PolicyEngines};
pub use settings::SettingsError;

/// What the operator configures about plugins.
pub struct PluginHostConfig {
    pub edition: HostEdition,
    /// Publisher keys whose bundles install without the development switch.
    pub trusted_keys: TrustedKeys,
    /// The development switch: admit unsigned or untrusted bundles (marked unsigned).
    pub allow_unsigned: bool,
    /// Address ranges plugins may reach despite the private-range guard.
    pub egress: EgressGuard,
    pub smtp: Option<SmtpSettings>,
    /// The key that verifies licences (the vendor's, from `licenses/`).
    pub license_key: PublicKey,
    pub runtime: RuntimeConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum PluginHostError {
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("the component does not fit its manifest: {0}")]
    Component(String),
    #[error("no plugin {0} is installed")]
    NotInstalled(String),
    #[error("plugin {0} is disabled")]
    Disabled(String),
    #[error("plugin {id} is not a plugin of the {expected} world")]
    WrongWorld { id: String, expected: &'static str },
    #[error("plugin {id} may not run: {reason}")]
    NotEntitled { id: String, reason: String },
    #[error("plugin {id} is used by {count} alert channel(s); delete them first")]
    InUse { id: String, count: i64 },
    #[error("grants.{field}: {message}")]
    Grant { field: String, message: String },
    #[error("licence: {0}")]
    License(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A plugin as listed by the API and the CLI.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub id: String,
    pub name: String,
    pub version: String,
    pub world: String,
    pub edition: String,
    pub enabled: bool,
    /// Signed by a trusted key (false: admitted under the development switch).
    pub signed: bool,
    pub signed_by: Option<String>,
    pub first_party: bool,
    pub description: String,
    pub publisher: String,
    /// The licence feature an enterprise plugin needs.
    pub feature: Option<String>,
    /// Whether the edition and licence let it run now, and why not.
    pub entitled: bool,
    pub entitlement_error: Option<String>,
    pub requested: Capabilities,
    pub granted: Capabilities,
    /// How a sign-in provider's login runs (sso-provider plugins).
    pub sso_login: Option<infrapilot_plugin_runtime::SsoLogin>,
    pub settings_schema: serde_json::Value,
    pub component_sha256: String,
    pub installed_at: i64,
    pub updated_at: i64,
}

/// The licence as `GET /api/v1/license` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LicenseStatus {
    pub edition: HostEdition,
    /// Whether the host's entitlements hold now: a verified, current licence (or the saas edition).
    pub valid: bool,
    pub licensee: Option<String>,
    pub features: Vec<String>,
    pub limits: std::collections::BTreeMap<String, u64>,
    pub expires_at: Option<String>,
    pub issued_at: Option<String>,
    /// Why the licence is not valid, when it is not.
    pub problem: Option<String>,
}

/// What a successful install did.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    pub plugin: PluginInfo,
    /// An earlier version was replaced.
    pub upgraded: bool,
}

/// The audit event committed together with a change: the organisation of the actor and how to
/// build the event from the outcome (the plugin after the change, the installed licence …).
pub struct Audit<'a, T> {
    org_id: OrgId,
    make: Option<MakeEvent<'a, T>>,
}

type MakeEvent<'a, T> = Box<dyn FnOnce(&T) -> NewAuditEvent + Send + 'a>;

impl<'a, T> Audit<'a, T> {
    pub fn new(org_id: OrgId, make: impl FnOnce(&T) -> NewAuditEvent + Send + 'a) -> Self {
        Audit {
            org_id,
            make: Some(Box::new(make)),
        }
    }

    /// No audit event (start-up installs of shipped plugins, which the log records).
    pub fn none() -> Self {
        Audit {
            org_id: OrgId::default_org(),
            make: None,
        }
    }

    async fn append(self, tx: &mut infrapilot_store::Tx, outcome: &T) -> Result<(), StoreError> {
        if let Some(make) = self.make {
            tx.append_audit(make(outcome)).await?;
        }
        Ok(())
    }
}

/// A plugin linked against its world: a `WorldPlugin` handle of that world's type.
struct CachedPlugin {
    sha256: String,
    grants: String,
    /// The manifest it was loaded under: an upgrade may change the requested capabilities
    /// (or limits) without changing the component.
    manifest: Vec<u8>,
    plugin: Arc<dyn std::any::Any + Send + Sync>,
}

struct Inner {
    store: Store,
    runtime: Arc<Runtime>,
    config: PluginHostConfig,
    http: Arc<HttpEgress>,
    mailer: Option<Mailer>,
    plugins: Mutex<HashMap<String, CachedPlugin>>,
    /// SAML assertion ids accepted, until they expire.
    saml_replay: Arc<infrapilot_saml::ReplayCache>,
}

/// The installed plugins of this host; cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

impl PluginHost {
    pub fn new(store: Store, config: PluginHostConfig) -> Result<PluginHost, String> {
        let runtime = Arc::new(Runtime::new(config.runtime.clone()).map_err(|e| e.to_string())?);
        let http = Arc::new(HttpEgress::new(
            config.egress.clone(),
            DEFAULT_MAX_RESPONSE_BYTES,
        )?);
        let mailer = config.smtp.as_ref().map(Mailer::new).transpose()?;
        Ok(PluginHost {
            inner: Arc::new(Inner {
                store,
                runtime,
                config,
                http,
                mailer,
                plugins: Mutex::default(),
                saml_replay: Arc::default(),
            }),
        })
    }

    pub fn edition(&self) -> HostEdition {
        self.inner.config.edition
    }

    /// The wall-clock limit of one plugin call.
    pub fn hook_deadline(&self) -> std::time::Duration {
        self.inner.runtime.limits().hook_deadline
    }

    pub fn allow_unsigned(&self) -> bool {
        self.inner.config.allow_unsigned
    }

    /// The host's mail sender, when SMTP is configured (invitations, sign-up verification).
    pub fn mailer(&self) -> Option<Mailer> {
        self.inner.mailer.clone()
    }

    /// Host services for an instance of `org_id`.
    pub fn services(&self, org_id: &OrgId) -> Arc<dyn HostServices> {
        self.sso_services(org_id, None)
    }

    /// Host services for a sign-in provider of `org_id`, with its SAML service provider (its
    /// keys, entity id and ACS URL) when it has one.
    pub fn sso_services(
        &self,
        org_id: &OrgId,
        saml: Option<infrapilot_saml::ServiceProvider>,
    ) -> Arc<dyn HostServices> {
        Arc::new(services::StoreServices {
            saml: saml.map(|sp| (sp, self.inner.saml_replay.clone())),
            org_id: org_id.clone(),
            store: self.inner.store.clone(),
            http: self.inner.http.clone(),
            directory: infrapilot_plugin_runtime::directory::DirectoryEgress::new(
                self.inner.http.guard().clone(),
            ),
            mailer: self.inner.mailer.clone(),
        })
    }

    // ----- licence -----

    async fn license(&self) -> Result<Option<Result<License, String>>, StoreError> {
        let mut tx = self.inner.store.read(&OrgId::default_org()).await?;
        let text = tx.license_text().await?;
        tx.commit().await?;
        Ok(text.map(|t| {
            License::verify(&t, &self.inner.config.license_key).map_err(|e| e.to_string())
        }))
    }

    async fn entitlements(&self) -> Result<Entitlements, StoreError> {
        Ok(Entitlements {
            edition: self.inner.config.edition,
            license: self.license().await?.and_then(Result::ok),
        })
    }

    pub async fn license_status(&self) -> Result<LicenseStatus, StoreError> {
        let edition = self.inner.config.edition;
        let mut status = LicenseStatus {
            edition,
            valid: edition == HostEdition::Saas,
            licensee: None,
            features: Vec::new(),
            limits: Default::default(),
            expires_at: None,
            issued_at: None,
            problem: None,
        };
        match self.license().await? {
            None => {
                if edition == HostEdition::Enterprise {
                    status.problem = Some("no licence is installed".into());
                }
            }
            Some(Err(e)) => {
                status.problem = Some(format!("the installed licence is not valid: {e}"))
            }
            Some(Ok(l)) => {
                let now = now();
                if l.is_expired(now) {
                    status.problem = Some(format!("expired at {}", l.expires_at));
                } else if l.is_not_yet_valid(now) {
                    status.problem = Some(format!("dated {}, in the future", l.issued_at));
                } else if edition == HostEdition::Community {
                    status.problem = Some(
                        "the host runs the community edition (INFRAPILOT_EDITION=enterprise uses the licence)".into(),
                    );
                } else {
                    status.valid = true;
                }
                status.licensee = Some(l.licensee);
                status.features = l.features;
                status.limits = l.limits;
                status.expires_at = Some(l.expires_at);
                status.issued_at = Some(l.issued_at);
            }
        }
        Ok(status)
    }

    /// Verifies and installs a licence file; a bad signature or an expired licence is refused
    /// and the installed one kept.
    pub async fn install_license(
        &self,
        text: &str,
        audit: Audit<'_, License>,
    ) -> Result<License, PluginHostError> {
        let license = License::verify(text.trim(), &self.inner.config.license_key)
            .map_err(|e| PluginHostError::License(e.to_string()))?;
        if license.is_expired(now()) {
            return Err(PluginHostError::License(format!(
                "expired at {}",
                license.expires_at
            )));
        }
        let mut tx = self.inner.store.write(&audit.org_id).await?;
        tx.set_license_text(text.trim()).await?;
        audit.append(&mut tx, &license).await?;
        tx.commit().await?;
        Ok(license)
    }

    /// Installs a licence file from disk if none is in the database (`<data_dir>/license.lic`).
    pub async fn import_license_file(&self, path: &Path) -> Result<bool, PluginHostError> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(false);
        };
        if self.license().await?.is_some() {
            return Ok(false);
        }
        self.install_license(&text, Audit::none())
            .await
            .map(|_| true)
    }

    // ----- registry -----

    fn info(&self, row: PluginRow, entitlements: &Entitlements) -> PluginInfo {
        let manifest = Manifest::parse(&row.manifest).ok();
        let granted: Capabilities = serde_json::from_str(&row.grants).unwrap_or_default();
        let requested = manifest
            .as_ref()
            .map(|m| m.capabilities.clone())
            .unwrap_or_default();
        let entitlement_error = manifest
            .as_ref()
            .and_then(|m| entitlement(m, entitlements).err());
        PluginInfo {
            name: manifest
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            description: manifest
                .as_ref()
                .map(|m| m.description.clone())
                .unwrap_or_default(),
            publisher: manifest
                .as_ref()
                .map(|m| m.publisher.clone())
                .unwrap_or_default(),
            feature: manifest.as_ref().and_then(|m| m.feature.clone()),
            sso_login: manifest.as_ref().and_then(|m| m.sso_login),
            settings_schema: manifest
                .as_ref()
                .map(|m| m.settings_schema.clone())
                .unwrap_or_default(),
            granted: requested.intersect(&granted),
            requested,
            entitled: entitlement_error.is_none(),
            entitlement_error,
            id: row.id,
            version: row.version,
            world: row.world,
            edition: row.edition,
            enabled: row.enabled,
            signed: row.signed_by.is_some(),
            signed_by: row.signed_by,
            first_party: row.first_party,
            component_sha256: row.component_sha256,
            installed_at: row.installed_at,
            updated_at: row.updated_at,
        }
    }

    pub async fn list(&self) -> Result<Vec<PluginInfo>, PluginHostError> {
        let entitlements = self.entitlements().await?;
        let mut tx = self.inner.store.read(&OrgId::default_org()).await?;
        let rows = tx.list_plugins().await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| self.info(r, &entitlements))
            .collect())
    }

    pub async fn get(&self, id: &str) -> Result<PluginInfo, PluginHostError> {
        let entitlements = self.entitlements().await?;
        let mut tx = self.inner.store.read(&OrgId::default_org()).await?;
        let row = tx.plugin(id).await?;
        tx.commit().await?;
        row.map(|r| self.info(r, &entitlements))
            .ok_or_else(|| PluginHostError::NotInstalled(id.to_owned()))
    }

    /// The manifest of an installed plugin.
    pub async fn manifest(&self, id: &str) -> Result<(Manifest, PluginRow), PluginHostError> {
        let mut tx = self.inner.store.read(&OrgId::default_org()).await?;
        let row = tx.plugin(id).await?;
        tx.commit().await?;
        let row = row.ok_or_else(|| PluginHostError::NotInstalled(id.to_owned()))?;
        let manifest = Manifest::parse(&row.manifest).map_err(BundleError::from)?;
        Ok((manifest, row))
    }

    /// Verifies a bundle (signature, manifest, the component against its world) and stores it.
    /// An installed plugin of the same id is upgraded in place.
    pub async fn install(
        &self,
        bundle: &[u8],
        first_party: bool,
        audit: Audit<'_, Installed>,
    ) -> Result<Installed, PluginHostError> {
        let verified = Bundle::from_tar(bundle)?.verify(
            &self.inner.config.trusted_keys,
            self.inner.config.allow_unsigned,
        )?;
        let component = self
            .inner
            .runtime
            .compile(&verified.component)
            .map_err(|e| PluginHostError::Component(e.to_string()))?;
        self.inner
            .runtime
            .check_world(&verified.manifest, &component)
            .map_err(|e| PluginHostError::Component(e.to_string()))?;
        let m = &verified.manifest;
        let entitlements = self.entitlements().await?;
        let mut tx = self.inner.store.write(&audit.org_id).await?;
        let upgraded = tx
            .upsert_plugin(&NewPlugin {
                id: &m.id,
                version: &m.version,
                world: m.world.as_str(),
                edition: match m.edition {
                    Edition::Community => "community",
                    Edition::Enterprise => "enterprise",
                },
                manifest: &verified.manifest_bytes,
                component: &verified.component,
                component_sha256: &verified.component_sha256,
                signed_by: verified.signed_by.as_deref(),
                first_party,
            })
            .await?;
        let row = tx
            .plugin(&m.id)
            .await?
            .ok_or_else(|| PluginHostError::NotInstalled(m.id.clone()))?;
        let installed = Installed {
            plugin: self.info(row, &entitlements),
            upgraded,
        };
        audit.append(&mut tx, &installed).await?;
        tx.commit().await?;
        self.forget(&m.id);
        Ok(installed)
    }

    /// Installs every `*.bundle` of a directory (the first-party plugins shipped with the host)
    /// that is not installed at the same version. Errors are logged, not fatal.
    pub async fn install_shipped(&self, dir: &Path) -> Vec<String> {
        let mut installed = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return installed;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "bundle"))
            .collect();
        paths.sort();
        for path in paths {
            let result = async {
                let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
                let bundle = Bundle::from_tar(&bytes).map_err(|e| e.to_string())?;
                let manifest =
                    Manifest::parse(&bundle.manifest_bytes).map_err(|e| e.to_string())?;
                // Only a newer version replaces what is installed (the operator may have
                // installed a later one).
                if let Ok(info) = self.get(&manifest.id).await
                    && semver(&info.version) >= semver(&manifest.version)
                {
                    return Ok::<_, String>(None);
                }
                let installed = self
                    .install(&bytes, true, Audit::none())
                    .await
                    .map_err(|e| e.to_string())?;
                // A shipped proxy backend renders configuration and needs no grant beyond its
                // manifest's (log): it is enabled so the proxy works out of the box.
                if manifest.world == World::ProxyBackend && !installed.plugin.enabled {
                    self.enable(
                        &manifest.id,
                        Some(manifest.capabilities.clone()),
                        Audit::none(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                }
                Ok(Some(installed.plugin.id))
            }
            .await;
            match result {
                Ok(Some(id)) => {
                    tracing::info!(plugin = %id, path = %path.display(), "installed a shipped plugin");
                    installed.push(id);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not install a shipped plugin")
                }
            }
        }
        installed
    }

    /// Enables a plugin with the operator's grant (none: keep the current grant). Refused when
    /// the edition or licence does not allow it.
    pub async fn enable(
        &self,
        id: &str,
        grants: Option<Capabilities>,
        audit: Audit<'_, PluginInfo>,
    ) -> Result<PluginInfo, PluginHostError> {
        let (manifest, _) = self.manifest(id).await?;
        let entitlements = self.entitlements().await?;
        entitlement(&manifest, &entitlements).map_err(|reason| PluginHostError::NotEntitled {
            id: id.to_owned(),
            reason,
        })?;
        if let Some(g) = &grants
            && let Some(http) = &g.http
        {
            for (i, host) in http.hosts.iter().enumerate() {
                infrapilot_plugin_types::capabilities::check_host_pattern(host).map_err(
                    |message| PluginHostError::Grant {
                        field: format!("http.hosts.{i}"),
                        message,
                    },
                )?;
            }
        }
        let grants_json = grants.map(|g| serde_json::to_string(&g).unwrap_or_else(|_| "{}".into()));
        self.set_enabled(id, true, grants_json.as_deref(), entitlements, audit)
            .await
    }

    pub async fn disable(
        &self,
        id: &str,
        audit: Audit<'_, PluginInfo>,
    ) -> Result<PluginInfo, PluginHostError> {
        let entitlements = self.entitlements().await?;
        self.set_enabled(id, false, None, entitlements, audit).await
    }

    async fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        grants_json: Option<&str>,
        entitlements: Entitlements,
        audit: Audit<'_, PluginInfo>,
    ) -> Result<PluginInfo, PluginHostError> {
        let mut tx = self.inner.store.write(&audit.org_id).await?;
        if !tx.set_plugin_enabled(id, enabled, grants_json).await? {
            return Err(PluginHostError::NotInstalled(id.to_owned()));
        }
        let row = tx
            .plugin(id)
            .await?
            .ok_or_else(|| PluginHostError::NotInstalled(id.to_owned()))?;
        let info = self.info(row, &entitlements);
        audit.append(&mut tx, &info).await?;
        tx.commit().await?;
        self.forget(id);
        Ok(info)
    }

    /// Removes a plugin and its key/value data; refused while alert channels use it.
    pub async fn uninstall(
        &self,
        id: &str,
        audit: Audit<'_, PluginInfo>,
    ) -> Result<(), PluginHostError> {
        let entitlements = self.entitlements().await?;
        // Every organisation's channels count, and every organisation's data of the plugin goes
        // with it: each in a tenant transaction of its own, before the one that removes it.
        let store = &self.inner.store;
        let mut count = 0;
        for org in store.organization_ids().await? {
            count += store.read(&org).await?.plugin_usage(id).await?;
        }
        if count > 0 {
            return Err(PluginHostError::InUse {
                id: id.to_owned(),
                count,
            });
        }
        for org in store.organization_ids().await? {
            let mut tx = store.write(&org).await?;
            tx.delete_plugin_data(id).await?;
            tx.commit().await?;
        }
        let mut tx = self.inner.store.write(&audit.org_id).await?;
        let Some(row) = tx.plugin(id).await? else {
            return Err(PluginHostError::NotInstalled(id.to_owned()));
        };
        // A channel made meanwhile in this organisation still holds it back.
        let count = tx.plugin_usage(id).await?;
        if count > 0 {
            return Err(PluginHostError::InUse {
                id: id.to_owned(),
                count,
            });
        }
        let info = self.info(row, &entitlements);
        tx.delete_plugin(id).await?;
        audit.append(&mut tx, &info).await?;
        tx.commit().await?;
        self.forget(id);
        Ok(())
    }

    fn forget(&self, id: &str) {
        if let Ok(mut cache) = self.inner.plugins.lock() {
            cache.remove(id);
        }
    }

    /// An enabled, entitled alert channel, ready to call (loaded once per component and grant).
    pub async fn alert_channel(
        &self,
        id: &str,
    ) -> Result<(AlertChannelPlugin, Manifest), PluginHostError> {
        self.plugin(id).await
    }

    /// An enabled, entitled proxy backend, ready to call (loaded once per component and grant).
    pub async fn proxy_backend(
        &self,
        id: &str,
    ) -> Result<(ProxyBackendPlugin, Manifest), PluginHostError> {
        self.plugin(id).await
    }

    /// An enabled, entitled plugin of world `P`, ready to call (loaded once per component and
    /// grant); `WrongWorld` when the plugin installed under `id` is of another world.
    pub async fn plugin<P: WorldPlugin>(&self, id: &str) -> Result<(P, Manifest), PluginHostError> {
        let world = P::WORLD;
        let (manifest, row) = self.manifest(id).await?;
        if manifest.world != world {
            return Err(PluginHostError::WrongWorld {
                id: id.to_owned(),
                expected: world.as_str(),
            });
        }
        if !row.enabled {
            return Err(PluginHostError::Disabled(id.to_owned()));
        }
        if manifest.edition == Edition::Enterprise {
            let entitlements = self.entitlements().await?;
            entitlement(&manifest, &entitlements).map_err(|reason| {
                PluginHostError::NotEntitled {
                    id: id.to_owned(),
                    reason,
                }
            })?;
        }
        if let Ok(cache) = self.inner.plugins.lock()
            && let Some(c) = cache.get(id)
            && c.sha256 == row.component_sha256
            && c.grants == row.grants
            && c.manifest == row.manifest
            && let Some(plugin) = c.plugin.downcast_ref::<P>()
        {
            return Ok((plugin.clone(), manifest));
        }
        let mut tx = self.inner.store.read(&OrgId::default_org()).await?;
        let bytes = tx
            .plugin_component(id)
            .await?
            .ok_or_else(|| PluginHostError::NotInstalled(id.to_owned()))?;
        tx.commit().await?;
        let runtime = self.inner.runtime.clone();
        let grant: Capabilities = serde_json::from_str(&row.grants).unwrap_or_default();
        let loaded = {
            let manifest = manifest.clone();
            tokio::task::spawn_blocking(move || {
                let component = runtime.compile(&bytes).map_err(|e| e.to_string())?;
                runtime
                    .load::<P>(&manifest, &component, &grant)
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| PluginHostError::Component(e.to_string()))?
            .map_err(PluginHostError::Component)?
        };
        if let Ok(mut cache) = self.inner.plugins.lock() {
            cache.insert(
                id.to_owned(),
                CachedPlugin {
                    sha256: row.component_sha256.clone(),
                    grants: row.grants.clone(),
                    manifest: row.manifest.clone(),
                    plugin: Arc::new(loaded.clone()),
                },
            );
        }
        Ok((loaded, manifest))
    }
}

/// `MAJOR.MINOR.PATCH` as numbers (the manifest checked the syntax).
fn semver(v: &str) -> (u64, u64, u64) {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// Whether a plugin may run under the host's entitlements.
fn entitlement(manifest: &Manifest, entitlements: &Entitlements) -> Result<(), String> {
    match (&manifest.edition, &manifest.feature) {
        (Edition::Community, _) => Ok(()),
        (Edition::Enterprise, Some(feature)) => entitlements.allows_feature(feature, now()),
        (Edition::Enterprise, None) => Err("an enterprise plugin without a feature".into()),
    }
}
