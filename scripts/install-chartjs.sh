#!/usr/bin/env bash
# Install Chart.js 4 (npm) into api/static/vendor/chartjs/ so the dashboard's charts work with no
# network at run time (vendor/ is not committed). Without npm the dashboard shows its figures and
# says on each chart that the charting library is missing (a note, not a failure).
set -euo pipefail
dest="$(cd "$(dirname "$0")/.." && pwd)/api/static/vendor/chartjs"
if [ -s "$dest/chart.umd.min.js" ]; then exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
  echo "note: npm not found; the dashboard's charts need Chart.js (install npm, then make setup)"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if npm install --prefix "$tmp" --no-audit --no-fund --silent chart.js@4 >/dev/null 2>&1; then
  mkdir -p "$dest"
  src="$tmp/node_modules/chart.js"
  if [ -s "$src/dist/chart.umd.min.js" ]; then
    cp "$src/dist/chart.umd.min.js" "$dest/chart.umd.min.js"
  else  # Chart.js before 4.5 ships the UMD build unminified under this name only
    cp "$src/dist/chart.umd.js" "$dest/chart.umd.min.js"
  fi
  cp "$src/LICENSE.md" "$dest/chart.js.LICENSE.md" 2>/dev/null || true
  echo "chart.js $(node -p "require('$src/package.json').version" 2>/dev/null) -> $dest"
else
  echo "note: npm could not install chart.js; the dashboard's charts say the library is missing"
fi
