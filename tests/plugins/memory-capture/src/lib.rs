//! Running totals per key kept in a plain `static` — no keyed state, no
//! `snapshot`/`restore` code: only whole-memory capture (declared below)
//! carries them through failures.
//!
//! Numbers 0..count (`--set count`, `--set rate`) keyed by `n % 7`; each
//! record becomes `key,n,count,sum,seen` (the key's running count and sum
//! of numbers so far from the static, and its count in a keyed value state
//! of the host, whose handle the plugin keeps across calls) in exactly-once
//! part files in `--set output=DIR`.
//! `--set ballast-mib=N` fills N MiB of memory with data that every
//! checkpoint captures (to measure capture costs).
//!
//! The `plain` feature builds the same job without the declaration.

use std::collections::HashMap;
use std::sync::Mutex;

use flinkw::prelude::*;

/// Count and sum of numbers per key, as ordinary Rust data.
static TOTALS: Mutex<Option<HashMap<u64, (u64, u64)>>> = Mutex::new(None);
/// Non-zero data that only takes up memory.
static BALLAST: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("memory-capture");
    let count: u64 = env.config().parse_or("count", 1000)?;
    let rate: u64 = env.config().parse_or("rate", 0)?;
    let ballast: usize = env.config().parse_or("ballast-mib", 0)?;
    let output = env.config().require("output")?;
    {
        let mut b = BALLAST.lock().map_err(|_| Error::msg("poisoned"))?;
        if b.len() != ballast << 20 {
            *b = (0..ballast << 20).map(|i| (i % 251) as u8 | 1).collect();
        }
    }
    let seen = ValueState::<u64>::new("seen");
    env.source(Datagen::sequence(count).rate(rate))
        .key_by(|n: &u64| n % 7)
        .process(move |ctx, n: u64, out| {
            let mut totals = TOTALS.lock().map_err(|_| Error::msg("poisoned"))?;
            let (c, s) = totals.get_or_insert_with(HashMap::new).entry(n % 7).or_default();
            *c += 1;
            *s += n;
            let records = seen.get(ctx)?.unwrap_or(0) + 1;
            seen.set(ctx, &records)?;
            out.emit(format!("{},{n},{c},{s},{records}", n % 7));
            Ok(())
        })
        .sink(PartFileSink::new(&output));
    Ok(())
}

flinkw::export_job!(job);
#[cfg(not(feature = "plain"))]
flinkw::capture_memory!();
