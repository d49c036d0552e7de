//! What tenants use, and a crash loop slowed down, with real processes:
//! two tenants' jobs run and `/metrics` shows each tenant's CPU seconds
//! growing and its plugin memory; each tenant reads only its own figures
//! (`flinkw tenant show`, `GET /v1/tenant/metrics`); a tenant whose jobs
//! keep failing at once is refused further deploys for a while (HTTP 429
//! naming the crash-loop backoff), and a job out of restarts says so.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flinkw_tests::artifacts;
use serde_json::Value;

use crate::assert_fails_with;
use crate::cluster::Cluster;
use crate::tenants::{as_tenant, create_tenant, deploy_endless};

const ADMIN: &str = "test-token-1234";

fn addr(cluster: &Cluster) -> SocketAddr {
    cluster.rest.trim_start_matches("http://").parse().unwrap()
}

/// `name{tenant="T"} value` lines of a Prometheus text, by tenant.
fn by_tenant(text: &str, name: &str) -> BTreeMap<String, f64> {
    let prefix = format!("{name}{{tenant=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (tenant, value) = rest.split_once("\"} ").unwrap();
            (tenant.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn me(cluster: &Cluster, token: &str) -> Value {
    let run = as_tenant(cluster, token, &["tenant", "show", "--json"]);
    assert!(run.ok(), "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn each_tenant_has_cpu_seconds_and_memory_and_sees_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1, 4);
    let tokens = [create_tenant(&cluster, "acme", &[]), create_tenant(&cluster, "bolt", &[])];
    let mut jobs = Vec::new();
    for t in &tokens {
        let run = deploy_endless(&cluster, t, &[]);
        assert!(run.ok(), "{}", run.stderr);
        jobs.push(run.stdout.trim().to_owned());
    }
    let metrics = || {
        let (code, text) = crate::ui::http(addr(&cluster), "GET", "/metrics", Some(ADMIN));
        assert_eq!(code, 200, "{text}");
        text
    };
    // Both tenants' CPU seconds and memory, on the admin's endpoint.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let text = metrics();
        let cpu = by_tenant(&text, "flinkw_tenant_cpu_seconds_total");
        let memory = by_tenant(&text, "flinkw_tenant_memory_bytes");
        let both =
            |m: &BTreeMap<String, f64>| ["acme", "bolt"].iter().all(|t| m.get(*t) > Some(&0.0));
        if both(&cpu) && both(&memory) {
            break cpu;
        }
        assert!(Instant::now() < deadline, "no CPU and memory for both tenants:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // They grow while the jobs run.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cpu = by_tenant(&metrics(), "flinkw_tenant_cpu_seconds_total");
        if ["acme", "bolt"].iter().all(|t| cpu[*t] > first[*t]) {
            break;
        }
        assert!(Instant::now() < deadline, "CPU seconds did not grow: {first:?} -> {cpu:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let text = metrics();
    let plan = by_tenant(&text, "flinkw_tenant_plan_cpu_seconds_total");
    assert!(plan["acme"] > 0.0 && plan["bolt"] > 0.0, "{plan:?}");

    // Each tenant's own figures, through the tenant's API: its usage...
    for (t, name) in tokens.iter().zip(["acme", "bolt"]) {
        let me = me(&cluster, t);
        assert_eq!(me["tenant"], name, "{me}");
        let u = &me["usage"];
        assert!(u["cpu_seconds"].as_f64().unwrap() > 0.0, "{me}");
        assert!(u["plan_cpu_seconds"].as_f64().unwrap() > 0.0, "{me}");
        assert!(u["memory_bytes"].as_u64().unwrap() > 0, "{me}");
        assert!(u["running_subtasks"].as_u64().unwrap() >= 1, "{me}");
    }
    // ... and its Prometheus text, with nothing of the other's.
    for (i, (t, name)) in tokens.iter().zip(["acme", "bolt"]).enumerate() {
        let (code, text) = crate::ui::http(addr(&cluster), "GET", "/v1/tenant/metrics", Some(t));
        assert_eq!(code, 200, "{text}");
        let cpu = by_tenant(&text, "flinkw_tenant_cpu_seconds_total");
        assert_eq!(cpu.keys().collect::<Vec<_>>(), [name], "{text}");
        assert!(by_tenant(&text, "flinkw_tenant_memory_bytes")[name] > 0.0, "{text}");
        assert!(text.contains(&format!("job=\"{}\"", jobs[i])), "{text}");
        let other = ["bolt", "acme"][i];
        assert!(
            !text.contains(&jobs[1 - i]) && !text.contains(other),
            "{name} sees {other}:\n{text}"
        );
        let (code, _) = crate::ui::http(addr(&cluster), "GET", "/metrics", Some(t));
        assert_eq!(code, 403);
    }
    // The admin's list has both, with their CPU seconds.
    let run = cluster.cli(&["tenant", "list"]);
    assert!(run.ok(), "{}", run.stderr);
    assert!(run.stdout.contains("CPU-S") && run.stdout.contains("bolt"), "{}", run.stdout);
    for j in &jobs {
        assert!(cluster.cli(&["cancel", j]).ok());
    }
}

#[test]
fn a_tenants_crash_loop_is_slowed_down_and_restarts_run_out_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1, 4);
    let t = create_tenant(
        &cluster,
        "mallory",
        &[
            "--max-instance-memory-mib",
            "64",
            "--deploys-per-minute",
            "600",
            "--deploy-burst",
            "50",
            "--crash-backoff-max-s",
            "10",
        ],
    );
    let membomb = ["deploy", artifacts::BAD_GUEST, "--set", "mode=membomb", "--set", "count=1000"];
    // A job out of restarts names them; it is the first of the crash streak.
    let mut args = membomb.to_vec();
    args.extend(["--restarts", "2", "--restart-delay", "50"]);
    let run = as_tenant(&cluster, &t, &args);
    assert!(run.ok(), "{}", run.stderr);
    let deadline = Instant::now() + Duration::from_secs(60);
    let s = cluster.await_state(run.stdout.trim(), &["failed"], deadline);
    let error = s["state"]["error"].as_str().unwrap();
    assert!(error.contains("over its limit of 64 MiB"), "{error}");
    assert!(error.contains("no restarts left: --restarts 2 used up"), "{error}");
    assert_eq!(s["attempt"], 2, "{s}");
    // More memory bombs, each waited for until it failed: from the fourth
    // failure in a row on, the next deploy waits (1 s, then 2 s, …), so
    // one is refused, naming the backoff, however slow this machine is.
    let mut failed = 1;
    let refusal = loop {
        let run = as_tenant(&cluster, &t, &membomb);
        if !run.ok() {
            break run;
        }
        cluster.await_state(run.stdout.trim(), &["failed"], deadline);
        failed += 1;
        assert!(failed < 12, "no deploy was refused after {failed} failures in a row");
    };
    assert!(failed >= 4, "refused after only {failed} failures: {}", refusal.stderr);
    assert_fails_with(
        &refusal,
        &[
            "quota crash-backoff-max-s of tenant mallory",
            &format!("{failed} of the tenant's jobs in a row failed"),
            "over its limit of 64 MiB",
            "deploys resume in",
            "HTTP 429",
        ],
    );
    // Nothing was started for it, and the wait ends.
    let list = as_tenant(&cluster, &t, &["list", "--json"]);
    let listed: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), failed, "{listed}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = deploy_endless(&cluster, &t, &[]);
        if run.ok() {
            assert!(cluster.cli(&["cancel", run.stdout.trim()]).ok());
            break;
        }
        assert!(run.stderr.contains("crash-backoff-max-s"), "{}", run.stderr);
        assert!(Instant::now() < deadline, "still refused: {}", run.stderr);
        std::thread::sleep(Duration::from_millis(200));
    }
}
