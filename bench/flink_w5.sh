#!/usr/bin/env bash
# W5 on Apache Flink (bench/flink_w5.py): makes sure Java 17, the venv with apache-flink and a
# javac exist (installing what is missing), then runs the harness. Arguments go to flink_w5.py.
#
# Usage:  bash bench/flink_w5.sh [--keys N] [--rate R] [--steady S] [--json FILE] ...
# Env knobs: FLINK_DIR (default /work/shared/peers/flink: its env.sh installs Java 17 via apt and
# apache-flink==$FLINK_VERSION (2.3.0) via pip into $FLINK_BENCH_VENV (/tmp/flink-bench-venv)),
# JAVAC (a javac of JDK >= 17; default: the first one found, else apt openjdk-17-jdk-headless).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FLINK_DIR="${FLINK_DIR:-/work/shared/peers/flink}"
# shellcheck source=/dev/null
. "$FLINK_DIR/env.sh"
ensure_flink_env

_javac_ok() {  # $1 = javac -> true if it is from JDK 17 or newer
  local v
  v="$("$1" -version 2>&1 | awk '{split($2, v, "."); print v[1]; exit}')"
  [ -n "$v" ] && [ "$v" -ge 17 ] 2>/dev/null
}

if [ -z "${JAVAC:-}" ]; then
  for j in "$JAVA_HOME/bin/javac" /usr/lib/jvm/*/bin/javac; do
    if [ -x "$j" ] && _javac_ok "$j"; then JAVAC="$j"; break; fi
  done
fi
if [ -z "${JAVAC:-}" ]; then
  echo "[flink-w5] installing openjdk-17-jdk-headless (for javac)" >&2
  _apt_install openjdk-17-jdk-headless
  JAVAC="$JAVA_HOME/bin/javac"
fi
FLINK_HOME="$("$FLINK_PY" -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))')"
export JAVAC FLINK_HOME JAVA_HOME

echo "[flink-w5] java $("$JAVA_HOME/bin/java" -version 2>&1 | head -1), javac $JAVAC," \
     "apache-flink $FLINK_VERSION at $FLINK_HOME, nproc $(nproc)" >&2
exec python3 "$HERE/flink_w5.py" "$@"
