//! State time-to-live: entries carry the processing time of their last
//! write (or read, when reads renew them) and expire after the configured
//! time. Pure: the clock is an argument.

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

#[cfg(test)]
mod tests {
    use super::*;

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
