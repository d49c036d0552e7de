//! Benchmark workload W5 of BENCHMARKS.md: keyed state of a set size,
//! updated by every record, to measure checkpoints of large state (run it
//! with `--state-backend rocksdb` and `--checkpoint-dir`).
//!
//! The numbers `0..count` (`--set count=N`, 0 = unbounded; `--set rate=R`
//! per second, 0 = as fast as it goes) are keyed by `n % keys` (`--set
//! keys=K`, default 4,000,000); each key keeps `value-bytes` bytes (default
//! 256) in a value state, and each record rewrites one byte of its key's
//! value. `keys × value-bytes` is the state's size (1 GB by default); the
//! first `keys` records create it, later ones update it. Nothing is
//! emitted.
//!
//! ```text
//! flinkw run keyed-state.wasm --state-backend rocksdb --state-dir /tmp/s \
//!   --checkpoint-dir /tmp/ck --set checkpoint.interval-ms=10000 --set count=0 --set rate=50000
//! ```

use flinkw::prelude::*;

/// Keeps `size` bytes per key.
struct Keep {
    size: usize,
    value: ValueState<Vec<u8>>,
}

impl KeyedProcessFunction<u64, u64, u64> for Keep {
    fn process(
        &mut self,
        ctx: &mut KeyedContext,
        n: u64,
        _out: &mut Collector<u64>,
    ) -> Result<(), Error> {
        let mut value = match self.value.get(ctx)? {
            Some(v) => v,
            // Pseudo-random bytes, so that compression does not shrink the
            // state on disk.
            None => {
                let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                (0..self.size)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            }
        };
        if let Some(b) = value.get_mut((n / 7) as usize % self.size.max(1)) {
            *b = b.wrapping_add(1);
        }
        self.value.set(ctx, &value)
    }
}

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("keyed-state");
    let count: u64 = env.config().parse_or("count", 8_000_000)?;
    let rate: u64 = env.config().parse_or("rate", 0)?;
    let keys: u64 = env.config().parse_or("keys", 4_000_000)?;
    let size: usize = env.config().parse_or("value-bytes", 256)?;
    if keys == 0 || size == 0 {
        return Err(Error::msg("keys and value-bytes must be at least 1"));
    }
    env.source(Datagen::sequence(count).rate(rate))
        .key_by(move |n: &u64| n % keys)
        .process_fn(Keep { size, value: ValueState::new("value") })
        .name("keep")
        .sink(Blackhole);
    Ok(())
}

flinkw::export_job!(job);
