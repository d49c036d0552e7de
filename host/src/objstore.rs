//! Object storage by URL: local directories, S3-compatible stores, Google
//! Cloud Storage and Azure Blob Storage, for connectors, checkpoint storage
//! and the cluster's job store alike.
//!
//! [`open`] turns a URL into an [`ObjectStore`] and the path prefix inside
//! it:
//!
//! | URL | store | prefix |
//! |-----|-------|--------|
//! | `file:///data/in`, `/data/in`, `data/in` | the local file system | the directory (relative paths against the working directory) |
//! | `s3://bucket/some/prefix` (also `s3a://`) | the bucket | `some/prefix` |
//! | `gs://bucket/some/prefix` | the Google Cloud Storage bucket | `some/prefix` |
//! | `az://container/some/prefix` (also `azure://`, `adl://`, `abfs://`, `abfss://`, and `abfss://container@account.dfs.core.windows.net/prefix`) | the Azure Blob container | `some/prefix` |
//!
//! Settings come from [`StoreOptions`] (job config) first, then the usual
//! environment variables of each cloud:
//! - S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//!   `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, …
//! - GCS: `GOOGLE_SERVICE_ACCOUNT` (path of a service-account JSON file),
//!   `GOOGLE_SERVICE_ACCOUNT_KEY` (its content), `GOOGLE_APPLICATION_CREDENTIALS`,
//!   `GOOGLE_BASE_URL` (another endpoint), `GOOGLE_SKIP_SIGNATURE`, …; another
//!   server is named by a service-account file holding `{"gcs_base_url":
//!   "http://127.0.0.1:4443", "disable_oauth": true, "client_email": "",
//!   "private_key": "", "private_key_id": ""}` (object_store speaks GCS's XML
//!   API, which the emulators on PyPI do not serve; docs/connectors.md).
//! - Azure: `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
//!   `AZURE_STORAGE_SAS_KEY`, `AZURE_STORAGE_TOKEN`, `AZURE_STORAGE_ENDPOINT`,
//!   client-secret / workload-identity variables, …; Azurite is reached with
//!   `AZURE_STORAGE_USE_EMULATOR=true` and `AZURITE_BLOB_STORAGE_URL`
//!   (default `http://127.0.0.1:10000`, its well-known account and key).
//!
//! An `http://` endpoint (a local server or emulator) is allowed without
//! saying `allow-http` again.
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
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
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

/// Settings for a store; every field falls back to the environment of the
/// store's cloud (`AWS_*`, `GOOGLE_*`, `AZURE_*`). Which fields a store
/// reads: [`StoreOptions::keys`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// `endpoint`: the server, e.g. `http://127.0.0.1:9000` (default: the
    /// cloud's own). GCS: the base URL; Azure: the account URL
    /// (`http://127.0.0.1:10000/devstoreaccount1` for Azurite).
    pub endpoint: Option<String>,
    /// `region` (default `us-east-1`).
    pub region: Option<String>,
    /// `access-key-id`.
    pub access_key_id: Option<String>,
    /// `secret-access-key`.
    pub secret_access_key: Option<String>,
    /// `session-token`.
    pub session_token: Option<String>,
    /// GCS `service-account`: path of a service-account JSON file.
    pub service_account: Option<String>,
    /// GCS `service-account-key`: a service-account JSON document.
    pub service_account_key: Option<String>,
    /// Azure `account`: the storage account name.
    pub account: Option<String>,
    /// Azure `access-key`: the storage account's shared key.
    pub access_key: Option<String>,
    /// Azure `sas-token`: a shared access signature (query string).
    pub sas_token: Option<String>,
    /// Azure `use-emulator`: talk to Azurite (`AZURITE_BLOB_STORAGE_URL`,
    /// default `http://127.0.0.1:10000`, its well-known account and key).
    pub use_emulator: Option<bool>,
    /// `allow-http`: allow plain HTTP (default: only when `endpoint` is `http://`).
    pub allow_http: Option<bool>,
    /// `retries`: attempts after a failed request (default 3).
    pub retries: Option<usize>,
    /// `timeout-ms`: the bound on one request including retries (default 30000).
    pub timeout_ms: Option<u64>,
}

impl StoreOptions {
    /// The option names an S3 store reads.
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

    /// The option names a Google Cloud Storage store reads.
    pub const GCS_KEYS: &'static [&'static str] = &[
        "endpoint",
        "service-account",
        "service-account-key",
        "allow-http",
        "retries",
        "timeout-ms",
    ];

    /// The option names an Azure Blob store reads.
    pub const AZURE_KEYS: &'static [&'static str] = &[
        "endpoint",
        "account",
        "access-key",
        "sas-token",
        "use-emulator",
        "allow-http",
        "retries",
        "timeout-ms",
    ];

    /// The option names a store of `kind` reads.
    pub fn keys(kind: StoreKind) -> &'static [&'static str] {
        match kind {
            StoreKind::Local => &[],
            StoreKind::S3 => Self::KEYS,
            StoreKind::Gcs => Self::GCS_KEYS,
            StoreKind::Azure => Self::AZURE_KEYS,
        }
    }

    /// Reads the store option names (all kinds) after `prefix` (e.g. `s3.`
    /// for `s3.endpoint`) from `options`; other keys are left for the
    /// caller to check.
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
        let flag = |k: &str| match get(k).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(StoreError::BadOption {
                option: format!("{prefix}{k}"),
                value: v.into(),
                reason: "expected true or false".into(),
            }),
        };
        Ok(StoreOptions {
            endpoint: get("endpoint"),
            region: get("region"),
            access_key_id: get("access-key-id"),
            secret_access_key: get("secret-access-key"),
            session_token: get("session-token"),
            service_account: get("service-account"),
            service_account_key: get("service-account-key"),
            account: get("account"),
            access_key: get("access-key"),
            sas_token: get("sas-token"),
            use_emulator: flag("use-emulator")?,
            allow_http: flag("allow-http")?,
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
    /// (`s3://bucket/key`, `gs://bucket/key`, `az://container/key`, or a
    /// local file's path).
    pub fn display(&self, path: &Path) -> String {
        match self.url.split_once("://") {
            Some((scheme, rest)) if kind_of_scheme(scheme) != Some(StoreKind::Local) => {
                let authority = rest.split('/').next().unwrap_or_default();
                format!("{scheme}://{authority}/{path}")
            }
            _ => format!("/{path}"),
        }
    }
}

/// The kinds of store a URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A local directory (`file://`, a plain path).
    Local,
    /// An S3-compatible store (`s3://`, `s3a://`).
    S3,
    /// Google Cloud Storage (`gs://`).
    Gcs,
    /// Azure Blob Storage (`az://`, `azure://`, `adl://`, `abfs://`, `abfss://`).
    Azure,
}

impl StoreKind {
    /// The prefix of this kind's settings among connector options
    /// (`s3.`, `gs.`, `az.`; empty for local directories).
    pub fn option_prefix(self) -> &'static str {
        match self {
            StoreKind::Local => "",
            StoreKind::S3 => "s3.",
            StoreKind::Gcs => "gs.",
            StoreKind::Azure => "az.",
        }
    }
}

fn kind_of_scheme(scheme: &str) -> Option<StoreKind> {
    match scheme.to_ascii_lowercase().as_str() {
        "file" => Some(StoreKind::Local),
        "s3" | "s3a" => Some(StoreKind::S3),
        "gs" => Some(StoreKind::Gcs),
        "az" | "azure" | "adl" | "abfs" | "abfss" => Some(StoreKind::Azure),
        _ => None,
    }
}

/// The kind of store `url` names (`None`: an unknown scheme; [`open`]
/// says which).
pub fn kind(url: &str) -> Option<StoreKind> {
    match url.split_once("://") {
        Some((scheme, _)) => kind_of_scheme(scheme),
        None => Some(StoreKind::Local),
    }
}

const KNOWN_SCHEMES: &str = "file, s3, gs, az (azure, adl, abfs, abfss), or a plain local path";

/// Opens the store a URL names: `file:///dir`, a plain path,
/// `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`.
/// Opening does not reach the server; the first request does.
pub fn open(url: &str, options: &StoreOptions) -> Result<StoreLocation, StoreError> {
    let bad = |reason: &str| StoreError::BadUrl { url: url.to_owned(), reason: reason.to_owned() };
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("file".to_owned(), url),
    };
    let Some(kind) = kind_of_scheme(&scheme) else {
        return Err(bad(&format!("unknown scheme `{scheme}` (known: {KNOWN_SCHEMES})")));
    };
    if kind == StoreKind::Local {
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
        return Ok(StoreLocation { url: url.to_owned(), store: Arc::new(store), prefix });
    }
    let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
    let (bucket, what) = match kind {
        StoreKind::Azure => (authority.split_once('@').map_or(authority, |(c, _)| c), "container"),
        _ => (authority, "bucket"),
    };
    if bucket.is_empty() {
        return Err(bad(&format!("no {what} (expected {scheme}://{what}/prefix)")));
    }
    let prefix = Path::parse(key.trim_end_matches('/')).map_err(|e| bad(&e.to_string()))?;
    let store = match kind {
        StoreKind::S3 => s3(bucket, options),
        StoreKind::Gcs => gcs(bucket, options),
        _ => azure(&format!("{scheme}://{authority}"), options),
    }
    .map_err(|source| StoreError::Store { url: url.to_owned(), source })?;
    Ok(StoreLocation { url: url.to_owned(), store, prefix })
}

/// Bounded retries and timeouts, so an unreachable store fails in seconds.
fn client_and_retry(o: &StoreOptions, allow_http: bool) -> (ClientOptions, RetryConfig) {
    let timeout = Duration::from_millis(o.timeout_ms.unwrap_or(30_000));
    let retry = RetryConfig {
        max_retries: o.retries.unwrap_or(3),
        retry_timeout: timeout,
        ..RetryConfig::default()
    };
    // Client options replace a builder's own (`*_ALLOW_HTTP` included), so
    // allow-http is decided by the caller.
    let client = ClientOptions::new()
        .with_allow_http(o.allow_http.unwrap_or(allow_http))
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(timeout);
    (client, retry)
}

fn env_true(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

fn is_http(url: Option<&str>) -> bool {
    url.is_some_and(|u| u.starts_with("http://"))
}

fn gcs(bucket: &str, o: &StoreOptions) -> object_store::Result<Arc<dyn ObjectStore>> {
    install_crypto_provider();
    let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
    if let Some(v) = &o.endpoint {
        b = b.with_base_url(v);
    }
    if let Some(v) = &o.service_account {
        b = b.with_service_account_path(v);
    }
    if let Some(v) = &o.service_account_key {
        b = b.with_service_account_key(v);
    }
    // An emulator's base URL may also come from the service-account
    // document (`gcs_base_url`, as object_store's own tests use it).
    let document = o
        .service_account_key
        .clone()
        .or_else(|| std::env::var("GOOGLE_SERVICE_ACCOUNT_KEY").ok())
        .or_else(|| {
            let path = o
                .service_account
                .clone()
                .or_else(|| std::env::var("GOOGLE_SERVICE_ACCOUNT").ok())
                .or_else(|| std::env::var("GOOGLE_SERVICE_ACCOUNT_PATH").ok())
                .or_else(|| std::env::var("SERVICE_ACCOUNT").ok())?;
            std::fs::read_to_string(path).ok()
        });
    let document_url = document
        .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
        .and_then(|v| v.get("gcs_base_url")?.as_str().map(str::to_owned));
    let http = match &o.endpoint {
        Some(e) => is_http(Some(e)),
        None => {
            is_http(std::env::var("GOOGLE_BASE_URL").ok().as_deref())
                || is_http(document_url.as_deref())
        }
    };
    let (client, retry) = client_and_retry(o, http || env_true("GOOGLE_ALLOW_HTTP"));
    Ok(Arc::new(b.with_retry(retry).with_client_options(client).build()?))
}

fn azure(url: &str, o: &StoreOptions) -> object_store::Result<Arc<dyn ObjectStore>> {
    install_crypto_provider();
    let mut b = MicrosoftAzureBuilder::from_env().with_url(url);
    if let Some(v) = &o.endpoint {
        b = b.with_endpoint(v.clone());
    }
    if let Some(v) = &o.account {
        b = b.with_account(v);
    }
    if let Some(v) = &o.access_key {
        b = b.with_access_key(v);
    }
    if let Some(v) = &o.sas_token {
        let pairs = object_store::azure::split_sas(v)?;
        b = b.with_sas_authorization(pairs);
    }
    if let Some(v) = o.use_emulator {
        b = b.with_use_emulator(v);
    }
    // The emulator switches plain HTTP on by itself.
    let http = match &o.endpoint {
        Some(e) => is_http(Some(e)),
        None => is_http(std::env::var("AZURE_STORAGE_ENDPOINT").ok().as_deref()),
    };
    let (client, retry) = client_and_retry(
        o,
        http || env_true("AZURE_ALLOW_HTTP") || env_true("AZURE_STORAGE_ALLOW_HTTP"),
    );
    Ok(Arc::new(b.with_retry(retry).with_client_options(client).build()?))
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
    let (client, retry) = client_and_retry(o, http_endpoint || env_true("AWS_ALLOW_HTTP"));
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
    fn gcs_and_azure_urls_split_bucket_or_container_and_prefix() {
        let o = StoreOptions {
            service_account_key: Some(
                r#"{"gcs_base_url": "http://127.0.0.1:1", "disable_oauth": true,
                    "client_email": "", "private_key": "", "private_key_id": ""}"#
                    .into(),
            ),
            ..StoreOptions::default()
        };
        let loc = open("gs://bkt/some/prefix/", &o).unwrap();
        assert_eq!(loc.prefix.as_ref(), "some/prefix");
        assert_eq!(loc.display(&loc.child("f.csv")), "gs://bkt/some/prefix/f.csv");
        let o = StoreOptions { use_emulator: Some(true), ..StoreOptions::default() };
        for url in ["az://cont/a/b", "abfs://cont/a/b", "azure://cont/a/b"] {
            let loc = open(url, &o).unwrap();
            assert_eq!(loc.prefix.as_ref(), "a/b", "{url}");
        }
        let loc = open("abfss://cont@acct.dfs.core.windows.net/a", &o).unwrap();
        assert_eq!(loc.prefix.as_ref(), "a");
        assert_eq!(loc.display(&loc.child("x")), "abfss://cont@acct.dfs.core.windows.net/a/x");
        assert_eq!(kind("gs://b"), Some(StoreKind::Gcs));
        assert_eq!(kind("abfss://c@a.dfs.core.windows.net"), Some(StoreKind::Azure));
        assert_eq!(kind("/tmp/x"), Some(StoreKind::Local));
        assert_eq!(kind("ftp://x"), None);
    }

    #[test]
    fn bad_urls_are_named() {
        let e = open("ftp://bkt/x", &StoreOptions::default()).unwrap_err().to_string();
        assert!(e.contains("ftp://bkt/x") && e.contains("unknown scheme `ftp`"), "{e}");
        let e = open("s3:///x", &StoreOptions::default()).unwrap_err().to_string();
        assert!(e.contains("no bucket"), "{e}");
        let e = open("gs:///x", &StoreOptions::default()).unwrap_err().to_string();
        assert!(e.contains("gs:///x") && e.contains("no bucket"), "{e}");
        let e = open("az://", &StoreOptions::default()).unwrap_err().to_string();
        assert!(e.contains("no container"), "{e}");
        // A container name Azure cannot have, named with the URL.
        let o = StoreOptions { use_emulator: Some(true), ..StoreOptions::default() };
        let e = open("az://a.b/x", &o).unwrap_err().to_string();
        assert!(e.contains("az://a.b/x"), "{e}");
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
