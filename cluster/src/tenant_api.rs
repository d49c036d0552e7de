//! The tenants' side of the REST API: who is asking (the [`guard`] in
//! front of every route), what they may see and touch, the quota checks
//! of a deploy, the audit trail, and the routes for tenants and the audit
//! log.
//!
//! | method | path | who | what |
//! | --- | --- | --- | --- |
//! | `GET` | `/v1/tenants` | admin | every tenant, with its quota and usage |
//! | `POST` | `/v1/tenants` | admin | `{"name", "quota"?, "policy"?}`: answers the token (shown once) |
//! | `PATCH` | `/v1/tenants/{name}` | admin | `{"quota": {...}, "policy": {...}}`: changes some fields |
//! | `DELETE` | `/v1/tenants/{name}` | admin | cancels its jobs, its token stops working |
//! | `GET` | `/v1/tenant` | anyone | who am I: quota, usage (with CPU seconds and memory), storage folder |
//! | `GET` | `/v1/tenant/metrics` | anyone | Prometheus text of the caller's own jobs and tenant sums |
//! | `GET` | `/v1/audit` | admin | the audit log (`?tenant=NAME&limit=N`) |

use std::sync::{Arc, MutexGuard};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use crate::audit::{AuditEvent, unix_ms};
use crate::coordinator::{Coordinator, JobEntry, JobRequest};
use crate::lifecycle::Event;
use crate::quota::{self, Ask, Quota, Refusal, Usage};
use crate::tenant::{Policy, Principal, folder_bytes};

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

/// The HTTP answer to an error from a deploy: a quota's refusal keeps its
/// status (403, 413 or 429), anything else is a bad request.
pub fn refusal_response(e: &anyhow::Error) -> Response {
    match e.downcast_ref::<Refusal>() {
        Some(r) => {
            error(StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN), format!("{e:#}"))
        }
        None => error(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}

/// The tenant and admin routes.
pub fn routes() -> Router<Arc<Coordinator>> {
    Router::new()
        .route("/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/v1/tenants/{name}", patch(update_tenant).delete(delete_tenant))
        .route("/v1/tenant", get(whoami))
        .route("/v1/tenant/metrics", get(own_metrics))
        .route("/v1/audit", get(audit))
}

/// Authenticates every request, refuses what the principal may not touch,
/// passes the [`Principal`] on to the handlers, and writes what changed
/// something to the audit log.
pub async fn guard(State(c): State<Arc<Coordinator>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(principal) = given.and_then(|t| c.tenants.authenticate(t, &c.options.token)) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token (send `Authorization: Bearer TOKEN`; the CLI reads \
             --token, FLINKW_TOKEN or the file `flinkw login` wrote)",
        );
    };
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if let Principal::Tenant(t) = &principal {
        let admin_only =
            path.starts_with("/v1/tenants") || path == "/v1/audit" || path == "/metrics";
        if admin_only {
            return error(
                StatusCode::FORBIDDEN,
                format!("{path} is for the admin (the coordinator's token), not tenant {t}"),
            );
        }
        if let Some(job) = job_in_path(&path)
            && let Some(owner) = owner_of(&c, job)
            && owner.as_deref() != Some(t.as_str())
        {
            return error(StatusCode::NOT_FOUND, format!("tenant {t} has no job {job}"));
        }
    }
    let mutating = method != Method::GET && method != Method::HEAD;
    if !mutating || path.starts_with("/v1/tenants") {
        let mut request = request;
        request.extensions_mut().insert(principal);
        return next.run(request).await;
    }
    // A change: note what was asked, and what was answered.
    let (parts, body) = request.into_parts();
    let mut plugin = None;
    let body = if path == "/v1/jobs" {
        let bytes = axum::body::to_bytes(body, 4 << 20).await.unwrap_or_default();
        plugin = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["plugin"].as_str().map(str::to_owned));
        Body::from(bytes)
    } else {
        body
    };
    let mut request = Request::from_parts(parts, body);
    request.extensions_mut().insert(principal.clone());
    let job = job_in_path(&path).map(str::to_owned);
    if let Some(j) = &job {
        plugin = c.jobs.lock().unwrap_or_else(|p| p.into_inner()).get(j).map(|e| e.plugin.clone());
    }
    let response = next.run(request).await;
    let status = response.status();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 4 << 20).await.unwrap_or_default();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let action = match path.as_str() {
        "/v1/plugins" => "upload".to_owned(),
        "/v1/jobs" => "deploy".to_owned(),
        p => p.rsplit('/').next().unwrap_or(p).to_owned(),
    };
    c.audit.append(&AuditEvent {
        time_ms: unix_ms(),
        tenant: principal.tenant().unwrap_or("admin").to_owned(),
        action,
        job: job.or_else(|| answer["job"].as_str().map(str::to_owned)),
        // An upgrade names the new plugin in its answer.
        plugin: answer["plugin"].as_str().map(str::to_owned).or(plugin),
        status: status.as_u16(),
        error: answer["error"].as_str().map(str::to_owned),
    });
    Response::from_parts(parts, Body::from(bytes))
}

/// The job id in `/v1/jobs/{id}[/...]`.
fn job_in_path(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/jobs/")?.split('/').next().filter(|s| !s.is_empty())
}

/// The owner of a job: `Some(None)` for the admin's, none if no such job.
fn owner_of(c: &Coordinator, job: &str) -> Option<Option<String>> {
    c.jobs.lock().unwrap_or_else(|p| p.into_inner()).get(job).map(|j| j.request.tenant.clone())
}

/// Resolves a tenant's job request before it is planned: default limits
/// from the quota, the plugin must be the tenant's, checkpoint and
/// savepoint paths inside the tenant's storage, clocks as its policy says.
/// The admin's requests get the defaults and are otherwise left alone.
pub(crate) fn resolve(
    c: &Coordinator,
    principal: &Principal,
    request: &mut JobRequest,
) -> anyhow::Result<()> {
    let Principal::Tenant(name) = principal else {
        request.tenant = None;
        request.memory_limit_mib = nonzero(request.memory_limit_mib, 512);
        request.call_timeout_ms = nonzero(request.call_timeout_ms, 10_000);
        request.clocks = Some(request.clocks.unwrap_or(true));
        return Ok(());
    };
    let tenant = c.tenants.get(name).ok_or_else(|| anyhow::anyhow!("no tenant {name}"))?;
    request.tenant = Some(name.clone());
    let q = tenant.quota;
    request.memory_limit_mib = nonzero(
        request.memory_limit_mib,
        usize::try_from(q.max_instance_memory_mib.min(512)).unwrap_or(512),
    );
    request.call_timeout_ms = nonzero(request.call_timeout_ms, q.max_call_ms.min(10_000));
    request.clocks = Some(tenant.policy.clocks);
    // A tenant's crash loop backs off: each quick failure in a row at
    // least doubles the wait before the next restart.
    request.restart_backoff = request.restart_backoff.max(TENANT_RESTART_BACKOFF);
    if !c.tenants.owns_plugin(name, &request.plugin) {
        anyhow::bail!("tenant {name} has not uploaded a plugin {}", request.plugin);
    }
    let ns = c.tenants.namespace(name);
    if let Some(dir) = &request.checkpoint_dir {
        request.checkpoint_dir = Some(ns.resolve(dir, "--checkpoint-dir")?);
    }
    if let Some(sp) = &request.from_savepoint {
        request.from_savepoint = Some(ns.resolve(sp, "--from-savepoint")?);
    }
    Ok(())
}

/// The least restart backoff factor of a tenant's job.
pub const TENANT_RESTART_BACKOFF: f64 = 2.0;

fn nonzero<T: PartialEq + Default>(v: T, default: T) -> T {
    if v == T::default() { default } else { v }
}

/// What `tenant`'s live jobs use.
pub(crate) fn usage(c: &Coordinator, tenant: &str) -> Usage {
    let jobs = c.jobs.lock().unwrap_or_else(|p| p.into_inner());
    let mut u = Usage::default();
    for j in jobs.values() {
        if j.request.tenant.as_deref() != Some(tenant) || j.lifecycle.state.is_terminal() {
            continue;
        }
        let ask = ask_of(j);
        u.jobs += 1;
        u.slots += ask.slots;
        u.memory_mib += u64::from(ask.instances) * ask.instance_memory_mib;
    }
    drop(jobs);
    u.checkpoint_bytes = folder_bytes(&c.tenants.namespace(tenant).root);
    u
}

fn ask_of(j: &JobEntry) -> Ask {
    Ask {
        slots: j.needs.iter().map(|t| t.parallelism).max().unwrap_or(1),
        instances: j.needs.iter().map(|t| t.parallelism).sum(),
        instance_memory_mib: (j.memory_limit >> 20) as u64,
        call_ms: j.call_timeout_ms,
    }
}

/// Lets a tenant's deploy go on to be planned, or refuses it (429) by the
/// crash-loop backoff or the deploy rate. Comes before the plugin is
/// compiled and planned, so each attempt — admitted later or not —
/// takes a deploy token: planning is work the coordinator does for the
/// tenant, and a refused deploy must not cost it.
pub(crate) fn before_plan(
    c: &Coordinator,
    request: &JobRequest,
    now_ms: u64,
) -> anyhow::Result<()> {
    let Some(name) = request.tenant.as_deref() else { return Ok(()) };
    let tenant = c.tenants.get(name).ok_or_else(|| anyhow::anyhow!("no tenant {name}"))?;
    c.tenants.check_crashes(name, &tenant.quota, now_ms)?;
    c.tenants.take_deploy(name, &tenant.quota, now_ms)?;
    Ok(())
}

/// Admits a planned job of a tenant against its quotas, or refuses it
/// before anything started. Holds the admission lock, returned, until the
/// job is registered.
pub(crate) fn admit<'a>(
    c: &'a Coordinator,
    entry: &JobEntry,
) -> anyhow::Result<Option<MutexGuard<'a, ()>>> {
    let Some(name) = entry.request.tenant.as_deref() else { return Ok(None) };
    let guard = c.tenants.admission.lock().unwrap_or_else(|p| p.into_inner());
    let tenant = c.tenants.get(name).ok_or_else(|| anyhow::anyhow!("no tenant {name}"))?;
    quota::admit(name, &tenant.quota, &usage(c, name), &ask_of(entry))?;
    Ok(Some(guard))
}

async fn list_tenants(State(c): State<Arc<Coordinator>>) -> Response {
    let all: Vec<Value> = c
        .tenants
        .list()
        .into_iter()
        .map(|t| {
            let u = usage(&c, &t.name);
            json!({
                "name": t.name,
                "quota": t.quota,
                "policy": t.policy,
                "created_ms": t.created_ms,
                "usage": usage_json(&u, &consumed(&c, &t.name)),
            })
        })
        .collect();
    Json(all).into_response()
}

/// What a tenant's jobs have used and use now, as their subtasks report
/// it (not a quota's bookkeeping: measured).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Consumed {
    /// CPU time of its subtask threads, every job and attempt, s.
    pub cpu_seconds: f64,
    /// CPU time the coordinator spent planning its deploys, s.
    pub plan_cpu_seconds: f64,
    /// Linear memory of its running plugin instances, bytes.
    pub memory_bytes: u64,
    /// Its subtasks that run.
    pub running_subtasks: u64,
}

/// What `tenant`'s jobs have used ([`Consumed`]).
pub(crate) fn consumed(c: &Coordinator, tenant: &str) -> Consumed {
    let jobs = c.jobs.lock().unwrap_or_else(|p| p.into_inner());
    let mut cpu_ns = 0;
    let mut out = Consumed::default();
    for j in jobs.values().filter(|j| j.request.tenant.as_deref() == Some(tenant)) {
        cpu_ns += j.observed.earlier_cpu_ns();
        let live = !j.lifecycle.state.is_terminal();
        for o in j.observed.subtasks() {
            cpu_ns += o.sample.cpu_ns;
            if live && !o.sample.ended {
                out.memory_bytes += o.sample.memory_bytes;
                out.running_subtasks += 1;
            }
        }
    }
    drop(jobs);
    out.cpu_seconds = cpu_ns as f64 / 1e9;
    out.plan_cpu_seconds = c.tenants.plan_cpu_ns(tenant) as f64 / 1e9;
    out
}

fn usage_json(u: &Usage, m: &Consumed) -> Value {
    json!({
        "jobs": u.jobs,
        "slots": u.slots,
        "memory_mib": u.memory_mib,
        "checkpoint_bytes": u.checkpoint_bytes,
        "cpu_seconds": m.cpu_seconds,
        "plan_cpu_seconds": m.plan_cpu_seconds,
        "memory_bytes": m.memory_bytes,
        "running_subtasks": m.running_subtasks,
    })
}

/// Overlays the fields of `patch` on `value` (both serialized as JSON),
/// refusing unknown fields.
fn overlay<T: serde::Serialize + serde::de::DeserializeOwned>(
    value: &T,
    patch: &Value,
    what: &str,
) -> anyhow::Result<T> {
    let mut v = serde_json::to_value(value)?;
    if let Some(fields) = patch.as_object() {
        for (k, x) in fields {
            let key = k.replace('-', "_");
            if v.get(&key).is_none() {
                anyhow::bail!("no {what} field {k:?}");
            }
            v[key] = x.clone();
        }
    } else if !patch.is_null() {
        anyhow::bail!("the {what} must be a JSON object");
    }
    serde_json::from_value(v).map_err(|e| anyhow::anyhow!("a bad {what}: {e}"))
}

fn note(c: &Coordinator, action: &str, name: &str, status: StatusCode, err: Option<String>) {
    c.audit.append(&AuditEvent {
        time_ms: unix_ms(),
        tenant: "admin".into(),
        action: format!("{action} {name}"),
        job: None,
        plugin: None,
        status: status.as_u16(),
        error: err,
    });
}

async fn create_tenant(State(c): State<Arc<Coordinator>>, Json(body): Json<Value>) -> Response {
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    let made = overlay(&Quota::default(), &body["quota"], "quota")
        .and_then(|q| Ok((q, overlay(&Policy::default(), &body["policy"], "policy")?)))
        .and_then(|(q, p)| Ok((q, p, c.tenants.create(&name, q, p)?)));
    match made {
        Ok((quota, policy, token)) => {
            note(&c, "tenant-create", &name, StatusCode::CREATED, None);
            let storage = c.tenants.namespace(&name).root;
            (
                StatusCode::CREATED,
                Json(json!({
                    "name": name, "token": token, "quota": quota, "policy": policy,
                    "storage": storage,
                })),
            )
                .into_response()
        }
        Err(e) => {
            note(&c, "tenant-create", &name, StatusCode::BAD_REQUEST, Some(format!("{e:#}")));
            error(StatusCode::BAD_REQUEST, format!("{e:#}"))
        }
    }
}

async fn update_tenant(
    State(c): State<Arc<Coordinator>>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let Some(t) = c.tenants.get(&name) else {
        return error(StatusCode::NOT_FOUND, format!("no tenant {name}"));
    };
    let changed = overlay(&t.quota, &body["quota"], "quota")
        .and_then(|q| Ok((q, overlay(&t.policy, &body["policy"], "policy")?)))
        .and_then(|(q, p)| {
            c.tenants.update(&name, |quota, policy| {
                *quota = q;
                *policy = p;
            })
        });
    match changed {
        Ok(t) => {
            note(&c, "tenant-set", &name, StatusCode::OK, None);
            Json(json!({ "name": t.name, "quota": t.quota, "policy": t.policy })).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}

async fn delete_tenant(State(c): State<Arc<Coordinator>>, Path(name): Path<String>) -> Response {
    match c.tenants.delete(&name) {
        Ok(true) => {
            // Its token no longer works; its live jobs stop.
            let live: Vec<String> = c
                .jobs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|j| {
                    j.request.tenant.as_deref() == Some(name.as_str())
                        && !j.lifecycle.state.is_terminal()
                })
                .map(|j| j.id.clone())
                .collect();
            for id in &live {
                c.event(id, Event::Cancel);
            }
            note(&c, "tenant-delete", &name, StatusCode::OK, None);
            Json(json!({ "deleted": name, "cancelled": live })).into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no tenant {name}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn whoami(State(c): State<Arc<Coordinator>>, Extension(p): Extension<Principal>) -> Response {
    match p {
        Principal::Admin => Json(json!({ "role": "admin" })).into_response(),
        Principal::Tenant(name) => {
            let Some(t) = c.tenants.get(&name) else {
                return error(StatusCode::UNAUTHORIZED, format!("tenant {name} was deleted"));
            };
            let u = usage(&c, &name);
            Json(json!({
                "role": "tenant",
                "tenant": name,
                "quota": t.quota,
                "policy": t.policy,
                "usage": usage_json(&u, &consumed(&c, &name)),
                "storage": c.tenants.namespace(&name).root,
            }))
            .into_response()
        }
    }
}

/// `GET /v1/tenant/metrics`: Prometheus text of the caller's jobs only —
/// per subtask, checkpoint and job, and its own per-tenant sums (CPU
/// seconds, memory) with the coordinator's planning CPU. The admin gets
/// every job's.
async fn own_metrics(
    State(c): State<Arc<Coordinator>>,
    Extension(p): Extension<Principal>,
) -> Response {
    use std::fmt::Write;
    let mut out = match &p {
        Principal::Admin => crate::ui::prometheus(&c, &|_| true),
        Principal::Tenant(name) => crate::ui::prometheus(&c, &|t| t == Some(name.as_str())),
    };
    let tenants: Vec<String> = match p {
        Principal::Admin => c.tenants.list().into_iter().map(|t| t.name).collect(),
        Principal::Tenant(name) => vec![name],
    };
    out.push_str(PLAN_CPU_HELP);
    for t in tenants {
        let secs = c.tenants.plan_cpu_ns(&t) as f64 / 1e9;
        let _ = writeln!(out, "flinkw_tenant_plan_cpu_seconds_total{{tenant=\"{t}\"}} {secs:.6}");
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

const PLAN_CPU_HELP: &str = "# HELP flinkw_tenant_plan_cpu_seconds_total CPU time the \
    coordinator spent planning a tenant's deploys (admitted or not).\n\
    # TYPE flinkw_tenant_plan_cpu_seconds_total counter\n";

async fn audit(State(c): State<Arc<Coordinator>>, uri: axum::http::Uri) -> Response {
    let (mut tenant, mut limit) = (None, 1000);
    for pair in uri.query().unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("tenant", t)) => tenant = Some(t.to_owned()),
            Some(("limit", n)) => match n.parse() {
                Ok(n) => limit = n,
                Err(_) => {
                    return error(StatusCode::BAD_REQUEST, format!("limit={n} is not a number"));
                }
            },
            _ => {}
        }
    }
    Json(c.audit.read(tenant.as_deref(), limit)).into_response()
}

/// Checks an upload against the tenant's plugin size quota.
pub fn admit_upload(c: &Coordinator, principal: &Principal, bytes: usize) -> anyhow::Result<()> {
    if let Principal::Tenant(name) = principal {
        let t = c.tenants.get(name).ok_or_else(|| anyhow::anyhow!("no tenant {name}"))?;
        quota::admit_plugin(name, &t.quota, bytes)?;
    }
    Ok(())
}

/// Records that the tenant uploaded plugin `hash`.
pub fn uploaded(c: &Coordinator, principal: &Principal, hash: &str) -> anyhow::Result<()> {
    match principal {
        Principal::Tenant(name) => c.tenants.own_plugin(name, hash),
        Principal::Admin => Ok(()),
    }
}

/// Prometheus text per tenant (appended to `/metrics`): live jobs, slots,
/// the memory their instances may take and checkpoint bytes, and the quota
/// of each.
pub fn metrics_text(c: &Coordinator) -> String {
    use std::fmt::Write;
    let tenants = c.tenants.list();
    if tenants.is_empty() {
        return String::new();
    }
    let (mut used, mut quota, mut plan) = (String::new(), String::new(), String::new());
    for t in tenants {
        let secs = c.tenants.plan_cpu_ns(&t.name) as f64 / 1e9;
        let _ = writeln!(
            plan,
            "flinkw_tenant_plan_cpu_seconds_total{{tenant=\"{}\"}} {secs:.6}",
            t.name
        );
        let u = usage(c, &t.name);
        let q = t.quota;
        let rows = [
            ("jobs", u64::from(u.jobs), u64::from(q.max_jobs)),
            ("slots", u64::from(u.slots), u64::from(q.max_slots)),
            ("memory_bytes", u.memory_mib << 20, q.max_total_memory_mib << 20),
            ("checkpoint_bytes", u.checkpoint_bytes, q.max_checkpoint_mib << 20),
        ];
        for (what, u, q) in rows {
            let labels = format!("tenant=\"{}\",what=\"{what}\"", t.name);
            let _ = writeln!(used, "flinkw_tenant_usage{{{labels}}} {u}");
            let _ = writeln!(quota, "flinkw_tenant_quota{{{labels}}} {q}");
        }
    }
    format!(
        "# HELP flinkw_tenant_usage What each tenant's live jobs use.\n\
         # TYPE flinkw_tenant_usage gauge\n{used}\
         # HELP flinkw_tenant_quota Each tenant's quota.\n\
         # TYPE flinkw_tenant_quota gauge\n{quota}{PLAN_CPU_HELP}{plan}"
    )
}
