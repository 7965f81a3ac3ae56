#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it through its executable path; no
# browser download by Playwright itself), and axe-core (pinned in tests/browser/axe's lock file), which
# the tests inject into each page to check accessibility.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get install -y --no-install-recommends "${missing[@]}" \
    || { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
fi
/usr/bin/chromium --version
AXE=tests/browser/axe
STAMP="$AXE/node_modules/.gridctl-npm-ci-stamp"
if [ -f "$STAMP" ] && [ "$STAMP" -nt "$AXE/package-lock.json" ] && [ -f "$AXE/node_modules/axe-core/axe.min.js" ]; then
  echo "setup-browser: axe-core is up to date"
else
  (cd "$AXE" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$STAMP"
fi
