#!/usr/bin/env bash
# Install Mermaid (npm) into tests/e2e/vendor/mermaid/ for the test that renders the README's
# architecture diagram in headless Chromium, as GitHub does (tests only; not committed).
# Without npm the test is skipped with this reason.
set -euo pipefail
dest="$(cd "$(dirname "$0")/.." && pwd)/tests/e2e/vendor/mermaid"
if [ -s "$dest/mermaid.min.js" ]; then exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
  echo "note: npm not found; the README diagram test is skipped"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if npm install --prefix "$tmp" --no-audit --no-fund --silent mermaid@11 >/dev/null 2>&1; then
  mkdir -p "$dest"
  cp "$tmp/node_modules/mermaid/dist/mermaid.min.js" "$dest/mermaid.min.js"
  cp "$tmp/node_modules/mermaid/LICENSE" "$dest/mermaid.LICENSE" 2>/dev/null || true
  echo "mermaid $(node -p "require('$tmp/node_modules/mermaid/package.json').version" 2>/dev/null) -> $dest"
else
  echo "note: npm could not install mermaid; the README diagram test is skipped"
fi
