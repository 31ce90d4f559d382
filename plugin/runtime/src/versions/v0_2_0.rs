//! Contract 0.2.0 (`wit/since_v0.2.0`): bindings, conversions to [`crate::contract`], host
//! adapters and calls of its worlds. Its interfaces have the 0.1.0 shape, so the shared macros
//! write them; its own world `sso-provider` is bound, linked and called here.

use crate::runtime::HostState;

/// World `alert-channel`.
pub(crate) mod alert_channel {
    wasmtime::component::bindgen!({
        world: "alert-channel",
        path: "../../wit/since_v0.2.0",
        imports: { default: async },
        exports: { default: async },
    });
}

/// World `proxy-backend`; shares the host interfaces with `alert-channel`.
pub(crate) mod proxy_backend {
    wasmtime::component::bindgen!({
        world: "proxy-backend",
        path: "../../wit/since_v0.2.0",
        imports: { default: async },
        exports: { default: async },
        with: {
            "infrapilot:plugin/types": super::alert_channel::infrapilot::plugin::types,
            "infrapilot:plugin/log": super::alert_channel::infrapilot::plugin::log,
            "infrapilot:plugin/config": super::alert_channel::infrapilot::plugin::config,
        },
    });
}

/// World `sso-provider` (new in 0.2.0); shares the host interfaces with `alert-channel`.
pub(crate) mod sso_provider {
    wasmtime::component::bindgen!({
        world: "sso-provider",
        path: "../../wit/since_v0.2.0",
        imports: { default: async },
        exports: { default: async },
        with: {
            "infrapilot:plugin/types": super::alert_channel::infrapilot::plugin::types,
            "infrapilot:plugin/log": super::alert_channel::infrapilot::plugin::log,
            "infrapilot:plugin/http": super::alert_channel::infrapilot::plugin::http,
            "infrapilot:plugin/kv": super::alert_channel::infrapilot::plugin::kv,
            "infrapilot:plugin/config": super::alert_channel::infrapilot::plugin::config,
            "infrapilot:plugin/clock": super::alert_channel::infrapilot::plugin::clock,
            "infrapilot:plugin/random": super::alert_channel::infrapilot::plugin::random,
        },
    });
}

/// World `log-sink` (new in 0.2.0); shares the host interfaces with `alert-channel`.
pub(crate) mod log_sink {
    wasmtime::component::bindgen!({
        world: "log-sink",
        path: "../../wit/since_v0.2.0",
        imports: { default: async },
        exports: { default: async },
        with: {
            "infrapilot:plugin/types": super::alert_channel::infrapilot::plugin::types,
            "infrapilot:plugin/log": super::alert_channel::infrapilot::plugin::log,
            "infrapilot:plugin/http": super::alert_channel::infrapilot::plugin::http,
            "infrapilot:plugin/config": super::alert_channel::infrapilot::plugin::config,
            "infrapilot:plugin/clock": super::alert_channel::infrapilot::plugin::clock,
        },
    });
}

/// World `policy-engine` (new in 0.2.0); shares the host interfaces with `alert-channel`.
pub(crate) mod policy_engine {
    wasmtime::component::bindgen!({
        world: "policy-engine",
        path: "../../wit/since_v0.2.0",
        imports: { default: async },
        exports: { default: async },
        with: {
            "infrapilot:plugin/types": super::alert_channel::infrapilot::plugin::types,
            "infrapilot:plugin/log": super::alert_channel::infrapilot::plugin::log,
        },
    });
}

use alert_channel::infrapilot::plugin as wit;
use proxy_backend::infrapilot::plugin::proxy_model as proxy_wit;
use sso_provider::infrapilot::plugin::sso_model as sso_wit;

super::contract_conversions!();
super::host_adapters!();
super::world_calls!(
    (
        infrapilot_plugin_types::manifest::World::SsoProvider,
        link_sso_provider
    ),
    (
        infrapilot_plugin_types::manifest::World::LogSink,
        link_log_sink
    ),
    (
        infrapilot_plugin_types::manifest::World::PolicyEngine,
        link_policy_engine
    ),
);

/// `sso-model` has types only.
impl sso_wit::Host for HostState {}

/// Interface `jws` (new in 0.2.0): no capability, computation only.
impl sso_provider::infrapilot::plugin::jws::Host for HostState {
    async fn verify(&mut self, token: String, jwks: String) -> Result<(), String> {
        crate::host::jws::verify(&token, &jwks)
    }
}

use crate::contract::saml as saml_contract;
use sso_provider::infrapilot::plugin::saml as saml_wit;

impl From<saml_contract::SamlError> for saml_wit::SamlError {
    fn from(e: saml_contract::SamlError) -> Self {
        match e {
            saml_contract::SamlError::Denied(m) => saml_wit::SamlError::Denied(m),
            saml_contract::SamlError::InvalidMetadata(m) => saml_wit::SamlError::InvalidMetadata(m),
            saml_contract::SamlError::Rejected(m) => saml_wit::SamlError::Rejected(m),
        }
    }
}

/// Interface `saml` (new in 0.2.0).
impl saml_wit::Host for HostState {
    async fn begin(
        &mut self,
        request: saml_wit::AuthnRequest,
    ) -> Result<saml_wit::RequestStart, saml_wit::SamlError> {
        let start = self
            .saml_begin(saml_contract::AuthnRequest {
                idp_metadata: request.idp_metadata,
                relay_state: request.relay_state,
                force_authn: request.force_authn,
            })
            .await?;
        Ok(saml_wit::RequestStart {
            redirect_url: start.redirect_url,
            request_id: start.request_id,
        })
    }

    async fn validate_response(
        &mut self,
        idp_metadata: String,
        saml_response: String,
        request_id: String,
    ) -> Result<saml_wit::Assertion, saml_wit::SamlError> {
        let a = self
            .saml_validate(idp_metadata, saml_response, request_id)
            .await?;
        Ok(saml_wit::Assertion {
            issuer: a.issuer,
            name_id: a.name_id,
            name_id_format: a.name_id_format,
            session_index: a.session_index,
            authn_context: a.authn_context,
            attributes: a.attributes,
        })
    }
}

use crate::contract::ldap as ldap_contract;
use sso_provider::infrapilot::plugin::ldap as ldap_wit;

fn ldap_server(s: ldap_wit::Server) -> ldap_contract::Server {
    ldap_contract::Server {
        url: s.url,
        ca_pem: s.ca_pem,
        timeout_ms: s.timeout_ms,
    }
}

fn ldap_credentials(c: ldap_wit::Credentials) -> ldap_contract::Credentials {
    ldap_contract::Credentials {
        dn: c.dn,
        password: c.password,
    }
}

impl From<ldap_contract::LdapError> for ldap_wit::LdapError {
    fn from(e: ldap_contract::LdapError) -> Self {
        use ldap_contract::LdapError as E;
        match e {
            E::Denied(m) => ldap_wit::LdapError::Denied(m),
            E::InvalidRequest(m) => ldap_wit::LdapError::InvalidRequest(m),
            E::InvalidCredentials => ldap_wit::LdapError::InvalidCredentials,
            E::Failed(m) => ldap_wit::LdapError::Failed(m),
            E::Timeout => ldap_wit::LdapError::Timeout,
            E::TooLarge => ldap_wit::LdapError::TooLarge,
            E::Transport(m) => ldap_wit::LdapError::Transport(m),
        }
    }
}

/// Interface `ldap` (new in 0.2.0).
impl ldap_wit::Host for HostState {
    async fn bind(
        &mut self,
        server: ldap_wit::Server,
        credentials: ldap_wit::Credentials,
    ) -> Result<(), ldap_wit::LdapError> {
        self.ldap_bind(ldap_server(server), ldap_credentials(credentials))
            .await
            .map_err(Into::into)
    }

    async fn search(
        &mut self,
        server: ldap_wit::Server,
        credentials: ldap_wit::Credentials,
        request: ldap_wit::SearchRequest,
    ) -> Result<Vec<ldap_wit::Entry>, ldap_wit::LdapError> {
        let request = ldap_contract::SearchRequest {
            base: request.base,
            scope: match request.scope {
                ldap_wit::Scope::Base => ldap_contract::Scope::Base,
                ldap_wit::Scope::OneLevel => ldap_contract::Scope::OneLevel,
                ldap_wit::Scope::Subtree => ldap_contract::Scope::Subtree,
            },
            filter: request.filter,
            args: request.args,
            attributes: request.attributes,
            size_limit: request.size_limit,
        };
        let entries = self
            .ldap_search(ldap_server(server), ldap_credentials(credentials), request)
            .await?;
        Ok(entries
            .into_iter()
            .map(|e| ldap_wit::Entry {
                dn: e.dn,
                attributes: e.attributes,
            })
            .collect())
    }
}

/// Links the imports of world `sso-provider`.
pub(crate) fn link_sso_provider(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    sso_provider::SsoProvider::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)
}

impl From<&called::LoginRequest> for sso_wit::LoginRequest {
    fn from(r: &called::LoginRequest) -> Self {
        sso_wit::LoginRequest {
            callback_url: r.callback_url.clone(),
            state: r.state.clone(),
            nonce: r.nonce.clone(),
            code_challenge: r.code_challenge.clone(),
        }
    }
}

impl From<sso_wit::LoginStart> for called::LoginStart {
    fn from(start: sso_wit::LoginStart) -> Self {
        called::LoginStart {
            method: match start.method {
                sso_wit::LoginMethod::Redirect(url) => called::LoginMethod::Redirect(url),
                sso_wit::LoginMethod::Post(form) => called::LoginMethod::Post(called::PostForm {
                    action: form.action,
                    fields: form.fields,
                }),
            },
            context: start.context,
        }
    }
}

impl From<sso_wit::Identity> for called::Identity {
    fn from(i: sso_wit::Identity) -> Self {
        called::Identity {
            subject: i.subject,
            issuer: i.issuer,
            email: i.email,
            email_verified: i.email_verified,
            name: i.name,
            groups: i.groups,
            attributes: i.attributes,
        }
    }
}

impl From<sso_wit::LoginError> for called::LoginError {
    fn from(e: sso_wit::LoginError) -> Self {
        match e {
            sso_wit::LoginError::Rejected(m) => called::LoginError::Rejected(m),
            sso_wit::LoginError::Unsupported => called::LoginError::Unsupported,
            sso_wit::LoginError::Unavailable(m) => called::LoginError::Unavailable(m),
            sso_wit::LoginError::InvalidSettings(m) => called::LoginError::InvalidSettings(m),
        }
    }
}

/// What a provider's login call returns: its answer (an identity, a start, or its refusal) or
/// the runtime's failure; the plugin-error layer of the other worlds is not used.
type LoginAnswer<T> = wasmtime::Result<Result<Result<T, called::LoginError>, called::PluginError>>;

/// Calls `validate`.
pub(crate) async fn sso_validate(
    instance: &sso_provider::SsoProvider,
    store: &mut wasmtime::Store<HostState>,
) -> wasmtime::Result<Result<(), called::PluginError>> {
    Ok(instance
        .infrapilot_plugin_sso()
        .call_validate(store)
        .await?
        .map_err(Into::into))
}

/// Calls `begin-login`.
pub(crate) async fn sso_begin_login(
    instance: &sso_provider::SsoProvider,
    store: &mut wasmtime::Store<HostState>,
    request: &called::LoginRequest,
) -> LoginAnswer<called::LoginStart> {
    let answer = instance
        .infrapilot_plugin_sso()
        .call_begin_login(store, &request.into())
        .await?;
    Ok(Ok(answer.map(Into::into).map_err(Into::into)))
}

/// Calls `complete-login`.
pub(crate) async fn sso_complete_login(
    instance: &sso_provider::SsoProvider,
    store: &mut wasmtime::Store<HostState>,
    callback: &called::LoginCallback,
) -> LoginAnswer<called::Identity> {
    let callback = sso_wit::LoginCallback {
        params: callback.params.clone(),
        request: (&callback.request).into(),
        code_verifier: callback.code_verifier.clone(),
        context: callback.context.clone(),
    };
    let answer = instance
        .infrapilot_plugin_sso()
        .call_complete_login(store, &callback)
        .await?;
    Ok(Ok(answer.map(Into::into).map_err(Into::into)))
}

/// Calls `check-password`.
pub(crate) async fn sso_check_password(
    instance: &sso_provider::SsoProvider,
    store: &mut wasmtime::Store<HostState>,
    username: &str,
    password: &str,
) -> LoginAnswer<called::Identity> {
    let answer = instance
        .infrapilot_plugin_sso()
        .call_check_password(store, username, password)
        .await?;
    Ok(Ok(answer.map(Into::into).map_err(Into::into)))
}

use crate::contract::log_model as sink_contract;
use log_sink::infrapilot::plugin::log_model as sink_wit;

/// `log-model` has types only.
impl sink_wit::Host for HostState {}

/// Links the imports of world `log-sink`.
pub(crate) fn link_log_sink(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    log_sink::LogSink::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)
}

impl From<&sink_contract::LogLine> for sink_wit::LogLine {
    fn from(l: &sink_contract::LogLine) -> Self {
        sink_wit::LogLine {
            org_id: l.org_id.clone(),
            agent_id: l.agent_id.clone(),
            time_ns: l.time_ns,
            seq: l.seq,
            container_id: l.container_id.clone(),
            container_name: l.container_name.clone(),
            compose_project: l.compose_project.clone(),
            stream: l.stream.clone(),
            level: l.level.clone(),
            line: l.line.clone(),
            proxy_host_id: l.proxy_host_id.clone(),
            status: l.status,
        }
    }
}

impl From<sink_wit::LogLine> for sink_contract::LogLine {
    fn from(l: sink_wit::LogLine) -> Self {
        sink_contract::LogLine {
            org_id: l.org_id,
            agent_id: l.agent_id,
            time_ns: l.time_ns,
            seq: l.seq,
            container_id: l.container_id,
            container_name: l.container_name,
            compose_project: l.compose_project,
            stream: l.stream,
            level: l.level,
            line: l.line,
            proxy_host_id: l.proxy_host_id,
            status: l.status,
        }
    }
}

impl From<&sink_contract::LogQuery> for sink_wit::LogQuery {
    fn from(q: &sink_contract::LogQuery) -> Self {
        sink_wit::LogQuery {
            org_id: q.org_id.clone(),
            agent_id: q.agent_id.clone(),
            container: q.container.clone(),
            compose_project: q.compose_project.clone(),
            levels: q.levels.clone(),
            stream: q.stream.clone(),
            proxy_host_id: q.proxy_host_id.clone(),
            status: q.status,
            text: q.text.clone(),
            since_ns: q.since_ns,
            until_ns: q.until_ns,
            oldest_first: q.oldest_first,
            after: q.after.as_ref().map(|c| sink_wit::LogCursor {
                time_ns: c.time_ns,
                agent_id: c.agent_id.clone(),
                seq: c.seq,
            }),
            limit: q.limit,
        }
    }
}

/// A list of a sink's answer in the contract's types.
fn converted<A, B: From<A>>(items: Vec<A>) -> Vec<B> {
    items.into_iter().map(Into::into).collect()
}

impl From<sink_wit::VolumeCount> for sink_contract::VolumeCount {
    fn from(c: sink_wit::VolumeCount) -> Self {
        sink_contract::VolumeCount {
            bucket_ns: c.bucket_ns,
            level: c.level,
            count: c.count,
        }
    }
}

impl From<sink_wit::ContainerCount> for sink_contract::ContainerCount {
    fn from(c: sink_wit::ContainerCount) -> Self {
        sink_contract::ContainerCount {
            agent_id: c.agent_id,
            container_name: c.container_name,
            count: c.count,
        }
    }
}

impl From<sink_wit::ProxyCount> for sink_contract::ProxyCount {
    fn from(c: sink_wit::ProxyCount) -> Self {
        sink_contract::ProxyCount {
            agent_id: c.agent_id,
            proxy_host_id: c.proxy_host_id,
            requests: c.requests,
            errors: c.errors,
        }
    }
}

/// What a plugin call returns: its answer or its error, or the runtime's failure.
type Answer<T> = wasmtime::Result<Result<T, called::PluginError>>;

/// Calls `prepare`.
pub(crate) async fn sink_prepare(
    instance: &log_sink::LogSink,
    store: &mut wasmtime::Store<HostState>,
) -> Answer<()> {
    Ok(instance
        .infrapilot_plugin_sink()
        .call_prepare(store)
        .await?
        .map_err(Into::into))
}

/// Calls `write`.
pub(crate) async fn sink_write(
    instance: &log_sink::LogSink,
    store: &mut wasmtime::Store<HostState>,
    lines: &[sink_contract::LogLine],
) -> Answer<()> {
    let lines: Vec<sink_wit::LogLine> = lines.iter().map(Into::into).collect();
    Ok(instance
        .infrapilot_plugin_sink()
        .call_write(store, &lines)
        .await?
        .map_err(Into::into))
}

/// Calls `query`.
pub(crate) async fn sink_query(
    instance: &log_sink::LogSink,
    store: &mut wasmtime::Store<HostState>,
    query: &sink_contract::LogQuery,
) -> Answer<Vec<sink_contract::LogLine>> {
    Ok(instance
        .infrapilot_plugin_sink()
        .call_query(store, &query.into())
        .await?
        .map(converted)
        .map_err(Into::into))
}

/// Calls `volume`.
pub(crate) async fn sink_volume(
    instance: &log_sink::LogSink,
    store: &mut wasmtime::Store<HostState>,
    query: &sink_contract::LogQuery,
    interval_ns: i64,
) -> Answer<Vec<sink_contract::VolumeCount>> {
    Ok(instance
        .infrapilot_plugin_sink()
        .call_volume(store, &query.into(), interval_ns)
        .await?
        .map(converted)
        .map_err(Into::into))
}

/// Calls `count-by-container`.
pub(crate) async fn sink_count_by_container(
    instance: &log_sink::LogSink,
    store: &mut wasmtime::Store<HostState>,
    org_id: &str,
    since_ns: i64,
    until_ns: i64,
    level: &str,
) -> Answer<Vec<sink_contract::ContainerCount>> {
    Ok(instance
        .infrapilot_plugin_sink()
        .call_count_by_container(store, org_id, since_ns, until_ns, level)
        .await?
        .map(converted)
        .map_err(Into::into))
}

/// Calls `proxy-status-counts`.
pub(crate) async fn sink_proxy_status_counts(
    instance: &log_sink::LogSink,
    store: &mut wasmtime::Store<HostState>,
    org_id: &str,
    since_ns: i64,
    until_ns: i64,
) -> Answer<Vec<sink_contract::ProxyCount>> {
    Ok(instance
        .infrapilot_plugin_sink()
        .call_proxy_status_counts(store, org_id, since_ns, until_ns)
        .await?
        .map(converted)
        .map_err(Into::into))
}

/// Calls `drop-before`.
pub(crate) async fn sink_drop_before(
    instance: &log_sink::LogSink,
    store: &mut wasmtime::Store<HostState>,
    org_id: &str,
    before_ns: i64,
) -> Answer<()> {
    Ok(instance
        .infrapilot_plugin_sink()
        .call_drop_before(store, org_id, before_ns)
        .await?
        .map_err(Into::into))
}

use crate::contract::policy_model as policy_contract;
use policy_engine::infrapilot::plugin::policy_model as policy_wit;

/// `policy-model` has types only.
impl policy_wit::Host for HostState {}

/// Links the imports of world `policy-engine`.
pub(crate) fn link_policy_engine(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    policy_engine::PolicyEngine::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)
}

impl From<policy_contract::Action> for policy_wit::Action {
    fn from(a: policy_contract::Action) -> Self {
        use policy_contract::Action as A;
        match a {
            A::ContainerCreate => policy_wit::Action::ContainerCreate,
            A::ContainerStart => policy_wit::Action::ContainerStart,
            A::ContainerStop => policy_wit::Action::ContainerStop,
            A::ContainerRestart => policy_wit::Action::ContainerRestart,
            A::ContainerRemove => policy_wit::Action::ContainerRemove,
            A::ContainerExec => policy_wit::Action::ContainerExec,
            A::ProxyCreate => policy_wit::Action::ProxyCreate,
            A::ProxyUpdate => policy_wit::Action::ProxyUpdate,
            A::ProxyDelete => policy_wit::Action::ProxyDelete,
            A::ProxyRollback => policy_wit::Action::ProxyRollback,
            A::ProxyReapply => policy_wit::Action::ProxyReapply,
            A::CertificateChange => policy_wit::Action::CertificateChange,
            A::ContainerRunning => policy_wit::Action::ContainerRunning,
        }
    }
}

impl From<&policy_contract::Mount> for policy_wit::Mount {
    fn from(m: &policy_contract::Mount) -> Self {
        use policy_contract::MountKind as K;
        policy_wit::Mount {
            kind: match m.kind {
                K::Bind => policy_wit::MountKind::Bind,
                K::Volume => policy_wit::MountKind::Volume,
                K::Tmpfs => policy_wit::MountKind::Tmpfs,
                K::Device => policy_wit::MountKind::Device,
                K::VolumesFrom => policy_wit::MountKind::VolumesFrom,
            },
            source: m.source.clone(),
            target: m.target.clone(),
            read_only: m.read_only,
        }
    }
}

impl From<&policy_contract::Container> for policy_wit::Container {
    fn from(c: &policy_contract::Container) -> Self {
        policy_wit::Container {
            name: c.name.clone(),
            image: c.image.clone(),
            user: c.user.clone(),
            runs_as_root: c.runs_as_root,
            privileged: c.privileged,
            capabilities: c.capabilities.clone(),
            all_capabilities: c.all_capabilities,
            host_namespaces: c.host_namespaces.clone(),
            joins_containers: c.joins_containers.clone(),
            seccomp_unconfined: c.seccomp_unconfined,
            apparmor_unconfined: c.apparmor_unconfined,
            selinux_disabled: c.selinux_disabled,
            system_paths_unconfined: c.system_paths_unconfined,
            mounts: c.mounts.iter().map(Into::into).collect(),
            restart_policy: c.restart_policy.clone(),
            healthcheck: c.healthcheck,
            labels: c.labels.clone(),
            created_at_unix_ms: c.created_at_unix_ms,
        }
    }
}

impl From<&policy_contract::Request> for policy_wit::Request {
    fn from(r: &policy_contract::Request) -> Self {
        policy_wit::Request {
            action: r.action.into(),
            actor: r.actor.clone(),
            actor_role: r.actor_role.clone(),
            node_id: r.node_id.clone(),
            node_name: r.node_name.clone(),
            node_labels: r.node_labels.clone(),
            container: r.container.as_ref().map(Into::into),
            command: r.command.clone(),
            proxy_hosts: r
                .proxy_hosts
                .iter()
                .map(|h| policy_wit::ProxyHost {
                    id: h.id.clone(),
                    domains: h.domains.clone(),
                    tls: h.tls,
                    redirect_http: h.redirect_http,
                    access_restricted: h.access_restricted,
                })
                .collect(),
            certificate: r.certificate.clone(),
            now_unix_ms: r.now_unix_ms,
        }
    }
}

impl From<&policy_contract::Policy> for policy_wit::Policy {
    fn from(p: &policy_contract::Policy) -> Self {
        policy_wit::Policy {
            id: p.id.clone(),
            name: p.name.clone(),
            policy_type: p.policy_type.clone(),
            conditions: p.conditions.clone(),
        }
    }
}

impl From<policy_wit::Finding> for policy_contract::Finding {
    fn from(f: policy_wit::Finding) -> Self {
        policy_contract::Finding {
            policy_id: f.policy_id,
            reasons: f.reasons,
        }
    }
}

impl From<policy_wit::PolicyType> for policy_contract::PolicyType {
    fn from(t: policy_wit::PolicyType) -> Self {
        policy_contract::PolicyType {
            id: t.id,
            title: t.title,
            description: t.description,
            conditions_schema: t.conditions_schema,
        }
    }
}

/// Calls `policy-types`.
pub(crate) async fn engine_policy_types(
    instance: &policy_engine::PolicyEngine,
    store: &mut wasmtime::Store<HostState>,
) -> Answer<Vec<policy_contract::PolicyType>> {
    Ok(Ok(converted(
        instance
            .infrapilot_plugin_engine()
            .call_policy_types(store)
            .await?,
    )))
}

/// Calls `check`.
pub(crate) async fn engine_check(
    instance: &policy_engine::PolicyEngine,
    store: &mut wasmtime::Store<HostState>,
    policy: &policy_contract::Policy,
) -> Answer<()> {
    Ok(instance
        .infrapilot_plugin_engine()
        .call_check(store, &policy.into())
        .await?
        .map_err(Into::into))
}

/// Calls `prepare`: the policies read into a set (a resource of the instance).
pub(crate) async fn engine_prepare(
    instance: &policy_engine::PolicyEngine,
    store: &mut wasmtime::Store<HostState>,
    policies: &[policy_contract::Policy],
) -> Answer<wasmtime::component::ResourceAny> {
    let policies: Vec<policy_wit::Policy> = policies.iter().map(Into::into).collect();
    Ok(instance
        .infrapilot_plugin_engine()
        .call_prepare(store, &policies)
        .await?
        .map_err(Into::into))
}

/// Calls `policy-set.evaluate` on a set `prepare` made.
pub(crate) async fn engine_set_evaluate(
    instance: &policy_engine::PolicyEngine,
    store: &mut wasmtime::Store<HostState>,
    set: wasmtime::component::ResourceAny,
    request: &policy_contract::Request,
) -> Answer<Vec<policy_contract::Finding>> {
    Ok(instance
        .infrapilot_plugin_engine()
        .policy_set()
        .call_evaluate(store, set, &request.into())
        .await?
        .map(converted)
        .map_err(Into::into))
}
