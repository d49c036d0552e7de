//! Deterministic replay: `flinkw replay` re-runs a failed job from one of
//! its checkpoints and reproduces the failure on the same record, writing
//! nothing but stdout.

use std::path::Path;

use flinkw_tests::artifacts;

use crate::{assert_fails_with, flinkw};

/// The failing job: records 0, 1, 2, ... at 1,000 per second; the guest
/// returns an error on record 1500; a checkpoint every 100 ms.
fn failing_job(checkpoints: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [artifacts::BAD_GUEST, "--checkpoint-dir", checkpoints]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let sets = [
        "mode=error",
        "at=1500",
        "count=3000",
        "rate=1000",
        "checkpoint.interval-ms=100",
        "checkpoint.retain=1000",
    ];
    for set in sets.iter().chain(extra) {
        args.extend(["--set".to_owned(), set.to_string()]);
    }
    args
}

/// The oldest checkpoint kept in a checkpoint folder.
fn oldest_checkpoint(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix("chk-")?.parse::<u64>().ok())
        .min()
        .expect("the job completed checkpoints before it failed")
}

fn numbers(stdout: &str) -> Vec<u64> {
    stdout.lines().map(|l| l.parse().unwrap()).collect()
}

/// Asserts `got` is `first, first + 1, ...` up to before the failing record
/// (the batch the failure interrupts is not written).
#[track_caller]
fn assert_run_of_records(got: &[u64], what: &str) {
    let (Some(&first), Some(&last)) = (got.first(), got.last()) else {
        panic!("{what}: no records before the failure");
    };
    let contiguous = got.iter().zip(first..).all(|(a, b)| *a == b);
    assert!(
        contiguous && last < 1500,
        "{what}: records {first}..={last} out of order or past 1500"
    );
}

#[test]
fn a_replay_reproduces_the_failure_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints").display().to_string();
    let job = failing_job(&checkpoints, &[]);
    let strs = |first: &str, args: &[String]| {
        std::iter::once(first.to_owned()).chain(args.iter().cloned()).collect::<Vec<String>>()
    };
    let run_args = strs("run", &job);
    let run = flinkw(&run_args.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert_fails_with(&run, &["cannot handle record 1500"]);
    let written = numbers(&run.stdout);
    assert_run_of_records(&written, "the run");
    assert_eq!(written[0], 0);

    // The replay from the newest checkpoint fails the same way.
    let replay_args = strs("replay", &job);
    let replay = flinkw(&replay_args.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert_fails_with(&replay, &["the replay of", "cannot handle record 1500"]);
    // From an early checkpoint: the same records in the same order up to
    // the same failure.
    let oldest = oldest_checkpoint(&dir.path().join("checkpoints"));
    let mut replay_args = replay_args;
    replay_args.extend(["--from-checkpoint".to_owned(), (oldest + 1).to_string()]);
    let replay = flinkw(&replay_args.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert_fails_with(&replay, &["cannot handle record 1500"]);
    let replayed = numbers(&replay.stdout);
    assert_run_of_records(&replayed, "the replay");
    assert!(replayed[0] > 0, "the replay started from a checkpoint, not the beginning");
    assert!(replay.stderr.contains("replaying from checkpoint "), "{}", replay.stderr);
    // A replay takes no checkpoint and claims nothing: running it again
    // starts at the same record.
    let again = flinkw(&replay_args.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert_fails_with(&again, &["cannot handle record 1500"]);
    assert_eq!(numbers(&again.stdout).first(), replayed.first());

    // A checkpoint that is not there, and a job of another shape, are named.
    let mut missing = strs("replay", &job);
    missing.extend(["--from-checkpoint".to_owned(), "9999".to_owned()]);
    let run = flinkw(&missing.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert_fails_with(&run, &["9999"]);
    let other = strs("replay", &failing_job(&checkpoints, &["parallelism=2"]));
    let run = flinkw(&other.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert_fails_with(&run, &["belongs to another job graph"]);
}

/// `flinkw replay job-N` replays a failed cluster job on this machine: its
/// plugin, config and checkpoint folder come from the coordinator.
#[test]
fn a_cluster_job_is_replayed_here_by_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = crate::cluster::Cluster::start(dir.path(), 1, 2);
    let checkpoints = dir.path().join("checkpoints").display().to_string();
    let mut args = vec!["deploy".to_owned(), "--restarts".to_owned(), "0".to_owned()];
    args.extend(failing_job(&checkpoints, &[]));
    let run = cluster.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(run.ok(), "{}", run.stderr);
    let job = run.stdout.trim().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let last = cluster.await_state(&job, &["failed", "finished"], deadline);
    let error = last["state"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot handle record 1500"), "{last}");

    let replay = cluster.cli(&["replay", &job]);
    assert_fails_with(&replay, &["the replay of", "cannot handle record 1500"]);
    assert!(replay.stderr.contains(&format!("replaying {job} (plugin ")), "{}", replay.stderr);
    // From an early checkpoint: the records up to the failure, in order.
    let oldest = oldest_checkpoint(Path::new(&checkpoints));
    let from = (oldest + 1).to_string();
    let replay = cluster.cli(&["replay", &job, "--from-checkpoint", &from]);
    assert_fails_with(&replay, &["cannot handle record 1500"]);
    assert!(
        replay.stderr.contains(&format!("replaying from checkpoint {from}")),
        "{}",
        replay.stderr
    );
    let replayed = numbers(&replay.stdout);
    assert_run_of_records(&replayed, "the replay");
    assert!(replayed[0] > 0, "the replay started from a checkpoint, not the beginning");

    // A job id the coordinator does not know is named.
    let run = cluster.cli(&["replay", "job-999"]);
    assert_fails_with(&run, &["no job job-999"]);
}
