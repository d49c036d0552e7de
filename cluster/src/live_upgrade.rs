//! Live plugin upgrade on a cluster: a running job moves to a new version
//! of its plugin at a checkpoint barrier, without stopping its sources.
//!
//! `POST /v1/jobs/{id}/upgrade` with `{"plugin": HASH}` (a plugin uploaded
//! before) compiles and plans the new plugin here; it must give the same
//! job graph at the same parallelism ([`upgrade_fit`]). The job's
//! checkpoint coordinator then starts a checkpoint at once and marks it as
//! the upgrade's; its barrier carries the new plugin's hash to the
//! workers, which load the plugin before they inject it. At the barrier
//! each subtask with guest code takes its snapshot as usual, then goes on
//! with an instance of the new plugin holding the guest state it just
//! snapshotted (through the plugin's `migrate` when the version differs).
//! Keyed state, timers and windows stay where they are.
//!
//! How it ends ([`UpgradeResult`]) is settled by the coordinator's clock:
//! committed (the job's record names the new plugin from then on, so
//! restarts use it), refused (every subtask kept the old plugin, e.g. its
//! `migrate` said no: the job goes on as it was), or failed (some switched
//! and some did not, or the checkpoint failed after a switch: the job
//! starts again from its newest complete checkpoint, which holds the old
//! plugin's state, with the old plugin). No checkpoint after the
//! upgrade's is taken before it is settled, so no checkpoint ever holds
//! the new plugin's state while the job's record names the old one.

use flinkw_host::runtime::{Fit, UpgradeResult, plan_job, upgrade_fit};
use serde::Serialize;

use crate::coordinator::Coordinator;
use crate::lifecycle::{Event, JobState};

/// A job's newest live upgrade, as clients see it (`upgrade` in the job's
/// status).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpgradeStatus {
    /// Counts the job's upgrades (1 = the first).
    pub number: u32,
    /// The new plugin's SHA-256.
    pub plugin: String,
    /// The plugin the job ran before.
    pub from_plugin: String,
    /// `pending`, `committed`, `refused` or `failed`.
    pub state: &'static str,
    /// The upgrade's checkpoint, once triggered.
    pub checkpoint: Option<u64>,
    /// Subtasks that switched to the new plugin.
    pub swapped: usize,
    /// The longest a subtask held its records at the barrier (snapshot
    /// and swap), ms.
    pub pause_ms: f64,
    /// Why it was refused or failed.
    pub message: Option<String>,
    /// The attempt it was asked in.
    #[serde(skip)]
    attempt: u32,
}

/// Why an upgrade was not begun, with the HTTP status to answer.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UpgradeRefusal {
    /// 404 (no such job), 409 (not now), 400 (the plugin cannot do it).
    pub status: u16,
    /// What to tell the user.
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> UpgradeRefusal {
    UpgradeRefusal { status, message: message.into() }
}

impl Coordinator {
    /// Begins a live upgrade of job `id` to the uploaded plugin `hash`;
    /// returns its status (`pending`). The plugin is compiled and planned
    /// here first: one that cannot run the job is refused before anything
    /// changes.
    pub fn upgrade(&self, id: &str, hash: &str) -> Result<UpgradeStatus, UpgradeRefusal> {
        let (request, config, graph, attempt) = {
            let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let j = jobs.get(id).ok_or_else(|| refuse(404, format!("no job {id}")))?;
            self.may_upgrade(j, id, hash)?;
            (j.request.clone(), j.job_config.clone(), j.graph.clone(), j.lifecycle.attempt)
        };
        // An upgrade compiles and plans like a deploy: a tenant's takes a
        // deploy token (its rate quota) and waits out a crash-loop backoff.
        crate::tenant_api::before_plan(self, &request, self.now_ms()).map_err(|e| {
            let status = e.downcast_ref::<crate::quota::Refusal>().map_or(403, |r| r.status);
            refuse(status, format!("{e:#}"))
        })?;
        // Compiling and planning run the tenant's code: outside the lock.
        let cpu = flinkw_host::runtime::thread_cpu_ns();
        let planned = self
            .load_plugin(hash, &request)
            .map_err(|e| format!("cannot load plugin {hash}: {e:#}"))
            .and_then(|p| {
                plan_job(&p, &config)
                    .map_err(|e| format!("plugin {hash} cannot plan job {id}: {e}"))
            });
        if let Some(t) = &request.tenant {
            let used = flinkw_host::runtime::thread_cpu_ns().saturating_sub(cpu);
            self.tenants.charge_plan(t, used);
        }
        let new_graph = planned.map_err(|m| refuse(400, m))?;
        match upgrade_fit(&graph, &new_graph, &config) {
            Ok(Fit::Live) => {}
            Ok(Fit::Rescale(why)) => {
                return Err(refuse(
                    400,
                    format!(
                        "plugin {hash} cannot replace job {id}'s plugin live: {why}; \
                         `flinkw upgrade --via-savepoint` moves the job through a savepoint, \
                         which can change parallelism"
                    ),
                ));
            }
            Ok(Fit::Other(why)) => {
                return Err(refuse(
                    400,
                    format!("plugin {hash} cannot replace job {id}'s plugin: {why}"),
                ));
            }
            Err(e) => return Err(refuse(400, format!("plugin {hash} cannot run job {id}: {e}"))),
        }
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let j = jobs.get_mut(id).ok_or_else(|| refuse(404, format!("no job {id}")))?;
        self.may_upgrade(j, id, hash)?;
        if j.lifecycle.attempt != attempt {
            return Err(refuse(
                409,
                format!("job {id} restarted while the plugin was planned; try again"),
            ));
        }
        let checkpoints = j.checkpoints.clone().ok_or_else(|| refuse(409, "no checkpoints"))?;
        checkpoints.request_upgrade(hash).map_err(|m| refuse(409, format!("job {id}: {m}")))?;
        let status = UpgradeStatus {
            number: j.upgrade.as_ref().map_or(1, |u| u.number + 1),
            plugin: hash.to_owned(),
            from_plugin: j.plugin.clone(),
            state: "pending",
            checkpoint: None,
            swapped: 0,
            pause_ms: 0.0,
            message: None,
            attempt,
        };
        tracing::info!(job = id, from = %j.plugin, to = hash, "live upgrade asked for");
        j.upgrade = Some(status.clone());
        Ok(status)
    }

    /// Whether job `j` can begin moving to plugin `hash` now.
    fn may_upgrade(
        &self,
        j: &crate::coordinator::JobEntry,
        id: &str,
        hash: &str,
    ) -> Result<(), UpgradeRefusal> {
        if !matches!(j.lifecycle.state, JobState::Running { .. }) {
            return Err(refuse(
                409,
                format!(
                    "job {id} is {}, not running: a live upgrade switches a running job's plugin",
                    j.lifecycle.state.name()
                ),
            ));
        }
        let Some(checkpoints) = &j.checkpoints else {
            return Err(refuse(
                409,
                format!(
                    "job {id} has no checkpoint folder: a live upgrade happens at a checkpoint \
                     barrier (deploy the job with --checkpoint-dir)"
                ),
            ));
        };
        if j.plugin == hash {
            return Err(refuse(409, format!("job {id} already runs plugin {hash}")));
        }
        if checkpoints.upgrade_pending() || j.upgrade.as_ref().is_some_and(|u| u.state == "pending")
        {
            return Err(refuse(409, format!("job {id}: another live upgrade is under way")));
        }
        Ok(())
    }

    /// Settles the live upgrades that ended (called by the clock): records
    /// the new plugin of a committed one, lets checkpoints go on, and
    /// restarts the job after a failed one.
    pub(crate) fn settle_upgrades(&self) {
        let mut failovers = Vec::new();
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            for j in jobs.values_mut() {
                let Some(u) = j.upgrade.as_mut().filter(|u| u.state == "pending") else {
                    continue;
                };
                let running = matches!(j.lifecycle.state, JobState::Running { .. });
                let checkpoints = j.checkpoints.clone().filter(|_| running);
                let Some(c) = checkpoints.filter(|_| j.lifecycle.attempt == u.attempt) else {
                    // The attempt ended first: no checkpoint holds the new
                    // plugin's state, and the job's record names the old one.
                    u.state = "failed";
                    u.message = Some(format!(
                        "job {} was {} before the upgrade ended; it runs plugin {}, the old one",
                        j.id,
                        j.lifecycle.state.name(),
                        u.from_plugin
                    ));
                    continue;
                };
                let Some(outcome) = c.upgrade_outcome() else {
                    if let Some((id, _)) = c.upgrade_barrier() {
                        u.checkpoint = Some(id);
                    }
                    continue;
                };
                u.checkpoint = Some(outcome.checkpoint).filter(|id| *id > 0);
                u.swapped = outcome.swapped;
                u.pause_ms = outcome.pause_us as f64 / 1000.0;
                match outcome.result {
                    UpgradeResult::Committed => {
                        u.state = "committed";
                        let plugin = u.plugin.clone();
                        tracing::info!(job = %j.id, %plugin, "live upgrade committed");
                        j.plugin = plugin.clone();
                        j.request.plugin = plugin;
                        self.persist(j);
                        c.release_upgrade();
                    }
                    UpgradeResult::Refused(why) => {
                        u.state = "refused";
                        tracing::warn!(job = %j.id, %why, "live upgrade refused");
                        u.message = Some(format!("{why}; the job goes on with the old plugin"));
                        c.release_upgrade();
                    }
                    UpgradeResult::Failed(why) => {
                        u.state = "failed";
                        tracing::warn!(job = %j.id, %why, "live upgrade failed");
                        u.message = Some(format!(
                            "{why}; the job starts again from its newest complete checkpoint \
                             with the old plugin"
                        ));
                        failovers.push((j.id.clone(), why));
                    }
                }
            }
        }
        for (id, why) in failovers {
            self.event(&id, Event::Failover { error: format!("live upgrade failed: {why}") });
        }
    }
}
