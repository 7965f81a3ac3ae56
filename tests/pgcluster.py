"""Throwaway PostgreSQL + TimescaleDB clusters for gridctl's tests.

A cluster lives in its own temp dir (data, unix socket, server log), listens on 127.0.0.1 and on that
socket on a free port, and preloads TimescaleDB. ``stop()`` and ``start()`` are real server stops and
starts, so a test can take the database away for a while and bring it back.

PostgreSQL refuses to run as root: under root the server binaries run as the ``postgres`` system user
(created by Debian's postgresql package) through ``runuser``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SETUP_HINT = "run scripts/setup-timescaledb.sh (or the whole test command, scripts/test.sh)"

# Speed settings that keep crash semantics: without fsync the OS still holds every committed write, so
# an immediate stop (a server crash) loses nothing; only a machine crash would. synchronous_commit stays
# on, since turning it off would lose the last commits on an immediate stop.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_preload_libraries": "'timescaledb'",
    "timescaledb.telemetry_level": "off",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "max_worker_processes": "32",
    "timescaledb.max_background_workers": "16",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "log_min_messages": "warning",
    "log_connections": "off",
}


class ClusterUnavailable(RuntimeError):
    """No usable PostgreSQL server with TimescaleDB on this machine, or the cluster did not start."""


@dataclass(frozen=True)
class PgServer:
    """An installed PostgreSQL server: where its binaries and extension files are."""

    bindir: Path
    sharedir: Path
    version: str

    @property
    def has_timescaledb(self) -> bool:
        return (self.sharedir / "extension" / "timescaledb.control").is_file()


def _sharedir_for(bindir: Path) -> Path | None:
    pg_config = bindir / "pg_config"
    if pg_config.is_file():
        out = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    # Debian/Ubuntu layout: /usr/lib/postgresql/<major>/bin -> /usr/share/postgresql/<major>
    if bindir.parent.parent == Path("/usr/lib/postgresql"):
        return Path("/usr/share/postgresql") / bindir.parent.name
    return None


def _server_at(bindir: Path) -> PgServer | None:
    if not all((bindir / tool).is_file() for tool in ("postgres", "initdb", "pg_ctl")):
        return None
    sharedir = _sharedir_for(bindir)
    if sharedir is None:
        return None
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False)
    return PgServer(bindir=bindir, sharedir=sharedir, version=out.stdout.strip())


def _major(bindir: Path) -> float:
    try:
        return float(bindir.parent.name)
    except ValueError:
        return -1.0


def candidate_bindirs() -> list[Path]:
    """Server bindirs to consider: $GRIDCTL_PG_BINDIR alone when set, else every installed server."""
    override = os.environ.get("GRIDCTL_PG_BINDIR")
    if override:
        return [Path(override)]
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major, reverse=True)
    # pg_config or postgres on PATH: other layouts (source builds, other distributions).
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            found.append(Path(out.stdout.strip()))
    postgres = shutil.which("postgres")
    if postgres:
        found.append(Path(postgres).resolve().parent)
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def find_timescale_server() -> PgServer:
    """The newest installed PostgreSQL server that has the TimescaleDB extension."""
    servers = [s for s in map(_server_at, candidate_bindirs()) if s is not None]
    for server in servers:
        if server.has_timescaledb:
            return server
    if not servers:
        raise ClusterUnavailable(f"no PostgreSQL server (postgres, initdb, pg_ctl) found: {SETUP_HINT}")
    listed = ", ".join(f"{s.bindir} ({s.version})" for s in servers)
    raise ClusterUnavailable(f"no PostgreSQL server with TimescaleDB among {listed}: {SETUP_HINT}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgCluster:
    """A running (or stopped) throwaway cluster. Connect with ``dsn`` (or ``dsn_for(dbname)``)."""

    server: PgServer
    base: Path
    port: int
    user: str = "postgres"
    dbname: str = "postgres"
    run_as: str | None = None  # OS user the server binaries run as; None: the current user
    _removed: bool = field(default=False, repr=False)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "socket"

    @property
    def logfile(self) -> Path:
        return self.base / "server.log"

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.dbname)

    def dsn_for(self, dbname: str) -> str:
        """libpq connection string over the unix socket."""
        return f"host={self.socket_dir} port={self.port} user={self.user} dbname={dbname}"

    def tcp_dsn_for(self, dbname: str | None = None) -> str:
        """libpq connection string over TCP on 127.0.0.1."""
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname or self.dbname}"

    def timescale_database(self, dbname: str) -> str:
        """Create a database with the timescaledb extension (the benchmarks' own); returns its DSN."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        dsn = self.dsn_for(dbname)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return dsn

    # --- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def create(cls, server: PgServer | None = None, *, port: int | None = None) -> PgCluster:
        """initdb into a new temp dir and start the server. Raises ClusterUnavailable."""
        server = server or find_timescale_server()
        run_as = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise ClusterUnavailable(
                    "PostgreSQL refuses to run as root and there is no 'postgres' system user: "
                    f"install the postgresql package ({SETUP_HINT})"
                ) from None
            if shutil.which("runuser") is None:
                raise ClusterUnavailable("running as root needs runuser (package util-linux)")
            run_as = "postgres"
        # Under /tmp so that the postgres user can reach it whatever $TMPDIR is.
        base = Path(tempfile.mkdtemp(prefix="gridctl-pg-", dir="/tmp" if run_as else None))
        cluster = cls(server=server, base=base, port=port or free_port(), run_as=run_as)
        try:
            cluster._initdb()
            cluster._start_on_free_port(fixed_port=port is not None)
        except BaseException:
            cluster.remove()
            raise
        return cluster

    def _initdb(self) -> None:
        self.socket_dir.mkdir()
        self.base.chmod(0o755)
        self.socket_dir.chmod(0o755)
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            for path in (self.base, self.socket_dir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        settings = dict(SERVER_SETTINGS, unix_socket_directories=f"'{self.socket_dir}'")
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        self._append_conf(lines)

    def _append_conf(self, text: str) -> None:
        conf = self.datadir / "postgresql.conf"
        # The file belongs to the server's user; root may append to it as it is.
        with conf.open("a") as f:
            f.write("\n# gridctl test cluster\n" + text)

    def _set_port(self, port: int) -> None:
        self.port = port
        self._append_conf(f"port = {port}\n")

    def _start_on_free_port(self, fixed_port: bool) -> None:
        attempts = 1 if fixed_port else 5
        for attempt in range(attempts):
            if attempt:
                self.port = free_port()
            self._set_port(self.port)
            try:
                self.start()
                return
            except ClusterUnavailable:
                # Another process may have taken the port between free_port() and the server's bind.
                if attempt == attempts - 1 or "could not bind" not in self.server_log():
                    raise

    def start(self, timeout: float = 60) -> None:
        """Start the server (no-op when running) and wait until it accepts connections."""
        if self.is_running():
            return
        proc = self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            str(int(timeout)),
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            check=False,
        )
        if proc.returncode != 0:
            raise ClusterUnavailable(
                f"PostgreSQL did not start on port {self.port}: {proc.stdout}{proc.stderr}\n"
                f"server log:\n{self.server_log()[-4000:]}"
            )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (no-op when stopped). mode 'fast' is a clean shutdown that disconnects
        clients; 'immediate' is a crash (recovery runs on the next start)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown stop mode {mode!r}")
        if not self.is_running():
            return
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.datadir))

    def is_running(self) -> bool:
        """Whether the postmaster is alive (what ``pg_ctl status`` checks, without a subprocess)."""
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, owned by the server's user
        return True

    def remove(self) -> None:
        """Stop the server abruptly and delete everything it had."""
        if self._removed:
            return
        self._removed = True
        with contextlib.suppress(Exception):
            if (self.datadir / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.datadir), check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def server_log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    # --- helpers ---------------------------------------------------------------------------------

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.server.bindir / tool), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.base, check=False)
        if check and proc.returncode != 0:
            raise ClusterUnavailable(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc
