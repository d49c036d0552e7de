//! Per-instance resource limits for guest code.

use std::time::Duration;

/// Limits applied to every plugin instance: memory, CPU time per call, stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory of one instance, in bytes.
    pub memory_bytes: usize,
    /// Maximum wall time of one guest call before it is interrupted.
    pub call_timeout: Duration,
    /// Maximum Wasm stack, in bytes.
    pub stack_bytes: usize,
    /// Whether guests read the host's WASI clocks; without them the wall
    /// and monotonic clocks read 0 (no timing side channel for untrusted
    /// code). Files, sockets and environment variables are never granted.
    pub clocks: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 512 << 20,
            call_timeout: Duration::from_secs(10),
            stack_bytes: 1 << 20,
            clocks: true,
        }
    }
}

impl Limits {
    /// The engine's epoch tick: deadlines are measured in these.
    pub const EPOCH_TICK: Duration = Duration::from_millis(10);

    /// The call deadline in epoch ticks (at least one).
    pub fn deadline_ticks(&self) -> u64 {
        (self.call_timeout.as_millis() / Self::EPOCH_TICK.as_millis()).max(1) as u64
    }
}
