#!/usr/bin/env bash
# Installs the third-party protocol peers that gridctl's drivers are tested against: mbpoll (a
# libmodbus Modbus master) from the distribution, and the Node.js peers pinned in tests/peers/node
# (modbus-serial, jsmodbus, node-opcua, @bacnet-js/client). Quick when they are already there.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

cd "$(dirname "${BASH_SOURCE[0]}")/.."
NODE_PEERS=tests/peers/node
NODE_STAMP="$NODE_PEERS/node_modules/.gridctl-npm-ci-stamp"

log() { echo "setup-peers: $*"; }
die() { echo "setup-peers: error: $*" >&2; exit 1; }

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
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        # A broken third-party source must not stop the install: a missing package still fails below.
        as_root apt-get update -qq || log "warning: apt-get update failed; using the package lists as they are"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v mbpoll >/dev/null 2>&1 || missing+=(mbpoll)
# Debian's nodejs ships npm separately; other builds (e.g. upstream's packages) bundle it.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
fi
for tool in mbpoll node npm; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is still missing after installing ${missing[*]}"
done

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
    # @bacnet-js/client and jsmodbus declare Node.js 20 or newer; say so rather than fail later.
    log "warning: Node.js $(node --version) is older than the peers' required 20"
fi

# npm ci again only when the lock file changed since the last install.
if [ -f "$NODE_STAMP" ] && [ "$NODE_STAMP" -nt "$NODE_PEERS/package-lock.json" ] \
    && [ "$NODE_STAMP" -nt "$NODE_PEERS/package.json" ]; then
    log "Node.js peers are up to date"
else
    log "npm ci in $NODE_PEERS"
    # Optional dependencies are native serial-port and similar builds the peers don't need over TCP/UDP.
    (cd "$NODE_PEERS" && npm ci --omit=optional --no-audit --no-fund --loglevel=error)
    touch "$NODE_STAMP"
fi
log "mbpoll, Node.js $(node --version) and the Node.js peers are installed"
