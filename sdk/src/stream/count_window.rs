//! Count windows (Flink's `countWindow`): per key, windows of a number of
//! records, fired by their count rather than by time.
//!
//! Flink builds them from a global window per key with a count trigger;
//! here they are a keyed function over keyed state, so they checkpoint,
//! restore and rescale like any keyed state. Event time plays no part: no
//! record is late, and a window that never fills never fires (as in Flink,
//! also at the end of a bounded input).

use super::window::ReduceAggregate;
use super::{AggregateFunction, KeyedStream, Stream};
use crate::codec::decode_postcard;
use crate::{Data, Error, ValueState};

/// A keyed stream cut into count windows; see [`KeyedStream::count_window`].
pub struct CountWindowedStream<T, K> {
    keyed: KeyedStream<T, K>,
    size: u64,
    /// Records between firings; `size` for tumbling count windows.
    slide: u64,
}

impl<T: Data, K: Data> KeyedStream<T, K> {
    /// Windows of `size` records per key: every `size` records of a key
    /// form one window, which fires and is cleared (Flink's
    /// `countWindow(size)`).
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(Datagen::bids(1000))
    ///     .key_by(|b: &Bid| b.auction)
    ///     .count_window(100)
    ///     .reduce(|a: Bid, b: Bid| if a.price >= b.price { a } else { b })
    ///     .sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn count_window(self, size: u64) -> CountWindowedStream<T, K> {
        CountWindowedStream { keyed: self, size: size.max(1), slide: size.max(1) }
    }

    /// Sliding count windows: every `slide` records of a key, a window of
    /// that key's last `size` records fires (fewer while the key has fewer;
    /// Flink's `countWindow(size, slide)`).
    pub fn count_window_sliding(self, size: u64, slide: u64) -> CountWindowedStream<T, K> {
        CountWindowedStream { keyed: self, size: size.max(1), slide: slide.max(1) }
    }
}

impl<T: Data, K: Data> CountWindowedStream<T, K> {
    /// Aggregates each window with `agg` and emits the result.
    pub fn aggregate<A: AggregateFunction<T>>(self, agg: A) -> Stream<A::Out> {
        self.aggregate_with(agg, |_, out| out)
    }

    /// Aggregates each window with `agg`, then `finish` turns the key and
    /// the result into the record to emit.
    pub fn aggregate_with<A: AggregateFunction<T>, R: Data>(
        self,
        agg: A,
        finish: impl Fn(K, A::Out) -> R + 'static,
    ) -> Stream<R> {
        if self.slide != self.size {
            // Windows overlap: keep the records, aggregate each window.
            return self.process(move |key, values| {
                let mut acc = agg.create_accumulator();
                for v in &values {
                    agg.add(&mut acc, v);
                }
                vec![finish(key, agg.result(acc))]
            });
        }
        // One accumulator per key and its count of records.
        let name = format!("count-window-{}", self.keyed.stream.graph.borrow().next_keyed_id());
        let state = ValueState::<(u64, A::Acc)>::new(&name);
        let size = self.size;
        self.keyed
            .process(move |ctx, value: T, out| {
                let (mut n, mut acc) =
                    state.get(ctx)?.unwrap_or_else(|| (0, agg.create_accumulator()));
                agg.add(&mut acc, &value);
                n += 1;
                if n < size {
                    return state.set(ctx, &(n, acc));
                }
                state.clear(ctx);
                let key = decode_postcard::<K>(out.key_bytes()).map_err(Error::msg)?;
                out.emit(finish(key, agg.result(acc)));
                Ok(())
            })
            .name("count-window")
    }

    /// Combines each window's records with `f`.
    pub fn reduce(self, f: impl Fn(T, T) -> T + 'static) -> Stream<T>
    where
        T: Clone,
    {
        self.aggregate(ReduceAggregate::new(f))
    }

    /// Hands each window's records, in arrival order, to `f` with the key;
    /// emits what it returns (a full window function).
    pub fn process<R: Data>(self, f: impl Fn(K, Vec<T>) -> Vec<R> + 'static) -> Stream<R> {
        let name = format!("count-window-{}", self.keyed.stream.graph.borrow().next_keyed_id());
        // Records since the last firing, and the window's records.
        let state = ValueState::<(u64, Vec<T>)>::new(&name);
        let (size, slide) = (self.size as usize, self.slide);
        self.keyed
            .process(move |ctx, value: T, out| {
                let (mut since, mut values) = state.get(ctx)?.unwrap_or_default();
                values.push(value);
                if values.len() > size {
                    values.remove(0);
                }
                since += 1;
                if since < slide {
                    return state.set(ctx, &(since, values));
                }
                let key = decode_postcard::<K>(out.key_bytes()).map_err(Error::msg)?;
                if slide as usize >= size {
                    // Tumbling: the window is cleared when it fires.
                    state.clear(ctx);
                    for r in f(key, values) {
                        out.emit(r);
                    }
                    return Ok(());
                }
                let copy = postcard::to_allocvec(&values).map_err(|e| Error::msg(e.to_string()))?;
                let fired = f(key, decode_postcard(&copy).map_err(Error::msg)?);
                state.set(ctx, &(0, values))?;
                for r in fired {
                    out.emit(r);
                }
                Ok(())
            })
            .name("count-window")
    }
}
