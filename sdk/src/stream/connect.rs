//! `connect`: two keyed streams into one function with shared keyed state
//! (Flink's `connect` + `KeyedCoProcessFunction`), and `interval_join` on
//! top of it.

use std::cell::RefCell;
use std::rc::Rc;

use super::process::{records_fn, timers_fn};
use super::{Collector, KeyedContext, KeyedStream, Stream, TimeDomain};
use crate::graph::{KeyedFns, Port};
use crate::{Data, Error, MapState};

/// A function over two keyed streams with the same key type: records of
/// either side see the key's state and timers.
pub trait CoProcessFunction<K, A, B, O>: 'static {
    /// Handles a record of the first stream.
    fn process1(
        &mut self,
        ctx: &mut KeyedContext,
        a: A,
        out: &mut Collector<O>,
    ) -> Result<(), Error>;
    /// Handles a record of the second stream.
    fn process2(
        &mut self,
        ctx: &mut KeyedContext,
        b: B,
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

/// Two keyed streams connected by [`KeyedStream::connect`].
pub struct ConnectedStreams<A, B, K> {
    first: KeyedStream<A, K>,
    second: KeyedStream<B, K>,
}

impl<A: Data, K: Data> KeyedStream<A, K> {
    /// Connects this keyed stream with another one keyed by the same type:
    /// records of both with equal keys meet in one keyed function.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # use flinkw::CoProcessFunction;
    /// /// Passes words unless a control record blocked them.
    /// struct Blocklist { blocked: ValueState<bool> }
    /// impl CoProcessFunction<String, String, String, String> for Blocklist {
    ///     fn process1(&mut self, ctx: &mut KeyedContext, w: String, out: &mut Collector<String>) -> Result<(), Error> {
    ///         if self.blocked.get(ctx)? != Some(true) { out.emit(w); }
    ///         Ok(())
    ///     }
    ///     fn process2(&mut self, ctx: &mut KeyedContext, _: String, _: &mut Collector<String>) -> Result<(), Error> {
    ///         self.blocked.set(ctx, &true)
    ///     }
    /// }
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// let words = env.source(File::lines("words.txt")).key_by(|w: &String| w.clone());
    /// let blocks = env.source(File::lines("blocked.txt")).key_by(|w: &String| w.clone());
    /// words.connect(blocks).process(Blocklist { blocked: ValueState::new("blocked") }).sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn connect<B: Data>(self, other: KeyedStream<B, K>) -> ConnectedStreams<A, B, K> {
        ConnectedStreams { first: self, second: other }
    }

    /// Joins each record of this stream with the records of `other` with the
    /// same key whose event time lies in `[t + lower, t + upper]` (ms), `t`
    /// being this record's time (Flink's interval join). Records behind the
    /// watermark are dropped, as in Flink; buffered records are cleaned up
    /// once the watermark makes further matches impossible.
    pub fn interval_join<B: Data>(
        self,
        other: KeyedStream<B, K>,
        lower: i64,
        upper: i64,
    ) -> IntervalJoin<A, B, K> {
        IntervalJoin { streams: self.connect(other), lower, upper }
    }
}

impl<A: Data, B: Data, K: Data> ConnectedStreams<A, B, K> {
    /// Runs `f` over both streams.
    pub fn process<O: Data>(self, f: impl CoProcessFunction<K, A, B, O>) -> Stream<O> {
        let graph = self.first.stream.graph.clone();
        let first = self.first.stream.materialize_postcard(Some(self.first.key));
        let second = self.second.stream.materialize_postcard(Some(self.second.key));
        let f = Rc::new(RefCell::new(f));
        let (f1, f2) = (f.clone(), f.clone());
        let on_first = KeyedFns {
            process: records_fn(move |ctx, a: A, out: &mut Collector<O>| {
                f1.borrow_mut().process1(ctx, a, out)
            }),
            on_timer: timers_fn(move |ctx, key: K, t, domain, out: &mut Collector<O>| {
                f.borrow_mut().on_timer(ctx, key, t, domain, out)
            }),
        };
        let on_second = KeyedFns {
            process: records_fn(move |ctx, b: B, out: &mut Collector<O>| {
                f2.borrow_mut().process2(ctx, b, out)
            }),
            // The host sends all timers to the first function.
            on_timer: Box::new(|_| Err("timers go to the first function".to_owned())),
        };
        let id = graph.borrow_mut().add_keyed_pair(
            &Port::main(first),
            &Port::main(second),
            "co-process",
            on_first,
            on_second,
        );
        Stream::from_postcard(graph, Port::main(id))
    }
}

/// An interval join being built; see [`KeyedStream::interval_join`].
pub struct IntervalJoin<A, B, K> {
    streams: ConnectedStreams<A, B, K>,
    lower: i64,
    upper: i64,
}

impl<A: Data, B: Data, K: Data> IntervalJoin<A, B, K> {
    /// Emits `f(a, b)` for each matching pair, at the later of their times.
    pub fn process<O: Data>(self, f: impl Fn(&A, &B) -> O + 'static) -> Stream<O> {
        let join = IntervalJoinFn {
            left: MapState::new("interval-join/left"),
            right: MapState::new("interval-join/right"),
            lower: self.lower,
            upper: self.upper,
            f,
        };
        self.streams.process(join).name("interval-join")
    }
}

/// Buffers both sides per key and event time (Flink's `IntervalJoinOperator`).
struct IntervalJoinFn<A, B, F> {
    left: MapState<i64, Vec<A>>,
    right: MapState<i64, Vec<B>>,
    lower: i64,
    upper: i64,
    f: F,
}

impl<A: Data, B: Data, K: Data, O: Data, F: Fn(&A, &B) -> O + 'static> CoProcessFunction<K, A, B, O>
    for IntervalJoinFn<A, B, F>
{
    fn process1(
        &mut self,
        ctx: &mut KeyedContext,
        a: A,
        out: &mut Collector<O>,
    ) -> Result<(), Error> {
        let t = event_time(ctx, "an interval join")?;
        if t < ctx.current_watermark() {
            return Ok(()); // late
        }
        for (tb, bs) in self.right.entries(ctx)? {
            if tb >= t + self.lower && tb <= t + self.upper {
                for b in &bs {
                    out.emit_at(t.max(tb), (self.f)(&a, b));
                }
            }
        }
        add_to(&self.left, ctx, t, a)?;
        ctx.register_event_timer(t + self.upper);
        Ok(())
    }

    fn process2(
        &mut self,
        ctx: &mut KeyedContext,
        b: B,
        out: &mut Collector<O>,
    ) -> Result<(), Error> {
        let t = event_time(ctx, "an interval join")?;
        if t < ctx.current_watermark() {
            return Ok(());
        }
        for (ta, as_) in self.left.entries(ctx)? {
            if t >= ta + self.lower && t <= ta + self.upper {
                for a in &as_ {
                    out.emit_at(t.max(ta), (self.f)(a, &b));
                }
            }
        }
        add_to(&self.right, ctx, t, b)?;
        ctx.register_event_timer(t - self.lower);
        Ok(())
    }

    fn on_timer(
        &mut self,
        ctx: &mut KeyedContext,
        _key: K,
        time: i64,
        _domain: TimeDomain,
        _out: &mut Collector<O>,
    ) -> Result<(), Error> {
        // Drop what no future record can match any more.
        for (ta, _) in self.left.entries(ctx)? {
            if ta + self.upper <= time {
                self.left.remove(ctx, &ta)?;
            }
        }
        for (tb, _) in self.right.entries(ctx)? {
            if tb - self.lower <= time {
                self.right.remove(ctx, &tb)?;
            }
        }
        Ok(())
    }
}

impl<A: Data, K: Data> KeyedStream<A, K> {
    /// Joins this stream with `other` in event-time windows: every pair of
    /// records with equal keys in the same window, emitted when the window
    /// fires (Flink's `join(..).where(..).equalTo(..).window(..)`).
    /// Tumbling and sliding windows are supported.
    pub fn window_join<B: Data>(
        self,
        other: KeyedStream<B, K>,
        windows: impl Into<super::WindowAssigner>,
    ) -> WindowJoin<A, B, K> {
        WindowJoin { streams: self.connect(other), windows: windows.into() }
    }
}

/// A window join being built; see [`KeyedStream::window_join`].
pub struct WindowJoin<A, B, K> {
    streams: ConnectedStreams<A, B, K>,
    windows: super::WindowAssigner,
}

impl<A: Data + Clone, B: Data + Clone, K: Data> WindowJoin<A, B, K> {
    /// Emits `f(a, b, window)` for each pair of a window, at the window's
    /// last timestamp.
    pub fn process<O: Data>(
        self,
        f: impl Fn(&A, &B, super::TimeWindow) -> O + 'static,
    ) -> Stream<O> {
        let (size, slide, offset) = self.windows.size_slide_offset();
        let join = WindowJoinFn {
            left: MapState::new("window-join/left"),
            right: MapState::new("window-join/right"),
            size,
            slide,
            offset,
            f,
        };
        self.streams.process(join).name("window-join")
    }
}

/// Buffers both sides per key and window start; a window's timer emits its
/// pairs and drops it.
struct WindowJoinFn<A, B, F> {
    left: MapState<i64, Vec<A>>,
    right: MapState<i64, Vec<B>>,
    size: i64,
    slide: i64,
    offset: i64,
    f: F,
}

impl<A, B, F> WindowJoinFn<A, B, F> {
    /// Adds a record of either side to every window it belongs to that the
    /// watermark has not passed, and makes those windows fire.
    fn buffer<T: Data + Clone>(
        &self,
        side: &MapState<i64, Vec<T>>,
        ctx: &mut KeyedContext,
        value: T,
    ) -> Result<(), Error> {
        let t = event_time(ctx, "a window join")?;
        for start in self.starts(t) {
            if start + self.size - 1 > ctx.current_watermark() {
                add_to(side, ctx, start, value.clone())?;
                ctx.register_event_timer(start + self.size - 1);
            }
        }
        Ok(())
    }

    /// Starts of the windows that contain `t`.
    fn starts(&self, t: i64) -> Vec<i64> {
        let last = t - (t - self.offset + self.slide).rem_euclid(self.slide);
        let mut starts = Vec::new();
        let mut s = last;
        while s > t - self.size {
            starts.push(s);
            s -= self.slide;
        }
        starts
    }
}

/// The record's event time, which `what` needs.
fn event_time(ctx: &KeyedContext, what: &str) -> Result<i64, Error> {
    ctx.timestamp()
        .ok_or_else(|| Error::msg(format!("{what} needs event time (assign_timestamps)")))
}

/// Appends `value` to the list under `start` in a per-key buffer.
fn add_to<T: Data>(
    state: &MapState<i64, Vec<T>>,
    ctx: &mut KeyedContext,
    start: i64,
    value: T,
) -> Result<(), Error> {
    let mut here = state.get(ctx, &start)?.unwrap_or_default();
    here.push(value);
    state.put(ctx, &start, &here)
}

impl<A: Data + Clone, B: Data + Clone, K: Data, O: Data, F> CoProcessFunction<K, A, B, O>
    for WindowJoinFn<A, B, F>
where
    F: Fn(&A, &B, super::TimeWindow) -> O + 'static,
{
    fn process1(
        &mut self,
        ctx: &mut KeyedContext,
        a: A,
        _: &mut Collector<O>,
    ) -> Result<(), Error> {
        self.buffer(&self.left, ctx, a)
    }

    fn process2(
        &mut self,
        ctx: &mut KeyedContext,
        b: B,
        _: &mut Collector<O>,
    ) -> Result<(), Error> {
        self.buffer(&self.right, ctx, b)
    }

    fn on_timer(
        &mut self,
        ctx: &mut KeyedContext,
        _key: K,
        time: i64,
        _domain: TimeDomain,
        out: &mut Collector<O>,
    ) -> Result<(), Error> {
        let start = time + 1 - self.size;
        let window = super::TimeWindow { start, end: start + self.size };
        let lefts = self.left.get(ctx, &start)?.unwrap_or_default();
        let rights = self.right.get(ctx, &start)?.unwrap_or_default();
        for a in &lefts {
            for b in &rights {
                out.emit_at(time, (self.f)(a, b, window));
            }
        }
        self.left.remove(ctx, &start)?;
        self.right.remove(ctx, &start)?;
        Ok(())
    }
}
