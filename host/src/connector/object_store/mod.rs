//! Object-storage connectors (`kind = "object-store"`): a bounded source
//! over the files under a URL (local directory or `s3://bucket/prefix`)
//! and a rolling, exactly-once part-file sink.
//!
//! Stores are opened with [`crate::objstore::open`]; S3 settings are the
//! options `s3.endpoint`, `s3.region`, `s3.access-key-id`,
//! `s3.secret-access-key`, `s3.session-token`, `s3.allow-http`,
//! `s3.retries`, `s3.timeout-ms`, else the `AWS_*` environment.

mod format;
mod glob;
mod parquet_rows;
mod sink;
mod source;

use std::collections::BTreeMap;

/// The `parquet` crate (as the source reads it), for writing Parquet files in tests.
pub use ::parquet;
pub use format::{CsvOptions, Format};
pub use glob::Glob;
pub use sink::ObjectSinkSpec;
pub use source::ObjectSourceSpec;

use super::ConnectorError;
use crate::objstore::{StoreLocation, StoreOptions};

/// The prefix of store options in connector options.
const STORE_PREFIX: &str = "s3.";

/// Every option name a store takes (`s3.endpoint`, …).
fn store_keys() -> Vec<String> {
    StoreOptions::KEYS.iter().map(|k| format!("{STORE_PREFIX}{k}")).collect()
}

/// Checks that `options` only has keys from `known` or store keys.
fn check(
    connector: &str,
    options: &BTreeMap<String, String>,
    known: &[&str],
) -> Result<(), ConnectorError> {
    let store = store_keys();
    let mut all: Vec<&str> = known.to_vec();
    all.extend(store.iter().map(String::as_str));
    super::check_options(connector, options, &all)
}

/// Opens the store named by option `url`.
fn open_store(
    connector: &str,
    options: &BTreeMap<String, String>,
) -> Result<StoreLocation, ConnectorError> {
    let url = options
        .get("url")
        .ok_or(ConnectorError::MissingOption { connector: connector.to_owned(), option: "url" })?;
    let store_options =
        StoreOptions::from_options(options, STORE_PREFIX).map_err(|e| remote(connector, e))?;
    crate::objstore::open(url, &store_options).map_err(|e| remote(connector, e))
}

/// Reads the format options shared by source and sink.
fn format(
    connector: &str,
    options: &BTreeMap<String, String>,
    default: &str,
) -> Result<Format, ConnectorError> {
    let bad = |option: &str, value: &str, reason: String| ConnectorError::BadOption {
        connector: connector.to_owned(),
        option: option.to_owned(),
        value: value.to_owned(),
        reason,
    };
    let delimiter = match options.get("csv.delimiter") {
        None => b',',
        Some(v) => format::delimiter(v).map_err(|r| bad("csv.delimiter", v, r))?,
    };
    let header = match options.get("csv.header").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(v) => return Err(bad("csv.header", v, "expected true or false".into())),
    };
    let columns = options.get("csv.columns").map(|c| {
        c.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect::<Vec<_>>()
    });
    let name = options.get("format").map(String::as_str).unwrap_or(default);
    Format::parse(name, CsvOptions { delimiter, header, columns })
        .map_err(|r| bad("format", name, r))
}

fn remote(connector: &str, e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Remote { connector: connector.to_owned(), reason: e.to_string() }
}
