//! OpenTelemetry log export, latency markers and per-tenant CPU and memory,
//! with real processes: an OTLP/HTTP receiver in the test (a plain TCP
//! listener that parses the requests), a coordinator and a worker running
//! jobs, `/metrics` scraped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flinkw_tests::artifacts;
use serde_json::Value;

use crate::flinkw;
use crate::ui::{Cluster, scrape, series};

const WAIT: Duration = Duration::from_secs(60);

/// An OTLP/HTTP receiver: answers every request `200 {}` and hands on
/// `(path, content type, parsed JSON body)`.
struct Receiver {
    addr: SocketAddr,
    requests: mpsc::Receiver<(String, String, Value)>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let tx = tx.clone();
                std::thread::spawn(move || serve(stream, &tx));
            }
        });
        Receiver { addr, requests }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Log records received until `found` holds for one (or the wait ends);
    /// each with its resource attributes.
    fn await_record(&self, found: impl Fn(&Value) -> bool) -> (Value, Value, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let Ok((path, kind, body)) = self.requests.recv_timeout(Duration::from_millis(200))
            else {
                continue;
            };
            assert_eq!(path, "/v1/logs");
            assert_eq!(kind, "application/json");
            for rl in body["resourceLogs"].as_array().unwrap() {
                for sl in rl["scopeLogs"].as_array().unwrap() {
                    for r in sl["logRecords"].as_array().unwrap() {
                        seen.push(r["body"]["stringValue"].as_str().unwrap_or("?").to_owned());
                        if found(r) {
                            return (r.clone(), rl["resource"].clone(), seen);
                        }
                    }
                }
            }
        }
        panic!("no such log record within {WAIT:?}; got: {seen:?}");
    }
}

/// One keep-alive HTTP/1.1 connection: requests with a Content-Length body.
fn serve(stream: std::net::TcpStream, tx: &mpsc::Sender<(String, String, Value)>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let (mut length, mut kind) = (0, String::new());
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "content-type" => kind = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let json: Value = serde_json::from_slice(&body).expect("the body is JSON");
        let _ = tx.send((path, kind, json));
        let answer =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// An attribute of an OTLP record or resource, as a string.
fn attr(item: &Value, key: &str) -> Option<String> {
    let a = item["attributes"].as_array()?.iter().find(|a| a["key"] == key)?;
    let v = &a["value"];
    v["stringValue"].as_str().or(v["intValue"].as_str()).map(str::to_owned)
}

fn create_tenant(cluster: &Cluster, name: &str) -> String {
    let run = cluster.cli(&["tenant", "create", name]);
    assert!(run.ok(), "{}", run.stderr);
    run.stdout.trim().to_owned()
}

#[test]
fn otlp_export_sends_guest_log_lines_with_job_subtask_tenant_and_worker() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start_with(dir.path(), 2, &["--otlp-endpoint", &receiver.endpoint()]);
    let token = create_tenant(&cluster, "acme");
    let rest = format!("http://{}", cluster.rest);
    let deploy = flinkw(
        &[
            "deploy",
            artifacts::BAD_GUEST,
            "--set",
            "mode=ok",
            "--set",
            "at=5",
            "--coordinator",
            &rest,
            "--token",
            &token,
        ],
        dir.path(),
    );
    assert!(deploy.ok(), "{}\n{}", deploy.stderr, cluster.logs());
    let job = deploy.stdout.trim().to_owned();

    // The guest's `log` call, as an OTLP log record from the worker.
    let (record, resource, _) = receiver.await_record(|r| {
        r["body"]["stringValue"].as_str() == Some("misbehaving at record 5 (ok)")
    });
    assert_eq!(record["severityText"], "WARN");
    assert_eq!(record["severityNumber"], 13);
    let nanos: u128 = record["timeUnixNano"].as_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    assert!(nanos > 0 && nanos <= now.as_nanos(), "{record}");
    for (key, want) in [
        ("job", job.as_str()),
        ("job_name", "bad-guest"),
        ("task", "0"),
        ("subtask", "0"),
        ("tenant", "acme"),
        ("worker", "w1"),
        ("plugin", "bad-guest#0"),
    ] {
        assert_eq!(attr(&record, key).as_deref(), Some(want), "{key} in {record}");
    }
    assert_eq!(attr(&resource, "service.name").as_deref(), Some("flinkw"));
    assert_eq!(attr(&resource, "service.instance.id").as_deref(), Some("w1"));
    assert_eq!(attr(&resource, "flinkw.role").as_deref(), Some("worker"));
}

#[test]
fn flinkw_run_exports_its_log_lines_and_an_unreachable_collector_is_only_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let args = ["run", artifacts::BAD_GUEST, "--set", "mode=ok", "--set", "at=2"];
    let mut with = args.to_vec();
    let endpoint = receiver.endpoint();
    with.extend(["--otlp-endpoint", &endpoint]);
    let run = flinkw(&with, dir.path());
    assert!(run.ok(), "{}", run.stderr);
    // Sent before the process exits, with the embedded job's id.
    let (record, _, _) = receiver.await_record(|r| {
        r["body"]["stringValue"].as_str() == Some("misbehaving at record 2 (ok)")
    });
    assert_eq!(attr(&record, "job").as_deref(), Some("local"));
    assert_eq!(attr(&record, "job_name").as_deref(), Some("bad-guest"));
    assert_eq!(attr(&record, "subtask").as_deref(), Some("0"));

    // Nobody listens on the port: the job's output is whole, with a warning.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}");
    let mut without = args.to_vec();
    without.extend(["--otlp-endpoint", &url]);
    let run = flinkw(&without, dir.path());
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 10, "{}", run.stdout);
    let warning = format!("warning: OTLP export to {url}/v1/logs failed");
    assert!(run.stderr.contains(&warning), "{}", run.stderr);

    // A malformed endpoint is refused before anything runs.
    let bad =
        flinkw(&["run", artifacts::BAD_GUEST, "--otlp-endpoint", "localhost:4318"], dir.path());
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("bad --otlp-endpoint \"localhost:4318\""), "{}", bad.stderr);
    assert!(bad.stdout.is_empty());
}

type Scrape = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn tenant_value(m: &Scrape, name: &str, tenant: &str) -> f64 {
    series(m, name)
        .into_iter()
        .find(|(l, _)| l["tenant"] == tenant)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} for tenant {tenant}"))
}

#[test]
fn latency_markers_reach_the_sinks_and_tenants_have_cpu_and_memory_series() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start_with(dir.path(), 4, &[]);
    let token = create_tenant(&cluster, "acme");
    let rest = format!("http://{}", cluster.rest);
    // W3 (10 s windows sliding by 2 s) at a fixed rate, a shuffle between
    // the source and the windows; markers every 100 ms.
    let deploy = flinkw(
        &[
            "deploy",
            artifacts::NEXMARK_WINDOWS,
            "--set",
            "workload=w3",
            "--set",
            "count=50000000",
            "--set",
            "rate=20000",
            "--set",
            "parallelism=2",
            "--set",
            "metrics.latency.interval-ms=100",
            "--coordinator",
            &rest,
            "--token",
            &token,
        ],
        dir.path(),
    );
    assert!(deploy.ok(), "{}\n{}", deploy.stderr, cluster.logs());
    let job = deploy.stdout.trim().to_owned();
    // An admin job without markers next to it: its own tenant label.
    let admin = cluster.cli(&[
        "deploy",
        artifacts::BAD_GUEST,
        "--set",
        "mode=tick",
        "--set",
        "count=100000000",
        "--set",
        "rate=50",
    ]);
    assert!(admin.ok(), "{}", admin.stderr);
    cluster.await_running(&job);
    cluster.await_running(admin.stdout.trim());

    let status: Value =
        serde_json::from_str(&cluster.cli(&["status", &job, "--json"]).stdout).unwrap();
    let vertices = status["graph"]["vertices"].as_array().unwrap().clone();
    let sink = vertices
        .iter()
        .find(|v| {
            v["operators"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["kind"].as_str().unwrap().starts_with("sink"))
        })
        .unwrap()["index"]
        .as_u64()
        .unwrap()
        .to_string();
    assert_ne!(sink, "0", "the sink is behind a shuffle: {status}");

    // Markers from source vertex 0 at each sink subtask.
    let deadline = Instant::now() + WAIT;
    let first = loop {
        let m = scrape(&cluster);
        let counts = series(&m, "flinkw_latency_seconds_count");
        let admin_memory = series(&m, "flinkw_tenant_memory_bytes")
            .iter()
            .any(|(l, v)| l["tenant"] == "_admin" && *v > 0.0);
        if counts.iter().filter(|(_, v)| *v >= 5.0).count() == 2 && admin_memory {
            break m;
        }
        assert!(Instant::now() < deadline, "no latency markers at both sinks: {counts:?}");
        std::thread::sleep(Duration::from_millis(300));
    };
    for (l, _) in series(&first, "flinkw_latency_seconds_count") {
        assert_eq!((l["job"].as_str(), l["task"].as_str()), (job.as_str(), sink.as_str()));
        assert_eq!(l["source_task"], "0");
        let q = |quantile: &str| {
            let mut labels = l.clone();
            labels.insert("quantile".into(), quantile.into());
            first[&("flinkw_latency_seconds".to_owned(), labels)]
        };
        let (p50, p95, p99) = (q("0.5"), q("0.95"), q("0.99"));
        assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "{l:?}: {p50} {p95} {p99}");
        // A marker that waited for the windows to fire (every 2 s) would be
        // seconds old; they overtake the windows.
        assert!(p50 < 1.0, "markers waited in the windows: p50 {p50} s");
    }
    // The job's JSON: the sink vertex's latency from vertex 0.
    let status: Value =
        serde_json::from_str(&cluster.cli(&["status", &job, "--json"]).stdout).unwrap();
    let l = &status["graph"]["vertices"][sink.parse::<usize>().unwrap()]["latency"][0];
    assert_eq!(l["source_task"], 0, "{status}");
    assert!(l["markers"].as_u64().unwrap() >= 10 && l["p99_ms"].as_f64().unwrap() > 0.0, "{l}");

    // Per tenant: CPU and guest time that grow, memory of the instances.
    for tenant in ["acme", "_admin"] {
        assert!(tenant_value(&first, "flinkw_tenant_memory_bytes", tenant) > 0.0, "{tenant}");
        assert!(tenant_value(&first, "flinkw_tenant_running_subtasks", tenant) >= 1.0);
    }
    let acme_memory: f64 = series(&first, "flinkw_subtask_memory_bytes")
        .iter()
        .filter(|(l, _)| l["job"] == job)
        .map(|(_, v)| v)
        .sum();
    assert_eq!(tenant_value(&first, "flinkw_tenant_memory_bytes", "acme"), acme_memory);
    std::thread::sleep(Duration::from_millis(1500));
    let second = scrape(&cluster);
    for name in [
        "flinkw_tenant_cpu_seconds_total",
        "flinkw_tenant_busy_seconds_total",
        "flinkw_tenant_guest_seconds_total",
    ] {
        let (a, b) = (tenant_value(&first, name, "acme"), tenant_value(&second, name, "acme"));
        assert!(b > a, "{name}: {a} -> {b}");
    }
    // The tenant sees its job; the per-tenant series are the admin's.
    let (code, _) = cluster.get("/metrics", Some(&token));
    assert_eq!(code, 403);
    for j in [job.as_str(), admin.stdout.trim()] {
        assert!(cluster.cli(&["cancel", j]).ok());
    }
}

#[test]
fn long_commands_draw_a_spinner_on_a_terminal_and_plain_lines_in_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start_with(dir.path(), 2, &[]);
    // In a pipe (as here): the state lines, nothing drawn.
    let plain = cluster.cli(&["deploy", artifacts::BAD_GUEST, "--set", "mode=ok", "--wait"]);
    assert!(plain.ok(), "{}", plain.stderr);
    assert!(plain.stderr.contains(": finished"), "{}", plain.stderr);
    assert!(!plain.stderr.contains('\x1b'), "escape codes in a pipe: {:?}", plain.stderr);
    // On a terminal (`script` runs it on a pseudo-terminal): a spinner too.
    let command = format!(
        "{} deploy {} --set mode=ok --wait --coordinator http://{} --token {}",
        crate::cluster::bin(),
        artifacts::BAD_GUEST,
        cluster.rest,
        crate::ui::TOKEN
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("FLINKW_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // A frame: what it waits for and the seconds so far.
    let frame = text.split("\r\x1b[2K⠋ ").nth(1).and_then(|f| f.split('\r').next());
    let frame = frame.unwrap_or_else(|| panic!("no spinner: {text:?}"));
    assert!(frame.contains("job-") && frame.ends_with(" s)"), "{frame:?}");
    assert!(text.contains(": finished"), "{text:?}");
}
