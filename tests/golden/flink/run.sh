#!/usr/bin/env bash
# Regenerates tests/golden/<case>.flink from events.csv and cases.csv by
# running tests/golden/flink/Golden.java on real Apache Flink (the jars of
# PyPI's apache-flink, the package ../shared/peers/flink installs; a JDK 17).
#
#   FLINK_LIB=/path/to/pyflink/lib bash tests/golden/flink/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
golden="$(dirname "$here")"
lib="${FLINK_LIB:-$(ls -d /tmp/flink-bench-venv/lib/python3*/site-packages/pyflink/lib | head -1)}"
cp="$(ls "$lib"/*.jar | tr '\n' ':')"
build="$(mktemp -d)"
javac -d "$build" -cp "$cp" "$here/Golden.java"
java -version 2>&1 | head -1 > "$golden/FLINK_VERSION"
ls "$lib"/flink-dist-*.jar | xargs -n1 basename >> "$golden/FLINK_VERSION"
tail -n +2 "$golden/cases.csv" | while IFS=, read -r name window size slide gap delay lateness; do
  java -Xmx1g --add-opens java.base/java.util=ALL-UNNAMED --add-opens java.base/java.lang=ALL-UNNAMED \
    -cp "$build:$cp" Golden "$golden/events.csv" "$window" "$size" "$slide" "$gap" "$delay" "$lateness" \
    2>"$build/$name.log" | sort > "$golden/$name.flink"
  echo "$name: $(grep -vc '^late,' "$golden/$name.flink") window results, $(grep -c '^late,' "$golden/$name.flink" || true) late records"
done
rm -rf "$build"
