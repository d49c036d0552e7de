//! The web UI, served by the coordinator (and by `flinkw run --ui`), and
//! the API parts it needs beyond the REST API's: a job's graph with
//! per-vertex metrics, its checkpoints, exceptions and log lines, and the
//! per-subtask Prometheus series.
//!
//! The front end is three static files (`index.html`, `app.js`,
//! `style.css`) compiled into the binary with `include_str!`: no build
//! step, nothing fetched at run time. The page itself needs no token; every
//! API call it makes sends the token the user entered once (kept in the
//! tab's `sessionStorage`), and the API refuses calls without it.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | `GET` | `/`, `/ui/` | the page |
//! | `GET` | `/ui/app.js`, `/ui/style.css` | its script and style |
//! | `GET` | `/v1/jobs/{id}/logs?limit=N` | the job's newest log lines (token) |

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::coordinator::{Coordinator, JobStatus};
use crate::metrics::{JobSeries, graph_view};

pub mod local;

/// The page.
pub const INDEX_HTML: &str = include_str!("index.html");
/// Its script.
pub const APP_JS: &str = include_str!("app.js");
/// Its style sheet.
pub const STYLE_CSS: &str = include_str!("style.css");

/// The UI's static files, without a token (they hold no data).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/ui/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/ui/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The UI's API routes (behind the REST API's token check).
pub fn api_routes() -> Router<Arc<Coordinator>> {
    Router::new().route("/v1/jobs/{id}/logs", get(logs))
}

/// `?limit=N` of the logs route.
#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn logs(
    State(c): State<Arc<Coordinator>>,
    Path(id): Path<String>,
    Query(q): Query<Limit>,
) -> Response {
    let jobs = c.jobs.lock().unwrap_or_else(|p| p.into_inner());
    match jobs.get(&id) {
        Some(j) => axum::Json(j.observed.logs(q.limit.unwrap_or(500))).into_response(),
        None => (StatusCode::NOT_FOUND, axum::Json(json!({ "error": format!("no job {id}") })))
            .into_response(),
    }
}

/// A job's status with its graph (vertices with their chained operators
/// and metrics, edges), checkpoints and exceptions: what `GET /v1/jobs/{id}`
/// answers.
pub fn detail(c: &Coordinator, status: JobStatus) -> Value {
    let mut v = serde_json::to_value(&status).unwrap_or(Value::Null);
    let jobs = c.jobs.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(j) = jobs.get(&status.id) {
        let physical = flinkw_host::runtime::physical_plan(&j.graph, j.job_config.parallelism);
        let graph = physical.map(|p| graph_view(&j.graph, &p, &j.observed)).unwrap_or_default();
        let current = j.checkpoints.as_deref().map(|c| (j.lifecycle.attempt, c));
        v["graph"] = serde_json::to_value(graph).unwrap_or(Value::Null);
        v["checkpoints"] =
            serde_json::to_value(j.observed.checkpoints(current)).unwrap_or(Value::Null);
        v["exceptions"] = serde_json::to_value(j.observed.exceptions()).unwrap_or(Value::Null);
        v["checkpointing"] = Value::Bool(j.checkpoint_dir.is_some());
        v["uptime_seconds"] = json!(
            j.running_since
                .map(|r| j.ended.unwrap_or_else(std::time::Instant::now) - r)
                .map(|d| d.as_secs_f64())
        );
    }
    v
}

/// Per-subtask, checkpoint and exception series of every job that
/// `visible(tenant)` allows, as Prometheus text.
pub fn prometheus(c: &Coordinator, visible: &dyn Fn(Option<&str>) -> bool) -> String {
    let jobs = c.jobs.lock().unwrap_or_else(|p| p.into_inner());
    let mut series = Vec::new();
    for j in jobs.values().filter(|j| visible(j.request.tenant.as_deref())) {
        let Ok(physical) = flinkw_host::runtime::physical_plan(&j.graph, j.job_config.parallelism)
        else {
            continue;
        };
        let current = j.checkpoints.as_deref().map(|c| (j.lifecycle.attempt, c));
        series.push(JobSeries {
            id: &j.id,
            name: &j.name,
            tenant: j.request.tenant.as_deref(),
            graph: graph_view(&j.graph, &physical, &j.observed),
            checkpoints: j.observed.checkpoints(current),
            exceptions: j.observed.exceptions().len(),
            earlier_cpu_ns: j.observed.earlier_cpu_ns(),
        });
    }
    crate::metrics::prometheus(&series, flinkw_host::time::now_millis())
}

/// The name of worker `id` (or `worker ID` once it is gone).
pub(crate) fn worker_name(c: &Coordinator, id: u32) -> String {
    let workers = c.workers.lock().unwrap_or_else(|p| p.into_inner());
    workers.get(&id).map_or_else(|| format!("worker {id}"), |w| w.name.clone())
}

/// Records a part's failure among the job's exceptions.
pub(crate) fn on_failure(c: &Coordinator, worker: u32, job: &str, attempt: u32, error: &str) {
    let name = worker_name(c, worker);
    let mut jobs = c.jobs.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(j) = jobs.get_mut(job) {
        j.observed.exception(attempt, name, error.to_owned());
    }
}
