//! World `sso-provider` (from contract 0.2.0): its handle ([`SsoProviderPlugin`]), and the
//! dispatch of its calls to the contract version the component was built against. A provider
//! reports an identity; the host alone turns it into a person, a membership and a role.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::contract::{Identity, LoginCallback, LoginRedirect, LoginRequest, PluginError};
use crate::runtime::{HookError, HostState, Invocation, PluginCore, WorldPlugin};
use crate::versions::ContractVersion;
use infrapilot_plugin_types::manifest::World;

/// A loaded single sign-on provider, ready to be called concurrently.
#[derive(Clone)]
pub struct SsoProviderPlugin {
    core: PluginCore,
    pre: ProviderPre,
}

impl SsoProviderPlugin {
    /// The URL that starts `request`'s login at the identity provider.
    pub async fn begin_login(
        &self,
        invocation: &Invocation,
        request: &LoginRequest,
    ) -> Result<LoginRedirect, HookError> {
        let mut store = self.core.store(invocation);
        let outcome = tokio::time::timeout(self.core.call_deadline(), async {
            let instance = self.pre.instantiate(&mut store).await?;
            instance.begin_login(&mut store, request).await
        })
        .await;
        let redirect = self.core.settle(&store, outcome)?;
        self.core.check_output(redirect.url.len())?;
        Ok(redirect)
    }

    /// The identity in the identity provider's answer.
    pub async fn complete_login(
        &self,
        invocation: &Invocation,
        callback: &LoginCallback,
    ) -> Result<Identity, HookError> {
        let mut store = self.core.store(invocation);
        let outcome = tokio::time::timeout(self.core.call_deadline(), async {
            let instance = self.pre.instantiate(&mut store).await?;
            instance.complete_login(&mut store, callback).await
        })
        .await;
        self.check_identity(self.core.settle(&store, outcome)?)
    }

    /// The identity a directory vouches for with this username and password.
    pub async fn check_password(
        &self,
        invocation: &Invocation,
        username: &str,
        password: &str,
    ) -> Result<Identity, HookError> {
        let mut store = self.core.store(invocation);
        let outcome = tokio::time::timeout(self.core.call_deadline(), async {
            let instance = self.pre.instantiate(&mut store).await?;
            instance
                .check_password(&mut store, username, password)
                .await
        })
        .await;
        self.check_identity(self.core.settle(&store, outcome)?)
    }

    /// An identity is bounded like any plugin output.
    fn check_identity(&self, identity: Identity) -> Result<Identity, HookError> {
        let size = identity.subject.len()
            + identity.issuer.len()
            + identity.email.as_ref().map_or(0, String::len)
            + identity.name.as_ref().map_or(0, String::len)
            + identity.groups.iter().map(String::len).sum::<usize>();
        self.core.check_output(size)?;
        Ok(identity)
    }
}

impl crate::runtime::sealed::Sealed for SsoProviderPlugin {}

impl WorldPlugin for SsoProviderPlugin {
    const WORLD: World = World::SsoProvider;

    fn from_linked(
        core: PluginCore,
        version: ContractVersion,
        pre: InstancePre<HostState>,
    ) -> wasmtime::Result<SsoProviderPlugin> {
        Ok(SsoProviderPlugin {
            core,
            pre: ProviderPre::new(version, pre)?,
        })
    }
}

/// A linked provider of some version (the world exists from 0.2.0).
#[derive(Clone)]
pub(crate) enum ProviderPre {
    V0_2_0(crate::versions::v0_2_0::sso_provider::SsoProviderPre<HostState>),
}

/// An instance of a provider of some version.
pub(crate) enum Provider {
    V0_2_0(crate::versions::v0_2_0::sso_provider::SsoProvider),
}

impl ProviderPre {
    pub(crate) fn new(
        version: ContractVersion,
        pre: InstancePre<HostState>,
    ) -> wasmtime::Result<ProviderPre> {
        match version {
            ContractVersion::V0_2_0 => Ok(ProviderPre::V0_2_0(
                crate::versions::v0_2_0::sso_provider::SsoProviderPre::new(pre)?,
            )),
            other => Err(wasmtime::format_err!(
                "contract {other} has no world sso-provider"
            )),
        }
    }

    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Provider> {
        Ok(match self {
            ProviderPre::V0_2_0(pre) => Provider::V0_2_0(pre.instantiate_async(store).await?),
        })
    }
}

impl Provider {
    pub(crate) async fn begin_login(
        &self,
        store: &mut Store<HostState>,
        request: &LoginRequest,
    ) -> wasmtime::Result<Result<LoginRedirect, PluginError>> {
        match self {
            Provider::V0_2_0(instance) => {
                crate::versions::v0_2_0::sso_begin_login(instance, store, request).await
            }
        }
    }

    pub(crate) async fn complete_login(
        &self,
        store: &mut Store<HostState>,
        callback: &LoginCallback,
    ) -> wasmtime::Result<Result<Identity, PluginError>> {
        match self {
            Provider::V0_2_0(instance) => {
                crate::versions::v0_2_0::sso_complete_login(instance, store, callback).await
            }
        }
    }

    pub(crate) async fn check_password(
        &self,
        store: &mut Store<HostState>,
        username: &str,
        password: &str,
    ) -> wasmtime::Result<Result<Identity, PluginError>> {
        match self {
            Provider::V0_2_0(instance) => {
                crate::versions::v0_2_0::sso_check_password(instance, store, username, password)
                    .await
            }
        }
    }
}
