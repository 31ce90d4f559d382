//! The host's policy engines: every enabled, entitled `policy-engine` plugin, with the policy
//! types each declares ([`PolicyEngines`]). A policy's type names its engine: the first engine
//! (by plugin id) that declares the type evaluates it. Which policies apply and what a finding
//! does is the caller's (`host/policy`); this is the plumbing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use infrapilot_plugin_runtime::contract::policy_model::{Finding, Policy, PolicyType, Request};
use infrapilot_plugin_runtime::{HookError, Invocation, PolicyEnginePlugin, World};
use infrapilot_store::OrgId;

use crate::{PluginHost, PluginHostError};

/// One loaded engine and the types it declares.
#[derive(Clone)]
pub struct LoadedEngine {
    pub plugin_id: String,
    pub plugin: PolicyEnginePlugin,
    pub types: Arc<Vec<PolicyType>>,
}

/// Why an engine could not answer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Host(#[from] PluginHostError),
    #[error("policy engine {plugin}: {error}")]
    Hook { plugin: String, error: HookError },
}

/// The types each engine declared, by plugin id and component hash.
type DeclaredTypes = HashMap<(String, String), Arc<Vec<PolicyType>>>;

/// The host's policy engines, with their declared types cached per component.
#[derive(Clone)]
pub struct PolicyEngines {
    host: PluginHost,
    types: Arc<Mutex<DeclaredTypes>>,
}

impl PolicyEngines {
    pub fn new(host: PluginHost) -> PolicyEngines {
        PolicyEngines {
            host,
            types: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn invocation(&self, org_id: &OrgId) -> Invocation {
        Invocation {
            settings: serde_json::json!({}),
            secrets: HashMap::new(),
            services: self.host.services(org_id),
        }
    }

    /// The enabled, entitled engines by plugin id, each with its types. An engine that cannot
    /// be loaded or list its types is left out and logged (its policies then have no engine:
    /// the caller fails closed on them).
    pub async fn loaded(&self) -> Result<Vec<LoadedEngine>, PluginHostError> {
        let mut infos: Vec<_> = self
            .host
            .list()
            .await?
            .into_iter()
            .filter(|p| p.world == World::PolicyEngine.as_str() && p.enabled && p.entitled)
            .collect();
        infos.sort_by(|a, b| a.id.cmp(&b.id));
        let mut engines = Vec::with_capacity(infos.len());
        for info in infos {
            let plugin = match self.host.plugin::<PolicyEnginePlugin>(&info.id).await {
                Ok((plugin, _)) => plugin,
                Err(e) => {
                    tracing::error!(plugin = info.id, error = %e, "a policy engine cannot be loaded");
                    continue;
                }
            };
            let key = (info.id.clone(), info.component_sha256.clone());
            let cached = self
                .types
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned();
            let types = match cached {
                Some(types) => types,
                None => match plugin
                    .policy_types(&self.invocation(&OrgId::default_org()))
                    .await
                {
                    Ok(types) => {
                        let types = Arc::new(types);
                        let mut cache = self.types.lock().unwrap_or_else(|e| e.into_inner());
                        cache.retain(|(id, _), _| *id != info.id);
                        cache.insert(key, types.clone());
                        types
                    }
                    Err(e) => {
                        tracing::error!(plugin = info.id, error = %e, "a policy engine does not list its policy types");
                        continue;
                    }
                },
            };
            engines.push(LoadedEngine {
                plugin_id: info.id,
                plugin,
                types,
            });
        }
        Ok(engines)
    }

    /// The engine that evaluates `policy_type`, among `engines`.
    pub fn engine_of<'a>(
        engines: &'a [LoadedEngine],
        policy_type: &str,
    ) -> Option<&'a LoadedEngine> {
        engines
            .iter()
            .find(|e| e.types.iter().any(|t| t.id == policy_type))
    }

    /// Asks `engine` to check a policy before it is saved.
    pub async fn check(
        &self,
        org_id: &OrgId,
        engine: &LoadedEngine,
        policy: &Policy,
    ) -> Result<(), EngineError> {
        engine
            .plugin
            .check(&self.invocation(org_id), policy)
            .await
            .map_err(|error| EngineError::Hook {
                plugin: engine.plugin_id.clone(),
                error,
            })
    }

    /// The policies of `policies` (all of `engine`'s types) that `request` breaks.
    pub async fn evaluate(
        &self,
        org_id: &OrgId,
        engine: &LoadedEngine,
        policies: &[Policy],
        request: &Request,
    ) -> Result<Vec<Finding>, EngineError> {
        engine
            .plugin
            .evaluate(&self.invocation(org_id), policies, request)
            .await
            .map_err(|error| EngineError::Hook {
                plugin: engine.plugin_id.clone(),
                error,
            })
    }
}
