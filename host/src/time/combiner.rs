//! Combines the watermarks of a subtask's inputs: the minimum over inputs
//! that are active, so one slow input holds time back and an idle input
//! does not (Flink's `StatusWatermarkValve`).

use super::{MAX_WATERMARK, MIN_WATERMARK};

#[derive(Debug, Clone, Copy)]
struct Input {
    watermark: i64,
    idle: bool,
}

/// The watermark of a subtask with several inputs.
#[derive(Debug, Clone)]
pub struct WatermarkCombiner {
    inputs: Vec<Input>,
    emitted: i64,
}

impl WatermarkCombiner {
    /// A combiner over `inputs` inputs, none of which has a watermark yet.
    pub fn new(inputs: usize) -> Self {
        WatermarkCombiner {
            inputs: vec![Input { watermark: MIN_WATERMARK, idle: false }; inputs],
            emitted: MIN_WATERMARK,
        }
    }

    /// Input `input` reached `watermark` (and is active). Returns the
    /// combined watermark if it advanced.
    pub fn update(&mut self, input: usize, watermark: i64) -> Option<i64> {
        let i = self.inputs.get_mut(input)?;
        i.watermark = i.watermark.max(watermark);
        i.idle = false;
        self.advance()
    }

    /// Input `input` has gone idle: it no longer holds time back.
    pub fn set_idle(&mut self, input: usize) -> Option<i64> {
        self.inputs.get_mut(input)?.idle = true;
        self.advance()
    }

    /// Input `input` ended: as if its watermark were the maximum.
    pub fn end(&mut self, input: usize) -> Option<i64> {
        self.update(input, MAX_WATERMARK)
    }

    /// The last combined watermark returned.
    pub fn current(&self) -> i64 {
        self.emitted
    }

    fn advance(&mut self) -> Option<i64> {
        let min = self.inputs.iter().filter(|i| !i.idle).map(|i| i.watermark).min()?;
        if min > self.emitted {
            self.emitted = min;
            Some(min)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_active_input_decides() {
        let mut c = WatermarkCombiner::new(3);
        assert_eq!(c.update(0, 10), None);
        assert_eq!(c.update(1, 20), None);
        assert_eq!(c.update(2, 5), Some(5));
        assert_eq!(c.update(2, 30), Some(10));
        assert_eq!(c.update(0, 8), None, "watermarks never go back");
        assert_eq!(c.current(), 10);
    }

    #[test]
    fn idle_inputs_do_not_hold_time_back() {
        let mut c = WatermarkCombiner::new(2);
        c.update(0, 100);
        assert_eq!(c.set_idle(1), Some(100));
        assert_eq!(c.update(0, 150), Some(150));
        // The idle input wakes up behind: it cannot move time back.
        assert_eq!(c.update(1, 120), None);
        assert_eq!(c.update(0, 200), None);
        assert_eq!(c.update(1, 300), Some(200));
    }

    #[test]
    fn ended_inputs_release_time() {
        let mut c = WatermarkCombiner::new(2);
        c.update(0, 7);
        assert_eq!(c.end(1), Some(7));
        assert_eq!(c.end(0), Some(MAX_WATERMARK));
    }
}
