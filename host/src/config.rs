//! Job config: the `--set key=value` pairs of `flinkw run`.
//!
//! Keys are either read by the host (parallelism, batching) or passed to the
//! plugin's `plan`. A key that neither reads is refused, so a typo does not
//! silently change nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::keygroup::DEFAULT_MAX_PARALLELISM;

/// Keys the host itself reads, with what they mean.
pub const HOST_KEYS: [(&str, &str); 10] = [
    ("parallelism", "default parallelism of every operator (1..=max-parallelism)"),
    ("max-parallelism", "number of key groups, fixed for the job's life (default 128)"),
    ("batch.size", "records per batch before it is sent on (default 1024)"),
    ("batch.timeout-ms", "longest a batch waits to fill, in ms (default 50)"),
    (
        "checkpoint.interval-ms",
        "time between checkpoints with --checkpoint-dir, in ms (default 1000)",
    ),
    ("checkpoint.retain", "complete checkpoints kept (default 3)"),
    (
        "window.cache-mb",
        "window accumulators each window operator subtask keeps in memory before it \
         writes them to the state backend, in MiB (default 64)",
    ),
    (
        "checkpoint.tolerable-failures",
        "checkpoints that may fail in a row before the job fails (default 3)",
    ),
    (
        "watermark.interval-ms",
        "how often sources emit watermarks, in ms (default 200; 0 = after every record)",
    ),
    (
        "metrics.latency.interval-ms",
        "how often sources emit latency markers, in ms (default 0 = none)",
    ),
];

/// Why config is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not of the form `key=value`.
    #[error("bad --set {0:?}: expected key=value")]
    Syntax(String),
    /// A key given twice.
    #[error("--set {0} given twice")]
    Duplicate(String),
    /// A value the key cannot take.
    #[error("bad value {value:?} for --set {key}: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// Keys neither the host nor the plugin reads.
    #[error(
        "unknown config {keys} (the plugin reads: {plugin}; flinkw reads: {host})",
        keys = .unknown.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
        plugin = if .plugin_keys.is_empty() { "nothing".to_owned() } else { .plugin_keys.join(", ") },
        host = HOST_KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
    )]
    UnknownKeys {
        /// The unknown keys.
        unknown: Vec<String>,
        /// The keys the plugin reads.
        plugin_keys: Vec<String>,
    },
}

/// A job's config, with the host's settings parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobConfig {
    /// Every pair as given; the plugin sees them all.
    pub values: BTreeMap<String, String>,
    /// `parallelism`, if set.
    pub parallelism: Option<u32>,
    /// `max-parallelism`.
    pub max_parallelism: u32,
    /// `batch.size`.
    pub batch_size: usize,
    /// `batch.timeout-ms`.
    pub batch_timeout: Duration,
    /// `watermark.interval-ms` (Flink's `pipeline.auto-watermark-interval`).
    pub watermark_interval: Duration,
    /// `metrics.latency.interval-ms` (Flink's `metrics.latency.interval`):
    /// how often each source subtask emits a latency marker; zero: never.
    pub latency_interval: Duration,
    /// `checkpoint.interval-ms`.
    pub checkpoint_interval: Duration,
    /// `checkpoint.retain`.
    pub checkpoint_retain: usize,
    /// `window.cache-mb`, in bytes: window accumulators a window operator
    /// subtask keeps in memory in front of the state backend.
    pub window_cache_bytes: usize,
    /// `checkpoint.tolerable-failures`: checkpoints that may fail in a row
    /// (storage unreachable, a subtask too slow) before the job fails.
    pub checkpoint_tolerable_failures: u32,
    /// Which run of the job this is: 0, then 1, 2, ... after restarts. The
    /// plugin sees it as config `flinkw.attempt` (Flink's attempt number).
    pub attempt: u32,
}

/// The config key under which the plugin sees the attempt number.
pub const ATTEMPT_KEY: &str = "flinkw.attempt";

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            values: BTreeMap::new(),
            parallelism: None,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            batch_size: 1024,
            batch_timeout: Duration::from_millis(50),
            watermark_interval: Duration::from_millis(200),
            latency_interval: Duration::ZERO,
            checkpoint_interval: Duration::from_secs(1),
            checkpoint_retain: 3,
            window_cache_bytes: 64 << 20,
            checkpoint_tolerable_failures: 3,
            attempt: 0,
        }
    }
}

impl JobConfig {
    /// Parses `key=value` strings.
    pub fn parse<S: AsRef<str>>(pairs: &[S]) -> Result<Self, ConfigError> {
        let mut values = BTreeMap::new();
        for pair in pairs {
            let pair = pair.as_ref();
            let (k, v) = pair.split_once('=').ok_or_else(|| ConfigError::Syntax(pair.into()))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(ConfigError::Syntax(pair.into()));
            }
            if values.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(ConfigError::Duplicate(k.to_owned()));
            }
        }
        Self::from_map(values)
    }

    /// Builds the config from pairs, checking the host's keys.
    pub fn from_map(values: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        if values.contains_key(ATTEMPT_KEY) {
            return Err(ConfigError::BadValue {
                key: ATTEMPT_KEY.into(),
                value: values[ATTEMPT_KEY].clone(),
                reason: "it is set by flinkw".into(),
            });
        }
        let mut c = JobConfig { values, ..Default::default() };
        let num = |key: &str, min: u64, max: u64| -> Result<Option<u64>, ConfigError> {
            let Some(v) = c.values.get(key) else {
                return Ok(None);
            };
            let bad = |reason: String| ConfigError::BadValue {
                key: key.into(),
                value: v.clone(),
                reason,
            };
            let n: u64 = v.trim().parse().map_err(|e| bad(format!("{e}")))?;
            if n < min || n > max {
                return Err(bad(format!("must be between {min} and {max}")));
            }
            Ok(Some(n))
        };
        let max_parallelism = num("max-parallelism", 1, 32_768)?;
        let parallelism = num("parallelism", 1, 32_768)?;
        let batch_size = num("batch.size", 1, 1 << 20)?;
        let batch_timeout = num("batch.timeout-ms", 0, 3_600_000)?;
        let watermark_interval = num("watermark.interval-ms", 0, 3_600_000)?;
        let latency_interval = num("metrics.latency.interval-ms", 0, 3_600_000)?;
        let checkpoint_interval = num("checkpoint.interval-ms", 10, 86_400_000)?;
        let checkpoint_retain = num("checkpoint.retain", 1, 1000)?;
        let window_cache_mb = num("window.cache-mb", 0, 1 << 20)?;
        let tolerable_failures = num("checkpoint.tolerable-failures", 0, 1_000_000)?;
        if let Some(m) = max_parallelism {
            c.max_parallelism = m as u32;
        }
        if let Some(p) = parallelism {
            if p > c.max_parallelism as u64 {
                return Err(ConfigError::BadValue {
                    key: "parallelism".into(),
                    value: p.to_string(),
                    reason: format!("exceeds max-parallelism {}", c.max_parallelism),
                });
            }
            c.parallelism = Some(p as u32);
        }
        if let Some(b) = batch_size {
            c.batch_size = b as usize;
        }
        if let Some(t) = batch_timeout {
            c.batch_timeout = Duration::from_millis(t);
        }
        if let Some(t) = watermark_interval {
            c.watermark_interval = Duration::from_millis(t);
        }
        if let Some(t) = latency_interval {
            c.latency_interval = Duration::from_millis(t);
        }
        if let Some(t) = checkpoint_interval {
            c.checkpoint_interval = Duration::from_millis(t);
        }
        if let Some(n) = checkpoint_retain {
            c.checkpoint_retain = n as usize;
        }
        if let Some(mb) = window_cache_mb {
            c.window_cache_bytes = (mb as usize) << 20;
        }
        if let Some(n) = tolerable_failures {
            c.checkpoint_tolerable_failures = n as u32;
        }
        Ok(c)
    }

    /// The pairs in the form `plan` takes.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> =
            self.values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        pairs.push((ATTEMPT_KEY.to_owned(), self.attempt.to_string()));
        pairs
    }

    /// Refuses keys that neither the host nor the plugin (`plugin_keys`) reads.
    pub fn check_keys(&self, plugin_keys: &[String]) -> Result<(), ConfigError> {
        let unknown: Vec<String> = self
            .values
            .keys()
            .filter(|k| {
                !HOST_KEYS.iter().any(|(h, _)| h == k)
                    && !plugin_keys.contains(k)
                    && *k != ATTEMPT_KEY
            })
            .cloned()
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::UnknownKeys { unknown, plugin_keys: plugin_keys.to_vec() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_keys() {
        let c = JobConfig::parse(&["parallelism=4", "input=a=b", "batch.size=10"]).unwrap();
        assert_eq!(c.parallelism, Some(4));
        assert_eq!(c.batch_size, 10);
        assert_eq!(c.values["input"], "a=b");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(JobConfig::parse(&["novalue"]), Err(ConfigError::Syntax("novalue".into())));
        assert!(matches!(
            JobConfig::parse(&["parallelism=zero"]),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(JobConfig::parse(&["parallelism=0"]), Err(ConfigError::BadValue { .. })));
        assert!(matches!(
            JobConfig::parse(&["max-parallelism=4", "parallelism=8"]),
            Err(ConfigError::BadValue { .. })
        ));
        assert_eq!(JobConfig::parse(&["a=1", "a=2"]), Err(ConfigError::Duplicate("a".into())));
    }

    #[test]
    fn unknown_keys_are_named() {
        let c = JobConfig::parse(&["input=x", "inptu=y", "parallelism=2"]).unwrap();
        let err = c.check_keys(&["input".into()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`inptu`") && msg.contains("the plugin reads: input"), "{msg}");
        c.check_keys(&["input".into(), "inptu".into()]).unwrap();
    }
}
