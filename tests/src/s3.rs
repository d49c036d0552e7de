//! A real S3-compatible server for tests: moto's standalone server
//! (installed by `scripts/setup.d/40-s3.sh`) on a free loopback port,
//! killed when dropped. Every wait is bounded. Clients are the tests' own
//! business (the cluster tests use flinkw's `objstore`); this module only
//! creates buckets, with a plain HTTP request.

use std::path::PathBuf;

use crate::server::{Server, tool};

/// The server command: `$FLINKW_MOTO_SERVER`, else where the setup script puts it.
pub fn server_binary() -> PathBuf {
    tool("FLINKW_MOTO_SERVER", ".cache/flinkw/moto-venv/bin/moto_server")
}

/// A running S3-compatible server; killed on drop.
pub struct S3Server {
    server: Server,
}

impl S3Server {
    /// Starts a server that accepts any credentials.
    pub fn start() -> S3Server {
        Self::spawn(false)
    }

    /// Starts a server that checks credentials: only keys it issued are
    /// accepted (it issues none here, so every request is refused).
    pub fn start_checking_credentials() -> S3Server {
        Self::spawn(true)
    }

    fn spawn(auth: bool) -> S3Server {
        let env: &[(&str, &str)] =
            if auth { &[("INITIAL_NO_AUTH_ACTION_COUNT", "0")] } else { &[] };
        let server = Server::start(
            "S3 server",
            &server_binary(),
            "40-s3.sh",
            |port| ["-H", "127.0.0.1", "-p", &port.to_string()].map(String::from).to_vec(),
            env,
            "/",
        );
        S3Server { server }
    }

    /// `http://127.0.0.1:PORT`, for `s3.endpoint`.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// Creates a bucket (unsigned: only on a server that accepts anyone).
    pub fn create_bucket(&self, name: &str) {
        self.server.expect("PUT", &format!("/{name}"), &[], b"", &[200]);
    }

    /// The environment that points flinkw's S3 client at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec()
    }

    /// The same settings as connector options (`s3.endpoint`, …).
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("s3.endpoint", self.endpoint()),
            ("s3.access-key-id", "test".into()),
            ("s3.secret-access-key", "test".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec()
    }
}
