//! The CLI's side of the REST API: `flinkw deploy`, `list`, `status`,
//! `cancel`, `workers`.
//!
//! A small HTTP/1.1 client over a plain TCP connection (one request per
//! connection), enough for the coordinator's JSON API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Where the coordinator's API is and the token to show it.
#[derive(Debug, Clone)]
pub struct Api {
    /// `host:port` of the REST API.
    pub addr: String,
    /// The bearer token.
    pub token: Option<String>,
}

impl Api {
    /// From a URL such as `http://127.0.0.1:8081`.
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Api> {
        let rest = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || url.starts_with("https://") {
            bail!("--coordinator must look like http://HOST:PORT, not {url:?}");
        }
        Ok(Api { addr: rest.to_owned(), token })
    }

    /// Sends a request; returns the JSON answer, or the API's error text.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> anyhow::Result<Value> {
        let (status, body) = self.call_raw(method, path, body)?;
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        if status >= 400 {
            let message = value.get("error").and_then(Value::as_str).map(str::to_owned);
            bail!("{} (HTTP {status})", message.unwrap_or_else(|| value.to_string()));
        }
        Ok(value)
    }

    /// Sends a request; returns the HTTP status and the body as it came.
    pub fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(&self.addr).with_context(|| {
            format!("cannot reach the coordinator's API at http://{}", self.addr)
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.addr
        );
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let (kind, bytes) = body.unwrap_or(("application/json", b""));
        head.push_str(&format!("Content-Type: {kind}\r\nContent-Length: {}\r\n\r\n", bytes.len()));
        stream.write_all(head.as_bytes())?;
        stream.write_all(bytes)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).context("the coordinator closed the connection")?;
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("a malformed answer from the coordinator")?;
        let head = String::from_utf8_lossy(&answer[..split]);
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status")?;
        let body = &answer[split + 4..];
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        let body = if chunked { unchunk(body)? } else { body.to_vec() };
        Ok((status, body))
    }
}

/// What a replay on this machine needs of a cluster job.
#[derive(Debug, Clone)]
pub struct JobToReplay {
    /// The plugin the job runs (its bytes) and its SHA-256.
    pub plugin: (Vec<u8>, String),
    /// The job's `key=value` config.
    pub config: Vec<String>,
    /// Its checkpoint folder or URL, as the coordinator resolved it.
    pub checkpoint_dir: Option<String>,
}

/// Fetches a cluster job's plugin, config and checkpoint folder.
pub fn job_to_replay(api: &Api, job: &str) -> anyhow::Result<JobToReplay> {
    let status = api.call("GET", &format!("/v1/jobs/{job}"), None)?;
    let request = &status["request"];
    let hash = request["plugin"].as_str().context("no plugin in the job's status")?.to_owned();
    let (code, bytes) = api.call_raw("GET", &format!("/v1/plugins/{hash}"), None)?;
    if code >= 400 {
        bail!(
            "cannot fetch plugin {hash} of {job}: {} (HTTP {code})",
            String::from_utf8_lossy(&bytes)
        );
    }
    let config = request["config"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let checkpoint_dir = request["checkpoint_dir"].as_str().map(str::to_owned);
    Ok(JobToReplay { plugin: (bytes, hash), config, checkpoint_dir })
}

fn unchunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..line_end]).trim(), 16)?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(body.get(..size).context("short chunk")?);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

/// What `flinkw deploy` sends besides the plugin.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// `key=value` config.
    pub config: Vec<String>,
    /// Restarts allowed.
    pub restarts: u32,
    /// Wait before a restart, in ms.
    pub restart_delay_ms: u64,
    /// Multiply the wait per quick failure in a row (1: fixed).
    pub restart_backoff: f64,
    /// The longest wait before a restart, ms.
    pub restart_max_delay_ms: u64,
    /// `restarts` per this many ms (failure rate) instead of in all.
    pub restart_window_ms: Option<u64>,
    /// `memory` or `rocksdb` (none: the coordinator's default, memory).
    pub state_backend: Option<String>,
    /// Memory limit per plugin instance, MiB.
    pub memory_limit_mib: usize,
    /// Longest guest call, ms.
    pub call_timeout_ms: u64,
    /// Checkpoints folder, reachable by every worker.
    pub checkpoint_dir: Option<std::path::PathBuf>,
    /// Start from this savepoint.
    pub from_savepoint: Option<std::path::PathBuf>,
}

/// Uploads a plugin and starts a job; returns the job's id.
pub fn deploy(api: &Api, plugin: &Path, request: &DeployRequest) -> anyhow::Result<String> {
    let bytes =
        std::fs::read(plugin).with_context(|| format!("cannot read {}", plugin.display()))?;
    let uploaded = api.call("POST", "/v1/plugins", Some(("application/wasm", &bytes)))?;
    let hash = uploaded["plugin"].as_str().context("no plugin hash in the answer")?;
    let body = json!({
        "plugin": hash,
        "config": request.config,
        "restarts": request.restarts,
        "restart_delay_ms": request.restart_delay_ms,
        "restart_backoff": request.restart_backoff,
        "restart_max_delay_ms": request.restart_max_delay_ms,
        "restart_window_ms": request.restart_window_ms,
        "state_backend": request.state_backend,
        "memory_limit_mib": request.memory_limit_mib,
        "call_timeout_ms": request.call_timeout_ms,
        "checkpoint_dir": request.checkpoint_dir,
        "from_savepoint": request.from_savepoint,
    });
    let answer =
        api.call("POST", "/v1/jobs", Some(("application/json", body.to_string().as_bytes())))?;
    Ok(answer["job"].as_str().context("no job id in the answer")?.to_owned())
}

/// Stops a job with a savepoint and waits for it; returns the savepoint.
pub fn savepoint(api: &Api, job: &str, timeout: Duration) -> anyhow::Result<String> {
    api.call("POST", &format!("/v1/jobs/{job}/savepoint"), None)?;
    let status = wait(api, job, timeout)?;
    status["savepoint"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("job {job} finished without a savepoint"))
}

/// Stops a job with a savepoint and starts it again from there with
/// `parallelism` (key groups move to the new subtasks); returns the new
/// job's id and the savepoint.
pub fn rescale(
    api: &Api,
    job: &str,
    parallelism: u32,
    timeout: Duration,
) -> anyhow::Result<(String, String)> {
    anyhow::ensure!(parallelism > 0, "--parallelism must be at least 1");
    restart_from_savepoint(api, job, timeout, |request| {
        let mut config: Vec<Value> = request["config"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !c.as_str().is_some_and(|c| c.starts_with("parallelism=")))
            .collect();
        config.push(Value::String(format!("parallelism={parallelism}")));
        request["config"] = Value::Array(config);
    })
}

/// Switches a running job to a new version of its plugin without stopping
/// it: uploads `plugin`, asks for a live upgrade at the next checkpoint
/// barrier (the new plugin's `migrate` export converts the old version's
/// guest state) and waits until it ends; returns the job's `upgrade`
/// status once committed. A refused or failed upgrade is an error that
/// says why and what the job runs now.
pub fn upgrade_live(
    api: &Api,
    job: &str,
    plugin: &Path,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let bytes =
        std::fs::read(plugin).with_context(|| format!("cannot read {}", plugin.display()))?;
    let uploaded = api.call("POST", "/v1/plugins", Some(("application/wasm", &bytes)))?;
    let hash = uploaded["plugin"].as_str().context("no plugin hash in the answer")?.to_owned();
    let body = serde_json::json!({ "plugin": hash }).to_string();
    let begun = api.call(
        "POST",
        &format!("/v1/jobs/{job}/upgrade"),
        Some(("application/json", body.as_bytes())),
    )?;
    let number = begun["upgrade"]["number"].as_u64().context("no upgrade in the answer")?;
    let _spinner = crate::progress::Spinner::start(format!("upgrading {job}"));
    let deadline = Instant::now() + timeout;
    loop {
        let status = api.call("GET", &format!("/v1/jobs/{job}"), None)?;
        let upgrade = &status["upgrade"];
        if upgrade["number"].as_u64() != Some(number) {
            bail!("job {job} no longer shows the upgrade asked for");
        }
        let message = upgrade["message"].as_str().unwrap_or("no reason given");
        match upgrade["state"].as_str() {
            Some("committed") => return Ok(upgrade.clone()),
            Some("refused") => bail!("the upgrade of {job} was refused: {message}"),
            Some("failed") => bail!("the upgrade of {job} failed: {message}"),
            _ => {}
        }
        if Instant::now() >= deadline {
            bail!("the upgrade of {job} had not ended after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Moves a job to a new version of its plugin: uploads `plugin`, stops the
/// job with a savepoint and starts it again from there with the new plugin,
/// whose `migrate` export converts the old version's guest state; returns
/// the new job's id and the savepoint.
pub fn upgrade(
    api: &Api,
    job: &str,
    plugin: &Path,
    timeout: Duration,
) -> anyhow::Result<(String, String)> {
    let bytes =
        std::fs::read(plugin).with_context(|| format!("cannot read {}", plugin.display()))?;
    // A plugin that cannot run the job is refused before the job stops:
    // load it here and plan the job with its config.
    let status = api.call("GET", &format!("/v1/jobs/{job}"), None)?;
    let config: Vec<String> = status["request"]["config"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let engine = flinkw_host::engine::Engine::new(flinkw_host::limits::Limits::default(), None)?;
    let loaded = flinkw_host::plugin::Plugin::load(&engine, &plugin.display().to_string(), &bytes)?;
    let config = flinkw_host::config::JobConfig::parse(&config)?;
    flinkw_host::runtime::plan_job(&loaded, &config)
        .with_context(|| format!("{} cannot run job {job}", plugin.display()))?;
    let uploaded = api.call("POST", "/v1/plugins", Some(("application/wasm", &bytes)))?;
    let hash = uploaded["plugin"].as_str().context("no plugin hash in the answer")?.to_owned();
    restart_from_savepoint(api, job, timeout, |request| {
        request["plugin"] = Value::String(hash);
    })
}

/// Stops `job` with a savepoint and submits it again from the savepoint,
/// with its request changed by `change`; returns the new job's id and the
/// savepoint.
fn restart_from_savepoint(
    api: &Api,
    job: &str,
    timeout: Duration,
    change: impl FnOnce(&mut Value),
) -> anyhow::Result<(String, String)> {
    let status = api.call("GET", &format!("/v1/jobs/{job}"), None)?;
    let mut request = status["request"].clone();
    let savepoint = savepoint(api, job, timeout)?;
    change(&mut request);
    request["from_savepoint"] = Value::String(savepoint.clone());
    // The new job's checkpoints go next to the old ones: a folder holds the
    // checkpoints of one job graph and parallelism.
    if let Some(dir) = request["checkpoint_dir"].as_str() {
        let name = Path::new(&savepoint).file_name().and_then(|n| n.to_str()).unwrap_or("sp");
        request["checkpoint_dir"] = Value::String(format!("{dir}-from-{name}"));
    }
    let answer =
        api.call("POST", "/v1/jobs", Some(("application/json", request.to_string().as_bytes())))?;
    let id = answer["job"].as_str().context("no job id in the answer")?.to_owned();
    Ok((id, savepoint))
}

/// Follows a job until it ends, printing each change of state; fails if
/// the job did not finish.
pub fn wait(api: &Api, job: &str, timeout: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    // A spinner below the state lines while stderr is a terminal.
    let _spinner = crate::progress::Spinner::start(format!("waiting for {job}"));
    loop {
        let status = api.call("GET", &format!("/v1/jobs/{job}"), None)?;
        let state = status["state"]["state"].as_str().unwrap_or("?").to_owned();
        if state != last {
            let attempt = status["attempt"].as_u64().unwrap_or(0);
            let extra =
                if attempt > 0 { format!(" (attempt {})", attempt + 1) } else { String::new() };
            crate::progress::line(&format!("{job}: {state}{extra}"));
            crate::progress::step(format!("{job} is {state}"));
            last = state.clone();
        }
        match state.as_str() {
            "finished" => return Ok(status),
            "failed" => bail!(
                "job {job} failed: {}",
                status["state"]["error"].as_str().unwrap_or("no reason given")
            ),
            "cancelled" => bail!("job {job} was cancelled"),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("job {job} is still {state} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Prints a job's status as a person reads it.
pub fn print_job(status: &Value) {
    let state = &status["state"];
    println!("job        {}", status["id"].as_str().unwrap_or("?"));
    println!("name       {}", status["name"].as_str().unwrap_or("?"));
    println!("state      {}", state["state"].as_str().unwrap_or("?"));
    if let Some(e) = state["error"].as_str() {
        println!("error      {e}");
    }
    println!("attempt    {}", status["attempt"].as_u64().unwrap_or(0) + 1);
    println!("seconds    {:.3}", status["seconds"].as_f64().unwrap_or(0.0));
    println!("plugin     {}", status["request"]["plugin"].as_str().unwrap_or("?"));
    let u = &status["upgrade"];
    if let Some(state) = u["state"].as_str() {
        let short = |v: &Value| v.as_str().map_or("?".to_owned(), |h| h.chars().take(12).collect());
        print!(
            "upgrade    #{} {state}: {} -> {}",
            u["number"],
            short(&u["from_plugin"]),
            short(&u["plugin"])
        );
        if let Some(id) = u["checkpoint"].as_u64() {
            print!(" at checkpoint {id}, {} subtask(s) switched", u["swapped"]);
            print!(", longest pause {:.1} ms", u["pause_ms"].as_f64().unwrap_or(0.0));
        }
        println!();
        if let Some(m) = u["message"].as_str() {
            println!("           {m}");
        }
    }
    if let Some(ms) = status["start_ms"].as_u64() {
        println!("started in {ms} ms");
    }
    if let Some(tasks) = status["placement"].as_array() {
        for (i, t) in tasks.iter().enumerate() {
            let names: Vec<&str> =
                t.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            println!("task {i:<5} {}", names.join(" "));
        }
    }
    if let Some(nodes) = status["nodes"].as_array() {
        for n in nodes {
            println!(
                "  {:<40} in {:>10}  out {:>10}",
                n[0].as_str().unwrap_or("?"),
                n[1].as_u64().unwrap_or(0),
                n[2].as_u64().unwrap_or(0)
            );
        }
    }
}

/// Prints every job as a table.
pub fn print_jobs(list: &Value) {
    println!("{:<10} {:<24} {:<11} {:>7} {:>9}", "JOB", "NAME", "STATE", "ATTEMPT", "SECONDS");
    for j in list.as_array().into_iter().flatten() {
        println!(
            "{:<10} {:<24} {:<11} {:>7} {:>9.1}",
            j["id"].as_str().unwrap_or("?"),
            j["name"].as_str().unwrap_or("?"),
            j["state"]["state"].as_str().unwrap_or("?"),
            j["attempt"].as_u64().unwrap_or(0) + 1,
            j["seconds"].as_f64().unwrap_or(0.0)
        );
    }
}

/// Prints every worker as a table.
pub fn print_workers(list: &Value) {
    println!("{:<4} {:<16} {:>5} {:>5}  DATA", "ID", "NAME", "SLOTS", "USED");
    for w in list.as_array().into_iter().flatten() {
        println!(
            "{:<4} {:<16} {:>5} {:>5}  {}",
            w["id"].as_u64().unwrap_or(0),
            w["name"].as_str().unwrap_or("?"),
            w["slots"].as_u64().unwrap_or(0),
            w["used"].as_u64().unwrap_or(0),
            w["data_addr"].as_str().unwrap_or("?")
        );
    }
}
