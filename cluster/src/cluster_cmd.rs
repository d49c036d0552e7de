//! The cluster's subcommands: `coordinator`, `worker`, `deploy`, `list`,
//! `status`, `cancel`, `workers`, `cert`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use flinkw_cluster::client::{self, Api, DeployRequest};
use flinkw_cluster::coordinator::{self, CoordinatorOptions};
use flinkw_cluster::{tls, worker};

#[path = "tenant_cmd.rs"]
mod tenant_cmd;

/// Subcommands that start or talk to a cluster.
#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Starts a coordinator: workers join it, clients deploy jobs to it.
    Coordinator {
        /// QUIC address where workers join.
        #[arg(long, default_value = "127.0.0.1:6123")]
        listen: SocketAddr,
        /// Address of the REST API (plain HTTP; keep it on a trusted network).
        #[arg(long, default_value = "127.0.0.1:8081")]
        rest: SocketAddr,
        /// Folder with this node's certificate (`flinkw cert node`).
        #[arg(long, value_name = "DIR")]
        certs: PathBuf,
        /// Token every API client must send.
        #[arg(long, env = "FLINKW_TOKEN", hide_env_values = true)]
        token: String,
        /// Where plugins and compiled plugins are kept.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Where job records and the plugins they run are kept: a directory
        /// or s3://, gs://bucket/prefix or az://container/prefix (AWS_*,
        /// GOOGLE_* or AZURE_* variables give endpoint and credentials;
        /// default: DATA_DIR). A coordinator started on another
        /// machine with the same store resumes the running jobs.
        #[arg(long, value_name = "URL")]
        job_store: Option<String>,
        /// A worker silent this long (ms) counts as lost.
        #[arg(long, default_value_t = 3000, value_name = "MS")]
        heartbeat_timeout: u64,
        /// Where tenants' checkpoints and savepoints go, one folder per
        /// tenant (default: DATA_DIR/storage); workers must reach it.
        #[arg(long, value_name = "DIR")]
        tenant_storage: Option<PathBuf>,
    },
    /// Tenants of a cluster: create, set quotas, list, delete (admin token).
    #[command(subcommand)]
    Tenant(tenant_cmd::TenantCommand),
    /// Checks a token against the coordinator and keeps it for later commands.
    Login {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Prints the coordinator's audit log, one JSON object a line (admin token).
    Audit {
        /// Only this tenant's events.
        #[arg(long)]
        tenant: Option<String>,
        /// The last N events.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        limit: usize,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Starts a worker that offers task slots to a coordinator.
    Worker {
        /// The coordinator's QUIC address.
        #[arg(long, value_name = "ADDR")]
        join: SocketAddr,
        /// Task slots to offer.
        #[arg(long, default_value_t = 2)]
        slots: u32,
        /// Address where other workers send data (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        /// The worker's name (default: the host name and process id).
        #[arg(long)]
        name: Option<String>,
        /// Folder with this node's certificate (`flinkw cert node`).
        #[arg(long, value_name = "DIR")]
        certs: PathBuf,
        /// Where fetched and compiled plugins are cached.
        #[arg(long, value_name = "DIR", env = "FLINKW_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// How long to keep trying to reach the coordinator, in seconds.
        #[arg(long, default_value_t = 30.0, value_name = "SECS")]
        connect_timeout: f64,
        /// The data address other workers are told to use (default: the
        /// --bind address); for a worker behind NAT or a proxy.
        #[arg(long, value_name = "ADDR")]
        advertise: Option<SocketAddr>,
        /// Do not put each tenant's threads in a cgroup with equal CPU
        /// shares (they are, when the worker may write the cgroup v1 `cpu`
        /// hierarchy, e.g. as root).
        #[arg(long)]
        no_cpu_groups: bool,
    },
    /// Uploads a plugin to a cluster and runs it as a job.
    Deploy {
        /// The plugin.
        plugin: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
        /// Job config as key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Restart the job this many times when it fails.
        #[arg(long, default_value_t = 0, value_name = "N")]
        restarts: u32,
        /// Wait before a restart, in ms.
        #[arg(long, default_value_t = 1000, value_name = "MS")]
        restart_delay: u64,
        /// Multiply the wait by this for each attempt in a row that failed
        /// within a minute (1 = fixed delay; a tenant's jobs use at least 2).
        #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
        restart_backoff: f64,
        /// The longest wait before a restart, in ms.
        #[arg(long, default_value_t = 60_000, value_name = "MS")]
        restart_max_delay: u64,
        /// Failure rate instead of a total: allow --restarts restarts per
        /// this many seconds (a sliding window; Flink's failure-rate
        /// strategy).
        #[arg(long, value_name = "SECS")]
        restart_window: Option<f64>,
        /// Where keyed state lives: `memory` (fastest) or `rocksdb` (larger
        /// than memory, on each worker's disk under its cache folder).
        #[arg(long, value_name = "BACKEND", value_parser = ["memory", "rocksdb"])]
        state_backend: Option<String>,
        /// Memory limit of each plugin instance, in MiB (default: 512, or
        /// less if the tenant's quota says so).
        #[arg(long, value_name = "MIB")]
        memory_limit: Option<usize>,
        /// Longest one guest call may run, in seconds (default: 10, or less
        /// if the tenant's quota says so).
        #[arg(long, value_name = "SECS")]
        call_timeout: Option<f64>,
        /// Start from this savepoint (a tenant's must be in its storage).
        #[arg(long, value_name = "PATH")]
        from_savepoint: Option<PathBuf>,
        /// Take checkpoints into DIR (a folder every worker reaches) and
        /// restart failed attempts from the newest one.
        #[arg(long, value_name = "DIR")]
        checkpoint_dir: Option<PathBuf>,
        /// Follow the job until it ends and print its summary.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 3600.0, value_name = "SECS")]
        wait_timeout: f64,
    },
    /// Lists a cluster's jobs.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Shows one job.
    Status {
        /// The job's id.
        job: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Redraw a live view (vertices, rates, backpressure) until the job ends.
        #[arg(long)]
        watch: bool,
        /// Seconds between redraws with --watch.
        #[arg(long, default_value_t = 1.0, value_name = "SECS")]
        interval: f64,
    },
    /// Prints a job's recent log lines (the plugin's and the runtime's).
    Logs {
        /// The job's id.
        job: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Keep printing new lines until the job ends.
        #[arg(long, short)]
        follow: bool,
        /// How many of the newest lines.
        #[arg(long, default_value_t = 100, value_name = "N")]
        lines: usize,
    },
    /// Cancels a job.
    Cancel {
        /// The job's id.
        job: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stops a job with a savepoint (in its checkpoint folder) and prints it.
    Savepoint {
        /// The job's id.
        job: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 600.0, value_name = "SECS")]
        wait_timeout: f64,
    },
    /// Changes a job's parallelism: stop with a savepoint, start again from it.
    Rescale {
        /// The job's id.
        job: String,
        /// The new parallelism.
        #[arg(long)]
        parallelism: u32,
        #[command(flatten)]
        api: ApiArgs,
        /// Give up waiting for the savepoint after this many seconds.
        #[arg(long, default_value_t = 600.0, value_name = "SECS")]
        wait_timeout: f64,
    },
    /// Switches a running job to a new version of its plugin at a
    /// checkpoint barrier, without stopping its sources (the new plugin's
    /// `migrate` export converts the old version's guest state); the job
    /// keeps its id. With --via-savepoint: stop with a savepoint and start
    /// again from it as a new job (also when the new plugin runs at
    /// another parallelism).
    Upgrade {
        /// The job's id.
        job: String,
        /// The new plugin version's `.wasm` file.
        plugin: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
        /// Stop the job with a savepoint and start it again from there.
        #[arg(long)]
        via_savepoint: bool,
        /// Give up waiting for the upgrade (or the savepoint) after this many seconds.
        #[arg(long, default_value_t = 600.0, value_name = "SECS")]
        wait_timeout: f64,
    },
    /// Lists a cluster's workers and their slots.
    Workers {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Makes development certificates for a cluster.
    #[command(subcommand)]
    Cert(CertCommand),
}

/// `flinkw cert` subcommands.
#[derive(Subcommand)]
pub enum CertCommand {
    /// Makes a new certificate authority (`ca.pem`, `ca.key`) in DIR.
    Ca {
        /// The folder.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Makes a node certificate signed by the CA.
    Node {
        /// The CA's folder.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The node's name (also a name in its certificate).
        #[arg(long)]
        name: String,
        /// More host names or IP addresses the node is reached by.
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// The folder for `node.pem`, `node.key` and `ca.pem`.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// How to reach a coordinator's API.
#[derive(clap::Args)]
pub struct ApiArgs {
    /// The coordinator's REST API.
    #[arg(long, env = "FLINKW_COORDINATOR", default_value = "http://127.0.0.1:8081")]
    coordinator: String,
    /// The API token (default: the one `flinkw login` kept).
    #[arg(long, env = "FLINKW_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

impl ApiArgs {
    /// The coordinator's API with the token to show it.
    pub(crate) fn api(&self) -> anyhow::Result<Api> {
        Api::new(&self.coordinator, self.token.clone().or_else(tenant_cmd::saved_token))
    }
}

/// A folder path for the coordinator: `./x`, `../x` and absolute paths are
/// made absolute here; a bare name (`ck`, `ck/sp-1`) is sent as it is, and
/// the coordinator takes it inside the tenant's storage.
fn remote_path(p: &std::path::Path) -> anyhow::Result<PathBuf> {
    use std::path::Component;
    match p.components().next() {
        Some(Component::Normal(_)) => Ok(p.to_path_buf()),
        _ => Ok(std::path::absolute(p)?),
    }
}

/// `s` seconds, which must be positive and finite (`what` names the option).
pub(crate) fn secs(s: f64, what: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(s > 0.0 && s.is_finite(), "{what} must be a positive number of seconds");
    Ok(Duration::from_secs_f64(s))
}

/// Runs a cluster subcommand.
pub fn execute(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Coordinator {
            listen,
            rest,
            certs,
            token,
            data_dir,
            job_store,
            heartbeat_timeout,
            tenant_storage,
        } => {
            anyhow::ensure!(!token.is_empty(), "--token must not be empty");
            flinkw_cluster::otlp::set_identity("coordinator", &rest.to_string());
            coordinator::run(CoordinatorOptions {
                listen,
                rest,
                certs,
                token,
                data_dir,
                job_store,
                heartbeat_timeout: Duration::from_millis(heartbeat_timeout.max(100)),
                tenant_storage,
            })
        }
        ClusterCommand::Worker {
            join,
            slots,
            bind,
            name,
            certs,
            cache_dir,
            connect_timeout,
            advertise,
            no_cpu_groups,
        } => {
            anyhow::ensure!(slots > 0, "--slots must be at least 1");
            let cache_dir = cache_dir
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/flinkw"))
                })
                .context("no --cache-dir and no HOME")?;
            let name = name.unwrap_or_else(|| format!("worker-{}", std::process::id()));
            flinkw_cluster::otlp::set_identity("worker", &name);
            worker::run(worker::WorkerOptions {
                coordinator: join,
                bind,
                slots,
                name,
                certs,
                cache_dir,
                connect_timeout: secs(connect_timeout, "--connect-timeout")?,
                advertise,
                cpu_groups: !no_cpu_groups,
            })
        }
        ClusterCommand::Deploy {
            plugin,
            api,
            set,
            restarts,
            restart_delay,
            restart_backoff,
            restart_max_delay,
            restart_window,
            state_backend,
            memory_limit,
            call_timeout,
            from_savepoint,
            checkpoint_dir,
            wait,
            wait_timeout,
        } => {
            anyhow::ensure!(memory_limit != Some(0), "--memory-limit must be at least 1 MiB");
            anyhow::ensure!(
                restart_backoff >= 1.0 && restart_backoff.is_finite(),
                "--restart-backoff must be a number of at least 1, not {restart_backoff}"
            );
            let request = DeployRequest {
                config: set,
                restarts,
                restart_delay_ms: restart_delay,
                restart_backoff,
                restart_max_delay_ms: restart_max_delay,
                restart_window_ms: restart_window
                    .map(|s| secs(s, "--restart-window"))
                    .transpose()?
                    .map(|d| d.as_millis().max(1) as u64),
                state_backend,
                // 0: the coordinator decides (the tenant's quota, or the default).
                memory_limit_mib: memory_limit.unwrap_or(0),
                call_timeout_ms: call_timeout
                    .map(|s| secs(s, "--call-timeout"))
                    .transpose()?
                    .map_or(0, |d| d.as_millis().max(1) as u64),
                checkpoint_dir: checkpoint_dir.map(|d| remote_path(&d)).transpose()?,
                from_savepoint: from_savepoint.map(|d| remote_path(&d)).transpose()?,
            };
            let client = api.api()?;
            let job = client::deploy(&client, &plugin, &request)?;
            if !wait {
                if api.json {
                    println!("{}", serde_json::json!({ "job": job }));
                } else {
                    println!("{job}");
                }
                return Ok(());
            }
            let status = client::wait(&client, &job, secs(wait_timeout, "--wait-timeout")?)?;
            if api.json {
                println!("{status}");
            } else {
                client::print_job(&status);
            }
            Ok(())
        }
        ClusterCommand::List { api } => {
            let list = api.api()?.call("GET", "/v1/jobs", None)?;
            if api.json {
                println!("{list}")
            } else {
                client::print_jobs(&list)
            }
            Ok(())
        }
        ClusterCommand::Status { job, api, watch: true, interval } => {
            crate::obs_cmd::watch(&api.api()?, &job, secs(interval, "--interval")?, api.json)
        }
        ClusterCommand::Logs { job, api, follow, lines } => {
            crate::obs_cmd::logs(&api.api()?, &job, lines, follow, api.json)
        }
        ClusterCommand::Status { job, api, .. } => {
            let status = api.api()?.call("GET", &format!("/v1/jobs/{job}"), None)?;
            if api.json {
                println!("{status}")
            } else {
                client::print_job(&status)
            }
            Ok(())
        }
        ClusterCommand::Cancel { job, api } => {
            let status = api.api()?.call("POST", &format!("/v1/jobs/{job}/cancel"), None)?;
            if api.json {
                println!("{status}")
            } else {
                client::print_job(&status)
            }
            Ok(())
        }
        ClusterCommand::Savepoint { job, api, wait_timeout } => {
            let path = client::savepoint(&api.api()?, &job, secs(wait_timeout, "--wait-timeout")?)?;
            if api.json {
                println!("{}", serde_json::json!({ "job": job, "savepoint": path }));
            } else {
                println!("{path}");
            }
            Ok(())
        }
        ClusterCommand::Upgrade { job, plugin, api, via_savepoint: false, wait_timeout } => {
            let timeout = secs(wait_timeout, "--wait-timeout")?;
            let done = client::upgrade_live(&api.api()?, &job, &plugin, timeout)?;
            if api.json {
                println!("{done}");
            } else {
                eprintln!(
                    "{job} switched to plugin {} at checkpoint {}: {} subtask(s), longest pause \
                     {:.1} ms; its sources did not stop",
                    done["plugin"].as_str().unwrap_or("?"),
                    done["checkpoint"],
                    done["swapped"],
                    done["pause_ms"].as_f64().unwrap_or(0.0),
                );
                println!("{job}");
            }
            Ok(())
        }
        ClusterCommand::Upgrade { job, plugin, api, via_savepoint: true, wait_timeout } => {
            let (new, path) =
                client::upgrade(&api.api()?, &job, &plugin, secs(wait_timeout, "--wait-timeout")?)?;
            if api.json {
                println!("{}", serde_json::json!({ "job": new, "savepoint": path }));
            } else {
                eprintln!(
                    "{job} stopped with savepoint {path}; started again on the new plugin as {new}"
                );
                println!("{new}");
            }
            Ok(())
        }
        ClusterCommand::Rescale { job, parallelism, api, wait_timeout } => {
            let (new, path) = client::rescale(
                &api.api()?,
                &job,
                parallelism,
                secs(wait_timeout, "--wait-timeout")?,
            )?;
            if api.json {
                println!("{}", serde_json::json!({ "job": new, "savepoint": path }));
            } else {
                eprintln!("{job} stopped with savepoint {path}; started again as {new}");
                println!("{new}");
            }
            Ok(())
        }
        ClusterCommand::Workers { api } => {
            let list = api.api()?.call("GET", "/v1/workers", None)?;
            if api.json {
                println!("{list}")
            } else {
                client::print_workers(&list)
            }
            Ok(())
        }
        ClusterCommand::Tenant(command) => tenant_cmd::execute(command),
        ClusterCommand::Login { api } => tenant_cmd::login(&api),
        ClusterCommand::Audit { tenant, limit, api } => {
            tenant_cmd::audit(&api, tenant.as_deref(), limit)
        }
        ClusterCommand::Cert(CertCommand::Ca { out }) => {
            tls::create_ca(&out)?;
            eprintln!("made a CA in {} (keep ca.key private)", out.display());
            Ok(())
        }
        ClusterCommand::Cert(CertCommand::Node { ca, name, hosts, out }) => {
            tls::create_node(&ca, &name, &hosts, &out)?;
            eprintln!("made a certificate for {name} in {}", out.display());
            Ok(())
        }
    }
}
