//! A plugin that misbehaves on purpose, for the host's tests. `--set
//! mode=M` picks how, on the record with value `--set at=N` (default 3) of
//! `count` (default 10) made `rate` per second (default: at full speed):
//! `ok`, `panic`, `error`, `loop`, `membomb`, `recurse`, `plan-error`, and
//! for windows `no-event-time`, `zero-window`, `bad-slide`; for state
//! `state-type` (reads a value state as another type than it was written)
//! `slow` (1 KiB records through a shuffle into a consumer that spins
//! `work` iterations per record: backpressure), `processing-windows` (counts per 300 ms processing-time window of
//! records arriving `rate` per second), and `ttl` (records `rate` per second, each reading the value state the
//! previous one wrote, which lives `ttl-ms`; 0 = forever), and `tick` (`rate`
//! records per second, default 1, through a map into a blackhole: a tiny,
//! nearly idle job for density measurements).

use std::hint::black_box;
use std::time::Duration;

use flinkw::prelude::*;

#[inline(never)]
fn explode(n: u64) -> u64 {
    panic!("boom at record {n}");
}

#[inline(never)]
fn spin_forever(n: u64) -> u64 {
    let mut x = n;
    loop {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

#[inline(never)]
fn eat_memory(n: u64) -> u64 {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![n as u8; 1 << 20]);
        black_box(&hoard);
    }
}

#[inline(never)]
#[allow(unconditional_recursion)] // the point of this mode
fn recurse_forever(n: u64) -> u64 {
    let mut pad = [0u8; 64];
    pad[0] = n as u8;
    black_box(&pad);
    1 + recurse_forever(black_box(n + 1))
}

struct Count;

impl AggregateFunction<u64> for Count {
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: &u64) {
        *acc += 1;
    }
    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
    fn result(&self, acc: u64) -> u64 {
        acc
    }
}

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("bad-guest");
    let mode = env.config().get("mode").unwrap_or("ok").to_owned();
    let at: u64 = env.config().parse_or("at", 3)?;
    let count: u64 = env.config().parse_or("count", 10)?;
    // `panic-first`: panics like `panic`, but only in the job's first run.
    let first_run = env.config().get("flinkw.attempt") == Some("0");
    // `panic-until`: panics like `panic` in the job's attempts before `until`.
    let attempt: u32 = env.config().parse_or("flinkw.attempt", 0)?;
    let until: u32 = env.config().parse_or("until", 1)?;
    let mode = match mode.as_str() {
        "panic-first" if first_run => "panic".to_owned(),
        "panic-until" if attempt < until => "panic".to_owned(),
        "panic-first" | "panic-until" => "ok".to_owned(),
        _ => mode,
    };
    if mode == "plan-error" {
        return Err(Error::msg("this plugin refuses to plan"));
    }
    let windows = match mode.as_str() {
        "no-event-time" => Some(Tumbling::of(Duration::from_secs(1)).into()),
        "zero-window" => Some(Tumbling::of(Duration::ZERO).into()),
        "bad-slide" => Some(Sliding::of(Duration::from_secs(10), Duration::from_secs(20)).into()),
        _ => None,
    };
    if mode == "processing-windows" {
        let rate: u64 = env.config().parse_or("rate", 30)?;
        env.source(Datagen::sequence(count).rate(rate))
            .key_by(|_: &u64| 0u8)
            .window(Tumbling::of(Duration::from_millis(300)))
            .processing_time()
            .aggregate(Count)
            .sink(Stdout);
        return Ok(());
    }
    if mode == "ttl" {
        let ttl_ms: u64 = env.config().parse_or("ttl-ms", 0)?;
        let rate: u64 = env.config().parse_or("rate", 5)?;
        let last = if ttl_ms == 0 {
            ValueState::<u64>::new("last")
        } else {
            ValueState::<u64>::with_ttl("last", StateTtl::new(Duration::from_millis(ttl_ms)))
        };
        env.source(Datagen::sequence(count).rate(rate))
            .key_by(|_: &u64| 0u8)
            .process(move |ctx, n: u64, out| {
                let previous = last.get(ctx)?;
                last.set(ctx, &n)?;
                out.emit(format!("{n} {previous:?}"));
                Ok(())
            })
            .sink(Stdout);
        return Ok(());
    }
    if mode == "tick" {
        // A tiny, nearly idle job: `rate` records per second (default 1)
        // through one guest call into a blackhole. For density measurements.
        let rate: u64 = env.config().parse_or("rate", 1)?;
        env.source(Datagen::sequence(count).rate(rate))
            .map(|n: u64| n.wrapping_add(1))
            .sink(Blackhole);
        return Ok(());
    }
    if mode == "slow" {
        // Fast source, 1 KiB records, a shuffle, and a consumer that spins
        // `work` iterations per record: for backpressure tests.
        let work: u64 = env.config().parse_or("work", 10_000)?;
        env.source(Datagen::sequence(count))
            .map(|n: u64| format!("{n:08}{}", "x".repeat(1016)))
            .key_by(|s: &String| s.as_bytes()[7])
            .process(move |_ctx, s: String, out| {
                let mut x = s.len() as u64;
                for _ in 0..work {
                    x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                out.emit(format!("{}{}", &s[..8], x % 2));
                Ok(())
            })
            .sink(Blackhole);
        return Ok(());
    }
    if mode == "state-type" {
        let as_byte = ValueState::<u8>::new("n");
        let as_text = ValueState::<String>::new("n");
        env.source(Datagen::sequence(count))
            .key_by(|n: &u64| n % 2)
            .process(move |ctx, n: u64, out| {
                as_byte.set(ctx, &200)?;
                let text = as_text.get(ctx)?;
                out.emit(format!("{n} {text:?}"));
                Ok(())
            })
            .sink(Stdout);
        return Ok(());
    }
    if let Some(assigner) = windows {
        let assigner: WindowAssigner = assigner;
        env.source(Datagen::sequence(count))
            .key_by(|n: &u64| n % 3)
            .window(assigner)
            .aggregate(Count)
            .sink(Stdout);
        return Ok(());
    }
    if !["ok", "panic", "error", "loop", "membomb", "recurse"].contains(&mode.as_str()) {
        return Err(Error::msg(format!("unknown mode {mode:?}")));
    }
    // `rate`: records per second (0, the default: as fast as possible).
    let rate: u64 = env.config().parse_or("rate", 0)?;
    let source = Datagen::sequence(count);
    env.source(if rate > 0 { source.rate(rate) } else { source })
        .try_map(move |n: u64| {
            if n != at {
                return Ok(n);
            }
            // A line in the host's log (tagged with the job and subtask there).
            flinkw::log(flinkw::Level::Warn, &format!("misbehaving at record {n} ({mode})"));
            match mode.as_str() {
                "panic" => Ok(explode(n)),
                "error" => Err(format!("cannot handle record {n}")),
                "loop" => Ok(spin_forever(n)),
                "membomb" => Ok(eat_memory(n)),
                "recurse" => Ok(recurse_forever(n)),
                _ => Ok(n),
            }
        })
        .name("misbehave")
        .sink(Stdout);
    Ok(())
}

flinkw::export_job!(job);
