//! The coordinator's REST API (JSON over HTTP, bearer-token auth: the
//! coordinator's token is the admin's, tenants have their own and see only
//! their own jobs — [`tenant_api`] guards every route and adds the tenant
//! and audit routes).
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | `POST` | `/v1/plugins` | upload a plugin (body: the `.wasm`); answers its hash |
//! | `GET` | `/v1/plugins/{hash}` | a stored plugin's bytes (a tenant: only its own) |
//! | `POST` | `/v1/jobs` | run a job: `{"plugin": hash, "config": ["k=v"], "restarts": n}` |
//! | `GET` | `/v1/jobs` | every job |
//! | `GET` | `/v1/jobs/{id}` | one job |
//! | `POST` | `/v1/jobs/{id}/cancel` | cancel a job |
//! | `POST` | `/v1/jobs/{id}/savepoint` | stop a job with a savepoint |
//! | `POST` | `/v1/jobs/{id}/upgrade` | switch a running job to another plugin at a barrier: `{"plugin": hash}` (see [`crate::live_upgrade`]) |
//! | `GET` | `/v1/workers` | every worker |
//! | `GET` | `/metrics` | Prometheus text |
//! | `GET` | `/healthz` | `ok`, without a token |

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde_json::json;

use crate::coordinator::{Coordinator, JobRequest};
use crate::tenant::Principal;
use crate::tenant_api;

/// The largest plugin accepted.
const MAX_PLUGIN: usize = 512 << 20;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

/// The API's routes.
pub fn router(c: Arc<Coordinator>) -> Router {
    let api = Router::new()
        .route("/v1/plugins", post(upload))
        .route("/v1/plugins/{hash}", get(download))
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(show))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/savepoint", post(savepoint))
        .route("/v1/jobs/{id}/upgrade", post(upgrade))
        .route("/v1/workers", get(workers))
        .route("/metrics", get(metrics))
        .merge(crate::ui::api_routes())
        .merge(crate::tenant_api::routes())
        .layer(axum::middleware::from_fn_with_state(c.clone(), crate::tenant_api::guard))
        .layer(DefaultBodyLimit::max(MAX_PLUGIN));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::ui::routes())
        .merge(api)
        .with_state(c)
}

async fn upload(
    State(c): State<Arc<Coordinator>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Response {
    if body.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the plugin is empty");
    }
    if let Err(e) = tenant_api::admit_upload(&c, &who, body.len()) {
        return tenant_api::refusal_response(&e);
    }
    let stored = move || {
        let hash = c.store_plugin(&body)?;
        tenant_api::uploaded(&c, &who, &hash).map(|()| hash)
    };
    match tokio::task::spawn_blocking(stored).await {
        Ok(Ok(hash)) => Json(json!({ "plugin": hash })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn download(
    State(c): State<Arc<Coordinator>>,
    Extension(who): Extension<Principal>,
    Path(hash): Path<String>,
) -> Response {
    let missing = || error(StatusCode::NOT_FOUND, format!("no plugin {hash}"));
    if let Principal::Tenant(t) = &who
        && !c.tenants.owns_plugin(t, &hash)
    {
        return missing();
    }
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return missing();
    }
    let read = {
        let (c, hash) = (c.clone(), hash.clone());
        move || c.stored_plugin(&hash)
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(bytes)) => {
            ([(axum::http::header::CONTENT_TYPE, "application/wasm")], bytes).into_response()
        }
        Ok(Err(_)) => missing(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn submit(
    State(c): State<Arc<Coordinator>>,
    Extension(who): Extension<Principal>,
    Json(mut request): Json<JobRequest>,
) -> Response {
    let submit = move || {
        tenant_api::resolve(&c, &who, &mut request)?;
        c.submit(request)
    };
    match tokio::task::spawn_blocking(submit).await {
        Ok(Ok(id)) => (StatusCode::CREATED, Json(json!({ "job": id }))).into_response(),
        Ok(Err(e)) => tenant_api::refusal_response(&e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn list(State(c): State<Arc<Coordinator>>, Extension(who): Extension<Principal>) -> Response {
    let mine: Vec<_> =
        c.job_statuses().into_iter().filter(|j| who.may_see(j.request.tenant.as_deref())).collect();
    Json(mine).into_response()
}

async fn show(State(c): State<Arc<Coordinator>>, Path(id): Path<String>) -> Response {
    match c.job_status(&id) {
        Some(s) => Json(crate::ui::detail(&c, s)).into_response(),
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

/// What `POST /v1/jobs/{id}/upgrade` takes.
#[derive(serde::Deserialize)]
struct UpgradeRequest {
    /// The new plugin's SHA-256, uploaded before.
    plugin: String,
}

async fn upgrade(
    State(c): State<Arc<Coordinator>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Json(body): Json<UpgradeRequest>,
) -> Response {
    if let Principal::Tenant(t) = &who
        && !c.tenants.owns_plugin(t, &body.plugin)
    {
        let message = format!("tenant {t} has not uploaded a plugin {}", body.plugin);
        return error(StatusCode::FORBIDDEN, message);
    }
    let hash = body.plugin.clone();
    let begin = move || c.upgrade(&id, &body.plugin).map(|status| (id, status));
    match tokio::task::spawn_blocking(begin).await {
        Ok(Ok((id, status))) => {
            let answer = json!({ "job": id, "plugin": hash, "upgrade": status });
            (StatusCode::ACCEPTED, Json(answer)).into_response()
        }
        Ok(Err(refusal)) => {
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::CONFLICT);
            error(status, refusal.message)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
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
    out.push_str(&crate::ui::prometheus(&c, &|_| true));
    out.push_str(&tenant_api::metrics_text(&c));
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
