//! The write-ahead log of the exactly-once Kafka sink: what a checkpoint
//! keeps of the sink's output, and what a restore must produce again.
//!
//! Each checkpoint interval's records stay in the sink (and in every
//! checkpoint taken while they are not yet known to be in Kafka). Once
//! checkpoint N completes, they are produced in one Kafka transaction that
//! also commits offset N for a marker consumer group of that sink subtask,
//! so "interval N is in Kafka" becomes true atomically with the records.
//! A restore compares each entry's checkpoint with the marker and produces
//! again only what the marker does not cover. This module is the pure part:
//! encoding, and the decision.

use serde::{Deserialize, Serialize};

/// One entry of a sink subtask's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// Every sink subtask writes one per checkpoint: which subtask wrote
    /// it, and the checkpoint. After a restore the subtask's marker is set
    /// to this checkpoint (ids after it are all new).
    Header {
        /// The sink subtask that took the checkpoint.
        origin: u32,
        /// The checkpoint.
        checkpoint: u64,
    },
    /// The records of one checkpoint interval, sealed by its barrier.
    Interval {
        /// The sink subtask that wrote them.
        origin: u32,
        /// The checkpoint whose barrier sealed them.
        checkpoint: u64,
        /// Packed batches (flinkw's batch format) of the records.
        batches: Vec<Vec<u8>>,
        /// Batches of notes about oversized records, for the dead-letter topic.
        dead_letters: Vec<Vec<u8>>,
    },
}

/// The records of one checkpoint interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sealed {
    /// The checkpoint whose barrier sealed them.
    pub checkpoint: u64,
    /// Batches for the sink's topic.
    pub batches: Vec<Vec<u8>>,
    /// Batches for the dead-letter topic.
    pub dead_letters: Vec<Vec<u8>>,
}

impl Entry {
    /// Encodes the entry for a snapshot.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(self).map_err(|e| e.to_string())
    }

    /// Decodes an entry written by [`Entry::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("bad Kafka sink checkpoint entry: {e}"))
    }
}

/// What a restore does for one old sink subtask (`origin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The old sink subtask.
    pub origin: u32,
    /// The checkpoint restored: the marker is set to it.
    pub checkpoint: u64,
    /// Intervals not yet known to be committed, by checkpoint, ascending.
    pub intervals: Vec<Sealed>,
}

impl Recovery {
    /// The intervals to produce again, given the subtask's marker (the
    /// newest checkpoint whose records are committed in Kafka).
    pub fn replay(&self, marker: u64) -> impl Iterator<Item = &Sealed> {
        self.intervals.iter().filter(move |s| s.checkpoint > marker)
    }
}

/// Groups restored entries by old subtask.
pub fn recoveries(entries: &[Vec<u8>]) -> Result<Vec<Recovery>, String> {
    let mut out: Vec<Recovery> = Vec::new();
    for bytes in entries {
        let entry = Entry::decode(bytes)?;
        let origin = match &entry {
            Entry::Header { origin, .. } | Entry::Interval { origin, .. } => *origin,
        };
        let i = match out.iter().position(|r| r.origin == origin) {
            Some(i) => i,
            None => {
                out.push(Recovery { origin, checkpoint: 0, intervals: Vec::new() });
                out.len() - 1
            }
        };
        let r = &mut out[i];
        match entry {
            Entry::Header { checkpoint, .. } => r.checkpoint = r.checkpoint.max(checkpoint),
            Entry::Interval { checkpoint, batches, dead_letters, .. } => {
                r.intervals.push(Sealed { checkpoint, batches, dead_letters })
            }
        }
    }
    for r in &mut out {
        r.intervals.sort_by_key(|s| s.checkpoint);
    }
    out.sort_by_key(|r| r.origin);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(e: Entry) -> Vec<u8> {
        e.encode().unwrap()
    }

    fn interval(checkpoint: u64, bytes: &[u8]) -> Entry {
        Entry::Interval {
            origin: 1,
            checkpoint,
            batches: vec![bytes.to_vec()],
            dead_letters: Vec::new(),
        }
    }

    #[test]
    fn replays_only_what_the_marker_does_not_cover() {
        let entries = vec![
            enc(Entry::Header { origin: 1, checkpoint: 7 }),
            enc(interval(7, b"seven")),
            enc(interval(6, b"six")),
            enc(Entry::Header { origin: 3, checkpoint: 7 }),
        ];
        let r = recoveries(&entries).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].origin, r[0].checkpoint), (1, 7));
        let all: Vec<_> = r[0].replay(5).map(|s| s.batches[0].clone()).collect();
        assert_eq!(all, vec![b"six".to_vec(), b"seven".to_vec()]);
        // Checkpoint 6's transaction committed before the crash.
        let rest: Vec<_> = r[0].replay(6).map(|s| s.checkpoint).collect();
        assert_eq!(rest, vec![7]);
        assert_eq!(r[0].replay(7).count(), 0);
        assert_eq!((r[1].origin, r[1].checkpoint, r[1].intervals.len()), (3, 7, 0));
    }

    #[test]
    fn refuses_foreign_bytes() {
        assert!(recoveries(&[b"part-0-1.pending".to_vec()]).is_err());
    }
}
