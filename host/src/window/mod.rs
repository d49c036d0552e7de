//! Windows: assignment, merging of session windows, and the event-time
//! trigger with allowed lateness. Pure: the runtime feeds records and
//! watermarks in and gets decisions out; accumulators live elsewhere.

mod assigner;
mod trigger;

pub use assigner::{Window, WindowAssigner, WindowError};
pub use trigger::{Assignment, SessionMerge, WindowTrigger};
