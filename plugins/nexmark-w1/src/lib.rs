//! Nexmark W1 (see `BENCHMARKS.md`): the stateless benchmark workload.
//!
//! `count` bids (config `count`, default 20,000,000) from the host's datagen
//! source, then Nexmark q1 (the price in euros) and q2 (keep the bids of
//! every 123rd auction), into a blackhole sink. Both steps run fused: one
//! guest call per batch.
//!
//! ```text
//! flinkw run nexmark_w1.wasm --set count=20000000
//! ```

use flinkw::Bid;
use flinkw::prelude::*;

/// Bids generated when `count` is not set.
const DEFAULT_COUNT: u64 = 20_000_000;

/// Nexmark q1: the price in euros, `price × 0.908`.
///
/// Flink's q1 computes `0.908 * price` as a DECIMAL; the price stays an
/// integer here (`price * 908 / 1000`, rounded down), so the record keeps the
/// `Bid` type and its encoding.
pub fn q1(bid: Bid) -> Bid {
    Bid { price: bid.price * 908 / 1000, ..bid }
}

/// Nexmark q2: keeps the bids of auctions whose id is a multiple of 123.
pub fn q2(bid: &Bid) -> bool {
    bid.auction.is_multiple_of(123)
}

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("nexmark-w1");
    let count: u64 = env.config().parse_or("count", DEFAULT_COUNT)?;
    env.source(Datagen::bids(count))
        .map(q1)
        .name("q1-euros")
        .filter(q2)
        .name("q2-auction-mod-123")
        .sink(Blackhole);
    Ok(())
}

flinkw::export_job!(job);
