#!/usr/bin/env bash
# README command 1: builds flinkw and the wordcount example plugin, then runs
# the plugin on the embedded runtime over examples/data/words.txt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$FLINKW_ROOT"

echo "building flinkw and the example plugins (the first build takes several minutes)..." >&2
# The same build the tests use (one feature set, one profile), so running
# the tests afterwards compiles nothing again. It builds the plugins too.
cargo test --release --workspace --no-run
echo "building the wordcount plugin for wasm32-wasip2..." >&2
(cd plugins/wordcount && cargo build --release --target wasm32-wasip2 --target-dir "$FLINKW_PLUGIN_TARGET_DIR")

flinkw="$CARGO_TARGET_DIR/release/flinkw"
plugin="$FLINKW_PLUGIN_TARGET_DIR/wasm32-wasip2/release/wordcount.wasm"
echo "+ flinkw run $plugin --set input=examples/data/words.txt" >&2
"$flinkw" run "$plugin" --set input=examples/data/words.txt "$@"
