//! Test support for flinkw: the example and test plugins, built by this
//! crate's build script, and helpers to run the `flinkw` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod azure;
pub mod kafka;
pub mod s3;
pub mod server;
pub mod stores;

pub mod sdk_plugins;

/// Paths of the built plugins.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A file under `examples/` in the repository.
pub fn example(path: &str) -> PathBuf {
    repo_root().join("examples").join(path)
}

/// What a run of the `flinkw` binary printed.
#[derive(Debug)]
pub struct Run {
    /// Exit code (None if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Whether it exited with 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout lines, sorted (for outputs whose order depends on parallelism).
    pub fn sorted_lines(&self) -> Vec<String> {
        let mut v: Vec<String> = self.stdout.lines().map(str::to_owned).collect();
        v.sort();
        v
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `binary` with `args` and a private compile cache, and waits.
pub fn run(binary: &str, args: &[&str], cache_dir: &Path) -> Run {
    Command::new(binary)
        .args(args)
        .env("FLINKW_CACHE_DIR", cache_dir)
        .env_remove("FLINKW_LOG")
        .output()
        .map(Run::from)
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"))
}
