//! Live plugin upgrade at a checkpoint barrier.
//!
//! A running job's plugin is replaced without stopping its sources: the new
//! plugin is compiled and planned where the job runs (it must give the same
//! job graph), then one checkpoint is marked as the upgrade's. At its
//! barrier each subtask with guest code takes its snapshot as usual, makes
//! an instance of the new plugin, restores the guest state it holds into it
//! (through the plugin's `migrate` when the version differs) and goes on
//! with it; keyed state, timers and windows stay where they are. Each
//! subtask reports a [`Swap`]; the checkpoint coordinator turns them and
//! the checkpoint's own fate into one [`UpgradeResult`] ([`decide`], pure),
//! and holds further checkpoints until the job's owner has recorded it.
//!
//! The checkpoint of the barrier holds the old plugin's state, so either
//! plugin can restore from it; checkpoints after it hold the new one's and
//! are only taken once the owner made the new plugin the job's.

use serde::{Deserialize, Serialize};

use crate::config::JobConfig;
use crate::graph::JobGraph;
use crate::plugin::Plugin;

/// What one subtask did at an upgrade's barrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Swap {
    /// The subtask runs no guest code: nothing to replace.
    NoGuest,
    /// It goes on with an instance of the new plugin.
    Swapped {
        /// How long the swap held the subtask's records, µs.
        micros: u64,
        /// The version of the state it carried over (`None`: unversioned).
        from: Option<String>,
        /// The new plugin's version.
        to: Option<String>,
    },
    /// It kept its instance of the old plugin: the new one could not be
    /// made or could not take the state (e.g. its `migrate` refused it).
    Refused {
        /// The subtask and the plugin's message.
        reason: String,
    },
}

/// How a live upgrade ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpgradeResult {
    /// Every subtask runs the new plugin and the upgrade's checkpoint is
    /// complete: the new plugin is the job's.
    Committed,
    /// No subtask switched (each kept the old plugin); the job goes on as
    /// it was.
    Refused(String),
    /// Some subtasks switched and others did not, or the checkpoint did not
    /// complete: the job must go back to the old plugin from its newest
    /// complete checkpoint.
    Failed(String),
}

/// The upgrade of one checkpoint coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UpgradeSlot {
    /// None asked for.
    #[default]
    Idle,
    /// The next checkpoint is the upgrade's.
    Requested,
    /// Checkpoint `id` is the upgrade's and under way.
    Barrier(u64),
    /// It ended; no checkpoint starts until the owner releases it.
    Done(UpgradeOutcome),
}

/// The end of a live upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeOutcome {
    /// The upgrade's checkpoint.
    pub checkpoint: u64,
    /// What happened.
    pub result: UpgradeResult,
    /// The longest a subtask held its records at the barrier: its
    /// synchronous snapshot plus the swap, µs.
    pub pause_us: u64,
    /// Subtasks that switched to the new plugin.
    pub swapped: usize,
}

/// A job's live upgrade, as the checkpoint coordinator and the subtasks
/// of one process see it.
#[derive(Default)]
pub(crate) struct UpgradeCell {
    /// Where the upgrade is (the coordinator's side).
    pub slot: UpgradeSlot,
    /// The new plugin's SHA-256: what the upgrade's barrier carries to the
    /// workers.
    pub plugin: String,
    /// For the subtasks in this process: the upgrade's checkpoint and the
    /// new plugin, loaded here (or why it could not be).
    pub local: Option<(u64, Result<Plugin, String>)>,
}

impl UpgradeCell {
    /// The new plugin if checkpoint `id` is the upgrade's here.
    pub fn at(&self, id: u64) -> Option<&Result<Plugin, String>> {
        self.local.as_ref().filter(|(at, _)| *at == id).map(|(_, p)| p)
    }
}

/// Decides an upgrade from every subtask's [`Swap`] and whether the
/// upgrade's checkpoint completed (`Err`: why not).
pub fn decide(swaps: &[Swap], checkpoint: Result<(), String>) -> UpgradeResult {
    let refusals: Vec<&str> = swaps
        .iter()
        .filter_map(|s| match s {
            Swap::Refused { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    let swapped = swaps.iter().filter(|s| matches!(s, Swap::Swapped { .. })).count();
    match (checkpoint, refusals.first()) {
        (Ok(()), None) => UpgradeResult::Committed,
        (_, Some(first)) if swapped == 0 => UpgradeResult::Refused((*first).to_owned()),
        (Ok(()), Some(first)) => UpgradeResult::Failed(format!(
            "{first} ({swapped} other subtask(s) had switched to the new plugin)"
        )),
        (Err(why), _) if swapped == 0 => UpgradeResult::Refused(why),
        (Err(why), _) => UpgradeResult::Failed(format!(
            "the upgrade's checkpoint did not complete: {why} ({swapped} subtask(s) had \
             switched to the new plugin)"
        )),
    }
}

/// Whether a new plugin's graph can replace a running job's at a barrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// Same graph, same parallelism: a live upgrade.
    Live,
    /// Same shape, other parallelism: only through a savepoint (stop and
    /// start again), which moves key groups.
    Rescale(String),
    /// Another job graph: its state cannot carry over at all.
    Other(String),
}

/// Compares a new plugin's job graph with the running job's.
pub fn fit(running: &JobGraph, new: &JobGraph, config: &JobConfig) -> Result<Fit, super::JobError> {
    let old_plan = super::physical_plan(running, config.parallelism)?;
    let new_plan = super::physical_plan(new, config.parallelism)?;
    let shape = |g, p| super::checkpointing::shape(g, p, config);
    let print = |g: &JobGraph| {
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        format!("{} operators [{}], {} edges", names.len(), names.join(", "), g.edges.len())
    };
    if shape(running, &old_plan) != shape(new, &new_plan) {
        let (new, old) = (print(new), print(running));
        let detail = if new == old {
            "the operators' settings or edges differ".to_owned()
        } else {
            format!("{new} instead of {old}")
        };
        return Ok(Fit::Other(format!(
            "its job graph differs from the running job's ({detail}), so the job's state \
             cannot carry over"
        )));
    }
    let p = |plan: &super::PhysicalPlan| plan.tasks.iter().map(|t| t.parallelism).collect();
    let (old_p, new_p): (Vec<u32>, Vec<u32>) = (p(&old_plan), p(&new_plan));
    if old_p != new_p {
        return Ok(Fit::Rescale(format!(
            "it runs its tasks at parallelism {new_p:?} instead of {old_p:?}"
        )));
    }
    Ok(Fit::Live)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swapped() -> Swap {
        Swap::Swapped { micros: 10, from: Some("1".into()), to: Some("2".into()) }
    }

    fn refused(why: &str) -> Swap {
        Swap::Refused { reason: why.into() }
    }

    #[test]
    fn every_subtask_switched_and_the_checkpoint_completed_commits() {
        assert_eq!(
            decide(&[swapped(), Swap::NoGuest, swapped()], Ok(())),
            UpgradeResult::Committed
        );
        // A job whose subtasks run no guest code switches trivially.
        assert_eq!(decide(&[Swap::NoGuest], Ok(())), UpgradeResult::Committed);
    }

    #[test]
    fn refused_everywhere_leaves_the_job_as_it_was() {
        let r = decide(&[refused("migrate said no"), Swap::NoGuest, refused("again")], Ok(()));
        assert_eq!(r, UpgradeResult::Refused("migrate said no".into()));
        // A failed checkpoint where nothing switched needs no recovery either.
        let r = decide(&[refused("no"), refused("no")], Err("timeout".into()));
        assert_eq!(r, UpgradeResult::Refused("no".into()));
        assert_eq!(
            decide(&[], Err("store down".into())),
            UpgradeResult::Refused("store down".into())
        );
    }

    #[test]
    fn a_mix_or_a_failed_checkpoint_after_a_switch_needs_recovery() {
        let r = decide(&[swapped(), refused("trap in restore")], Ok(()));
        assert!(matches!(&r, UpgradeResult::Failed(m) if m.contains("trap in restore")), "{r:?}");
        let r = decide(&[swapped(), swapped()], Err("store down".into()));
        assert!(matches!(&r, UpgradeResult::Failed(m) if m.contains("store down")), "{r:?}");
    }
}
