//! The plugin contract as the host's domain code sees it: one Rust type per WIT type, whatever
//! contract version a plugin was built against. The runtime's per-version modules
//! (`infrapilot-plugin-runtime`, `versions::v0_1_0`, `versions::v0_2_0` …) convert between these and
//! each version's generated bindings, so a new contract version changes no domain code unless it
//! adds something the domain must handle.
//!
//! The shapes follow `wit/since_v*/`; the doc comments there say what each field means.

/// Interface `types`.
pub mod types {
    /// An HTTP header or any other name/value pair.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Header {
        pub name: String,
        pub value: String,
    }

    /// What a plugin returns when a hook fails in an expected way.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum PluginError {
        /// A setting is missing or wrong; the text names the field first.
        InvalidSettings(String),
        /// A host capability was refused.
        Denied(String),
        /// The hook could not do its work.
        Failed(String),
    }
}

/// Interface `log`.
pub mod log {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Level {
        Trace,
        Debug,
        Info,
        Warn,
        Error,
    }
}

/// Interface `http`.
pub mod http {
    pub use super::types::Header;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Method {
        Get,
        Head,
        Post,
        Put,
        Patch,
        Delete,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Request {
        pub method: Method,
        pub url: String,
        pub headers: Vec<Header>,
        pub body: Option<Vec<u8>>,
        pub timeout_ms: Option<u32>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Response {
        pub status: u16,
        pub headers: Vec<Header>,
        pub body: Vec<u8>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum HttpError {
        Denied(String),
        InvalidRequest(String),
        Timeout,
        TooLarge,
        Transport(String),
    }
}

/// Interface `mail`.
pub mod mail {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Message {
        pub to: Vec<String>,
        pub subject: String,
        pub text_body: String,
        pub html_body: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum MailError {
        Denied(String),
        InvalidMessage(String),
        NotConfigured,
        Transport(String),
    }
}

/// Interface `kv`.
pub mod kv {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum KvError {
        Denied(String),
        TooLarge,
        Storage(String),
    }
}

/// Interface `config`.
pub mod config {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum ConfigError {
        Denied(String),
        NotSet(String),
    }
}

/// Interface `ldap`.
pub mod ldap {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Server {
        pub url: String,
        pub ca_pem: Option<String>,
        pub timeout_ms: Option<u32>,
    }

    #[derive(Clone, PartialEq, Eq)]
    pub struct Credentials {
        pub dn: String,
        pub password: String,
    }

    impl std::fmt::Debug for Credentials {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Credentials")
                .field("dn", &self.dn)
                .field("password", &"<redacted>")
                .finish()
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Scope {
        Base,
        OneLevel,
        Subtree,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SearchRequest {
        pub base: String,
        pub scope: Scope,
        pub filter: String,
        pub args: Vec<String>,
        pub attributes: Vec<String>,
        pub size_limit: u32,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Entry {
        pub dn: String,
        pub attributes: Vec<(String, Vec<String>)>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum LdapError {
        Denied(String),
        InvalidRequest(String),
        InvalidCredentials,
        Failed(String),
        Timeout,
        TooLarge,
        Transport(String),
    }
}

/// Interface `saml`.
pub mod saml {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AuthnRequest {
        pub idp_metadata: String,
        pub relay_state: String,
        pub force_authn: bool,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RequestStart {
        pub redirect_url: String,
        pub request_id: String,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Assertion {
        pub issuer: String,
        pub name_id: String,
        pub name_id_format: Option<String>,
        pub session_index: Option<String>,
        /// The authentication context class the identity provider reports.
        pub authn_context: Option<String>,
        pub attributes: Vec<(String, Vec<String>)>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum SamlError {
        Denied(String),
        InvalidMetadata(String),
        Rejected(String),
    }
}

/// Interface `alerts` (world `alert-channel`).
pub mod alerts {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Severity {
        Info,
        Warning,
        Critical,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum AlertState {
        Firing,
        Resolved,
        Test,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Alert {
        pub id: String,
        pub rule_id: String,
        pub rule_name: String,
        pub state: AlertState,
        pub severity: Severity,
        pub title: String,
        pub summary: String,
        pub node: Option<String>,
        pub target: Option<String>,
        pub labels: Vec<(String, String)>,
        pub started_at_unix_ms: u64,
        pub resolved_at_unix_ms: Option<u64>,
        pub url: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Delivery {
        pub detail: String,
    }
}

/// Interface `proxy-model` (world `proxy-backend`).
pub mod proxy_model {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum UpstreamScheme {
        Http,
        Https,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Upstream {
        pub scheme: UpstreamScheme,
        pub host: String,
        pub port: u16,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Location {
        pub path: String,
        pub upstream: Upstream,
        pub websockets: bool,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SecurityHeaders {
        pub hsts_max_age_seconds: Option<u32>,
        pub hsts_include_subdomains: bool,
        pub content_security_policy: Option<String>,
        pub frame_options: Option<String>,
        pub content_type_nosniff: bool,
        pub referrer_policy: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AccessRule {
        pub allow: bool,
        pub source: String,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Tls {
        pub certificate_path: String,
        pub key_path: String,
        pub redirect_http: bool,
        pub ocsp_stapling: bool,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RateLimit {
        pub requests_per_second: u32,
        pub burst: u32,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ProxyHost {
        pub id: String,
        pub domains: Vec<String>,
        pub upstream: Upstream,
        pub websockets: bool,
        pub locations: Vec<Location>,
        pub tls: Option<Tls>,
        pub headers: SecurityHeaders,
        pub rate_limit: Option<RateLimit>,
        pub max_body_bytes: Option<u64>,
        pub access: Vec<AccessRule>,
        pub acme_webroot: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RenderedFile {
        pub path: String,
        pub contents: String,
    }
}

/// Interface `sso-model` (from contract 0.2.0).
pub mod sso_model {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LoginRequest {
        pub callback_url: String,
        pub state: String,
        pub nonce: String,
        pub code_challenge: String,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct PostForm {
        pub action: String,
        pub fields: Vec<(String, String)>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum LoginMethod {
        Redirect(String),
        Post(PostForm),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LoginStart {
        pub method: LoginMethod,
        pub context: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LoginCallback {
        pub params: Vec<(String, String)>,
        pub request: LoginRequest,
        pub code_verifier: String,
        pub context: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Identity {
        pub subject: String,
        pub issuer: String,
        pub email: Option<String>,
        pub email_verified: bool,
        pub name: Option<String>,
        pub groups: Vec<String>,
        pub attributes: Vec<(String, String)>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum LoginError {
        Rejected(String),
        Unsupported,
        Unavailable(String),
        InvalidSettings(String),
    }
}

/// Interface `log-model` (from contract 0.2.0): what the host stores in and asks of a log sink.
pub mod log_model {
    /// One stored line; (`time_ns`, `agent_id`, `seq`) identifies it within its organisation.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LogLine {
        pub org_id: String,
        pub agent_id: String,
        pub time_ns: i64,
        pub seq: i64,
        pub container_id: String,
        pub container_name: String,
        pub compose_project: String,
        pub stream: String,
        pub level: Option<String>,
        pub line: String,
        pub proxy_host_id: Option<String>,
        pub status: Option<i32>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LogCursor {
        pub time_ns: i64,
        pub agent_id: String,
        pub seq: i64,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct LogQuery {
        pub org_id: String,
        pub agent_id: Option<String>,
        pub container: Option<String>,
        pub compose_project: Option<String>,
        pub levels: Vec<String>,
        pub stream: Option<String>,
        pub proxy_host_id: Option<String>,
        pub status: Option<(i32, i32)>,
        pub text: Option<String>,
        pub since_ns: Option<i64>,
        pub until_ns: Option<i64>,
        pub oldest_first: bool,
        pub after: Option<LogCursor>,
        pub limit: u32,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct VolumeCount {
        pub bucket_ns: i64,
        pub level: String,
        pub count: i64,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ContainerCount {
        pub agent_id: String,
        pub container_name: String,
        pub count: i64,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ProxyCount {
        pub agent_id: String,
        pub proxy_host_id: String,
        pub requests: i64,
        pub errors: i64,
    }
}

/// What the host asks a policy engine (world `policy-engine`, from contract 0.2.0).
pub mod policy_model {
    use serde::Serialize;

    /// The closed set of actions policies decide on.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
    pub enum Action {
        #[serde(rename = "container.create")]
        ContainerCreate,
        #[serde(rename = "container.start")]
        ContainerStart,
        #[serde(rename = "container.stop")]
        ContainerStop,
        #[serde(rename = "container.restart")]
        ContainerRestart,
        #[serde(rename = "container.remove")]
        ContainerRemove,
        #[serde(rename = "container.exec")]
        ContainerExec,
        #[serde(rename = "proxy.create")]
        ProxyCreate,
        #[serde(rename = "proxy.update")]
        ProxyUpdate,
        #[serde(rename = "proxy.delete")]
        ProxyDelete,
        #[serde(rename = "proxy.rollback")]
        ProxyRollback,
        #[serde(rename = "proxy.reapply")]
        ProxyReapply,
        #[serde(rename = "certificate.change")]
        CertificateChange,
        #[serde(rename = "container.running")]
        ContainerRunning,
    }

    impl Action {
        pub const ALL: [Action; 13] = [
            Action::ContainerCreate,
            Action::ContainerStart,
            Action::ContainerStop,
            Action::ContainerRestart,
            Action::ContainerRemove,
            Action::ContainerExec,
            Action::ProxyCreate,
            Action::ProxyUpdate,
            Action::ProxyDelete,
            Action::ProxyRollback,
            Action::ProxyReapply,
            Action::CertificateChange,
            Action::ContainerRunning,
        ];

        /// `container.start` …
        pub fn as_str(self) -> &'static str {
            match self {
                Action::ContainerCreate => "container.create",
                Action::ContainerStart => "container.start",
                Action::ContainerStop => "container.stop",
                Action::ContainerRestart => "container.restart",
                Action::ContainerRemove => "container.remove",
                Action::ContainerExec => "container.exec",
                Action::ProxyCreate => "proxy.create",
                Action::ProxyUpdate => "proxy.update",
                Action::ProxyDelete => "proxy.delete",
                Action::ProxyRollback => "proxy.rollback",
                Action::ProxyReapply => "proxy.reapply",
                Action::CertificateChange => "certificate.change",
                Action::ContainerRunning => "container.running",
            }
        }

        /// The action named `name`; `None` for any other name (an unknown action is denied).
        pub fn parse(name: &str) -> Option<Action> {
            Action::ALL.into_iter().find(|a| a.as_str() == name)
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum MountKind {
        Bind,
        Volume,
        Tmpfs,
        Device,
        VolumesFrom,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct Mount {
        pub kind: MountKind,
        pub source: String,
        pub target: String,
        pub read_only: bool,
    }

    /// A container's effective configuration (the host's normalised form).
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
    pub struct Container {
        pub name: String,
        pub image: String,
        pub user: String,
        pub runs_as_root: bool,
        pub privileged: bool,
        pub capabilities: Vec<String>,
        pub all_capabilities: bool,
        pub host_namespaces: Vec<String>,
        pub joins_containers: Vec<String>,
        pub seccomp_unconfined: bool,
        pub apparmor_unconfined: bool,
        pub selinux_disabled: bool,
        pub system_paths_unconfined: bool,
        pub mounts: Vec<Mount>,
        pub restart_policy: String,
        pub healthcheck: bool,
        pub labels: Vec<(String, String)>,
        pub created_at_unix_ms: Option<i64>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct ProxyHost {
        pub id: String,
        pub domains: Vec<String>,
        pub tls: bool,
        pub redirect_http: bool,
        pub access_restricted: bool,
    }

    /// One request for a decision.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct Request {
        pub action: Action,
        pub actor: String,
        pub actor_role: String,
        pub node_id: String,
        pub node_name: String,
        pub node_labels: Vec<(String, String)>,
        pub container: Option<Container>,
        pub command: Vec<String>,
        pub proxy_hosts: Vec<ProxyHost>,
        pub certificate: Option<String>,
        pub now_unix_ms: i64,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct Policy {
        pub id: String,
        pub name: String,
        pub policy_type: String,
        pub conditions: String,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct Finding {
        pub policy_id: String,
        pub reasons: Vec<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct PolicyType {
        pub id: String,
        pub title: String,
        pub description: String,
        pub conditions_schema: String,
    }
}

pub use alerts::{Alert, AlertState, Delivery, Severity};
pub use proxy_model::{
    AccessRule, Location, ProxyHost, RateLimit, RenderedFile, SecurityHeaders, Tls, Upstream,
    UpstreamScheme,
};
pub use sso_model::{
    Identity, LoginCallback, LoginError, LoginMethod, LoginRequest, LoginStart, PostForm,
};
pub use types::{Header, PluginError};
