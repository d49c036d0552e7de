//! From the logical job graph to tasks: operator chaining and parallelism.
//!
//! Pure: no threads, no IO. A node joins its upstream's task when the edge
//! is `forward`, both have the same parallelism, and it is the upstream's
//! only output and its own only input (Flink's operator chaining). Each task
//! runs as `parallelism` subtasks.

use crate::graph::{GraphError, JobGraph, Partitioning};

/// One task: a chain of nodes run together by each of its subtasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// Index of this task in [`PhysicalPlan::tasks`].
    pub index: usize,
    /// Node ids, head first.
    pub nodes: Vec<u32>,
    /// Number of subtasks.
    pub parallelism: u32,
    /// Where the last node's output goes.
    pub outputs: Vec<TaskOutput>,
    /// The input edges of the head node, in edge order: the first sender
    /// number of each and how many senders it has.
    pub inputs: Vec<(u32, u32)>,
    /// How many end-of-input markers each subtask waits for: one per
    /// upstream subtask that sends to it, which is also its number of inputs
    /// for watermarks.
    pub expected_ends: u32,
}

/// An edge from the end of one task to the head of another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutput {
    /// The downstream task's index.
    pub task: usize,
    /// How records are distributed (forward only between equal parallelism).
    pub partitioning: Partitioning,
    /// The node of this task whose output the edge carries.
    pub from_node: u32,
    /// Which side output of that node, or none for the main output.
    pub side_output: Option<String>,
    /// The number the downstream subtasks know this edge's first sender by:
    /// upstream subtask `i` is input `sender_base + i` (forward: `sender_base`).
    pub sender_base: u32,
}

/// The job's tasks, in topological order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalPlan {
    /// The tasks; sources' tasks come first.
    pub tasks: Vec<TaskSpec>,
}

/// Resolves each node's parallelism and chains nodes into tasks.
///
/// Parallelism: the node's own, else `job_parallelism` (from the config),
/// else the plugin's default, else 1.
pub fn plan(graph: &JobGraph, job_parallelism: Option<u32>) -> Result<PhysicalPlan, GraphError> {
    let order = graph.topological_order()?;
    let default = job_parallelism.or(graph.parallelism).unwrap_or(1);
    let parallelism = |id: u32| graph.node(id).and_then(|n| n.parallelism).unwrap_or(default);

    let mut task_of: std::collections::BTreeMap<u32, usize> = Default::default();
    let mut tasks: Vec<TaskSpec> = Vec::new();
    for id in order {
        let inputs: Vec<_> = graph.inputs(id).collect();
        let chain_into = match inputs.as_slice() {
            [e] if e.partitioning == Partitioning::Forward
                && parallelism(e.source) == parallelism(id)
                && e.side_output.is_none()
                && graph.outputs(e.source).filter(|o| o.side_output.is_none()).count() == 1 =>
            {
                task_of.get(&e.source).copied()
            }
            _ => None,
        };
        match chain_into {
            Some(t) => {
                tasks[t].nodes.push(id);
                task_of.insert(id, t);
            }
            None => {
                let index = tasks.len();
                tasks.push(TaskSpec {
                    index,
                    nodes: vec![id],
                    parallelism: parallelism(id),
                    outputs: Vec::new(),
                    inputs: Vec::new(),
                    expected_ends: 0,
                });
                task_of.insert(id, index);
            }
        }
    }
    for e in &graph.edges {
        let (from, to) = (task_of[&e.source], task_of[&e.target]);
        if from == to && e.side_output.is_none() {
            continue;
        }
        let partitioning = match e.partitioning {
            Partitioning::Forward if tasks[from].parallelism != tasks[to].parallelism => {
                Partitioning::Rebalance
            }
            p => p,
        };
        let sender_base = tasks[to].expected_ends;
        tasks[from].outputs.push(TaskOutput {
            task: to,
            partitioning,
            from_node: e.source,
            side_output: e.side_output.clone(),
            sender_base,
        });
        let senders =
            if partitioning == Partitioning::Forward { 1 } else { tasks[from].parallelism };
        tasks[to].expected_ends += senders;
        tasks[to].inputs.push((sender_base, senders));
    }
    Ok(PhysicalPlan { tasks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Connector, Edge, Node, NodeKind};

    fn graph(parallelism: [Option<u32>; 5]) -> JobGraph {
        let conn = |k: &str| Connector { kind: k.into(), options: Default::default() };
        let kinds = [
            NodeKind::Source(conn("file")),
            NodeKind::Transform { chain: 0, steps: vec![] },
            NodeKind::KeyedProcess(0),
            NodeKind::Transform { chain: 1, steps: vec![] },
            NodeKind::Sink(conn("stdout")),
        ];
        let nodes = kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Node {
                id: i as u32,
                name: format!("n{i}"),
                kind,
                parallelism: parallelism[i],
                watermarks: None,
            })
            .collect();
        let e = |s, t, p| Edge { source: s, target: t, partitioning: p, side_output: None };
        JobGraph {
            name: "t".into(),
            nodes,
            edges: vec![
                e(0, 1, Partitioning::Forward),
                e(1, 2, Partitioning::Hash),
                e(2, 3, Partitioning::Forward),
                e(3, 4, Partitioning::Forward),
            ],
            parallelism: None,
            config_keys: vec![],
        }
    }

    #[test]
    fn chains_forward_edges_and_splits_at_shuffles() {
        let p = plan(&graph([None; 5]), Some(4)).unwrap();
        assert_eq!(p.tasks.len(), 2);
        assert_eq!(p.tasks[0].nodes, vec![0, 1]);
        assert_eq!(p.tasks[1].nodes, vec![2, 3, 4]);
        assert_eq!(
            p.tasks[0].outputs,
            vec![TaskOutput {
                task: 1,
                partitioning: Partitioning::Hash,
                from_node: 1,
                side_output: None,
                sender_base: 0
            }]
        );
        assert_eq!(p.tasks[1].expected_ends, 4);
        assert!(p.tasks.iter().all(|t| t.parallelism == 4));
    }

    #[test]
    fn different_parallelism_breaks_the_chain_with_rebalance() {
        let p = plan(&graph([None, None, None, None, Some(1)]), Some(3)).unwrap();
        assert_eq!(p.tasks.len(), 3);
        assert_eq!(p.tasks[2].nodes, vec![4]);
        assert_eq!(p.tasks[2].parallelism, 1);
        assert_eq!(
            p.tasks[1].outputs,
            vec![TaskOutput {
                task: 2,
                partitioning: Partitioning::Rebalance,
                from_node: 3,
                side_output: None,
                sender_base: 0
            }]
        );
        assert_eq!(p.tasks[2].expected_ends, 3);
    }

    #[test]
    fn parallelism_precedence() {
        let mut g = graph([None; 5]);
        g.parallelism = Some(2);
        assert_eq!(plan(&g, None).unwrap().tasks[0].parallelism, 2);
        assert_eq!(plan(&g, Some(5)).unwrap().tasks[0].parallelism, 5);
        assert_eq!(plan(&graph([None; 5]), None).unwrap().tasks[0].parallelism, 1);
    }
}
