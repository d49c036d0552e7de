//! `flinkw run --ui ADDR`: the same web UI for a job of the embedded
//! runtime. The job is `local`; its graph, per-vertex metrics, checkpoint
//! history and log lines are served in the coordinator's shapes, so the
//! page needs no changes. A random token guards the API; the URL printed at
//! start carries it in its fragment (`#token=…`), which browsers do not send
//! to the server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flinkw_host::graph::JobGraph;
use flinkw_host::runtime::{
    Canceller, CheckpointHistory, JobObserver, MetricsHandle, PhysicalPlan, PreparedJob,
};
use serde_json::{Value, json};

use crate::metrics::{JobMetrics, graph_view};

/// The id the local job has in the UI.
pub const JOB_ID: &str = "local";

/// What the UI shows of the running attempt.
#[derive(Default)]
struct Attempt {
    graph: Option<(JobGraph, PhysicalPlan)>,
    metrics: MetricsHandle,
    history: Option<Arc<CheckpointHistory>>,
    canceller: Option<Canceller>,
}

#[derive(Default)]
struct LocalJob {
    config: Vec<String>,
    attempt: u32,
    current: Attempt,
    observed: JobMetrics,
    /// Finished attempts' checkpoints are kept by `observed`.
    state: String,
    error: Option<String>,
    started: Option<Instant>,
    ended: Option<Instant>,
}

/// A running local UI server.
#[derive(Clone)]
pub struct LocalUi {
    job: Arc<Mutex<LocalJob>>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The token its API wants.
    pub token: String,
}

fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let seed = format!("{:?}{}", Instant::now(), std::process::id());
        bytes.copy_from_slice(
            &sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(seed))[..16],
        );
    }
    hex::encode(bytes)
}

impl LocalUi {
    /// Starts serving the UI on `addr` (a thread of its own) for a job run
    /// with `config`.
    pub fn start(addr: SocketAddr, config: Vec<String>) -> anyhow::Result<LocalUi> {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} for the web UI"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let ui = LocalUi {
            job: Arc::new(Mutex::new(LocalJob {
                config,
                state: "created".into(),
                ..LocalJob::default()
            })),
            addr,
            token: random_token(),
        };
        let me = ui.clone();
        std::thread::Builder::new().name("flinkw-ui".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => return eprintln!("the web UI cannot start: {e}"),
            };
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                tokio::spawn(sample(me.clone()));
                let _ = axum::serve(listener, router(me)).await;
            });
        })?;
        Ok(ui)
    }

    /// The address to open, with the token.
    pub fn url(&self) -> String {
        format!("http://{}/ui/#token={}", self.addr, self.token)
    }

    /// The callback for [`flinkw_host::runtime::RunOptions::observer`].
    pub fn observer(&self) -> JobObserver {
        let me = self.clone();
        JobObserver(Arc::new(move |p: &PreparedJob| me.prepared(p)))
    }

    fn prepared(&self, p: &PreparedJob) {
        let mut j = self.job.lock().unwrap_or_else(|p| p.into_inner());
        if j.current.graph.is_some() {
            j.attempt += 1;
        }
        j.current = Attempt {
            graph: Some((p.graph().clone(), p.physical().clone())),
            metrics: p.metrics(),
            history: p.checkpoint_history(),
            canceller: Some(p.canceller()),
        };
        j.state = "running".into();
        j.started.get_or_insert_with(Instant::now);
    }

    /// An attempt failed (another may follow).
    pub fn failed_attempt(&self, error: &str) {
        let mut j = self.job.lock().unwrap_or_else(|p| p.into_inner());
        let attempt = j.attempt;
        j.observed.exception(attempt, "local".into(), error.to_owned());
        j.state = "restarting".into();
    }

    /// The job ended: `error` is why it failed, none if it finished.
    pub fn ended(&self, error: Option<String>) {
        let mut j = self.job.lock().unwrap_or_else(|p| p.into_inner());
        j.sample();
        if let Some(e) = &error {
            let attempt = j.attempt;
            j.observed.exception(attempt, "local".into(), e.clone());
        }
        j.state = if error.is_some() { "failed" } else { "finished" }.into();
        j.error = error;
        j.ended = Some(Instant::now());
    }
}

impl LocalJob {
    fn sample(&mut self) {
        let samples = self.current.metrics.sample();
        let attempt = self.attempt;
        self.observed.observe(0, attempt, samples);
        if let Some(h) = &self.current.history {
            self.observed.keep_history(attempt, h.list());
        }
        self.observed.log("local", crate::logs::take(JOB_ID));
    }

    fn status(&self) -> Value {
        let seconds = self
            .started
            .map(|s| self.ended.unwrap_or_else(Instant::now).duration_since(s).as_secs_f64());
        let name = self.current.graph.as_ref().map_or("?", |(g, _)| g.name.as_str());
        let parallelism: Vec<Vec<String>> = self
            .current
            .graph
            .as_ref()
            .map(|(_, p)| {
                p.tasks.iter().map(|t| vec!["local".to_owned(); t.parallelism as usize]).collect()
            })
            .unwrap_or_default();
        let mut state = json!({ "state": self.state });
        if let Some(e) = &self.error {
            state["error"] = json!(e);
        }
        json!({
            "id": JOB_ID,
            "name": name,
            "state": state,
            "attempt": self.attempt,
            "placement": parallelism,
            "seconds": seconds.unwrap_or(0.0),
            "uptime_seconds": seconds,
            "request": { "config": self.config },
            "checkpointing": self.current.history.is_some(),
        })
    }

    fn detail(&self) -> Value {
        let mut v = self.status();
        if let Some((g, p)) = &self.current.graph {
            v["graph"] = serde_json::to_value(graph_view(g, p, &self.observed)).unwrap_or_default();
        }
        v["checkpoints"] =
            serde_json::to_value(self.observed.checkpoints(None)).unwrap_or_default();
        v["exceptions"] = serde_json::to_value(self.observed.exceptions()).unwrap_or_default();
        v
    }
}

/// Samples the metrics every second (rates need two samples).
async fn sample(ui: LocalUi) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        ui.job.lock().unwrap_or_else(|p| p.into_inner()).sample();
    }
}

fn router(ui: LocalUi) -> Router {
    let api = Router::new()
        .route(
            "/v1/jobs",
            get(|State(ui): State<LocalUi>| async move { axum::Json(json!([ui.lock().status()])) }),
        )
        .route(
            "/v1/jobs/{id}",
            get(|State(ui): State<LocalUi>| async move { axum::Json(ui.lock().detail()) }),
        )
        .route(
            "/v1/jobs/{id}/logs",
            get(
                |State(ui): State<LocalUi>| async move { axum::Json(ui.lock().observed.logs(500)) },
            ),
        )
        .route(
            "/v1/jobs/{id}/cancel",
            post(|State(ui): State<LocalUi>| async move {
                let j = ui.lock();
                if let Some(c) = &j.current.canceller {
                    c.cancel();
                }
                axum::Json(j.status())
            }),
        )
        .route(
            "/metrics",
            get(|State(ui): State<LocalUi>| async move {
                let j = ui.lock();
                let Some((g, p)) = &j.current.graph else { return String::new() };
                let series = crate::metrics::JobSeries {
                    id: JOB_ID,
                    name: &g.name,
                    tenant: None,
                    graph: graph_view(g, p, &j.observed),
                    checkpoints: j.observed.checkpoints(None),
                    exceptions: j.observed.exceptions().len(),
                    earlier_cpu_ns: j.observed.earlier_cpu_ns(),
                };
                crate::metrics::prometheus(&[series], flinkw_host::time::now_millis())
            }),
        )
        .layer(axum::middleware::from_fn_with_state(ui.clone(), auth));
    Router::new().merge(super::routes()).merge(api).with_state(ui)
}

impl LocalUi {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalJob> {
        self.job.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn auth(State(ui): State<LocalUi>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given != Some(ui.token.as_str()) {
        let message = "missing or wrong token: open the URL `flinkw run --ui` printed";
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": message }))).into_response();
    }
    next.run(request).await
}
