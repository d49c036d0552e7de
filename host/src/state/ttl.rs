//! State time-to-live: entries carry the processing time of their last
//! write (or read, when reads renew them) and expire after the configured
//! time. The clock is an argument, so the rules are tested with a virtual
//! one.

use super::{StateBackend, StateError, StateId};

/// A state's TTL settings (Flink's `StateTtlConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// Lifetime after the last renewal, ms.
    pub millis: i64,
    /// Reads renew entries too.
    pub update_on_read: bool,
    /// Expired entries that are still stored may be returned.
    pub return_expired: bool,
}

/// What a read of a stored entry found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlRead<'a> {
    /// A live value; renew it if the TTL says reads renew.
    Live(&'a [u8]),
    /// An expired value the TTL still lets the reader see.
    ExpiredVisible(&'a [u8]),
    /// An expired value: delete it and report nothing.
    Expired,
}

/// Stores `value` stamped with `now`, into `out`.
pub fn wrap(value: &[u8], now: i64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&now.to_le_bytes());
    out.extend_from_slice(value);
}

/// Reads a stamped entry at time `now`; `None` if it is not stamped.
pub fn read<'a>(stored: &'a [u8], now: i64, ttl: &Ttl) -> Option<TtlRead<'a>> {
    let (stamp, value) = stored.split_first_chunk::<8>()?;
    let written = i64::from_le_bytes(*stamp);
    Some(if now.saturating_sub(written) < ttl.millis {
        TtlRead::Live(value)
    } else if ttl.return_expired {
        TtlRead::ExpiredVisible(value)
    } else {
        TtlRead::Expired
    })
}

/// Reads `key` of `state` at time `now` with Flink's TTL rules: an expired
/// entry is removed by the read that finds it, and that read returns it
/// only when the TTL says `return_expired` (Flink's
/// `ReturnExpiredIfNotCleanedUp`); a live entry is renewed when the TTL
/// says `update_on_read`. Without a TTL, a plain read.
pub fn get(
    backend: &mut dyn StateBackend,
    state: StateId,
    key: &[u8],
    ttl: Option<&Ttl>,
    now: i64,
) -> Result<Option<Vec<u8>>, StateError> {
    let Some(raw) = backend.get(state, key)? else { return Ok(None) };
    let Some(t) = ttl else { return Ok(Some(raw)) };
    match read(&raw, now, t) {
        Some(TtlRead::Live(v)) => {
            let v = v.to_vec();
            if t.update_on_read {
                put(backend, state, key, ttl, &v, now)?;
            }
            Ok(Some(v))
        }
        Some(TtlRead::ExpiredVisible(v)) => {
            let v = v.to_vec();
            backend.remove(state, key)?;
            Ok(Some(v))
        }
        Some(TtlRead::Expired) => {
            backend.remove(state, key)?;
            Ok(None)
        }
        None => Err(StateError::Io {
            state: format!("#{state}"),
            reason: "state written without a time-to-live was opened with one".into(),
        }),
    }
}

/// Writes `value` under `key` of `state`, stamped with `now` when the
/// state has a TTL.
pub fn put(
    backend: &mut dyn StateBackend,
    state: StateId,
    key: &[u8],
    ttl: Option<&Ttl>,
    value: &[u8],
    now: i64,
) -> Result<(), StateError> {
    match ttl {
        None => backend.put(state, key, value),
        Some(_) => {
            let mut stamped = Vec::with_capacity(value.len() + 8);
            wrap(value, now, &mut stamped);
            backend.put(state, key, &stamped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MemoryState, RocksDbState};

    /// Flink's TTL rules for one value state, written out plainly
    /// (`AbstractTtlDecorator.getWrappedWithTtlCheckAndUpdate`): per key the
    /// value and the time of its last renewal.
    #[derive(Default)]
    struct Model {
        entries: std::collections::HashMap<u8, (u32, i64)>,
    }

    impl Model {
        fn get(&mut self, key: u8, ttl: &Ttl, now: i64) -> Option<u32> {
            let (value, at) = *self.entries.get(&key)?;
            if now - at >= ttl.millis {
                self.entries.remove(&key);
                return ttl.return_expired.then_some(value);
            }
            if ttl.update_on_read {
                self.entries.insert(key, (value, now));
            }
            Some(value)
        }
    }

    /// Random writes, reads, removals and clock jumps on three keys, under
    /// every TTL setting and on both backends: the engine's answers equal
    /// the model's at every read.
    #[test]
    fn ttl_matches_flinks_rules_on_random_operations() {
        let mut rand = crate::test_rand::xorshift(0x51_7cc1_b727_220a);
        let dir = tempfile::tempdir().unwrap();
        let mut reads = [0usize; 2];
        for round in 0..64u32 {
            let ttl = Ttl {
                millis: 1 + rand(50) as i64,
                update_on_read: round % 2 == 1,
                return_expired: round % 4 >= 2,
            };
            let mut backends: Vec<Box<dyn StateBackend>> = vec![
                Box::new(MemoryState::default()),
                Box::new(RocksDbState::open(&dir.path().join(round.to_string()), 1 << 20).unwrap()),
            ];
            for backend in &mut backends {
                let id = backend.register("v").unwrap();
                let mut model = Model::default();
                let mut now = 1_000i64;
                for step in 0..400u32 {
                    let key = rand(3) as u8;
                    let k = [key];
                    now += rand(20) as i64;
                    match rand(10) {
                        0..=2 => {
                            let value = step * 7 + u32::from(key);
                            put(&mut **backend, id, &k, Some(&ttl), &value.to_le_bytes(), now)
                                .unwrap();
                            model.entries.insert(key, (value, now));
                        }
                        3 => {
                            backend.remove(id, &k).unwrap();
                            model.entries.remove(&key);
                        }
                        _ => {
                            let got = get(&mut **backend, id, &k, Some(&ttl), now)
                                .unwrap()
                                .map(|v| u32::from_le_bytes(v.try_into().unwrap()));
                            let want = model.get(key, &ttl, now);
                            assert_eq!(got, want, "round {round} step {step} {ttl:?} at {now}");
                            reads[usize::from(want.is_some())] += 1;
                        }
                    }
                }
            }
        }
        // Both answers occurred often: the test saw expiry and live values.
        assert!(reads[0] > 1000 && reads[1] > 1000, "reads (none, some): {reads:?}");
    }

    fn stored(value: &[u8], at: i64) -> Vec<u8> {
        let mut v = Vec::new();
        wrap(value, at, &mut v);
        v
    }

    #[test]
    fn entries_expire_after_their_lifetime() {
        let ttl = Ttl { millis: 100, update_on_read: false, return_expired: false };
        let s = stored(b"v", 1_000);
        assert_eq!(read(&s, 1_000, &ttl), Some(TtlRead::Live(b"v")));
        assert_eq!(read(&s, 1_099, &ttl), Some(TtlRead::Live(b"v")));
        assert_eq!(read(&s, 1_100, &ttl), Some(TtlRead::Expired));
    }

    #[test]
    fn expired_entries_can_stay_visible_until_cleaned_up() {
        let ttl = Ttl { millis: 100, update_on_read: true, return_expired: true };
        let s = stored(b"v", 0);
        assert_eq!(read(&s, 500, &ttl), Some(TtlRead::ExpiredVisible(b"v")));
    }

    #[test]
    fn unstamped_bytes_are_refused() {
        let ttl = Ttl { millis: 1, update_on_read: false, return_expired: false };
        assert_eq!(read(b"abc", 0, &ttl), None);
    }
}
