//! Per-tenant CPU shares on a worker (real processes): the subtask threads
//! of two tenants' jobs land in two cgroups of the worker with equal
//! `cpu.shares` (and a tenant's CPU cap as `cpu.cfs_quota_us`), and the
//! groups go away when the jobs end and when the worker exits.
//!
//! Needs a writable cgroup v1 `cpu` hierarchy (root on the CI machine);
//! elsewhere it prints why it is skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flinkw_cluster::cpu_groups;

use crate::cluster::Cluster;
use crate::tenants::{create_tenant, deploy_endless};

/// The cgroup folder this process (and the workers it starts) is in, if
/// the cpu hierarchy may be written here; else why not.
fn writable_home() -> Result<PathBuf, String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let own = cpu_groups::own_cpu_path(&cgroup).ok_or("no cgroup v1 cpu controller")?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let (mount, root) =
        cpu_groups::cpu_mount(&mountinfo).ok_or("the cpu hierarchy is not mounted")?;
    let home = cpu_groups::home_dir(&mount, &root, own);
    let probe = home.join(format!("flinkw-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).map_err(|e| format!("cannot make {}: {e}", probe.display()))?;
    std::fs::remove_dir(&probe).map_err(|e| format!("cannot remove {}: {e}", probe.display()))?;
    Ok(home)
}

/// The cpu cgroup path of every subtask thread (`flinkw-tN-M`) of `pid`,
/// counted per path.
fn subtask_groups(pid: u32) -> BTreeMap<String, usize> {
    let mut groups = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return groups };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("flinkw-t") {
            continue;
        }
        let cgroup = std::fs::read_to_string(t.path().join("cgroup")).unwrap_or_default();
        if let Some(path) = cpu_groups::own_cpu_path(&cgroup) {
            *groups.entry(path.to_owned()).or_default() += 1;
        }
    }
    groups
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// Waits (at most 30 s) until `done` holds; panics with `what` otherwise.
fn wait_for(what: &str, cluster: &Cluster, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not after 30 s\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn each_tenants_threads_run_in_its_own_cgroup_with_equal_shares() {
    let home = match writable_home() {
        Ok(h) => h,
        Err(why) => {
            println!("skipped: cgroups are not writable here ({why})");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 1, 6);
    let pid = cluster.workers[0].id();
    let worker_dir = home.join(cpu_groups::worker_group_name("w1", pid));
    assert!(worker_dir.is_dir(), "no {}\n{}", worker_dir.display(), cluster.logs());
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(read(&worker_dir.join("cpu.shares")), (1024 * cpus).to_string(), "1024 per CPU");

    // A is capped at 1.5 cores; B has no cap. B's job is twice as wide.
    let a = create_tenant(&cluster, "team-a", &["--max-cpu-percent", "150"]);
    let b = create_tenant(&cluster, "team-b", &[]);
    let run = deploy_endless(&cluster, &a, &["--set", "parallelism=1"]);
    assert!(run.ok(), "{}", run.stderr);
    let job_a = run.stdout.trim().to_owned();
    let run = deploy_endless(&cluster, &b, &["--set", "parallelism=2"]);
    assert!(run.ok(), "{}", run.stderr);
    let job_b = run.stdout.trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    cluster.await_state(&job_a, &["running"], deadline);
    cluster.await_state(&job_b, &["running"], deadline);

    let (group_a, group_b) = (worker_dir.join("t-team-a"), worker_dir.join("t-team-b"));
    // The paths /proc shows: relative to the hierarchy's root.
    let (path_a, path_b) = (own_path(&home, &group_a), own_path(&home, &group_b));
    let mut seen = BTreeMap::new();
    wait_for("both jobs' subtask threads in their groups", &cluster, || {
        seen = subtask_groups(pid);
        seen.len() == 2 && seen.contains_key(&path_a) && seen.contains_key(&path_b)
    });
    // Every subtask thread is in its tenant's group: B's job has twice A's.
    let (n_a, n_b) = (seen[&path_a], seen[&path_b]);
    assert!(n_a >= 1 && n_b == 2 * n_a, "{seen:?}");
    for g in [&group_a, &group_b] {
        assert_eq!(read(&g.join("cpu.shares")), "1024", "{}", g.display());
    }
    assert_eq!(read(&group_a.join("cpu.cfs_quota_us")), "150000");
    assert_eq!(read(&group_b.join("cpu.cfs_quota_us")), "-1");
    // The worker's own threads (network, heartbeats) stay where it started.
    let main_cgroup = read(&PathBuf::from(format!("/proc/{pid}/task/{pid}/cgroup")));
    let home_path = own_path(&home, &home);
    assert_eq!(cpu_groups::own_cpu_path(&main_cgroup), Some(home_path.as_str()));

    // A's job ends: its group goes, B's stays with its threads.
    let run = cluster.cli(&["cancel", &job_a]);
    assert!(run.ok(), "{}", run.stderr);
    wait_for("A's group removed after its job ended", &cluster, || !group_a.exists());
    let now = subtask_groups(pid);
    assert_eq!(now.get(&path_b), Some(&n_b), "{now:?}");
    assert!(!now.contains_key(&path_a), "{now:?}");
    let run = cluster.cli(&["cancel", &job_b]);
    assert!(run.ok(), "{}", run.stderr);
    wait_for("B's group removed after its job ended", &cluster, || !group_b.exists());

    // A job of B again, then the worker is stopped with SIGTERM: its groups go.
    let run = deploy_endless(&cluster, &b, &[]);
    assert!(run.ok(), "{}", run.stderr);
    cluster.await_state(run.stdout.trim(), &["running"], deadline);
    wait_for("B's group made again", &cluster, || group_b.exists());
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let exited = cluster.workers[0].wait().unwrap();
    assert_eq!(exited.code(), Some(143), "{}", cluster.logs());
    assert!(!worker_dir.exists(), "{} left after SIGTERM", worker_dir.display());
}

/// `dir` (under the hierarchy's mount) as /proc/PID/cgroup names it.
fn own_path(home: &Path, dir: &Path) -> String {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = cpu_groups::own_cpu_path(&cgroup).unwrap().trim_end_matches('/').to_owned();
    let below = dir.strip_prefix(home).unwrap();
    let mut path = own;
    for c in below.iter() {
        path.push('/');
        path.push_str(&c.to_string_lossy());
    }
    if path.is_empty() { "/".into() } else { path }
}
