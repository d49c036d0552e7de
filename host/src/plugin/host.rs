//! What the host gives a guest: the data of its store and the imports of
//! the `job` world (log, metrics, keyed state), plus an empty WASI context.

use std::collections::BTreeMap;
use std::sync::Arc;

use flinkw_batch::Batch;
use wasmtime::ResourceLimiter;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::flinkw::plugin::{hints, log, metrics, state, timers, types};
use crate::keygroup::{DEFAULT_MAX_PARALLELISM, key_group};
use crate::state::ttl::{self, Ttl, TtlRead};
use crate::state::{MemoryState, StateBackend, StateId, state_key};
use crate::time::{MIN_WATERMARK, TimeDomain, TimerService};

/// The guest's handle on one named value state.
pub struct ValueStateHandle {
    state: StateId,
    ttl: Option<Ttl>,
}

/// The guest's handle on one named list state.
pub struct ListStateHandle {
    state: StateId,
    ttl: Option<Ttl>,
}

/// The guest's handle on one named map state.
pub struct MapStateHandle {
    state: StateId,
    ttl: Option<Ttl>,
}

/// A list state's value: each element as `u32` length (LE) and bytes.
fn encode_list<'a>(items: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    for item in items {
        out.extend_from_slice(&(item.len() as u32).to_le_bytes());
        out.extend_from_slice(item);
    }
}

fn decode_list(mut bytes: &[u8]) -> wasmtime::Result<Vec<Vec<u8>>> {
    let mut items = Vec::new();
    while !bytes.is_empty() {
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            wasmtime::bail!("corrupt list state");
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            wasmtime::bail!("corrupt list state");
        }
        items.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
    Ok(items)
}

/// Memory limit of one instance, remembering a refused growth so the error
/// can say why the guest stopped.
pub(crate) struct MemoryLimiter {
    pub max_bytes: usize,
    pub refused: Option<usize>,
    /// Bytes of linear memory the instance has (all its memories), shared
    /// with whoever reports it (the subtask's metrics).
    pub used: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
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
        // Called for each memory's first allocation too (current = 0).
        let grown = desired.saturating_sub(current) as u64;
        self.used.fetch_add(grown, std::sync::atomic::Ordering::Relaxed);
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

/// A clock that always reads 0: what a guest without the clock grant sees.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The data in each plugin instance's store.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    /// The batch of the keyed call in progress; state is scoped by its keys.
    pub keyed_batch: Option<Arc<Vec<u8>>>,
    pub state: Box<dyn StateBackend>,
    /// Number of key groups: the prefix of every state key.
    pub max_parallelism: u32,
    key_buf: Vec<u8>,
    /// Timers of the keyed functions of this instance, by function id.
    pub timers: std::collections::HashMap<u32, TimerService>,
    /// The keyed function being called (timers belong to it).
    pub current_function: u32,
    /// The watermark the keyed functions see.
    pub watermark: i64,
    /// The last panic message the guest reported through `log`.
    pub last_panic: Option<String>,
    pub counters: BTreeMap<String, u64>,
    pub gauges: BTreeMap<String, f64>,
    pub label: String,
    /// Window functions the plugin declared mergeable (`hints`) during
    /// `plan`.
    pub mergeable: std::collections::BTreeSet<u32>,
}

impl HostState {
    pub fn new(label: String, limits: &crate::limits::Limits) -> Self {
        // No preopened files, no environment, no network, no stdio; the
        // clocks only when the limits grant them.
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        if !limits.clocks {
            wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_bytes: limits.memory_bytes,
                refused: None,
                used: Default::default(),
            },
            keyed_batch: None,
            state: Box::new(MemoryState::default()),
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            key_buf: Vec::new(),
            timers: std::collections::HashMap::new(),
            current_function: 0,
            watermark: MIN_WATERMARK,
            last_panic: None,
            counters: BTreeMap::new(),
            gauges: BTreeMap::new(),
            label,
            mergeable: Default::default(),
        }
    }

    /// Writes the state key of record `record` of the keyed call in
    /// progress into `self.key_buf`.
    fn key_of(&mut self, record: u32) -> wasmtime::Result<()> {
        let Some(bytes) = &self.keyed_batch else {
            wasmtime::bail!("keyed state used outside a keyed function");
        };
        match Batch::record_at(bytes, record as usize) {
            Ok(r) => {
                let kg = key_group(r.key, self.max_parallelism);
                state_key(kg, r.key, b"", &mut self.key_buf);
                Ok(())
            }
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

impl hints::Host for HostState {
    fn mergeable_aggregate(&mut self, function: u32) -> wasmtime::Result<()> {
        self.mergeable.insert(function);
        Ok(())
    }
}

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

impl HostState {
    /// The raw key of record `record` of the keyed call in progress.
    fn raw_key(&self, record: u32) -> wasmtime::Result<Vec<u8>> {
        let Some(bytes) = &self.keyed_batch else {
            wasmtime::bail!("timers used outside a keyed function");
        };
        match Batch::record_at(bytes, record as usize) {
            Ok(r) => Ok(r.key.to_vec()),
            Err(_) => wasmtime::bail!("timer used with record {record}, not in the batch"),
        }
    }

    fn timer(
        &mut self,
        domain: TimeDomain,
        record: u32,
        time: i64,
        add: bool,
    ) -> wasmtime::Result<()> {
        let key = self.raw_key(record)?;
        let service = self.timers.entry(self.current_function).or_default();
        if add {
            service.register(domain, &key, time);
        } else {
            service.delete(domain, &key, time);
        }
        Ok(())
    }
}

impl timers::Host for HostState {
    fn register_event_timer(&mut self, index: u32, time: i64) -> wasmtime::Result<()> {
        self.timer(TimeDomain::EventTime, index, time, true)
    }

    fn delete_event_timer(&mut self, index: u32, time: i64) -> wasmtime::Result<()> {
        self.timer(TimeDomain::EventTime, index, time, false)
    }

    fn register_processing_timer(&mut self, index: u32, time: i64) -> wasmtime::Result<()> {
        self.timer(TimeDomain::ProcessingTime, index, time, true)
    }

    fn delete_processing_timer(&mut self, index: u32, time: i64) -> wasmtime::Result<()> {
        self.timer(TimeDomain::ProcessingTime, index, time, false)
    }

    fn current_watermark(&mut self) -> wasmtime::Result<i64> {
        Ok(self.watermark)
    }

    fn current_processing_time(&mut self) -> wasmtime::Result<i64> {
        Ok(crate::time::now_millis())
    }
}

impl state::Host for HostState {}

fn to_ttl(c: state::TtlConfig) -> Ttl {
    Ttl {
        millis: i64::try_from(c.millis).unwrap_or(i64::MAX),
        update_on_read: c.update_on_read,
        return_expired: c.return_expired,
    }
}

impl HostState {
    /// Reads the entry at `self.key_buf`, honouring the state's TTL.
    fn ttl_get(&mut self, id: StateId, ttl: Option<Ttl>) -> wasmtime::Result<Option<Vec<u8>>> {
        let now = crate::time::now_millis();
        Ok(ttl::get(&mut *self.state, id, &self.key_buf, ttl.as_ref(), now)?)
    }

    /// Writes the entry at `self.key_buf`, stamped when the state has a TTL.
    fn ttl_put(&mut self, id: StateId, ttl: Option<Ttl>, value: &[u8]) -> wasmtime::Result<()> {
        let now = crate::time::now_millis();
        Ok(ttl::put(&mut *self.state, id, &self.key_buf, ttl.as_ref(), value, now)?)
    }
}

impl HostState {
    /// Writes the map-state prefix of record `record`'s key, then `map_key`,
    /// into `self.key_buf`.
    fn map_key(&mut self, record: u32, map_key: &[u8]) -> wasmtime::Result<()> {
        let key = self.raw_key(record)?;
        crate::state::map_prefix(key_group(&key, self.max_parallelism), &key, &mut self.key_buf);
        self.key_buf.extend_from_slice(map_key);
        Ok(())
    }
}

impl state::HostListState for HostState {
    fn new(
        &mut self,
        name: String,
        ttl: Option<state::TtlConfig>,
    ) -> wasmtime::Result<Resource<ListStateHandle>> {
        let state = self.state.register(&format!("list/{name}"))?;
        Ok(self.table.push(ListStateHandle { state, ttl: ttl.map(to_ttl) })?)
    }

    fn get(
        &mut self,
        handle: Resource<ListStateHandle>,
        index: u32,
    ) -> wasmtime::Result<Vec<Vec<u8>>> {
        let (id, ttl) = {
            let h = self.table.get(&handle)?;
            (h.state, h.ttl)
        };
        self.key_of(index)?;
        match self.ttl_get(id, ttl)? {
            Some(bytes) => decode_list(&bytes),
            None => Ok(Vec::new()),
        }
    }

    fn add(
        &mut self,
        handle: Resource<ListStateHandle>,
        index: u32,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let (id, ttl) = {
            let h = self.table.get(&handle)?;
            (h.state, h.ttl)
        };
        self.key_of(index)?;
        let mut bytes = self.ttl_get(id, ttl)?.unwrap_or_default();
        encode_list([value.as_slice()], &mut bytes);
        self.ttl_put(id, ttl, &bytes)
    }

    fn update(
        &mut self,
        handle: Resource<ListStateHandle>,
        index: u32,
        values: Vec<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        let (id, ttl) = {
            let h = self.table.get(&handle)?;
            (h.state, h.ttl)
        };
        self.key_of(index)?;
        if values.is_empty() {
            return Ok(self.state.remove(id, &self.key_buf)?);
        }
        let mut bytes = Vec::new();
        encode_list(values.iter().map(Vec::as_slice), &mut bytes);
        self.ttl_put(id, ttl, &bytes)
    }

    fn clear(&mut self, handle: Resource<ListStateHandle>, index: u32) -> wasmtime::Result<()> {
        let id = self.table.get(&handle)?.state;
        self.key_of(index)?;
        Ok(self.state.remove(id, &self.key_buf)?)
    }

    fn drop(&mut self, handle: Resource<ListStateHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl state::HostMapState for HostState {
    fn new(
        &mut self,
        name: String,
        ttl: Option<state::TtlConfig>,
    ) -> wasmtime::Result<Resource<MapStateHandle>> {
        let state = self.state.register_with(&format!("map/{name}"), true)?;
        Ok(self.table.push(MapStateHandle { state, ttl: ttl.map(to_ttl) })?)
    }

    fn get(
        &mut self,
        handle: Resource<MapStateHandle>,
        index: u32,
        map_key: Vec<u8>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        let (id, ttl) = {
            let h = self.table.get(&handle)?;
            (h.state, h.ttl)
        };
        self.map_key(index, &map_key)?;
        self.ttl_get(id, ttl)
    }

    fn put(
        &mut self,
        handle: Resource<MapStateHandle>,
        index: u32,
        map_key: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let (id, ttl) = {
            let h = self.table.get(&handle)?;
            (h.state, h.ttl)
        };
        self.map_key(index, &map_key)?;
        self.ttl_put(id, ttl, &value)
    }

    fn remove(
        &mut self,
        handle: Resource<MapStateHandle>,
        index: u32,
        map_key: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let id = self.table.get(&handle)?.state;
        self.map_key(index, &map_key)?;
        Ok(self.state.remove(id, &self.key_buf)?)
    }

    fn entries(
        &mut self,
        handle: Resource<MapStateHandle>,
        index: u32,
    ) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (id, ttl) = {
            let h = self.table.get(&handle)?;
            (h.state, h.ttl)
        };
        self.map_key(index, b"")?;
        let prefix = self.key_buf.clone();
        let entries = self.state.scan_prefix(id, &prefix)?;
        let Some(t) = ttl else { return Ok(entries) };
        let now = crate::time::now_millis();
        let mut live = Vec::with_capacity(entries.len());
        for (map_key, raw) in entries {
            // Expired entries go as they are read (returned that once when
            // the TTL lets expired values through), as in `ttl::get`.
            let expired = match ttl::read(&raw, now, &t) {
                Some(TtlRead::Live(v)) => {
                    live.push((map_key, v.to_vec()));
                    continue;
                }
                Some(TtlRead::ExpiredVisible(v)) => {
                    live.push((map_key.clone(), v.to_vec()));
                    map_key
                }
                Some(TtlRead::Expired) => map_key,
                None => wasmtime::bail!("state written without a time-to-live was opened with one"),
            };
            let mut k = prefix.clone();
            k.extend_from_slice(&expired);
            self.state.remove(id, &k)?;
        }
        Ok(live)
    }

    fn clear(&mut self, handle: Resource<MapStateHandle>, index: u32) -> wasmtime::Result<()> {
        let id = self.table.get(&handle)?.state;
        self.map_key(index, b"")?;
        let prefix = self.key_buf.clone();
        for (rest, _) in self.state.scan_prefix(id, &prefix)? {
            let mut k = prefix.clone();
            k.extend_from_slice(&rest);
            self.state.remove(id, &k)?;
        }
        Ok(())
    }

    fn drop(&mut self, handle: Resource<MapStateHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl state::HostValueState for HostState {
    fn new(
        &mut self,
        name: String,
        ttl: Option<state::TtlConfig>,
    ) -> wasmtime::Result<Resource<ValueStateHandle>> {
        let state = self.state.register(&format!("value/{name}"))?;
        Ok(self.table.push(ValueStateHandle { state, ttl: ttl.map(to_ttl) })?)
    }

    fn get(
        &mut self,
        handle: Resource<ValueStateHandle>,
        record: u32,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        let (id, ttl) = {
            let h = self.table.get(&handle)?;
            (h.state, h.ttl)
        };
        self.key_of(record)?;
        self.ttl_get(id, ttl)
    }

    fn set(
        &mut self,
        handle: Resource<ValueStateHandle>,
        record: u32,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let (id, ttl) = {
            let h = self.table.get(&handle)?;
            (h.state, h.ttl)
        };
        self.key_of(record)?;
        self.ttl_put(id, ttl, &value)
    }

    fn clear(&mut self, handle: Resource<ValueStateHandle>, record: u32) -> wasmtime::Result<()> {
        let id = self.table.get(&handle)?.state;
        self.key_of(record)?;
        Ok(self.state.remove(id, &self.key_buf)?)
    }

    fn drop(&mut self, handle: Resource<ValueStateHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}
