//! # flinkw-cluster
//!
//! The cluster: a coordinator that accepts jobs over a REST API, plans and
//! schedules them, and workers that run their subtasks, all talking QUIC
//! with mutual TLS. Records move worker to worker on one QUIC stream per
//! channel, so QUIC's flow control is the backpressure.
//!
//! - [`tls`]: development certificates and the QUIC endpoints.
//! - [`control`]: the messages between coordinator and workers.
//! - [`lifecycle`] and [`scheduler`]: pure cores (a job's states, slot placement).
//! - [`coordinator`], [`worker`], [`rest`]: the processes.
//! - [`client`]: what `flinkw deploy/list/status/cancel` use.
//! - [`tenant`], [`quota`], [`tenant_api`], [`audit`], [`compile_guard`]:
//!   multi-tenant hosting (tokens, quotas, isolation, the audit log);
//!   [`cpu_groups`]: per-tenant CPU shares on a worker (cgroups).
//! - [`metrics`], [`logs`], [`otlp`], [`ui`], [`progress`]: observability
//!   (per-subtask metrics, Prometheus text, log capture, OpenTelemetry
//!   export, the web UI, the CLI's spinner).

pub mod audit;
pub mod client;
pub mod compile_guard;
pub mod control;
pub mod coordinator;
pub mod cpu_groups;
pub mod data;
pub mod lifecycle;
pub mod live_upgrade;
pub mod logs;
pub mod metrics;
pub mod otlp;
pub mod progress;
pub mod quota;
pub mod records;
pub mod rest;
pub mod scheduler;
pub mod tenant;
pub mod tenant_api;
pub mod tls;
pub mod ui;
pub mod worker;
