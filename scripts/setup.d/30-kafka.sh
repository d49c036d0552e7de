# Kafka: the C library librdkafka is built from source by the rdkafka crate
# (cmake, OpenSSL for TLS/SASL-SCRAM, zlib for gzip, curl headers), and the
# tests run a real Kafka-compatible broker: noida-db, installed once into
# $HOME/.cache/flinkw/bin (about 1 min of build, 2 MB). Exports
# FLINKW_NOIDA_DB, the broker binary the tests start.

KAFKA_APT_PACKAGES=(cmake libcurl4-openssl-dev libsasl2-dev libssl-dev zlib1g-dev)
kafka_missing=()
for p in "${KAFKA_APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || kafka_missing+=("$p")
done
if [ "${#kafka_missing[@]}" -gt 0 ]; then
  log "installing ${kafka_missing[*]} (for librdkafka)"
  KAFKA_SUDO=""; [ "$(id -u)" -eq 0 ] || KAFKA_SUDO="sudo"
  $KAFKA_SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $KAFKA_SUDO apt-get install -y -qq "${kafka_missing[@]}"
fi

NOIDA_DB_VERSION=0.2.3
FLINKW_TOOLS="${FLINKW_TOOLS:-$HOME/.cache/flinkw}"
export FLINKW_NOIDA_DB="$FLINKW_TOOLS/bin/noida-db"
if [ ! -x "$FLINKW_NOIDA_DB" ] \
  || [ "$(cat "$FLINKW_TOOLS/bin/.noida-db.version" 2>/dev/null)" != "$NOIDA_DB_VERSION" ]; then
  log "installing noida-db $NOIDA_DB_VERSION (Kafka-compatible broker for tests, ~1 min)"
  # Its own target dir: the install must not lock or clobber the workspace's.
  CARGO_TARGET_DIR="$FLINKW_TOOLS/noida-build" cargo install noida-db \
    --version "$NOIDA_DB_VERSION" --locked --no-default-features --features kafka \
    --root "$FLINKW_TOOLS" --quiet
  echo "$NOIDA_DB_VERSION" >"$FLINKW_TOOLS/bin/.noida-db.version"
  rm -rf "$FLINKW_TOOLS/noida-build" || true
fi
