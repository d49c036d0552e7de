//! The native-Rust baseline of the benchmark workloads (`bench/run.sh`):
//! W1, W2 and W3 with the same source, batches, codec and sink as a
//! `flinkw run` of the Wasm plugins, but with the per-record functions
//! compiled into this binary and driven by one loop on one thread.
//!
//! ```text
//! native_bench w1|w2|w3 COUNT [BATCH]
//! ```
//!
//! - The source is the host's `datagen` connector (`kind=bids`, seed 42),
//!   polled into packed batches of `BATCH` records (default 1024, as
//!   `batch.size`), exactly as a source subtask does.
//! - Each record is decoded with postcard into the SDK's `Bid` shape, as
//!   the guest does; results are encoded (W1: the `Bid`; W2/W3: the same
//!   formatted line as `plugins/nexmark-windows`) into a packed batch and
//!   written to the host's `blackhole` sink, which reads every byte.
//! - W2/W3 keep one accumulator per (auction, window) in a hash map and
//!   fire windows when the watermark (max timestamp − 200 ms − 1, the
//!   plugin's strategy) passes their end; at the end every window fires.
//!
//! What it leaves out, and so what the Wasm/native ratio includes: the
//! Wasm boundary and guest code, and for W2/W3 also the engine's keyed
//! state backend, timers and key-group routing (the window operator).
//! It prints one JSON line: records in, records out, seconds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flinkw_host::batch::{Batch, BatchBuilder};
use flinkw_host::connector::{Poll, SinkSpec, SourceDefaults, SourceSpec};
use flinkw_host::graph::Connector;
use serde::{Deserialize, Serialize};

/// The SDK's `flinkw::Bid`, as the guest decodes it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Bid {
    auction: u64,
    bidder: u64,
    price: u64,
    ts: i64,
}

fn connector(kind: &str, options: &[(&str, String)]) -> Connector {
    Connector {
        kind: kind.into(),
        options: options.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    }
}

/// One accumulator map per window start: (count, max price) per auction.
type Windows = BTreeMap<i64, foldhash::HashMap<u64, (u64, u64)>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: native_bench w1|w2|w3 COUNT [BATCH]";
    let workload = args.get(1).ok_or(usage)?.clone();
    let count: u64 = args.get(2).ok_or(usage)?.parse()?;
    let batch: usize = args.get(3).map(|b| b.parse()).transpose()?.unwrap_or(1024);
    let (size, slide) = match workload.as_str() {
        "w1" => (0, 0),
        "w2" => (1000, 1000),
        "w3" => (10_000, 2000),
        other => return Err(format!("unknown workload {other:?}; {usage}").into()),
    };
    let source = SourceSpec::new(
        &connector("datagen", &[("kind", "bids".into()), ("count", count.to_string())]),
        SourceDefaults::default(),
    )?;
    let mut reader = source.open(0, 1)?;
    let mut sink = SinkSpec::new(&connector("blackhole", &[]))?.open(0)?;
    let started = Instant::now();
    let far = started + Duration::from_secs(24 * 3600);
    let (mut records_in, mut records_out) = (0u64, 0u64);
    let mut windows = Windows::new();
    let mut max_ts = i64::MIN;
    let mut out = BatchBuilder::new();
    loop {
        let mut b = BatchBuilder::with_capacity(batch, batch * 24);
        let poll = reader.poll(&mut b, batch, far)?;
        let bytes = b.finish();
        let input = Batch::new(&bytes)?;
        records_in += input.len() as u64;
        for r in input.iter() {
            let mut bid: Bid = postcard::from_bytes(r.value)?;
            if size == 0 {
                // W1: Nexmark q1, then q2.
                bid.price = bid.price * 908 / 1000;
                if bid.auction.is_multiple_of(123) {
                    out.push_with(r.timestamp, b"", |buf| {
                        let _ = postcard::to_io(&bid, buf);
                    });
                }
                continue;
            }
            max_ts = max_ts.max(bid.ts);
            let last = bid.ts - bid.ts.rem_euclid(slide);
            let mut start = last;
            while start > bid.ts - size {
                let acc = windows.entry(start).or_default().entry(bid.auction).or_default();
                acc.0 += 1;
                acc.1 = acc.1.max(bid.price);
                start -= slide;
            }
        }
        if size > 0 {
            let watermark = if poll == Poll::End { i64::MAX } else { max_ts - 200 - 1 };
            fire(&mut windows, watermark, size, workload == "w2", &mut out);
        }
        if !out.is_empty() {
            records_out += out.len() as u64;
            let bytes = out.finish();
            sink.write(&Batch::new(&bytes)?)?;
        }
        if poll == Poll::End {
            break;
        }
    }
    sink.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"workload\":\"{workload}\",\"records_in\":{records_in},\"records_out\":{records_out},\"seconds\":{seconds:.6}}}"
    );
    Ok(())
}

/// Emits and drops every window whose last timestamp the watermark passed,
/// in (window, auction) order.
fn fire(windows: &mut Windows, watermark: i64, size: i64, with_max: bool, out: &mut BatchBuilder) {
    while let Some(entry) = windows.first_entry() {
        let start = *entry.key();
        if start + size - 1 > watermark {
            break;
        }
        let mut accs: Vec<(u64, (u64, u64))> = entry.remove().into_iter().collect();
        accs.sort_unstable_by_key(|(auction, _)| *auction);
        let end = start + size;
        for (auction, (count, max)) in accs {
            let line = if with_max {
                format!("{auction},{start},{end},{count},{max}")
            } else {
                format!("{auction},{start},{end},{count}")
            };
            out.push_with(end - 1, b"", |buf| {
                let _ = postcard::to_io(&line, buf);
            });
        }
    }
}
