//! Sends a subtask's output batches to the downstream subtasks.

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Instant;

use super::RemoteChannel;
use super::metrics::SubtaskMetrics;

use flinkw_batch::{Batch, BatchBuilder};

use crate::graph::Partitioning;
use crate::keygroup::subtask_for_key;

/// What travels on a channel between subtasks. `from` numbers the sender
/// among the receiver's inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A packed batch; `watermarks`, when present, holds the sender's
    /// watermark after each record (a watermark interval of 0).
    Batch {
        /// The sender.
        from: u32,
        /// The records.
        bytes: Vec<u8>,
        /// The watermark after each record.
        watermarks: Option<Vec<i64>>,
    },
    /// The sender's event time advanced.
    Watermark {
        /// The sender.
        from: u32,
        /// Its watermark.
        watermark: i64,
    },
    /// The sender has had no records for its idle timeout.
    Idle {
        /// The sender.
        from: u32,
    },
    /// Checkpoint barrier `id`: everything the sender sent before belongs
    /// to checkpoint `id`, everything after to later ones.
    Barrier {
        /// The sender.
        from: u32,
        /// The checkpoint.
        id: u64,
    },
    /// The sender has no more input (its watermark is now the maximum).
    End {
        /// The sender.
        from: u32,
    },
    /// A latency marker (Flink's `LatencyMarker`): a source stamped it with
    /// the wall clock; it overtakes windows and waits only in channels, so
    /// a sink's `now - marked_us` is the time records spend travelling.
    LatencyMarker {
        /// The sender.
        from: u32,
        /// When the source emitted it, µs since the epoch.
        marked_us: i64,
        /// The source's task (vertex) index.
        source_task: u32,
    },
}

/// The receiving side is gone: the job is being torn down.
#[derive(Debug)]
pub struct Disconnected;

/// Where one channel leads: a subtask in this process, or one elsewhere.
pub(crate) enum Channel {
    /// A bounded in-process channel.
    Local(SyncSender<Message>),
    /// A channel to another process (a QUIC stream in a cluster).
    Remote(Box<dyn RemoteChannel>),
}

impl Channel {
    /// Sends a message; time blocked on a full channel counts as
    /// backpressure (a remote send counts whole: it blocks on the peer's
    /// flow-control window).
    fn send(&mut self, message: Message, metrics: &SubtaskMetrics) -> Result<(), Disconnected> {
        match self {
            Channel::Local(s) => match s.try_send(message) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(message)) => {
                    let since = Instant::now();
                    let sent = s.send(message).map_err(|_| Disconnected);
                    metrics.add_backpressure(since);
                    sent
                }
                Err(TrySendError::Disconnected(_)) => Err(Disconnected),
            },
            Channel::Remote(r) => {
                let since = Instant::now();
                let sent = r.send(message);
                metrics.add_backpressure(since);
                sent
            }
        }
    }
}

/// One output edge of a subtask: the channels of every downstream subtask.
pub(crate) struct Output {
    /// `Some(name)`: this edge carries side output `name` of `from_node`.
    side: Option<(u32, String)>,
    partitioning: Partitioning,
    /// How the downstream subtasks number this sender.
    sender: u32,
    targets: Vec<Channel>,
    next: usize,
    max_parallelism: u32,
    split: Vec<BatchBuilder>,
    metrics: Arc<SubtaskMetrics>,
    /// The target of the next latency marker (they go to one target each).
    next_marker: usize,
}

impl Output {
    pub fn new(
        side: Option<(u32, String)>,
        partitioning: Partitioning,
        sender: u32,
        targets: Vec<Channel>,
        max_parallelism: u32,
        metrics: Arc<SubtaskMetrics>,
    ) -> Self {
        let split = (0..targets.len()).map(|_| BatchBuilder::new()).collect();
        Output {
            side,
            partitioning,
            sender,
            targets,
            next: 0,
            max_parallelism,
            split,
            metrics,
            next_marker: 0,
        }
    }

    /// Sends `batch` on; `index` is the sending subtask's index.
    pub fn send(
        &mut self,
        batch: Vec<u8>,
        watermarks: Option<Vec<i64>>,
        index: usize,
    ) -> Result<(), Disconnected> {
        match self.partitioning {
            Partitioning::Forward => self.send_to(index, batch, watermarks),
            Partitioning::Rebalance => {
                let t = self.next;
                self.next = (self.next + 1) % self.targets.len();
                self.send_to(t, batch, watermarks)
            }
            Partitioning::Hash => {
                let n = self.targets.len() as u32;
                let parsed = Batch::new(&batch).map_err(|_| Disconnected)?;
                // Per-record watermarks follow their records.
                let mut split_wms: Option<Vec<Vec<i64>>> =
                    watermarks.as_ref().map(|_| vec![Vec::new(); self.targets.len()]);
                for (i, r) in parsed.iter().enumerate() {
                    let t = subtask_for_key(r.key, self.max_parallelism, n) as usize;
                    self.split[t].push(r.timestamp, r.key, r.value);
                    if let (Some(split), Some(wms)) = (&mut split_wms, &watermarks) {
                        split[t].push(wms[i]);
                    }
                }
                for t in 0..self.targets.len() {
                    if !self.split[t].is_empty() {
                        let part = self.split[t].finish();
                        let wms = split_wms.as_mut().map(|s| std::mem::take(&mut s[t]));
                        self.send_to(t, part, wms)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Sends a control message to every downstream subtask this one feeds.
    fn broadcast(
        &mut self,
        index: usize,
        make: impl Fn(u32) -> Message,
    ) -> Result<(), Disconnected> {
        let targets = match self.partitioning {
            Partitioning::Forward => &mut self.targets[index..=index],
            _ => &mut self.targets[..],
        };
        for t in targets {
            t.send(make(self.sender), &self.metrics).map_err(|_| Disconnected)?;
        }
        Ok(())
    }

    /// Sends a latency marker to one downstream subtask (Flink sends each
    /// to one random channel): the one this subtask forwards to, else the
    /// next in turn.
    fn marker(
        &mut self,
        index: usize,
        marked_us: i64,
        source_task: u32,
    ) -> Result<(), Disconnected> {
        let t = match self.partitioning {
            Partitioning::Forward => index,
            _ => {
                self.next_marker = (self.next_marker + 1) % self.targets.len();
                self.next_marker
            }
        };
        let message = Message::LatencyMarker { from: self.sender, marked_us, source_task };
        self.targets[t].send(message, &self.metrics)
    }

    fn send_to(
        &mut self,
        t: usize,
        bytes: Vec<u8>,
        watermarks: Option<Vec<i64>>,
    ) -> Result<(), Disconnected> {
        self.metrics.add_output(batch_records(&bytes), bytes.len());
        let message = Message::Batch { from: self.sender, bytes, watermarks };
        self.targets[t].send(message, &self.metrics)
    }
}

/// The record count in a packed batch's header.
fn batch_records(bytes: &[u8]) -> u64 {
    bytes.get(4..8).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
}

/// All output edges of a subtask.
pub(crate) struct Router {
    pub outputs: Vec<Output>,
    pub index: usize,
}

impl Router {
    /// Sends `batch` along every main output edge.
    pub fn send(
        &mut self,
        batch: Vec<u8>,
        watermarks: Option<Vec<i64>>,
    ) -> Result<(), Disconnected> {
        self.send_where(batch, watermarks, |side| side.is_none())
    }

    /// Whether side output `name` of `node` goes anywhere.
    pub fn has_side(&self, node: u32, name: &str) -> bool {
        self.outputs.iter().any(|o| matches!(&o.side, Some((n, s)) if *n == node && s == name))
    }

    /// Sends `batch` along the edges of side output `name` of `node`.
    pub fn send_side(&mut self, node: u32, name: &str, batch: Vec<u8>) -> Result<(), Disconnected> {
        self.send_where(batch, None, |side| matches!(side, Some((n, s)) if *n == node && s == name))
    }

    fn send_where(
        &mut self,
        batch: Vec<u8>,
        watermarks: Option<Vec<i64>>,
        wanted: impl Fn(&Option<(u32, String)>) -> bool,
    ) -> Result<(), Disconnected> {
        let index = self.index;
        let mut targets: Vec<&mut Output> =
            self.outputs.iter_mut().filter(|o| wanted(&o.side)).collect();
        let Some(last) = targets.pop() else { return Ok(()) };
        for out in targets {
            out.send(batch.clone(), watermarks.clone(), index)?;
        }
        last.send(batch, watermarks, index)
    }

    /// Sends end-of-input along every output edge.
    pub fn end(&mut self) -> Result<(), Disconnected> {
        self.control(|from| Message::End { from })
    }

    /// Sends a watermark along every output edge.
    pub fn watermark(&mut self, watermark: i64) -> Result<(), Disconnected> {
        self.control(|from| Message::Watermark { from, watermark })
    }

    /// Sends checkpoint barrier `id` along every output edge.
    pub fn barrier(&mut self, id: u64) -> Result<(), Disconnected> {
        self.control(|from| Message::Barrier { from, id })
    }

    /// Sends a latency marker along every output edge, to one downstream
    /// subtask of each.
    pub fn latency_marker(&mut self, marked_us: i64, source_task: u32) -> Result<(), Disconnected> {
        for out in &mut self.outputs {
            out.marker(self.index, marked_us, source_task)?;
        }
        Ok(())
    }

    /// Tells every downstream subtask this one is idle.
    pub fn idle(&mut self) -> Result<(), Disconnected> {
        self.control(|from| Message::Idle { from })
    }

    fn control(&mut self, make: impl Fn(u32) -> Message) -> Result<(), Disconnected> {
        for out in &mut self.outputs {
            out.broadcast(self.index, &make)?;
        }
        Ok(())
    }
}
