# Azure Blob Storage emulator for the object-store tests (after 20-sdks.sh,
# which brings node/npm): Azurite, Microsoft's emulator, from npm (pinned),
# under $HOME/.cache/flinkw/azurite (366 MB). Measured here: 54-100 s to install
# on the 2 busy cores; later runs only compare a version stamp (< 0.1 s).
# Exports FLINKW_AZURITE_BLOB, the `azurite-blob` command the tests start.
# (No GCS emulator: object_store's GCS client speaks the XML API, which
# neither fake-gcs-server nor gcp-storage-emulator serves; docs/connectors.md.)

AZURITE_VERSION=3.37.0
FLINKW_TOOLS="${FLINKW_TOOLS:-$HOME/.cache/flinkw}"
azurite_dir="$FLINKW_TOOLS/azurite"
if [ "$(cat "$azurite_dir/.version" 2>/dev/null)" != "$AZURITE_VERSION" ]; then
  log "installing azurite $AZURITE_VERSION (Azure Blob emulator for tests, ~1-2 min)"
  rm -rf "$azurite_dir"
  mkdir -p "$azurite_dir"
  (cd "$azurite_dir" && npm install -s --no-audit --no-fund --prefix "$azurite_dir" \
    "azurite@$AZURITE_VERSION" >/dev/null)
  echo "$AZURITE_VERSION" >"$azurite_dir/.version"
fi
export FLINKW_AZURITE_BLOB="$azurite_dir/node_modules/.bin/azurite-blob"
unset azurite_dir
