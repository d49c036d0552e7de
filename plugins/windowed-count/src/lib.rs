//! Windowed count: reads events `ts,key,value` from a CSV (ts in ms since
//! the epoch), and per key and event-time window emits
//! `key,window_start,window_end,count,max_value`.
//!
//! ```text
//! flinkw run windowed-count.wasm --set input=examples/data/events.csv
//! ```
//!
//! Config: `window` = `tumbling` (default) | `sliding` | `session` |
//! `count` (windows of `size` records per key, sliding by `slide` records
//! when set; output `key,count,max`, event time not used);
//! `size-ms` (default 10000), `slide-ms` (sliding, default 5000),
//! `gap-ms` (session, default 5000), `lateness-ms` (default 0),
//! `out-of-orderness-ms` (default 1000), `output` (a file; default stdout),
//! `function` = `aggregate` (default: an incremental aggregate) |
//! `process` (a full window function over all records; same output),
//! `late-output` (a file for records that arrive after their window closed;
//! default: dropped and counted), `input2` (a second CSV, merged with
//! `union`), `panes` (`true`, the default: the aggregate is declared
//! mergeable, so sliding windows are kept as panes; `false`: one
//! accumulator per window; same output).

use std::time::Duration;

use flinkw::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Event {
    ts: i64,
    key: String,
    value: i64,
}

/// Count and maximum value of a window; `mergeable` is what it declares.
struct CountAndMax {
    mergeable: bool,
}

impl AggregateFunction<Event> for CountAndMax {
    type Acc = (u64, i64);
    type Out = (u64, i64);

    fn create_accumulator(&self) -> (u64, i64) {
        (0, i64::MIN)
    }

    fn add(&self, acc: &mut (u64, i64), e: &Event) {
        acc.0 += 1;
        acc.1 = acc.1.max(e.value);
    }

    fn merge(&self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1.max(b.1))
    }

    fn result(&self, acc: (u64, i64)) -> (u64, i64) {
        acc
    }

    fn mergeable(&self) -> bool {
        self.mergeable
    }
}

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("windowed-count");
    let config = env.config();
    let input = config.require("input")?;
    let ms = |key: &str, default: u64| config.parse_or(key, default).map(Duration::from_millis);
    let size = ms("size-ms", 10_000)?;
    let lateness = ms("lateness-ms", 0)?;
    let disorder = ms("out-of-orderness-ms", 1_000)?;
    let kind = config.get("window").unwrap_or("tumbling").to_owned();
    if kind == "count" {
        return count_windows(env);
    }
    let assigner: WindowAssigner = match kind.as_str() {
        "tumbling" => Tumbling::of(size).into(),
        "sliding" => Sliding::of(size, ms("slide-ms", 5_000)?).into(),
        "session" => Session::with_gap(ms("gap-ms", 5_000)?).into(),
        other => {
            return Err(Error::msg(format!(
                "unknown window {other:?}: tumbling, sliding, session or count"
            )));
        }
    };
    let output = config.get("output").map(str::to_owned);
    let late_output = config.get("late-output").map(str::to_owned);
    let input2 = config.get("input2").map(str::to_owned);
    let function = config.get("function").unwrap_or("aggregate").to_owned();
    let mergeable = config.parse_or("panes", true)?;
    // Each source gets its own watermarks; a union's watermark is the
    // smaller of its inputs', so neither source makes the other late.
    let timed = |stream: Stream<Event>| {
        stream
            .assign_timestamps(|e: &Event| e.ts)
            .watermarks(WatermarkStrategy::bounded_out_of_orderness(disorder))
    };
    let mut events = timed(env.source(File::csv::<Event>(&input)));
    if let Some(second) = input2 {
        let more = timed(env.source(File::csv::<Event>(&second)));
        events = events.union(vec![more]);
    }
    let mut windows = events
        .key_by(|e: &Event| e.key.clone())
        .window(assigner)
        .allowed_lateness(lateness);
    if let Some(path) = late_output {
        windows = windows.late_records(move |late| {
            late.map(|e: Event| format!("{},{},{}", e.ts, e.key, e.value)).sink(FileSink::new(&path))
        });
    }
    let counts = match function.as_str() {
        "aggregate" => windows.aggregate_with(CountAndMax { mergeable }, |key, w, (count, max)| {
            format!("{key},{},{},{count},{max}", w.start, w.end)
        }),
        "process" => windows.process(|key, w, events: Vec<Event>| {
            let max = events.iter().map(|e| e.value).max().unwrap_or(i64::MIN);
            vec![format!("{key},{},{},{},{max}", w.start, w.end, events.len())]
        }),
        other => return Err(Error::msg(format!("unknown function {other:?}: aggregate or process"))),
    }
    .name("count-and-max");
    match output {
        Some(path) => counts.sink(FileSink::new(&path)),
        None => counts.sink(Stdout),
    }
    Ok(())
}

/// `window=count`: per key, windows of `size` records (default 5), or with
/// `slide` the last `size` records every `slide` records; output
/// `key,count,max`. Event time plays no part.
fn count_windows(env: &mut Env) -> Result<(), Error> {
    let config = env.config();
    let input = config.require("input")?;
    let size: u64 = config.parse_or("size", 5)?;
    let slide: u64 = config.parse_or("slide", 0)?;
    let output = config.get("output").map(str::to_owned);
    let function = config.get("function").unwrap_or("aggregate").to_owned();
    let keyed = env.source(File::csv::<Event>(&input)).key_by(|e: &Event| e.key.clone());
    let windows =
        if slide == 0 { keyed.count_window(size) } else { keyed.count_window_sliding(size, slide) };
    let counts = match function.as_str() {
        "aggregate" => windows.aggregate_with(CountAndMax { mergeable: false }, |key, (n, max)| {
            format!("{key},{n},{max}")
        }),
        "process" => windows.process(|key, events: Vec<Event>| {
            let max = events.iter().map(|e| e.value).max().unwrap_or(i64::MIN);
            vec![format!("{key},{},{max}", events.len())]
        }),
        other => return Err(Error::msg(format!("unknown function {other:?}: aggregate or process"))),
    };
    match output {
        Some(path) => counts.sink(FileSink::new(&path)),
        None => counts.sink(Stdout),
    }
    Ok(())
}

flinkw::export_job!(job);
