//! Checkpoints and exactly-once: a job killed with SIGKILL again and again,
//! and restarted each time from its checkpoints, writes exactly the output
//! of a run without failures.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flinkw_tests::artifacts;
use flinkw_tests::stores::{Cloud, TestStore};

use crate::{flinkw, kill_repeatedly, latest_checkpoint, latest_checkpoint_in};

const BIN: &str = env!("CARGO_BIN_EXE_flinkw");

/// The windowed job: 300,000 bids at 100,000 per second (about 3 s), in
/// 1 s tumbling windows per auction, at parallelism 2, into part files.
fn job_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        artifacts::NEXMARK_WINDOWS,
        "--set",
        "count=300000",
        "--set",
        "rate=100000",
        "--set",
        "parallelism=2",
        "--set",
        "checkpoint.interval-ms=100",
        "--set",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("output={}", out.display()));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Every committed line of the part files in `out`, sorted.
pub(crate) fn committed(out: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(out).unwrap() {
        let path = e.unwrap().path();
        if path.file_name().unwrap().to_str().unwrap().starts_with("part-") {
            lines.extend(std::fs::read_to_string(&path).unwrap().lines().map(str::to_owned));
        }
    }
    lines.sort();
    lines
}

fn chaos(backend: &[&str]) {
    chaos_in(backend, None);
}

/// The kill test with checkpoints in `store` (a test store and a URL in
/// it; default a local directory); the store's environment for every run.
fn chaos_in(backend: &[&str], store: Option<(&TestStore, &str)>) {
    let owned_env = store.map(|(s, _)| s.env()).unwrap_or_default();
    let env: &[(&str, String)] =
        &owned_env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect::<Vec<_>>();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // The run without failures.
    let reference = dir.path().join("reference");
    let run = flinkw(
        &job_args(&reference, backend).iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    let expected = committed(&reference);
    assert!(expected.len() > 10_000, "{} windows", expected.len());

    // The same job, killed at pseudo-random moments, restarted each time.
    let out = dir.path().join("out");
    let local_dir = dir.path().join("checkpoints");
    let local = local_dir.display().to_string();
    let checkpoints = store.map_or(local.as_str(), |(_, url)| url);
    let s3 = store.map(|(s, url)| {
        flinkw_host::objstore::open(url, &crate::object_store::store_options(s)).unwrap()
    });
    let latest = || match &s3 {
        Some(store) => latest_checkpoint_in(store),
        None => latest_checkpoint(&local_dir),
    };
    let mut extra = vec!["--checkpoint-dir", checkpoints];
    extra.extend_from_slice(backend);
    let args = job_args(&out, &extra);
    let kills = kill_repeatedly(&args, &cache, env, &latest, 0x5eed, 12);
    let last: flinkw_tests::Run = Command::new(BIN)
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("FLINKW_CACHE_DIR", &cache)
        .output()
        .unwrap()
        .into();
    assert!(last.ok(), "{}", last.stderr);
    assert!(kills >= 10, "the job was killed only {kills} times");
    assert!(last.stderr.contains("restored from checkpoint"), "{}", last.stderr);
    let got = committed(&out);
    let duplicated = got.len().saturating_sub(expected.len());
    let lost = expected.len().saturating_sub(got.len());
    assert!(
        got == expected,
        "after {kills} kills: {lost} lost, {duplicated} duplicated, or different content"
    );
}

#[test]
fn killed_and_restarted_jobs_write_exactly_once_on_memory_state() {
    chaos(&[]);
}

/// Checkpoints in an S3-compatible store (a real server started here):
/// after kills and restarts, the output is still exactly the reference's.
#[test]
fn killed_and_restarted_jobs_write_exactly_once_with_checkpoints_in_s3() {
    chaos_in_store(Cloud::S3);
}

/// The same with checkpoints in Azure Blob Storage (Azurite).
#[test]
fn killed_and_restarted_jobs_write_exactly_once_with_checkpoints_in_azure() {
    chaos_in_store(Cloud::Azure);
}

fn chaos_in_store(cloud: Cloud) {
    let store = TestStore::start(cloud);
    store.create_bucket("checkpoints");
    let url = store.url("checkpoints", "jobs/windowed");
    chaos_in(&[], Some((&store, &url)));
}

#[test]
fn killed_and_restarted_jobs_write_exactly_once_on_rocksdb_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().display().to_string();
    chaos(&["--state-backend", "rocksdb", "--state-dir", &state]);
}

/// Results carry a counter kept in the guest's own memory: only if the
/// guest's state is checkpointed and restored does the numbering after a
/// crash continue exactly where it was.
#[test]
fn guest_state_in_linear_memory_survives_kills() {
    chaos(&["--set", "numbered=true"]);
}

#[test]
fn a_corrupt_checkpoint_falls_back_to_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let ck = checkpoints.display().to_string();
    let args = job_args(&out, &["--checkpoint-dir", &ck]);
    // Run until at least two checkpoints completed, then kill.
    let mut child = Command::new(BIN).args(&args).env("FLINKW_CACHE_DIR", &cache).spawn().unwrap();
    let complete = |d: &Path| {
        std::fs::read_dir(d).map_or(0, |r| {
            r.filter(|e| e.as_ref().unwrap().path().join("_metadata").exists()).count()
        })
    };
    let start = Instant::now();
    while complete(&checkpoints) < 2 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Damage the newest complete checkpoint's state.
    let mut ids: Vec<u64> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .filter(|id| checkpoints.join(format!("chk-{id}/_metadata")).exists())
        .collect();
    ids.sort();
    let newest = *ids.last().unwrap();
    let file = checkpoints.join(format!("chk-{newest}/t1-s0.state"));
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();

    let run = flinkw(&args.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert!(run.ok(), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("checkpoint {newest} is corrupt")), "{}", run.stderr);
    assert!(run.stderr.contains("does not match its checksum"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("restored from checkpoint {}", ids[ids.len() - 2])),
        "{}",
        run.stderr
    );
    // Nothing is lost. (Output that the damaged checkpoint had committed is
    // written again: the sink cannot take back what readers may have seen.)
    let reference = dir.path().join("reference");
    let plain = flinkw(
        &job_args(&reference, &[]).iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    );
    assert!(plain.ok(), "{}", plain.stderr);
    let got: std::collections::BTreeSet<String> = committed(&out).into_iter().collect();
    let missing = committed(&reference).into_iter().filter(|l| !got.contains(l)).count();
    assert_eq!(missing, 0, "records lost after falling back");
    assert!(run.stderr.contains("may be written again"), "{}", run.stderr);
}

/// A restore that fills this machine's disk (its scratch copy of a RocksDB
/// checkpoint on a full file system) names the disk and keeps the
/// checkpoint: it is not called corrupt, and once there is room the job
/// restores from that same checkpoint and finishes with every record.
#[test]
fn a_full_disk_during_a_restore_is_not_a_corrupt_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let (ck, state) = (checkpoints.display().to_string(), dir.path().join("state"));
    let rocks = ["--state-backend", "rocksdb", "--state-dir", state.to_str().unwrap()];
    let mut args = job_args(&out, &["--checkpoint-dir", &ck]);
    let mut child = Command::new(BIN)
        .args(&args)
        .args(rocks)
        .env("FLINKW_CACHE_DIR", &cache)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while latest_checkpoint(&checkpoints) < 2 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let newest = latest_checkpoint(&checkpoints);
    assert!(newest >= 2, "no checkpoint completed");
    // Restored into the memory backend, the checkpoint's RocksDB files are
    // read out through a scratch database under TMPDIR: here a 16 KiB
    // tmpfs, mounted in a mount namespace of the run's own.
    args.extend(["--state-backend".into(), "memory".into()]);
    let full = dir.path().join("full");
    std::fs::create_dir_all(&full).unwrap();
    let script = r#"mount -t tmpfs -o size=16k flinkw-full "$1" || exit 77; shift; exec "$@""#;
    let run = Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh", full.to_str().unwrap(), BIN])
        .args(&args)
        .env("FLINKW_CACHE_DIR", &cache)
        .env("TMPDIR", &full)
        .output()
        .unwrap();
    if run.status.code() == Some(77) || run.status.code().is_none() {
        eprintln!("skipped: no tmpfs in a mount namespace here (not root?)");
        return;
    }
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("could not be restored on this machine"), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(stderr.contains("not found damaged") && !stderr.contains("is corrupt"), "{stderr}");
    // With room again, the same checkpoint restores and nothing is lost.
    let again = flinkw(&args.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert!(again.ok(), "{}", again.stderr);
    assert!(
        again.stderr.contains(&format!("restored from checkpoint {newest}")),
        "{}",
        again.stderr
    );
    let reference = dir.path().join("reference");
    let plain = flinkw(
        &job_args(&reference, &[]).iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    );
    assert!(plain.ok(), "{}", plain.stderr);
    assert_eq!(committed(&out), committed(&reference));
}

#[test]
fn a_checkpoint_of_another_job_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck").display().to_string();
    let out = dir.path().join("out");
    let mut a = job_args(&out, &["--checkpoint-dir", &ck]);
    a[3] = "count=20000".into();
    let first = flinkw(&a.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert!(first.ok(), "{}", first.stderr);
    let b = flinkw(
        &[
            "run",
            artifacts::NEXMARK_WINDOWS,
            "--set",
            "workload=w3",
            "--set",
            "count=1000",
            "--checkpoint-dir",
            &ck,
        ],
        dir.path(),
    );
    crate::assert_fails_with(&b, &["belongs to another job graph"]);
}

/// Runs the job until it has completed a checkpoint, then sends SIGTERM;
/// returns the savepoint it stopped with.
fn stop_with_savepoint(args: &[String], cache: &Path, savepoints: &Path) -> std::path::PathBuf {
    let child = Command::new(BIN)
        .args(args)
        .env("FLINKW_CACHE_DIR", cache)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let checkpoints = savepoints.join("checkpoints");
    let start = Instant::now();
    let has_checkpoint = || {
        std::fs::read_dir(&checkpoints)
            .is_ok_and(|mut r| r.any(|e| e.is_ok_and(|e| e.path().join("_metadata").exists())))
    };
    while !has_checkpoint() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("stopped with savepoint"), "{stderr}");
    std::fs::read_dir(savepoints)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("sp-"))
        .expect("a savepoint folder")
}

/// Stop with a savepoint at parallelism 1, resume at 4, stop again, resume
/// at 2: the output equals an uninterrupted run's.
#[test]
fn savepoints_restore_at_another_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let with = |p: &str, extra: &[String]| {
        let mut args = job_args(&out, &[]);
        for a in args.iter_mut().filter(|a| a.starts_with("parallelism=")) {
            *a = format!("parallelism={p}");
        }
        args.extend(extra.iter().cloned());
        args
    };
    let reference = dir.path().join("reference");
    let mut plain = job_args(&reference, &[]);
    for a in plain.iter_mut().filter(|a| a.starts_with("parallelism=")) {
        *a = "parallelism=1".to_string();
    }
    let run = flinkw(&plain.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert!(run.ok(), "{}", run.stderr);

    let sp1 = dir.path().join("sp1");
    let first = stop_with_savepoint(
        &with("1", &["--savepoint-dir".into(), sp1.display().to_string()]),
        &cache,
        &sp1,
    );
    let sp2 = dir.path().join("sp2");
    let second = stop_with_savepoint(
        &with(
            "4",
            &[
                "--from-savepoint".into(),
                first.display().to_string(),
                "--savepoint-dir".into(),
                sp2.display().to_string(),
            ],
        ),
        &cache,
        &sp2,
    );
    let last = with("2", &["--from-savepoint".into(), second.display().to_string()]);
    let run = flinkw(&last.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert!(run.ok(), "{}", run.stderr);
    let (got, expected) = (committed(&out), committed(&reference));
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "different output after 1 -> 4 -> 2");
}

#[test]
fn a_savepoint_of_another_job_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let sp = dir.path().join("sp");
    let out = dir.path().join("out");
    let point = stop_with_savepoint(
        &job_args(&out, &["--savepoint-dir", &sp.display().to_string()]),
        &cache,
        &sp,
    );
    let run = flinkw(
        &[
            "run",
            artifacts::NEXMARK_WINDOWS,
            "--set",
            "workload=w3",
            "--from-savepoint",
            &point.display().to_string(),
        ],
        dir.path(),
    );
    crate::assert_fails_with(&run, &["belongs to another job graph"]);
}

/// The `upgrade` test plugin's run at `version` (a built artifact) writing to `out`.
fn upgrade_args(plugin: &str, out: &Path, extra: &[String]) -> Vec<String> {
    upgrade_args_at(plugin, out, (3000, 1000), extra)
}

/// [`upgrade_args`] with `(count, rate)`.
fn upgrade_args_at(
    plugin: &str,
    out: &Path,
    (count, rate): (u64, u64),
    extra: &[String],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        plugin,
        "--set",
        &format!("count={count}"),
        "--set",
        &format!("rate={rate}"),
        "--set",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("output={}", out.display()));
    args.extend(["--set".into(), "checkpoint.interval-ms=100".into()]);
    args.extend(extra.iter().cloned());
    args
}

/// A job stopped with a savepoint under version 1 of its plugin goes on
/// under version 2: the host calls version 2's `migrate` with version 1's
/// guest state, keyed state carries over as it is, and the output equals an
/// uninterrupted run's.
#[test]
fn a_savepoint_restores_into_a_new_plugin_version_through_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let reference = dir.path().join("reference");
    let plain = upgrade_args_at(artifacts::UPGRADE_V1, &reference, (3000, 0), &[]);
    let run = flinkw(&plain.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert!(run.ok(), "{}", run.stderr);

    let out = dir.path().join("out");
    let sp = dir.path().join("sp");
    let point = stop_with_savepoint(
        &upgrade_args(
            artifacts::UPGRADE_V1,
            &out,
            &["--savepoint-dir".into(), sp.display().to_string()],
        ),
        &cache,
        &sp,
    );
    let before = committed(&out);
    assert!(!before.is_empty() && before.len() < 3000, "stopped midway: {} lines", before.len());
    let v2 = upgrade_args(
        artifacts::UPGRADE_V2,
        &out,
        &["--from-savepoint".into(), point.display().to_string()],
    );
    let run = flinkw(&v2.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert!(run.ok(), "{}", run.stderr);
    let after: Vec<String> = committed(&out).into_iter().filter(|l| !before.contains(l)).collect();
    // Version 2 writes the version its guest state came from as a fifth column.
    assert_eq!(after.len(), 3000 - before.len());
    assert!(
        after.iter().all(|l| l.ends_with(",1")),
        "state not migrated from 1: {:?}",
        &after[..3]
    );
    let mut got: Vec<String> = before
        .into_iter()
        .chain(after.iter().map(|l| l.strip_suffix(",1").unwrap_or(l).to_owned()))
        .collect();
    got.sort();
    assert!(got == committed(&reference), "output after the upgrade differs from one run of v1");

    // Version 3 refuses version 1's state: a clear error, nothing written.
    // (The same output folder: a savepoint restores only into the same job
    // graph, sink settings included.)
    let written = committed(&out).len();
    let v3 = upgrade_args(
        artifacts::UPGRADE_V3,
        &out,
        &[
            "--from-savepoint".into(),
            point.display().to_string(),
            "--checkpoint-dir".into(),
            dir.path().join("v3-checkpoints").display().to_string(),
        ],
    );
    let run = flinkw(&v3.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    crate::assert_fails_with(
        &run,
        &["migrate from version 1", "version 3 cannot read the state of version 1"],
    );
    assert_eq!(committed(&out).len(), written, "version 3 wrote output");
}

/// The object store goes away while a job runs: checkpoints fail, the job
/// goes on, and once more than `checkpoint.tolerable-failures` failed in a
/// row the job fails with a message that says so and why.
#[test]
fn an_unreachable_checkpoint_store_fails_the_job_after_tolerable_failures() {
    let dir = tempfile::tempdir().unwrap();
    let server = flinkw_tests::s3::S3Server::start();
    server.create_bucket("checkpoints");
    let env = server.env();
    let out = dir.path().join("out");
    let args = upgrade_args_at(
        artifacts::UPGRADE_V1,
        &out,
        (100_000_000, 5000),
        &["--checkpoint-dir".into(), "s3://checkpoints/going-away".into()],
    );
    let child = Command::new(BIN)
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("FLINKW_CACHE_DIR", dir.path().join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let some checkpoints complete, then take the store away.
    std::thread::sleep(Duration::from_millis(1500));
    drop(server);
    let pid = child.id() as i32;
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let start = Instant::now();
    while !waiter.is_finished() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !waiter.is_finished() {
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let run: flinkw_tests::Run = waiter.join().unwrap().into();
    crate::assert_fails_with(
        &run,
        &["checkpoints in a row failed", "checkpoint.tolerable-failures = 3", "the last one:"],
    );
    assert!(run.stderr.contains("checkpoint failed; the job goes on"), "{}", run.stderr);
}
