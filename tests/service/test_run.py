"""`gridctl run` against a simulated site over the real protocols, for several cycles: setpoints reach
the devices and are audited, a device killed mid-run raises an alarm and its assets fall back, a
stop relinquishes, and a restart re-establishes the leases without duplicating history."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridctl.config import load_site
from sim.core import Fault, FaultKind, SimClock
from sim.site import SiteSimulation, free_port_offset

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "sites" / "zac-haute-deule"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "gridctl.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def _until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    # Conditions may block (HTTP, SQLite): run them off the loop, which serves the simulated devices.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _get_json(url: str, token: str) -> object:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


class Service:
    def __init__(self, db: Path, offset: int, port: int, env: dict[str, str], log: Path) -> None:
        self.args = [sys.executable, "-m", "gridctl.cli", "run", str(SITE), "--db", str(db), "--port-offset",
                     str(offset), "--port", str(port), "--dispatch-s", "2", "--optimise-s", "20"]
        self.env, self.log = env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=self.log.open("ab"),
                                        stderr=subprocess.STDOUT)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _audit(db: Path, address: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT outcome, actor FROM write_audit WHERE address = ?", [address]).fetchall()
    return [(r[0], r[1]) for r in rows]


@pytest.mark.slow
async def test_run_drives_the_simulated_site_and_hands_back_on_stop(tmp_path: Path) -> None:
    db = tmp_path / "gridctl.sqlite3"
    env = {**os.environ, "GRIDCTL_DATA_DIR": str(tmp_path / "data")}
    _cli("db", "upgrade", "--db", str(db), env=env)
    token = _cli("users", "add", "ops", "--role", "operator", "--scope", "zac-haute-deule", "--db", str(db),
                 env=env).strip().split()[-1]
    site = load_site(SITE)
    offset = free_port_offset(site)
    simulation = SiteSimulation(SITE, SimClock(datetime.now(UTC), speed=1.0), seed=3, port_offset=offset)
    port = _free_port()
    service = Service(db, offset, port, env, tmp_path / "service.log")
    await simulation.start()
    try:
        service.start()
        pv = simulation.devices["pv-inverter"]
        lighting = simulation.devices["lighting-north"]
        ahu = simulation.devices["ahu-north"]
        # Setpoints reach the devices over Modbus and BACnet (priority 10), and are audited.
        await _until(lambda: any(w[1] == "curtailment-limit" for w in pv.writes), 90, "a PV curtailment write")
        await _until(lambda: lighting.priority_array("zone-1-dimming")[9] is not None, 60, "a lighting write")
        await _until(lambda: ahu.priority_array("zone-setpoint")[9] is not None, 60, "a zone setpoint write")
        await _until(lambda: _audit(db, "pv-inverter/curtailment-limit"), 30, "the audit of the PV write")
        # The audit row follows the read-back, a moment after the device shows the value.
        await _until(lambda: _audit(db, "lighting-north/zone-1-dimming"), 30, "the audit of the lighting write")
        outcomes = {o for o, _ in await asyncio.to_thread(_audit, db, "lighting-north/zone-1-dimming")}
        assert outcomes and outcomes <= {"written", "renewed"}
        # Forecast accuracy by lead time is in /metrics from the first optimisation (bounded labels).
        metrics_url = f"http://127.0.0.1:{port}/metrics"

        def metrics() -> bytes:
            with urllib.request.urlopen(metrics_url, timeout=30) as response:
                return response.read()

        await _until(lambda: b'gridctl_forecast_samples{horizon="24h",quantity="pv",site="zac-haute-deule"}'
                     in metrics(), 60, "the forecast accuracy metrics")
        # The north air handler dies: an alarm, and the north wing falls back to its safe default.
        simulation.inject_fault("ahu-north", Fault(FaultKind.OFFLINE))
        alarms_url = f"http://127.0.0.1:{port}/api/v1/sites/zac-haute-deule/alarms"

        def alarm_kinds() -> set[tuple[str, str]]:
            return {(a["kind"], a["subject"]) for a in _get_json(alarms_url, token)}  # type: ignore[union-attr]

        await _until(lambda: {("device_offline", "ahu-north"), ("stale_point", "north-wing")} <= alarm_kinds(), 90,
                     "the offline alarm and the north wing's fallback")
        assert ("stale_point", "south-wing") not in await asyncio.to_thread(alarm_kinds)
        simulation.inject_fault("ahu-north", None)
        await _until(lambda: ("device_offline", "ahu-north") not in alarm_kinds(), 90, "the alarm to clear")
        # A stop relinquishes: BACnet priority 10 released, the PV limit back to 100 %.
        assert await asyncio.to_thread(service.stop) == 0
        assert lighting.priority_array("zone-1-dimming")[9] is None
        assert ahu.priority_array("zone-setpoint")[9] is None
        assert pv.get("curtailment-limit") == pytest.approx(100.0)
        assert "relinquished" in {o for o, _ in _audit(db, "lighting-north/zone-1-dimming")}
        writes_before = len(lighting.writes)
        # A restart takes the leases back.
        service.start()
        await _until(lambda: lighting.priority_array("zone-1-dimming")[9] is not None, 90, "writes after restart")
        assert len(lighting.writes) > writes_before
        assert await asyncio.to_thread(service.stop) == 0
    finally:
        service.kill()
        await simulation.stop()
    with sqlite3.connect(db) as connection:
        total, distinct = connection.execute(
            "SELECT COUNT(*), COUNT(DISTINCT point_id || '@' || ts) FROM readings").fetchone()
    assert total > 100 and total == distinct
    log = (tmp_path / "service.log").read_text()
    # The protocol libraries may log their own tracebacks on a lost connection; gridctl's code must not fail.
    failures = [line for line in log.splitlines() if '"level": "error"' in line and '"logger": "gridctl' in line]
    assert failures == [], "\n".join(failures)
