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

pub use alerts::{Alert, AlertState, Delivery, Severity};
pub use proxy_model::{
    AccessRule, Location, ProxyHost, RateLimit, RenderedFile, SecurityHeaders, Tls, Upstream,
    UpstreamScheme,
};
pub use sso_model::{
    Identity, LoginCallback, LoginError, LoginMethod, LoginRequest, LoginStart, PostForm,
};
pub use types::{Header, PluginError};
