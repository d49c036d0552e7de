//! Tenants sharing one cluster, with real processes: each sees and touches
//! only its own jobs and savepoints, a deleted tenant's token stops working,
//! one tenant's hostile plugins fail alone while another's job gives its
//! exact output, and quotas refuse with the quota named.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flinkw_tests::artifacts;

use crate::assert_fails_with;
use crate::cluster::{Cluster, events, sorted_file};

/// Runs the CLI against the cluster with `token` (not the admin's).
pub(crate) fn as_tenant(cluster: &Cluster, token: &str, args: &[&str]) -> flinkw_tests::Run {
    let mut all = args.to_vec();
    all.extend(["--coordinator", &cluster.rest, "--token", token]);
    if args.contains(&"--wait") {
        all.extend(["--wait-timeout", "120"]);
    }
    crate::flinkw(&all, &cluster.dir)
}

/// Creates a tenant with `quota` options; returns its token.
pub(crate) fn create_tenant(cluster: &Cluster, name: &str, quota: &[&str]) -> String {
    let mut args = vec!["tenant", "create", name];
    args.extend(quota);
    let run = cluster.cli(&args);
    assert!(run.ok(), "{}", run.stderr);
    let token = run.stdout.trim().to_owned();
    assert!(token.starts_with("fwt_"), "{}", run.stdout);
    token
}

/// Deploys a job that runs until cancelled (a slow datagen into
/// processing-time windows) as the holder of `token`; returns its id.
pub(crate) fn deploy_endless(cluster: &Cluster, token: &str, extra: &[&str]) -> flinkw_tests::Run {
    let mut args = vec![
        "deploy",
        artifacts::BAD_GUEST,
        "--set",
        "mode=processing-windows",
        "--set",
        "count=100000000",
        "--set",
        "rate=20",
    ];
    args.extend(extra);
    as_tenant(cluster, token, &args)
}

fn job_ids(list: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(list).unwrap();
    v.as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn tenants_see_and_touch_only_their_own_jobs_and_savepoints() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1, 6);
    let a = create_tenant(&cluster, "team-a", &[]);
    let b = create_tenant(&cluster, "team-b", &[]);
    // A job of A's, checkpointing into its own storage (a bare name is
    // taken inside it).
    let run = deploy_endless(&cluster, &a, &["--checkpoint-dir", "ck"]);
    assert!(run.ok(), "{}", run.stderr);
    let job_a = run.stdout.trim().to_owned();
    let run = deploy_endless(&cluster, &b, &[]);
    assert!(run.ok(), "{}", run.stderr);
    let job_b = run.stdout.trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    cluster.await_state(&job_a, &["running"], deadline);

    // Each tenant lists only its own jobs; the admin sees both.
    let run = as_tenant(&cluster, &b, &["list", "--json"]);
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(job_ids(&run.stdout), std::slice::from_ref(&job_b));
    let run = as_tenant(&cluster, &a, &["list", "--json"]);
    assert_eq!(job_ids(&run.stdout), std::slice::from_ref(&job_a));
    let run = cluster.cli(&["list", "--json"]);
    assert_eq!(job_ids(&run.stdout).len(), 2, "{}", run.stdout);

    // B can neither show, cancel, savepoint nor upgrade A's job.
    let nope = format!("tenant team-b has no job {job_a}");
    for verb in ["status", "cancel", "savepoint"] {
        let run = as_tenant(&cluster, &b, &[verb, &job_a]);
        assert_fails_with(&run, &[&nope, "HTTP 404"]);
    }
    let run = as_tenant(&cluster, &b, &["upgrade", &job_a, artifacts::UPGRADE_V2]);
    assert_fails_with(&run, &[&nope, "HTTP 404"]);
    assert_eq!(cluster.await_state(&job_a, &["running"], deadline)["state"]["state"], "running");

    // A stops its job with a savepoint, in A's storage.
    let run = as_tenant(&cluster, &a, &["savepoint", &job_a, "--wait-timeout", "60"]);
    assert!(run.ok(), "{}\n{}", run.stderr, cluster.logs());
    let savepoint = run.stdout.trim().to_owned();
    let storage_a = dir.path().join("coordinator-data/storage/team-a");
    assert!(Path::new(&savepoint).starts_with(&storage_a), "{savepoint}");
    assert!(Path::new(&savepoint).exists());

    // B cannot start from it, nor checkpoint into A's folder.
    let run = deploy_endless(&cluster, &b, &["--from-savepoint", &savepoint]);
    assert_fails_with(&run, &["--from-savepoint", "outside tenant team-b's storage", "HTTP 400"]);
    let a_ck = storage_a.join("ck");
    let run = deploy_endless(&cluster, &b, &["--checkpoint-dir", a_ck.to_str().unwrap()]);
    assert_fails_with(&run, &["--checkpoint-dir", "outside tenant team-b's storage"]);
    // A can.
    let run =
        deploy_endless(&cluster, &a, &["--from-savepoint", &savepoint, "--checkpoint-dir", "ck-2"]);
    assert!(run.ok(), "{}", run.stderr);
    let resumed = run.stdout.trim().to_owned();
    cluster.await_state(&resumed, &["running"], deadline);

    // Admin pages are the admin's.
    for args in [&["tenant", "list"][..], &["audit"][..]] {
        let run = as_tenant(&cluster, &b, args);
        assert_fails_with(&run, &["is for the admin", "HTTP 403"]);
    }
    // The audit log has who deployed what, with the plugin's hash.
    let run = cluster.cli(&["audit", "--tenant", "team-a"]);
    assert!(run.ok(), "{}", run.stderr);
    let events: Vec<serde_json::Value> =
        run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let deploy = events.iter().find(|e| e["action"] == "deploy" && e["status"] == 201).unwrap();
    assert_eq!(deploy["job"], job_a.as_str());
    assert_eq!(deploy["plugin"].as_str().unwrap().len(), 64, "{deploy}");
    assert!(events.iter().any(|e| e["action"] == "savepoint" && e["job"] == job_a.as_str()));
    let run = cluster.cli(&["audit", "--tenant", "team-b"]);
    assert!(run.stdout.contains("outside tenant team-b"), "refusals are audited: {}", run.stdout);

    // `flinkw login` keeps a token for later commands.
    let config = dir.path().join("config-a");
    let login = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_flinkw"))
            .args(args)
            .args(["--coordinator", &cluster.rest])
            .env("FLINKW_CONFIG_DIR", &config)
            .env_remove("FLINKW_TOKEN")
            .output()
            .unwrap();
        flinkw_tests::Run::from(out)
    };
    let run = login(&["login", "--token", &a]);
    assert!(run.ok() && run.stderr.contains("logged in as tenant team-a"), "{}", run.stderr);
    let run = login(&["list", "--json"]);
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(job_ids(&run.stdout), [job_a.clone(), resumed.clone()]);

    // A deleted tenant's token stops working at once; its jobs stop.
    let run = cluster.cli(&["tenant", "delete", "team-b"]);
    assert!(run.ok(), "{}", run.stderr);
    let run = as_tenant(&cluster, &b, &["list"]);
    assert_fails_with(&run, &["missing or wrong API token", "HTTP 401"]);
    let ended = cluster.await_state(&job_b, &["cancelled"], deadline);
    assert_eq!(ended["state"]["state"], "cancelled");
    let run = as_tenant(&cluster, &a, &["cancel", &resumed]);
    assert!(run.ok(), "{}", run.stderr);
}

#[test]
fn a_tenants_hostile_plugins_fail_alone_and_another_tenants_job_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let input = events(dir.path(), 20_000);
    let config = |out: &Path| {
        vec![
            "--set".to_owned(),
            format!("input={input}"),
            "--set".to_owned(),
            format!("output={}", out.display()),
            "--set".to_owned(),
            "parallelism=2".to_owned(),
        ]
    };
    // The embedded run is the reference.
    let local = dir.path().join("local.csv");
    let mut args = vec!["run".to_owned(), artifacts::WINDOWED_COUNT.to_owned()];
    args.extend(config(&local));
    let run = crate::flinkw(&args.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert!(run.ok(), "{}", run.stderr);
    let expected = sorted_file(&local);

    let cluster = Cluster::start(dir.path(), 1, 8);
    let a = create_tenant(&cluster, "mallory", &["--max-instance-memory-mib", "64"]);
    let b = create_tenant(&cluster, "bob", &[]);
    // A compile bomb: one function with ~3 MB of code. Refused before
    // the compiler sees it.
    let body = "i32.const 1 drop ".repeat(1_000_000);
    let bomb = wat::parse_str(format!("(component (core module (func {body})))")).unwrap();
    let bomb_path = dir.path().join("bomb.wasm");
    std::fs::write(&bomb_path, bomb).unwrap();
    let run = as_tenant(&cluster, &a, &["deploy", bomb_path.to_str().unwrap()]);
    assert_fails_with(&run, &["exceeds the compile limit max-function-bytes", "function 0 has"]);

    // Mallory's hostile jobs run (and restart) while Bob's job runs.
    let hostile = [("loop", vec!["--call-timeout", "2"]), ("membomb", vec![]), ("recurse", vec![])];
    let mut jobs = Vec::new();
    for (mode, extra) in &hostile {
        let set = format!("mode={mode}");
        let mut args = vec!["deploy", artifacts::BAD_GUEST, "--set", &set, "--set", "count=1000"];
        args.extend(["--restarts", "2", "--restart-delay", "100"]);
        args.extend(extra);
        let run = as_tenant(&cluster, &a, &args);
        assert!(run.ok(), "{mode}: {}", run.stderr);
        jobs.push(run.stdout.trim().to_owned());
    }
    let out = dir.path().join("bob.csv");
    let mut args =
        vec!["deploy".to_owned(), artifacts::WINDOWED_COUNT.to_owned(), "--wait".to_owned()];
    args.extend(config(&out));
    let run = as_tenant(&cluster, &b, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(run.ok(), "{}\n{}", run.stderr, cluster.logs());
    assert_eq!(sorted_file(&out), expected, "Bob's output");

    // Mallory's jobs failed, each naming the limit it hit.
    let deadline = Instant::now() + Duration::from_secs(120);
    let wanted =
        ["ran past its deadline of 2s", "over its limit of 64 MiB", "overflowed its stack"];
    for (job, want) in jobs.iter().zip(wanted) {
        let s = cluster.await_state(job, &["failed", "finished"], deadline);
        assert_eq!(s["state"]["state"], "failed", "{s}");
        let error = s["state"]["error"].as_str().unwrap();
        assert!(error.contains(want), "{job}: {error}");
    }
    // Bob cannot see any of them.
    let run = as_tenant(&cluster, &b, &["list", "--json"]);
    assert_eq!(job_ids(&run.stdout).len(), 1, "{}", run.stdout);
}

#[test]
fn quotas_refuse_with_the_quota_named_and_start_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1, 8);
    let t = create_tenant(
        &cluster,
        "small",
        &["--max-slots", "2", "--max-jobs", "1", "--max-instance-memory-mib", "64"],
    );
    // Slots: the job needs 3.
    let run = deploy_endless(&cluster, &t, &["--set", "parallelism=3"]);
    assert_fails_with(&run, &["quota max-slots of tenant small", "needs 3 slot(s)", "HTTP 403"]);
    // Memory per instance.
    let run = deploy_endless(&cluster, &t, &["--memory-limit", "100"]);
    assert_fails_with(&run, &["quota max-instance-memory-mib", "at most 64 MiB", "HTTP 403"]);
    // Jobs: one runs, the second is refused.
    let run = deploy_endless(&cluster, &t, &["--set", "parallelism=2"]);
    assert!(run.ok(), "{}", run.stderr);
    let first = run.stdout.trim().to_owned();
    let run = deploy_endless(&cluster, &t, &[]);
    assert_fails_with(&run, &["quota max-jobs", "1 live job(s) of at most 1"]);
    // Memory in total: 2 tasks × 2 subtasks × 64 MiB are taken.
    let run = cluster.cli(&[
        "tenant",
        "set",
        "small",
        "--max-jobs",
        "5",
        "--max-slots",
        "8",
        "--max-total-memory-mib",
        "300",
    ]);
    assert!(run.ok(), "{}", run.stderr);
    let run = deploy_endless(&cluster, &t, &[]);
    assert_fails_with(
        &run,
        &["quota max-total-memory-mib", "with 256 MiB taken", "over the quota of 300 MiB"],
    );
    // Deploy rate: one per minute, bursts of one.
    let run = cluster.cli(&[
        "tenant",
        "set",
        "small",
        "--max-total-memory-mib",
        "4096",
        "--deploys-per-minute",
        "1",
        "--deploy-burst",
        "1",
    ]);
    assert!(run.ok(), "{}", run.stderr);
    let run = deploy_endless(&cluster, &t, &[]);
    assert!(run.ok(), "{}", run.stderr);
    let second = run.stdout.trim().to_owned();
    let run = deploy_endless(&cluster, &t, &[]);
    assert_fails_with(&run, &["quota deploys-per-minute", "the next in", "HTTP 429"]);

    // Nothing refused was started: only the two admitted jobs exist, and
    // they hold the slots in use.
    let run = as_tenant(&cluster, &t, &["list", "--json"]);
    assert_eq!(job_ids(&run.stdout), [first.clone(), second.clone()]);
    let run = cluster.cli(&["list", "--json"]);
    assert_eq!(job_ids(&run.stdout).len(), 2, "{}", run.stdout);
    let deadline = Instant::now() + Duration::from_secs(60);
    cluster.await_state(&second, &["running"], deadline);
    let workers = cluster.cli(&["workers", "--json"]);
    let w: serde_json::Value = serde_json::from_str(&workers.stdout).unwrap();
    assert_eq!(w[0]["used"], 2 + 1, "{w}");
    // The tenant sees its own usage.
    let run = as_tenant(&cluster, &t, &["tenant", "show", "--json"]);
    let me: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(me["usage"]["jobs"], 2, "{me}");
    assert_eq!(me["usage"]["slots"], 3, "{me}");
}
