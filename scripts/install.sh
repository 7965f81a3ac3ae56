#!/usr/bin/env bash
# Creates gridctl's virtual environment in .venv and installs gridctl into it (editable, with the
# development tools), at the versions CI tested (constraints.txt). Re-runs are quick: pip runs again
# only when pyproject.toml or constraints.txt has changed.
#
# Environment: PYTHON=/path/to/python3.x to choose the interpreter (3.11 or newer).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
STAMP="$VENV/.gridctl-install-stamp"

log() { echo "install: $*"; }
die() { echo "install: error: $*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        env DEBIAN_FRONTEND=noninteractive "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo --non-interactive env DEBIAN_FRONTEND=noninteractive "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: install $* by hand"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        # A broken third-party source must not stop the install: a missing package still fails below.
        as_root apt-get update -qq || log "warning: apt-get update failed; using the package lists as they are"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# True when $1 is a Python >= 3.11 that can create a virtual environment with pip in it.
usable_python() {
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11 /usr/bin/python3; do
        if command -v "$candidate" >/dev/null 2>&1 && usable_python "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# Debian and Ubuntu split venv/ensurepip out of the interpreter package (python3.X-venv).
install_python() {
    local version
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            version="$("$candidate" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
            apt_install "python$version-venv"
            return 0
        fi
    done
    apt_install python3 python3-venv
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        # e.g. Ubuntu 22.04, whose python3 is 3.10 but which packages 3.11 alongside.
        apt_install python3.11 python3.11-venv
    fi
}

venv_ok() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

wanted_stamp() {
    # The interpreter is part of the stamp: a venv rebuilt on another Python needs a fresh install.
    { sha256sum pyproject.toml constraints.txt; "$VENV/bin/python" -VV; } | sha256sum | cut -d' ' -f1
}

if ! venv_ok; then
    python="$(find_python)" || { install_python; python="$(find_python)"; } \
        || die "no Python 3.11 or newer with venv support"
    log "creating $VENV with $python ($("$python" -V 2>&1))"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(wanted_stamp)" ] && "$VENV/bin/python" -I -c 'import gridctl' 2>/dev/null
then
    log "$VENV is up to date"
    exit 0
fi

log "pip install -e '.[dev]' -c constraints.txt into $VENV"
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[dev]' -c constraints.txt
wanted_stamp >"$STAMP"
log "$VENV is ready"
