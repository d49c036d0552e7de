//! Event time: `assign_timestamps` and `watermarks`.

use std::time::Duration;

use super::Stream;
use crate::Data;
use crate::bindings::flinkw::plugin::types::{self, StepKind};

/// How the host derives watermarks from a stream's timestamps (Flink's
/// `WatermarkStrategy`).
#[derive(Debug, Clone, Copy)]
pub struct WatermarkStrategy {
    strategy: types::WatermarkStrategy,
    idle_timeout: Option<Duration>,
}

impl WatermarkStrategy {
    /// Records arrive at most `max_delay` out of order: the watermark trails
    /// the largest timestamp seen by that much (plus 1 ms).
    pub fn bounded_out_of_orderness(max_delay: Duration) -> Self {
        let ms = u64::try_from(max_delay.as_millis()).unwrap_or(u64::MAX);
        WatermarkStrategy {
            strategy: types::WatermarkStrategy::BoundedOutOfOrderness(ms),
            idle_timeout: None,
        }
    }

    /// Timestamps never decrease.
    pub fn monotonous() -> Self {
        WatermarkStrategy { strategy: types::WatermarkStrategy::Monotonous, idle_timeout: None }
    }

    /// After `timeout` without records, a subtask stops holding back the
    /// watermark of the operators after it.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    fn to_wit(self) -> types::Watermarks {
        types::Watermarks {
            strategy: self.strategy,
            idle_timeout_ms: self.idle_timeout.map(|d| d.as_millis() as u64),
        }
    }
}

impl<T: Data> Stream<T> {
    /// Sets each record's event time (ms since the epoch) from its value.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # use std::time::Duration;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(File::lines("events.txt"))
    ///     .assign_timestamps(|line: &String| line[..13].parse().unwrap_or(0))
    ///     .watermarks(WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(1)))
    ///     .sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn assign_timestamps(self, f: impl Fn(&T) -> i64 + 'static) -> Stream<T> {
        self.then(StepKind::Timestamps, "timestamps", move |v, _, emit| {
            let ts = f(&v);
            emit(v, ts)
        })
    }

    /// Derives watermarks from this stream's timestamps, as the host sees
    /// them after the operators so far.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # use std::time::Duration;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(Datagen::bids(1000))
    ///     .watermarks(WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(200)))
    ///     .sink(Blackhole);
    /// # Ok(()) }
    /// ```
    pub fn watermarks(mut self, strategy: WatermarkStrategy) -> Stream<T> {
        if self.steps.is_empty() {
            self.graph.borrow_mut().set_watermarks(self.upstream.node, strategy.to_wit());
        } else {
            self.watermarks = Some(strategy.to_wit());
        }
        self
    }
}
