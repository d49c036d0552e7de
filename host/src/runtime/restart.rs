//! Flink's failure-rate restart strategy, as a pure core: a job restarts
//! as long as at most `max` failures fell within the last `window`, so a
//! job that fails now and then restarts forever while one that fails in a
//! burst stops. Time is milliseconds on the caller's clock.

use std::collections::VecDeque;

/// The failures of a job within a sliding window of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureWindow {
    max: u32,
    window_ms: u64,
    failures: VecDeque<u64>,
}

impl FailureWindow {
    /// Allows `max` restarts per `window_ms` milliseconds.
    pub fn new(max: u32, window_ms: u64) -> Self {
        FailureWindow { max, window_ms, failures: VecDeque::new() }
    }

    /// Records a failure at `now_ms`; whether the job may restart (at most
    /// `max` failures within the window, this one included).
    pub fn failed(&mut self, now_ms: u64) -> bool {
        self.failures.push_back(now_ms);
        while self.failures.front().is_some_and(|t| now_ms.saturating_sub(*t) >= self.window_ms) {
            self.failures.pop_front();
        }
        self.failures.len() as u64 <= u64::from(self.max)
    }

    /// Failures within the window as of the last one recorded.
    pub fn recent(&self) -> usize {
        self.failures.len()
    }

    /// Why the job may not restart, for its error: `N failures within W s
    /// (--restarts M --restart-window W)`.
    pub fn exhausted(&self) -> String {
        let secs = self.window_ms as f64 / 1000.0;
        format!(
            "{} failures within {secs} s (--restarts {} --restart-window {secs}: at most {} per window)",
            self.failures.len(),
            self.max,
            self.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_failures_restart_forever_and_a_burst_stops() {
        let mut w = FailureWindow::new(2, 1000);
        // One failure every 600 ms: never more than two in any second.
        for i in 0..20 {
            assert!(w.failed(i * 600), "failure {i}");
        }
        // Three within a second: the third is one too many.
        let mut w = FailureWindow::new(2, 1000);
        assert!(w.failed(10_000));
        assert!(w.failed(10_400));
        assert!(!w.failed(10_900));
        assert_eq!(w.recent(), 3);
        assert!(w.exhausted().starts_with("3 failures within 1 s"), "{}", w.exhausted());
        // A failure exactly one window after another no longer counts it.
        let mut w = FailureWindow::new(1, 1000);
        assert!(w.failed(0));
        assert!(w.failed(1000));
        assert!(!w.failed(1500));
    }

    #[test]
    fn no_restarts_allowed_means_the_first_failure_stops() {
        let mut w = FailureWindow::new(0, 60_000);
        assert!(!w.failed(5));
    }
}
