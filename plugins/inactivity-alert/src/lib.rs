//! Inactivity alert: for events `ts,key,value` from a CSV (ts in ms since
//! the epoch), emits `key,last_seen,alert_at` when a key has had no event
//! for `gap-ms` (default 10000) of event time. A keyed process function
//! with value state and event-time timers, as in Flink's documentation.
//!
//! ```text
//! flinkw run inactivity-alert.wasm --set input=examples/data/events.csv
//! ```

use std::time::Duration;

use flinkw::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Event {
    ts: i64,
    key: String,
    value: i64,
}

struct Inactivity {
    gap: i64,
    last_seen: ValueState<i64>,
}

impl KeyedProcessFunction<String, Event, String> for Inactivity {
    fn process(
        &mut self,
        ctx: &mut KeyedContext,
        event: Event,
        _out: &mut Collector<String>,
    ) -> Result<(), Error> {
        let last = self.last_seen.get(ctx)?.unwrap_or(i64::MIN);
        if event.ts > last {
            self.last_seen.set(ctx, &event.ts)?;
            ctx.register_event_timer(event.ts + self.gap);
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        ctx: &mut KeyedContext,
        key: String,
        timestamp: i64,
        _domain: TimeDomain,
        out: &mut Collector<String>,
    ) -> Result<(), Error> {
        // Only the timer of the latest event counts; earlier ones are stale.
        if let Some(last) = self.last_seen.get(ctx)?
            && last + self.gap == timestamp
        {
            out.emit(format!("{key},{last},{timestamp}"));
        }
        Ok(())
    }
}

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("inactivity-alert");
    let input = env.config().require("input")?;
    let gap: i64 = env.config().parse_or("gap-ms", 10_000)?;
    let disorder = Duration::from_millis(env.config().parse_or("out-of-orderness-ms", 1_000)?);
    env.source(File::csv::<Event>(&input))
        .assign_timestamps(|e: &Event| e.ts)
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(disorder))
        .key_by(|e: &Event| e.key.clone())
        .process_fn(Inactivity { gap, last_seen: ValueState::new("last-seen") })
        .name("inactivity")
        .sink(Stdout);
    Ok(())
}

flinkw::export_job!(job);
