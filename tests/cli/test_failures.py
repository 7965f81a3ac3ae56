"""Every command fails cleanly, in a real process: a broken site file, an unreachable database, a missing
file, bad arguments and devices that do not answer end in located lines and a non-zero exit, never a
traceback, and the protocol libraries keep their own log lines to themselves."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRIDCTL = [sys.executable, "-m", "gridctl.cli"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ZAC de l'Union with a grid import limit that is not a number, on line 9 of its site file."""
    folder = tmp_path_factory.mktemp("broken") / "zac-union"
    shutil.copytree(ROOT / "sites" / "zac-union", folder)
    text = (folder / "site.yaml").read_text()
    assert "import_limit_kw: 400" in text.splitlines()[8]
    (folder / "site.yaml").write_text(text.replace("import_limit_kw: 400", "import_limit_kw: lots", 1))
    return folder


def _gridctl(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRIDCTL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _assert_clean(done: subprocess.CompletedProcess[str], *expected: str) -> list[str]:
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    for text in expected:
        assert text in done.stderr, done.stderr
    return done.stderr.strip().splitlines()


SITE_LINE = ":9: grid.import_limit_kw: Input should be a valid number"


@pytest.mark.parametrize("command", [
    ["run", "{site}", "--port", "0"],
    ["points", "read", "{site}", "grid-meter/power"],
    ["points", "write", "{site}", "charger-01/current-limit", "16"],
    ["sim", "up", "{site}"],
    ["simulate", "{site}", "--days", "1"],
    ["db", "upgrade", "--db", "{tmp}/h.sqlite3", "--site", "{site}"],
    ["check", "{site}"],
    ["backtest", "{site}", "--data", "{tmp}/none.csv", "--from", "2026-01-01", "--to", "2026-01-02"],
], ids=lambda c: " ".join(c[:2]))
def test_a_broken_site_file_is_one_located_line(command: list[str], broken: Path, tmp_path: Path) -> None:
    args = [part.format(site=broken, tmp=tmp_path) for part in command]
    done = _gridctl(*args)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output
    located = [line for line in output.splitlines() if SITE_LINE in line]
    assert len(located) == 1 and f"{broken / 'site.yaml'}:9:" in located[0], output


@pytest.mark.parametrize("command", [
    ["run", "sites/zac-union", "--port", "0", "--db", "{dsn}"],
    ["db", "upgrade", "--db", "{dsn}"],
    ["db", "status", "--db", "{dsn}"],
    ["users", "list", "--db", "{dsn}"],
    ["users", "add", "ops", "--role", "operator", "--scope", "zac-union", "--db", "{dsn}"],
    ["backtest", "sites/zac-union", "--db", "{dsn}", "--from", "2026-01-01", "--to", "2026-01-02"],
], ids=lambda c: " ".join(c[:2]))
def test_an_unreachable_database_is_named(command: list[str]) -> None:
    dsn = f"postgresql://gridctl:secret@127.0.0.1:{_closed_port()}/history"
    done = _gridctl(*[part.format(dsn=dsn) for part in command])
    lines = _assert_clean(done, "127.0.0.1", "Connection refused")
    assert done.returncode == 2
    assert "secret" not in done.stdout + done.stderr
    assert any("gridctl" in line and "database" in line for line in lines[-1:]), lines


def test_run_with_an_unusable_sqlite_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    target = tmp_path / "a-file" / "history.sqlite3"
    done = _gridctl("run", "sites/zac-union", "--port", "0", "--db", str(target))
    _assert_clean(done, str(target.parent))


@pytest.mark.parametrize("command, expected", [
    (["optimize", "/nonexistent/problem.json"], "/nonexistent/problem.json"),
    (["check", "/nonexistent/site"], "/nonexistent/site"),
    (["run", "/nonexistent/site", "--port", "0"], "/nonexistent/site"),
    (["simulate", "/nonexistent/site", "--days", "1"], "/nonexistent/site"),
    (["demo", "/nonexistent/site"], "/nonexistent/site"),
    (["points", "read", "sites/zac-union", "no-such-device/power"], "no-such-device"),
    (["simulate", "sites/zac-union", "--start", "2026-07-06T00:00"], "--start"),
    (["run"], "SITE"),
    (["run", "sites/zac-union", "--log-level", "loud"], "loud"),
    (["users", "add", "ops", "--role", "king", "--db", "x"], "--role"),
    (["no-such-command"], "no-such-command"),
], ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else None)
def test_missing_files_and_bad_arguments(command: list[str], expected: str) -> None:
    done = _gridctl(*command)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output
    assert expected in output


@pytest.mark.slow
def test_devices_that_do_not_answer_leave_no_library_chatter() -> None:
    """Nothing listens where the site's devices are: one line per point, none from pymodbus or asyncua."""
    done = _gridctl("points", "read", "sites/zac-union", "grid-meter/power", "silo-bms", "--timeout", "1")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output
    for library in ("pymodbus", "asyncua", "bacpypes3"):
        assert library not in output.lower(), output
    assert "grid-meter/power" in output
