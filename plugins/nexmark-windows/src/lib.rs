//! Benchmark workloads W2 and W3 of BENCHMARKS.md on generated bids
//! (100,000 bids per event-time second, up to 199 ms of disorder,
//! watermark = max timestamp − 200 ms):
//!
//! - `--set workload=w2` (default): 1 s tumbling windows per auction,
//!   COUNT(*) and MAX(price);
//! - `--set workload=w3`: 10 s windows sliding by 2 s per auction, COUNT(*)
//!   (Nexmark q5's window).
//!
//! `--set count=N` bids (default 20,000,000), `--set rate=N` per second
//! (default unlimited); `--set output=stdout` prints
//! `auction,window_start,window_end,count[,max]` instead of discarding, and
//! `--set output=DIR` writes them exactly once into part files in DIR;
//! `--set numbered=true` prefixes each result with a per-subtask counter
//! kept in guest memory (checkpointed through the `snapshot` export).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flinkw::prelude::*;

/// COUNT(*) and MAX(price).
struct CountAndMax;

impl AggregateFunction<Bid> for CountAndMax {
    type Acc = (u64, u64);
    type Out = (u64, u64);

    fn create_accumulator(&self) -> (u64, u64) {
        (0, 0)
    }

    fn add(&self, acc: &mut (u64, u64), bid: &Bid) {
        acc.0 += 1;
        acc.1 = acc.1.max(bid.price);
    }

    fn merge(&self, a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
        (a.0 + b.0, a.1.max(b.1))
    }

    fn result(&self, acc: (u64, u64)) -> (u64, u64) {
        acc
    }

    fn mergeable(&self) -> bool {
        true
    }
}

/// COUNT(*).
struct Count;

impl AggregateFunction<Bid> for Count {
    type Acc = u64;
    type Out = u64;

    fn create_accumulator(&self) -> u64 {
        0
    }

    fn add(&self, acc: &mut u64, _: &Bid) {
        *acc += 1;
    }

    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }

    fn result(&self, acc: u64) -> u64 {
        acc
    }

    fn mergeable(&self) -> bool {
        true
    }
}

/// Results emitted so far by this instance: state kept in the guest's own
/// memory, saved and restored through checkpoints (`--set numbered=true`
/// prefixes each result with it).
static EMITTED: AtomicU64 = AtomicU64::new(0);

/// A window's result: its number (with `numbered=true`), auction, start,
/// end, count and (W2) maximum price. The blackhole gets these as they are
/// (as Flink's SQL job sends rows to its blackhole); text outputs get
/// [`line`]s.
type Row = (Option<u64>, u64, i64, i64, u64, Option<u64>);

fn row(numbered: bool, auction: u64, w: TimeWindow, count: u64, max: Option<u64>) -> Row {
    let seq = numbered.then(|| EMITTED.fetch_add(1, Ordering::Relaxed));
    (seq, auction, w.start, w.end, count, max)
}

/// `[n,]auction,window_start,window_end,count[,max]`.
fn line((seq, auction, start, end, count, max): Row) -> String {
    let mut line = seq.map(|n| format!("{n},")).unwrap_or_default();
    line.push_str(&format!("{auction},{start},{end},{count}"));
    if let Some(max) = max {
        line.push_str(&format!(",{max}"));
    }
    line
}

fn job(env: &mut Env) -> Result<(), Error> {
    let numbered = env.config().get("numbered") == Some("true");
    env.guest_state(
        || EMITTED.load(Ordering::Relaxed).to_le_bytes().to_vec(),
        |bytes| {
            let bytes: [u8; 8] = bytes.try_into().map_err(|_| Error::msg("bad counter state"))?;
            EMITTED.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
            Ok(())
        },
    );
    let count: u64 = env.config().parse_or("count", 20_000_000)?;
    let workload = env.config().get("workload").unwrap_or("w2").to_owned();
    let output = env.config().get("output").map(str::to_owned);
    let rate: u64 = env.config().parse_or("rate", 0)?;
    env.set_name(&format!("nexmark-{workload}"));
    let by_auction = env
        .source(Datagen::bids(count).rate(rate))
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(200)))
        .key_by(|b: &Bid| b.auction);
    let windows = match workload.as_str() {
        "w2" => by_auction.window(Tumbling::of(Duration::from_secs(1))).aggregate_with(
            CountAndMax,
            move |auction, w, (count, max)| row(numbered, auction, w, count, Some(max)),
        ),
        "w3" => by_auction
            .window(Sliding::of(Duration::from_secs(10), Duration::from_secs(2)))
            .aggregate_with(Count, move |auction, w, count| row(numbered, auction, w, count, None)),
        other => return Err(Error::msg(format!("unknown workload {other:?}: w2 or w3"))),
    }
    .name(&workload);
    match output.as_deref() {
        None => windows.sink(Blackhole),
        Some("stdout") => windows.map(line).sink(Stdout),
        // A directory: exactly-once part files.
        Some(dir) => windows.map(line).sink(PartFileSink::new(dir)),
    }
    Ok(())
}

flinkw::export_job!(job);
