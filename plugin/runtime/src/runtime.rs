//! The wasmtime engine and the lifecycle of one hook call.
//!
//! One [`Runtime`] per host: a single `Engine` with the pooling allocator and epoch interruption
//! (a thread bumps the epoch every 10 ms), compiled components cached on disk under
//! `<sha256 of the component>-<engine compatibility hash>.cwasm`, and per plugin an `InstancePre`
//! so a call costs one instantiation from the pool. Each call gets a fresh `Store` with its
//! deadline (epoch ticks plus a wall-clock timeout around host calls) and its memory limit; the
//! store is dropped afterwards, so a trap never poisons the next call.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use crate::contract::PluginError;
use crate::services::HostServices;
use crate::versions::{ContractVersion, WorldLinkers};
use infrapilot_plugin_types::capabilities::Capabilities;
use infrapilot_plugin_types::manifest::{Manifest, World};

/// How often the epoch advances: the granularity of deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-call limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock time for one hook, host calls included.
    pub hook_deadline: Duration,
    /// Linear memory per instance.
    pub memory_bytes: usize,
    /// Log lines kept per call; the rest are counted and dropped.
    pub max_log_lines: usize,
    /// Largest string a hook may return (a delivery detail, a rendered file …).
    pub max_output_bytes: usize,
    /// Ceiling of one outbound HTTP exchange.
    pub http_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            hook_deadline: Duration::from_secs(15),
            memory_bytes: 64 << 20,
            max_log_lines: 200,
            max_output_bytes: 256 << 10,
            http_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub limits: Limits,
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// Instances that may run at once (pool size).
    pub max_instances: u32,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            limits: Limits::default(),
            cache_dir: None,
            max_instances: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("plugin engine: {0}")]
    Engine(String),
    #[error("the component is not valid: {0}")]
    InvalidComponent(String),
    #[error("the component does not fit world {world}: {reason}")]
    WorldMismatch { world: &'static str, reason: String },
    #[error("the component does not fit its manifest: {0}")]
    VersionMismatch(String),
}

/// Why a hook call did not produce a result. The message is meant for the operator.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum HookError {
    /// The plugin returned an expected error.
    #[error("{}", plugin_error_text(.0))]
    Plugin(PluginError),
    #[error("the plugin ran past its deadline of {} ms and was stopped", .limit.as_millis())]
    Deadline { limit: Duration },
    #[error("the plugin exceeded its memory limit of {} MiB and was stopped", .limit_bytes >> 20)]
    Memory { limit_bytes: usize },
    #[error("the plugin crashed (trap: {0})")]
    Trap(String),
    #[error("the plugin returned {size} bytes, more than the limit of {limit}")]
    OutputTooLarge { size: usize, limit: usize },
    #[error("the plugin could not be started: {0}")]
    Instantiate(String),
    /// The plugin answered something its world does not allow (an identity over the limits, a
    /// redirect that is not https …).
    #[error("the plugin's answer was refused: {0}")]
    BadOutput(String),
}

fn plugin_error_text(e: &PluginError) -> String {
    match e {
        PluginError::InvalidSettings(m) => format!("invalid settings: {m}"),
        PluginError::Denied(m) => format!("denied: {m}"),
        PluginError::Failed(m) => format!("failed: {m}"),
    }
}

/// What one call runs with: the instance's settings and secrets and the host services.
#[derive(Clone)]
pub struct Invocation {
    /// Non-secret settings (a JSON object).
    pub settings: serde_json::Value,
    pub secrets: HashMap<String, String>,
    pub services: Arc<dyn HostServices>,
}

/// The store data of one call.
pub struct HostState {
    pub(crate) plugin_id: Arc<str>,
    pub(crate) caps: Arc<Capabilities>,
    pub(crate) settings_json: String,
    pub(crate) secrets: HashMap<String, String>,
    pub(crate) services: Arc<dyn HostServices>,
    pub(crate) limits: Limits,
    pub(crate) deadline: Instant,
    pub(crate) log_lines: usize,
    pub(crate) dropped_log_lines: usize,
    pub(crate) denials: usize,
    deadline_hit: bool,
    memory: MemoryLimiter,
}

#[cfg(test)]
impl HostState {
    /// A state for the capability modules' tests: `caps` granted, `services` behind them.
    pub(crate) fn for_test(caps: Capabilities, services: Arc<dyn HostServices>) -> HostState {
        HostState {
            plugin_id: Arc::from("test.plugin"),
            caps: Arc::new(caps),
            settings_json: "{}".into(),
            secrets: HashMap::new(),
            services,
            limits: Limits::default(),
            deadline: Instant::now() + Duration::from_secs(30),
            log_lines: 0,
            dropped_log_lines: 0,
            denials: 0,
            deadline_hit: false,
            memory: MemoryLimiter {
                limit: usize::MAX,
                total: 0,
                exceeded: false,
            },
        }
    }
}

/// Counts the linear memory of all the instance's memories together.
struct MemoryLimiter {
    limit: usize,
    total: usize,
    exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total + desired.saturating_sub(current);
        if total > self.limit {
            self.exceeded = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} MiB exceeded",
                self.limit >> 20
            ));
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Advances the engine's epoch while any runtime or loaded plugin holds it.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The plugin runtime of a host.
pub struct Runtime {
    engine: Engine,
    /// One set of world linkers per contract version, in [`ContractVersion::ALL`] order.
    linkers: Vec<(ContractVersion, WorldLinkers)>,
    config: RuntimeConfig,
    ticker: Arc<EpochTicker>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let engine_error = |e: wasmtime::Error| RuntimeError::Engine(e.to_string());
        let mut pool = PoolingAllocationConfig::default();
        let memory = config.limits.memory_bytes;
        // A componentized plugin is several core instances (its module, the WASI adapter, the
        // shims and the bags of imported functions) and a few tables: the totals leave room for
        // `max_instances` whole plugins at once.
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 8)
            .total_memories(config.max_instances * 2)
            .total_tables(config.max_instances * 4)
            .max_memory_size(memory)
            // A wit-bindgen component has one main module plus a few small shims: these bounds
            // keep one plugin from taking the pool's memories and instances.
            .max_memories_per_component(2)
            .max_tables_per_component(8)
            .max_core_instances_per_component(16)
            // Freed slots are reset in batches (one madvise for several), and the first pages of
            // a memory and its tables are zeroed in place rather than decommitted: instantiation
            // from the pool then costs fewer system calls and page faults.
            .decommit_batch_size(32)
            .linear_memory_keep_resident(128 << 10)
            .table_keep_resident(16 << 10);
        let mut wasm = Config::new();
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .concurrency_support(false);
        let engine = Engine::new(&wasm).map_err(engine_error)?;
        // Per contract version, one linker per world (the version's host adapters).
        let linkers = ContractVersion::ALL
            .into_iter()
            .map(|version| Ok((version, crate::versions::world_linkers(&engine, version)?)))
            .collect::<wasmtime::Result<Vec<_>>>()
            .map_err(engine_error)?;
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        }
        if let Some(dir) = &config.cache_dir {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(dir)
                .and_then(|()| {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| RuntimeError::Engine(format!("cache {}: {e}", dir.display())))?;
        }
        Ok(Runtime {
            engine,
            linkers,
            config,
            ticker: Arc::new(EpochTicker { stop }),
        })
    }

    pub fn limits(&self) -> Limits {
        self.config.limits
    }

    /// The cache file name for `component`: content hash and engine compatibility hash.
    fn cache_path(&self, component: &[u8]) -> Option<PathBuf> {
        let dir = self.config.cache_dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        Some(dir.join(format!(
            "{}-{:016x}.cwasm",
            hex::encode(Sha256::digest(component)),
            hasher.finish()
        )))
    }

    /// Compiles `component`, or loads it from the cache when this engine compiled it before.
    pub fn compile(&self, component: &[u8]) -> Result<Component, RuntimeError> {
        let cache = self.cache_path(component);
        if let Some(path) = &cache
            && path.is_file()
            && let Ok(loaded) = self.load_cached(path)
        {
            return Ok(loaded);
        }
        let compiled = Component::new(&self.engine, component)
            .map_err(|e| RuntimeError::InvalidComponent(format!("{e:#}")))?;
        if let Some(path) = cache
            && let Ok(bytes) = compiled.serialize()
        {
            // A unique temporary name, so concurrent compiles never interleave their writes.
            let mut nonce = [0u8; 8];
            let _ = getrandom::fill(&mut nonce);
            let partial = path.with_extension(format!("{}.partial", hex::encode(nonce)));
            if std::fs::write(&partial, bytes).is_ok() && std::fs::rename(&partial, &path).is_err()
            {
                let _ = std::fs::remove_file(&partial);
            }
        }
        Ok(compiled)
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, path: &std::path::Path) -> wasmtime::Result<Component> {
        // Read into memory (not mapped): a file truncated while in use cannot fault the host.
        let bytes = std::fs::read(path)?;
        // SAFETY: the file is in the host's own cache directory (mode 0700) and was written by
        // `Component::serialize` of an engine with the same compatibility hash (part of its name);
        // wasmtime still checks the header and refuses artifacts of another configuration.
        unsafe { Component::deserialize(&self.engine, bytes) }
    }

    fn core(&self, manifest: &Manifest, grant: &Capabilities) -> PluginCore {
        PluginCore {
            engine: self.engine.clone(),
            _ticker: self.ticker.clone(),
            plugin_id: manifest.id.as_str().into(),
            caps: Arc::new(manifest.capabilities.intersect(grant)),
            limits: self.config.limits,
        }
    }

    /// The contract version `component` was built against, which must be the one its manifest
    /// names (`wit_version`).
    pub fn contract_version(
        &self,
        manifest: &Manifest,
        component: &Component,
    ) -> Result<ContractVersion, RuntimeError> {
        let built = ContractVersion::of_component(&self.engine, component)
            .map_err(RuntimeError::VersionMismatch)?;
        if built.as_str() != manifest.wit_version {
            return Err(RuntimeError::VersionMismatch(format!(
                "it was built against contract {built}, but the manifest says wit_version {}",
                manifest.wit_version
            )));
        }
        Ok(built)
    }

    /// Links `component` against the world the manifest must name, in the contract version it
    /// was built against.
    fn link(
        &self,
        world: World,
        manifest: &Manifest,
        component: &Component,
    ) -> Result<(ContractVersion, wasmtime::component::InstancePre<HostState>), RuntimeError> {
        if manifest.world != world {
            return Err(RuntimeError::WorldMismatch {
                world: world.as_str(),
                reason: format!("the manifest says {}", manifest.world.as_str()),
            });
        }
        let version = self.contract_version(manifest, component)?;
        let linker = self
            .linkers
            .iter()
            .filter(|(v, _)| *v == version)
            .flat_map(|(_, worlds)| worlds)
            .find(|(w, _)| *w == world)
            .map(|(_, linker)| linker)
            .ok_or_else(|| RuntimeError::WorldMismatch {
                world: world.as_str(),
                reason: format!("contract {version} has no world {}", world.as_str()),
            })?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| mismatch(world, e))?;
        Ok((version, pre))
    }

    /// Prepares a plugin of world `P`: checks the manifest's world and the component's contract
    /// version, links it against that version's world, and keeps the `InstancePre`.
    pub fn load<P: WorldPlugin>(
        &self,
        manifest: &Manifest,
        component: &Component,
        grant: &Capabilities,
    ) -> Result<P, RuntimeError> {
        let (version, pre) = self.link(P::WORLD, manifest, component)?;
        P::from_linked(self.core(manifest, grant), version, pre).map_err(|e| mismatch(P::WORLD, e))
    }

    /// Links a component against its manifest's world (install-time check).
    pub fn check_world(
        &self,
        manifest: &Manifest,
        component: &Component,
    ) -> Result<(), RuntimeError> {
        let grant = Capabilities::default();
        match manifest.world {
            World::AlertChannel => self
                .load::<crate::AlertChannelPlugin>(manifest, component, &grant)
                .map(|_| ()),
            World::ProxyBackend => self
                .load::<crate::ProxyBackendPlugin>(manifest, component, &grant)
                .map(|_| ()),
            World::SsoProvider => self
                .load::<crate::SsoProviderPlugin>(manifest, component, &grant)
                .map(|_| ()),
            World::LogSink => self
                .load::<crate::LogSinkPlugin>(manifest, component, &grant)
                .map(|_| ()),
            World::PolicyEngine => self
                .load::<crate::PolicyEnginePlugin>(manifest, component, &grant)
                .map(|_| ()),
        }
    }
}

fn mismatch(world: World, e: wasmtime::Error) -> RuntimeError {
    RuntimeError::WorldMismatch {
        world: world.as_str(),
        reason: format!("{e:#}"),
    }
}

/// What every loaded plugin carries: its engine, grant and limits, and how a call's store is
/// made and its failure classified.
#[derive(Clone)]
pub struct PluginCore {
    engine: Engine,
    _ticker: Arc<EpochTicker>,
    plugin_id: Arc<str>,
    caps: Arc<Capabilities>,
    limits: Limits,
}

/// Bookkeeping of a finished call, for the plugin's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallReport {
    pub log_lines: usize,
    pub dropped_log_lines: usize,
    pub denials: usize,
}

/// A plugin handle of one world (`worlds/`): what [`Runtime::load`] makes of a component linked
/// against [`WorldPlugin::WORLD`]. Sealed: implemented in this crate only, one per world (the
/// host's plugin cache relies on one handle type per world).
pub trait WorldPlugin: sealed::Sealed + Clone + Send + Sync + Sized + 'static {
    const WORLD: World;

    /// The handle of a component linked against `WORLD` in contract `version`.
    #[doc(hidden)]
    fn from_linked(
        core: PluginCore,
        version: ContractVersion,
        pre: wasmtime::component::InstancePre<HostState>,
    ) -> wasmtime::Result<Self>;
}

impl PluginCore {
    pub(crate) fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    pub(crate) fn store(&self, invocation: &Invocation) -> Store<HostState> {
        let state = HostState {
            plugin_id: self.plugin_id.clone(),
            caps: self.caps.clone(),
            settings_json: invocation.settings.to_string(),
            secrets: invocation.secrets.clone(),
            services: invocation.services.clone(),
            limits: self.limits,
            deadline: Instant::now() + self.limits.hook_deadline,
            log_lines: 0,
            dropped_log_lines: 0,
            denials: 0,
            deadline_hit: false,
            memory: MemoryLimiter {
                limit: self.limits.memory_bytes,
                total: 0,
                exceeded: false,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        // At every epoch tick a running plugin yields to the async runtime (so a busy loop never
        // holds a worker thread), and past its deadline it is stopped.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            if Instant::now() >= ctx.data().deadline {
                ctx.data_mut().deadline_hit = true;
                return Err(wasmtime::format_err!("deadline exceeded"));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    /// Makes a store whose instance served a call ready for the next one: a new deadline, the
    /// call's counters back to zero (the memory it holds stays counted).
    pub(crate) fn rearm(&self, store: &mut Store<HostState>) {
        let state = store.data_mut();
        state.deadline = Instant::now() + self.limits.hook_deadline;
        state.deadline_hit = false;
        state.log_lines = 0;
        state.dropped_log_lines = 0;
        state.denials = 0;
        store.set_epoch_deadline(1);
    }

    pub(crate) fn classify(&self, store: &Store<HostState>, error: wasmtime::Error) -> HookError {
        if store.data().memory.exceeded {
            return HookError::Memory {
                limit_bytes: self.limits.memory_bytes,
            };
        }
        if store.data().deadline_hit {
            return HookError::Deadline {
                limit: self.limits.hook_deadline,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => HookError::Deadline {
                limit: self.limits.hook_deadline,
            },
            Some(trap) => HookError::Trap(trap.to_string()),
            None => HookError::Trap(format!("{error:#}")),
        }
    }

    /// A plugin's error message cut to the output limit.
    pub(crate) fn bounded(&self, error: PluginError) -> PluginError {
        let cut = |mut m: String| {
            if m.len() > self.limits.max_output_bytes {
                let mut at = self.limits.max_output_bytes;
                while !m.is_char_boundary(at) {
                    at -= 1;
                }
                m.truncate(at);
                m.push('…');
            }
            m
        };
        match error {
            PluginError::InvalidSettings(m) => PluginError::InvalidSettings(cut(m)),
            PluginError::Denied(m) => PluginError::Denied(cut(m)),
            PluginError::Failed(m) => PluginError::Failed(cut(m)),
        }
    }

    pub(crate) fn report(store: &Store<HostState>) -> CallReport {
        let s = store.data();
        CallReport {
            log_lines: s.log_lines,
            dropped_log_lines: s.dropped_log_lines,
            denials: s.denials,
        }
    }

    /// The outcome of a hook call run under the deadline.
    pub(crate) fn settle<T>(
        &self,
        store: &Store<HostState>,
        outcome: Result<wasmtime::Result<Result<T, PluginError>>, tokio::time::error::Elapsed>,
    ) -> Result<T, HookError> {
        match outcome {
            Err(_) => Err(HookError::Deadline {
                limit: self.limits.hook_deadline,
            }),
            Ok(Err(e)) => Err(self.classify(store, e)),
            Ok(Ok(Err(plugin))) => Err(HookError::Plugin(self.bounded(plugin))),
            Ok(Ok(Ok(value))) => Ok(value),
        }
    }

    pub(crate) fn check_output(&self, size: usize) -> Result<(), HookError> {
        if size > self.limits.max_output_bytes {
            return Err(HookError::OutputTooLarge {
                size,
                limit: self.limits.max_output_bytes,
            });
        }
        Ok(())
    }

    pub(crate) fn call_deadline(&self) -> Duration {
        self.limits.hook_deadline + EPOCH_TICK * 5
    }
}

pub(crate) mod sealed {
    /// Keeps [`super::WorldPlugin`] implemented by this crate's world handles only.
    pub trait Sealed {}
}
