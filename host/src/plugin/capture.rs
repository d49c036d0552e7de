//! Whole-memory capture: a plugin that declares it has its whole linear
//! memory and globals saved by the host at each checkpoint barrier and
//! restored into a fresh instance, so state kept in ordinary variables
//! survives failures without `snapshot`/`restore` code.
//!
//! The declaration is a custom section [`CAPTURE_SECTION`] whose content is
//! `memory`, in any core module of the component (the Rust SDK's
//! `flinkw::capture_memory!()` adds it). A custom section, not a WIT export
//! or a config key: the 0.1 world gets no new export, other plugins are
//! untouched, and the host knows at load time — before any instance
//! exists — that it must instrument the plugin.
//!
//! How (with `wasmtime-wizer`): at load, the component is instrumented: it
//! gets an extra export instance `wasmtime:wizer/access` whose functions
//! return each core instance's memory (`list<u8>`, read in place) and each
//! mutable global. Every instance of the plugin is made from that
//! instrumented component. At the barrier the host calls the accessors
//! ([`Accessors::capture`]). On restore, wizer rewrites the original
//! component with the image as its initial memories and globals; the result
//! is instrumented again (so it can be captured at the next barrier),
//! compiled and instantiated instead of calling the guest's `restore`.
//!
//! Not captured: tables (wizer refuses plugins that change tables at run
//! time), host resources the guest holds handles to (a state handle kept
//! across calls is dangling after a restore: open handles inside each call,
//! as the SDKs do), and WASI state (the context is empty anyway). The image
//! fits only the exact build it came from, and one subtask: it cannot be
//! split by key group (no rescaling).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex, TypedFunc, WasmList};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use crate::checkpoint::{CapturedValue, MemoryImage};
use crate::engine::Engine;

/// The custom section by which a plugin declares whole-memory capture.
pub const CAPTURE_SECTION: &str = "flinkw:state-capture";
/// The only value [`CAPTURE_SECTION`] takes.
const CAPTURE_MEMORY: &str = "memory";
/// The instance wizer's instrumentation exports.
const ACCESS_INSTANCE: &str = "wasmtime:wizer/access";
/// No export of a flinkw plugin has this name: wizer removes its "init
/// function" export when it rewrites a component, and there is none here.
const NO_INIT_FUNCTION: &str = "flinkw-no-init-function";

/// Whether `bytes` declare whole-memory capture.
pub(crate) fn declared(bytes: &[u8]) -> Result<bool, String> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        // A malformed component is reported by the compiler, with context.
        let Ok(payload) = payload else { return Ok(false) };
        if let wasmparser::Payload::CustomSection(section) = payload
            && section.name() == CAPTURE_SECTION
        {
            return match std::str::from_utf8(section.data()).map(str::trim) {
                Ok(CAPTURE_MEMORY) => Ok(true),
                _ => Err(format!(
                    "its custom section `{CAPTURE_SECTION}` holds {:?}; the only value is \
                     {CAPTURE_MEMORY:?}",
                    String::from_utf8_lossy(section.data())
                )),
            };
        }
    }
    Ok(false)
}

fn wizer() -> Wizer {
    let mut w = Wizer::new();
    w.init_func(NO_INIT_FUNCTION);
    w
}

/// Instruments the plugin's `bytes` so its state can be read.
pub(crate) fn instrument(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (_, instrumented) = wizer()
        .instrument_component(bytes)
        .map_err(|e| format!("whole-memory capture cannot instrument it: {e:#}"))?;
    Ok(instrumented)
}

/// What an accessor returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memory,
    I32,
    I64,
    F32,
    F64,
}

/// The accessors of an instrumented component, in its export order.
#[derive(Clone)]
pub(crate) struct AccessorExports(Arc<Vec<(String, Kind, ComponentExportIndex)>>);

impl AccessorExports {
    /// Finds the accessors wizer added to `component`.
    pub(crate) fn find(engine: &Engine, component: &Component) -> Result<Self, String> {
        let missing = || format!("the instrumented plugin lacks `{ACCESS_INSTANCE}`");
        let ty = component.component_type();
        let (_, item) = ty
            .exports(engine.wasmtime())
            .find(|(n, _)| *n == ACCESS_INSTANCE)
            .ok_or_else(missing)?;
        let ComponentItem::ComponentInstance(instance) = item.ty else { return Err(missing()) };
        let index = component.get_export_index(None, ACCESS_INSTANCE).ok_or_else(missing)?;
        let mut accessors = Vec::new();
        for (name, item) in instance.exports(engine.wasmtime()) {
            let ComponentItem::ComponentFunc(f) = item.ty else { continue };
            let kind = match f.results().next() {
                Some(Type::List(l)) if l.ty() == Type::U8 => Kind::Memory,
                Some(Type::S32) => Kind::I32,
                Some(Type::S64) => Kind::I64,
                Some(Type::Float32) => Kind::F32,
                Some(Type::Float64) => Kind::F64,
                other => return Err(format!("accessor {name} returns {other:?}")),
            };
            let func = component.get_export_index(Some(&index), name).ok_or_else(missing)?;
            accessors.push((name.to_owned(), kind, func));
        }
        Ok(AccessorExports(Arc::new(accessors)))
    }

    /// (name, is a memory) of each accessor: what an image must hold.
    pub(crate) fn shape(&self) -> Vec<(String, bool)> {
        self.0.iter().map(|(n, k, _)| (n.clone(), *k == Kind::Memory)).collect()
    }

    /// The accessors of a live instance.
    pub(crate) fn bind<T: 'static>(
        &self,
        store: &mut wasmtime::Store<T>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Accessors> {
        let mut funcs = Vec::with_capacity(self.0.len());
        for (name, kind, index) in self.0.iter() {
            let f = match kind {
                Kind::Memory => Accessor::Memory(instance.get_typed_func(&mut *store, index)?),
                Kind::I32 => Accessor::I32(instance.get_typed_func(&mut *store, index)?),
                Kind::I64 => Accessor::I64(instance.get_typed_func(&mut *store, index)?),
                Kind::F32 => Accessor::F32(instance.get_typed_func(&mut *store, index)?),
                Kind::F64 => Accessor::F64(instance.get_typed_func(&mut *store, index)?),
            };
            funcs.push((name.clone(), f));
        }
        Ok(Accessors(funcs))
    }
}

enum Accessor {
    Memory(TypedFunc<(), (WasmList<u8>,)>),
    I32(TypedFunc<(), (i32,)>),
    I64(TypedFunc<(), (i64,)>),
    F32(TypedFunc<(), (f32,)>),
    F64(TypedFunc<(), (f64,)>),
}

/// The accessor functions of one live instance.
pub(crate) struct Accessors(Vec<(String, Accessor)>);

impl Accessors {
    /// Reads every memory (in place, leaving out zero pages) and global.
    pub(crate) fn capture<T: 'static>(
        &self,
        store: &mut wasmtime::Store<T>,
        plugin: &str,
    ) -> wasmtime::Result<MemoryImage> {
        let mut items = Vec::with_capacity(self.0.len());
        for (name, f) in &self.0 {
            let value = match f {
                Accessor::Memory(f) => {
                    let (list,) = f.call(&mut *store, ())?;
                    CapturedValue::memory(list.as_le_slice(&*store))
                }
                Accessor::I32(f) => CapturedValue::I32(f.call(&mut *store, ())?.0),
                Accessor::I64(f) => CapturedValue::I64(f.call(&mut *store, ())?.0),
                Accessor::F32(f) => CapturedValue::F32(f.call(&mut *store, ())?.0.to_bits()),
                Accessor::F64(f) => CapturedValue::F64(f.call(&mut *store, ())?.0.to_bits()),
            };
            items.push((name.clone(), value));
        }
        Ok(MemoryImage { plugin: plugin.to_owned(), items })
    }
}

/// A stored image, served to wizer's rewrite as if it were a live instance.
struct StoredState {
    memories: HashMap<String, Vec<u8>>,
    globals: HashMap<String, CapturedValue>,
}

impl StoredState {
    fn global(&self, func: &str) -> Option<&CapturedValue> {
        self.globals.get(func)
    }
}

impl ComponentInstanceState for StoredState {
    async fn call_func_ret_list_u8(
        &mut self,
        _instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        // The image's shape was checked against the accessors first.
        contents(self.memories.get(func).map_or(&[][..], Vec::as_slice))
    }

    async fn call_func_ret_s32(&mut self, _instance: &str, func: &str) -> i32 {
        match self.global(func) {
            Some(CapturedValue::I32(v)) => *v,
            _ => 0,
        }
    }

    async fn call_func_ret_s64(&mut self, _instance: &str, func: &str) -> i64 {
        match self.global(func) {
            Some(CapturedValue::I64(v)) => *v,
            _ => 0,
        }
    }

    async fn call_func_ret_f32(&mut self, _instance: &str, func: &str) -> u32 {
        match self.global(func) {
            Some(CapturedValue::F32(v)) => *v,
            _ => 0,
        }
    }

    async fn call_func_ret_f64(&mut self, _instance: &str, func: &str) -> u64 {
        match self.global(func) {
            Some(CapturedValue::F64(v)) => *v,
            _ => 0,
        }
    }
}

/// Why an image could not become an instance.
#[derive(Debug, thiserror::Error)]
pub enum ImageRestoreError {
    /// The image does not fit this plugin (another build, damaged).
    #[error("{0}")]
    Unfit(String),
    /// Rewriting, compiling or instantiating failed.
    #[error("{0}")]
    Failed(String),
}

/// The original plugin and its accessors: what a restore needs.
#[derive(Clone)]
pub(crate) struct Capture {
    /// The component as built, before instrumentation.
    pub original: Arc<Vec<u8>>,
    /// Its content hash, recorded in every image.
    pub hash: String,
    /// The accessors of the instrumented component.
    pub accessors: AccessorExports,
}

impl Capture {
    /// The component whose initial memories and globals are `image`,
    /// instrumented again, and compiled.
    pub(crate) fn rebuild(
        &self,
        engine: &Engine,
        name: &str,
        image: &MemoryImage,
    ) -> Result<Component, ImageRestoreError> {
        if image.plugin != self.hash {
            return Err(ImageRestoreError::Unfit(format!(
                "its memory image was captured from plugin {} but {name} is {}: a memory image \
                 fits only the build it came from (start the new build without this checkpoint, \
                 or keep state the host checkpoints: keyed state or the `snapshot` export)",
                short(&image.plugin),
                short(&self.hash)
            )));
        }
        let unfit = |e: String| ImageRestoreError::Unfit(format!("its memory image: {e}"));
        image.check_shape(&self.accessors.shape()).map_err(|e| unfit(e.to_string()))?;
        let mut state = StoredState { memories: HashMap::new(), globals: HashMap::new() };
        for (item, value) in &image.items {
            match value {
                CapturedValue::Memory { len, runs } => {
                    let bytes =
                        MemoryImage::expand(item, *len, runs).map_err(|e| unfit(e.to_string()))?;
                    state.memories.insert(item.clone(), bytes);
                }
                other => {
                    state.globals.insert(item.clone(), other.clone());
                }
            }
        }
        let started = Instant::now();
        let failed = |what: &str, e: String| {
            ImageRestoreError::Failed(format!("cannot {what} {name} from its memory image: {e}"))
        };
        let wizer = wizer();
        let (cx, _) = wizer
            .instrument_component(&self.original)
            .map_err(|e| failed("instrument", format!("{e:#}")))?;
        // wizer's rewrite asserts rather than returns some errors.
        let rewritten = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            futures::executor::block_on(wizer.snapshot_component(&cx, &mut state))
        }))
        .map_err(|_| failed("rewrite", "the rewrite panicked".into()))?
        .map_err(|e| failed("rewrite", format!("{e:#}")))?;
        let instrumented = instrument(&rewritten).map_err(|e| failed("instrument", e))?;
        let rewrite_ms = started.elapsed().as_millis();
        let compiling = Instant::now();
        let component = Component::new(engine.wasmtime(), &instrumented)
            .map_err(|e| failed("compile", format!("{e:#}")))?;
        tracing::info!(
            plugin = name,
            memory_bytes = image.memory_bytes(),
            stored_bytes = image.stored_bytes(),
            rewrite_ms,
            compile_ms = compiling.elapsed().as_millis(),
            "rebuilt the plugin from its memory image"
        );
        Ok(component)
    }
}

/// The first 12 hex digits of a content hash.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
