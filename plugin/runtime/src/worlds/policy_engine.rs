//! World `policy-engine` (from contract 0.2.0): its handle ([`PolicyEnginePlugin`]) and the
//! dispatch of its calls to the contract version the component was built against.
//!
//! Unlike the other worlds, an engine's instances are kept warm: a policy decision sits in front
//! of every container and proxy action, and a fresh instance per call would cost more than the
//! evaluation. An instance that answered is put back (at most [`limits::IDLE_INSTANCES`]); one
//! that failed in any way (a trap, the deadline, an error) is thrown away. Each warm instance
//! keeps the last set of policies it prepared (`prepare`, a `policy-set` resource): asked again
//! with the same policies it evaluates with that set, so a decision hands the instance only the
//! request; other policies replace the set. What an engine answers is checked: a finding must
//! name a policy it was given, with bounded reasons, or the answer is a broken plugin's
//! (`HookError::BadOutput`), and the host fails closed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use wasmtime::Store;
use wasmtime::component::{InstancePre, ResourceAny};

use crate::contract::PluginError;
use crate::contract::policy_model::{Finding, Policy, PolicyType, Request};
use crate::runtime::{HookError, HostState, Invocation, PluginCore, WorldPlugin};
use crate::versions::ContractVersion;
use infrapilot_plugin_types::manifest::World;

/// What an engine may answer, at most.
pub mod limits {
    /// Reasons of one finding.
    pub const REASONS: usize = 32;
    /// Bytes of one reason.
    pub const REASON_BYTES: usize = 1024;
    /// Policy types of one engine.
    pub const POLICY_TYPES: usize = 64;
    /// Bytes of one policy type's conditions schema.
    pub const SCHEMA_BYTES: usize = 64 << 10;
    /// Warm instances kept per loaded engine.
    pub const IDLE_INSTANCES: usize = 4;
}

/// A loaded policy engine, ready to be called concurrently.
#[derive(Clone)]
pub struct PolicyEnginePlugin {
    core: PluginCore,
    pre: EnginePre,
    idle: Arc<Mutex<Vec<Warm>>>,
}

/// An instance that answered its last call, with its store and the set it prepared last.
struct Warm {
    store: Store<HostState>,
    instance: Engine,
    prepared: Option<Prepared>,
}

/// A `policy-set` of an instance, and the policies it was prepared from.
struct Prepared {
    policies: Vec<Policy>,
    set: ResourceAny,
}

impl PolicyEnginePlugin {
    /// The kinds of policy the engine evaluates.
    pub async fn policy_types(
        &self,
        invocation: &Invocation,
    ) -> Result<Vec<PolicyType>, HookError> {
        let types = self
            .call(
                invocation,
                None,
                async |instance, store, _| instance.policy_types(store).await,
                |_| true,
            )
            .await?;
        if types.len() > limits::POLICY_TYPES {
            return Err(HookError::BadOutput(format!(
                "{} policy types, more than {}",
                types.len(),
                limits::POLICY_TYPES
            )));
        }
        if let Some(t) = types.iter().find(|t| {
            t.id.is_empty()
                || t.id.len() > 64
                || t.conditions_schema.len() > limits::SCHEMA_BYTES
                || t.title.len() > 256
                || t.description.len() > 4096
        }) {
            return Err(HookError::BadOutput(format!(
                "policy type {:?} is out of bounds (id 1–64 bytes, title 256, description 4096, schema {} bytes)",
                t.id.chars().take(64).collect::<String>(),
                limits::SCHEMA_BYTES
            )));
        }
        Ok(types)
    }

    /// Checks a policy before it is saved; `HookError::Plugin(InvalidSettings)` names the field.
    pub async fn check(&self, invocation: &Invocation, policy: &Policy) -> Result<(), HookError> {
        self.call(
            invocation,
            None,
            async |instance, store, _| instance.check(store, policy).await,
            |_| true,
        )
        .await
    }

    /// The policies of `policies` that `request` breaks: evaluated with the instance's prepared
    /// set when it was prepared from the same policies, else with a set prepared now (which
    /// replaces it).
    pub async fn evaluate(
        &self,
        invocation: &Invocation,
        policies: &[Policy],
        request: &Request,
    ) -> Result<Vec<Finding>, HookError> {
        let findings = self
            .call(
                invocation,
                Some(policies),
                async |instance, store, prepared| {
                    let set = match prepared {
                        Some(p) if p.policies == policies => p.set,
                        _ => {
                            if let Some(old) = prepared.take() {
                                old.set.resource_drop_async(&mut *store).await?;
                            }
                            let set = match instance.prepare(store, policies).await? {
                                Ok(set) => set,
                                Err(e) => return Ok(Err(e)),
                            };
                            *prepared = Some(Prepared {
                                policies: policies.to_vec(),
                                set,
                            });
                            set
                        }
                    };
                    Ok(instance
                        .set_evaluate(store, set, request)
                        .await?
                        .map(|findings| check_findings(policies, &findings).map(|()| findings)))
                },
                // An instance that answered out of bounds is not kept.
                Result::is_ok,
            )
            .await?;
        findings.map_err(HookError::BadOutput)
    }

    /// One call in a warm instance (or a new one) under the hook deadline: preferably one whose
    /// set was prepared from `prefer`. The instance goes back to the idle list (with its
    /// prepared set) only when the call answered without an error and `healthy` holds of the
    /// answer.
    async fn call<T>(
        &self,
        invocation: &Invocation,
        prefer: Option<&[Policy]>,
        run: impl AsyncFnOnce(
            &Engine,
            &mut Store<HostState>,
            &mut Option<Prepared>,
        ) -> wasmtime::Result<Result<T, PluginError>>,
        healthy: impl Fn(&T) -> bool,
    ) -> Result<T, HookError> {
        let warm = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let ready = prefer.and_then(|policies| {
                idle.iter()
                    .rposition(|w| w.prepared.as_ref().is_some_and(|p| p.policies == policies))
            });
            match ready {
                Some(i) => Some(idle.remove(i)),
                None => idle.pop(),
            }
        };
        let (mut store, instance, mut prepared) = match warm {
            Some(Warm {
                mut store,
                instance,
                prepared,
            }) => {
                self.core.rearm(&mut store);
                // This call's host services (its organisation's log), not the last one's.
                store.data_mut().services = invocation.services.clone();
                (store, Some(instance), prepared)
            }
            None => (self.core.store(invocation), None, None),
        };
        // No wall-clock timer around the call: an engine imports nothing that waits (only
        // `log`), so the epoch deadline the store carries stops it in time — and a timer per
        // decision costs more than the evaluation's own p99 allows.
        let outcome = async {
            let instance = match instance {
                Some(instance) => instance,
                None => self.pre.instantiate(&mut store).await?,
            };
            let answer = run(&instance, &mut store, &mut prepared).await;
            Ok::<_, wasmtime::Error>((instance, answer))
        }
        .await;
        match outcome {
            Ok((instance, Ok(Ok(value)))) => {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                if healthy(&value) && idle.len() < limits::IDLE_INSTANCES {
                    idle.push(Warm {
                        store,
                        instance,
                        prepared,
                    });
                }
                Ok(value)
            }
            Ok((_, answer)) => self.core.settle(&store, Ok(answer)),
            Err(e) => self.core.settle::<T>(&store, Ok(Err(e))),
        }
    }
}

/// Each finding names a policy it was given, once, with bounded reasons.
fn check_findings(policies: &[Policy], findings: &[Finding]) -> Result<(), String> {
    let given: HashSet<&str> = policies.iter().map(|p| p.id.as_str()).collect();
    let mut seen = HashSet::new();
    for f in findings {
        if !given.contains(f.policy_id.as_str()) {
            return Err(format!(
                "a finding about policy {:?}, which it was not given",
                f.policy_id.chars().take(64).collect::<String>()
            ));
        }
        if !seen.insert(f.policy_id.as_str()) {
            return Err(format!("two findings about policy {}", f.policy_id));
        }
        if f.reasons.len() > limits::REASONS
            || f.reasons.iter().any(|r| r.len() > limits::REASON_BYTES)
        {
            return Err(format!(
                "the finding about policy {} has more than {} reasons or one over {} bytes",
                f.policy_id,
                limits::REASONS,
                limits::REASON_BYTES
            ));
        }
    }
    Ok(())
}

impl crate::runtime::sealed::Sealed for PolicyEnginePlugin {}

impl WorldPlugin for PolicyEnginePlugin {
    const WORLD: World = World::PolicyEngine;

    fn from_linked(
        core: PluginCore,
        version: ContractVersion,
        pre: InstancePre<HostState>,
    ) -> wasmtime::Result<PolicyEnginePlugin> {
        Ok(PolicyEnginePlugin {
            core,
            pre: EnginePre::new(version, pre)?,
            idle: Arc::new(Mutex::new(Vec::new())),
        })
    }
}

/// A linked engine of some version (the world exists from 0.2.0).
#[derive(Clone)]
pub(crate) enum EnginePre {
    V0_2_0(crate::versions::v0_2_0::policy_engine::PolicyEnginePre<HostState>),
}

/// An instance of an engine of some version.
pub(crate) enum Engine {
    V0_2_0(crate::versions::v0_2_0::policy_engine::PolicyEngine),
}

impl EnginePre {
    pub(crate) fn new(
        version: ContractVersion,
        pre: InstancePre<HostState>,
    ) -> wasmtime::Result<EnginePre> {
        match version {
            ContractVersion::V0_2_0 => Ok(EnginePre::V0_2_0(
                crate::versions::v0_2_0::policy_engine::PolicyEnginePre::new(pre)?,
            )),
            other => Err(wasmtime::format_err!(
                "contract {other} has no world policy-engine"
            )),
        }
    }

    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Engine> {
        Ok(match self {
            EnginePre::V0_2_0(pre) => Engine::V0_2_0(pre.instantiate_async(store).await?),
        })
    }
}

use crate::versions::v0_2_0 as v2;

type Answer<T> = wasmtime::Result<Result<T, PluginError>>;

impl Engine {
    pub(crate) async fn policy_types(
        &self,
        store: &mut Store<HostState>,
    ) -> Answer<Vec<PolicyType>> {
        match self {
            Engine::V0_2_0(i) => v2::engine_policy_types(i, store).await,
        }
    }

    pub(crate) async fn check(&self, store: &mut Store<HostState>, policy: &Policy) -> Answer<()> {
        match self {
            Engine::V0_2_0(i) => v2::engine_check(i, store, policy).await,
        }
    }

    pub(crate) async fn prepare(
        &self,
        store: &mut Store<HostState>,
        policies: &[Policy],
    ) -> Answer<ResourceAny> {
        match self {
            Engine::V0_2_0(i) => v2::engine_prepare(i, store, policies).await,
        }
    }

    pub(crate) async fn set_evaluate(
        &self,
        store: &mut Store<HostState>,
        set: ResourceAny,
        request: &Request,
    ) -> Answer<Vec<Finding>> {
        match self {
            Engine::V0_2_0(i) => v2::engine_set_evaluate(i, store, set, request).await,
        }
    }
}
