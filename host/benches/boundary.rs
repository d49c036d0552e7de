//! The Wasm boundary, measured with workload W1 (BENCHMARKS.md).
//!
//! - `w1_chain/{wasm,native}/N`: records/s of the W1 chain (decode a postcard
//!   bid, Nexmark q1 `price * 908 / 1000`, q2 `auction % 123 == 0`, encode the
//!   survivors into a packed batch) over one packed batch of `N` datagen bids:
//!   through the fused guest chain of the `nexmark-w1` plugin
//!   (`Instance::transform`), and as the same work in native Rust.
//! - `plugin/compile`: `Plugin::load` with a fresh engine and no cache dir
//!   (compile, world check, linking, pre-instantiation).
//! - `plugin/instantiate`: a fresh instance from the pre-instantiated template
//!   (drop not timed); `plugin/instantiate+drop` with it.
//! - `plugin/empty-call`: `Instance::transform` of an empty batch.
//!
//! ```text
//! CARGO_TARGET_DIR=$HOME/.cache/flinkw/target cargo bench -p flinkw-host --bench boundary
//! ```
//!
//! `FLINKW_BENCH_PLUGIN=path.wasm` measures another build of the plugin.
//!
//! After criterion's own report it prints a summary table computed from
//! criterion's measured samples (warm-up calls left out) with criterion's own
//! point estimate, so its figures match the `time:` lines above.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use flinkw_batch::{Batch, BatchBuilder};
use flinkw_host::connector::{Poll, SourceDefaults, SourceSpec};
use flinkw_host::engine::Engine;
use flinkw_host::graph::{Connector, NodeKind};
use flinkw_host::limits::Limits;
use flinkw_host::plugin::{Instance, Plugin};
use serde::{Deserialize, Serialize};

/// Batch sizes measured; 1024 is the host's default `batch.size`.
const BATCH_SIZES: [usize; 4] = [1, 64, 1024, 8192];
/// The batch size the Wasm/native target applies to.
const DEFAULT_BATCH: usize = 1024;
/// Target for Wasm throughput relative to native at the default batch size.
const TARGET_RATIO: f64 = 0.67;
/// Samples per chain benchmark (criterion's default).
const CHAIN_SAMPLES: usize = 100;
/// Samples for the compile benchmark (each takes tens of ms).
const COMPILE_SAMPLES: usize = 10;
/// Samples for the instantiate and empty-call benchmarks.
const CALL_SAMPLES: usize = 100;

/// Every (iterations, elapsed) pair criterion asked for, per benchmark.
static SAMPLES: Mutex<BTreeMap<String, Vec<(u64, Duration)>>> = Mutex::new(BTreeMap::new());

fn record(key: &str, iters: u64, elapsed: Duration) -> Duration {
    SAMPLES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key.to_owned())
        .or_default()
        .push((iters, elapsed));
    elapsed
}

/// Time per iteration over the last `samples` calls (criterion's measured
/// samples come after its warm-up calls), estimated as criterion does: the
/// least-squares slope through the origin of elapsed time against
/// iterations (for flat sampling, where every sample has the same number of
/// iterations, that is total time over total iterations).
fn per_iter(key: &str, samples: usize) -> Option<Duration> {
    let all = SAMPLES.lock().unwrap_or_else(|p| p.into_inner());
    let runs = all.get(key)?;
    let measured = &runs[runs.len().saturating_sub(samples)..];
    let (xy, xx) = measured.iter().fold((0.0, 0.0), |(xy, xx), (iters, d)| {
        let x = *iters as f64;
        (xy + x * d.as_secs_f64(), xx + x * x)
    });
    (xx > 0.0).then(|| Duration::from_secs_f64(xy / xx))
}

// ---- The bids the datagen source makes ----

/// A packed batch of bids `0..records`, made by the host's datagen source
/// itself (default seed), as a job would receive them.
fn bids_batch(records: usize) -> Vec<u8> {
    let options = [("kind", "bids"), ("count", &records.to_string()[..])]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let connector = Connector { kind: "datagen".into(), options };
    let spec = SourceSpec::new(&connector, SourceDefaults::default()).expect("a datagen spec");
    let mut reader = spec.open(0, 1).expect("a datagen reader");
    let mut builder = BatchBuilder::with_capacity(records, records * 32);
    let far = Instant::now() + Duration::from_secs(3600);
    while builder.len() < records {
        let want = records - builder.len();
        if reader.poll(&mut builder, want, far).expect("datagen poll") == Poll::End {
            break;
        }
    }
    builder.finish()
}

// ---- The W1 chain in native Rust: the work the guest's fused chain does ----

/// The SDK's `flinkw::Bid`, decoded and encoded with postcard as in the guest.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Bid {
    auction: u64,
    bidder: u64,
    price: u64,
    ts: i64,
}

fn q1(bid: Bid) -> Bid {
    Bid { price: bid.price * 908 / 1000, ..bid }
}

fn q2(bid: &Bid) -> bool {
    bid.auction.is_multiple_of(123)
}

/// Validates the batch, decodes each value, maps, filters and encodes the
/// survivors into a new packed batch, as the SDK's fused chain does.
fn native_chain(input: &[u8]) -> Result<Vec<u8>, String> {
    let batch = Batch::new(input).map_err(|e| e.to_string())?;
    let mut out = BatchBuilder::with_capacity(batch.len(), batch.data_len());
    for rec in batch.iter() {
        let bid: Bid = postcard::from_bytes(rec.value)
            .map_err(|e| format!("cannot decode record value: {e}"))?;
        let bid = q1(bid);
        if !q2(&bid) {
            continue;
        }
        let mut result = Ok(());
        out.push_with(rec.timestamp, b"", |buf| {
            result = postcard::to_extend(&bid, std::mem::take(buf))
                .map(|v| *buf = v)
                .map_err(|e| format!("cannot encode record value: {e}"));
        });
        result?;
    }
    Ok(out.finish())
}

// ---- Setup ----

/// The W1 plugin as the tests build it, or the file `FLINKW_BENCH_PLUGIN`
/// names (to compare builds of the plugin, e.g. with other profile settings).
fn plugin_bytes() -> Vec<u8> {
    let path = std::env::var("FLINKW_BENCH_PLUGIN")
        .unwrap_or_else(|_| flinkw_tests::artifacts::NEXMARK_W1.to_owned());
    eprintln!("W1 plugin: {path}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn new_engine() -> Engine {
    Engine::new(Limits::default(), None).expect("engine")
}

/// An instance that has planned the job, and the id of its fused chain.
fn planned(plugin: &Plugin) -> (Instance, u32) {
    let mut instance = plugin.instantiate("bench/w1#0").expect("instantiate");
    let graph = instance.plan(&[("count".to_owned(), "1".to_owned())]).expect("plan");
    let chain = graph
        .nodes
        .iter()
        .find_map(|n| match &n.kind {
            NodeKind::Transform { chain, .. } => Some(*chain),
            _ => None,
        })
        .expect("the W1 plan has a transform node");
    (instance, chain)
}

fn bench_chain(c: &mut Criterion, plugin: &Plugin) {
    let (mut instance, chain) = planned(plugin);
    let mut group = c.benchmark_group("w1_chain");
    group.sample_size(CHAIN_SAMPLES);
    for size in BATCH_SIZES {
        let input = bids_batch(size);
        let wasm_out = instance.transform(chain, &input).expect("transform");
        let native_out = native_chain(&input).expect("native chain");
        assert_eq!(wasm_out, native_out, "Wasm and native disagree at {size}");
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::new("wasm", size), &input, |b, input| {
            let key = format!("wasm/{size}");
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(instance.transform(chain, input).expect("transform"));
                }
                record(&key, iters, start.elapsed())
            });
        });
        group.bench_with_input(BenchmarkId::new("native", size), &input, |b, input| {
            let key = format!("native/{size}");
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(native_chain(black_box(input)).expect("native chain"));
                }
                record(&key, iters, start.elapsed())
            });
        });
    }
    group.finish();
}

fn bench_plugin(c: &mut Criterion, bytes: &[u8], plugin: &Plugin) {
    let mut group = c.benchmark_group("plugin");
    group.sample_size(COMPILE_SAMPLES);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("compile", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // A fresh engine each time: nothing cached in memory or on disk.
                let engine = new_engine();
                let start = Instant::now();
                let loaded = Plugin::load(&engine, "nexmark-w1", bytes).expect("load");
                total += start.elapsed();
                drop(black_box(loaded));
            }
            record("compile", iters, total)
        });
    });
    group.sample_size(CALL_SAMPLES);
    group.sampling_mode(SamplingMode::Linear);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("instantiate", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let instance = plugin.instantiate("bench/w1#0").expect("instantiate");
                total += start.elapsed();
                drop(black_box(instance));
            }
            record("instantiate", iters, total)
        });
    });
    group.bench_function("instantiate+drop", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                drop(black_box(plugin.instantiate("bench/w1#0").expect("instantiate")));
            }
            record("instantiate+drop", iters, start.elapsed())
        });
    });
    let (mut instance, chain) = planned(plugin);
    let empty = flinkw_batch::empty();
    group.bench_function("empty-call", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(instance.transform(chain, &empty).expect("transform"));
            }
            record("empty-call", iters, start.elapsed())
        });
    });
    group.finish();
}

fn print_summary() {
    let rate = |d: Duration, records: usize| records as f64 / d.as_secs_f64();
    println!();
    println!("W1 chain through the boundary (criterion's estimate, as above)");
    println!("| batch | Wasm rec/s | native rec/s | Wasm/native |");
    println!("|---:|---:|---:|---:|");
    for size in BATCH_SIZES {
        let (Some(w), Some(n)) = (
            per_iter(&format!("wasm/{size}"), CHAIN_SAMPLES),
            per_iter(&format!("native/{size}"), CHAIN_SAMPLES),
        ) else {
            continue;
        };
        let (wr, nr) = (rate(w, size), rate(n, size));
        let mark = if size == DEFAULT_BATCH {
            let verdict = if wr / nr >= TARGET_RATIO { "meets" } else { "misses" };
            format!(" ({verdict} the {TARGET_RATIO:.2}x target)")
        } else {
            String::new()
        };
        println!("| {size} | {:.3}M | {:.3}M | {:.3}{mark} |", wr / 1e6, nr / 1e6, wr / nr);
    }
    let show = |name: &str, samples: usize, unit: &str, scale: f64| {
        if let Some(d) = per_iter(name, samples) {
            println!("| {name} | {:.3} {unit} |", d.as_secs_f64() * scale);
        }
    };
    println!();
    println!("| plugin | time |");
    println!("|---|---:|");
    show("compile", COMPILE_SAMPLES, "ms", 1e3);
    show("instantiate", CALL_SAMPLES, "µs", 1e6);
    show("instantiate+drop", CALL_SAMPLES, "µs", 1e6);
    show("empty-call", CALL_SAMPLES, "µs", 1e6);
}

fn main() {
    let bytes = plugin_bytes();
    let engine = new_engine();
    let plugin = Plugin::load(&engine, "nexmark-w1", &bytes).expect("load the W1 plugin");
    let mut c = Criterion::default().configure_from_args();
    bench_chain(&mut c, &plugin);
    bench_plugin(&mut c, &bytes, &plugin);
    c.final_summary();
    print_summary();
}
