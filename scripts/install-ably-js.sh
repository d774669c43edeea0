#!/usr/bin/env bash
# Install ably-js (npm) into mobile_push/static/vendor/ so the phone and kiosk pages can talk to
# real Ably ("ably" mode). The embedded default (the local push hub) needs no JS library, so a
# missing npm is a note, not a failure.
set -euo pipefail
dest="$(cd "$(dirname "$0")/.." && pwd)/mobile_push/static/vendor"
mkdir -p "$dest"
if [ -s "$dest/ably.min.js" ]; then exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
  echo "note: npm not found; the pages work with the local push hub only (install npm for Ably mode)"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if npm install --prefix "$tmp" --no-audit --no-fund --silent ably@2 >/dev/null 2>&1; then
  cp "$tmp/node_modules/ably/build/ably.min.js" "$dest/ably.min.js"
  cp "$tmp/node_modules/ably/LICENSE" "$dest/ably.LICENSE" 2>/dev/null || true
  echo "ably-js $(node -p "require('$tmp/node_modules/ably/package.json').version" 2>/dev/null) -> $dest"
else
  echo "note: npm could not install ably; the pages work with the local push hub only"
fi
