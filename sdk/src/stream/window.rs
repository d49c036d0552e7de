//! `window`: keyed event-time windows with an incremental aggregate.

use std::marker::PhantomData;
use std::time::Duration;

use flinkw_batch::{Batch, BatchBuilder};

use super::{KeyedStream, Stream};
use crate::Data;
use crate::bindings::flinkw::plugin::types::{self, WindowNode};
use crate::codec::{decode_postcard, encode_postcard};
use crate::graph::{Port, WindowFns};

/// A window: `[start, end)` in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeWindow {
    /// First ms of the window.
    pub start: i64,
    /// First ms after the window.
    pub end: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Fixed-size windows that do not overlap, aligned to the epoch.
#[derive(Debug, Clone, Copy)]
pub struct Tumbling(types::Tumbling);

impl Tumbling {
    /// Windows of `size`.
    pub fn of(size: Duration) -> Self {
        Tumbling(types::Tumbling { size_ms: ms(size), offset_ms: 0 })
    }

    /// Shifts window starts by `offset` from the epoch.
    pub fn offset(mut self, offset: Duration) -> Self {
        self.0.offset_ms = ms(offset);
        self
    }
}

/// Windows of a fixed size, starting every `slide`.
#[derive(Debug, Clone, Copy)]
pub struct Sliding(types::Sliding);

impl Sliding {
    /// Windows of `size` starting every `slide`.
    pub fn of(size: Duration, slide: Duration) -> Self {
        Sliding(types::Sliding { size_ms: ms(size), slide_ms: ms(slide), offset_ms: 0 })
    }

    /// Shifts window starts by `offset` from the epoch.
    pub fn offset(mut self, offset: Duration) -> Self {
        self.0.offset_ms = ms(offset);
        self
    }
}

/// Windows per key that close after `gap` without records.
#[derive(Debug, Clone, Copy)]
pub struct Session(i64);

impl Session {
    /// Sessions closed by `gap` of inactivity.
    pub fn with_gap(gap: Duration) -> Self {
        Session(ms(gap))
    }
}

/// Any of [`Tumbling`], [`Sliding`] or [`Session`], for code that picks
/// one at run time.
#[derive(Debug, Clone, Copy)]
pub struct WindowAssigner(types::WindowAssigner);

impl WindowAssigner {
    /// Size, slide and offset in ms (a tumbling window slides by its size);
    /// session windows are not supported where this is used.
    pub(crate) fn size_slide_offset(&self) -> (i64, i64, i64) {
        match self.0 {
            types::WindowAssigner::Tumbling(t) => (t.size_ms, t.size_ms, t.offset_ms),
            types::WindowAssigner::Sliding(s) => (s.size_ms, s.slide_ms, s.offset_ms),
            types::WindowAssigner::Session(gap) => (gap, gap, 0),
        }
    }
}

impl From<Tumbling> for WindowAssigner {
    fn from(t: Tumbling) -> Self {
        WindowAssigner(types::WindowAssigner::Tumbling(t.0))
    }
}

impl From<Sliding> for WindowAssigner {
    fn from(s: Sliding) -> Self {
        WindowAssigner(types::WindowAssigner::Sliding(s.0))
    }
}

impl From<Session> for WindowAssigner {
    fn from(s: Session) -> Self {
        WindowAssigner(types::WindowAssigner::Session(s.0))
    }
}

/// An incremental aggregate (Flink's `AggregateFunction`): the host keeps
/// one accumulator per key and window and calls these once per batch.
pub trait AggregateFunction<T>: 'static {
    /// The accumulator.
    type Acc: Data;
    /// The result.
    type Out: Data;
    /// A new, empty accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Adds a value.
    fn add(&self, acc: &mut Self::Acc, value: &T);
    /// Combines two accumulators (session windows that merge, and panes of
    /// sliding windows when [`AggregateFunction::mergeable`]).
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    /// The result of a window.
    fn result(&self, acc: Self::Acc) -> Self::Out;
    /// Whether splitting a window's records into groups, adding each group
    /// in arrival order and merging the groups' accumulators gives the same
    /// result as adding all of them: true of COUNT, SUM, MIN, MAX and AVG,
    /// false of "the first value" or "the values in arrival order".
    ///
    /// When true, sliding windows whose size is a multiple of their slide
    /// are kept as panes of one slide: each record is added once instead of
    /// once per window (size / slide times), and a window's panes are merged
    /// when it fires. The results are the same either way; the default,
    /// false, is always correct.
    fn mergeable(&self) -> bool {
        false
    }
}

/// A keyed stream cut into windows; see [`KeyedStream::window`].
pub struct WindowedStream<T, K> {
    keyed: KeyedStream<T, K>,
    assigner: types::WindowAssigner,
    allowed_lateness: Duration,
    late: Option<Box<dyn FnOnce(Stream<T>)>>,
    processing_time: bool,
}

impl<T: Data, K: Data> KeyedStream<T, K> {
    /// Groups each key's records into event-time windows. The stream needs
    /// timestamps and watermarks (see [`Stream::watermarks`]).
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # use std::time::Duration;
    /// struct CountAndMax;
    /// impl AggregateFunction<Bid> for CountAndMax {
    ///     type Acc = (u64, u64);
    ///     type Out = (u64, u64);
    ///     fn create_accumulator(&self) -> (u64, u64) { (0, 0) }
    ///     fn add(&self, acc: &mut (u64, u64), b: &Bid) { acc.0 += 1; acc.1 = acc.1.max(b.price); }
    ///     fn merge(&self, a: (u64, u64), b: (u64, u64)) -> (u64, u64) { (a.0 + b.0, a.1.max(b.1)) }
    ///     fn result(&self, acc: (u64, u64)) -> (u64, u64) { acc }
    /// }
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(Datagen::bids(1_000_000))
    ///     .watermarks(WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(200)))
    ///     .key_by(|b: &Bid| b.auction)
    ///     .window(Tumbling::of(Duration::from_secs(1)))
    ///     .aggregate_with(CountAndMax, |auction, w, (count, max)| {
    ///         format!("{auction},{},{},{count},{max}", w.start, w.end)
    ///     })
    ///     .sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn window(self, assigner: impl Into<WindowAssigner>) -> WindowedStream<T, K> {
        WindowedStream {
            keyed: self,
            assigner: assigner.into().0,
            allowed_lateness: Duration::ZERO,
            late: None,
            processing_time: false,
        }
    }
}

impl<T: Data, K: Data> WindowedStream<T, K> {
    /// Keeps windows open for `lateness` after they fire: late records
    /// update them and each update fires them again.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness;
        self
    }

    /// Makes these processing-time windows: each record belongs to the
    /// windows of its arrival time on the wall clock, and windows fire when
    /// the clock passes their end (and all at the end of a bounded input).
    /// No timestamps or watermarks are needed.
    pub fn processing_time(mut self) -> Self {
        self.processing_time = true;
        self
    }

    /// Sends records that arrive after their windows closed (instead of
    /// dropping them) to a stream that `route` builds on, e.g. to a sink:
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # use std::time::Duration;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(Datagen::bids(1000))
    ///     .watermarks(WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(200)))
    ///     .key_by(|b: &Bid| b.auction)
    ///     .window(Tumbling::of(Duration::from_secs(1)))
    ///     .late_records(|late| late.map(|b: Bid| format!("late: {b:?}")).sink(Stdout))
    ///     .reduce(|a: Bid, b: Bid| if a.price >= b.price { a } else { b })
    ///     .sink(Blackhole);
    /// # Ok(()) }
    /// ```
    pub fn late_records(mut self, route: impl FnOnce(Stream<T>) + 'static) -> Self {
        self.late = Some(Box::new(route));
        self
    }

    /// Aggregates each window with `agg` and emits its result.
    pub fn aggregate<A: AggregateFunction<T>>(self, agg: A) -> Stream<A::Out> {
        self.aggregate_with(agg, |_, _, out| out)
    }

    /// Aggregates each window with `agg`, then `finish` turns the key, the
    /// window and the result into the record to emit (Flink's aggregate
    /// combined with a process-window function).
    pub fn aggregate_with<A: AggregateFunction<T>, R: Data>(
        self,
        agg: A,
        finish: impl Fn(K, TimeWindow, A::Out) -> R + 'static,
    ) -> Stream<R> {
        let mergeable = agg.mergeable();
        let agg = std::rc::Rc::new(agg);
        let graph = self.keyed.stream.graph.clone();
        let keying = self.keyed.stream.materialize_postcard(Some(self.keyed.key));
        let (a1, a2, a3) = (agg.clone(), agg.clone(), agg);
        let accumulate = move |accs: Vec<Option<Vec<u8>>>, input: &[u8], targets: &[(u32, u32)]| {
            let mut accs = accs
                .into_iter()
                .map(|a| match a {
                    Some(bytes) => decode_postcard::<A::Acc>(&bytes),
                    None => Ok(a1.create_accumulator()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let batch = Batch::new(input).map_err(|e| e.to_string())?;
            let mut current: Option<(u32, T)> = None;
            for &(record, slot) in targets {
                if current.as_ref().map(|c| c.0) != Some(record) {
                    let r = Batch::get(&batch, record as usize);
                    current = Some((record, decode_postcard::<T>(r.value)?));
                }
                let (Some((_, value)), Some(acc)) = (&current, accs.get_mut(slot as usize)) else {
                    return Err(format!("window slot {slot} out of range"));
                };
                a1.add(acc, value);
            }
            accs.iter()
                .map(|a| {
                    let mut out = Vec::new();
                    encode_postcard(a, &mut out).map(|_| out)
                })
                .collect()
        };
        let merge = move |accs: Vec<Vec<u8>>| {
            let mut merged: Option<A::Acc> = None;
            for bytes in accs {
                let acc = decode_postcard::<A::Acc>(&bytes)?;
                merged = Some(match merged {
                    None => acc,
                    Some(m) => a2.merge(m, acc),
                });
            }
            let mut out = Vec::new();
            encode_postcard(&merged.unwrap_or_else(|| a2.create_accumulator()), &mut out)?;
            Ok(out)
        };
        let emit =
            move |fired: Vec<crate::bindings::exports::flinkw::plugin::window::FiredWindow>| {
                let mut out = BatchBuilder::with_capacity(fired.len(), fired.len() * 32);
                for f in fired {
                    let key: K = decode_postcard(&f.key)?;
                    let acc: A::Acc = decode_postcard(&f.accumulator)?;
                    let window = TimeWindow { start: f.start, end: f.end };
                    let value = finish(key, window, a3.result(acc));
                    let mut result = Ok(());
                    out.push_with(f.end - 1, &f.key, |buf| result = encode_postcard(&value, buf));
                    result?;
                }
                Ok(out.finish())
            };
        let node = WindowNode {
            mode: types::WindowMode::Aggregate,
            assigner: self.assigner,
            allowed_lateness_ms: self.allowed_lateness.as_millis() as u64,
            function: 0,
            processing_time: self.processing_time,
        };
        let fns = WindowFns {
            accumulate: Box::new(accumulate),
            merge: Box::new(merge),
            emit: Box::new(emit),
            process: Box::new(|_| Err("not a full window function".to_owned())),
            mergeable,
        };
        Self::finish_node(self.late, graph, keying, node, fns)
    }

    fn finish_node<R: Data>(
        late: Option<Box<dyn FnOnce(Stream<T>)>>,
        graph: std::rc::Rc<std::cell::RefCell<crate::graph::GraphBuilder>>,
        keying: u32,
        node: WindowNode,
        fns: WindowFns,
    ) -> Stream<R> {
        let id = graph.borrow_mut().add_window(&Port::main(keying), "window", node, fns);
        if let Some(late) = late {
            let side = Port { node: id, side: Some("late".to_owned()) };
            late(Stream::from_postcard(graph.clone(), side));
        }
        Stream::from_postcard(graph, Port::main(id))
    }

    /// Runs `f` over every record of each window when it fires (Flink's
    /// `ProcessWindowFunction`): the host keeps all records of a window, so
    /// prefer [`WindowedStream::aggregate`] when an aggregate will do.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # use std::time::Duration;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(Datagen::bids(1000))
    ///     .watermarks(WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(200)))
    ///     .key_by(|b: &Bid| b.auction)
    ///     .window(Tumbling::of(Duration::from_secs(1)))
    ///     .process(|auction, w, bids: Vec<Bid>| {
    ///         let mut prices: Vec<u64> = bids.iter().map(|b| b.price).collect();
    ///         prices.sort();
    ///         vec![format!("{auction},{},{}", w.start, prices[prices.len() / 2])]
    ///     })
    ///     .sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn process<R: Data>(
        self,
        f: impl Fn(K, TimeWindow, Vec<T>) -> Vec<R> + 'static,
    ) -> Stream<R> {
        let graph = self.keyed.stream.graph.clone();
        let keying = self.keyed.stream.materialize_postcard(Some(self.keyed.key));
        let process = move |fired: Vec<
            crate::bindings::exports::flinkw::plugin::window::WindowElements,
        >| {
            let mut out = BatchBuilder::new();
            for w in fired {
                let key: K = decode_postcard(&w.key)?;
                let batch = Batch::new(&w.elements).map_err(|e| e.to_string())?;
                let values = batch.iter().map(|r| decode_postcard::<T>(r.value)).collect::<Result<
                    Vec<_>,
                    _,
                >>(
                )?;
                let window = TimeWindow { start: w.start, end: w.end };
                for value in f(key, window, values) {
                    let mut result = Ok(());
                    out.push_with(w.end - 1, &w.key, |buf| result = encode_postcard(&value, buf));
                    result?;
                }
            }
            Ok(out.finish())
        };
        let node = WindowNode {
            mode: types::WindowMode::Process,
            assigner: self.assigner,
            allowed_lateness_ms: self.allowed_lateness.as_millis() as u64,
            function: 0,
            processing_time: self.processing_time,
        };
        let not_aggregate = || "not an aggregate window function".to_owned();
        let fns = WindowFns {
            accumulate: Box::new(move |_, _, _| Err(not_aggregate())),
            merge: Box::new(move |_| Err(not_aggregate())),
            emit: Box::new(move |_| Err(not_aggregate())),
            process: Box::new(process),
            mergeable: false,
        };
        Self::finish_node(self.late, graph, keying, node, fns)
    }

    /// Reduces each window's values with `f` (both an aggregate's `add` and
    /// `merge`) and emits the result.
    pub fn reduce(self, f: impl Fn(T, T) -> T + 'static) -> Stream<T>
    where
        T: Clone,
    {
        self.aggregate(ReduceAggregate::new(f))
    }
}

/// A reduce function as an aggregate (its accumulator: the result so far).
pub(crate) struct ReduceAggregate<T, F> {
    f: F,
    _t: PhantomData<T>,
}

impl<T, F> ReduceAggregate<T, F> {
    pub(crate) fn new(f: F) -> Self {
        ReduceAggregate { f, _t: PhantomData }
    }
}

impl<T: Data + Clone, F: Fn(T, T) -> T + 'static> AggregateFunction<T> for ReduceAggregate<T, F> {
    type Acc = Option<T>;
    type Out = T;
    fn create_accumulator(&self) -> Option<T> {
        None
    }
    fn add(&self, acc: &mut Option<T>, value: &T) {
        *acc = Some(match acc.take() {
            None => value.clone(),
            Some(a) => (self.f)(a, value.clone()),
        });
    }
    fn merge(&self, a: Option<T>, b: Option<T>) -> Option<T> {
        match (a, b) {
            (Some(a), Some(b)) => Some((self.f)(a, b)),
            (a, b) => a.or(b),
        }
    }
    fn result(&self, acc: Option<T>) -> T {
        // A window exists only once a record was added to it.
        acc.expect("a fired window holds at least one value")
    }
}
