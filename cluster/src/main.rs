//! The `flinkw` command.
//!
//! `flinkw run plugin.wasm` runs a job on this machine (the embedded
//! runtime); `flinkw plan plugin.wasm` shows the job graph it would run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flinkw_host::config::JobConfig;
use flinkw_host::engine::Engine;
use flinkw_host::graph::{JobGraph, NodeKind, WindowNode};
use flinkw_host::limits::Limits;
use flinkw_host::plugin::Plugin;
use flinkw_host::runtime::{self, JobReport, RestartStrategy, RunOptions};
use flinkw_host::state::StateBackendKind;

mod cluster_cmd;
mod obs_cmd;
mod plugin_cmd;
mod test_cmd;

/// flinkw: a stream processor whose jobs are WebAssembly components.
#[derive(Parser)]
#[command(name = "flinkw", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines on stderr look: `text`, or `json` (one object a line,
    /// with the job, task and subtask of each line).
    #[arg(long, global = true, value_enum, default_value_t = flinkw_cluster::logs::LogFormat::Text)]
    log_format: flinkw_cluster::logs::LogFormat,
    /// Also send log records to this OpenTelemetry collector (OTLP over
    /// HTTP, JSON), e.g. `http://127.0.0.1:4318`; records go to
    /// `ENDPOINT/v1/logs`.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Cluster(cluster_cmd::ClusterCommand),
    /// Runs a job on this machine until its bounded input ends.
    Run {
        #[command(flatten)]
        job: JobArgs,
        /// Skip input lines that do not parse (and count them) instead of failing.
        #[arg(long)]
        skip_bad_lines: bool,
        /// Largest record a source may read, in bytes.
        #[arg(long, default_value_t = 16 << 20)]
        max_record_bytes: usize,
        /// Print the job's summary (records per operator) as JSON on stderr.
        #[arg(long)]
        json_summary: bool,
        /// Where keyed state lives: `memory` (fastest) or `rocksdb` (larger than memory).
        #[arg(long, value_enum, default_value_t = Backend::Memory)]
        state_backend: Backend,
        /// Directory for RocksDB state (default: the system's temp directory).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// RocksDB block cache per subtask, in MiB.
        #[arg(long, default_value_t = 64, value_name = "MIB")]
        rocksdb_block_cache: usize,
        /// Take checkpoints into DIR (every `checkpoint.interval-ms`) and, if
        /// DIR holds a complete checkpoint of this job, resume from it.
        #[arg(long, value_name = "DIR")]
        checkpoint_dir: Option<PathBuf>,
        /// On SIGINT or SIGTERM (Ctrl-C), take a savepoint into DIR and stop;
        /// resume it with --from-savepoint, at any parallelism.
        #[arg(long, value_name = "DIR")]
        savepoint_dir: Option<PathBuf>,
        /// Start from a savepoint (a `sp-N` folder written by --savepoint-dir).
        #[arg(long, value_name = "PATH")]
        from_savepoint: Option<PathBuf>,
        /// Restart the job this many times when it fails while running (from
        /// its latest checkpoint with --checkpoint-dir).
        #[arg(long, default_value_t = 0, value_name = "N")]
        restarts: u32,
        /// Wait before the first restart, in ms.
        #[arg(long, default_value_t = 1000, value_name = "MS")]
        restart_delay: u64,
        /// Multiply the wait by this after each restart (1 = fixed delay).
        #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
        restart_backoff: f64,
        /// Failure rate instead of a total: allow --restarts restarts per
        /// this many seconds (a sliding window; Flink's failure-rate
        /// strategy), so a job that fails now and then restarts forever.
        #[arg(long, value_name = "SECS")]
        restart_window: Option<f64>,
        /// Serve the web UI for this job on ADDR (e.g. 127.0.0.1:8082); the
        /// URL with its token is printed at start.
        #[arg(long, value_name = "ADDR")]
        ui: Option<std::net::SocketAddr>,
    },
    /// Re-runs a job from one of its checkpoints to reproduce a failure:
    /// state and guest state are restored, sources seek to the checkpoint's
    /// positions, so the plugin sees the same records in the same order per
    /// channel; what the sinks would write goes to stdout instead, and no
    /// checkpoint is taken or output committed. PLUGIN may be a cluster
    /// job's id (`job-3`): its plugin, config and checkpoint folder then
    /// come from the coordinator, and the replay runs on this machine.
    Replay {
        #[command(flatten)]
        job: JobArgs,
        /// The job's checkpoint directory or URL (its --checkpoint-dir;
        /// for a cluster job, the one it was deployed with).
        #[arg(long, value_name = "DIR")]
        checkpoint_dir: Option<PathBuf>,
        #[command(flatten)]
        api: cluster_cmd::ApiArgs,
        /// The checkpoint to start from (default: the newest complete one).
        #[arg(long, value_name = "N")]
        from_checkpoint: Option<u64>,
        /// Print the job's summary (records per operator) as JSON on stderr.
        #[arg(long)]
        json_summary: bool,
    },
    /// Prints a shell completion script: `flinkw completions bash > /etc/bash_completion.d/flinkw`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Shows the job graph and the tasks a plugin would run, without running it.
    Plan {
        #[command(flatten)]
        job: JobArgs,
    },
    /// Runs a plugin on a small input and prints its output, or the
    /// difference from an expected output (a plugin author's unit test).
    Test(test_cmd::TestArgs),
    /// Plugin projects in Rust, Python, JavaScript or C: `new` and `build`.
    Plugin(plugin_cmd::PluginArgs),
}

/// Keyed state backends.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// Hash maps in memory.
    Memory,
    /// RocksDB on local disk.
    Rocksdb,
}

#[derive(clap::Args)]
struct JobArgs {
    /// The plugin: a WebAssembly component built with a flinkw SDK.
    plugin: PathBuf,
    /// Job config as key=value (repeatable); the plugin and flinkw read it.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Memory limit of each plugin instance, in MiB.
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    memory_limit: usize,
    /// Longest one guest call may run before it is stopped, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    call_timeout: f64,
    /// Directory for compiled plugins (default: ~/.cache/flinkw/compiled).
    #[arg(long, env = "FLINKW_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

impl JobArgs {
    /// An engine with the job's limits.
    fn engine(&self) -> anyhow::Result<Engine> {
        if !(self.call_timeout > 0.0 && self.call_timeout.is_finite()) {
            anyhow::bail!("--call-timeout must be a positive number of seconds");
        }
        if self.memory_limit == 0 {
            anyhow::bail!("--memory-limit must be at least 1 MiB");
        }
        let limits = Limits {
            memory_bytes: self.memory_limit << 20,
            call_timeout: Duration::from_secs_f64(self.call_timeout),
            ..Limits::default()
        };
        let cache = self.cache_dir.clone().or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/flinkw/compiled"))
        });
        Ok(Engine::new(limits, cache)?)
    }

    /// Loads the plugin file and parses the config.
    fn load(&self) -> anyhow::Result<(Plugin, JobConfig)> {
        let config = JobConfig::parse(&self.set)?;
        let plugin = Plugin::load_file(&self.engine()?, &self.plugin)?;
        Ok((plugin, config))
    }

    /// The cluster job PLUGIN names instead of a file (`job-3`), if it does.
    fn cluster_job(&self) -> Option<&str> {
        let name = self.plugin.to_str()?;
        let id = name.strip_prefix("job-")?;
        (!self.plugin.exists() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .then_some(name)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = flinkw_cluster::logs::init(cli.log_format, cli.otlp_endpoint.as_deref()) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let code = match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    flinkw_cluster::otlp::flush(Duration::from_secs(3));
    code
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    let exporting = cli.otlp_endpoint.as_deref().is_some_and(|e| !e.trim().is_empty());
    match cli.command {
        Command::Run {
            job,
            skip_bad_lines,
            max_record_bytes,
            json_summary,
            state_backend,
            state_dir,
            rocksdb_block_cache,
            checkpoint_dir,
            savepoint_dir,
            from_savepoint,
            restarts,
            restart_delay,
            restart_backoff,
            restart_window,
            ui,
        } => {
            if !(restart_backoff >= 1.0 && restart_backoff.is_finite()) {
                anyhow::bail!("--restart-backoff must be a number of at least 1");
            }
            let (plugin, config) = job.load()?;
            let state_backend = match state_backend {
                Backend::Memory => StateBackendKind::Memory,
                Backend::Rocksdb => StateBackendKind::RocksDb {
                    dir: state_dir.unwrap_or_else(|| std::env::temp_dir().join("flinkw-state")),
                    block_cache_bytes: rocksdb_block_cache.max(1) << 20,
                },
            };
            if savepoint_dir.is_some() {
                install_stop_handler();
            }
            let ui = match ui {
                Some(addr) => {
                    let ui = flinkw_cluster::ui::local::LocalUi::start(addr, job.set.clone())?;
                    eprintln!("web UI: {}", ui.url());
                    Some(ui)
                }
                None => None,
            };
            let options = RunOptions {
                observer: ui.as_ref().map(|u| u.observer()),
                state_backend,
                skip_bad_lines,
                max_record_bytes,
                checkpoint_dir,
                stop: savepoint_dir.as_ref().map(|_| &STOP),
                savepoint_dir,
                from_savepoint,
                ..RunOptions::default()
            };
            let strategy = RestartStrategy {
                attempts: restarts,
                delay: Duration::from_millis(restart_delay),
                backoff: restart_backoff,
                window: restart_window
                    .map(|s| cluster_cmd::secs(s, "--restart-window"))
                    .transpose()?,
                ..RestartStrategy::default()
            };
            let of = match restart_window {
                Some(w) => format!("; at most {restarts} restarts per {w} s"),
                None => format!(" of {restarts}"),
            };
            // The job's log lines (the plugin's too) go to the UI (and an
            // OpenTelemetry collector) with the job's id.
            let span = (ui.is_some() || exporting).then(|| {
                tracing::error_span!("job", job_id = flinkw_cluster::ui::local::JOB_ID).entered()
            });
            let result =
                runtime::run_with_restarts(&plugin, &config, options, strategy, |e, next| {
                    if let Some(ui) = &ui {
                        ui.failed_attempt(&e.to_string());
                    }
                    match next {
                        runtime::Restart::After { attempt, wait } => eprintln!(
                            "job failed: {e}\nrestarting in {} ms (attempt {attempt}{of})",
                            wait.as_millis()
                        ),
                        runtime::Restart::Exhausted(why) => eprintln!("no restart: {why}"),
                    }
                });
            drop(span);
            if let Some(ui) = &ui {
                ui.ended(result.as_ref().err().map(ToString::to_string));
            }
            let report = result.with_context(|| format!("job {} failed", job.plugin.display()))?;
            print_summary(&report, json_summary);
            Ok(())
        }
        Command::Replay { job, checkpoint_dir, api, from_checkpoint, json_summary } => {
            let (plugin, config, checkpoint_dir) = match job.cluster_job() {
                Some(id) => {
                    let found = flinkw_cluster::client::job_to_replay(&api.api()?, id)?;
                    let dir = checkpoint_dir.or(found.checkpoint_dir.map(PathBuf::from));
                    let dir = dir.with_context(|| {
                        format!("{id} has no checkpoint folder: there is nothing to replay from")
                    })?;
                    eprintln!("replaying {id} (plugin {}) on this machine", &found.plugin.1[..12]);
                    let mut set = found.config;
                    set.extend(job.set.iter().cloned());
                    let engine = job.engine()?;
                    let (bytes, hash) = found.plugin;
                    let plugin = Plugin::load(&engine, &hash, &bytes)?;
                    (plugin, JobConfig::parse(&set)?, dir)
                }
                None => {
                    let (plugin, config) = job.load()?;
                    let dir = checkpoint_dir
                        .context("--checkpoint-dir is needed to replay a plugin file")?;
                    (plugin, config, dir)
                }
            };
            let from = from_checkpoint.unwrap_or(0);
            if from_checkpoint == Some(0) {
                anyhow::bail!("checkpoint ids start at 1");
            }
            let says_where = |job: &runtime::PreparedJob| {
                if let Some(id) = job.restored_from() {
                    eprintln!("replaying from checkpoint {id}");
                }
            };
            let options = RunOptions {
                checkpoint_dir: Some(checkpoint_dir),
                replay: Some(from),
                observer: Some(runtime::JobObserver(std::sync::Arc::new(says_where))),
                ..RunOptions::default()
            };
            let report = runtime::run_job(&plugin, &config, options)
                .with_context(|| format!("the replay of {} failed", job.plugin.display()))?;
            print_summary(&report, json_summary);
            Ok(())
        }
        Command::Plan { job } => {
            let (plugin, config) = job.load()?;
            let graph = runtime::plan_job(&plugin, &config)?;
            print_plan(&graph, &config)
        }
        Command::Test(args) => test_cmd::execute(args),
        Command::Plugin(args) => plugin_cmd::execute(args),
        Command::Cluster(c) => cluster_cmd::execute(c),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Into a buffer first: clap_complete panics on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "flinkw", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
    }
}

/// Set by SIGINT/SIGTERM: stop with a savepoint.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // A second signal stops at once.
    if STOP.swap(true, std::sync::atomic::Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Makes SIGINT and SIGTERM request a stop with savepoint.
fn install_stop_handler() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic (or calls `_exit`), which
    // is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn print_summary(report: &JobReport, json: bool) {
    if json {
        let nodes: Vec<_> = report
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({"name": n.name, "records_in": n.records_in, "records_out": n.records_out})
            })
            .collect();
        let summary = serde_json::json!({
            "job": report.name,
            "seconds": report.duration.as_secs_f64(),
            "nodes": nodes,
            "skipped_lines": report.skipped_lines,
            "late_records": report.late_records,
            "counters": report.counters,
        });
        eprintln!("{summary}");
        return;
    }
    for problem in &report.skipped_checkpoints {
        eprintln!(
            "warning: {problem}; restored from an older checkpoint (output the damaged one \
             had committed may be written again)"
        );
    }
    if let Some(id) = report.restored_from {
        eprintln!("restored from checkpoint {id}");
    }
    if let Some(path) = &report.savepoint {
        eprintln!("stopped with savepoint {}", path.display());
    }
    eprintln!("job {} finished in {:.3} s", report.name, report.duration.as_secs_f64());
    if let Some(id) = report.last_checkpoint {
        eprintln!("  last checkpoint: {id}");
    }
    for n in &report.nodes {
        eprintln!("  {:<40} in {:>10}  out {:>10}", n.name, n.records_in, n.records_out);
    }
    if report.late_records > 0 {
        eprintln!(
            "warning: dropped {} record(s) that arrived after their windows closed",
            report.late_records
        );
    }
    if report.skipped_lines > 0 {
        eprintln!(
            "warning: skipped {} malformed input line(s); first: {}",
            report.skipped_lines,
            report.first_skipped.as_deref().unwrap_or("?")
        );
    }
}

fn print_plan(graph: &JobGraph, config: &JobConfig) -> anyhow::Result<()> {
    println!("job {}", graph.name);
    for n in &graph.nodes {
        let what = match &n.kind {
            NodeKind::Source(c) => format!("source {} {:?}", c.kind, c.options),
            NodeKind::Sink(c) => format!("sink {} {:?}", c.kind, c.options),
            NodeKind::KeyedProcess(f) => format!("keyed function {f}"),
            NodeKind::Window(WindowNode { assigner, allowed_lateness, function, .. }) => format!(
                "window function {function}: {assigner:?}, allowed lateness {allowed_lateness} ms"
            ),
            NodeKind::Transform { chain, steps } => format!(
                "transform chain {chain}: {}",
                steps
                    .iter()
                    .map(|s| format!("{} {}", s.kind, s.name))
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ),
        };
        let watermarks = match &n.watermarks {
            Some(w) => format!(" [watermarks: {:?}]", w.strategy),
            None => String::new(),
        };
        println!("  node {} {:?}: {what}{watermarks}", n.id, n.name);
    }
    for e in &graph.edges {
        println!("  edge {} -> {} ({})", e.source, e.target, e.partitioning);
    }
    let physical = runtime::physical_plan(graph, config.parallelism)?;
    for t in &physical.tasks {
        println!("  task {} (parallelism {}): nodes {:?}", t.index, t.parallelism, t.nodes);
    }
    Ok(())
}
