//! The job graph a plugin plans, in the host's own types, and its checks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::plugin::wit_types as wit;
use crate::time::WatermarkStrategy;
use crate::window::{WindowAssigner, WindowError};

/// A job's logical graph: what the plugin's `plan` returned.
#[derive(Debug, Clone, PartialEq)]
pub struct JobGraph {
    /// The job's name.
    pub name: String,
    /// Vertices, in the plugin's order.
    pub nodes: Vec<Node>,
    /// Edges between vertices.
    pub edges: Vec<Edge>,
    /// The plugin's default parallelism.
    pub parallelism: Option<u32>,
    /// Config keys the plan read.
    pub config_keys: Vec<String>,
}

/// One vertex of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique id.
    pub id: u32,
    /// Display name.
    pub name: String,
    /// What it does.
    pub kind: NodeKind,
    /// Parallelism the plugin asked for.
    pub parallelism: Option<u32>,
    /// Watermarks derived from this node's output.
    pub watermarks: Option<Watermarks>,
}

/// How a node's output gets watermarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// The strategy.
    pub strategy: WatermarkStrategy,
    /// Idle after this long without records.
    pub idle_timeout: Option<std::time::Duration>,
}

/// What a vertex does.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A host source connector.
    Source(Connector),
    /// A fused chain of stateless guest steps.
    Transform {
        /// The chain id passed to the guest.
        chain: u32,
        /// The steps, for display.
        steps: Vec<Step>,
    },
    /// A keyed guest function with keyed state.
    KeyedProcess(u32),
    /// A host sink connector.
    Sink(Connector),
    /// Keyed event-time windows with an incremental guest aggregate.
    Window(WindowNode),
}

/// What a window node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowNode {
    /// A full window function (all records) rather than an aggregate.
    pub full: bool,
    /// Windows follow the wall clock instead of event time.
    pub processing_time: bool,
    /// Which windows records go to.
    pub assigner: WindowAssigner,
    /// How long after firing late records still update a window, ms.
    pub allowed_lateness: i64,
    /// The guest's window function id.
    pub function: u32,
    /// The plugin declared the aggregate mergeable (`hints`): sliding
    /// windows may be kept as panes.
    pub mergeable: bool,
}

/// A source or sink, by kind with options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    /// The kind, e.g. `file`.
    pub kind: String,
    /// The options.
    pub options: BTreeMap<String, String>,
}

/// One stateless step of a transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `map`, `filter`, `flat-map` or `key-by`.
    pub kind: &'static str,
    /// Display name.
    pub name: String,
}

/// How records travel along an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// To the same subtask index.
    Forward,
    /// Round-robin.
    Rebalance,
    /// By key group.
    Hash,
}

/// A directed edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Upstream node id.
    pub source: u32,
    /// Downstream node id.
    pub target: u32,
    /// Distribution.
    pub partitioning: Partitioning,
    /// A side output of the source node (`late` for a window's late
    /// records), or none for its main output.
    pub side_output: Option<String>,
}

/// Why a job graph is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// No node reads input.
    #[error("the job has no source")]
    NoSource,
    /// No node writes output.
    #[error("the job has no sink")]
    NoSink,
    /// Two nodes share an id.
    #[error("two nodes have the id {0}")]
    DuplicateId(u32),
    /// An edge names a node that does not exist.
    #[error("an edge refers to node {0}, which does not exist")]
    UnknownNode(u32),
    /// A node is wired wrongly.
    #[error("node {name:?}: {problem}")]
    BadWiring {
        /// The node's name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The edges form a cycle.
    #[error("the job graph has a cycle through node {0:?}")]
    Cycle(String),
    /// A parallelism of zero.
    #[error("node {0:?} has parallelism 0")]
    ZeroParallelism(String),
    /// A window definition that cannot work.
    #[error("node {name:?}: {error}")]
    BadWindow {
        /// The node's name.
        name: String,
        /// What is wrong.
        error: WindowError,
    },
}

impl fmt::Display for Partitioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Partitioning::Forward => "forward",
            Partitioning::Rebalance => "rebalance",
            Partitioning::Hash => "hash",
        })
    }
}

/// Converts and checks the plugin's plan.
pub(crate) fn from_wit(g: wit::JobGraph) -> Result<JobGraph, GraphError> {
    let connector =
        |c: wit::Connector| Connector { kind: c.kind, options: c.options.into_iter().collect() };
    let nodes = g
        .nodes
        .into_iter()
        .map(|n| Node {
            id: n.id,
            name: n.name,
            parallelism: n.parallelism,
            watermarks: n.watermarks.map(|w| Watermarks {
                strategy: match w.strategy {
                    wit::WatermarkStrategy::BoundedOutOfOrderness(ms) => {
                        WatermarkStrategy::BoundedOutOfOrderness { max_delay_ms: ms }
                    }
                    wit::WatermarkStrategy::Monotonous => WatermarkStrategy::Monotonous,
                },
                idle_timeout: w.idle_timeout_ms.map(std::time::Duration::from_millis),
            }),
            kind: match n.kind {
                wit::NodeKind::Source(c) => NodeKind::Source(connector(c)),
                wit::NodeKind::Sink(c) => NodeKind::Sink(connector(c)),
                wit::NodeKind::KeyedProcess(f) => NodeKind::KeyedProcess(f),
                wit::NodeKind::Window(w) => NodeKind::Window(WindowNode {
                    full: w.mode == wit::WindowMode::Process,
                    processing_time: w.processing_time,
                    assigner: match w.assigner {
                        wit::WindowAssigner::Tumbling(t) => {
                            WindowAssigner::Tumbling { size: t.size_ms, offset: t.offset_ms }
                        }
                        wit::WindowAssigner::Sliding(s) => WindowAssigner::Sliding {
                            size: s.size_ms,
                            slide: s.slide_ms,
                            offset: s.offset_ms,
                        },
                        wit::WindowAssigner::Session(gap) => WindowAssigner::Session { gap },
                    },
                    allowed_lateness: i64::try_from(w.allowed_lateness_ms).unwrap_or(i64::MAX),
                    function: w.function,
                    mergeable: false,
                }),
                wit::NodeKind::Transform(t) => NodeKind::Transform {
                    chain: t.chain,
                    steps: t
                        .steps
                        .into_iter()
                        .map(|s| Step {
                            kind: match s.kind {
                                wit::StepKind::Map => "map",
                                wit::StepKind::Filter => "filter",
                                wit::StepKind::FlatMap => "flat-map",
                                wit::StepKind::KeyBy => "key-by",
                                wit::StepKind::Timestamps => "timestamps",
                            },
                            name: s.name,
                        })
                        .collect(),
                },
            },
        })
        .collect();
    let edges = g
        .edges
        .into_iter()
        .map(|e| Edge {
            source: e.source,
            target: e.target,
            partitioning: match e.partitioning {
                wit::Partitioning::Forward => Partitioning::Forward,
                wit::Partitioning::Rebalance => Partitioning::Rebalance,
                wit::Partitioning::Hash => Partitioning::Hash,
            },
            side_output: e.side_output,
        })
        .collect();
    let graph = JobGraph {
        name: g.name,
        nodes,
        edges,
        parallelism: g.parallelism,
        config_keys: g.config_keys,
    };
    graph.validate()?;
    Ok(graph)
}

impl JobGraph {
    /// The node with id `id`.
    pub fn node(&self, id: u32) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Edges into `id`.
    pub fn inputs(&self, id: u32) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.target == id)
    }

    /// Edges out of `id`.
    pub fn outputs(&self, id: u32) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.source == id)
    }

    /// Checks the graph's shape: ids, wiring and acyclicity.
    pub fn validate(&self) -> Result<(), GraphError> {
        let mut ids = BTreeSet::new();
        for n in &self.nodes {
            if !ids.insert(n.id) {
                return Err(GraphError::DuplicateId(n.id));
            }
            if n.parallelism == Some(0) {
                return Err(GraphError::ZeroParallelism(n.name.clone()));
            }
            if let NodeKind::Window(WindowNode { assigner, .. }) = &n.kind {
                assigner
                    .validate()
                    .map_err(|error| GraphError::BadWindow { name: n.name.clone(), error })?;
            }
        }
        for e in &self.edges {
            for id in [e.source, e.target] {
                if !ids.contains(&id) {
                    return Err(GraphError::UnknownNode(id));
                }
            }
            if let Some(side) = &e.side_output {
                let source = self.node(e.source).ok_or(GraphError::UnknownNode(e.source))?;
                if side != "late" || !matches!(source.kind, NodeKind::Window(_)) {
                    return Err(GraphError::BadWiring {
                        name: source.name.clone(),
                        problem: format!(
                            "it has no side output {side:?} (only windows have `late`)"
                        ),
                    });
                }
            }
        }
        if !self.nodes.iter().any(|n| matches!(n.kind, NodeKind::Source(_))) {
            return Err(GraphError::NoSource);
        }
        if !self.nodes.iter().any(|n| matches!(n.kind, NodeKind::Sink(_))) {
            return Err(GraphError::NoSink);
        }
        for n in &self.nodes {
            let bad = |problem: &str| {
                Err(GraphError::BadWiring { name: n.name.clone(), problem: problem.to_owned() })
            };
            let ins = self.inputs(n.id).count();
            let outs = self.outputs(n.id).count();
            match n.kind {
                NodeKind::Source(_) if ins > 0 => return bad("a source cannot have inputs"),
                NodeKind::Sink(_) if outs > 0 => return bad("a sink cannot have outputs"),
                NodeKind::Transform { .. }
                | NodeKind::KeyedProcess(_)
                | NodeKind::Window(_)
                | NodeKind::Sink(_)
                    if ins == 0 =>
                {
                    return bad("it has no input");
                }
                NodeKind::Source(_)
                | NodeKind::Transform { .. }
                | NodeKind::KeyedProcess(_)
                | NodeKind::Window(_)
                    if outs == 0 =>
                {
                    return bad("its output goes nowhere (add a sink)");
                }
                NodeKind::KeyedProcess(_) if ins > 2 => {
                    return bad("a keyed function takes one or two (connected) inputs");
                }
                NodeKind::Window(_) if ins > 1 => return bad("a window takes one input"),
                NodeKind::KeyedProcess(_) | NodeKind::Window(_)
                    if self.inputs(n.id).any(|e| e.partitioning != Partitioning::Hash) =>
                {
                    return bad("a keyed function or window needs hash-partitioned (key_by) input");
                }
                _ => {}
            }
        }
        self.topological_order().map(|_| ())
    }

    /// Node ids with every node after all its inputs.
    pub fn topological_order(&self) -> Result<Vec<u32>, GraphError> {
        let mut indegree: BTreeMap<u32, usize> =
            self.nodes.iter().map(|n| (n.id, self.inputs(n.id).count())).collect();
        let mut ready: Vec<u32> =
            self.nodes.iter().filter(|n| indegree[&n.id] == 0).map(|n| n.id).collect();
        ready.reverse();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(id) = ready.pop() {
            order.push(id);
            for e in self.outputs(id) {
                let d = indegree.get_mut(&e.target).ok_or(GraphError::UnknownNode(e.target))?;
                *d -= 1;
                if *d == 0 {
                    ready.push(e.target);
                }
            }
        }
        match self.nodes.iter().find(|n| indegree[&n.id] > 0) {
            Some(n) => Err(GraphError::Cycle(n.name.clone())),
            None => Ok(order),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u32, kind: NodeKind) -> Node {
        Node { id, name: format!("n{id}"), kind, parallelism: None, watermarks: None }
    }

    fn conn(kind: &str) -> Connector {
        Connector { kind: kind.into(), options: BTreeMap::new() }
    }

    fn edge(source: u32, target: u32, partitioning: Partitioning) -> Edge {
        Edge { source, target, partitioning, side_output: None }
    }

    fn pipeline() -> JobGraph {
        JobGraph {
            name: "t".into(),
            nodes: vec![
                node(0, NodeKind::Source(conn("file"))),
                node(1, NodeKind::Transform { chain: 0, steps: vec![] }),
                node(2, NodeKind::KeyedProcess(0)),
                node(3, NodeKind::Sink(conn("stdout"))),
            ],
            edges: vec![
                edge(0, 1, Partitioning::Forward),
                edge(1, 2, Partitioning::Hash),
                edge(2, 3, Partitioning::Forward),
            ],
            parallelism: None,
            config_keys: vec![],
        }
    }

    #[test]
    fn accepts_a_pipeline() {
        let g = pipeline();
        g.validate().unwrap();
        assert_eq!(g.topological_order().unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn rejects_bad_shapes() {
        let mut g = pipeline();
        g.edges[1].partitioning = Partitioning::Forward;
        assert!(matches!(g.validate(), Err(GraphError::BadWiring { .. })));

        let mut g = pipeline();
        g.edges.push(edge(2, 1, Partitioning::Forward));
        g.edges[1].partitioning = Partitioning::Hash;
        assert!(g.validate().is_err());

        let mut g = pipeline();
        g.nodes.pop();
        g.edges.pop();
        assert_eq!(g.validate(), Err(GraphError::NoSink));

        let mut g = pipeline();
        g.edges.push(edge(9, 3, Partitioning::Forward));
        assert_eq!(g.validate(), Err(GraphError::UnknownNode(9)));
    }

    #[test]
    fn finds_cycles() {
        let mut g = pipeline();
        g.nodes.push(node(4, NodeKind::Transform { chain: 1, steps: vec![] }));
        g.nodes.push(node(5, NodeKind::Transform { chain: 2, steps: vec![] }));
        g.edges.push(edge(4, 5, Partitioning::Forward));
        g.edges.push(edge(5, 4, Partitioning::Forward));
        assert!(matches!(g.topological_order(), Err(GraphError::Cycle(_))));
    }
}
