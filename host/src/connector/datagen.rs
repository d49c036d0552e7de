//! The datagen source: numbers or benchmark bids, deterministic per seed,
//! bounded or unbounded, optionally rate-limited.
//!
//! Record `n` of the whole source is made from `n` and the seed alone, and
//! subtask `i` of `p` makes records `i, i + p, i + 2p, ...`, so the set of
//! records does not depend on the parallelism.

use std::collections::BTreeMap;
use std::time::Instant;

use flinkw_batch::{BatchBuilder, NO_TIMESTAMP};

use super::indexed::{IndexedSplit, Next};
use super::{ConnectorError, Poll, SourceReader, check_options, parse_option};
use crate::checkpoint::SourcePosition;

/// Event time of bid 0: 2023-11-14T22:13:20Z, as the Flink side uses.
pub const BIDS_BASE_TS: i64 = 1_700_000_000_000;
/// Bids per event-time second (BENCHMARKS.md: 100,000).
pub const BIDS_PER_SECOND: u64 = 100_000;

/// What datagen makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagenKind {
    /// The numbers 0, 1, 2, ... (postcard `u64`).
    Sequence,
    /// Bids `{auction, bidder, price, ts}` (postcard struct).
    Bids,
}

/// A checked datagen source.
#[derive(Debug, Clone)]
pub struct DatagenSpec {
    /// What to make.
    pub kind: DatagenKind,
    /// How many records in all (0 = unbounded).
    pub count: u64,
    /// Records per second over all subtasks (0 = as fast as possible).
    pub rate: u64,
    /// Random seed.
    pub seed: u64,
}

impl DatagenSpec {
    pub(super) fn new(options: &BTreeMap<String, String>) -> Result<Self, ConnectorError> {
        const NAME: &str = "datagen source";
        check_options(NAME, options, &["kind", "count", "rate", "seed"])?;
        let kind = match options.get("kind").map(String::as_str).unwrap_or("sequence") {
            "sequence" => DatagenKind::Sequence,
            "bids" => DatagenKind::Bids,
            other => {
                return Err(ConnectorError::BadOption {
                    connector: NAME.into(),
                    option: "kind".into(),
                    value: other.into(),
                    reason: "expected sequence or bids".into(),
                });
            }
        };
        Ok(DatagenSpec {
            kind,
            count: parse_option(NAME, options, "count", 0)?,
            rate: parse_option(NAME, options, "rate", 0)?,
            seed: parse_option(NAME, options, "seed", 42)?,
        })
    }

    pub(super) fn open(&self, index: u32, parallelism: u32) -> Box<dyn SourceReader> {
        let split = IndexedSplit::new(index, parallelism, self.count, self.rate);
        Box::new(DatagenReader { spec: self.clone(), split })
    }
}

struct DatagenReader {
    spec: DatagenSpec,
    split: IndexedSplit,
}

impl SourceReader for DatagenReader {
    fn position(&self) -> SourcePosition {
        self.split.position()
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        self.split.seek("datagen source", position)
    }

    fn poll(
        &mut self,
        out: &mut BatchBuilder,
        max: usize,
        deadline: Instant,
    ) -> Result<Poll, ConnectorError> {
        for _ in 0..max {
            let n = match self.split.next_index(deadline) {
                Next::Index(n) => n,
                Next::Wait => return Ok(Poll::More),
                Next::End => return Ok(Poll::End),
            };
            // The value is written on the stack, then copied into the batch once.
            let mut value = [0u8; MAX_BID_LEN];
            let (ts, len) = match self.spec.kind {
                DatagenKind::Sequence => (NO_TIMESTAMP, put_varint(&mut value, 0, n)),
                DatagenKind::Bids => write_bid(&mut value, n, self.spec.seed),
            };
            out.push(ts, b"", &value[..len]);
            self.split.advance();
        }
        Ok(Poll::More)
    }
}

/// The longest postcard bid: four varints of at most 10 bytes.
const MAX_BID_LEN: usize = 40;

/// Writes bid `n` as postcard `{auction: u64, bidder: u64, price: u64, ts: i64}`
/// into `out` and returns its event time and length.
#[inline]
fn write_bid(out: &mut [u8; MAX_BID_LEN], n: u64, seed: u64) -> (i64, usize) {
    let r = splitmix64(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let r2 = splitmix64(r);
    let auction = r % 10_000;
    let bidder = (r >> 20) % 100_000;
    let price = 1 + r2 % 100_000;
    let jitter = ((r2 >> 32) % 200) as i64;
    let ts = BIDS_BASE_TS + (n * 1000 / BIDS_PER_SECOND) as i64 - jitter;
    let len = put_varint(out, 0, auction);
    let len = put_varint(out, len, bidder);
    let len = put_varint(out, len, price);
    let len = put_varint(out, len, ((ts << 1) ^ (ts >> 63)) as u64);
    (ts, len)
}

/// Writes `v` as postcard's (LEB128) unsigned varint at `out[at..]` and
/// returns the end; `out` has room for 10 bytes from `at`.
#[inline]
fn put_varint(out: &mut [u8; MAX_BID_LEN], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        out[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    out[at] = v as u8;
    at + 1
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flinkw_batch::Batch;
    use std::time::Duration;

    fn read_all(spec: &DatagenSpec, parallelism: u32) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        for i in 0..parallelism {
            let mut r = spec.open(i, parallelism);
            loop {
                let mut b = BatchBuilder::new();
                let far = Instant::now() + Duration::from_secs(60);
                let p = r.poll(&mut b, 100, far).unwrap();
                let bytes = b.finish();
                all.extend(Batch::new(&bytes).unwrap().iter().map(|r| r.value.to_vec()));
                if p == Poll::End {
                    break;
                }
            }
        }
        all.sort();
        all
    }

    #[test]
    fn same_records_at_any_parallelism() {
        let spec = DatagenSpec { kind: DatagenKind::Bids, count: 1000, rate: 0, seed: 7 };
        let one = read_all(&spec, 1);
        assert_eq!(one.len(), 1000);
        assert_eq!(one, read_all(&spec, 3));
    }

    #[test]
    fn varints_match_postcard() {
        let mut v = [0u8; MAX_BID_LEN];
        assert_eq!(put_varint(&mut v, 3, 300), 5);
        assert_eq!(v[3..5], [0xac, 0x02]);
        assert_eq!(put_varint(&mut v, 0, u64::MAX), 10);
        assert_eq!(v[..10], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }

    /// The bytes of the first bids, hashed (FNV-1a over every record's
    /// timestamp and value): fixed, so a faster writer cannot change them.
    #[test]
    fn bid_bytes_are_stable() {
        let spec = DatagenSpec { kind: DatagenKind::Bids, count: 100_000, rate: 0, seed: 42 };
        let mut r = spec.open(0, 1);
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let mut records = 0;
        loop {
            let mut b = BatchBuilder::new();
            let far = Instant::now() + Duration::from_secs(60);
            let p = r.poll(&mut b, 1024, far).unwrap();
            let bytes = b.finish();
            for rec in Batch::new(&bytes).unwrap().iter() {
                for byte in rec.timestamp.to_le_bytes().iter().chain(rec.value) {
                    hash = (hash ^ *byte as u64).wrapping_mul(0x0100_0000_01b3);
                }
                records += 1;
            }
            if p == Poll::End {
                break;
            }
        }
        assert_eq!(records, 100_000);
        assert_eq!(hash, 0x7ce4_5f68_a1cd_1be1);
    }
}
