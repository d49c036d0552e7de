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
mod nexmark;
mod object_store;
mod sdks;
mod state;
mod tenants;
mod test_cmd;
mod timers;
mod ui;
mod windows;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flinkw_tests::Run;

/// Runs `flinkw` with `args`, using a compile cache in `dir`.
pub fn flinkw(args: &[&str], dir: &Path) -> Run {
    flinkw_tests::run(env!("CARGO_BIN_EXE_flinkw"), args, &dir.join("cache"))
}

/// Starts `flinkw` with `args` (compile cache `cache`) and kills it with
/// SIGKILL after `after`; returns whether it had already finished by itself.
pub fn run_and_kill(args: &[String], cache: &Path, after: Duration) -> bool {
    run_and_kill_with(args, cache, after, &[])
}

/// [`run_and_kill`] with more environment variables for the child.
pub fn run_and_kill_with(
    args: &[String],
    cache: &Path,
    after: Duration,
    env: &[(&str, String)],
) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flinkw"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("FLINKW_CACHE_DIR", cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    false
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
