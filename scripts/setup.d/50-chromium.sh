# Headless Chromium for the web UI tests (cluster/tests/all/ui.rs): the
# Debian package `chromium`, driven over the DevTools protocol on a pipe.
# Pinned to the version tested; when the Debian mirror no longer has it
# (security updates replace Chromium often), the current candidate is
# installed instead, with a note. Measured: 23 s on the development
# machine (apt-get update included; 25 packages, some GTK libraries were
# there already); a bare Debian 12 has more to fetch (estimate: under a
# minute). Exports FLINKW_CHROMIUM, the browser the tests start.

CHROMIUM_VERSION=156.0.8078.79-1~deb12u1
if ! command -v chromium >/dev/null 2>&1; then
  CHROMIUM_SUDO=""; [ "$(id -u)" -eq 0 ] || CHROMIUM_SUDO="sudo"
  $CHROMIUM_SUDO apt-get update -qq
  if apt-cache madison chromium 2>/dev/null | grep -qF "$CHROMIUM_VERSION"; then
    log "installing chromium $CHROMIUM_VERSION (headless browser for the UI tests, under a minute)"
    DEBIAN_FRONTEND=noninteractive $CHROMIUM_SUDO apt-get install -y -qq --no-install-recommends \
      "chromium=$CHROMIUM_VERSION" "chromium-common=$CHROMIUM_VERSION" >/dev/null
  else
    log "chromium $CHROMIUM_VERSION is no longer on the mirror; installing its current version"
    DEBIAN_FRONTEND=noninteractive $CHROMIUM_SUDO apt-get install -y -qq --no-install-recommends \
      chromium >/dev/null
  fi
fi
export FLINKW_CHROMIUM="${FLINKW_CHROMIUM:-$(command -v chromium)}"
