//! One test object store of a kind flinkw reads by URL: S3 (moto) or Azure
//! Blob (Azurite), each a real server started on loopback, so one test can
//! run on every store. (Google Cloud Storage has no emulator that
//! object_store's GCS client works with: it writes, lists, copies and
//! deletes through the XML API, which fake-gcs-server 1.54 and
//! gcp-storage-emulator do not serve; see docs/connectors.md.)

use crate::azure::AzuriteServer;
use crate::s3::S3Server;

/// The kinds of object store the tests start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// `s3://` on moto.
    S3,
    /// `az://` on Azurite.
    Azure,
}

impl Cloud {
    /// Every kind.
    pub const ALL: [Cloud; 2] = [Cloud::S3, Cloud::Azure];

    /// The URL scheme.
    pub fn scheme(self) -> &'static str {
        match self {
            Cloud::S3 => "s3",
            Cloud::Azure => "az",
        }
    }
}

/// A running store server.
pub enum TestStore {
    /// moto.
    S3(S3Server),
    /// Azurite.
    Azure(AzuriteServer),
}

impl TestStore {
    /// Starts a server of `cloud`'s kind.
    pub fn start(cloud: Cloud) -> TestStore {
        match cloud {
            Cloud::S3 => TestStore::S3(S3Server::start()),
            Cloud::Azure => TestStore::Azure(AzuriteServer::start()),
        }
    }

    /// Its kind.
    pub fn cloud(&self) -> Cloud {
        match self {
            TestStore::S3(_) => Cloud::S3,
            TestStore::Azure(_) => Cloud::Azure,
        }
    }

    /// Creates a bucket (S3) or container (Azure).
    pub fn create_bucket(&self, name: &str) {
        match self {
            TestStore::S3(s) => s.create_bucket(name),
            TestStore::Azure(s) => s.create_container(name),
        }
    }

    /// `scheme://bucket/path`.
    pub fn url(&self, bucket: &str, path: &str) -> String {
        format!("{}://{bucket}/{}", self.cloud().scheme(), path.trim_start_matches('/'))
    }

    /// The environment that points flinkw at the server (`AWS_*`,
    /// `AZURE_*`).
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            TestStore::S3(s) => s.env(),
            TestStore::Azure(s) => s.env(),
        }
    }

    /// The settings as connector options (`s3.*`, `az.*`).
    pub fn options(&self) -> Vec<(String, String)> {
        match self {
            TestStore::S3(s) => s.options(),
            TestStore::Azure(s) => s.options(),
        }
    }
}
