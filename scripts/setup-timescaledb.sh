#!/usr/bin/env bash
# Installs a PostgreSQL server with the TimescaleDB extension, for gridctl's tests and local runs.
#
# - Nothing to do (and no apt call) when a server already has timescaledb.control in its extension dir.
# - Otherwise the distribution's postgresql-<major>-timescaledb package when there is one for the server.
# - Otherwise Debian 13's `timescaledb` source package, fetched through a private apt configuration so the
#   system's sources stay untouched, built against the installed server's headers (Apache edition, as
#   Debian builds it).
#
# Runs as root (or through sudo). Environment: GRIDCTL_TSDB_SOURCE_SUITE (default trixie).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

SOURCE_SUITE="${GRIDCTL_TSDB_SOURCE_SUITE:-trixie}"
SOURCE_MIRROR="http://deb.debian.org/debian"
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { echo "setup-timescaledb: $*"; }
die() { echo "setup-timescaledb: error: $*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo --non-interactive)
else
    SUDO=()
fi
as_root() {
    if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        die "need root (or sudo) to run: $*"
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "$@"
}

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        # A broken third-party source must not stop the install: a missing package still fails below.
        as_root apt-get update -qq || log "warning: apt-get update failed; using the package lists as they are"
        APT_UPDATED=1
    fi
}
is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
# Installs the packages that are missing; installed ones are left at their version (naming them would
# upgrade them, e.g. restart the system's server for nothing).
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do is_installed "$pkg" || missing+=("$pkg"); done
    [ ${#missing[@]} -gt 0 ] || return 0
    apt_update_once
    log "apt-get install ${missing[*]}"
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
# Prints the candidate version of a package, or nothing when the archive has none.
apt_candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }'
}

# PostgreSQL majors whose server binary is installed, newest first (Debian/Ubuntu layout).
installed_majors() {
    local postgres
    for postgres in /usr/lib/postgresql/*/bin/postgres; do
        if [ -x "$postgres" ]; then basename "$(dirname "$(dirname "$postgres")")"; fi
    done | sort -rn
}

pg_config_for() { echo "/usr/lib/postgresql/$1/bin/pg_config"; }

extension_dir_for() {
    local pgc
    pgc="$(pg_config_for "$1")"
    if [ -x "$pgc" ]; then
        echo "$("$pgc" --sharedir)/extension"
    else
        echo "/usr/share/postgresql/$1/extension"
    fi
}

pkglib_dir_for() {
    local pgc
    pgc="$(pg_config_for "$1")"
    if [ -x "$pgc" ]; then
        "$pgc" --pkglibdir
    else
        echo "/usr/lib/postgresql/$1/lib"
    fi
}

has_timescaledb() {
    [ -f "$(extension_dir_for "$1")/timescaledb.control" ] \
        && compgen -G "$(pkglib_dir_for "$1")/timescaledb*.so" >/dev/null
}

# The major that the distribution's `postgresql` metapackage would install, e.g. 15 on Debian 12.
default_major() {
    apt-cache depends postgresql 2>/dev/null \
        | sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n1 || true
}

build_from_debian_source() {
    local major="$1" pgc work apt_dir log_file
    pgc="$(pg_config_for "$major")"
    [ -x "$pgc" ] || die "$pgc is missing after installing postgresql-server-dev-$major"

    # Build tools and what `apt-get source` needs to verify and unpack; the Debian keyring is not on
    # Ubuntu by default.
    apt_install cmake make gcc libc6-dev dpkg-dev xz-utils libssl-dev debian-archive-keyring
    [ -f "$DEBIAN_KEYRING" ] || die "$DEBIAN_KEYRING is missing (package debian-archive-keyring)"

    work="$(mktemp -d /tmp/gridctl-timescaledb.XXXXXX)"
    # shellcheck disable=SC2064  # expand now: $work is local to this function
    trap "rm -rf '$work'" EXIT
    log_file="$work/build.log"
    apt_dir="$work/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.list.d"
    echo "deb-src [signed-by=$DEBIAN_KEYRING] $SOURCE_MIRROR $SOURCE_SUITE main" >"$apt_dir/sources.list"
    # Every path apt reads sources from or writes indexes to points into $apt_dir, so the system's
    # sources and package lists are never changed. Files are downloaded by root into a private dir,
    # hence no sandbox user.
    local private_apt=(
        -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
        -o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::Cache=$apt_dir/cache"
        -o "APT::Sandbox::User=root"
    )
    log "fetching Debian $SOURCE_SUITE's timescaledb source package"
    apt-get "${private_apt[@]}" update -qq >>"$log_file" 2>&1 \
        || { tail -n 20 "$log_file" >&2; die "apt-get update of the $SOURCE_SUITE sources failed"; }
    (cd "$work" && apt-get "${private_apt[@]}" source --download-only timescaledb >>"$log_file" 2>&1) \
        || { tail -n 20 "$log_file" >&2; die "apt-get source timescaledb failed"; }
    local dsc
    dsc="$(compgen -G "$work/timescaledb_*.dsc" | head -n1 || true)"
    [ -n "$dsc" ] || die "no timescaledb .dsc was downloaded"
    dpkg-source -x "$dsc" "$work/src" >>"$log_file" 2>&1 \
        || { tail -n 20 "$log_file" >&2; die "dpkg-source -x $dsc failed"; }

    log "building $(basename "$dsc" .dsc) against PostgreSQL $major ($("$pgc" --version))"
    # Debian's own configure flags (debian/rules), minus the test suites that need a running server.
    (
        cd "$work/src"
        ./bootstrap \
            -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            -DPG_CONFIG="$pgc" \
            -DAPACHE_ONLY=1 \
            -DSEND_TELEMETRY_DEFAULT=OFF \
            -DUSE_TELEMETRY=OFF \
            -DREGRESS_CHECKS=OFF \
            -DTAP_CHECKS=OFF \
            -DWARNINGS_AS_ERRORS=OFF
        make -C build -j"$(nproc)"
        as_root make -C build install
    ) >>"$log_file" 2>&1 || { tail -n 40 "$log_file" >&2; die "building TimescaleDB failed"; }
}

install_for_major() {
    local major="$1"
    if [ -n "$(apt_candidate "postgresql-$major-timescaledb")" ]; then
        apt_install "postgresql-$major" "postgresql-$major-timescaledb"
    elif [ -n "$(apt_candidate "postgresql-server-dev-$major")" ]; then
        apt_install "postgresql-$major" "postgresql-server-dev-$major"
        build_from_debian_source "$major"
    else
        return 1
    fi
}

main() {
    local major
    for major in $(installed_majors); do
        if has_timescaledb "$major"; then
            log "TimescaleDB is installed for PostgreSQL $major"
            return 0
        fi
    done

    apt_update_once
    local majors
    majors="$(installed_majors)"
    if [ -z "$majors" ]; then
        apt_install postgresql
        majors="$(installed_majors)"
        [ -n "$majors" ] || die "installing postgresql gave no server under /usr/lib/postgresql"
    fi

    # The newest installed server first; when the distribution has neither a TimescaleDB package nor
    # headers for it (a server from another release), its own default server.
    local candidates
    candidates="$(printf '%s\n%s\n' "$majors" "$(default_major)" | awk 'NF && !seen[$0]++')"
    for major in $candidates; do
        if install_for_major "$major"; then
            has_timescaledb "$major" \
                || die "TimescaleDB was installed for PostgreSQL $major but $(extension_dir_for "$major")/timescaledb.control is missing"
            log "TimescaleDB is installed for PostgreSQL $major"
            return 0
        fi
        log "no TimescaleDB package nor server headers for PostgreSQL $major in this distribution"
    done
    die "could not install TimescaleDB for any of PostgreSQL $(echo "$candidates" | tr '\n' ' ')"
}

main "$@"
