//! Event time: watermark generation and the combination of the watermarks
//! of several inputs. Pure: no clocks, no IO; processing time is passed in.

mod combiner;
mod generator;

pub use combiner::WatermarkCombiner;
pub use generator::{WatermarkGenerator, WatermarkStrategy};

/// The watermark before any has been seen: nothing is known.
pub const MIN_WATERMARK: i64 = i64::MIN;
/// The watermark at the end of a bounded input: every window may fire.
pub const MAX_WATERMARK: i64 = i64::MAX;
