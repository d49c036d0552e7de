//! Streams and the operators on them, one file per operator.
//!
//! A [`Stream`] is a typed handle on the pipeline being built. Stateless
//! operators do not create nodes right away: they are composed into a
//! pending segment that becomes one fused transform node (one guest call per
//! batch) when the stream is keyed or sunk.

mod connect;
mod count_window;
mod filter;
mod flat_map;
mod key_by;
mod map;
mod process;
mod sink;
mod timestamps;
mod window;

use std::cell::RefCell;
use std::rc::Rc;

use flinkw_batch::{Batch, BatchBuilder};

use crate::Data;
use crate::bindings::flinkw::plugin::types::{Step, StepKind};
use crate::codec::{decode_postcard, encode_postcard};
use crate::graph::{GraphBuilder, Port};

pub use connect::{CoProcessFunction, ConnectedStreams, IntervalJoin, WindowJoin};
pub use count_window::CountWindowedStream;
pub use key_by::KeyedStream;
pub use process::{Collector, KeyedContext, KeyedProcessFunction, TimeDomain};
pub use timestamps::WatermarkStrategy;
pub use window::{
    AggregateFunction, Session, Sliding, TimeWindow, Tumbling, WindowAssigner, WindowedStream,
};

/// Passes one value on, with its timestamp, to the next step.
pub(crate) type Emit<'a, T> = &'a mut dyn FnMut(T, i64) -> Result<(), String>;
/// Where the values of the last pending step go: the next step, or at the end
/// the node's output batch.
pub(crate) type Downstream<T> = Box<dyn FnMut(T, i64) -> Result<(), String>>;
/// The fused steps joined to their downstream: runs them over every record
/// of one input batch.
pub(crate) type Head = Box<dyn FnMut(&Batch<'_>) -> Result<(), String>>;
/// The fused steps since the last node, not yet joined: given where their
/// values go, returns what runs them over a batch.
///
/// The steps are joined front to back only when the node is made, so each
/// step calls the next directly: one dynamic call per step per record (the
/// loop over the batch is inside the first step, the decoder).
pub(crate) type Segment<T> = Box<dyn FnOnce(Downstream<T>) -> Head>;
/// Computes the key bytes of a value.
pub(crate) type KeyFn<T> = Box<dyn Fn(&T, &mut Vec<u8>) -> Result<(), String>>;

/// The node the pending steps of a stream become, but for their code.
struct PendingNode {
    graph: Rc<RefCell<GraphBuilder>>,
    upstream: Port,
    steps: Vec<Step>,
    parallelism: Option<u32>,
    watermarks: Option<crate::bindings::flinkw::plugin::types::Watermarks>,
}

impl PendingNode {
    /// Adds the transform node running `chain` over the steps.
    fn add_node(self, chain: crate::graph::BatchFn) -> u32 {
        let mut graph = self.graph.borrow_mut();
        let id = graph.add_transform(&self.upstream, self.steps, self.parallelism, chain);
        if let Some(w) = self.watermarks {
            graph.set_watermarks(id, w);
        }
        id
    }
}

/// A stream of values of type `T`.
pub struct Stream<T> {
    graph: Rc<RefCell<GraphBuilder>>,
    /// The node whose output feeds this stream.
    upstream: Port,
    /// Whether the upstream's record bytes are lines of text.
    upstream_text: bool,
    /// The upstream's record values are this stream's values encoded with
    /// postcard (no step changed them yet): a node made now can pass the
    /// bytes on instead of encoding the values again.
    upstream_postcard: bool,
    segment: Segment<T>,
    steps: Vec<Step>,
    parallelism: Option<u32>,
    /// Watermarks to put on the node the pending steps become.
    watermarks: Option<crate::bindings::flinkw::plugin::types::Watermarks>,
}

impl crate::Env {
    /// Starts a stream from a source connector.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(File::lines("input.txt")).sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn source<S: crate::Source>(&mut self, source: S) -> Stream<S::Out> {
        let name = source.name();
        let decode = source.decoder();
        let records = source.record_decoder();
        let text = source.is_text();
        let postcard = source.values_are_postcard();
        let id = self.graph.borrow_mut().add_source(&name, source.connector());
        match records {
            Some(decode) => Stream::from_records(
                self.graph.clone(),
                Port::main(id),
                move |r| decode(r.key, r.value, r.timestamp),
                text,
            ),
            None => {
                let mut s = Stream::from_node(self.graph.clone(), Port::main(id), decode, text);
                s.upstream_postcard = postcard && !text;
                s
            }
        }
    }
}

impl<T: Data> Stream<T> {
    pub(crate) fn from_node(
        graph: Rc<RefCell<GraphBuilder>>,
        upstream: Port,
        decode: impl Fn(&[u8]) -> Result<T, String> + 'static,
        upstream_text: bool,
    ) -> Self {
        Self::from_records(graph, upstream, move |r| decode(r.value), upstream_text)
    }

    /// A stream of the values another node of this plugin emits (postcard).
    pub(crate) fn from_postcard(graph: Rc<RefCell<GraphBuilder>>, upstream: Port) -> Self {
        let mut s = Self::from_node(graph, upstream, decode_postcard::<T>, false);
        s.upstream_postcard = true;
        s
    }

    /// A stream whose values are made from whole records (key and value).
    pub(crate) fn from_records(
        graph: Rc<RefCell<GraphBuilder>>,
        upstream: Port,
        decode: impl Fn(flinkw_batch::Record<'_>) -> Result<T, String> + 'static,
        upstream_text: bool,
    ) -> Self {
        Stream {
            graph,
            upstream,
            upstream_text,
            upstream_postcard: false,
            segment: Box::new(move |mut down: Downstream<T>| -> Head {
                Box::new(move |batch: &Batch<'_>| {
                    for rec in batch.iter() {
                        down(decode(rec)?, rec.timestamp)?;
                    }
                    Ok(())
                })
            }),
            steps: Vec::new(),
            parallelism: None,
            watermarks: None,
        }
    }

    /// Adds a step to the pending segment: `step` gets each value with its
    /// timestamp and passes any values on with `emit`.
    pub(crate) fn then<U: Data>(
        self,
        kind: StepKind,
        default_name: &str,
        mut step: impl FnMut(T, i64, Emit<'_, U>) -> Result<(), String> + 'static,
    ) -> Stream<U> {
        let mut steps = self.steps;
        steps.push(Step { kind, name: default_name.to_owned() });
        let prev = self.segment;
        let segment: Segment<U> = Box::new(move |mut down: Downstream<U>| {
            prev(Box::new(move |value, ts| step(value, ts, &mut *down)))
        });
        Stream {
            graph: self.graph,
            upstream: self.upstream,
            upstream_text: self.upstream_text,
            upstream_postcard: false,
            segment,
            steps,
            parallelism: self.parallelism,
            watermarks: self.watermarks,
        }
    }

    /// Names the last operator (shown in the job graph and in errors).
    pub fn name(mut self, name: &str) -> Self {
        match self.steps.last_mut() {
            Some(step) => step.name = name.to_owned(),
            None => self.graph.borrow_mut().rename(self.upstream.node, name),
        }
        self
    }

    /// Sets the parallelism of the pending stateless operators.
    pub fn parallelism(mut self, parallelism: u32) -> Self {
        self.parallelism = Some(parallelism);
        self
    }

    /// Turns the pending steps into one fused transform node and returns its id.
    pub(crate) fn materialize(
        self,
        key: Option<KeyFn<T>>,
        encode: impl Fn(&T, &mut Vec<u8>) -> Result<(), String> + 'static,
    ) -> u32 {
        // The output batch of the current call, shared by the last step
        // (which pushes into it) and the call (which makes and finishes it).
        let out = Rc::new(RefCell::new(BatchBuilder::new()));
        let sink = out.clone();
        let mut key_bytes = Vec::new();
        let (segment, node) = self.split();
        let mut head = segment(Box::new(move |value: T, ts| {
            key_bytes.clear();
            if let Some(key) = &key {
                key(&value, &mut key_bytes)?;
            }
            let mut result = Ok(());
            sink.borrow_mut().push_with(ts, &key_bytes, |buf| result = encode(&value, buf));
            result
        }));
        let chain = move |input: &[u8]| -> Result<Vec<u8>, String> {
            let batch = Batch::new(input).map_err(|e| e.to_string())?;
            *out.borrow_mut() = BatchBuilder::with_capacity(batch.len(), batch.data_len());
            head(&batch)?;
            Ok(out.borrow_mut().finish())
        };
        node.add_node(Box::new(chain))
    }

    /// [`Stream::materialize`] with values encoded by postcard. When no
    /// step changed the upstream's values, their bytes go on as they are:
    /// only the key is computed (a `key_by` right after a source).
    pub(crate) fn materialize_postcard(self, key: Option<KeyFn<T>>) -> u32 {
        if !self.upstream_postcard {
            return self.materialize(key, encode_postcard::<T>);
        }
        let mut key_bytes = Vec::new();
        let chain = move |input: &[u8]| -> Result<Vec<u8>, String> {
            let batch = Batch::new(input).map_err(|e| e.to_string())?;
            let mut out = BatchBuilder::with_capacity(batch.len(), batch.data_len());
            for rec in batch.iter() {
                key_bytes.clear();
                if let Some(key) = &key {
                    key(&decode_postcard::<T>(rec.value)?, &mut key_bytes)?;
                }
                out.push(rec.timestamp, &key_bytes, rec.value);
            }
            Ok(out.finish())
        };
        self.split().1.add_node(Box::new(chain))
    }

    /// The pending steps' code, and the rest of the node they become.
    fn split(self) -> (Segment<T>, PendingNode) {
        let node = PendingNode {
            graph: self.graph,
            upstream: self.upstream,
            steps: self.steps,
            parallelism: self.parallelism,
            watermarks: self.watermarks,
        };
        (self.segment, node)
    }
}

impl<T: Data> Stream<T> {
    /// Merges this stream with others of the same type (Flink's `union`).
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// let a = env.source(File::lines("a.txt"));
    /// let b = env.source(File::lines("b.txt"));
    /// a.union(vec![b]).sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn union(self, others: Vec<Stream<T>>) -> Stream<T> {
        let graph = self.graph.clone();
        let mut inputs = vec![Port::main(self.materialize_postcard(None))];
        for other in others {
            inputs.push(Port::main(other.materialize_postcard(None)));
        }
        let id = graph.borrow_mut().add_union(&inputs);
        Stream::from_postcard(graph, Port::main(id))
    }
}
