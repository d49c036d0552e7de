//! The job graph under construction, and the registry of guest functions
//! that the host calls by id once `plan` has run.

use std::cell::RefCell;
use std::rc::Rc;

use crate::bindings::exports::flinkw::plugin::window::{FiredWindow, WindowElements};
use crate::bindings::flinkw::plugin::types::{
    self, Connector, Edge, JobGraph, Node, NodeKind, Partitioning, Step, TransformNode, Watermarks,
    WindowNode,
};
use crate::{Env, Error};

/// A fused chain or a keyed function: one packed batch in, one out.
pub(crate) type BatchFn = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, String>>;
/// The two entry points of a keyed function.
pub(crate) struct KeyedFns {
    pub process: BatchFn,
    pub on_timer: BatchFn,
}

/// The three parts of a window function (see `wit/window.wit`).
pub(crate) struct WindowFns {
    pub accumulate: AccumulateFn,
    pub merge: MergeFn,
    pub emit: EmitFn,
    pub process: ProcessWindowFn,
    /// The aggregate is mergeable ([`crate::AggregateFunction::mergeable`]).
    pub mergeable: bool,
}
/// Runs a full window function over fired windows.
pub(crate) type ProcessWindowFn = Box<dyn FnMut(Vec<WindowElements>) -> Result<Vec<u8>, String>>;
/// Adds records to accumulators.
pub(crate) type AccumulateFn =
    Box<dyn FnMut(Vec<Option<Vec<u8>>>, &[u8], &[(u32, u32)]) -> Result<Vec<Vec<u8>>, String>>;
/// Merges accumulators.
pub(crate) type MergeFn = Box<dyn FnMut(Vec<Vec<u8>>) -> Result<Vec<u8>, String>>;
/// Turns fired windows into records.
pub(crate) type EmitFn = Box<dyn FnMut(Vec<FiredWindow>) -> Result<Vec<u8>, String>>;
/// Saves the guest's own state.
pub(crate) type SnapshotFn = Box<dyn Fn() -> Vec<u8>>;
/// Restores the guest's own state.
pub(crate) type RestoreFn = Box<dyn Fn(&[u8]) -> Result<(), Error>>;
/// Converts guest state of an older plugin version (see [`Env::migrate`]).
pub(crate) type MigrateFn = Box<dyn Fn(&str, Vec<u8>) -> Result<Vec<u8>, Error>>;
/// The version of a plugin that declared none.
pub(crate) const UNVERSIONED: &str = "unversioned";

/// Where a stream comes from: a node's main output or one of its side outputs.
#[derive(Debug, Clone)]
pub(crate) struct Port {
    pub node: u32,
    pub side: Option<String>,
}

impl Port {
    pub fn main(node: u32) -> Self {
        Port { node, side: None }
    }
}

/// The graph a job builds through [`Env`] and [`crate::Stream`].
#[derive(Default)]
pub(crate) struct GraphBuilder {
    pub name: String,
    pub parallelism: Option<u32>,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    chains: Vec<BatchFn>,
    keyed: Vec<KeyedFns>,
    windows: Vec<WindowFns>,
    pub snapshot: Option<SnapshotFn>,
    pub restore: Option<RestoreFn>,
    pub version: Option<String>,
    pub migrate: Option<MigrateFn>,
}

impl GraphBuilder {
    fn add_node(&mut self, name: String, kind: NodeKind, parallelism: Option<u32>) -> u32 {
        let id = self.nodes.len() as u32;
        self.nodes.push(Node { id, name, kind, parallelism, watermarks: None });
        id
    }

    pub fn add_source(&mut self, name: &str, connector: Connector) -> u32 {
        self.add_node(name.to_owned(), NodeKind::Source(connector), None)
    }

    pub fn add_sink(&mut self, upstream: &Port, name: &str, connector: Connector) -> u32 {
        let id = self.add_node(name.to_owned(), NodeKind::Sink(connector), None);
        self.connect(upstream, id, Partitioning::Forward);
        id
    }

    pub fn add_transform(
        &mut self,
        upstream: &Port,
        steps: Vec<Step>,
        parallelism: Option<u32>,
        chain: BatchFn,
    ) -> u32 {
        let chain_id = self.chains.len() as u32;
        self.chains.push(chain);
        let name = if steps.is_empty() {
            "encode".to_owned()
        } else {
            steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(" -> ")
        };
        let id = self.add_node(
            name,
            NodeKind::Transform(TransformNode { chain: chain_id, steps }),
            parallelism,
        );
        self.connect(upstream, id, Partitioning::Forward);
        id
    }

    pub fn add_keyed(&mut self, upstream: &Port, name: &str, f: KeyedFns) -> u32 {
        let fn_id = self.keyed.len() as u32;
        self.keyed.push(f);
        let id = self.add_node(name.to_owned(), NodeKind::KeyedProcess(fn_id), None);
        self.connect(upstream, id, Partitioning::Hash);
        id
    }

    /// A keyed function with two inputs (a connected stream): records of
    /// `first` go to function `id`, of `second` to `id + 1`.
    pub fn add_keyed_pair(
        &mut self,
        first: &Port,
        second: &Port,
        name: &str,
        f: KeyedFns,
        g: KeyedFns,
    ) -> u32 {
        let fn_id = self.keyed.len() as u32;
        self.keyed.push(f);
        self.keyed.push(g);
        let id = self.add_node(name.to_owned(), NodeKind::KeyedProcess(fn_id), None);
        self.connect(first, id, Partitioning::Hash);
        self.connect(second, id, Partitioning::Hash);
        id
    }

    pub fn add_window(
        &mut self,
        upstream: &Port,
        name: &str,
        node: WindowNode,
        f: WindowFns,
    ) -> u32 {
        let node = WindowNode { function: self.windows.len() as u32, ..node };
        if f.mergeable {
            crate::bindings::flinkw::plugin::hints::mergeable_aggregate(node.function);
        }
        self.windows.push(f);
        let id = self.add_node(name.to_owned(), NodeKind::Window(node), None);
        self.connect(upstream, id, Partitioning::Hash);
        id
    }

    pub fn set_watermarks(&mut self, node: u32, watermarks: Watermarks) {
        if let Some(n) = self.nodes.get_mut(node as usize) {
            n.watermarks = Some(watermarks);
        }
    }

    fn connect(&mut self, source: &Port, target: u32, partitioning: Partitioning) {
        self.edges.push(Edge {
            source: source.node,
            target,
            partitioning,
            side_output: source.side.clone(),
        });
    }

    /// A node with several inputs that passes their records on unchanged.
    pub fn add_union(&mut self, inputs: &[Port]) -> u32 {
        let chain_id = self.chains.len() as u32;
        self.chains.push(Box::new(|input: &[u8]| Ok(input.to_vec())));
        let kind = NodeKind::Transform(TransformNode { chain: chain_id, steps: Vec::new() });
        let id = self.add_node("union".to_owned(), kind, None);
        for port in inputs {
            self.connect(port, id, Partitioning::Forward);
        }
        id
    }

    pub fn rename(&mut self, node: u32, name: &str) {
        if let Some(n) = self.nodes.get_mut(node as usize) {
            n.name = name.to_owned();
        }
    }

    pub fn next_keyed_id(&self) -> usize {
        self.keyed.len()
    }
}

/// What `plan` leaves behind for the host's later calls.
struct Registry {
    chains: Vec<BatchFn>,
    keyed: Vec<KeyedFns>,
    windows: Vec<WindowFns>,
    snapshot: Option<SnapshotFn>,
    restore: Option<RestoreFn>,
    version: Option<String>,
    migrate: Option<MigrateFn>,
}

thread_local! {
    static REGISTRY: RefCell<Option<Registry>> = const { RefCell::new(None) };
}

unsafe extern "Rust" {
    /// Defined by [`crate::export_job!`] in the plugin crate.
    safe fn __flinkw_job(env: &mut Env) -> Result<(), Error>;
}

pub(crate) fn plan(config: types::Settings) -> Result<JobGraph, String> {
    let graph = Rc::new(RefCell::new(GraphBuilder { name: "job".into(), ..Default::default() }));
    let mut env = Env { config: crate::env::Config::new(config), graph: graph.clone() };
    __flinkw_job(&mut env).map_err(|e| e.to_string())?;
    let config_keys = env.config.keys_read();
    drop(env);
    let g = Rc::try_unwrap(graph)
        .map_err(|_| "a stream outlived the job function; streams must not be stored".to_owned())?
        .into_inner();
    let job = JobGraph {
        name: g.name,
        nodes: g.nodes,
        edges: g.edges,
        parallelism: g.parallelism,
        config_keys,
    };
    REGISTRY.with(|r| {
        *r.borrow_mut() = Some(Registry {
            chains: g.chains,
            keyed: g.keyed,
            windows: g.windows,
            snapshot: g.snapshot,
            restore: g.restore,
            version: g.version,
            migrate: g.migrate,
        })
    });
    Ok(job)
}

fn with_registry<R>(f: impl FnOnce(&mut Registry) -> Result<R, String>) -> Result<R, String> {
    REGISTRY.with(|r| match r.borrow_mut().as_mut() {
        Some(reg) => f(reg),
        None => Err("the host called the plugin before `plan`".to_owned()),
    })
}

pub(crate) fn run_chain(chain: u32, input: &[u8]) -> Result<Vec<u8>, String> {
    with_registry(|r| match r.chains.get_mut(chain as usize) {
        Some(f) => f(input),
        None => Err(format!("no transform chain {chain} in this plugin")),
    })
}

pub(crate) fn run_keyed(function: u32, input: &[u8]) -> Result<Vec<u8>, String> {
    with_registry(|r| match r.keyed.get_mut(function as usize) {
        Some(f) => (f.process)(input),
        None => Err(format!("no keyed function {function} in this plugin")),
    })
}

pub(crate) fn run_timers(function: u32, input: &[u8]) -> Result<Vec<u8>, String> {
    with_registry(|r| match r.keyed.get_mut(function as usize) {
        Some(f) => (f.on_timer)(input),
        None => Err(format!("no keyed function {function} in this plugin")),
    })
}

pub(crate) fn with_window<R>(
    function: u32,
    f: impl FnOnce(&mut WindowFns) -> Result<R, String>,
) -> Result<R, String> {
    with_registry(|r| match r.windows.get_mut(function as usize) {
        Some(w) => f(w),
        None => Err(format!("no window function {function} in this plugin")),
    })
}

pub(crate) fn snapshot() -> Vec<u8> {
    with_registry(|r| Ok(r.snapshot.as_ref().map(|f| f()).unwrap_or_default())).unwrap_or_default()
}

pub(crate) fn restore(state: &[u8]) -> Result<(), String> {
    // The host sends an empty state only after it restored the plugin's
    // whole memory (`capture_memory!`): nothing to load, but the host
    // handles in that memory belong to the instance it came from.
    if state.is_empty() {
        crate::state::host_handles_lost();
        return Ok(());
    }
    with_registry(|r| match &r.restore {
        Some(f) => f(state).map_err(|e| e.to_string()),
        None if state.is_empty() => Ok(()),
        None => Err("this plugin keeps no guest state but a snapshot holds some".to_owned()),
    })
}

/// The version the plugin declared with [`Env::version`], or `unversioned`.
pub(crate) fn version() -> String {
    with_registry(|r| Ok(r.version.clone().unwrap_or_else(|| UNVERSIONED.to_owned())))
        .unwrap_or_else(|_| UNVERSIONED.to_owned())
}

/// Guest state of version `from` in this version's form: unchanged when the
/// versions match or the plugin registered no migration.
pub(crate) fn migrate(from: &str, state: Vec<u8>) -> Result<Vec<u8>, String> {
    with_registry(|r| {
        let same = r.version.as_deref().unwrap_or(UNVERSIONED) == from;
        match &r.migrate {
            Some(f) if !same => f(from, state).map_err(|e| e.to_string()),
            _ => Ok(state),
        }
    })
}
