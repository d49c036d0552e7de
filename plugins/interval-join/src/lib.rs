//! Joins: orders and shipments, both CSV files of `ts,key,value`
//! (ts in ms since the epoch), joined by key where the shipment's time lies
//! within `[order + lower-ms, order + upper-ms]` (default 0 and 5000). Emits
//! `key,order_ts,shipment_ts,order_value,shipment_value`. With
//! `--set join=window` (and `window-ms`, default 10000) it is a window join
//! instead: every order and shipment of a key in the same tumbling window,
//! emitted as `key,window_start,order_ts,shipment_ts`.
//!
//! ```text
//! flinkw run interval-join.wasm --set orders=orders.csv --set shipments=shipments.csv
//! ```

use std::time::Duration;

use flinkw::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
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
    let join = env.config().get("join").unwrap_or("interval").to_owned();
    let window: u64 = env.config().parse_or("window-ms", 10_000)?;
    let mut keyed = |path: &str| {
        env.source(File::csv::<Event>(path))
            .assign_timestamps(|e: &Event| e.ts)
            .watermarks(WatermarkStrategy::bounded_out_of_orderness(disorder))
            .key_by(|e: &Event| e.key.clone())
    };
    let orders = keyed(&orders);
    let shipments = keyed(&shipments);
    let pairs = match join.as_str() {
        "interval" => orders.interval_join(shipments, lower, upper).process(|o: &Event, s: &Event| {
            format!("{},{},{},{},{}", o.key, o.ts, s.ts, o.value, s.value)
        }),
        "window" => orders
            .window_join(shipments, Tumbling::of(Duration::from_millis(window)))
            .process(|o: &Event, s: &Event, w| format!("{},{},{},{}", o.key, w.start, o.ts, s.ts)),
        other => return Err(Error::msg(format!("unknown join {other:?}: interval or window"))),
    };
    pairs.sink(Stdout);
    Ok(())
}

flinkw::export_job!(job);
