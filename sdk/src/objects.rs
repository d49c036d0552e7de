//! Files in object storage (S3, Google Cloud Storage, Azure Blob) or a local directory, read and written by
//! the host: `Objects::csv`, `Objects::json_lines`, `Objects::parquet`,
//! `Objects::lines` and `Objects::sink` (see docs/connectors.md, "Object storage").

use std::marker::PhantomData;
use std::time::Duration;

use crate::Data;
use crate::bindings::flinkw::plugin::types::Connector;
use crate::codec::{Decoder, decode_json, decode_utf8};
use crate::connector::{Sink, Source};
use crate::env::Config;

/// Object-storage connectors. URLs are `s3://bucket/prefix`, `gs://bucket/prefix`,
/// `az://container/prefix`, `file:///dir` or a plain directory path; store
/// settings come from [`ObjectSource::store_options_from`] /
/// [`ObjectSink::store_options_from`] or the host's `AWS_*`, `GOOGLE_*` or
/// `AZURE_*` environment.
///
/// ```ignore
/// env.source(Objects::csv::<Order>("s3://bucket/in").glob("**/*.csv").timestamp_column("ts")
///         .store_options_from(env.config(), "s3."))
///     // ...
///     .sink(Objects::sink("s3://bucket/out").store_options_from(env.config(), "s3."));
/// ```
pub struct Objects;

/// A bounded source over the files under a URL; see [`Objects`].
pub struct ObjectSource<T> {
    options: Vec<(String, String)>,
    format: &'static str,
    _out: PhantomData<T>,
}

/// The host's option prefix for the settings of the store `url` names:
/// `gs.` for Google Cloud Storage, `az.` for Azure, else `s3.`.
fn store_prefix(options: &[(String, String)]) -> &'static str {
    let url = options.iter().find(|(k, _)| k == "url").map_or("", |(_, v)| v.as_str());
    match url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).as_deref() {
        Some("gs") => "gs.",
        Some("az" | "azure" | "adl" | "abfs" | "abfss") => "az.",
        _ => "s3.",
    }
}

fn set(options: &mut Vec<(String, String)>, key: &str, value: &str) {
    options.retain(|(k, _)| k != key);
    options.push((key.to_owned(), value.to_owned()));
}

impl Objects {
    /// Each line of every file, as a `String`.
    pub fn lines(url: &str) -> ObjectSource<String> {
        ObjectSource::new(url, "text")
    }

    /// Each row of every CSV file (a header row first, unless
    /// [`ObjectSource::no_header`]), as a `T` read from a JSON object of
    /// the row (numbers become JSON numbers).
    pub fn csv<T: Data>(url: &str) -> ObjectSource<T> {
        ObjectSource::new(url, "csv")
    }

    /// Each line of every JSON-lines file, as a `T`.
    pub fn json_lines<T: Data>(url: &str) -> ObjectSource<T> {
        ObjectSource::new(url, "jsonl")
    }

    /// Each row of every Parquet file, as a `T` read from a JSON object of
    /// the row (columns by name; timestamps as ms since the epoch).
    pub fn parquet<T: Data>(url: &str) -> ObjectSource<T> {
        ObjectSource::new(url, "parquet")
    }

    /// A sink writing JSON lines (strings as they are, other values as
    /// JSON) into rolling part files under `url`, exactly once with
    /// checkpoints.
    pub fn sink(url: &str) -> ObjectSink {
        ObjectSink { options: vec![("url".into(), url.into())] }
    }
}

impl<T> ObjectSource<T> {
    fn new(url: &str, format: &'static str) -> Self {
        ObjectSource {
            options: vec![("url".into(), url.into()), ("format".into(), format.into())],
            format,
            _out: PhantomData,
        }
    }

    /// Reads only files whose path under the URL matches `pattern`
    /// (`*`, `**`, `?`, `[ab]`, `{csv,tsv}`; default `**`). Names starting
    /// with `.` or `_` are always skipped.
    pub fn glob(mut self, pattern: &str) -> Self {
        set(&mut self.options, "glob", pattern);
        self
    }

    /// The CSV field delimiter (default `,`).
    pub fn delimiter(mut self, delimiter: char) -> Self {
        set(&mut self.options, "csv.delimiter", &delimiter.to_string());
        self
    }

    /// CSV files have no header row; their fields are named `columns`.
    pub fn no_header(mut self, columns: &[&str]) -> Self {
        set(&mut self.options, "csv.header", "false");
        set(&mut self.options, "csv.columns", &columns.join(","));
        self
    }

    /// Takes each record's event time (ms since the epoch) from `field`.
    pub fn timestamp_column(mut self, field: &str) -> Self {
        set(&mut self.options, "timestamp-column", field);
        self
    }

    /// Skips (and counts) lines that do not parse instead of failing the job.
    pub fn skip_bad_lines(mut self) -> Self {
        set(&mut self.options, "bad-lines", "skip");
        self
    }

    /// Passes every config key starting with `prefix` to the store as
    /// `s3.<rest>` (`gs.<rest>`, `az.<rest>` for a `gs://` or `az://` URL):
    /// `--set s3.endpoint=http://127.0.0.1:9000`.
    pub fn store_options_from(mut self, config: &Config, prefix: &str) -> Self {
        let store = store_prefix(&self.options);
        for (k, v) in config.with_prefix(prefix) {
            set(&mut self.options, &format!("{store}{k}"), &v);
        }
        self
    }

    /// Sets a connector option by name (see docs/connectors.md).
    pub fn option(mut self, key: &str, value: &str) -> Self {
        set(&mut self.options, key, value);
        self
    }
}

impl<T: Data> Source for ObjectSource<T> {
    type Out = T;
    fn name(&self) -> String {
        format!("object-store-{}", self.format)
    }
    fn connector(self) -> Connector {
        Connector { kind: "object-store".into(), options: self.options }
    }
    fn decoder(&self) -> Decoder<T> {
        match self.format {
            "text" => decode_utf8::<T>,
            _ => decode_json::<T>,
        }
    }
    fn is_text(&self) -> bool {
        self.format == "text"
    }
}

/// A rolling part-file sink in object storage; see [`Objects::sink`].
pub struct ObjectSink {
    options: Vec<(String, String)>,
}

impl ObjectSink {
    /// Writes CSV rows instead of JSON lines: each record must be a JSON
    /// object (a struct); `columns` names the fields and their order
    /// (empty: the first record's keys). Each part starts with a header.
    pub fn csv(mut self, columns: &[&str]) -> Self {
        set(&mut self.options, "format", "csv");
        if !columns.is_empty() {
            set(&mut self.options, "csv.columns", &columns.join(","));
        }
        self
    }

    /// Rolls a part when it reaches `bytes` (default 64 MiB; parts are
    /// kept in memory until they roll).
    pub fn roll_at_bytes(mut self, bytes: u64) -> Self {
        set(&mut self.options, "rolling.max-bytes", &bytes.to_string());
        self
    }

    /// Rolls a part that has been open for `every` (parts always roll at
    /// checkpoints).
    pub fn roll_every(mut self, every: Duration) -> Self {
        set(&mut self.options, "rolling.interval-ms", &every.as_millis().to_string());
        self
    }

    /// Passes every config key starting with `prefix` to the store as
    /// `s3.<rest>` (`gs.<rest>`, `az.<rest>` for a `gs://` or `az://` URL).
    pub fn store_options_from(mut self, config: &Config, prefix: &str) -> Self {
        let store = store_prefix(&self.options);
        for (k, v) in config.with_prefix(prefix) {
            set(&mut self.options, &format!("{store}{k}"), &v);
        }
        self
    }

    /// Sets a connector option by name (see docs/connectors.md).
    pub fn option(mut self, key: &str, value: &str) -> Self {
        set(&mut self.options, key, value);
        self
    }
}

impl Sink for ObjectSink {
    fn name(&self) -> String {
        "object-store".into()
    }
    fn connector(self) -> Connector {
        Connector { kind: "object-store".into(), options: self.options }
    }
    fn is_text(&self) -> bool {
        true
    }
}
