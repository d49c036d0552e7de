//! Timers per key (Flink's `InternalTimerService`): deduplicated by key and
//! time, fired in time order as event time or the wall clock passes them.

use std::collections::BTreeSet;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimeDomain {
    /// The watermark.
    EventTime,
    /// The wall clock.
    ProcessingTime,
}

/// The timers of one keyed operator.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct TimerService {
    event: BTreeSet<(i64, Vec<u8>)>,
    processing: BTreeSet<(i64, Vec<u8>)>,
}

impl TimerService {
    fn set(&mut self, domain: TimeDomain) -> &mut BTreeSet<(i64, Vec<u8>)> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Registers a timer for `key` at `time` (once, however often called).
    pub fn register(&mut self, domain: TimeDomain, key: &[u8], time: i64) {
        self.set(domain).insert((time, key.to_vec()));
    }

    /// Removes a timer.
    pub fn delete(&mut self, domain: TimeDomain, key: &[u8], time: i64) {
        self.set(domain).remove(&(time, key.to_vec()));
    }

    /// Removes and returns the timers of `domain` at or before `time`, in
    /// time order.
    pub fn due(&mut self, domain: TimeDomain, time: i64) -> Vec<(i64, Vec<u8>)> {
        let set = self.set(domain);
        let mut due = Vec::new();
        while set.first().is_some_and(|(t, _)| *t <= time) {
            if let Some(timer) = set.pop_first() {
                due.push(timer);
            }
        }
        due
    }

    /// Keeps only the timers of keys for which `keep` holds.
    pub fn retain_keys(&mut self, keep: &dyn Fn(&[u8]) -> bool) {
        self.event.retain(|(_, k)| keep(k));
        self.processing.retain(|(_, k)| keep(k));
    }

    /// Takes over the timers of `other`.
    pub fn absorb(&mut self, other: TimerService) {
        self.event.extend(other.event);
        self.processing.extend(other.processing);
    }

    /// Number of timers waiting.
    pub fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }

    /// Whether no timer waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_order_once_per_key_and_time() {
        let mut t = TimerService::default();
        t.register(TimeDomain::EventTime, b"b", 20);
        t.register(TimeDomain::EventTime, b"a", 10);
        t.register(TimeDomain::EventTime, b"a", 10);
        t.register(TimeDomain::EventTime, b"a", 30);
        t.register(TimeDomain::ProcessingTime, b"a", 5);
        t.delete(TimeDomain::EventTime, b"a", 30);
        assert_eq!(t.len(), 3);
        assert_eq!(t.due(TimeDomain::EventTime, 9), vec![]);
        assert_eq!(
            t.due(TimeDomain::EventTime, 25),
            vec![(10, b"a".to_vec()), (20, b"b".to_vec())]
        );
        assert_eq!(t.due(TimeDomain::EventTime, i64::MAX), vec![]);
        assert_eq!(t.due(TimeDomain::ProcessingTime, 5), vec![(5, b"a".to_vec())]);
        assert!(t.is_empty());
    }
}
