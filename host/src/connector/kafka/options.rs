//! The options of the Kafka source and sink, checked before the job starts
//! (no network here).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

use super::super::{ConnectorError, parse_option};

/// Prefixes of options passed through to the Kafka client (librdkafka)
/// as they are, e.g. `properties.security.protocol=SASL_SSL`.
pub const PASS_THROUGH: [&str; 2] = ["properties.", "kafka."];

/// Client settings that flinkw sets itself; passing them through would
/// break its guarantees.
const RESERVED: [&str; 6] = [
    "bootstrap.servers",
    "enable.auto.commit",
    "transactional.id",
    "enable.idempotence",
    "enable.partition.eof",
    "group.id",
];

/// How to reach the brokers, shared by source and sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `host:port` list, comma-separated.
    pub servers: String,
    /// Client settings passed through (`properties.*` / `kafka.*`).
    pub properties: BTreeMap<String, String>,
    /// Attempts to reach the brokers before failing.
    pub attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one.
    pub backoff: Duration,
    /// Timeout of one request (metadata, offsets, transaction steps).
    pub request_timeout: Duration,
}

impl Connection {
    /// Reads the connection options every Kafka connector has.
    pub fn new(name: &str, options: &BTreeMap<String, String>) -> Result<Self, ConnectorError> {
        let servers = required(name, options, "bootstrap-servers")?;
        let mut properties = BTreeMap::new();
        for (k, v) in options {
            let Some(key) = PASS_THROUGH.iter().find_map(|p| k.strip_prefix(p)) else { continue };
            if RESERVED.contains(&key) {
                return Err(ConnectorError::BadOption {
                    connector: name.to_owned(),
                    option: k.clone(),
                    value: v.clone(),
                    reason: format!("`{key}` is set by flinkw; use the connector's own options"),
                });
            }
            properties.insert(key.to_owned(), v.clone());
        }
        Ok(Connection {
            servers,
            properties,
            attempts: parse_option(name, options, "connect.attempts", 4u32)?.max(1),
            backoff: Duration::from_millis(parse_option(
                name,
                options,
                "connect.backoff-ms",
                500u64,
            )?),
            request_timeout: Duration::from_millis(parse_option(
                name,
                options,
                "request.timeout-ms",
                5_000u64,
            )?),
        })
    }

    /// A client config with the servers and pass-through properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.servers);
        // librdkafka logs through its own logger; flinkw reports errors itself.
        c.set("log_level", "3");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// The option names every Kafka connector knows.
    pub const KNOWN: [&'static str; 4] =
        ["bootstrap-servers", "connect.attempts", "connect.backoff-ms", "request.timeout-ms"];
}

/// Whether `key` is a known option: one of `known`, or passed through.
pub fn is_known(key: &str, known: &[&str]) -> bool {
    known.contains(&key) || PASS_THROUGH.iter().any(|p| key.starts_with(p))
}

/// Refuses options that are neither known nor passed through.
pub fn check(
    name: &str,
    options: &BTreeMap<String, String>,
    known: &[&str],
) -> Result<(), ConnectorError> {
    match options.keys().find(|k| !is_known(k, known) && !Connection::KNOWN.contains(&k.as_str())) {
        Some(k) => {
            let mut all: Vec<&str> = Connection::KNOWN.iter().chain(known).copied().collect();
            all.push("properties.*");
            Err(ConnectorError::UnknownOption {
                connector: name.to_owned(),
                option: k.clone(),
                known: all.join(", "),
            })
        }
        None => Ok(()),
    }
}

/// A required option.
pub fn required(
    name: &str,
    options: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<String, ConnectorError> {
    options
        .get(key)
        .filter(|v| !v.trim().is_empty())
        .cloned()
        .ok_or(ConnectorError::MissingOption { connector: name.to_owned(), option: key })
}

/// An error for a bad option value.
pub fn bad(name: &str, option: &str, value: &str, reason: impl Into<String>) -> ConnectorError {
    ConnectorError::BadOption {
        connector: name.to_owned(),
        option: option.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Parses a `true`/`false` option.
pub fn flag(
    name: &str,
    options: &BTreeMap<String, String>,
    key: &str,
    default: bool,
) -> Result<bool, ConnectorError> {
    match options.get(key).map(String::as_str) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(bad(name, key, v, "expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn passes_client_properties_through() {
        let o = opts(&[
            ("bootstrap-servers", "a:9092"),
            ("properties.security.protocol", "SASL_PLAINTEXT"),
            ("kafka.sasl.mechanism", "PLAIN"),
        ]);
        let c = Connection::new("kafka source", &o).unwrap();
        assert_eq!(c.servers, "a:9092");
        assert_eq!(c.properties["security.protocol"], "SASL_PLAINTEXT");
        assert_eq!(c.properties["sasl.mechanism"], "PLAIN");
        check("kafka source", &o, &[]).unwrap();
    }

    #[test]
    fn refuses_settings_flinkw_owns_and_unknown_options() {
        let o = opts(&[("bootstrap-servers", "a:1"), ("properties.transactional.id", "x")]);
        let e = Connection::new("kafka sink", &o).unwrap_err().to_string();
        assert!(e.contains("`transactional.id` is set by flinkw"), "{e}");
        let o = opts(&[("bootstrap-servers", "a:1"), ("topci", "x")]);
        let e = check("kafka sink", &o, &["topic"]).unwrap_err().to_string();
        assert!(e.contains("unknown option `topci`"), "{e}");
        let e = Connection::new("kafka sink", &opts(&[])).unwrap_err().to_string();
        assert!(e.contains("missing option `bootstrap-servers`"), "{e}");
    }
}
