//! A job's life on the coordinator, as an explicit state machine.
//!
//! Pure and IO-free: the coordinator feeds it events (a worker is ready,
//! finished, failed or lost; a user cancels; time passes) and carries out
//! the actions it returns (schedule, start, cancel). Time is a number of
//! milliseconds given by the caller, so tests drive it with a virtual clock.
//!
//! ```text
//! created ──schedule──▶ scheduling ──all ready──▶ running ──all finished──▶ finished
//!                           │                        │
//!                           └──── failure / lost ────┴──▶ failing ──all stopped──▶ restarting ──delay──▶ scheduling
//!                                                             └──no attempts left──▶ failed
//! any live state ──cancel──▶ cancelled
//! ```

use std::collections::BTreeSet;

use serde::Serialize;

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, not placed yet.
    Created,
    /// Placed; waiting for the workers to set up their subtasks.
    Scheduling {
        /// Workers not ready yet.
        waiting: BTreeSet<u32>,
    },
    /// Every subtask runs.
    Running {
        /// Workers whose subtasks have not finished.
        running: BTreeSet<u32>,
    },
    /// A part failed; the other workers are stopping theirs.
    Failing {
        /// The first failure.
        error: String,
        /// Whether it may pass on a new attempt.
        restartable: bool,
        /// Workers still stopping.
        waiting: BTreeSet<u32>,
    },
    /// Waiting before the next attempt (or for free slots).
    Restarting {
        /// The failure that caused it.
        error: String,
        /// When to schedule again (ms on the caller's clock).
        at_ms: u64,
    },
    /// Every subtask finished.
    Finished,
    /// A user cancelled it.
    Cancelled,
    /// It failed for good.
    Failed {
        /// Why.
        error: String,
    },
}

impl JobState {
    /// The state's name, as users see it.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Created => "created",
            JobState::Scheduling { .. } => "scheduling",
            JobState::Running { .. } => "running",
            JobState::Failing { .. } => "failing",
            JobState::Restarting { .. } => "restarting",
            JobState::Finished => "finished",
            JobState::Cancelled => "cancelled",
            JobState::Failed { .. } => "failed",
        }
    }

    /// Whether the job is over.
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobState::Finished | JobState::Cancelled | JobState::Failed { .. })
    }
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The coordinator placed the attempt on these workers and sent them
    /// its deployment.
    Placed {
        /// The workers with subtasks.
        workers: BTreeSet<u32>,
    },
    /// There were not enough slots to place it.
    NoSlots {
        /// The scheduler's message.
        reason: String,
    },
    /// A worker set up its subtasks.
    Ready(u32),
    /// A worker's subtasks finished.
    Finished(u32),
    /// A worker's part failed.
    Failed {
        /// The worker.
        worker: u32,
        /// Its error.
        error: String,
        /// Whether running again may help.
        restartable: bool,
    },
    /// A worker stopped answering or disconnected.
    WorkerLost(u32),
    /// A user cancels the job.
    Cancel,
    /// Time passed.
    Tick,
}

/// What the coordinator must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Place the next attempt and deploy it.
    Schedule,
    /// Tell these workers to start.
    Start(BTreeSet<u32>),
    /// Tell these workers to stop their subtasks.
    Cancel(BTreeSet<u32>),
}

/// A job's state, attempt count and restart policy.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// The current state.
    pub state: JobState,
    /// The current attempt (0 = first).
    pub attempt: u32,
    /// Restarts allowed after failures.
    pub restarts: u32,
    /// Wait before a restart, and between tries to find free slots.
    pub restart_delay_ms: u64,
    /// The workers of the current attempt.
    pub workers: BTreeSet<u32>,
}

impl Lifecycle {
    /// A new job.
    pub fn new(restarts: u32, restart_delay_ms: u64) -> Lifecycle {
        Lifecycle {
            state: JobState::Created,
            attempt: 0,
            restarts,
            restart_delay_ms,
            workers: BTreeSet::new(),
        }
    }

    /// The first step: schedule the job.
    pub fn start(&self) -> Vec<Action> {
        vec![Action::Schedule]
    }

    /// Applies `event` at time `now_ms` and returns what to do.
    pub fn on(&mut self, event: Event, now_ms: u64) -> Vec<Action> {
        use JobState as S;
        let state = std::mem::replace(&mut self.state, S::Created);
        let (next, actions) = match (state, event) {
            (s, _) if s.is_terminal() => (s, vec![]),
            (S::Scheduling { waiting } | S::Running { running: waiting }, Event::Cancel)
            | (S::Failing { waiting, .. }, Event::Cancel) => {
                (S::Cancelled, vec![Action::Cancel(waiting)])
            }
            (_, Event::Cancel) => (S::Cancelled, vec![]),
            (S::Created, Event::Placed { workers }) => self.placed(workers),
            (S::Restarting { .. }, Event::Placed { workers }) => self.placed(workers),
            (S::Created, Event::NoSlots { reason }) => (S::Failed { error: reason }, vec![]),
            (S::Restarting { .. }, Event::NoSlots { reason }) => {
                (S::Restarting { error: reason, at_ms: now_ms + self.restart_delay_ms }, vec![])
            }
            (S::Scheduling { mut waiting }, Event::Ready(w)) => {
                waiting.remove(&w);
                if waiting.is_empty() {
                    let all = self.workers.clone();
                    (S::Running { running: all.clone() }, vec![Action::Start(all)])
                } else {
                    (S::Scheduling { waiting }, vec![])
                }
            }
            (S::Running { mut running }, Event::Finished(w)) => {
                running.remove(&w);
                if running.is_empty() {
                    (S::Finished, vec![])
                } else {
                    (S::Running { running }, vec![])
                }
            }
            (
                S::Scheduling { mut waiting } | S::Running { running: mut waiting },
                Event::Failed { worker, error, restartable },
            ) => {
                waiting.remove(&worker);
                self.failing(error, restartable, waiting, now_ms)
            }
            (
                S::Scheduling { mut waiting } | S::Running { running: mut waiting },
                Event::WorkerLost(w),
            ) if waiting.contains(&w) => {
                waiting.remove(&w);
                let error = format!("worker {w} was lost");
                self.failing(error, true, waiting, now_ms)
            }
            (
                S::Failing { error, restartable, mut waiting },
                Event::Finished(w) | Event::Failed { worker: w, .. } | Event::WorkerLost(w),
            ) => {
                waiting.remove(&w);
                if waiting.is_empty() {
                    (self.after_failure(error, restartable, now_ms), vec![])
                } else {
                    (S::Failing { error, restartable, waiting }, vec![])
                }
            }
            (S::Restarting { error, at_ms }, Event::Tick) => {
                if now_ms >= at_ms {
                    // Stays `restarting` until the coordinator reports
                    // where it placed the new attempt.
                    (S::Restarting { error, at_ms: u64::MAX }, vec![Action::Schedule])
                } else {
                    (S::Restarting { error, at_ms }, vec![])
                }
            }
            (s, _) => (s, vec![]),
        };
        self.state = next;
        actions
    }

    fn placed(&mut self, workers: BTreeSet<u32>) -> (JobState, Vec<Action>) {
        self.workers = workers.clone();
        (JobState::Scheduling { waiting: workers }, vec![])
    }

    fn failing(
        &mut self,
        error: String,
        restartable: bool,
        others: BTreeSet<u32>,
        now_ms: u64,
    ) -> (JobState, Vec<Action>) {
        if others.is_empty() {
            return (self.after_failure(error, restartable, now_ms), vec![]);
        }
        let cancel = Action::Cancel(others.clone());
        (JobState::Failing { error, restartable, waiting: others }, vec![cancel])
    }

    fn after_failure(&mut self, error: String, restartable: bool, now_ms: u64) -> JobState {
        if restartable && self.attempt < self.restarts {
            self.attempt += 1;
            JobState::Restarting { error, at_ms: now_ms + self.restart_delay_ms }
        } else {
            JobState::Failed { error }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ws: &[u32]) -> BTreeSet<u32> {
        ws.iter().copied().collect()
    }

    #[test]
    fn a_job_runs_to_the_end() {
        let mut job = Lifecycle::new(0, 100);
        assert_eq!(job.start(), vec![Action::Schedule]);
        assert!(job.on(Event::Placed { workers: set(&[1, 2]) }, 0).is_empty());
        assert_eq!(job.state.name(), "scheduling");
        assert!(job.on(Event::Ready(2), 1).is_empty());
        assert_eq!(job.on(Event::Ready(1), 2), vec![Action::Start(set(&[1, 2]))]);
        assert_eq!(job.state, JobState::Running { running: set(&[1, 2]) });
        job.on(Event::Finished(1), 3);
        assert_eq!(job.state.name(), "running");
        job.on(Event::Finished(2), 4);
        assert_eq!(job.state, JobState::Finished);
        // Nothing moves a finished job.
        assert!(
            job.on(Event::Failed { worker: 1, error: "x".into(), restartable: true }, 5).is_empty()
        );
        assert_eq!(job.state, JobState::Finished);
    }

    #[test]
    fn a_failure_stops_the_others_then_restarts_after_the_delay() {
        let mut job = Lifecycle::new(1, 100);
        job.on(Event::Placed { workers: set(&[1, 2, 3]) }, 0);
        for w in [1, 2, 3] {
            job.on(Event::Ready(w), 0);
        }
        let actions = job
            .on(Event::Failed { worker: 2, error: "guest trapped".into(), restartable: true }, 10);
        assert_eq!(actions, vec![Action::Cancel(set(&[1, 3]))]);
        assert_eq!(job.state.name(), "failing");
        job.on(Event::Finished(1), 11);
        job.on(Event::WorkerLost(3), 12);
        assert_eq!(job.state, JobState::Restarting { error: "guest trapped".into(), at_ms: 112 });
        assert_eq!(job.attempt, 1);
        assert!(job.on(Event::Tick, 111).is_empty());
        assert_eq!(job.on(Event::Tick, 112), vec![Action::Schedule]);
        // Not enough slots: wait and try again, without using an attempt.
        job.on(Event::NoSlots { reason: "needs 3 slots".into() }, 120);
        assert_eq!(job.state, JobState::Restarting { error: "needs 3 slots".into(), at_ms: 220 });
        assert_eq!(job.on(Event::Tick, 220), vec![Action::Schedule]);
        job.on(Event::Placed { workers: set(&[1]) }, 221);
        assert_eq!(job.on(Event::Ready(1), 222), vec![Action::Start(set(&[1]))]);
        // The second failure is one too many.
        job.on(Event::WorkerLost(1), 300);
        assert_eq!(job.state, JobState::Failed { error: "worker 1 was lost".into() });
    }

    #[test]
    fn a_bad_plugin_is_not_restarted() {
        let mut job = Lifecycle::new(5, 100);
        job.on(Event::Placed { workers: set(&[1]) }, 0);
        job.on(Event::Failed { worker: 1, error: "bad config".into(), restartable: false }, 1);
        assert_eq!(job.state, JobState::Failed { error: "bad config".into() });
    }

    #[test]
    fn cancel_stops_every_live_worker() {
        let mut job = Lifecycle::new(0, 100);
        job.on(Event::Placed { workers: set(&[4, 5]) }, 0);
        job.on(Event::Ready(4), 0);
        job.on(Event::Ready(5), 0);
        job.on(Event::Finished(4), 1);
        assert_eq!(job.on(Event::Cancel, 2), vec![Action::Cancel(set(&[5]))]);
        assert_eq!(job.state, JobState::Cancelled);
        assert!(job.state.is_terminal());
    }

    #[test]
    fn no_slots_at_first_fails_the_deploy() {
        let mut job = Lifecycle::new(3, 100);
        job.on(Event::NoSlots { reason: "needs 4 slots".into() }, 0);
        assert_eq!(job.state, JobState::Failed { error: "needs 4 slots".into() });
    }

    #[test]
    fn losing_an_uninvolved_worker_changes_nothing() {
        let mut job = Lifecycle::new(0, 100);
        job.on(Event::Placed { workers: set(&[1]) }, 0);
        job.on(Event::WorkerLost(9), 1);
        assert_eq!(job.state.name(), "scheduling");
    }
}
