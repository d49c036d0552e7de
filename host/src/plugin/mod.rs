//! Plugins: loading and checking a component, and running its exports.
//!
//! [`Plugin::load`] checks that the bytes are a component of the
//! `flinkw:plugin@0.1.x` world and pre-instantiates it once; each subtask
//! then gets its own cheap [`Instance`] from that template.

mod bindings;
mod capture;
mod host;
mod instance;

use std::path::Path;

use wasmtime::component::{Component, ComponentExportIndex, Linker};

pub(crate) use bindings::flinkw::plugin::types as wit_types;
pub use capture::{CAPTURE_SECTION, ImageRestoreError};
pub(crate) use instance::CAPTURED_FRAMES;
pub use instance::{FiredWindow, GuestError, Instance, TrapCause, WindowElements};

use crate::engine::{Engine, content_hash};

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.1.0";
const WIT_PACKAGE: &str = "flinkw:plugin";
/// The version recorded for guest state of a plugin that names none (the
/// Rust SDK's default as well).
pub const UNVERSIONED: &str = "unversioned";
/// The interfaces a plugin must export.
const REQUIRED_EXPORTS: [&str; 5] = ["plan", "transform", "keyed", "snapshot", "window"];

/// Why a plugin cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Io {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes do not start with the Wasm magic number.
    #[error("{name} is not a WebAssembly file (it does not start with \\0asm)")]
    NotWasm {
        /// The plugin's name.
        name: String,
    },
    /// A core module instead of a component.
    #[error(
        "{name} is a core WebAssembly module, not a component; build plugins for \
         `wasm32-wasip2` (cargo build --target wasm32-wasip2) or wrap the module with \
         `wasm-tools component new`"
    )]
    CoreModule {
        /// The plugin's name.
        name: String,
    },
    /// wasmtime could not compile it (malformed or unsupported Wasm).
    #[error("{name} is not a valid component: {reason}")]
    Invalid {
        /// The plugin's name.
        name: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// A component of another world.
    #[error(
        "{name} is not a flinkw plugin: it does not export {missing} of the \
         `{WIT_PACKAGE}@{WIT_VERSION}` world `job` (it exports: {exports})"
    )]
    WrongWorld {
        /// The plugin's name.
        name: String,
        /// The missing interfaces.
        missing: String,
        /// What it exports instead.
        exports: String,
    },
    /// A flinkw plugin built against an incompatible version of the WIT package.
    #[error(
        "{name} was built for {WIT_PACKAGE}@{found}, but this flinkw runs \
         {WIT_PACKAGE}@{WIT_VERSION}; rebuild the plugin against this version's SDK"
    )]
    Version {
        /// The plugin's name.
        name: String,
        /// The version the plugin was built for.
        found: String,
    },
    /// It declares whole-memory capture but cannot have it.
    #[error("{name} declares whole-memory capture, but {reason}")]
    Capture {
        /// The plugin's name.
        name: String,
        /// Why it cannot be captured.
        reason: String,
    },
    /// It imports something the host does not provide.
    #[error("{name} needs imports that flinkw does not provide: {reason}")]
    Imports {
        /// The plugin's name.
        name: String,
        /// wasmtime's reason.
        reason: String,
    },
}

/// A loaded, checked plugin, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    name: String,
    hash: String,
    engine: Engine,
    pre: bindings::JobPre<host::HostState>,
    upgrade: Option<UpgradeExports>,
    /// For a plugin that declares whole-memory capture: what capturing and
    /// restoring its memory needs (`pre` is then the instrumented plugin).
    capture: Option<capture::Capture>,
}

/// Where a plugin's optional `upgrade` export's functions are.
#[derive(Clone, Copy)]
struct UpgradeExports {
    version: ComponentExportIndex,
    migrate: ComponentExportIndex,
}

impl UpgradeExports {
    /// Finds the `upgrade` interface's functions, if the plugin exports it.
    fn find(engine: &Engine, component: &Component) -> Option<Self> {
        let ty = component.component_type();
        let name = ty
            .exports(engine.wasmtime())
            .map(|(n, _)| n)
            .find(|n| n.starts_with(&format!("{WIT_PACKAGE}/upgrade@")))?;
        let interface = component.get_export_index(None, name)?;
        Some(UpgradeExports {
            version: component.get_export_index(Some(&interface), "version")?,
            migrate: component.get_export_index(Some(&interface), "migrate")?,
        })
    }
}

impl Plugin {
    /// Loads the plugin file at `path`.
    pub fn load_file(engine: &Engine, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path)
            .map_err(|source| LoadError::Io { path: path.display().to_string(), source })?;
        Self::load(engine, &path.display().to_string(), &bytes)
    }

    /// Loads a plugin from its bytes; `name` is used in messages.
    pub fn load(engine: &Engine, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let name = name.to_owned();
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule { name }),
            Some([0, b'a', b's', b'm', _, _, 1, 0]) => {}
            _ => return Err(LoadError::NotWasm { name }),
        }
        let hash = content_hash(bytes);
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            name: name.clone(),
            reason: format!("{e:#}"),
        };
        let capture_error = |reason| LoadError::Capture { name: name.clone(), reason };
        let (component, capture) = if capture::declared(bytes).map_err(capture_error)? {
            // Every instance comes from the instrumented plugin, whose
            // memories the host can read; it is cached like any plugin.
            let instrumented = capture::instrument(bytes).map_err(capture_error)?;
            let component =
                engine.compile(&content_hash(&instrumented), &instrumented).map_err(invalid)?;
            let accessors =
                capture::AccessorExports::find(engine, &component).map_err(capture_error)?;
            let original = std::sync::Arc::new(bytes.to_vec());
            (component, Some(capture::Capture { original, hash: hash.clone(), accessors }))
        } else {
            (engine.compile(&hash, bytes).map_err(invalid)?, None)
        };
        check_world(&name, engine, &component)?;
        let (pre, upgrade) = pre_instantiate(engine, &name, &component)?;
        Ok(Plugin { name, hash, engine: engine.clone(), pre, upgrade, capture })
    }

    /// Whether the plugin declared whole-memory capture: the host captures
    /// its memories and globals at each checkpoint instead of calling its
    /// `snapshot` export.
    pub fn captures_memory(&self) -> bool {
        self.capture.is_some()
    }

    /// A fresh instance whose memories and globals are `image` (taken by
    /// [`Instance::capture_memory`] from an instance of this plugin): the
    /// component is rewritten with the image as its initial state, then
    /// compiled. The guest's `plan` is not called again: the image holds
    /// what it set up.
    pub fn instantiate_from_image(
        &self,
        label: &str,
        image: &crate::checkpoint::MemoryImage,
    ) -> Result<Instance, ImageRestoreError> {
        let Some(capture) = &self.capture else {
            return Err(ImageRestoreError::Unfit(format!(
                "it holds a memory image, but {} does not declare whole-memory capture (custom \
                 section `{CAPTURE_SECTION}`)",
                self.name
            )));
        };
        let component = capture.rebuild(&self.engine, &self.name, image)?;
        let failed = |e: String| ImageRestoreError::Failed(e);
        let (pre, upgrade) = pre_instantiate(&self.engine, &self.name, &component)
            .map_err(|e| failed(e.to_string()))?;
        let accessors = capture::AccessorExports::find(&self.engine, &component).map_err(failed)?;
        Instance::new(
            &self.engine,
            &pre,
            upgrade.as_ref(),
            Some((&accessors, self.hash.as_str())),
            label,
        )
        .map_err(|e| failed(e.to_string()))
    }

    /// The name used in messages (usually the file path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The content hash (hex SHA-256) that identifies the plugin.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// A fresh instance with its own store, memory and state; `label` tags
    /// its logs (e.g. `job/operator#subtask`).
    pub fn instantiate(&self, label: &str) -> Result<Instance, GuestError> {
        let capture = self.capture.as_ref().map(|c| (&c.accessors, self.hash.as_str()));
        Instance::new(&self.engine, &self.pre, self.upgrade.as_ref(), capture, label)
    }
}

/// Links the host's imports for `component` and pre-instantiates it.
fn pre_instantiate(
    engine: &Engine,
    name: &str,
    component: &Component,
) -> Result<(bindings::JobPre<host::HostState>, Option<UpgradeExports>), LoadError> {
    let imports =
        |e: wasmtime::Error| LoadError::Imports { name: name.to_owned(), reason: format!("{e:#}") };
    let mut linker = Linker::new(engine.wasmtime());
    let add = |linker: &mut Linker<host::HostState>| -> wasmtime::Result<()> {
        wasmtime_wasi::p2::add_to_linker_sync(linker)?;
        bindings::Job::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)
    };
    add(&mut linker).map_err(imports)?;
    let pre = linker.instantiate_pre(component).and_then(bindings::JobPre::new).map_err(imports)?;
    Ok((pre, UpgradeExports::find(engine, component)))
}

/// Checks the component's exports against the `job` world.
fn check_world(name: &str, engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine.wasmtime()).map(|(n, _)| n.to_owned()).collect();
    let ours: Vec<&String> =
        exports.iter().filter(|n| n.starts_with(&format!("{WIT_PACKAGE}/"))).collect();
    let compatible = |version: &str| {
        let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
        major_minor(version) == major_minor(WIT_VERSION)
    };
    if let Some(other) =
        ours.iter().filter_map(|n| n.split_once('@').map(|(_, v)| v)).find(|v| !compatible(v))
    {
        return Err(LoadError::Version { name: name.to_owned(), found: other.to_owned() });
    }
    let missing: Vec<String> = REQUIRED_EXPORTS
        .iter()
        .filter(|iface| {
            !ours.iter().any(|n| {
                n.strip_prefix(&format!("{WIT_PACKAGE}/"))
                    .is_some_and(|rest| rest.split('@').next() == Some(iface))
            })
        })
        .map(|iface| format!("`{iface}`"))
        .collect();
    if !missing.is_empty() {
        let exports = if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") };
        return Err(LoadError::WrongWorld {
            name: name.to_owned(),
            missing: missing.join(", "),
            exports,
        });
    }
    Ok(())
}

/// Loads a plugin from a file; a convenience for callers with a path.
pub fn load(engine: &Engine, path: impl AsRef<Path>) -> Result<Plugin, LoadError> {
    Plugin::load_file(engine, path.as_ref())
}
