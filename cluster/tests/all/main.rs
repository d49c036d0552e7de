//! End-to-end tests: they drive the `flinkw` binary on real plugins built
//! from source (see the `flinkw-tests` crate) and check what a user sees.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod bad_input;
mod checkpoints;
mod cluster;
mod examples;
mod guest_failures;
mod joins;
mod kafka;
mod sdks;
mod state;
mod test_cmd;
mod timers;
mod windows;

use std::path::Path;

use flinkw_tests::Run;

/// Runs `flinkw` with `args`, using a compile cache in `dir`.
pub fn flinkw(args: &[&str], dir: &Path) -> Run {
    flinkw_tests::run(env!("CARGO_BIN_EXE_flinkw"), args, &dir.join("cache"))
}

/// Asserts the run failed with a message containing every one of `needles`.
#[track_caller]
pub fn assert_fails_with(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, Some(1), "expected exit code 1; stderr:\n{}", run.stderr);
    for n in needles {
        assert!(run.stderr.contains(n), "stderr lacks {n:?}:\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("thread '"), "the host panicked:\n{}", run.stderr);
}
