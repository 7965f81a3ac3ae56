#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it through its executable path; no
# browser download by Playwright itself).
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends chromium || { apt-get update && apt-get install -y --no-install-recommends chromium; }
fi
/usr/bin/chromium --version
