//! The coordinator's REST API (JSON over HTTP, bearer-token auth).
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | `POST` | `/v1/plugins` | upload a plugin (body: the `.wasm`); answers its hash |
//! | `POST` | `/v1/jobs` | run a job: `{"plugin": hash, "config": ["k=v"], "restarts": n}` |
//! | `GET` | `/v1/jobs` | every job |
//! | `GET` | `/v1/jobs/{id}` | one job |
//! | `POST` | `/v1/jobs/{id}/cancel` | cancel a job |
//! | `POST` | `/v1/jobs/{id}/savepoint` | stop a job with a savepoint |
//! | `GET` | `/v1/workers` | every worker |
//! | `GET` | `/metrics` | Prometheus text |
//! | `GET` | `/healthz` | `ok`, without a token |

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::coordinator::{Coordinator, JobRequest};

/// The largest plugin accepted.
const MAX_PLUGIN: usize = 512 << 20;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

/// The API's routes.
pub fn router(c: Arc<Coordinator>) -> Router {
    let api = Router::new()
        .route("/v1/plugins", post(upload))
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(show))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/savepoint", post(savepoint))
        .route("/v1/workers", get(workers))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(c.clone(), auth))
        .layer(DefaultBodyLimit::max(MAX_PLUGIN));
    Router::new().route("/healthz", get(|| async { "ok" })).merge(api).with_state(c)
}

async fn auth(State(c): State<Arc<Coordinator>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_none_or(|t| !constant_time_eq(t.as_bytes(), c.options.token.as_bytes())) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token (send `Authorization: Bearer TOKEN`; the CLI reads \
             --token or FLINKW_TOKEN)",
        );
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn upload(State(c): State<Arc<Coordinator>>, body: Bytes) -> Response {
    if body.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the plugin is empty");
    }
    match tokio::task::spawn_blocking(move || c.store_plugin(&body)).await {
        Ok(Ok(hash)) => Json(json!({ "plugin": hash })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn submit(State(c): State<Arc<Coordinator>>, Json(request): Json<JobRequest>) -> Response {
    match tokio::task::spawn_blocking(move || c.submit(request)).await {
        Ok(Ok(id)) => (StatusCode::CREATED, Json(json!({ "job": id }))).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn list(State(c): State<Arc<Coordinator>>) -> Response {
    Json(c.job_statuses()).into_response()
}

async fn show(State(c): State<Arc<Coordinator>>, Path(id): Path<String>) -> Response {
    match c.job_status(&id) {
        Some(s) => Json(s).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no job {id}")),
    }
}

async fn cancel(State(c): State<Arc<Coordinator>>, Path(id): Path<String>) -> Response {
    if c.cancel(&id) {
        Json(c.job_status(&id)).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no job {id}"))
    }
}

async fn savepoint(State(c): State<Arc<Coordinator>>, Path(id): Path<String>) -> Response {
    match c.stop_with_savepoint(&id) {
        Ok(()) => Json(c.job_status(&id)).into_response(),
        Err(e) => error(StatusCode::CONFLICT, format!("{e:#}")),
    }
}

async fn workers(State(c): State<Arc<Coordinator>>) -> Response {
    Json(c.worker_statuses()).into_response()
}

/// Prometheus text: jobs by state, records per node, workers and slots.
async fn metrics(State(c): State<Arc<Coordinator>>) -> Response {
    use std::fmt::Write;
    let mut out = String::new();
    let jobs = c.job_statuses();
    let workers = c.worker_statuses();
    let _ = writeln!(out, "# HELP flinkw_workers Workers registered.\n# TYPE flinkw_workers gauge");
    let _ = writeln!(out, "flinkw_workers {}", workers.len());
    let _ = writeln!(
        out,
        "# HELP flinkw_slots Task slots offered and used.\n# TYPE flinkw_slots gauge"
    );
    let _ = writeln!(
        out,
        "flinkw_slots{{kind=\"total\"}} {}",
        workers.iter().map(|w| w.slots).sum::<u32>()
    );
    let _ = writeln!(
        out,
        "flinkw_slots{{kind=\"used\"}} {}",
        workers.iter().map(|w| w.used).sum::<u32>()
    );
    let _ = writeln!(
        out,
        "# HELP flinkw_job_state 1 for the state each job is in.\n# TYPE flinkw_job_state gauge"
    );
    for j in &jobs {
        let _ =
            writeln!(out, "flinkw_job_state{{job=\"{}\",state=\"{}\"}} 1", j.id, j.state.name());
    }
    let _ = writeln!(
        out,
        "# HELP flinkw_records_total Records into and out of each operator (finished parts).\n# TYPE flinkw_records_total counter"
    );
    for j in &jobs {
        for (node, rin, rout) in &j.nodes {
            let node = node.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "flinkw_records_total{{job=\"{}\",node=\"{node}\",dir=\"in\"}} {rin}",
                j.id
            );
            let _ = writeln!(
                out,
                "flinkw_records_total{{job=\"{}\",node=\"{node}\",dir=\"out\"}} {rout}",
                j.id
            );
        }
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
