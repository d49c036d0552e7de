//! The web UI and the metrics endpoint, with real processes: a coordinator
//! and a worker running a job, the UI opened in headless Chromium (driven
//! over the DevTools protocol on a pipe), `/metrics` scraped and parsed.
//!
//! Chromium comes from `scripts/setup.d/50-chromium.sh` (`FLINKW_CHROMIUM`,
//! else `chromium` on the PATH). Screenshots go to the target dir's
//! `tmp/ui-*.png`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flinkw_tests::artifacts;
use serde_json::{Value, json};

use crate::cluster::{bin, certs, free_tcp, free_udp};
use crate::flinkw;

pub(crate) const TOKEN: &str = "ui-test-token-5678";

/// A coordinator and one worker; killed on drop.
pub(crate) struct Cluster {
    pub dir: PathBuf,
    pub rest: SocketAddr,
    children: Vec<Child>,
}

impl Cluster {
    fn start(dir: &Path, slots: u32) -> Cluster {
        Self::start_with(dir, slots, &[])
    }

    /// A coordinator and worker `w1` with `slots`; both get `extra` arguments.
    pub fn start_with(dir: &Path, slots: u32, extra: &[&str]) -> Cluster {
        certs(dir, "ui", &["coordinator", "w1"]);
        let (quic, rest) = (free_udp(), free_tcp());
        let log = |name: &str| std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let coordinator = Command::new(bin())
            .args(["coordinator", "--listen", &quic.to_string(), "--rest", &rest.to_string()])
            .args(["--certs", dir.join("coordinator").to_str().unwrap()])
            .args(["--data-dir", dir.join("coordinator-data").to_str().unwrap()])
            .args(["--token", TOKEN])
            .args(extra)
            .stderr(log("coordinator"))
            .spawn()
            .unwrap();
        let worker = Command::new(bin())
            .args(["worker", "--join", &quic.to_string(), "--name", "w1"])
            .args(["--slots", &slots.to_string()])
            .args(["--certs", dir.join("w1").to_str().unwrap()])
            .args(["--cache-dir", dir.join("w1-cache").to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log("w1"))
            .spawn()
            .unwrap();
        let cluster = Cluster { dir: dir.to_owned(), rest, children: vec![coordinator, worker] };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = cluster.cli(&["workers", "--json"]);
            if run.ok() && serde_json::from_str::<Value>(&run.stdout).unwrap()[0]["name"] == "w1" {
                break;
            }
            assert!(Instant::now() < deadline, "the worker did not join:\n{}", cluster.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    pub fn cli(&self, args: &[&str]) -> flinkw_tests::Run {
        let mut all = args.to_vec();
        let rest = format!("http://{}", self.rest);
        all.extend(["--coordinator", &rest, "--token", TOKEN]);
        flinkw(&all, &self.dir)
    }

    pub fn logs(&self) -> String {
        ["coordinator", "w1"]
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.join(format!("{n}.log")));
                format!("--- {n}\n{}", text.unwrap_or_default())
            })
            .collect()
    }

    /// Deploys W2 over many bids held to a low rate (so it runs for the
    /// whole test) with checkpoints every 300 ms; returns its id.
    fn deploy_long_job(&self) -> String {
        let out = self.dir.join("out");
        let checkpoints = self.dir.join("checkpoints");
        let run = self.cli(&[
            "deploy",
            artifacts::NEXMARK_WINDOWS,
            "--set",
            "count=50000000",
            "--set",
            "rate=20000",
            "--set",
            "parallelism=2",
            "--set",
            "checkpoint.interval-ms=300",
            "--set",
            "metrics.latency.interval-ms=200",
            "--set",
            &format!("output={}", out.display()),
            "--checkpoint-dir",
            checkpoints.to_str().unwrap(),
        ]);
        assert!(run.ok(), "{}\n{}", run.stderr, self.logs());
        let job = run.stdout.trim().to_owned();
        self.await_running(&job);
        job
    }

    pub fn await_running(&self, job: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = self.cli(&["status", job, "--json"]);
            if run.ok() {
                let s: Value = serde_json::from_str(&run.stdout).unwrap();
                match s["state"]["state"].as_str() {
                    Some("running") => return,
                    Some("failed") => panic!("job {job} failed: {s}\n{}", self.logs()),
                    _ => {}
                }
            }
            assert!(Instant::now() < deadline, "job {job} is not running:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` on the REST API; `(status, body)`.
    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        http(self.rest, "GET", path, token)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP/1.1 request; `(status, body)`.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: 0\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        unchunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Headless Chromium over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
/// commands on fd 3, answers and events on fd 4, NUL-separated JSON).
struct Browser {
    child: Child,
    to: std::fs::File,
    from: mpsc::Receiver<Value>,
    next: u64,
    session: String,
    _profile: tempfile::TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 succeeded, so both are open descriptors that we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// How long any one browser step may take.
const STEP: Duration = Duration::from_secs(30);

impl Browser {
    fn start() -> Browser {
        let chromium = std::env::var("FLINKW_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let (their_in, our_out) = pipe();
        let (our_in, their_out) = pipe();
        let (fd_in, fd_out) = (their_in.as_raw_fd(), their_out.as_raw_fd());
        let mut command = Command::new(&chromium);
        command
            .args(["--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu"])
            .args(["--no-first-run", "--no-default-browser-check", "--disable-extensions"])
            .args(["--disable-dev-shm-usage", "--window-size=1400,1000"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Out of the way first (the pipes may be fds 3 and 4 already),
                // then onto 3 and 4, which dup2 leaves open across exec.
                let high = [fd_in, fd_out].map(|fd| libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10));
                for (fd, target) in high.into_iter().zip([3, 4]) {
                    if fd < 0 || libc::dup2(fd, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start {chromium} (scripts/setup.d/50-chromium.sh installs it): {e}")
        });
        drop((their_in, their_out));
        let (tx, from) = mpsc::channel();
        let mut reader = std::fs::File::from(our_in);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice(&message[..end])
                        && tx.send(v).is_err()
                    {
                        return;
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to: std::fs::File::from(our_out),
            from,
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target = target["targetId"].as_str().unwrap().to_owned();
        let attached =
            b.call("Target.attachToTarget", json!({ "targetId": target, "flatten": true }));
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    /// Sends a command (to the page once attached); returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {method} within {STEP:?}"));
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method} failed: {answer}");
                return answer["result"].clone();
            }
        }
    }

    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    /// Evaluates a JavaScript expression in the page (awaiting promises).
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(r["exceptionDetails"].is_null(), "{expression} threw: {r}");
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until it gives something other than null,
    /// false or an empty string (or an exception: the page may still be
    /// loading), within `within`; panics with `what`.
    fn wait_for(&mut self, what: &str, expression: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let r = self.call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            );
            let v = if r["exceptionDetails"].is_null() {
                r["result"]["value"].clone()
            } else {
                Value::Null
            };
            if !(v.is_null() || v == json!(false) || v == json!("")) {
                return v;
            }
            if Instant::now() > deadline {
                let page = self.eval("document.querySelector('main')?.innerText");
                panic!(
                    "{what}: not seen within {within:?}; the page shows:\n{}",
                    page.as_str().unwrap_or("?")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves a PNG of the page as `CARGO_TARGET_TMPDIR/name`.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64(shot["data"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (*d as u32) << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The numbers a vertex row shows (records in, out) as the page has them.
const VERTEX_COUNTS: &str = "JSON.stringify([...document.querySelectorAll('#vertex-table tbody tr')].map(r => \
     [Number(r.querySelector('[data-metric=records-in]').dataset.value), \
      Number(r.querySelector('[data-metric=records-out]').dataset.value)]))";

fn vertex_counts(b: &mut Browser) -> Vec<(u64, u64)> {
    let v = b.eval(VERTEX_COUNTS);
    serde_json::from_str(v.as_str().unwrap()).unwrap()
}

#[test]
fn the_ui_shows_a_running_job_with_its_graph_live_counters_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 2);
    let job = cluster.deploy_long_job();
    let status: Value =
        serde_json::from_str(&cluster.cli(&["status", &job, "--json"]).stdout).unwrap();
    let vertices = status["graph"]["vertices"].as_array().unwrap().clone();
    assert!(vertices.len() >= 2, "{status}");

    let mut b = Browser::start();
    let base = format!("http://{}/ui/", cluster.rest);
    // The token comes once in the fragment, then lives in sessionStorage.
    b.navigate(&format!("{base}#token={TOKEN}"));
    let row = format!("document.querySelector('#job-table tr[data-job=\"{job}\"]')?.innerText");
    let text = b.wait_for("the job in the job list", &row, STEP);
    let text = text.as_str().unwrap();
    assert!(text.contains("nexmark") && text.contains("running") && text.contains('2'), "{text}");
    assert_eq!(b.eval("location.hash"), json!("#/"), "the token stays out of the address bar");

    // The job page: the graph with one box per vertex, chained operators inside.
    b.eval(&format!("location.hash = '#/job/{job}'"));
    let boxes = b.wait_for(
        "the graph",
        &format!(
            "document.querySelectorAll('#graph g.vertex').length === {} && \
             document.querySelectorAll('#graph text.op').length",
            vertices.len()
        ),
        STEP,
    );
    let operators: usize = vertices.iter().map(|v| v["operators"].as_array().unwrap().len()).sum();
    assert_eq!(boxes, json!(operators), "every operator drawn in its vertex");
    let names = b
        .eval("[...document.querySelectorAll('#graph text.op')].map(t => t.textContent).join('|')");
    for v in &vertices {
        for o in v["operators"].as_array().unwrap() {
            let name: String = o["name"].as_str().unwrap().chars().take(32).collect();
            assert!(names.as_str().unwrap().contains(&name), "{name} not in {names}");
        }
    }
    let edges = b.eval("document.querySelectorAll('#graph path.edge').length");
    assert_eq!(edges, json!(status["graph"]["edges"].as_array().unwrap().len()));

    // Counters that increase while we watch (the page polls every second).
    b.wait_for(
        "the vertex table",
        "document.querySelectorAll('#vertex-table tbody tr').length",
        STEP,
    );
    let first = vertex_counts(&mut b);
    let deadline = Instant::now() + STEP;
    let later = loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = vertex_counts(&mut b);
        if now.iter().zip(&first).all(|(n, f)| n.1 > f.1) || Instant::now() > deadline {
            break now;
        }
    };
    for (i, (f, l)) in first.iter().zip(&later).enumerate() {
        assert!(l.1 > f.1, "vertex {i}: records out did not grow ({f:?} -> {l:?})");
    }
    let rate = b.eval(
        "document.querySelector('[data-vertex=\"0\"] [data-metric=records-out-rate]').textContent",
    );
    assert!(rate.as_str().is_some_and(|r| r != "–" && r != "0.0"), "a source rate: {rate}");
    // Event time: the window vertex shows a watermark.
    let watermarks = b.eval(
        "[...document.querySelectorAll('[data-metric=watermark]')].map(c => c.textContent).join('|')",
    );
    assert!(watermarks.as_str().unwrap().contains("lag"), "no watermark shown: {watermarks}");

    // A completed checkpoint in the history.
    let completed = b.wait_for(
        "a completed checkpoint",
        "document.querySelector('#checkpoint-table tr[data-status=completed]')?.innerText",
        STEP,
    );
    assert!(completed.as_str().unwrap().contains("completed"), "{completed}");
    // Latency markers from the source reached the sink: a row with quantiles.
    let latency = b.wait_for(
        "a latency row",
        "document.querySelector('#latency-table tbody tr [data-metric=markers]')?.textContent !== '0' \
         && document.querySelector('#latency-table tbody tr')?.innerText",
        STEP,
    );
    let latency = latency.as_str().unwrap_or_default();
    assert!(latency.contains(" ms"), "{latency}");
    b.wait_for(
        "the checkpoint summary",
        "document.querySelector('#checkpoint-summary').textContent.includes('newest completed')",
        STEP,
    );
    let shot = b.screenshot("ui-job.png");
    eprintln!("screenshot: {}", shot.display());

    let cancel = cluster.cli(&["cancel", &job]);
    assert!(cancel.ok(), "{}", cancel.stderr);
}

#[test]
fn ui_calls_without_the_token_are_refused_and_a_bad_plugin_shows_the_clis_error() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 2);
    // The page itself is public; the API is not.
    let (status, page) = cluster.get("/ui/", None);
    assert_eq!(status, 200);
    assert!(page.contains("<script src=\"/ui/app.js\">"));
    for path in ["/v1/jobs", "/v1/jobs/job-1", "/v1/jobs/job-1/logs", "/metrics"] {
        let (status, body) = cluster.get(path, None);
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("missing or wrong API token"), "{path}: {body}");
        let (status, _) = cluster.get(path, Some("wrong"));
        assert_eq!(status, 401, "{path} with a wrong token");
    }

    let mut b = Browser::start();
    let base = format!("http://{}/ui/", cluster.rest);
    // No token: the token form, no data.
    b.navigate(&base);
    b.wait_for("the token form", "!document.querySelector('#login').hidden", STEP);
    // A wrong token: the API's refusal, shown.
    b.eval("document.querySelector('#token').value = 'wrong'; document.querySelector('#login-form button').click()");
    let refused = b.wait_for(
        "the refusal",
        "!document.querySelector('#login').hidden && document.querySelector('#login-error').textContent",
        STEP,
    );
    assert!(refused.as_str().unwrap().contains("missing or wrong API token"), "{refused}");

    // The right token, then a deploy of a file that is not a plugin.
    b.eval(&format!(
        "document.querySelector('#token').value = '{TOKEN}'; document.querySelector('#login-form button').click()"
    ));
    b.wait_for("the job list", "!document.querySelector('#jobs').hidden", STEP);
    let bad = dir.path().join("not-a-plugin.wasm");
    std::fs::write(&bad, b"this is not WebAssembly\n").unwrap();
    let cli = cluster.cli(&["deploy", bad.to_str().unwrap()]);
    assert!(!cli.ok());
    let cli_error = cli.stderr.trim().strip_prefix("error: ").unwrap_or(&cli.stderr).to_owned();
    assert!(cli_error.contains("HTTP 400"), "{cli_error}");

    b.eval("location.hash = '#/deploy'");
    b.wait_for("the deploy form", "!document.querySelector('#deploy').hidden", STEP);
    let doc = b.call("DOM.getDocument", json!({}));
    let input = b.call(
        "DOM.querySelector",
        json!({ "nodeId": doc["root"]["nodeId"], "selector": "#deploy-file" }),
    );
    b.call(
        "DOM.setFileInputFiles",
        json!({ "nodeId": input["nodeId"], "files": [bad.to_str().unwrap()] }),
    );
    b.eval("document.querySelector('#deploy-config').value = 'parallelism=1'");
    b.eval("document.querySelector('#deploy-form button[type=submit]').click()");
    let shown =
        b.wait_for("the deploy error", "document.querySelector('#deploy-error').textContent", STEP);
    assert_eq!(shown.as_str().unwrap(), cli_error, "the UI and the CLI say the same");
    b.screenshot("ui-bad-deploy.png");
}

/// `/metrics` parsed: (name, labels) -> value.
pub(crate) fn scrape(cluster: &Cluster) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let (status, text) = cluster.get("/metrics", Some(TOKEN));
    assert_eq!(status, 200, "{text}");
    let mut out = BTreeMap::new();
    let mut typed = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "summary"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_owned(), kind.to_owned()).is_none(), "TYPE twice: {line}");
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect(line)),
            None => (series, ""),
        };
        // A summary's `_sum` and `_count` belong to its TYPE.
        let family = ["_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|f| typed.get(*f).is_some_and(|k| k == "summary"))
            .unwrap_or(name);
        assert!(typed.contains_key(family), "{name} has no TYPE line");
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").expect(line);
            let mut val = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect(line) {
                    (i, '"') => break i,
                    (_, '\\') => val.push(chars.next().expect(line).1),
                    (_, c) => val.push(c),
                }
            };
            map.insert(key.to_owned(), val);
            rest = after[end + 1..].trim_start_matches(',');
        }
        out.insert((name.to_owned(), map), value);
    }
    out
}

pub(crate) fn series<'a>(
    m: &'a BTreeMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
) -> Vec<(&'a BTreeMap<String, String>, f64)> {
    m.iter().filter(|((n, _), _)| n == name).map(|((_, l), v)| (l, *v)).collect()
}

#[test]
fn metrics_have_per_subtask_series_that_move_and_checkpoint_figures() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 2);
    let job = cluster.deploy_long_job();
    let status: Value =
        serde_json::from_str(&cluster.cli(&["status", &job, "--json"]).stdout).unwrap();
    let vertices = status["graph"]["vertices"].as_array().unwrap().clone();

    // Wait until every subtask reported, event time began and a checkpoint completed.
    let deadline = Instant::now() + STEP;
    let first = loop {
        let m = scrape(&cluster);
        let subtasks = series(&m, "flinkw_subtask_records_in_total").len();
        let done = series(&m, "flinkw_checkpoints_total")
            .iter()
            .any(|(l, v)| l["status"] == "completed" && *v >= 1.0);
        let watermarks = series(&m, "flinkw_subtask_watermark_lag_seconds").len();
        if subtasks == 4 && done && watermarks > 0 {
            break m;
        }
        assert!(Instant::now() < deadline, "not every series yet: {m:?}");
        std::thread::sleep(Duration::from_millis(300));
    };
    // Labels: job, its name, the task, the vertex (its operators) and the subtask.
    for (labels, _) in series(&first, "flinkw_subtask_records_out_total") {
        assert_eq!(labels["job"], job);
        assert_eq!(labels["job_name"], status["name"].as_str().unwrap());
        let task: usize = labels["task"].parse().unwrap();
        let ops: Vec<&str> = vertices[task]["operators"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(labels["vertex"], ops.join(" -> "));
        assert!(["0", "1"].contains(&labels["subtask"].as_str()), "{labels:?}");
    }
    for name in ["flinkw_subtask_busy_ratio", "flinkw_subtask_backpressure_ratio"] {
        for (l, v) in series(&first, name) {
            assert!((0.0..=1.0).contains(&v), "{name} {l:?} = {v}");
        }
    }
    for name in ["flinkw_last_checkpoint_duration_seconds", "flinkw_last_checkpoint_size_bytes"] {
        let s = series(&first, name);
        assert_eq!(s.len(), 1, "{name}");
        assert_eq!(s[0].0["job"], job);
    }
    assert!(series(&first, "flinkw_last_checkpoint_size_bytes")[0].1 > 0.0);
    // Every task's part of the newest checkpoint, no longer than the whole.
    let whole = series(&first, "flinkw_last_checkpoint_duration_seconds")[0].1;
    let tasks = series(&first, "flinkw_last_checkpoint_task_duration_seconds");
    assert_eq!(tasks.len(), vertices.len(), "{tasks:?}");
    for (l, secs) in &tasks {
        assert_eq!(l["job"], job);
        assert!(*secs <= whole + 0.001, "task {l:?}: {secs} s of {whole} s");
    }
    assert!(tasks.iter().any(|(_, secs)| *secs > 0.0), "{tasks:?}");

    // Counters move between two scrapes; busy + idle + backpressured time too.
    std::thread::sleep(Duration::from_millis(1500));
    let second = scrape(&cluster);
    for name in ["flinkw_subtask_records_out_total", "flinkw_subtask_bytes_out_total"] {
        let before = series(&first, name);
        let after: BTreeMap<_, _> = series(&second, name).into_iter().collect();
        for (l, v) in before {
            if l["task"] == "0" {
                assert!(after[l] > v, "{name} {l:?}: {v} -> {}", after[l]);
            }
        }
    }
    let time = |m: &BTreeMap<_, _>, l: &BTreeMap<String, String>| -> f64 {
        ["busy", "idle", "backpressured"]
            .iter()
            .map(|k| m[&(format!("flinkw_subtask_{k}_seconds_total"), l.clone())])
            .sum()
    };
    for (l, _) in series(&first, "flinkw_subtask_busy_seconds_total") {
        assert!(time(&second, l) > time(&first, l) + 0.5, "{l:?}: time accounted did not grow");
    }
    let guest = series(&second, "flinkw_subtask_guest_seconds_total");
    assert!(guest.iter().any(|(_, v)| *v > 0.0), "no guest time: {guest:?}");
    let cancel = cluster.cli(&["cancel", &job]);
    assert!(cancel.ok(), "{}", cancel.stderr);
}

#[test]
fn guest_log_lines_and_failures_reach_the_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 2);
    let run =
        cluster.cli(&["deploy", artifacts::BAD_GUEST, "--set", "mode=panic", "--set", "at=5"]);
    assert!(run.ok(), "{}", run.stderr);
    let job = run.stdout.trim().to_owned();
    let deadline = Instant::now() + STEP;
    let status = loop {
        let s: Value =
            serde_json::from_str(&cluster.cli(&["status", &job, "--json"]).stdout).unwrap();
        if s["state"]["state"] == "failed" {
            break s;
        }
        assert!(Instant::now() < deadline, "job {job} did not fail: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The exception: the worker, the panic and the guest's stack.
    let e = &status["exceptions"][0];
    assert_eq!(e["worker"], "w1");
    let error = e["error"].as_str().unwrap();
    assert!(error.contains("boom at record 5") && error.contains("explode"), "{error}");
    // The guest's log line, with the job's subtask and the worker.
    let logs = cluster.cli(&["logs", &job]);
    assert!(logs.ok(), "{}", logs.stderr);
    let line = logs.stdout.lines().find(|l| l.contains("misbehaving at record 5 (panic)"));
    let line = line.unwrap_or_else(|| panic!("no guest line in:\n{}", logs.stdout));
    assert!(line.contains("WARN") && line.contains("w1 t0/s0 flinkw::guest"), "{line}");
    let json = cluster.cli(&["logs", &job, "--json"]);
    let first: Value = serde_json::from_str(json.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["worker"], "w1");
    // The live view ends with the job: here at once, showing its vertex.
    let watch = cluster.cli(&["status", &job, "--watch"]);
    assert!(watch.ok(), "{}", watch.stderr);
    assert!(
        watch.stdout.contains("failed") && watch.stdout.contains("misbehave"),
        "{}",
        watch.stdout
    );
}

#[test]
fn completions_name_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in
        [("bash", "_flinkw()"), ("zsh", "#compdef flinkw"), ("fish", "complete -c flinkw")]
    {
        let run = flinkw(&["completions", shell], dir.path());
        assert!(run.ok(), "{shell}: {}", run.stderr);
        assert!(run.stdout.contains(marker), "{shell}: no {marker:?}");
        for command in ["deploy", "status", "logs", "completions", "log-format", "watch"] {
            assert!(run.stdout.contains(command), "{shell}: {command} missing");
        }
    }
}
