#!/usr/bin/env bash
# Installs what building and testing flinkw needs on a fresh Debian machine:
# the pinned Rust toolchain with the wasm32-wasip2 target, and system packages.
# Safe to run again: it only installs what is missing. Source it to get
# CARGO_TARGET_DIR and FLINKW_ROOT set.
set -euo pipefail

FLINKW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FLINKW_ROOT
# Build outside the clone so a fresh clone reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flinkw/target}"
export FLINKW_PLUGIN_TARGET_DIR="${FLINKW_PLUGIN_TARGET_DIR:-$CARGO_TARGET_DIR/wasm-plugins}"

log() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

# System packages (Debian). gcc/g++/make/pkg-config for crates that build C.
# libclang-dev: bindgen for RocksDB's bindings.
APT_PACKAGES=(gcc g++ make pkg-config libclang-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Rust: the toolchain pinned in rust-toolchain.toml, and the guest target.
if ! command -v rustup >/dev/null 2>&1; then
  echo "setup: rustup is needed (https://rustup.rs); install it and run again" >&2
  exit 1
fi
channel="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$FLINKW_ROOT/rust-toolchain.toml")"
if ! rustup toolchain list | grep -q "^$channel"; then
  log "installing Rust $channel"
  rustup toolchain install "$channel" --profile minimal --component rustfmt,clippy
fi
if ! rustup target list --installed --toolchain "$channel" | grep -qx wasm32-wasip2; then
  log "adding the wasm32-wasip2 target"
  rustup target add --toolchain "$channel" wasm32-wasip2
fi
for c in rustfmt clippy; do
  if ! rustup component list --installed --toolchain "$channel" | grep -q "^$c"; then
    rustup component add --toolchain "$channel" "$c"
  fi
done

# Tools for one part of flinkw each (a Kafka-compatible broker, non-Rust
# plugin toolchains, ...): every scripts/setup.d/*.sh is sourced in order.
for part in "$FLINKW_ROOT"/scripts/setup.d/*.sh; do
  [ -e "$part" ] || continue
  # shellcheck source=/dev/null
  source "$part"
done
