//! Object storage by URL: local directories and S3-compatible stores, for
//! connectors and checkpoint storage alike.
//!
//! [`open`] turns a URL into an [`ObjectStore`] and the path prefix inside
//! it:
//!
//! | URL | store | prefix |
//! |-----|-------|--------|
//! | `file:///data/in`, `/data/in`, `data/in` | the local file system | the directory (relative paths against the working directory) |
//! | `s3://bucket/some/prefix` | the bucket | `some/prefix` |
//!
//! S3 settings come from [`StoreOptions`] (job config) first, then the
//! usual `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, …). An `http://` endpoint (a local
//! server) is allowed without saying `allow-http` again.
//!
//! `object_store` is asynchronous and flinkw's subtasks are threads:
//! [`block_on`] runs a future on one small shared Tokio runtime from any
//! thread, also from inside another runtime.
//!
//! ```no_run
//! use flinkw_host::objstore::{self, StoreOptions};
//! use object_store::ObjectStoreExt;
//!
//! let loc = objstore::open("s3://bucket/out", &StoreOptions::default())?;
//! let path = loc.child("part-0-0");
//! objstore::block_on(loc.store.put(&path, "hello\n".into()))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

pub use object_store;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL cannot be used.
    #[error("bad object-store URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option has a value that cannot be used.
    #[error("bad value {value:?} for object-store option `{option}`: {reason}")]
    BadOption {
        /// The option.
        option: String,
        /// The value given.
        value: String,
        /// Why it is bad.
        reason: String,
    },
    /// The store refused the settings.
    #[error("{url}: {source}")]
    Store {
        /// The URL.
        url: String,
        /// The store's error.
        source: object_store::Error,
    },
}

/// Settings for S3-compatible stores; every field falls back to the
/// `AWS_*` environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// `endpoint`: the server, e.g. `http://127.0.0.1:9000` (default: AWS).
    pub endpoint: Option<String>,
    /// `region` (default `us-east-1`).
    pub region: Option<String>,
    /// `access-key-id`.
    pub access_key_id: Option<String>,
    /// `secret-access-key`.
    pub secret_access_key: Option<String>,
    /// `session-token`.
    pub session_token: Option<String>,
    /// `allow-http`: allow plain HTTP (default: only when `endpoint` is `http://`).
    pub allow_http: Option<bool>,
    /// `retries`: attempts after a failed request (default 3).
    pub retries: Option<usize>,
    /// `timeout-ms`: the bound on one request including retries (default 30000).
    pub timeout_ms: Option<u64>,
}

impl StoreOptions {
    /// The option names [`StoreOptions::from_options`] reads.
    pub const KEYS: &'static [&'static str] = &[
        "endpoint",
        "region",
        "access-key-id",
        "secret-access-key",
        "session-token",
        "allow-http",
        "retries",
        "timeout-ms",
    ];

    /// Reads the options named in [`StoreOptions::KEYS`] after `prefix`
    /// (e.g. `s3.` for `s3.endpoint`) from `options`; other keys are left
    /// for the caller to check.
    pub fn from_options(
        options: &BTreeMap<String, String>,
        prefix: &str,
    ) -> Result<Self, StoreError> {
        let get = |k: &str| options.get(&format!("{prefix}{k}")).cloned();
        let parse = |k: &str| -> Result<Option<u64>, StoreError> {
            get(k)
                .map(|v| {
                    v.parse().map_err(|e: std::num::ParseIntError| StoreError::BadOption {
                        option: format!("{prefix}{k}"),
                        value: v.clone(),
                        reason: e.to_string(),
                    })
                })
                .transpose()
        };
        let allow_http = match get("allow-http").as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(v) => {
                return Err(StoreError::BadOption {
                    option: format!("{prefix}allow-http"),
                    value: v.into(),
                    reason: "expected true or false".into(),
                });
            }
        };
        Ok(StoreOptions {
            endpoint: get("endpoint"),
            region: get("region"),
            access_key_id: get("access-key-id"),
            secret_access_key: get("secret-access-key"),
            session_token: get("session-token"),
            allow_http,
            retries: parse("retries")?.map(|n| n as usize),
            timeout_ms: parse("timeout-ms")?,
        })
    }
}

/// An opened store and the prefix a URL named inside it.
#[derive(Debug, Clone)]
pub struct StoreLocation {
    /// The URL as given, for messages.
    pub url: String,
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The path the URL names inside the store (empty: its root).
    pub prefix: Path,
}

impl StoreLocation {
    /// The path of `name` (may hold `/`) under the prefix.
    pub fn child(&self, name: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in name.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// A path in the store as a URL-like name for messages
    /// (`s3://bucket/key`, or a local file's path).
    pub fn display(&self, path: &Path) -> String {
        match self.url.split_once("://") {
            Some(("s3", rest)) => {
                let bucket = rest.split('/').next().unwrap_or_default();
                format!("s3://{bucket}/{path}")
            }
            _ => format!("/{path}"),
        }
    }
}

/// Opens the store a URL names: `file:///dir`, a plain path, or
/// `s3://bucket/prefix`. Opening does not reach the server; the first
/// request does.
pub fn open(url: &str, options: &StoreOptions) -> Result<StoreLocation, StoreError> {
    let bad = |reason: &str| StoreError::BadUrl { url: url.to_owned(), reason: reason.to_owned() };
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("file".to_owned(), url),
    };
    match scheme.as_str() {
        "file" => {
            if rest.is_empty() {
                return Err(bad("no path"));
            }
            let dir = if url.contains("://") {
                let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
                parsed.to_file_path().map_err(|()| bad("not a local absolute path"))?
            } else {
                let p = std::path::PathBuf::from(rest);
                if p.is_absolute() {
                    p
                } else {
                    std::env::current_dir().map_err(|e| bad(&e.to_string()))?.join(p)
                }
            };
            let prefix = Path::from_absolute_path(&dir).map_err(|e| bad(&e.to_string()))?;
            let store = LocalFileSystem::new().with_automatic_cleanup(true);
            Ok(StoreLocation { url: url.to_owned(), store: Arc::new(store), prefix })
        }
        "s3" | "s3a" => {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket (expected s3://bucket/prefix)"));
            }
            let prefix = Path::parse(key.trim_end_matches('/')).map_err(|e| bad(&e.to_string()))?;
            let store = s3(bucket, options)
                .map_err(|source| StoreError::Store { url: url.to_owned(), source })?;
            Ok(StoreLocation { url: url.to_owned(), store, prefix })
        }
        other => {
            Err(bad(&format!("unknown scheme `{other}` (known: file, s3, or a plain local path)")))
        }
    }
}

fn s3(bucket: &str, o: &StoreOptions) -> object_store::Result<Arc<dyn ObjectStore>> {
    install_crypto_provider();
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(v) = &o.endpoint {
        b = b.with_endpoint(v);
    }
    if let Some(v) = &o.region {
        b = b.with_region(v);
    } else if std::env::var_os("AWS_REGION").is_none()
        && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        b = b.with_region("us-east-1");
    }
    if let Some(v) = &o.access_key_id {
        b = b.with_access_key_id(v);
    }
    if let Some(v) = &o.secret_access_key {
        b = b.with_secret_access_key(v);
    }
    if let Some(v) = &o.session_token {
        b = b.with_token(v);
    }
    let env_endpoint =
        || std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT"));
    let http_endpoint = match &o.endpoint {
        Some(e) => e.starts_with("http://"),
        None => env_endpoint().is_ok_and(|e| e.starts_with("http://")),
    };
    let timeout = Duration::from_millis(o.timeout_ms.unwrap_or(30_000));
    let retry = RetryConfig {
        max_retries: o.retries.unwrap_or(3),
        retry_timeout: timeout,
        ..RetryConfig::default()
    };
    // Client options replace the builder's own (`AWS_ALLOW_HTTP` included),
    // so allow-http is decided here.
    let env_allow = std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let client = ClientOptions::new()
        .with_allow_http(o.allow_http.unwrap_or(http_endpoint || env_allow))
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(timeout);
    Ok(Arc::new(b.with_retry(retry).with_client_options(client).build()?))
}

/// rustls needs a process-wide crypto provider for the HTTP client; ring,
/// as everywhere else in flinkw. Another provider installed first stays.
fn install_crypto_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The shared runtime for object-store requests (two worker threads).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flinkw-objstore")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the object-store runtime: {e}"))
    })
}

/// Runs `f` to completion on the shared runtime, blocking this thread.
/// Works from plain threads and from inside another Tokio runtime (there
/// it blocks the calling worker thread, so keep such calls short).
pub fn block_on<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| runtime().block_on(f))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    } else {
        runtime().block_on(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[test]
    fn local_paths_and_file_urls_name_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let a = open(&url, &StoreOptions::default()).unwrap();
        let b = open(&dir.path().display().to_string(), &StoreOptions::default()).unwrap();
        assert_eq!(a.prefix, b.prefix);
        let p = a.child("x/y.txt");
        block_on(a.store.put(&p, "hi".into())).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("x/y.txt")).unwrap(), "hi");
        let got = block_on(async { b.store.get(&p).await?.bytes().await }).unwrap();
        assert_eq!(&got[..], b"hi");
    }

    #[test]
    fn s3_urls_split_bucket_and_prefix() {
        let o = StoreOptions {
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("a".into()),
            secret_access_key: Some("b".into()),
            ..StoreOptions::default()
        };
        let loc = open("s3://bkt/some/prefix/", &o).unwrap();
        assert_eq!(loc.prefix.as_ref(), "some/prefix");
        assert_eq!(loc.display(&loc.child("f.csv")), "s3://bkt/some/prefix/f.csv");
    }

    #[test]
    fn bad_urls_are_named() {
        let e = open("gs://bkt/x", &StoreOptions::default()).unwrap_err().to_string();
        assert!(e.contains("gs://bkt/x") && e.contains("unknown scheme `gs`"), "{e}");
        let e = open("s3:///x", &StoreOptions::default()).unwrap_err().to_string();
        assert!(e.contains("no bucket"), "{e}");
    }

    #[test]
    fn options_are_read_with_a_prefix() {
        let m: BTreeMap<String, String> = [("s3.endpoint", "http://h:1"), ("s3.allow-http", "no")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let e = StoreOptions::from_options(&m, "s3.").unwrap_err().to_string();
        assert!(e.contains("s3.allow-http"), "{e}");
    }

    #[test]
    fn block_on_works_inside_another_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(async { block_on(async { 7 }) }), 7);
    }
}
