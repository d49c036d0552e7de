//! What the host gives a guest: the data of its store and the imports of
//! the `job` world (log, metrics, keyed state), plus an empty WASI context.

use std::collections::BTreeMap;
use std::sync::Arc;

use flinkw_batch::Batch;
use wasmtime::ResourceLimiter;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::flinkw::plugin::{log, metrics, state, types};
use crate::state::MemoryState;

/// The guest's handle on one named value state.
pub struct ValueStateHandle {
    state: u32,
}

/// Memory limit of one instance, remembering a refused growth so the error
/// can say why the guest stopped.
pub(crate) struct MemoryLimiter {
    pub max_bytes: usize,
    pub refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some(desired);
            return Err(wasmtime::format_err!(
                "guest memory would grow to {desired} bytes, over the limit of {} bytes",
                self.max_bytes
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data in each plugin instance's store.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    /// The batch of the keyed call in progress; state is scoped by its keys.
    pub keyed_batch: Option<Arc<Vec<u8>>>,
    pub state: MemoryState,
    /// The last panic message the guest reported through `log`.
    pub last_panic: Option<String>,
    pub counters: BTreeMap<String, u64>,
    pub gauges: BTreeMap<String, f64>,
    pub label: String,
}

impl HostState {
    pub fn new(label: String, max_memory: usize) -> Self {
        HostState {
            // No preopened files, no environment, no network, no stdio.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter { max_bytes: max_memory, refused: None },
            keyed_batch: None,
            state: MemoryState::default(),
            last_panic: None,
            counters: BTreeMap::new(),
            gauges: BTreeMap::new(),
            label,
        }
    }

    /// The key of record `record` of the keyed call in progress.
    fn key_of(&self, record: u32) -> wasmtime::Result<Vec<u8>> {
        let Some(bytes) = &self.keyed_batch else {
            wasmtime::bail!("keyed state used outside a keyed function");
        };
        match Batch::record_at(bytes, record as usize) {
            Ok(r) => Ok(r.key.to_vec()),
            Err(_) => wasmtime::bail!("keyed state used with record {record}, not in the batch"),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let plugin = self.label.as_str();
        match level {
            log::Level::Trace => tracing::trace!(target: "flinkw::guest", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "flinkw::guest", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "flinkw::guest", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "flinkw::guest", plugin, "{message}"),
            log::Level::Error => {
                if let Some(panic) = message.strip_prefix("panic: ") {
                    self.last_panic = Some(panic.to_owned());
                } else {
                    tracing::error!(target: "flinkw::guest", plugin, "{message}");
                }
            }
        }
        Ok(())
    }
}

impl metrics::Host for HostState {
    fn counter_add(&mut self, name: String, delta: u64) -> wasmtime::Result<()> {
        *self.counters.entry(name).or_default() += delta;
        Ok(())
    }

    fn gauge_set(&mut self, name: String, value: f64) -> wasmtime::Result<()> {
        self.gauges.insert(name, value);
        Ok(())
    }
}

impl state::Host for HostState {}

impl state::HostValueState for HostState {
    fn new(&mut self, name: String) -> wasmtime::Result<Resource<ValueStateHandle>> {
        let state = self.state.register(&name);
        Ok(self.table.push(ValueStateHandle { state })?)
    }

    fn get(
        &mut self,
        handle: Resource<ValueStateHandle>,
        record: u32,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        let id = self.table.get(&handle)?.state;
        let key = self.key_of(record)?;
        Ok(self.state.get(id, &key).map(<[u8]>::to_vec))
    }

    fn set(
        &mut self,
        handle: Resource<ValueStateHandle>,
        record: u32,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let id = self.table.get(&handle)?.state;
        let key = self.key_of(record)?;
        self.state.put(id, &key, value);
        Ok(())
    }

    fn clear(&mut self, handle: Resource<ValueStateHandle>, record: u32) -> wasmtime::Result<()> {
        let id = self.table.get(&handle)?.state;
        let key = self.key_of(record)?;
        self.state.remove(id, &key);
        Ok(())
    }

    fn drop(&mut self, handle: Resource<ValueStateHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}
