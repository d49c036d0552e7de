//! The Wasm engine: one wasmtime `Engine` per process, with the pooling
//! allocator, epoch interruption for call deadlines, and a cache of
//! compiled components keyed by the plugin's content hash.
//!
//! Limits are per instance, not per engine: [`Engine::with_limits`] gives a
//! handle on the same wasmtime engine, pool and compiled code whose plugins'
//! instances get other limits (memory, call deadline, clocks) — so jobs of
//! many tenants with different quotas share one pool and compile each
//! plugin once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::limits::Limits;

/// Why the engine could not be created.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration.
    #[error("cannot configure the Wasm engine: {0}")]
    Config(String),
}

/// The environment variable that turns the per-instance limits off, **for
/// the limits-overhead benchmark only** (`bench/limits_overhead.py`,
/// docs/benchmarks.md): with `FLINKW_BENCH_NO_LIMITS=1` the engine is
/// built without epoch interruption (no call deadline: an endless loop
/// runs forever) and every instance may grow its memory to the pool's 4 GiB
/// (the store's limiter still sees each `memory.grow` but refuses none).
/// Compiled plugins are cached apart (`no-limits/` in the cache folder),
/// as code compiled without epoch checks differs. Never set it elsewhere.
pub const NO_LIMITS_ENV: &str = "FLINKW_BENCH_NO_LIMITS";

fn no_limits() -> bool {
    std::env::var_os(NO_LIMITS_ENV).is_some_and(|v| v == "1")
}

/// The process-wide Wasm engine and its compiled-plugin cache.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
    limits: Limits,
}

struct EngineInner {
    engine: wasmtime::Engine,
    compiled: Mutex<HashMap<String, Component>>,
    /// One lock per plugin hash being compiled: concurrent deploys of one
    /// plugin wait for a single compilation and share its code.
    compiling: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    cache_dir: Option<PathBuf>,
}

/// Instances the pool holds at once (per process): enough for ~1,000 small
/// jobs on one worker. Slots are address space reserved up front and
/// committed only when used.
const POOL_COMPONENT_INSTANCES: u32 = 2048;
/// Largest linear memory the pool allows; each instance's own limit is
/// enforced by its store's limiter.
const POOL_MAX_MEMORY: usize = 4 << 30;

impl Engine {
    /// An engine whose instances obey `limits`; compiled plugins are also
    /// cached on disk under `cache_dir` when given.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self, EngineError> {
        let unlimited = no_limits();
        if unlimited {
            eprintln!(
                "warning: {NO_LIMITS_ENV}=1: guest calls have no deadline and no memory cap \
                 (for benchmarks only)"
            );
        }
        let cache_dir = if unlimited { cache_dir.map(|d| d.join("no-limits")) } else { cache_dir };
        let limits =
            if unlimited { Limits { memory_bytes: POOL_MAX_MEMORY, ..limits } } else { limits };
        let mut config = Config::new();
        config.epoch_interruption(!unlimited);
        config.max_wasm_stack(limits.stack_bytes);
        config.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable);
        config
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(crate::plugin::CAPTURED_FRAMES));
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // For profiling: `FLINKW_PERFMAP=1` writes /tmp/perf-PID.map, so `perf report`
        // names the guest's compiled functions.
        if std::env::var_os("FLINKW_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_COMPONENT_INSTANCES);
        pool.total_core_instances(POOL_COMPONENT_INSTANCES * 4);
        pool.total_memories(POOL_COMPONENT_INSTANCES * 2);
        pool.total_tables(POOL_COMPONENT_INSTANCES * 4);
        pool.max_memories_per_component(8);
        pool.max_tables_per_component(8);
        pool.max_memory_size(POOL_MAX_MEMORY.max(limits.memory_bytes));
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            wasmtime::Engine::new(&config).map_err(|e| EngineError::Config(format!("{e:#}")))?;
        let inner = Arc::new(EngineInner {
            engine,
            compiled: Mutex::new(HashMap::new()),
            compiling: Mutex::new(HashMap::new()),
            cache_dir,
        });
        start_epoch_ticker(Arc::downgrade(&inner));
        Ok(Engine { inner, limits })
    }

    /// The same engine (pool, compiled plugins, epoch) whose plugins'
    /// instances get `limits` instead; the stack limit is the engine's.
    pub fn with_limits(&self, limits: Limits) -> Engine {
        let mut limits = Limits { stack_bytes: self.limits.stack_bytes, ..limits };
        if no_limits() {
            limits.memory_bytes = POOL_MAX_MEMORY;
        }
        Engine { inner: self.inner.clone(), limits }
    }

    /// The wasmtime engine.
    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    /// The limits every instance gets.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles `bytes`, or returns the cached compilation of the same bytes.
    /// `hash` is the plugin's content hash (see [`content_hash`]).
    pub(crate) fn compile(&self, hash: &str, bytes: &[u8]) -> wasmtime::Result<Component> {
        if let Some(c) = self.lock_cache().get(hash) {
            return Ok(c.clone());
        }
        // One compilation per hash: the others wait here and then find it.
        let gate = {
            let mut gates = self.inner.compiling.lock().unwrap_or_else(|p| p.into_inner());
            gates.entry(hash.to_owned()).or_default().clone()
        };
        let _compiling = gate.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = self.lock_cache().get(hash) {
            return Ok(c.clone());
        }
        let component = match self.load_from_disk(hash) {
            Some(c) => c,
            None => {
                let c = Component::new(&self.inner.engine, bytes)?;
                self.store_on_disk(hash, &c);
                c
            }
        };
        self.lock_cache().insert(hash.to_owned(), component.clone());
        self.inner.compiling.lock().unwrap_or_else(|p| p.into_inner()).remove(hash);
        Ok(component)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Component>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.inner.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn disk_path(&self, hash: &str) -> Option<PathBuf> {
        self.inner.cache_dir.as_ref().map(|d| d.join(format!("{hash}.cwasm")))
    }

    fn load_from_disk(&self, hash: &str) -> Option<Component> {
        let path = self.disk_path(hash)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store_on_disk` from
        // `Component::serialize`, and wasmtime checks that it was produced by
        // a compatible engine before loading it; a file that fails the check
        // is recompiled.
        match unsafe { Component::deserialize_file(&self.inner.engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "ignoring stale compiled plugin");
                None
            }
        }
    }

    fn store_on_disk(&self, hash: &str, component: &Component) {
        let Some(path) = self.disk_path(hash) else {
            return;
        };
        let write = || -> std::io::Result<()> {
            let bytes = component.serialize().map_err(std::io::Error::other)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled plugin");
        }
    }
}

/// The content hash that names a plugin: hex SHA-256 of its bytes.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Advances the engine's epoch every tick while the engine lives, so that
/// guest calls past their deadline are interrupted.
fn start_epoch_ticker(engine: Weak<EngineInner>) {
    let spawned = std::thread::Builder::new().name("flinkw-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(Limits::EPOCH_TICK);
            match engine.upgrade() {
                Some(e) => e.engine.increment_epoch(),
                None => return,
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the epoch thread: guest calls have no deadline");
    }
}
