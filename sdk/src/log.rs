//! Logging and metrics through the host, and panic reporting.

use crate::bindings::flinkw::plugin::{log as wit_log, metrics};

pub use wit_log::Level;

/// Writes a line to the host's log, tagged with the job and subtask.
pub fn log(level: Level, message: &str) {
    wit_log::log(level, message);
}

/// Adds `delta` to the counter `name` in the job's metrics.
pub fn counter_add(name: &str, delta: u64) {
    metrics::counter_add(name, delta);
}

/// Sets the gauge `name` in the job's metrics.
pub fn gauge_set(name: &str, value: f64) {
    metrics::gauge_set(name, value);
}

/// Reports panics through the host's log so the host can show the message
/// next to the trap and the guest's stack.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            wit_log::log(Level::Error, &format!("panic: {info}"));
        }));
    });
}
