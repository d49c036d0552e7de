//! `flinkw logs JOB` and `flinkw status JOB --watch`: a job's log lines and
//! a live view of its vertices, from the coordinator's API.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use flinkw_cluster::client::Api;
use serde_json::Value;

/// Prints a job's newest log lines (`limit`); with `follow`, keeps printing
/// new ones until the job ends.
pub fn logs(api: &Api, job: &str, limit: usize, follow: bool, json: bool) -> anyhow::Result<()> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    loop {
        let lines = api.call("GET", &format!("/v1/jobs/{job}/logs?limit={limit}"), None)?;
        for l in lines.as_array().into_iter().flatten() {
            let key = l.to_string();
            if !seen.insert(key) {
                continue;
            }
            if json {
                println!("{l}");
            } else {
                println!("{}", log_line(l));
            }
        }
        if !follow {
            return Ok(());
        }
        let status = api.call("GET", &format!("/v1/jobs/{job}"), None)?;
        let state = status["state"]["state"].as_str().unwrap_or("?");
        if matches!(state, "finished" | "failed" | "cancelled") {
            eprintln!("{job}: {state}");
            return Ok(());
        }
        // Older lines scroll out of the window; keep the set small.
        if seen.len() > 20 * limit.max(100) {
            seen.clear();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One log line as a person reads it.
pub fn log_line(l: &Value) -> String {
    let at = l["at_ms"].as_i64().unwrap_or(0);
    let secs = at.div_euclid(1000);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let subtask = match l["subtask"].as_array() {
        Some(ts) if ts.len() == 2 => format!(" t{}/s{}", ts[0], ts[1]),
        _ => String::new(),
    };
    format!(
        "{h:02}:{m:02}:{s:02}.{:03} {:<5} {}{subtask} {}: {}",
        at.rem_euclid(1000),
        l["level"].as_str().unwrap_or("?"),
        l["worker"].as_str().unwrap_or("?"),
        l["target"].as_str().unwrap_or("?"),
        l["message"].as_str().unwrap_or("")
    )
}

/// Redraws a job's status and per-vertex rates every `interval` until the
/// job ends (`json`: one status object a line instead).
pub fn watch(api: &Api, job: &str, interval: Duration, json: bool) -> anyhow::Result<()> {
    let tty = !json && std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let status = api.call("GET", &format!("/v1/jobs/{job}"), None)?;
        if json {
            println!("{status}");
        } else {
            let mut out = String::new();
            if tty {
                out.push_str("\x1b[2J\x1b[H");
            }
            out.push_str(&render(&status));
            print!("{out}");
            if !tty {
                println!();
            }
        }
        std::io::stdout().flush()?;
        let state = status["state"]["state"].as_str().unwrap_or("?");
        if matches!(state, "finished" | "failed" | "cancelled") {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

/// The live view of one status.
pub fn render(status: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let state = status["state"]["state"].as_str().unwrap_or("?");
    let _ = writeln!(
        out,
        "{} {}  {state}  attempt {}  {:.1} s",
        status["id"].as_str().unwrap_or("?"),
        status["name"].as_str().unwrap_or("?"),
        status["attempt"].as_u64().unwrap_or(0) + 1,
        status["seconds"].as_f64().unwrap_or(0.0)
    );
    if let Some(e) = status["state"]["error"].as_str() {
        let _ = writeln!(out, "error: {e}");
    }
    let _ = writeln!(
        out,
        "{:<3} {:<36} {:>3} {:>12} {:>10} {:>12} {:>10} {:>5} {:>5} {:>10}",
        "#", "VERTEX", "P", "IN", "IN/S", "OUT", "OUT/S", "BUSY", "BP", "WM LAG"
    );
    let now = flinkw_host::time::now_millis();
    for v in status["graph"]["vertices"].as_array().into_iter().flatten() {
        let name: Vec<&str> = v["operators"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["name"].as_str())
            .collect();
        let mut name = name.join(" -> ");
        if name.chars().count() > 36 {
            name = name.chars().take(35).collect::<String>() + "…";
        }
        let lag = v["watermark"]
            .as_i64()
            .map_or("-".to_owned(), |wm| format!("{:.1} s", (now - wm) as f64 / 1e3));
        let _ = writeln!(
            out,
            "{:<3} {:<36} {:>3} {:>12} {:>10.0} {:>12} {:>10.0} {:>4.0}% {:>4.0}% {:>10}",
            v["index"].as_u64().unwrap_or(0),
            name,
            v["parallelism"].as_u64().unwrap_or(0),
            v["records_in"].as_u64().unwrap_or(0),
            v["rates"]["records_in_per_s"].as_f64().unwrap_or(0.0),
            v["records_out"].as_u64().unwrap_or(0),
            v["rates"]["records_out_per_s"].as_f64().unwrap_or(0.0),
            v["rates"]["busy"].as_f64().unwrap_or(0.0) * 100.0,
            v["rates"]["backpressured"].as_f64().unwrap_or(0.0) * 100.0,
            lag
        );
    }
    let checkpoints = status["checkpoints"].as_array().cloned().unwrap_or_default();
    if let Some(last) = checkpoints.last() {
        let failed = checkpoints.iter().filter(|c| c["status"] == "failed").count();
        let _ = writeln!(
            out,
            "checkpoints: {} ({failed} failed); newest {} {} in {} ms, {} bytes",
            checkpoints.len(),
            last["id"],
            last["status"].as_str().unwrap_or("?"),
            last["duration_ms"],
            last["bytes"]
        );
    }
    out
}
