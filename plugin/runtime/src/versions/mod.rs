//! The contract versions side by side, one module per `wit/since_vX.Y.Z` directory (as Zed's
//! `extension_host` keeps `since_v0_x_y`): each generates its bindings, converts its types to and
//! from the version-neutral [`crate::contract`] types, links the host capabilities into its
//! worlds, and calls its worlds' exports. Outside this module only the worlds' dispatch enums
//! (`crate::worlds`) name a version's generated types; everything else speaks
//! [`crate::contract`].
//!
//! A component says which version it was built against in the names of its exports
//! (`infrapilot:plugin/channel@0.2.0`); [`ContractVersion::of_component`] reads it and the
//! runtime links the component against that version's linker.
//!
//! While two versions have the same shape for an interface, one macro writes the conversions
//! and host adapters of both (`contract_conversions!`, `host_adapters!`, `world_calls!`). A
//! version that changes an interface writes that interface's part by hand in its own module.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use infrapilot_plugin_types::manifest::World;

use crate::runtime::HostState;

pub(crate) mod v0_1_0;
pub(crate) mod v0_2_0;

/// A contract version the runtime links.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContractVersion {
    V0_1_0,
    V0_2_0,
}

impl ContractVersion {
    /// Every version this runtime links, oldest first.
    pub const ALL: [ContractVersion; 2] = [ContractVersion::V0_1_0, ContractVersion::V0_2_0];

    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1_0 => "0.1.0",
            ContractVersion::V0_2_0 => "0.2.0",
        }
    }

    pub fn parse(version: &str) -> Option<ContractVersion> {
        ContractVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == version)
    }

    /// The version in the names of the component's `infrapilot:plugin/…@X.Y.Z` exports, or why
    /// there is none (no such export, several versions, or one this runtime does not link).
    pub fn of_component(engine: &Engine, component: &Component) -> Result<ContractVersion, String> {
        let mut found: Vec<String> = Vec::new();
        for (name, _) in component.component_type().exports(engine) {
            if let Some(rest) = name.strip_prefix("infrapilot:plugin/")
                && let Some((_, version)) = rest.split_once('@')
                && !found.iter().any(|v| v == version)
            {
                found.push(version.to_owned());
            }
        }
        match found.as_slice() {
            [] => Err("it exports no infrapilot:plugin interface".into()),
            [one] => ContractVersion::parse(one).ok_or_else(|| {
                format!(
                    "it was built against contract {}, which this host does not support ({})",
                    one.chars().take(32).collect::<String>(),
                    supported()
                )
            }),
            many => Err(format!(
                "it exports interfaces of several contract versions ({}{})",
                many.iter()
                    .take(4)
                    .map(|v| v.chars().take(32).collect::<String>())
                    .collect::<Vec<_>>()
                    .join(", "),
                if many.len() > 4 { ", …" } else { "" }
            )),
        }
    }
}

impl fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn supported() -> String {
    ContractVersion::ALL.map(ContractVersion::as_str).join(", ")
}

/// The worlds of one contract version, each with its linker.
pub(crate) type WorldLinkers = Vec<(World, Linker<HostState>)>;

/// The linkers of every world `version` has (each version module lists its own worlds).
pub(crate) fn world_linkers(
    engine: &Engine,
    version: ContractVersion,
) -> wasmtime::Result<WorldLinkers> {
    let worlds: &[(World, LinkWorld)] = match version {
        ContractVersion::V0_1_0 => v0_1_0::WORLDS,
        ContractVersion::V0_2_0 => v0_2_0::WORLDS,
    };
    worlds
        .iter()
        .map(|(world, link)| {
            let mut linker = Linker::new(engine);
            link(&mut linker)?;
            Ok((*world, linker))
        })
        .collect()
}

/// Links the host side of one world's imports.
pub(crate) type LinkWorld = fn(&mut Linker<HostState>) -> wasmtime::Result<()>;

/// Conversions between [`crate::contract`] and a version's generated types, for a version whose
/// interfaces have the 0.1.0 shape. Expects `wit` (the version's `infrapilot::plugin` of the
/// alert-channel bindings) and `proxy_wit` (its `proxy_model`) in scope.
macro_rules! contract_conversions {
    () => {
        use $crate::contract as neutral;

        impl From<wit::types::Header> for neutral::Header {
            fn from(h: wit::types::Header) -> Self {
                neutral::Header {
                    name: h.name,
                    value: h.value,
                }
            }
        }

        impl From<neutral::Header> for wit::types::Header {
            fn from(h: neutral::Header) -> Self {
                wit::types::Header {
                    name: h.name,
                    value: h.value,
                }
            }
        }

        impl From<wit::types::PluginError> for neutral::PluginError {
            fn from(e: wit::types::PluginError) -> Self {
                match e {
                    wit::types::PluginError::InvalidSettings(m) => {
                        neutral::PluginError::InvalidSettings(m)
                    }
                    wit::types::PluginError::Denied(m) => neutral::PluginError::Denied(m),
                    wit::types::PluginError::Failed(m) => neutral::PluginError::Failed(m),
                }
            }
        }

        impl From<wit::log::Level> for neutral::log::Level {
            fn from(level: wit::log::Level) -> Self {
                match level {
                    wit::log::Level::Trace => neutral::log::Level::Trace,
                    wit::log::Level::Debug => neutral::log::Level::Debug,
                    wit::log::Level::Info => neutral::log::Level::Info,
                    wit::log::Level::Warn => neutral::log::Level::Warn,
                    wit::log::Level::Error => neutral::log::Level::Error,
                }
            }
        }

        impl From<wit::http::Method> for neutral::http::Method {
            fn from(method: wit::http::Method) -> Self {
                match method {
                    wit::http::Method::Get => neutral::http::Method::Get,
                    wit::http::Method::Head => neutral::http::Method::Head,
                    wit::http::Method::Post => neutral::http::Method::Post,
                    wit::http::Method::Put => neutral::http::Method::Put,
                    wit::http::Method::Patch => neutral::http::Method::Patch,
                    wit::http::Method::Delete => neutral::http::Method::Delete,
                }
            }
        }

        impl From<wit::http::Request> for neutral::http::Request {
            fn from(r: wit::http::Request) -> Self {
                neutral::http::Request {
                    method: r.method.into(),
                    url: r.url,
                    headers: r.headers.into_iter().map(Into::into).collect(),
                    body: r.body,
                    timeout_ms: r.timeout_ms,
                }
            }
        }

        impl From<neutral::http::Response> for wit::http::Response {
            fn from(r: neutral::http::Response) -> Self {
                wit::http::Response {
                    status: r.status,
                    headers: r.headers.into_iter().map(Into::into).collect(),
                    body: r.body,
                }
            }
        }

        impl From<neutral::http::HttpError> for wit::http::HttpError {
            fn from(e: neutral::http::HttpError) -> Self {
                match e {
                    neutral::http::HttpError::Denied(m) => wit::http::HttpError::Denied(m),
                    neutral::http::HttpError::InvalidRequest(m) => {
                        wit::http::HttpError::InvalidRequest(m)
                    }
                    neutral::http::HttpError::Timeout => wit::http::HttpError::Timeout,
                    neutral::http::HttpError::TooLarge => wit::http::HttpError::TooLarge,
                    neutral::http::HttpError::Transport(m) => wit::http::HttpError::Transport(m),
                }
            }
        }

        impl From<wit::mail::Message> for neutral::mail::Message {
            fn from(m: wit::mail::Message) -> Self {
                neutral::mail::Message {
                    to: m.to,
                    subject: m.subject,
                    text_body: m.text_body,
                    html_body: m.html_body,
                }
            }
        }

        impl From<neutral::mail::MailError> for wit::mail::MailError {
            fn from(e: neutral::mail::MailError) -> Self {
                match e {
                    neutral::mail::MailError::Denied(m) => wit::mail::MailError::Denied(m),
                    neutral::mail::MailError::InvalidMessage(m) => {
                        wit::mail::MailError::InvalidMessage(m)
                    }
                    neutral::mail::MailError::NotConfigured => wit::mail::MailError::NotConfigured,
                    neutral::mail::MailError::Transport(m) => wit::mail::MailError::Transport(m),
                }
            }
        }

        impl From<neutral::kv::KvError> for wit::kv::KvError {
            fn from(e: neutral::kv::KvError) -> Self {
                match e {
                    neutral::kv::KvError::Denied(m) => wit::kv::KvError::Denied(m),
                    neutral::kv::KvError::TooLarge => wit::kv::KvError::TooLarge,
                    neutral::kv::KvError::Storage(m) => wit::kv::KvError::Storage(m),
                }
            }
        }

        impl From<neutral::config::ConfigError> for wit::config::ConfigError {
            fn from(e: neutral::config::ConfigError) -> Self {
                match e {
                    neutral::config::ConfigError::Denied(m) => wit::config::ConfigError::Denied(m),
                    neutral::config::ConfigError::NotSet(m) => wit::config::ConfigError::NotSet(m),
                }
            }
        }

        impl From<&neutral::Alert> for wit::alerts::Alert {
            fn from(a: &neutral::Alert) -> Self {
                wit::alerts::Alert {
                    id: a.id.clone(),
                    rule_id: a.rule_id.clone(),
                    rule_name: a.rule_name.clone(),
                    state: match a.state {
                        neutral::AlertState::Firing => wit::alerts::AlertState::Firing,
                        neutral::AlertState::Resolved => wit::alerts::AlertState::Resolved,
                        neutral::AlertState::Test => wit::alerts::AlertState::Test,
                    },
                    severity: match a.severity {
                        neutral::Severity::Info => wit::alerts::Severity::Info,
                        neutral::Severity::Warning => wit::alerts::Severity::Warning,
                        neutral::Severity::Critical => wit::alerts::Severity::Critical,
                    },
                    title: a.title.clone(),
                    summary: a.summary.clone(),
                    node: a.node.clone(),
                    target: a.target.clone(),
                    labels: a.labels.clone(),
                    started_at_unix_ms: a.started_at_unix_ms,
                    resolved_at_unix_ms: a.resolved_at_unix_ms,
                    url: a.url.clone(),
                }
            }
        }

        impl From<wit::alerts::Delivery> for neutral::Delivery {
            fn from(d: wit::alerts::Delivery) -> Self {
                neutral::Delivery { detail: d.detail }
            }
        }

        impl From<&neutral::Upstream> for proxy_wit::Upstream {
            fn from(u: &neutral::Upstream) -> Self {
                proxy_wit::Upstream {
                    scheme: match u.scheme {
                        neutral::UpstreamScheme::Http => proxy_wit::UpstreamScheme::Http,
                        neutral::UpstreamScheme::Https => proxy_wit::UpstreamScheme::Https,
                    },
                    host: u.host.clone(),
                    port: u.port,
                }
            }
        }

        impl From<&neutral::ProxyHost> for proxy_wit::ProxyHost {
            fn from(h: &neutral::ProxyHost) -> Self {
                proxy_wit::ProxyHost {
                    id: h.id.clone(),
                    domains: h.domains.clone(),
                    upstream: (&h.upstream).into(),
                    websockets: h.websockets,
                    locations: h
                        .locations
                        .iter()
                        .map(|l| proxy_wit::Location {
                            path: l.path.clone(),
                            upstream: (&l.upstream).into(),
                            websockets: l.websockets,
                        })
                        .collect(),
                    tls: h.tls.as_ref().map(|t| proxy_wit::Tls {
                        certificate_path: t.certificate_path.clone(),
                        key_path: t.key_path.clone(),
                        redirect_http: t.redirect_http,
                        ocsp_stapling: t.ocsp_stapling,
                    }),
                    headers: proxy_wit::SecurityHeaders {
                        hsts_max_age_seconds: h.headers.hsts_max_age_seconds,
                        hsts_include_subdomains: h.headers.hsts_include_subdomains,
                        content_security_policy: h.headers.content_security_policy.clone(),
                        frame_options: h.headers.frame_options.clone(),
                        content_type_nosniff: h.headers.content_type_nosniff,
                        referrer_policy: h.headers.referrer_policy.clone(),
                    },
                    rate_limit: h.rate_limit.as_ref().map(|r| proxy_wit::RateLimit {
                        requests_per_second: r.requests_per_second,
                        burst: r.burst,
                    }),
                    max_body_bytes: h.max_body_bytes,
                    access: h
                        .access
                        .iter()
                        .map(|a| proxy_wit::AccessRule {
                            allow: a.allow,
                            source: a.source.clone(),
                        })
                        .collect(),
                    acme_webroot: h.acme_webroot.clone(),
                }
            }
        }

        impl From<proxy_wit::RenderedFile> for neutral::RenderedFile {
            fn from(f: proxy_wit::RenderedFile) -> Self {
                neutral::RenderedFile {
                    path: f.path,
                    contents: f.contents,
                }
            }
        }
    };
}

/// The host capabilities of a version whose host interfaces have the 0.1.0 shape: each
/// generated `Host` trait delegates to the capability module's version-neutral method
/// (`crate::host::*`), where the grant check and the limits are.
macro_rules! host_adapters {
    () => {
        impl wit::types::Host for HostState {}
        impl wit::alerts::Host for HostState {}
        impl proxy_wit::Host for HostState {}

        impl wit::log::Host for HostState {
            async fn log(&mut self, level: wit::log::Level, message: String) {
                self.log_line(level.into(), message);
            }
        }

        impl wit::http::Host for HostState {
            async fn fetch(
                &mut self,
                request: wit::http::Request,
            ) -> Result<wit::http::Response, wit::http::HttpError> {
                self.http_fetch(request.into())
                    .await
                    .map(Into::into)
                    .map_err(Into::into)
            }
        }

        impl wit::mail::Host for HostState {
            async fn send(
                &mut self,
                message: wit::mail::Message,
            ) -> Result<(), wit::mail::MailError> {
                self.mail_send(message.into()).await.map_err(Into::into)
            }
        }

        impl wit::kv::Host for HostState {
            async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, wit::kv::KvError> {
                self.kv_get(key).await.map_err(Into::into)
            }

            async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), wit::kv::KvError> {
                self.kv_set(key, value).await.map_err(Into::into)
            }

            async fn delete(&mut self, key: String) -> Result<(), wit::kv::KvError> {
                self.kv_delete(key).await.map_err(Into::into)
            }
        }

        impl wit::config::Host for HostState {
            async fn settings(&mut self) -> String {
                self.config_settings()
            }

            async fn secret(&mut self, name: String) -> Result<String, wit::config::ConfigError> {
                self.config_secret(name).map_err(Into::into)
            }
        }

        impl wit::clock::Host for HostState {
            async fn now_unix_ms(&mut self) -> u64 {
                self.clock_now_unix_ms()
            }
        }

        impl wit::random::Host for HostState {
            async fn fill(&mut self, len: u32) -> Vec<u8> {
                self.random_fill(len)
            }
        }
    };
}

/// Linking and calling the worlds of a version whose worlds have the 0.1.0 shape. Expects the
/// modules `alert_channel` and `proxy_backend` (the version's bindings) in scope. A version's
/// own worlds (those 0.1.0 does not have) are listed as `world_calls!((World::X, link_x), …)`
/// and linked and called by that version's module.
macro_rules! world_calls {
    ($(($world:expr, $link:path)),* $(,)?) => {
        use $crate::contract as called;

        /// The worlds of this version and how each is linked.
        pub(crate) const WORLDS: &[(
            infrapilot_plugin_types::manifest::World,
            $crate::versions::LinkWorld,
        )] = &[
            (
                infrapilot_plugin_types::manifest::World::AlertChannel,
                link_alert_channel,
            ),
            (
                infrapilot_plugin_types::manifest::World::ProxyBackend,
                link_proxy_backend,
            ),
            $(($world, $link),)*
        ];

        /// Links the imports of world `alert-channel` (the host adapters above).
        pub(crate) fn link_alert_channel(
            linker: &mut wasmtime::component::Linker<HostState>,
        ) -> wasmtime::Result<()> {
            alert_channel::AlertChannel::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
                linker,
                |s| s,
            )
        }

        /// Links the imports of world `proxy-backend`.
        pub(crate) fn link_proxy_backend(
            linker: &mut wasmtime::component::Linker<HostState>,
        ) -> wasmtime::Result<()> {
            proxy_backend::ProxyBackend::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
                linker,
                |s| s,
            )
        }

        pub(crate) async fn channel_validate(
            instance: &alert_channel::AlertChannel,
            store: &mut wasmtime::Store<HostState>,
        ) -> wasmtime::Result<Result<(), called::PluginError>> {
            Ok(instance
                .infrapilot_plugin_channel()
                .call_validate(store)
                .await?
                .map_err(Into::into))
        }

        pub(crate) async fn channel_deliver(
            instance: &alert_channel::AlertChannel,
            store: &mut wasmtime::Store<HostState>,
            alert: &called::Alert,
        ) -> wasmtime::Result<Result<called::Delivery, called::PluginError>> {
            Ok(instance
                .infrapilot_plugin_channel()
                .call_deliver(store, &alert.into())
                .await?
                .map(Into::into)
                .map_err(Into::into))
        }

        /// Renders each host, then the shared parts, in one instance (hosts converted once).
        pub(crate) async fn backend_render(
            instance: &proxy_backend::ProxyBackend,
            store: &mut wasmtime::Store<HostState>,
            hosts: &[called::ProxyHost],
            revision: u64,
        ) -> wasmtime::Result<$crate::worlds::proxy_backend::RenderOutcome> {
            let hosts: Vec<proxy_wit::ProxyHost> = hosts.iter().map(Into::into).collect();
            let backend = instance.infrapilot_plugin_backend();
            let mut per_host = Vec::with_capacity(hosts.len());
            for host in &hosts {
                per_host.push(
                    backend
                        .call_render_host(&mut *store, host)
                        .await?
                        .map(|files| files.into_iter().map(Into::into).collect())
                        .map_err(Into::into),
                );
            }
            let shared = backend
                .call_render_shared(&mut *store, &hosts, revision)
                .await?
                .map(|files| files.into_iter().map(Into::into).collect())
                .map_err(Into::into);
            Ok($crate::worlds::proxy_backend::RenderOutcome { per_host, shared })
        }
    };
}

pub(crate) use {contract_conversions, host_adapters, world_calls};

#[cfg(test)]
mod tests {
    use super::ContractVersion;
    use wasmtime::component::Component;
    use wasmtime::{Config, Engine};

    /// The version read from a component exporting (empty) instances under `names`.
    fn version_of(names: &[&str]) -> Result<ContractVersion, String> {
        let mut config = Config::new();
        config.concurrency_support(false);
        let engine = Engine::new(&config).unwrap();
        let exports: String = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("(instance $i{i}) (export \"{name}\" (instance $i{i}))"))
            .collect();
        let bytes = wat::parse_str(format!("(component {exports})")).unwrap();
        let component = Component::new(&engine, bytes).unwrap();
        ContractVersion::of_component(&engine, &component)
    }

    #[test]
    fn the_version_comes_from_the_export_names_and_must_be_one_this_host_links() {
        assert_eq!(
            version_of(&["infrapilot:plugin/channel@0.1.0"]),
            Ok(ContractVersion::V0_1_0)
        );
        assert_eq!(
            version_of(&["infrapilot:plugin/backend@0.2.0", "other:pkg/x@9.0.0"]),
            Ok(ContractVersion::V0_2_0)
        );
        let none = version_of(&[]).unwrap_err();
        assert!(none.contains("no infrapilot:plugin interface"), "{none}");
        let unversioned = version_of(&["infrapilot:plugin/channel"]).unwrap_err();
        assert!(
            unversioned.contains("no infrapilot:plugin"),
            "{unversioned}"
        );
        let future = version_of(&["infrapilot:plugin/channel@0.3.0"]).unwrap_err();
        assert!(
            future.contains("contract 0.3.0") && future.contains("0.1.0, 0.2.0"),
            "{future}"
        );
        let mixed = version_of(&[
            "infrapilot:plugin/channel@0.1.0",
            "infrapilot:plugin/backend@0.2.0",
        ])
        .unwrap_err();
        assert!(mixed.contains("several contract versions"), "{mixed}");
    }
}
