//! The part of a generated source that one subtask makes: record `n` of the
//! whole source is made from `n` alone, and subtask `i` of `p` makes
//! `i, i + p, i + 2p, ...`, optionally held to its share of a rate. Shared
//! by the datagen and Nexmark sources.

use std::time::{Duration, Instant};

use super::{ConnectorError, old_progress, wrong_position};
use crate::checkpoint::SourcePosition;

/// Which record a subtask makes next, and when.
pub(super) struct IndexedSplit {
    next: u64,
    step: u64,
    /// Records in the whole source (0 = unbounded).
    count: u64,
    /// Records per second over all subtasks (0 = unlimited).
    rate: u64,
    started: Instant,
    made: u64,
    /// After a change of parallelism: the next index of each old subtask;
    /// an index its old owner had passed is skipped.
    done: Option<Vec<u64>>,
}

/// What [`IndexedSplit::next_index`] found.
pub(super) enum Next {
    /// Make this record, then call [`IndexedSplit::advance`].
    Index(u64),
    /// The rate allows no record before the deadline.
    Wait,
    /// Every record of this subtask is made.
    End,
}

impl IndexedSplit {
    /// Subtask `index` of `parallelism`.
    pub(super) fn new(index: u32, parallelism: u32, count: u64, rate: u64) -> Self {
        IndexedSplit {
            next: index as u64,
            step: parallelism as u64,
            count,
            rate,
            started: Instant::now(),
            made: 0,
            done: None,
        }
    }

    /// The position a checkpoint records.
    pub(super) fn position(&self) -> SourcePosition {
        SourcePosition::Datagen { next: self.next, made: self.made }
    }

    /// Goes on from `position`, taken by `connector` at this or (rescaled)
    /// another parallelism.
    pub(super) fn seek(
        &mut self,
        connector: &str,
        position: &SourcePosition,
    ) -> Result<(), ConnectorError> {
        match position {
            SourcePosition::Rescaled { positions } => {
                let next = |p: &SourcePosition| match p {
                    SourcePosition::Datagen { next, .. } => Some(*next),
                    _ => None,
                };
                self.done = Some(old_progress(connector, positions, next)?);
                Ok(())
            }
            SourcePosition::Datagen { next, made } => {
                self.next = *next;
                self.made = *made;
                // The rate counts from now on.
                let per_subtask = self.per_subtask_rate();
                if per_subtask > 0.0 {
                    self.started =
                        Instant::now() - Duration::from_secs_f64(self.made as f64 / per_subtask);
                }
                Ok(())
            }
            _ => Err(wrong_position(connector, position)),
        }
    }

    /// The next record to make, after waiting (until `deadline` at most)
    /// for the rate limit.
    pub(super) fn next_index(&mut self, deadline: Instant) -> Next {
        if let Some(done) = &self.done {
            while self.next < done[(self.next % done.len() as u64) as usize] {
                self.next += self.step;
            }
        }
        if self.count != 0 && self.next >= self.count {
            return Next::End;
        }
        let per_subtask = self.per_subtask_rate();
        if per_subtask > 0.0 {
            let due = self.started + Duration::from_secs_f64(self.made as f64 / per_subtask);
            let now = Instant::now();
            if due > now {
                if due >= deadline {
                    std::thread::sleep(deadline.saturating_duration_since(now));
                    return Next::Wait;
                }
                std::thread::sleep(due - now);
            }
        }
        Next::Index(self.next)
    }

    /// The record [`IndexedSplit::next_index`] returned is made.
    pub(super) fn advance(&mut self) {
        self.next += self.step;
        self.made += 1;
    }

    /// This subtask's share of the rate, records per second (0: unlimited).
    fn per_subtask_rate(&self) -> f64 {
        if self.rate == 0 { 0.0 } else { (self.rate as f64 / self.step as f64).max(1e-9) }
    }
}
