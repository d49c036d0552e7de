# Headless Chromium for the web UI tests (cluster/tests/all/ui.rs): the
# Debian package `chromium`, driven over the DevTools protocol on a pipe.
# Pinned to the version tested; when the Debian mirror no longer has it
# (security updates replace Chromium often), the current candidate is
# installed instead, with a note. Measured on a fresh Debian 12 machine:
# about 40 s for the download and install (~100 MB of .debs, ~330 MB on
# disk). Exports FLINKW_CHROMIUM, the browser the tests start.

CHROMIUM_VERSION=156.0.8078.79-1~deb12u1
if ! command -v chromium >/dev/null 2>&1; then
  CHROMIUM_SUDO=""; [ "$(id -u)" -eq 0 ] || CHROMIUM_SUDO="sudo"
  $CHROMIUM_SUDO apt-get update -qq
  if apt-cache madison chromium 2>/dev/null | grep -qF "$CHROMIUM_VERSION"; then
    log "installing chromium $CHROMIUM_VERSION (headless browser for the UI tests, ~40 s)"
    DEBIAN_FRONTEND=noninteractive $CHROMIUM_SUDO apt-get install -y -qq --no-install-recommends \
      "chromium=$CHROMIUM_VERSION" "chromium-common=$CHROMIUM_VERSION"
  else
    log "chromium $CHROMIUM_VERSION is no longer on the mirror; installing its current version"
    DEBIAN_FRONTEND=noninteractive $CHROMIUM_SUDO apt-get install -y -qq --no-install-recommends chromium
  fi
fi
export FLINKW_CHROMIUM="${FLINKW_CHROMIUM:-$(command -v chromium)}"
