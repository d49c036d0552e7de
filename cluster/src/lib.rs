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

pub mod client;
pub mod control;
pub mod coordinator;
pub mod data;
pub mod lifecycle;
pub mod rest;
pub mod scheduler;
pub mod tls;
pub mod worker;
