//! A real S3-compatible server for tests: moto's standalone server
//! (installed by `scripts/setup.d/40-s3.sh`) on a free loopback port,
//! killed when dropped. Every wait is bounded. Clients are the tests' own
//! business (the cluster tests use flinkw's `objstore`); this module only
//! creates buckets, with a plain HTTP request.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kafka::free_port;

/// The server command: `$FLINKW_MOTO_SERVER`, else where the setup script puts it.
pub fn server_binary() -> PathBuf {
    match std::env::var_os("FLINKW_MOTO_SERVER") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(".cache/flinkw/moto-venv/bin/moto_server")
        }
    }
}

/// A running S3-compatible server; killed on drop.
pub struct S3Server {
    child: Child,
    port: u16,
    log: PathBuf,
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
        let bin = server_binary();
        assert!(
            bin.exists(),
            "{} is missing: run `source scripts/setup.sh` (scripts/setup.d/40-s3.sh installs it)",
            bin.display()
        );
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("flinkw-moto-{}-{port}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("server log");
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("log")))
            .stderr(Stdio::from(out));
        if auth {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let server = S3Server { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.request("GET", "/", b"").is_err() {
            assert!(
                Instant::now() < deadline,
                "the S3 server did not answer on {} within 30 s; its log:\n{}",
                server.endpoint(),
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `http://127.0.0.1:PORT`, for `s3.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (unsigned: only on a server that accepts anyone).
    pub fn create_bucket(&self, name: &str) {
        let status = self.request("PUT", &format!("/{name}"), b"").expect("create a bucket");
        assert_eq!(status, 200, "creating bucket {name} answered {status}");
    }

    /// One HTTP/1.1 request; returns the status code.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer);
        text.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:.80}")))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
