//! Event time: watermark generation and the combination of the watermarks
//! of several inputs. Pure: no clocks, no IO; processing time is passed in.

mod combiner;
mod generator;
mod timers;

pub use combiner::WatermarkCombiner;
pub use generator::{WatermarkGenerator, WatermarkStrategy};
pub use timers::{TimeDomain, TimerService};

/// The watermark before any has been seen: nothing is known.
pub const MIN_WATERMARK: i64 = i64::MIN;
/// The watermark at the end of a bounded input: every window may fire.
pub const MAX_WATERMARK: i64 = i64::MAX;

/// The wall clock in ms since the epoch (the processing time of timers).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
