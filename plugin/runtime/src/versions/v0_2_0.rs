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

use alert_channel::infrapilot::plugin as wit;
use proxy_backend::infrapilot::plugin::proxy_model as proxy_wit;
use sso_provider::infrapilot::plugin::sso_model as sso_wit;

super::contract_conversions!();
super::host_adapters!();
super::world_calls!((
    infrapilot_plugin_types::manifest::World::SsoProvider,
    link_sso_provider
));

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
