#!/usr/bin/env bash
# The embedded Apache Kafka broker: Java >= 17 and Maven (Debian packages when missing), then the
# pinned Kafka jars and their logging binding from Maven Central into the per-user cache
# (`instore broker install`; quick when they are already there).
set -euo pipefail
venv=${1:-.venv}
java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ -n "$v" ] && [ "$v" -ge 17 ]
}
pkgs=()
java_ok || pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
if [ ${#pkgs[@]} -gt 0 ]; then
  bash "$(dirname "$0")/apt-install.sh" "${pkgs[@]}"
fi
if ! java_ok; then
  echo "error: Java 17 or newer is needed for the embedded Kafka broker (apt-get install openjdk-17-jre-headless)" >&2
  exit 1
fi
"$venv/bin/instore" broker install
