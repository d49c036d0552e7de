//! Barrier alignment (Flink's aligned checkpoints), as a pure state machine.
//!
//! A subtask with several inputs takes its snapshot for checkpoint `n` only
//! once barrier `n` has arrived on every input. Until then, an input that
//! has delivered the barrier is *blocked*: its later messages wait, so the
//! snapshot holds exactly the records before the barrier on every input.
//! An input that has ended counts as aligned.

/// What a barrier did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Still waiting for other inputs; the sending input is now blocked.
    Waiting,
    /// Every input has delivered the barrier: snapshot, forward it, unblock.
    Complete(u64),
    /// A barrier of a checkpoint older than the one being aligned: ignored.
    Stale,
}

/// Aligns the barriers of one subtask's inputs.
#[derive(Debug, Clone)]
pub struct BarrierAligner {
    ended: Vec<bool>,
    received: Vec<bool>,
    current: Option<u64>,
    last_completed: u64,
}

impl BarrierAligner {
    /// An aligner over `inputs` inputs.
    pub fn new(inputs: usize) -> Self {
        BarrierAligner {
            ended: vec![false; inputs],
            received: vec![false; inputs],
            current: None,
            last_completed: 0,
        }
    }

    /// Whether messages of `input` must wait (it delivered the barrier of
    /// the checkpoint being aligned).
    pub fn is_blocked(&self, input: usize) -> bool {
        self.current.is_some() && self.received.get(input).copied().unwrap_or(false)
    }

    /// Barrier `id` arrived on `input`.
    pub fn on_barrier(&mut self, input: usize, id: u64) -> Alignment {
        if id <= self.last_completed {
            return Alignment::Stale;
        }
        match self.current {
            Some(c) if id < c => return Alignment::Stale,
            // A newer checkpoint overtakes an unfinished one (its barrier
            // could not arrive everywhere): start over with the newer one.
            Some(c) if id > c => self.received.iter_mut().for_each(|r| *r = false),
            _ => {}
        }
        self.current = Some(id);
        if let Some(r) = self.received.get_mut(input) {
            *r = true;
        }
        self.check()
    }

    /// `input` ended: it will deliver no more barriers.
    pub fn on_end(&mut self, input: usize) -> Alignment {
        if let Some(e) = self.ended.get_mut(input) {
            *e = true;
        }
        if self.current.is_some() { self.check() } else { Alignment::Waiting }
    }

    fn check(&mut self) -> Alignment {
        let Some(id) = self.current else { return Alignment::Waiting };
        if self.received.iter().zip(&self.ended).all(|(r, e)| *r || *e) {
            self.current = None;
            self.last_completed = id;
            self.received.iter_mut().for_each(|r| *r = false);
            Alignment::Complete(id)
        } else {
            Alignment::Waiting
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_when_every_input_delivered_the_barrier() {
        let mut a = BarrierAligner::new(3);
        assert!(!a.is_blocked(0));
        assert_eq!(a.on_barrier(0, 1), Alignment::Waiting);
        assert!(a.is_blocked(0) && !a.is_blocked(1));
        assert_eq!(a.on_barrier(2, 1), Alignment::Waiting);
        assert_eq!(a.on_barrier(1, 1), Alignment::Complete(1));
        assert!(!a.is_blocked(0));
        assert_eq!(a.on_barrier(0, 1), Alignment::Stale);
    }

    #[test]
    fn ended_inputs_count_as_aligned() {
        let mut a = BarrierAligner::new(2);
        assert_eq!(a.on_end(1), Alignment::Waiting);
        assert_eq!(a.on_barrier(0, 1), Alignment::Complete(1));
        let mut b = BarrierAligner::new(2);
        assert_eq!(b.on_barrier(0, 4), Alignment::Waiting);
        assert_eq!(b.on_end(1), Alignment::Complete(4));
    }

    #[test]
    fn a_newer_barrier_restarts_alignment() {
        let mut a = BarrierAligner::new(2);
        a.on_barrier(0, 1);
        assert_eq!(a.on_barrier(0, 2), Alignment::Waiting);
        assert_eq!(a.on_barrier(1, 1), Alignment::Stale);
        assert_eq!(a.on_barrier(1, 2), Alignment::Complete(2));
    }

    #[test]
    fn a_single_input_completes_at_once() {
        let mut a = BarrierAligner::new(1);
        assert_eq!(a.on_barrier(0, 7), Alignment::Complete(7));
    }
}
