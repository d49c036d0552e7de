//! Whole-memory capture: a plugin that keeps running totals in a plain
//! `static` and has no snapshot/restore code survives `kill -9`s because the
//! host captures its linear memory at each checkpoint and restores it into
//! a fresh instance; the same plugin without the declaration does not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flinkw_tests::artifacts;

use crate::checkpoints::committed;
use crate::{flinkw, kill_repeatedly, latest_checkpoint};

const BIN: &str = env!("CARGO_BIN_EXE_flinkw");
/// Numbers the job counts: about 3 s at the rate below.
const COUNT: u64 = 150_000;

/// The job: `plugin` over 0..COUNT at 50,000 per second, parallelism 2,
/// a checkpoint every 100 ms, into part files in `out`.
fn job_args(plugin: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        plugin,
        "--set",
        &format!("count={COUNT}"),
        "--set",
        "rate=50000",
        "--set",
        "parallelism=2",
        "--set",
        "checkpoint.interval-ms=100",
        "--set",
        &format!("output={}", out.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// What the output says about the running totals: each line is
/// `key,n,count,sum,host_count`; returns what is wrong, or nothing.
///
/// The order in which one key's numbers reach the keyed function depends
/// on the interleaving of the two source subtasks, so a line's totals
/// differ between runs; what may not differ: every number appears once,
/// each key's counts are exactly 1..=its number of records, and the line
/// with the last count carries the sum of all the key's numbers. The count
/// in the host's keyed state (checkpointed as usual) must equal the one in
/// the guest's static.
fn totals_problems(lines: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = vec![0u32; COUNT as usize];
    let mut counts: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut last_sum: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for line in lines {
        let f: Vec<u64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        let (key, n, count, sum, host_count) = (f[0], f[1], f[2], f[3], f[4]);
        seen[n as usize] += 1;
        if count != host_count && problems.len() < 5 {
            problems.push(format!("{line}: the static says {count}, the keyed state {host_count}"));
        }
        counts.entry(key).or_default().push(count);
        let e = last_sum.entry(key).or_default();
        if count > e.0 {
            *e = (count, sum);
        }
    }
    let lost = seen.iter().filter(|s| **s == 0).count();
    let duplicated = seen.iter().filter(|s| **s > 1).count();
    if lost > 0 {
        problems.push(format!("{lost} numbers lost"));
    }
    if duplicated > 0 {
        problems.push(format!("{duplicated} numbers duplicated"));
    }
    for (key, mut c) in counts {
        c.sort();
        let records = (0..COUNT).filter(|n| n % 7 == key).count() as u64;
        if c != (1..=records).collect::<Vec<_>>() {
            let repeated = c.windows(2).filter(|w| w[0] == w[1]).count();
            problems.push(format!(
                "key {key}: counts go up to {} over {records} records ({repeated} repeated)",
                c.last().copied().unwrap_or(0)
            ));
        }
        let sum: u64 = (0..COUNT).filter(|n| n % 7 == key).sum();
        if last_sum[&key].1 != sum {
            problems.push(format!("key {key}: final sum {} instead of {sum}", last_sum[&key].1));
        }
    }
    problems
}

/// Runs `args` to the end (restoring from the latest checkpoint).
fn finish(args: &[String], cache: &Path) -> flinkw_tests::Run {
    Command::new(BIN).args(args).env("FLINKW_CACHE_DIR", cache).output().unwrap().into()
}

#[test]
fn running_totals_in_a_static_survive_kills_through_memory_capture() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let reference = dir.path().join("reference");
    let run = flinkw(
        &job_args(artifacts::MEMORY_CAPTURED, &reference, &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    let expected = committed(&reference);
    assert_eq!(totals_problems(&expected), Vec::<String>::new(), "the failure-free run");

    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let ck = checkpoints.display().to_string();
    let args = job_args(artifacts::MEMORY_CAPTURED, &out, &["--checkpoint-dir", &ck]);
    let latest = || latest_checkpoint(&checkpoints);
    let kills = kill_repeatedly(&args, &cache, &[], &latest, 0x3e3, 12);
    let last = finish(&args, &cache);
    assert!(last.ok(), "{}", last.stderr);
    assert!(kills >= 10, "the job was killed only {kills} times");
    assert!(last.stderr.contains("restored from checkpoint"), "{}", last.stderr);
    let got = committed(&out);
    assert_eq!(got.len(), expected.len(), "after {kills} kills: lines lost or duplicated");
    assert_eq!(totals_problems(&got), Vec::<String>::new(), "after {kills} kills");
}

/// The same job built without the declaration: after a restore its totals
/// start again from zero, so counts repeat — the capture is what carries
/// the state.
#[test]
fn without_the_declaration_the_totals_start_again_after_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let ck = checkpoints.display().to_string();
    let args = job_args(artifacts::MEMORY_PLAIN, &out, &["--checkpoint-dir", &ck]);
    let latest = || latest_checkpoint(&checkpoints);
    let kills = kill_repeatedly(&args, &cache, &[], &latest, 0x3e3, 1);
    assert_eq!(kills, 1);
    let last = finish(&args, &cache);
    assert!(last.ok(), "{}", last.stderr);
    assert!(last.stderr.contains("restored from checkpoint"), "{}", last.stderr);
    let problems = totals_problems(&committed(&out));
    // Exactly once still holds for the records; only the guest's totals break.
    assert!(!problems.iter().any(|p| p.contains("lost")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("repeated")), "{problems:?}");
}

/// The newest complete checkpoint's (checkpoint folder, state files).
fn newest_checkpoint(checkpoints: &Path) -> (u64, Vec<u64>) {
    let mut ids: Vec<u64> = std::fs::read_dir(checkpoints)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .filter(|id| checkpoints.join(format!("chk-{id}/_metadata")).exists())
        .collect();
    ids.sort();
    (*ids.last().unwrap(), ids)
}

/// Runs `args` until `ready` holds (at most 20 s), then kills it.
fn run_until(args: &[String], cache: &Path, ready: impl Fn() -> bool) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("FLINKW_CACHE_DIR", cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !ready() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_corrupt_memory_image_falls_back_to_the_checkpoint_before() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let ck = checkpoints.display().to_string();
    let args = job_args(artifacts::MEMORY_CAPTURED, &out, &["--checkpoint-dir", &ck]);
    run_until(&args, &cache, || latest_checkpoint(&checkpoints) >= 3);
    let (newest, ids) = newest_checkpoint(&checkpoints);
    assert!(ids.len() >= 2, "{ids:?}");
    // The keyed task's state file is mostly the guest's memory image:
    // damage a byte in its middle.
    let file: PathBuf = checkpoints.join(format!("chk-{newest}/t1-s0.state"));
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 64 << 10, "{} bytes: no memory image in it?", bytes.len());
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();

    let run = finish(&args, &cache);
    assert!(run.ok(), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("checkpoint {newest} is corrupt")), "{}", run.stderr);
    assert!(run.stderr.contains("t1-s0.state does not match its checksum"), "{}", run.stderr);
    let before = ids[ids.len() - 2];
    assert!(run.stderr.contains(&format!("restored from checkpoint {before}")), "{}", run.stderr);
    // Output the damaged checkpoint had committed is written again; every
    // number is there and the totals of the final lines are right.
    let problems = totals_problems(&committed(&out));
    let wrong = ["lost", "final sum", "the static says"];
    assert!(!problems.iter().any(|p| wrong.iter().any(|w| p.contains(w))), "{problems:?}");
}

/// A savepoint of a memory-captured job cannot be restored at another
/// parallelism: the job fails at once with a message that says why.
#[test]
fn a_memory_captured_savepoint_refuses_another_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let savepoints = dir.path().join("savepoints");
    let sp = savepoints.display().to_string();
    let args = job_args(artifacts::MEMORY_CAPTURED, &out, &["--savepoint-dir", &sp]);
    let child = Command::new(BIN)
        .args(&args)
        .env("FLINKW_CACHE_DIR", &cache)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while latest_checkpoint(&savepoints.join("checkpoints")) == 0
        && start.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopped = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(stopped.status.success(), "{stderr}");
    let point = std::fs::read_dir(&savepoints)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("sp-"))
        .expect("a savepoint folder");
    let mut resumed = job_args(artifacts::MEMORY_CAPTURED, &out, &[]);
    for a in resumed.iter_mut().filter(|a| a.starts_with("parallelism=")) {
        *a = "parallelism=3".into();
    }
    resumed.extend(["--from-savepoint".to_owned(), point.display().to_string()]);
    let run = finish(&resumed, &cache);
    crate::assert_fails_with(
        &run,
        &[
            "cannot be restored",
            "whole-memory capture",
            "cannot be split by key group",
            "restore it at parallelism 2 (now 3)",
        ],
    );
}
