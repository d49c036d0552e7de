//! Object storage -> job -> object storage: reads orders (CSV with a header,
//! JSON lines or Parquet) from the files under `input`, and writes rolling part
//! files under `output`, exactly once with `--checkpoint-dir`.
//!
//! ```text
//! flinkw run object_store_etl.wasm --checkpoint-dir ck \
//!   --set input=s3://bucket/orders --set output=s3://bucket/out \
//!   --set s3.endpoint=http://127.0.0.1:9000
//! ```
//!
//! Config: `input`, `output` (URLs: `s3://bucket/prefix`, `file:///dir` or
//! a directory), `format` = `csv` (default) | `jsonl` | `parquet` (input),
//! `glob` (default `**`), `output-format` = `jsonl` (default) | `csv`,
//! `roll-bytes` (part size), `pipeline` = `map` (default: each order with
//! a positive amount as `{id, customer, cents}`) | `count` (per customer,
//! its running number of orders as `{customer, n}`), `s3.*` (store
//! settings: `s3.endpoint`, `s3.access-key-id`, …).

use flinkw::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    amount: f64,
}

#[derive(Serialize, Deserialize)]
struct Cents {
    id: u64,
    customer: String,
    cents: i64,
}

#[derive(Serialize, Deserialize)]
struct Count {
    customer: String,
    n: u64,
}

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("object-store-etl");
    let config = env.config();
    let input = config.require("input")?;
    let output = config.require("output")?;
    let glob = config.get("glob").unwrap_or("**").to_owned();
    let format = config.get("format").unwrap_or("csv").to_owned();
    let output_format = config.get("output-format").unwrap_or("jsonl").to_owned();
    let roll_bytes = match config.get("roll-bytes") {
        Some(v) => Some(v.parse::<u64>().map_err(|e| Error::msg(format!("roll-bytes: {e}")))?),
        None => None,
    };
    let pipeline = config.get("pipeline").unwrap_or("map").to_owned();

    let source = match format.as_str() {
        "csv" => Objects::csv::<Order>(&input),
        "jsonl" => Objects::json_lines::<Order>(&input),
        "parquet" => Objects::parquet::<Order>(&input),
        other => {
            return Err(Error::msg(format!("format must be csv, jsonl or parquet, not {other}")));
        }
    };
    let source = source.glob(&glob).store_options_from(config, "s3.");
    let mut sink = Objects::sink(&output).store_options_from(config, "s3.");
    let orders = env.source(source);
    if let Some(bytes) = roll_bytes {
        sink = sink.roll_at_bytes(bytes);
    }
    if output_format == "csv" {
        sink = sink.csv(&[]);
    }
    match pipeline.as_str() {
        "map" => orders
            .filter(|o: &Order| o.amount > 0.0)
            .name("positive")
            .map(|o: Order| Cents {
                id: o.id,
                customer: o.customer,
                cents: (o.amount * 100.0).round() as i64,
            })
            .name("to-cents")
            .sink(sink),
        "count" => {
            let count = ValueState::<u64>::new("count");
            orders
                .key_by(|o: &Order| o.customer.clone())
                .process(move |ctx, o: Order, out| {
                    let n = count.get(ctx)?.unwrap_or(0) + 1;
                    count.set(ctx, &n)?;
                    out.emit(Count { customer: o.customer, n });
                    Ok(())
                })
                .name("count")
                .sink(sink)
        }
        other => return Err(Error::msg(format!("pipeline must be map or count, not {other}"))),
    }
    Ok(())
}

flinkw::export_job!(job);
