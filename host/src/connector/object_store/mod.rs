//! Object-storage connectors (`kind = "object-store"`): a bounded source
//! over the files under a URL (local directory, `s3://bucket/prefix`,
//! `gs://bucket/prefix` or `az://container/prefix`) and a rolling,
//! exactly-once part-file sink.
//!
//! Stores are opened with [`crate::objstore::open`]; settings are the
//! options after the URL's store prefix, else the cloud's environment:
//! S3 `s3.endpoint`, `s3.region`, `s3.access-key-id`,
//! `s3.secret-access-key`, `s3.session-token` (`AWS_*`); GCS `gs.endpoint`,
//! `gs.service-account`, `gs.service-account-key` (`GOOGLE_*`); Azure
//! `az.endpoint`, `az.account`, `az.access-key`, `az.sas-token`,
//! `az.use-emulator` (`AZURE_*`); and for each `allow-http`, `retries`,
//! `timeout-ms`.

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
use crate::objstore::{StoreKind, StoreLocation, StoreOptions};

/// Every option name a store takes (`s3.endpoint`, `gs.service-account`, …).
fn store_keys() -> Vec<String> {
    [StoreKind::S3, StoreKind::Gcs, StoreKind::Azure]
        .into_iter()
        .flat_map(|kind| {
            StoreOptions::keys(kind).iter().map(move |k| format!("{}{k}", kind.option_prefix()))
        })
        .collect()
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
    // The settings of the URL's kind of store (`s3.`, `gs.`, `az.`); an
    // unknown scheme is refused by `open`.
    let prefix = crate::objstore::kind(url).unwrap_or(StoreKind::Local).option_prefix();
    let store_options = if prefix.is_empty() {
        StoreOptions::default()
    } else {
        StoreOptions::from_options(options, prefix).map_err(|e| remote(connector, e))?
    };
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
