//! Interval join: orders and shipments, both CSV files of `ts,key,value`
//! (ts in ms since the epoch), joined by key where the shipment's time lies
//! within `[order + lower-ms, order + upper-ms]` (default 0 and 5000). Emits
//! `key,order_ts,shipment_ts,order_value,shipment_value`.
//!
//! ```text
//! flinkw run interval-join.wasm --set orders=orders.csv --set shipments=shipments.csv
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

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("interval-join");
    let orders = env.config().require("orders")?;
    let shipments = env.config().require("shipments")?;
    let lower: i64 = env.config().parse_or("lower-ms", 0)?;
    let upper: i64 = env.config().parse_or("upper-ms", 5_000)?;
    let disorder = Duration::from_millis(env.config().parse_or("out-of-orderness-ms", 1_000)?);
    let mut keyed = |path: &str| {
        env.source(File::csv::<Event>(path))
            .assign_timestamps(|e: &Event| e.ts)
            .watermarks(WatermarkStrategy::bounded_out_of_orderness(disorder))
            .key_by(|e: &Event| e.key.clone())
    };
    let orders = keyed(&orders);
    let shipments = keyed(&shipments);
    orders
        .interval_join(shipments, lower, upper)
        .process(|o: &Event, s: &Event| format!("{},{},{},{},{}", o.key, o.ts, s.ts, o.value, s.value))
        .sink(Stdout);
    Ok(())
}

flinkw::export_job!(job);
