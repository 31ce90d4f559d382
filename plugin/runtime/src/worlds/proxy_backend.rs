//! World `proxy-backend`: its handle ([`ProxyBackendPlugin`]), and the dispatch of its calls to
//! the contract version the component was built against.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::contract::{PluginError, ProxyHost, RenderedFile};
use crate::runtime::{HookError, HostState, Invocation, PluginCore, WorldPlugin};
use crate::versions::ContractVersion;
use infrapilot_plugin_types::manifest::World;

/// A loaded proxy backend, ready to be called concurrently. Rendering is pure: the plugin gets
/// no settings and the grant of its manifest (normally `log` only).
#[derive(Clone)]
pub struct ProxyBackendPlugin {
    core: PluginCore,
    pre: BackendPre,
}

impl ProxyBackendPlugin {
    /// Renders each host (an error excludes that host only) and the shared parts, in one
    /// instance under one deadline.
    pub async fn render(
        &self,
        invocation: &Invocation,
        hosts: &[ProxyHost],
        revision: u64,
    ) -> Result<Rendered, HookError> {
        let mut store = self.core.store(invocation);
        let outcome = tokio::time::timeout(self.core.call_deadline(), async {
            let instance = self.pre.instantiate(&mut store).await?;
            let outcome = instance.render(&mut store, hosts, revision).await?;
            wasmtime::Result::Ok(outcome.shared.map(|shared| (outcome.per_host, shared)))
        })
        .await;
        let (per_host, shared) = self.core.settle(&store, outcome)?;
        let mut total = 0usize;
        let mut hosts_out = Vec::with_capacity(per_host.len());
        for result in per_host {
            match result {
                Ok(files) => {
                    total += files.iter().map(|f| f.contents.len()).sum::<usize>();
                    hosts_out.push(Ok(files));
                }
                Err(e) => hosts_out.push(Err(HookError::Plugin(self.core.bounded(e)))),
            }
        }
        total += shared.iter().map(|f| f.contents.len()).sum::<usize>();
        // Rendered configuration may be large (a thousand hosts): bounded per host instead.
        self.core.check_output(total / hosts.len().max(1))?;
        Ok(Rendered {
            hosts: hosts_out,
            shared,
        })
    }
}

/// What a proxy backend rendered: per host (in input order) its files or why it was excluded,
/// and the shared files.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub hosts: Vec<Result<Vec<RenderedFile>, HookError>>,
    pub shared: Vec<RenderedFile>,
}

impl crate::runtime::sealed::Sealed for ProxyBackendPlugin {}

impl WorldPlugin for ProxyBackendPlugin {
    const WORLD: World = World::ProxyBackend;

    fn from_linked(
        core: PluginCore,
        version: ContractVersion,
        pre: InstancePre<HostState>,
    ) -> wasmtime::Result<ProxyBackendPlugin> {
        Ok(ProxyBackendPlugin {
            core,
            pre: BackendPre::new(version, pre)?,
        })
    }
}

/// A linked proxy backend of some version.
#[derive(Clone)]
pub(crate) enum BackendPre {
    V0_1_0(crate::versions::v0_1_0::proxy_backend::ProxyBackendPre<HostState>),
    V0_2_0(crate::versions::v0_2_0::proxy_backend::ProxyBackendPre<HostState>),
}

/// An instance of a proxy backend of some version.
pub(crate) enum Backend {
    V0_1_0(crate::versions::v0_1_0::proxy_backend::ProxyBackend),
    V0_2_0(crate::versions::v0_2_0::proxy_backend::ProxyBackend),
}

impl BackendPre {
    pub(crate) fn new(
        version: ContractVersion,
        pre: wasmtime::component::InstancePre<HostState>,
    ) -> wasmtime::Result<BackendPre> {
        Ok(match version {
            ContractVersion::V0_1_0 => BackendPre::V0_1_0(
                crate::versions::v0_1_0::proxy_backend::ProxyBackendPre::new(pre)?,
            ),
            ContractVersion::V0_2_0 => BackendPre::V0_2_0(
                crate::versions::v0_2_0::proxy_backend::ProxyBackendPre::new(pre)?,
            ),
        })
    }

    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Backend> {
        Ok(match self {
            BackendPre::V0_1_0(pre) => Backend::V0_1_0(pre.instantiate_async(store).await?),
            BackendPre::V0_2_0(pre) => Backend::V0_2_0(pre.instantiate_async(store).await?),
        })
    }
}

/// What a backend's hooks returned: per host its files or its error, and the shared files.
pub(crate) struct RenderOutcome {
    pub per_host: Vec<Result<Vec<RenderedFile>, PluginError>>,
    pub shared: Result<Vec<RenderedFile>, PluginError>,
}

impl Backend {
    pub(crate) async fn render(
        &self,
        store: &mut Store<HostState>,
        hosts: &[ProxyHost],
        revision: u64,
    ) -> wasmtime::Result<RenderOutcome> {
        match self {
            Backend::V0_1_0(instance) => {
                crate::versions::v0_1_0::backend_render(instance, store, hosts, revision).await
            }
            Backend::V0_2_0(instance) => {
                crate::versions::v0_2_0::backend_render(instance, store, hosts, revision).await
            }
        }
    }
}
