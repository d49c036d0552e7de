//! Kafka -> keyed tumbling windows -> Kafka: reads records whose key is a
//! name and whose value is an integer (as text), and per key and event-time
//! window (the records' Kafka timestamps) writes `key,window_start,count,sum`
//! with the same key, exactly once (run with `--checkpoint-dir`).
//!
//! ```text
//! flinkw run kafka-windowed.wasm --checkpoint-dir ck \
//!   --set brokers=127.0.0.1:9092 --set input=events --set output=sums
//! ```
//!
//! Config: `brokers`, `input` (topics, comma-separated), `output` (topic);
//! `size-ms` (window, default 1000), `out-of-orderness-ms` (default 0),
//! `idle-ms` (a partition, or a subtask, without records for this long
//! stops holding event time back; default 0 = never; watermarks are kept
//! per partition), `delivery` = `exactly-once` (default) |
//! `at-least-once` | `none`, `txn-prefix` (default `kafka-windowed`),
//! `bounded` = `true` to stop at the offsets there are at the start (the
//! last windows fire then), `kafka.*` (client properties, e.g.
//! `kafka.sasl.mechanism`), `connect-attempts` and `request-timeout-ms`
//! (how hard both connectors try to reach the brokers), `max-record-bytes`
//! and `oversized` = `fail` | `skip` | `dead-letter:<topic>` (the sink's
//! limit on a record's size, and what happens to larger ones),
//! `pipeline` = `windows` (default) | `copy` (stateless: each value as it
//! is, for throughput benchmarks) | `describe` (stateless: each record as
//! the line `key|timestamp|headers|value`, headers as `name=hex` joined by
//! `,`, in order; to show what reaches a plugin) | `relay` (stateless: each
//! record whole, key, value and headers, with one header more,
//! `relayed-by=kafka-windowed`; written with `Stream::sink_records`),
//! `sink.<option>` (any sink option by name), `partition-discovery-ms`
//! (how often the source looks for new partitions; default the
//! connector's).

use std::time::Duration;

use flinkw::prelude::*;

/// Count and sum of a window's values.
struct CountSum;

impl AggregateFunction<KafkaRecord> for CountSum {
    type Acc = (u64, i64);
    type Out = (u64, i64);

    fn create_accumulator(&self) -> (u64, i64) {
        (0, 0)
    }

    fn add(&self, acc: &mut (u64, i64), r: &KafkaRecord) {
        acc.0 += 1;
        acc.1 += r.value_str().trim().parse::<i64>().unwrap_or(0);
    }

    fn merge(&self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }

    fn result(&self, acc: (u64, i64)) -> (u64, i64) {
        acc
    }
}

/// `key|timestamp|name=hex,...|value` (timestamp `-` when there is none).
fn describe(r: &KafkaRecord) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let headers: Vec<String> =
        r.headers.iter().map(|(name, value)| format!("{name}={}", hex(value))).collect();
    let ts = r.timestamp.map_or("-".to_owned(), |t| t.to_string());
    format!("{}|{ts}|{}|{}", r.key_str(), headers.join(","), r.value_str())
}

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("kafka-windowed");
    let config = env.config();
    let brokers = config.require("brokers")?;
    let input = config.require("input")?;
    let output = config.require("output")?;
    let ms = |key: &str, default: u64| config.parse_or(key, default).map(Duration::from_millis);
    let size = ms("size-ms", 1_000)?;
    let disorder = ms("out-of-orderness-ms", 0)?;
    let idle = ms("idle-ms", 0)?;
    let delivery = config.get("delivery").unwrap_or("exactly-once").to_owned();
    let prefix = config.get("txn-prefix").unwrap_or("kafka-windowed").to_owned();
    let bounded = config.parse_or("bounded", false)?;

    // Options both connectors share, passed on only when set.
    let mut shared = Vec::new();
    for (key, option) in [
        ("connect-attempts", "connect.attempts"),
        ("request-timeout-ms", "request.timeout-ms"),
    ] {
        if let Some(v) = config.get(key) {
            shared.push((option, v.to_owned()));
        }
    }
    let mut source = Kafka::source(&brokers, &input).records().properties_from(config, "kafka.");
    if bounded {
        source = source.bounded();
    }
    if let Some(v) = config.get("partition-discovery-ms") {
        source = source.option("partition-discovery-ms", v);
    }
    let mut strategy = WatermarkStrategy::bounded_out_of_orderness(disorder);
    if !idle.is_zero() {
        strategy = strategy.with_idleness(idle);
    }
    let mut sink = Kafka::sink(&brokers, &output).properties_from(config, "kafka.");
    for (option, value) in &shared {
        source = source.option(option, value);
        sink = sink.option(option, value);
    }
    for key in ["max-record-bytes", "oversized"] {
        if let Some(v) = config.get(key) {
            sink = sink.option(key, v);
        }
    }
    // Any other sink option by name (`sink.headers=in-value`).
    for (key, v) in config.with_prefix("sink.") {
        sink = sink.option(&key, &v);
    }
    let sink = match delivery.as_str() {
        "exactly-once" => sink.exactly_once(&prefix),
        "at-least-once" => sink.at_least_once(),
        "none" => sink.no_guarantee(),
        other => {
            return Err(Error::msg(format!(
                "unknown delivery {other:?}: exactly-once, at-least-once or none"
            )));
        }
    };
    let pipeline = config.get("pipeline").unwrap_or("windows").to_owned();
    if pipeline == "copy" {
        env.source(source).map(|r: KafkaRecord| r.value_str()).name("copy").sink(sink);
        return Ok(());
    }
    if pipeline == "relay" {
        env.source(source)
            .map(|mut r: KafkaRecord| {
                r.headers.push(("relayed-by".into(), b"kafka-windowed".to_vec()));
                r
            })
            .name("relay")
            .sink_records(sink);
        return Ok(());
    }
    if pipeline == "describe" {
        env.source(source).map(|r: KafkaRecord| describe(&r)).name("describe").sink(sink);
        return Ok(());
    }
    env.source(source)
        .watermarks(strategy)
        .key_by(|r: &KafkaRecord| r.key_str())
        .window(Tumbling::of(size))
        .aggregate_with(CountSum, |key, w, (count, sum)| format!("{key},{},{count},{sum}", w.start))
        .name("count-sum")
        .sink_with_key(sink, |line: &String| line.split(',').next().unwrap_or_default().to_owned());
    Ok(())
}

flinkw::export_job!(job);
