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
            pkce_verifier: r.pkce_verifier.clone(),
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
        }
    }
}

/// Calls `begin-login`.
pub(crate) async fn sso_begin_login(
    instance: &sso_provider::SsoProvider,
    store: &mut wasmtime::Store<HostState>,
    request: &called::LoginRequest,
) -> wasmtime::Result<Result<called::LoginRedirect, called::PluginError>> {
    Ok(instance
        .infrapilot_plugin_sso()
        .call_begin_login(store, &request.into())
        .await?
        .map(|r| called::LoginRedirect { url: r.url })
        .map_err(Into::into))
}

/// Calls `complete-login`.
pub(crate) async fn sso_complete_login(
    instance: &sso_provider::SsoProvider,
    store: &mut wasmtime::Store<HostState>,
    callback: &called::LoginCallback,
) -> wasmtime::Result<Result<called::Identity, called::PluginError>> {
    let callback = sso_wit::LoginCallback {
        params: callback.params.clone(),
        request: (&callback.request).into(),
    };
    Ok(instance
        .infrapilot_plugin_sso()
        .call_complete_login(store, &callback)
        .await?
        .map(Into::into)
        .map_err(Into::into))
}

/// Calls `check-password`.
pub(crate) async fn sso_check_password(
    instance: &sso_provider::SsoProvider,
    store: &mut wasmtime::Store<HostState>,
    username: &str,
    password: &str,
) -> wasmtime::Result<Result<called::Identity, called::PluginError>> {
    Ok(instance
        .infrapilot_plugin_sso()
        .call_check_password(store, username, password)
        .await?
        .map(Into::into)
        .map_err(Into::into))
}
