//! World `alert-channel`: its handle ([`AlertChannelPlugin`]), and the dispatch of its calls to
//! the contract version the component was built against.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::contract::{Alert, Delivery, PluginError};
use crate::runtime::{CallReport, HookError, HostState, Invocation, PluginCore, WorldPlugin};
use crate::versions::ContractVersion;
use infrapilot_plugin_types::capabilities::Capabilities;
use infrapilot_plugin_types::manifest::World;

/// A loaded alert channel, ready to be called concurrently.
#[derive(Clone)]
pub struct AlertChannelPlugin {
    core: PluginCore,
    pre: ChannelPre,
}

impl AlertChannelPlugin {
    pub fn capabilities(&self) -> &Capabilities {
        self.core.capabilities()
    }

    /// The contract version the component was built against.
    pub fn contract_version(&self) -> ContractVersion {
        self.pre.version()
    }

    /// An instance kept for several calls (one `Store`, one deadline for all of them): for
    /// measuring the cost of a call apart from instantiation. A trap ends the session; results
    /// are not bounded like [`AlertChannelPlugin::deliver`]'s, so hooks use that instead.
    pub async fn session(&self, invocation: &Invocation) -> Result<ChannelSession, HookError> {
        let mut store = self.core.store(invocation);
        match self.pre.instantiate(&mut store).await {
            Ok(instance) => Ok(ChannelSession { store, instance }),
            Err(e) => Err(HookError::Instantiate(format!("{e:#}"))),
        }
    }

    /// Runs `validate` (settings checks beyond the schema).
    pub async fn validate(&self, invocation: &Invocation) -> Result<CallReport, HookError> {
        let mut store = self.core.store(invocation);
        let outcome = tokio::time::timeout(self.core.call_deadline(), async {
            let instance = self.pre.instantiate(&mut store).await?;
            instance.validate(&mut store).await
        })
        .await;
        self.core.settle(&store, outcome)?;
        Ok(PluginCore::report(&store))
    }

    /// Delivers one alert.
    pub async fn deliver(
        &self,
        invocation: &Invocation,
        alert: &Alert,
    ) -> Result<(Delivery, CallReport), HookError> {
        let mut store = self.core.store(invocation);
        let outcome = tokio::time::timeout(self.core.call_deadline(), async {
            let instance = self.pre.instantiate(&mut store).await?;
            instance.deliver(&mut store, alert).await
        })
        .await;
        let delivery = self.core.settle(&store, outcome)?;
        self.core.check_output(delivery.detail.len())?;
        Ok((delivery, PluginCore::report(&store)))
    }
}

impl crate::runtime::sealed::Sealed for AlertChannelPlugin {}

impl WorldPlugin for AlertChannelPlugin {
    const WORLD: World = World::AlertChannel;

    fn from_linked(
        core: PluginCore,
        version: ContractVersion,
        pre: InstancePre<HostState>,
    ) -> wasmtime::Result<AlertChannelPlugin> {
        Ok(AlertChannelPlugin {
            core,
            pre: ChannelPre::new(version, pre)?,
        })
    }
}

/// A live instance of an alert channel (see [`AlertChannelPlugin::session`]).
pub struct ChannelSession {
    store: Store<HostState>,
    instance: Channel,
}

impl ChannelSession {
    /// Calls `validate` on the live instance.
    pub async fn validate(&mut self) -> Result<Result<(), PluginError>, String> {
        self.instance
            .validate(&mut self.store)
            .await
            .map_err(|e| format!("{e:#}"))
    }

    /// Calls `deliver` on the live instance.
    pub async fn deliver(
        &mut self,
        alert: &Alert,
    ) -> Result<Result<Delivery, PluginError>, String> {
        self.instance
            .deliver(&mut self.store, alert)
            .await
            .map_err(|e| format!("{e:#}"))
    }
}

/// A linked alert channel of some version.
#[derive(Clone)]
pub(crate) enum ChannelPre {
    V0_1_0(crate::versions::v0_1_0::alert_channel::AlertChannelPre<HostState>),
    V0_2_0(crate::versions::v0_2_0::alert_channel::AlertChannelPre<HostState>),
}

/// An instance of an alert channel of some version.
pub(crate) enum Channel {
    V0_1_0(crate::versions::v0_1_0::alert_channel::AlertChannel),
    V0_2_0(crate::versions::v0_2_0::alert_channel::AlertChannel),
}

impl ChannelPre {
    pub(crate) fn new(
        version: ContractVersion,
        pre: wasmtime::component::InstancePre<HostState>,
    ) -> wasmtime::Result<ChannelPre> {
        Ok(match version {
            ContractVersion::V0_1_0 => ChannelPre::V0_1_0(
                crate::versions::v0_1_0::alert_channel::AlertChannelPre::new(pre)?,
            ),
            ContractVersion::V0_2_0 => ChannelPre::V0_2_0(
                crate::versions::v0_2_0::alert_channel::AlertChannelPre::new(pre)?,
            ),
        })
    }

    pub(crate) fn version(&self) -> ContractVersion {
        match self {
            ChannelPre::V0_1_0(_) => ContractVersion::V0_1_0,
            ChannelPre::V0_2_0(_) => ContractVersion::V0_2_0,
        }
    }

    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Channel> {
        Ok(match self {
            ChannelPre::V0_1_0(pre) => Channel::V0_1_0(pre.instantiate_async(store).await?),
            ChannelPre::V0_2_0(pre) => Channel::V0_2_0(pre.instantiate_async(store).await?),
        })
    }
}

impl Channel {
    pub(crate) async fn validate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        match self {
            Channel::V0_1_0(instance) => {
                crate::versions::v0_1_0::channel_validate(instance, store).await
            }
            Channel::V0_2_0(instance) => {
                crate::versions::v0_2_0::channel_validate(instance, store).await
            }
        }
    }

    pub(crate) async fn deliver(
        &self,
        store: &mut Store<HostState>,
        alert: &Alert,
    ) -> wasmtime::Result<Result<Delivery, PluginError>> {
        match self {
            Channel::V0_1_0(instance) => {
                crate::versions::v0_1_0::channel_deliver(instance, store, alert).await
            }
            Channel::V0_2_0(instance) => {
                crate::versions::v0_2_0::channel_deliver(instance, store, alert).await
            }
        }
    }
}
