//! Fencing: an attempt of a job that a newer attempt replaced (a worker
//! that was cut off or paused, a process left over from a replaced
//! coordinator) must not publish anything.

use std::path::Path;

use flinkw_host::checkpoint::CheckpointStorage;
use flinkw_host::config::JobConfig;
use flinkw_host::plugin::Plugin;
use flinkw_host::runtime::{RunOptions, run_job};
use flinkw_tests::artifacts;

/// Visible (committed) lines of the part files in `dir`.
fn visible_lines(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count())
        .sum()
}

/// An attempt with fencing epoch 1 runs after epoch 2 was claimed (the
/// newer attempt exists): it completes no checkpoint, publishes no part
/// file and fails naming both epochs. A new attempt (epoch 3) then writes
/// everything.
#[test]
fn an_attempt_replaced_by_a_newer_one_commits_nothing() {
    let engine = super::engine();
    let plugin = Plugin::load_file(&engine, artifacts::NEXMARK_WINDOWS.as_ref()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let storage = CheckpointStorage::open(&checkpoints).unwrap();
    let zombie = storage.claim_epoch().unwrap();
    assert_eq!(storage.claim_epoch().unwrap(), zombie + 1);
    let out = dir.path().join("out");
    let config = JobConfig::parse(&[
        "count=50000".to_owned(),
        "parallelism=2".to_owned(),
        "checkpoint.interval-ms=50".to_owned(),
        format!("output={}", out.display()),
    ])
    .unwrap();
    let options = |epoch| RunOptions {
        checkpoint_dir: Some(checkpoints.clone()),
        fencing_epoch: epoch,
        ..RunOptions::default()
    };
    let err = run_job(&plugin, &config, options(Some(zombie))).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("fencing epoch 1") && text.contains("(epoch 2)"), "{text}");
    assert_eq!(visible_lines(&out), 0, "a replaced attempt published output");
    let completed: Vec<_> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("_metadata").exists())
        .map(|e| e.file_name())
        .collect();
    assert!(completed.is_empty(), "a replaced attempt completed checkpoints {completed:?}");

    let report = run_job(&plugin, &config, options(None)).unwrap();
    let written = report.nodes.last().unwrap().records_out;
    assert!(written > 0);
    assert_eq!(visible_lines(&out) as u64, written);
}
