//! `process` and `reduce`: keyed functions with keyed state.

use flinkw_batch::{Batch, BatchBuilder};

use super::{KeyedStream, Stream};
use crate::codec::{decode_postcard, encode_postcard};
use crate::{Data, Error, ValueState};

/// What a keyed function knows about the record it is processing.
pub struct KeyedContext {
    pub(crate) record: u32,
    timestamp: i64,
}

impl KeyedContext {
    /// The record's event time (ms since the epoch), if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != flinkw_batch::NO_TIMESTAMP).then_some(self.timestamp)
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
    /// Emits `value` with the current record's key and timestamp.
    pub fn emit(&mut self, value: O) {
        let mut result = Ok(());
        self.out.push_with(self.timestamp, &self.key, |buf| result = encode_postcard(&value, buf));
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
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
        mut f: impl FnMut(&mut KeyedContext, T, &mut Collector<O>) -> Result<(), Error> + 'static,
    ) -> Stream<O> {
        let graph = self.stream.graph.clone();
        let keying = self.stream.materialize(Some(self.key), encode_postcard::<T>);
        let run = move |input: &[u8]| -> Result<Vec<u8>, String> {
            let batch = Batch::new(input).map_err(|e| e.to_string())?;
            let mut out = Collector {
                out: BatchBuilder::with_capacity(batch.len(), batch.data_len()),
                key: Vec::new(),
                timestamp: 0,
                error: None,
                _out: std::marker::PhantomData,
            };
            for (i, rec) in batch.iter().enumerate() {
                let value: T = decode_postcard(rec.value)?;
                let mut ctx = KeyedContext { record: i as u32, timestamp: rec.timestamp };
                out.key.clear();
                out.key.extend_from_slice(rec.key);
                out.timestamp = rec.timestamp;
                f(&mut ctx, value, &mut out).map_err(|e| e.to_string())?;
                if let Some(e) = out.error.take() {
                    return Err(e);
                }
            }
            Ok(out.out.finish())
        };
        let id = graph.borrow_mut().add_keyed(keying, "process", Box::new(run));
        Stream::from_node(graph, id, decode_postcard::<O>, false)
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
