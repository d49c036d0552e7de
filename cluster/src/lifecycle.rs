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
//!
//! Restarts wait `restart_delay_ms`, multiplied by the backoff factor for
//! each attempt in a row that failed within [`STABLE_MS`] of being placed
//! (a plugin that traps at once), at most `max_delay_ms`; an attempt that
//! ran longer starts the wait from the first delay again.

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
    /// The running attempt must stop and the job start again from its
    /// newest complete checkpoint, not counted as a failure of the job
    /// (e.g. a live upgrade that switched some subtasks only).
    Failover {
        /// Why.
        error: String,
    },
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
    /// Multiplies the restart delay for each quick failure in a row (1:
    /// a fixed delay).
    pub backoff: f64,
    /// The longest restart delay, ms.
    pub max_delay_ms: u64,
    /// Failures in a row, each within [`STABLE_MS`] of its attempt being
    /// placed (a failure after a longer run counts as the first again).
    pub quick_failures: u32,
    /// When the current attempt was placed (ms on the caller's clock).
    placed_ms: u64,
    /// Failure rate: `restarts` per window instead of in all.
    window: Option<flinkw_host::runtime::FailureWindow>,
    /// The next failure restarts without counting (a failover).
    free_restart: bool,
}

/// An attempt that ran this long before it failed was not a crash loop:
/// the restart after it waits the first delay again.
pub const STABLE_MS: u64 = 60_000;

impl Lifecycle {
    /// A new job.
    pub fn new(restarts: u32, restart_delay_ms: u64) -> Lifecycle {
        Lifecycle {
            state: JobState::Created,
            attempt: 0,
            restarts,
            restart_delay_ms,
            workers: BTreeSet::new(),
            backoff: 1.0,
            max_delay_ms: u64::MAX,
            quick_failures: 0,
            placed_ms: 0,
            window: None,
            free_restart: false,
        }
    }

    /// Flink's failure-rate strategy: at most `restarts` restarts within
    /// any `window_ms` (none: `restarts` in all).
    pub fn with_failure_window(mut self, window_ms: Option<u64>) -> Lifecycle {
        self.window =
            window_ms.map(|w| flinkw_host::runtime::FailureWindow::new(self.restarts, w.max(1)));
        self
    }

    /// The same with exponential restart delays: times `factor` (≥ 1) per
    /// quick failure in a row, at most `max_delay_ms`.
    pub fn with_backoff(mut self, factor: f64, max_delay_ms: u64) -> Lifecycle {
        self.backoff = if factor.is_finite() { factor.max(1.0) } else { 1.0 };
        self.max_delay_ms = max_delay_ms.max(self.restart_delay_ms);
        self
    }

    /// The wait before the next restart, after `quick_failures` quick
    /// failures in a row.
    pub fn restart_wait_ms(&self) -> u64 {
        let doublings = self.quick_failures.saturating_sub(1).min(64) as i32;
        let wait = self.restart_delay_ms as f64 * self.backoff.powi(doublings);
        if wait >= self.max_delay_ms as f64 { self.max_delay_ms } else { wait as u64 }
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
            (S::Created, Event::Placed { workers }) => self.placed(workers, now_ms),
            (S::Restarting { .. }, Event::Placed { workers }) => self.placed(workers, now_ms),
            (S::Created, Event::NoSlots { reason }) => (S::Failed { error: reason }, vec![]),
            (S::Restarting { .. }, Event::NoSlots { reason }) => {
                (S::Restarting { error: reason, at_ms: now_ms + self.restart_delay_ms }, vec![])
            }
            (S::Running { running }, Event::Failover { error }) => {
                // Not the job's fault: the restart is not counted.
                self.free_restart = true;
                self.failing(error, true, running, now_ms)
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

    fn placed(&mut self, workers: BTreeSet<u32>, now_ms: u64) -> (JobState, Vec<Action>) {
        self.workers = workers.clone();
        self.placed_ms = now_ms;
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
        if now_ms.saturating_sub(self.placed_ms) < STABLE_MS {
            self.quick_failures += 1;
        } else {
            self.quick_failures = 1;
        }
        let free = std::mem::take(&mut self.free_restart);
        let allowed = match &mut self.window {
            _ if free => true,
            Some(w) => w.failed(now_ms),
            None => self.attempt < self.restarts,
        };
        if restartable && allowed {
            self.attempt += 1;
            JobState::Restarting { error, at_ms: now_ms.saturating_add(self.restart_wait_ms()) }
        } else if restartable && let Some(w) = &self.window {
            JobState::Failed { error: format!("{error} (no restarts left: {})", w.exhausted()) }
        } else if restartable && self.restarts > 0 {
            let n = self.restarts;
            JobState::Failed {
                error: format!("{error} (no restarts left: --restarts {n} used up)"),
            }
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
        // The second failure is one too many, and the error says so.
        job.on(Event::WorkerLost(1), 300);
        let error = "worker 1 was lost (no restarts left: --restarts 1 used up)";
        assert_eq!(job.state, JobState::Failed { error: error.into() });
    }

    #[test]
    fn a_crash_loop_backs_off_up_to_the_cap_and_a_long_run_resets_it() {
        let mut job = Lifecycle::new(10, 100).with_backoff(2.0, 500);
        let fail_at = |job: &mut Lifecycle, placed: u64, failed: u64| {
            job.on(Event::Placed { workers: set(&[1]) }, placed);
            job.on(Event::Failed { worker: 1, error: "trap".into(), restartable: true }, failed);
            match job.state {
                JobState::Restarting { at_ms, .. } => at_ms - failed,
                ref s => panic!("{s:?}"),
            }
        };
        let waits: Vec<u64> = (0..5).map(|i| fail_at(&mut job, i * 1000, i * 1000 + 5)).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        // An attempt that ran a minute was no crash loop.
        assert_eq!(fail_at(&mut job, 10_000, 10_000 + STABLE_MS), 100);
        assert_eq!(fail_at(&mut job, 80_000, 80_001), 200);
        // A fixed delay by default.
        let mut fixed = Lifecycle::new(10, 100);
        let waits: Vec<u64> = (0..3).map(|i| fail_at(&mut fixed, i, i + 1)).collect();
        assert_eq!(waits, [100, 100, 100]);
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

    #[test]
    fn a_failover_restarts_without_using_the_restart_budget() {
        // No restarts allowed: a failure would end the job, a failover does not.
        let mut job = Lifecycle::new(0, 100);
        job.on(Event::Placed { workers: set(&[1, 2]) }, 0);
        job.on(Event::Ready(1), 0);
        job.on(Event::Ready(2), 0);
        let actions = job.on(Event::Failover { error: "upgrade half done".into() }, 10);
        assert_eq!(actions, vec![Action::Cancel(set(&[1, 2]))]);
        job.on(Event::Finished(1), 11);
        job.on(Event::Finished(2), 12);
        assert!(
            matches!(&job.state, JobState::Restarting { error, .. } if error == "upgrade half done")
        );
        assert_eq!(job.attempt, 1);
        // The next real failure still finds the budget used up.
        job.on(Event::Tick, 1000);
        job.on(Event::Placed { workers: set(&[1]) }, 1000);
        job.on(Event::Ready(1), 1000);
        job.on(Event::Failed { worker: 1, error: "trap".into(), restartable: true }, 1001);
        assert_eq!(job.state.name(), "failed");
    }

    #[test]
    fn a_failure_rate_restarts_sparse_failures_and_stops_a_burst() {
        // At most 2 restarts per 10 s.
        let mut job = Lifecycle::new(2, 100).with_failure_window(Some(10_000));
        let mut now = 0;
        let fail = |job: &mut Lifecycle, at: u64| {
            job.on(Event::Tick, at);
            job.on(Event::Placed { workers: set(&[1]) }, at);
            job.on(Event::Ready(1), at);
            job.on(Event::Failed { worker: 1, error: "trap".into(), restartable: true }, at + 1);
        };
        // A failure every 6 s: never more than 2 in 10 s, so it restarts on and on.
        for _ in 0..6 {
            now += 6_000;
            fail(&mut job, now);
            assert_eq!(job.state.name(), "restarting", "at {now}");
        }
        assert_eq!(job.attempt, 6);
        // Three within 10 s: the third ends the job, saying why.
        fail(&mut job, now + 1_000);
        let JobState::Failed { error } = &job.state else { panic!("{:?}", job.state) };
        assert!(error.contains("no restarts left: 3 failures within 10 s"), "{error}");
    }
}
