//! Reaching the brokers: metadata with bounded retries, and the error a
//! user sees when they cannot be reached.

use std::sync::Mutex;
use std::time::Instant;

use rdkafka::client::{Client, ClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

use super::options::Connection;
use crate::connector::ConnectorError;

/// Topics and their partitions, sorted by name.
pub type Topics = Vec<(String, Vec<i32>)>;

/// A client context that keeps the client's last error (e.g. a failed
/// authentication), which requests themselves only report as timeouts.
#[derive(Default)]
pub struct Errors {
    last: Mutex<Option<String>>,
}

impl Errors {
    /// The client's last error, if any.
    pub fn last(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Keeps an error logged by the client (authentication failures are
    /// only logged), and passes every line on to `tracing` at debug level.
    pub fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(?level, fac, message, "librdkafka");
        if (level as i32) <= RDKafkaLogLevel::Error as i32 {
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.to_owned());
        }
    }

    /// Records an error the client reported.
    pub fn record(&self, error: &KafkaError, reason: &str) {
        tracing::debug!(error = %error, reason, "kafka client");
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
    }
}

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.record(&error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.log(level, fac, message);
    }
}

impl ConsumerContext for Errors {}

/// Contexts that keep the client's last error.
pub trait LastError {
    /// The client's last error, if any.
    fn last_error(&self) -> Option<String>;
}

impl LastError for Errors {
    fn last_error(&self) -> Option<String> {
        self.last()
    }
}

/// Fetches every topic's partitions, retrying with exponential backoff;
/// fails naming the brokers after `conn.attempts` attempts. `serve` hands
/// the client's queued events (errors) to its context between attempts.
pub fn all_topics<C: ClientContext + LastError>(
    connector: &str,
    client: &Client<C>,
    conn: &Connection,
    serve: &dyn Fn(),
) -> Result<Topics, ConnectorError> {
    let started = Instant::now();
    let mut wait = conn.backoff;
    let mut last = String::new();
    for attempt in 1..=conn.attempts {
        match client.fetch_metadata(None, conn.request_timeout) {
            Ok(m) => {
                let mut topics: Topics = m
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
                    .map(|t| {
                        let mut p: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                        p.sort_unstable();
                        (t.name().to_owned(), p)
                    })
                    .collect();
                topics.sort();
                return Ok(topics);
            }
            Err(e) => {
                last = e.to_string();
                tracing::warn!(
                    connector,
                    servers = %conn.servers,
                    attempt,
                    error = %last,
                    "cannot reach the Kafka brokers"
                );
            }
        }
        serve();
        if attempt < conn.attempts {
            std::thread::sleep(wait);
            wait *= 2;
        }
    }
    serve();
    let cause = match client.context().last_error() {
        Some(e) => format!("{last}; the client's last error: {e}"),
        None => last,
    };
    Err(remote(
        connector,
        format!(
            "cannot reach the Kafka brokers at {} ({} attempts in {:.1} s): {cause}",
            conn.servers,
            conn.attempts,
            started.elapsed().as_secs_f64()
        ),
    ))
}

/// An error of the brokers or the client.
pub fn remote(connector: &str, reason: impl Into<String>) -> ConnectorError {
    ConnectorError::Remote { connector: connector.to_owned(), reason: reason.into() }
}

/// Checks that every topic in `wanted` exists.
pub fn require_topics(
    connector: &str,
    conn: &Connection,
    topics: &Topics,
    wanted: &[String],
) -> Result<(), ConnectorError> {
    for w in wanted {
        if !topics.iter().any(|(t, _)| t == w) {
            let known: Vec<&str> = topics.iter().map(|(t, _)| t.as_str()).collect();
            return Err(remote(
                connector,
                format!(
                    "topic `{w}` does not exist at {} (topics there: {})",
                    conn.servers,
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            ));
        }
    }
    Ok(())
}
