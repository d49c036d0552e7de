//! Plugins: loading and checking a component, and running its exports.
//!
//! [`Plugin::load`] checks that the bytes are a component of the
//! `flinkw:plugin@0.1.x` world and pre-instantiates it once; each subtask
//! then gets its own cheap [`Instance`] from that template.

mod bindings;
mod host;
mod instance;

use std::path::Path;

use wasmtime::component::{Component, ComponentExportIndex, Linker};

pub(crate) use bindings::flinkw::plugin::types as wit_types;
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
        let component = engine
            .compile(&hash, bytes)
            .map_err(|e| LoadError::Invalid { name: name.clone(), reason: format!("{e:#}") })?;
        check_world(&name, engine, &component)?;
        let mut linker = Linker::new(engine.wasmtime());
        let add = |linker: &mut Linker<host::HostState>| -> wasmtime::Result<()> {
            wasmtime_wasi::p2::add_to_linker_sync(linker)?;
            bindings::Job::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)
        };
        add(&mut linker)
            .map_err(|e| LoadError::Imports { name: name.clone(), reason: format!("{e:#}") })?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(bindings::JobPre::new)
            .map_err(|e| LoadError::Imports { name: name.clone(), reason: format!("{e:#}") })?;
        let upgrade = UpgradeExports::find(engine, &component);
        Ok(Plugin { name, hash, engine: engine.clone(), pre, upgrade })
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
        Instance::new(&self.engine, &self.pre, self.upgrade.as_ref(), label)
    }
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
