#!/usr/bin/env bash
# Install swagger-ui-dist (npm) into api/static/vendor/swagger-ui/ so the API's /docs page works
# with no network at run time. Without npm, /docs falls back to FastAPI's CDN copy (a note, not
# a failure).
set -euo pipefail
dest="$(cd "$(dirname "$0")/.." && pwd)/api/static/vendor/swagger-ui"
if [ -s "$dest/swagger-ui-bundle.js" ] && [ -s "$dest/swagger-ui.css" ]; then exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
  echo "note: npm not found; /docs loads Swagger UI from its CDN"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if npm install --prefix "$tmp" --no-audit --no-fund --silent swagger-ui-dist@5 >/dev/null 2>&1; then
  mkdir -p "$dest"
  src="$tmp/node_modules/swagger-ui-dist"
  cp "$src/swagger-ui-bundle.js" "$src/swagger-ui.css" "$src/favicon-32x32.png" "$dest/"
  cp "$src/LICENSE" "$dest/swagger-ui.LICENSE" 2>/dev/null || true
  echo "swagger-ui $(node -p "require('$src/package.json').version" 2>/dev/null) -> $dest"
else
  echo "note: npm could not install swagger-ui-dist; /docs loads Swagger UI from its CDN"
fi
