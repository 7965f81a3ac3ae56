#!/usr/bin/env bash
# gridctl's test command. On a fresh Debian or Ubuntu machine (as root, or with sudo) it installs
# everything the tests need, then lints and runs pytest; re-runs skip what is already in place.
#
#   scripts/test.sh [pytest arguments...]     e.g. scripts/test.sh tests/test_timescaledb.py -x
#
# Exit code: ruff's when the lint fails, otherwise pytest's.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '==> %s\n' "$*"; }
started=$SECONDS

step "Python environment (.venv)"
bash scripts/install.sh
step "PostgreSQL + TimescaleDB"
bash scripts/setup-timescaledb.sh
step "protocol peers"
bash scripts/setup-peers.sh
step "browser (Chromium)"
bash scripts/setup-browser.sh
step "set-up done in $((SECONDS - started)) s; ruff check"
.venv/bin/ruff check .
step "pytest $*"
exec .venv/bin/pytest "$@"
