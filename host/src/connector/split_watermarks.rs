//! Watermarks per split of a source (Flink's per-split watermarks): a
//! subtask that reads several Kafka partitions keeps a watermark per
//! partition and goes on with the least of them, so a partition far behind
//! in event time does not see its records as late because another
//! partition ran ahead. A split without records for the idle timeout is
//! left out of the least until it has records again (Flink's
//! `withIdleness`). Pure: the clock is passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::time::{MIN_WATERMARK, WatermarkGenerator, WatermarkStrategy};

/// One split's generator and when it last had a record.
#[derive(Debug, Clone)]
struct Split {
    generator: WatermarkGenerator,
    last_record: Instant,
}

/// The watermarks of a reader's splits, keyed by `K` (e.g. topic and
/// partition).
#[derive(Debug, Clone)]
pub struct SplitWatermarks<K: Ord> {
    strategy: WatermarkStrategy,
    idle_timeout: Option<Duration>,
    splits: BTreeMap<K, Split>,
    /// The combined watermark so far (it never goes back; held while
    /// every split is idle).
    combined: i64,
}

impl<K: Ord + Clone> SplitWatermarks<K> {
    /// No splits yet.
    pub fn new(strategy: WatermarkStrategy, idle_timeout: Option<Duration>) -> Self {
        SplitWatermarks { strategy, idle_timeout, splits: BTreeMap::new(), combined: MIN_WATERMARK }
    }

    /// A split the reader starts reading: it holds the watermark back (no
    /// records yet) until it has records or, with an idle timeout, for
    /// that long.
    pub fn add(&mut self, split: K, now: Instant) {
        self.splits.entry(split).or_insert_with(|| Split {
            generator: WatermarkGenerator::new(self.strategy),
            last_record: now,
        });
    }

    /// A split that has ended (or is no longer read).
    pub fn remove(&mut self, split: &K) {
        self.splits.remove(split);
    }

    /// Forgets every split (a restore assigns them again).
    pub fn clear(&mut self) {
        self.splits.clear();
    }

    /// A record of `split` with event time `timestamp` (none: it still
    /// counts as activity).
    pub fn on_record(&mut self, split: &K, timestamp: Option<i64>, now: Instant) {
        if !self.splits.contains_key(split) {
            self.add(split.clone(), now);
        }
        if let Some(s) = self.splits.get_mut(split) {
            s.last_record = now;
            if let Some(ts) = timestamp {
                s.generator.on_record(ts);
            }
        }
    }

    /// The least watermark of the splits that are not idle at `now`; the
    /// value before when every split is idle (or there is none); never
    /// lower than a value returned before.
    pub fn current(&mut self, now: Instant) -> i64 {
        let active = self
            .splits
            .values()
            .filter(|s| {
                self.idle_timeout.is_none_or(|t| now.saturating_duration_since(s.last_record) < t)
            })
            .map(|s| s.generator.current())
            .min();
        if let Some(least) = active {
            self.combined = self.combined.max(least);
        }
        self.combined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_least_partition_holds_event_time_back() {
        let t0 = Instant::now();
        let mut w = SplitWatermarks::new(WatermarkStrategy::Monotonous, None);
        w.add(0, t0);
        w.add(1, t0);
        w.on_record(&0, Some(10_000), t0);
        assert_eq!(w.current(t0), MIN_WATERMARK, "split 1 has no records yet");
        w.on_record(&1, Some(100), t0);
        assert_eq!(w.current(t0), 99);
        w.on_record(&1, Some(500), t0);
        assert_eq!(w.current(t0), 499);
        // Without an idle timeout a quiet split holds it forever.
        assert_eq!(w.current(t0 + ms(3_600_000)), 499);
        w.remove(&1);
        assert_eq!(w.current(t0), 9_999);
    }

    #[test]
    fn an_idle_split_is_left_out_until_it_has_records_again() {
        let t0 = Instant::now();
        let mut w = SplitWatermarks::new(WatermarkStrategy::Monotonous, Some(ms(500)));
        w.add("a", t0);
        w.add("b", t0);
        w.on_record(&"a", Some(1_000), t0);
        assert_eq!(w.current(t0 + ms(100)), MIN_WATERMARK);
        w.on_record(&"a", Some(2_000), t0 + ms(600));
        // b (no records since t0) is idle now.
        assert_eq!(w.current(t0 + ms(600)), 1_999);
        // b comes back behind: the watermark does not go back, and a
        // moves it no further than b allows.
        w.on_record(&"b", Some(1_500), t0 + ms(700));
        w.on_record(&"a", Some(3_000), t0 + ms(700));
        assert_eq!(w.current(t0 + ms(700)), 1_999);
        w.on_record(&"b", Some(2_500), t0 + ms(800));
        assert_eq!(w.current(t0 + ms(800)), 2_499);
        // Everything idle: held.
        assert_eq!(w.current(t0 + ms(10_000)), 2_499);
    }
}
