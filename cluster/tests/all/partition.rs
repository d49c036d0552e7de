//! The cluster under real network faults and coordinator loss: a worker
//! cut off by dropping all of its traffic (relays, [`crate::relay`]), and
//! a coordinator replaced by one on another data folder that finds the
//! jobs in an object store.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flinkw_host::objstore;
use flinkw_tests::stores::{Cloud, TestStore};

use crate::cluster::{
    Cluster, HEARTBEAT_TIMEOUT_MS, Setup, embedded_w2, part_lines, worker_index, worker_of,
};
use crate::latest_checkpoint;
use crate::relay::Net;

/// Waits (until `deadline`) for `done`, naming `what` and the cluster's
/// logs if it never comes.
fn wait_for(cluster: &Cluster, what: &str, deadline: Instant, done: &dyn Fn() -> bool) {
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen:\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn worker_names(cluster: &Cluster) -> Vec<String> {
    let run = cluster.cli(&["workers", "--json"]);
    assert!(run.ok(), "{}", run.stderr);
    let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    list.as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap().to_owned()).collect()
}

/// A keyed windowed job (W2: 1 s windows per auction, parallelism 2, part
/// files committed by checkpoints) runs on 3 workers that reach each other
/// and the coordinator only through relays. One of its workers is cut
/// off: nothing from it or to it passes. The coordinator finds it silent
/// for the heartbeat timeout and restarts the job from its latest
/// checkpoint on the remaining slots. The network heals while the new
/// attempt runs, so the cut-off worker's parts run on for a moment as
/// zombies of the old attempt, whose fencing epoch the new attempt has
/// superseded. The output equals the embedded run's line for line, and the
/// healed worker drops its stale parts and joins again.
#[test]
fn a_partitioned_worker_is_failed_over_and_rejoins_when_healed() {
    let dir = tempfile::tempdir().unwrap();
    let expected = embedded_w2(dir.path(), 400_000);
    let net = Arc::new(Net::new());
    let setup = Setup { net: Some(net.clone()), ..Setup::default() };
    let cluster = Cluster::start_with(dir.path(), 3, 1, setup);
    let out = dir.path().join("cluster");
    let checkpoints = dir.path().join("checkpoints");
    let extra = [
        "--restarts",
        "3",
        "--restart-delay",
        "100",
        "--checkpoint-dir",
        checkpoints.to_str().unwrap(),
    ];
    let job = cluster.deploy_w2(400_000, &out, &extra);
    let deadline = Instant::now() + Duration::from_secs(120);
    let running = cluster.await_state(&job, &["running"], deadline);
    let victim = worker_of(&running, 0);
    let others: Vec<String> = worker_names(&cluster).into_iter().filter(|w| *w != victim).collect();
    // Cut it off once the job has committed progress.
    wait_for(&cluster, "a first checkpoint", deadline, &|| latest_checkpoint(&checkpoints) >= 1);
    let bind = cluster.binds[worker_index(&victim)];
    let (_, dropped_before) = net.counts();
    net.cut(bind);
    let cut_at = Instant::now();

    // Failed over: a new attempt runs without the silent worker.
    let restarted = loop {
        let s = cluster.await_state(&job, &["running", "finished"], deadline);
        if s["attempt"].as_u64().unwrap() >= 1 || s["state"]["state"] == "finished" {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let detected = cut_at.elapsed();
    assert_eq!(restarted["state"]["state"], "running", "the job ended before failing over");
    let placed: Vec<&str> =
        restarted["placement"][0].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert!(!placed.contains(&victim.as_str()), "{placed:?} still uses {victim}");
    assert!(!worker_names(&cluster).contains(&victim), "{victim} is still listed");
    // Lost through the heartbeat timeout, not a connection error.
    let logs = cluster.logs();
    assert!(logs.contains("no heartbeat"), "{logs}");
    let (_, dropped) = net.counts();
    assert!(dropped > dropped_before, "the cut dropped nothing");
    eprintln!(
        "cut off {victim}: failed over after {:.2} s (heartbeat timeout {HEARTBEAT_TIMEOUT_MS} ms)",
        detected.as_secs_f64()
    );

    // Healed while the new attempt runs: the zombie's parts of the old
    // attempt resume, may not commit, and are dropped.
    net.heal(bind);
    cluster.await_recovered_end(&job, deadline);
    assert_eq!(part_lines(&out), expected);
    let log_of = |name: &str| std::fs::read_to_string(dir.path().join(format!("{name}.log")));
    wait_for(&cluster, "the healed worker's rejoining", deadline, &|| {
        worker_names(&cluster).contains(&victim)
    });
    let log = log_of(&victim).unwrap();
    assert!(log.contains("stale job part"), "{victim} did not drop its parts:\n{log}");
    assert!(log.contains("joining again"), "{log}");
    for other in &others {
        assert!(worker_names(&cluster).contains(other), "{other} left");
    }
    // Nothing the zombie did afterwards changed the output.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(part_lines(&out), expected);
    assert!(
        std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".pending")),
        "pending part files left behind"
    );
}

/// Whether a checkpoint under the object-store prefix `loc` is complete.
fn has_checkpoint(loc: &objstore::StoreLocation) -> bool {
    use objstore::object_store::ObjectStoreExt;
    let Ok(list) = objstore::block_on(loc.store.list_with_delimiter(Some(&loc.prefix))) else {
        return false;
    };
    list.common_prefixes.iter().any(|folder| {
        folder.filename().is_some_and(|f| f.starts_with("chk-"))
            && objstore::block_on(loc.store.head(&folder.clone().join("_metadata"))).is_ok()
    })
}

/// The coordinator keeps its job records (and the plugins they run) in
/// S3. It is killed with SIGKILL mid-job; a new coordinator with an empty
/// data folder of its own but the same job store takes the job back and
/// resumes it from its latest checkpoint (also in S3): the output equals
/// the embedded run's line for line.
#[test]
fn a_new_coordinator_resumes_the_jobs_of_a_shared_job_store() {
    shared_job_store(Cloud::S3);
}

/// The same with the job store and checkpoints in Azure Blob Storage.
#[test]
fn a_new_coordinator_resumes_the_jobs_of_a_shared_job_store_in_azure() {
    shared_job_store(Cloud::Azure);
}

fn shared_job_store(cloud: Cloud) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestStore::start(cloud);
    server.create_bucket("flinkw");
    let expected = embedded_w2(dir.path(), 400_000);
    let setup = Setup {
        coordinator_args: vec!["--job-store".into(), server.url("flinkw", "coordinator")],
        env: server.env(),
        net: None,
    };
    let mut cluster = Cluster::start_with(dir.path(), 2, 1, setup);
    let out = dir.path().join("cluster");
    let checkpoint_url = server.url("flinkw", "checkpoints/w2");
    let job = cluster.deploy_w2(400_000, &out, &["--checkpoint-dir", &checkpoint_url]);
    let deadline = Instant::now() + Duration::from_secs(120);
    cluster.await_state(&job, &["running"], deadline);
    let options = crate::object_store::store_options(&server);
    let checkpoints = objstore::open(&checkpoint_url, &options).unwrap();
    wait_for(&cluster, "a first checkpoint in the store", deadline, &|| {
        has_checkpoint(&checkpoints)
    });
    // The job's record is in the store, not in the data folder.
    let records = objstore::open(&server.url("flinkw", "coordinator/jobs"), &options).unwrap();
    let listed = objstore::block_on(records.store.list_with_delimiter(Some(&records.prefix)))
        .unwrap()
        .objects;
    let names: Vec<String> = listed.iter().map(|o| o.location.to_string()).collect();
    assert!(names.iter().any(|n| n.ends_with(&format!("{job}.json"))), "{names:?}");
    assert!(!dir.path().join("coordinator-data/jobs").exists());

    cluster.replace_coordinator("another-coordinator-data");
    let last = cluster.await_recovered_end(&job, deadline);
    assert!(cluster.logs().contains(&format!("resuming job {job}")), "{}", cluster.logs());
    assert_eq!(part_lines(&out), expected, "{last}");
    // The new coordinator fetched the plugin from the store.
    let fetched = Path::new(dir.path()).join("another-coordinator-data/plugins");
    assert_eq!(std::fs::read_dir(fetched).unwrap().count(), 1);
}
