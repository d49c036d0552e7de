//! Watermark strategies (Flink's `WatermarkStrategy`).

use super::MIN_WATERMARK;

/// How a source (or any node) derives watermarks from its records' timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkStrategy {
    /// Records may arrive up to `max_delay_ms` late: the watermark is the
    /// largest timestamp seen minus the delay minus 1 (as in Flink).
    BoundedOutOfOrderness {
        /// The largest expected disorder, in ms.
        max_delay_ms: u64,
    },
    /// Timestamps never decrease: the watermark is the largest timestamp
    /// seen minus 1.
    Monotonous,
}

/// Tracks the largest timestamp of a stream and derives its watermark.
#[derive(Debug, Clone)]
pub struct WatermarkGenerator {
    strategy: WatermarkStrategy,
    max_timestamp: Option<i64>,
}

impl WatermarkGenerator {
    /// A generator with no record seen yet.
    pub fn new(strategy: WatermarkStrategy) -> Self {
        WatermarkGenerator { strategy, max_timestamp: None }
    }

    /// Takes a record's timestamp into account.
    pub fn on_record(&mut self, timestamp: i64) {
        self.max_timestamp = Some(self.max_timestamp.map_or(timestamp, |m| m.max(timestamp)));
    }

    /// The largest timestamp seen, if any (for a checkpoint).
    pub fn max_timestamp(&self) -> Option<i64> {
        self.max_timestamp
    }

    /// Restores the largest timestamp seen.
    pub fn set_max_timestamp(&mut self, max: Option<i64>) {
        self.max_timestamp = max;
    }

    /// The current watermark ([`MIN_WATERMARK`] before any record).
    pub fn current(&self) -> i64 {
        let Some(max) = self.max_timestamp else { return MIN_WATERMARK };
        let delay = match self.strategy {
            WatermarkStrategy::BoundedOutOfOrderness { max_delay_ms } => max_delay_ms as i64,
            WatermarkStrategy::Monotonous => 0,
        };
        max.saturating_sub(delay).saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness_trails_the_largest_timestamp() {
        let mut g =
            WatermarkGenerator::new(WatermarkStrategy::BoundedOutOfOrderness { max_delay_ms: 200 });
        assert_eq!(g.current(), MIN_WATERMARK);
        g.on_record(1_000);
        assert_eq!(g.current(), 799);
        g.on_record(900); // out of order: no change
        assert_eq!(g.current(), 799);
        g.on_record(1_500);
        assert_eq!(g.current(), 1_299);
    }

    #[test]
    fn monotonous_is_one_behind() {
        let mut g = WatermarkGenerator::new(WatermarkStrategy::Monotonous);
        g.on_record(5);
        assert_eq!(g.current(), 4);
        g.on_record(i64::MIN);
        assert_eq!(g.current(), 4);
    }
}
