//! One subtask: a thread that runs a task's chain of operators over batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use flinkw_batch::{Batch, BatchBuilder};

use super::router::{Message, Router};
use super::{JobError, Shared, TaskSpec};
use crate::connector::{Poll, SinkWriter, SourceReader};
use crate::graph::NodeKind;
use crate::plugin::Instance;

/// How often a waiting subtask checks whether the job was cancelled.
const CANCEL_CHECK: Duration = Duration::from_millis(100);

enum Operator {
    Transform {
        node: u32,
        chain: u32,
    },
    Keyed {
        node: u32,
        function: u32,
    },
    Sink {
        node: u32,
        writer: Box<dyn SinkWriter>,
    },
}

pub(super) struct Subtask {
    shared: Arc<Shared>,
    task: TaskSpec,
    index: u32,
    router: Router,
    input: Option<Receiver<Message>>,
}

/// How a subtask stopped early.
enum Stop {
    /// It failed; the error is the job's failure unless another came first.
    Failed(JobError),
    /// The job was cancelled (by another subtask's failure).
    Cancelled,
}

impl From<JobError> for Stop {
    fn from(e: JobError) -> Self {
        Stop::Failed(e)
    }
}

fn batch_len(bytes: &[u8]) -> u64 {
    bytes
        .get(4..8)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
}

impl Subtask {
    pub fn new(
        shared: Arc<Shared>,
        task: TaskSpec,
        index: u32,
        router: Router,
        input: Option<Receiver<Message>>,
    ) -> Self {
        Subtask {
            shared,
            task,
            index,
            router,
            input,
        }
    }

    fn label(&self, node: u32) -> String {
        let name = self
            .shared
            .graph
            .node(node)
            .map_or("?", |n| n.name.as_str());
        format!(
            "{name:?} (subtask {}/{})",
            self.index + 1,
            self.task.parallelism
        )
    }

    pub fn run(mut self) {
        let shared = self.shared.clone();
        match self.run_inner() {
            Ok(()) => {}
            Err(Stop::Failed(e)) => shared.fail(e),
            Err(Stop::Cancelled) => {}
        }
    }

    fn run_inner(&mut self) -> Result<(), Stop> {
        let (mut instance, mut ops) = self.open()?;
        let head = self.task.nodes[0];
        let source = self.shared.sources.get(&head).cloned();
        match source {
            Some(spec) => {
                let reader = spec
                    .open(self.index, self.task.parallelism)
                    .map_err(|error| JobError::Connector {
                        node: self.label(head),
                        error,
                    })?;
                self.run_source(head, reader, &mut instance, &mut ops)?;
            }
            None => self.run_input(&mut instance, &mut ops)?,
        }
        for op in &mut ops {
            if let Operator::Sink { node, writer } = op {
                let node = *node;
                writer.flush().map_err(|error| JobError::Connector {
                    node: self.label(node),
                    error,
                })?;
            }
        }
        if let Some(instance) = &instance {
            let mut counters = self
                .shared
                .counters
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for (k, v) in instance.counters() {
                *counters.entry(k.clone()).or_default() += v;
            }
        }
        self.router.end().map_err(|_| self.stopped())
    }

    /// Instantiates the plugin (if the chain runs guest code) and the operators.
    fn open(&mut self) -> Result<(Option<Instance>, Vec<Operator>), Stop> {
        let mut ops = Vec::new();
        let mut needs_guest = false;
        for &id in &self.task.nodes {
            let Some(node) = self.shared.graph.node(id) else {
                continue;
            };
            match &node.kind {
                NodeKind::Source(_) => {}
                NodeKind::Transform { chain, .. } => {
                    needs_guest = true;
                    ops.push(Operator::Transform {
                        node: id,
                        chain: *chain,
                    });
                }
                NodeKind::KeyedProcess(f) => {
                    needs_guest = true;
                    ops.push(Operator::Keyed {
                        node: id,
                        function: *f,
                    });
                }
                NodeKind::Sink(_) => {
                    let writer = self.shared.sinks[&id].open();
                    ops.push(Operator::Sink { node: id, writer });
                }
            }
        }
        let instance = if needs_guest {
            let node = self.task.nodes[0];
            let guest = |error| {
                Stop::Failed(JobError::Guest {
                    node: self.label(node),
                    error,
                })
            };
            let label = format!("{}#{}", self.shared.graph.name, self.index);
            let mut instance = self.shared.plugin.instantiate(&label).map_err(guest)?;
            // Each instance runs `plan` so the guest knows its functions.
            instance.plan(&self.shared.config.pairs()).map_err(guest)?;
            Some(instance)
        } else {
            None
        };
        Ok((instance, ops))
    }

    fn stopped(&self) -> Stop {
        if self.shared.is_cancelled() {
            Stop::Cancelled
        } else {
            Stop::Failed(JobError::Internal("a downstream subtask stopped".into()))
        }
    }

    fn run_source(
        &mut self,
        head: u32,
        mut reader: Box<dyn SourceReader>,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        let batch_size = self.shared.config.batch_size;
        let timeout = self.shared.config.batch_timeout;
        let mut builder = BatchBuilder::with_capacity(batch_size, batch_size * 32);
        loop {
            if self.shared.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            let deadline = Instant::now() + timeout;
            let poll = reader
                .poll(&mut builder, batch_size, deadline)
                .map_err(|error| JobError::Connector {
                    node: self.label(head),
                    error,
                })?;
            if !builder.is_empty() {
                let bytes = builder.finish();
                self.shared.metrics[&head]
                    .records_out
                    .fetch_add(batch_len(&bytes), Ordering::Relaxed);
                self.process(bytes, instance, ops)?;
            }
            if poll == Poll::End {
                return Ok(());
            }
        }
    }

    fn run_input(
        &mut self,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        let Some(input) = self.input.take() else {
            return Err(JobError::Internal("a task without a source has no input".into()).into());
        };
        let mut ends = 0;
        while ends < self.task.expected_ends {
            match input.recv_timeout(CANCEL_CHECK) {
                Ok(Message::Batch(bytes)) => self.process(bytes, instance, ops)?,
                Ok(Message::End) => ends += 1,
                Err(RecvTimeoutError::Timeout) if self.shared.is_cancelled() => {
                    return Err(Stop::Cancelled);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(self.stopped()),
            }
        }
        Ok(())
    }

    /// Runs the chain over one batch and sends the result on.
    fn process(
        &mut self,
        mut bytes: Vec<u8>,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        for op in ops.iter_mut() {
            let node = match op {
                Operator::Transform { node, .. }
                | Operator::Keyed { node, .. }
                | Operator::Sink { node, .. } => *node,
            };
            let m = &self.shared.metrics[&node];
            m.records_in.fetch_add(batch_len(&bytes), Ordering::Relaxed);
            let guest = |error| {
                Stop::Failed(JobError::Guest {
                    node: self.label(node),
                    error,
                })
            };
            bytes = match op {
                Operator::Sink { writer, .. } => {
                    let batch = Batch::new(&bytes)
                        .map_err(|e| JobError::Internal(format!("bad batch at a sink: {e}")))?;
                    writer.write(&batch).map_err(|error| JobError::Connector {
                        node: self.label(node),
                        error,
                    })?;
                    m.records_out
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                Operator::Transform { chain, .. } => {
                    let Some(inst) = instance.as_mut() else {
                        unreachable!("guest op without instance")
                    };
                    inst.transform(*chain, &bytes).map_err(guest)?
                }
                Operator::Keyed { function, .. } => {
                    let Some(inst) = instance.as_mut() else {
                        unreachable!("guest op without instance")
                    };
                    inst.keyed(*function, Arc::new(bytes)).map_err(guest)?
                }
            };
            // Guest output is checked before anything else reads it.
            let out = Batch::new(&bytes).map_err(|e| JobError::MalformedBatch {
                node: self.label(node),
                reason: e.to_string(),
            })?;
            m.records_out.fetch_add(out.len() as u64, Ordering::Relaxed);
            if out.is_empty() {
                return Ok(());
            }
        }
        self.router.send(bytes).map_err(|_| self.stopped())
    }
}
