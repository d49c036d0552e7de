//! A test server process on a free loopback port: started from a binary the
//! setup scripts install, waited for (bounded), spoken to with plain
//! HTTP/1.1 requests, killed when dropped. The S3, GCS and Azure test
//! servers are built on it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kafka::free_port;

/// An installed tool: `$var` if set, else `default` under the home directory.
pub fn tool(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(default)
        }
    }
}

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    /// Its loopback port.
    pub port: u16,
    log: PathBuf,
    name: &'static str,
}

/// One HTTP answer: status and body.
pub type Answer = (u16, String);

impl Server {
    /// Starts `bin` with the arguments `args(port)` on a free port and waits
    /// (at most 60 s) until `GET probe` answers at all. `installer` names
    /// the setup script, for the message when the binary is missing.
    pub fn start(
        name: &'static str,
        bin: &Path,
        installer: &str,
        args: impl FnOnce(u16) -> Vec<String>,
        env: &[(&str, &str)],
        probe: &str,
    ) -> Server {
        assert!(
            bin.exists(),
            "{} is missing: run `source scripts/setup.sh` (scripts/setup.d/{installer} installs it)",
            bin.display()
        );
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "flinkw-{}-{}-{port}.log",
            name.replace(' ', "-"),
            std::process::id()
        ));
        let out = std::fs::File::create(&log).expect("server log");
        let child = Command::new(bin)
            .args(args(port))
            .envs(env.iter().copied())
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("log")))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = Server { child, port, log, name };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.request("GET", probe, &[], b"").is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the {name} exited ({status}); its log:\n{}", server.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "the {name} did not answer on {} within 60 s; its log:\n{}",
                server.endpoint(),
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the server printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One HTTP/1.1 request with extra `headers`; returns status and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> std::io::Result<Answer> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.port,
            body.len()
        );
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            head.push_str("Content-Type: application/octet-stream\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:.80}")))?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        Ok((status, body))
    }

    /// A request that must answer with a status in `ok`.
    #[track_caller]
    pub fn expect(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
        ok: &[u16],
    ) {
        let (status, text) = self
            .request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} on the {}: {e}", self.name));
        assert!(
            ok.contains(&status),
            "{method} {path} on the {} answered {status}: {text:.400}",
            self.name
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
