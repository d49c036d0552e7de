//! Filter-map: reads orders as JSON lines (or CSV), keeps those of at least
//! `min-amount` (default 10), converts amounts to cents in USD, and writes
//! JSON lines. Stateless: the filter and the map run fused, one guest call
//! per batch.
//!
//! ```text
//! flinkw run filter-map.wasm --set input=examples/data/orders.jsonl
//! ```

use flinkw::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    amount: f64,
    currency: String,
}

#[derive(Serialize, Deserialize)]
struct UsdOrder {
    id: u64,
    customer: String,
    usd_cents: i64,
}

/// Exchange rate to USD, or none for a currency we do not convert.
fn usd_rate(currency: &str) -> Option<f64> {
    match currency {
        "USD" => Some(1.0),
        "EUR" => Some(1.08),
        "GBP" => Some(1.27),
        _ => None,
    }
}

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("filter-map");
    let input = env.config().require("input")?;
    let min_amount: f64 = env.config().parse_or("min-amount", 10.0)?;
    // Orders come as JSON lines, or as CSV with a header line.
    let source = if input.ends_with(".csv") {
        env.source(File::csv::<Order>(&input))
    } else {
        env.source(File::json_lines::<Order>(&input))
    };
    let converted = source
        .filter(move |o: &Order| o.amount >= min_amount && usd_rate(&o.currency).is_some())
        .name("large-known-currency")
        .map(|o: Order| {
            let rate = usd_rate(&o.currency).unwrap_or(1.0);
            UsdOrder { id: o.id, customer: o.customer, usd_cents: (o.amount * rate * 100.0).round() as i64 }
        })
        .name("to-usd");
    match env.config().get("output") {
        Some(path) => converted.sink(FileSink::new(path)),
        None => converted.sink(Stdout),
    }
    Ok(())
}

flinkw::export_job!(job);
