//! `process` and `reduce`: keyed functions with keyed state and timers.

use std::cell::RefCell;
use std::rc::Rc;

use flinkw_batch::{Batch, BatchBuilder};

use super::{KeyedStream, Stream};
use crate::bindings::flinkw::plugin::timers;
use crate::codec::{decode_postcard, encode_postcard};
use crate::graph::{BatchFn, KeyedFns, Port};
use crate::{Data, Error, ValueState};

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    /// Event time: the timer fires when the watermark passes it.
    EventTime,
    /// Processing time: the timer fires when the wall clock passes it.
    ProcessingTime,
}

/// What a keyed function knows about the record (or timer) it is handling,
/// and its access to timers. State handles take it to find the key.
pub struct KeyedContext {
    pub(crate) record: u32,
    timestamp: i64,
}

impl KeyedContext {
    /// The record's event time (ms since the epoch), if it has one; in
    /// `on_timer`, the timer's time.
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != flinkw_batch::NO_TIMESTAMP).then_some(self.timestamp)
    }

    /// Calls `on_timer` for the current key when the watermark reaches `time`.
    pub fn register_event_timer(&self, time: i64) {
        timers::register_event_timer(self.record, time);
    }

    /// Removes an event-time timer of the current key.
    pub fn delete_event_timer(&self, time: i64) {
        timers::delete_event_timer(self.record, time);
    }

    /// Calls `on_timer` for the current key when the wall clock reaches `time`.
    pub fn register_processing_timer(&self, time: i64) {
        timers::register_processing_timer(self.record, time);
    }

    /// Removes a processing-time timer of the current key.
    pub fn delete_processing_timer(&self, time: i64) {
        timers::delete_processing_timer(self.record, time);
    }

    /// The operator's current watermark.
    pub fn current_watermark(&self) -> i64 {
        timers::current_watermark()
    }

    /// The wall clock, ms since the epoch.
    pub fn current_processing_time(&self) -> i64 {
        timers::current_processing_time()
    }
}

/// Collects the values a keyed function emits.
pub struct Collector<O> {
    out: BatchBuilder,
    key: Vec<u8>,
    timestamp: i64,
    error: Option<String>,
    _out: std::marker::PhantomData<O>,
}

impl<O: Data> Collector<O> {
    pub(crate) fn new(capacity: usize) -> Self {
        Collector {
            out: BatchBuilder::with_capacity(capacity, capacity * 16),
            key: Vec::new(),
            timestamp: 0,
            error: None,
            _out: std::marker::PhantomData,
        }
    }

    fn set_current(&mut self, key: &[u8], timestamp: i64) {
        self.key.clear();
        self.key.extend_from_slice(key);
        self.timestamp = timestamp;
    }

    /// The current key, encoded.
    pub(crate) fn key_bytes(&self) -> &[u8] {
        &self.key
    }

    fn check(&mut self) -> Result<(), String> {
        self.error.take().map_or(Ok(()), Err)
    }

    /// Emits `value` with the current key and the given event time.
    pub fn emit_at(&mut self, timestamp: i64, value: O) {
        let current = self.timestamp;
        self.timestamp = timestamp;
        self.emit(value);
        self.timestamp = current;
    }

    /// Emits `value` with the current key and timestamp.
    pub fn emit(&mut self, value: O) {
        let mut result = Ok(());
        self.out.push_with(self.timestamp, &self.key, |buf| result = encode_postcard(&value, buf));
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
    }
}

/// A batch function running `f` on each record of a keyed batch.
pub(crate) fn records_fn<V: Data, O: Data>(
    mut f: impl FnMut(&mut KeyedContext, V, &mut Collector<O>) -> Result<(), Error> + 'static,
) -> BatchFn {
    Box::new(move |input: &[u8]| -> Result<Vec<u8>, String> {
        let batch = Batch::new(input).map_err(|e| e.to_string())?;
        let mut out = Collector::new(batch.len());
        for (i, rec) in batch.iter().enumerate() {
            let value: V = decode_postcard(rec.value)?;
            let mut ctx = KeyedContext { record: i as u32, timestamp: rec.timestamp };
            out.set_current(rec.key, rec.timestamp);
            f(&mut ctx, value, &mut out).map_err(|e| e.to_string())?;
            out.check()?;
        }
        Ok(out.out.finish())
    })
}

/// A batch function running `f` on each timer of a batch of due timers.
pub(crate) fn timers_fn<K: Data, O: Data>(
    mut f: impl FnMut(&mut KeyedContext, K, i64, TimeDomain, &mut Collector<O>) -> Result<(), Error>
    + 'static,
) -> BatchFn {
    Box::new(move |input: &[u8]| -> Result<Vec<u8>, String> {
        let batch = Batch::new(input).map_err(|e| e.to_string())?;
        let mut out = Collector::new(batch.len());
        for (i, timer) in batch.iter().enumerate() {
            let key: K = decode_postcard(timer.key)?;
            let domain = match timer.value.first() {
                Some(1) => TimeDomain::ProcessingTime,
                _ => TimeDomain::EventTime,
            };
            let mut ctx = KeyedContext { record: i as u32, timestamp: timer.timestamp };
            out.set_current(timer.key, timer.timestamp);
            f(&mut ctx, key, timer.timestamp, domain, &mut out).map_err(|e| e.to_string())?;
            out.check()?;
        }
        Ok(out.out.finish())
    })
}

/// A keyed function with timers (Flink's `KeyedProcessFunction`).
pub trait KeyedProcessFunction<K, T, O>: 'static {
    /// Handles one record.
    fn process(
        &mut self,
        ctx: &mut KeyedContext,
        value: T,
        out: &mut Collector<O>,
    ) -> Result<(), Error>;

    /// Handles a timer of `key` that fired at `timestamp`.
    fn on_timer(
        &mut self,
        ctx: &mut KeyedContext,
        key: K,
        timestamp: i64,
        domain: TimeDomain,
        out: &mut Collector<O>,
    ) -> Result<(), Error> {
        let _ = (ctx, key, timestamp, domain, out);
        Ok(())
    }
}

/// A closure as a keyed function without timers.
struct ProcessClosure<F>(F);

impl<K, T, O, F> KeyedProcessFunction<K, T, O> for ProcessClosure<F>
where
    F: FnMut(&mut KeyedContext, T, &mut Collector<O>) -> Result<(), Error> + 'static,
{
    fn process(
        &mut self,
        ctx: &mut KeyedContext,
        v: T,
        out: &mut Collector<O>,
    ) -> Result<(), Error> {
        (self.0)(ctx, v, out)
    }
}

impl<T: Data, K: Data> KeyedStream<T, K> {
    /// Runs `f` on each value with access to keyed state; `f` emits any
    /// number of values through the collector.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// let count = ValueState::<u64>::new("count");
    /// env.source(File::lines("words.txt"))
    ///     .key_by(|w: &String| w.clone())
    ///     .process(move |ctx, word: String, out| {
    ///         let n = count.get(ctx)?.unwrap_or(0) + 1;
    ///         count.set(ctx, &n)?;
    ///         out.emit(format!("{word} {n}"));
    ///         Ok(())
    ///     })
    ///     .sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn process<O: Data>(
        self,
        f: impl FnMut(&mut KeyedContext, T, &mut Collector<O>) -> Result<(), Error> + 'static,
    ) -> Stream<O> {
        self.process_fn(ProcessClosure(f))
    }

    /// Runs a [`KeyedProcessFunction`]: keyed state, and timers that call
    /// its `on_timer`.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # use flinkw::{KeyedProcessFunction, TimeDomain};
    /// /// Reports keys that saw no event for 10 s of event time.
    /// struct Inactivity { last: ValueState<i64> }
    /// impl KeyedProcessFunction<String, (String, i64), String> for Inactivity {
    ///     fn process(&mut self, ctx: &mut KeyedContext, (_, ts): (String, i64), _: &mut Collector<String>) -> Result<(), Error> {
    ///         self.last.set(ctx, &ts)?;
    ///         ctx.register_event_timer(ts + 10_000);
    ///         Ok(())
    ///     }
    ///     fn on_timer(&mut self, ctx: &mut KeyedContext, key: String, t: i64, _: TimeDomain, out: &mut Collector<String>) -> Result<(), Error> {
    ///         if self.last.get(ctx)? == Some(t - 10_000) {
    ///             out.emit(format!("{key} inactive since {}", t - 10_000));
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn process_fn<O: Data>(self, f: impl KeyedProcessFunction<K, T, O>) -> Stream<O> {
        let graph = self.stream.graph.clone();
        let keying = self.stream.materialize_postcard(Some(self.key));
        let f = Rc::new(RefCell::new(f));
        let on_records = f.clone();
        let process = records_fn(move |ctx, v: T, out: &mut Collector<O>| {
            on_records.borrow_mut().process(ctx, v, out)
        });
        let on_timer = timers_fn(move |ctx, key: K, t, domain, out: &mut Collector<O>| {
            f.borrow_mut().on_timer(ctx, key, t, domain, out)
        });
        let fns = KeyedFns { process, on_timer };
        let id = graph.borrow_mut().add_keyed(&Port::main(keying), "process", fns);
        Stream::from_postcard(graph, Port::main(id))
    }

    /// Combines each value with the key's previous result and emits the new
    /// result (a running aggregate per key, as Flink's `reduce`).
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(Datagen::sequence(1000))
    ///     .map(|n: u64| (n % 10, n))
    ///     .key_by(|(k, _): &(u64, u64)| *k)
    ///     .reduce(|(k, a), (_, b)| (k, a + b))
    ///     .sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn reduce(self, mut f: impl FnMut(T, T) -> T + 'static) -> Stream<T> {
        let name = format!("reduce-{}", self.stream.graph.borrow().next_keyed_id());
        let state = ValueState::<T>::new(&name);
        self.process(move |ctx, value, out| {
            let acc = match state.get(ctx)? {
                Some(acc) => f(acc, value),
                None => value,
            };
            state.set(ctx, &acc)?;
            out.emit(acc);
            Ok(())
        })
        .name("reduce")
    }
}
