//! End-to-end tests: they drive the `flinkw` binary on real plugins built
//! from source (see the `flinkw-tests` crate) and check what a user sees.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod bad_input;
mod checkpoints;
mod cluster;
mod cpu_groups;
mod examples;
mod golden;
mod guest_failures;
mod joins;
mod kafka;
mod memory_capture;
mod nexmark;
mod object_store;
mod observability;
mod partition;
mod relay;
mod replay;
mod sdks;
mod state;
mod tenant_usage;
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

/// The highest checkpoint id with a `_metadata` file anywhere under `dir`
/// (0 when there is none): how far a job's committed progress has come.
pub fn latest_checkpoint(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut latest = 0;
    for e in entries.flatten() {
        let path = e.path();
        if !path.is_dir() {
            continue;
        }
        let name = e.file_name();
        match name.to_str().and_then(|n| n.strip_prefix("chk-")).and_then(|n| n.parse().ok()) {
            Some(id) if path.join("_metadata").is_file() => latest = latest.max(id),
            Some(_) => {}
            None => latest = latest.max(latest_checkpoint(&path)),
        }
    }
    latest
}

/// The highest complete checkpoint id under an object-store prefix (0 when
/// there is none): [`latest_checkpoint`] for checkpoints kept in S3.
pub fn latest_checkpoint_in(store: &flinkw_host::objstore::StoreLocation) -> u64 {
    use flinkw_host::objstore::block_on;
    use flinkw_host::objstore::object_store::ObjectStoreExt;
    let Ok(list) = block_on(store.store.list_with_delimiter(Some(&store.prefix))) else {
        return 0;
    };
    list.common_prefixes
        .iter()
        .filter_map(|folder| {
            let id: u64 = folder.filename()?.strip_prefix("chk-")?.parse().ok()?;
            block_on(store.store.head(&folder.clone().join("_metadata"))).ok().map(|_| id)
        })
        .max()
        .unwrap_or(0)
}

/// Runs the job of `args` (compile cache `cache`, environment `env`) again
/// and again, killing each run with SIGKILL a pseudo-random 0-150 ms (from
/// `seed`) after it completes a checkpoint newer than `latest()` said at its
/// start, until a run finishes by itself or `max` kills; returns the kills.
/// Every killed run has made committed progress and some die with output
/// staged and a checkpoint in flight; unlike kills after fixed times, the
/// number of kills a job survives does not depend on the machine's speed.
pub fn kill_repeatedly(
    args: &[String],
    cache: &Path,
    env: &[(&str, String)],
    latest: &dyn Fn() -> u64,
    mut seed: u64,
    max: u32,
) -> u32 {
    let mut kills = 0;
    while kills < max {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let jitter = Duration::from_millis((seed >> 33) % 150);
        if run_and_kill_after_progress(args, cache, env, latest, jitter) {
            break;
        }
        kills += 1;
    }
    kills
}

/// Starts `flinkw` with `args`, waits until `latest()` tells a checkpoint
/// newer than at the start, then waits `jitter` more and kills it with
/// SIGKILL; returns whether it had already finished by itself. Waits at
/// most 60 s.
fn run_and_kill_after_progress(
    args: &[String],
    cache: &Path,
    env: &[(&str, String)],
    latest: &dyn Fn() -> u64,
    jitter: Duration,
) -> bool {
    let checkpoint = latest;
    let before = checkpoint();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flinkw"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("FLINKW_CACHE_DIR", cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut progressed: Option<Instant> = None;
    loop {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        if progressed.is_none() && checkpoint() > before {
            progressed = Some(Instant::now());
        }
        match progressed {
            Some(at) if at.elapsed() >= jitter => break,
            None if start.elapsed() > Duration::from_secs(60) => break,
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
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
