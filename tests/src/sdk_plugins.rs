//! Plugins in Python, JavaScript and C, built from source with
//! `flinkw plugin build` — once per test run and per content: the component
//! is cached under `$FLINKW_PLUGIN_TARGET_DIR/sdk/` by a hash of the project,
//! its SDK and `wit/`, so only a change rebuilds it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::repo_root;

/// Builds are serialized: the toolchains use every core anyway.
static BUILDING: Mutex<()> = Mutex::new(());

/// FNV-1a, 64 bits: a stable hash for cache keys (not for security).
pub fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The FNV-1a offset basis.
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Hashes every file under `dir` (names and contents, in name order),
/// skipping `build/` and `target/` folders.
pub fn hash_tree(mut hash: u64, dir: &Path) -> u64 {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "build" && name != "target" && !name.starts_with('.') {
                hash = hash_tree(fnv1a(hash, name.as_bytes()), &path);
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            hash = fnv1a(fnv1a(hash, name.as_bytes()), &bytes);
        }
    }
    hash
}

/// The language of a plugin project, from its `flinkw-plugin.toml`.
fn lang_of(project: &Path) -> String {
    let manifest = std::fs::read_to_string(project.join("flinkw-plugin.toml"))
        .unwrap_or_else(|e| panic!("{} has no flinkw-plugin.toml: {e}", project.display()));
    manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("lang"))
        .and_then(|l| l.split('"').nth(1))
        .unwrap_or_else(|| panic!("{}: no lang", project.display()))
        .to_owned()
}

fn cache_dir() -> PathBuf {
    std::env::var_os("FLINKW_PLUGIN_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("flinkw-plugins"))
        .join("sdk")
}

/// A compile cache shared by every test run of SDK plugins: the host
/// compiles a ~19 MB Python component once (~14 s of CPU), not once per run.
/// Compilations older than three days are removed the first time it is
/// asked for in a process (each is 30-40 MB for Python and JS components).
pub fn compile_cache() -> PathBuf {
    static PRUNED: std::sync::Once = std::sync::Once::new();
    let dir = cache_dir().join("compiled");
    PRUNED.call_once(|| {
        let old = std::time::Duration::from_secs(3 * 24 * 3600);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let age =
                entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if age.is_some_and(|a| a > old) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    });
    dir
}

/// Builds the plugin project `project` (a folder relative to the repository
/// root, e.g. `plugins/python-wordcount`) with `flinkw` = the binary under
/// test, and returns the component's path. Panics with the build's output
/// if it fails.
pub fn build(flinkw: &str, project: &str) -> PathBuf {
    let root = repo_root();
    let dir = root.join(project);
    let lang = lang_of(&dir);
    let sdk = match lang.as_str() {
        "python" => "sdk-python",
        "js" => "sdk-js",
        "c" => "sdk-c",
        other => panic!("{project}: no SDK folder for lang {other}"),
    };
    let mut hash = hash_tree(FNV_START, &dir);
    hash = hash_tree(hash, &root.join(sdk));
    hash = hash_tree(hash, &root.join("wit"));
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("plugin");
    let wasm = cache_dir().join(format!("{name}-{hash:016x}.wasm"));
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if wasm.is_file() {
        return wasm;
    }
    std::fs::create_dir_all(cache_dir()).expect("create the SDK plugin cache");
    let partial = wasm.with_extension(format!("{}.partial.wasm", std::process::id()));
    let out = Command::new(flinkw)
        .args(["plugin", "build"])
        .arg(&dir)
        .arg("--out")
        .arg(&partial)
        .env("FLINKW_SDK_ROOT", &root)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {flinkw}: {e}"));
    assert!(
        out.status.success(),
        "flinkw plugin build {project} failed:\n{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::rename(&partial, &wasm).expect("move the built plugin into the cache");
    // Builds of earlier versions of this project are stale now.
    let prefix = format!("{name}-");
    for entry in std::fs::read_dir(cache_dir()).into_iter().flatten().flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let rest = file.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".wasm"));
        if rest.is_some_and(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()))
            && entry.path() != wasm
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    wasm
}
