//! `flinkw tenant create|set|list|delete|show`, `flinkw login` and
//! `flinkw audit`: the CLI side of tenants (see `docs/tenants.md`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::ApiArgs;

/// `flinkw tenant` subcommands (admin token, except `show`).
#[derive(Subcommand)]
pub enum TenantCommand {
    /// Creates a tenant and prints its token (shown only this once).
    Create {
        /// The tenant's name (a-z, 0-9, '-').
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Changes some of a tenant's quotas or its policy.
    Set {
        /// The tenant's name.
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Lists the tenants with their quotas and what they use.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Deletes a tenant: its token stops working and its jobs are cancelled.
    Delete {
        /// The tenant's name.
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Shows who the token belongs to, its quotas, usage and storage folder.
    Show {
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Quotas and policy; only those given are sent.
#[derive(clap::Args)]
pub struct QuotaArgs {
    /// Task slots of all the tenant's live jobs together.
    #[arg(long, value_name = "N")]
    max_slots: Option<u32>,
    /// Live jobs.
    #[arg(long, value_name = "N")]
    max_jobs: Option<u32>,
    /// Memory of one plugin instance, MiB.
    #[arg(long, value_name = "MIB")]
    max_instance_memory_mib: Option<u64>,
    /// Memory of all the tenant's instances, MiB.
    #[arg(long, value_name = "MIB")]
    max_total_memory_mib: Option<u64>,
    /// The CPU deadline of one guest call, ms.
    #[arg(long, value_name = "MS")]
    max_call_ms: Option<u64>,
    /// Bytes in the tenant's checkpoint folders, MiB.
    #[arg(long, value_name = "MIB")]
    max_checkpoint_mib: Option<u64>,
    /// Deploys refilled per minute.
    #[arg(long, value_name = "N")]
    deploys_per_minute: Option<u32>,
    /// Deploys that may come at once.
    #[arg(long, value_name = "N")]
    deploy_burst: Option<u32>,
    /// Size of one plugin, MiB.
    #[arg(long, value_name = "MIB")]
    max_plugin_mib: Option<u64>,
    /// CPU of the tenant's threads on one worker, percent of one core
    /// (0: no cap; an equal share of a contended CPU either way).
    #[arg(long, value_name = "PERCENT")]
    max_cpu_percent: Option<u32>,
    /// Longest wait between deploys, s, while the tenant's jobs keep
    /// failing at once (crash-loop backoff; 0: off).
    #[arg(long, value_name = "S")]
    crash_backoff_max_s: Option<u32>,
    /// Grant the guests the WASI clocks (true/false).
    #[arg(long, value_name = "BOOL")]
    clocks: Option<bool>,
}

impl QuotaArgs {
    /// `{"quota": {...given...}, "policy": {...given...}}`.
    fn patch(&self) -> Value {
        let mut q = Map::new();
        let mut put = |k: &str, v: Option<u64>| {
            if let Some(v) = v {
                q.insert(k.to_owned(), json!(v));
            }
        };
        put("max_slots", self.max_slots.map(u64::from));
        put("max_jobs", self.max_jobs.map(u64::from));
        put("max_instance_memory_mib", self.max_instance_memory_mib);
        put("max_total_memory_mib", self.max_total_memory_mib);
        put("max_call_ms", self.max_call_ms);
        put("max_checkpoint_mib", self.max_checkpoint_mib);
        put("deploys_per_minute", self.deploys_per_minute.map(u64::from));
        put("deploy_burst", self.deploy_burst.map(u64::from));
        put("max_plugin_mib", self.max_plugin_mib);
        put("max_cpu_percent", self.max_cpu_percent.map(u64::from));
        put("crash_backoff_max_s", self.crash_backoff_max_s.map(u64::from));
        let mut p = Map::new();
        if let Some(c) = self.clocks {
            p.insert("clocks".into(), json!(c));
        }
        json!({ "quota": q, "policy": p })
    }
}

/// Where `flinkw login` keeps the token: `$FLINKW_CONFIG_DIR/token`, else
/// `~/.config/flinkw/token`.
pub fn token_file() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FLINKW_CONFIG_DIR") {
        return Some(PathBuf::from(dir).join("token"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/flinkw/token"))
}

/// The token `flinkw login` saved, if any.
pub fn saved_token() -> Option<String> {
    let text = std::fs::read_to_string(token_file()?).ok()?;
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// Checks `token` against the coordinator and saves it for later commands.
pub fn login(api: &ApiArgs) -> anyhow::Result<()> {
    let client = api.api()?;
    anyhow::ensure!(client.token.is_some(), "give the token with --token or FLINKW_TOKEN");
    let me = client.call("GET", "/v1/tenant", None)?;
    let path =
        token_file().context("no FLINKW_CONFIG_DIR and no HOME: nowhere to keep the token")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_private(&path, client.token.as_deref().unwrap_or_default())?;
    let who = me["tenant"].as_str().map_or("the admin".to_owned(), |t| format!("tenant {t}"));
    eprintln!("logged in as {who}; the token is kept in {}", path.display());
    Ok(())
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Runs a `flinkw tenant` subcommand.
pub fn execute(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { name, quota, api } => {
            let mut body = quota.patch();
            body["name"] = json!(name);
            let made = api.api()?.call(
                "POST",
                "/v1/tenants",
                Some(("application/json", body.to_string().as_bytes())),
            )?;
            if api.json {
                println!("{made}");
            } else {
                eprintln!(
                    "made tenant {name} (storage {}); its token, shown only now:",
                    made["storage"].as_str().unwrap_or("?")
                );
                println!("{}", made["token"].as_str().unwrap_or("?"));
            }
            Ok(())
        }
        TenantCommand::Set { name, quota, api } => {
            let body = quota.patch().to_string();
            let t = api.api()?.call(
                "PATCH",
                &format!("/v1/tenants/{name}"),
                Some(("application/json", body.as_bytes())),
            )?;
            println!("{}", if api.json { t.to_string() } else { pretty(&t) });
            Ok(())
        }
        TenantCommand::List { api } => {
            let list = api.api()?.call("GET", "/v1/tenants", None)?;
            if api.json {
                println!("{list}");
                return Ok(());
            }
            println!(
                "{:<20} {:>6} {:>6} {:>10} {:>8} {:>8} {:>10} {:>10}",
                "TENANT", "JOBS", "SLOTS", "MEMORY", "MAX-JOBS", "MAX-SLOTS", "CPU-S", "IN-USE"
            );
            for t in list.as_array().into_iter().flatten() {
                let u = &t["usage"];
                println!(
                    "{:<20} {:>6} {:>6} {:>7} MiB {:>8} {:>8} {:>10.1} {:>6.1} MiB",
                    t["name"].as_str().unwrap_or("?"),
                    u["jobs"],
                    u["slots"],
                    u["memory_mib"],
                    t["quota"]["max_jobs"],
                    t["quota"]["max_slots"],
                    u["cpu_seconds"].as_f64().unwrap_or(0.0),
                    u["memory_bytes"].as_f64().unwrap_or(0.0) / f64::from(1u32 << 20)
                );
            }
            Ok(())
        }
        TenantCommand::Delete { name, api } => {
            let answer = api.api()?.call("DELETE", &format!("/v1/tenants/{name}"), None)?;
            if api.json {
                println!("{answer}");
            } else {
                eprintln!("deleted tenant {name}; cancelled jobs: {}", answer["cancelled"]);
            }
            Ok(())
        }
        TenantCommand::Show { api } => {
            let me = api.api()?.call("GET", "/v1/tenant", None)?;
            println!("{}", if api.json { me.to_string() } else { pretty(&me) });
            Ok(())
        }
    }
}

/// Runs `flinkw audit`.
pub fn audit(api: &ApiArgs, tenant: Option<&str>, limit: usize) -> anyhow::Result<()> {
    let mut path = format!("/v1/audit?limit={limit}");
    if let Some(t) = tenant {
        path.push_str(&format!("&tenant={t}"));
    }
    let events = api.api()?.call("GET", &path, None)?;
    for e in events.as_array().into_iter().flatten() {
        println!("{e}");
    }
    Ok(())
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}
