//! One running instance of a plugin: its store, and calls into its exports
//! under the per-call deadline, with guest failures turned into errors that
//! say what happened and where.

use std::fmt;
use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::TypedFunc;

use super::bindings;
pub use super::bindings::exports::flinkw::plugin::window::{FiredWindow, WindowElements};
use super::host::HostState;
use crate::engine::Engine;
use crate::graph::{self, JobGraph};
use crate::limits::Limits;
use crate::state::StateBackend;

/// How a guest call failed.
#[derive(Debug)]
pub enum GuestError {
    /// The guest returned an error from its function.
    Failed {
        /// The export called, e.g. `transform chain 0`.
        call: String,
        /// The guest's message.
        message: String,
    },
    /// The guest trapped: a panic, a Wasm trap, or a limit.
    Trapped {
        /// The export called.
        call: String,
        /// What stopped the guest.
        cause: TrapCause,
        /// The guest's stack, innermost frame first, with function names.
        backtrace: String,
    },
    /// The instance could not be created.
    Instantiate(String),
    /// The plan the guest returned is not a valid job graph.
    BadPlan(String),
}

/// What stopped a guest.
#[derive(Debug, PartialEq, Eq)]
pub enum TrapCause {
    /// The guest panicked with this message.
    Panic(String),
    /// The call ran past the CPU deadline.
    Deadline(std::time::Duration),
    /// The guest tried to use more memory than allowed.
    Memory {
        /// The size it asked for.
        requested: usize,
        /// The limit.
        limit: usize,
    },
    /// The guest exhausted its stack (e.g. unbounded recursion).
    StackOverflow,
    /// Any other trap, with wasmtime's description.
    Other(String),
}

impl fmt::Display for TrapCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapCause::Panic(m) => write!(f, "the guest panicked: {m}"),
            TrapCause::Deadline(d) => {
                write!(
                    f,
                    "the guest ran past its deadline of {d:?} for one call (an endless loop?)"
                )
            }
            TrapCause::Memory { requested, limit } => write!(
                f,
                "the guest ran out of memory: it asked for {:.1} MiB, over its limit of {} MiB",
                *requested as f64 / (1u64 << 20) as f64,
                limit >> 20
            ),
            TrapCause::StackOverflow => {
                write!(f, "the guest overflowed its stack (unbounded recursion?)")
            }
            TrapCause::Other(m) => write!(f, "the guest trapped: {m}"),
        }
    }
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestError::Failed { call, message } => write!(f, "{call} failed: {message}"),
            GuestError::Trapped { call, cause, backtrace } => {
                write!(f, "{call}: {cause}")?;
                if !backtrace.is_empty() {
                    write!(f, "\nguest stack:\n{backtrace}")?;
                }
                Ok(())
            }
            GuestError::Instantiate(m) => write!(f, "cannot instantiate the plugin: {m}"),
            GuestError::BadPlan(m) => write!(f, "the plugin's plan is not a valid job graph: {m}"),
        }
    }
}

impl std::error::Error for GuestError {}

/// A plugin instance with its own store, memory and keyed state.
pub struct Instance {
    store: Store<HostState>,
    job: bindings::Job,
    limits: Limits,
    upgrade: Option<UpgradeFuncs>,
    /// Whole-memory capture: the accessors and the plugin's content hash.
    capture: Option<(super::capture::Accessors, String)>,
}

/// `migrate(from-version, state) -> result<list<u8>, string>`.
type MigrateFunc = TypedFunc<(String, Vec<u8>), (Result<Vec<u8>, String>,)>;

/// The optional `upgrade` export's functions, found at instantiation.
struct UpgradeFuncs {
    version: TypedFunc<(), (String,)>,
    migrate: MigrateFunc,
}

impl Instance {
    pub(super) fn new(
        engine: &Engine,
        pre: &bindings::JobPre<HostState>,
        upgrade: Option<&super::UpgradeExports>,
        capture: Option<(&super::capture::AccessorExports, &str)>,
        label: &str,
    ) -> Result<Self, GuestError> {
        let limits = engine.limits();
        let mut store = Store::new(engine.wasmtime(), HostState::new(label.to_owned(), &limits));
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(limits.deadline_ticks());
        let failed = |e: wasmtime::Error| GuestError::Instantiate(format!("{e:#}"));
        let instance = pre.instance_pre().instantiate(&mut store).map_err(failed)?;
        let job = bindings::Job::new(&mut store, &instance).map_err(failed)?;
        let upgrade = match upgrade {
            Some(exports) => Some(UpgradeFuncs {
                version: instance.get_typed_func(&mut store, exports.version).map_err(failed)?,
                migrate: instance.get_typed_func(&mut store, exports.migrate).map_err(failed)?,
            }),
            None => None,
        };
        let capture = match capture {
            Some((exports, hash)) => {
                Some((exports.bind(&mut store, &instance).map_err(failed)?, hash.to_owned()))
            }
            None => None,
        };
        Ok(Instance { store, job, limits, upgrade, capture })
    }

    /// Whether the host captures this instance's whole memory at
    /// checkpoints (the plugin declared it).
    pub fn captures_memory(&self) -> bool {
        self.capture.is_some()
    }

    /// The instance's memories (zero pages left out) and globals, for a
    /// checkpoint; `None` for a plugin that does not declare capture.
    pub fn capture_memory(&mut self) -> Result<Option<crate::checkpoint::MemoryImage>, GuestError> {
        self.arm();
        let Some((accessors, hash)) = &self.capture else { return Ok(None) };
        match accessors.capture(&mut self.store, hash) {
            Ok(image) => Ok(Some(image)),
            Err(e) => Err(self.trap("capture memory".into(), e)),
        }
    }

    /// Goes on as `fresh` (an instance made from a memory image), keeping
    /// what the host holds for this one: keyed state, timers, watermark,
    /// counters and the memory gauge.
    pub fn continue_as(&mut self, fresh: Instance) {
        drop(self.exchange(fresh));
    }

    /// Goes on as `fresh` (an instance of a new version of the plugin, at
    /// a live upgrade) and returns this one: what the host holds — keyed
    /// state, timers, watermark, counters, the memory gauge — moves to
    /// `fresh`, and moves back if the returned instance is exchanged in
    /// again.
    pub fn exchange(&mut self, mut fresh: Instance) -> Instance {
        use std::sync::atomic::{AtomicU64, Ordering};
        let old = self.store.data_mut();
        let new = fresh.store.data_mut();
        std::mem::swap(&mut old.state, &mut new.state);
        std::mem::swap(&mut old.timers, &mut new.timers);
        std::mem::swap(&mut old.counters, &mut new.counters);
        std::mem::swap(&mut old.gauges, &mut new.gauges);
        new.max_parallelism = old.max_parallelism;
        new.watermark = old.watermark;
        // The subtask's gauge follows the instance that runs.
        let old_used = old.limiter.used.load(Ordering::Relaxed);
        old.limiter.used.store(new.limiter.used.load(Ordering::Relaxed), Ordering::Relaxed);
        new.limiter.used =
            std::mem::replace(&mut old.limiter.used, Arc::new(AtomicU64::new(old_used)));
        std::mem::replace(self, fresh)
    }

    /// Turns guest state that plugin version `then` wrote (`None`: an
    /// unversioned plugin) into this plugin's form: unchanged for the same
    /// version or a plugin without versions, else through its `migrate`.
    pub fn carry_over(
        &mut self,
        then: Option<&str>,
        state: Vec<u8>,
    ) -> Result<Vec<u8>, GuestError> {
        match self.version()? {
            Some(now) if now != then.unwrap_or(super::UNVERSIONED) => {
                self.migrate(then.unwrap_or(super::UNVERSIONED), state)
            }
            _ => Ok(state),
        }
    }

    /// Makes `gauge` hold the bytes of linear memory of this instance (now,
    /// and as its memory grows): what the subtask's metrics report.
    pub fn share_memory_gauge(&mut self, gauge: std::sync::Arc<std::sync::atomic::AtomicU64>) {
        use std::sync::atomic::Ordering;
        let limiter = &mut self.store.data_mut().limiter;
        gauge.store(limiter.used.load(Ordering::Relaxed), Ordering::Relaxed);
        limiter.used = gauge;
    }

    /// The plugin's version (its optional `upgrade` export); `None` for a
    /// plugin without one.
    pub fn version(&mut self) -> Result<Option<String>, GuestError> {
        let Some(f) = self.upgrade.as_ref().map(|u| u.version) else { return Ok(None) };
        self.arm();
        let result = f.call(&mut self.store, ()).map(|(v,)| Ok(v));
        self.finish("version", result).map(Some)
    }

    /// Converts guest state that plugin version `from` wrote into this
    /// version's form (the optional `upgrade` export); unchanged for a
    /// plugin without one.
    pub fn migrate(&mut self, from: &str, state: Vec<u8>) -> Result<Vec<u8>, GuestError> {
        let Some(f) = self.upgrade.as_ref().map(|u| u.migrate) else { return Ok(state) };
        self.arm();
        let result = f.call(&mut self.store, (from.to_owned(), state)).map(|(r,)| r);
        self.finish_with(|| format!("migrate from version {from}"), result)
    }

    /// Calls `plan` with the job's config and checks the graph it returns.
    pub fn plan(&mut self, config: &[(String, String)]) -> Result<JobGraph, GuestError> {
        let call = "plan";
        self.arm();
        let config = config.to_vec();
        let result = self.job.flinkw_plugin_plan().call_plan(&mut self.store, &config);
        let graph = self.finish(call, result)?;
        let mut graph = graph::from_wit(graph).map_err(|e| GuestError::BadPlan(e.to_string()))?;
        let declared = &self.store.data().mergeable;
        for node in &mut graph.nodes {
            if let graph::NodeKind::Window(w) = &mut node.kind {
                w.mergeable = !w.full && declared.contains(&w.function);
            }
        }
        Ok(graph)
    }

    /// Runs the fused transform `chain` over a packed batch.
    #[allow(clippy::ptr_arg)] // the generated binding takes `&Vec<u8>`
    pub fn transform(&mut self, chain: u32, batch: &Vec<u8>) -> Result<Vec<u8>, GuestError> {
        self.arm();
        let result = self.job.flinkw_plugin_transform().call_run(&mut self.store, chain, batch);
        self.finish_with(|| format!("transform chain {chain}"), result)
    }

    /// Runs keyed function `function` over a packed batch whose keys scope
    /// the state the guest reads and writes.
    ///
    /// Timers the call registers belong to `timer_owner` (the node's first
    /// function when it has two inputs).
    pub fn keyed(
        &mut self,
        function: u32,
        timer_owner: u32,
        batch: Arc<Vec<u8>>,
    ) -> Result<Vec<u8>, GuestError> {
        self.arm();
        let data = self.store.data_mut();
        data.keyed_batch = Some(batch.clone());
        data.current_function = timer_owner;
        let result = self.job.flinkw_plugin_keyed().call_process(&mut self.store, function, &batch);
        self.store.data_mut().keyed_batch = None;
        self.finish_with(|| format!("keyed function {function}"), result)
    }

    /// Runs the timer callback of keyed function `function` for `due`
    /// timers (time, key) of `domain`.
    pub fn on_timer(
        &mut self,
        function: u32,
        domain: crate::time::TimeDomain,
        due: &[(i64, Vec<u8>)],
    ) -> Result<Vec<u8>, GuestError> {
        let mut b = flinkw_batch::BatchBuilder::with_capacity(due.len(), due.len() * 16);
        let tag = [u8::from(domain == crate::time::TimeDomain::ProcessingTime)];
        for (time, key) in due {
            b.push(*time, key, &tag);
        }
        let batch = Arc::new(b.finish());
        self.arm();
        let data = self.store.data_mut();
        data.keyed_batch = Some(batch.clone());
        data.current_function = function;
        let result =
            self.job.flinkw_plugin_keyed().call_on_timer(&mut self.store, function, &batch);
        self.store.data_mut().keyed_batch = None;
        self.finish_with(|| format!("keyed function {function} (on-timer)"), result)
    }

    /// Removes and returns the timers of keyed function `function` that are
    /// due at `time` in `domain`.
    pub fn due_timers(
        &mut self,
        function: u32,
        domain: crate::time::TimeDomain,
        time: i64,
    ) -> Vec<(i64, Vec<u8>)> {
        match self.store.data_mut().timers.get_mut(&function) {
            Some(t) => t.due(domain, time),
            None => Vec::new(),
        }
    }

    /// The timers of every keyed function, for a checkpoint.
    pub fn timers(&self) -> Vec<(u32, crate::time::TimerService)> {
        let mut t: Vec<_> = self.store.data().timers.iter().map(|(f, s)| (*f, s.clone())).collect();
        t.sort_by_key(|(f, _)| *f);
        t
    }

    /// Restores timers taken by [`Instance::timers`].
    pub fn set_timers(&mut self, timers: Vec<(u32, crate::time::TimerService)>) {
        self.store.data_mut().timers = timers.into_iter().collect();
    }

    /// Sets the watermark that keyed functions see.
    pub fn set_watermark(&mut self, watermark: i64) {
        self.store.data_mut().watermark = watermark;
    }

    /// Adds records of `batch` to window accumulators (see `window.wit`).
    #[allow(clippy::ptr_arg)] // the generated binding takes `&Vec<u8>`
    pub fn window_accumulate(
        &mut self,
        function: u32,
        accumulators: &[Option<Vec<u8>>],
        batch: &Vec<u8>,
        targets: &[(u32, u32)],
    ) -> Result<Vec<Vec<u8>>, GuestError> {
        self.arm();
        let result = self.job.flinkw_plugin_window().call_accumulate(
            &mut self.store,
            function,
            accumulators,
            batch,
            targets,
        );
        self.finish_with(|| format!("window function {function} (accumulate)"), result)
    }

    /// Merges window accumulators (session windows).
    pub fn window_merge(
        &mut self,
        function: u32,
        accumulators: &[Vec<u8>],
    ) -> Result<Vec<u8>, GuestError> {
        self.arm();
        let result =
            self.job.flinkw_plugin_window().call_merge(&mut self.store, function, accumulators);
        self.finish_with(|| format!("window function {function} (merge)"), result)
    }

    /// Runs a full window function over fired windows and their records.
    pub fn window_process(
        &mut self,
        function: u32,
        fired: &[WindowElements],
    ) -> Result<Vec<u8>, GuestError> {
        self.arm();
        let result = self.job.flinkw_plugin_window().call_process(&mut self.store, function, fired);
        self.finish_with(|| format!("window function {function} (process)"), result)
    }

    /// Turns fired windows into output records.
    pub fn window_emit(
        &mut self,
        function: u32,
        fired: &[FiredWindow],
    ) -> Result<Vec<u8>, GuestError> {
        self.arm();
        let result = self.job.flinkw_plugin_window().call_emit(&mut self.store, function, fired);
        self.finish_with(|| format!("window function {function} (emit)"), result)
    }

    /// Asks the guest for a snapshot of the state it keeps itself.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, GuestError> {
        self.arm();
        let result = self.job.flinkw_plugin_snapshot().call_snapshot(&mut self.store).map(Ok);
        self.finish("snapshot", result)
    }

    /// Gives the guest back a snapshot taken by [`Instance::snapshot`].
    pub fn restore(&mut self, state: &[u8]) -> Result<(), GuestError> {
        self.arm();
        let result = self.job.flinkw_plugin_snapshot().call_restore(&mut self.store, state);
        self.finish("restore", result)
    }

    /// Gives the instance its keyed state backend; state keys are prefixed
    /// with one of `max_parallelism` key groups.
    pub fn set_state_backend(&mut self, backend: Box<dyn StateBackend>, max_parallelism: u32) {
        let data = self.store.data_mut();
        data.state = backend;
        data.max_parallelism = max_parallelism;
    }

    /// The instance's keyed state backend and its number of key groups.
    pub fn state_backend(&mut self) -> (&mut dyn StateBackend, u32) {
        let data = self.store.data_mut();
        (data.state.as_mut(), data.max_parallelism)
    }

    /// The guest's counters (from the metrics import).
    pub fn counters(&self) -> &std::collections::BTreeMap<String, u64> {
        &self.store.data().counters
    }

    fn arm(&mut self) {
        self.store.set_epoch_deadline(self.limits.deadline_ticks());
    }

    fn finish<T>(
        &mut self,
        call: &str,
        result: wasmtime::Result<Result<T, String>>,
    ) -> Result<T, GuestError> {
        self.finish_with(|| call.to_owned(), result)
    }

    fn finish_with<T>(
        &mut self,
        call: impl FnOnce() -> String,
        result: wasmtime::Result<Result<T, String>>,
    ) -> Result<T, GuestError> {
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(message)) => Err(GuestError::Failed { call: call(), message }),
            Err(e) => Err(self.trap(call(), e)),
        }
    }

    fn trap(&mut self, call: String, e: wasmtime::Error) -> GuestError {
        let frames: Vec<String> = e
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .map(|bt| bt.frames().iter().map(frame_name).collect())
            .unwrap_or_default();
        let data = self.store.data_mut();
        let cause = if let Some(requested) = data.limiter.refused.take() {
            TrapCause::Memory { requested, limit: data.limiter.max_bytes }
        } else if let Some(panic) = data.last_panic.take() {
            TrapCause::Panic(panic)
        } else {
            match e.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::Interrupt) => TrapCause::Deadline(self.limits.call_timeout),
                Some(wasmtime::Trap::StackOverflow) => TrapCause::StackOverflow,
                // Languages with a shadow stack in linear memory (Rust, C)
                // run off its end with an out-of-bounds access, deep down.
                Some(wasmtime::Trap::MemoryOutOfBounds) if looks_recursive(&frames) => {
                    TrapCause::StackOverflow
                }
                Some(t) => TrapCause::Other(t.to_string()),
                None => TrapCause::Other(format!("{e:#}")),
            }
        };
        let backtrace = format_backtrace(&frames, matches!(cause, TrapCause::Panic(_)));
        GuestError::Trapped { call, cause, backtrace }
    }
}

/// Frames captured for a trap's backtrace (see [`crate::engine`]).
pub(crate) const CAPTURED_FRAMES: usize = 64;

/// Whether a full backtrace cycles through a few functions: recursion.
fn looks_recursive(frames: &[String]) -> bool {
    let distinct: std::collections::BTreeSet<&String> = frames.iter().collect();
    frames.len() >= CAPTURED_FRAMES && distinct.len() <= 4
}
/// Frames shown in an error; the rest are counted.
const SHOWN_FRAMES: usize = 16;

/// A frame's function name, without Rust's hashes and crate disambiguators,
/// and its source file and line when the plugin carries debug info (DWARF,
/// e.g. a C plugin built with `-g`).
fn frame_name(frame: &wasmtime::FrameInfo) -> String {
    let name = match frame.func_name() {
        Some(name) => clean_name(name),
        None => format!("<function {}>", frame.func_index()),
    };
    let place = frame.symbols().iter().find_map(|s| Some((s.file()?, s.line()?)));
    match place {
        Some((file, line)) => format!("{name} at {file}:{line}"),
        None => name,
    }
}

fn clean_name(name: &str) -> String {
    // `{:#}` leaves out Rust's hash suffix.
    let demangled = format!("{:#}", rustc_demangle::demangle(name));
    let name = demangled.as_str();
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        match rest[i..].find(']') {
            Some(j) if rest[i + 1..i + j].chars().all(|c| c.is_ascii_hexdigit()) => {
                rest = &rest[i + j + 1..];
            }
            _ => {
                out.push('[');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    match out.rfind("::h") {
        Some(i)
            if out[i + 3..].len() == 16 && out[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            out.truncate(i);
            out
        }
        _ => out,
    }
}

/// The guest's stack for an error: innermost first, the panic machinery
/// left out, repeated frames folded, long stacks cut.
fn format_backtrace(frames: &[String], panicked: bool) -> String {
    let start = if panicked {
        frames
            .iter()
            .rposition(|f| {
                // The name, without a source place (` at file:line`).
                let f = f.split(" at ").next().unwrap_or(f);
                f.contains("panic_fmt")
                    || f.contains("rust_begin_unwind")
                    || f.ends_with("panicking::panic")
            })
            .map_or(0, |i| i + 1)
    } else {
        0
    };
    let mut lines = Vec::new();
    let mut i = start;
    while i < frames.len() && lines.len() < SHOWN_FRAMES {
        let mut j = i + 1;
        while j < frames.len() && frames[j] == frames[i] {
            j += 1;
        }
        let repeat = if j - i > 1 { format!(" (repeated {} times)", j - i) } else { String::new() };
        lines.push(format!("  {}: {}{repeat}", lines.len(), frames[i]));
        i = j;
    }
    if i < frames.len() {
        lines.push(format!("  ... {} more frames", frames.len() - i));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtraces_are_short_and_readable() {
        let frames: Vec<String> = [
            "core::panicking::panic_fmt",
            "app::explode",
            "app::run",
            "app::run",
            "app::run",
            "main",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            format_backtrace(&frames, true),
            "  0: app::explode\n  1: app::run (repeated 3 times)\n  2: main"
        );
        assert_eq!(
            clean_name("std[d123b7a1a2ed1472]::process::abort::h0123456789abcdef"),
            "std::process::abort"
        );
        assert_eq!(clean_name("app::Vec<[u8]>::get"), "app::Vec<[u8]>::get");
        assert_eq!(clean_name("_ZN9bad_guest7explode17hd904dafbfbc3b79bE"), "bad_guest::explode");
        let deep = vec!["f".to_string(); 5000];
        assert_eq!(format_backtrace(&deep, false), "  0: f (repeated 5000 times)");
    }
}
