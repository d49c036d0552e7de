//! Builds the example and test plugins for `wasm32-wasip2` and writes their
//! paths into `artifacts.rs`, so tests reach them by constant.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (constant name, plugin directory relative to the repository root)
const PLUGINS: [(&str, &str); 12] = [
    ("WORDCOUNT", "plugins/wordcount"),
    ("WINDOWED_COUNT", "plugins/windowed-count"),
    ("INACTIVITY_ALERT", "plugins/inactivity-alert"),
    ("INTERVAL_JOIN", "plugins/interval-join"),
    ("NEXMARK_WINDOWS", "plugins/nexmark-windows"),
    ("FILTER_MAP", "plugins/filter-map"),
    ("NEXMARK_W1", "plugins/nexmark-w1"),
    ("NEXMARK", "plugins/nexmark"),
    ("KAFKA_WINDOWED", "plugins/kafka-windowed"),
    ("OBJECT_STORE_ETL", "plugins/object-store-etl"),
    ("BAD_GUEST", "tests/plugins/bad-guest"),
    ("STATE_KINDS", "tests/plugins/state-kinds"),
];

/// Plugins built in several versions: (constant name, directory, cargo
/// feature; the empty feature is the default build).
const VARIANTS: [(&str, &str, &str); 6] = [
    ("UPGRADE_V1", "tests/plugins/upgrade", ""),
    ("UPGRADE_V2", "tests/plugins/upgrade", "v2"),
    ("UPGRADE_V3", "tests/plugins/upgrade", "v3"),
    ("UPGRADE_V4", "tests/plugins/upgrade", "v4"),
    ("MEMORY_CAPTURED", "tests/plugins/memory-capture", ""),
    ("MEMORY_PLAIN", "tests/plugins/memory-capture", "plain"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir.parent().expect("tests/ is inside the repository").to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    // A target dir of its own: the outer cargo holds the lock on ours.
    let target_dir = plugin_target_dir(&out_dir);
    for dir in ["sdk", "wit", "batch/src"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let mut consts = String::new();
    for (name, dir, feature) in VARIANTS {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.join("src").display());
        println!("cargo:rerun-if-changed={}", dir.join("Cargo.toml").display());
        let wasm = build_plugin_with(&dir, &target_dir, feature);
        // Each variant's file under its own name: the next build overwrites the crate's.
        let copy = wasm.with_file_name(format!("{}.wasm", name.to_lowercase()));
        std::fs::copy(&wasm, &copy).expect("copy a plugin variant");
        consts.push_str(&format!(
            "/// The `{}` plugin with feature `{feature}`, built for wasm32-wasip2.\npub const {name}: &str = {:?};\n",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            copy.display().to_string()
        ));
    }
    for (name, dir) in PLUGINS {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.join("src").display());
        println!("cargo:rerun-if-changed={}", dir.join("Cargo.toml").display());
        let wasm = build_plugin(&dir, &target_dir);
        consts.push_str(&format!(
            "/// The `{}` plugin, built for wasm32-wasip2.\npub const {name}: &str = {:?};\n",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            wasm.display().to_string()
        ));
    }
    std::fs::write(out_dir.join("artifacts.rs"), consts).expect("write artifacts.rs");
}

fn plugin_target_dir(out_dir: &Path) -> PathBuf {
    if let Ok(dir) = std::env::var("FLINKW_PLUGIN_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // OUT_DIR is <target>/<profile>/build/<pkg>/out.
    out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm-plugins"))
        .unwrap_or_else(|| out_dir.join("wasm-plugins"))
}

fn build_plugin(dir: &Path, target_dir: &Path) -> PathBuf {
    build_plugin_with(dir, target_dir, "")
}

/// Builds the plugin in `dir` with cargo `feature` (none if empty).
fn build_plugin_with(dir: &Path, target_dir: &Path, feature: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(target_dir);
    if !feature.is_empty() {
        cmd.args(["--features", feature]);
    }
    // Settings meant for the host build must not leak into the guest build.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for a plugin");
    assert!(status.success(), "building plugin {} failed", dir.display());
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("read plugin manifest");
    let name = manifest
        .lines()
        .find_map(|l| l.strip_prefix("name = "))
        .map(|n| n.trim_matches('"').replace('-', "_"))
        .expect("plugin manifest has a name");
    target_dir.join("wasm32-wasip2/release").join(format!("{name}.wasm"))
}
