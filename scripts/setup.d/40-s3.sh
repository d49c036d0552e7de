# Object storage: the tests run a real S3-compatible server on loopback,
# moto's standalone server (PyPI `moto[server]`, pinned), in its own venv
# under $HOME/.cache/flinkw (about 1 min to install on 2 busy cores, pure Python). Exports
# FLINKW_MOTO_SERVER, the server command the tests start
# (`moto_server -H 127.0.0.1 -p PORT`).

MOTO_VERSION=5.2.5
FLINKW_TOOLS="${FLINKW_TOOLS:-$HOME/.cache/flinkw}"
MOTO_VENV="$FLINKW_TOOLS/moto-venv"
export FLINKW_MOTO_SERVER="$MOTO_VENV/bin/moto_server"
if [ ! -x "$FLINKW_MOTO_SERVER" ] \
  || [ "$(cat "$MOTO_VENV/.moto.version" 2>/dev/null)" != "$MOTO_VERSION" ]; then
  log "installing moto[server] $MOTO_VERSION (S3-compatible server for tests, ~1 min)"
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv --help >/dev/null 2>&1 \
    || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    S3_SUDO=""; [ "$(id -u)" -eq 0 ] || S3_SUDO="sudo"
    $S3_SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $S3_SUDO apt-get install -y -qq python3 python3-venv
  fi
  rm -rf "$MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  echo "$MOTO_VERSION" >"$MOTO_VENV/.moto.version"
fi
